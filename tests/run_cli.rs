//! `misdirect run SCENARIO -- CMD`: the one-line way a test suite in any language judges its
//! client. Real clients: curl (never retries a 421) and a Python h2 client that coalesces
//! like a browser, once correct and twice wrong.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{have_tool, python_with_h2};
use serde_json::Value;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `misdirect run` on a bundled scenario in a temporary folder.
fn run(scenario: &str, extra: &[&str], command: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = manifest_dir().join("scenarios").join(scenario);
    let output = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("run")
        .arg(&scenario)
        .args(["--log", "warn", "--certs-dir"])
        .arg(dir.path().join("certs"))
        .args(extra)
        .arg("--")
        .args(command)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("misdirect run starts");
    (output, dir)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn bundled_scenarios_with_expectations() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(manifest_dir().join("scenarios"))
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).expect("readable");
            let value: Value = serde_json::from_str(&text).expect("JSON");
            value["expect"].as_array().is_some_and(|e| !e.is_empty())
        })
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_command_that_sends_nothing_fails_every_bundled_scenario() {
    let scenarios = bundled_scenarios_with_expectations();
    assert!(scenarios.len() >= 4);
    for scenario in scenarios {
        let (output, _dir) = run(&scenario, &[], &["true"]);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{scenario}: {text}");
        assert!(
            text.contains("command \"true\" succeeded"),
            "{scenario}: {text}"
        );
        assert!(text.contains("verdict: FAIL"), "{scenario}: {text}");
        assert!(
            text.contains("NOT EXERCISED") || text.contains("FAIL "),
            "{scenario}: {text}"
        );
    }
}

#[test]
fn curl_never_retries_a_421_and_the_verdict_says_so() {
    if !have_tool("run_curl", "curl", "the Debian package `curl`") {
        return;
    }
    // curl does not coalesce; stage SNI a.test with authority b.test by hand, as a
    // coalescing client would send it.
    let script = r#"curl -sS $MISDIRECT_CURL_RESOLVE --cacert "$MISDIRECT_CA" -H 'Host: b.test' -o /dev/null -w '%{http_code}\n' "https://a.test:$MISDIRECT_PORT/style.css""#;
    let (output, _dir) = run("coalescing-wrong-server.json", &[], &["sh", "-c", script]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.starts_with("421\n"), "curl saw: {text}");
    assert!(
        text.contains("FAIL           retried_on_new_connection (b.test)  GET https://b.test/style.css got 421 on connection 1 (SNI a.test) and was never retried on another connection"),
        "{text}"
    );
    assert!(
        text.contains("verdict: FAIL (3 passed, 1 failed, 0 not exercised)"),
        "{text}"
    );
}

fn python_client(mode: &str) -> Option<Vec<String>> {
    let python = python_with_h2(&format!("run_python_{mode}"))?;
    let script = manifest_dir().join("clients/python_h2.py");
    Some(vec![
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
        "--on-421".to_owned(),
        mode.to_owned(),
    ])
}

#[test]
fn a_python_h2_client_that_retries_correctly_passes() {
    let Some(client) = python_client("retry-new") else {
        return;
    };
    let args: Vec<&str> = client.iter().map(String::as_str).collect();
    for scenario in [
        "coalescing-wrong-server.json",
        "retry-post-body.json",
        "always-421.json",
    ] {
        let (output, _dir) = run(scenario, &[], &args);
        let text = stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{scenario}: {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains("verdict: PASS"), "{scenario}: {text}");
        assert!(!text.contains("FAIL"), "{scenario}: {text}");
    }
}

#[test]
fn a_python_client_retrying_on_the_same_connection_fails_two_expectations() {
    let Some(client) = python_client("retry-same") else {
        return;
    };
    let args: Vec<&str> = client.iter().map(String::as_str).collect();
    let (output, _dir) = run("coalescing-wrong-server.json", &[], &args);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL           no_retry_on_same_connection         GET https://b.test/style.css got 421 on connection 1 (SNI a.test) and was retried on the same connection"), "{text}");
    assert!(
        text.contains("retried only on the same connection"),
        "{text}"
    );
}

