//! Expectations → verdict, from the journal alone. The same function serves `misdirect run`,
//! the control API and the library, so they cannot disagree.
//!
//! Each expectation passes, fails, or was **not exercised** (nothing in the journal could
//! show it either way — no 421 was ever sent, so "every 421 was retried" would hold
//! vacuously). Not exercised fails the verdict unless the caller allows it: a test command
//! that never reached the misdirection must not pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::{Action, Event, EventKind, HARNESS_PATH_PREFIX, RequestEvent, SentFrame};
use crate::scenario::{CountRange, ErrorCode, Expectation, Level, Signal, name_matches};

/// How one expectation came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The journal shows it held.
    Pass,
    /// The journal shows it did not.
    Fail,
    /// Nothing in the journal could show it either way.
    NotExercised,
}

/// One expectation's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Position in the scenario's `expect` list.
    pub index: usize,
    /// Short name, e.g. `retried_on_new_connection (b.test)`.
    pub expectation: String,
    /// Pass, fail or not exercised.
    pub status: Status,
    /// How binding it is: `must`, `should` or `robust`.
    pub level: Level,
    /// One line for a human, e.g. `GET https://b.test/x got 421 on connection 3 (SNI a.test)
    /// and was never retried`.
    pub explanation: String,
    /// Sequence numbers of the journal events that show it.
    pub evidence: Vec<u64>,
}

/// Every expectation's result and the overall answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether every expectation passed (not exercised counts as failed unless allowed).
    pub passed: bool,
    /// Per expectation, in scenario order.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Counts of (passed, failed, not exercised).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::NotExercised),
        )
    }

    /// A readable table, one line per expectation, then the overall line.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.expectation.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::NotExercised => "NOT EXERCISED",
            };
            let level = check.level.as_str();
            let evidence = if check.evidence.is_empty() {
                String::new()
            } else {
                let seqs: Vec<String> = check.evidence.iter().map(u64::to_string).collect();
                format!("  [seq {}]", seqs.join(", "))
            };
            out.push_str(&format!(
                "{status:<13}  {level:<6}  {:<width$}  {}{evidence}\n",
                check.expectation, check.explanation
            ));
        }
        let (passed, failed, unexercised) = self.counts();
        out.push_str(&format!(
            "verdict: {} ({passed} passed, {failed} failed, {unexercised} not exercised)\n",
            if self.passed { "PASS" } else { "FAIL" }
        ));
        out
    }
}

/// Evaluates expectations against journal events. `allow_not_exercised` lets an
/// expectation that nothing exercised pass the verdict.
pub fn evaluate(
    expectations: &[Expectation],
    events: &[Event],
    allow_not_exercised: bool,
) -> Verdict {
    let run = Run::new(events);
    let checks: Vec<Check> = expectations
        .iter()
        .enumerate()
        .map(|(index, expectation)| {
            let (status, explanation, evidence) = run.check(expectation);
            Check {
                index,
                expectation: label(expectation),
                status,
                level: expectation.level(),
                explanation,
                evidence,
            }
        })
        .collect();
    let passed = checks.iter().all(|c| match c.status {
        Status::Pass => true,
        Status::Fail => false,
        Status::NotExercised => allow_not_exercised,
    });
    Verdict { passed, checks }
}

/// The short name a verdict gives an expectation, e.g. `retried_on_new_connection (b.test)`.
pub fn label(expectation: &Expectation) -> String {
    let with = |name: &str, authority: Option<&str>| match authority {
        Some(a) => format!("{name} ({a})"),
        None => name.to_owned(),
    };
    let range = |r: &CountRange| match *r {
        CountRange::Exactly(n) => format!("= {n}"),
        CountRange::Between { min, max } => match (min, max) {
            (Some(min), Some(max)) => format!("{min}..={max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => "any".to_owned(),
        },
    };
    match expectation {
        Expectation::RetriedOnNewConnection(e) => with(
            &format!("retried_on_new_connection{}", after_label(e.after)),
            e.authority.as_deref(),
        ),
        Expectation::Retried(e) => with(
            &format!("retried{}", after_label(e.after)),
            e.authority.as_deref(),
        ),
        Expectation::NoRetryOnSameConnection(e) => {
            with("no_retry_on_same_connection", e.authority.as_deref())
        }
        Expectation::StoppedCoalescing(e) => with("stopped_coalescing", e.authority.as_deref()),
        Expectation::Coalesced(e) => format!("coalesced ({})", e.authority),
        Expectation::NotCoalesced(e) => format!("not_coalesced ({})", e.authority),
        Expectation::MaxAttempts(e) => {
            with(&format!("max_attempts {}", e.max), e.authority.as_deref())
        }
        Expectation::RetrySameBody(e) => with("retry_same_body", e.authority.as_deref()),
        Expectation::RespectedOrigin(e) => with("respected_origin", e.authority.as_deref()),
        Expectation::Connections(r) => format!("connections {}", range(r)),
        Expectation::Requests(r) => format!("requests {}", range(r)),
    }
}

fn after_label(signal: Signal) -> &'static str {
    match signal {
        Signal::Misdirected => "",
        Signal::RefusedStream => " after refused_stream",
        Signal::Goaway => " after goaway",
    }
}

