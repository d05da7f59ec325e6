//! Bounded fuzzing of the scenario loader and validator on the stable toolchain (proptest):
//! arbitrary bytes, and structure-aware mutations of valid scenarios — keys dropped, values of
//! the wrong type, wrong enum words, huge and negative numbers, deep nesting, keys in the
//! wrong place, invalid UTF-8, truncation. Whatever the input, loading never panics and
//! either succeeds or says where the problem is: a line and column for bytes that are not
//! JSON, a path into the document for everything else.
//!
//! The default case counts keep the whole file to a few seconds, for CI. A longer run:
//!
//! ```sh
//! PROPTEST_CASES=50000 cargo test --release --test scenario_fuzz
//! ```
//!
//! A failing input proptest finds is written to `tests/scenario_fuzz.proptest-regressions`
//! and replayed first on every later run: commit that file with the fix.

use std::path::Path;

use misdirect::scenario::{self, LoadError};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

/// `default_cases`, unless the standard `PROPTEST_CASES` environment variable says otherwise.
fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// Valid scenarios to mutate: every bundled one, plus one that uses more of the format.
fn seeds() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut seeds: Vec<Value> = files
        .iter()
        .map(|file| {
            serde_json::from_str(&std::fs::read_to_string(file).expect("readable")).expect("JSON")
        })
        .collect();
    seeds.push(json!({
        "seed": 3,
        "ca": {"key": "ed25519"},
        "certificates": [{"name": "a", "sans": ["a.test", "*.b.test", "::1"],
                          "validity": {"not_before": "-2d", "not_after": "2090-01-01T00:00:00Z"}}],
        "listeners": [{"name": "l", "address": "127.0.0.1:0", "alpn": ["h2"],
                       "unknown_sni": {"certificate": "a"}},
                      {"name": "c", "address": "[::1]:0", "tls": false}],
        "hosts": [{"names": ["a.test"], "certificate": "a",
                   "responses": [{"path": "/x", "status": 203, "headers": {"x": "1"}, "body": "b"}]}],
        "rules": [{"when": {"attempt": {"min": 1, "max": 2}, "request_on_connection": 1,
                            "header": {"name": "x"}, "probability": 0.5, "every_nth": 2},
                   "action": {"goaway": {"code": "ENHANCE_YOUR_CALM"}}, "limit": {"total": 1}},
                  {"action": {"reset_stream": {"code": "CANCEL"}}, "delay_ms": 5},
                  {"action": "close"}],
        "client": {"steps": [{"request": {"url": "https://a.test/x", "method": "PUT", "body": "y"}},
                             {"pause_ms": 1}]},
        "expect": [{"requests": {"max": 9}}, {"connections": 1}, {"retried": {"after": "goaway"}}]
    }));
    seeds
}

/// One structure-aware change, applied at the `at`-th node of the document (in walk order).
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a key of the object at that node (or an element of an array).
    Drop(Index, Index),
    /// Replace the node by another value.
    Replace(Index, Value),
    /// Replace a string node by a near miss (another case, a character more or less).
    NearMiss(Index, u8),
    /// Add a key (a real field name, in the wrong place) to the object at that node.
    Insert(Index, String, Value),
    /// Wrap the node in this many arrays or objects.
    Nest(Index, usize, bool),
}

/// Values of every type, with the numbers and strings that break careless code.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(u16::MAX as u64 + 1),
            json!(1e300),
            json!(-0.0),
            json!(0.5),
            json!(f64::MAX),
            json!(4_294_967_296u64),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "*",
            "close",
            "respond",
            "REFUSED_STREAM",
            "refused_stream",
            "rsa-4096",
            "H2",
            "421",
            "now",
            "-99999999999w",
            "9999-12-31T23:59:59Z",
            "0.0.0.0:443",
            "[::1]:0",
            "127.0.0.1:99999",
            "*.",
            "*.*.test",
            "a..test",
            "é",
            "\u{0}",
            "GE T",
            "/",
            "x y",
            "https://a.test:8443/",
            "file:///etc/passwd",
            "../../etc/passwd",
        ])
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        (0usize..20_000).prop_map(|n| Value::from("a".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Field names of the format, to put where they do not belong.
const FIELDS: &[&str] = &[
    "hosts",
    "names",
    "certificate",
    "certificates",
    "sans",
    "rules",
    "action",
    "respond",
    "status",
    "when",
    "listeners",
    "name",
    "limit",
    "expect",
    "client",
    "steps",
    "validity",
    "not_before",
    "not_after",
    "ca",
    "alpn",
    "tls",
    "unknown_sni",
    "no_sni",
    "port_from",
    "attempt",
    "min",
    "max",
    "authority",
    "body",
    "body_file",
    "headers",
    "request",
    "url",
    "pause_ms",
    "goaway",
    "reset_stream",
    "close",
    "code",
    "graceful",
    "requests",
    "seed",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(at, key)| Mutation::Drop(at, key)),
        4 => (any::<Index>(), odd_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, how)| Mutation::NearMiss(at, how)),
        2 => (any::<Index>(), prop::sample::select(FIELDS), odd_value())
            .prop_map(|(at, key, v)| Mutation::Insert(at, key.to_owned(), v)),
        1 => (any::<Index>(), 1usize..200, any::<bool>())
            .prop_map(|(at, depth, arrays)| Mutation::Nest(at, depth, arrays)),
    ]
}

