//! The engine as a specification: default routing, each matcher, limits, determinism, and
//! properties over arbitrary request sequences.

use proptest::prelude::*;

use super::*;
use crate::scenario;

fn engine(json: &str) -> Engine {
    match scenario::from_bytes(json.as_bytes()) {
        Ok((scenario, _)) => Engine::new(&scenario),
        Err(err) => panic!("test scenario invalid:\n{err}"),
    }
}

const TWO_HOSTS: &str = r#"{
  "certificates": [{"name": "shared", "sans": ["a.test", "b.test"]}],
  "hosts": [
    {"names": ["a.test"], "certificate": "shared"},
    {"names": ["b.test"], "certificate": "shared"}
  ]
}"#;

fn conn(id: u64, sni: Option<&str>) -> ConnectionFacts {
    ConnectionFacts {
        id,
        listener: "main".to_owned(),
        sni: sni.map(str::to_owned),
        certificate_sans: vec!["a.test".to_owned(), "b.test".to_owned()],
        opened_at_ms: 0,
        port: 443,
    }
}

fn get(authority: &str, path: &str) -> RequestFacts {
    RequestFacts {
        method: "GET".to_owned(),
        authority: authority.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
    }
}

fn status(decision: &Decision) -> u16 {
    match &decision.instruction {
        Instruction::Respond(r) => r.status,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn a_host_answers_its_own_name_on_its_own_connection() {
    let mut e = engine(TWO_HOSTS);
    let d = e.decide(&conn(1, Some("a.test")), &get("a.test", "/"), 0);
    assert_eq!(status(&d), 200);
    assert_eq!(d.host.as_deref(), Some("a.test"));
    assert_eq!(d.rule, None);
}

#[test]
fn a_coalesced_request_for_another_host_gets_421_saying_why() {
    let mut e = engine(TWO_HOSTS);
    e.decide(&conn(1, Some("a.test")), &get("a.test", "/"), 0);
    let d = e.decide(&conn(1, Some("a.test")), &get("b.test", "/x"), 0);
    assert_eq!(status(&d), 421);
    assert!(d.coalesced);
    assert_eq!(
        d.misdirected_because.as_deref(),
        Some(
            "this connection was opened for a.test (SNI), whose virtual host a.test does not serve b.test"
        )
    );
    let Instruction::Respond(r) = &d.instruction else {
        unreachable!()
    };
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("421 Misdirected Request"), "{body}");
}

#[test]
fn without_sni_the_authority_picks_the_host() {
    let mut e = engine(TWO_HOSTS);
    assert_eq!(
        status(&e.decide(&conn(1, None), &get("b.test", "/"), 0)),
        200
    );
    let d = e.decide(&conn(1, None), &get("c.test", "/"), 0);
    assert_eq!(status(&d), 421);
    assert_eq!(
        d.misdirected_because.as_deref(),
        Some("no virtual host serves c.test on listener main")
    );
}

#[test]
fn attempts_count_repeats_of_the_same_method_authority_and_path() {
    let mut e = engine(TWO_HOSTS);
    let c = conn(1, Some("a.test"));
    assert_eq!(e.decide(&c, &get("a.test", "/"), 0).attempt, 1);
    assert_eq!(
        e.decide(&conn(2, Some("a.test")), &get("a.test", "/"), 0)
            .attempt,
        2
    );
    assert_eq!(e.decide(&c, &get("a.test", "/other"), 0).attempt, 1);
    e.reset();
    assert_eq!(e.decide(&c, &get("a.test", "/"), 0).attempt, 1);
}

#[test]
fn first_matching_rule_wins_and_later_ones_apply_when_limits_run_out() {
    let mut e = engine(
        r#"{
      "certificates": [{"name": "c", "sans": ["a.test"]}],
      "hosts": [{"names": ["a.test"], "certificate": "c"}],
      "rules": [
        {"name": "once", "action": {"respond": {"status": 421}}, "limit": {"total": 1}},
        {"name": "reset", "when": {"path": "/r"}, "action": {"reset_stream": {"code": "REFUSED_STREAM"}}}
      ]
    }"#,
    );
    let c = conn(1, Some("a.test"));
    let first = e.decide(&c, &get("a.test", "/r"), 0);
    assert_eq!(first.rule.as_deref(), Some("once"));
    assert_eq!(status(&first), 421);
    let second = e.decide(&c, &get("a.test", "/r"), 0);
    assert_eq!(second.rule.as_deref(), Some("reset"));
    assert_eq!(
        second.instruction,
        Instruction::Reset(ErrorCode::RefusedStream)
    );
    assert_eq!(status(&e.decide(&c, &get("a.test", "/"), 0)), 200);
}

