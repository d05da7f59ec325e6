//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Whether an external tool is there to run. When it is not, a plain `cargo test` skips the
/// test with a message naming the package to install; `scripts/test` sets
/// `MISDIRECT_REQUIRE_TOOLS=1`, which turns the skip into a failure so that nothing it runs
/// is silently skipped.
pub fn have_tool(test: &str, program: &str, package: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{test}: `{program}` is required (MISDIRECT_REQUIRE_TOOLS=1); install {package}");
    }
    eprintln!("SKIP {test}: `{program}` not found; install {package}");
    false
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `misdirect serve` process started the way a test suite in any language starts it:
/// scenario file in, port 0, readiness line read from stdout.
pub struct Harness {
    child: Child,
    /// The readiness JSON.
    pub ready: Value,
    /// Temporary folder holding the scenario, certificates and journal.
    pub dir: tempfile::TempDir,
    /// The NDJSON journal file.
    pub journal_path: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Harness {
    /// Starts the server on a scenario given as JSON text.
    pub fn start(scenario: &str) -> Harness {
        Harness::start_with(scenario, &[])
    }

    /// Starts the server with extra `serve` arguments.
    pub fn start_with(scenario: &str, extra: &[&str]) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("scenario.json");
        std::fs::write(&file, scenario).expect("write scenario");
        let journal_path = dir.path().join("journal.ndjson");
        let mut child = Command::new(env!("CARGO_BIN_EXE_misdirect"))
            .arg("serve")
            .arg(&file)
            .arg("--certs-dir")
            .arg(dir.path().join("certs"))
            .arg("--journal")
            .arg(&journal_path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("misdirect serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let err = stderr.join().unwrap_or_default();
                panic!("no readiness line within 20 s; stderr:\n{err}");
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("readiness line is JSON");
        Harness {
            child,
            ready,
            dir,
            journal_path,
            stderr: Some(stderr),
        }
    }

    /// The real port of a listener.
    pub fn port(&self, listener: &str) -> u16 {
        self.ready["listeners"]
            .as_array()
            .expect("listeners")
            .iter()
            .find(|l| l["name"] == listener)
            .and_then(|l| l["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("no listener {listener:?} in {}", self.ready))
    }

    /// The CA file to trust.
    pub fn ca(&self) -> PathBuf {
        PathBuf::from(self.ready["ca"].as_str().expect("ca path"))
    }

    /// The journal as written so far.
    pub fn journal(&self) -> Vec<Value> {
        read_journal(&self.journal_path)
    }

    /// The journal as written so far, as the crate's own event types.
    pub fn events(&self) -> Vec<misdirect::journal::Event> {
        let text = whole_lines(std::fs::read_to_string(&self.journal_path).unwrap_or_default());
        misdirect::journal::read_ndjson(&text).expect("every journal line is a journal::Event")
    }

    /// Waits (up to 5 s) until the journal's typed events satisfy `done`, then returns them.
    pub fn events_until(
        &self,
        done: impl Fn(&[misdirect::journal::Event]) -> bool,
    ) -> Vec<misdirect::journal::Event> {
        poll_until(|| self.events(), |events| done(events))
    }

    /// Waits (up to 5 s) until the journal satisfies `done`, then returns it.
    pub fn journal_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        poll_until(|| self.journal(), |events| done(events))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to 15 s) for the exit; returns the exit code, stderr and
    /// the final journal.
    pub fn stop(mut self) -> (Option<i32>, String, Vec<Value>) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("misdirect did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status.code(), stderr, self.journal())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `fetch()` every 20 ms until `done` holds of it or 5 s have passed; returns the last.
fn poll_until<T>(fetch: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = fetch();
        if done(&value) || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal by name (`TERM`, `INT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Reads an NDJSON journal (each line must also be a `misdirect::journal::Event`: what the
/// tests read untyped is what the crate's types say).
pub fn read_journal(path: &Path) -> Vec<Value> {
    let text = whole_lines(std::fs::read_to_string(path).unwrap_or_default());
    if let Err(err) = misdirect::journal::read_ndjson(&text) {
        panic!("{}: not the crate's journal events: {err}", path.display());
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

/// The text up to its last newline: a journal file read while the server writes it may end
/// in the middle of a line (the server writes many lines with one `write`).
fn whole_lines(mut text: String) -> String {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text.truncate(end);
    text
}

/// The `request` events of a journal, typed.
pub fn typed_requests(
    events: &[misdirect::journal::Event],
) -> Vec<&misdirect::journal::RequestEvent> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            misdirect::journal::EventKind::Request(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

/// The `request` events of a journal.
pub fn requests(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event"] == "request").collect()
}

/// Events of one kind.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Runs a client command; returns (exit code, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether this Python imports h2 and httpx.
pub fn has_h2(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import h2, httpx"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python interpreter with `h2` and `httpx`: `$MISDIRECT_PYTHON`, else `.venv/bin/python`
/// (which `scripts/test` creates). `None` (after saying so) when neither has them.
pub fn python_with_h2(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MISDIRECT_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")),
    ];
    for python in candidates.into_iter().flatten() {
        if has_h2(&python) {
            return Some(python);
        }
    }
    if std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{test}: a Python with h2 and httpx is required; run scripts/test (it makes .venv)");
    }
    eprintln!(
        "SKIP {test}: no Python with h2/httpx; run `python3 -m venv .venv && .venv/bin/pip install h2 httpx`"
    );
    None
}

/// A command that runs `program args…` inside a new network namespace with only loopback
/// up, so that a browser's own background traffic cannot leave the machine. Needs root (as
/// CI has); `None` (after saying so) where namespaces cannot be made.
pub fn in_loopback_namespace(test: &str, program: &str, args: &[&str]) -> Option<Command> {
    let probe = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !probe {
        if std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!(
                "{test}: cannot make a loopback-only network namespace (`unshare -n` needs root and util-linux, `ip` needs iproute2)"
            );
        }
        eprintln!(
            "SKIP {test}: cannot make a loopback-only network namespace (run as root with util-linux and iproute2)"
        );
        return None;
    }
    let mut command = Command::new("unshare");
    command
        .args([
            "-n",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
            "sh",
            program,
        ])
        .args(args);
    Some(command)
}

/// Flags that keep headless Chromium quiet and self-contained.
pub fn chromium_flags(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}
