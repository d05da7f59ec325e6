//! The `misdirect` binary's `check`, `certs` and `schema` commands, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn misdirect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_accepts_every_bundled_scenario_with_one_summary_line_each() {
    let mut files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
            .expect("scenarios/")
            .map(|e| {
                format!(
                    "scenarios/{}",
                    e.expect("entry").file_name().to_string_lossy()
                )
            })
            .filter(|name| name.ends_with(".json"))
            .collect();
    files.sort();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let output = misdirect(&args);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    // One summary line per file; intentional warnings follow on indented lines.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("  warning: "))
        .collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    for (line, file) in lines.iter().zip(&files) {
        assert!(line.starts_with(&format!("ok  {file}: ")), "{line}");
    }
}

#[test]
fn check_prints_every_error_with_file_and_path_and_exits_1() {
    let output = misdirect(&["check", "tests/scenario_errors/cross-references.json"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.starts_with("FAIL  tests/scenario_errors/cross-references.json\n"),
        "{text}"
    );
    assert!(
        text.contains("  tests/scenario_errors/cross-references.json: hosts[0].certificate: no certificate named \"wild\" (known: a, b)\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 8, "{text}");
}

#[test]
fn check_reports_a_missing_file_without_panicking() {
    let output = misdirect(&["check", "no/such/file.json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("no/such/file.json: cannot read"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_strict_fails_on_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("warn.json");
    std::fs::write(
        &file,
        r#"{"certificates": [{"name": "a", "sans": ["a.test"]}],
            "hosts": [{"names": ["b.test"], "certificate": "a"}]}"#,
    )
    .expect("write");
    let path = file.to_string_lossy().into_owned();
    assert!(misdirect(&["check", &path]).status.success());
    let strict = misdirect(&["check", "--strict", &path]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        stdout(&strict).contains("warning: hosts[0].certificate"),
        "{}",
        stdout(&strict)
    );
}

#[test]
fn certs_writes_the_pem_files_and_a_manifest_into_the_chosen_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("certs");
    let out_arg = out.to_string_lossy().into_owned();
    let output = misdirect(&[
        "certs",
        "scenarios/certificate-not-covering.json",
        "--out",
        &out_arg,
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON manifest");
    for name in [
        "ca.pem",
        "ca.key",
        "a.pem",
        "a.key",
        "a.chain.pem",
        "a.spki",
        "b.pem",
        "manifest.json",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert_eq!(
        manifest["certificates"]["a"]["sans"],
        serde_json::json!(["a.test"])
    );
    let spki = std::fs::read_to_string(out.join("b.spki")).expect("spki");
    assert_eq!(manifest["certificates"]["b"]["spki_sha256"], spki.trim());
    assert_eq!(manifest["ca"]["reused"], false);

    let ca_before = std::fs::read(out.join("ca.pem")).expect("ca");
    let again = misdirect(&[
        "certs",
        "scenarios/certificate-not-covering.json",
        "--out",
        &out_arg,
        "--reuse-ca",
    ]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("(reused)"), "{}", stdout(&again));
    assert_eq!(std::fs::read(out.join("ca.pem")).expect("ca"), ca_before);
    let fresh = misdirect(&[
        "certs",
        "scenarios/certificate-not-covering.json",
        "--out",
        &out_arg,
    ]);
    assert!(fresh.status.success());
    assert_ne!(std::fs::read(out.join("ca.pem")).expect("ca"), ca_before);
}

#[test]
fn certs_refuses_an_invalid_scenario_naming_the_field() {
    let output = misdirect(&[
        "certs",
        "tests/scenario_errors/values.json",
        "--out",
        "/nonexistent/never",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("certificates[1].name: \"ca\" is reserved"),
        "{err}"
    );
}

#[test]
fn schema_prints_a_json_schema_of_the_scenario() {
    let output = misdirect(&["schema"]);
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(schema["title"], "Scenario");
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org"))
    );
    assert_eq!(schema["required"], serde_json::json!(["hosts"]));
}

#[test]
fn scenarios_show_prints_a_bundled_scenario_as_its_file_is() {
    let out = misdirect(&["scenarios", "--show", "first-attempt-421"]);
    assert!(out.status.success(), "{out:?}");
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/first-attempt-421.json"),
    )
    .expect("scenario file");
    assert_eq!(stdout(&out), file);

    let out = misdirect(&["scenarios", "--show", "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no bundled scenario \"no-such-scenario\"") && err.contains("goaway-retry"),
        "{err}"
    );
}

/// Starts `serve` with stdin a pipe; returns the child once its ready line is out.
fn serve_with_stdin(dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    std::fs::create_dir_all(dir).expect("folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("serve")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/coalescing-wrong-server.json"),
        )
        .arg("--certs-dir")
        .arg(dir.join("certs"))
        .arg("--journal")
        .arg(dir.join("journal.ndjson"))
        .args(["--log", "warn"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the ready line");
    assert!(line.contains("\"ready\":true"), "{line}");
    child
}

/// Waits up to `limit` for the child; `None` if it is still running.
fn wait_for(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn exit_with_stdin_stops_the_server_when_its_launcher_closes_stdin_and_not_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Without the flag, stdin is not the server's business.
    let mut plain = serve_with_stdin(&dir.path().join("plain"), &[]);
    drop(plain.stdin.take());
    assert_eq!(
        wait_for(&mut plain, std::time::Duration::from_millis(700)),
        None
    );
    let _ = plain.kill();
    let _ = plain.wait();

    let mut watched = serve_with_stdin(dir.path(), &["--exit-with-stdin"]);
    let started = std::time::Instant::now();
    drop(watched.stdin.take());
    let code = wait_for(&mut watched, std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0), "serve ends cleanly once stdin closes");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let journal = std::fs::read_to_string(dir.path().join("journal.ndjson")).expect("journal");
    let last: serde_json::Value =
        serde_json::from_str(journal.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["event"], "shutdown");
    assert_eq!(last["reason"], "stdin closed");

    // SIGTERM still stops it while stdin stays open (the read does not hold up the exit).
    let mut signalled = serve_with_stdin(&dir.path().join("signalled"), &["--exit-with-stdin"]);
    let started = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &signalled.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let code = wait_for(&mut signalled, std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    drop(signalled.stdin.take());
}
