//! The scenario file: what to serve, when to misdirect, what the client should do and what
//! a correct client is expected to have done.
//!
//! The types here are the file format itself (serde + schemars). Every object of the format
//! rejects unknown keys at their JSON path — structs by `deny_unknown_fields`, the object form
//! of [`CountRange`] by hand, and one-key enum objects (`{"respond": {…}}`) through `tagged`.
//! Reading a file with precise, multi-error diagnostics lives in `load` ([`from_path`],
//! [`from_path_with`], [`from_bytes`]), which also reads `body_file`s (the only other files a
//! scenario names); cross-reference checks in `validate` ([`validate()`]); the
//! relative/absolute time syntax of validity windows in `when` ([`TimeSpec`]).

mod load;
mod strict;
mod tagged;
mod validate;
mod when;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{
    Diagnostics, Issue, LoadError, LoadOptions, MAX_BODY_FILE_BYTES, from_bytes, from_bytes_with,
    from_path, from_path_with, from_value, from_value_with,
};
pub use validate::validate;
pub use when::{TimeSpec, TimeSpecError};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name shown in summaries and verdicts; defaults to the file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the scenario stages and why, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A stable identifier, kept when the file or its name changes (a scorecard keys its
    /// cells and baselines by it); defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The cause of misdirection it stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// The RFC sections it checks, e.g. `RFC 9110 §15.5.20`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rfc: Vec<String>,
    /// Seed for every random choice (probability matchers), so a run can be replayed.
    #[serde(default)]
    pub seed: u64,
    /// The certificate authority that issues the leaf certificates.
    #[serde(default)]
    pub ca: CaSpec,
    /// Named certificates, referenced by hosts and listeners.
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    /// Where the server listens. Defaults to one TLS listener `main` on `127.0.0.1:0`.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerSpec>,
    /// Virtual hosts: the names they answer to and what they answer.
    pub hosts: Vec<HostSpec>,
    /// Ordered misdirection rules; the first whose matcher and limits allow it decides.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The requests a client under test should make, in order, through one client instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientPlan>,
    /// What a correct client will have done, checked against the journal.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// The server's protective limits for this scenario; a flag given to `serve` or `run`
    /// wins over the scenario, which wins over the default.
    #[serde(default, skip_serializing_if = "LimitsSpec::is_empty")]
    pub limits: LimitsSpec,
}

/// The causes of misdirection a scenario stages: the four causes of 421, and retry hygiene.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// 1. A client coalesced a request onto a connection whose server does not serve it.
    Coalescing,
    /// 2. The certificate does not cover the name, or is not valid.
    Certificate,
    /// 3. A virtual host is missing or misconfigured for the name.
    VirtualHost,
    /// 4. A CDN or load balancer routed the connection to the wrong place.
    CdnLoadBalancer,
    /// How a client retries what it was told to retry (421, REFUSED_STREAM, GOAWAY).
    RetryHygiene,
    /// What the server says on the connection about where it is authoritative (ORIGIN).
    ConnectionSignals,
}

impl Cause {
    /// How a card names it.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Coalescing => "1 coalescing",
            Cause::Certificate => "2 certificate",
            Cause::VirtualHost => "3 virtual host",
            Cause::CdnLoadBalancer => "4 CDN / LB",
            Cause::RetryHygiene => "retry hygiene",
            Cause::ConnectionSignals => "connection signals",
        }
    }
}

/// How binding an expectation is: what a failure of it means.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// An RFC requirement (MUST / MUST NOT): e.g. not coalescing onto a certificate that does
    /// not cover the name.
    Must,
    /// An RFC recommendation (SHOULD / SHOULD NOT).
    Should,
    /// What careful clients do where the RFC only allows it (MAY): retrying a 421 (RFC 9110
    /// §15.5.20), a refused stream or one above a GOAWAY's last-stream-id (RFC 9113 §8.7).
    #[default]
    Robust,
}

impl Level {
    /// Its name, as in the scenario file.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Robust => "robust",
        }
    }
}

