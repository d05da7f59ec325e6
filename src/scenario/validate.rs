//! Checks that the types cannot express: cross-references, name syntax, value ranges. Every
//! problem is collected (not only the first), each with the JSON path it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use time::OffsetDateTime;

use super::load::Issue;
use super::{
    Action, ClientStep, Expectation, HeaderMatch, Matcher, PlannedRequest, Scenario, SniFallback,
    name_matches,
};

/// What validation found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems that make the scenario unusable.
    pub errors: Vec<Issue>,
    /// Legal but suspicious choices.
    pub warnings: Vec<Issue>,
}

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Issue::new(path, message));
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Issue::new(path, message));
    }
}

/// Validates a deserialized scenario.
pub fn validate(scenario: &Scenario) -> Findings {
    let mut out = Findings::default();
    let certificates = names_of(scenario.certificates.iter().map(|c| c.name.as_str()));
    let listeners = names_of(scenario.listeners.iter().map(|l| l.name.as_str()));

    check_ca(scenario, &mut out);
    check_certificates(scenario, &mut out);
    check_listeners(scenario, &certificates, &mut out);
    check_hosts(scenario, &certificates, &listeners, &mut out);
    for (index, rule) in scenario.rules.iter().enumerate() {
        let path = format!("rules[{index}]");
        check_matcher(&rule.when, &format!("{path}.when"), &listeners, &mut out);
        match &rule.action {
            Some(action) => check_action(action, &format!("{path}.action"), &mut out),
            None if rule.send.is_empty() => out.error(
                format!("{path}.action"),
                "missing: give an action, or frames to `send` (a rule without an action answers normally)",
            ),
            None => {}
        }
        for (i, frame) in rule.send.iter().enumerate() {
            check_frame(frame, &format!("{path}.send[{i}]"), &mut out);
        }
        for (field, value) in [
            ("total", rule.limit.total),
            ("per_connection", rule.limit.per_connection),
            ("per_authority", rule.limit.per_authority),
        ] {
            if value == Some(0) {
                out.error(
                    format!("{path}.limit.{field}"),
                    "must be at least 1 (a rule that may never fire is better deleted)",
                );
            }
        }
    }
    for (field, value, min, max) in scenario.limits.ranges() {
        if let Some(value) = value
            && !(min..=max).contains(&value)
        {
            out.error(
                format!("limits.{field}"),
                format!("{value} is out of range: expected {min} to {max}"),
            );
        }
    }
    if let Some(plan) = &scenario.client {
        for (index, step) in plan.steps.iter().enumerate() {
            if let ClientStep::Request(request) = step {
                let path = format!("client.steps[{index}].request");
                check_planned_request(scenario, request, &path, &listeners, &mut out);
            }
        }
    }
    for (index, expectation) in scenario.expect.iter().enumerate() {
        if let Expectation::MaxAttempts(max) = expectation
            && max.max == 0
        {
            out.error(
                format!("expect[{index}].max_attempts.max"),
                "must be at least 1 (every request is attempted once)",
            );
        }
    }
    out
}

fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    names.collect()
}

fn known(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        "none are defined".to_owned()
    } else {
        format!(
            "known: {}",
            names.iter().copied().collect::<Vec<_>>().join(", ")
        )
    }
}

fn check_ca(scenario: &Scenario, out: &mut Findings) {
    if scenario.ca.common_name.trim().is_empty() {
        out.error("ca.common_name", "must not be empty");
    }
    check_key_type(scenario.ca.key, "ca.key", out);
}

fn check_key_type(key: super::KeyType, path: &str, out: &mut Findings) {
    if key == super::KeyType::Rsa2048 && !cfg!(feature = "rsa") {
        out.error(
            path,
            "key type \"rsa2048\" needs misdirect built with `--features rsa`; use \"ecdsa-p256\", \"ecdsa-p384\" or \"ed25519\"",
        );
    }
}

