//! HTTP/2 connections (h2 over TLS, h2c by prior knowledge) with the h2 crate, which exposes
//! stream ids, RST_STREAM codes and GOAWAY; frames h2 cannot send go through the injector.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::connection::{BodyError, ConnCtx, Done, Incoming};
use super::inject::{goaway_frame, track};
use crate::engine::{Outcome, Response};
use crate::journal::EventKind;
use crate::scenario::ErrorCode;

/// RFC 9113 §6.8: a graceful GOAWAY first announces the highest possible stream id.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// What a request task asks of its connection.
enum Command {
    /// Send GOAWAY(NO_ERROR) and drain; `sent` fires once h2 has queued it, so the answer
    /// to the request goes out after it.
    Graceful {
        rule: Option<String>,
        sent: tokio::sync::oneshot::Sender<()>,
    },
    /// Refuse streams above `last_stream_id`, let those below finish, then send GOAWAY
    /// excluding the request's stream, and close. The unanswered stream's `SendResponse` is
    /// held until then, so that h2 does not reset it first.
    Abrupt {
        last_stream_id: u32,
        code: ErrorCode,
        rule: Option<String>,
        _unanswered: SendResponse<Bytes>,
    },
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
    let (io, takeback) = track(io);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size);
    let mut conn =
        match tokio::time::timeout(limits.handshake_timeout, builder.handshake::<_, Bytes>(io))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return format!("HTTP/2 handshake failed: {err}"),
            Err(_) => return "HTTP/2 handshake timed out".to_owned(),
        };
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let tasks = TaskTracker::new();
    let mut draining = false;
    let mut shutting_down = false;
    // Set when the idle timeout closes the connection: GOAWAY first, so that answers h2
    // still holds are written before it goes.
    let mut idle_closing = false;
    let mut last_accepted: u32 = 0;
    // Set by an immediate GOAWAY rule: what to send once the streams below it are done.
    let mut abrupt: Option<(u32, ErrorCode, Option<String>)> = None;
    // Held until the connection is dropped (see Command::Abrupt).
    let mut held: Vec<SendResponse<Bytes>> = Vec::new();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    let abrupt_deadline = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(abrupt_deadline);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));

    let reason = loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                None if idle_closing => {
                    break format!("idle timeout ({:?} without a request)", limits.idle_timeout);
                }
                None if draining => break "drained after GOAWAY".to_owned(),
                None if abrupt.is_some() => break "client closed before the GOAWAY".to_owned(),
                None => break "client closed".to_owned(),
                Some(Err(err)) => break describe_h2_error(&err),
                Some(Ok((request, respond))) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    ctx.touch();
                    last_accepted = last_accepted.max(respond.stream_id().into());
                    // Stamped here, in arrival order, not when the task gets to run.
                    let received_ms = journal.now_ms();
                    tasks.spawn(handle_request(Arc::clone(&ctx), request, respond, tx.clone(), received_ms));
                }
            },
            Some(command) = rx.recv() => match command {
                Command::Graceful { rule, sent } => {
                    if !draining && abrupt.is_none() {
                        draining = true;
                        drain(&mut conn, &journal, id, rule);
                    }
                    let _ = sent.send(());
                }
                Command::Abrupt { last_stream_id, code, rule, _unanswered } => {
                    held.push(_unanswered);
                    if abrupt.is_none() {
                        ctx.refuse_above(last_stream_id);
                        abrupt = Some((last_stream_id, code, rule));
                        abrupt_deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + limits.shutdown_grace);
                    }
                }
                Command::Close { rule, _unanswered } => {
                    held.push(_unanswered);
                    break format!("closed by rule {}", rule.as_deref().unwrap_or("?"));
                }
            },
            _ = tick.tick(), if abrupt.is_some() => {
                // The streams below the GOAWAY's last-stream-id have finished.
                if tasks.is_empty() {
                    break "closed after GOAWAY (rule)".to_owned();
                }
            }
            () = &mut abrupt_deadline, if abrupt.is_some() => {
                break "closed after GOAWAY (rule); streams below it were cut off".to_owned();
            }
            () = &mut idle, if !idle_closing => {
                // Idle means no request in flight and none finished for the whole timeout.
                let quiet_since = ctx.last_active();
                let quiet_enough = quiet_since.elapsed() >= limits.idle_timeout;
                if tasks.is_empty() && quiet_enough && !draining && abrupt.is_none() {
                    // GOAWAY(NO_ERROR) naming the last stream, without the graceful dance's
                    // PING; the loop then runs until h2 has written what it holds and closes.
                    idle_closing = true;
                    draining = true;
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    journal.record(EventKind::GoawaySent {
                        connection: id,
                        last_stream_id: last_accepted,
                        code: ErrorCode::NoError,
                        graceful: false,
                        rule: None,
                    });
                    shutting_down = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + limits.shutdown_grace);
                } else {
                    // While requests are in flight, look again a whole timeout later;
                    // otherwise when the quiet period since the last one will be over.
                    let now = tokio::time::Instant::now();
                    let next = if tasks.is_empty() {
                        quiet_since + limits.idle_timeout
                    } else {
                        now + limits.idle_timeout
                    };
                    idle.as_mut().reset(next.max(now + std::time::Duration::from_millis(1)));
                }
            }
            () = ctx.shared.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                grace.as_mut().reset(tokio::time::Instant::now() + limits.shutdown_grace);
                if !draining && abrupt.is_none() {
                    draining = true;
                    drain(&mut conn, &journal, id, None);
                }
            }
            () = &mut grace, if shutting_down => break "shutdown grace period over".to_owned(),
        }
    };
    if abrupt.is_some() {
        // Let h2 write what it has queued (the answers of finished streams) before it goes.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            std::future::poll_fn(|cx| conn.poll_closed(cx).map(|_| ())),
        )
        .await;
    }
    drop(conn);
    let reason = match abrupt {
        Some((last_stream_id, code, rule)) => {
            send_goaway_and_close(&takeback, last_stream_id, code, rule, &journal, id).await;
            reason
        }
        None => reason,
    };
    drop(held);
    ctx.closed.cancel();
    // Request tasks whose connection is gone finish quickly (their sends fail); wait for
    // them so that every request is journaled before the connection's close event.
    tasks.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, tasks.wait()).await;
    reason
}