#[test]
fn a_client_that_keeps_coalescing_after_a_421_fails_stopped_coalescing() {
    let Some(client) = python_client("give-up") else {
        return;
    };
    let args: Vec<&str> = client.iter().map(String::as_str).collect();
    let (output, _dir) = run("coalescing-wrong-server.json", &[], &args);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL           stopped_coalescing (b.test)"),
        "{text}"
    );
    assert!(
        text.contains("yet b.test was later sent on connection 1 (SNI a.test) again"),
        "{text}"
    );
}

#[test]
fn the_report_files_hold_the_verdict_and_the_journal() {
    let Some(client) = python_client("retry-new") else {
        return;
    };
    let args = ["--report", "report.json", "--html", "report.html"];
    let client: Vec<&str> = client.iter().map(String::as_str).collect();
    let (output, dir) = run("coalescing-wrong-server.json", &args, &client);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report.json")).expect("report written"),
    )
    .expect("JSON");
    assert_eq!(report["passed"], true);
    assert_eq!(
        report["command"],
        serde_json::json!({"outcome": "exited", "code": 0})
    );
    assert_eq!(
        report["verdict"]["checks"].as_array().map(Vec::len),
        Some(4)
    );
    let requests = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "request")
        .count();
    assert_eq!(requests, 4);
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("html written");
    assert_eq!(html.matches("class=\"lane\"").count(), 2);
    assert!(html.contains("Verdict: <span class=\"pass\">PASS</span>"));
}

#[test]
fn a_command_that_hangs_is_killed_at_the_timeout_and_fails_the_run() {
    let started = std::time::Instant::now();
    let (output, _dir) = run(
        "always-421.json",
        &["--timeout-secs", "1", "--allow-not-exercised"],
        &["sleep", "30"],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("command \"sleep\" timed out after 1 s and was killed"),
        "{text}"
    );
}

#[test]
fn the_command_sees_the_harness_in_its_environment() {
    let (output, dir) = run(
        "coalescing-wrong-server.json",
        &["--allow-not-exercised"],
        &["sh", "-c", "env | grep ^MISDIRECT_ | sort > env.txt"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let env = std::fs::read_to_string(dir.path().join("env.txt")).expect("env captured");
    let get = |key: &str| -> String {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in:\n{env}"))
            .to_owned()
    };
    let port = get("MISDIRECT_PORT");
    assert_eq!(get("MISDIRECT_MAIN_PORT"), port);
    assert_eq!(get("MISDIRECT_ADDR"), format!("127.0.0.1:{port}"));
    assert!(PathBuf::from(get("MISDIRECT_CA")).is_absolute());
    assert_eq!(
        get("MISDIRECT_CURL_RESOLVE"),
        format!("--resolve a.test:{port}:127.0.0.1 --resolve b.test:{port}:127.0.0.1")
    );
    assert_eq!(
        get("MISDIRECT_HOST_RESOLVER_RULES"),
        "MAP a.test 127.0.0.1,MAP b.test 127.0.0.1"
    );
    assert_eq!(
        get("MISDIRECT_BROWSER_URL"),
        format!("https://a.test:{port}/_misdirect/client")
    );
    assert!(get("MISDIRECT_CONTROL_URL").starts_with("http://127.0.0.1:"));
    let plan: Value = serde_json::from_str(&get("MISDIRECT_PLAN")).expect("plan JSON");
    assert_eq!(
        plan["steps"][1]["request"]["url_with_port"],
        format!("https://b.test:{port}/style.css")
    );
    assert_eq!(
        plan["steps"][1]["request"]["connect"],
        format!("127.0.0.1:{port}")
    );
}
