//! One accepted connection: TLS (or h2c detection), then HTTP/2 or HTTP/1.1; plus what both
//! protocols share per request: building the facts, asking the engine, journaling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;

use super::{Active, CLIENT_PAGE_PATH, Shared};
use crate::engine::{ConnectionFacts, Decision, Outcome, RequestFacts};
use crate::journal::{EventKind, RequestEvent};
use crate::tls::choose_certificate;

/// The HTTP/2 client connection preface (RFC 9113 §3.4), which starts h2c by prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP the connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/2 over cleartext, by prior knowledge.
    H2c,
    /// HTTP/1.1, over TLS or not.
    Http11,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
            Protocol::Http11 => "http/1.1",
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
    /// Streams above this id are refused (an immediate GOAWAY is on its way).
    pub refuse_above: std::sync::atomic::AtomicU32,
    /// When a request last arrived or finished (for the idle timeout).
    pub last_active: std::sync::Mutex<tokio::time::Instant>,
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    active: Arc<Active>,
    id: u64,
    listener: String,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let tls = active.tls.get(&listener).cloned();
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    shared.journal.record(EventKind::ConnectionOpened {
        connection: id,
        listener: listener.clone(),
        local,
        peer: peer.to_string(),
    });
    let opened_at_ms = shared.journal.now_ms() as u64;
    let facts = ConnectionFacts {
        id,
        listener,
        sni: None,
        certificate_sans: Vec::new(),
        opened_at_ms,
    };
    let reason = match tls {
        Some(config) => serve_tls(&shared, &active, facts, stream, config).await,
        None => serve_cleartext(&shared, facts, stream).await,
    };
    shared.engine().connection_closed(id);
    let (reason, requests) = reason;
    shared.journal.record(EventKind::ConnectionClosed {
        connection: id,
        reason,
        requests,
    });
}

async fn serve_tls(
    shared: &Arc<Shared>,
    active: &Active,
    mut facts: ConnectionFacts,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> (String, u64) {
    let id = facts.id;
    let timeout = shared.limits.handshake_timeout;
    let failed = |sni: Option<String>, reason: String| {
        shared.journal.record(EventKind::TlsFailed {
            connection: id,
            sni,
            reason: reason.clone(),
        });
        (format!("tls handshake failed: {reason}"), 0)
    };
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    // A shutdown does not wait for handshakes: they end with it.
    let start = tokio::select! {
        start = tokio::time::timeout(timeout, acceptor) => start,
        () = shared.shutdown.cancelled() => return failed(None, "server shutting down".to_owned()),
    };
    let start = match start {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => return failed(None, err.to_string()),
        Err(_) => return failed(None, format!("no ClientHello within {timeout:?}")),
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    let scenario = &active.scenario;
    let certificate = scenario
        .listener(&facts.listener)
        .and_then(|spec| choose_certificate(scenario, spec, sni.as_deref()))
        .map(str::to_owned);
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(timeout, start.into_stream(config)) => handshake,
        () = shared.shutdown.cancelled() => return failed(sni, "server shutting down".to_owned()),
    };
    let tls_stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            let reason = match &certificate {
                None => format!(
                    "no certificate for SNI {} on this listener (the scenario rejects it)",
                    sni.as_deref().unwrap_or("(none)")
                ),
                Some(_) => err.to_string(),
            };
            return failed(sni, reason);
        }
        Err(_) => return failed(sni, format!("handshake not finished within {timeout:?}")),
    };
    let (_, connection) = tls_stream.get_ref();
    let alpn = connection
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let tls_version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    };
    facts.certificate_sans = certificate
        .as_deref()
        .and_then(|name| scenario.certificate(name))
        .map(|c| c.sans.clone())
        .unwrap_or_default();
    facts.sni = sni.clone();
    shared.journal.record(EventKind::TlsEstablished {
        connection: id,
        sni,
        alpn: alpn.clone(),
        tls_version,
        certificate,
    });
    let protocol = match alpn.as_deref() {
        Some("h2") => Protocol::H2,
        Some(_) => Protocol::Http11,
        None => {
            let offers_http11 = scenario
                .listener(&facts.listener)
                .is_some_and(|l| l.alpn.contains(&crate::scenario::Alpn::Http11));
            if !offers_http11 {
                // RFC 9113 §3.2: h2 over TLS needs ALPN; this listener speaks nothing else.
                return (
                    "client negotiated no ALPN and this listener offers only h2".to_owned(),
                    0,
                );
            }
            Protocol::Http11
        }
    };
    run_protocol(shared, facts, protocol, true, tls_stream).await
}