/// Writes the rule's GOAWAY on the connection h2 has let go of, then closes it the polite
/// way: write side first, then a short drain of what the client still sends, so that the
/// close does not turn into a reset that could destroy the GOAWAY in flight.
async fn send_goaway_and_close<T>(
    takeback: &super::inject::Takeback<T>,
    last_stream_id: u32,
    code: ErrorCode,
    rule: Option<String>,
    journal: &crate::journal::Journal,
    id: u64,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(mut io) = takeback.take_at_boundary() else {
        tracing::warn!(
            connection = id,
            "h2 stopped inside a frame; the rule's GOAWAY cannot be sent"
        );
        return;
    };
    let debug = format!("misdirect: rule {}", rule.as_deref().unwrap_or("?"));
    let frame = goaway_frame(last_stream_id, code.value(), &debug);
    let written = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        io.write_all(&frame).await?;
        io.flush().await?;
        io.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        journal.record(EventKind::GoawaySent {
            connection: id,
            last_stream_id,
            code,
            graceful: false,
            rule,
        });
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
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
    if ctx.refused(stream_id) {
        // Above the last-stream-id of a GOAWAY this connection is about to send: not
        // processed (RFC 9113 §6.8), so the client may retry it elsewhere.
        refuse(&ctx, &mut respond, "above the last-stream-id of a GOAWAY");
        return;
    }
    let head_request = request.method() == http::Method::HEAD;
    let (parts, body) = request.into_parts();
    let limit = ctx.shared.limits.max_body_bytes;
    let (body_bytes, body_error) = read_body(body, limit, ctx.shared.limits.idle_timeout).await;
    let incoming = Incoming::new(&parts, &body_bytes, Some(stream_id), received_ms);
    let decision = ctx.decide(&incoming);
    let mut done = Done::default();
    // Each request is journaled before its answer goes out, so that a client that has seen
    // the answer can rely on the journal having the request.
    if let Some(error) = body_error {
        let (done, response) = error.answer();
        ctx.journal_request(incoming, &decision, done);
        send_or_record(&ctx, &mut respond, &response, head_request);
        return;
    }
    if !ctx.delay(decision.delay_ms).await {
        done.error = Some("connection closed during the rule's delay".to_owned());
        ctx.journal_request(incoming, &decision, done);
        return;
    }
    if ctx.refused(stream_id) {
        // An immediate GOAWAY excluding this stream was decided while it waited.
        refuse(
            &ctx,
            &mut respond,
            "above the last-stream-id of a GOAWAY decided while it waited",
        );
        return;
    }
    let rule = decision.rule.clone();
    match &decision.outcome {
        Outcome::Respond(response) => {
            done.status = Some(response.status);
            ctx.journal_request(incoming, &decision, done);
            send_or_record(&ctx, &mut respond, response, head_request);
        }
        Outcome::Reset(code) => {
            done.reset_code = Some(*code);
            ctx.journal_request(incoming, &decision, done);
            respond.send_reset(Reason::from(code.value()));
        }
        Outcome::Goaway {
            graceful: true,
            response,
            ..
        } => {
            done.status = response.as_ref().map(|r| r.status);
            ctx.journal_request(incoming, &decision, done);
            // GOAWAY first, so that the client learns of the drain with (not after) the
            // answer; bounded, in case the connection is already gone.
            let (sent, queued) = tokio::sync::oneshot::channel();
            if commands.send(Command::Graceful { rule, sent }).is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), queued).await;
            }
            if let Some(response) = response {
                send_or_record(&ctx, &mut respond, response, head_request);
            }
        }
        Outcome::Goaway {
            graceful: false,
            code,
            ..
        } => {
            ctx.journal_request(incoming, &decision, done);
            // Client streams are odd: the one before this is id − 2 (0 when this is 1).
            let _ = commands.send(Command::Abrupt {
                last_stream_id: stream_id.saturating_sub(2),
                code: *code,
                rule,
                _unanswered: respond,
            });
        }
        Outcome::Close => {
            ctx.journal_request(incoming, &decision, done);
            let _ = commands.send(Command::Close {
                rule,
                _unanswered: respond,
            });
        }
    }
}