#[test]
fn each_connection_and_request_matcher_selects_what_it_names() {
    let rule = |when: &str| {
        engine(&format!(
            r#"{{"certificates": [{{"name": "c", "sans": ["a.test", "b.test"]}}],
                "hosts": [{{"names": ["a.test", "b.test"], "certificate": "c"}}],
                "rules": [{{"name": "r", "when": {when}, "action": "close"}}]}}"#
        ))
    };
    let fired = |e: &mut Engine, c: &ConnectionFacts, r: &RequestFacts, now: u64| {
        e.decide(c, r, now).rule.is_some()
    };
    let a = conn(1, Some("a.test"));
    let mut e = rule(r#"{"authority_differs_from_sni": true}"#);
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));
    assert!(fired(&mut e, &a, &get("b.test", "/"), 0));

    let mut e = rule(r#"{"sni_absent": true}"#);
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));
    assert!(fired(&mut e, &conn(2, None), &get("a.test", "/"), 0));

    let mut e = rule(r#"{"coalesced": true}"#);
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));
    assert!(fired(&mut e, &a, &get("b.test", "/"), 0));

    let mut e = rule(r#"{"authority_not_covered": true}"#);
    assert!(!fired(&mut e, &a, &get("b.test", "/"), 0));
    assert!(fired(&mut e, &a, &get("c.test", "/"), 0));

    let mut e = rule(r#"{"request_on_connection": {"min": 2}}"#);
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));
    assert!(fired(&mut e, &a, &get("a.test", "/"), 0));

    let mut e = rule(r#"{"connection_age_ms": {"min": 1000}}"#);
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 999));
    assert!(fired(&mut e, &a, &get("a.test", "/"), 1000));

    let mut e = rule(r#"{"every_nth": 3}"#);
    let hits: Vec<bool> = (0..6)
        .map(|_| fired(&mut e, &a, &get("a.test", "/"), 0))
        .collect();
    assert_eq!(hits, [false, false, true, false, false, true]);

    let mut e = rule(r#"{"header": {"name": "X-Test", "value": "1"}}"#);
    let mut with = get("a.test", "/");
    with.headers.push(("x-test".to_owned(), "1".to_owned()));
    assert!(fired(&mut e, &a, &with, 0));
    assert!(!fired(&mut e, &a, &get("a.test", "/"), 0));

    let mut e = rule(r#"{"method": "post", "path": "/api/*", "sni": "*.test"}"#);
    let mut post = get("a.test", "/api/x");
    post.method = "POST".to_owned();
    assert!(fired(&mut e, &a, &post, 0));
    assert!(!fired(&mut e, &a, &get("a.test", "/api/x"), 0));
}

#[test]
fn a_graceful_goaway_still_answers_the_request() {
    let mut e = engine(
        r#"{"certificates": [{"name": "c", "sans": ["a.test"]}],
            "hosts": [{"names": ["a.test"], "certificate": "c"}],
            "rules": [{"action": {"goaway": {"graceful": true}}}]}"#,
    );
    let d = e.decide(&conn(1, Some("a.test")), &get("a.test", "/"), 0);
    match d.instruction {
        Instruction::Goaway {
            code,
            graceful,
            response: Some(r),
        } => {
            assert_eq!((code, graceful, r.status), (ErrorCode::NoError, true, 200));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.rule.as_deref(), Some("rules[0]"));
}

fn probability_engine(seed: u64) -> Engine {
    engine(&format!(
        r#"{{"seed": {seed}, "certificates": [{{"name": "c", "sans": ["a.test"]}}],
            "hosts": [{{"names": ["a.test"], "certificate": "c"}}],
            "rules": [{{"when": {{"probability": 0.25}}, "action": {{"respond": {{"status": 421}}}}}}]}}"#
    ))
}

