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
        text.contains("FAIL           robust  retried_on_new_connection (b.test)  GET https://b.test/style.css got 421 on connection 1 (SNI a.test) and was never retried on another connection"),
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
    assert!(text.contains("FAIL           should  no_retry_on_same_connection         GET https://b.test/style.css got 421 on connection 1 (SNI a.test) and was retried on the same connection"), "{text}");
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
        text.contains("FAIL           should  stopped_coalescing (b.test)"),
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

/// A marker no other process carries: a `sleep` duration unique to this test process and
/// `slot`, so that the processes a test started can be found in `/proc`.
fn sleep_marker(slot: u32) -> String {
    format!("4{slot}.{}{slot}", std::process::id())
}

/// Pids of live processes whose command line is `sleep MARKER` (zombies have none).
fn sleeping(marker: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{marker}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.ends_with(wanted.as_bytes()))
        })
        .collect()
}

/// Waits up to `within` for no `sleep MARKER` to be left; returns the survivors.
fn survivors(markers: &[&str], within: std::time::Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left: Vec<u32> = markers.iter().flat_map(|m| sleeping(m)).collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Kills what a failed test left behind, so that a failure costs no stray processes.
/// Waits (at most 20 s) until a `sleep` carrying each marker runs: a test that then finds
/// none left proves something only if they were there.
fn wait_started(markers: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while markers.iter().any(|m| sleeping(m).is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts that no `sleep` carrying a marker outlives `run` (killing any that did).
fn assert_none_left(markers: &[&str], text: &str) {
    let left = survivors(markers, std::time::Duration::from_secs(2));
    kill_all(&left);
    assert!(left.is_empty(), "still running after run: {left:?}\n{text}");
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Starts `misdirect run` with its stdout in a file: background processes of the command
/// inherit that stdout, and a pipe would keep `Command::output` waiting for them.
fn spawn_run(extra: &[&str], command: &[&str]) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::fs::File::create(dir.path().join("stdout.txt")).expect("stdout file");
    let child = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("run")
        .arg(manifest_dir().join("scenarios/always-421.json"))
        .args(["--log", "warn", "--allow-not-exercised", "--certs-dir"])
        .arg(dir.path().join("certs"))
        .args(extra)
        .arg("--")
        .args(command)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("misdirect run starts");
    (child, dir)
}

/// Waits (bounded) for `misdirect run` to exit; its exit code and stdout.
fn finish(
    mut child: std::process::Child,
    dir: &Path,
    within: std::time::Duration,
) -> (i32, String) {
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("misdirect run did not exit within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
    (status.code().unwrap_or(-1), text)
}

#[cfg(unix)]
#[test]
fn a_timed_out_command_ends_with_its_whole_process_tree() {
    let (a, b) = (sleep_marker(0), sleep_marker(1));
    let script = format!("sleep {a} & sleep {b} & wait");
    let started = std::time::Instant::now();
    let (child, dir) = spawn_run(&["--timeout-secs", "2"], &["bash", "-c", &script]);
    wait_started(&[&a, &b]);
    let (code, text) = finish(child, dir.path(), std::time::Duration::from_secs(20));
    assert_none_left(&[&a, &b], &text);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("command \"bash\" timed out after 2 s and was killed"),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[cfg(unix)]
#[test]
fn a_timed_out_tree_that_ignores_sigterm_is_killed_after_the_grace() {
    let (a, b) = (sleep_marker(2), sleep_marker(3));
    // An ignored SIGTERM is inherited: neither bash nor its sleeps go before SIGKILL.
    let script = format!("trap '' TERM; sleep {a} & sleep {b} & wait");
    let (child, dir) = spawn_run(&["--timeout-secs", "1"], &["bash", "-c", &script]);
    wait_started(&[&a, &b]);
    let (code, text) = finish(child, dir.path(), std::time::Duration::from_secs(20));
    assert_none_left(&[&a, &b], &text);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("timed out after 1 s"), "{text}");
}

#[cfg(unix)]
#[test]
fn background_processes_a_command_leaves_behind_are_ended_when_it_exits() {
    let a = sleep_marker(4);
    let script = format!("sleep {a} & exit 0");
    let started = std::time::Instant::now();
    let (child, dir) = spawn_run(&[], &["bash", "-c", &script]);
    let (code, text) = finish(child, dir.path(), std::time::Duration::from_secs(20));
    assert_none_left(&[&a], &text);
    // The command itself succeeded, and its leftovers do not change that.
    assert!(text.contains("command \"bash\" succeeded"), "{text}");
    assert_eq!(code, 0, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[cfg(unix)]
#[test]
fn stopping_run_with_a_signal_ends_the_command_tree() {
    let (a, b) = (sleep_marker(5), sleep_marker(6));
    let script = format!("trap '' TERM; sleep {a} & sleep {b} & wait");
    let (child, dir) = spawn_run(&["--timeout-secs", "60"], &["bash", "-c", &script]);
    wait_started(&[&a, &b]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let (code, text) = finish(child, dir.path(), std::time::Duration::from_secs(15));
    assert_none_left(&[&a, &b], &text);
    assert_eq!(code, 130, "{text}");
}
