//! The journal: every event the server sees or causes, numbered, timestamped, kept in memory
//! and (optionally) written as NDJSON, one line per event, as it happens.
//!
//! Tests and expectations assert on these events, never on log text.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::scenario::ErrorCode;

/// A path under [`HARNESS_PATH_PREFIX`], as a `&'static str`: `harness_path!("client")`.
macro_rules! harness_path {
    ($name:literal) => {
        concat!("/_misdirect/", $name)
    };
}
pub(crate) use harness_path;

/// Paths under this prefix are the harness's own (the browser client page, served beside
/// every scenario): the journal records their requests, expectations and counts skip them.
/// Other harness paths are spelt with `harness_path!`, so that the prefix is written once.
pub const HARNESS_PATH_PREFIX: &str = harness_path!("");

/// Events kept in memory at most; older ones are evicted (and counted), never the file's.
pub const MEMORY_CAPACITY: usize = 1_000_000;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic sequence number, from 1, without gaps.
    pub seq: u64,
    /// Wall-clock time, RFC 3339.
    pub time: String,
    /// Milliseconds since the server started (monotonic clock).
    pub elapsed_ms: f64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A listener is bound.
    Listening {
        /// Listener name.
        listener: String,
        /// Bound address with the real port.
        address: String,
        /// TLS or cleartext.
        tls: bool,
    },
    /// A TCP connection was accepted.
    ConnectionOpened {
        /// Connection id.
        connection: u64,
        /// Listener name.
        listener: String,
        /// Server address.
        local: String,
        /// Client address.
        peer: String,
    },
    /// The TLS handshake completed.
    TlsEstablished {
        /// Connection id.
        connection: u64,
        /// SNI sent by the client.
        sni: Option<String>,
        /// Negotiated ALPN protocol.
        alpn: Option<String>,
        /// `TLSv1.3` or `TLSv1.2`.
        tls_version: String,
        /// Name of the certificate served.
        certificate: Option<String>,
    },
    /// The TLS handshake failed (or timed out).
    TlsFailed {
        /// Connection id.
        connection: u64,
        /// SNI sent by the client, if the ClientHello got that far.
        sni: Option<String>,
        /// Why.
        reason: String,
    },
    /// A request was received and dealt with.
    Request(Box<RequestEvent>),
    /// A response could not be sent after its request was journaled (the client reset the
    /// stream or the connection died first).
    ResponseFailed {
        /// Connection id.
        connection: u64,
        /// HTTP/2 stream id.
        stream: Option<u32>,
        /// What failed.
        error: String,
    },
    /// An HTTP/2 stream was refused (RST_STREAM REFUSED_STREAM) without reaching the engine.
    StreamRefused {
        /// Connection id.
        connection: u64,
        /// Stream id.
        stream: u32,
        /// Why.
        reason: String,
    },
    /// A GOAWAY frame was sent.
    GoawaySent {
        /// Connection id.
        connection: u64,
        /// Highest stream id the server says it processed (RFC 9113 §6.8).
        last_stream_id: u32,
        /// Error code.
        code: ErrorCode,
        /// Graceful (drain) or immediate.
        graceful: bool,
        /// Rule that asked for it, if any (none for shutdown).
        rule: Option<String>,
    },
    /// A connection ended.
    ConnectionClosed {
        /// Connection id.
        connection: u64,
        /// Why: `client closed`, `idle timeout`, `rule close`, `shutdown`, an error, …
        reason: String,
        /// Requests it carried.
        requests: u64,
    },
    /// The in-memory journal and all counters were cleared (control API `POST /reset`).
    Reset,
    /// Another scenario was put in force (control API `PUT /scenario`).
    ScenarioLoaded {
        /// Its name.
        scenario: Option<String>,
        /// Whether certificates were generated again.
        certificates_regenerated: bool,
    },
    /// The server is stopping.
    Shutdown {
        /// Why.
        reason: String,
    },
}

/// A request and what the server did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// Connection id.
    pub connection: u64,
    /// HTTP/2 stream id (absent on HTTP/1.1).
    pub stream: Option<u32>,
    /// Position on the connection, from 1.
    pub request_on_connection: u64,
    /// Position among all requests, from 1.
    pub request_number: u64,
    /// `h2`, `h2c` or `http/1.1`.
    pub protocol: Protocol,
    /// Method.
    pub method: String,
    /// `https` or `http`.
    pub scheme: Scheme,
    /// Authority without port.
    pub authority: String,
    /// Path with query.
    pub path: String,
    /// SNI of the connection.
    pub sni: Option<String>,
    /// 1 = first try of this method+authority+path, 2 = first retry, …
    pub attempt: u64,
    /// The request was coalesced: its authority is not the name the connection was opened
    /// for — the SNI, or without SNI the first authority the connection carried. Computed
    /// once, by the engine; rules, expectations and the report all read this.
    pub coalesced: bool,
    /// Request body size in bytes.
    pub body_bytes: u64,
    /// SHA-256 of the request body, hex.
    pub body_sha256: String,
    /// Rule that fired, if any.
    pub rule: Option<String>,
    /// Host that answered by default routing, if any.
    pub host: Option<String>,
    /// What was done: `respond`, `reset_stream`, `goaway` or `close`.
    pub action: Action,
    /// Status sent, if a response was sent.
    pub status: Option<u16>,
    /// RST_STREAM code sent, if any.
    pub reset_code: Option<ErrorCode>,
    /// Why default routing misdirected the request.
    pub misdirected_because: Option<String>,
    /// Something that went wrong while answering (client reset, body too large, …).
    pub error: Option<String>,
    /// When the request headers arrived, ms since start.
    pub received_ms: f64,
    /// From headers received to action completed, ms.
    pub duration_ms: f64,
}

