//! A client adapter (clients/README.md) for reqwest: carries out `MISDIRECT_PLAN` through
//! one `reqwest::Client` (HTTP/2 over rustls on ring; its own connection pool, its built-in
//! retry of protocol NACKs and nothing added), trusting only `MISDIRECT_CA`, with each name
//! mapped to its `connect` address by `ClientBuilder::resolve`.
//!
//! ```sh
//! cargo build --example reqwest_adapter
//! misdirect run scenarios/first-attempt-421.json -- target/debug/examples/reqwest_adapter
//! misdirect scorecard --client reqwest=target/debug/examples/reqwest_adapter
//! ```
//!
//! Prints one line per request — what reqwest returned: a status, or its error with causes
//! — and exits 0 once the plan is carried out, whatever the answers; 2 when it cannot run
//! (no plan, no CA).

use std::error::Error as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// A request that hangs is the client's behaviour too, but not forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn text<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request.get(key).and_then(Value::as_str)
}

/// The client: every planned host resolved to its `connect` address (reqwest takes the port
/// from the URL), only the harness's CA trusted.
fn client(plan: &[Value], ca_pem: &[u8]) -> Result<reqwest::Client, String> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|e| format!("MISDIRECT_CA: {e}"))?;
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(REQUEST_TIMEOUT)
        .no_proxy();
    for request in plan.iter().filter_map(|step| step.get("request")) {
        let (Some(host), Some(connect)) = (text(request, "host"), text(request, "connect")) else {
            return Err(format!(
                "a planned request without host or connect: {request}"
            ));
        };
        let addr: SocketAddr = connect
            .parse()
            .map_err(|e| format!("connect {connect:?}: {e}"))?;
        builder = builder.resolve(host, addr);
    }
    builder.build().map_err(|e| describe(&e))
}

async fn carry_out(plan: &[Value], client: &reqwest::Client) -> Result<(), String> {
    for step in plan {
        if let Some(ms) = step.get("pause_ms").and_then(Value::as_u64) {
            println!("pause {ms} ms");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            continue;
        }
        let Some(request) = step.get("request") else {
            return Err(format!("a step that is neither request nor pause: {step}"));
        };
        let method = text(request, "method").unwrap_or("GET");
        let url = text(request, "url_with_port")
            .ok_or_else(|| format!("a request without url_with_port: {request}"))?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("method {method:?}: {e}"))?;
        let mut builder = client.request(method.clone(), url);
        if let Some(headers) = request.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                builder = builder.header(name, value.as_str().unwrap_or_default());
            }
        }
        if let Some(body) = text(request, "body") {
            builder = builder.body(body.to_owned());
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let version = response.version();
                let bytes = response.bytes().await.map(|b| b.len());
                match bytes {
                    Ok(n) => println!("{method} {url} -> {status} ({version:?}, {n} bytes)"),
                    Err(e) => println!(
                        "{method} {url} -> {status} ({version:?}, body: {})",
                        describe(&e)
                    ),
                }
            }
            Err(err) => println!("{method} {url} -> error: {}", describe(&err)),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let setup = || -> Result<(Vec<Value>, reqwest::Client), String> {
        let plan = std::env::var("MISDIRECT_PLAN")
            .map_err(|_| "MISDIRECT_PLAN is not set: run me under `misdirect run`".to_owned())?;
        let plan: Value =
            serde_json::from_str(&plan).map_err(|e| format!("MISDIRECT_PLAN: {e}"))?;
        let steps = plan
            .get("steps")
            .and_then(Value::as_array)
            .cloned()
            .ok_or("MISDIRECT_PLAN has no steps")?;
        let ca = std::env::var("MISDIRECT_CA").map_err(|_| "MISDIRECT_CA is not set".to_owned())?;
        let ca_pem = std::fs::read(&ca).map_err(|e| format!("MISDIRECT_CA {ca}: {e}"))?;
        let client = client(&steps, &ca_pem)?;
        Ok((steps, client))
    };
    let result = match setup() {
        Ok((steps, client)) => carry_out(&steps, &client).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("reqwest_adapter: {err}");
            ExitCode::from(2)
        }
    }
}