/// How a signal reads in an explanation: "got 421", "got RST_STREAM REFUSED_STREAM", …
fn signal_words(signal: Signal) -> &'static str {
    match signal {
        Signal::Misdirected => "421",
        Signal::RefusedStream => "RST_STREAM REFUSED_STREAM",
        Signal::Goaway => "a GOAWAY that excluded it",
    }
}

/// A request with the facts of its connection and its journal sequence number.
struct Req<'a> {
    seq: u64,
    event: &'a RequestEvent,
}

impl Req<'_> {
    /// What identifies "the same request" across attempts.
    fn key(&self) -> (&str, &str, &str) {
        (&self.event.method, &self.event.authority, &self.event.path)
    }

    fn url(&self) -> String {
        format!(
            "{} {}://{}{}",
            self.event.method, self.event.scheme, self.event.authority, self.event.path
        )
    }

    fn on(&self) -> String {
        match &self.event.sni {
            Some(sni) => format!("connection {} (SNI {sni})", self.event.connection),
            None => format!("connection {} (no SNI)", self.event.connection),
        }
    }

    fn misdirected(&self) -> bool {
        self.event.status == Some(421)
    }

    fn got(&self, signal: Signal) -> bool {
        match signal {
            Signal::Misdirected => self.misdirected(),
            Signal::RefusedStream => self.event.reset_code == Some(ErrorCode::RefusedStream),
            Signal::Goaway => self.event.action == Action::Goaway && self.event.status.is_none(),
        }
    }

    /// On a connection opened for another name than the one requested, as the engine
    /// computed and the journal recorded it.
    fn coalesced(&self) -> bool {
        self.event.coalesced
    }

    fn for_authority(&self, authority: Option<&str>) -> bool {
        authority.is_none_or(|a| name_matches(a, &self.event.authority))
    }

    fn answered_ms(&self) -> f64 {
        self.event.received_ms + self.event.duration_ms
    }
}

/// An ORIGIN frame sent: (seq, sent at ms, origins).
type OriginSent<'a> = (u64, f64, &'a [String]);

struct Run<'a> {
    requests: Vec<Req<'a>>,
    connections: Vec<u64>,
    /// Per connection: the server port it arrived on.
    ports: BTreeMap<u64, u16>,
    /// Per connection: the ORIGIN frames sent on it.
    origin_frames: BTreeMap<u64, Vec<OriginSent<'a>>>,
}

/// What one check found: its status, the explanation, and the evidence (sequence numbers).
type CheckResult = (Status, String, Vec<u64>);

