//! What a client under test is told: the scenario's client plan with real ports, the
//! environment `misdirect run` gives its command, and the browser page that carries the
//! plan out with credentialed subresource loads (so a browser needs only one URL).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{Response, Route};
use crate::journal::harness_path;
use crate::ready::{Ready, ReadyListener, ReadyName};
use crate::scenario::{ClientStep, Scenario, name_matches};

/// Where every host serves the page that carries out the client plan in a browser.
pub const CLIENT_PAGE_PATH: &str = harness_path!("client");

/// What the journal names a request for the client page (its `rule`).
pub const CLIENT_PAGE_ROUTE: &str = "misdirect client page";

/// One step of the plan, with the URL made concrete.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedStep {
    /// Make this request.
    Request(ResolvedRequest),
    /// Wait this many milliseconds.
    PauseMs(u64),
}

/// A planned request with everything an adapter needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedRequest {
    /// Method.
    pub method: String,
    /// The URL as written in the scenario (no port).
    pub url: String,
    /// The URL with the listener's real port: what the client requests.
    pub url_with_port: String,
    /// Host name of the URL.
    pub host: String,
    /// The address to connect to (the client must map `host` to it, e.g. curl `--resolve`).
    pub connect: String,
    /// Listener that serves it.
    pub listener: String,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Body, if any.
    pub body: Option<String>,
}

/// The plan with real ports. Requests whose listener cannot be found are left out (the
/// scenario validation already said so).
pub fn resolved_plan(scenario: &Scenario, ready: &Ready) -> Vec<ResolvedStep> {
    let Some(plan) = &scenario.client else {
        return Vec::new();
    };
    plan.steps
        .iter()
        .filter_map(|step| match step {
            ClientStep::PauseMs(ms) => Some(ResolvedStep::PauseMs(*ms)),
            ClientStep::Request(request) => {
                let uri: http::Uri = request.url.parse().ok()?;
                let host = uri.host()?.to_owned();
                let tls = uri.scheme_str() == Some("https");
                let listener =
                    listener_for(scenario, ready, &host, tls, request.listener.as_deref())?;
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let scheme = if tls { "https" } else { "http" };
                Some(ResolvedStep::Request(ResolvedRequest {
                    method: request.method.clone(),
                    url: request.url.clone(),
                    url_with_port: format!("{scheme}://{host}:{}{path}", listener.port),
                    host,
                    connect: listener.address.to_string(),
                    listener: listener.name.clone(),
                    headers: request.headers.clone(),
                    body: request.body.clone(),
                }))
            }
        })
        .collect()
}

/// The listener a request for `host` goes to: the one named, else the first (of the right
/// kind) that serves a host answering to `host`, else the first of the right kind.
fn listener_for<'a>(
    scenario: &Scenario,
    ready: &'a Ready,
    host: &str,
    tls: bool,
    named: Option<&str>,
) -> Option<&'a ReadyListener> {
    if let Some(name) = named {
        return ready.listeners.iter().find(|l| l.name == name);
    }
    let serves = |listener: &ReadyListener| {
        scenario.hosts.iter().any(|h| {
            Scenario::host_on_listener(h, &listener.name)
                && h.names.iter().any(|n| name_matches(n, host))
        })
    };
    ready
        .listeners
        .iter()
        .filter(|l| l.tls == tls)
        .find(|l| serves(l))
        .or_else(|| ready.listeners.iter().find(|l| l.tls == tls))
}

/// Every concrete host name the scenario uses (hosts' names without wildcards, plan URLs),
/// with the listener address it should resolve to.
pub fn name_map(scenario: &Scenario, ready: &Ready) -> Vec<(String, ReadyListener)> {
    let mut names: BTreeMap<String, ReadyListener> = BTreeMap::new();
    for step in resolved_plan(scenario, ready) {
        if let ResolvedStep::Request(r) = step
            && let Some(l) = ready.listeners.iter().find(|l| l.name == r.listener)
        {
            names.entry(r.host).or_insert_with(|| l.clone());
        }
    }
    for host in &scenario.hosts {
        for name in host.names.iter().filter(|n| !n.starts_with("*.")) {
            let listener = listener_for(scenario, ready, name, true, None)
                .or_else(|| listener_for(scenario, ready, name, false, None));
            if let Some(l) = listener {
                names.entry(name.clone()).or_insert_with(|| l.clone());
            }
        }
    }
    names.into_iter().collect()
}

/// [`name_map`] as the readiness information gives it.
pub fn ready_names(scenario: &Scenario, ready: &Ready) -> BTreeMap<String, ReadyName> {
    name_map(scenario, ready)
        .into_iter()
        .map(|(name, l)| {
            (
                name,
                ReadyName {
                    listener: l.name,
                    address: l.address,
                },
            )
        })
        .collect()
}

