//! Property tests of the scenario loader: no input makes it panic, every valid scenario
//! survives a trip through its own JSON form unchanged, and every kind of object in the
//! format rejects an unknown key at exactly its path.
//!
//! The unknown-key tests walk a valid scenario together with the crate's JSON Schema
//! (`misdirect schema`), so that each JSON object is known by the schema node that describes
//! it: a closed object (a struct, the `{"min", "max"}` form of a count range, the one-key
//! object of an enum variant) must reject any other key, while a free map (`headers`) may
//! have any. A kitchen-sink scenario uses every kind, and a test checks that the walks reach
//! every object kind the schema has.
//!
//! Default case counts keep each test to a few seconds; `PROPTEST_CASES=20000 cargo test
//! --release --test scenario_proptest` runs a longer search.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use misdirect::scenario::{
    self, Action, Alpn, AuthorityFilter, AuthorityName, CaSpec, CertificateSpec, ClientPlan,
    ClientStep, CountRange, ErrorCode, Expectation, GoawayAction, HeaderMatch, HostSpec, Issuer,
    KeyType, Level, Limit, ListenerSpec, Matcher, MaxAttempts, PlannedRequest, ResetAction,
    RespondAction, ResponseSpec, RetryExpectation, RuleSpec, Scenario, Signal, SniFallback,
    StoppedCoalescing, TimeSpec, Validity,
};
use proptest::prelude::*;
use scenario::LoadError;
use serde_json::{Value, json};

/// `default_cases`, unless the standard `PROPTEST_CASES` environment variable says otherwise.
fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z_.*/:0-9-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
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
            "address",
            "a.test",
            "127.0.0.1:0",
            "h2",
            "reject",
            "expect",
            "client",
            "steps",
            "request",
            "url",
            "https://a.test/",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
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
                    "ca",
                    "alpn",
                    "tls",
                    "unknown_sni",
                    "attempt",
                    "min",
                    "max",
                    "authority",
                    "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn count_range() -> impl Strategy<Value = CountRange> {
    prop_oneof![
        (1u64..10).prop_map(CountRange::Exactly),
        (opt(0u64..5), opt(5u64..50)).prop_map(|(min, max)| CountRange::Between { min, max }),
    ]
}

fn time_spec() -> impl Strategy<Value = (TimeSpec, TimeSpec)> {
    prop_oneof![
        (-1000i64..0, 1i64..1000)
            .prop_map(|(a, b)| (TimeSpec::Relative(a * 3600), TimeSpec::Relative(b * 60))),
        (0i64..1_000_000).prop_map(|s| (
            TimeSpec::Absolute(
                time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).expect("in range")
            ),
            TimeSpec::Absolute(
                time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).expect("in range")
            ),
        )),
    ]
}

const NAMES: &[&str] = &[
    "a.test",
    "b.test",
    "*.site.test",
    "x.site.test",
    "127.0.0.2",
    "::1",
];

fn certificate(index: usize) -> impl Strategy<Value = CertificateSpec> {
    (
        prop::sample::subsequence(NAMES, 1..=NAMES.len()),
        opt("[a-z]{1,8}"),
        prop::sample::select(vec![
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Ed25519,
        ]),
        prop::sample::select(vec![Issuer::Ca, Issuer::SelfSigned]),
        time_spec(),
    )
        .prop_map(
            move |(sans, common_name, key, issuer, (not_before, not_after))| CertificateSpec {
                name: format!("c{index}"),
                sans: sans.into_iter().map(str::to_owned).collect(),
                common_name,
                key,
                issuer,
                validity: Validity {
                    not_before,
                    not_after,
                },
            },
        )
}

