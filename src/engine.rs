//! The decision: (connection facts, request facts, counters, time) → what to do.
//!
//! Pure and sans-IO, as quinn-proto's protocol core is: no sockets, no clock of its own (the
//! caller passes milliseconds), randomness drawn from the scenario seed. The server builds the
//! facts, calls [`Engine::decide`], and carries out the returned [`Instruction`].
//!
//! Besides the scenario, the engine knows the harness's own [`Route`]s (the browser client
//! page), handed down by the layer that composes the harness: they answer before any rule and
//! are not counted as the scenario's requests.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::journal;
use crate::scenario::{
    Action, AltSvcSpec, ErrorCode, FrameSpec, HostSpec, Matcher, ResponseSpec, RuleSpec, Scenario,
    name_matches, path_matches,
};

/// What the server knows about a connection when a request arrives on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Connection id (as in the journal).
    pub id: u64,
    /// Name of the listener it arrived on.
    pub listener: String,
    /// TLS SNI the client sent; `None` without TLS or without SNI.
    pub sni: Option<String>,
    /// SANs of the certificate served on it (empty without TLS).
    pub certificate_sans: Vec<String>,
    /// When it was accepted, in the caller's milliseconds.
    pub opened_at_ms: u64,
    /// The server port it arrived on (what a bare name in an ORIGIN list is expanded with).
    pub port: u16,
}

/// An ORIGIN list entry as it goes on the wire: an origin as written, or a bare name as
/// `https://name` with the port the connection arrived on (left out when 443, as RFC 6454
/// §6.2 serializes it) — the port a test's listener got is not known when the scenario is
/// written.
pub fn origin_entry(entry: &str, port: u16) -> String {
    if entry.contains("://") {
        entry.to_owned()
    } else if port == 443 {
        format!("https://{entry}")
    } else {
        format!("https://{entry}:{port}")
    }
}

/// What the server knows about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Authority without port, lower-cased (`:authority` on HTTP/2, `Host` on HTTP/1.1).
    pub authority: String,
    /// Path with query.
    pub path: String,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Body: a scenario's body is made once per engine and shared by every answer that
    /// sends it (cloning a `Bytes` counts a reference, it copies nothing).
    pub body: Bytes,
}

/// What the server is to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Send this response.
    Respond(Response),
    /// Reset the stream with this code (on HTTP/1.1: close the connection).
    Reset(ErrorCode),
    /// Send GOAWAY. Graceful: answer `response` first and let the connection drain.
    /// Otherwise the GOAWAY's last-stream-id excludes this request and the connection closes.
    Goaway {
        /// Error code.
        code: ErrorCode,
        /// Graceful or immediate.
        graceful: bool,
        /// The answer to this request when graceful.
        response: Option<Response>,
    },
    /// Close the connection without answering.
    Close,
}

impl Instruction {
    /// The journal's word for it.
    pub fn action(&self) -> journal::Action {
        match self {
            Instruction::Respond(_) => journal::Action::Respond,
            Instruction::Reset(_) => journal::Action::ResetStream,
            Instruction::Goaway { .. } => journal::Action::Goaway,
            Instruction::Close => journal::Action::Close,
        }
    }
}

/// A response the harness itself serves on every host (the browser client page): matched
/// before the scenario's rules, by method (case-sensitive, RFC 9110 §9.1) and exact path (a
/// query string is allowed), and not counted among the scenario's requests: its decision has
/// `request_number` 0 and `attempt` 1, and it neither moves the scenario's counters nor makes
/// a connection's first authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name journaled as the request's `rule`, e.g. `misdirect client page`.
    pub name: String,
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path, e.g. `/_misdirect/client`.
    pub path: String,
    /// The answer.
    pub response: Response,
}

/// The engine's full answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub instruction: Instruction,
    /// Wait this long first.
    pub delay_ms: u64,
    /// Name of the rule that fired, if any.
    pub rule: Option<String>,
    /// Which host answered by default routing (no rule), if any.
    pub host: Option<String>,
    /// 1 for the first try of this (method, authority, path), 2 for the first retry, …
    pub attempt: u64,
    /// Position of the request on its connection, from 1, among the scenario's requests (a
    /// harness route's request counts them and the route requests so far).
    pub request_on_connection: u64,
    /// Position of the request among all requests, from 1 (0 for a harness route).
    pub request_number: u64,
    /// Whether the request is coalesced: its authority is not the name the connection was
    /// opened for — the SNI, or without SNI the first authority the connection carried.
    pub coalesced: bool,
    /// Why the default routing answered 421 (no rule), for the journal and the body.
    pub misdirected_because: Option<String>,
    /// Connection-level frames the rule sends before its instruction is carried out.
    pub frames: Vec<FrameSpec>,
}

