//! One accepted connection: TLS (or h2c detection), then HTTP/2 or HTTP/1.1 with a
//! [`ConnCtx`] that every request of the connection goes through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;

use super::pipeline::ConnCtx;
use super::{Active, Shared};
use crate::engine::ConnectionFacts;
use crate::journal::{EventKind, Protocol};
use crate::tls::choose_certificate;

/// How long past the shutdown grace period a connection may take to wind down (write its
/// last frames, journal its requests) before it is cut off.
pub(crate) const CUT_OFF_SLACK: std::time::Duration = std::time::Duration::from_millis(300);

/// How long a connection closed during a stop waits for its request tasks to journal
/// themselves.
pub(crate) const TASKS_AFTER_CLOSE: std::time::Duration = std::time::Duration::from_millis(200);

/// The HTTP/2 client connection preface (RFC 9113 §3.4), which starts h2c by prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A place among the [`Limits::max_connections`](super::Limits) open connections, given back
/// when dropped.
pub(crate) struct Slot(Arc<Shared>);

impl Slot {
    /// Takes a place, unless every one is taken.
    pub(crate) fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let max = shared.limits.max_connections;
        shared
            .open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(shared)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Closes a connection over the cap at once (no TLS, no answer: the client sees the
/// connection end), journaled as opened and closed so that the refusal is on the record.
pub(crate) fn refuse(
    shared: &Shared,
    id: u64,
    listener: &str,
    stream: TcpStream,
    peer: SocketAddr,
) {
    journal_opened(shared, id, listener, &stream, peer);
    drop(stream);
    shared.journal.record(EventKind::ConnectionClosed {
        connection: id,
        reason: format!(
            "refused: {} connections already open (the cap, --max-connections)",
            shared.limits.max_connections
        ),
        requests: 0,
    });
}

/// Journals an accepted connection.
fn journal_opened(shared: &Shared, id: u64, listener: &str, stream: &TcpStream, peer: SocketAddr) {
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    shared.journal.record(EventKind::ConnectionOpened {
        connection: id,
        listener: listener.to_owned(),
        local,
        peer: peer.to_string(),
    });
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(
    slot: Slot,
    shared: Arc<Shared>,
    active: Arc<Active>,
    id: u64,
    listener: String,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let tls = active.tls.get(&listener).cloned();
    let _ = stream.set_nodelay(true);
    journal_opened(&shared, id, &listener, &stream, peer);
    let opened_at_ms = shared.journal.now_ms() as u64;
    let facts = ConnectionFacts {
        id,
        listener,
        sni: None,
        certificate_sans: Vec::new(),
        opened_at_ms,
        port: stream.local_addr().map_or(0, |a| a.port()),
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
    drop(slot);
}

/// A TLS connection: the handshake, then the protocol. The handshake's state lives in its
/// own allocation, freed once it is done, so that an established connection does not keep
/// room for it for the rest of its life (most of what an idle connection costs).
async fn serve_tls(
    shared: &Arc<Shared>,
    active: &Active,
    facts: ConnectionFacts,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> (String, u64) {
    match Box::pin(accept_tls(shared, active, facts, stream, config)).await {
        Ok((facts, protocol, tls_stream)) => {
            run_protocol(shared, facts, protocol, true, tls_stream).await
        }
        Err(closed) => closed,
    }
}

/// The TLS handshake and ALPN: the connection's facts, protocol and stream, or why it ended.
async fn accept_tls(
    shared: &Arc<Shared>,
    active: &Active,
    mut facts: ConnectionFacts,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<
    (
        ConnectionFacts,
        Protocol,
        tokio_rustls::server::TlsStream<TcpStream>,
    ),
    (String, u64),
> {
    let id = facts.id;
    let timeout = shared.limits.handshake_timeout;
    let failed = |sni: Option<String>, reason: String| {
        shared.journal.record(EventKind::TlsFailed {
            connection: id,
            sni,
            reason: reason.clone(),
        });
        Err((format!("tls handshake failed: {reason}"), 0))
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
                return Err((
                    "client negotiated no ALPN and this listener offers only h2".to_owned(),
                    0,
                ));
            }
            Protocol::Http11
        }
    };
    Ok((facts, protocol, tls_stream))
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
        let peeked = tokio::select! {
            peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)) => peeked,
            () = shared.shutdown.cancelled() => {
                return ("server shut down before the client's first request".to_owned(), 0);
            }
        };
        let peeked = match peeked {
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
        // A partial preface: wait a moment for the rest rather than spinning on peek (which
        // returns the same bytes at once, so its timeout alone would never fire).
        if tokio::time::Instant::now() >= deadline {
            return (
                "no complete HTTP/2 preface before the handshake timeout".to_owned(),
                0,
            );
        }
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
    let ctx = Arc::new(ConnCtx::new(Arc::clone(shared), facts, protocol, tls));
    // Boxed: a connection holds the state of the one protocol it speaks, not room for the
    // larger of the two.
    let serve: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> = match protocol
    {
        Protocol::H2 | Protocol::H2c => Box::pin(super::h2conn::serve(Arc::clone(&ctx), io)),
        Protocol::Http11 => Box::pin(super::http1::serve(Arc::clone(&ctx), io)),
    };
    // The translators end their connections when the shutdown grace period is over; this is
    // the backstop that holds whatever they are waiting for, so that a stop always ends in
    // time and every connection is journaled as closed.
    let cut_off = async {
        shared.shutdown.cancelled().await;
        tokio::time::sleep(shared.limits.shutdown_grace + CUT_OFF_SLACK).await;
    };
    let reason = tokio::select! {
        reason = serve => reason,
        () = cut_off => "shutdown grace period over; cut off".to_owned(),
    };
    // Whatever ended the connection, its request tasks are journaled before its close: they
    // end quickly once the connection is gone (their reads and sends fail, delays are
    // cancelled). The one place they are waited for: within the grace period, or briefly
    // when the server is stopping, so that the stop ends in time.
    ctx.closed.cancel();
    ctx.tasks.close();
    let patience = if shared.shutdown.is_cancelled() {
        TASKS_AFTER_CLOSE
    } else {
        shared.limits.shutdown_grace
    };
    let _ = tokio::time::timeout(patience, ctx.tasks.wait()).await;
    (reason, ctx.requests.load(Ordering::Relaxed))
}
