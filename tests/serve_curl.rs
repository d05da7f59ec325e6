//! `misdirect serve` against curl and openssl: what the client saw, and what the journal says.

mod common;

use common::{Harness, events_of, have_tool, requests, run};

const SCENARIO: &str = r#"{
  "name": "curl",
  "certificates": [
    {"name": "shared", "sans": ["a.test", "b.test"]},
    {"name": "old", "sans": ["old.test"], "validity": {"not_before": "-30d", "not_after": "-1d"}},
    {"name": "c", "sans": ["c.test"]}
  ],
  "hosts": [
    {"names": ["a.test"], "certificate": "shared"},
    {"names": ["b.test"], "certificate": "shared"},
    {"names": ["old.test"], "certificate": "old"},
    {"names": ["c.test"], "certificate": "c"}
  ]
}"#;

/// curl against the harness: `name` resolves to 127.0.0.1 and the harness port.
fn curl(h: &Harness, name: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let port = h.port("main");
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let ca = h.ca();
    let mut args = vec![
        "-sS",
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    run("curl", &args)
}

#[test]
fn sni_a_with_authority_b_gets_421_while_b_on_its_own_gets_200() {
    if !have_tool("curl_421", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (code, out, err) = curl(&h, "a.test", &["--http2", "-H", "Host: b.test"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("\n421 2"), "{out}");
    assert!(out.contains("421 Misdirected Request"), "{out}");
    let (code, out, err) = curl(&h, "b.test", &["--http2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("\n200 2"), "{out}");

    let events = h.journal_until(|e| requests(e).len() >= 2);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 2, "{events:#?}");
    assert_eq!(reqs[0]["sni"], "a.test");
    assert_eq!(reqs[0]["authority"], "b.test");
    assert_eq!(reqs[0]["status"], 421);
    assert_eq!(reqs[0]["protocol"], "h2");
    assert_eq!(reqs[0]["stream"], 1);
    assert!(
        reqs[0]["misdirected_because"]
            .as_str()
            .is_some_and(|s| s.contains("does not serve b.test"))
    );
    assert_eq!(reqs[1]["sni"], "b.test");
    assert_eq!(reqs[1]["status"], 200);
    assert_ne!(reqs[0]["connection"], reqs[1]["connection"]);
    // Two curl runs, two connections, each with its TLS facts journaled.
    let tls = events_of(&events, "tls_established");
    assert_eq!(tls.len(), 2);
    assert_eq!(tls[0]["alpn"], "h2");
    assert_eq!(tls[0]["certificate"], "shared");
}

#[test]
fn http11_with_a_mismatched_host_gets_421() {
    if !have_tool("http11_421", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (code, out, err) = curl(&h, "a.test", &["--http1.1", "-H", "Host: b.test"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("\n421 1.1"), "{out}");
    let (_, out, _) = curl(&h, "a.test", &["--http1.1"]);
    assert!(out.ends_with("\n200 1.1"), "{out}");
    let events = h.journal_until(|e| requests(e).len() >= 2);
    let reqs = requests(&events);
    assert_eq!(reqs[0]["protocol"], "http/1.1");
    assert_eq!(reqs[0]["authority"], "b.test");
    assert_eq!(reqs[0]["status"], 421);
    assert!(reqs[0]["stream"].is_null());
    assert_eq!(reqs[1]["status"], 200);
}

#[test]
fn an_expired_certificate_fails_verification_and_passes_with_insecure() {
    if !have_tool("expired_cert", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (code, _, err) = curl(&h, "old.test", &["--http2"]);
    assert_eq!(
        code,
        Some(60),
        "curl must refuse the expired certificate: {err}"
    );
    assert!(err.contains("expired"), "{err}");
    let (code, out, err) = curl(&h, "old.test", &["--http2", "-k"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("\n200 2"), "{out}");
    let events = h.journal_until(|e| !requests(e).is_empty());
    let failed = events_of(&events, "tls_failed");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["sni"], "old.test");
    assert!(
        failed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CertificateExpired")),
        "{failed:?}"
    );
    assert_eq!(requests(&events)[0]["authority"], "old.test");
}

#[test]
fn an_unknown_sni_is_refused_in_the_handshake_by_default() {
    if !have_tool("unknown_sni", "curl", "the Debian package `curl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let (code, _, err) = curl(&h, "nobody.test", &["--http2"]);
    assert_eq!(code, Some(35), "{err}");
    let events = h.journal_until(|e| !events_of(e, "tls_failed").is_empty());
    let failed = events_of(&events, "tls_failed");
    assert_eq!(failed[0]["sni"], "nobody.test");
    assert!(
        failed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no certificate for SNI nobody.test"))
    );
}

fn subject_for_sni(port: u16, sni: &str) -> String {
    let connect = format!("127.0.0.1:{port}");
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            sni,
            "-alpn",
            "h2",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in:\n{text}"))
        .to_owned()
}

#[test]
fn two_hosts_with_different_certificates_share_one_ip_and_port() {
    if !have_tool("sni_certs", "openssl", "the Debian package `openssl`") {
        return;
    }
    let h = Harness::start(SCENARIO);
    let port = h.port("main");
    assert_eq!(subject_for_sni(port, "a.test"), "subject=CN = a.test");
    assert_eq!(subject_for_sni(port, "c.test"), "subject=CN = c.test");
    assert_eq!(subject_for_sni(port, "old.test"), "subject=CN = old.test");
    let events = h.journal_until(|e| events_of(e, "tls_established").len() >= 3);
    let served: Vec<_> = events_of(&events, "tls_established")
        .iter()
        .map(|e| (e["sni"].clone(), e["certificate"].clone()))
        .collect();
    assert_eq!(
        served,
        [
            ("a.test".into(), "shared".into()),
            ("c.test".into(), "c".into()),
            ("old.test".into(), "old".into()),
        ]
    );
}

#[test]
fn the_readiness_line_names_real_ports_the_ca_and_the_spki_hashes() {
    let h = Harness::start(SCENARIO);
    let ready = &h.ready;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["scenario"], "curl");
    assert_eq!(ready["pid"], h.pid());
    let listener = &ready["listeners"][0];
    assert_eq!(listener["name"], "main");
    assert_eq!(listener["ip"], "127.0.0.1");
    let port = h.port("main");
    assert_ne!(port, 0);
    assert_eq!(listener["address"], format!("127.0.0.1:{port}"));
    assert!(h.ca().is_absolute() && h.ca().is_file());
    let spki = std::fs::read_to_string(h.dir.path().join("certs/shared.spki")).expect("spki file");
    assert_eq!(ready["certificates"]["shared"]["spki_sha256"], spki.trim());
    assert_eq!(ready["journal"], h.journal_path.to_str().expect("utf-8"));
    // Every name of the scenario, with where a client must resolve it.
    let names: Vec<&String> = ready["names"].as_object().expect("names").keys().collect();
    assert_eq!(names, ["a.test", "b.test", "c.test", "old.test"]);
    assert_eq!(
        ready["names"]["old.test"],
        serde_json::json!({"listener": "main", "address": format!("127.0.0.1:{port}")})
    );
    // Ready means ready: connecting right away works.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listener accepts at once");
    let events = h.journal_until(|e| !events_of(e, "connection_opened").is_empty());
    assert_eq!(events[0]["event"], "listening");
    assert_eq!(events[0]["address"], format!("127.0.0.1:{port}"));
}

#[test]
fn sigterm_exits_0_and_journals_the_shutdown() {
    let h = Harness::start(SCENARIO);
    let (code, stderr, events) = h.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let last = events.last().expect("events");
    assert_eq!(last["event"], "shutdown");
    assert_eq!(last["reason"], "received SIGTERM");
}
