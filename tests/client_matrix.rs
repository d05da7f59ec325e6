//! Every bundled scenario × every client adapter in `clients/`, through `misdirect scorecard`,
//! against the card this repository keeps: `clients/card.json`, measured by
//! `scripts/scorecard-readme` and the source of the README's client card (which
//! `tests/readme.rs` keeps equal to it). A cell whose status, failing expectations or
//! expectations not exercised differ from the card fails this test, naming the cell: a
//! client changed (a browser update), or misdirect did.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Says that a test cannot run here: a failure under `MISDIRECT_REQUIRE_TOOLS=1`, a SKIP
/// line otherwise.
fn missing(test: &str, what: &str) -> Option<bool> {
    assert!(
        std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
        "{test}: {what}"
    );
    eprintln!("SKIP {test}: {what}");
    None
}

/// What an adapter needs here, by its program or script: `None` when something is missing
/// (said, and under `MISDIRECT_REQUIRE_TOOLS=1` a failure), `Some(browser)` otherwise.
fn ready(test: &str, command: &[String]) -> Option<bool> {
    let script = command
        .iter()
        .find(|w| w.starts_with("clients/") || w.starts_with("target/"))
        .map(String::as_str)
        .unwrap_or_default();
    match script {
        "clients/curl.py" => {
            common::have_tool(test, "python3", "the Debian package `python3`")
                && common::have_tool(test, "curl", "the Debian package `curl`")
        }
        .then_some(false),
        "clients/python_h2.py" | "clients/httpx_h2.py" => {
            // The card's command names the repository's venv, which scripts/test makes.
            assert_eq!(
                command.first().map(String::as_str),
                Some(".venv/bin/python"),
                "{test}: clients/card.json runs {script} with .venv/bin/python"
            );
            if common::has_h2(&root().join(".venv/bin/python")) {
                Some(false)
            } else {
                missing(
                    test,
                    "no .venv/bin/python with h2 and httpx; run scripts/test (it makes .venv)",
                )
            }
        }
        "clients/node_fetch.mjs" | "clients/node_http2.mjs" => {
            common::have_tool(test, "node", "Node.js 20 (Debian `nodejs`)").then_some(false)
        }
        "clients/java_httpclient.sh" => {
            common::have_tool(test, "java", "Java 17 (Debian `openjdk-17-jdk-headless`)")
                .then_some(false)
        }
        "clients/okhttp.sh" => {
            if !common::have_tool(test, "java", "Java 17 (Debian `openjdk-17-jdk-headless`)") {
                return None;
            }
            if !Path::new("/usr/share/java/okhttp.jar").is_file() {
                return missing(test, "install the Debian package `libokhttp-java`");
            }
            Some(false)
        }
        "target/debug/examples/reqwest_adapter" => {
            // `cargo test` builds the examples before it runs any test.
            if root().join(script).is_file() {
                Some(false)
            } else {
                missing(
                    test,
                    "no target/debug/examples/reqwest_adapter: cargo build --example reqwest_adapter",
                )
            }
        }
        "clients/chromium.sh" => {
            common::have_tool(test, "chromium", "the Debian package `chromium`").then_some(true)
        }
        "clients/firefox.sh" => {
            (common::have_tool(test, "firefox-esr", "the Debian package `firefox-esr`")
                && common::have_tool(test, "certutil", "the Debian package `libnss3-tools`"))
            .then_some(true)
        }
        other => panic!(
            "{test}: clients/card.json runs an adapter this test does not know ({other:?} in {command:?}); say here what it needs"
        ),
    }
}

/// The version a program says it is, for the failure message.
fn version_of(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn every_adapter_earns_the_card_the_repository_keeps() {
    let test = "client_matrix";
    let text =
        std::fs::read_to_string(root().join("clients/card.json")).expect("clients/card.json");
    let card: Value = serde_json::from_str(&text).expect("clients/card.json is JSON");
    let scenarios = card["scenarios"].as_array().expect("scenarios").len();
    let bundled = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert_eq!(
        scenarios, bundled,
        "clients/card.json must have a row for every bundled scenario: run scripts/scorecard-readme"
    );

    // Browsers need a loopback-only namespace: they call home. Everything else runs in it too
    // when there is one (loopback is all any cell uses).
    let namespace =
        common::in_loopback_namespace(&format!("{test}_browsers"), "true", &[]).is_some();
    // Kept after the test (each run empties the cells it makes): what to look at on failure.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-matrix");
    let mut args: Vec<String> = [
        "scorecard",
        "--expect",
        "clients/card.json",
        "--format",
        "table",
        "--timeout-secs",
        "120",
        "--jobs",
        "2",
        "--out",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(out.to_string_lossy().into_owned());
    let mut scored = Vec::new();
    for client in card["clients"].as_array().expect("clients") {
        let name = client["name"].as_str().expect("client name");
        let command: Vec<String> = client["command"]
            .as_array()
            .expect("client command")
            .iter()
            .map(|w| w.as_str().expect("a word").to_owned())
            .collect();
        let Some(browser) = ready(&format!("{test}_{name}"), &command) else {
            continue;
        };
        if browser && !namespace {
            eprintln!(
                "SKIP {test}_{name}: a browser runs only in a loopback-only network namespace"
            );
            continue;
        }
        // `--client NAME=CMD` splits CMD into words as a shell would: the card's words are
        // plain, so joining them with spaces gives them back.
        assert!(
            command.iter().all(|w| !w.is_empty()
                && !w.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c))),
            "{name}: a command word needs quoting: {command:?}"
        );
        args.push("--client".to_owned());
        args.push(format!("{name}={}", command.join(" ")));
        if let Some(jobs) = client["jobs"].as_u64() {
            args.push("--client-jobs".to_owned());
            args.push(format!("{name}={jobs}"));
        }
        scored.push(name.to_owned());
    }
    if scored.is_empty() {
        eprintln!("SKIP {test}: no adapter can run here");
        return;
    }

    let exe = env!("CARGO_BIN_EXE_misdirect");
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = if namespace {
        common::in_loopback_namespace(test, exe, &arg_refs).expect("the namespace, as probed")
    } else {
        let mut c = Command::new(exe);
        c.args(&args);
        c
    };
    let output = command
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("misdirect scorecard starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let cells = scored.len() * scenarios;
    let as_expected = format!("as expected: {cells} cell(s) match the baseline clients/card.json");
    assert!(
        output.status.code() == Some(0) && stdout.contains(&as_expected),
        "exit {:?}: these cells are not as clients/card.json has them (each cell's report, picture, journal and the adapter's output are under {}; chromium: {}; firefox: {}).\n\
         If a client changed, measure again with scripts/scorecard-readme.\n\nstdout:\n{stdout}\nstderr (the last 4000 bytes):\n{}",
        output.status.code(),
        out.display(),
        version_of("chromium"),
        version_of("firefox-esr"),
        tail(&stderr, 4000)
    );
}

/// The last `max` bytes of a text, or a few more to start on a character.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    &text[start..]
}
