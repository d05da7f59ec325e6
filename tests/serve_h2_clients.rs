//! `misdirect serve` against frame-level HTTP/2 clients: Python `h2` coalescing two
//! authorities onto one connection, and nghttp showing RST_STREAM and GOAWAY frames.

mod common;

use common::{Harness, events_of, have_tool, python_with_h2, requests, run};
use serde_json::Value;

const COALESCING: &str = r#"{
  "certificates": [{"name": "shared", "sans": ["a.test", "b.test"]}],
  "hosts": [
    {"names": ["a.test"], "certificate": "shared"},
    {"names": ["b.test"], "certificate": "shared"}
  ]
}"#;

fn python_client(h: &Harness, python: &std::path::Path, sni: &str, targets: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/h2_requests.py");
    let port = h.port("main").to_string();
    let ca = h.ca();
    let mut args = vec![script, "127.0.0.1", &port, sni, ca.to_str().expect("utf-8")];
    args.extend_from_slice(targets);
    let (code, out, err) = run(python.to_str().expect("utf-8"), &args);
    assert_eq!(code, Some(0), "python client failed:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_python_h2_client_coalescing_two_authorities_gets_200_then_421() {
    let Some(python) = python_with_h2("python_h2_coalescing") else {
        return;
    };
    let h = Harness::start(COALESCING);
    let seen = python_client(&h, &python, "a.test", &["a.test/", "b.test/style.css"]);
    assert_eq!(seen["alpn"], "h2");
    let statuses: Vec<&Value> = seen["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [200, 421], "{seen}");
    assert!(
        seen["responses"][1]["body"]
            .as_str()
            .is_some_and(|b| b.contains("does not serve b.test"))
    );

    let events = h.journal_until(|e| requests(e).len() >= 2);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0]["connection"], reqs[1]["connection"],
        "one connection"
    );
    assert_eq!(
        (reqs[0]["stream"].clone(), reqs[1]["stream"].clone()),
        (1.into(), 3.into())
    );
    assert_eq!(reqs[0]["coalesced"], false);
    assert_eq!(reqs[1]["coalesced"], true);
    assert_eq!(reqs[1]["authority"], "b.test");
    assert_eq!(reqs[1]["sni"], "a.test");
    assert_eq!(reqs[1]["status"], 421);
}

const SIGNALS: &str = r#"{
  "certificates": [{"name": "c", "sans": ["a.test"]}],
  "listeners": [
    {"name": "main", "no_sni": {"certificate": "c"}},
    {"name": "clear", "tls": false}
  ],
  "hosts": [{"names": ["a.test"], "certificate": "c"}],
  "rules": [
    {"name": "refuse", "when": {"path": "/reset"}, "action": {"reset_stream": {"code": "REFUSED_STREAM"}}},
    {"name": "calm-down", "when": {"path": "/goaway"}, "action": {"goaway": {"code": "ENHANCE_YOUR_CALM"}}},
    {"name": "drain", "when": {"path": "/drain"}, "action": {"goaway": {"graceful": true}}},
    {"name": "slow", "when": {"path": "/slow"}, "delay_ms": 400, "action": {"respond": {"status": 200}}},
    {"name": "late", "when": {"path": "/late"}, "delay_ms": 150, "action": {"respond": {"status": 200}}}
  ]
}"#;

/// nghttp -v against the harness; the URL host is an IP, so no SNI is sent and the
/// listener's `no_sni` certificate is served, while `:authority` names the virtual host.
fn nghttp(h: &Harness, scheme: &str, listener: &str, path: &str) -> String {
    let url = format!("{scheme}://127.0.0.1:{}{path}", h.port(listener));
    let (_, out, err) = run(
        "nghttp",
        &["-nv", "--no-dep", "-H", ":authority: a.test", &url],
    );
    format!("{out}{err}")
}

#[test]
fn nghttp_sees_the_rst_stream_code_a_rule_asked_for() {
    if !have_tool(
        "nghttp_rst",
        "nghttp",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SIGNALS);
    let out = nghttp(&h, "https", "main", "/reset");
    assert!(out.contains("recv RST_STREAM frame"), "{out}");
    assert!(out.contains("error_code=REFUSED_STREAM(0x07)"), "{out}");
    let events = h.journal_until(|e| !requests(e).is_empty());
    let req = requests(&events)[0];
    assert_eq!(req["rule"], "refuse");
    assert_eq!(req["action"], "reset_stream");
    assert_eq!(req["reset_code"], "REFUSED_STREAM");
    assert!(req["status"].is_null());
}

