//! The control API over real HTTP (curl): health, CA, listeners, journal, verdict, reset
//! between test cases, and loading another scenario without a restart.

mod common;

use common::{Harness, have_tool, run};
use serde_json::Value;

const SCENARIO: &str = r#"{
  "name": "control",
  "certificates": [{"name": "shared", "sans": ["a.test", "b.test"]}],
  "hosts": [
    {"names": ["a.test"], "certificate": "shared"},
    {"names": ["b.test"], "certificate": "shared"}
  ],
  "expect": [{"no_retry_on_same_connection": {}}]
}"#;

fn control(h: &Harness) -> String {
    h.ready["control"]
        .as_str()
        .expect("control URL in the readiness line")
        .to_owned()
}

/// curl against the control API; returns (HTTP status, body).
fn api(h: &Harness, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("{}{path}", control(h));
    let mut args = vec!["-sS", "-X", method, "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let (code, out, err) = run("curl", &args);
    assert_eq!(code, Some(0), "{err}");
    let (body, status) = out.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A coalesced request: SNI a.test, authority b.test.
fn misdirected_request(h: &Harness) -> String {
    let port = h.port("main");
    let ca = h.ca();
    let (_, out, err) = run(
        "curl",
        &[
            "-sS",
            "--cacert",
            ca.to_str().expect("utf-8"),
            "--resolve",
            &format!("a.test:{port}:127.0.0.1"),
            "-H",
            "Host: b.test",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://a.test:{port}/"),
        ],
    );
    assert!(err.is_empty(), "{err}");
    out
}

#[test]
fn health_ca_listeners_and_ready_describe_the_running_harness() {
    if !have_tool("control_basics", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (status, body) = api(&h, "GET", "/health", &[]);
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"ok": true}))
    );
    let (status, pem) = api(&h, "GET", "/ca.pem", &[]);
    assert_eq!(status, 200);
    assert_eq!(pem, std::fs::read_to_string(h.ca()).expect("CA file"));
    let (_, body) = api(&h, "GET", "/listeners", &[]);
    assert_eq!(json(&body)[0]["port"], h.port("main"));
    let (_, body) = api(&h, "GET", "/ready", &[]);
    assert_eq!(json(&body), h.ready);
    let (status, body) = api(&h, "GET", "/nope", &[]);
    assert_eq!(status, 404);
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("/journal"))
    );
}

#[test]
fn journal_verdict_and_reset_between_test_cases() {
    if !have_tool("control_reset", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (_, body) = api(&h, "GET", "/verdict", &[]);
    assert_eq!(json(&body)["checks"][0]["status"], "not_exercised");
    assert_eq!(misdirected_request(&h), "421");
    let (_, body) = api(&h, "GET", "/journal", &[]);
    let events = json(&body);
    let request = events
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["event"] == "request")
        .expect("request event");
    assert_eq!(request["status"], 421);
    let seq = request["seq"].as_u64().expect("seq");
    let (_, body) = api(
        &h,
        "GET",
        &format!("/journal?since={seq}&format=ndjson"),
        &[],
    );
    assert!(
        body.lines().all(|l| json(l)["seq"].as_u64() > Some(seq)),
        "{body}"
    );
    // The in-memory journal is bounded; the header says how many events asked for it no
    // longer holds (none here).
    let (_, head) = api(&h, "GET", "/journal", &["-D", "-", "-o", "/dev/null"]);
    assert!(
        head.lines().any(|l| l
            .trim()
            .eq_ignore_ascii_case("misdirect-journal-dropped: 0")),
        "{head}"
    );
    let (_, body) = api(&h, "GET", "/verdict", &[]);
    let verdict = json(&body);
    assert_eq!(verdict["passed"], true);
    assert_eq!(verdict["checks"][0]["status"], "pass");
    assert!(verdict.get("table").is_none(), "{verdict}");
    // With its table, as `run` prints it.
    let (_, body) = api(&h, "GET", "/verdict?table=true", &[]);
    let table = json(&body)["table"].as_str().unwrap_or_default().to_owned();
    assert!(
        table.starts_with("PASS") && table.contains("no_retry_on_same_connection"),
        "{table}"
    );
    assert!(
        table.ends_with("verdict: PASS (1 passed, 0 failed, 0 not exercised)\n"),
        "{table}"
    );

    let (status, body) = api(&h, "POST", "/reset", &[]);
    assert_eq!(status, 200);
    let reset_seq = json(&body)["seq"].as_u64().expect("seq");
    let (_, body) = api(&h, "GET", "/journal", &[]);
    let events = json(&body);
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["event"], "reset");
    assert_eq!(events[0]["seq"], reset_seq);
    let (_, body) = api(&h, "GET", "/verdict", &[]);
    assert_eq!(
        json(&body)["checks"][0]["status"],
        "not_exercised",
        "counters and journal start over"
    );
    let (status, _) = api(&h, "GET", "/journal?since=x", &[]);
    assert_eq!(status, 400);
}

