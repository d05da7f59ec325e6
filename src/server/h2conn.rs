//! The HTTP/2 translator (h2 over TLS, h2c by prior knowledge). h2 parses and writes the
//! frames; this module accepts streams, reads their bodies, hands each request to the
//! [`pipeline`](super::pipeline) and puts the [`Plan`] it returns on the wire. Frames h2
//! cannot send (ORIGIN, ALTSVC, a GOAWAY with a chosen last-stream-id) go through the
//! [`injector`](super::inject), which writes them between h2's frames and journals each. The
//! connection's life — serving, draining after h2's graceful GOAWAY, going away after a
//! rule's GOAWAY — is one [`Life`]; its preface is h2's handshake, before there is a
//! connection to be in a state.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::inject::{Injector, altsvc_frame, origin_frame, track};
use super::pipeline::{
    Arrival, ConnCtx, MAX_STREAM_ID, Plan, RequestError, response_head, status_has_body,
};
use crate::engine::Response;
use crate::journal::{EventKind, SentFrame};
use crate::scenario::ErrorCode;

/// The most body bytes a stream hands h2 at once, and the most h2 holds unsent per stream: a
/// connection's unsent bytes are at most `max_concurrent_streams` × this, all slices of the
/// scenario's shared bodies.
const SEND_CHUNK: usize = 64 * 1024;

/// How long h2 gets to close a connection after a rule's GOAWAY once the streams it serves
/// are done: to write what it holds and see its closing PING answered.
const CLOSE_AFTER_GOAWAY: Duration = Duration::from_secs(1);

/// How long a rule's frames queued before its `close` get to go out.
const CLOSE_DRAIN: Duration = Duration::from_millis(100);

/// Where an HTTP/2 connection is in its life.
#[derive(Debug)]
enum Life {
    /// Accepting streams and answering them.
    Serving,
    /// A GOAWAY(NO_ERROR) went out: h2 lets the open streams finish and closes.
    Draining(Drain),
    /// A rule's GOAWAY with a chosen last-stream-id is out (or queued): streams above it are
    /// left unanswered, those at or below it are served (each bounded by its own delay and
    /// the idle timeout's patience); then h2 closes the connection within
    /// [`CLOSE_AFTER_GOAWAY`], its own GOAWAYs filtered so that none names a higher id.
    GoingAway {
        /// Whether h2 was already told to close.
        closing: bool,
    },
}

/// Why a connection is draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// A rule's graceful GOAWAY.
    Rule,
    /// No request for the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// What a request task asks of its connection.
enum Command {
    /// Send GOAWAY(NO_ERROR) and drain; `sent` fires once h2 has queued it, so the answer
    /// to the request goes out after it.
    Graceful {
        rule: Option<String>,
        sent: tokio::sync::oneshot::Sender<()>,
    },
    /// Write these frames at the next frame boundary; `queued` fires once they are queued,
    /// so that the request's answer goes out after them.
    Frames {
        frames: Vec<(u32, SentFrame)>,
        rule: Option<String>,
        queued: tokio::sync::oneshot::Sender<()>,
    },
    /// Leave this stream unanswered (it is above a GOAWAY's last-stream-id): held until the
    /// served streams are done, so that h2 does not reset it meanwhile.
    Hold(SendResponse<Bytes>),
    /// Close the connection now.
    Close {
        rule: Option<String>,
        _unanswered: SendResponse<Bytes>,
    },
}