fn check_certificates(scenario: &Scenario, out: &mut Findings) {
    let mut seen = BTreeMap::new();
    let now = OffsetDateTime::now_utc();
    for (index, cert) in scenario.certificates.iter().enumerate() {
        let path = format!("certificates[{index}]");
        if let Some(first) = seen.insert(cert.name.as_str(), index) {
            out.error(
                format!("{path}.name"),
                format!(
                    "duplicate certificate name {:?} (also certificates[{first}])",
                    cert.name
                ),
            );
        }
        if !is_file_stem(&cert.name) {
            out.error(
                format!("{path}.name"),
                format!(
                    "{:?} is not a usable name: use letters, digits, '-' and '_' (it becomes a file name)",
                    cert.name
                ),
            );
        } else if cert.name.eq_ignore_ascii_case("ca") {
            out.error(
                format!("{path}.name"),
                "\"ca\" is reserved for the CA's own files",
            );
        }
        if cert.sans.is_empty() {
            out.error(
                format!("{path}.sans"),
                "at least one subject alternative name is needed (a DNS name, `*.suffix` or an IP address)",
            );
        }
        for (i, san) in cert.sans.iter().enumerate() {
            if san.parse::<IpAddr>().is_err()
                && let Err(why) = check_dns_name(san, true)
            {
                out.error(format!("{path}.sans[{i}]"), why);
            }
        }
        if let Some(cn) = &cert.common_name
            && cn.trim().is_empty()
        {
            out.error(
                format!("{path}.common_name"),
                "must not be empty when given",
            );
        }
        check_key_type(cert.key, &format!("{path}.key"), out);
        let not_before = cert.validity.not_before.resolve(now);
        let not_after = cert.validity.not_after.resolve(now);
        if not_before >= not_after {
            out.error(
                format!("{path}.validity"),
                format!(
                    "not_before ({}) must be earlier than not_after ({})",
                    cert.validity.not_before, cert.validity.not_after
                ),
            );
        }
        for (field, at) in [("not_before", not_before), ("not_after", not_after)] {
            if !(1950..=9999).contains(&at.year()) {
                out.error(
                    format!("{path}.validity.{field}"),
                    "must fall between the years 1950 and 9999 (what X.509 times can express)",
                );
            }
        }
    }
}

