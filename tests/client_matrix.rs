//! Every bundled scenario × every client adapter in `clients/`, through `misdirect run`.
//! Each cell is the verdict a client earns: which expectations it fails (or leaves not
//! exercised). These cells are the facts the README's client table reports.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// What a cell expects: the labels of the expectations that do not pass; those left not
/// exercised end in ` [not exercised]`. Empty: the verdict passes.
type Cell = (&'static str, &'static [&'static str]);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one scenario with one adapter; returns (exit code, non-passing labels).
fn verdict(
    scenario: &str,
    command: &[String],
    wrapper: Option<&dyn Fn(Command) -> Command>,
) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let mut run = Command::new(env!("CARGO_BIN_EXE_misdirect"));
    run.arg("run")
        .arg(root().join("scenarios").join(format!("{scenario}.json")))
        .args(["--log", "warn", "--timeout-secs", "120", "--certs-dir"])
        .arg(dir.path().join("certs"))
        .arg("--report")
        .arg(&report)
        .arg("--")
        .args(command)
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let mut run = match wrapper {
        Some(wrap) => wrap(run),
        None => run,
    };
    let output = run.output().expect("misdirect run starts");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "{scenario}: no report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report: Value = serde_json::from_str(&text).expect("report JSON");
    let failing = report["verdict"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| {
            let label = c["expectation"].as_str().unwrap_or_default().to_owned();
            if c["status"] == "not_exercised" {
                format!("{label} [not exercised]")
            } else {
                label
            }
        })
        .collect();
    (output.status.code(), failing)
}

/// Checks every cell of one adapter's row; reports all mismatches at once.
fn check_row(
    adapter: &str,
    command: &[String],
    cells: &[Cell],
    wrapper: Option<&dyn Fn(Command) -> Command>,
) {
    let mut scenarios: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    scenarios.sort();
    let named: Vec<&str> = cells.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        named, scenarios,
        "{adapter}: the row must have one cell per bundled scenario, in order"
    );
    let mut mismatches = Vec::new();
    for (scenario, expected) in cells {
        let (code, failing) = verdict(scenario, command, wrapper);
        let want_code = if expected.is_empty() {
            Some(0)
        } else {
            Some(1)
        };
        if failing != *expected || code != want_code {
            mismatches.push(format!("{adapter} × {scenario}: exit {code:?}, not passing {failing:?}; expected {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

/// A row where every scenario passes but those named in `exceptions`.
fn passing_except(exceptions: &[Cell]) -> Vec<Cell> {
    const SCENARIOS: &[&str] = &[
        "always-421",
        "browser-coalescing",
        "cdn-misrouting",
        "certificate-invalid",
        "certificate-not-covering",
        "coalescing-wrong-server",
        "first-attempt-421",
        "goaway-retry",
        "origin-lists-b",
        "origin-omits-b",
        "refused-stream",
        "retry-post-body",
        "same-cert-different-ip",
        "vhost-misconfigured",
    ];
    SCENARIOS
        .iter()
        .map(|s| {
            exceptions
                .iter()
                .find(|(name, _)| name == s)
                .copied()
                .unwrap_or((*s, &[][..]))
        })
        .collect()
}

fn python(args: &[&str]) -> Option<Vec<String>> {
    let python = common::python_with_h2("client_matrix_python")?;
    let mut command = vec![
        python.to_string_lossy().into_owned(),
        root()
            .join("clients/python_h2.py")
            .to_string_lossy()
            .into_owned(),
    ];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    Some(command)
}

/// A client that never coalesces: the same-site names go to separate connections.
const NEVER_COALESCES: &[&str] = &[
    "coalesced (static.site.test)",
    "retried_on_new_connection (static.site.test) [not exercised]",
    "no_retry_on_same_connection [not exercised]",
    "stopped_coalescing (static.site.test) [not exercised]",
];

/// A client that never coalesces `b.test` onto `a.test`: nothing is misdirected.
const COALESCING_NOT_EXERCISED: &[&str] = &[
    "retried_on_new_connection (b.test) [not exercised]",
    "no_retry_on_same_connection [not exercised]",
    "stopped_coalescing (b.test) [not exercised]",
];

/// A client that ignores ORIGIN frames but coalesces by certificate and address: it sends
/// `b.site.test` on `a.site.test`'s connection although the ORIGIN frame there leaves it out.
const IGNORES_ORIGIN_OMITTING: &[&str] = &["not_coalesced (b.site.test)", "respected_origin"];

/// A client that does not coalesce on an ORIGIN frame's word alone: `b.site.test`, on another
/// address, gets a connection of its own although `a.site.test`'s ORIGIN frame lists it.
const IGNORES_ORIGIN_LISTING: &[&str] = &["coalesced (b.site.test)"];

/// An HTTP/1.1-only client never sees an ORIGIN frame (they are HTTP/2 frames).
const HTTP1_ORIGIN_OMITTING: &[&str] = &["respected_origin [not exercised]"];
const HTTP1_ORIGIN_LISTING: &[&str] = &[
    "coalesced (b.site.test)",
    "respected_origin [not exercised]",
];

#[test]
fn curl() {
    if !common::have_tool("client_matrix_curl", "curl", "the Debian package `curl`") {
        return;
    }
    let command = vec![
        "python3".to_owned(),
        root()
            .join("clients/curl.py")
            .to_string_lossy()
            .into_owned(),
    ];
    check_row(
        "curl",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            ("browser-coalescing", NEVER_COALESCES),
            ("cdn-misrouting", &["retried_on_new_connection"]),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            ("coalescing-wrong-server", COALESCING_NOT_EXERCISED),
            (
                "first-attempt-421",
                &["retried_on_new_connection", "requests = 2"],
            ),
            ("goaway-retry", &["retried_on_new_connection after goaway"]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", &[]),
            ("refused-stream", &[]),
            (
                "retry-post-body",
                &[
                    "retried_on_new_connection",
                    "retry_same_body [not exercised]",
                ],
            ),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &["retried_on_new_connection"]),
        ],
        None,
    );
}

/// The reference client: coalesces like a browser and handles every signal correctly, but
/// knows nothing of ORIGIN frames (it coalesces by certificate and address alone).
#[test]
fn python_h2_correct() {
    let Some(command) = python(&[]) else { return };
    let cells: Vec<Cell> = passing_except(&[
        ("origin-lists-b", IGNORES_ORIGIN_LISTING),
        ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
    ]);
    check_row("python-h2", &command, &cells, None);
}

#[test]
fn python_h2_retrying_on_the_same_connection() {
    let Some(command) = python(&["--on-421", "retry-same"]) else {
        return;
    };
    check_row(
        "python-h2 --on-421 retry-same",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            (
                "browser-coalescing",
                &[
                    "retried_on_new_connection (static.site.test)",
                    "no_retry_on_same_connection",
                    "stopped_coalescing (static.site.test)",
                ],
            ),
            (
                "cdn-misrouting",
                &["retried_on_new_connection", "no_retry_on_same_connection"],
            ),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            (
                "coalescing-wrong-server",
                &[
                    "retried_on_new_connection (b.test)",
                    "no_retry_on_same_connection",
                    "stopped_coalescing (b.test)",
                ],
            ),
            ("first-attempt-421", &["retried_on_new_connection"]),
            ("goaway-retry", &[]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
            ("refused-stream", &[]),
            ("retry-post-body", &["retried_on_new_connection"]),
            ("same-cert-different-ip", &[]),
            (
                "vhost-misconfigured",
                &["retried_on_new_connection", "no_retry_on_same_connection"],
            ),
        ],
        None,
    );
}

#[test]
fn python_h2_giving_up_on_421() {
    let Some(command) = python(&["--on-421", "give-up"]) else {
        return;
    };
    check_row(
        "python-h2 --on-421 give-up",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            (
                "browser-coalescing",
                &[
                    "retried_on_new_connection (static.site.test)",
                    "stopped_coalescing (static.site.test)",
                ],
            ),
            ("cdn-misrouting", &["retried_on_new_connection"]),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            (
                "coalescing-wrong-server",
                &[
                    "retried_on_new_connection (b.test)",
                    "stopped_coalescing (b.test)",
                ],
            ),
            (
                "first-attempt-421",
                &["retried_on_new_connection", "requests = 2"],
            ),
            ("goaway-retry", &[]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
            ("refused-stream", &[]),
            (
                "retry-post-body",
                &[
                    "retried_on_new_connection",
                    "retry_same_body [not exercised]",
                ],
            ),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &["retried_on_new_connection"]),
        ],
        None,
    );
}

#[test]
fn python_h2_coalescing_across_addresses() {
    let Some(command) = python(&["--coalesce-any-address"]) else {
        return;
    };
    // It passes `origin-lists-b` for the wrong reason: it coalesces whatever the address,
    // not because of the ORIGIN frame.
    let cells: Vec<Cell> = passing_except(&[
        ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
        (
            "same-cert-different-ip",
            &["not_coalesced (cdn.site.test)", "requests = 2"],
        ),
    ]);
    check_row("python-h2 --coalesce-any-address", &command, &cells, None);
}

/// Node 20's built-in fetch (undici): HTTP/1.1, never coalesces, retries a 421 once on any
/// free connection (the one that answered is still busy, so it happens to be another).
#[test]
fn node_fetch() {
    if !common::have_tool(
        "client_matrix_node_fetch",
        "node",
        "Node.js 20 (Debian `nodejs`)",
    ) {
        return;
    }
    let command = vec![
        "node".to_owned(),
        root()
            .join("clients/node_fetch.mjs")
            .to_string_lossy()
            .into_owned(),
    ];
    check_row(
        "node fetch",
        &command,
        &[
            ("always-421", &[]),
            ("browser-coalescing", NEVER_COALESCES),
            ("cdn-misrouting", &[]),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            ("coalescing-wrong-server", COALESCING_NOT_EXERCISED),
            ("first-attempt-421", &[]),
            ("goaway-retry", &["retried_on_new_connection after goaway"]),
            ("origin-lists-b", HTTP1_ORIGIN_LISTING),
            ("origin-omits-b", HTTP1_ORIGIN_OMITTING),
            (
                "refused-stream",
                &["retried after refused_stream [not exercised]"],
            ),
            ("retry-post-body", &[]),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &[]),
        ],
        None,
    );
}

/// The same fetch with one connection per origin (undici's `connections: 1`): the retry of
/// a 421 goes back on the connection that answered it, and the verdict says so.
#[test]
fn node_fetch_one_connection() {
    if !common::have_tool(
        "client_matrix_node_fetch_one",
        "node",
        "Node.js 20 (Debian `nodejs`)",
    ) {
        return;
    }
    let command = vec![
        "node".to_owned(),
        root()
            .join("clients/node_fetch.mjs")
            .to_string_lossy()
            .into_owned(),
        "--connections".to_owned(),
        "1".to_owned(),
    ];
    check_row(
        "node fetch --connections 1",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            ("browser-coalescing", NEVER_COALESCES),
            (
                "cdn-misrouting",
                &["retried_on_new_connection", "no_retry_on_same_connection"],
            ),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            ("coalescing-wrong-server", COALESCING_NOT_EXERCISED),
            ("first-attempt-421", &["retried_on_new_connection"]),
            ("goaway-retry", &["retried_on_new_connection after goaway"]),
            ("origin-lists-b", HTTP1_ORIGIN_LISTING),
            ("origin-omits-b", HTTP1_ORIGIN_OMITTING),
            (
                "refused-stream",
                &["retried after refused_stream [not exercised]"],
            ),
            ("retry-post-body", &["retried_on_new_connection"]),
            ("same-cert-different-ip", &[]),
            (
                "vhost-misconfigured",
                &["retried_on_new_connection", "no_retry_on_same_connection"],
            ),
        ],
        None,
    );
}

/// `node:http2`: one session per origin, no coalescing, returns a 421 without retrying.
#[test]
fn node_http2() {
    if !common::have_tool(
        "client_matrix_node_http2",
        "node",
        "Node.js 20 (Debian `nodejs`)",
    ) {
        return;
    }
    let command = vec![
        "node".to_owned(),
        root()
            .join("clients/node_http2.mjs")
            .to_string_lossy()
            .into_owned(),
    ];
    check_row(
        "node:http2",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            ("browser-coalescing", NEVER_COALESCES),
            ("cdn-misrouting", &["retried_on_new_connection"]),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            ("coalescing-wrong-server", COALESCING_NOT_EXERCISED),
            (
                "first-attempt-421",
                &["retried_on_new_connection", "requests = 2"],
            ),
            ("goaway-retry", &["retried_on_new_connection after goaway"]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", &[]),
            ("refused-stream", &["retried after refused_stream"]),
            (
                "retry-post-body",
                &[
                    "retried_on_new_connection",
                    "retry_same_body [not exercised]",
                ],
            ),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &["retried_on_new_connection"]),
        ],
        None,
    );
}