#[test]
fn probability_is_seeded_and_close_to_what_was_asked() {
    let run = |seed| {
        let mut e = probability_engine(seed);
        (0..4000)
            .map(|i| {
                e.decide(&conn(i, Some("a.test")), &get("a.test", "/"), 0)
                    .rule
                    .is_some()
            })
            .collect::<Vec<_>>()
    };
    let first = run(7);
    assert_eq!(first, run(7), "same seed, same choices");
    assert_ne!(first, run(8), "another seed, other choices");
    let hits = first.iter().filter(|h| **h).count();
    assert!((850..1150).contains(&hits), "{hits} of 4000 at p=0.25");
}

#[derive(Debug, Clone)]
struct Step {
    connection: u64,
    sni: Option<&'static str>,
    authority: &'static str,
    path: &'static str,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0u64..4,
            prop::sample::select(vec![Some("a.test"), Some("b.test"), None]),
            prop::sample::select(vec!["a.test", "b.test", "c.test"]),
            prop::sample::select(vec!["/", "/x"]),
        )
            .prop_map(|(connection, sni, authority, path)| Step {
                connection,
                sni,
                authority,
                path,
            }),
        0..60,
    )
}

proptest! {
    #[test]
    fn a_limited_rule_fires_at_most_its_limits_whatever_the_requests(
        steps in steps(), total in 1u64..5, per_connection in 1u64..3, per_authority in 1u64..3,
    ) {
        let mut e = engine(&format!(
            r#"{{"certificates": [{{"name": "c", "sans": ["a.test", "b.test"]}}],
                "hosts": [{{"names": ["a.test", "b.test"], "certificate": "c"}}],
                "rules": [{{"name": "r", "action": {{"respond": {{"status": 421}}}},
                           "limit": {{"total": {total}, "per_connection": {per_connection}, "per_authority": {per_authority}}}}}]}}"#
        ));
        let mut fired = 0;
        let mut by_connection = BTreeMap::new();
        let mut by_authority = BTreeMap::new();
        for s in &steps {
            let d = e.decide(&conn(s.connection, s.sni), &get(s.authority, s.path), 0);
            if d.rule.is_some() {
                fired += 1;
                *by_connection.entry(s.connection).or_insert(0) += 1;
                *by_authority.entry(s.authority).or_insert(0) += 1;
            }
        }
        prop_assert!(fired <= total);
        prop_assert!(by_connection.values().all(|n| *n <= per_connection));
        prop_assert!(by_authority.values().all(|n| *n <= per_authority));
    }

    #[test]
    fn authority_equal_to_sni_never_matches_authority_differs_from_sni(steps in steps()) {
        let mut e = engine(
            r#"{"certificates": [{"name": "c", "sans": ["a.test", "b.test"]}],
                "hosts": [{"names": ["a.test", "b.test"], "certificate": "c"}],
                "rules": [{"when": {"authority_differs_from_sni": true}, "action": "close"}]}"#,
        );
        for s in &steps {
            let d = e.decide(&conn(s.connection, s.sni), &get(s.authority, s.path), 0);
            if s.sni == Some(s.authority) {
                prop_assert!(d.rule.is_none(), "{s:?}");
            } else {
                prop_assert!(d.rule.is_some(), "{s:?}");
            }
        }
    }

    #[test]
    fn without_rules_421_exactly_when_the_sni_host_does_not_serve_the_authority(steps in steps()) {
        let mut e = engine(TWO_HOSTS);
        for s in &steps {
            let d = e.decide(&conn(s.connection, s.sni), &get(s.authority, s.path), 0);
            let expected = match s.sni {
                Some(sni) if sni == s.authority => 200,
                Some(_) => 421,
                None if s.authority == "c.test" => 421,
                None => 200,
            };
            prop_assert_eq!(status(&d), expected, "{:?}", s);
        }
    }

    #[test]
    fn the_same_requests_give_the_same_decisions(steps in steps(), seed in any::<u64>()) {
        let decide_all = |mut e: Engine| {
            steps.iter().map(|s| e.decide(&conn(s.connection, s.sni), &get(s.authority, s.path), 0)).collect::<Vec<_>>()
        };
        prop_assert_eq!(decide_all(probability_engine(seed)), decide_all(probability_engine(seed)));
    }
}

