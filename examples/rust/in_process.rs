//! misdirect in-process, judging a real client: each test starts a bundled scenario with
//! [`misdirect::harness::Harness`] inside the test, has reqwest (HTTP/2 over rustls on ring)
//! carry out the scenario's client plan through one `Client`, and asserts what reqwest saw,
//! what the journal recorded and the verdict it earned.
//!
//! `cargo test --example in_process` runs the tests; `cargo run --example in_process [ID…]`
//! prints what reqwest did on each scenario named (default: the four the tests use).

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use misdirect::client::ResolvedStep;
use misdirect::expect::{Status, Verdict};
use misdirect::harness::Harness;
use misdirect::journal::{Event, EventKind, RequestEvent};
use misdirect::server::ServeOptions;
#[cfg(test)]
use misdirect::{journal::Action, scenario::ErrorCode};

/// What one scenario came to: what the client saw, the journal and the verdict.
struct Outcome {
    /// Per planned request, the final status reqwest returned, or its error.
    seen: Vec<Result<u16, String>>,
    journal: Vec<Event>,
    verdict: Verdict,
}

impl Outcome {
    /// Every request the server received, in order.
    fn requests(&self) -> Vec<&RequestEvent> {
        self.journal
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Request(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect()
    }

    /// The status of the expectation whose name starts with `name`.
    #[cfg_attr(not(test), allow(dead_code))]
    fn check(&self, name: &str) -> Status {
        self.verdict
            .checks
            .iter()
            .find(|c| c.expectation.starts_with(name))
            .unwrap_or_else(|| panic!("no expectation {name}:\n{}", self.verdict.table()))
            .status
    }

    /// `(connection, status)` of every request, e.g. `[(1, Some(421)), (2, Some(200))]`.
    fn answers(&self) -> Vec<(u64, Option<u16>)> {
        self.requests()
            .iter()
            .map(|r| (r.connection, r.status))
            .collect()
    }
}

/// A reqwest client as a user would build one for misdirect: trust only the harness's CA,
/// map the scenario's names to the listeners (reqwest uses the URL's port, not `addr`'s).
fn client(ca_pem: &str, names: &[(String, SocketAddr)]) -> reqwest::Client {
    // reqwest's `rustls-no-provider`: rustls on ring, as misdirect itself uses.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the CA is PEM");
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .no_proxy();
    for (name, addr) in names {
        builder = builder.resolve(name, *addr);
    }
    builder.build().expect("a reqwest client")
}

/// An error with its causes, e.g. `error sending request: … : stream error received: …`.
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Serves the bundled scenario `id` in-process and has reqwest carry out its client plan.
async fn run(id: &str) -> Outcome {
    let (_, json) = misdirect::library::BUNDLED
        .iter()
        .find(|(stem, _)| *stem == id)
        .unwrap_or_else(|| panic!("no bundled scenario {id}"));
    let (scenario, _warnings) =
        misdirect::scenario::from_bytes(json.as_bytes()).expect("a bundled scenario loads");
    let certs = tempfile::tempdir().expect("a temporary folder for the certificates");
    let options = ServeOptions {
        certs_dir: certs.path().to_owned(),
        ..ServeOptions::default()
    };
    let harness = Harness::start(scenario, options, None)
        .await
        .expect("the harness starts");

    let plan = harness.plan();
    let names: Vec<(String, SocketAddr)> = plan
        .iter()
        .filter_map(|step| match step {
            ResolvedStep::Request(r) => Some((r.host.clone(), r.connect.parse().ok()?)),
            ResolvedStep::PauseMs(_) => None,
        })
        .collect();
    let client = client(harness.ca_pem(), &names);
    let mut seen = Vec::new();
    for step in &plan {
        match step {
            ResolvedStep::PauseMs(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            ResolvedStep::Request(r) => {
                let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("a method");
                let mut request = client.request(method, &r.url_with_port);
                for (name, value) in &r.headers {
                    request = request.header(name, value);
                }
                if let Some(body) = &r.body {
                    request = request.body(body.clone());
                }
                seen.push(match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the body, as a client would, before the next request.
                        let _ = response.bytes().await;
                        Ok(status)
                    }
                    Err(err) => Err(describe(&err)),
                });
            }
        }
    }
    // Let the journal settle (connections closing), as `misdirect run` does.
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(client);
    let verdict = harness.verdict(false);
    let journal = harness.journal().snapshot();
    harness.shutdown("example done").await;
    Outcome {
        seen,
        journal,
        verdict,
    }
}