/// Protective limits, each with a default an ordinary test suite never meets (the README's
/// limits table); absent means the default (or the flag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Seconds to finish the TLS handshake, send the first bytes (cleartext) or the HTTP/2
    /// preface (1 to 86400; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds without a request, body data, or room to send an answer, after which a
    /// connection (or the stalled stream) is closed (1 to 86400; default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS (1 to 10000; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, and the HTTP/1.1 header bytes (1024 to 16777216;
    /// default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_list_size: Option<u32>,
    /// Largest request body (bytes); larger ones get 413 (default 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Seconds in-flight requests get to finish on shutdown (0 to 3600; default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
    /// Most connections open at once over all listeners (1 to 1000000; default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl LimitsSpec {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self == &LimitsSpec::default()
    }

    /// Each limit's name, value (if set) and allowed range, for validation.
    pub fn ranges(&self) -> [(&'static str, Option<u64>, u64, u64); 7] {
        [
            (
                "handshake_timeout_secs",
                self.handshake_timeout_secs,
                1,
                86_400,
            ),
            ("idle_timeout_secs", self.idle_timeout_secs, 1, 86_400),
            (
                "max_concurrent_streams",
                self.max_concurrent_streams.map(u64::from),
                1,
                10_000,
            ),
            (
                "max_header_list_size",
                self.max_header_list_size.map(u64::from),
                1024,
                16_777_216,
            ),
            ("max_body_bytes", self.max_body_bytes, 0, u64::MAX),
            ("shutdown_grace_secs", self.shutdown_grace_secs, 0, 3_600),
            (
                "max_connections",
                self.max_connections.map(u64::from),
                1,
                1_000_000,
            ),
        ]
    }
}

/// The CA section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaSpec {
    /// Subject common name of the CA certificate.
    #[serde(default = "default_ca_common_name")]
    pub common_name: String,
    /// Key type of the CA.
    #[serde(default)]
    pub key: KeyType,
    /// Reuse `ca.pem` + `ca.key` from the certificate folder when both exist, so a client
    /// trusts one CA across runs; otherwise a fresh CA is generated (and written there).
    #[serde(default)]
    pub reuse: bool,
}

impl Default for CaSpec {
    fn default() -> Self {
        CaSpec {
            common_name: default_ca_common_name(),
            key: KeyType::default(),
            reuse: false,
        }
    }
}

fn default_ca_common_name() -> String {
    "misdirect test CA".to_owned()
}

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (what most servers use).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256; needs the `rsa` cargo feature.
    Rsa2048,
}

/// Who signs a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Issuer {
    /// The scenario's CA (clients that trust `ca.pem` accept it).
    #[default]
    Ca,
    /// Self-signed: no client that only trusts the CA accepts it.
    #[serde(rename = "self")]
    SelfSigned,
}

/// A named leaf certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// Name used by hosts and listeners, and as the file stem in the certificate folder
    /// (letters, digits, `-` and `_`; `ca` is reserved).
    pub name: String,
    /// Subject alternative names: DNS names (`a.test`), wildcards (`*.site.test`) and IP
    /// addresses (`127.0.0.1`, `::1`).
    pub sans: Vec<String>,
    /// Subject common name; defaults to the first SAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Key type.
    #[serde(default)]
    pub key: KeyType,
    /// Who signs it.
    #[serde(default)]
    pub issuer: Issuer,
    /// Validity window; defaults to one hour ago until 90 days from now.
    #[serde(default)]
    pub validity: Validity,
}

/// A certificate's validity window, each end relative to now (`-1h`, `+30d`, `now`) or an
/// absolute RFC 3339 time (`2030-01-01T00:00:00Z`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    /// Start of validity.
    #[serde(default = "default_not_before")]
    pub not_before: TimeSpec,
    /// End of validity.
    #[serde(default = "default_not_after")]
    pub not_after: TimeSpec,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            not_before: default_not_before(),
            not_after: default_not_after(),
        }
    }
}

fn default_not_before() -> TimeSpec {
    TimeSpec::relative_seconds(-3600)
}