/// OkHttp 3.13 (Debian `libokhttp-java`): coalesces, never retries a 421, retries
/// REFUSED_STREAM on the same connection.
#[test]
fn okhttp() {
    if !common::have_tool(
        "client_matrix_okhttp",
        "java",
        "Java 17 (Debian `openjdk-17-jre-headless`)",
    ) {
        return;
    }
    if !Path::new("/usr/share/java/okhttp.jar").is_file() {
        assert!(
            std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
            "client_matrix_okhttp: install the Debian package `libokhttp-java`"
        );
        eprintln!("SKIP client_matrix_okhttp: install the Debian package `libokhttp-java`");
        return;
    }
    let command = vec![
        root()
            .join("clients/okhttp.sh")
            .to_string_lossy()
            .into_owned(),
    ];
    check_row(
        "okhttp",
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            (
                "browser-coalescing",
                &[
                    "retried_on_new_connection (static.site.test)",
                    "stopped_coalescing (static.site.test)",
                ],
            ),
            ("cdn-misrouting", &["retried_on_new_connection"]),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            (
                "coalescing-wrong-server",
                &[
                    "retried_on_new_connection (b.test)",
                    "stopped_coalescing (b.test)",
                ],
            ),
            (
                "first-attempt-421",
                &["retried_on_new_connection", "requests = 2"],
            ),
            ("goaway-retry", &["retried_on_new_connection after goaway"]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
            ("refused-stream", &[]),
            (
                "retry-post-body",
                &[
                    "retried_on_new_connection",
                    "retry_same_body [not exercised]",
                ],
            ),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &["retried_on_new_connection"]),
        ],
        None,
    );
}