#[test]
fn coalesced_means_the_authority_is_not_what_the_connection_was_opened_for() {
    let mut e = engine(TWO_HOSTS);
    // With SNI: the SNI names what the connection was opened for, from the first request on.
    let first = e.decide(&conn(1, Some("a.test")), &get("b.test", "/"), 0);
    assert!(first.coalesced, "b.test on a connection opened for a.test");
    let own = e.decide(&conn(1, Some("a.test")), &get("a.test", "/"), 0);
    assert!(
        !own.coalesced,
        "a.test on its own connection, whatever came before"
    );
    let upper = e.decide(&conn(2, Some("B.TEST")), &get("b.test", "/"), 0);
    assert!(!upper.coalesced, "SNI compares without case");
    // Without SNI: the connection's first authority stands in for it.
    let plain = conn(3, None);
    assert!(!e.decide(&plain, &get("a.test", "/"), 0).coalesced);
    assert!(e.decide(&plain, &get("b.test", "/"), 0).coalesced);
    assert!(!e.decide(&plain, &get("a.test", "/"), 0).coalesced);
}

fn page_route() -> Route {
    Route {
        name: "misdirect client page".to_owned(),
        method: "GET".to_owned(),
        path: "/_misdirect/client".to_owned(),
        response: Response {
            status: 200,
            headers: BTreeMap::new(),
            body: "page".into(),
        },
    }
}

#[test]
fn a_harness_route_answers_before_any_rule_and_is_not_counted() {
    let (scenario, _) = scenario::from_bytes(
        br#"{"listeners": [{"name": "main", "tls": false}],
             "hosts": [{"names": ["a.test"]}],
             "rules": [{"action": {"respond": {"status": 421}}}]}"#,
    )
    .expect("valid");
    let mut e = Engine::with_routes(&scenario, vec![page_route()]);
    let a = conn(1, None);
    let page = e.decide(&a, &get("b.test", "/_misdirect/client?x=1"), 0);
    assert_eq!(status(&page), 200);
    assert_eq!(page.rule.as_deref(), Some("misdirect client page"));
    assert_eq!(
        (
            page.request_number,
            page.attempt,
            page.request_on_connection
        ),
        (0, 1, 1)
    );
    assert!(!page.coalesced);
    let post = e.decide(
        &a,
        &RequestFacts {
            method: "POST".to_owned(),
            ..get("a.test", "/_misdirect/client")
        },
        0,
    );
    assert_eq!(
        status(&post),
        421,
        "only the route's method is the harness's"
    );
    let next = e.decide(&a, &get("a.test", "/"), 0);
    assert_eq!(status(&next), 421, "the scenario's rule still fires first");
    assert_eq!(next.request_number, 2, "the page was not counted");
    assert_eq!(
        next.request_on_connection, 2,
        "nor placed on the connection"
    );
    assert!(
        !next.coalesced,
        "the page's authority does not make a connection's first authority"
    );
}

