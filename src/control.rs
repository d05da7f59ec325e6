//! The control API: HTTP/1.1 + JSON on its own listener (loopback unless asked otherwise),
//! for test suites that drive a long-running harness between test cases.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"ok": true}` once ready (unauthenticated, for health checks) |
//! | GET | `/ready` | the readiness JSON (listeners, ports, CA path, SPKI hashes) |
//! | GET | `/ca.pem` | the CA certificate |
//! | GET | `/listeners` | listeners with their real ports |
//! | GET | `/plan` | the client plan with real ports (what `run` puts in `MISDIRECT_PLAN`) |
//! | GET | `/journal?since=N&format=json\|ndjson` | events (all, or after sequence N) |
//! | POST | `/reset` | clear the journal and every counter |
//! | PUT | `/scenario` | load another scenario (JSON body); 400 lists every problem |
//! | GET | `/verdict?allow_not_exercised=true` | the expectations' verdict |
//! | GET | `/report` | the run as a self-contained HTML page |

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::harness::Handle;
use crate::scenario;

/// Where and how the control API listens.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Address to bind (loopback unless the caller explicitly chose otherwise).
    pub address: std::net::SocketAddr,
    /// When set, every request but `/health` must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How `PUT /scenario` loads a scenario: `base_dir` is where its `body_file`s are read
    /// from (the served scenario's folder).
    pub load: scenario::LoadOptions,
}

/// What every control request is served with.
struct Settings {
    token: Option<String>,
    load: scenario::LoadOptions,
}

/// Why the control API could not listen.
#[derive(Debug, thiserror::Error)]
#[error(
    "listener \"control\": cannot bind {address}: {source} (is another process using that port? port 0 picks a free one)"
)]
pub struct ControlError {
    /// The address asked for.
    address: std::net::SocketAddr,
    /// The OS error.
    source: std::io::Error,
}

/// The control API's listener, bound before the harness starts so that its URL can be part
/// of the readiness line.
pub struct Control {
    listener: TcpListener,
    url: String,
    settings: Settings,
}

impl Control {
    /// Binds the control API's listener.
    pub async fn bind(options: &ControlOptions) -> Result<Control, ControlError> {
        let error = |source| ControlError {
            address: options.address,
            source,
        };
        let listener = TcpListener::bind(options.address).await.map_err(error)?;
        let address = listener.local_addr().map_err(error)?;
        Ok(Control {
            listener,
            url: format!("http://{address}"),
            settings: Settings {
                token: options.token.clone(),
                load: options.load.clone(),
            },
        })
    }

    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves the control API for `handle` until the harness shuts down.
    pub async fn serve(self, handle: Handle) {
        serve(self.listener, handle, self.settings).await;
    }
}

/// Largest scenario accepted by `PUT /scenario`.
const MAX_SCENARIO_BYTES: usize = 4 * 1024 * 1024;

type Reply = http::Response<Full<Bytes>>;

/// Serves the control API until the server shuts down.
async fn serve(listener: TcpListener, handle: Handle, settings: Settings) {
    let settings = Arc::new(settings);
    let shutdown = handle.shutdown_token();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "control API accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let settings = Arc::clone(&settings);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let handle = handle.clone();
                let settings = Arc::clone(&settings);
                async move {
                    Ok::<_, std::convert::Infallible>(route(&handle, &settings, request).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        format!("{{\"error\": \"cannot serialize the answer: {e}\"}}").into_bytes()
    });
    with_type(status, "application/json", body)
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = http::Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    reply
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

fn query<'a>(request: &'a http::Request<Incoming>, key: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

fn authorized(token: &Option<String>, request: &http::Request<Incoming>) -> bool {
    let Some(token) = token else {
        return true;
    };
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

async fn route(handle: &Handle, settings: &Settings, request: http::Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if (method.clone(), path.as_str()) == (Method::GET, "/health") {
        return json(StatusCode::OK, &serde_json::json!({ "ok": true }));
    }
    if !authorized(&settings.token, &request) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` (the --control-token value)",
        );
    }
    match (method, path.as_str()) {
        (Method::GET, "/ready") => json(StatusCode::OK, &handle.ready_now()),
        (Method::GET, "/ca.pem") => with_type(
            StatusCode::OK,
            "application/x-pem-file",
            handle.ca_pem().as_bytes().to_vec(),
        ),
        (Method::GET, "/listeners") => json(StatusCode::OK, &handle.ready().listeners),
        (Method::GET, "/plan") => json(
            StatusCode::OK,
            &serde_json::json!({ "steps": handle.plan() }),
        ),
        (Method::GET, "/journal") => journal(handle, &request),
        (Method::POST, "/reset") => {
            let seq = handle.reset();
            json(
                StatusCode::OK,
                &serde_json::json!({ "reset": true, "seq": seq }),
            )
        }
        (Method::PUT, "/scenario") | (Method::POST, "/scenario") => {
            load(handle, &settings.load, request).await
        }
        (Method::GET, "/verdict") => {
            let allow = query(&request, "allow_not_exercised") == Some("true");
            let verdict = handle.verdict(allow);
            if query(&request, "table") == Some("true") {
                // The verdict and its table from one snapshot of the journal.
                let mut value = serde_json::to_value(&verdict).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("table".to_owned(), verdict.table().into());
                }
                json(StatusCode::OK, &value)
            } else {
                json(StatusCode::OK, &verdict)
            }
        }
        (Method::GET, "/report") => with_type(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::report::html(&handle.journal().snapshot(), Some(&handle.verdict(false)))
                .into_bytes(),
        ),
        (
            _,
            "/ready" | "/ca.pem" | "/listeners" | "/journal" | "/reset" | "/scenario" | "/verdict"
            | "/report",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed here; see the README's control API table",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; try /health, /ready, /ca.pem, /listeners, /plan, /journal, /reset, /scenario, /verdict, /report",
        ),
    }
}

fn journal(handle: &Handle, request: &http::Request<Incoming>) -> Reply {
    let since = match query(request, "since").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "since: expected a whole number (a sequence number)",
            );
        }
    };
    let ndjson = query(request, "format") == Some("ndjson")
        || request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("ndjson"));
    let journal = handle.journal();
    let (mut reply, dropped) = if ndjson {
        let (body, dropped) = journal.ndjson_since(since);
        (
            with_type(StatusCode::OK, "application/x-ndjson", body),
            dropped,
        )
    } else {
        let window = journal.window(since);
        (json(StatusCode::OK, &window.events), window.dropped)
    };
    // The in-memory journal is bounded (the file keeps everything): say how many of the
    // events asked for are no longer in memory.
    reply
        .headers_mut()
        .insert(JOURNAL_DROPPED, http::HeaderValue::from(dropped));
    reply
}

/// Response header of `GET /journal`: events after `since` dropped from memory.
const JOURNAL_DROPPED: &str = "misdirect-journal-dropped";

async fn load(
    handle: &Handle,
    options: &scenario::LoadOptions,
    request: http::Request<Incoming>,
) -> Reply {
    let body = match Limited::new(request.into_body(), MAX_SCENARIO_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the scenario must be a JSON body of at most 4 MiB",
            );
        }
    };
    let scenario = match scenario::from_bytes_with(&body, options) {
        Ok((scenario, _)) => scenario,
        Err(err) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "invalid scenario", "problems": err.lines() }),
            );
        }
    };
    match handle.reload(scenario) {
        Ok(reloaded) => json(StatusCode::OK, &reloaded),
        Err(err) => error(StatusCode::CONFLICT, &err.to_string()),
    }
}
