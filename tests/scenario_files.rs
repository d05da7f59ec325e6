//! The bundled scenarios load cleanly and validate against the published JSON Schema; the
//! corpus of broken files in `tests/scenario_errors/` is rejected with exactly the messages
//! written next to each file (`NAME.expected`); count ranges take no unknown keys; response
//! bodies come from `body_file`s next to the scenario, never from outside its folder unless
//! allowed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use misdirect::scenario::{self, Action, LoadError, LoadOptions, Scenario};

fn files_in(dir: &str, extension: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {dir}");
    files
}

#[test]
fn every_bundled_scenario_loads_without_errors_or_warnings() {
    for file in files_in("scenarios", "json") {
        match scenario::from_path(&file) {
            Ok((scenario, diagnostics)) => {
                let name = file
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned();
                let warned: Vec<String> = diagnostics
                    .warnings
                    .iter()
                    .map(|w| w.path.clone())
                    .collect();
                // Warnings flag legal but odd choices; these scenarios make them on purpose.
                let intended: &[&str] = match name.as_str() {
                    "certificate-invalid" => &["hosts[3].certificate"],
                    "vhost-misconfigured" => &["client.steps[2].request.url"],
                    _ => &[],
                };
                assert_eq!(
                    warned,
                    intended,
                    "{}: {:?}",
                    file.display(),
                    diagnostics.warnings
                );
                assert!(
                    scenario.description.is_some(),
                    "{}: document it",
                    file.display()
                );
                assert!(
                    !scenario.expect.is_empty(),
                    "{}: no expectations",
                    file.display()
                );
                assert!(
                    scenario.client.is_some(),
                    "{}: no client plan",
                    file.display()
                );
            }
            Err(err) => panic!("{}:\n{err}", file.display()),
        }
    }
}

#[test]
fn every_bundled_scenario_validates_against_the_json_schema() {
    let schema = serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema as JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    for file in files_in("scenarios", "json") {
        let text = fs::read_to_string(&file).expect("readable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects_structurally() {
    let schema = serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema as JSON");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    for bad in [
        r#"{"hosts": [{"names": ["a.test"]}], "colour": 1}"#,
        r#"{"hosts": [{"names": ["a.test"], "certifcate": "x"}]}"#,
        r#"{"hosts": [], "rules": [{"action": {"explode": {}}}]}"#,
        r#"{"certificates": [{"name": "a", "sans": ["a.test"], "key": "rsa-4096"}], "hosts": []}"#,
        r#"{"rules": []}"#,
        r#"{"hosts": [], "expect": [{"requests": {"min": 2, "maxx": 3}}]}"#,
        r#"{"hosts": [], "rules": [{"when": {"attempt": {"min": 1, "mx": 2}}, "action": "close"}]}"#,
        r#"{"hosts": [], "rules": [{"action": {"respond": {"status": 421}, "status": 421}}]}"#,
        r#"{"hosts": [], "client": {"steps": [{"pause_ms": 1, "repeat": 2}]}}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(bad).expect("JSON");
        assert!(!validator.is_valid(&value), "schema accepted {bad}");
        assert!(
            scenario::from_value(&value).is_err(),
            "loader accepted {bad}"
        );
    }
}

#[test]
fn broken_scenarios_are_rejected_with_exactly_the_expected_messages() {
    for file in files_in("tests/scenario_errors", "json") {
        let stem = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        if stem == "rsa-without-feature" && cfg!(feature = "rsa") {
            continue;
        }
        let expected_path = file.with_extension("expected");
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let bytes = fs::read(&file).expect("readable");
        let err = match scenario::from_bytes(&bytes) {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(err) => err,
        };
        let expected: Vec<&str> = expected.lines().collect();
        assert_eq!(err.lines(), expected, "{}", file.display());
    }
}

#[test]
fn a_legal_but_suspicious_choice_is_a_warning_naming_the_field() {
    let (_, diagnostics) = scenario::from_bytes(
        br#"{
          "certificates": [{"name": "a", "sans": ["a.test"]}],
          "hosts": [{"names": ["a.test", "b.test"], "certificate": "a"}],
          "client": {"steps": [{"request": {"url": "https://c.test/"}}]}
        }"#,
    )
    .expect("valid");
    let warnings: Vec<String> = diagnostics.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            r#"hosts[0].certificate: certificate "a" does not cover "b.test"; clients will reject it unless that is the point"#,
            r#"client.steps[0].request.url: no host answers to "c.test"; every request for it will be misdirected"#,
        ]
    );
}