/// The frames an HTTP/2 connection opens with, after the server's first SETTINGS: those of
/// the host its SNI selects, else those of its listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpeningFrames {
    /// The ORIGIN frame's origins; `None` sends no ORIGIN frame.
    pub origin: Option<Vec<String>>,
    /// ALTSVC frames on stream 0: (origin, field value).
    pub altsvc: Vec<(String, String)>,
}

/// Counters the decisions depend on. Cleared by [`Engine::reset`].
#[derive(Debug, Default, Clone)]
struct State {
    requests: u64,
    attempts: BTreeMap<(String, String, String), u64>,
    connections: BTreeMap<u64, ConnectionState>,
    fired_total: Vec<u64>,
    fired_per_connection: BTreeMap<(usize, u64), u64>,
    fired_per_authority: BTreeMap<(usize, String), u64>,
}

#[derive(Debug, Default, Clone)]
struct ConnectionState {
    /// The scenario's requests on it.
    requests: u64,
    /// Requests for the harness's own routes on it.
    harness_requests: u64,
    /// The first authority it carried: what it was opened for when there was no SNI.
    first_authority: Option<String>,
}

/// The compiled scenario plus its counters.
#[derive(Debug, Clone)]
pub struct Engine {
    seed: u64,
    rules: Vec<RuleSpec>,
    hosts: Vec<HostSpec>,
    bodies: Bodies,
    routes: Vec<Route>,
    /// Per listener: its ORIGIN list and ALTSVC frames.
    listener_frames: BTreeMap<String, (Option<Vec<String>>, Vec<AltSvcSpec>)>,
    state: State,
}

/// The scenario's response bodies, made once so that answers share them instead of copying.
#[derive(Debug, Clone, Default)]
struct Bodies {
    /// Per host, per response: the body, if the response has one.
    hosts: Vec<Vec<Option<Bytes>>>,
    /// Per rule: the respond action's body, if it has one.
    rules: Vec<Option<Bytes>>,
}

