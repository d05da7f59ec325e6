//! `misdirect serve` against a frame-level HTTP/2 client over TLS: Python `h2` coalescing two
//! authorities onto one connection. The exact frames of every action (RST_STREAM, GOAWAY,
//! the graceful drain) are asserted in memory by `tests/wire`.

mod common;

use common::{Harness, python_with_h2, run, typed_requests};
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

    let events = h.events_until(|e| typed_requests(e).len() >= 2);
    let reqs = typed_requests(&events);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].connection, reqs[1].connection, "one connection");
    assert_eq!((reqs[0].stream, reqs[1].stream), (Some(1), Some(3)));
    assert!(!reqs[0].coalesced);
    assert!(reqs[1].coalesced);
    assert_eq!(reqs[1].authority, "b.test");
    assert_eq!(reqs[1].sni.as_deref(), Some("a.test"));
    assert_eq!(reqs[1].status, Some(421));
}
