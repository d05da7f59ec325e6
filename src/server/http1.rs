//! The HTTP/1.1 translator (ALPN `http/1.1`, no ALPN, or cleartext) with hyper: reads each
//! request, hands it to the [`pipeline`](super::pipeline), and puts the [`Plan`] on the wire.
//! The pipeline has already lowered the signals HTTP/1.1 lacks: RST_STREAM and an immediate
//! GOAWAY arrive as a close without an answer, a graceful GOAWAY as an answer with
//! `Connection: close`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::pipeline::{Arrival, ConnCtx, Plan, RequestError, response_head};
use crate::engine::Response;

/// Why a handler ended the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct EndConnection(String);

/// Serves an HTTP/1.1 connection until it ends; returns why it ended.
pub(crate) async fn serve<IO>(ctx: Arc<ConnCtx>, io: IO) -> String
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.shared.limits.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let service_ctx = Arc::clone(&ctx);
    // hyper drops a handler whose client went away; running it as its own task means every
    // request is still journaled.
    let tasks = ctx.tasks.clone();
    let service_tasks = tasks.clone();
    let service = service_fn(move |request| {
        let task = service_tasks.spawn(handle_request(
            Arc::clone(&service_ctx),
            request,
            tx.clone(),
        ));
        async move {
            match task.await {
                Ok(result) => result,
                Err(err) => Err(EndConnection(format!("request handler failed: {err}"))),
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size((limits.max_header_list_size as usize).max(8192));
    // The connection lives in this block: it is dropped (the socket closed) before the wait
    // for the request tasks below, so that a task still reading a body ends at once.
    let reason = {
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let grace = tokio::time::sleep(limits.shutdown_grace);
        tokio::pin!(grace);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Ok(reason) = rx.try_recv() {
                        break reason;
                    }
                    break match result {
                        Ok(()) => "client closed".to_owned(),
                        Err(err) if err.is_timeout() => {
                            format!("idle timeout ({:?} without a request)", limits.idle_timeout)
                        }
                        Err(err) => format!("HTTP/1.1 error: {err}"),
                    };
                }
                () = ctx.shared.shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + limits.shutdown_grace);
                    conn.as_mut().graceful_shutdown();
                }
                () = &mut grace, if shutting_down => break "shutdown grace period over".to_owned(),
            }
        }
    };
    // The request tasks are waited for by the caller (`connection::run_protocol`).
    reason
}

type HandlerResult = Result<http::Response<Full<Bytes>>, EndConnection>;

async fn handle_request(
    ctx: Arc<ConnCtx>,
    request: http::Request<Body>,
    end: mpsc::UnboundedSender<String>,
) -> HandlerResult {
    let received_ms = ctx.shared.journal.now_ms();
    let (parts, body) = request.into_parts();
    let limit = ctx.shared.limits.max_body_bytes;
    let patience = ctx.shared.limits.idle_timeout;
    let collected =
        tokio::time::timeout(patience, Limited::new(body, limit as usize).collect()).await;
    let (body, error) = match collected {
        Ok(Ok(collected)) => (collected.to_bytes(), None),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            (Bytes::new(), Some(RequestError::TooLarge(limit)))
        }
        Ok(Err(err)) => (Bytes::new(), Some(RequestError::Failed(err.to_string()))),
        Err(_) => (Bytes::new(), Some(RequestError::Stalled(patience))),
    };
    // HTTP/1.1 has no frames: the pipeline sends none here and journals that.
    let (_, plan) = ctx
        .handle(Arrival {
            parts,
            body,
            error,
            stream: None,
            received_ms,
        })
        .await;
    match plan {
        Plan::Respond {
            response,
            close_after,
        } => to_hyper(&response, close_after),
        Plan::Abandon => Err(EndConnection("connection closed during a delay".to_owned())),
        // The pipeline lowers every other signal to a close on HTTP/1.1.
        Plan::Close { rule } | Plan::Drain { rule, .. } => {
            let reason = format!("closed by rule {}", rule.as_deref().unwrap_or("?"));
            let _ = end.send(reason.clone());
            Err(EndConnection(reason))
        }
        Plan::Reset(_) | Plan::Unprocessed => {
            let reason = "closed: HTTP/1.1 has no stream to reset".to_owned();
            let _ = end.send(reason.clone());
            Err(EndConnection(reason))
        }
    }
}

fn to_hyper(response: &Response, close: bool) -> HandlerResult {
    let head = response_head(response).map_err(EndConnection)?;
    let (mut parts, ()) = head.into_parts();
    if close {
        parts.headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(http::Response::from_parts(
        parts,
        Full::new(response.body.clone()),
    ))
}
