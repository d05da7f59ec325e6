//! Protective limits: a misbehaving client costs at most its own connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Harness, events_of, have_tool, requests, run};

const SCENARIO: &str = r#"{
  "certificates": [{"name": "c", "sans": ["a.test"]}],
  "listeners": [{"name": "main"}, {"name": "clear", "tls": false}],
  "hosts": [{"names": ["a.test"], "certificate": "c"}],
  "rules": [
    {"name": "empty", "when": {"path": "/empty"}, "action": {"respond": {"status": 204}}},
    {"name": "slow", "when": {"path": "/slow"}, "delay_ms": 500, "action": {"respond": {"status": 200}}}
  ]
}"#;

fn curl_a(h: &Harness, extra: &[&str], path: &str) -> (Option<i32>, String, String) {
    let port = h.port("main");
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}{path}");
    let ca = h.ca();
    let mut args = vec![
        "-sS",
        "--cacert",
        ca.to_str().expect("utf-8"),
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    run("curl", &args)
}

fn closed_reasons(events: &[serde_json::Value]) -> Vec<String> {
    events_of(events, "connection_closed")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_silent_client_is_cut_off_after_the_handshake_timeout() {
    let h = Harness::start_with(SCENARIO, &["--handshake-timeout-secs", "1"]);
    let mut silent = TcpStream::connect(("127.0.0.1", h.port("main"))).expect("connects");
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    // The server closes the connection: read returns 0 (or an error), well before 5 s.
    let started = std::time::Instant::now();
    let _ = silent.read(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(4));
    let events = h.journal_until(|e| !events_of(e, "tls_failed").is_empty());
    let failed = events_of(&events, "tls_failed");
    assert!(
        failed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no ClientHello within")),
        "{failed:?}"
    );
}

#[test]
fn garbage_costs_only_its_own_connection() {
    let h = Harness::start(SCENARIO);
    for listener in ["main", "clear"] {
        let mut garbage = TcpStream::connect(("127.0.0.1", h.port(listener))).expect("connects");
        garbage
            .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 4])
            .expect("writes");
        garbage
            .write_all(b"\r\n\r\nGARBAGE / HTTP/9\r\n\r\n")
            .expect("writes");
        let _ = garbage.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        garbage
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = garbage.read_to_end(&mut sink);
    }
    // The harness still serves a well-behaved client.
    let mut ok = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
    ok.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .expect("writes");
    let mut response = String::new();
    ok.read_to_string(&mut response).expect("reads");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let events = h.journal_until(|e| events_of(e, "connection_closed").len() >= 3);
    assert_eq!(events_of(&events, "tls_failed").len(), 1, "{events:#?}");
    assert_eq!(requests(&events).len(), 1);
    let reasons = closed_reasons(&events);
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("tls handshake failed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("HTTP/1.1 error")),
        "{reasons:?}"
    );
}

