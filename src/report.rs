//! A picture of what happened: connections as lanes (with SNI and certificate), requests on
//! them in order, 421s linked to their retries — as text for a terminal and as one
//! self-contained HTML page with an inline SVG.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::expect::{Status, Verdict};
use crate::journal::{Action, Event, EventKind, HARNESS_PATH_PREFIX, RequestEvent, SentFrame};

/// A connection and what happened on it.
#[derive(Debug, Default, Clone)]
struct Lane {
    id: u64,
    listener: String,
    peer: String,
    sni: Option<String>,
    alpn: Option<String>,
    certificate: Option<String>,
    closed: Option<String>,
    tls_failed: Option<String>,
    requests: Vec<(u64, RequestEvent)>,
    /// Frames the injector wrote: (seq, one-line description).
    frames: Vec<(u64, String)>,
}

struct Model {
    lanes: Vec<Lane>,
    /// Request seq → seq of the attempt it retries.
    retry_of: BTreeMap<u64, u64>,
    end_ms: f64,
}

fn model(events: &[Event]) -> Model {
    let mut lanes: BTreeMap<u64, Lane> = BTreeMap::new();
    let mut end_ms: f64 = 0.0;
    let mut last_attempt: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut retry_of = BTreeMap::new();
    for event in events {
        end_ms = end_ms.max(event.elapsed_ms);
        match &event.kind {
            EventKind::ConnectionOpened {
                connection,
                listener,
                peer,
                ..
            } => {
                lanes.insert(
                    *connection,
                    Lane {
                        id: *connection,
                        listener: listener.clone(),
                        peer: peer.clone(),
                        ..Lane::default()
                    },
                );
            }
            EventKind::TlsEstablished {
                connection,
                sni,
                alpn,
                certificate,
                ..
            } => {
                if let Some(lane) = lanes.get_mut(connection) {
                    lane.sni = sni.clone();
                    lane.alpn = alpn.clone();
                    lane.certificate = certificate.clone();
                }
            }
            EventKind::TlsFailed {
                connection,
                sni,
                reason,
            } => {
                if let Some(lane) = lanes.get_mut(connection) {
                    lane.sni = sni.clone();
                    lane.tls_failed = Some(reason.clone());
                }
            }
            EventKind::Request(request) if !request.path.starts_with(HARNESS_PATH_PREFIX) => {
                let key = (
                    request.method.clone(),
                    request.authority.clone(),
                    request.path.clone(),
                );
                if let Some(previous) = last_attempt.insert(key, event.seq) {
                    retry_of.insert(event.seq, previous);
                }
                if let Some(lane) = lanes.get_mut(&request.connection) {
                    lane.requests.push((event.seq, (**request).clone()));
                }
            }
            EventKind::FrameSent {
                connection,
                stream,
                frame,
                rule,
            } => {
                if let Some(lane) = lanes.get_mut(connection) {
                    let mut line = frame_label(*stream, frame);
                    if let Some(rule) = rule {
                        let _ = write!(line, "  (rule {rule})");
                    }
                    lane.frames.push((event.seq, line));
                }
            }
            EventKind::ConnectionClosed {
                connection, reason, ..
            } => {
                if let Some(lane) = lanes.get_mut(connection) {
                    lane.closed = Some(reason.clone());
                }
            }
            _ => {}
        }
    }
    Model {
        lanes: lanes.into_values().collect(),
        retry_of,
        end_ms,
    }
}

/// A frame the injector wrote, in one line: `ORIGIN https://a.test https://b.test`, …
fn frame_label(stream: u32, frame: &SentFrame) -> String {
    match frame {
        SentFrame::Origin { origins } if origins.is_empty() => "ORIGIN (empty)".to_owned(),
        SentFrame::Origin { origins } => format!("ORIGIN {}", origins.join(" ")),
        SentFrame::Altsvc { origin, value } if origin.is_empty() => {
            format!("ALTSVC on stream {stream}: {value}")
        }
        SentFrame::Altsvc { origin, value } => format!("ALTSVC {origin}: {value}"),
        SentFrame::Goaway {
            last_stream_id,
            code,
            ..
        } => format!("GOAWAY last-stream-id {last_stream_id} {code:?}"),
    }
}

