//! Wire tests, in-process: a server started in this test process on 127.0.0.1:0, a scripted peer, and
//! exact assertions on the frames (HTTP/2, h2c by prior knowledge) and bytes (HTTP/1.1) of
//! every action a rule can take, with the journal read through the crate's own event types.
//! Real clients (curl, nghttp, browsers) stay in the end-to-end tests and the client matrix.

mod frames;

use std::time::Duration;

use frames::{H2Client, Seen, body_of, http1};
use h2::frame::StreamId;
use misdirect::harness::Harness;
use misdirect::journal::{Action, EventKind, Protocol, RequestEvent, Scheme, SentFrame};
use misdirect::scenario::{self, ErrorCode};
use misdirect::server::{Limits, ServeOptions, Server};

/// RFC 9113 §7 error codes as they travel.
const NO_ERROR: u32 = 0x0;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// One cleartext listener (h2c and HTTP/1.1), one host, a rule per action.
const SCENARIO: &str = r#"{
  "listeners": [{"name": "plain", "tls": false}],
  "hosts": [{"names": ["a.test"]}],
  "rules": [
    {"name": "misdirect", "when": {"path": "/421"}, "action": {"respond": {"status": 421, "headers": {"x-why": "test"}}}},
    {"name": "refuse", "when": {"path": "/reset"}, "action": {"reset_stream": {"code": "REFUSED_STREAM"}}},
    {"name": "calm-down", "when": {"path": "/goaway"}, "action": {"goaway": {"code": "ENHANCE_YOUR_CALM"}}},
    {"name": "drain", "when": {"path": "/drain"}, "action": {"goaway": {"graceful": true}}},
    {"name": "hang-up", "when": {"path": "/close"}, "action": "close"},
    {"name": "slow", "when": {"path": "/slow"}, "delay_ms": 400, "action": {"respond": {"status": 200, "body": "slow"}}},
    {"name": "late", "when": {"path": "/late"}, "delay_ms": 200, "action": {"respond": {"status": 200}}}
  ]
}"#;

fn options(dir: &tempfile::TempDir, limits: Limits) -> ServeOptions {
    ServeOptions {
        certs_dir: dir.path().join("certs"),
        limits: Limits {
            max_body_bytes: 64,
            shutdown_grace: Duration::from_secs(2),
            ..limits
        },
        ..ServeOptions::default()
    }
}

async fn start_with(limits: Limits) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (scenario, _) = scenario::from_bytes(SCENARIO.as_bytes()).expect("scenario");
    let server = Server::start(scenario, options(&dir, limits))
        .await
        .expect("server starts");
    (server, dir)
}

async fn start() -> (Server, tempfile::TempDir) {
    start_with(Limits::default()).await
}

fn address(server: &Server) -> std::net::SocketAddr {
    server.addr("plain").expect("listener plain")
}