#[test]
fn defaults_give_one_loopback_tls_listener_offering_h2_then_http11() {
    let (scenario, _) = scenario::from_bytes(
        br#"{"certificates": [{"name": "a", "sans": ["a.test"]}],
             "hosts": [{"names": ["a.test"], "certificate": "a"}]}"#,
    )
    .expect("valid");
    assert_eq!(scenario.listeners.len(), 1);
    let main = &scenario.listeners[0];
    assert_eq!(main.name, "main");
    assert_eq!(main.address.to_string(), "127.0.0.1:0");
    assert!(main.tls);
    assert_eq!(main.alpn, [scenario::Alpn::H2, scenario::Alpn::Http11]);
    assert_eq!(main.unknown_sni, scenario::SniFallback::Reject);
}

/// The error lines of loading `json` from bytes.
fn error_lines(json: &str) -> Vec<String> {
    match scenario::from_bytes(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(err) => err.lines(),
    }
}

const HOST: &str = r#""certificates": [{"name": "a", "sans": ["a.test"]}],
    "hosts": [{"names": ["a.test"], "certificate": "a"}]"#;

#[test]
fn a_misspelt_count_range_bound_is_an_unknown_field_at_its_path() {
    assert_eq!(
        error_lines(&format!(
            r#"{{{HOST}, "expect": [{{"requests": {{"min": 2, "maxx": 3}}}}]}}"#
        )),
        ["expect[0].requests.maxx: unknown field `maxx`, expected `min` or `max`"]
    );
    assert_eq!(
        error_lines(&format!(
            r#"{{{HOST}, "rules": [{{"when": {{"attempt": {{"min": 1, "mx": 2}}}}, "action": "close"}}]}}"#
        )),
        ["rules[0].when.attempt.mx: unknown field `mx`, expected `min` or `max`"]
    );
}

#[test]
fn count_ranges_take_a_number_or_an_object_of_optional_bounds() {
    use scenario::{CountRange, Expectation};
    let (s, _) = scenario::from_bytes(
        format!(
            r#"{{{HOST},
            "rules": [{{"when": {{"attempt": 2, "request_on_connection": {{"min": 1}},
                                 "connection_age_ms": {{"max": null}}}}, "action": "close"}}],
            "expect": [{{"requests": 3}}, {{"connections": {{}}}}, {{"requests": {{"min": 1, "max": 4}}}}]}}"#
        )
        .as_bytes(),
    )
    .expect("valid");
    let when = &s.rules[0].when;
    assert_eq!(when.attempt, Some(CountRange::Exactly(2)));
    assert_eq!(
        when.request_on_connection,
        Some(CountRange::Between {
            min: Some(1),
            max: None
        })
    );
    assert_eq!(
        when.connection_age_ms,
        Some(CountRange::Between {
            min: None,
            max: None
        })
    );
    assert_eq!(
        s.expect,
        [
            Expectation::Requests(CountRange::Exactly(3)),
            Expectation::Connections(CountRange::Between {
                min: None,
                max: None
            }),
            Expectation::Requests(CountRange::Between {
                min: Some(1),
                max: Some(4)
            }),
        ]
    );
    // And back: the JSON form is the one read.
    let json = serde_json::to_value(&s.expect).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!([{"requests": 3}, {"connections": {}}, {"requests": {"min": 1, "max": 4}}])
    );
}