impl Bodies {
    fn of(scenario: &Scenario) -> Bodies {
        Bodies {
            hosts: scenario
                .hosts
                .iter()
                .map(|host| {
                    host.responses
                        .iter()
                        .map(ResponseSpec::body_bytes)
                        .collect()
                })
                .collect(),
            rules: scenario
                .rules
                .iter()
                .map(|rule| match &rule.action {
                    Some(Action::Respond(respond)) => respond.body_bytes(),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl Engine {
    /// An engine for this scenario, with zeroed counters and no harness routes.
    pub fn new(scenario: &Scenario) -> Engine {
        Engine::with_routes(scenario, Vec::new())
    }

    /// An engine for this scenario that also answers the harness's own routes.
    pub fn with_routes(scenario: &Scenario, routes: Vec<Route>) -> Engine {
        Engine {
            seed: scenario.seed,
            rules: scenario.rules.clone(),
            hosts: scenario.hosts.clone(),
            bodies: Bodies::of(scenario),
            routes,
            listener_frames: scenario
                .listeners
                .iter()
                .map(|l| (l.name.clone(), (l.origin.clone(), l.altsvc.clone())))
                .collect(),
            state: State {
                fired_total: vec![0; scenario.rules.len()],
                ..State::default()
            },
        }
    }

    /// Forgets every counter (between test cases).
    pub fn reset(&mut self) {
        self.state = State {
            fired_total: vec![0; self.rules.len()],
            ..State::default()
        };
    }

    /// Drops a closed connection's counters (its rule limits stay counted).
    pub fn connection_closed(&mut self, connection: u64) {
        self.state.connections.remove(&connection);
    }

    /// The frames a new HTTP/2 connection opens with.
    pub fn opening_frames(&self, conn: &ConnectionFacts) -> OpeningFrames {
        let host = conn.sni.as_deref().and_then(|sni| {
            self.hosts.iter().find(|host| {
                Scenario::host_on_listener(host, &conn.listener)
                    && host.names.iter().any(|n| name_matches(n, sni))
            })
        });
        let (listener_origin, listener_altsvc) = self
            .listener_frames
            .get(&conn.listener)
            .map(|(o, a)| (o.as_ref(), a.as_slice()))
            .unwrap_or_default();
        let origin = host
            .and_then(|h| h.origin.as_ref())
            .or(listener_origin)
            .map(|entries| entries.iter().map(|e| origin_entry(e, conn.port)).collect());
        let (altsvc, default_origin) = match host {
            Some(host) if !host.altsvc.is_empty() => (
                host.altsvc.as_slice(),
                host.names.first().map(|n| origin_entry(n, conn.port)),
            ),
            _ => (listener_altsvc, None),
        };
        let altsvc = altsvc
            .iter()
            .filter_map(|alt| {
                let origin = alt.origin.clone().or_else(|| default_origin.clone())?;
                Some((origin, alt.value.clone()))
            })
            .collect();
        OpeningFrames { origin, altsvc }
    }

    /// Counts a request that reaches no rule: a stream above the last-stream-id of a GOAWAY,
    /// never processed (RFC 9113 §6.8) but tried by the client all the same, so that its
    /// retry counts as the next attempt.
    pub fn unprocessed(&mut self, conn: &ConnectionFacts, req: &RequestFacts) -> Decision {
        let counted = self.count(conn, req);
        Decision {
            instruction: Instruction::Close,
            delay_ms: 0,
            rule: None,
            host: None,
            attempt: counted.attempt,
            request_on_connection: counted.request_on_connection,
            request_number: counted.request_number,
            coalesced: counted.coalesced,
            misdirected_because: None,
            frames: Vec::new(),
        }
    }

    /// Moves the counters for a scenario request.
    fn count(&mut self, conn: &ConnectionFacts, req: &RequestFacts) -> Counted {
        let state = &mut self.state;
        state.requests += 1;
        let request_number = state.requests;
        let attempt_key = (req.method.clone(), req.authority.clone(), req.path.clone());
        let attempt = {
            let n = state.attempts.entry(attempt_key).or_insert(0);
            *n += 1;
            *n
        };
        let connection = state.connections.entry(conn.id).or_default();
        connection.requests += 1;
        let request_on_connection = connection.requests;
        let opened_for = conn.sni.as_deref().unwrap_or_else(|| {
            connection
                .first_authority
                .get_or_insert_with(|| req.authority.clone())
        });
        let coalesced = !opened_for.eq_ignore_ascii_case(&req.authority);
        Counted {
            attempt,
            request_number,
            request_on_connection,
            coalesced,
        }
    }

    /// Decides what to do with a request; updates the counters.
    pub fn decide(&mut self, conn: &ConnectionFacts, req: &RequestFacts, now_ms: u64) -> Decision {
        if let Some(route) = self
            .routes
            .iter()
            .find(|r| r.method == req.method && path_matches(&r.path, &req.path))
        {
            // The harness's own page: outside the scenario, so no counter moves but the
            // connection's position.
            let connection = self.state.connections.entry(conn.id).or_default();
            connection.harness_requests += 1;
            return Decision {
                instruction: Instruction::Respond(route.response.clone()),
                delay_ms: 0,
                rule: Some(route.name.clone()),
                host: None,
                attempt: 1,
                request_on_connection: connection.requests + connection.harness_requests,
                request_number: 0,
                coalesced: false,
                misdirected_because: None,
                frames: Vec::new(),
            };
        }
        let Counted {
            attempt,
            request_number,
            request_on_connection,
            coalesced,
        } = self.count(conn, req);
        let state = &mut self.state;
        let context = Context {
            conn,
            req,
            attempt,
            request_on_connection,
            request_number,
            coalesced,
            age_ms: now_ms.saturating_sub(conn.opened_at_ms),
            seed: self.seed,
        };
        let mut decision = Decision {
            instruction: Instruction::Close,
            delay_ms: 0,
            rule: None,
            host: None,
            attempt,
            request_on_connection,
            request_number,
            coalesced,
            misdirected_because: None,
            frames: Vec::new(),
        };
        for (index, rule) in self.rules.iter().enumerate() {
            if !matches(&rule.when, index, &context)
                || !within_limits(state, rule, index, conn, req)
            {
                continue;
            }
            state.fired_total[index] += 1;
            *state
                .fired_per_connection
                .entry((index, conn.id))
                .or_insert(0) += 1;
            *state
                .fired_per_authority
                .entry((index, req.authority.clone()))
                .or_insert(0) += 1;
            decision.rule = Some(
                rule.name
                    .clone()
                    .unwrap_or_else(|| format!("rules[{index}]")),
            );
            decision.delay_ms = rule.delay_ms;
            decision.instruction = match &rule.action {
                None => {
                    let (response, host, misdirected) = route(&self.hosts, &self.bodies, conn, req);
                    decision.host = host;
                    decision.misdirected_because = misdirected;
                    Instruction::Respond(response)
                }
                Some(Action::Respond(respond)) => Instruction::Respond(Response {
                    status: respond.status,
                    headers: respond.headers.clone(),
                    body: self
                        .bodies
                        .rules
                        .get(index)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| {
                            default_body(respond.status, req, decision.rule.as_deref())
                        }),
                }),
                Some(Action::ResetStream(reset)) => Instruction::Reset(reset.code),
                Some(Action::Goaway(goaway)) => Instruction::Goaway {
                    code: goaway.code,
                    graceful: goaway.graceful,
                    response: goaway.graceful.then(|| {
                        let (response, host, _) = route(&self.hosts, &self.bodies, conn, req);
                        decision.host = host;
                        response
                    }),
                },
                Some(Action::Close) => Instruction::Close,
            };
            decision.frames = rule.send.clone();
            return decision;
        }
        let (response, host, misdirected) = route(&self.hosts, &self.bodies, conn, req);
        decision.instruction = Instruction::Respond(response);
        decision.host = host;
        decision.misdirected_because = misdirected;
        decision
    }
}

/// Where a request stands among the counters.
struct Counted {
    attempt: u64,
    request_number: u64,
    request_on_connection: u64,
    coalesced: bool,
}

struct Context<'a> {
    conn: &'a ConnectionFacts,
    req: &'a RequestFacts,
    attempt: u64,
    request_on_connection: u64,
    request_number: u64,
    coalesced: bool,
    age_ms: u64,
    seed: u64,
}

/// Whether every condition of the matcher holds.
fn matches(when: &Matcher, rule_index: usize, cx: &Context<'_>) -> bool {
    let req = cx.req;
    let conn = cx.conn;
    let sni = conn.sni.as_deref();
    let checks = [
        when.authority
            .as_deref()
            .is_none_or(|p| name_matches(p, &req.authority)),
        when.path
            .as_deref()
            .is_none_or(|p| path_matches(p, &req.path)),
        when.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&req.method)),
        when.header.as_ref().is_none_or(|h| {
            req.headers.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case(&h.name)
                    && h.value.as_deref().is_none_or(|want| want == value)
            })
        }),
        when.listener.as_deref().is_none_or(|l| l == conn.listener),
        when.sni
            .as_deref()
            .is_none_or(|p| sni.is_some_and(|s| name_matches(p, s))),
        when.sni_absent.is_none_or(|absent| absent == sni.is_none()),
        when.authority_differs_from_sni.is_none_or(|differs| {
            differs != sni.is_some_and(|s| s.eq_ignore_ascii_case(&req.authority))
        }),
        when.authority_not_covered.is_none_or(|not_covered| {
            not_covered
                != conn
                    .certificate_sans
                    .iter()
                    .any(|san| name_matches(san, &req.authority))
        }),
        when.coalesced.is_none_or(|c| c == cx.coalesced),
        when.request_on_connection
            .is_none_or(|r| r.contains(cx.request_on_connection)),
        when.attempt.is_none_or(|r| r.contains(cx.attempt)),
        when.every_nth
            .is_none_or(|n| n > 0 && cx.request_number.is_multiple_of(n)),
        when.connection_age_ms.is_none_or(|r| r.contains(cx.age_ms)),
        when.probability
            .is_none_or(|p| draw(cx.seed, rule_index, cx.request_number) < p),
    ];
    checks.iter().all(|ok| *ok)
}