fn is_file_stem(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A DNS name as certificates and SNI carry it (RFC 1123 labels), optionally with a leading
/// `*.` wildcard label.
fn check_dns_name(name: &str, wildcard_allowed: bool) -> Result<(), String> {
    let bare = match name.strip_prefix("*.") {
        Some(rest) if wildcard_allowed => rest,
        Some(_) => return Err(format!("{name:?}: a wildcard is not allowed here")),
        None => name,
    };
    let problem = if bare.is_empty() {
        Some("is empty")
    } else if bare.len() > 253 {
        Some("is longer than 253 characters")
    } else if bare.contains('*') {
        Some("may only have `*` as its whole first label (`*.example.test`)")
    } else if bare.split('.').any(|label| {
        label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        Some("is not a DNS name (labels of letters, digits and '-', separated by dots)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("{name:?} {problem}")),
        None => Ok(()),
    }
}

fn check_listeners(scenario: &Scenario, certificates: &BTreeSet<&str>, out: &mut Findings) {
    let mut seen = BTreeMap::new();
    let mut bound = BTreeMap::new();
    for (index, listener) in scenario.listeners.iter().enumerate() {
        let path = format!("listeners[{index}]");
        check_connection_frames(
            listener.origin.as_deref(),
            &listener.altsvc,
            true,
            &path,
            out,
        );
        if !listener.tls && (listener.origin.is_some() || !listener.altsvc.is_empty()) {
            out.warn(
                format!("{path}.tls"),
                "ORIGIN and ALTSVC frames are sent on cleartext (h2c) connections too, but clients ignore them there (RFC 8336 §2.2)",
            );
        }
    }
    if scenario.listeners.is_empty() {
        out.error(
            "listeners",
            "at least one listener is needed (or leave the field out for the default `main` on 127.0.0.1:0)",
        );
    }
    for (index, listener) in scenario.listeners.iter().enumerate() {
        let path = format!("listeners[{index}]");
        if let Some(first) = seen.insert(listener.name.as_str(), index) {
            out.error(
                format!("{path}.name"),
                format!(
                    "duplicate listener name {:?} (also listeners[{first}])",
                    listener.name
                ),
            );
        }
        if listener.name.trim().is_empty() {
            out.error(format!("{path}.name"), "must not be empty");
        }
        if !listener.address.ip().is_loopback() {
            out.error(
                format!("{path}.address"),
                format!(
                    "{} is not a loopback address: use 127.x.y.z or [::1] (the harness only serves this machine)",
                    listener.address
                ),
            );
        }
        if let Some(from) = &listener.port_from {
            let earlier = scenario.listeners[..index].iter().any(|l| &l.name == from);
            if !earlier {
                out.error(
                    format!("{path}.port_from"),
                    format!(
                        "no earlier listener named {from:?}: name one defined before this one ({})",
                        known(&names_of(
                            scenario.listeners[..index].iter().map(|l| l.name.as_str())
                        ))
                    ),
                );
            }
            if listener.address.port() != 0 {
                out.error(
                    format!("{path}.address"),
                    "with port_from the port comes from the other listener: give port 0",
                );
            }
        }
        if listener.address.port() != 0
            && let Some(first) = bound.insert(listener.address, index)
        {
            out.error(
                format!("{path}.address"),
                format!("{} is already used by listeners[{first}]", listener.address),
            );
        }
        if listener.tls && listener.alpn.is_empty() {
            out.error(
                format!("{path}.alpn"),
                "offer at least one protocol: \"h2\", \"http/1.1\"",
            );
        }
        let fallbacks = [
            ("unknown_sni", Some(&listener.unknown_sni)),
            ("no_sni", listener.no_sni.as_ref()),
        ];
        for (field, fallback) in fallbacks {
            if let Some(SniFallback::Certificate(name)) = fallback {
                if !certificates.contains(name.as_str()) {
                    out.error(
                        format!("{path}.{field}.certificate"),
                        format!("no certificate named {name:?} ({})", known(certificates)),
                    );
                }
                if !listener.tls {
                    out.warn(
                        format!("{path}.{field}"),
                        "has no effect on a cleartext listener (tls is false)",
                    );
                }
            }
        }
    }
}

fn check_hosts(
    scenario: &Scenario,
    certificates: &BTreeSet<&str>,
    listeners: &BTreeSet<&str>,
    out: &mut Findings,
) {
    if scenario.hosts.is_empty() {
        out.error("hosts", "at least one virtual host is needed");
    }
    // (listener, lower-cased name) → host index, to catch two hosts claiming one name.
    let mut claimed: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (index, host) in scenario.hosts.iter().enumerate() {
        let path = format!("hosts[{index}]");
        if host.names.is_empty() {
            out.error(
                format!("{path}.names"),
                "at least one name is needed, e.g. \"a.test\"",
            );
        }
        for (i, name) in host.names.iter().enumerate() {
            if let Err(why) = check_dns_name(name, true) {
                out.error(format!("{path}.names[{i}]"), why);
            }
        }
        check_connection_frames(host.origin.as_deref(), &host.altsvc, false, &path, out);
        if !host.altsvc.is_empty() && host.names.first().is_some_and(|n| n.starts_with("*.")) {
            for (i, alt) in host.altsvc.iter().enumerate() {
                if alt.origin.is_none() {
                    out.error(
                        format!("{path}.altsvc[{i}].origin"),
                        "missing: the host's first name is a wildcard, so it cannot stand for the origin; name one, e.g. \"https://www.site.test\"",
                    );
                }
            }
        }
        let served_on: Vec<&str> = match &host.listeners {
            Some(names) => {
                if names.is_empty() {
                    out.error(
                        format!("{path}.listeners"),
                        "names no listener; leave the field out to serve on every listener",
                    );
                }
                for (i, name) in names.iter().enumerate() {
                    if !listeners.contains(name.as_str()) {
                        out.error(
                            format!("{path}.listeners[{i}]"),
                            format!("no listener named {name:?} ({})", known(listeners)),
                        );
                    }
                }
                names.iter().map(String::as_str).collect()
            }
            None => scenario.listeners.iter().map(|l| l.name.as_str()).collect(),
        };
        for listener in &served_on {
            for name in &host.names {
                if let Some(other) = claimed.insert((listener, name.to_ascii_lowercase()), index)
                    && other != index
                {
                    out.error(
                        format!("{path}.names"),
                        format!(
                            "{name:?} is also a name of hosts[{other}] on listener {listener:?}: which host answers would be ambiguous"
                        ),
                    );
                }
            }
        }
        let on_tls = served_on
            .iter()
            .any(|name| scenario.listener(name).is_some_and(|l| l.tls));
        match &host.certificate {
            None if on_tls => out.error(
                format!("{path}.certificate"),
                format!(
                    "missing: the host is served on a TLS listener, so name the certificate it presents ({})",
                    known(certificates)
                ),
            ),
            None => {}
            Some(name) => match scenario.certificate(name) {
                None => out.error(
                    format!("{path}.certificate"),
                    format!("no certificate named {name:?} ({})", known(certificates)),
                ),
                Some(cert) => {
                    for host_name in &host.names {
                        if !cert.sans.iter().any(|san| name_matches(san, host_name)) {
                            out.warn(
                                format!("{path}.certificate"),
                                format!(
                                    "certificate {name:?} does not cover {host_name:?}; clients will reject it unless that is the point"
                                ),
                            );
                        }
                    }
                }
            },
        }
        for (i, response) in host.responses.iter().enumerate() {
            let rpath = format!("{path}.responses[{i}]");
            check_path_pattern(&response.path, &format!("{rpath}.path"), out);
            check_status(response.status, &format!("{rpath}.status"), out);
            check_headers(&response.headers, &format!("{rpath}.headers"), out);
            check_one_body(&response.body, &response.body_file, &rpath, out);
        }
    }
}

/// A response's body is given inline or read from a file, not both.
fn check_one_body(
    body: &Option<String>,
    body_file: &Option<std::path::PathBuf>,
    path: &str,
    out: &mut Findings,
) {
    if body.is_some() && body_file.is_some() {
        out.error(
            format!("{path}.body_file"),
            format!("give either {path}.body or {path}.body_file, not both"),
        );
    }
}

fn check_path_pattern(pattern: &str, path: &str, out: &mut Findings) {
    if pattern != "*" && !pattern.starts_with('/') {
        out.error(
            path,
            format!(
                "{pattern:?} is not a path pattern: use an exact path (\"/a\"), a prefix (\"/static/*\") or \"*\""
            ),
        );
    }
}

fn check_status(status: u16, path: &str, out: &mut Findings) {
    if !(200..=599).contains(&status) {
        out.error(
            path,
            format!(
                "{status} is not a final HTTP status code (200 to 599; 1xx are interim answers a harness cannot end a request with)"
            ),
        );
    }
}

fn check_headers(headers: &BTreeMap<String, String>, path: &str, out: &mut Findings) {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.error(
                format!("{path}.{name}"),
                format!("{name:?} is not a valid header name"),
            );
        }
        if http::HeaderValue::from_str(value).is_err() {
            out.error(
                format!("{path}.{name}"),
                "the value has characters a header cannot carry (control characters or non-ASCII)",
            );
        }
        if is_connection_specific(name) {
            out.error(
                format!("{path}.{name}"),
                "connection-specific headers are not allowed in HTTP/2 (RFC 9113 §8.2.2)",
            );
        }
    }
}

fn is_connection_specific(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

fn check_method(method: &str, path: &str, out: &mut Findings) {
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        out.error(path, format!("{method:?} is not an HTTP method"));
    }
}

fn check_matcher(when: &Matcher, path: &str, listeners: &BTreeSet<&str>, out: &mut Findings) {
    if let Some(authority) = &when.authority
        && let Err(why) = check_dns_name(authority, true)
    {
        out.error(format!("{path}.authority"), why);
    }
    if let Some(sni) = &when.sni {
        if let Err(why) = check_dns_name(sni, true) {
            out.error(format!("{path}.sni"), why);
        }
        if when.sni_absent == Some(true) {
            out.error(
                format!("{path}.sni_absent"),
                "contradicts `sni`: a connection cannot both have that SNI and none",
            );
        }
    }
    if let Some(pattern) = &when.path {
        check_path_pattern(pattern, &format!("{path}.path"), out);
    }
    if let Some(method) = &when.method {
        check_method(method, &format!("{path}.method"), out);
    }
    if let Some(HeaderMatch { name, .. }) = &when.header
        && http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        out.error(
            format!("{path}.header.name"),
            format!("{name:?} is not a valid header name"),
        );
    }
    if let Some(listener) = &when.listener
        && !listeners.contains(listener.as_str())
    {
        out.error(
            format!("{path}.listener"),
            format!("no listener named {listener:?} ({})", known(listeners)),
        );
    }
    if when.every_nth == Some(0) {
        out.error(
            format!("{path}.every_nth"),
            "must be at least 1 (1 means every request)",
        );
    }
    if let Some(p) = when.probability
        && !(0.0..=1.0).contains(&p)
    {
        out.error(
            format!("{path}.probability"),
            format!("{p} is not a probability: use a number from 0 to 1"),
        );
    }
}