/// Serves an HTTP/2 connection until it ends; returns why it ended.
pub(crate) async fn serve<IO>(ctx: Arc<ConnCtx>, io: IO) -> String
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.shared.limits.clone();
    let journal = Arc::clone(&ctx.shared.journal);
    let id = ctx.facts.id;
    let (io, injector) = track(io);
    // The listener's or host's ORIGIN and ALTSVC frames follow h2's first SETTINGS.
    let opening = ctx.shared.engine().opening_frames(&ctx.facts);
    let mut first = Vec::new();
    if let Some(origins) = opening.origin {
        first.push((0, SentFrame::Origin { origins }));
    }
    for (origin, value) in opening.altsvc {
        first.push((0, SentFrame::Altsvc { origin, value }));
    }
    for (stream, frame) in first {
        inject(&injector, &journal, id, stream, frame, None, true);
    }
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_send_buffer_size(SEND_CHUNK)
        .max_header_list_size(limits.max_header_list_size);
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(limits.handshake_timeout, builder.handshake::<_, Bytes>(io)) => handshake,
        // No request can be in flight before the preface: nothing to wait for.
        () = ctx.shared.shutdown.cancelled() => {
            return "server shut down before the client's HTTP/2 preface".to_owned();
        }
    };
    let mut conn = match handshake {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => return format!("HTTP/2 handshake failed: {err}"),
        Err(_) => {
            return format!(
                "no HTTP/2 preface within the handshake timeout ({:?})",
                limits.handshake_timeout
            );
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let tasks = ctx.tasks.clone();
    let mut life = Life::Serving;
    // Set once the server shuts down (or the idle timeout closes): when the connection is
    // cut off whatever it is doing.
    let mut grace_until: Option<Instant> = None;
    let mut last_accepted: u32 = 0;
    // Streams left unanswered (see Command::Hold and Command::Close).
    let mut held: Vec<SendResponse<Bytes>> = Vec::new();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    let going_away = tokio::time::sleep(CLOSE_AFTER_GOAWAY);
    tokio::pin!(going_away);
    let mut tick = tokio::time::interval(Duration::from_millis(10));

    let reason = loop {
        let is_serving = matches!(life, Life::Serving);
        let is_going_away = matches!(life, Life::GoingAway { .. });
        tokio::select! {
            accepted = conn.accept() => match accepted {
                None => break match life {
                    Life::Draining(Drain::Idle) => {
                        format!("idle timeout ({:?} without a request)", limits.idle_timeout)
                    }
                    Life::Draining(_) => "drained after GOAWAY".to_owned(),
                    Life::GoingAway { closing: true } => "closed after GOAWAY (rule)".to_owned(),
                    Life::GoingAway { closing: false } => {
                        "client closed after the GOAWAY (rule)".to_owned()
                    }
                    Life::Serving => "client closed".to_owned(),
                },
                Some(Err(err)) => break describe_h2_error(&err),
                Some(Ok((request, respond))) => {
                    idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                    ctx.touch();
                    last_accepted = last_accepted.max(respond.stream_id().into());
                    ctx.saw_stream(last_accepted);
                    // Stamped here, in arrival order, not when the task gets to run.
                    let received_ms = journal.now_ms();
                    tasks.spawn(handle_request(Arc::clone(&ctx), request, respond, tx.clone(), received_ms));
                }
            },
            Some(command) = rx.recv() => match command {
                Command::Graceful { rule, sent } => {
                    if is_serving {
                        life = Life::Draining(Drain::Rule);
                        drain(&mut conn, &journal, id, rule);
                    }
                    let _ = sent.send(());
                }
                Command::Frames { frames, rule, queued } => {
                    for (stream, frame) in frames {
                        if matches!(frame, SentFrame::Goaway { .. }) && !is_going_away {
                            life = Life::GoingAway { closing: false };
                        }
                        inject(&injector, &journal, id, stream, frame, rule.clone(), false);
                    }
                    let _ = queued.send(());
                }
                Command::Hold(respond) => {
                    // Once h2 is closing, a late stream above the GOAWAY is let go at once
                    // (h2's reset of it is filtered out), so that it does not hold the close.
                    if !matches!(life, Life::GoingAway { closing: true }) {
                        held.push(respond);
                    }
                }
                Command::Close { rule, _unanswered } => {
                    held.push(_unanswered);
                    // The rule's frames, queued just before, go out first (bounded).
                    let _ = tokio::time::timeout(
                        CLOSE_DRAIN,
                        std::future::poll_fn(|cx| injector.poll_drain(cx)),
                    )
                    .await;
                    break format!("closed by rule {}", rule.as_deref().unwrap_or("?"));
                }
            },
            drained = std::future::poll_fn(|cx| injector.poll_drain(cx)), if injector.has_due() => {
                if let Err(err) = drained {
                    break format!("connection error: {err}");
                }
            }
            _ = tick.tick(), if is_going_away => {
                // The streams at or below the GOAWAY's last-stream-id have finished: the
                // unanswered ones go (h2's resets of them are filtered out), and h2 closes
                // once what it holds is written.
                if tasks.is_empty() && matches!(life, Life::GoingAway { closing: false }) {
                    held.clear();
                    conn.graceful_shutdown();
                    life = Life::GoingAway { closing: true };
                    going_away.as_mut().reset(Instant::now() + CLOSE_AFTER_GOAWAY);
                }
            }
            () = &mut going_away, if matches!(life, Life::GoingAway { closing: true }) => {
                break format!(
                    "closed after GOAWAY (rule); cut off {CLOSE_AFTER_GOAWAY:?} after the streams it serves were done (the client did not answer h2's closing PING)"
                );
            }
            () = &mut idle, if is_serving => {
                // Idle means no request in flight and none finished for the whole timeout.
                let quiet_since = ctx.last_active();
                if tasks.is_empty() && quiet_since.elapsed() >= limits.idle_timeout {
                    // GOAWAY(NO_ERROR) naming the last stream, without the graceful dance's
                    // PING; the loop then runs until h2 has written what it holds and closes.
                    life = Life::Draining(Drain::Idle);
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    journal.record(EventKind::GoawaySent {
                        connection: id,
                        last_stream_id: last_accepted,
                        code: ErrorCode::NoError,
                        graceful: false,
                        rule: None,
                    });
                    let until = Instant::now() + limits.shutdown_grace;
                    grace.as_mut().reset(until);
                    grace_until = Some(until);
                } else {
                    // While requests are in flight, look again a whole timeout later;
                    // otherwise when the quiet period since the last one will be over.
                    let now = Instant::now();
                    let next = if tasks.is_empty() {
                        quiet_since + limits.idle_timeout
                    } else {
                        now + limits.idle_timeout
                    };
                    idle.as_mut().reset(next.max(now + Duration::from_millis(1)));
                }
            }
            () = ctx.shared.shutdown.cancelled(), if grace_until.is_none() => {
                let until = Instant::now() + limits.shutdown_grace;
                grace.as_mut().reset(until);
                grace_until = Some(until);
                if is_serving {
                    life = Life::Draining(Drain::Shutdown);
                    drain(&mut conn, &journal, id, None);
                }
            }
            () = &mut grace, if grace_until.is_some() => break match life {
                Life::Draining(Drain::Idle) => format!(
                    "idle timeout ({:?} without a request); cut off {:?} after its GOAWAY (the client did not close)",
                    limits.idle_timeout, limits.shutdown_grace
                ),
                _ => "shutdown grace period over".to_owned(),
            },
        }
    };
    drop(conn);
    drop(held);
    // The request tasks are waited for by the caller (`connection::run_protocol`).
    reason
}

/// Queues a frame for the next frame boundary, to be journaled (`frame_sent`) once written.
fn inject<T>(
    injector: &Injector<T>,
    journal: &Arc<crate::journal::Journal>,
    connection: u64,
    stream: u32,
    frame: SentFrame,
    rule: Option<String>,
    after_settings: bool,
) {
    let journal = Arc::clone(journal);
    let encoded = match &frame {
        SentFrame::Origin { origins } => origin_frame(origins),
        SentFrame::Altsvc { origin, value } => altsvc_frame(stream, origin, value),
        SentFrame::Goaway {
            last_stream_id,
            code,
            debug,
        } => {
            let (code, debug) = (*code, debug.clone());
            injector.inject_goaway(*last_stream_id, code.value(), &debug.clone(), move |sent| {
                journal.record(EventKind::FrameSent {
                    connection,
                    stream,
                    frame: SentFrame::Goaway {
                        last_stream_id: sent,
                        code,
                        debug,
                    },
                    rule,
                });
            });
            return;
        }
    };
    match encoded {
        Ok(bytes) => injector.inject(
            bytes,
            after_settings,
            Some(Box::new(move || {
                journal.record(EventKind::FrameSent {
                    connection,
                    stream,
                    frame,
                    rule,
                });
            })),
        ),
        Err(err) => tracing::warn!(connection, "frame not sent: {err}"),
    }
}

/// Starts h2's graceful shutdown (GOAWAY with the highest stream id, then the real one once
/// a PING round trip shows the client has seen it) and journals it.
fn drain<T, B>(
    conn: &mut h2::server::Connection<T, B>,
    journal: &crate::journal::Journal,
    id: u64,
    rule: Option<String>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
    B: bytes::Buf,
{
    conn.graceful_shutdown();
    journal.record(EventKind::GoawaySent {
        connection: id,
        last_stream_id: MAX_STREAM_ID,
        code: ErrorCode::NoError,
        graceful: true,
        rule,
    });
}

fn describe_h2_error(err: &h2::Error) -> String {
    if err.is_go_away() && err.is_remote() {
        format!(
            "client sent GOAWAY ({})",
            err.reason().map_or("?".to_owned(), |r| format!("{r:?}"))
        )
    } else if err.is_io() {
        format!("connection error: {err}")
    } else {
        format!("HTTP/2 error: {err}")
    }
}

async fn handle_request(
    ctx: Arc<ConnCtx>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    commands: mpsc::UnboundedSender<Command>,
    received_ms: f64,
) {
    // However the task ends, the connection has been busy until then.
    let _busy = Busy(Arc::clone(&ctx));
    let stream_id: u32 = respond.stream_id().into();
    let head_request = request.method() == http::Method::HEAD;
    let (parts, body) = request.into_parts();
    let mut arrival = Arrival {
        parts,
        body: Bytes::new(),
        error: None,
        stream: Some(stream_id),
        received_ms,
    };
    if ctx.unprocessed(&arrival, "sent before it arrived") {
        // Not processed (RFC 9113 §6.8): the client must retry it elsewhere.
        let _ = commands.send(Command::Hold(respond));
        return;
    }
    let limit = ctx.shared.limits.max_body_bytes;
    (arrival.body, arrival.error) = read_body(body, limit, ctx.shared.limits.idle_timeout).await;
    let (outgoing, plan) = ctx.handle(arrival).await;
    if !outgoing.frames.is_empty() {
        // The frames go out before the answer (bounded, in case the connection is gone).
        let (queued, done) = tokio::sync::oneshot::channel();
        let frames = Command::Frames {
            frames: outgoing.frames,
            rule: outgoing.rule,
            queued,
        };
        if commands.send(frames).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        }
    }
    match plan {
        Plan::Respond { response, .. } => {
            send_or_record(&ctx, &mut respond, &response, head_request).await;
        }
        Plan::Reset(code) => respond.send_reset(Reason::from(code.value())),
        Plan::Drain { response, rule } => {
            // GOAWAY first, so that the client learns of the drain with (not after) the
            // answer; bounded, in case the connection is already gone.
            let (sent, queued) = tokio::sync::oneshot::channel();
            if commands.send(Command::Graceful { rule, sent }).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(1), queued).await;
            }
            if let Some(response) = response {
                send_or_record(&ctx, &mut respond, &response, head_request).await;
            }
        }
        Plan::Close { rule } => {
            let _ = commands.send(Command::Close {
                rule,
                _unanswered: respond,
            });
        }
        Plan::Unprocessed => {
            let _ = commands.send(Command::Hold(respond));
        }
        Plan::Abandon => {}
    }
}