#[test]
fn the_schema_closes_the_object_form_of_count_ranges() {
    let schema = serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema as JSON");
    let forms = schema["$defs"]["CountRange"]["anyOf"]
        .as_array()
        .expect("CountRange is a choice of forms");
    let object = forms
        .iter()
        .find(|form| form["type"] == "object")
        .expect("an object form");
    assert_eq!(object["additionalProperties"], serde_json::json!(false));
    let keys: Vec<&String> = object["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    assert_eq!(keys, ["max", "min"]);
    assert!(forms.iter().any(|form| form["type"] == "integer"));
}

#[test]
fn check_strict_rejects_misspelt_count_range_bounds_with_their_paths() {
    let output = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .args([
            "check",
            "--strict",
            "tests/scenario_errors/count-ranges.json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    for path in ["expect[0].requests.maxx", "rules[0].when.attempt.mx"] {
        assert!(
            text.contains(&format!("count-ranges.json: {path}: unknown field")),
            "{path} not reported:\n{text}"
        );
    }
}

/// A scenario in a fresh folder whose one host answers `/f` with `body_file` and whose one
/// rule answers with `rule_file` (either may be `null`).
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        Folder {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("folder");
        }
        fs::write(&path, contents).expect("write");
        path
    }

    /// Writes `scenario.json` with this host response and rule respond action (JSON objects).
    fn scenario(&self, response: &str, respond: &str) -> PathBuf {
        self.write(
            "scenario.json",
            format!(
                r#"{{{HOST_WITHOUT_RESPONSES}, "responses": [{{"path": "/plain"}}, {response}]}}],
                    "rules": [{{"when": {{"path": "/rule"}}, "action": {{"respond": {respond}}}}}]}}"#
            )
            .as_bytes(),
        )
    }
}

const HOST_WITHOUT_RESPONSES: &str = r#""certificates": [{"name": "a", "sans": ["a.test"]}],
    "hosts": [{"names": ["a.test"], "certificate": "a""#;

fn load(path: &Path, allow: bool) -> Result<Scenario, LoadError> {
    scenario::from_path_with(
        path,
        &LoadOptions {
            allow_files_outside_folder: allow,
            base_dir: None,
        },
    )
    .map(|(s, _)| s)
}

fn respond_of(s: &Scenario) -> &scenario::RespondAction {
    match &s.rules[0].action {
        Some(Action::Respond(respond)) => respond,
        other => panic!("not a respond action: {other:?}"),
    }
}

#[test]
fn a_body_file_next_to_the_scenario_is_read_once_at_load() {
    let folder = Folder::new();
    folder.write("big.txt", b"from a file\n");
    folder.write("bodies/rule.txt", b"421 from a file\n");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "big.txt"}"#,
        r#"{"status": 421, "body_file": "bodies/rule.txt"}"#,
    );
    let (s, _) = scenario::from_path(&file).expect("loads");
    let response = &s.hosts[0].responses[1];
    assert_eq!(response.body_file.as_deref(), Some(Path::new("big.txt")));
    assert_eq!(response.file_body.as_deref(), Some(&b"from a file\n"[..]));
    assert_eq!(
        response.body_bytes().as_deref(),
        Some(&b"from a file\n"[..])
    );
    assert_eq!(s.hosts[0].responses[0].body_bytes(), None);
    assert_eq!(
        respond_of(&s).body_bytes().as_deref(),
        Some(&b"421 from a file\n"[..])
    );
    // Read once: the loaded scenario keeps the bytes it read.
    fs::remove_file(folder.path("big.txt")).expect("remove");
    assert_eq!(
        response.body_bytes().as_deref(),
        Some(&b"from a file\n"[..])
    );
}

#[test]
fn a_body_file_may_hold_any_bytes() {
    let folder = Folder::new();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    folder.write("blob.bin", &binary);
    folder.write("empty.bin", b"");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "blob.bin", "headers": {"content-type": "application/octet-stream"}}"#,
        r#"{"status": 200, "body_file": "./empty.bin"}"#,
    );
    let (s, _) = scenario::from_path(&file).expect("loads");
    assert_eq!(
        s.hosts[0].responses[1].body_bytes().as_deref(),
        Some(&binary[..])
    );
    assert_eq!(respond_of(&s).body_bytes().as_deref(), Some(&b""[..]));
}