/// Runs `misdirect run` (and so the browser) inside a new network namespace where only
/// loopback is up: browsers call home, and nothing may leave the machine.
fn in_namespace(command: Command) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-n", "sh", "-c", r#"ip link set lo up && exec "$@""#, "sh"])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

fn browser_ready(test: &str, program: &str, package: &str) -> bool {
    common::have_tool(test, program, package)
        && common::in_loopback_namespace(test, "true", &[]).is_some()
}

/// Browsers are heavy for the 2-core machines: one at a time.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn version_of(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Chromium: coalesces same-site names and retries a coalesced 421 on a new connection, but
/// resends a 421 from a connection whose SNI was the right name on that same connection;
/// ignores ORIGIN frames.
#[test]
fn chromium() {
    if !browser_ready(
        "client_matrix_chromium",
        "chromium",
        "the Debian package `chromium`",
    ) {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let command = vec![
        root()
            .join("clients/chromium.sh")
            .to_string_lossy()
            .into_owned(),
    ];
    let name = format!(
        "chromium ({}; the README table was measured on 156.0.8078.114)",
        version_of("chromium")
    );
    check_row(
        &name,
        &command,
        &[
            ("always-421", &["retried_on_new_connection"]),
            ("browser-coalescing", &[]),
            (
                "cdn-misrouting",
                &["retried_on_new_connection", "no_retry_on_same_connection"],
            ),
            ("certificate-invalid", &[]),
            ("certificate-not-covering", &[]),
            ("coalescing-wrong-server", COALESCING_NOT_EXERCISED),
            ("first-attempt-421", &["retried_on_new_connection"]),
            ("goaway-retry", &[]),
            ("origin-lists-b", IGNORES_ORIGIN_LISTING),
            ("origin-omits-b", IGNORES_ORIGIN_OMITTING),
            ("refused-stream", &[]),
            ("retry-post-body", &["retried_on_new_connection"]),
            ("same-cert-different-ip", &[]),
            ("vhost-misconfigured", &[]),
        ],
        Some(&in_namespace),
    );
}

/// Firefox ESR: coalesces, retries every 421 on a new connection, and honours ORIGIN frames
/// (RFC 8336) both ways: it coalesces a listed name on another address and refuses an
/// unlisted one on the same address.
#[test]
fn firefox() {
    if !browser_ready(
        "client_matrix_firefox",
        "firefox-esr",
        "the Debian packages `firefox-esr libnss3-tools`",
    ) {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let command = vec![
        root()
            .join("clients/firefox.sh")
            .to_string_lossy()
            .into_owned(),
    ];
    let cells: Vec<Cell> = passing_except(&[]);
    let name = format!(
        "firefox ({}; the README table was measured on 153.8.0esr)",
        version_of("firefox-esr")
    );
    check_row(&name, &command, &cells, Some(&in_namespace));
}