/// The journal's events, once `done` holds of them (within 5 s).
async fn journal_until(server: &Server, done: impl Fn(&[EventKind]) -> bool) -> Vec<EventKind> {
    let deadline = tokio::time::Instant::now() + frames::PATIENCE;
    loop {
        let events: Vec<EventKind> = server
            .journal()
            .snapshot()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        if done(&events) || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn requests(events: &[EventKind]) -> Vec<&RequestEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Request(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

fn closed(events: &[EventKind]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ConnectionClosed { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

/// Every GOAWAY journaled: h2's own (`goaway_sent`) and the injected ones (`frame_sent`, never
/// graceful), as (last-stream-id, code, graceful, rule).
fn goaways(events: &[EventKind]) -> Vec<(u32, ErrorCode, bool, Option<&str>)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::GoawaySent {
                last_stream_id,
                code,
                graceful,
                rule,
                ..
            } => Some((*last_stream_id, *code, *graceful, rule.as_deref())),
            EventKind::FrameSent {
                frame:
                    SentFrame::Goaway {
                        last_stream_id,
                        code,
                        ..
                    },
                rule,
                ..
            } => Some((*last_stream_id, *code, false, rule.as_deref())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- HTTP/2

#[tokio::test]
async fn h2_respond_sends_the_host_answer_with_content_length() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/ok").await;
    let head = client.next().await;
    assert_eq!(head.status(), Some(200));
    let body = "misdirect: a.test answered GET /ok\n";
    assert_eq!(
        head.field("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(
        client.next().await,
        Seen::Data {
            stream,
            data: body.into(),
            end_stream: true
        }
    );
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(request.action, Action::Respond);
    assert_eq!(request.protocol, Protocol::H2c);
    assert_eq!(request.scheme, Scheme::Http);
    assert_eq!((request.stream, request.status), (Some(1), Some(200)));
    assert_eq!(request.host.as_deref(), Some("a.test"));
}

#[tokio::test]
async fn h2_a_421_carries_the_rules_headers_and_a_body_saying_why() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/421").await;
    let head = client.next().await;
    // The request is journaled before its answer goes out: no waiting here.
    let journaled: Vec<EventKind> = server
        .journal()
        .snapshot()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(requests(&journaled).len(), 1, "journaled before the answer");
    let body = "misdirect: 421 Misdirected Request for a.test /421 (scenario rule misdirect); retry on a new connection\n";
    assert_eq!(
        head,
        Seen::Headers {
            stream,
            status: 421,
            fields: vec![
                ("x-why".to_owned(), "test".to_owned()),
                ("content-length".to_owned(), body.len().to_string()),
            ],
            end_stream: false,
        }
    );
    let Seen::Data {
        data,
        end_stream: true,
        ..
    } = client.next().await
    else {
        panic!("the body follows the head");
    };
    assert_eq!(String::from_utf8_lossy(&data), body);
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.status),
        (Action::Respond, Some(421))
    );
    assert_eq!(request.rule.as_deref(), Some("misdirect"));
}

#[tokio::test]
async fn h2_default_routing_misdirects_an_authority_no_host_serves() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/").await;
    let first = client.next().await;
    assert_eq!(first.status(), Some(200));
    client.next().await; // its body
    let stream = client.get("b.test", "/x").await;
    let head = client.next().await;
    assert_eq!(head.status(), Some(421));
    assert_eq!(
        head.field("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let body = body_of(&[client.next().await], stream);
    assert!(
        body.contains("no virtual host serves b.test on listener plain"),
        "{body}"
    );
    let events = journal_until(&server, |e| requests(e).len() >= 2).await;
    let misdirected = requests(&events)[1];
    assert!(
        misdirected.coalesced,
        "b.test on the connection a.test opened"
    );
    assert_eq!(
        misdirected.misdirected_because.as_deref(),
        Some("no virtual host serves b.test on listener plain")
    );
}

#[tokio::test]
async fn h2_reset_stream_sends_rst_stream_with_the_rules_code() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/reset").await;
    assert_eq!(
        client.next().await,
        Seen::Reset {
            stream,
            code: REFUSED_STREAM
        }
    );
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(request.rule.as_deref(), Some("refuse"));
    assert_eq!(request.action, Action::ResetStream);
    assert_eq!(request.reset_code, Some(ErrorCode::RefusedStream));
    assert_eq!(request.status, None);
}

#[tokio::test]
async fn h2_an_immediate_goaway_excludes_the_request_and_names_the_rule() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/ok").await;
    let frames = {
        let mut seen = vec![client.next().await, client.next().await];
        let stream = client.get("a.test", "/goaway").await;
        assert_eq!(stream, 3);
        seen.extend(client.until_closed().await);
        seen
    };
    assert_eq!(frames[0].status(), Some(200));
    assert_eq!(
        &frames[2..],
        [Seen::GoAway {
            last_stream_id: 1,
            code: ENHANCE_YOUR_CALM,
            debug: "misdirect: rule calm-down".into(),
        }],
        "one GOAWAY naming stream 1, nothing for stream 3, then the close"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    assert_eq!(
        goaways(&events),
        [(1, ErrorCode::EnhanceYourCalm, false, Some("calm-down"))]
    );
    let request = requests(&events)[1];
    assert_eq!((request.action, request.status), (Action::Goaway, None));
    assert_eq!(closed(&events), ["closed after GOAWAY (rule)"]);
}

#[tokio::test]
async fn h2_an_immediate_goaway_goes_out_at_once_lets_lower_streams_finish_and_leaves_higher_ones_unanswered()
 {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let slow = client.get("a.test", "/slow").await;
    let goaway = client.get("a.test", "/goaway").await;
    let late = client.get("a.test", "/late").await;
    assert_eq!((slow, goaway, late), (1, 3, 5));
    let frames = client.until_closed().await;
    let expected_goaway = Seen::GoAway {
        last_stream_id: 1,
        code: ENHANCE_YOUR_CALM,
        debug: "misdirect: rule calm-down".into(),
    };
    let goaway_at = frames
        .iter()
        .position(|f| f == &expected_goaway)
        .expect("the GOAWAY");
    let answered = frames
        .iter()
        .position(|f| {
            matches!(
                f,
                Seen::Headers {
                    stream: 1,
                    status: 200,
                    ..
                }
            )
        })
        .expect("the stream below is answered");
    // The GOAWAY does not wait for the slow stream (400 ms): it goes out first.
    assert!(goaway_at < answered, "{frames:#?}");
    assert_eq!(body_of(&frames, slow), "slow");
    assert_eq!(
        frames
            .iter()
            .filter(|f| matches!(f, Seen::GoAway { .. }))
            .count(),
        1,
        "h2 adds no GOAWAY of its own: {frames:#?}"
    );
    assert!(
        !frames.iter().any(|f| matches!(
            f,
            Seen::Headers { stream: 3 | 5, .. } | Seen::Reset { stream: 3 | 5, .. }
        )),
        "the streams above the GOAWAY are never answered: {frames:#?}"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    let journaled: Vec<(Option<u32>, &str, Action, Option<u16>)> = requests(&events)
        .iter()
        .map(|r| (r.stream, r.path.as_str(), r.action, r.status))
        .collect();
    assert!(journaled.contains(&(Some(1), "/slow", Action::Respond, Some(200))));
    assert!(journaled.contains(&(Some(3), "/goaway", Action::Goaway, None)));
    assert!(
        journaled.contains(&(Some(5), "/late", Action::Goaway, None)),
        "the stream above is journaled as not processed: {journaled:?}"
    );
    let late_request = requests(&events)
        .into_iter()
        .find(|r| r.stream == Some(5))
        .expect("stream 5");
    assert_eq!(late_request.rule.as_deref(), Some("calm-down"));
    assert!(
        late_request
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not processed")),
        "{late_request:?}"
    );
    assert_eq!(
        goaways(&events),
        [(1, ErrorCode::EnhanceYourCalm, false, Some("calm-down"))]
    );
    assert_eq!(closed(&events), ["closed after GOAWAY (rule)"]);
}

#[tokio::test]
async fn h2_a_graceful_goaway_sends_two_goaways_around_the_answer() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/drain").await;
    let frames = client.until_closed().await;
    let goaways_seen: Vec<&Seen> = frames
        .iter()
        .filter(|f| matches!(f, Seen::GoAway { .. }))
        .collect();
    assert_eq!(
        goaways_seen,
        [
            &Seen::GoAway {
                last_stream_id: MAX_STREAM_ID,
                code: NO_ERROR,
                debug: Default::default()
            },
            &Seen::GoAway {
                last_stream_id: stream,
                code: NO_ERROR,
                debug: Default::default()
            },
        ],
        "RFC 9113 §6.8: the highest id first, then the real one: {frames:#?}"
    );
    let goaway_at: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f, Seen::GoAway { .. }))
        .map(|(i, _)| i)
        .collect();
    let answer = frames
        .iter()
        .position(|f| f.status() == Some(200))
        .expect("the request is answered");
    assert!(
        goaway_at[0] < answer && answer < goaway_at[1],
        "the drain is announced with the answer, the real last stream follows it: {frames:#?}"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    assert_eq!(
        goaways(&events),
        [(MAX_STREAM_ID, ErrorCode::NoError, true, Some("drain"))]
    );
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.status),
        (Action::Goaway, Some(200))
    );
    assert_eq!(closed(&events), ["drained after GOAWAY"]);
}

