//! HTTP/2 connections (h2 over TLS, h2c by prior knowledge) with the h2 crate, which exposes
//! stream ids, RST_STREAM codes and GOAWAY; frames h2 cannot send go through the injector.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Ping, Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::connection::{ConnCtx, Done, Incoming, header_facts, normalize_authority, sha256_hex};
use super::inject::{Injector, goaway_frame};
use crate::engine::{Outcome, RequestFacts, Response};
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
    /// Send GOAWAY excluding the request's stream, then close. The unanswered stream's
    /// `SendResponse` is held until then, so that h2 does not reset it first.
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
    let (io, inject) = Injector::new(io);
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
    let mut ping = conn.ping_pong();
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let tasks = TaskTracker::new();
    let mut draining = false;
    let mut shutting_down = false;
    let mut abrupt: Option<u64> = None;
    // Held until the connection is dropped (see Command::Abrupt).
    let mut held: Vec<SendResponse<Bytes>> = Vec::new();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);

    let reason = loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                None if draining => break "drained after GOAWAY".to_owned(),
                // After a rule's GOAWAY the client may well hang up first.
                None | Some(Err(_)) if abrupt.is_some() => {
                    break "closed after GOAWAY (rule)".to_owned();
                }
                None => break "client closed".to_owned(),
                Some(Err(err)) => break describe_h2_error(&err),
                Some(Ok((request, respond))) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    tasks.spawn(handle_request(Arc::clone(&ctx), request, respond, tx.clone()));
                }
            },
            Some(command) = rx.recv() => match command {
                Command::Graceful { rule, sent } => {
                    if !draining {
                        draining = true;
                        conn.graceful_shutdown();
                        journal.record(EventKind::GoawaySent {
                            connection: id,
                            last_stream_id: MAX_STREAM_ID,
                            code: ErrorCode::NoError,
                            graceful: true,
                            rule,
                        });
                    }
                    let _ = sent.send(());
                }
                Command::Abrupt { last_stream_id, code, rule, _unanswered } => {
                    held.push(_unanswered);
                    if abrupt.is_none() {
                        let debug = format!("misdirect: rule {}", rule.as_deref().unwrap_or("?"));
                        abrupt = Some(inject.push(goaway_frame(last_stream_id, code.value(), &debug), 1));
                        // Make h2 write something so that the injector gets a frame boundary.
                        if let Some(ping) = ping.as_mut() {
                            let _ = ping.send_ping(Ping::opaque());
                        }
                        journal.record(EventKind::GoawaySent {
                            connection: id,
                            last_stream_id,
                            code,
                            graceful: false,
                            rule,
                        });
                    }
                }
                Command::Close { rule, _unanswered } => {
                    held.push(_unanswered);
                    break format!("closed by rule {}", rule.as_deref().unwrap_or("?"));
                }
            },
            () = wait_flushed(&inject, abrupt), if abrupt.is_some() => {
                break "closed after GOAWAY (rule)".to_owned();
            }
            () = &mut idle => {
                if tasks.is_empty() {
                    break format!("idle timeout ({:?} without a request)", limits.idle_timeout);
                }
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
            }
            () = ctx.shared.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                grace.as_mut().reset(tokio::time::Instant::now() + limits.shutdown_grace);
                if !draining {
                    draining = true;
                    conn.graceful_shutdown();
                    journal.record(EventKind::GoawaySent {
                        connection: id,
                        last_stream_id: MAX_STREAM_ID,
                        code: ErrorCode::NoError,
                        graceful: true,
                        rule: None,
                    });
                }
            }
            () = &mut grace, if shutting_down => break "shutdown grace period over".to_owned(),
        }
    };
    drop(conn);
    drop(held);
    ctx.closed.cancel();
    // Request tasks whose connection is gone finish quickly (their sends fail); wait for
    // them so that every request is journaled before the connection's close event.
    tasks.close();
    let _ = tokio::time::timeout(limits.shutdown_grace, tasks.wait()).await;
    reason
}

async fn wait_flushed(inject: &super::inject::InjectHandle, ticket: Option<u64>) {
    if let Some(ticket) = ticket {
        // Bounded: a peer that stopped reading must not keep the connection open.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), inject.flushed(ticket)).await;
    }
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
) {
    let received_ms = ctx.shared.journal.now_ms();
    let stream_id: u32 = respond.stream_id().into();
    let (parts, body) = request.into_parts();
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
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let limit = ctx.shared.limits.max_body_bytes;
    let (body_bytes, body_error) = read_body(body, limit).await;
    let incoming = Incoming {
        facts: RequestFacts {
            method: parts.method.as_str().to_owned(),
            authority: normalize_authority(&authority),
            path,
            headers: header_facts(&parts.headers),
        },
        stream: Some(stream_id),
        body_bytes: body_bytes.len() as u64,
        body_sha256: sha256_hex(&body_bytes),
        received_ms,
    };
    let decision = ctx.decide(&incoming);
    let mut done = Done::default();
    // Each request is journaled before its answer goes out, so that a client that has seen
    // the answer can rely on the journal having the request.
    if let Some(error) = body_error {
        let status = if error.starts_with("request body over") {
            413
        } else {
            400
        };
        done.status = Some(status);
        done.action_override = Some("respond");
        let response = plain(status, &format!("misdirect: {error}\n"));
        done.error = Some(error);
        ctx.journal_request(incoming, &decision, done);
        send_or_record(&ctx, &mut respond, &response);
        return;
    }
    if !ctx.delay(decision.delay_ms).await {
        done.error = Some("connection closed during the rule's delay".to_owned());
        ctx.journal_request(incoming, &decision, done);
        return;
    }
    let rule = decision.rule.clone();
    match &decision.outcome {
        Outcome::Respond(response) => {
            done.status = Some(response.status);
            ctx.journal_request(incoming, &decision, done);
            send_or_record(&ctx, &mut respond, response);
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
                send_or_record(&ctx, &mut respond, response);
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

/// Sends a response; a failure (the client reset the stream, the connection died) is
/// journaled as its own event, since the request event is already written.
fn send_or_record(ctx: &ConnCtx, respond: &mut SendResponse<Bytes>, response: &Response) {
    if let Err(error) = send_response(respond, response) {
        ctx.shared.journal.record(EventKind::ResponseFailed {
            connection: ctx.facts.id,
            stream: Some(u32::from(respond.stream_id())),
            error,
        });
    }
}

/// Reads the whole body, returning capacity to the peer as it goes, up to `limit` bytes.
async fn read_body(mut body: RecvStream, limit: u64) -> (Bytes, Option<String>) {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
                if (buf.len() + data.len()) as u64 > limit {
                    return (
                        buf.freeze(),
                        Some(format!("request body over {limit} bytes")),
                    );
                }
                buf.extend_from_slice(&data);
            }
            Err(err) => {
                return (
                    buf.freeze(),
                    Some(format!("reading the request body failed: {err}")),
                );
            }
        }
    }
    (buf.freeze(), None)
}

fn plain(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: [(
            "content-type".to_owned(),
            "text/plain; charset=utf-8".to_owned(),
        )]
        .into(),
        body: body.to_owned(),
    }
}

/// Builds the response head for both protocols.
pub(crate) fn response_head(response: &Response) -> Result<http::Response<()>, String> {
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = builder.header(http::header::CONTENT_LENGTH, response.body.len());
    builder.body(()).map_err(|e| format!("bad response: {e}"))
}

fn send_response(respond: &mut SendResponse<Bytes>, response: &Response) -> Result<(), String> {
    let head = response_head(response)?;
    let end = response.body.is_empty();
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
