//! Hostile clients (issue 10): a harness is pointed at clients that are not yet known to be
//! correct, so it must never be the thing that fails.
//!
//! Each test starts its own `misdirect serve` (short timeouts, its own ports), runs one attack
//! over loopback with `tests/hostile/attack.py` (raw bytes, raw TLS records, raw HTTP/2 frames
//! with hyperframe + hpack, which h2 brings), and then checks, after every attack:
//!
//! - (a) the process is alive;
//! - (b) a well-behaved client on a NEW connection is answered within 1 s: curl over HTTP/2 on
//!   the TLS listener and over h2c (prior knowledge) on the cleartext one (the wall time,
//!   curl's start-up included, is printed);
//! - (c) RSS: at most [`PEAK_RSS_LIMIT_MB`] at any sample during the attack, and back within
//!   [`RSS_GROWTH_LIMIT_MB`] of the server's RSS before the attack once its connections are gone;
//! - (d) the journal is consistent: `seq` from 1 without gaps, and every `connection_opened` has
//!   exactly one `connection_closed` with a non-empty reason (waited for, bounded, since the
//!   server closes some attackers only at its handshake or idle timeout).
//!
//! Each test also asserts what the server itself did to the attacker (a GOAWAY code, a status,
//! an alert, a close within a time), and prints one `HOSTILE |` row saying so: run
//! `cargo test --test hostile -- --nocapture 2>&1 | grep 'HOSTILE |'` for the table.
//!
//! Every attack is bounded in count and in time (the script's `--seconds`, and
//! [`ATTACK_TIMEOUT`] here, after which the script is killed and the test fails).
//!
//! Five tests stage what the server once got wrong (issue 10): `zero_window_memory` and
//! `sigterm_with_silent_clients` (the findings), and three this suite found:
//! `partial_preface_then_silence_h2c`, `http1_doubled_host_is_refused`,
//! `idle_cut_off_is_not_journaled_as_shutdown`. Each failed before its fix.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Harness, have_tool, python_with_h2, run};
use serde_json::{Value, json};

/// The most RSS the server may have at any sample taken during an attack.
const PEAK_RSS_LIMIT_MB: u64 = 100;
/// How far above its RSS before the attack the server may stay once the attack's connections
/// are closed.
const RSS_GROWTH_LIMIT_MB: u64 = 50;
/// A well-behaved client on a new connection must be answered within this (wall time of the
/// whole curl run).
const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// An attack script that runs longer than this is killed and the test fails.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the journal may take to show every connection closed after an attack (the
/// server closes some attackers only at its handshake or idle timeout).
const JOURNAL_SETTLE: Duration = Duration::from_secs(10);

/// Server flags for the attacks: short timeouts keep the suite fast and make the server's
/// own limits visible within a test's time.
const HANDSHAKE_SECS: u64 = 2;
const IDLE_SECS: u64 = 1;
const GRACE_SECS: u64 = 1;

/// HTTP/2 error codes by number (RFC 9113 §7), for the report.
fn h2_error_name(code: u64) -> &'static str {
    match code {
        0 => "NO_ERROR",
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        3 => "FLOW_CONTROL_ERROR",
        4 => "SETTINGS_TIMEOUT",
        5 => "STREAM_CLOSED",
        6 => "FRAME_SIZE_ERROR",
        7 => "REFUSED_STREAM",
        8 => "CANCEL",
        9 => "COMPRESSION_ERROR",
        10 => "CONNECT_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        12 => "INADEQUATE_SECURITY",
        13 => "HTTP_1_1_REQUIRED",
        _ => "?",
    }
}

/// The scenario every attack runs against: a TLS listener offering h2 and http/1.1, a
/// cleartext one (h2c by prior knowledge and HTTP/1.1), a TLS listener offering only h2; one
/// host with a 1 MiB response at `/big` and a small one everywhere else.
fn scenario() -> String {
    json!({
        "name": "hostile",
        "certificates": [{"name": "c", "sans": ["a.test"]}],
        "listeners": [
            {"name": "main"},
            {"name": "clear", "tls": false},
            {"name": "h2only", "alpn": ["h2"]}
        ],
        "hosts": [{
            "names": ["a.test"],
            "certificate": "c",
            "responses": [
                {"path": "/big", "body": "x".repeat(1 << 20)},
                {"path": "*", "body": "ok\n"}
            ]
        }]
    })
    .to_string()
}

fn attack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/attack.py")
}

/// RSS of a process in KiB (`VmRSS` of `/proc/PID/status`); 0 if it cannot be read.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// The process state letter of `/proc/PID/stat` (`R`, `S`, … ; `Z` for a zombie), if any.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The journal file's complete lines (a line being written is left for the next read), each
/// checked to be one of the crate's journal events.
fn journal_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    if let Err(err) = misdirect::journal::read_ndjson(complete) {
        panic!("{}: not the crate's journal events: {err}", path.display());
    }
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

/// What is wrong with a journal: gaps in `seq`, connections opened and never closed, closed
/// twice or without a reason, closed without being opened.
fn journal_problems(events: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if event["seq"].as_u64() != Some(want) {
            problems.push(format!("seq {} where {want} was due", event["seq"]));
            break;
        }
    }
    let mut opened = BTreeSet::new();
    let mut closed: BTreeMap<u64, u32> = BTreeMap::new();
    for event in events {
        let id = event["connection"].as_u64().unwrap_or(0);
        match event["event"].as_str() {
            Some("connection_opened") => {
                opened.insert(id);
            }
            Some("connection_closed") => {
                *closed.entry(id).or_default() += 1;
                if event["reason"].as_str().is_none_or(|r| r.trim().is_empty()) {
                    problems.push(format!("connection {id} closed without a reason"));
                }
            }
            _ => {}
        }
    }
    for id in &opened {
        match closed.get(id) {
            None => problems.push(format!("connection {id} opened and never closed")),
            Some(n) if *n > 1 => problems.push(format!("connection {id} closed {n} times")),
            Some(_) => {}
        }
    }
    for id in closed.keys() {
        if !opened.contains(id) {
            problems.push(format!("connection {id} closed but never opened"));
        }
    }
    problems
}

/// Every event about one connection, for failure messages.
fn connection_events(events: &[Value], id: u64) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["connection"].as_u64() == Some(id))
        .collect()
}