#[tokio::test]
async fn h2_close_ends_the_connection_without_an_answer() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/close").await;
    assert_eq!(
        client.until_closed().await,
        [],
        "no frame for the stream, then the close"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!((request.action, request.status), (Action::Close, None));
    assert_eq!(closed(&events), ["closed by rule hang-up"]);
}

#[tokio::test]
async fn h2_a_delay_holds_the_answer_back() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let started = tokio::time::Instant::now();
    client.get("a.test", "/slow").await;
    assert_eq!(client.next().await.status(), Some(200));
    assert!(started.elapsed() >= Duration::from_millis(400));
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    assert!(requests(&events)[0].duration_ms >= 400.0);
}

#[tokio::test]
async fn h2_a_body_over_the_cap_gets_413() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client
        .request("POST", "a.test", "/upload", Some(&[b'x'; 100]))
        .await;
    let head = client.next().await;
    assert_eq!(
        (head.status(), head.field("content-type")),
        (Some(413), Some("text/plain; charset=utf-8"))
    );
    let body = body_of(&[client.next().await], stream);
    assert_eq!(body, "misdirect: request body over 64 bytes\n");
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.status),
        (Action::Respond, Some(413))
    );
    assert_eq!(request.error.as_deref(), Some("request body over 64 bytes"));
}

#[tokio::test]
async fn h2_shutdown_sends_the_two_goaways_of_a_graceful_drain() {
    let (server, _dir) = start().await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/ok").await;
    assert_eq!(client.next().await.status(), Some(200));
    client.next().await;
    let shutdown = tokio::spawn(async move {
        server.shutdown("test").await;
        server
    });
    let frames = client.until_closed().await;
    assert_eq!(
        frames,
        [
            Seen::GoAway {
                last_stream_id: MAX_STREAM_ID,
                code: NO_ERROR,
                debug: Default::default()
            },
            Seen::GoAway {
                last_stream_id: 1,
                code: NO_ERROR,
                debug: Default::default()
            },
        ]
    );
    let server = shutdown.await.expect("shutdown");
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    assert_eq!(
        goaways(&events),
        [(MAX_STREAM_ID, ErrorCode::NoError, true, None)]
    );
    assert_eq!(closed(&events), ["drained after GOAWAY"]);
}