impl<'a> Run<'a> {
    fn new(events: &'a [Event]) -> Run<'a> {
        let requests = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Request(r) if !r.path.starts_with(HARNESS_PATH_PREFIX) => Some(Req {
                    seq: e.seq,
                    event: r,
                }),
                _ => None,
            })
            .collect();
        let connections = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ConnectionOpened { .. } => Some(e.seq),
                _ => None,
            })
            .collect();
        let mut ports = BTreeMap::new();
        let mut origin_frames: BTreeMap<u64, Vec<OriginSent<'a>>> = BTreeMap::new();
        for e in events {
            match &e.kind {
                EventKind::ConnectionOpened {
                    connection, local, ..
                } => {
                    if let Ok(address) = local.parse::<std::net::SocketAddr>() {
                        ports.insert(*connection, address.port());
                    }
                }
                EventKind::FrameSent {
                    connection,
                    frame: SentFrame::Origin { origins },
                    ..
                } => origin_frames.entry(*connection).or_default().push((
                    e.seq,
                    e.elapsed_ms,
                    origins,
                )),
                _ => {}
            }
        }
        Run {
            requests,
            connections,
            ports,
            origin_frames,
        }
    }

    /// RFC 8336 §2.3–2.4: once an ORIGIN frame is on a connection, the client may use it only
    /// for the origins of its origin set.
    fn respected_origin(&self, authority: Option<&str>) -> CheckResult {
        let mut judged = Vec::new();
        for r in self.requests.iter().filter(|r| r.for_authority(authority)) {
            let connection = r.event.connection;
            // Clients ignore ORIGIN on cleartext connections (RFC 8336 §2.2).
            if r.event.scheme != crate::journal::Scheme::Https {
                continue;
            }
            let Some(frames) = self.origin_frames.get(&connection) else {
                continue;
            };
            // Frames that had left before the request arrived.
            let before: Vec<&OriginSent<'_>> = frames
                .iter()
                .filter(|(_, at, _)| *at <= r.event.received_ms)
                .collect();
            if before.is_empty() {
                continue;
            }
            let port = self.ports.get(&connection).copied();
            let scheme = r.event.scheme.to_string();
            let wanted = Origin::of(&scheme, &r.event.authority, port);
            let own = r
                .event
                .sni
                .as_deref()
                .map(|sni| Origin::of("https", sni, port));
            let in_set = own.as_ref() == Some(&wanted)
                || before.iter().any(|(_, _, origins)| {
                    origins
                        .iter()
                        .any(|o| Origin::parse(o).as_ref() == Some(&wanted))
                });
            if !in_set {
                let (frame_seq, _, _) = before[before.len() - 1];
                return (
                    Status::Fail,
                    format!(
                        "{} arrived on {} after its ORIGIN frame, whose origin set leaves {wanted} out",
                        r.url(),
                        r.on()
                    ),
                    vec![*frame_seq, r.seq],
                );
            }
            judged.push(r.seq);
        }
        if judged.is_empty() {
            return not_exercised(
                "no request arrived on a connection after an ORIGIN frame",
                authority,
            );
        }
        (
            Status::Pass,
            format!(
                "{} request(s) after an ORIGIN frame, each within its connection's origin set",
                judged.len()
            ),
            judged,
        )
    }

    fn check(&self, expectation: &Expectation) -> CheckResult {
        match expectation {
            Expectation::RetriedOnNewConnection(e) => {
                self.retried(e.authority.as_deref(), e.within_ms as f64, e.after, true)
            }
            Expectation::Retried(e) => {
                self.retried(e.authority.as_deref(), e.within_ms as f64, e.after, false)
            }
            Expectation::NoRetryOnSameConnection(e) => {
                self.no_retry_on_same_connection(e.authority.as_deref())
            }
            Expectation::StoppedCoalescing(e) => {
                self.stopped_coalescing(e.authority.as_deref(), e.grace_ms as f64)
            }
            Expectation::Coalesced(e) => self.coalesced(&e.authority, true),
            Expectation::NotCoalesced(e) => self.coalesced(&e.authority, false),
            Expectation::MaxAttempts(e) => self.max_attempts(e.max, e.authority.as_deref()),
            Expectation::RetrySameBody(e) => self.retry_same_body(e.authority.as_deref()),
            Expectation::RespectedOrigin(e) => self.respected_origin(e.authority.as_deref()),
            Expectation::Connections(range) => {
                count_check("connection", self.connections.clone(), range)
            }
            Expectation::Requests(range) => count_check(
                "request",
                self.requests.iter().map(|r| r.seq).collect(),
                range,
            ),
        }
    }

    /// The first signalled attempt of each request (method, authority, path), in journal
    /// order: later ones are retries that were themselves signalled.
    fn first_signalled(&self, authority: Option<&str>, signal: Signal) -> Vec<&Req<'a>> {
        let mut seen = BTreeMap::new();
        self.requests
            .iter()
            .filter(|r| r.got(signal) && r.for_authority(authority))
            .filter(|r| seen.insert(r.key(), ()).is_none())
            .collect()
    }

    /// Attempts of the same request after `original`.
    fn later_attempts<'s>(&'s self, original: &'s Req<'a>) -> impl Iterator<Item = &'s Req<'a>> {
        self.requests
            .iter()
            .filter(move |r| r.seq > original.seq && r.key() == original.key())
    }

    fn retried(
        &self,
        authority: Option<&str>,
        within_ms: f64,
        signal: Signal,
        new_connection: bool,
    ) -> CheckResult {
        let words = signal_words(signal);
        let originals = self.first_signalled(authority, signal);
        if originals.is_empty() {
            return not_exercised(&format!("no request got {words}"), authority);
        }
        let mut evidence = Vec::new();
        for original in &originals {
            let same_body = |r: &&Req<'_>| r.event.body_sha256 == original.event.body_sha256;
            let retry = self
                .later_attempts(original)
                .filter(same_body)
                .find(|r| !new_connection || r.event.connection != original.event.connection);
            match retry {
                Some(retry) if retry.event.received_ms - original.answered_ms() <= within_ms => {
                    evidence.extend([original.seq, retry.seq]);
                }
                Some(retry) => {
                    return (
                        Status::Fail,
                        format!(
                            "{} got {words} on {} and was retried on {} only after {:.0} ms (within_ms {within_ms:.0})",
                            original.url(),
                            original.on(),
                            retry.on(),
                            retry.event.received_ms - original.answered_ms()
                        ),
                        vec![original.seq, retry.seq],
                    );
                }
                None => {
                    let same = self
                        .later_attempts(original)
                        .find(|r| r.event.connection == original.event.connection);
                    let explanation = match same {
                        Some(r) if new_connection => format!(
                            "{} got {words} on {} and was retried only on the same connection (seq {})",
                            original.url(),
                            original.on(),
                            r.seq
                        ),
                        _ if new_connection => format!(
                            "{} got {words} on {} and was never retried on another connection",
                            original.url(),
                            original.on()
                        ),
                        _ => format!(
                            "{} got {words} on {} and was never retried",
                            original.url(),
                            original.on()
                        ),
                    };
                    return (Status::Fail, explanation, vec![original.seq]);
                }
            }
        }
        let first = originals[0];
        let place = if new_connection {
            " on a new connection"
        } else {
            ""
        };
        (
            Status::Pass,
            format!(
                "{} request(s) that got {words} retried{place}, e.g. {} ({words} on {})",
                originals.len(),
                first.url(),
                first.on()
            ),
            evidence,
        )
    }

    fn no_retry_on_same_connection(&self, authority: Option<&str>) -> CheckResult {
        let misdirected: Vec<&Req<'a>> = self
            .requests
            .iter()
            .filter(|r| r.misdirected() && r.for_authority(authority))
            .collect();
        if misdirected.is_empty() {
            return not_exercised("no request got 421", authority);
        }
        for original in &misdirected {
            if let Some(again) = self
                .later_attempts(original)
                .find(|r| r.event.connection == original.event.connection)
            {
                return (
                    Status::Fail,
                    format!(
                        "{} got 421 on {} and was retried on the same connection (seq {})",
                        original.url(),
                        original.on(),
                        again.seq
                    ),
                    vec![original.seq, again.seq],
                );
            }
        }
        (
            Status::Pass,
            format!(
                "none of {} response(s) with 421 was retried on its own connection",
                misdirected.len()
            ),
            misdirected.iter().map(|r| r.seq).collect(),
        )
    }

    fn stopped_coalescing(&self, authority: Option<&str>, grace_ms: f64) -> CheckResult {
        let coalesced_421s: Vec<&Req<'a>> = self
            .requests
            .iter()
            .filter(|r| r.misdirected() && r.coalesced() && r.for_authority(authority))
            .collect();
        let Some(first) = coalesced_421s.first() else {
            return not_exercised(
                "no request got 421 on a connection opened for another name",
                authority,
            );
        };
        for misdirected in &coalesced_421s {
            let after = misdirected.answered_ms() + grace_ms;
            if let Some(again) = self.requests.iter().find(|r| {
                r.seq > misdirected.seq
                    && r.event.received_ms > after
                    && r.event.authority == misdirected.event.authority
                    && r.coalesced()
            }) {
                return (
                    Status::Fail,
                    format!(
                        "{} got 421 on {}, yet {} was later sent on {} again",
                        misdirected.url(),
                        misdirected.on(),
                        again.event.authority,
                        again.on()
                    ),
                    vec![misdirected.seq, again.seq],
                );
            }
        }
        (
            Status::Pass,
            format!(
                "after the 421 on {}, no request for {} came on a connection opened for another name",
                first.on(),
                first.event.authority
            ),
            coalesced_421s.iter().map(|r| r.seq).collect(),
        )
    }

    fn coalesced(&self, authority: &str, expected: bool) -> CheckResult {
        let asked: Vec<&Req<'a>> = self
            .requests
            .iter()
            .filter(|r| r.for_authority(Some(authority)))
            .collect();
        if asked.is_empty() {
            return not_exercised(&format!("{authority} was never requested"), None);
        }
        let coalesced = asked.iter().find(|r| r.coalesced());
        match (coalesced, expected) {
            (Some(r), true) => (
                Status::Pass,
                format!("{} came on {}", r.url(), r.on()),
                vec![r.seq],
            ),
            (Some(r), false) => (
                Status::Fail,
                format!("{} was coalesced: it came on {}", r.url(), r.on()),
                vec![r.seq],
            ),
            (None, true) => (
                Status::Fail,
                format!(
                    "{authority} was requested {} time(s), never on a connection opened for another name",
                    asked.len()
                ),
                asked.iter().map(|r| r.seq).collect(),
            ),
            (None, false) => (
                Status::Pass,
                format!(
                    "{authority} was requested {} time(s), always on its own connection",
                    asked.len()
                ),
                asked.iter().map(|r| r.seq).collect(),
            ),
        }
    }

    fn max_attempts(&self, max: u64, authority: Option<&str>) -> CheckResult {
        let mut attempts: BTreeMap<(&str, &str, &str), Vec<&Req<'a>>> = BTreeMap::new();
        for r in self.requests.iter().filter(|r| r.for_authority(authority)) {
            attempts.entry(r.key()).or_default().push(r);
        }
        let Some((_, most)) = attempts.iter().max_by_key(|(_, tries)| tries.len()) else {
            return not_exercised("no request was made", authority);
        };
        let count = most.len() as u64;
        let seqs: Vec<u64> = most.iter().map(|r| r.seq).collect();
        if count > max {
            (
                Status::Fail,
                format!("{} was attempted {count} times (max {max})", most[0].url()),
                seqs,
            )
        } else {
            (
                Status::Pass,
                format!(
                    "at most {count} attempt(s) of any request (max {max}), e.g. {}",
                    most[0].url()
                ),
                seqs,
            )
        }
    }

    fn retry_same_body(&self, authority: Option<&str>) -> CheckResult {
        let originals = self.first_signalled(authority, Signal::Misdirected);
        let mut compared = Vec::new();
        for original in &originals {
            for retry in self.later_attempts(original) {
                if retry.event.body_sha256 != original.event.body_sha256 {
                    return (
                        Status::Fail,
                        format!(
                            "{}: the retry on {} carried {} bytes (sha256 {}…), the original {} bytes (sha256 {}…)",
                            original.url(),
                            retry.on(),
                            retry.event.body_bytes,
                            &retry.event.body_sha256.get(..12).unwrap_or_default(),
                            original.event.body_bytes,
                            &original.event.body_sha256.get(..12).unwrap_or_default(),
                        ),
                        vec![original.seq, retry.seq],
                    );
                }
                compared.extend([original.seq, retry.seq]);
            }
        }
        if compared.is_empty() {
            return not_exercised("no request that got 421 was retried", authority);
        }
        (
            Status::Pass,
            "every retry after a 421 carried the same body as the original".to_owned(),
            compared,
        )
    }
}