async fn serve_cleartext(
    shared: &Arc<Shared>,
    facts: ConnectionFacts,
    stream: TcpStream,
) -> (String, u64) {
    // Peek (without consuming) until the bytes decide: the h2 preface, or anything else.
    let mut buf = [0u8; H2_PREFACE.len()];
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    let protocol = loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return (format!("read failed: {err}"), 0),
            Err(_) => {
                return (
                    "no request bytes before the handshake timeout".to_owned(),
                    0,
                );
            }
        };
        if peeked == 0 {
            return ("client closed".to_owned(), 0);
        }
        if buf[..peeked] != H2_PREFACE[..peeked] {
            break Protocol::Http11;
        }
        if peeked == H2_PREFACE.len() {
            break Protocol::H2c;
        }
        // A partial preface: wait a moment for the rest rather than spinning on peek.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    };
    run_protocol(shared, facts, protocol, false, stream).await
}

async fn run_protocol<IO>(
    shared: &Arc<Shared>,
    facts: ConnectionFacts,
    protocol: Protocol,
    tls: bool,
    io: IO,
) -> (String, u64)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = Arc::new(ConnCtx {
        shared: Arc::clone(shared),
        facts,
        protocol,
        tls,
        requests: AtomicU64::new(0),
        closed: CancellationToken::new(),
        refuse_above: std::sync::atomic::AtomicU32::new(u32::MAX),
        last_active: std::sync::Mutex::new(tokio::time::Instant::now()),
    });
    let reason = match protocol {
        Protocol::H2 | Protocol::H2c => super::h2conn::serve(Arc::clone(&ctx), io).await,
        Protocol::Http11 => super::http1::serve(Arc::clone(&ctx), io).await,
    };
    ctx.closed.cancel();
    (reason, ctx.requests.load(Ordering::Relaxed))
}

/// A request as both protocols hand it over.
pub(crate) struct Incoming {
    pub facts: RequestFacts,
    pub stream: Option<u32>,
    pub body_bytes: u64,
    pub body_sha256: String,
    pub received_ms: f64,
}

/// Why a request body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// More than the cap: 413.
    TooLarge(u64),
    /// No data for the idle timeout: 408.
    Stalled(std::time::Duration),
    /// The stream or connection failed: 400.
    Failed(String),
}

impl BodyError {
    /// The status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            BodyError::Stalled(_) => 408,
            BodyError::Failed(_) => 400,
        }
    }

    /// What the journal and the answer's body say.
    pub fn describe(&self) -> String {
        match self {
            BodyError::TooLarge(limit) => format!("request body over {limit} bytes"),
            BodyError::Stalled(patience) => format!("no request body data for {patience:?}"),
            BodyError::Failed(why) => format!("reading the request body failed: {why}"),
        }
    }
}

impl BodyError {
    /// What was done (for the journal) and the answer to send.
    pub fn answer(&self) -> (Done, crate::engine::Response) {
        let status = self.status();
        let done = Done {
            status: Some(status),
            error: Some(self.describe()),
            action_override: Some("respond"),
            ..Done::default()
        };
        let response = crate::engine::Response {
            status,
            headers: [(
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )]
            .into(),
            body: format!("misdirect: {}\n", self.describe()),
        };
        (done, response)
    }
}

impl Incoming {
    /// The request as the engine sees it, from what either protocol parsed. The authority
    /// is the target's (`:authority`, or an absolute-form target, RFC 9112 §3.2.2), else
    /// the `Host` header.
    pub fn new(
        parts: &http::request::Parts,
        body: &[u8],
        stream: Option<u32>,
        received_ms: f64,
    ) -> Incoming {
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
            stream,
            body_bytes: body.len() as u64,
            body_sha256: sha256_hex(body),
            received_ms,
        }
    }
}