#[tokio::test]
async fn h2_an_idle_connection_gets_goaway_naming_its_last_stream() {
    let (server, _dir) = start_with(Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/ok").await;
    let frames = client.until_closed().await;
    assert_eq!(frames[0].status(), Some(200));
    assert_eq!(
        frames.last(),
        Some(&Seen::GoAway {
            last_stream_id: 1,
            code: NO_ERROR,
            debug: Default::default()
        })
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    assert_eq!(goaways(&events), [(1, ErrorCode::NoError, false, None)]);
    assert_eq!(closed(&events), ["idle timeout (1s without a request)"]);
}

/// A body bigger than any window a client starts with goes out only as flow control grants
/// capacity, and a window that stays closed ends the stream (RST_STREAM CANCEL) instead of
/// holding the body in memory forever.
#[tokio::test]
async fn h2_a_body_goes_out_only_as_the_clients_window_allows() {
    let big = "x".repeat(200_000);
    let json = format!(
        r#"{{"listeners": [{{"name": "plain", "tls": false}}],
            "hosts": [{{"names": ["a.test"], "responses": [{{"path": "/big", "body": "{big}"}}]}}]}}"#
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (scenario, _) = scenario::from_bytes(json.as_bytes()).expect("scenario");
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = Server::start(scenario, options(&dir, limits))
        .await
        .expect("server starts");
    let mut settings = h2::frame::Settings::default();
    settings.set_initial_window_size(Some(0));
    let mut client = H2Client::connect_with(address(&server), settings).await;
    let stream = client.get("a.test", "/big").await;
    let head = client.next().await;
    assert_eq!(head.status(), Some(200));
    assert_eq!(head.field("content-length"), Some("200000"));
    // Window closed: nothing more.
    assert_eq!(client.next_within(Duration::from_millis(300)).await, None);
    // Open it by 1,000 bytes: exactly 1,000 bytes come, then nothing.
    client
        .send(h2::frame::WindowUpdate::new(StreamId::from(stream), 1000).into())
        .await;
    let mut received = 0;
    while let Some(Seen::Data {
        data, end_stream, ..
    }) = client.next_within(Duration::from_millis(300)).await
    {
        assert!(!end_stream, "the body cannot have ended");
        received += data.len();
    }
    assert_eq!(received, 1000);
    // The window stays closed past the patience (the idle timeout): the stream is cancelled.
    assert_eq!(
        client.next().await,
        Seen::Reset {
            stream,
            code: CANCEL
        }
    );
    let events = journal_until(&server, |e| {
        e.iter()
            .any(|e| matches!(e, EventKind::ResponseFailed { .. }))
    })
    .await;
    let failed: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ResponseFailed { error, .. } => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("flow-control window stayed closed")
            && failed[0].contains("199000 of 200000"),
        "{failed:?}"
    );
}

/// A `body_file` is served byte for byte (any bytes), the same shared body for every answer.
#[tokio::test]
async fn h2_a_body_file_is_served_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(dir.path().join("blob.bin"), &bytes).expect("write body file");
    let file = dir.path().join("scenario.json");
    std::fs::write(
        &file,
        r#"{"listeners": [{"name": "plain", "tls": false}],
            "hosts": [{"names": ["a.test"], "responses": [{"path": "/blob", "body_file": "blob.bin"}]}]}"#,
    )
    .expect("write scenario");
    let (scenario, _) = scenario::from_path(&file).expect("scenario");
    let server = Server::start(scenario, options(&dir, Limits::default()))
        .await
        .expect("server starts");
    for _ in 0..2 {
        let mut client = H2Client::connect(address(&server)).await;
        let stream = client.get("a.test", "/blob").await;
        assert_eq!(client.next().await.status(), Some(200));
        let body = client.read_body(stream).await;
        assert!(body == bytes, "the body differs from the file");
    }
}

/// A window opened in full gets the whole body, end to end, in order.
#[tokio::test]
async fn h2_a_body_larger_than_the_window_arrives_whole_as_the_window_opens() {
    let big: String = (0..150_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let json = format!(
        r#"{{"listeners": [{{"name": "plain", "tls": false}}],
            "hosts": [{{"names": ["a.test"], "responses": [{{"path": "/big", "body": "{big}"}}]}}]}}"#
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (scenario, _) = scenario::from_bytes(json.as_bytes()).expect("scenario");
    let server = Server::start(scenario, options(&dir, Limits::default()))
        .await
        .expect("server starts");
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/big").await;
    assert_eq!(client.next().await.status(), Some(200));
    let body = client.read_body(stream).await;
    assert_eq!(body, big.as_bytes());
}