/// Marks the connection active when dropped, i.e. when a request task ends.
struct Busy(Arc<ConnCtx>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
    }
}

/// Resets a stream with REFUSED_STREAM without answering it, and journals that.
fn refuse(ctx: &ConnCtx, respond: &mut SendResponse<Bytes>, reason: &str) {
    respond.send_reset(Reason::REFUSED_STREAM);
    ctx.shared.journal.record(EventKind::StreamRefused {
        connection: ctx.facts.id,
        stream: u32::from(respond.stream_id()),
        reason: reason.to_owned(),
    });
}

/// Sends a response; a failure (the client reset the stream, the connection died) is
/// journaled as its own event, since the request event is already written.
fn send_or_record(
    ctx: &ConnCtx,
    respond: &mut SendResponse<Bytes>,
    response: &Response,
    head_request: bool,
) {
    if let Err(error) = send_response(respond, response, head_request) {
        ctx.shared.journal.record(EventKind::ResponseFailed {
            connection: ctx.facts.id,
            stream: Some(u32::from(respond.stream_id())),
            error,
        });
    }
}

/// Reads the whole body, returning capacity to the peer as it goes, up to `limit` bytes,
/// waiting at most `patience` for each piece.
async fn read_body(
    mut body: RecvStream,
    limit: u64,
    patience: std::time::Duration,
) -> (Bytes, Option<BodyError>) {
    let mut buf = BytesMut::new();
    loop {
        let Ok(chunk) = tokio::time::timeout(patience, body.data()).await else {
            return (buf.freeze(), Some(BodyError::Stalled(patience)));
        };
        let Some(chunk) = chunk else { break };
        match chunk {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
                if (buf.len() + data.len()) as u64 > limit {
                    return (buf.freeze(), Some(BodyError::TooLarge(limit)));
                }
                buf.extend_from_slice(&data);
            }
            Err(err) => return (buf.freeze(), Some(BodyError::Failed(err.to_string()))),
        }
    }
    (buf.freeze(), None)
}

/// Whether a response with this status may carry content (RFC 9110 §15.3.5, §15.4.5).
pub(crate) fn status_has_body(status: u16) -> bool {
    !matches!(status, 204 | 304)
}

/// Builds the response head for both protocols.
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

fn send_response(
    respond: &mut SendResponse<Bytes>,
    response: &Response,
    head_request: bool,
) -> Result<(), String> {
    let head = response_head(response)?;
    // RFC 9110 §6.4.1: no content in answers to HEAD, and none in 204 or 304.
    let end = response.body.is_empty() || head_request || !status_has_body(response.status);
    let mut stream = respond
        .send_response(head, end)
        .map_err(|e| format!("sending the response failed: {e}"))?;
    if !end {
        stream
            .send_data(Bytes::from(response.body.clone()), true)
            .map_err(|e| format!("sending the body failed: {e}"))?;
    }
    Ok(())
}