/// Every node of the document, as a path of keys / indices from the root.
fn nodes(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(at.clone());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    at.push(Step::Key(key.clone()));
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    at.push(Step::Index(index));
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn node_mut<'a>(mut value: &'a mut Value, at: &[Step]) -> &'a mut Value {
    for step in at {
        value = match (value, step) {
            (Value::Object(map), Step::Key(key)) => map.get_mut(key).expect("key"),
            (Value::Array(items), Step::Index(index)) => &mut items[*index],
            _ => unreachable!("steps follow the document"),
        };
    }
    value
}

fn apply(value: &mut Value, mutation: &Mutation) {
    let all = nodes(value);
    let pick = |at: &Index| all[at.index(all.len())].clone();
    match mutation {
        Mutation::Drop(at, key) => match node_mut(value, &pick(at)) {
            Value::Object(map) if !map.is_empty() => {
                let victim = map.keys().nth(key.index(map.len())).cloned().expect("key");
                map.remove(&victim);
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(key.index(items.len()));
            }
            _ => {}
        },
        Mutation::Replace(at, new) => *node_mut(value, &pick(at)) = new.clone(),
        Mutation::NearMiss(at, how) => {
            if let Value::String(text) = node_mut(value, &pick(at)) {
                *text = match how % 4 {
                    0 => text.to_uppercase(),
                    1 => format!("{text}x"),
                    2 => {
                        text.pop();
                        text.clone()
                    }
                    _ => format!(" {text}"),
                };
            }
        }
        Mutation::Insert(at, key, new) => {
            if let Value::Object(map) = node_mut(value, &pick(at)) {
                map.insert(key.clone(), new.clone());
            }
        }
        Mutation::Nest(at, depth, arrays) => {
            let node = node_mut(value, &pick(at));
            let mut nested = node.take();
            for _ in 0..*depth {
                nested = if *arrays {
                    Value::Array(vec![nested])
                } else {
                    Value::Object(Map::from_iter([("x".to_owned(), nested)]))
                };
            }
            *node = nested;
        }
    }
}

/// A change to the serialized bytes.
#[derive(Debug, Clone)]
enum ByteMutation {
    /// Put bytes that are not UTF-8 (a lone continuation, an encoded surrogate, a truncated
    /// sequence, an overlong encoding) at this offset.
    NotUtf8(Index, Vec<u8>),
    /// Cut the text here.
    Truncate(Index),
    /// Overwrite one byte.
    Set(Index, u8),
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (
            any::<Index>(),
            prop::sample::select(vec![
                vec![0xff],
                vec![0x80],
                vec![0xc3],
                vec![0xed, 0xa0, 0x80],
                vec![0xf0, 0x9f, 0x98],
                vec![0xc0, 0xaf],
                vec![0xf8, 0x88, 0x80, 0x80, 0x80],
            ])
        )
            .prop_map(|(at, bytes)| ByteMutation::NotUtf8(at, bytes)),
        any::<Index>().prop_map(ByteMutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| ByteMutation::Set(at, b)),
    ]
}

fn apply_bytes(bytes: &mut Vec<u8>, mutation: &ByteMutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        ByteMutation::NotUtf8(at, bad) => {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, bad.iter().copied());
        }
        ByteMutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        ByteMutation::Set(at, byte) => {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
    }
}

/// Whether a loader path (`hosts[0].responses[1].headers.x-a`, `.` for the root) names a
/// place in `value`. Keys may themselves hold `.` or `[` (header names, stray keys), so every
/// way of reading the path against the document's real keys is tried.
fn resolves(value: &Value, path: &str) -> bool {
    fn rest(value: &Value, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        if let Some(after) = path.strip_prefix('[') {
            let Some((index, after)) = after.split_once(']') else {
                return false;
            };
            return match (value, index.parse::<usize>()) {
                (Value::Array(items), Ok(index)) => {
                    items.get(index).is_some_and(|item| rest(item, after))
                }
                _ => false,
            };
        }
        let path = path.strip_prefix('.').unwrap_or(path);
        let Value::Object(map) = value else {
            return false;
        };
        map.iter().any(|(key, child)| {
            path.strip_prefix(key.as_str()).is_some_and(|after| {
                (after.is_empty() || after.starts_with('.') || after.starts_with('['))
                    && rest(child, after)
            })
        })
    }
    path == "." || rest(value, path)
}

