//! misdirect in a container, from a Rust test: `misdirect::testcontainers` (cargo feature
//! `testcontainers`) starts the image `misdirect:local` with a bundled scenario, reqwest
//! reaches it through the port Docker mapped with the scenario's own names (`resolve`) and
//! the CA from the control API, and the verdict comes from the control API too.
//!
//! ```sh
//! cargo test --features testcontainers --example container
//! cargo run --features testcontainers --example container
//! ```
//!
//! Without a Docker engine it prints `SKIP` and passes (with `MISDIRECT_REQUIRE_TOOLS=1` it
//! fails instead); without the image it builds it with `scripts/docker-build` (no registry).

use std::error::Error as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use misdirect::expect::Verdict;
use misdirect::journal::{Event, EventKind, RequestEvent};
use misdirect::testcontainers::{DEFAULT_NAME, DEFAULT_TAG, Misdirect};

/// Whether a Docker engine answers and the image is there (built now if it is not), as
/// tests/docker.rs decides.
fn docker_and_image(test: &str) -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    if !engine {
        assert!(
            !required,
            "{test}: no Docker engine answers `docker info` (MISDIRECT_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIP {test}: no Docker engine (install Docker, or run where one runs)");
        return false;
    }
    let image = format!("{DEFAULT_NAME}:{DEFAULT_TAG}");
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return true;
    }
    // What scripts/docker-build needs besides the engine (scripts/test installs them).
    for (program, package) in [("debootstrap", "debootstrap"), ("musl-gcc", "musl-tools")] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                !required,
                "{test}: `{program}` is required to build {image}; install {package}"
            );
            eprintln!(
                "SKIP {test}: {image} is missing and `{program}` to build it too ({package})"
            );
            return false;
        }
    }
    eprintln!("{test}: building {image} with scripts/docker-build");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-build");
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/docker-build runs");
    assert!(
        output.status.success(),
        "{test}: scripts/docker-build failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// What came of one scenario in a container.
struct Outcome {
    /// `(url, status or error)` per request reqwest made.
    seen: Vec<(String, Result<u16, String>)>,
    journal: Vec<Event>,
    verdict: Verdict,
    /// Whether the verdict passes when nothing-exercised is allowed.
    passes_allowing_not_exercised: bool,
    started_to_healthy: Duration,
}

/// Starts `misdirect:local` with the bundled scenario `id`, and has reqwest request each
/// URL of the scenario's client plan (`https://NAME/PATH`) on the mapped port.
async fn run(id: &str) -> Outcome {
    let started = Instant::now();
    let image = Misdirect::bundled(id).expect("a bundled scenario");
    let plan: Vec<String> = image
        .scenario()
        .client
        .as_ref()
        .map(|c| {
            c.steps
                .iter()
                .filter_map(|s| match s {
                    misdirect::scenario::ClientStep::Request(r) => Some(r.url.clone()),
                    misdirect::scenario::ClientStep::PauseMs(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let misdirect = image.start().await.expect("the container becomes healthy");
    let started_to_healthy = started.elapsed();

    let ca = misdirect.ca_pem().await.expect("GET /ca.pem");
    let names: Vec<(String, SocketAddr)> = misdirect.names();
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("PEM")])
        .timeout(Duration::from_secs(10))
        .no_proxy();
    for (name, addr) in &names {
        builder = builder.resolve(name, *addr);
    }
    let client = builder.build().expect("a reqwest client");

    let mut seen = Vec::new();
    for url in plan {
        // The scenario's URL with the mapped port: reqwest connects to the URL's port.
        let mut url = reqwest::Url::parse(&url).expect("a URL");
        let host = url.host_str().unwrap_or_default().to_owned();
        let (_, addr) = names
            .iter()
            .find(|(name, _)| *name == host)
            .unwrap_or_else(|| panic!("{host} is one of the scenario's names"));
        url.set_port(Some(addr.port())).expect("a port");
        let result = match client.get(url.clone()).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(err) => Err(describe(&err)),
        };
        seen.push((url.to_string(), result));
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(client);
    let verdict = misdirect.verdict(false).await.expect("GET /verdict");
    let passes_allowing_not_exercised = misdirect
        .verdict(true)
        .await
        .expect("GET /verdict?allow_not_exercised=true")
        .passed;
    let journal = misdirect.journal().await.expect("GET /journal");
    Outcome {
        seen,
        journal,
        verdict,
        passes_allowing_not_exercised,
        started_to_healthy,
    }
    // Dropping `misdirect` removes the container.
}

fn requests(journal: &[Event]) -> Vec<&RequestEvent> {
    journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Request(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect()
}

/// reqwest does not coalesce: a.test and b.test each get a connection of their own (SNI
/// the name), nothing is misdirected, and so the 421 checks are not exercised.
#[tokio::test]
async fn reqwest_against_the_image_does_not_coalesce() {
    use misdirect::expect::Status;
    let test = "container_reqwest";
    if !docker_and_image(test) {
        return;
    }
    let started = Instant::now();
    let outcome = run("coalescing-wrong-server").await;
    eprintln!(
        "{test}: healthy after {:.2} s, done after {:.2} s (container removed)",
        outcome.started_to_healthy.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let statuses: Vec<_> = outcome.seen.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(statuses, [Ok(200), Ok(200), Ok(200)], "{:?}", outcome.seen);
    let requests = requests(&outcome.journal);
    let shape: Vec<(&str, Option<&str>, bool)> = requests
        .iter()
        .map(|r| (r.authority.as_str(), r.sni.as_deref(), r.coalesced))
        .collect();
    assert_eq!(
        shape,
        [
            ("a.test", Some("a.test"), false),
            ("b.test", Some("b.test"), false),
            ("b.test", Some("b.test"), false)
        ]
    );
    assert_ne!(requests[0].connection, requests[1].connection);
    assert_eq!(requests[1].connection, requests[2].connection);

    let table = outcome.verdict.table();
    assert!(!outcome.verdict.passed, "{table}");
    let status = |name: &str| {
        outcome
            .verdict
            .checks
            .iter()
            .find(|c| c.expectation.starts_with(name))
            .map(|c| c.status)
    };
    assert_eq!(
        status("retried_on_new_connection"),
        Some(Status::NotExercised),
        "{table}"
    );
    assert_eq!(
        status("stopped_coalescing"),
        Some(Status::NotExercised),
        "{table}"
    );
    assert_eq!(status("max_attempts"), Some(Status::Pass), "{table}");
    assert!(outcome.passes_allowing_not_exercised, "{table}");
}

#[tokio::main]
async fn main() {
    if !docker_and_image("container") {
        return;
    }
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "coalescing-wrong-server".to_owned());
    let outcome = run(&id).await;
    println!(
        "{id}: healthy after {:.2} s",
        outcome.started_to_healthy.as_secs_f64()
    );
    for (url, seen) in &outcome.seen {
        println!("{url} -> {seen:?}");
    }
    for r in requests(&outcome.journal) {
        println!(
            "  journal: {} {}{} on connection {} (SNI {:?}): {:?} {:?}",
            r.method, r.authority, r.path, r.connection, r.sni, r.action, r.status
        );
    }
    println!("{}", outcome.verdict.table());
    println!(
        "passes with --allow-not-exercised: {}",
        outcome.passes_allowing_not_exercised
    );
}