/// reqwest hands a 421 to its caller: it does not retry it, on a new connection or any.
#[tokio::test]
async fn reqwest_does_not_retry_a_421() {
    let outcome = run("first-attempt-421").await;
    let table = outcome.verdict.table();
    assert_eq!(outcome.seen, [Ok(421)], "{table}");
    assert_eq!(outcome.answers(), [(1, Some(421))], "{table}");
    assert_eq!(
        outcome.check("retried_on_new_connection"),
        Status::Fail,
        "{table}"
    );
    assert_eq!(outcome.check("max_attempts"), Status::Pass, "{table}");
    assert_eq!(outcome.check("requests"), Status::Fail, "{table}");
    assert!(!outcome.verdict.passed, "{table}");
}

/// reqwest does not coalesce: b.test gets a connection of its own although a.test's
/// certificate covers it and both names resolve to one address, so nothing is misdirected
/// and the 421 checks are not exercised (the verdict fails for that, as `misdirect run`'s
/// does without `--allow-not-exercised`).
#[tokio::test]
async fn reqwest_does_not_coalesce() {
    let outcome = run("coalescing-wrong-server").await;
    let table = outcome.verdict.table();
    assert_eq!(outcome.seen, [Ok(200), Ok(200), Ok(200)], "{table}");
    let shape: Vec<(&str, Option<&str>, u64, bool)> = outcome
        .requests()
        .iter()
        .map(|r| {
            (
                r.authority.as_str(),
                r.sni.as_deref(),
                r.connection,
                r.coalesced,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("a.test", Some("a.test"), 1, false),
            ("b.test", Some("b.test"), 2, false),
            ("b.test", Some("b.test"), 2, false),
        ]
    );
    for name in [
        "retried_on_new_connection",
        "no_retry_on_same_connection",
        "stopped_coalescing",
    ] {
        assert_eq!(outcome.check(name), Status::NotExercised, "{table}");
    }
    assert_eq!(outcome.check("max_attempts"), Status::Pass, "{table}");
    assert!(!outcome.verdict.passed, "{table}");
}

/// reqwest retries a stream refused with REFUSED_STREAM by itself (its default retry of
/// protocol NACKs), on the same connection, and its caller sees only the 200.
#[tokio::test]
async fn reqwest_retries_a_refused_stream_on_the_same_connection() {
    let outcome = run("refused-stream").await;
    let table = outcome.verdict.table();
    assert_eq!(outcome.seen, [Ok(200)], "{table}");
    assert_eq!(outcome.answers(), [(1, None), (1, Some(200))], "{table}");
    let first = outcome.requests()[0].clone();
    assert_eq!(
        (first.action, first.reset_code),
        (Action::ResetStream, Some(ErrorCode::RefusedStream))
    );
    assert!(outcome.verdict.passed, "{table}");
}

/// reqwest retries a request an immediate GOAWAY excluded, on a new connection.
#[tokio::test]
async fn reqwest_retries_after_an_immediate_goaway_on_a_new_connection() {
    let outcome = run("goaway-retry").await;
    let table = outcome.verdict.table();
    assert_eq!(outcome.seen, [Ok(200)], "{table}");
    assert_eq!(outcome.answers(), [(1, None), (2, Some(200))], "{table}");
    assert_eq!(outcome.requests()[0].action, Action::Goaway);
    assert_eq!(
        outcome.check("retried_on_new_connection"),
        Status::Pass,
        "{table}"
    );
    assert!(outcome.verdict.passed, "{table}");
}

#[tokio::main]
async fn main() {
    let ids: Vec<String> = std::env::args().skip(1).collect();
    let ids = if ids.is_empty() {
        [
            "first-attempt-421",
            "coalescing-wrong-server",
            "refused-stream",
            "goaway-retry",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        ids
    };
    for id in ids {
        let outcome = run(&id).await;
        println!("== {id}");
        for (n, seen) in outcome.seen.iter().enumerate() {
            println!("request {}: {seen:?}", n + 1);
        }
        println!("(connection, status) per request: {:?}", outcome.answers());
        for r in outcome.requests() {
            println!(
                "  journal: {} {}{} on connection {} (SNI {:?}, attempt {}): {:?} {:?}",
                r.method, r.authority, r.path, r.connection, r.sni, r.attempt, r.action, r.status
            );
        }
        println!("{}", outcome.verdict.table());
    }
}
