//! Expectations on hand-written journals, passing and failing. The builder reads like the
//! client behaviour it stages.

use super::*;
use crate::scenario::{
    AuthorityFilter, AuthorityName, MaxAttempts, RetryExpectation, StoppedCoalescing,
};

#[derive(Default)]
struct Journal {
    events: Vec<Event>,
    sni: BTreeMap<u64, Option<String>>,
    now_ms: f64,
}

const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl Journal {
    fn push(&mut self, kind: EventKind) {
        self.events.push(Event {
            seq: self.events.len() as u64 + 1,
            time: String::new(),
            elapsed_ms: self.now_ms,
            kind,
        });
    }

    fn connection(mut self, id: u64, sni: Option<&str>) -> Self {
        self.sni.insert(id, sni.map(str::to_owned));
        self.push(EventKind::ConnectionOpened {
            connection: id,
            listener: "main".into(),
            local: "127.0.0.1:1".into(),
            peer: "127.0.0.1:2".into(),
        });
        self
    }

    fn after(mut self, ms: f64) -> Self {
        self.now_ms += ms;
        self
    }

    fn request(
        self,
        connection: u64,
        method: &str,
        authority: &str,
        path: &str,
        status: u16,
    ) -> Self {
        self.request_with_body(connection, method, authority, path, status, EMPTY_SHA)
    }

    fn request_with_body(
        mut self,
        connection: u64,
        method: &str,
        authority: &str,
        path: &str,
        status: u16,
        body_sha256: &str,
    ) -> Self {
        self.now_ms += 1.0;
        let sni = self.sni.get(&connection).cloned().flatten();
        // As the engine computes it (the SNI-less fallback is the engine's own test).
        let coalesced = sni.as_deref().is_some_and(|s| s != authority);
        self.push(EventKind::Request(Box::new(RequestEvent {
            connection,
            stream: Some(1),
            request_on_connection: 1,
            request_number: 1,
            protocol: crate::journal::Protocol::H2,
            method: method.into(),
            scheme: crate::journal::Scheme::Https,
            authority: authority.into(),
            path: path.into(),
            sni,
            attempt: 1,
            coalesced,
            body_bytes: 0,
            body_sha256: body_sha256.into(),
            rule: None,
            host: None,
            action: Action::Respond,
            status: Some(status),
            reset_code: None,
            misdirected_because: None,
            error: None,
            received_ms: self.now_ms,
            duration_ms: 0.5,
        })));
        self
    }

    fn verdict(&self, expectation: Expectation) -> Check {
        evaluate(&[expectation], &self.events, false)
            .checks
            .remove(0)
    }
}

fn retried(authority: Option<&str>) -> Expectation {
    Expectation::RetriedOnNewConnection(RetryExpectation {
        authority: authority.map(str::to_owned),
        after: crate::scenario::Signal::Misdirected,
        within_ms: 5000,
        level: None,
    })
}

fn stopped(authority: Option<&str>) -> Expectation {
    Expectation::StoppedCoalescing(StoppedCoalescing {
        authority: authority.map(str::to_owned),
        grace_ms: 0,
        level: None,
    })
}

fn filter(authority: Option<&str>) -> AuthorityFilter {
    AuthorityFilter {
        authority: authority.map(str::to_owned),
        level: None,
    }
}

/// A browser-like client: coalesces b.test onto a.test's connection, gets 421, retries on a
/// new connection for b.test, and keeps using it.
fn correct_client() -> Journal {
    Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "a.test", "/", 200)
        .request(1, "GET", "b.test", "/x", 421)
        .connection(2, Some("b.test"))
        .request(2, "GET", "b.test", "/x", 200)
        .after(200.0)
        .request(2, "GET", "b.test", "/y", 200)
}

#[test]
fn a_correct_client_passes_every_retry_expectation() {
    let j = correct_client();
    for expectation in [
        retried(Some("b.test")),
        Expectation::NoRetryOnSameConnection(filter(None)),
        stopped(Some("b.test")),
        Expectation::Coalesced(AuthorityName {
            authority: "b.test".into(),
            level: None,
        }),
        Expectation::MaxAttempts(MaxAttempts {
            max: 2,
            authority: None,
            level: None,
        }),
        Expectation::RetrySameBody(filter(None)),
        Expectation::Connections(CountRange::Exactly(2)),
        Expectation::Requests(CountRange::Between {
            min: Some(3),
            max: None,
        }),
    ] {
        let check = j.verdict(expectation.clone());
        assert_eq!(
            check.status,
            Status::Pass,
            "{expectation:?}: {}",
            check.explanation
        );
    }
}

