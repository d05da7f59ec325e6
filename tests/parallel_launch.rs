//! Launches that run at once in one folder, as parallel test suites start them (cargo test,
//! pytest-xdist): eight `misdirect serve` with default flags, or sharing one `--certs-dir`,
//! each present certificates that verify against the CA file its own readiness line names —
//! checked with a real TLS handshake after all eight are up, so that no later launch can have
//! replaced an earlier one's files unseen. Two given the same `--journal` or `--ready-file`
//! by mistake: the second is refused with a clear error, the first keeps its file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

const SCENARIO: &str = "coalescing-wrong-server.json";

fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(SCENARIO)
}

/// A `misdirect serve` started in `dir`; killed when dropped.
struct Launched {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Launched {
    fn start(dir: &Path, args: &[&str]) -> Launched {
        let mut child = Command::new(env!("CARGO_BIN_EXE_misdirect"))
            .arg("serve")
            .arg(scenario_path())
            .args(["--log", "warn"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("misdirect serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        Launched {
            child,
            stdout: rx,
            stderr: Some(stderr),
        }
    }

    /// The readiness line, waited for (bounded).
    fn ready(&mut self) -> Value {
        match self.stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => serde_json::from_str(&line).expect("readiness line is JSON"),
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("no readiness line within 30 s; stderr:\n{}", self.stderr());
            }
        }
    }

    /// Waits (bounded) for the process to exit by itself; its exit code and stderr.
    fn exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), self.stderr());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("misdirect serve did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Launches `n` servers at once (all spawned before any readiness line is read) and returns
/// them with their readiness lines.
fn launch_together(n: usize, dir: &Path, args: &[&str]) -> Vec<(Launched, Value)> {
    let mut launched: Vec<Launched> = (0..n).map(|_| Launched::start(dir, args)).collect();
    let ready: Vec<Value> = launched.iter_mut().map(Launched::ready).collect();
    launched.into_iter().zip(ready).collect()
}

fn port(ready: &Value) -> u16 {
    ready["listeners"][0]["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no port in {ready}"))
}

/// A TLS handshake to 127.0.0.1:`port` for `name`, trusting only the CA file `ca`, then one
/// HTTP/1.1 request; the response's status line.
fn fetch_verified(ca: &Path, port: u16, name: &str) -> Result<String, String> {
    let ca = CertificateDer::from_pem_file(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), server_name).map_err(|e| e.to_string())?;
    let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, socket);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("handshake or request: {e}"))?;
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    response
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(str::to_owned)
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