fn default_not_after() -> TimeSpec {
    TimeSpec::relative_seconds(90 * 86400)
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// Name used by hosts and rules.
    pub name: String,
    /// Address to bind: any `127.x.y.z` or `[::1]`; port 0 picks a free port.
    #[serde(default = "default_address", deserialize_with = "socket_address")]
    #[schemars(with = "String")]
    pub address: SocketAddr,
    /// TLS (with SNI and ALPN) or cleartext (h2c by prior knowledge, and HTTP/1.1).
    #[serde(default = "default_true")]
    pub tls: bool,
    /// ALPN protocols offered on TLS, in preference order. A client that sends no ALPN gets
    /// HTTP/1.1 if it is offered, else the connection is closed. Cleartext listeners speak
    /// both h2c (prior knowledge) and HTTP/1.1 and ignore this.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<Alpn>,
    /// What the TLS handshake presents when the client's SNI names no host of this listener.
    #[serde(default)]
    pub unknown_sni: SniFallback,
    /// What the TLS handshake presents when the client sends no SNI at all (IP-literal URLs,
    /// some old clients). Defaults to `unknown_sni`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_sni: Option<SniFallback>,
    /// Bind on the same port as this (earlier) listener, on this listener's own IP: stages
    /// "same certificate, same port, different IP", where clients must not coalesce. The
    /// address's port must then be 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_from: Option<String>,
    /// The ORIGIN frame (RFC 8336) sent on this listener's HTTP/2 connections right after the
    /// server's first SETTINGS, unless the host the client's SNI selects has its own: the
    /// origins (`https://name[:port]`) the server says it is authoritative for. An empty list
    /// sends an empty ORIGIN frame; absent sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Vec<String>>,
    /// ALTSVC frames (RFC 7838 §4) sent on stream 0 of this listener's HTTP/2 connections
    /// after the first SETTINGS (and ORIGIN), unless the SNI's host has its own. Each needs
    /// its `origin` here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub altsvc: Vec<AltSvcSpec>,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn socket_address<'de, D: serde::Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(de)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address: expected IP:port such as \"127.0.0.2:0\" or \"[::1]:8443\" (port 0 picks a free port)"
        ))
    })
}

fn default_true() -> bool {
    true
}

fn default_alpn() -> Vec<Alpn> {
    vec![Alpn::H2, Alpn::Http11]
}

fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec {
        name: "main".to_owned(),
        address: default_address(),
        tls: true,
        alpn: default_alpn(),
        unknown_sni: SniFallback::default(),
        no_sni: None,
        port_from: None,
        origin: None,
        altsvc: Vec::new(),
    }]
}

/// An ALPN protocol id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Alpn {
    /// HTTP/2 over TLS.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

impl Alpn {
    /// The protocol id as sent on the wire.
    pub fn wire_id(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }
}

/// What a listener presents when SNI does not select a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum SniFallback {
    /// Fail the handshake (rustls sends an `access_denied` alert).
    #[default]
    Reject,
    /// Present this named certificate (it may deliberately not cover the name).
    Certificate(String),
}

tagged::one_key_enum!(SniFallback);

/// A virtual host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// The names this host answers to (exact names or `*.suffix` wildcards). The first is
    /// the host's display name.
    pub names: Vec<String>,
    /// The certificate presented when a client's SNI is one of `names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Listeners that serve this host; defaults to every listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<String>>,
    /// Normal responses, first matching path wins; unmatched paths get 200 with a body
    /// naming the host.
    #[serde(default)]
    pub responses: Vec<ResponseSpec>,
    /// The ORIGIN frame (RFC 8336) sent right after the server's first SETTINGS on an HTTP/2
    /// connection whose SNI selects this host; wins over the listener's. Any origins, also
    /// ones the certificate does not cover; an empty list sends an empty ORIGIN frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Vec<String>>,
    /// ALTSVC frames (RFC 7838 §4) sent on stream 0 after the first SETTINGS (and ORIGIN) on
    /// an HTTP/2 connection whose SNI selects this host; win over the listener's. `origin`
    /// defaults to `https://` and the host's first name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub altsvc: Vec<AltSvcSpec>,
}

/// One ALTSVC frame (RFC 7838 §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AltSvcSpec {
    /// The origin the alternative is for (`https://name[:port]`): the frame goes on stream 0.
    /// Absent in a rule: the frame goes on the request's stream and is about its origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The Alt-Svc field value (RFC 7838 §3), e.g. `h2="alt.test:8443"; ma=60`, or `clear`.
    pub value: String,
}

/// A connection-level frame a rule sends (h2 has no API for these): written at the next frame
/// boundary, before the rule's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum FrameSpec {
    /// An ORIGIN frame (RFC 8336) listing these origins (`https://name[:port]`); may be
    /// empty.
    Origin(Vec<String>),
    /// An ALTSVC frame (RFC 7838 §4).
    Altsvc(AltSvcSpec),
    /// A GOAWAY frame (RFC 9113 §6.8) with a chosen last-stream-id: streams at or below it
    /// are still served, those above are never answered (the client must retry them), and
    /// the connection closes once the served ones are done.
    Goaway(GoawayFrameSpec),
}