#[test]
fn nghttp_sees_an_immediate_goaway_that_excludes_the_request() {
    if !have_tool(
        "nghttp_goaway",
        "nghttp",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SIGNALS);
    let out = nghttp(&h, "https", "main", "/goaway");
    assert!(out.contains("recv GOAWAY frame"), "{out}");
    assert!(out.contains("error_code=ENHANCE_YOUR_CALM(0x0b)"), "{out}");
    assert!(out.contains("misdirect: rule calm-down"), "{out}");
    let events = h.journal_until(|e| !events_of(e, "connection_closed").is_empty());
    let req = requests(&events)[0];
    let last = req["stream"].as_u64().expect("stream id").saturating_sub(2);
    assert!(out.contains(&format!("last_stream_id={last}")), "{out}");
    let goaway = events_of(&events, "goaway_sent");
    assert_eq!(goaway.len(), 1);
    assert_eq!(goaway[0]["graceful"], false);
    assert_eq!(goaway[0]["code"], "ENHANCE_YOUR_CALM");
    assert_eq!(goaway[0]["last_stream_id"], last);
    let closed = events_of(&events, "connection_closed");
    assert!(
        closed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("GOAWAY")),
        "{closed:?}"
    );
}

#[test]
fn a_graceful_goaway_answers_the_request_and_drains_over_h2c() {
    if !have_tool(
        "nghttp_drain",
        "nghttp",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SIGNALS);
    let out = nghttp(&h, "http", "clear", "/drain");
    assert!(out.contains(":status: 200"), "{out}");
    assert!(out.contains("recv GOAWAY frame"), "{out}");
    assert!(out.contains("error_code=NO_ERROR(0x00)"), "{out}");
    let events = h.journal_until(|e| !events_of(e, "goaway_sent").is_empty());
    let req = requests(&events)[0];
    assert_eq!(req["protocol"], "h2c");
    assert_eq!(req["scheme"], "http");
    assert_eq!(req["status"], 200);
    assert_eq!(events_of(&events, "goaway_sent")[0]["graceful"], true);
}

#[test]
fn an_immediate_goaway_lets_lower_streams_finish_and_refuses_higher_ones() {
    if !have_tool(
        "nghttp_goaway_streams",
        "nghttp",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SIGNALS);
    let base = format!("https://127.0.0.1:{}", h.port("main"));
    let (slow, goaway, late) = (
        format!("{base}/slow"),
        format!("{base}/goaway"),
        format!("{base}/late"),
    );
    // nghttp sends the three requests at once on one connection: streams 1, 3 and 5.
    let (_, out, err) = run(
        "nghttp",
        &[
            "-nv",
            "--no-dep",
            "-H",
            ":authority: a.test",
            &slow,
            &goaway,
            &late,
        ],
    );
    let out = format!("{out}{err}");
    assert!(
        out.contains("recv (stream_id=1) :status: 200"),
        "the stream below finishes: {out}"
    );
    assert!(
        out.contains("recv RST_STREAM frame <length=4, flags=0x00, stream_id=5>"),
        "{out}"
    );
    assert!(
        out.contains("last_stream_id=1, error_code=ENHANCE_YOUR_CALM(0x0b)"),
        "{out}"
    );
    let goaway_at = out.find("recv GOAWAY").expect("GOAWAY received");
    let slow_at = out.find("recv (stream_id=1) :status: 200").expect("answer");
    assert!(
        slow_at < goaway_at,
        "the GOAWAY comes after the lower stream's answer"
    );

    let events = h.journal_until(|e| !events_of(e, "connection_closed").is_empty());
    let refused = events_of(&events, "stream_refused");
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["stream"], 5);
    let answered: Vec<_> = requests(&events)
        .iter()
        .map(|r| (r["stream"].clone(), r["path"].clone()))
        .collect();
    assert!(
        answered.contains(&(1.into(), "/slow".into()))
            && answered.contains(&(3.into(), "/goaway".into()))
    );
    assert_eq!(events_of(&events, "goaway_sent")[0]["last_stream_id"], 1);
}