/// An origin as RFC 6454 compares them: scheme, host (lower case), port (the scheme's default
/// when not written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(scheme: &str, host: &str, port: Option<u16>) -> Origin {
        let default = match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port: port.or(default),
        }
    }

    /// `scheme://host[:port]`, as an ORIGIN frame lists it.
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let authority: http::uri::Authority = rest.parse().ok()?;
        Some(Origin::of(
            scheme,
            authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']'),
            authority.port_u16(),
        ))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}", self.scheme, self.host),
        }
    }
}

fn not_exercised(what: &str, authority: Option<&str>) -> CheckResult {
    let scope = authority.map_or(String::new(), |a| format!(" for {a}"));
    (
        Status::NotExercised,
        format!("{what}{scope}: nothing to judge"),
        Vec::new(),
    )
}

fn count_check(what: &str, seqs: Vec<u64>, range: &CountRange) -> CheckResult {
    let count = seqs.len() as u64;
    let status = if range.contains(count) {
        Status::Pass
    } else {
        Status::Fail
    };
    let wanted = match *range {
        CountRange::Exactly(n) => format!("exactly {n}"),
        CountRange::Between { min, max } => match (min, max) {
            (Some(min), Some(max)) => format!("{min} to {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => "any number".to_owned(),
        },
    };
    (
        status,
        format!("{count} {what}(s), expected {wanted}"),
        seqs,
    )
}

#[cfg(test)]
mod tests;