#[test]
fn a_body_file_outside_the_folder_is_refused_with_its_path_unless_allowed() {
    let outer = tempfile::tempdir().expect("temporary folder");
    fs::write(outer.path().join("secret.txt"), b"outside").expect("write");
    let inner = outer.path().join("scenario");
    fs::create_dir(&inner).expect("folder");
    std::os::unix::fs::symlink(outer.path().join("secret.txt"), inner.join("link.txt"))
        .expect("symlink");
    fs::write(
        inner.join("scenario.json"),
        format!(
            r#"{{{HOST_WITHOUT_RESPONSES}, "responses": [{{"path": "/a", "body_file": "../secret.txt"}},
                                                 {{"path": "/b", "body_file": "link.txt"}}]}}],
                "rules": [{{"action": {{"respond": {{"status": 421, "body_file": {:?}}}}}}}]}}"#,
            outer.path().join("secret.txt").display().to_string()
        ),
    )
    .expect("write");
    let file = inner.join("scenario.json");
    let lines = load(&file, false).expect_err("escapes").lines();
    let paths: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once(": ").expect("path: message").0)
        .collect();
    assert_eq!(
        paths,
        [
            "hosts[0].responses[0].body_file",
            "hosts[0].responses[1].body_file",
            "rules[0].action.respond.body_file",
        ],
        "{lines:#?}"
    );
    for line in &lines {
        assert!(line.contains("outside the scenario's folder"), "{line}");
    }
    assert!(
        lines[0].contains(r#""../secret.txt" resolves to "#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r#""link.txt" resolves to "#),
        "{}",
        lines[1]
    );

    // The default of from_path is to refuse.
    assert!(scenario::from_path(&file).is_err());

    let s = load(&file, true).expect("allowed");
    for response in &s.hosts[0].responses {
        assert_eq!(response.body_bytes().as_deref(), Some(&b"outside"[..]));
    }
    assert_eq!(
        respond_of(&s).body_bytes().as_deref(),
        Some(&b"outside"[..])
    );
}

#[test]
fn a_symlink_inside_the_folder_to_a_file_inside_it_is_fine() {
    let folder = Folder::new();
    folder.write("real.txt", b"real");
    std::os::unix::fs::symlink(folder.path("real.txt"), folder.path("alias.txt")).expect("symlink");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "alias.txt"}"#,
        r#"{"status": 421}"#,
    );
    let (s, _) = scenario::from_path(&file).expect("loads");
    assert_eq!(
        s.hosts[0].responses[1].body_bytes().as_deref(),
        Some(&b"real"[..])
    );
}

#[test]
fn body_and_body_file_together_are_refused_naming_both() {
    let folder = Folder::new();
    folder.write("x.txt", b"x");
    let file = folder.scenario(
        r#"{"path": "/f", "body": "inline", "body_file": "x.txt"}"#,
        r#"{"status": 421, "body": "inline", "body_file": "x.txt"}"#,
    );
    assert_eq!(
        load(&file, true).expect_err("both").lines(),
        [
            "hosts[0].responses[1].body_file: give either hosts[0].responses[1].body or hosts[0].responses[1].body_file, not both",
            "rules[0].action.respond.body_file: give either rules[0].action.respond.body or rules[0].action.respond.body_file, not both",
        ]
    );
}

#[test]
fn a_missing_or_unreadable_body_file_is_a_located_error() {
    let folder = Folder::new();
    fs::create_dir(folder.path("a-folder")).expect("folder");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "nope.bin"}"#,
        r#"{"status": 421, "body_file": "a-folder"}"#,
    );
    let lines = load(&file, true).expect_err("missing").lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(r#"hosts[0].responses[1].body_file: cannot read "nope.bin" ("#),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("No such file"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(r#"rules[0].action.respond.body_file: "a-folder" ("#)
            && lines[1].ends_with("is not a regular file"),
        "{}",
        lines[1]
    );
}

#[test]
fn a_body_file_over_64_mib_is_refused() {
    let folder = Folder::new();
    let big = fs::File::create(folder.path("huge.bin")).expect("create");
    // Sparse: no 64 MiB written.
    big.set_len(scenario::MAX_BODY_FILE_BYTES + 1)
        .expect("set_len");
    let exact = fs::File::create(folder.path("limit.bin")).expect("create");
    exact
        .set_len(scenario::MAX_BODY_FILE_BYTES)
        .expect("set_len");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "huge.bin"}"#,
        r#"{"status": 200, "body_file": "limit.bin"}"#,
    );
    let lines = load(&file, false).expect_err("too large").lines();
    assert_eq!(
        lines,
        [
            r#"hosts[0].responses[1].body_file: "huge.bin" is larger than 67108864 bytes (64 MiB), the most a body file may hold"#
        ]
    );
}