fn listener(index: usize) -> impl Strategy<Value = ListenerSpec> {
    (
        any::<bool>(),
        prop::sample::select(vec![
            vec![Alpn::H2],
            vec![Alpn::Http11],
            vec![Alpn::H2, Alpn::Http11],
        ]),
        any::<bool>(),
        opt(Just(SniFallback::Reject)),
    )
        .prop_map(move |(tls, alpn, default_cert, no_sni)| ListenerSpec {
            name: format!("l{index}"),
            address: format!("127.0.0.{}:0", index + 1).parse().expect("address"),
            // The first listener is always TLS so that https client steps have a target.
            tls: tls || index == 0,
            alpn,
            unknown_sni: if default_cert && (tls || index == 0) {
                SniFallback::Certificate("c0".to_owned())
            } else {
                SniFallback::Reject
            },
            no_sni: if tls || index == 0 { no_sni } else { None },
            port_from: None,
            origin: None,
            altsvc: Vec::new(),
        })
}

fn host(index: usize, listeners: usize) -> impl Strategy<Value = HostSpec> {
    (
        opt(prop::sample::subsequence(
            (0..listeners).collect::<Vec<_>>(),
            1..=listeners,
        )),
        prop::collection::vec(
            (
                prop::sample::select(vec!["*", "/", "/a", "/static/*"]),
                200u16..600,
                opt("[a-z ]{0,10}"),
            ),
            0..3,
        ),
    )
        .prop_map(move |(on, responses)| HostSpec {
            names: vec![format!("h{index}.test"), format!("alt{index}.test")],
            certificate: Some("c0".to_owned()),
            listeners: on.map(|on| on.into_iter().map(|i| format!("l{i}")).collect()),
            responses: responses
                .into_iter()
                .map(|(path, status, body)| ResponseSpec {
                    path: path.to_owned(),
                    status,
                    headers: BTreeMap::from([("x-test".to_owned(), "1".to_owned())]),
                    body,
                    body_file: None,
                    file_body: None,
                })
                .collect(),
            origin: None,
            altsvc: Vec::new(),
        })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::NoError,
        ErrorCode::RefusedStream,
        ErrorCode::Cancel,
        ErrorCode::EnhanceYourCalm,
        ErrorCode::Http11Required,
    ])
}

fn rule(listeners: usize) -> impl Strategy<Value = RuleSpec> {
    let matcher = (
        opt(prop::sample::select(vec!["h0.test", "*.test"])),
        opt(prop::sample::select(vec!["/a", "/static/*"])),
        opt(prop::sample::select(vec!["GET", "POST"])),
        opt(("[a-z]{1,6}", opt("[a-z0-9]{0,6}"))
            .prop_map(|(name, value)| HeaderMatch { name, value })),
        opt((0..listeners).prop_map(|i| format!("l{i}"))),
        (opt(any::<bool>()), opt(any::<bool>()), opt(any::<bool>())),
        (
            opt(count_range()),
            opt(count_range()),
            opt(1u64..5),
            opt(count_range()),
        ),
        opt(0.0f64..=1.0),
    )
        .prop_map(
            |(authority, path, method, header, listener, flags, counts, probability)| Matcher {
                authority: authority.map(str::to_owned),
                path: path.map(str::to_owned),
                method: method.map(str::to_owned),
                header,
                listener,
                sni: None,
                sni_absent: flags.0,
                authority_differs_from_sni: flags.1,
                authority_not_covered: flags.2,
                coalesced: flags.0,
                request_on_connection: counts.0,
                attempt: counts.1,
                every_nth: counts.2,
                connection_age_ms: counts.3,
                probability,
            },
        );
    let action = prop_oneof![
        (
            prop::sample::select(vec![200u16, 421, 503]),
            opt("[a-z]{0,8}")
        )
            .prop_map(|(status, body)| {
                Action::Respond(RespondAction {
                    status,
                    headers: BTreeMap::new(),
                    body,
                    body_file: None,
                    file_body: None,
                })
            }),
        error_code().prop_map(|code| Action::ResetStream(ResetAction { code })),
        (error_code(), any::<bool>()).prop_map(|(code, graceful)| Action::Goaway(GoawayAction {
            // A graceful GOAWAY carries NO_ERROR (validation insists).
            code: if graceful { ErrorCode::NoError } else { code },
            graceful,
        })),
        Just(Action::Close),
    ];
    (
        opt("[a-z-]{1,10}"),
        matcher,
        action,
        0u64..500,
        (opt(1u64..5), opt(1u64..5), opt(1u64..5)),
    )
        .prop_map(|(name, when, action, delay_ms, limits)| RuleSpec {
            name,
            when,
            action: Some(action),
            send: Vec::new(),
            delay_ms,
            limit: Limit {
                total: limits.0,
                per_connection: limits.1,
                per_authority: limits.2,
            },
        })
}