/// Beyond the connection cap a connection is closed at once and the refusal journaled; a
/// place freed by a closed connection is taken again.
#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_journaled() {
    let (server, _dir) = start_with(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let mut first = H2Client::connect(address(&server)).await;
    first.get("a.test", "/ok").await;
    assert_eq!(first.next().await.status(), Some(200));
    let mut second = H2Client::connect(address(&server)).await;
    second.get("a.test", "/ok").await;
    assert_eq!(second.next().await.status(), Some(200));
    let mut third = tokio::net::TcpStream::connect(address(&server))
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        frames::PATIENCE,
        tokio::io::AsyncReadExt::read(&mut third, &mut buf),
    )
    .await
    .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(first);
    let events = journal_until(&server, |e| closed(e).len() == 2).await;
    assert_eq!(
        closed(&events),
        [
            "refused: 2 connections already open (the cap, --max-connections)",
            "client closed"
        ]
    );
    let mut fourth = H2Client::connect(address(&server)).await;
    fourth.get("a.test", "/ok").await;
    assert_eq!(fourth.next().await.status(), Some(200));
}

#[tokio::test]
async fn h2_the_client_page_is_a_route_of_the_harness_not_of_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (scenario, _) = scenario::from_bytes(SCENARIO.as_bytes()).expect("scenario");
    let harness = Harness::start(scenario.clone(), options(&dir, Limits::default()), None)
        .await
        .expect("harness starts");
    let mut client = H2Client::connect(harness.addr("plain").expect("plain")).await;
    let stream = client
        .get("b.test", misdirect::client::CLIENT_PAGE_PATH)
        .await;
    let head = client.next().await;
    assert_eq!(head.status(), Some(200));
    assert_eq!(head.field("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(head.field("cache-control"), Some("no-store"));
    let mut frames = vec![head];
    while !matches!(
        frames.last(),
        Some(Seen::Data {
            end_stream: true,
            ..
        })
    ) {
        frames.push(client.next().await);
    }
    assert!(body_of(&frames, stream).contains("misdirect client page"));
    let page = harness
        .journal()
        .snapshot()
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Request(r) => Some(r),
            _ => None,
        })
        .expect("journaled");
    assert_eq!(
        page.rule.as_deref(),
        Some(misdirect::client::CLIENT_PAGE_ROUTE)
    );
    assert_eq!((page.request_number, page.coalesced), (0, false));
    harness.shutdown("test").await;

    // The server alone serves the scenario and nothing else.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(scenario, options(&dir, Limits::default()))
        .await
        .expect("server starts");
    let mut client = H2Client::connect(address(&server)).await;
    client
        .get("b.test", misdirect::client::CLIENT_PAGE_PATH)
        .await;
    assert_eq!(client.next().await.status(), Some(421));
}

// ---------------------------------------------------------------- HTTP/1.1

#[tokio::test]
async fn http1_respond_and_421_answer_and_keep_the_connection() {
    let (server, _dir) = start().await;
    let (ok, misdirected) = tokio::join!(
        http1(address(&server), "GET", "a.test", "/ok", b""),
        http1(address(&server), "GET", "a.test:8080", "/421", b"")
    );
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.body, "misdirect: a.test answered GET /ok\n");
    assert!(!ok.closed);
    assert_eq!(misdirected.status, Some(421));
    assert_eq!(misdirected.field("x-why"), Some("test"));
    assert!(!misdirected.closed);
    let events = journal_until(&server, |e| requests(e).len() >= 2).await;
    let requests = requests(&events);
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| (r.protocol, r.stream, r.action) == (Protocol::Http11, None, Action::Respond))
    );
    assert!(
        requests.iter().all(|r| r.authority == "a.test"),
        "the port is not part of the authority"
    );
}

#[tokio::test]
async fn http1_reset_and_immediate_goaway_close_without_an_answer() {
    let (server, _dir) = start().await;
    for (path, action) in [("/reset", Action::ResetStream), ("/goaway", Action::Goaway)] {
        let answer = http1(address(&server), "GET", "a.test", path, b"").await;
        assert_eq!(
            (answer.status, answer.closed),
            (None, true),
            "{path}: {answer:?}"
        );
        let events = journal_until(&server, |e| requests(e).iter().any(|r| r.path == path)).await;
        let request = requests(&events)
            .into_iter()
            .find(|r| r.path == path)
            .expect("journaled");
        assert_eq!((request.action, request.status), (action, None));
        assert_eq!(
            request.error.as_deref(),
            Some("HTTP/1.1 has no such signal: connection closed instead")
        );
    }
    let events = journal_until(&server, |e| closed(e).len() >= 2).await;
    assert_eq!(
        closed(&events),
        ["closed by rule refuse", "closed by rule calm-down"]
    );
}

#[tokio::test]
async fn http1_a_graceful_goaway_answers_with_connection_close() {
    let (server, _dir) = start().await;
    let answer = http1(address(&server), "GET", "a.test", "/drain", b"").await;
    assert_eq!(answer.status, Some(200));
    assert_eq!(answer.field("connection"), Some("close"));
    assert!(answer.closed);
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.status, request.error.as_deref()),
        (Action::Goaway, Some(200), None)
    );
}