/// The authority as the engine compares it: host only, lower case, no trailing dot, IPv6
/// without brackets.
pub(crate) fn normalize_authority(authority: &str) -> String {
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
pub(crate) fn header_facts(headers: &http::HeaderMap) -> Vec<(String, String)> {
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
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl ConnCtx {
    /// Notes activity now.
    pub fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// When a request last arrived or finished.
    pub fn last_active(&self) -> tokio::time::Instant {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, refuse streams above `last_stream_id`.
    pub fn refuse_above(&self, last_stream_id: u32) {
        self.refuse_above
            .fetch_min(last_stream_id, Ordering::SeqCst);
    }

    /// Whether this stream is to be refused.
    pub fn refused(&self, stream: u32) -> bool {
        stream > self.refuse_above.load(Ordering::SeqCst)
    }

    /// Counts the request and asks the engine.
    pub fn decide(&self, incoming: &Incoming) -> Decision {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if incoming.facts.method == "GET"
            && crate::scenario::path_matches(CLIENT_PAGE_PATH, &incoming.facts.path)
        {
            // The harness's own page, outside the scenario: the engine never sees it.
            return Decision {
                outcome: Outcome::Respond(crate::engine::Response {
                    status: 200,
                    headers: [
                        (
                            "content-type".to_owned(),
                            "text/html; charset=utf-8".to_owned(),
                        ),
                        ("cache-control".to_owned(), "no-store".to_owned()),
                    ]
                    .into(),
                    body: self.shared.client_page(),
                }),
                delay_ms: 0,
                rule: Some("misdirect client page".to_owned()),
                host: None,
                attempt: 1,
                request_on_connection: self.requests.load(Ordering::Relaxed),
                request_number: 0,
                coalesced: false,
                misdirected_because: None,
            };
        }
        let now_ms = self.shared.journal.now_ms() as u64;
        self.shared
            .engine()
            .decide(&self.facts, &incoming.facts, now_ms)
    }

    /// Waits out a rule's delay; `false` if the connection ended meanwhile.
    pub async fn delay(&self, ms: u64) -> bool {
        if ms == 0 {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => true,
            () = self.closed.cancelled() => false,
        }
    }

    /// Journals a request and what was done with it.
    pub fn journal_request(&self, incoming: Incoming, decision: &Decision, done: Done) {
        let action = match &decision.outcome {
            Outcome::Respond(_) => "respond",
            Outcome::Reset(_) => "reset_stream",
            Outcome::Goaway { .. } => "goaway",
            Outcome::Close => "close",
        };
        let journal = &self.shared.journal;
        let duration_ms = ((journal.now_ms() - incoming.received_ms) * 1000.0).round() / 1000.0;
        journal.record(EventKind::Request(Box::new(RequestEvent {
            connection: self.facts.id,
            stream: incoming.stream,
            request_on_connection: decision.request_on_connection,
            request_number: decision.request_number,
            protocol: self.protocol.name().to_owned(),
            method: incoming.facts.method,
            scheme: if self.tls { "https" } else { "http" }.to_owned(),
            authority: incoming.facts.authority,
            path: incoming.facts.path,
            sni: self.facts.sni.clone(),
            attempt: decision.attempt,
            coalesced: decision.coalesced,
            body_bytes: incoming.body_bytes,
            body_sha256: incoming.body_sha256,
            rule: decision.rule.clone(),
            host: decision.host.clone(),
            action: done.action_override.unwrap_or(action).to_owned(),
            status: done.status,
            reset_code: done.reset_code,
            misdirected_because: decision.misdirected_because.clone(),
            error: done.error,
            received_ms: (incoming.received_ms * 1000.0).round() / 1000.0,
            duration_ms,
        })));
    }
}

/// What carrying out a decision actually did.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// Status sent, if a response went out.
    pub status: Option<u16>,
    /// RST_STREAM code sent, if any.
    pub reset_code: Option<crate::scenario::ErrorCode>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The action actually taken when it differs from the decision (e.g. 413).
    pub action_override: Option<&'static str>,
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
