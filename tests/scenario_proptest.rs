//! Property tests of the scenario loader: no input makes it panic, and every valid scenario
//! survives a trip through its own JSON form unchanged.

use std::collections::BTreeMap;

use misdirect::scenario::{
    self, Action, Alpn, AuthorityFilter, AuthorityName, CaSpec, CertificateSpec, ClientPlan,
    ClientStep, CountRange, ErrorCode, Expectation, GoawayAction, HeaderMatch, HostSpec, Issuer,
    KeyType, Limit, ListenerSpec, Matcher, MaxAttempts, PlannedRequest, ResetAction, RespondAction,
    ResponseSpec, RetryExpectation, RuleSpec, Scenario, Signal, SniFallback, StoppedCoalescing,
    TimeSpec, Validity,
};
use proptest::prelude::*;
use serde_json::Value;

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
                })
                .collect(),
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
            action,
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

fn expectation() -> impl Strategy<Value = Expectation> {
    let authority = || opt(Just("h0.test".to_owned()));
    prop_oneof![
        (authority(), 1u64..10_000).prop_map(|(authority, within_ms)| {
            Expectation::RetriedOnNewConnection(RetryExpectation {
                authority,
                after: Signal::Misdirected,
                within_ms,
            })
        }),
        authority().prop_map(
            |authority| Expectation::NoRetryOnSameConnection(AuthorityFilter { authority })
        ),
        (authority(), 0u64..100).prop_map(|(authority, grace_ms)| {
            Expectation::StoppedCoalescing(StoppedCoalescing {
                authority,
                grace_ms,
            })
        }),
        Just(Expectation::Coalesced(AuthorityName {
            authority: "h1.test".to_owned()
        })),
        Just(Expectation::NotCoalesced(AuthorityName {
            authority: "h1.test".to_owned()
        })),
        (1u64..5, authority())
            .prop_map(|(max, authority)| Expectation::MaxAttempts(MaxAttempts { max, authority })),
        authority().prop_map(|authority| Expectation::RetrySameBody(AuthorityFilter { authority })),
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
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