#[test]
fn a_421_never_retried_fails_with_a_sentence_naming_request_and_connection() {
    let j = Journal::default()
        .connection(3, Some("a.test"))
        .request(3, "GET", "b.test", "/x", 421);
    let check = j.verdict(retried(None));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.explanation,
        "GET https://b.test/x got 421 on connection 3 (SNI a.test) and was never retried on another connection"
    );
    assert_eq!(check.evidence, [2]);
}

#[test]
fn a_retry_on_the_same_connection_fails_both_retry_expectations() {
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "b.test", "/x", 421)
        .request(1, "GET", "b.test", "/x", 421);
    let check = j.verdict(retried(None));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check
            .explanation
            .contains("retried only on the same connection (seq 3)"),
        "{}",
        check.explanation
    );
    let check = j.verdict(Expectation::NoRetryOnSameConnection(filter(None)));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.evidence, [2, 3]);
}

#[test]
fn a_retry_too_late_fails_the_time_bound() {
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "b.test", "/", 421)
        .after(6000.0)
        .connection(2, Some("b.test"))
        .request(2, "GET", "b.test", "/", 200);
    let check = j.verdict(retried(None));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.explanation.contains("only after 600"),
        "{}",
        check.explanation
    );
}

#[test]
fn a_retry_with_another_body_is_not_the_same_request_and_fails_same_body() {
    let j = Journal::default()
        .connection(1, Some("api.test"))
        .request_with_body(1, "POST", "api.test", "/orders", 421, "aaaa")
        .connection(2, Some("api.test"))
        .request_with_body(2, "POST", "api.test", "/orders", 201, EMPTY_SHA);
    assert_eq!(j.verdict(retried(None)).status, Status::Fail);
    let check = j.verdict(Expectation::RetrySameBody(filter(None)));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check
            .explanation
            .starts_with("POST https://api.test/orders: the retry on connection 2"),
        "{}",
        check.explanation
    );
}

#[test]
fn coalescing_again_after_a_421_fails_stopped_coalescing() {
    let j = correct_client()
        .after(100.0)
        .request(1, "GET", "b.test", "/z", 421);
    let check = j.verdict(stopped(Some("b.test")));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.explanation,
        "GET https://b.test/x got 421 on connection 1 (SNI a.test), yet b.test was later sent on connection 1 (SNI a.test) again"
    );
}

#[test]
fn requests_already_in_flight_when_the_421_went_out_are_not_held_against_the_client() {
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "b.test", "/style.css", 421)
        // Sent together with the first: it arrived 0.1 ms later, before that was answered.
        .after(-0.9)
        .request(1, "GET", "b.test", "/script.js", 421);
    let check = j.verdict(stopped(None));
    assert_eq!(check.status, Status::Pass, "{}", check.explanation);
}

#[test]
fn coalesced_and_not_coalesced_are_opposites_and_need_the_authority_requested() {
    let separate = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "a.test", "/", 200)
        .connection(2, Some("b.test"))
        .request(2, "GET", "b.test", "/", 200);
    let b = || AuthorityName {
        authority: "b.test".into(),
        level: None,
    };
    assert_eq!(
        separate.verdict(Expectation::NotCoalesced(b())).status,
        Status::Pass
    );
    assert_eq!(
        separate.verdict(Expectation::Coalesced(b())).status,
        Status::Fail
    );
    let coalescing = correct_client();
    assert_eq!(
        coalescing.verdict(Expectation::NotCoalesced(b())).status,
        Status::Fail
    );
    let never = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "a.test", "/", 200);
    assert_eq!(
        never.verdict(Expectation::NotCoalesced(b())).status,
        Status::NotExercised
    );
}

#[test]
fn an_endless_retry_loop_fails_max_attempts() {
    let mut j = Journal::default();
    for id in 1..=7 {
        j = j
            .connection(id, Some("edge.test"))
            .request(id, "GET", "edge.test", "/", 421);
    }
    let check = j.verdict(Expectation::MaxAttempts(MaxAttempts {
        max: 3,
        authority: None,
        level: None,
    }));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.explanation,
        "GET https://edge.test/ was attempted 7 times (max 3)"
    );
    // Giving up after one retry on a new connection satisfies retried_on_new_connection:
    // only the first 421 of each request needs a retry.
    assert_eq!(j.verdict(retried(None)).status, Status::Pass);
}

#[test]
fn an_empty_journal_exercises_nothing_and_fails_the_verdict() {
    let expectations = [
        retried(None),
        Expectation::NoRetryOnSameConnection(filter(None)),
        stopped(None),
        Expectation::MaxAttempts(MaxAttempts {
            max: 3,
            authority: None,
            level: None,
        }),
        Expectation::RetrySameBody(filter(None)),
    ];
    let verdict = evaluate(&expectations, &[], false);
    assert!(!verdict.passed);
    assert!(
        verdict
            .checks
            .iter()
            .all(|c| c.status == Status::NotExercised)
    );
    assert!(
        evaluate(&expectations, &[], true).passed,
        "allowed when asked"
    );
    assert!(
        verdict
            .table()
            .ends_with("verdict: FAIL (0 passed, 0 failed, 5 not exercised)\n"),
        "{}",
        verdict.table()
    );
}