fn check_action(action: &Action, path: &str, out: &mut Findings) {
    match action {
        Action::Respond(respond) => {
            check_status(respond.status, &format!("{path}.respond.status"), out);
            check_headers(&respond.headers, &format!("{path}.respond.headers"), out);
            check_one_body(
                &respond.body,
                &respond.body_file,
                &format!("{path}.respond"),
                out,
            );
        }
        Action::Goaway(goaway) if goaway.graceful && goaway.code != super::ErrorCode::NoError => {
            out.error(
                format!("{path}.goaway.code"),
                "a graceful GOAWAY carries NO_ERROR (RFC 9113 §6.8); use \"graceful\": false to send an error code",
            );
        }
        _ => {}
    }
}

fn check_planned_request(
    scenario: &Scenario,
    request: &PlannedRequest,
    path: &str,
    listeners: &BTreeSet<&str>,
    out: &mut Findings,
) {
    check_method(&request.method, &format!("{path}.method"), out);
    check_headers(&request.headers, &format!("{path}.headers"), out);
    let uri = match request.url.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            out.error(
                format!("{path}.url"),
                format!(
                    "{:?} is not a URL ({e}); write it like \"https://b.test/x\"",
                    request.url
                ),
            );
            return;
        }
    };
    let scheme = uri.scheme_str();
    if !matches!(scheme, Some("https") | Some("http")) {
        out.error(
            format!("{path}.url"),
            format!(
                "{:?} needs an https:// or http:// scheme and a host name",
                request.url
            ),
        );
        return;
    }
    let Some(host) = uri.host() else {
        out.error(
            format!("{path}.url"),
            format!("{:?} has no host name", request.url),
        );
        return;
    };
    if uri.port().is_some() {
        out.error(
            format!("{path}.url"),
            format!(
                "{:?} has a port: leave it out, the adapter takes the listener's real port",
                request.url
            ),
        );
    }
    let want_tls = scheme == Some("https");
    match &request.listener {
        Some(name) => match scenario.listener(name) {
            None => out.error(
                format!("{path}.listener"),
                format!("no listener named {name:?} ({})", known(listeners)),
            ),
            Some(listener) if listener.tls != want_tls => out.error(
                format!("{path}.listener"),
                format!(
                    "listener {name:?} is {} but the URL is {}",
                    if listener.tls { "TLS" } else { "cleartext" },
                    scheme.unwrap_or_default()
                ),
            ),
            Some(_) => {}
        },
        None => {
            let reachable = scenario.listeners.iter().any(|l| l.tls == want_tls);
            if !reachable {
                out.error(
                    format!("{path}.url"),
                    format!(
                        "no {} listener can take {:?}",
                        if want_tls { "TLS" } else { "cleartext" },
                        request.url
                    ),
                );
            }
        }
    }
    let served = scenario
        .hosts
        .iter()
        .any(|h| h.names.iter().any(|n| name_matches(n, host)));
    if !served {
        out.warn(
            format!("{path}.url"),
            format!("no host answers to {host:?}; every request for it will be misdirected"),
        );
    }
}