/// Every server answers a verified TLS connection for both names, trusting only the CA its
/// own readiness line names; the certificate files it names verify against that CA too.
fn assert_each_verifies_against_its_own_ca(servers: &[(Launched, Value)]) {
    let mut failures = Vec::new();
    for (i, (_, ready)) in servers.iter().enumerate() {
        let ca = PathBuf::from(ready["ca"].as_str().expect("ca"));
        for name in ["a.test", "b.test"] {
            match fetch_verified(&ca, port(ready), name) {
                Ok(status) if status.starts_with("HTTP/1.1 200") => {}
                Ok(status) => failures.push(format!("server {i} ({name}): {status}")),
                Err(err) => {
                    failures.push(format!("server {i} ({name}, CA {}): {err}", ca.display()))
                }
            }
        }
        // The leaf file it names is the one it serves: its SPKI file matches the line.
        let shared = &ready["certificates"]["shared"];
        let cert = PathBuf::from(shared["cert"].as_str().expect("cert path"));
        let spki = cert.with_extension("spki");
        if let Ok(text) = std::fs::read_to_string(&spki) {
            if text.trim() != shared["spki_sha256"].as_str().unwrap_or_default() {
                failures.push(format!(
                    "server {i}: {} is another server's",
                    spki.display()
                ));
            }
        } else {
            failures.push(format!("server {i}: {} missing", spki.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eight_launched_at_once_in_one_folder_with_default_flags_all_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = launch_together(8, dir.path(), &[]);
    let pids: std::collections::BTreeSet<u64> = servers
        .iter()
        .map(|(_, r)| r["pid"].as_u64().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 8);
    let cas: std::collections::BTreeSet<&str> = servers
        .iter()
        .map(|(_, r)| r["ca"].as_str().expect("ca"))
        .collect();
    assert_eq!(
        cas.len(),
        8,
        "each server names a CA file of its own: {cas:?}"
    );
    assert_each_verifies_against_its_own_ca(&servers);
    // One of them owns the default folder, as a lone server would.
    let top = std::fs::canonicalize(dir.path().join("certs/ca.pem")).expect("certs/ca.pem");
    assert!(
        servers.iter().any(
            |(_, r)| std::fs::canonicalize(r["ca"].as_str().unwrap_or_default())
                .is_ok_and(|p| p == top)
        ),
        "nobody names certs/ca.pem"
    );
}

#[test]
fn eight_launched_at_once_with_one_shared_certs_dir_all_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared-certs");
    let shared_arg = shared.to_string_lossy().into_owned();
    // Each in a folder of its own, so that only --certs-dir is shared.
    let folders: Vec<tempfile::TempDir> = (0..8)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut launched: Vec<Launched> = folders
        .iter()
        .map(|f| Launched::start(f.path(), &["--certs-dir", &shared_arg]))
        .collect();
    let ready: Vec<Value> = launched.iter_mut().map(Launched::ready).collect();
    let servers: Vec<(Launched, Value)> = launched.into_iter().zip(ready).collect();
    assert_each_verifies_against_its_own_ca(&servers);
    for (_, ready) in &servers {
        let ca = PathBuf::from(ready["ca"].as_str().expect("ca"));
        assert!(ca.starts_with(&shared), "{}", ca.display());
    }
}

#[test]
fn a_second_server_given_the_same_journal_is_refused_and_the_first_keeps_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal.ndjson");
    let journal_arg = journal.to_string_lossy().into_owned();
    let args = ["--journal", &journal_arg, "--no-control"];
    let mut first = Launched::start(dir.path(), &args);
    let ready = first.ready();
    let pid = ready["pid"].as_u64().expect("pid");
    // The file trails the server by its flush delay (milliseconds): wait, bounded, for the
    // first lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut before = String::new();
    while before.is_empty() && std::time::Instant::now() < deadline {
        before = std::fs::read_to_string(&journal).expect("journal");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!before.is_empty());

    let (code, stderr) = Launched::start(dir.path(), &args).exit();
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--journal")
            && stderr.contains(&journal_arg)
            && stderr.contains("another misdirect")
            && stderr.contains("is writing this journal"),
        "{stderr}"
    );
    #[cfg(target_os = "linux")]
    assert!(stderr.contains(&format!("(pid {pid}?)")), "{stderr}");
    // The first server's journal is as it was, and it still answers.
    assert_eq!(std::fs::read_to_string(&journal).expect("journal"), before);
    let ca = PathBuf::from(ready["ca"].as_str().expect("ca"));
    fetch_verified(&ca, port(&ready), "a.test").expect("the first server still serves");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut after = String::new();
    while after.len() <= before.len() && std::time::Instant::now() < deadline {
        after = std::fs::read_to_string(&journal).expect("journal");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(after.starts_with(&before) && after.len() > before.len());
}

#[test]
fn a_second_server_given_the_same_ready_file_is_refused_and_the_first_keeps_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ready_file = dir.path().join("ready.json");
    let ready_arg = ready_file.to_string_lossy().into_owned();
    let args = ["--ready-file", &ready_arg, "--no-control"];
    let mut first = Launched::start(dir.path(), &args);
    let ready = first.ready();
    let pid = ready["pid"].as_u64().expect("pid");

    let (code, stderr) = Launched::start(dir.path(), &args).exit();
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--ready-file")
            && stderr.contains(&ready_arg)
            && stderr.contains("another misdirect"),
        "{stderr}"
    );
    #[cfg(target_os = "linux")]
    assert!(stderr.contains(&format!("(pid {pid}?)")), "{stderr}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).expect("ready file"))
            .expect("JSON");
    assert_eq!(written["pid"].as_u64(), Some(pid));

    // Once the first is gone its ready file is stale, and the next server takes it.
    drop(first);
    let mut third = Launched::start(dir.path(), &args);
    let third_ready = third.ready();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).expect("ready file"))
            .expect("JSON");
    assert_eq!(written["pid"], third_ready["pid"]);
}