fn client(hosts: usize) -> impl Strategy<Value = ClientPlan> {
    let step = prop_oneof![
        (
            0..hosts,
            prop::sample::select(vec!["GET", "POST"]),
            opt("[a-z]{0,10}")
        )
            .prop_map(|(h, method, body)| ClientStep::Request(PlannedRequest {
                method: method.to_owned(),
                url: format!("https://h{h}.test/p"),
                listener: Some("l0".to_owned()),
                headers: BTreeMap::new(),
                body,
            })),
        (0u64..100).prop_map(ClientStep::PauseMs),
    ];
    prop::collection::vec(step, 0..5).prop_map(|steps| ClientPlan { steps })
}

fn level() -> impl Strategy<Value = Option<Level>> {
    opt(prop::sample::select(vec![
        Level::Must,
        Level::Should,
        Level::Robust,
    ]))
}

fn expectation() -> impl Strategy<Value = Expectation> {
    let authority = || opt(Just("h0.test".to_owned()));
    prop_oneof![
        (authority(), 1u64..10_000, level()).prop_map(|(authority, within_ms, level)| {
            Expectation::RetriedOnNewConnection(RetryExpectation {
                authority,
                after: Signal::Misdirected,
                within_ms,
                level,
            })
        }),
        (authority(), level()).prop_map(|(authority, level)| {
            Expectation::NoRetryOnSameConnection(AuthorityFilter { authority, level })
        }),
        (authority(), 0u64..100, level()).prop_map(|(authority, grace_ms, level)| {
            Expectation::StoppedCoalescing(StoppedCoalescing {
                authority,
                grace_ms,
                level,
            })
        }),
        level().prop_map(|level| Expectation::Coalesced(AuthorityName {
            authority: "h1.test".to_owned(),
            level,
        })),
        level().prop_map(|level| Expectation::NotCoalesced(AuthorityName {
            authority: "h1.test".to_owned(),
            level,
        })),
        (1u64..5, authority(), level()).prop_map(|(max, authority, level)| {
            Expectation::MaxAttempts(MaxAttempts {
                max,
                authority,
                level,
            })
        }),
        (authority(), level()).prop_map(|(authority, level)| Expectation::RetrySameBody(
            AuthorityFilter { authority, level }
        )),
        (authority(), level()).prop_map(|(authority, level)| Expectation::RespectedOrigin(
            AuthorityFilter { authority, level }
        )),
        count_range().prop_map(Expectation::Connections),
        count_range().prop_map(Expectation::Requests),
    ]
}