/// The ORIGIN list and ALTSVC frames of a listener or host (sent on stream 0, so each ALTSVC
/// needs an origin; a host's defaults to its first name).
fn check_connection_frames(
    origin: Option<&[String]>,
    altsvc: &[super::AltSvcSpec],
    origin_required: bool,
    path: &str,
    out: &mut Findings,
) {
    if let Some(origins) = origin {
        check_origin_list(origins, &format!("{path}.origin"), out);
    }
    for (i, alt) in altsvc.iter().enumerate() {
        let at = format!("{path}.altsvc[{i}]");
        match &alt.origin {
            Some(origin) => {
                if let Err(why) = check_origin(origin) {
                    out.error(format!("{at}.origin"), why);
                }
            }
            None if origin_required => out.error(
                format!("{at}.origin"),
                "missing: an ALTSVC frame on stream 0 names its origin (RFC 7838 §4), e.g. \"https://a.test\"",
            ),
            None => {}
        }
        if let Err(why) = check_altsvc_value(&alt.value) {
            out.error(format!("{at}.value"), why);
        }
        check_altsvc_size(alt, &at, out);
    }
}

/// The most payload every HTTP/2 peer accepts in a frame (SETTINGS_MAX_FRAME_SIZE's initial
/// value, RFC 9113 §4.2).
const MAX_FRAME_PAYLOAD: usize = 16_384;