fn outcome(request: &RequestEvent) -> String {
    match (request.status, &request.reset_code, request.action) {
        (Some(status), _, _) => status.to_string(),
        (None, Some(code), _) => format!("RST_STREAM {code:?}"),
        (None, None, Action::Goaway) => "GOAWAY".to_owned(),
        (None, None, Action::Close) => "closed".to_owned(),
        (None, None, other) => other.as_str().to_owned(),
    }
}

fn lane_title(lane: &Lane) -> String {
    let sni = lane
        .sni
        .as_deref()
        .map_or("no SNI".to_owned(), |s| format!("SNI {s}"));
    let mut title = format!("connection {}  {sni}", lane.id);
    if let Some(cert) = &lane.certificate {
        let _ = write!(title, "  cert {cert}");
    }
    if let Some(alpn) = &lane.alpn {
        let _ = write!(title, "  {alpn}");
    }
    let _ = write!(title, "  (listener {}, from {})", lane.listener, lane.peer);
    title
}

/// The run as text: one block per connection, requests in order, retries linked.
pub fn text(events: &[Event], verdict: Option<&Verdict>) -> String {
    let model = model(events);
    let mut retried_by: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for lane in &model.lanes {
        for (seq, _) in &lane.requests {
            if let Some(original) = model.retry_of.get(seq) {
                retried_by.insert(*original, (*seq, lane.id));
            }
        }
    }
    let mut out = String::new();
    for lane in &model.lanes {
        let _ = writeln!(out, "{}", lane_title(lane));
        if let Some(reason) = &lane.tls_failed {
            let _ = writeln!(out, "    TLS handshake failed: {reason}");
        }
        let mut frames = lane.frames.iter().peekable();
        for (seq, request) in &lane.requests {
            while let Some((frame_seq, label)) = frames.next_if(|(f, _)| f < seq) {
                let _ = writeln!(out, "    #{frame_seq:<5} ⇐ {label}");
            }
            let mut line = format!(
                "    #{seq:<5} {} {}{}  → {}",
                request.method,
                request.authority,
                request.path,
                outcome(request)
            );
            if let Some(rule) = &request.rule {
                let _ = write!(line, "  (rule {rule})");
            }
            if let Some(original) = model.retry_of.get(seq) {
                let _ = write!(line, "  retry of #{original} (attempt {})", request.attempt);
            }
            if let Some((retry, connection)) = retried_by.get(seq) {
                let place = if *connection == lane.id {
                    "on the same connection".to_owned()
                } else {
                    format!("on connection {connection}")
                };
                let _ = write!(line, "  ⇒ retried as #{retry} {place}");
            }
            if request.coalesced {
                let _ = write!(line, "  (coalesced)");
            }
            let _ = writeln!(out, "{line}");
        }
        for (frame_seq, label) in frames {
            let _ = writeln!(out, "    #{frame_seq:<5} ⇐ {label}");
        }
        if let Some(reason) = &lane.closed {
            let _ = writeln!(out, "    closed: {reason}");
        }
    }
    if model.lanes.is_empty() {
        out.push_str("no connections\n");
    }
    if let Some(verdict) = verdict {
        out.push('\n');
        out.push_str(&verdict.table());
    }
    out
}

/// Escapes text for HTML content and (quoted) attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(request: &RequestEvent) -> &'static str {
    match request.status {
        Some(421) => "#d7301f",
        Some(s) if (200..400).contains(&s) => "#2b8a3e",
        Some(_) => "#e8590c",
        None => "#7048e8",
    }
}