#[test]
fn harness_page_requests_are_not_the_clients() {
    let j = Journal::default().connection(1, Some("a.test")).request(
        1,
        "GET",
        "a.test",
        "/_misdirect/client",
        200,
    );
    let check = j.verdict(Expectation::Requests(CountRange::Exactly(0)));
    assert_eq!(check.status, Status::Pass, "{}", check.explanation);
}

impl Journal {
    fn origin_frame(mut self, connection: u64, origins: &[&str]) -> Self {
        self.now_ms += 0.5;
        self.push(EventKind::FrameSent {
            connection,
            stream: 0,
            frame: SentFrame::Origin {
                origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            },
            rule: None,
        });
        self
    }

    /// A stream left unanswered above a GOAWAY's last-stream-id, as the server journals it.
    fn unprocessed(mut self, connection: u64, authority: &str, path: &str) -> Self {
        self = self.request(connection, "GET", authority, path, 200);
        if let Some(Event {
            kind: EventKind::Request(r),
            ..
        }) = self.events.last_mut()
        {
            r.action = Action::Goaway;
            r.status = None;
        }
        self
    }
}

fn respected(authority: Option<&str>) -> Expectation {
    Expectation::RespectedOrigin(filter(authority))
}

#[test]
fn respected_origin_holds_for_requests_within_the_origin_set() {
    // Port 1 is the connection's (see `connection`): b.test listed with it, a.test the SNI's.
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .origin_frame(1, &["https://b.test:1"])
        .request(1, "GET", "a.test", "/", 200)
        .request(1, "GET", "b.test", "/", 200);
    let check = j.verdict(respected(None));
    assert_eq!(check.status, Status::Pass, "{}", check.explanation);
    assert_eq!(check.evidence.len(), 2);
}

#[test]
fn respected_origin_fails_a_request_outside_the_origin_set_and_names_it() {
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .origin_frame(1, &["https://b.test:1"])
        .request(1, "GET", "c.test", "/x", 200);
    let check = j.verdict(respected(None));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.explanation.contains("https://c.test:1"),
        "{}",
        check.explanation
    );
    assert_eq!(check.evidence, [2, 3], "the frame and the request");
    // Another port is another origin (RFC 6454): the default 443 is not port 1.
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .origin_frame(1, &["https://b.test"])
        .request(1, "GET", "b.test", "/", 200);
    assert_eq!(j.verdict(respected(None)).status, Status::Fail);
}

#[test]
fn respected_origin_is_not_exercised_without_an_origin_frame_before_a_request() {
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .request(1, "GET", "c.test", "/", 200)
        .origin_frame(1, &[]);
    assert_eq!(j.verdict(respected(None)).status, Status::NotExercised);
    // An empty ORIGIN frame leaves the SNI's own origin.
    let j = Journal::default()
        .connection(1, Some("a.test"))
        .origin_frame(1, &[])
        .request(1, "GET", "a.test", "/", 200);
    assert_eq!(j.verdict(respected(None)).status, Status::Pass);
}

#[test]
fn a_stream_left_above_a_goaway_counts_as_excluded_by_it_and_must_be_retried() {
    let goaway = Expectation::RetriedOnNewConnection(RetryExpectation {
        authority: None,
        after: crate::scenario::Signal::Goaway,
        within_ms: 5000,
        level: None,
    });
    let retried = Journal::default()
        .connection(1, Some("a.test"))
        .unprocessed(1, "a.test", "/late")
        .connection(2, Some("a.test"))
        .request(2, "GET", "a.test", "/late", 200);
    assert_eq!(retried.verdict(goaway.clone()).status, Status::Pass);
    let dropped = Journal::default()
        .connection(1, Some("a.test"))
        .unprocessed(1, "a.test", "/late");
    let check = dropped.verdict(goaway);
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.explanation.contains("GOAWAY"),
        "{}",
        check.explanation
    );
}

#[test]
fn respected_origin_leaves_cleartext_connections_alone() {
    // Clients ignore ORIGIN over h2c (RFC 8336 §2.2): a request for another name there is no
    // failure, and nothing else was judged.
    let mut j = Journal::default()
        .connection(1, None)
        .origin_frame(1, &["https://b.test:1"])
        .request(1, "GET", "c.test", "/", 200);
    if let Some(Event {
        kind: EventKind::Request(r),
        ..
    }) = j.events.last_mut()
    {
        r.scheme = crate::journal::Scheme::Http;
    }
    assert_eq!(j.verdict(respected(None)).status, Status::NotExercised);
}