#[test]
fn a_new_scenario_applies_to_new_connections_without_a_restart() {
    if !have_tool("control_reload", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    assert_eq!(misdirected_request(&h), "421");
    let with_rule = SCENARIO.replace(
        r#""expect""#,
        r#""rules": [{"name": "maintenance", "action": {"respond": {"status": 503}}}], "expect""#,
    );
    let (status, body) = api(&h, "PUT", "/scenario", &["--data-binary", &with_rule]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["certificates_regenerated"], false);
    assert_eq!(misdirected_request(&h), "503");

    let names = |h: &Harness| -> Vec<String> {
        let (status, body) = api(h, "GET", "/ready", &[]);
        assert_eq!(status, 200, "{body}");
        json(&body)["names"]
            .as_object()
            .expect("names")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(names(&h), ["a.test", "b.test"]);

    let new_certs = with_rule
        .replace(
            r#"["a.test", "b.test"]"#,
            r#"["a.test", "b.test", "c.test"]"#,
        )
        .replace(
            r#"{"names": ["b.test"], "certificate": "shared"}"#,
            r#"{"names": ["b.test"], "certificate": "shared"}, {"names": ["c.test"], "certificate": "shared"}"#,
        );
    let (status, body) = api(&h, "PUT", "/scenario", &["--data-binary", &new_certs]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["certificates_regenerated"], true);
    // The readiness information names what the scenario in force serves.
    assert_eq!(names(&h), ["a.test", "b.test", "c.test"]);
    let pem = std::fs::read_to_string(h.dir.path().join("certs/shared.pem")).expect("cert");
    let (_, text, _) = run(
        "openssl",
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            h.dir
                .path()
                .join("certs/shared.pem")
                .to_str()
                .expect("utf-8"),
        ],
    );
    assert!(text.contains("DNS:c.test"), "{text}\n{pem}");
    assert_eq!(
        misdirected_request(&h),
        "503",
        "the CA did not change: curl still trusts it"
    );

    let (status, body) = api(
        &h,
        "PUT",
        "/scenario",
        &[
            "--data-binary",
            r#"{"hosts": [{"names": ["a.test"], "certificate": "nope"}]}"#,
        ],
    );
    assert_eq!(status, 400);
    assert_eq!(
        json(&body)["problems"],
        serde_json::json!([
            r#"hosts[0].certificate: no certificate named "nope" (none are defined)"#
        ])
    );
    let moved = SCENARIO.replace(r#""hosts""#, r#""listeners": [{"name": "other"}], "hosts""#);
    let (status, body) = api(&h, "PUT", "/scenario", &["--data-binary", &moved]);
    assert_eq!(status, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("keep the listeners"))
    );
}

#[test]
fn a_token_guards_everything_but_health() {
    if !have_tool("control_token", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start_with(SCENARIO, &["--control-token", "s3cret"]);
    assert_eq!(api(&h, "GET", "/health", &[]).0, 200);
    let (status, body) = api(&h, "GET", "/journal", &[]);
    assert_eq!(status, 401);
    assert!(body.contains("Authorization: Bearer"));
    assert_eq!(
        api(
            &h,
            "GET",
            "/journal",
            &["-H", "Authorization: Bearer wrong"]
        )
        .0,
        401
    );
    assert_eq!(
        api(
            &h,
            "GET",
            "/journal",
            &["-H", "Authorization: Bearer s3cret"]
        )
        .0,
        200
    );
}

#[test]
fn a_remote_control_address_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("s.json");
    std::fs::write(&file, SCENARIO).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("serve")
        .arg(&file)
        .args(["--control", "0.0.0.0:0", "--certs-dir"])
        .arg(dir.path().join("certs"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("--control 0.0.0.0:0: not a loopback address; add --control-allow-remote"),
        "{err}"
    );
}

#[test]
fn the_health_command_asks_the_control_api() {
    let h = Harness::start(SCENARIO);
    let address = control(&h).trim_start_matches("http://").to_owned();
    let health = |addr: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_misdirect"))
            .args(["health", "--control", addr])
            .output()
            .expect("runs")
    };
    let ok = health(&address);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        format!("healthy: {address}\n")
    );
    let port = address.rsplit_once(':').expect("port").1;
    assert!(
        health(&format!("0.0.0.0:{port}")).status.success(),
        "0.0.0.0 is asked at 127.0.0.1"
    );
    let (code, _, _) = h.stop();
    assert_eq!(code, Some(0));
    let down = health(&address);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot ask"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