/// The longest a bare name of an ORIGIN list grows when sent: `https://` and `:65535`.
const BARE_NAME_GROWTH: usize = "https://".len() + ":65535".len();

/// Each entry of an ORIGIN list, and the frame they make together (one frame, at most
/// 16,384 bytes of payload).
fn check_origin_list(origins: &[String], path: &str, out: &mut Findings) {
    let mut payload = 0;
    for (i, entry) in origins.iter().enumerate() {
        if let Err(why) = check_origin_entry(entry) {
            out.error(format!("{path}[{i}]"), why);
        }
        let grows = if entry.contains("://") {
            0
        } else {
            BARE_NAME_GROWTH
        };
        payload += 2 + entry.len() + grows;
    }
    if payload > MAX_FRAME_PAYLOAD {
        out.error(
            path,
            format!(
                "the ORIGIN frame would carry up to {payload} bytes, over the {MAX_FRAME_PAYLOAD} every peer accepts in one frame (RFC 9113 §4.2); list fewer origins"
            ),
        );
    }
}

/// An ALTSVC frame fits one frame (its origin, when defaulted, is a host name grown as a bare
/// ORIGIN entry is).
fn check_altsvc_size(alt: &super::AltSvcSpec, path: &str, out: &mut Findings) {
    let origin = alt
        .origin
        .as_ref()
        .map_or(255 + BARE_NAME_GROWTH, String::len);
    let payload = 2 + origin + alt.value.len();
    if payload > MAX_FRAME_PAYLOAD {
        out.error(
            format!("{path}.value"),
            format!(
                "the ALTSVC frame would carry up to {payload} bytes, over the {MAX_FRAME_PAYLOAD} every peer accepts in one frame (RFC 9113 §4.2)"
            ),
        );
    }
}

/// A frame a rule sends.
fn check_frame(frame: &super::FrameSpec, path: &str, out: &mut Findings) {
    match frame {
        super::FrameSpec::Origin(origins) => {
            check_origin_list(origins, &format!("{path}.origin"), out);
        }
        super::FrameSpec::Altsvc(alt) => {
            if let Some(origin) = &alt.origin
                && let Err(why) = check_origin(origin)
            {
                out.error(format!("{path}.altsvc.origin"), why);
            }
            if let Err(why) = check_altsvc_value(&alt.value) {
                out.error(format!("{path}.altsvc.value"), why);
            }
            check_altsvc_size(alt, &format!("{path}.altsvc"), out);
        }
        super::FrameSpec::Goaway(goaway) => {
            if goaway
                .debug
                .as_ref()
                .is_some_and(|d| d.len() > crate::scenario::MAX_DEBUG_DATA_BYTES)
            {
                out.warn(
                    format!("{path}.goaway.debug"),
                    format!(
                        "longer than {} bytes: it is cut",
                        crate::scenario::MAX_DEBUG_DATA_BYTES
                    ),
                );
            }
        }
    }
}

/// An entry of an ORIGIN list: an origin, or a bare DNS name (sent as `https://name` with the
/// connection's port).
fn check_origin_entry(entry: &str) -> Result<(), String> {
    if entry.contains("://") {
        return check_origin(entry);
    }
    check_dns_name(entry, false).map_err(|why| {
        format!("{why}; an ORIGIN entry is an origin (\"https://b.test:8443\") or a name (\"b.test\", sent with the connection's port)")
    })
}