/// Which HTTP a connection speaks, as the journal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/2 over TLS (ALPN `h2`).
    #[serde(rename = "h2")]
    H2,
    /// HTTP/2 over cleartext, by prior knowledge.
    #[serde(rename = "h2c")]
    H2c,
    /// HTTP/1.1, over TLS or not.
    #[serde(rename = "http/1.1")]
    Http11,
}

impl Protocol {
    /// The journal's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
            Protocol::Http11 => "http/1.1",
        }
    }
}

/// The URL scheme of a request: `https` over TLS, `http` over cleartext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Over TLS.
    Https,
    /// Over cleartext.
    Http,
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        })
    }
}

/// What the server did with a request (the `action` of a `request` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answered it (also 413, 408 and 400 for bodies the harness could not take).
    Respond,
    /// Reset its stream (RST_STREAM).
    ResetStream,
    /// Sent GOAWAY: graceful (the request was answered) or immediate (it was not).
    Goaway,
    /// Closed the connection without answering.
    Close,
}

impl Action {
    /// The journal's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Respond => "respond",
            Action::ResetStream => "reset_stream",
            Action::Goaway => "goaway",
            Action::Close => "close",
        }
    }
}

struct Inner {
    next_seq: u64,
    events: VecDeque<Event>,
    evicted: u64,
    sink: Option<BufWriter<File>>,
    sink_error: Option<String>,
}

/// The journal. Shared by every connection task; cheap to record into.
pub struct Journal {
    started: Instant,
    inner: Mutex<Inner>,
}

impl Journal {
    /// A journal kept in memory and, when `path` is given, written there as NDJSON
    /// (the file is created or truncated).
    pub fn new(path: Option<&Path>) -> std::io::Result<Journal> {
        let sink = match path {
            Some(path) => Some(BufWriter::new(File::create(path)?)),
            None => None,
        };
        Ok(Journal {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                next_seq: 1,
                events: VecDeque::new(),
                evicted: 0,
                sink,
                sink_error: None,
            }),
        })
    }

    /// Milliseconds since the journal started (the server's clock for the engine).
    pub fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Records an event; returns its sequence number. Each line is flushed to the file at
    /// once, so a killed server loses nothing already recorded.
    pub fn record(&self, kind: EventKind) -> u64 {
        let mut inner = self.lock();
        // Read the clocks under the lock, so that time follows the sequence numbers.
        let elapsed_ms = (self.now_ms() * 1000.0).round() / 1000.0;
        let time = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = Event {
            seq,
            time,
            elapsed_ms,
            kind,
        };
        let written = inner.sink.as_mut().map(|sink| {
            serde_json::to_writer(&mut *sink, &event)
                .map_err(std::io::Error::from)
                .and_then(|()| sink.write_all(b"\n"))
                .and_then(|()| sink.flush())
        });
        if let Some(Err(err)) = written {
            // Keep serving and keep the in-memory journal; say so once, loudly.
            tracing::error!(error = %err, "journal file write failed; events stay in memory only");
            inner.sink = None;
            inner.sink_error = Some(err.to_string());
        }
        if inner.events.len() >= MEMORY_CAPACITY {
            inner.events.pop_front();
            inner.evicted += 1;
        }
        inner.events.push_back(event);
        seq
    }

    /// Forgets the events in memory (the file keeps them) and records a `reset` event, whose
    /// sequence number it returns; numbering continues, so `since` stays meaningful.
    pub fn clear(&self) -> u64 {
        {
            let mut inner = self.lock();
            inner.events.clear();
            inner.evicted = 0;
        }
        self.record(EventKind::Reset)
    }

    /// The sequence number of the newest event (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Every event still in memory, oldest first.
    pub fn snapshot(&self) -> Vec<Event> {
        self.lock().events.iter().cloned().collect()
    }

    /// Events with a sequence number greater than `seq`.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// How many events were evicted from memory (still in the file).
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Why writing the file stopped, if it did.
    pub fn sink_error(&self) -> Option<String> {
        self.lock().sink_error.clone()
    }

    /// Flushes the file.
    pub fn flush(&self) -> std::io::Result<()> {
        match self.lock().sink.as_mut() {
            Some(sink) => sink.get_ref().sync_data(),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the journal half-updated in a way
        // that matters more than losing it; keep recording.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads an NDJSON journal file back.
pub fn read_ndjson(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_without_gaps_and_written_as_ndjson() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        let journal = Journal::new(Some(&path)).expect("journal");
        for i in 0..3 {
            journal.record(EventKind::Shutdown {
                reason: format!("r{i}"),
            });
        }
        let text = std::fs::read_to_string(&path).expect("file");
        let events = read_ndjson(&text).expect("parses back");
        assert_eq!(events, journal.snapshot());
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(text.lines().all(|l| l.contains(r#""event":"shutdown""#)));
        assert_eq!(journal.since(2).len(), 1);
    }
}
