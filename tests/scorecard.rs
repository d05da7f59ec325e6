//! `misdirect scorecard`: real adapters on the bundled library (or a few of its scenarios),
//! the card's statuses, JUnit XML, baselines, levels, several clients, and errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scenario(id: &str) -> String {
    root()
        .join("scenarios")
        .join(format!("{id}.json"))
        .to_string_lossy()
        .into_owned()
}

fn adapter(name: &str) -> String {
    root()
        .join("clients")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs `misdirect scorecard ARGS` in `dir`; returns (exit code, stdout, stderr).
fn scorecard(dir: &Path, args: &[String]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("scorecard")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("misdirect scorecard starts");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn read_card(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("card.json is JSON")
}

/// scenario id → status, for one client.
fn statuses(card: &Value, client: &str) -> BTreeMap<String, String> {
    card["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter(|c| c["client"] == client)
        .map(|c| {
            (
                c["scenario"].as_str().expect("scenario").to_owned(),
                c["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn cell<'a>(card: &'a Value, client: &str, scenario: &str) -> &'a Value {
    card["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["client"] == client && c["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no cell {client} × {scenario}"))
}

fn failing(cell: &Value) -> BTreeSet<String> {
    cell["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["expectation"].as_str().expect("label").to_owned())
        .collect()
}

/// Validates a JUnit file against the Jenkins xunit `junit-10.xsd` (the schema GitLab, Jenkins,
/// Azure Pipelines and CircleCI read), with `tests/clients/validate_junit.py` in the test
/// venv; `scripts/test` fetches the schema. Skipped (unless MISDIRECT_REQUIRE_TOOLS=1) when
/// the schema or lxml is missing.
fn validate_against_junit_schema(xml: &std::path::Path) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/clients/validate_junit.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(xml)
        .output();
    let required = std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    match out {
        Ok(out) if out.status.code() == Some(0) => {}
        Ok(out) if out.status.code() == Some(3) && !required => eprintln!(
            "scorecard_junit: schema validation skipped (run scripts/test to fetch junit-10.xsd and lxml): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(out) => panic!(
            "the JUnit output does not validate against junit-10.xsd:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) if !required => {
            eprintln!(
                "scorecard_junit: schema validation skipped ({}: {err})",
                python.display()
            )
        }
        Err(err) => panic!("{}: {err} (run scripts/test)", python.display()),
    }
}

fn have_curl(test: &str) -> bool {
    common::have_tool(test, "python3", "the Debian package `python3`")
        && common::have_tool(test, "curl", "the Debian package `curl`")
}

fn curl_command() -> Vec<String> {
    vec!["python3".to_owned(), adapter("curl.py")]
}

fn expected_row(row: &[(&str, &str)]) -> BTreeMap<String, String> {
    row.iter()
        .map(|(s, v)| ((*s).to_owned(), (*v).to_owned()))
        .collect()
}

/// What a client earns on each bundled scenario, as the card the repository keeps has it
/// (`clients/card.json`, which `tests/client_matrix.rs` keeps true).
fn kept_row(client: &str) -> BTreeMap<String, String> {
    let row = statuses(&read_card(&root().join("clients/card.json")), client);
    assert_eq!(row.len(), 14, "clients/card.json has a {client} row");
    row
}

#[test]
fn curl_on_the_bundled_library_fails_where_curl_does_not_retry() {
    if !have_curl("scorecard_curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = strings(&["--jobs", "2", "--out", "out", "--"]);
    args.extend(curl_command());
    let (code, stdout, stderr) = scorecard(dir.path(), &args);
    assert_eq!(
        code,
        Some(1),
        "curl does not retry a 421\n{stdout}\n{stderr}"
    );

    let card = read_card(&dir.path().join("out/card.json"));
    assert_eq!(card["clients"][0]["name"], "curl", "named after its script");
    assert_eq!(card["level"], "robust");
    assert_eq!(statuses(&card, "curl"), kept_row("curl"), "{stdout}");
    // curl never coalesces: the coalescing scenarios' premise is not met.
    assert_eq!(
        statuses(&card, "curl")["browser-coalescing"],
        "not_applicable"
    );
    let scenarios = card["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 14);
    let first = scenarios
        .iter()
        .find(|s| s["id"] == "first-attempt-421")
        .expect("first-attempt-421");
    assert_eq!(first["cause"], "retry_hygiene");
    assert!(
        first["rfc"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("RFC "))
    );

    // The reasons: curl never retries the 421, and the coalescing scenario did not apply.
    let first_attempt = cell(&card, "curl", "first-attempt-421");
    assert_eq!(
        failing(first_attempt),
        BTreeSet::from([
            "retried_on_new_connection".to_owned(),
            "requests = 2".to_owned()
        ])
    );
    let failure = &first_attempt["failures"][0];
    assert_eq!(failure["level"], "robust");
    assert!(
        failure["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("never retried on another connection")),
        "{failure}"
    );
    assert!(!failure["evidence"].as_array().expect("evidence").is_empty());
    let wrong_server = cell(&card, "curl", "coalescing-wrong-server");
    assert!(
        wrong_server["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not applicable: no request got 421")),
        "{wrong_server}"
    );
    assert_eq!(
        wrong_server["not_exercised"].as_array().map(Vec::len),
        Some(3)
    );

    // Every cell keeps its run; the bundled scenarios were written out to be run.
    for cell in card["cells"].as_array().expect("cells") {
        for file in ["report", "html", "journal", "output"] {
            let path = dir
                .path()
                .join("out")
                .join(cell[file].as_str().expect(file));
            assert!(path.is_file(), "{}", path.display());
        }
        assert!(cell["duration_ms"].as_u64().is_some_and(|ms| ms > 0));
    }
    assert!(dir.path().join("out/scenarios/always-421.json").is_file());
    assert!(dir.path().join("out/card.html").is_file());

    // The table: a row per scenario, the reasons after it, and the verdict.
    assert!(stdout.starts_with("SCENARIO"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("coalescing-wrong-server") && l.ends_with("N/A")),
        "{stdout}"
    );
    assert!(
        stdout.contains("curl × first-attempt-421  FAIL"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "retried_on_new_connection [robust]: GET https://app.site.test/profile got 421"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("curl: 5 pass, 7 fail, 2 not applicable, 0 error"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "no colour when stdout is not a terminal"
    );
    // Not a terminal: one progress line per finished cell.
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        14,
        "{stderr}"
    );
}

/// The JUnit XML, parsed by Python's `xml.etree`, reduced to its structure as JSON.
const JUNIT_STRUCTURE: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
def element(e):
    return {"tag": e.tag, "attrib": e.attrib, "text": e.text or "",
            "children": [element(c) for c in e]}
print(json.dumps(element(root)))
"#;

#[test]
fn junit_has_a_test_case_per_scenario_with_the_reasons() {
    if !have_curl("scorecard_junit") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = strings(&["--jobs", "2", "--out", "out", "--format", "junit", "--"]);
    args.extend(curl_command());
    let (code, stdout, stderr) = scorecard(dir.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    let xml = dir.path().join("junit.xml");
    std::fs::write(&xml, &stdout).expect("write junit.xml");
    assert!(stdout.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    let (parsed, json, err) = common::run(
        "python3",
        &["-c", JUNIT_STRUCTURE, xml.to_str().expect("utf-8 path")],
    );
    assert_eq!(parsed, Some(0), "not well-formed XML: {err}\n{stdout}");
    validate_against_junit_schema(&xml);
    let root: Value = serde_json::from_str(&json).expect("structure JSON");

    assert_eq!(root["tag"], "testsuites");
    let suites = root["children"].as_array().expect("suites");
    assert_eq!(suites.len(), 1, "one test suite per client");
    let suite = &suites[0];
    assert_eq!(suite["tag"], "testsuite");
    let attrs = &suite["attrib"];
    assert_eq!(attrs["name"], "curl");
    assert_eq!(attrs["tests"], "14");
    assert_eq!(attrs["failures"], "7");
    assert_eq!(attrs["errors"], "0");
    assert_eq!(attrs["skipped"], "2");
    // junit-10.xsd: these attributes and no others; times as digits and a point.
    let names: BTreeSet<&str> = attrs
        .as_object()
        .expect("attributes")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "name",
            "tests",
            "failures",
            "errors",
            "skipped",
            "time",
            "timestamp"
        ])
    );
    let is_time = |t: &Value| {
        t.as_str()
            .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    assert!(is_time(&attrs["time"]), "{attrs}");

    let cases = suite["children"].as_array().expect("test cases");
    let ids: Vec<&str> = cases
        .iter()
        .map(|c| c["attrib"]["name"].as_str().expect("name"))
        .collect();
    let row = kept_row("curl");
    let expected: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(ids, expected, "one test case per scenario, in order");
    for (case, (id, status)) in cases.iter().zip(&row) {
        assert_eq!(case["tag"], "testcase");
        assert_eq!(case["attrib"]["classname"], "misdirect.curl");
        assert!(is_time(&case["attrib"]["time"]), "{case}");
        let tags: Vec<&str> = case["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(|c| c["tag"].as_str().expect("tag"))
            .collect();
        let want: &[&str] = match status.as_str() {
            "fail" => &["failure", "system-out"],
            "not_applicable" => &["skipped", "system-out"],
            _ => &["system-out"],
        };
        assert_eq!(tags, want, "{id}");
        // The adapter's output.
        let out = case["children"]
            .as_array()
            .and_then(|c| c.last())
            .expect("system-out");
        assert!(
            out["text"]
                .as_str()
                .is_some_and(|t| t.contains("\"status\"")),
            "{id}: {out}"
        );
    }
    let first = &cases[6]["children"][0];
    assert_eq!(first["tag"], "failure");
    assert_eq!(first["attrib"]["type"], "robust");
    assert!(
        first["attrib"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retried_on_new_connection [robust]")),
        "{first}"
    );
    let text = first["text"].as_str().expect("failure text");
    assert!(
        text.contains(
            "FAIL retried_on_new_connection [robust]: GET https://app.site.test/profile got 421"
        ) && text.contains("never retried on another connection  [seq 4]")
            && text.contains("FAIL requests = 2 [robust]"),
        "{text}"
    );
    let skipped = &cases[5]["children"][0];
    assert!(
        skipped["attrib"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not applicable: ")),
        "{skipped}"
    );
    // stdout is the XML alone; the verdict went to stderr.
    assert!(stderr.contains("not as expected: 7 cell(s)"), "{stderr}");
}

#[test]
fn a_saved_card_is_a_baseline_and_a_change_from_it_names_the_cell() {
    if !have_curl("scorecard_expect") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = strings(&["--jobs", "2", "--out", "out"]);
    for id in [
        "certificate-invalid",
        "coalescing-wrong-server",
        "first-attempt-421",
    ] {
        args.push(scenario(id));
    }
    let mut first = args.clone();
    first.push("--".to_owned());
    first.extend(curl_command());
    let (code, stdout, stderr) = scorecard(dir.path(), &first);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let saved = dir.path().join("baseline.json");
    std::fs::copy(dir.path().join("out/card.json"), &saved).expect("keep the card");

    // The same card against itself: as expected.
    let mut again = args.clone();
    again.extend(strings(&["--expect", "baseline.json", "--"]));
    again.extend(curl_command());
    let (code, stdout, stderr) = scorecard(dir.path(), &again);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("as expected: 3 cell(s) match the baseline baseline.json"),
        "{stdout}"
    );

    // With no client given, the baseline's clients are scored again.
    let mut rerun = args.clone();
    rerun.extend(strings(&["--expect", "baseline.json"]));
    let (code, stdout, stderr) = scorecard(dir.path(), &rerun);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("as expected: 3 cell(s) match the baseline baseline.json"),
        "{stdout}"
    );
    assert_eq!(
        read_card(&dir.path().join("out/card.json"))["clients"],
        read_card(&saved)["clients"]
    );

    // A saved card printed in another form runs nothing; it is its own baseline.
    let from = strings(&["--from", "out/card.json", "--expect", "baseline.json"]);
    let (code, stdout, stderr) = scorecard(dir.path(), &from);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("as expected: 3 cell(s)"), "{stdout}");
    let (code, stdout, _) = scorecard(
        dir.path(),
        &strings(&["--from", "out/card.json", "--format", "junit"]),
    );
    assert_eq!(code, Some(1), "curl fails cells without a baseline");
    assert_eq!(stdout.matches("<testcase ").count(), 3, "{stdout}");
    let (code, _, stderr) = scorecard(
        dir.path(),
        &strings(&["--from", "out/card.json", "--client", "x=true"]),
    );
    assert_eq!(code, Some(2), "--from runs nothing: {stderr}");
    assert!(
        stderr.contains("cannot be used with"),
        "a conflict, not some other usage error: {stderr}"
    );
    assert!(
        !dir.path().join("misdirect-scorecard").exists(),
        "--from makes no card folder"
    );

    // A baseline where curl retried: the change is named.
    let mut baseline = read_card(&saved);
    for cell in baseline["cells"].as_array_mut().expect("cells") {
        if cell["scenario"] == "first-attempt-421" {
            cell["status"] = "pass".into();
            cell["failures"] = Value::Array(Vec::new());
        }
    }
    std::fs::write(&saved, baseline.to_string()).expect("edit the baseline");
    let (code, stdout, stderr) = scorecard(dir.path(), &again);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "curl × first-attempt-421: was pass, now fail (requests = 2, retried_on_new_connection)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("changed vs the baseline baseline.json (1 cell(s))"),
        "{stdout}"
    );
    // The same, comparing the saved cards alone.
    let (code, stdout, _) = scorecard(dir.path(), &from);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("curl × first-attempt-421: was pass, now fail"),
        "{stdout}"
    );

    // A baseline that cannot be read is a usage error, before anything runs.
    let mut missing = args;
    missing.extend(strings(&["--expect", "no-such-card.json", "--"]));
    missing.extend(curl_command());
    let (code, _, stderr) = scorecard(dir.path(), &missing);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--expect no-such-card.json"), "{stderr}");
}

fn python_h2(test: &str, args: &[&str]) -> Option<String> {
    let python = common::python_with_h2(test)?;
    let mut words = vec![
        python.to_string_lossy().into_owned(),
        adapter("python_h2.py"),
    ];
    words.extend(args.iter().map(|a| (*a).to_owned()));
    // One `--client` value: quoted words.
    Some(
        words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `python_h2.py --on-421 retry-same` retries a 421 on the connection that answered it:
/// exactly the scenarios that send a 421 fail (and the two ORIGIN scenarios, which the
/// reference client fails anyway), as `clients/card.json` has it.
#[test]
fn a_deliberately_broken_adapter_fails_exactly_its_cells() {
    let Some(command) = python_h2("scorecard_broken_adapter", &["--on-421", "retry-same"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = vec![
        "--jobs".to_owned(),
        "2".to_owned(),
        "--out".to_owned(),
        "out".to_owned(),
        "--client".to_owned(),
        format!("retry-same={command}"),
    ];
    let (code, stdout, stderr) = scorecard(dir.path(), &args);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let card = read_card(&dir.path().join("out/card.json"));
    let not_passing: BTreeMap<String, String> = statuses(&card, "retry-same")
        .into_iter()
        .filter(|(_, s)| s != "pass")
        .collect();
    let expected: BTreeMap<String, String> = [
        "always-421",
        "browser-coalescing",
        "cdn-misrouting",
        "coalescing-wrong-server",
        "first-attempt-421",
        "origin-lists-b",
        "origin-omits-b",
        "retry-post-body",
        "vhost-misconfigured",
    ]
    .iter()
    .map(|s| ((*s).to_owned(), "fail".to_owned()))
    .collect();
    assert_eq!(not_passing, expected, "{stdout}");
    assert_eq!(
        statuses(&card, "retry-same"),
        kept_row("python_h2_retry_same")
    );
    assert_eq!(
        failing(cell(&card, "retry-same", "coalescing-wrong-server")),
        BTreeSet::from([
            "retried_on_new_connection (b.test)".to_owned(),
            "no_retry_on_same_connection".to_owned(),
            "stopped_coalescing (b.test)".to_owned(),
        ])
    );
    assert!(
        cell(&card, "retry-same", "first-attempt-421")["failures"][0]["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("was retried only on the same connection")),
        "{card}"
    );
}

/// `--level` sets which failures fail a cell: the retry-same client fails `robust` and
/// `should` expectations there, the reference client fails `must` ones on `origin-omits-b`.
#[test]
fn the_level_decides_which_failures_fail_a_cell() {
    let Some(command) = python_h2("scorecard_levels", &["--on-421", "retry-same"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ids = [
        "coalescing-wrong-server",
        "first-attempt-421",
        "origin-omits-b",
    ];
    let run = |level: &str| {
        let mut args = strings(&["--jobs", "2", "--out", level, "--level", level]);
        args.extend(ids.iter().map(|id| scenario(id)));
        args.push("--client".to_owned());
        args.push(format!("h2={command}"));
        let (code, stdout, stderr) = scorecard(dir.path(), &args);
        let card = read_card(&dir.path().join(level).join("card.json"));
        (code, stdout, stderr, card)
    };
    let (code, stdout, _, card) = run("must");
    assert_eq!(
        code,
        Some(1),
        "origin-omits-b fails must expectations\n{stdout}"
    );
    assert_eq!(card["level"], "must");
    assert_eq!(
        statuses(&card, "h2"),
        expected_row(&[
            ("coalescing-wrong-server", "pass"),
            ("first-attempt-421", "pass"),
            ("origin-omits-b", "fail"),
        ])
    );
    let below = cell(&card, "h2", "coalescing-wrong-server");
    assert_eq!(
        below["below_level"].as_array().map(Vec::len),
        Some(3),
        "{below}"
    );
    assert!(below["failures"].as_array().is_some_and(Vec::is_empty));
    assert!(
        stdout.contains("* passes at --level must, with failures below it"),
        "{stdout}"
    );
    // Against that card, with neither clients nor a level given: its clients, at its level.
    let mut again = strings(&[
        "--jobs",
        "2",
        "--out",
        "again",
        "--expect",
        "must/card.json",
    ]);
    again.extend(ids.iter().map(|id| scenario(id)));
    let (code, stdout, stderr) = scorecard(dir.path(), &again);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let again = read_card(&dir.path().join("again/card.json"));
    assert_eq!(again["level"], "must");
    assert_eq!(again["timeout_secs"], card["timeout_secs"]);
    assert!(
        !stdout.contains("note: the baseline was made at"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("first-attempt-421") && l.ends_with("PASS*")),
        "{stdout}"
    );

    let (code, stdout, _, card) = run("should");
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        statuses(&card, "h2"),
        expected_row(&[
            ("coalescing-wrong-server", "fail"),
            ("first-attempt-421", "pass"),
            ("origin-omits-b", "fail"),
        ])
    );
    assert_eq!(
        failing(cell(&card, "h2", "coalescing-wrong-server")),
        BTreeSet::from([
            "no_retry_on_same_connection".to_owned(),
            "stopped_coalescing (b.test)".to_owned(),
        ])
    );
}

#[test]
fn several_clients_make_one_column_each() {
    if !have_curl("scorecard_clients") {
        return;
    }
    let Some(h2) = python_h2("scorecard_clients", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = vec![
        "--jobs".to_owned(),
        "2".to_owned(),
        "--out".to_owned(),
        "out".to_owned(),
        scenario("first-attempt-421"),
        scenario("certificate-invalid"),
        "--client".to_owned(),
        format!("curl=python3 '{}'", adapter("curl.py")),
        "--client".to_owned(),
        format!("python_h2={h2}"),
        "--client-jobs".to_owned(),
        "python_h2=1".to_owned(),
    ];
    let (code, stdout, stderr) = scorecard(dir.path(), &args);
    assert_eq!(
        code,
        Some(1),
        "curl fails first-attempt-421\n{stdout}\n{stderr}"
    );
    let card = read_card(&dir.path().join("out/card.json"));
    let clients: Vec<&str> = card["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(clients, ["curl", "python_h2"]);
    assert_eq!(card["clients"][1]["jobs"], 1);
    assert_eq!(card["cells"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        statuses(&card, "curl"),
        expected_row(&[
            ("certificate-invalid", "pass"),
            ("first-attempt-421", "fail")
        ])
    );
    assert_eq!(
        statuses(&card, "python_h2"),
        expected_row(&[
            ("certificate-invalid", "pass"),
            ("first-attempt-421", "pass")
        ])
    );
    let header: Vec<&str> = stdout
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["SCENARIO", "CAUSE", "curl", "python_h2"],
        "{stdout}"
    );
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("first-attempt-421"))
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["first-attempt-421", "retry", "hygiene", "FAIL", "PASS"]
    );
    for client in ["curl", "python_h2"] {
        assert!(
            dir.path()
                .join("out/cells")
                .join(client)
                .join("first-attempt-421/report.html")
                .is_file()
        );
    }
}

#[test]
fn a_command_that_cannot_run_or_hangs_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = vec![
        "--out".to_owned(),
        "out".to_owned(),
        "--timeout-secs".to_owned(),
        "1".to_owned(),
        scenario("first-attempt-421"),
        "--client".to_owned(),
        "missing=/nonexistent/adapter".to_owned(),
        "--client".to_owned(),
        "hangs=sleep 30".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = scorecard(dir.path(), &args);
    assert!(started.elapsed().as_secs() < 20, "bounded in time");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let card: Value = serde_json::from_str(&stdout).expect("--format json is the card");
    assert_eq!(card, read_card(&dir.path().join("out/card.json")));
    let missing = cell(&card, "missing", "first-attempt-421");
    assert_eq!(missing["status"], "error");
    assert!(
        missing["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the command could not be started")),
        "{missing}"
    );
    let hangs = cell(&card, "hangs", "first-attempt-421");
    assert_eq!(hangs["status"], "error");
    assert_eq!(
        hangs["reason"], "the command timed out after 1 s and was killed",
        "{hangs}"
    );
    assert!(stderr.contains("not as expected: 2 cell(s)"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: &[(&[&str], &str)] = &[
        (&[], "no client"),
        (&["--client", "noequals"], "expected NAME=CMD"),
        (&["--client", "a/b=true"], "must be letters, digits"),
        (
            &["--client", "x=true", "--client", "x=false"],
            "two clients are named \"x\"",
        ),
        (
            &["--client", "x=true", "--client-jobs", "y=1"],
            "no client named \"y\"",
        ),
        (
            &["--client", "x=true", "--client-jobs", "x=0"],
            "expected NAME=N",
        ),
        (
            &["--client", "x=true", "no-such-scenario.json"],
            "no-such-scenario.json",
        ),
        (
            &["--client", "x=true", "--level", "may"],
            "invalid value 'may'",
        ),
    ];
    for (args, message) in cases {
        let (code, _, stderr) = scorecard(dir.path(), &strings(args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(
        !PathBuf::from(dir.path())
            .join("misdirect-scorecard/cells")
            .exists(),
        "nothing ran"
    );
}

/// Processes whose command line mentions `needle` (from /proc), as "pid: cmdline".
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(needle) {
                found.push(format!("{name}: {line}"));
            }
        }
    }
    found
}

#[test]
fn one_folder_takes_one_scorecard_and_a_killed_one_leaves_no_run_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    // A client that hangs, with a marker only its processes carry.
    let marker = format!("scorecard-hang-{}", std::process::id());
    let hang = format!("exec -a {marker} sleep 60");
    let mut first = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .arg("scorecard")
        .arg(scenario("first-attempt-421"))
        .args(["--timeout-secs", "50", "--out"])
        .arg(&out)
        .args(["--", "bash", "-c", &hang])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("scorecard starts");
    // The client itself runs as `MARKER 60` (the scorecard's and run's command lines hold
    // `exec -a MARKER sleep 60`).
    let client = format!("{marker} 60");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_mentioning(&client).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hanging client never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A second card on the same folder is refused, naming what to do.
    let (code, _, stderr) = scorecard(
        dir.path(),
        &[
            scenario("first-attempt-421"),
            "--out".to_owned(),
            out.to_string_lossy().into_owned(),
            "--".to_owned(),
            "true".to_owned(),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("another misdirect scorecard") && stderr.contains("its own --out"),
        "{stderr}"
    );
    // SIGKILL leaves the scorecard no chance to clean up: the kernel ends its runs, and each
    // run its client.
    first.kill().expect("kill");
    first.wait().expect("reaped");
    let out_text = out.to_string_lossy().into_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = processes_mentioning(&marker)
            .into_iter()
            .chain(processes_mentioning(&out_text))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind 10 s after the scorecard was killed: {left:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
