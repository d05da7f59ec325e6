//! The journal: every event the server sees or causes, numbered, timestamped, kept in memory
//! and (optionally) written as NDJSON, one line per event, as it happens.
//!
//! Tests and expectations assert on these events, never on log text.
//!
//! What is recorded when, for which reader:
//! - **In memory** an event is recorded before the server acts on it: a request is in the
//!   journal before its answer is sent. The control API (`/journal`, `/verdict`), `misdirect
//!   run`'s verdict and embedding code read this.
//! - **The NDJSON file** gets the lines through a 64 KiB buffer, written out when it fills
//!   and, by a flusher thread, [`FLUSH_DELAY`] after the first line that is not yet written
//!   (group commit: under load one `write` carries hundreds of events, and no request waits
//!   for a write of its own). So a line reaches the file at most [`FLUSH_DELAY`] after it is
//!   recorded; [`Journal::flush`] — called at shutdown — returns once every event recorded
//!   before it is in the file and synced.
//!
//! Memory is bounded: events are kept in memory as their NDJSON lines, at most
//! [`MEMORY_LIMIT_BYTES`] of them, the oldest dropped first; the file, when there is one,
//! keeps every event, numbered without gaps. [`Journal::window`] says how many events a
//! reader asked for are no longer in memory.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// The most the events kept in memory take: 32 MiB, counted as their NDJSON lines plus
/// [`ENTRY_OVERHEAD_BYTES`] each — some 50,000 requests, far more than an ordinary test
/// records between two resets. Beyond it the oldest events are dropped from memory (and
/// counted); the file keeps them all.
pub const MEMORY_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// What one event costs in memory beyond its NDJSON line (its slot, the shared buffer's
/// header, the allocator's share), as counted against [`MEMORY_LIMIT_BYTES`].
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

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
    /// A frame h2 has no API for was written between h2's frames: an ORIGIN or ALTSVC frame
    /// (the connection's opening frames, or a rule's), or a GOAWAY with a chosen
    /// last-stream-id (a rule's).
    FrameSent {
        /// Connection id.
        connection: u64,
        /// Stream id (0: the connection).
        stream: u32,
        /// The frame and its decoded fields.
        #[serde(flatten)]
        frame: SentFrame,
        /// Rule that sent it; none for the opening frames of a listener or host.
        rule: Option<String>,
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

/// A frame written by the injector, with its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SentFrame {
    /// ORIGIN (RFC 8336).
    Origin {
        /// The origins listed (possibly none).
        origins: Vec<String>,
    },
    /// ALTSVC (RFC 7838 §4).
    Altsvc {
        /// The origin it is for; empty on a request's stream (the stream's origin).
        origin: String,
        /// The Alt-Svc field value.
        value: String,
    },
    /// GOAWAY (RFC 9113 §6.8).
    Goaway {
        /// The last stream the server says it processed (streams above are not answered).
        last_stream_id: u32,
        /// Error code.
        code: ErrorCode,
        /// Debug data.
        debug: String,
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

/// An event in memory: its sequence number and NDJSON line (with the newline). One
/// allocation per event, parsed back only when read.
struct Stored {
    seq: u64,
    line: Arc<[u8]>,
}

impl Stored {
    fn cost(&self) -> usize {
        self.line.len() + ENTRY_OVERHEAD_BYTES
    }
}

struct Inner {
    next_seq: u64,
    /// Events in memory, oldest first.
    events: VecDeque<Stored>,
    /// Sum of their costs.
    bytes: usize,
    /// The bound on `bytes`.
    limit: usize,
    /// Events dropped from memory since the last clear: the `evicted` events up to and
    /// including sequence number `evicted_through`, consecutive.
    evicted: u64,
    evicted_through: u64,
    /// The NDJSON line being written, reused.
    line: Vec<u8>,
    sink: Option<BufWriter<File>>,
    /// Why writing the file stopped, if it did.
    sink_error: Option<String>,
    /// Lines are in the buffer that the flusher has not written yet.
    dirty: bool,
    /// The journal is being dropped: the flusher writes what is left and ends.
    closing: bool,
    /// Holds the file's lock (a duplicate of the sink's descriptor) even after a failed
    /// write closed the sink, so that no second server starts writing the same file.
    _lock: Option<File>,
}

/// Events in memory after a sequence number, and how many after it are not in memory any
/// more (dropped to keep memory bounded; the NDJSON file has them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Events still in memory, oldest first.
    pub events: Vec<Event>,
    /// Events after the sequence number asked for that were dropped from memory: they come
    /// before the first of `events`. 0 when nothing is missing.
    pub dropped: u64,
}

/// The journal. Shared by every connection task; cheap to record into.
pub struct Journal {
    started: Instant,
    state: Arc<State>,
    flusher: Option<JoinHandle<()>>,
}

/// What the recording side and the flusher thread share.
struct State {
    inner: Mutex<Inner>,
    /// Wakes the flusher: lines to write, or closing.
    wake: Condvar,
}

/// The most a line waits in the buffer before the flusher writes it to the file.
pub const FLUSH_DELAY: Duration = Duration::from_millis(2);

/// The buffer lines are written through (written out at once when full).
const FILE_BUFFER_BYTES: usize = 64 * 1024;

impl Journal {
    /// A journal kept in memory (at most [`MEMORY_LIMIT_BYTES`]) and, when `path` is given,
    /// written there as NDJSON (the file is created or truncated).
    ///
    /// A regular file is locked (flock) for as long as the journal lives: when another
    /// journal — in this process or another — holds the lock, this fails with an error of
    /// kind [`std::io::ErrorKind::ResourceBusy`] saying so, and the file is left untouched.
    pub fn new(path: Option<&Path>) -> std::io::Result<Journal> {
        Journal::with_memory_limit(path, MEMORY_LIMIT_BYTES)
    }

    /// [`Journal::new`] keeping at most `limit` bytes of events in memory (the newest event
    /// is always kept, whatever its size).
    pub fn with_memory_limit(path: Option<&Path>, limit: usize) -> std::io::Result<Journal> {
        let (sink, lock) = match path {
            Some(path) => {
                let (file, lock) = open_locked(path)?;
                (
                    Some(BufWriter::with_capacity(FILE_BUFFER_BYTES, file)),
                    lock,
                )
            }
            None => (None, None),
        };
        let has_file = sink.is_some();
        let state = Arc::new(State {
            wake: Condvar::new(),
            inner: Mutex::new(Inner {
                next_seq: 1,
                events: VecDeque::new(),
                bytes: 0,
                limit,
                evicted: 0,
                evicted_through: 0,
                line: Vec::new(),
                sink,
                sink_error: None,
                dirty: false,
                closing: false,
                _lock: lock,
            }),
        });
        let flusher = if has_file {
            let shared = Arc::clone(&state);
            Some(
                std::thread::Builder::new()
                    .name("misdirect-journal".to_owned())
                    .spawn(move || flush_when_dirty(&shared))?,
            )
        } else {
            None
        };
        Ok(Journal {
            started: Instant::now(),
            state,
            flusher,
        })
    }

    /// Milliseconds since the journal started (the server's clock for the engine).
    pub fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Records an event; returns its sequence number. It is in memory when this returns, and
    /// in the file a moment later (see the module's documentation).
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
        let inner = &mut *inner;
        inner.line.clear();
        let serialized = serde_json::to_writer(&mut inner.line, &event);
        inner.line.push(b'\n');
        if serialized.is_ok() {
            let stored = Stored {
                seq,
                line: Arc::from(inner.line.as_slice()),
            };
            if let Some(sink) = inner.sink.as_mut() {
                // Under the lock, so the file keeps the order of the sequence numbers; a
                // write happens here only when the buffer is full.
                match sink.write_all(&stored.line) {
                    Ok(()) if !inner.dirty => {
                        inner.dirty = true;
                        self.state.wake.notify_one();
                    }
                    Ok(()) => {}
                    Err(err) => inner.stop_file(&err),
                }
            }
            inner.bytes += stored.cost();
            inner.events.push_back(stored);
        } else {
            tracing::error!(seq, "journal event could not be serialized; not kept");
        }
        while inner.bytes > inner.limit && inner.events.len() > 1 {
            if let Some(old) = inner.events.pop_front() {
                inner.bytes -= old.cost();
                inner.evicted += 1;
                inner.evicted_through = old.seq;
            }
        }
        if inner.line.capacity() > 64 * 1024 {
            // One huge event does not keep its buffer for the rest of the run.
            inner.line = Vec::new();
        }
        seq
    }

    /// Forgets the events in memory (the file keeps them) and records a `reset` event, whose
    /// sequence number it returns; numbering continues, so `since` stays meaningful.
    pub fn clear(&self) -> u64 {
        {
            let mut inner = self.lock();
            inner.events.clear();
            inner.bytes = 0;
            inner.evicted = 0;
            inner.evicted_through = 0;
        }
        self.record(EventKind::Reset)
    }

    /// The sequence number of the newest event (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Every event still in memory, oldest first ([`Journal::evicted`] says how many older
    /// ones are not).
    pub fn snapshot(&self) -> Vec<Event> {
        self.window(0).events
    }

    /// Events in memory with a sequence number greater than `seq`.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        self.window(seq).events
    }

    /// Events in memory with a sequence number greater than `seq`, and how many events
    /// greater than `seq` were dropped from memory since the last [`Journal::clear`] (the
    /// file has them): what the control API's `/journal?since=N` answers.
    pub fn window(&self, seq: u64) -> Window {
        let (lines, dropped) = self.lines_since(seq);
        // Parsed outside the lock: recording goes on meanwhile.
        let events = lines
            .iter()
            .filter_map(|line| match serde_json::from_slice(line) {
                Ok(event) => Some(event),
                Err(err) => {
                    tracing::error!(error = %err, "journal line does not parse back");
                    None
                }
            })
            .collect();
        Window { events, dropped }
    }

    /// [`Journal::window`] as NDJSON, exactly the lines of the file: the events in memory
    /// after `seq`, and how many after `seq` were dropped from memory.
    pub fn ndjson_since(&self, seq: u64) -> (Vec<u8>, u64) {
        let (lines, dropped) = self.lines_since(seq);
        (lines.concat(), dropped)
    }

    /// The lines in memory after `seq` (shared, not copied), and how many events after `seq`
    /// were dropped from memory.
    fn lines_since(&self, seq: u64) -> (Vec<Arc<[u8]>>, u64) {
        let inner = self.lock();
        // The dropped events are the consecutive sequence numbers ending at
        // `evicted_through`.
        let dropped_from = inner.evicted_through + 1 - inner.evicted.min(inner.evicted_through);
        let dropped = (inner.evicted_through + 1).saturating_sub(dropped_from.max(seq + 1));
        let start = inner.events.partition_point(|e| e.seq <= seq);
        let lines = inner
            .events
            .range(start..)
            .map(|e| Arc::clone(&e.line))
            .collect();
        (lines, dropped)
    }

    /// How many events were dropped from memory since the last [`Journal::clear`] (the file
    /// has them).
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// How many bytes the events in memory take (NDJSON lines plus [`ENTRY_OVERHEAD_BYTES`]
    /// each), and the bound on that.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.bytes, inner.limit)
    }

    /// Why writing the file stopped, if it did.
    pub fn sink_error(&self) -> Option<String> {
        self.lock().sink_error.clone()
    }

    /// Returns once every event recorded before the call is written to the file and synced
    /// to disk (at once without a file).
    pub fn flush(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        if let Some(why) = &inner.sink_error {
            return Err(std::io::Error::other(why.clone()));
        }
        let Some(sink) = inner.sink.as_mut() else {
            return Ok(());
        };
        let written = sink.flush().and_then(|()| sink.get_ref().sync_data());
        match written {
            Ok(()) => {
                inner.dirty = false;
                Ok(())
            }
            Err(err) => {
                inner.stop_file(&err);
                Err(err)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock()
    }
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the journal half-updated in a way
        // that matters more than losing it; keep recording.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// A failed write stops the file (the in-memory journal goes on) and says so once.
    fn stop_file(&mut self, err: &std::io::Error) {
        if self.sink_error.is_none() {
            // Keep serving and keep the in-memory journal; say so once, loudly.
            tracing::error!(error = %err, "journal file write failed; events stay in memory only");
            self.sink_error = Some(err.to_string());
        }
        // Dropped without the flush a BufWriter tries: it would fail the same way.
        if let Some(sink) = self.sink.take() {
            let (_file, _unwritten) = sink.into_parts();
        }
        self.dirty = false;
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.lock().closing = true;
        self.state.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// The flusher thread: sleeps until a line is buffered, waits [`FLUSH_DELAY`] so that the
/// lines recorded meanwhile go with it, and writes them out in one go. Wakes at most once
/// per delay, and never while nothing is recorded.
fn flush_when_dirty(state: &State) {
    let mut inner = state.lock();
    loop {
        while !inner.dirty && !inner.closing {
            inner = state
                .wake
                .wait(inner)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if !inner.closing {
            drop(inner);
            std::thread::sleep(FLUSH_DELAY);
            inner = state.lock();
        }
        if let Some(sink) = inner.sink.as_mut()
            && let Err(err) = sink.flush()
        {
            inner.stop_file(&err);
        }
        inner.dirty = false;
        if inner.closing {
            return;
        }
    }
}

/// Opens `path` for writing without truncating it, takes its lock (regular files only: a
/// FIFO or `/dev/null` may be shared), and only then truncates it. Returns the file and a
/// duplicate descriptor that keeps the lock.
fn open_locked(path: &Path) -> std::io::Result<(File, Option<File>)> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Ok((file, None));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = crate::locks::holder(&file)
                .map_or_else(String::new, |pid| format!(" (pid {pid}?)"));
            return Err(std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!(
                    "another misdirect{pid} is writing this journal; give each server its own --journal"
                ),
            ));
        }
        // A file system without locks: go on without one.
        Err(std::fs::TryLockError::Error(err)) => {
            tracing::debug!(error = %err, "cannot lock the journal file");
        }
    }
    file.set_len(0)?;
    let lock = file.try_clone().ok();
    Ok((file, lock))
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
        journal.flush().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("file");
        let events = read_ndjson(&text).expect("parses back");
        assert_eq!(events, journal.snapshot());
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(text.lines().all(|l| l.contains(r#""event":"shutdown""#)));
        assert_eq!(journal.since(2).len(), 1);
    }

    fn shutdown(i: usize) -> EventKind {
        EventKind::Shutdown {
            reason: format!("r{i:04}"),
        }
    }

    /// The NDJSON size of one `shutdown` event of [`shutdown`]'s shape.
    fn event_bytes() -> usize {
        let journal = Journal::new(None).expect("journal");
        journal.record(shutdown(0));
        journal.memory_bytes().0
    }

    /// The sequence numbers of events.
    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn memory_is_bounded_and_the_file_keeps_every_event_without_gaps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        // Room for about ten events (their sizes vary by a few bytes with the clocks).
        let limit = event_bytes() * 10;
        let journal = Journal::with_memory_limit(Some(&path), limit).expect("journal");
        for i in 0..25 {
            journal.record(shutdown(i));
            let (bytes, _) = journal.memory_bytes();
            assert!(bytes <= limit, "{bytes} > {limit} after {} events", i + 1);
        }
        let in_memory = journal.snapshot();
        assert!((8..=11).contains(&in_memory.len()), "{}", in_memory.len());
        let first = in_memory[0].seq;
        assert_eq!(seqs(&in_memory), (first..=25).collect::<Vec<_>>());
        assert_eq!(journal.evicted(), first - 1);
        assert_eq!(
            journal.memory_bytes().0,
            in_memory
                .iter()
                .map(|e| serde_json::to_vec(e).expect("serializes").len()
                    + 1
                    + ENTRY_OVERHEAD_BYTES)
                .sum::<usize>()
        );

        journal.flush().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("file");
        let all = read_ndjson(&text).expect("parses back");
        assert_eq!(seqs(&all), (1..=25).collect::<Vec<_>>());
        assert_eq!(&all[all.len() - in_memory.len()..], &in_memory[..]);
    }

    #[test]
    fn a_window_says_how_many_of_the_events_asked_for_were_dropped() {
        let journal = Journal::with_memory_limit(None, event_bytes() * 4).expect("journal");
        for i in 0..10 {
            journal.record(shutdown(i));
        }
        let all = journal.window(0);
        let first = all.events[0].seq;
        assert!(first > 3, "{first}");
        assert_eq!(seqs(&all.events), (first..=10).collect::<Vec<_>>());
        // Every event after `since` is either in the window or counted as dropped.
        for since in 0..=11 {
            let window = journal.window(since);
            let after = 10u64.saturating_sub(since);
            assert_eq!(
                window.dropped + window.events.len() as u64,
                after,
                "since {since}"
            );
            assert_eq!(window.dropped, (first - 1).saturating_sub(since));
            assert_eq!(journal.since(since), window.events);
        }
        assert_eq!(
            journal.window(10),
            Window {
                events: Vec::new(),
                dropped: 0
            }
        );
    }

    #[test]
    fn a_clear_is_not_a_drop_and_counting_starts_again() {
        let journal = Journal::with_memory_limit(None, event_bytes() * 3).expect("journal");
        for i in 0..5 {
            journal.record(shutdown(i));
        }
        assert!(journal.window(0).dropped >= 1);
        let reset = journal.clear();
        assert_eq!(reset, 6);
        assert_eq!(journal.window(0).dropped, 0);
        assert_eq!(journal.evicted(), 0);
        for i in 0..6 {
            journal.record(shutdown(i));
        }
        // Dropped since the clear: the reset (6) and what came next, up to the first kept.
        let window = journal.window(0);
        let first = window.events[0].seq;
        assert!(first > 6, "{first}");
        assert_eq!(window.dropped, first - 6);
        assert_eq!(journal.window(6).dropped, first - 7);
        assert_eq!(journal.last_seq(), 12);
    }

    #[test]
    fn an_event_larger_than_the_bound_is_still_kept_alone() {
        let journal = Journal::with_memory_limit(None, 10).expect("journal");
        journal.record(shutdown(1));
        journal.record(shutdown(2));
        let kept = journal.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].seq, 2);
        assert_eq!(journal.window(0).dropped, 1);
    }

    #[test]
    fn the_default_bound_is_one_no_ordinary_test_meets() {
        let journal = Journal::new(None).expect("journal");
        assert_eq!(journal.memory_bytes().1, MEMORY_LIMIT_BYTES);
        for i in 0..10_000 {
            journal.record(shutdown(i));
        }
        assert_eq!(journal.window(0).dropped, 0);
        assert_eq!(journal.snapshot().len(), 10_000);
    }

    #[cfg(unix)]
    #[test]
    fn a_second_journal_on_the_same_file_is_refused_and_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        let first = Journal::new(Some(&path)).expect("journal");
        first.record(shutdown(1));
        first.flush().expect("flushed");
        let err = Journal::new(Some(&path))
            .err()
            .expect("a second writer must be refused");
        assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy);
        let text = err.to_string();
        assert!(
            text.contains("another misdirect") && text.contains("is writing this journal"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(
            text.contains(&format!("(pid {}?)", std::process::id())),
            "{text}"
        );
        // Not truncated by the refused attempt.
        let written = read_ndjson(&std::fs::read_to_string(&path).expect("file")).expect("parses");
        assert_eq!(written.len(), 1);
        first.record(shutdown(2));
        drop(first);
        // Free again once the first is gone; truncated for the new run.
        let second = Journal::new(Some(&path)).expect("the lock went with the first journal");
        second.record(shutdown(3));
        second.flush().expect("flushed");
        let written = read_ndjson(&std::fs::read_to_string(&path).expect("file")).expect("parses");
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].seq, 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_journal_on_dev_null_is_never_locked() {
        let a = Journal::new(Some(Path::new("/dev/null"))).expect("first");
        let b = Journal::new(Some(Path::new("/dev/null"))).expect("second");
        a.record(shutdown(1));
        b.record(shutdown(1));
    }

    #[test]
    fn events_read_back_from_memory_are_the_events_recorded() {
        let request = EventKind::Request(Box::new(RequestEvent {
            connection: 3,
            stream: Some(5),
            request_on_connection: 2,
            request_number: 7,
            protocol: Protocol::H2,
            method: "POST".into(),
            scheme: Scheme::Https,
            authority: "b.test".into(),
            path: "/x?y=\u{e9}\"".into(),
            sni: Some("a.test".into()),
            attempt: 2,
            coalesced: true,
            body_bytes: 12,
            body_sha256: "ab".repeat(32),
            rule: None,
            host: Some("b".into()),
            action: Action::Respond,
            status: Some(421),
            reset_code: None,
            misdirected_because: Some("why".into()),
            error: None,
            received_ms: 0.1 + 0.2,
            duration_ms: 1e-7,
        }));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        let journal = Journal::new(Some(&path)).expect("journal");
        journal.record(request.clone());
        journal.record(shutdown(1));
        let events = journal.snapshot();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, request);
        // The NDJSON answer is the file, byte for byte.
        journal.flush().expect("flushed");
        let (ndjson, dropped) = journal.ndjson_since(0);
        assert_eq!(dropped, 0);
        assert_eq!(ndjson, std::fs::read(&path).expect("file"));
        let (tail, _) = journal.ndjson_since(1);
        assert_eq!(
            read_ndjson(std::str::from_utf8(&tail).expect("UTF-8")).expect("parses"),
            events[1..]
        );
    }

    /// A file that cannot be written (a full disk) stops the file, not the journal: the
    /// error is kept and reported by flush, and memory keeps recording.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failing_file_is_reported_and_memory_goes_on() {
        let journal = Journal::new(Some(Path::new("/dev/full"))).expect("journal");
        journal.record(shutdown(1));
        assert!(journal.flush().is_err(), "/dev/full cannot take the line");
        assert!(journal.sink_error().is_some());
        journal.record(shutdown(2));
        assert_eq!(seqs(&journal.snapshot()), [1, 2]);
    }

    /// Lines recorded from many threads reach the file whole and in sequence order.
    #[test]
    fn the_file_keeps_the_order_of_the_sequence_numbers_under_contention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        let journal = Arc::new(Journal::new(Some(&path)).expect("journal"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let journal = Arc::clone(&journal);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        journal.record(shutdown(t * 1000 + i));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recorder");
        }
        journal.flush().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("file");
        let all = read_ndjson(&text).expect("every line whole");
        assert_eq!(seqs(&all), (1..=2000).collect::<Vec<_>>());
    }

    /// Without a flush, a recorded line reaches the file soon after (the flusher thread),
    /// not only when the buffer fills.
    #[test]
    fn a_line_reaches_the_file_without_a_flush() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.ndjson");
        let journal = Journal::new(Some(&path)).expect("journal");
        journal.record(shutdown(1));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::fs::read_to_string(&path).expect("file");
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(seqs(&read_ndjson(&text).expect("whole lines")), [1]);
    }
}