#[tokio::test]
async fn http1_close_ends_the_connection_without_an_answer() {
    let (server, _dir) = start().await;
    let answer = http1(address(&server), "GET", "a.test", "/close", b"").await;
    assert_eq!((answer.status, answer.closed), (None, true));
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.error.as_deref()),
        (Action::Close, None)
    );
    assert_eq!(closed(&events), ["closed by rule hang-up"]);
}

#[tokio::test]
async fn http1_a_delay_holds_the_answer_back() {
    let (server, _dir) = start().await;
    let started = tokio::time::Instant::now();
    let answer = http1(address(&server), "GET", "a.test", "/slow", b"").await;
    assert_eq!((answer.status, answer.body.as_str()), (Some(200), "slow"));
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn http1_a_body_over_the_cap_gets_413_and_a_close() {
    let (server, _dir) = start().await;
    let answer = http1(address(&server), "POST", "a.test", "/upload", &[b'x'; 100]).await;
    assert_eq!(answer.status, Some(413));
    assert_eq!(answer.field("connection"), Some("close"));
    assert_eq!(answer.body, "misdirect: request body over 64 bytes\n");
    let events = journal_until(&server, |e| !requests(e).is_empty()).await;
    let request = requests(&events)[0];
    assert_eq!(
        (request.action, request.status),
        (Action::Respond, Some(413))
    );
}

/// Limits apply once, at start: a reload that changes them is refused, not silently ignored.
#[tokio::test]
async fn a_reload_that_changes_the_limits_is_refused() {
    let (server, _dir) = start().await;
    let with_limits = SCENARIO.replacen('{', r#"{"limits": {"idle_timeout_secs": 5},"#, 1);
    let (scenario, _) = scenario::from_bytes(with_limits.as_bytes()).expect("scenario");
    let err = server.reload(scenario).expect_err("refused");
    assert!(err.to_string().starts_with("limits: "), "{err}");
    let (same, _) = scenario::from_bytes(SCENARIO.as_bytes()).expect("scenario");
    server.reload(same).expect("the same limits reload");
}

// ------------------------------------------------- frames h2 has no API for

/// A listener that opens with ORIGIN and ALTSVC, and rules that send frames.
const FRAMES_SCENARIO: &str = r#"{
  "listeners": [{
    "name": "plain", "tls": false,
    "origin": ["https://a.test", "https://c.test:8443"],
    "altsvc": [{"origin": "https://a.test", "value": "h2=\"alt.a.test:443\"; ma=60"}]
  }],
  "hosts": [{"names": ["a.test"]}],
  "rules": [
    {"name": "advertise", "when": {"path": "/alt"}, "send": [{"altsvc": {"value": "h2=\":8443\""}}, {"origin": ["https://b.test"]}]},
    {"name": "stop-here", "when": {"path": "/stop"}, "send": [{"goaway": {"last_stream_id": "this_stream", "debug": "stop"}}]},
    {"name": "at-seven", "when": {"path": "/seven"}, "delay_ms": 100, "send": [{"goaway": {"last_stream_id": 7, "code": "ENHANCE_YOUR_CALM"}}], "action": {"respond": {"status": 200, "body": "seven"}}},
    {"name": "slow", "when": {"path": "/slow"}, "delay_ms": 300, "action": {"respond": {"status": 200, "body": "slow"}}},
    {"name": "calm-down", "when": {"path": "/goaway"}, "action": {"goaway": {"code": "ENHANCE_YOUR_CALM"}}},
    {"name": "none-processed", "when": {"path": "/zero"}, "send": [{"goaway": {"last_stream_id": 0}}]},
    {"name": "slower", "when": {"path": "/slower"}, "delay_ms": 2500, "action": {"respond": {"status": 200, "body": "slower"}}}
  ]
}"#;

async fn start_frames() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (scenario, _) = scenario::from_bytes(FRAMES_SCENARIO.as_bytes()).expect("scenario");
    let server = Server::start(scenario, options(&dir, Limits::default()))
        .await
        .expect("server starts");
    (server, dir)
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const ALTSVC: u8 = 0xa;
const ORIGIN: u8 = 0xc;

/// An ORIGIN payload as RFC 8336 §2.1 lays it out.
fn origin_payload(origins: &[&str]) -> Vec<u8> {
    let mut payload = Vec::new();
    for origin in origins {
        payload.extend_from_slice(&u16::try_from(origin.len()).expect("short").to_be_bytes());
        payload.extend_from_slice(origin.as_bytes());
    }
    payload
}

/// An ALTSVC payload as RFC 7838 §4 lays it out.
fn altsvc_payload(origin: &str, value: &str) -> Vec<u8> {
    let mut payload = u16::try_from(origin.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    payload.extend_from_slice(origin.as_bytes());
    payload.extend_from_slice(value.as_bytes());
    payload
}

fn frames_sent(events: &[EventKind]) -> Vec<(u32, &SentFrame, Option<&str>)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::FrameSent {
                stream,
                frame,
                rule,
                ..
            } => Some((*stream, frame, rule.as_deref())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn h2_origin_and_altsvc_come_directly_after_the_first_settings() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    client.get("a.test", "/ok").await;
    assert_eq!(client.next().await.status(), Some(200));
    let raw = client.raw();
    assert_eq!((raw[0].kind, raw[0].flags & 0x1), (SETTINGS, 0), "{raw:?}");
    assert_eq!((raw[1].kind, raw[1].stream, raw[1].flags), (ORIGIN, 0, 0));
    assert_eq!(
        raw[1].payload,
        origin_payload(&["https://a.test", "https://c.test:8443"])
    );
    assert_eq!((raw[2].kind, raw[2].stream, raw[2].flags), (ALTSVC, 0, 0));
    assert_eq!(
        raw[2].payload,
        altsvc_payload("https://a.test", "h2=\"alt.a.test:443\"; ma=60")
    );
    let events = journal_until(&server, |e| frames_sent(e).len() == 2).await;
    assert_eq!(
        frames_sent(&events),
        [
            (
                0,
                &SentFrame::Origin {
                    origins: vec!["https://a.test".into(), "https://c.test:8443".into()]
                },
                None
            ),
            (
                0,
                &SentFrame::Altsvc {
                    origin: "https://a.test".into(),
                    value: "h2=\"alt.a.test:443\"; ma=60".into()
                },
                None
            ),
        ]
    );
}

#[tokio::test]
async fn h2_a_rule_sends_altsvc_on_the_request_stream_and_origin_before_its_answer() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    let stream = client.get("a.test", "/alt").await;
    assert_eq!(client.next().await.status(), Some(200), "answered normally");
    let raw = client.raw();
    let at = |kind: u8, stream: u32| {
        raw.iter()
            .rposition(|f| f.kind == kind && f.stream == stream)
            .unwrap_or_else(|| panic!("no frame of type {kind} on stream {stream}: {raw:?}"))
    };
    let altsvc = at(ALTSVC, stream);
    let origin = at(ORIGIN, 0);
    let headers = at(HEADERS, stream);
    assert!(altsvc < origin && origin < headers, "{raw:?}");
    assert_eq!(raw[altsvc].payload, altsvc_payload("", "h2=\":8443\""));
    assert_eq!(raw[origin].payload, origin_payload(&["https://b.test"]));
    let events = journal_until(&server, |e| frames_sent(e).len() == 4).await;
    let by_rule: Vec<(u32, &SentFrame)> = frames_sent(&events)
        .into_iter()
        .filter(|(_, _, rule)| *rule == Some("advertise"))
        .map(|(stream, frame, _)| (stream, frame))
        .collect();
    assert_eq!(
        by_rule,
        [
            (
                stream,
                &SentFrame::Altsvc {
                    origin: String::new(),
                    value: "h2=\":8443\"".into()
                }
            ),
            (
                0,
                &SentFrame::Origin {
                    origins: vec!["https://b.test".into()]
                }
            ),
        ]
    );
}

#[tokio::test]
async fn h2_a_goaway_naming_this_stream_serves_it_and_those_below_and_leaves_those_above() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    let slow = client.get("a.test", "/slow").await;
    let stop = client.get("a.test", "/stop").await;
    let after = client.get("a.test", "/ok").await;
    assert_eq!((slow, stop, after), (1, 3, 5));
    let frames = client.until_closed().await;
    let goaway_at = frames
        .iter()
        .position(|f| {
            f == &Seen::GoAway {
                last_stream_id: 3,
                code: NO_ERROR,
                debug: "stop".into(),
            }
        })
        .unwrap_or_else(|| panic!("GOAWAY(3): {frames:#?}"));
    let answered = |stream: u32| {
        frames
            .iter()
            .position(|f| matches!(f, Seen::Headers { stream: s, status: 200, .. } if *s == stream))
    };
    let stop_answer = answered(stop).expect("the GOAWAY's own stream is served");
    assert!(
        goaway_at < stop_answer,
        "the frame goes before the answer: {frames:#?}"
    );
    assert!(answered(slow).is_some_and(|a| a > goaway_at));
    assert_eq!(body_of(&frames, slow), "slow");
    assert!(
        !frames.iter().any(|f| matches!(
            f,
            Seen::Headers { stream: 5, .. } | Seen::Reset { stream: 5, .. }
        )),
        "the stream above is never answered: {frames:#?}"
    );
    assert_eq!(
        frames
            .iter()
            .filter(|f| matches!(f, Seen::GoAway { .. }))
            .count(),
        1,
        "{frames:#?}"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    let above = requests(&events)
        .into_iter()
        .find(|r| r.stream == Some(5))
        .expect("stream 5 journaled");
    assert_eq!((above.action, above.status), (Action::Goaway, None));
    assert_eq!(above.rule.as_deref(), Some("stop-here"));
    assert_eq!(
        goaways(&events),
        [(3, ErrorCode::NoError, false, Some("stop-here"))]
    );
    assert_eq!(closed(&events), ["closed after GOAWAY (rule)"]);
}

#[tokio::test]
async fn h2_a_goaway_naming_a_number_serves_every_stream_up_to_it() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    // The GOAWAY is decided after 100 ms, while the others wait out their 300 ms delay.
    let first = client.get("a.test", "/seven").await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(client.get("a.test", "/slow").await);
    }
    assert_eq!((first, others.as_slice()), (1, &[3, 5, 7, 9][..]));
    let frames = client.until_closed().await;
    assert!(frames.contains(&Seen::GoAway {
        last_stream_id: 7,
        code: ENHANCE_YOUR_CALM,
        debug: "misdirect: rule at-seven".into(),
    }));
    let statuses: Vec<(u32, u16)> = frames
        .iter()
        .filter_map(|f| match f {
            Seen::Headers { stream, status, .. } => Some((*stream, *status)),
            _ => None,
        })
        .collect();
    for stream in [1, 3, 5, 7] {
        assert!(
            statuses.contains(&(stream, 200)),
            "stream {stream}: {frames:#?}"
        );
    }
    assert!(!statuses.iter().any(|(s, _)| *s == 9), "{frames:#?}");
    assert_eq!(body_of(&frames, 1), "seven");
}