#[test]
fn a_scenario_given_as_bytes_has_no_folder_for_a_body_file_unless_one_is_given() {
    let folder = Folder::new();
    folder.write("x.txt", b"x");
    let json = format!(
        r#"{{{HOST_WITHOUT_RESPONSES}, "responses": [{{"path": "/f", "body_file": "x.txt"}}]}}]}}"#
    );
    let lines = scenario::from_bytes(json.as_bytes())
        .expect_err("no folder")
        .lines();
    assert_eq!(
        lines,
        [
            r#"hosts[0].responses[0].body_file: body_file needs a scenario file: this scenario was given as bytes, with no folder to read "x.txt" from; load it from a file, or give the body inline with "body""#
        ]
    );
    let options = LoadOptions {
        base_dir: Some(folder.dir.path().to_owned()),
        ..LoadOptions::default()
    };
    let (s, _) = scenario::from_bytes_with(json.as_bytes(), &options).expect("loads");
    assert_eq!(
        s.hosts[0].responses[0].body_bytes().as_deref(),
        Some(&b"x"[..])
    );
}

#[test]
fn base_dir_overrides_the_scenario_files_folder() {
    let scenario_folder = Folder::new();
    let bodies = Folder::new();
    bodies.write("x.txt", b"from base_dir");
    let file = scenario_folder.scenario(
        r#"{"path": "/f", "body_file": "x.txt"}"#,
        r#"{"status": 421}"#,
    );
    assert!(
        scenario::from_path(&file).is_err(),
        "not next to the scenario"
    );
    let options = LoadOptions {
        base_dir: Some(bodies.dir.path().to_owned()),
        ..LoadOptions::default()
    };
    let (s, _) = scenario::from_path_with(&file, &options).expect("loads");
    assert_eq!(
        s.hosts[0].responses[1].body_bytes().as_deref(),
        Some(&b"from base_dir"[..])
    );
}

#[test]
fn an_inline_body_is_what_body_bytes_gives() {
    let (s, _) = scenario::from_bytes(
        format!(
            r#"{{{HOST_WITHOUT_RESPONSES}, "responses": [{{"body": "héllo"}}]}}],
                "rules": [{{"action": {{"respond": {{"status": 421, "body": "no"}}}}}}]}}"#
        )
        .as_bytes(),
    )
    .expect("valid");
    assert_eq!(
        s.hosts[0].responses[0].body_bytes().as_deref(),
        Some("héllo".as_bytes())
    );
    assert_eq!(s.hosts[0].responses[0].file_body, None);
    assert_eq!(respond_of(&s).body_bytes().as_deref(), Some(&b"no"[..]));
}

#[test]
fn a_body_file_named_twice_is_read_once_and_shared() {
    let folder = Folder::new();
    folder.write("same.bin", b"shared");
    std::os::unix::fs::symlink(folder.path("same.bin"), folder.path("alias.bin")).expect("symlink");
    let file = folder.scenario(
        r#"{"path": "/f", "body_file": "same.bin"}"#,
        r#"{"status": 421, "body_file": "alias.bin"}"#,
    );
    let (s, _) = scenario::from_path(&file).expect("loads");
    let host = s.hosts[0].responses[1].file_body.clone().expect("read");
    let rule = respond_of(&s).file_body.clone().expect("read");
    assert_eq!(host, rule);
    assert_eq!(host.as_ptr(), rule.as_ptr(), "one copy in memory");
}

#[test]
fn an_origin_list_or_altsvc_value_too_big_for_one_frame_is_refused_at_its_path() {
    let names: Vec<String> = (0..700)
        .map(|i| format!("\"host-{i:04}.example.test\""))
        .collect();
    let lines = error_lines(&format!(
        r#"{{{HOST}, "rules": [{{"send": [{{"origin": [{}]}}, {{"altsvc": {{"value": "h2=\":1\"; x=\"{}\""}}}}]}}]}}"#,
        names.join(", "),
        "y".repeat(17_000)
    ));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("rules[0].send[0].origin: the ORIGIN frame would carry up to ")
            && lines[0].contains("over the 16384"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("rules[0].send[1].altsvc.value: the ALTSVC frame would carry"),
        "{lines:#?}"
    );
    // 400 of them fit, even grown to `https://NAME:65535` each.
    let names = &names[..400];
    assert!(
        scenario::from_bytes(
            format!(
                r#"{{{HOST}, "rules": [{{"send": [{{"origin": [{}]}}]}}]}}"#,
                names.join(", ")
            )
            .as_bytes()
        )
        .is_ok()
    );
}
