//! The one request pipeline both protocols share. A request arrives as protocol-free facts
//! ([`Arrival`]), the engine decides, the rule's delay is waited out, the request is
//! journaled, and what is left is a typed [`Plan`] that `h2conn` and `http1` only translate
//! onto the wire. Signals HTTP/1.1 lacks are lowered here to the nearest thing it has, so
//! that the journal says what was really done.
//!
//! Each request is journaled before its answer goes out, so that a client that has seen the
//! answer can rely on the journal having the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::engine::{ConnectionFacts, Decision, Instruction, RequestFacts, Response};
use crate::journal::{Action, EventKind, Protocol, RequestEvent, Scheme, SentFrame};
use crate::scenario::{ErrorCode, FrameSpec, GoawayFrameSpec, LastStreamId, NamedStreamId};

/// RFC 9113 §6.8: a graceful GOAWAY first announces the highest possible stream id.
pub(crate) const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// What a protocol module is to put on the wire for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Send this answer; with `close_after`, end the connection once it is out (HTTP/1.1
    /// `Connection: close`).
    Respond {
        /// The answer.
        response: Response,
        /// End the connection after it.
        close_after: bool,
    },
    /// Reset the stream with this code (HTTP/2 only).
    Reset(ErrorCode),
    /// Start h2's graceful drain (GOAWAY, HTTP/2 only), announced before `response` answers
    /// this request.
    Drain {
        /// The answer to this request.
        response: Option<Response>,
        /// The rule that asked for it.
        rule: Option<String>,
    },
    /// End the connection without answering.
    Close {
        /// The rule that asked for it.
        rule: Option<String>,
    },
    /// Leave the stream unanswered: it is above the last-stream-id of a GOAWAY this
    /// connection has sent or queued, so it was not processed and the client must retry it
    /// elsewhere (RFC 9113 §6.8). Journaled as a request with action `goaway` and no status.
    Unprocessed,
    /// Nothing to put on the wire: the connection ended while the request waited.
    Abandon,
}

/// An HTTP/2 connection's ledger of streams: which were processed, and the GOAWAY that
/// bounds them.
#[derive(Debug, Default)]
struct Streams {
    /// The lowest last-stream-id of a GOAWAY sent or queued, and the rule that sent it.
    goaway: Option<(u32, Option<String>)>,
    /// The highest stream processed (answered, reset or closed by a rule).
    processed: u32,
    /// The highest stream received.
    highest_seen: u32,
}

impl Streams {
    /// A GOAWAY that wants to name `wanted`: names no less than the highest stream
    /// processed, and no more than an earlier GOAWAY. Returns the id it names.
    fn goaway(&mut self, wanted: u32, rule: Option<&str>) -> u32 {
        let mut last = wanted.max(self.processed);
        if let Some((earlier, _)) = &self.goaway {
            last = last.min(*earlier);
        }
        if self
            .goaway
            .as_ref()
            .is_none_or(|(earlier, _)| last < *earlier)
        {
            self.goaway = Some((last, rule.map(str::to_owned)));
        }
        last
    }

    /// The last-stream-id (and rule) of the GOAWAY that `stream` lies above, if any.
    fn above_goaway(&self, stream: Option<u32>) -> Option<(u32, Option<String>)> {
        let stream = stream?;
        self.goaway
            .as_ref()
            .filter(|(last, _)| stream > *last)
            .cloned()
    }
}

/// What admitting a stream found (see [`ConnCtx::admit`]).
struct Admitted {
    /// The rule's frames as they go on the wire.
    frames: Vec<(u32, SentFrame)>,
    /// The GOAWAY the stream lies above, if any.
    excluded_by: Option<(u32, Option<String>)>,
    /// The highest stream processed.
    processed: u32,
}

/// The frames a rule sends before its plan is carried out (HTTP/2 only), as they go on the
/// wire: (stream, frame).
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// The frames, in the rule's order.
    pub frames: Vec<(u32, SentFrame)>,
    /// The rule that sends them.
    pub rule: Option<String>,
}

/// A request as either protocol hands it over.
pub(crate) struct Arrival {
    /// Method, target and headers.
    pub parts: http::request::Parts,
    /// The body as read (possibly partial when `error` says the body could not be read).
    pub body: Bytes,
    /// Why the body could not be read whole, if it could not.
    pub error: Option<RequestError>,
    /// The HTTP/2 stream id (none on HTTP/1.1).
    pub stream: Option<u32>,
    /// When the request head arrived, on the journal's clock (stamped in arrival order).
    pub received_ms: f64,
}