/// Marks the connection active when dropped, i.e. when a request task ends.
struct Busy(Arc<ConnCtx>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
    }
}

/// Sends a response; a failure (the client reset the stream, the connection died) is
/// journaled as its own event, since the request event is already written.
async fn send_or_record(
    ctx: &ConnCtx,
    respond: &mut SendResponse<Bytes>,
    response: &Response,
    head_request: bool,
) {
    let patience = ctx.shared.limits.idle_timeout;
    if let Err(error) = send_response(respond, response, head_request, patience).await {
        ctx.response_failed(Some(u32::from(respond.stream_id())), error);
    }
}

/// Reads the whole body, returning capacity to the peer as it goes, up to `limit` bytes,
/// waiting at most `patience` for each piece.
async fn read_body(
    mut body: RecvStream,
    limit: u64,
    patience: std::time::Duration,
) -> (Bytes, Option<RequestError>) {
    let mut buf = BytesMut::new();
    loop {
        let Ok(chunk) = tokio::time::timeout(patience, body.data()).await else {
            return (buf.freeze(), Some(RequestError::Stalled(patience)));
        };
        let Some(chunk) = chunk else { break };
        match chunk {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
                if (buf.len() + data.len()) as u64 > limit {
                    return (buf.freeze(), Some(RequestError::TooLarge(limit)));
                }
                buf.extend_from_slice(&data);
            }
            Err(err) => return (buf.freeze(), Some(RequestError::Failed(err.to_string()))),
        }
    }
    (buf.freeze(), None)
}