/// The run as one self-contained HTML page: an SVG with a lane per connection and a box per
/// request (421 red, success green, resets/GOAWAY purple), arrows from each misdirected
/// request to its retry, and the verdict table.
pub fn html(events: &[Event], verdict: Option<&Verdict>) -> String {
    let model = model(events);
    const LEFT: f64 = 430.0;
    const WIDTH: f64 = 1100.0;
    const LANE_H: f64 = 56.0;
    const BOX_W: f64 = 132.0;
    const TOP: f64 = 30.0;
    let span = (model.end_ms.max(1.0)) * 1.05;
    // Requests are placed by order, not time, when many arrive at once; time decides order.
    let mut order: Vec<(u64, usize)> = model
        .lanes
        .iter()
        .enumerate()
        .flat_map(|(lane, l)| {
            l.requests
                .iter()
                .map(|(seq, _)| *seq)
                .chain(l.frames.iter().map(|(seq, _)| *seq))
                .map(move |seq| (seq, lane))
        })
        .collect();
    order.sort();
    let slots = order.len().max(1) as f64;
    let slot_w = ((WIDTH - LEFT - 20.0) / slots).max(BOX_W + 8.0);
    let total_w = (LEFT + slot_w * slots + 40.0).max(WIDTH);
    let mut position: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (i, (seq, lane)) in order.iter().enumerate() {
        position.insert(
            *seq,
            (LEFT + i as f64 * slot_w, TOP + *lane as f64 * LANE_H),
        );
    }
    let height = TOP + model.lanes.len().max(1) as f64 * LANE_H + 20.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0}" height="{height:.0}" font-family="monospace" font-size="12">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>