#[test]
fn a_connection_opens_with_its_hosts_frames_else_its_listeners() {
    let e = engine(
        r#"{
      "listeners": [{"name": "main", "origin": ["a.test", "https://z.test:8443"],
                     "altsvc": [{"origin": "https://a.test", "value": "clear"}]}],
      "certificates": [{"name": "shared", "sans": ["a.test", "b.test", "c.test"]}],
      "hosts": [
        {"names": ["a.test"], "certificate": "shared"},
        {"names": ["b.test"], "certificate": "shared", "origin": [],
         "altsvc": [{"value": "h2=\":8443\""}]},
        {"names": ["c.test"], "certificate": "shared", "origin": ["c.test"]}
      ]
    }"#,
    );
    let on = |sni: Option<&str>, port: u16| {
        e.opening_frames(&ConnectionFacts {
            port,
            ..conn(1, sni)
        })
    };
    // The listener's, bare names with the connection's port (none written for 443).
    assert_eq!(
        on(Some("a.test"), 8443),
        OpeningFrames {
            origin: Some(vec![
                "https://a.test:8443".to_owned(),
                "https://z.test:8443".to_owned()
            ]),
            altsvc: vec![("https://a.test".to_owned(), "clear".to_owned())],
        }
    );
    assert_eq!(
        on(None, 443).origin,
        Some(vec![
            "https://a.test".to_owned(),
            "https://z.test:8443".to_owned()
        ])
    );
    // The host's own win: an empty ORIGIN list, ALTSVC for the host's first name.
    assert_eq!(
        on(Some("b.test"), 443),
        OpeningFrames {
            origin: Some(Vec::new()),
            altsvc: vec![("https://b.test".to_owned(), "h2=\":8443\"".to_owned())],
        }
    );
    // A host with ORIGIN only keeps the listener's ALTSVC.
    let c = on(Some("c.test"), 443);
    assert_eq!(c.origin, Some(vec!["https://c.test".to_owned()]));
    assert_eq!(c.altsvc.len(), 1);
    // Nothing configured: nothing sent.
    assert_eq!(
        engine(TWO_HOSTS).opening_frames(&conn(1, Some("a.test"))),
        OpeningFrames::default()
    );
}

#[test]
fn a_rule_may_only_send_frames_and_the_request_is_answered_normally() {
    let mut e = engine(
        r#"{
      "certificates": [{"name": "a", "sans": ["a.test"]}],
      "hosts": [{"names": ["a.test"], "certificate": "a"}],
      "rules": [{"name": "tell", "send": [{"origin": ["a.test"]}]}]
    }"#,
    );
    let d = e.decide(&conn(1, Some("a.test")), &get("a.test", "/"), 0);
    assert_eq!(d.rule.as_deref(), Some("tell"));
    assert_eq!(
        d.frames,
        [scenario::FrameSpec::Origin(vec!["a.test".to_owned()])]
    );
    assert!(matches!(d.instruction, Instruction::Respond(ref r) if r.status == 200));
    assert_eq!(d.host.as_deref(), Some("a.test"));
}

#[test]
fn an_unprocessed_request_counts_as_an_attempt_but_fires_no_rule() {
    let mut e = engine(
        r#"{
      "certificates": [{"name": "a", "sans": ["a.test"]}],
      "hosts": [{"names": ["a.test"], "certificate": "a"}],
      "rules": [{"name": "once", "when": {"attempt": 1}, "action": {"respond": {"status": 421}}}]
    }"#,
    );
    let first = e.unprocessed(&conn(1, Some("a.test")), &get("a.test", "/x"));
    assert_eq!((first.attempt, first.rule), (1, None));
    // Its retry is the second attempt, so the attempt-1 rule no longer fires.
    let retry = e.decide(&conn(2, Some("a.test")), &get("a.test", "/x"), 0);
    assert_eq!((retry.attempt, retry.rule), (2, None));
}
