//! What one decision costs on the request path: [`Engine::decide`] for a request answered by
//! default routing, for one a rule answers 421 (a coalesced request, matched on authority,
//! SNI, coalescing and attempt), and for the harness's own route. Run with
//! `cargo bench --bench engine`.
//!
//! One engine serves every iteration, as one server's engine serves every request: each
//! request has a path of its own (so its attempt is 1 and the attempt counter grows by one
//! entry) and every [`PER_CONNECTION`] requests come on a new connection (so the per-connection
//! counters grow too). The engine is reset every [`ROUND`] requests, outside the timing, so
//! the counters stay as large as a busy test case makes them.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use misdirect::client::{CLIENT_PAGE_PATH, CLIENT_PAGE_ROUTE};
use misdirect::engine::{ConnectionFacts, Engine, Instruction, RequestFacts, Response, Route};
use misdirect::scenario;

/// Requests between two resets of the engine.
const ROUND: usize = 4096;
/// Requests on each connection.
const PER_CONNECTION: usize = 8;

/// Several hosts behind one wildcard certificate plus one of their own, as the bundled
/// scenarios have them, and rules ahead of default routing: only the second matches the
/// coalesced requests, the others are checked and pass on.
const SCENARIO: &str = r#"{
  "name": "engine-bench",
  "seed": 7,
  "certificates": [
    { "name": "site", "sans": ["*.site.test"] },
    { "name": "api", "sans": ["api.test"] }
  ],
  "hosts": [
    { "names": ["www.site.test"], "certificate": "site", "responses": [
      { "path": "/page/*", "headers": { "content-type": "text/html" }, "body": "<p>page</p>\n" },
      { "path": "*", "body": "www\n" }
    ] },
    { "names": ["static.site.test"], "certificate": "site" },
    { "names": ["img.site.test"], "certificate": "site" },
    { "names": ["api.test"], "certificate": "api" }
  ],
  "rules": [
    {
      "name": "api-unavailable",
      "when": { "authority": "api.test", "method": "POST", "path": "/v1/*" },
      "action": { "respond": { "status": 503 } },
      "delay_ms": 50
    },
    {
      "name": "static-coalesced",
      "when": { "authority": "static.site.test", "sni": "www.site.test", "coalesced": true, "attempt": 1 },
      "action": { "respond": { "status": 421, "body": "misdirect: www's server does not serve static.site.test\n" } }
    },
    {
      "name": "refuse-third-try",
      "when": { "authority": "*.site.test", "attempt": { "min": 3 }, "header": { "name": "x-retry", "value": "yes" } },
      "action": { "reset_stream": { "code": "REFUSED_STREAM" } }
    }
  ]
}"#;

/// The connections and requests of one round.
struct Workload {
    connections: Vec<ConnectionFacts>,
    requests: Vec<RequestFacts>,
}

impl Workload {
    /// `ROUND` requests for `authority`, the `i`th at `path(i)`, on connections with SNI
    /// `www.site.test`.
    fn new(authority: &str, path: impl Fn(usize) -> String) -> Workload {
        Workload {
            connections: (0..ROUND / PER_CONNECTION)
                .map(|i| ConnectionFacts {
                    id: i as u64 + 1,
                    listener: "main".to_owned(),
                    sni: Some("www.site.test".to_owned()),
                    certificate_sans: vec!["*.site.test".to_owned()],
                    opened_at_ms: i as u64,
                    port: 443,
                })
                .collect(),
            requests: (0..ROUND)
                .map(|i| RequestFacts {
                    method: "GET".to_owned(),
                    authority: authority.to_owned(),
                    path: path(i),
                    headers: browser_headers(),
                })
                .collect(),
        }
    }

    fn connection(&self, i: usize) -> &ConnectionFacts {
        &self.connections[i / PER_CONNECTION]
    }
}

/// The headers a browser sends with a subresource request.
fn browser_headers() -> Vec<(String, String)> {
    [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ),
        (
            "accept",
            "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://www.site.test/"),
        ("sec-fetch-dest", "image"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-site", "same-site"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// The browser client page as the harness serves it (a few KiB of HTML).
fn page_route() -> Route {
    Route {
        name: CLIENT_PAGE_ROUTE.to_owned(),
        method: "GET".to_owned(),
        path: CLIENT_PAGE_PATH.to_owned(),
        response: Response {
            status: 200,
            headers: BTreeMap::from([
                (
                    "content-type".to_owned(),
                    "text/html; charset=utf-8".to_owned(),
                ),
                ("cache-control".to_owned(), "no-store".to_owned()),
            ]),
            body: "<p>client page</p>\n".repeat(200).into(),
        },
    }
}

fn engine() -> Engine {
    let (scenario, _) = match scenario::from_bytes(SCENARIO.as_bytes()) {
        Ok(loaded) => loaded,
        Err(err) => panic!("bench scenario invalid:\n{err}"),
    };
    Engine::with_routes(&scenario, vec![page_route()])
}

/// Decides `iters` requests of the workload, resetting the engine every round; returns the
/// time spent deciding.
fn run(engine: &mut Engine, work: &Workload, iters: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        engine.reset();
        let n = left.min(ROUND as u64) as usize;
        let start = Instant::now();
        for i in 0..n {
            let now_ms = 1_000 + i as u64;
            black_box(engine.decide(
                black_box(work.connection(i)),
                black_box(&work.requests[i]),
                now_ms,
            ));
        }
        spent += start.elapsed();
        left -= n as u64;
    }
    spent
}

/// Checks that the workload's first request gets the answer the benchmark is named for.
fn check(engine: &mut Engine, work: &Workload, status: u16, rule: Option<&str>) {
    engine.reset();
    let decision = engine.decide(work.connection(0), &work.requests[0], 1_000);
    match &decision.instruction {
        Instruction::Respond(response) => assert_eq!(response.status, status),
        other => panic!("expected a response, got {other:?}"),
    }
    assert_eq!(decision.rule.as_deref(), rule);
}

fn decide(c: &mut Criterion) {
    let mut engine = engine();
    let default_routing = Workload::new("www.site.test", |i| format!("/page/{i}?v=3"));
    let rule_421 = Workload::new("static.site.test", |i| format!("/img/{i}.png"));
    let harness_route = Workload::new("www.site.test", |i| format!("{CLIENT_PAGE_PATH}?run={i}"));
    check(&mut engine, &default_routing, 200, None);
    check(&mut engine, &rule_421, 421, Some("static-coalesced"));
    check(&mut engine, &harness_route, 200, Some(CLIENT_PAGE_ROUTE));

    let mut group = c.benchmark_group("engine_decide");
    for (name, work) in [
        ("default_routing_200", &default_routing),
        ("rule_421_coalesced", &rule_421),
        ("harness_route", &harness_route),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| run(&mut engine, work, iters))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = decide
}
criterion_main!(benches);