<text x="10" y="18" font-weight="bold">connections (lanes) and requests in arrival order; span {span:.0} ms</text>
"##
    );
    for (i, lane) in model.lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE_H;
        let fill = if lane.tls_failed.is_some() {
            "#fff0f0"
        } else if i % 2 == 0 {
            "#f4f6f8"
        } else {
            "#ffffff"
        };
        let _ = write!(
            svg,
            r##"<g class="lane" data-connection="{id}"><rect x="0" y="{y:.0}" width="{total_w:.0}" height="{LANE_H:.0}" fill="{fill}"/>
<text x="10" y="{t1:.0}" font-weight="bold">connection {id}</text>
<text x="10" y="{t2:.0}">{sni}{cert}</text>
<text x="10" y="{t3:.0}" fill="#666">{detail}</text></g>
"##,
            id = lane.id,
            t1 = y + 16.0,
            t2 = y + 32.0,
            t3 = y + 48.0,
            sni = html_escape(
                &lane
                    .sni
                    .as_deref()
                    .map_or("no SNI".to_owned(), |s| format!("SNI {s}"))
            ),
            cert = html_escape(
                &lane
                    .certificate
                    .as_deref()
                    .map_or(String::new(), |c| format!(" · cert {c}"))
            ),
            detail = html_escape(&match &lane.tls_failed {
                Some(reason) => format!("TLS failed: {reason}"),
                None => format!(
                    "{} · {} · {}",
                    lane.alpn.as_deref().unwrap_or("-"),
                    lane.listener,
                    lane.closed.as_deref().unwrap_or("open")
                ),
            }),
        );
        for (seq, request) in &lane.requests {
            let Some(&(x, y)) = position.get(seq) else {
                continue;
            };
            let _ = write!(
                svg,
                r##"<g class="request" data-seq="{seq}"><title>#{seq} {method} {authority}{path} → {outcome}{coalesced}{rule}</title>
<rect x="{x:.0}" y="{ry:.0}" width="{BOX_W:.0}" height="40" rx="5" fill="{fill}" fill-opacity="0.15" stroke="{fill}"/>
<text x="{tx:.0}" y="{ty1:.0}">#{seq} {outcome}</text>
<text x="{tx:.0}" y="{ty2:.0}">{short}</text></g>
"##,
                method = html_escape(&request.method),
                authority = html_escape(&request.authority),
                path = html_escape(&request.path),
                outcome = html_escape(&outcome(request)),
                coalesced = if request.coalesced { " coalesced" } else { "" },
                rule = html_escape(
                    &request
                        .rule
                        .as_deref()
                        .map_or(String::new(), |r| format!(" (rule {r})"))
                ),
                ry = y + 8.0,
                tx = x + 6.0,
                ty1 = y + 24.0,
                ty2 = y + 40.0,
                fill = color(request),
                short = html_escape(&truncate(
                    &format!("{}{}", request.authority, request.path),
                    16
                )),
            );
        }
    }
    for lane in &model.lanes {
        for (seq, label) in &lane.frames {
            let Some(&(x, y)) = position.get(seq) else {
                continue;
            };
            let _ = write!(
                svg,
                r##"<g class="frame" data-seq="{seq}"><title>#{seq} {label}</title>
<rect x="{x:.0}" y="{ry:.0}" width="{BOX_W:.0}" height="40" rx="5" fill="#1c7ed6" fill-opacity="0.12" stroke="#1c7ed6" stroke-dasharray="3 2"/>
<text x="{tx:.0}" y="{ty1:.0}">#{seq} ⇐ frame</text>
<text x="{tx:.0}" y="{ty2:.0}">{short}</text></g>
"##,
                label = html_escape(label),
                ry = y + 8.0,
                tx = x + 6.0,
                ty1 = y + 24.0,
                ty2 = y + 40.0,
                short = html_escape(&truncate(label, 16)),
            );
        }
    }
    for (retry, original) in &model.retry_of {
        if let (Some(&(x1, y1)), Some(&(x2, y2))) = (position.get(original), position.get(retry)) {
            let _ = writeln!(
                svg,
                r##"<path class="retry" d="M {sx:.0} {sy:.0} C {c1:.0} {sy:.0}, {c2:.0} {ey:.0}, {ex:.0} {ey:.0}" fill="none" stroke="#444" stroke-dasharray="4 3" marker-end="url(#arrow)"/>"##,
                sx = x1 + BOX_W,
                sy = y1 + 28.0,
                ex = x2,
                ey = y2 + 28.0,
                c1 = x1 + BOX_W + 30.0,
                c2 = x2 - 30.0,
            );
        }
    }
    svg.push_str("</svg>\n");

    let mut table = String::new();
    if let Some(verdict) = verdict {
        let _ = write!(
            table,
            "<h2>Verdict: <span class=\"{cls}\">{word}</span></h2>\n<table><tr><th>status</th><th>expectation</th><th>explanation</th><th>evidence (seq)</th></tr>\n",
            cls = if verdict.passed { "pass" } else { "fail" },
            word = if verdict.passed { "PASS" } else { "FAIL" },
        );
        for check in &verdict.checks {
            let (cls, word) = match check.status {
                Status::Pass => ("pass", "PASS"),
                Status::Fail => ("fail", "FAIL"),
                Status::NotExercised => ("unexercised", "NOT EXERCISED"),
            };
            let evidence: Vec<String> = check.evidence.iter().map(u64::to_string).collect();
            let _ = writeln!(
                table,
                "<tr><td class=\"{cls}\">{word}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&check.expectation),
                html_escape(&check.explanation),
                evidence.join(", ")
            );
        }
        table.push_str("</table>\n");
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>misdirect report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; }}
table {{ border-collapse: collapse; margin-top: 8px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 13px; }}
.pass {{ color: #2b8a3e; font-weight: bold; }} .fail {{ color: #d7301f; font-weight: bold; }}
.unexercised {{ color: #e8590c; font-weight: bold; }}
pre {{ background: #f4f6f8; padding: 8px; }}
</style></head>
<body>
<h1>misdirect report</h1>
<p>{lanes} connection(s), {requests} request(s) and frame(s). Red: 421 · green: answered · orange: other status · purple: reset / GOAWAY / closed · blue, dashed: a frame the server wrote between h2's (ORIGIN, ALTSVC, GOAWAY). Dashed arrows link a request to its retry.</p>
{svg}
{table}
<h2>As text</h2>
<pre>{text}</pre>
</body></html>
"#,
        lanes = model.lanes.len(),
        requests = order.len(),
        text = html_escape(&text(events, None)),
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let ndjson = r#"{"seq":1,"time":"","elapsed_ms":0.0,"event":"connection_opened","connection":1,"listener":"main","local":"l","peer":"p"}
{"seq":2,"time":"","elapsed_ms":1.0,"event":"tls_established","connection":1,"sni":"a.test","alpn":"h2","tls_version":"TLSv1.3","certificate":"shared"}
{"seq":3,"time":"","elapsed_ms":2.0,"event":"request","connection":1,"stream":1,"request_on_connection":1,"request_number":1,"protocol":"h2","method":"GET","scheme":"https","authority":"b.test","path":"/x","sni":"a.test","attempt":1,"coalesced":true,"body_bytes":0,"body_sha256":"","rule":null,"host":null,"action":"respond","status":421,"reset_code":null,"misdirected_because":null,"error":null,"received_ms":2.0,"duration_ms":0.1}
{"seq":4,"time":"","elapsed_ms":3.0,"event":"connection_opened","connection":2,"listener":"main","local":"l","peer":"p"}
{"seq":6,"time":"","elapsed_ms":3.5,"event":"frame_sent","connection":2,"stream":0,"type":"origin","origins":["https://b.test:8443"],"rule":null}
{"seq":5,"time":"","elapsed_ms":4.0,"event":"request","connection":2,"stream":1,"request_on_connection":1,"request_number":2,"protocol":"h2","method":"GET","scheme":"https","authority":"b.test","path":"/x","sni":"b.test","attempt":2,"coalesced":false,"body_bytes":0,"body_sha256":"","rule":null,"host":"b.test","action":"respond","status":200,"reset_code":null,"misdirected_because":null,"error":null,"received_ms":4.0,"duration_ms":0.1}
"#;
        crate::journal::read_ndjson(ndjson).expect("valid journal")
    }

    #[test]
    fn text_links_a_421_to_its_retry_on_another_connection() {
        let text = text(&events(), None);
        assert!(
            text.contains("connection 1  SNI a.test  cert shared  h2"),
            "{text}"
        );
        assert!(
            text.contains("#3     GET b.test/x  → 421  ⇒ retried as #5 on connection 2"),
            "{text}"
        );
        assert!(
            text.contains("#5     GET b.test/x  → 200  retry of #3 (attempt 2)"),
            "{text}"
        );
        assert!(
            text.contains("on connection 2  (coalesced)\n"),
            "the journal's coalesced is shown: {text}"
        );
        assert!(
            !text.contains("(attempt 2)  (coalesced)"),
            "and only where it holds: {text}"
        );
    }

    #[test]
    fn text_and_html_show_a_frame_on_its_connection() {
        let text = text(&events(), None);
        let lane_2 = &text[text.find("connection 2").expect("lane 2")..];
        assert!(
            lane_2.contains("#6     ⇐ ORIGIN https://b.test:8443"),
            "{text}"
        );
        let html = html(&events(), None);
        assert_eq!(html.matches("class=\"frame\"").count(), 1);
        assert!(html.contains("#6 ORIGIN https://b.test:8443"), "{html}");
    }

    #[test]
    fn html_has_a_lane_per_connection_a_box_per_request_and_a_retry_arrow() {
        let html = html(&events(), None);
        assert_eq!(html.matches("class=\"lane\"").count(), 2);
        assert_eq!(html.matches("class=\"request\"").count(), 2);
        assert_eq!(html.matches("class=\"retry\"").count(), 1);
        assert!(html.contains("SNI a.test · cert shared"));
    }
}