/// The environment `misdirect run` gives its command.
pub fn environment(
    scenario: &Scenario,
    ready: &Ready,
    control_url: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
    set(
        "MISDIRECT_READY",
        serde_json::to_string(ready).unwrap_or_default(),
    );
    set("MISDIRECT_CA", ready.ca.display().to_string());
    if let Some(url) = control_url {
        set("MISDIRECT_CONTROL_URL", url.to_owned());
    }
    if let Some(journal) = &ready.journal {
        set("MISDIRECT_JOURNAL", journal.display().to_string());
    }
    let plan = resolved_plan(scenario, ready);
    set(
        "MISDIRECT_PLAN",
        serde_json::to_string(&serde_json::json!({ "steps": plan })).unwrap_or_default(),
    );
    for (i, listener) in ready.listeners.iter().enumerate() {
        let key = env_key(&listener.name);
        set(
            &format!("MISDIRECT_{key}_ADDR"),
            listener.address.to_string(),
        );
        set(&format!("MISDIRECT_{key}_IP"), listener.ip.to_string());
        set(&format!("MISDIRECT_{key}_PORT"), listener.port.to_string());
        if i == 0 {
            set("MISDIRECT_ADDR", listener.address.to_string());
            set("MISDIRECT_PORT", listener.port.to_string());
        }
    }
    let names = name_map(scenario, ready);
    // curl: `curl $MISDIRECT_CURL_RESOLVE https://b.test:$MISDIRECT_PORT/`
    let resolve: Vec<String> = names
        .iter()
        .map(|(name, l)| format!("--resolve {name}:{}:{}", l.port, url_ip(&l.ip)))
        .collect();
    set("MISDIRECT_CURL_RESOLVE", resolve.join(" "));
    // Chromium: --host-resolver-rules="$MISDIRECT_HOST_RESOLVER_RULES"
    let rules: Vec<String> = names
        .iter()
        .map(|(name, l)| format!("MAP {name} {}", url_ip(&l.ip)))
        .collect();
    set("MISDIRECT_HOST_RESOLVER_RULES", rules.join(","));
    // /etc/hosts-style lines for clients that take a hosts file (or a custom resolver).
    let hosts: Vec<String> = names
        .iter()
        .map(|(name, l)| format!("{} {name}", l.ip))
        .collect();
    set("MISDIRECT_HOSTS", hosts.join("\n"));
    let spki: Vec<&str> = ready
        .certificates
        .values()
        .map(|c| c.spki_sha256.as_str())
        .collect();
    set("MISDIRECT_SPKI_LIST", spki.join(","));
    if let Some(url) = browser_url(scenario, ready) {
        set("MISDIRECT_BROWSER_URL", url);
    }
    env
}

fn url_ip(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `MAIN` for `main`, `EDGE_2` for `edge-2`.
fn env_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The client page on the scenario's first host (its first non-wildcard name).
pub fn browser_url(scenario: &Scenario, ready: &Ready) -> Option<String> {
    let host = scenario.hosts.first()?;
    let name = host.names.iter().find(|n| !n.starts_with("*."))?;
    let listener = listener_for(scenario, ready, name, true, None)
        .or_else(|| listener_for(scenario, ready, name, false, None))?;
    let scheme = if listener.tls { "https" } else { "http" };
    Some(format!(
        "{scheme}://{name}:{}{CLIENT_PAGE_PATH}",
        listener.port
    ))
}

/// The client page as a route every host answers (`GET` [`CLIENT_PAGE_PATH`]), to be handed
/// to the server: the plan in it has the real ports, so it is built once they are bound.
pub fn page_route(scenario: &Scenario, ready: &Ready) -> Route {
    Route {
        name: CLIENT_PAGE_ROUTE.to_owned(),
        method: "GET".to_owned(),
        path: CLIENT_PAGE_PATH.to_owned(),
        response: Response {
            status: 200,
            headers: [
                (
                    "content-type".to_owned(),
                    "text/html; charset=utf-8".to_owned(),
                ),
                ("cache-control".to_owned(), "no-store".to_owned()),
            ]
            .into(),
            body: page(scenario, ready).into(),
        },
    }
}

/// The browser page: runs the plan one step at a time; GETs as `<img>` loads (credentialed,
/// so a browser may coalesce them onto an open connection), other methods as credentialed
/// `fetch` in `no-cors` mode. When done, the title is `misdirect: done` and `#results`
/// holds what the browser saw as JSON (`--dump-dom` shows it).
/// The empty `data:` icon keeps browsers from requesting `/favicon.ico`, which would count
/// as a request of the scenario (and get its 421s).
pub fn page(scenario: &Scenario, ready: &Ready) -> String {
    let plan = serde_json::to_string(&resolved_plan(scenario, ready))
        .unwrap_or_else(|_| "[]".to_owned())
        // Keep the JSON from closing the script element.
        .replace("</", "<\\/");
    let name = scenario.name.as_deref().unwrap_or("scenario");
    let name = name
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>misdirect: running</title>
<link rel="icon" href="data:,"></head>
<body>
<h1>misdirect client page: {name}</h1>
<pre id="results">running</pre>
<script>
const plan = {plan};
const results = [];
function load(step) {{
  const r = step.request;
  if (r.method === "GET") {{
    return new Promise(resolve => {{
      const img = new Image();
      const started = performance.now();
      img.onload = () => resolve({{url: r.url_with_port, outcome: "load", ms: performance.now() - started}});
      img.onerror = () => resolve({{url: r.url_with_port, outcome: "error", ms: performance.now() - started}});
      img.src = r.url_with_port;
      document.body.appendChild(img);
    }});
  }}
  const started = performance.now();
  return fetch(r.url_with_port, {{method: r.method, body: r.body, mode: "no-cors", credentials: "include", headers: r.headers}})
    .then(() => ({{url: r.url_with_port, outcome: "load", ms: performance.now() - started}}))
    .catch(e => ({{url: r.url_with_port, outcome: "error: " + e, ms: performance.now() - started}}));
}}
(async () => {{
  for (const step of plan) {{
    if ("pause_ms" in step) {{
      await new Promise(resolve => setTimeout(resolve, step.pause_ms));
    }} else {{
      results.push(await load(step));
    }}
  }}
  document.getElementById("results").textContent = JSON.stringify(results);
  document.title = "misdirect: done";
}})();
</script>
</body></html>
"#
    )
}
