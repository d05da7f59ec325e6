//! Nothing is lost: under load (h2load), and when SIGTERM arrives in the middle of it, the
//! journal holds exactly one request event per response the client received.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Harness, events_of, have_tool, requests};

const SCENARIO: &str = r#"{
  "certificates": [{"name": "shared", "sans": ["a.test", "b.test"]}],
  "hosts": [{"names": ["a.test"], "certificate": "shared"}],
  "rules": [{"name": "every-third", "when": {"every_nth": 3}, "action": {"respond": {"status": 421}}}]
}"#;

/// h2load's counts: (done, succeeded, 2xx, 4xx).
fn h2load_counts(output: &str) -> (u64, u64, u64, u64) {
    let number_before = |line: &str, word: &str| -> u64 {
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        words
            .windows(2)
            .find(|w| w[1] == word)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or_else(|| panic!("no count before {word:?} in {line:?}"))
    };
    let requests = output
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line in:\n{output}"));
    let statuses = output
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or_else(|| panic!("no status line in:\n{output}"));
    (
        number_before(requests, "done"),
        number_before(requests, "succeeded"),
        number_before(statuses, "2xx"),
        number_before(statuses, "4xx"),
    )
}

fn h2load(h: &Harness, requests: u32) -> Command {
    let port = h.port("main");
    let mut command = Command::new("timeout");
    command
        .arg("60")
        .arg("h2load")
        .args(["-n", &requests.to_string(), "-c", "4", "-m", "10"])
        .arg(format!("--connect-to=127.0.0.1:{port}"))
        .arg(format!("https://a.test:{port}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn under_load_every_completed_request_is_journaled_once() {
    if !have_tool(
        "h2load_count",
        "h2load",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SCENARIO);
    let output = h2load(&h, 3000).output().expect("h2load runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let (done, _, ok, misdirected) = h2load_counts(&text);
    assert_eq!(done, 3000, "{text}");
    assert_eq!((ok, misdirected), (2000, 1000), "{text}");
    let (code, stderr, events) = h.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let reqs = requests(&events);
    assert_eq!(reqs.len() as u64, done);
    let journal_421 = reqs.iter().filter(|r| r["status"] == 421).count() as u64;
    assert_eq!(journal_421, misdirected);
    assert!(
        reqs.iter()
            .filter(|r| r["status"] == 421)
            .all(|r| r["rule"] == "every-third")
    );
    // Sequence numbers are gapless.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn sigterm_in_the_middle_of_a_load_loses_no_journal_event() {
    if !have_tool(
        "h2load_sigterm",
        "h2load",
        "the Debian package `nghttp2-client`",
    ) {
        return;
    }
    let h = Harness::start(SCENARIO);
    let client = h2load(&h, 1_000_000).spawn().expect("h2load starts");
    // Let the load get going, then stop the server under it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while requests(&h.journal()).len() < 500 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, stderr, events) = h.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let output = client.wait_with_output().expect("h2load ends");
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, _, ok, misdirected) = h2load_counts(&text);
    let received = ok + misdirected;
    assert!((500..1_000_000).contains(&received), "{text}");
    assert_eq!(requests(&events).len() as u64, received, "{text}");
    // Every connection that opened was closed, and the shutdown came first.
    let opened = events_of(&events, "connection_opened").len();
    assert_eq!(events_of(&events, "connection_closed").len(), opened);
    let shutdown_at = events
        .iter()
        .position(|e| e["event"] == "shutdown")
        .expect("shutdown event");
    assert!(
        events[shutdown_at + 1..]
            .iter()
            .all(|e| e["event"] != "connection_opened")
    );
}