tagged::one_key_enum!(FrameSpec);

/// The most debug data a GOAWAY carries: the frame stays far below the smallest
/// SETTINGS_MAX_FRAME_SIZE (16 384, RFC 9113 §4.2).
pub const MAX_DEBUG_DATA_BYTES: usize = 256;

/// A GOAWAY frame a rule sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoawayFrameSpec {
    /// The last stream the server says it processed: a number, `this_stream` (the
    /// request's), `before_this_stream` (the request's − 2: the request is not processed) or
    /// `highest_seen` (the highest stream the connection has received). A GOAWAY never
    /// raises the id of an earlier one (RFC 9113 §6.8): the lower of the two is sent.
    #[serde(default)]
    pub last_stream_id: LastStreamId,
    /// Error code (RFC 9113 §7).
    #[serde(default = "default_goaway_code")]
    pub code: ErrorCode,
    /// Debug data (UTF-8, cut to 256 bytes); defaults to naming the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<String>,
}

/// Which last-stream-id a rule's GOAWAY names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LastStreamId {
    /// This stream id (0 to 2^31 − 1).
    Number(u32),
    /// A named choice.
    Named(NamedStreamId),
}

/// A last-stream-id relative to the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NamedStreamId {
    /// The request's stream: it is processed.
    ThisStream,
    /// The client stream before the request's (its id − 2, or 0): the request is not.
    #[default]
    BeforeThisStream,
    /// The highest stream the connection has received so far.
    HighestSeen,
}

impl Default for LastStreamId {
    fn default() -> Self {
        LastStreamId::Named(NamedStreamId::default())
    }
}

impl<'de> Deserialize<'de> for LastStreamId {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "a stream id (0 to 2147483647), \"this_stream\", \"before_this_stream\" or \"highest_seen\"";
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LastStreamId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LastStreamId, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|&id| id < 1 << 31)
                    .map(LastStreamId::Number)
                    .ok_or_else(|| {
                        E::custom(format!("{v} is not a stream id: expected {EXPECTED}"))
                    })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LastStreamId, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "{v} is not a stream id: expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LastStreamId, E> {
                NamedStreamId::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map(LastStreamId::Named)
                    .map_err(|_| {
                        E::custom(format!(
                            "{v:?} is not a last-stream-id: expected {EXPECTED}"
                        ))
                    })
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// A normal response of a virtual host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// Path this response is for: exact (`/a`) or prefix (`/static/*`); `*` for any.
    #[serde(default = "default_any_path")]
    pub path: String,
    /// HTTP status code.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body (UTF-8). Leave it out for an empty body, or give `body_file` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Response body read from this file (any bytes, binary allowed, at most 64 MiB), once,
    /// when the scenario is loaded. A relative path is resolved against the scenario file's
    /// folder, and the file must lie inside that folder unless the loader is told to allow
    /// files outside it. Not together with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<PathBuf>,
    /// The contents of `body_file`, read by the loader; not part of the file format.
    #[serde(skip)]
    #[schemars(skip)]
    pub file_body: Option<Bytes>,
}

impl ResponseSpec {
    /// The response body: `body` if given, else the contents of `body_file` (shared, not
    /// copied), else `None`.
    pub fn body_bytes(&self) -> Option<Bytes> {
        body_bytes(self.body.as_deref(), self.file_body.as_ref())
    }
}