#[tokio::test]
async fn h2_an_immediate_goaway_leaves_within_5_ms_of_its_request() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    // A slow stream below it must not hold the GOAWAY back.
    client.get("a.test", "/slow").await;
    let stream = client.get("a.test", "/goaway").await;
    let seen = client.next().await;
    assert_eq!(
        seen,
        Seen::GoAway {
            last_stream_id: stream - 2,
            code: ENHANCE_YOUR_CALM,
            debug: "misdirect: rule calm-down".into(),
        }
    );
    client.until_closed().await;
    let deadline = tokio::time::Instant::now() + frames::PATIENCE;
    let events = loop {
        let events = server.journal().snapshot();
        let done = events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ConnectionClosed { .. }));
        if done || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let received_ms = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Request(r) if r.path == "/goaway" => Some(r.received_ms),
            _ => None,
        })
        .expect("the request");
    let sent_ms = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::FrameSent {
                frame: SentFrame::Goaway { .. },
                ..
            } => Some(e.elapsed_ms),
            _ => None,
        })
        .expect("the GOAWAY");
    assert!(
        sent_ms - received_ms < 5.0,
        "request at {received_ms} ms, GOAWAY at {sent_ms} ms"
    );
}

#[tokio::test]
async fn h2_a_body_error_after_a_goaway_that_excludes_its_stream_gets_no_answer() {
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    // Stream 1: a POST whose body is still to come.
    let upload = client.open("POST", "a.test", "/upload").await;
    let stream = client.get("a.test", "/zero").await;
    assert_eq!((upload, stream), (1, 3));
    // Stream 3's rule sends GOAWAY(0): nothing was processed, both streams lie above it.
    assert_eq!(
        client.next().await,
        Seen::GoAway {
            last_stream_id: 0,
            code: NO_ERROR,
            debug: "misdirect: rule none-processed".into(),
        }
    );
    // Then stream 1's body runs over the cap (64 bytes): no 413 for a stream above the GOAWAY.
    let mut data = h2::frame::Data::new(StreamId::from(1), bytes::Bytes::from(vec![b'x'; 100]));
    data.set_end_stream(true);
    client.send(data.into()).await;
    let frames = client.until_closed().await;
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, Seen::Headers { .. } | Seen::Data { .. })),
        "{frames:#?}"
    );
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    let upload = requests(&events)
        .into_iter()
        .find(|r| r.stream == Some(1))
        .expect("stream 1 journaled");
    assert_eq!((upload.action, upload.status), (Action::Goaway, None));
    assert!(
        upload
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not processed") && e.contains("over 64 bytes")),
        "{upload:?}"
    );
}

#[tokio::test]
async fn h2_a_stream_below_a_goaway_is_served_even_past_the_shutdown_grace_period() {
    // The wire tests' grace period is 2 s; the slower rule waits 2.5 s.
    let (server, _dir) = start_frames().await;
    let mut client = H2Client::connect(address(&server)).await;
    let slower = client.get("a.test", "/slower").await;
    let stop = client.get("a.test", "/stop").await;
    assert_eq!((slower, stop), (1, 3));
    let frames = client.until_closed().await;
    assert_eq!(body_of(&frames, slower), "slower", "{frames:#?}");
    let events = journal_until(&server, |e| !closed(e).is_empty()).await;
    assert_eq!(closed(&events), ["closed after GOAWAY (rule)"]);
}