/// Runs a command, bounded by `timeout`: returns (stdout, stderr) once it exits; kills it and
/// panics past the bound. While it runs, `during` is called about every 25 ms.
fn run_bounded(
    mut command: Command,
    timeout: Duration,
    mut during: impl FnMut(),
) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the attack script starts");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "attack still running after {timeout:?}: killed; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        during();
        std::thread::sleep(Duration::from_millis(25));
    };
    (
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// What one attack did and cost.
struct Outcome {
    /// The script's JSON line.
    out: Value,
    /// Highest RSS sampled while it ran (KiB).
    peak_rss_kb: u64,
    /// Connections the attack opened (journal ids).
    connections: Vec<u64>,
    /// Wall time of the attack.
    took: Duration,
}

/// A server under attack.
struct Hostile {
    test: &'static str,
    h: Harness,
    python: PathBuf,
    /// RSS before the first attack (KiB).
    start_rss_kb: u64,
    /// Connections up to this id belong to earlier attacks or probes.
    seen_connection: u64,
    /// RSS the server may stay above `start_rss_kb` after an attack (MB).
    growth_limit_mb: u64,
    /// RSS after the last attack, once settled (KiB).
    last_rss_kb: u64,
    handshake_secs: u64,
}

impl Hostile {
    /// Starts a server with the attack flags, `overrides` (flag, value) replacing or adding
    /// to them; `None` (after saying so) when the tools are missing.
    fn start(test: &'static str, overrides: &[(&str, &str)]) -> Option<Hostile> {
        let python = python_with_h2(test)?;
        if !have_tool(test, "curl", "the Debian package `curl`") {
            return None;
        }
        let mut settings: Vec<(String, String)> = vec![
            (
                "--handshake-timeout-secs".into(),
                HANDSHAKE_SECS.to_string(),
            ),
            ("--idle-timeout-secs".into(), IDLE_SECS.to_string()),
            ("--shutdown-grace-secs".into(), GRACE_SECS.to_string()),
        ];
        for (flag, value) in overrides {
            match settings.iter_mut().find(|(f, _)| f == flag) {
                Some(setting) => setting.1 = (*value).to_owned(),
                None => settings.push(((*flag).to_owned(), (*value).to_owned())),
            }
        }
        let handshake_secs = settings
            .iter()
            .find(|(f, _)| f == "--handshake-timeout-secs")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(HANDSHAKE_SECS);
        let mut flags = vec!["--no-control"];
        for (flag, value) in &settings {
            flags.push(flag);
            flags.push(value);
        }
        let h = Harness::start_with(&scenario(), &flags);
        // Let the runtime's threads settle before taking the baseline.
        std::thread::sleep(Duration::from_millis(100));
        let start_rss_kb = rss_kb(h.pid());
        Some(Hostile {
            test,
            h,
            python,
            start_rss_kb,
            seen_connection: 0,
            growth_limit_mb: RSS_GROWTH_LIMIT_MB,
            last_rss_kb: start_rss_kb,
            handshake_secs,
        })
    }

    fn ca(&self) -> String {
        self.h.ca().to_str().expect("utf-8 path").to_owned()
    }

    /// Script arguments to reach a TLS listener.
    fn tls(&self, listener: &str) -> Vec<String> {
        vec![
            "--port".into(),
            self.h.port(listener).to_string(),
            "--tls".into(),
            "--ca".into(),
            self.ca(),
            "--sni".into(),
            "a.test".into(),
        ]
    }

    /// Script arguments to reach the cleartext listener.
    fn clear(&self) -> Vec<String> {
        vec!["--port".into(), self.h.port("clear").to_string()]
    }

    /// Runs `attack.py ATTACK TARGET… ARGS…`, sampling the server's RSS while it runs.
    fn attack(&mut self, attack: &str, target: &[String], args: &[&str]) -> Outcome {
        let mut command = Command::new(&self.python);
        command
            .arg(attack_script())
            .arg(attack)
            .args(target)
            .args(args);
        let pid = self.h.pid();
        let mut peak = rss_kb(pid);
        let started = Instant::now();
        let (code, stdout, stderr) = run_bounded(command, ATTACK_TIMEOUT, || {
            peak = peak.max(rss_kb(pid));
        });
        let took = started.elapsed();
        peak = peak.max(rss_kb(pid));
        assert_eq!(
            code,
            Some(0),
            "{}: attack.py {attack} failed:\n{stdout}\n{stderr}",
            self.test
        );
        let line = stdout.lines().last().unwrap_or_default();
        let out: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("attack.py {attack}: not JSON ({e}): {stdout}\n{stderr}"));
        // The journal file trails the server by its flush delay (2 ms): let it catch up
        // before reading which connections the attack opened.
        std::thread::sleep(Duration::from_millis(50));
        let connections = self.new_connections();
        Outcome {
            out,
            peak_rss_kb: peak,
            connections,
            took,
        }
    }

    /// Connections opened since the last call.
    fn new_connections(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = journal_lines(&self.h.journal_path)
            .iter()
            .filter(|e| e["event"] == "connection_opened")
            .filter_map(|e| e["connection"].as_u64())
            .filter(|id| *id > self.seen_connection)
            .collect();
        if let Some(max) = ids.iter().max() {
            self.seen_connection = *max;
        }
        ids
    }

    /// (a) The server process is alive (not gone, not a zombie).
    fn assert_alive(&self, label: &str) {
        let state = process_state(self.h.pid());
        assert!(
            state.is_some_and(|s| s != 'Z' && s != 'X'),
            "{}: {label}: the server process is not alive (state {state:?})",
            self.test
        );
    }

    /// (b) A well-behaved client on a new connection is answered within [`PROBE_LIMIT`]:
    /// HTTP/2 over TLS, and h2c on the cleartext listener. Returns the slower wall time.
    fn probe(&mut self, label: &str) -> Duration {
        let ca = self.ca();
        let mut slowest = Duration::ZERO;
        for listener in ["main", "clear"] {
            let port = self.h.port(listener);
            let resolve = format!("a.test:{port}:127.0.0.1");
            let (version, url) = if listener == "main" {
                ("--http2", format!("https://a.test:{port}/"))
            } else {
                ("--http2-prior-knowledge", format!("http://a.test:{port}/"))
            };
            let started = Instant::now();
            let (code, out, err) = run(
                "curl",
                &[
                    "-sS",
                    version,
                    "--max-time",
                    "5",
                    "--cacert",
                    &ca,
                    "--resolve",
                    &resolve,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    &url,
                ],
            );
            let took = started.elapsed();
            assert_eq!(
                (code, out.as_str()),
                (Some(0), "200 2"),
                "{}: {label}: the well-behaved client on {listener} was not answered: {err}",
                self.test
            );
            assert!(
                took < PROBE_LIMIT,
                "{}: {label}: the well-behaved client on {listener} took {took:?} (limit {PROBE_LIMIT:?})",
                self.test
            );
            slowest = slowest.max(took);
        }
        // The probes' own connections (one per listener) are not the attack's. The journal
        // file trails the server by its flush delay: wait (bounded) until they are in it.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut probes = 0;
        while probes < 2 && Instant::now() < deadline {
            probes += self.new_connections().len();
            if probes < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        slowest
    }

    /// (d) Waits (bounded) until the journal is consistent; returns it.
    fn settled_journal(&self, label: &str) -> Vec<Value> {
        let deadline = Instant::now() + JOURNAL_SETTLE;
        loop {
            let events = journal_lines(&self.h.journal_path);
            let problems = journal_problems(&events);
            if problems.is_empty() {
                return events;
            }
            if Instant::now() > deadline {
                let unclosed: Vec<String> = problems
                    .iter()
                    .filter_map(|p| {
                        p.strip_prefix("connection ")
                            .and_then(|r| r.split_whitespace().next())
                            .and_then(|id| id.parse().ok())
                    })
                    .take(3)
                    .map(|id| format!("{:?}", connection_events(&events, id)))
                    .collect();
                panic!(
                    "{}: {label}: journal not consistent {JOURNAL_SETTLE:?} after the attack: {problems:?}\nevents of the first: {unclosed:#?}",
                    self.test
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (c) Waits (bounded, 3 s) for RSS to come back within the growth limit
    /// ([`RSS_GROWTH_LIMIT_MB`] unless a test states another) of the start; returns it (KiB).
    fn settled_rss(&self, label: &str) -> u64 {
        let growth = self.growth_limit_mb;
        let limit = self.start_rss_kb + growth * 1024;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let now = rss_kb(self.h.pid());
            if now <= limit {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {label}: RSS {:.1} MB after the attack, more than {growth} MB above the {:.1} MB it started at",
                self.test,
                mb(now),
                mb(self.start_rss_kb)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All four checks after an attack, then one report row. `did` says what the server did
    /// to the attacker (as the attack saw it). Returns the settled journal.
    fn verify(&mut self, label: &str, outcome: &Outcome, did: &str) -> Vec<Value> {
        self.assert_alive(label);
        assert!(
            outcome.peak_rss_kb <= PEAK_RSS_LIMIT_MB * 1024,
            "{}: {label}: RSS peaked at {:.1} MB during the attack (limit {PEAK_RSS_LIMIT_MB} MB)",
            self.test,
            mb(outcome.peak_rss_kb)
        );
        let probe = self.probe(label);
        let events = self.settled_journal(label);
        let rss = self.settled_rss(label);
        self.last_rss_kb = rss;
        self.assert_alive(label);
        let reasons = close_reasons(&events, &outcome.connections);
        println!(
            "HOSTILE | {label} | {did} | {} conn: {} | probe {} ms | RSS start {:.1} MB, peak {:.1} MB, after {:.1} MB | attack {:.2} s",
            outcome.connections.len(),
            summarize_reasons(&reasons),
            probe.as_millis(),
            mb(self.start_rss_kb),
            mb(outcome.peak_rss_kb),
            mb(rss),
            outcome.took.as_secs_f64(),
        );
        events
    }
}

/// The close reasons of some connections, by connection.
fn close_reasons(events: &[Value], connections: &[u64]) -> BTreeMap<u64, String> {
    events
        .iter()
        .filter(|e| e["event"] == "connection_closed")
        .filter_map(|e| {
            let id = e["connection"].as_u64()?;
            connections
                .contains(&id)
                .then(|| (id, e["reason"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// Distinct reasons with their counts, most frequent first.
fn summarize_reasons(reasons: &BTreeMap<u64, String>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons.values() {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(r, n)| {
            if *n > 1 {
                format!("{n}× {r}")
            } else {
                (*r).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "GOAWAY ENHANCE_YOUR_CALM (too_many_resets)" or "no GOAWAY".
fn goaway_text(out: &Value) -> String {
    match out["goaway"].as_object() {
        Some(g) => {
            let code = g["error_code"].as_u64().unwrap_or(u64::MAX);
            let debug = g.get("debug").and_then(Value::as_str).unwrap_or_default();
            if debug.is_empty() {
                format!("GOAWAY {}", h2_error_name(code))
            } else {
                format!("GOAWAY {} ({debug})", h2_error_name(code))
            }
        }
        None => "no GOAWAY".to_owned(),
    }
}

fn goaway_code(out: &Value) -> Option<u64> {
    out["goaway"]["error_code"].as_u64()
}

fn reasons_of(events: &[Value], outcome: &Outcome) -> Vec<String> {
    close_reasons(events, &outcome.connections)
        .into_values()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 frame attacks

/// Rapid reset (CVE-2023-44487): up to 5,000 × (HEADERS, RST_STREAM) over TLS and over h2c.
/// The server must notice and end the connection with GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn rapid_reset() {
    let Some(mut s) = Hostile::start("rapid_reset", &[]) else {
        return;
    };
    for (label, target) in [
        ("rapid reset (h2)", s.tls("main")),
        ("rapid reset (h2c)", s.clear()),
    ] {
        let o = s.attack(
            "rapid-reset",
            &target,
            &["--count", "5000", "--seconds", "10"],
        );
        let sent = o.out["streams_opened_and_reset"].as_u64().unwrap_or(0);
        assert_eq!(
            goaway_code(&o.out),
            Some(11),
            "{label}: expected GOAWAY(ENHANCE_YOUR_CALM): {}",
            o.out
        );
        assert!(
            sent < 5000,
            "{label}: the server let all {sent} resets through: {}",
            o.out
        );
        let events = s.verify(
            label,
            &o,
            &format!("{} after {sent} HEADERS+RST_STREAM", goaway_text(&o.out)),
        );
        let reasons = reasons_of(&events, &o);
        assert!(
            reasons
                .iter()
                .all(|r| r.contains("excessive") || r.contains("GOAWAY")),
            "{label}: close reasons should name the flood: {reasons:?}"
        );
    }
}

/// CONTINUATION flood with 16 KiB frames of a header value that never ends (bounded: 2,000
/// frames, 32 MiB), and with empty frames (100,000). The server must end the connection with a
/// GOAWAY instead of buffering or spinning.
#[test]
fn continuation_flood() {
    let Some(mut s) = Hostile::start("continuation_flood", &[]) else {
        return;
    };
    for (variant, count) in [("large", "2000"), ("empty", "100000")] {
        let label = format!("CONTINUATION flood ({variant})");
        let o = s.attack(
            "continuation-flood",
            &s.tls("main"),
            &["--variant", variant, "--count", count, "--seconds", "10"],
        );
        let code = goaway_code(&o.out);
        assert!(
            matches!(code, Some(1 | 6 | 9 | 11)),
            "{label}: expected a GOAWAY error: {}",
            o.out
        );
        assert_eq!(o.out["server_closed"], true, "{label}: {}", o.out);
        s.verify(
            &label,
            &o,
            &format!(
                "{} after {} frames",
                goaway_text(&o.out),
                o.out["continuation_frames_sent"]
            ),
        );
    }
}

/// SETTINGS, PING and WINDOW_UPDATE floods (up to 1,000,000 frames each, 3 s), reading
/// nothing back meanwhile, then one request on the same connection. The server may keep up
/// (the request is answered), push back (stop reading) and close the connection at its idle
/// timeout, or end it with GOAWAY(ENHANCE_YOUR_CALM); it must not buffer without bound.
#[test]
fn control_frame_floods() {
    let Some(mut s) = Hostile::start("control_frame_floods", &[]) else {
        return;
    };
    for kind in ["settings", "ping", "window_update"] {
        let label = format!("{} flood", kind.replace('_', " ").to_uppercase());
        let o = s.attack(
            "control-flood",
            &s.tls("main"),
            &["--variant", kind, "--count", "1000000", "--seconds", "3"],
        );
        let answered = o.out["request_after_flood_answered"] == true;
        let calm = goaway_code(&o.out) == Some(11);
        let closed = o.out["server_closed"] == true;
        assert!(
            answered || calm || closed,
            "{label}: the connection neither served a request nor was ended by the server: {}",
            o.out
        );
        let did = format!(
            "{} frames sent in {} s{}; {}; {}",
            o.out["flood_frames_sent"],
            o.out["flood_seconds"],
            o.out["send_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            if answered {
                "request afterwards answered".to_owned()
            } else if closed {
                format!("server closed after {} s", o.out["server_closed_after_s"])
            } else {
                "request afterwards not answered".to_owned()
            },
            goaway_text(&o.out)
        );
        s.verify(&label, &o, &did);
    }
}

/// A connection cut off at the end of the grace period after its IDLE-timeout GOAWAY was once
/// journaled as closed because "shutdown grace period over", although the server was not
/// shutting down (the idle drain arms the same grace timer). Staged as a
/// PING flood that is never read (so the GOAWAY cannot be flushed and the client never
/// closes): the close reason must name the idle timeout, not a shutdown.
#[test]
fn idle_cut_off_is_not_journaled_as_shutdown() {
    let Some(mut s) = Hostile::start("idle_cut_off_is_not_journaled_as_shutdown", &[]) else {
        return;
    };
    let label = "idle cut-off reason (unread PING flood)";
    let o = s.attack(
        "control-flood",
        &s.tls("main"),
        &["--variant", "ping", "--count", "1000000", "--seconds", "3"],
    );
    let events = s.verify(
        label,
        &o,
        &format!(
            "server closed after {} s; {}",
            o.out["server_closed_after_s"],
            goaway_text(&o.out)
        ),
    );
    let reasons = reasons_of(&events, &o);
    assert!(
        !events.iter().any(|e| e["event"] == "shutdown"),
        "the server was not shut down"
    );
    assert!(
        reasons.iter().all(|r| !r.contains("shutdown")),
        "{label}: no shutdown happened, yet the journal says {reasons:?}"
    );
}

/// Bad prefaces over TLS with ALPN h2: garbage where the preface belongs, the preface
/// followed by garbage, and a partial preface then silence. Garbage ends the connection at
/// once; silence at the handshake timeout.
#[test]
fn bad_prefaces_over_tls() {
    let Some(mut s) = Hostile::start("bad_prefaces_over_tls", &[]) else {
        return;
    };
    let limit = s.handshake_secs as f64 + 1.5;
    for variant in ["garbage", "garbage_after_preface", "partial"] {
        let label = format!("bad preface h2/TLS ({variant})");
        let o = s.attack(
            "bad-preface",
            &s.tls("main"),
            &["--variant", variant, "--seconds", "8"],
        );
        let after = o.out["server_closed_after_s"].as_f64();
        let bound = if variant == "partial" { limit } else { 1.0 };
        assert!(
            after.is_some_and(|a| a <= bound),
            "{label}: the server should close within {bound} s: {}",
            o.out
        );
        s.verify(
            &label,
            &o,
            &format!(
                "{}; closed after {} s",
                goaway_text(&o.out),
                after.unwrap_or(-1.0)
            ),
        );
    }
}

/// Bad prefaces on the cleartext listener (h2c by prior knowledge): garbage, the preface then
/// garbage.
#[test]
fn bad_prefaces_h2c() {
    let Some(mut s) = Hostile::start("bad_prefaces_h2c", &[]) else {
        return;
    };
    for variant in ["garbage", "garbage_after_preface"] {
        let label = format!("bad preface h2c ({variant})");
        let o = s.attack(
            "bad-preface",
            &s.clear(),
            &["--variant", variant, "--seconds", "8"],
        );
        let after = o.out["server_closed_after_s"].as_f64();
        assert!(
            after.is_some_and(|a| a <= 1.0),
            "{label}: the server should close at once: {}",
            o.out
        );
        let what = o.out["http1_status_line"]
            .as_str()
            .map_or_else(|| goaway_text(&o.out), str::to_owned);
        s.verify(
            &label,
            &o,
            &format!("{what}; closed after {} s", after.unwrap_or(-1.0)),
        );
    }
}

/// On a cleartext listener, a client that sends the first bytes of the HTTP/2 preface
/// (`PRI * HTTP/2.0\r\n`, 10 bytes) and then nothing was once never closed: the detection
/// peeks in a loop, and a peek that returns the same 10 bytes at once never lets its timeout
/// expire. It must close at the handshake timeout, journaled.
#[test]
fn partial_preface_then_silence_h2c() {
    let Some(mut s) = Hostile::start("partial_preface_then_silence_h2c", &[]) else {
        return;
    };
    let label = "bad preface h2c (partial, then silence)";
    let limit = s.handshake_secs as f64 + 1.5;
    let o = s.attack(
        "bad-preface",
        &s.clear(),
        &[
            "--variant",
            "partial",
            "--seconds",
            &(limit + 1.5).to_string(),
        ],
    );
    let after = o.out["server_closed_after_s"].as_f64();
    // Checked after the common checks too: a still-open connection is also a journal failure.
    let verdict = after.is_some_and(|a| a <= limit);
    if verdict {
        s.verify(
            label,
            &o,
            &format!("closed after {} s", after.unwrap_or(-1.0)),
        );
    }
    assert!(
        verdict,
        "{label}: the server should close within the handshake timeout ({} s) + slack: {}\njournal of the connection: {:#?}",
        s.handshake_secs,
        o.out,
        o.connections
            .iter()
            .map(
                |id| connection_events(&journal_lines(&s.h.journal_path), *id)
                    .into_iter()
                    .cloned()
                    .collect::<Vec<_>>()
            )
            .collect::<Vec<_>>()
    );
}

/// Oversized headers: a header list just over the 64 KiB limit (72 KB: must be refused,
/// e.g. 431, and the connection stays usable) and far over it (160 KB in 10+ CONTINUATIONs:
/// refused, the connection may be ended).
#[test]
fn oversized_headers() {
    let Some(mut s) = Hostile::start("oversized_headers", &[]) else {
        return;
    };
    for (count, label) in [
        ("18", "oversized headers (72 KB)"),
        ("40", "oversized headers (160 KB)"),
    ] {
        let o = s.attack("oversized-headers", &s.tls("main"), &["--count", count]);
        let status = o.out["stream_status"]["1"].as_str().map(str::to_owned);
        assert_ne!(
            status.as_deref(),
            Some("200"),
            "{label}: the oversized request must not be served: {}",
            o.out
        );
        assert!(
            status.is_some()
                || goaway_code(&o.out).is_some()
                || !o.out["resets"].as_object().is_none_or(|r| r.is_empty()),
            "{label}: the server neither answered, reset nor ended the connection: {}",
            o.out
        );
        if count == "18" {
            assert_eq!(
                status.as_deref(),
                Some("431"),
                "{label}: just over the limit: 431 expected: {}",
                o.out
            );
            assert_eq!(
                o.out["next_request_answered"], true,
                "{label}: the connection should stay usable: {}",
                o.out
            );
        }
        let did = format!(
            "stream 1: {}; {}; next request on it {}",
            status.unwrap_or_else(|| "no answer".into()),
            goaway_text(&o.out),
            if o.out["next_request_answered"] == true {
                "answered"
            } else {
                "not answered"
            }
        );
        s.verify(label, &o, &did);
    }
}

/// HPACK bomb: one 4 KB header put into the dynamic table by an ordinary request, then up to
/// 200 requests each referencing it ~16,000 times (16 KB on the wire, 64 MB decoded each).
#[test]
fn hpack_bomb() {
    let Some(mut s) = Hostile::start("hpack_bomb", &[]) else {
        return;
    };
    let label = "HPACK bomb";
    let o = s.attack(
        "hpack-bomb",
        &s.tls("main"),
        &["--count", "200", "--seconds", "10"],
    );
    assert_eq!(
        o.out["first_request_answered"], true,
        "the request that fills the table is ordinary: {}",
        o.out
    );
    let bombs_served = o.out["statuses"]["200"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(1);
    assert_eq!(
        bombs_served, 0,
        "{label}: a bomb request was served: {}",
        o.out
    );
    assert!(
        goaway_code(&o.out).is_some() || o.out["statuses"]["431"].as_u64().unwrap_or(0) > 0,
        "{label}: expected GOAWAY or 431: {}",
        o.out
    );
    s.verify(
        label,
        &o,
        &format!(
            "{} after {} bomb request(s)",
            goaway_text(&o.out),
            o.out["bomb_requests"]
        ),
    );
}

/// Issue 10, finding 1: before bodies were shared and sent by capacity, this test failed with
/// "RSS peaked at 825.5 MB during the attack (limit 100 MB)"; now the peak is ~25 MB.
///
/// Zero-window memory: eight HTTP/2 connections each open 100 streams for the 1 MiB response
/// with SETTINGS_INITIAL_WINDOW_SIZE = 0 and never open the window; held 3 s (the idle timeout
/// is 10 s here, so the server does not give up on them first), then closed. RSS peak
/// < 100 MB, and within 50 MB of the start once every connection has closed.
#[test]
fn zero_window_memory() {
    let Some(mut s) = Hostile::start("zero_window_memory", &[("--idle-timeout-secs", "10")]) else {
        return;
    };
    let label = "zero window (8 conns × 100 streams × 1 MiB)";
    let o = s.attack(
        "zero-window",
        &s.tls("main"),
        &[
            "--conns",
            "8",
            "--count",
            "100",
            "--hold",
            "3",
            "--seconds",
            "20",
        ],
    );
    assert_eq!(o.out["connections"], 8, "{}", o.out);
    assert_eq!(
        o.out["data_bytes"], 0,
        "with a zero window no DATA may arrive: {}",
        o.out
    );
    // The common checks include: peak < 100 MB (PEAK_RSS_LIMIT_MB) and, after every
    // connection has closed, RSS within 50 MB (RSS_GROWTH_LIMIT_MB) of the start.
    let did = format!(
        "{} response heads, {} DATA bytes, resets {}, {} GOAWAY",
        o.out["headers_received"],
        o.out["data_bytes"],
        o.out["resets"],
        o.out["goaways"].as_array().map_or(0, Vec::len)
    );
    s.verify(label, &o, &did);
}

/// Never-read: 50 streams for the 1 MiB body with every window wide open, and 50 pipelined
/// HTTP/1.1 requests for it, the socket never read for 2.5 s. The server must not buffer the
/// bodies: it waits on the socket and gives up on a stream after the idle timeout
/// (RST_STREAM CANCEL, journaled as `response_failed`).
#[test]
fn never_read() {
    let Some(mut s) = Hostile::start("never_read", &[]) else {
        return;
    };
    let label = "never read (h2, 50 × 1 MiB)";
    let o = s.attack(
        "never-read",
        &s.tls("main"),
        &["--count", "50", "--hold", "2.5"],
    );
    let cancels = o.out["resets"]["8"].as_u64().unwrap_or(0);
    assert!(
        cancels > 0 || o.out["server_closed"] == true,
        "{label}: the server should give up on unread streams (RST_STREAM CANCEL) or close: {}",
        o.out
    );
    let events = s.verify(
        label,
        &o,
        &format!(
            "{} response heads; {} DATA bytes reached the client; {cancels} streams reset CANCEL",
            o.out["statuses"]["200"], o.out["data_bytes"]
        ),
    );
    let failed = events
        .iter()
        .filter(|e| e["event"] == "response_failed")
        .count();
    assert!(failed > 0, "{label}: no response_failed journaled");

    let label = "never read (HTTP/1.1, 50 pipelined × 1 MiB)";
    let o = s.attack(
        "never-read",
        &s.tls("main"),
        &["--variant", "http1", "--count", "50", "--hold", "2.5"],
    );
    let events = s.verify(label, &o, "pipelined requests sent, socket never read");
    let requests: u64 = events
        .iter()
        .filter(|e| e["event"] == "connection_closed")
        .filter(|e| {
            o.connections
                .contains(&e["connection"].as_u64().unwrap_or(0))
        })
        .filter_map(|e| e["requests"].as_u64())
        .sum();
    assert!(
        (1..50).contains(&requests),
        "{label}: the server should answer one pipelined request at a time and stop when the client does not read; it handled {requests}"
    );
}

/// Connections dropped mid-request (after HEADERS without END_STREAM; in the middle of a
/// body) and mid-response (after the first DATA frame), over HTTP/2 and HTTP/1.1.
#[test]
fn drops_mid_request_and_mid_response() {
    let Some(mut s) = Hostile::start("drops_mid_request_and_mid_response", &[]) else {
        return;
    };
    let label = "drops mid-request / mid-response";
    let o = s.attack("drops", &s.tls("main"), &[]);
    assert!(
        o.out["h2_mid_response_data_seen"].as_u64().unwrap_or(0) > 0,
        "{}",
        o.out
    );
    let events = s.verify(label, &o, "6 connections dropped at awkward moments");
    let failed = events
        .iter()
        .filter(|e| e["event"] == "response_failed")
        .count();
    assert!(
        failed > 0,
        "{label}: a response cut off by the client should be journaled as response_failed"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS-level attacks

/// Plain HTTP/1.1, the HTTP/2 preface, and 8 KB of random bytes sent to a TLS port: a TLS
/// alert (or a close) at once, journaled as `tls_failed`.
#[test]
fn plaintext_and_garbage_on_a_tls_port() {
    let Some(mut s) = Hostile::start("plaintext_and_garbage_on_a_tls_port", &[]) else {
        return;
    };
    for variant in ["plaintext", "h2_preface", "garbage"] {
        let label = format!("{variant} on a TLS port");
        let o = s.attack(
            "tls-garbage",
            &s.tls("main"),
            &["--variant", variant, "--seconds", "5"],
        );
        let reply = o.out["reply"].as_str().unwrap_or_default().to_owned();
        assert!(
            reply.starts_with("alert:") || reply == "eof",
            "{label}: {}",
            o.out
        );
        assert!(
            o.out["server_closed_after_s"]
                .as_f64()
                .is_some_and(|a| a < 1.0),
            "{label}: not closed at once: {}",
            o.out
        );
        let events = s.verify(&label, &o, &format!("TLS {reply}, closed at once"));
        assert!(
            events.iter().any(|e| e["event"] == "tls_failed"
                && o.connections
                    .contains(&e["connection"].as_u64().unwrap_or(0))),
            "{label}: no tls_failed journaled"
        );
    }
}

/// TLS slowloris: a ClientHello one byte every 100 ms (bounded: 8 s). The server must close
/// the connection by its handshake timeout (two phases: ClientHello, then the rest).
#[test]
fn tls_slowloris() {
    let Some(mut s) = Hostile::start("tls_slowloris", &[]) else {
        return;
    };
    let label = "TLS slowloris (1 byte / 100 ms)";
    let o = s.attack(
        "tls-slowloris",
        &s.tls("main"),
        &["--interval", "0.1", "--seconds", "8"],
    );
    let limit = 2.0 * s.handshake_secs as f64 + 1.0;
    let after = o.out["server_closed_after_s"].as_f64();
    assert!(
        after.is_some_and(|a| a <= limit),
        "{label}: not closed within {limit} s: {}",
        o.out
    );
    let events = s.verify(
        label,
        &o,
        &format!(
            "closed after {} s, {} of {} hello bytes sent",
            after.unwrap_or(-1.0),
            o.out["bytes_sent"],
            o.out["hello_bytes"]
        ),
    );
    assert!(
        events.iter().any(|e| e["event"] == "tls_failed"
            && e["reason"].as_str().is_some_and(|r| r.contains("within"))),
        "{label}: the journal should say the handshake timed out"
    );
}

/// Odd SNI in a hand-built ClientHello: an IP literal, a trailing dot, uppercase, non-ASCII
/// bytes, a 64-byte label, 300 and 8,000 bytes, empty. Each gets a ServerHello or an alert
/// (never a hang or a crash); malformed names get an alert; uppercase is the same name.
#[test]
fn odd_and_over_long_sni() {
    let Some(mut s) = Hostile::start("odd_and_over_long_sni", &[]) else {
        return;
    };
    let label = "odd / over-long SNI";
    let o = s.attack("odd-sni", &s.tls("main"), &[]);
    let mut did = Vec::new();
    for (name, result) in o.out.as_object().expect("object") {
        let Some(hello) = result["hello"].as_str() else {
            continue;
        };
        assert!(
            hello == "server_hello" || hello.starts_with("alert:"),
            "{label}: {name}: {hello}"
        );
        let full = result["full"]["status_line"]
            .as_str()
            .map(|s| format!(" → {s}"))
            .unwrap_or_default();
        did.push(format!("{name}: {hello}{full}"));
    }
    for malformed in [
        "non_ascii",
        "too_long_label",
        "over_long_300",
        "huge_8k",
        "empty",
    ] {
        assert!(
            o.out[malformed]["hello"]
                .as_str()
                .is_some_and(|h| h.starts_with("alert:")),
            "{label}: {malformed} should be refused: {}",
            o.out
        );
    }
    assert_eq!(
        o.out["uppercase"]["full"]["status_line"], "HTTP/1.1 200 OK",
        "{label}: SNI is case-insensitive: {}",
        o.out
    );
    s.verify(label, &o, &did.join(", "));
}

/// No ALPN and unknown ALPN. Without ALPN: HTTP/1.1 where offered, a close (journaled with its
/// reason) on an h2-only listener. An unknown protocol: the handshake fails with
/// no_application_protocol (RFC 7301 §3.2).
#[test]
fn no_and_unknown_alpn() {
    let Some(mut s) = Hostile::start("no_and_unknown_alpn", &[]) else {
        return;
    };
    for listener in ["main", "h2only"] {
        let label = format!("no / unknown ALPN ({listener})");
        let o = s.attack("alpn", &s.tls(listener), &[]);
        let none = &o.out["none"];
        assert_eq!(none["handshake"], "ok", "{label}: {}", o.out);
        if listener == "main" {
            assert_eq!(none["status_line"], "HTTP/1.1 200 OK", "{label}: {}", o.out);
        } else {
            assert!(none["status_line"].is_null(), "{label}: {}", o.out);
        }
        let unknown = o.out["unknown"]["full"]["handshake"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            unknown.contains("no application protocol"),
            "{label}: unknown ALPN: {}",
            o.out
        );
        let events = s.verify(
            &label,
            &o,
            &format!(
                "no ALPN: {}; unknown ALPN: {}; empty ALPN id: {}",
                none["status_line"]
                    .as_str()
                    .unwrap_or("closed without an answer"),
                unknown,
                o.out["empty_string_protocol"]["hello"]
            ),
        );
        if listener == "h2only" {
            assert!(
                reasons_of(&events, &o)
                    .iter()
                    .any(|r| r.contains("no ALPN")),
                "{label}: the close reason should say no ALPN"
            );
        }
    }
}

/// 2,000 connections at once on the TLS listener, twice: 1,700 bare TCP (half of them with one
/// byte of a ClientHello), 300 full TLS handshakes with ALPN h2 and the HTTP/2 preface; held
/// 1 s, then closed. The handshake timeout is 30 s here so that they are all held together.
/// (The open-files hard limit here is 20,000; the script raises its soft limit as needed.)
#[test]
fn connection_flood_2000() {
    let Some(mut s) = Hostile::start(
        "connection_flood_2000",
        &[("--handshake-timeout-secs", "30")],
    ) else {
        return;
    };
    // The script raises its own open-files soft limit to what it needs (the hard limit here
    // is checked first: with less than 2,100 it could not, and the test says so).
    let label = "2,000-connection flood";
    let hard = nofile_hard_limit();
    assert!(
        hard.is_none_or(|h| h >= 2100),
        "the open-files hard limit ({hard:?}) is below 2,100: the flood cannot be run here"
    );
    // 2,000 connections at once cost ~30–45 MB of buffers that glibc keeps after they close
    // (RSS does not drop back), so the bound after each round is start + 80 MB. How much
    // stays depends on how many handshakes were in flight at once (a round whose
    // connections open faster peaks higher), so one round may end above another; a leak
    // grows round after round: the third round must add less than 10 MB to the most the
    // first two left.
    s.growth_limit_mb = 80;
    let mut after = Vec::new();
    for round in 1..=3 {
        let label = format!("2,000-connection flood (round {round})");
        let o = s.attack(
            "conn-flood",
            &s.tls("main"),
            &[
                "--count",
                "2000",
                "--tls-count",
                "300",
                "--hold",
                "1",
                "--seconds",
                "30",
            ],
        );
        assert_eq!(o.out["opened"], 2000, "{label}: {}", o.out);
        assert_eq!(
            o.out["dropped_by_server_while_held"], 0,
            "{label}: the server dropped connections while they were held: {}",
            o.out
        );
        let events = s.verify(
            &label,
            &o,
            &format!(
                "all {} accepted (opened in {} s), none dropped while held",
                o.out["opened"], o.out["open_seconds"]
            ),
        );
        let closed = close_reasons(&events, &o.connections).len();
        assert_eq!(
            closed, 2000,
            "{label}: {closed} of 2000 connections journaled closed"
        );
        after.push(s.last_rss_kb);
    }
    assert!(
        after[2] <= after[0].max(after[1]) + 10 * 1024,
        "{label}: RSS after the third round {:.1} MB, after the first two {:.1} and {:.1} MB: growing",
        mb(after[2]),
        mb(after[0]),
        mb(after[1])
    );
}

/// The open-files hard limit of this process (`/proc/self/limits`).
fn nofile_hard_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4).and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and h2c abuse

/// HTTP/1.1 abuse on the cleartext listener: missing Host, a huge request line and a huge
/// header (300 KB), an endless chunked body (bounded: 8 MiB / 5 s; the body limit is 64 KiB
/// here), a bad chunk size, garbage for a method.
#[test]
fn http1_abuse() {
    let Some(mut s) = Hostile::start("http1_abuse", &[("--max-body-bytes", "65536")]) else {
        return;
    };
    let label = "HTTP/1.1 abuse";
    let o = s.attack("http1-abuse", &s.clear(), &["--seconds", "5"]);
    let status = |case: &str| {
        o.out[case]["http1_status_line"]
            .as_str()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("none")
            .to_owned()
    };
    let expect = |case: &str, allowed: &[&str]| {
        let got = status(case);
        assert!(
            allowed.contains(&got.as_str()),
            "{label}: {case}: got {got}, expected one of {allowed:?}: {}",
            o.out[case]
        );
    };
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host (HTTP/1.0 may omit it).
    expect("missing_host", &["400"]);
    expect("huge_request_line", &["400", "414", "431"]);
    expect("huge_header", &["400", "431"]);
    expect("endless_chunked", &["413"]);
    expect("bad_chunk_size", &["400"]);
    expect("request_line_garbage", &["400"]);
    assert!(
        o.out["endless_chunked"]["chunks_sent"]
            .as_u64()
            .unwrap_or(0)
            < 512,
        "{label}: the endless body was read to the script's bound: {}",
        o.out["endless_chunked"]
    );
    let cases = [
        "missing_host",
        "doubled_host_same",
        "doubled_host_different",
        "huge_request_line",
        "huge_header",
        "endless_chunked",
        "bad_chunk_size",
        "cl_and_te",
        "http10_no_host",
        "request_line_garbage",
    ];
    let did = cases
        .iter()
        .map(|c| format!("{c}: {}", status(c)))
        .collect::<Vec<_>>()
        .join(", ");
    s.verify(label, &o, &did);
}

/// A request with two Host headers (`Host: a.test`, `Host: evil.test`) was once served 200 by
/// the first; RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to
/// any HTTP/1.1 request message that ... contains more than one Host header field line". A
/// harness that picks one of two authorities silently can pass a client that sends an
/// ambiguous request.
#[test]
fn http1_doubled_host_is_refused() {
    let Some(mut s) = Hostile::start("http1_doubled_host_is_refused", &[]) else {
        return;
    };
    let label = "HTTP/1.1 doubled Host";
    let o = s.attack(
        "http1-abuse",
        &s.clear(),
        &["--variant", "doubled_host_different,doubled_host_same"],
    );
    let line = o.out["doubled_host_different"]["http1_status_line"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    s.verify(
        label,
        &o,
        &format!("Host: a.test + Host: evil.test → {line}"),
    );
    assert!(
        line.contains(" 400 "),
        "{label}: two different Host headers must be refused (RFC 9112 §3.2: 400), got {line:?}"
    );
}

/// h2c abuse on the cleartext listener: `Upgrade: h2c` with good, bad and missing
/// HTTP2-Settings, an upgrade followed at once by the preface, an upgrade on a POST with a
/// body, the preface followed by garbage, by HTTP/1.1 text, by a second preface.
#[test]
fn h2c_abuse() {
    let Some(mut s) = Hostile::start("h2c_abuse", &[]) else {
        return;
    };
    let label = "h2c abuse";
    let o = s.attack("h2c-abuse", &s.clear(), &[]);
    let mut did = Vec::new();
    for case in [
        "upgrade",
        "upgrade_bad_settings",
        "upgrade_no_settings",
        "upgrade_then_preface",
        "upgrade_post_body",
    ] {
        let line = o.out[case]["http1_status_line"].as_str().unwrap_or("none");
        // Ignoring the upgrade (RFC 9113 §3.1 removed it; RFC 9110 §7.8 lets a server
        // ignore Upgrade) and answering in HTTP/1.1 is right; 101 would need h2 to follow.
        assert!(
            line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.1 101"),
            "{label}: {case}: {line}: {}",
            o.out[case]
        );
        did.push(format!("{case}: {line}"));
    }
    for case in [
        "preface_then_garbage",
        "preface_then_http1",
        "preface_twice",
    ] {
        let code = goaway_code(&o.out[case]);
        assert!(
            matches!(code, Some(1 | 6)),
            "{label}: {case}: expected GOAWAY PROTOCOL_ERROR or FRAME_SIZE_ERROR: {}",
            o.out[case]
        );
        assert_eq!(o.out[case]["server_closed"], true, "{label}: {case}");
        did.push(format!("{case}: {}", goaway_text(&o.out[case])));
    }
    s.verify(label, &o, &did.join(", "));
}

// ---------------------------------------------------------------------------------------------
// SIGTERM with silent clients

/// Issue 10, finding 2: before the stop closed every connection in time, this test failed:
/// exit after 4.03 s with a 2 s grace, no `connection_closed` for the TLS connection that never
/// sent its preface, and `connection_closed` as the last line.
///
/// SIGTERM with silent clients: one idle HTTP/2 connection, one TLS connection that completed
/// its handshake (ALPN h2) but never sent the preface, one bare TCP connection that sent
/// nothing. The process exits within shutdown grace (2 s) + 1 s, the journal has a
/// `connection_closed` for every `connection_opened`, and its last line is the `shutdown`
/// event. Default handshake (10 s) and idle (60 s) timeouts: only the shutdown may close these
/// connections. The idle HTTP/2 client reads but never answers the PING of the server's
/// graceful GOAWAY, the harsher case: its connection can only end by the grace-period cut-off.
#[test]
fn sigterm_with_silent_clients() {
    let Some(python) = python_with_h2("sigterm_with_silent_clients") else {
        return;
    };
    let grace_secs = 2;
    let h = Harness::start_with(
        &scenario(),
        &[
            "--no-control",
            "--shutdown-grace-secs",
            &grace_secs.to_string(),
        ],
    );
    let mut clients: Child = Command::new(&python)
        .arg(attack_script())
        .args([
            "silent-clients",
            "--port",
            &h.port("main").to_string(),
            "--tls",
            "--ca",
            h.ca().to_str().expect("utf-8"),
            "--sni",
            "a.test",
            "--hold",
            "30",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("attack.py starts");
    let mut stdout = BufReader::new(clients.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the silent clients are ready within 15 s");
    assert!(ready.contains("\"idle_answered\": true"), "{ready}");
    // All three connections are in the journal (and the TLS ones past their handshake).
    let events = h.journal_until(|e| {
        e.iter()
            .filter(|e| e["event"] == "connection_opened")
            .count()
            >= 3
            && e.iter().filter(|e| e["event"] == "tls_established").count() >= 2
    });
    let opened = events
        .iter()
        .filter(|e| e["event"] == "connection_opened")
        .count();
    assert_eq!(opened, 3, "{events:#?}");

    let started = Instant::now();
    let (code, stderr, journal) = h.stop();
    let took = started.elapsed();
    // Let the clients go.
    drop(clients.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = clients.kill();
    let _ = clients.wait();

    let problems = journal_problems(&journal);
    let last = journal.last().map(|e| e["event"].clone());
    let closes: Vec<String> = journal
        .iter()
        .filter(|e| e["event"] == "connection_closed")
        .map(|e| format!("{}: {}", e["connection"], e["reason"]))
        .collect();
    println!(
        "HOSTILE | SIGTERM with silent clients (grace {grace_secs} s) | exit code {code:?} after {:.2} s; closes: {closes:?}; last journal event {last:?}; problems {problems:?} | - | - | -",
        took.as_secs_f64()
    );
    assert_eq!(code, Some(0), "exit code; stderr:\n{stderr}");
    let limit = Duration::from_secs(grace_secs + 1);
    assert!(
        took <= limit,
        "SIGTERM took {took:?} to exit (limit: grace {grace_secs} s + 1 s); closes: {closes:?}"
    );
    assert!(
        problems.is_empty(),
        "journal after SIGTERM: {problems:?}\n{journal:#?}"
    );
    assert_eq!(
        last,
        Some(Value::from("shutdown")),
        "the journal's last line should be the shutdown event: {:#?}",
        &journal[journal.len().saturating_sub(4)..]
    );
}