fn body_bytes(body: Option<&str>, file_body: Option<&Bytes>) -> Option<Bytes> {
    match body {
        Some(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        None => file_body.cloned(),
    }
}

fn default_any_path() -> String {
    "*".to_owned()
}

fn default_status() -> u16 {
    200
}

/// An ordered misdirection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Name recorded in the journal when the rule fires; defaults to `rules[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, all of which must hold; an empty matcher matches every request.
    #[serde(default)]
    pub when: Matcher,
    /// What to do with a matching request; absent, it gets its host's normal answer (a rule
    /// that only sends frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Connection-level frames (ORIGIN, ALTSVC, GOAWAY) written before the action is carried
    /// out, at the next frame boundary; HTTP/2 only (on HTTP/1.1 the journal says they were
    /// not sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send: Vec<FrameSpec>,
    /// Wait this long before carrying out the action.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// How often the rule may fire; once used up it no longer matches.
    #[serde(default)]
    pub limit: Limit,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Conditions on a request and its connection. Absent fields are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Request authority (`:authority` or `Host`, without port): exact or `*.suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Request path: exact (`/a`) or prefix (`/static/*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Request method, e.g. `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A request header that must be present (with this value, if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Name of the listener the connection arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// The TLS SNI of the connection: exact or `*.suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `true`: only connections without SNI; `false`: only connections with SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_absent: Option<bool>,
    /// `true`: the authority is not the connection's SNI (what coalescing produces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_differs_from_sni: Option<bool>,
    /// `true`: the certificate served on this connection does not cover the authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_not_covered: Option<bool>,
    /// `true`: the request is coalesced — its authority is not the name the connection was
    /// opened for (the SNI, or without SNI the connection's first authority), as the
    /// journal's `coalesced` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<bool>,
    /// Position of the request on its connection (1 = first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_on_connection: Option<CountRange>,
    /// Attempt number of this request (same method, authority, path): 1 = first try,
    /// 2 = first retry, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<CountRange>,
    /// Every Nth request the server receives (counted over all connections, from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_nth: Option<u64>,
    /// Milliseconds since the connection was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_age_ms: Option<CountRange>,
    /// Chance in [0, 1] that the rule applies, drawn from the scenario's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value; absent means "present with any value".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A whole-number condition: an exact number or an inclusive range.
///
/// The object form rejects unknown keys like every other object of the format (a misspelt
/// `"maxx"` would otherwise silently mean "no upper bound"), so it is deserialized by hand:
/// an untagged enum would accept any object and lose the path of the bad key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CountRange {
    /// Exactly this number.
    Exactly(u64),
    /// Between `min` and `max`, both inclusive and both optional.
    Between {
        /// Lowest accepted value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        /// Highest accepted value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
}

/// The object form of [`CountRange`], as the file spells it (and as the schema shows it).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
struct Bounds {
    /// Lowest accepted value.
    min: Option<u64>,
    /// Highest accepted value.
    max: Option<u64>,
}

/// The forms of [`CountRange`], for the schema only.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CountRangeForm {
    /// Exactly this number.
    Exactly(u64),
    /// Between `min` and `max`, both inclusive and both optional.
    Between(Bounds),
}

const COUNT_RANGE_EXPECTED: &str = "a whole number or an object {\"min\": N, \"max\": M}";

impl<'de> Deserialize<'de> for CountRange {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CountRange;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(COUNT_RANGE_EXPECTED)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<CountRange, E> {
                Ok(CountRange::Exactly(n))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<CountRange, A::Error> {
                // Through the caller's own map access, so that an unknown key's error carries
                // its path (serde_path_to_error follows the keys).
                let Bounds { min, max } =
                    Bounds::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(CountRange::Between { min, max })
            }
        }

        de.deserialize_any(Visitor)
    }
}

impl JsonSchema for CountRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountRange".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = CountRangeForm::json_schema(generator);
        schema.insert(
            "description".to_owned(),
            "A whole-number condition: an exact number or an inclusive range {\"min\": N, \"max\": M} (both optional, both inclusive)."
                .into(),
        );
        schema
    }
}

impl CountRange {
    /// Whether `value` lies in the range.
    pub fn contains(&self, value: u64) -> bool {
        match *self {
            CountRange::Exactly(n) => value == n,
            CountRange::Between { min, max } => {
                min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max)
            }
        }
    }
}

/// What the server does with a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum Action {
    /// Answer with this response (`421` is just a status).
    Respond(RespondAction),
    /// Reset the request's stream (RST_STREAM, RFC 9113 §6.4); on HTTP/1.1 the connection
    /// is closed instead.
    ResetStream(ResetAction),
    /// Send GOAWAY (RFC 9113 §6.8).
    Goaway(GoawayAction),
    /// Close the TCP connection without a response.
    Close,
}

tagged::one_key_enum!(Action);

/// A scripted response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondAction {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body (UTF-8); a 421 without one (and without `body_file`) gets a short
    /// explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Response body read from this file (any bytes, binary allowed, at most 64 MiB), once,
    /// when the scenario is loaded. A relative path is resolved against the scenario file's
    /// folder, and the file must lie inside that folder unless the loader is told to allow
    /// files outside it. Not together with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<PathBuf>,
    /// The contents of `body_file`, read by the loader; not part of the file format.
    #[serde(skip)]
    #[schemars(skip)]
    pub file_body: Option<Bytes>,
}

impl RespondAction {
    /// The response body: `body` if given, else the contents of `body_file` (shared, not
    /// copied), else `None`.
    pub fn body_bytes(&self) -> Option<Bytes> {
        body_bytes(self.body.as_deref(), self.file_body.as_ref())
    }
}

/// RST_STREAM parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetAction {
    /// Error code (RFC 9113 §7), e.g. `REFUSED_STREAM`.
    #[serde(default = "default_reset_code")]
    pub code: ErrorCode,
}

fn default_reset_code() -> ErrorCode {
    ErrorCode::RefusedStream
}

/// GOAWAY parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoawayAction {
    /// Error code (RFC 9113 §7).
    #[serde(default = "default_goaway_code")]
    pub code: ErrorCode,
    /// `true`: this request is answered normally and the connection drains; `false`: the
    /// last-stream-id excludes this request, so the client knows it was not processed and
    /// may retry it elsewhere, and the connection closes.
    #[serde(default)]
    pub graceful: bool,
}

fn default_goaway_code() -> ErrorCode {
    ErrorCode::NoError
}

/// HTTP/2 error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum ErrorCode {
    NoError,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
}

impl ErrorCode {
    /// The numeric code on the wire.
    pub fn value(self) -> u32 {
        self as u32
    }
}

/// Caps on how often a rule fires. Absent caps do not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// At most this many times in the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// At most this many times on any one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_connection: Option<u64>,
    /// At most this many times for any one authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_authority: Option<u64>,
}

/// The requests a client under test makes, in order, through one client instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPlan {
    /// The steps, carried out one after the other.
    pub steps: Vec<ClientStep>,
}

/// One step of a client plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum ClientStep {
    /// Make a request and wait for its response (retries are the client's business).
    Request(PlannedRequest),
    /// Wait this many milliseconds.
    PauseMs(u64),
}

tagged::one_key_enum!(ClientStep);

/// A request of a client plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedRequest {
    /// Method.
    #[serde(default = "default_method")]
    pub method: String,
    /// URL by host name and path, without port: `https://b.test/x`. The adapter maps the
    /// name to the listener's address and port.
    pub url: String,
    /// Listener to reach; defaults to the first listener that serves the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// Something a correct client will have done; evaluated against the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum Expectation {
    /// Every request answered with the signal (421 by default) was retried (same method,
    /// authority, path and body) on a different connection.
    RetriedOnNewConnection(RetryExpectation),
    /// Every request answered with the signal was retried, on any connection (RST_STREAM
    /// REFUSED_STREAM allows a retry on the same one, RFC 9113 §8.7).
    Retried(RetryExpectation),
    /// No request answered 421 was retried on the connection that answered it.
    NoRetryOnSameConnection(AuthorityFilter),
    /// After a 421 for an authority on a connection whose SNI differs, no later request for
    /// it arrived on such a connection.
    StoppedCoalescing(StoppedCoalescing),
    /// The authority was requested on a connection whose SNI was another name.
    Coalesced(AuthorityName),
    /// The authority was never requested on a connection whose SNI was another name.
    NotCoalesced(AuthorityName),
    /// No request (same method, authority, path) was attempted more than `max` times.
    MaxAttempts(MaxAttempts),
    /// Every retry of a 421-answered request carried a body identical to the original.
    RetrySameBody(AuthorityFilter),
    /// No request arrived on a connection after an ORIGIN frame (RFC 8336) whose origin set
    /// leaves its origin out: the set is the connection's own origin (its SNI) plus every
    /// origin the ORIGIN frames sent on it so far listed.
    RespectedOrigin(AuthorityFilter),
    /// The number of connections opened lies in the range.
    Connections(CountRange),
    /// The number of requests received lies in the range.
    Requests(CountRange),
}

tagged::one_key_enum!(Expectation);

/// Parameters of `retried_on_new_connection`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryExpectation {
    /// Only requests for this authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Which answer asks for the retry.
    #[serde(default, skip_serializing_if = "is_default_signal")]
    pub after: Signal,
    /// The retry must arrive within this many milliseconds of the 421.
    #[serde(default = "default_retry_within_ms")]
    pub within_ms: u64,
    /// How binding it is; defaults to the expectation's own level (see [`Expectation::level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// A server answer that tells the client to retry elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Signal {
    /// Status 421 Misdirected Request (RFC 9110 §15.5.20).
    #[default]
    #[serde(rename = "421")]
    Misdirected,
    /// RST_STREAM with REFUSED_STREAM: not processed, safe to retry (RFC 9113 §8.7).
    #[serde(rename = "refused_stream")]
    RefusedStream,
    /// A GOAWAY whose last-stream-id excluded the request (RFC 9113 §6.8): the rule's
    /// immediate GOAWAY, or any stream above the last-stream-id of a GOAWAY sent on its
    /// connection.
    #[serde(rename = "goaway")]
    Goaway,
}

fn is_default_signal(signal: &Signal) -> bool {
    *signal == Signal::default()
}

fn default_retry_within_ms() -> u64 {
    5000
}

/// An optional authority restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorityFilter {
    /// Only requests for this authority; absent means every authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// How binding it is; defaults to the expectation's own level (see [`Expectation::level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// Parameters of `stopped_coalescing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoppedCoalescing {
    /// Only requests for this authority; absent means every authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Requests received within this many milliseconds after the 421 was answered were
    /// already in flight (sent before the client could have seen it) and are not counted.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// How binding it is; defaults to the expectation's own level (see [`Expectation::level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

fn default_grace_ms() -> u64 {
    0
}

/// A required authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorityName {
    /// The authority the expectation is about.
    pub authority: String,
    /// How binding it is; defaults to the expectation's own level (see [`Expectation::level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// Parameters of `max_attempts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxAttempts {
    /// Highest allowed attempt count of any one request.
    pub max: u64,
    /// Only requests for this authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// How binding it is; defaults to the expectation's own level (see [`Expectation::level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

impl Expectation {
    /// How binding it is: the level the scenario gives it, else its kind's — `must` for what
    /// an RFC requires (not coalescing where the certificate, the address or an ORIGIN frame
    /// forbids it; a retry carrying the same body), `should` for what it recommends (no retry
    /// on the connection that answered 421, no more coalescing after a 421, no endless
    /// retries), `robust` for what it only allows (retrying at all, coalescing, counts).
    pub fn level(&self) -> Level {
        let (given, default) = match self {
            Expectation::RetriedOnNewConnection(e) | Expectation::Retried(e) => {
                (e.level, Level::Robust)
            }
            Expectation::NoRetryOnSameConnection(e) => (e.level, Level::Should),
            Expectation::StoppedCoalescing(e) => (e.level, Level::Should),
            Expectation::Coalesced(e) => (e.level, Level::Robust),
            Expectation::NotCoalesced(e) => (e.level, Level::Must),
            Expectation::MaxAttempts(e) => (e.level, Level::Should),
            Expectation::RetrySameBody(e) => (e.level, Level::Must),
            Expectation::RespectedOrigin(e) => (e.level, Level::Must),
            Expectation::Connections(_) | Expectation::Requests(_) => (None, Level::Robust),
        };
        given.unwrap_or(default)
    }
}

impl Scenario {
    /// The certificate spec of that name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateSpec> {
        self.certificates.iter().find(|c| c.name == name)
    }

    /// The listener spec of that name.
    pub fn listener(&self, name: &str) -> Option<&ListenerSpec> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Whether `host` is served on the listener named `listener`.
    pub fn host_on_listener(host: &HostSpec, listener: &str) -> bool {
        host.listeners
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == listener))
    }
}

/// Whether a DNS name matches a pattern: exact (case-insensitive) or `*.suffix`, where the
/// wildcard stands for exactly one label (RFC 6125 §6.4.3, as clients check certificates).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// Whether a path matches a pattern: `*` (any), `/prefix/*` (prefix) or an exact path.
/// The query string is not part of the match.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(name_matches("*.site.test", "a.site.test"));
        assert!(name_matches("*.site.test", "A.Site.Test."));
        assert!(!name_matches("*.site.test", "site.test"));
        assert!(!name_matches("*.site.test", "x.a.site.test"));
        assert!(name_matches("a.test", "A.TEST"));
        assert!(!name_matches("a.test", "b.test"));
    }

    #[test]
    fn path_patterns_are_exact_prefix_or_any() {
        assert!(path_matches("*", "/anything"));
        assert!(path_matches("/static/*", "/static/x.js"));
        assert!(!path_matches("/static/*", "/other"));
        assert!(path_matches("/a", "/a?x=1"));
        assert!(!path_matches("/a", "/ab"));
    }

    #[test]
    fn one_key_objects_read_from_text_too() {
        // Not only through serde_json::Value (the loader's way) but straight from text.
        let action: Action = serde_json::from_str(r#"{"respond": {"status": 421}}"#).expect("ok");
        assert!(matches!(
            action,
            Action::Respond(RespondAction { status: 421, .. })
        ));
        assert_eq!(
            serde_json::from_str::<Action>(r#""close""#).expect("ok"),
            Action::Close
        );
        let err = serde_json::from_str::<Action>(r#"{"respond": {"status": 421}, "x": 1}"#)
            .expect_err("two keys");
        assert!(
            err.to_string()
                .starts_with("unexpected second key `x`: this object takes exactly one key, one of `respond`, `reset_stream`, `goaway`, `close`"),
            "{err}"
        );
        let err = serde_json::from_str::<ClientStep>("{}").expect_err("no key");
        assert!(
            err.to_string()
                .starts_with("an empty object: give exactly one key, one of `request`, `pause_ms`"),
            "{err}"
        );
        let err = serde_json::from_str::<SniFallback>("7").expect_err("a number");
        assert!(
            err.to_string().starts_with(
                "invalid type: integer `7`, expected a string or an object with one key, one of `reject`, `certificate`"
            ),
            "{err}"
        );
    }

    #[test]
    fn one_key_objects_serialize_as_derived() {
        for (value, json) in [
            (
                serde_json::to_value(Action::Close).expect("ok"),
                serde_json::json!("close"),
            ),
            (
                serde_json::to_value(ClientStep::PauseMs(5)).expect("ok"),
                serde_json::json!({"pause_ms": 5}),
            ),
            (
                serde_json::to_value(SniFallback::Certificate("a".into())).expect("ok"),
                serde_json::json!({"certificate": "a"}),
            ),
            (
                serde_json::to_value(Expectation::Requests(CountRange::Exactly(2))).expect("ok"),
                serde_json::json!({"requests": 2}),
            ),
        ] {
            assert_eq!(value, json);
        }
    }

    #[test]
    fn count_ranges_read_from_text_reject_unknown_keys() {
        assert_eq!(
            serde_json::from_str::<CountRange>(r#"{"min": 1}"#).expect("ok"),
            CountRange::Between {
                min: Some(1),
                max: None
            }
        );
        assert_eq!(
            serde_json::from_str::<CountRange>("4").expect("ok"),
            CountRange::Exactly(4)
        );
        let err = serde_json::from_str::<CountRange>(r#"{"min": 1, "maxx": 2}"#).expect_err("typo");
        assert!(
            err.to_string()
                .starts_with("unknown field `maxx`, expected `min` or `max`"),
            "{err}"
        );
        for bad in ["-1", "1.5", "\"2\"", "[1, 2]", "null"] {
            let err = serde_json::from_str::<CountRange>(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .contains(r#"expected a whole number or an object {"min": N, "max": M}"#),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn body_bytes_prefers_the_inline_body() {
        let mut response = ResponseSpec {
            path: "*".into(),
            status: 200,
            headers: BTreeMap::new(),
            body: None,
            body_file: Some("x.bin".into()),
            file_body: Some(Bytes::from_static(b"\x00file")),
        };
        assert_eq!(response.body_bytes().as_deref(), Some(&b"\x00file"[..]));
        response.body = Some("inline".into());
        assert_eq!(response.body_bytes().as_deref(), Some(&b"inline"[..]));
        response.body = None;
        response.file_body = None;
        assert_eq!(response.body_bytes(), None);
    }

    #[test]
    fn count_range_bounds_are_inclusive() {
        let r = CountRange::Between {
            min: Some(2),
            max: Some(3),
        };
        assert!(!r.contains(1) && r.contains(2) && r.contains(3) && !r.contains(4));
        assert!(CountRange::Exactly(1).contains(1));
        assert!(!CountRange::Exactly(1).contains(2));
    }
}
