//! What journaling one request costs on the request path: [`Journal::record`] of a typical
//! `request` event kept in memory only, also written to an NDJSON file, and with two threads
//! recording at once (as two connections' tasks do). Run with `cargo bench --bench journal`.
//!
//! Events are made ahead, [`CHUNK`] at a time and outside the timing, so only `record` is
//! timed; each has a connection, stream and path of its own. The in-memory journals are
//! filled to their memory bound first, so that every timed record also evicts, as in a
//! long run. The file-backed journal starts a fresh file every [`ROTATE`] events (outside
//! the timing, after a `flush`), so the benchmark does not fill the disk.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use misdirect::journal::{Action, EventKind, Journal, Protocol, RequestEvent, Scheme};

/// Events made ahead and recorded in one timed stretch.
const CHUNK: u64 = 4096;
/// Events written to one file before the journal starts a fresh one.
const ROTATE: u64 = 64 * 1024;
/// Events recorded before timing, enough to fill an in-memory journal to its bound.
const FILL: u64 = 80_000;

/// The `i`th event of thread `thread`: a GET answered by default routing, as most of a
/// scenario's requests are.
fn request(thread: u64, i: u64) -> EventKind {
    let connection = thread * 1_000_000 + i / 8 + 1;
    EventKind::Request(Box::new(RequestEvent {
        connection,
        stream: Some(1 + 2 * (i % 8) as u32),
        request_on_connection: i % 8 + 1,
        request_number: i + 1,
        protocol: Protocol::H2,
        method: "GET".to_owned(),
        scheme: Scheme::Https,
        authority: "static.site.test".to_owned(),
        path: format!("/img/{i}.png?v=3"),
        sni: Some("static.site.test".to_owned()),
        attempt: 1,
        coalesced: false,
        body_bytes: 0,
        body_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
        rule: None,
        host: Some("static.site.test".to_owned()),
        action: Action::Respond,
        status: Some(200),
        reset_code: None,
        misdirected_because: None,
        error: None,
        received_ms: 1_234.567,
        duration_ms: 0.081,
    }))
}

fn chunk(thread: u64, from: u64, n: u64) -> Vec<EventKind> {
    (from..from + n).map(|i| request(thread, i)).collect()
}

fn open(path: Option<&Path>) -> Journal {
    match Journal::new(path) {
        Ok(journal) => journal,
        Err(err) => panic!("cannot open the journal: {err}"),
    }
}

/// A journal to record into: in memory only, or also writing a file that is started afresh
/// every `ROTATE` events (between chunks, outside the timing).
struct Target {
    /// The file, if any.
    path: Option<PathBuf>,
    /// The journal; shared by the recording threads, replaced when the file is rotated.
    journal: Mutex<Option<Arc<Journal>>>,
    /// Events written to the current file.
    written: u64,
}

impl Target {
    /// An in-memory journal already at its memory bound.
    fn memory() -> Target {
        let journal = open(None);
        for i in 0..FILL {
            journal.record(request(9, i));
        }
        Target {
            path: None,
            journal: Mutex::new(Some(Arc::new(journal))),
            written: 0,
        }
    }

    /// A journal writing to `path`.
    fn file(path: &Path) -> Target {
        Target {
            path: Some(path.to_owned()),
            journal: Mutex::new(Some(Arc::new(open(Some(path))))),
            written: 0,
        }
    }

    fn current(journal: &Mutex<Option<Arc<Journal>>>) -> Arc<Journal> {
        match &*journal.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(journal) => Arc::clone(journal),
            None => unreachable!("a journal is always in place between rotations"),
        }
    }

    /// Counts `n` more events written; starts a fresh file once the current one has
    /// `ROTATE` events. Takes the fields apart so that it can run while the recording
    /// threads borrow the slot (they hold no journal between chunks).
    fn wrote(path: Option<&Path>, slot: &Mutex<Option<Arc<Journal>>>, written: &mut u64, n: u64) {
        *written += n;
        let Some(path) = path else { return };
        if *written < ROTATE {
            return;
        }
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.take() {
            if let Err(err) = old.flush() {
                panic!("cannot flush the journal file: {err}");
            }
            // The file lock goes with the old journal, before the new one takes it.
            drop(old);
        }
        *slot = Some(Arc::new(open(Some(path))));
        *written = 0;
    }

    /// One thread recording `iters` events, `CHUNK` at a time; the time spent recording.
    fn single(&mut self, iters: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = CHUNK.min(iters - done);
            let events = chunk(0, done, n);
            let journal = Target::current(&self.journal);
            let start = Instant::now();
            for event in events {
                black_box(journal.record(event));
            }
            spent += start.elapsed();
            drop(journal);
            Target::wrote(self.path.as_deref(), &self.journal, &mut self.written, n);
            done += n;
        }
        spent
    }

    /// Two threads recording `iters` events each into the journal at the same time, `CHUNK`
    /// each at a time: the wall time, so that the time per iteration is what one record
    /// takes while another thread records too (twice the events go by in it).
    fn contended(&mut self, iters: u64) -> Duration {
        let start = Barrier::new(3);
        let end = Barrier::new(3);
        let chunks = iters.div_ceil(CHUNK);
        let mut spent = Duration::ZERO;
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let (start, end, slot) = (&start, &end, &self.journal);
                scope.spawn(move || {
                    let mut done = 0;
                    for _ in 0..chunks {
                        let n = CHUNK.min(iters - done);
                        let events = chunk(thread, done, n);
                        start.wait();
                        let journal = Target::current(slot);
                        for event in events {
                            black_box(journal.record(event));
                        }
                        drop(journal);
                        end.wait();
                        done += n;
                    }
                });
            }
            let mut done = 0;
            for _ in 0..chunks {
                let n = CHUNK.min(iters - done);
                start.wait();
                let began = Instant::now();
                end.wait();
                spent += began.elapsed();
                done += n;
                Target::wrote(
                    self.path.as_deref(),
                    &self.journal,
                    &mut self.written,
                    2 * n,
                );
            }
        });
        spent
    }
}

fn record(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("cannot make a temporary folder: {err}"),
    };
    let path = dir.path().join("journal.ndjson");

    // The events are recorded as they are, and the file has them.
    {
        let journal = open(Some(&path));
        journal.record(request(0, 0));
        journal.flush().expect("flushes");
        assert_eq!(journal.snapshot().len(), 1);
        let text = std::fs::read_to_string(&path).expect("reads the journal file");
        assert!(text.contains(r#""path":"/img/0.png?v=3""#), "{text}");
    }

    let mut group = c.benchmark_group("journal_record");
    {
        let mut target = Target::memory();
        group.bench_function("memory", |b| b.iter_custom(|iters| target.single(iters)));
    }
    {
        let mut target = Target::file(&path);
        group.bench_function("file", |b| b.iter_custom(|iters| target.single(iters)));
    }
    {
        let mut target = Target::memory();
        group.bench_function("memory_2_threads", |b| {
            b.iter_custom(|iters| target.contended(iters))
        });
    }
    {
        let mut target = Target::file(&path);
        group.bench_function("file_2_threads", |b| {
            b.iter_custom(|iters| target.contended(iters))
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
    targets = record
}
criterion_main!(benches);