/// The path without its last segment (`.` when there is none).
fn parent(path: &str) -> String {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    if cut == 0 {
        ".".to_owned()
    } else {
        path[..cut].to_owned()
    }
}

/// What every load must satisfy: no panic (the caller), and an error that says where.
fn check_outcome(
    outcome: Result<(scenario::Scenario, scenario::Diagnostics), LoadError>,
    document: Option<&Value>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(_) => Ok(()),
        Err(LoadError::Syntax {
            line,
            column: _,
            message,
        }) => {
            prop_assert!(line >= 1, "line {line}");
            prop_assert!(!message.is_empty());
            prop_assert!(
                document.is_none(),
                "a syntax error for bytes serialized from a document: {message}"
            );
            Ok(())
        }
        Err(LoadError::Invalid(issues)) => {
            prop_assert!(!issues.is_empty(), "invalid without a reason");
            for issue in &issues {
                prop_assert!(
                    !issue.path.is_empty() && !issue.message.is_empty(),
                    "{issue}"
                );
                if let Some(document) = document {
                    // A missing field is reported at the object that lacks it, a check on a
                    // defaulted field at the field: the path or its parent is in the document.
                    prop_assert!(
                        resolves(document, &issue.path) || resolves(document, &parent(&issue.path)),
                        "{issue}: the path is not in the document {}",
                        document
                    );
                }
            }
            Ok(())
        }
        Err(other @ LoadError::Io { .. }) => {
            Err(TestCaseError::fail(format!("no file was read: {other}")))
        }
    }
}

fn seed_value() -> impl Strategy<Value = Value> {
    prop::sample::select(seeds())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes_load_or_say_where(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_outcome(scenario::from_bytes(&bytes), None)?;
    }

    #[test]
    fn arbitrary_text_loads_or_says_where(text in "[\\[\\]{}\",:0-9a-z\\\\ .\n-]{0,400}") {
        check_outcome(scenario::from_bytes(text.as_bytes()), None)?;
    }

    #[test]
    fn mutated_scenarios_load_or_say_where(
        seed in seed_value(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut document = seed;
        for mutation in &mutations {
            apply(&mut document, mutation);
        }
        // As a document (no recursion limit), and as the bytes a user would write.
        check_outcome(scenario::from_value(&document), Some(&document))?;
        let bytes = serde_json::to_vec_pretty(&document).expect("serializes");
        let nested_too_deep = matches!(
            scenario::from_bytes(&bytes),
            Err(LoadError::Syntax { ref message, .. }) if message.contains("recursion limit")
        );
        if !nested_too_deep {
            check_outcome(scenario::from_bytes(&bytes), Some(&document))?;
        }
    }

    #[test]
    fn mutated_scenario_bytes_load_or_say_where(
        seed in seed_value(),
        mutations in prop::collection::vec(mutation(), 0..3),
        byte_mutations in prop::collection::vec(byte_mutation(), 1..4),
    ) {
        let mut document = seed;
        for mutation in &mutations {
            apply(&mut document, mutation);
        }
        let mut bytes = serde_json::to_vec(&document).expect("serializes");
        for mutation in &byte_mutations {
            apply_bytes(&mut bytes, mutation);
        }
        let outcome = scenario::from_bytes(&bytes);
        // Bytes that still parse are checked against what they parse to.
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        check_outcome(outcome, parsed.as_ref())?;
    }
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("{\"x\":", "}")] {
        let depth = 100_000;
        let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        match scenario::from_bytes(text.as_bytes()) {
            Err(LoadError::Syntax { message, .. }) => {
                assert!(message.contains("recursion limit"), "{message}")
            }
            other => panic!("{open}: {other:?}"),
        }
        let hosts = format!(
            "{{\"hosts\": {}1{}}}",
            open.repeat(depth),
            close.repeat(depth)
        );
        assert!(matches!(
            scenario::from_bytes(hosts.as_bytes()),
            Err(LoadError::Syntax { .. })
        ));
    }
}

#[test]
fn the_path_reader_of_these_tests_reads_keys_with_dots() {
    let document = json!({"hosts": [{"responses": [{"headers": {"x.y[0]": "1"}}]}]});
    assert!(resolves(&document, "hosts[0].responses[0].headers.x.y[0]"));
    assert!(!resolves(&document, "hosts[1]"));
    assert!(resolves(&document, "."));
    assert_eq!(parent("hosts[0].certificate"), "hosts[0]");
    assert_eq!(parent("hosts[0]"), "hosts");
    assert_eq!(parent("hosts"), ".");
}