fn valid_scenario() -> impl Strategy<Value = Scenario> {
    (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(certs, listeners, hosts)| {
        (
            (0..certs).map(certificate).collect::<Vec<_>>(),
            (0..listeners).map(listener).collect::<Vec<_>>(),
            (0..hosts).map(|i| host(i, listeners)).collect::<Vec<_>>(),
            prop::collection::vec(rule(listeners), 0..4),
            opt(client(hosts)),
            prop::collection::vec(expectation(), 0..4),
            (any::<u64>(), opt("[a-z -]{1,20}"), any::<bool>()),
        )
            .prop_map(
                |(certificates, listeners, hosts, rules, client, expect, (seed, name, reuse))| {
                    Scenario {
                        name,
                        description: None,
                        id: None,
                        cause: None,
                        rfc: Vec::new(),
                        seed,
                        ca: CaSpec {
                            reuse,
                            ..CaSpec::default()
                        },
                        certificates,
                        listeners,
                        hosts,
                        rules,
                        client,
                        expect,
                        limits: Default::default(),
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = scenario::from_bytes(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_errors_name_a_path(value in json_value()) {
        if let Err(err) = scenario::from_value(&value) {
            for line in err.lines() {
                prop_assert!(line.contains(": "), "no path in {line:?}");
            }
        }
    }

    #[test]
    fn valid_scenarios_round_trip_through_json(original in valid_scenario()) {
        let json = serde_json::to_vec_pretty(&original).expect("serializes");
        let (parsed, _) = match scenario::from_bytes(&json) {
            Ok(parsed) => parsed,
            Err(err) => {
                return Err(TestCaseError::fail(format!(
                    "generated scenario rejected:\n{err}\n{}",
                    String::from_utf8_lossy(&json)
                )));
            }
        };
        prop_assert_eq!(parsed, original);
    }
}

/// A valid scenario that uses every kind of object of the format at least once: every
/// section, every matcher field with count ranges in both forms, every action, every client
/// step and every expectation.
fn kitchen_sink() -> Value {
    json!({
        "name": "kitchen-sink",
        "description": "every kind of object",
        "seed": 7,
        "limits": {"idle_timeout_secs": 30, "max_connections": 500},
        "ca": {"common_name": "sink CA", "key": "ecdsa-p384", "reuse": false},
        "certificates": [
            {"name": "ab", "sans": ["a.test", "b.test", "127.0.0.1"], "common_name": "a.test",
             "key": "ed25519", "issuer": "ca",
             "validity": {"not_before": "-1h", "not_after": "2099-01-01T00:00:00Z"}},
            {"name": "self", "sans": ["*.site.test"], "issuer": "self", "validity": {}}
        ],
        "listeners": [
            {"name": "main", "address": "127.0.0.1:0", "tls": true, "alpn": ["h2", "http/1.1"],
             "unknown_sni": {"certificate": "self"}, "no_sni": {"certificate": "ab"}},
            {"name": "twin", "address": "127.0.0.2:0", "port_from": "main", "unknown_sni": "reject",
             "no_sni": "reject"},
            {"name": "plain", "address": "127.0.0.3:0", "tls": false}
        ],
        "hosts": [
            {"names": ["a.test"], "certificate": "ab", "listeners": ["main", "twin"],
             "origin": ["a.test", "https://b.test:8443"],
             "altsvc": [{"value": "h2=\":443\""}, {"origin": "https://b.test", "value": "clear"}],
             "responses": [
                 {"path": "/x", "status": 200, "headers": {"x-a": "1"}, "body": "hi"},
                 {"path": "/static/*"}
             ]},
            {"names": ["b.test", "*.site.test"], "certificate": "ab", "listeners": ["main", "plain"]}
        ],
        "rules": [
            {"name": "everything",
             "when": {"authority": "a.test", "path": "/x", "method": "GET",
                      "header": {"name": "x-h", "value": "1"}, "listener": "main", "sni": "a.test",
                      "sni_absent": false, "authority_differs_from_sni": false,
                      "authority_not_covered": false, "coalesced": false,
                      "request_on_connection": {"min": 1, "max": 3}, "attempt": {"min": 1},
                      "every_nth": 1, "connection_age_ms": {"max": 60000}, "probability": 1.0},
             "action": {"respond": {"status": 421, "headers": {"x-r": "1"}, "body": "no"}},
             "delay_ms": 1,
             "limit": {"total": 5, "per_connection": 2, "per_authority": 3}},
            {"when": {"attempt": 1, "request_on_connection": {}, "header": {"name": "x-only"}},
             "action": {"reset_stream": {"code": "REFUSED_STREAM"}}, "limit": {}},
            {"when": {}, "action": {"goaway": {"code": "NO_ERROR", "graceful": true}}},
            {"action": {"reset_stream": {}}},
            {"action": {"goaway": {}}},
            {"action": "close"},
            {"send": [{"origin": []}, {"altsvc": {"value": "h2=\"alt.test:443\"; ma=60"}},
                      {"goaway": {"last_stream_id": "highest_seen", "code": "ENHANCE_YOUR_CALM",
                                  "debug": "d"}},
                      {"goaway": {"last_stream_id": 7}}, {"goaway": {}}]}
        ],
        "client": {"steps": [
            {"request": {"method": "POST", "url": "https://a.test/x", "listener": "main",
                         "headers": {"x-h": "1"}, "body": "payload"}},
            {"pause_ms": 5},
            {"request": {"url": "http://b.test/"}}
        ]},
        "expect": [
            {"retried_on_new_connection": {"authority": "a.test", "after": "421", "within_ms": 100}},
            {"retried": {"after": "refused_stream"}},
            {"no_retry_on_same_connection": {"authority": "a.test"}},
            {"stopped_coalescing": {"authority": "b.test", "grace_ms": 10}},
            {"coalesced": {"authority": "b.test"}},
            {"not_coalesced": {"authority": "a.test"}},
            {"max_attempts": {"max": 2, "authority": "a.test"}},
            {"retry_same_body": {}},
            {"connections": {"min": 1, "max": 4}},
            {"requests": {"min": 1}},
            {"requests": 3}
        ]
    })
}

/// The scenarios the unknown-key walks start from: the kitchen sink and every bundled one.
fn corpus() -> Vec<(String, Value)> {
    let mut scenarios = vec![("kitchen sink".to_owned(), kitchen_sink())];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        scenarios.push((
            file.display().to_string(),
            serde_json::from_str(&text).expect("JSON"),
        ));
    }
    scenarios
}

fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema as JSON")
}

/// A JSON object inside a scenario, as the schema describes it.
#[derive(Debug, Clone)]
struct Object {
    /// Its path as the loader writes paths (`""` for the top level).
    path: String,
    /// JSON pointer of the schema node that describes it (after `$ref`s).
    kind: String,
    /// The keys the schema allows in it.
    keys: BTreeSet<String>,
    /// Where it is, as JSON pointer tokens, to insert a key.
    at: Vec<String>,
}

/// Follows `$ref`s to the node and its pointer.
fn resolve<'a>(root: &'a Value, mut node: &'a Value, mut pointer: String) -> (&'a Value, String) {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let target = reference.strip_prefix('#').expect("local $ref");
        node = root
            .pointer(target)
            .unwrap_or_else(|| panic!("dangling {reference}"));
        pointer = target.to_owned();
    }
    (node, pointer)
}

/// Whether `value` fits `node`, as far as choosing a branch of `anyOf` / `oneOf` needs.
fn fits(root: &Value, node: &Value, value: &Value) -> bool {
    let (node, _) = resolve(root, node, String::new());
    for choice in ["anyOf", "oneOf"] {
        if let Some(branches) = node.get(choice).and_then(Value::as_array) {
            return branches.iter().any(|branch| fits(root, branch, value));
        }
    }
    if let Some(constant) = node.get("const") {
        return constant == value;
    }
    if let Some(options) = node.get("enum").and_then(Value::as_array) {
        return options.contains(value);
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    let type_fits = types.iter().any(|t| match *t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("schema type {other}"),
    });
    if !type_fits {
        return false;
    }
    if let (Some(object), Some(properties)) = (
        value.as_object(),
        node.get("properties").and_then(Value::as_object),
    ) {
        let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
        if closed && object.keys().any(|k| !properties.contains_key(k)) {
            return false;
        }
        let required = node.get("required").and_then(Value::as_array);
        if required
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|k| !object.contains_key(k))
        {
            return false;
        }
    }
    true
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Every JSON object in `value`, described by `node` (at schema pointer `pointer`).
fn objects_in(
    root: &Value,
    node: &Value,
    pointer: String,
    value: &Value,
    path: &str,
    at: &mut Vec<String>,
    out: &mut Vec<Object>,
) {
    let (node, pointer) = resolve(root, node, pointer);
    for choice in ["anyOf", "oneOf"] {
        if let Some(branches) = node.get(choice).and_then(Value::as_array) {
            let (index, branch) = branches
                .iter()
                .enumerate()
                .find(|(_, branch)| fits(root, branch, value))
                .unwrap_or_else(|| panic!("{path}: no branch of {pointer} fits {value}"));
            let pointer = format!("{pointer}/{choice}/{index}");
            return objects_in(root, branch, pointer, value, path, at, out);
        }
    }
    match value {
        Value::Object(object) => {
            let properties = node.get("properties").and_then(Value::as_object);
            match (properties, node.get("additionalProperties")) {
                // A struct-like object, closed or not (whether the schema closes it is
                // `every_kind_of_object_in_the_schema_is_closed`'s business; whether the
                // loader does is the caller's).
                (Some(properties), _) => {
                    out.push(Object {
                        path: path.to_owned(),
                        kind: pointer.clone(),
                        keys: properties.keys().cloned().collect(),
                        at: at.clone(),
                    });
                    for (key, item) in object {
                        let schema = properties
                            .get(key)
                            .unwrap_or_else(|| panic!("{path}: {key} is not in {pointer}"));
                        at.push(key.clone());
                        let pointer = format!("{pointer}/properties/{key}");
                        objects_in(root, schema, pointer, item, &child_path(path, key), at, out);
                        at.pop();
                    }
                }
                (None, Some(items @ Value::Object(_))) => {
                    // A free map (`headers`): any key is allowed.
                    for (key, item) in object {
                        at.push(key.clone());
                        let pointer = format!("{pointer}/additionalProperties");
                        objects_in(root, items, pointer, item, &child_path(path, key), at, out);
                        at.pop();
                    }
                }
                _ => panic!(
                    "{path}: the schema node {pointer} describes an object with neither properties nor a value schema: {node}"
                ),
            }
        }
        Value::Array(items) => {
            let schema = node
                .get("items")
                .unwrap_or_else(|| panic!("{path}: no items in {pointer}"));
            for (index, item) in items.iter().enumerate() {
                at.push(index.to_string());
                let pointer = format!("{pointer}/items");
                objects_in(
                    root,
                    schema,
                    pointer,
                    item,
                    &format!("{path}[{index}]"),
                    at,
                    out,
                );
                at.pop();
            }
        }
        _ => {}
    }
}

fn objects_of(root: &Value, scenario: &Value) -> Vec<Object> {
    let mut out = Vec::new();
    objects_in(
        root,
        root,
        String::new(),
        scenario,
        "",
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// Every node of the schema that describes a JSON object with named properties: the kinds
/// of object the format has. (Schemas as the walk names them: `$ref`s resolved.)
fn object_kinds(root: &Value) -> BTreeSet<String> {
    fn visit(node: &Value, pointer: &str, out: &mut BTreeSet<String>) {
        match node {
            Value::Object(map) => {
                if map.contains_key("properties") {
                    out.insert(pointer.to_owned());
                }
                for (key, child) in map {
                    // Defaults and constants are values, not schemas.
                    if key == "default" || key == "const" || key == "enum" {
                        continue;
                    }
                    let key_token = key.replace('~', "~0").replace('/', "~1");
                    visit(child, &format!("{pointer}/{key_token}"), out);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    visit(child, &format!("{pointer}/{index}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    visit(root, "", &mut out);
    // Property maps contain schemas with "properties" only as names; keep real nodes.
    out.retain(|pointer| !pointer.ends_with("/properties/properties"));
    out
}

/// Every property name in the schema: a key inserted as "unknown" must be none of them (a
/// variant's name inserted next to another variant would be a different mistake).
fn known_words(root: &Value) -> BTreeSet<String> {
    fn visit(node: &Value, out: &mut BTreeSet<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::Object(properties)) = map.get("properties") {
                    out.extend(properties.keys().cloned());
                }
                map.values().for_each(|child| visit(child, out));
            }
            Value::Array(items) => items.iter().for_each(|child| visit(child, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    visit(root, &mut out);
    out
}

/// Inserts `key: extra` into the object at `at` and checks that the loader rejects exactly
/// that key, at exactly its path, and nothing else.
fn assert_unknown_key_rejected(
    scenario: &Value,
    object: &Object,
    key: &str,
    extra: Value,
) -> Result<(), String> {
    assert!(
        !object.keys.contains(key),
        "{key:?} is a key a {} object may have",
        object.kind
    );
    let mut changed = scenario.clone();
    let mut target = &mut changed;
    for token in &object.at {
        target = match target {
            Value::Object(map) => map.get_mut(token).expect("key on the way"),
            Value::Array(items) => &mut items[token.parse::<usize>().expect("index")],
            _ => unreachable!("a path runs through objects and arrays"),
        };
    }
    target
        .as_object_mut()
        .expect("an object")
        .insert(key.to_owned(), extra);
    let expected = child_path(&object.path, key);
    match scenario::from_value(&changed) {
        Ok(_) => Err(format!(
            "{expected}: unknown key accepted in a {} object",
            object.kind
        )),
        Err(LoadError::Invalid(issues)) => {
            let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
            if paths == [expected.as_str()] {
                Ok(())
            } else {
                Err(format!(
                    "unknown key {key:?} in a {} object at {:?}: expected one issue at {expected}, got {issues:#?}",
                    object.kind, object.path
                ))
            }
        }
        Err(other) => Err(format!("{expected}: {other}")),
    }
}

#[test]
fn the_corpus_is_valid_and_reaches_every_kind_of_object_the_schema_has() {
    let root = schema();
    let mut reached = BTreeSet::new();
    for (name, scenario) in corpus() {
        if let Err(err) = scenario::from_value(&scenario) {
            panic!("{name} is not valid:\n{err}");
        }
        reached.extend(objects_of(&root, &scenario).into_iter().map(|o| o.kind));
    }
    let kinds = object_kinds(&root);
    let missed: Vec<&String> = kinds.difference(&reached).collect();
    assert!(
        missed.is_empty(),
        "no scenario of the corpus has an object of these kinds (extend kitchen_sink()): {missed:#?}"
    );
    // The walk must see count ranges' object form and every action's object.
    for kind in [
        "/$defs/CountRange/anyOf/1",
        "/$defs/Action/oneOf/0",
        "/$defs/Action/oneOf/1",
        "/$defs/Action/oneOf/2",
        "/$defs/RespondAction",
        "/$defs/ResetAction",
        "/$defs/GoawayAction",
    ] {
        assert!(reached.contains(kind), "{kind} not reached: {reached:#?}");
    }
}

#[test]
fn every_kind_of_object_in_the_schema_is_closed() {
    let root = schema();
    for kind in object_kinds(&root) {
        let node = root.pointer(&kind).expect("a node");
        assert_eq!(
            node.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{kind} allows unknown keys: {node}"
        );
    }
}

#[test]
fn every_object_of_every_corpus_scenario_rejects_an_unknown_key_at_its_path() {
    let root = schema();
    let mut checked = 0;
    for (name, scenario) in corpus() {
        for object in objects_of(&root, &scenario) {
            // Before and after every real key (maps are sorted), so that enum objects see the
            // stray key both first and second.
            for key in ["_unknown", "zz_unknown"] {
                if let Err(why) = assert_unknown_key_rejected(&scenario, &object, key, json!(1)) {
                    panic!("{name}: {why}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} objects checked");
}

/// A key that is no property name of the schema.
fn unknown_key() -> impl Strategy<Value = String> {
    let known = known_words(&schema());
    "[a-zA-Z_][a-zA-Z0-9_ .-]{0,12}"
        .prop_filter("a known property name", move |key| !known.contains(key))
}

/// A corpus scenario or a generated one, as JSON.
fn some_scenario() -> impl Strategy<Value = Value> {
    let corpus: Vec<Value> = corpus().into_iter().map(|(_, value)| value).collect();
    prop_oneof![
        prop::sample::select(corpus),
        valid_scenario().prop_map(|s| serde_json::to_value(&s).expect("serializes")),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_object_rejects_any_unknown_key_at_its_path(
        scenario in some_scenario(),
        pick in any::<prop::sample::Index>(),
        key in unknown_key(),
        extra in json_value(),
    ) {
        let objects = objects_of(&schema(), &scenario);
        let object = pick.get(&objects);
        if let Err(why) = assert_unknown_key_rejected(&scenario, object, &key, extra) {
            return Err(TestCaseError::fail(why));
        }
    }
}