/// Why a request cannot be handled as the scenario says: answered with an error status,
/// journaled with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// An HTTP/1.1 request with no `Host`, or more than one (RFC 9112 §3.2): 400.
    BadHost(&'static str),
    /// More than the cap: 413.
    TooLarge(u64),
    /// No data for the idle timeout: 408.
    Stalled(Duration),
    /// The stream or connection failed: 400.
    Failed(String),
}

impl RequestError {
    /// The status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::TooLarge(_) => 413,
            RequestError::Stalled(_) => 408,
            RequestError::Failed(_) | RequestError::BadHost(_) => 400,
        }
    }

    /// What the journal and the answer's body say.
    pub fn describe(&self) -> String {
        match self {
            RequestError::TooLarge(limit) => format!("request body over {limit} bytes"),
            RequestError::Stalled(patience) => format!("no request body data for {patience:?}"),
            RequestError::Failed(why) => format!("reading the request body failed: {why}"),
            RequestError::BadHost(why) => format!("{why} (RFC 9112 §3.2)"),
        }
    }

    /// The answer to send.
    fn response(&self) -> Response {
        Response {
            status: self.status(),
            headers: [(
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )]
            .into(),
            body: format!("misdirect: {}\n", self.describe()).into(),
        }
    }
}

/// Per-connection context shared by its request tasks.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub facts: ConnectionFacts,
    pub protocol: Protocol,
    pub tls: bool,
    /// Requests seen so far.
    pub requests: AtomicU64,
    /// Cancelled when the connection ends (delayed actions stop waiting).
    pub closed: CancellationToken,
    /// The connection's request tasks: the translators spawn them here, and the connection
    /// waits for them (bounded) before it is journaled closed, however it ended.
    pub tasks: tokio_util::task::TaskTracker,
    /// Which streams are processed, and the GOAWAY that bounds them (HTTP/2).
    streams: std::sync::Mutex<Streams>,
    /// When a request last arrived or finished (for the idle timeout).
    last_active: std::sync::Mutex<tokio::time::Instant>,
}