/// Sends a response: the head, then the body in pieces of at most [`SEND_CHUNK`] bytes, each
/// only once flow control has granted the capacity for it. So a client that keeps its window
/// closed costs no memory beyond what the windows allow: the pieces are slices of the
/// scenario's shared body, and h2 holds at most [`SEND_CHUNK`] bytes per stream unsent. A
/// window that stays closed for `patience` ends the stream with RST_STREAM(CANCEL).
async fn send_response(
    respond: &mut SendResponse<Bytes>,
    response: &Response,
    head_request: bool,
    patience: Duration,
) -> Result<(), String> {
    let head = response_head(response)?;
    // RFC 9110 §6.4.1: no content in answers to HEAD, and none in 204 or 304.
    let end = response.body.is_empty() || head_request || !status_has_body(response.status);
    let mut stream = respond
        .send_response(head, end)
        .map_err(|e| format!("sending the response failed: {e}"))?;
    if end {
        return Ok(());
    }
    let total = response.body.len();
    let mut rest = response.body.clone();
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len().min(SEND_CHUNK));
        let granted = match tokio::time::timeout(
            patience,
            std::future::poll_fn(|cx| stream.poll_capacity(cx)),
        )
        .await
        {
            Ok(Some(Ok(granted))) => granted,
            Ok(Some(Err(err))) => return Err(format!("sending the body failed: {err}")),
            Ok(None) => {
                return Err(format!(
                    "the stream ended with {} of {total} body bytes unsent",
                    rest.len()
                ));
            }
            Err(_) => {
                stream.send_reset(Reason::CANCEL);
                return Err(format!(
                    "no room to send for {patience:?} (the client's flow-control window stayed closed, or it stopped reading) with {} of {total} body bytes unsent; stream reset (CANCEL)",
                    rest.len()
                ));
            }
        };
        if granted == 0 {
            continue;
        }
        let piece = rest.split_to(granted.min(rest.len()));
        stream
            .send_data(piece, rest.is_empty())
            .map_err(|e| format!("sending the body failed: {e}"))?;
    }
    Ok(())
}
