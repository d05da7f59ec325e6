//! The bundled scenarios load cleanly and validate against the published JSON Schema; the
//! corpus of broken files in `tests/scenario_errors/` is rejected with exactly the messages
//! written next to each file (`NAME.expected`).

use std::fs;
use std::path::{Path, PathBuf};

use misdirect::scenario::{self, Scenario};

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