/// An origin as ORIGIN and ALTSVC frames carry it: the ASCII serialization of RFC 6454 §6.2,
/// `scheme://host[:port]`, with no path, query, fragment or user info.
pub(crate) fn check_origin(origin: &str) -> Result<(), String> {
    let example = "write it like \"https://b.test\" or \"https://b.test:8443\"";
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{origin:?} is not an origin: {example}"));
    };
    if !matches!(scheme, "https" | "http") {
        return Err(format!(
            "{origin:?} is not an origin: the scheme must be https or http (lower case); {example}"
        ));
    }
    if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
        return Err(format!(
            "{origin:?} is not an origin: an origin has no path, query, fragment or user info ({c:?}); {example}"
        ));
    }
    let authority: http::uri::Authority = rest
        .parse()
        .map_err(|e| format!("{origin:?} is not an origin ({e}); {example}"))?;
    if authority.host().is_empty() {
        return Err(format!("{origin:?} is not an origin: no host; {example}"));
    }
    if authority.as_str().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "{origin:?} is not an origin: the host is lower case in an origin's serialization (RFC 6454 §6.2)"
        ));
    }
    if rest.ends_with(':') || authority.port().is_some_and(|p| p.as_u16() == 0) {
        return Err(format!("{origin:?} is not an origin: bad port; {example}"));
    }
    Ok(())
}

/// An Alt-Svc field value (RFC 7838 §3): `clear`, or comma-separated alternatives
/// `protocol-id="[host]:port"` each with `; name=value` parameters.
pub(crate) fn check_altsvc_value(value: &str) -> Result<(), String> {
    let example = "write it like h2=\"alt.test:8443\"; ma=60, or clear";
    let bad = |why: String| {
        Err(format!(
            "{value:?} is not an Alt-Svc value: {why}; {example}"
        ))
    };
    if value.trim() == "clear" {
        return Ok(());
    }
    if value.trim().is_empty() {
        return bad("empty".to_owned());
    }
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        // alternative = protocol-id "=" alt-authority
        let Some((protocol, after)) = rest.split_once('=') else {
            return bad("an alternative needs protocol-id=\"host:port\"".to_owned());
        };
        if protocol.is_empty() || !protocol.chars().all(is_tchar) {
            return bad(format!("{protocol:?} is not a protocol-id (an ALPN token)"));
        }
        let Some((authority, after)) = quoted(after) else {
            return bad(format!(
                "the alternative for {protocol:?} is not a quoted \"[host]:port\""
            ));
        };
        let Some((host, port)) = authority.rsplit_once(':') else {
            return bad(format!("{authority:?} has no port"));
        };
        if port.parse::<u16>().is_err() || host.contains(['"', ' ']) {
            return bad(format!("{authority:?} is not [host]:port"));
        }
        rest = after;
        // *( OWS ";" OWS parameter )
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            let Some(after) = rest.strip_prefix(';') else {
                break;
            };
            let after = after.trim_start_matches([' ', '\t']);
            let Some((name, after)) = after.split_once('=') else {
                return bad("a parameter needs name=value".to_owned());
            };
            if name.is_empty() || !name.chars().all(is_tchar) {
                return bad(format!("{name:?} is not a parameter name"));
            }
            rest = if after.starts_with('"') {
                match quoted(after) {
                    Some((_, after)) => after,
                    None => {
                        return bad(format!(
                            "the value of {name:?} is an unterminated quoted string"
                        ));
                    }
                }
            } else {
                let end = after.find(|c: char| !is_tchar(c)).unwrap_or(after.len());
                if end == 0 {
                    return bad(format!("{name:?} has no value"));
                }
                if name == "ma" && after[..end].parse::<u64>().is_err() {
                    return bad(format!("ma={} is not a number of seconds", &after[..end]));
                }
                &after[end..]
            };
        }
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Ok(());
        }
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => return bad(format!("unexpected {rest:?}")),
        }
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A quoted string at the start of `text` (RFC 9110 §5.6.4): its content and what follows.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((&body[..i], &body[i + 1..])),
            _ => {}
        }
    }
    None
}