impl ConnCtx {
    pub fn new(shared: Arc<Shared>, facts: ConnectionFacts, protocol: Protocol, tls: bool) -> Self {
        ConnCtx {
            shared,
            facts,
            protocol,
            tls,
            requests: AtomicU64::new(0),
            closed: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            streams: std::sync::Mutex::new(Streams::default()),
            last_active: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Notes activity now.
    pub fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// When a request last arrived or finished.
    pub fn last_active(&self) -> tokio::time::Instant {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// If the request's stream lies above the last-stream-id of a GOAWAY, journals it as not
    /// processed (`why` says when that was found out) and returns `true`: the caller leaves
    /// it unanswered.
    pub fn unprocessed(&self, arrival: &Arrival, why: &str) -> bool {
        let Some((last, rule)) = self.streams().above_goaway(arrival.stream) else {
            return false;
        };
        let incoming = Incoming::new(arrival);
        let decision = self
            .shared
            .engine()
            .unprocessed(&self.facts, &incoming.facts);
        let decision = Decision { rule, ..decision };
        let done = Done::unprocessed(last, Some(&format!("a GOAWAY {why}")));
        self.journal_request(incoming, &decision, done);
        true
    }

    /// Journals that an answer could not be sent after its request was journaled.
    pub fn response_failed(&self, stream: Option<u32>, error: String) {
        self.shared.journal.record(EventKind::ResponseFailed {
            connection: self.facts.id,
            stream,
            error,
        });
    }

    /// The request's whole journey up to the wire: facts, decision, delay, journal, plan —
    /// and the frames the rule sends before the plan is carried out (HTTP/2 only).
    pub async fn handle(&self, arrival: Arrival) -> (Outgoing, Plan) {
        let incoming = Incoming::new(&arrival);
        let mut decision = self.decide(&incoming);
        let error = arrival.error.clone().or_else(|| bad_host(&arrival.parts));
        if let Some(error) = &error {
            if self.protocol != Protocol::Http11
                && let Some((last, rule)) = self
                    .admit(arrival.stream.unwrap_or(0), &[], None, true)
                    .excluded_by
            {
                // A GOAWAY that excludes it went out while its body was read: not answered.
                let decision = Decision { rule, ..decision };
                let done = Done::unprocessed(
                    last,
                    Some(&format!(
                        "a GOAWAY sent while its body was read ({})",
                        error.describe()
                    )),
                );
                self.journal_request(incoming, &decision, done);
                return (Outgoing::default(), Plan::Unprocessed);
            }
            let response = error.response();
            let done = Done {
                action: Action::Respond,
                status: Some(response.status),
                error: Some(error.describe()),
                ..Done::from(&decision)
            };
            self.journal_request(incoming, &decision, done);
            // HTTP/1.1 cannot go on past a body it did not read.
            let close_after = self.protocol == Protocol::Http11;
            return (
                Outgoing::default(),
                Plan::Respond {
                    response,
                    close_after,
                },
            );
        }
        if !self.delay(decision.delay_ms).await {
            let done = Done {
                error: Some("connection closed during the rule's delay".to_owned()),
                ..Done::from(&decision)
            };
            self.journal_request(incoming, &decision, done);
            return (Outgoing::default(), Plan::Abandon);
        }
        let mut done = Done::from(&decision);
        // The instruction moves into the plan: its response is not copied on the way.
        let instruction = std::mem::replace(&mut decision.instruction, Instruction::Close);
        let mut frames = std::mem::take(&mut decision.frames);
        let immediate_goaway = matches!(
            instruction,
            Instruction::Goaway {
                graceful: false,
                ..
            }
        );
        if let Instruction::Goaway {
            graceful: false,
            code,
            ..
        } = instruction
            && self.protocol != Protocol::Http11
        {
            // An immediate GOAWAY: one that excludes this request (RFC 9113 §6.8).
            frames.push(FrameSpec::Goaway(GoawayFrameSpec {
                last_stream_id: LastStreamId::Named(NamedStreamId::BeforeThisStream),
                code,
                debug: None,
            }));
        }
        let mut plan = self.plan(instruction, decision.rule.clone());
        let mut sent = Vec::new();
        if self.protocol != Protocol::Http11 {
            let stream = arrival.stream.unwrap_or(0);
            let admitted = self.admit(
                stream,
                &frames,
                decision.rule.as_deref(),
                !matches!(plan, Plan::Unprocessed),
            );
            sent = admitted.frames;
            match admitted.excluded_by {
                Some((last, _)) if !matches!(plan, Plan::Close { .. }) => {
                    plan = Plan::Unprocessed;
                    let why = if done.action == Action::Goaway {
                        None
                    } else if sent.is_empty() {
                        Some("a GOAWAY sent during the rule's delay")
                    } else {
                        Some("the rule's GOAWAY")
                    };
                    done = Done::unprocessed(last, why);
                }
                None if immediate_goaway => {
                    // A higher stream was already processed, and a GOAWAY may not exclude
                    // it: this request is refused on its own instead (RFC 9113 §8.7).
                    plan = Plan::Reset(ErrorCode::RefusedStream);
                    done.error = Some(format!(
                        "stream {} above it was already processed, so the GOAWAY names that one; this request is refused with RST_STREAM REFUSED_STREAM instead",
                        admitted.processed
                    ));
                }
                _ => {}
            }
        }
        if self.protocol == Protocol::Http11 && !frames.is_empty() {
            done.error = Some(format!(
                "HTTP/1.1 has no frames: the rule's {} frame(s) were not sent",
                frames.len()
            ));
            // A GOAWAY's nearest HTTP/1.1 equivalent: close after the answer.
            if frames.iter().any(|f| matches!(f, FrameSpec::Goaway(_)))
                && let Plan::Respond { close_after, .. } = &mut plan
            {
                *close_after = true;
            }
        }
        match &plan {
            Plan::Respond { response, .. } => done.status = Some(response.status),
            Plan::Drain { response, .. } => done.status = response.as_ref().map(|r| r.status),
            Plan::Reset(code) => done.reset_code = Some(*code),
            Plan::Close { .. } if done.action != Action::Close => {
                done.error =
                    Some("HTTP/1.1 has no such signal: connection closed instead".to_owned());
            }
            Plan::Close { .. } | Plan::Unprocessed | Plan::Abandon => {}
        }
        let rule = decision.rule.clone();
        self.journal_request(incoming, &decision, done);
        (Outgoing { frames: sent, rule }, plan)
    }

    /// Admits a request's stream under the connection's stream ledger, at once: resolves the
    /// rule's frames as they go on the wire (ALTSVC without an origin on the request's
    /// stream; each GOAWAY's last-stream-id never below a stream already processed nor above
    /// an earlier GOAWAY's, RFC 9113 §6.8), and says whether the request lies above a GOAWAY
    /// — if not, and `processing`, it counts as processed from now on.
    fn admit(
        &self,
        stream: u32,
        frames: &[FrameSpec],
        rule: Option<&str>,
        processing: bool,
    ) -> Admitted {
        let mut streams = self.streams();
        let sent = frames
            .iter()
            .map(|frame| match frame {
                FrameSpec::Origin(origins) => (
                    0,
                    SentFrame::Origin {
                        origins: origins
                            .iter()
                            .map(|o| crate::engine::origin_entry(o, self.facts.port))
                            .collect(),
                    },
                ),
                FrameSpec::Altsvc(alt) => match &alt.origin {
                    Some(origin) => (
                        0,
                        SentFrame::Altsvc {
                            origin: origin.clone(),
                            value: alt.value.clone(),
                        },
                    ),
                    None => (
                        stream,
                        SentFrame::Altsvc {
                            origin: String::new(),
                            value: alt.value.clone(),
                        },
                    ),
                },
                FrameSpec::Goaway(goaway) => {
                    let wanted = match goaway.last_stream_id {
                        LastStreamId::Number(id) => id,
                        LastStreamId::Named(NamedStreamId::ThisStream) => stream,
                        // Client streams are odd: the one before is id − 2 (0 for 1).
                        LastStreamId::Named(NamedStreamId::BeforeThisStream) => {
                            stream.saturating_sub(2)
                        }
                        LastStreamId::Named(NamedStreamId::HighestSeen) => {
                            streams.highest_seen.max(stream)
                        }
                    };
                    let last_stream_id = streams.goaway(wanted, rule);
                    let debug = goaway
                        .debug
                        .clone()
                        .unwrap_or_else(|| format!("misdirect: rule {}", rule.unwrap_or("?")));
                    (
                        0,
                        SentFrame::Goaway {
                            last_stream_id,
                            code: goaway.code,
                            debug,
                        },
                    )
                }
            })
            .collect();
        let excluded_by = streams.above_goaway(Some(stream));
        if excluded_by.is_none() && processing {
            streams.processed = streams.processed.max(stream);
        }
        Admitted {
            frames: sent,
            excluded_by,
            processed: streams.processed,
        }
    }

    /// Notes a stream the connection received (for `highest_seen`).
    pub fn saw_stream(&self, stream: u32) {
        let mut streams = self.streams();
        streams.highest_seen = streams.highest_seen.max(stream);
    }

    /// The decision as this connection's protocol can carry it out.
    fn plan(&self, instruction: Instruction, rule: Option<String>) -> Plan {
        let http1 = self.protocol == Protocol::Http11;
        match instruction {
            Instruction::Respond(response) => Plan::Respond {
                response,
                close_after: false,
            },
            Instruction::Goaway {
                graceful: true,
                response: Some(response),
                ..
            } if http1 => Plan::Respond {
                response,
                close_after: true,
            },
            Instruction::Reset(_) | Instruction::Goaway { .. } | Instruction::Close if http1 => {
                Plan::Close { rule }
            }
            Instruction::Reset(code) => Plan::Reset(code),
            Instruction::Goaway {
                graceful: true,
                response,
                ..
            } => Plan::Drain { response, rule },
            // An immediate GOAWAY goes out as a frame (see `handle`); the request is not
            // processed.
            Instruction::Goaway { .. } => Plan::Unprocessed,
            Instruction::Close => Plan::Close { rule },
        }
    }

    /// Counts the request and asks the engine.
    fn decide(&self, incoming: &Incoming) -> Decision {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.shared.journal.now_ms() as u64;
        self.shared
            .engine()
            .decide(&self.facts, &incoming.facts, now_ms)
    }

    /// Waits out a rule's delay; `false` if the connection ended meanwhile.
    async fn delay(&self, ms: u64) -> bool {
        if ms == 0 {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => true,
            () = self.closed.cancelled() => false,
        }
    }

    /// Journals a request and what was done with it.
    fn journal_request(&self, incoming: Incoming, decision: &Decision, done: Done) {
        let journal = &self.shared.journal;
        let duration_ms = ((journal.now_ms() - incoming.received_ms) * 1000.0).round() / 1000.0;
        journal.record(EventKind::Request(Box::new(RequestEvent {
            connection: self.facts.id,
            stream: incoming.stream,
            request_on_connection: decision.request_on_connection,
            request_number: decision.request_number,
            protocol: self.protocol,
            method: incoming.facts.method,
            scheme: if self.tls {
                Scheme::Https
            } else {
                Scheme::Http
            },
            authority: incoming.facts.authority,
            path: incoming.facts.path,
            sni: self.facts.sni.clone(),
            attempt: decision.attempt,
            coalesced: decision.coalesced,
            body_bytes: incoming.body_bytes,
            body_sha256: incoming.body_sha256,
            rule: decision.rule.clone(),
            host: decision.host.clone(),
            action: done.action,
            status: done.status,
            reset_code: done.reset_code,
            misdirected_because: decision.misdirected_because.clone(),
            error: done.error,
            received_ms: (incoming.received_ms * 1000.0).round() / 1000.0,
            duration_ms,
        })));
    }
}

/// What carrying out a decision does, as the journal records it.
struct Done {
    action: Action,
    status: Option<u16>,
    reset_code: Option<ErrorCode>,
    error: Option<String>,
}

impl Done {
    /// A stream above the last-stream-id `last` of a GOAWAY: not processed, left unanswered;
    /// `goaway` says which GOAWAY (none: the request's own action says it).
    fn unprocessed(last: u32, goaway: Option<&str>) -> Done {
        Done {
            action: Action::Goaway,
            status: None,
            reset_code: None,
            error: goaway.map(|goaway| {
                format!(
                    "not processed: above the last-stream-id {last} of {goaway}; left unanswered for the client to retry"
                )
            }),
        }
    }
}

impl From<&Decision> for Done {
    fn from(decision: &Decision) -> Done {
        Done {
            action: decision.instruction.action(),
            status: None,
            reset_code: None,
            error: None,
        }
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` (HTTP/2 has `:authority`,
/// and HTTP/1.0 may omit it).
fn bad_host(parts: &http::request::Parts) -> Option<RequestError> {
    if parts.version != http::Version::HTTP_11 {
        return None;
    }
    match parts.headers.get_all(http::header::HOST).iter().count() {
        0 => Some(RequestError::BadHost("an HTTP/1.1 request without Host")),
        1 => None,
        _ => Some(RequestError::BadHost(
            "an HTTP/1.1 request with more than one Host",
        )),
    }
}

/// The request as the engine and the journal see it.
struct Incoming {
    facts: RequestFacts,
    stream: Option<u32>,
    body_bytes: u64,
    body_sha256: String,
    received_ms: f64,
}

impl Incoming {
    /// The authority is the target's (`:authority`, or an absolute-form target, RFC 9112
    /// §3.2.2), else the `Host` header.
    fn new(arrival: &Arrival) -> Incoming {
        let parts = &arrival.parts;
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Incoming {
            facts: RequestFacts {
                method: parts.method.as_str().to_owned(),
                authority: normalize_authority(&authority),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned()),
                headers: header_facts(&parts.headers),
            },
            stream: arrival.stream,
            body_bytes: arrival.body.len() as u64,
            body_sha256: sha256_hex(&arrival.body),
            received_ms: arrival.received_ms,
        }
    }
}

/// The authority as the engine compares it: host only, lower case, no trailing dot, IPv6
/// without brackets.
fn normalize_authority(authority: &str) -> String {
    let host = match authority.parse::<http::uri::Authority>() {
        Ok(parsed) => parsed.host().to_owned(),
        Err(_) => authority.to_owned(),
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Header names and values as the engine sees them.
fn header_facts(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Hex SHA-256 of a body.
fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// Whether a response with this status may carry content (RFC 9110 §15.3.5, §15.4.5).
pub(crate) fn status_has_body(status: u16) -> bool {
    !matches!(status, 204 | 304)
}

/// The response head both protocols send: status, the plan's headers, and
/// `content-length` where the status allows content.
pub(crate) fn response_head(response: &Response) -> Result<http::Response<()>, String> {
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if status_has_body(response.status) {
        builder = builder.header(http::header::CONTENT_LENGTH, response.body.len());
    }
    builder.body(()).map_err(|e| format!("bad response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_lose_port_case_trailing_dot_and_brackets() {
        assert_eq!(normalize_authority("B.Test:8443"), "b.test");
        assert_eq!(normalize_authority("a.test."), "a.test");
        assert_eq!(normalize_authority("[::1]:443"), "::1");
        assert_eq!(normalize_authority("127.0.0.1"), "127.0.0.1");
    }
}