#[test]
fn a_body_over_the_cap_gets_413_and_is_journaled() {
    if !have_tool("body_cap", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start_with(SCENARIO, &["--max-body-bytes", "1000"]);
    let port = h.port("main");
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/upload");
    let ca = h.ca();
    let body = "x".repeat(5000);
    for version in ["--http2", "--http1.1"] {
        let (code, out, err) = run(
            "curl",
            &[
                "-sS",
                version,
                "--cacert",
                ca.to_str().expect("utf-8"),
                "--resolve",
                &resolve,
                "--data-binary",
                &body,
                "-w",
                "\n%{http_code}",
                &url,
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.ends_with("\n413"), "{version}: {out}");
    }
    let events = h.journal_until(|e| requests(e).len() >= 2);
    for req in requests(&events) {
        assert_eq!(req["status"], 413);
        assert_eq!(req["error"], "request body over 1000 bytes");
    }
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let h = Harness::start_with(SCENARIO, &["--idle-timeout-secs", "1"]);
    let mut idle = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect("writes");
    idle.set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout");
    let mut response = Vec::new();
    let started = std::time::Instant::now();
    let _ = idle.read_to_end(&mut response);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not closed by the idle timeout"
    );
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200 OK"));
    let events = h.journal_until(|e| !events_of(e, "connection_closed").is_empty());
    let reasons = closed_reasons(&events);
    assert!(reasons[0].starts_with("idle timeout"), "{reasons:?}");
}

#[test]
fn http2_clients_are_told_the_stream_and_header_limits() {
    if !have_tool(
        "h2_settings",
        "nghttp",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start_with(SCENARIO, &["--max-concurrent-streams", "7"]);
    let url = format!("http://127.0.0.1:{}/", h.port("clear"));
    let (_, out, _) = run("nghttp", &["-nv", "-H", ":authority: a.test", &url]);
    assert!(
        out.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"),
        "{out}"
    );
    assert!(
        out.contains("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):65536]"),
        "{out}"
    );
}

#[test]
fn head_requests_and_204_carry_no_content_over_http2() {
    if !have_tool("head_204", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (code, out, err) = curl_a(&h, &["--http2", "-I"], "/");
    assert_eq!((code, out.as_str()), (Some(0), "200"), "{err}");
    let (code, out, err) = curl_a(&h, &["--http2"], "/empty");
    assert_eq!((code, out.as_str()), (Some(0), "204"), "{err}");
    let events = h.journal_until(|e| requests(e).len() >= 2);
    assert!(
        events_of(&events, "response_failed").is_empty(),
        "{events:#?}"
    );
}

#[test]
fn a_stalled_request_body_gets_408_after_the_idle_timeout() {
    let Some(python) = common::python_with_h2("stalled_body") else {
        return;
    };
    let h = Harness::start_with(SCENARIO, &["--idle-timeout-secs", "1"]);
    let port = h.port("main").to_string();
    let ca = h.ca();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/h2_stalled_body.py"
    );
    let started = std::time::Instant::now();
    let (code, out, err) = run(
        python.to_str().expect("utf-8"),
        &[
            script,
            "127.0.0.1",
            &port,
            "a.test",
            ca.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "408");
    assert!(started.elapsed() < Duration::from_secs(5));
    let events = h.journal_until(|e| !requests(e).is_empty());
    let req = requests(&events)[0];
    assert_eq!(req["status"], 408);
    assert_eq!(req["error"], "no request body data for 1s");
}

#[test]
fn an_http11_client_that_leaves_during_a_delay_is_still_journaled() {
    let h = Harness::start(SCENARIO);
    let mut gone = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
    gone.write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect("writes");
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    let events = h.journal_until(|e| !requests(e).is_empty());
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 1, "{events:#?}");
    assert_eq!(reqs[0]["path"], "/slow");
}

#[test]
fn a_stalled_http11_body_gets_408_after_the_idle_timeout() {
    let h = Harness::start_with(SCENARIO, &["--idle-timeout-secs", "1"]);
    let mut stalled = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
    stalled
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc")
        .expect("writes");
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut response = String::new();
    let _ = stalled.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let events = h.journal_until(|e| !requests(e).is_empty());
    assert_eq!(requests(&events)[0]["error"], "no request body data for 1s");
}

/// A scenario's `limits` apply; a flag wins over them. Staged with the connection cap: the
/// scenario allows one connection, so a second is refused and journaled, unless
/// `--max-connections` allows more.
#[test]
fn the_scenarios_limits_apply_and_a_flag_wins_over_them() {
    let scenario = SCENARIO.replacen('{', r#"{"limits": {"max_connections": 1},"#, 1);
    for (flags, refused) in [(&[][..], true), (&["--max-connections", "2"][..], false)] {
        let h = Harness::start_with(&scenario, flags);
        let first = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
        let mut second = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .ok();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut answer = String::new();
        let _ = second.read_to_string(&mut answer);
        drop(first);
        let events = h.journal_until(|e| events_of(e, "connection_closed").len() >= 2);
        let reasons = closed_reasons(&events);
        let was_refused = reasons
            .iter()
            .any(|r| r.starts_with("refused: 1 connections"));
        assert_eq!(was_refused, refused, "flags {flags:?}: {reasons:?}");
        assert_eq!(
            answer.starts_with("HTTP/1.1 200"),
            !refused,
            "flags {flags:?}: {answer:?}"
        );
    }
}

/// Limits out of range in a scenario are located errors.
#[test]
fn a_scenarios_limits_out_of_range_are_located_errors() {
    let (scenario, _) = (SCENARIO, ());
    let bad = scenario.replacen(
        '{',
        r#"{"limits": {"max_connections": 0, "shutdown_grace_secs": 9999},"#,
        1,
    );
    let err = misdirect::scenario::from_bytes(bad.as_bytes()).expect_err("refused");
    let lines = err.lines().join("\n");
    assert!(
        lines.contains("limits.max_connections: 0 is out of range: expected 1 to 1000000")
            && lines
                .contains("limits.shutdown_grace_secs: 9999 is out of range: expected 0 to 3600"),
        "{lines}"
    );
}

/// A request still sending its body when the server stops is journaled before its
/// connection's close, and `shutdown` stays the journal's last line.
#[test]
fn a_request_cut_off_mid_body_at_shutdown_is_journaled_before_its_close() {
    let h = Harness::start_with(SCENARIO, &["--shutdown-grace-secs", "1"]);
    let mut client = TcpStream::connect(("127.0.0.1", h.port("clear"))).expect("connects");
    client
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .expect("head and a first chunk");
    // The server has the request head before it stops.
    h.journal_until(|e| !events_of(e, "connection_opened").is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let (code, stderr, events) = h.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let position = |kind: &str| events.iter().position(|e| e["event"] == kind);
    let request = position("request").expect("the request is journaled");
    let closed = position("connection_closed").expect("the connection is journaled closed");
    assert!(request < closed, "request after its close: {events:#?}");
    assert_eq!(events_of(&events, "connection_closed")[0]["requests"], 1);
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some("shutdown".into())
    );
    drop(client);
}