fn within_limits(
    state: &State,
    rule: &RuleSpec,
    index: usize,
    conn: &ConnectionFacts,
    req: &RequestFacts,
) -> bool {
    let total = state.fired_total.get(index).copied().unwrap_or(0);
    let per_connection = state
        .fired_per_connection
        .get(&(index, conn.id))
        .copied()
        .unwrap_or(0);
    let per_authority = state
        .fired_per_authority
        .get(&(index, req.authority.clone()))
        .copied()
        .unwrap_or(0);
    rule.limit.total.is_none_or(|max| total < max)
        && rule
            .limit
            .per_connection
            .is_none_or(|max| per_connection < max)
        && rule
            .limit
            .per_authority
            .is_none_or(|max| per_authority < max)
}

/// A uniform number in [0, 1) from (seed, rule, request): SplitMix64, so a scenario's
/// random choices replay exactly.
fn draw(seed: u64, rule_index: usize, request_number: u64) -> f64 {
    let mut x = seed
        ^ (rule_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ request_number.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Default routing: the host chosen by SNI answers its own names and misdirects the rest
/// (as nginx and Apache do on an SNI/Host mismatch); without SNI the authority picks the
/// host among those on the listener.
fn route(
    hosts: &[HostSpec],
    bodies: &Bodies,
    conn: &ConnectionFacts,
    req: &RequestFacts,
) -> (Response, Option<String>, Option<String>) {
    let on_listener =
        |(_, host): &(usize, &HostSpec)| Scenario::host_on_listener(host, &conn.listener);
    let answers = |host: &HostSpec, name: &str| host.names.iter().any(|n| name_matches(n, name));
    let sni_host = conn.sni.as_deref().and_then(|sni| {
        hosts
            .iter()
            .enumerate()
            .filter(on_listener)
            .find(|(_, host)| answers(host, sni))
    });
    let chosen = match (conn.sni.as_deref(), sni_host) {
        (Some(sni), Some((index, host))) => {
            if answers(host, &req.authority) {
                Ok((index, host))
            } else {
                Err(format!(
                    "this connection was opened for {sni} (SNI), whose virtual host {} does not serve {}",
                    display_name(host),
                    req.authority
                ))
            }
        }
        _ => hosts
            .iter()
            .enumerate()
            .filter(on_listener)
            .find(|(_, host)| answers(host, &req.authority))
            .ok_or_else(|| {
                format!(
                    "no virtual host serves {} on listener {}",
                    req.authority, conn.listener
                )
            }),
    };
    match chosen {
        Ok((index, host)) => (
            host_response(host, bodies.hosts.get(index), req),
            Some(display_name(host)),
            None,
        ),
        Err(why) => {
            let body = Bytes::from(format!("misdirect: 421 Misdirected Request: {why}\n"));
            (
                Response {
                    status: 421,
                    headers: text_plain(),
                    body,
                },
                None,
                Some(why),
            )
        }
    }
}

fn display_name(host: &HostSpec) -> String {
    host.names.first().cloned().unwrap_or_default()
}

fn text_plain() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "content-type".to_owned(),
        "text/plain; charset=utf-8".to_owned(),
    )])
}

fn host_response(
    host: &HostSpec,
    bodies: Option<&Vec<Option<Bytes>>>,
    req: &RequestFacts,
) -> Response {
    match host
        .responses
        .iter()
        .position(|r: &ResponseSpec| path_matches(&r.path, &req.path))
    {
        Some(index) => Response {
            status: host.responses[index].status,
            headers: host.responses[index].headers.clone(),
            body: bodies
                .and_then(|b| b.get(index).cloned().flatten())
                .unwrap_or_default(),
        },
        None => Response {
            status: 200,
            headers: text_plain(),
            body: Bytes::from(format!(
                "misdirect: {} answered {} {}\n",
                display_name(host),
                req.method,
                req.path
            )),
        },
    }
}

fn default_body(status: u16, req: &RequestFacts, rule: Option<&str>) -> Bytes {
    let rule = rule.unwrap_or("a rule");
    Bytes::from(if status == 421 {
        format!(
            "misdirect: 421 Misdirected Request for {} {} (scenario rule {rule}); retry on a new connection\n",
            req.authority, req.path
        )
    } else {
        format!("misdirect: {status} from scenario rule {rule}\n")
    })
}

#[cfg(test)]
mod tests;
