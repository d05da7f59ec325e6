//! `misdirect scorecard`: every scenario of a catalogue against one or more client commands,
//! one cell per client × scenario, into one **card**.
//!
//! Each cell is a `misdirect run` of its own (the current executable, started as a child
//! process with its own ports, certificates, journal and report under the card's folder), so
//! that cells run in parallel and a cell that hangs or crashes is only that cell. The card is
//! read back from the cells' JSON reports and judged at a [`Level`]: a failed expectation at
//! or above the level fails the cell; one below it is listed but does not. The card renders
//! as a terminal table, Markdown, JSON (which [`compare`] reads back as a baseline), JUnit XML
//! and HTML.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::expect::{Check, Status, Verdict};
use crate::library::Entry;
use crate::report::html_escape;
use crate::scenario::{Cause, Level};

/// The version of the card's JSON shape.
pub const CARD_VERSION: u32 = 1;

/// How much longer than its own `--timeout-secs` a cell's `misdirect run` gets (start-up,
/// certificates, the journal settling, shutdown) before it is stopped.
pub const RUN_MARGIN: Duration = Duration::from_secs(30);

/// How long a stopped `misdirect run` gets between SIGTERM (on which it ends the client's
/// process group and shuts down) and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Most bytes of an adapter's output a JUnit `system-out` carries (the start and the end).
const SYSTEM_OUT_MAX: usize = 64 * 1024;

/// A client under test: a name (a column of the card) and the adapter command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The column's name; also a folder name under `cells/`.
    pub name: String,
    /// The adapter command and its arguments.
    pub command: Vec<String>,
    /// At most this many of its cells at once (browsers: 1); `None`: the card's `--jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
}

/// A scenario as the card shows it, so that a card reads without the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// The stable id (a row of the card).
    pub id: String,
    /// The cause it stages.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// The RFC sections it checks.
    #[serde(default)]
    pub rfc: Vec<String>,
    /// A file, or `bundled:STEM`.
    #[serde(default)]
    pub source: String,
}

impl ScenarioInfo {
    /// The cause as a card shows it.
    pub fn cause_label(&self) -> &'static str {
        self.cause.map_or("-", Cause::label)
    }
}

/// What a cell came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// No expectation at or above the level failed, and every one was exercised.
    Pass,
    /// Some expectation at or above the level failed.
    Fail,
    /// Nothing at or above the level failed, but some expectation was not exercised: the
    /// scenario did not apply to the client (it does not coalesce, so no 421 came).
    NotApplicable,
    /// The command could not run, timed out or failed, or the run left no report.
    Error,
}

impl CellStatus {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Pass => "pass",
            CellStatus::Fail => "fail",
            CellStatus::NotApplicable => "not_applicable",
            CellStatus::Error => "error",
        }
    }

    /// The word a table shows.
    pub fn word(self) -> &'static str {
        match self {
            CellStatus::Pass => "PASS",
            CellStatus::Fail => "FAIL",
            CellStatus::NotApplicable => "N/A",
            CellStatus::Error => "ERROR",
        }
    }

    /// Whether a card without a baseline counts it as expected.
    pub fn acceptable(self) -> bool {
        matches!(self, CellStatus::Pass | CellStatus::NotApplicable)
    }
}

/// One expectation of a cell that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its label, e.g. `retried_on_new_connection (b.test)`.
    pub expectation: String,
    /// How binding it is.
    pub level: Level,
    /// The verdict's one line.
    pub explanation: String,
    /// The journal's sequence numbers that show it.
    #[serde(default)]
    pub evidence: Vec<u64>,
}

impl Failure {
    fn of(check: &Check) -> Failure {
        Failure {
            expectation: check.expectation.clone(),
            level: check.level,
            explanation: check.explanation.clone(),
            evidence: check.evidence.clone(),
        }
    }

    /// `label [level]: explanation [seq 4, 8]`.
    pub fn line(&self) -> String {
        format!(
            "{} [{}]: {}{}",
            self.expectation,
            self.level.as_str(),
            self.explanation,
            seqs(&self.evidence)
        )
    }
}

fn seqs(evidence: &[u64]) -> String {
    if evidence.is_empty() {
        return String::new();
    }
    let list: Vec<String> = evidence.iter().map(u64::to_string).collect();
    format!("  [seq {}]", list.join(", "))
}

/// One client × scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The client's name.
    pub client: String,
    /// The scenario's id.
    pub scenario: String,
    /// What it came to.
    pub status: CellStatus,
    /// One line: `passed`, the failed labels, `not applicable: …`, or the error.
    #[serde(default)]
    pub reason: String,
    /// Failed expectations at or above the card's level (they make the cell fail).
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Failed expectations below the card's level: listed, but the cell does not fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub below_level: Vec<Failure>,
    /// Expectations nothing in the journal exercised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_exercised: Vec<Failure>,
    /// How the adapter command ended, as the run's report says (`{"outcome": "exited",
    /// "code": 0}`); absent when there is no report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<serde_json::Value>,
    /// The run's JSON report, relative to the card's folder.
    #[serde(default)]
    pub report: String,
    /// The run's HTML picture, relative to the card's folder.
    #[serde(default)]
    pub html: String,
    /// The run's NDJSON journal, relative to the card's folder.
    #[serde(default)]
    pub journal: String,
    /// What `misdirect run` and the adapter printed, relative to the card's folder.
    #[serde(default)]
    pub output: String,
    /// How long the cell took.
    #[serde(default)]
    pub duration_ms: u64,
}

impl Cell {
    /// The most binding level among the failures that count.
    pub fn worst_level(&self) -> Option<Level> {
        self.failures.iter().map(|f| f.level).min()
    }

    /// The distinct levels of the failures that count, most binding first.
    pub fn failing_levels(&self) -> Vec<&'static str> {
        let levels: BTreeSet<Level> = self.failures.iter().map(|f| f.level).collect();
        levels.into_iter().map(Level::as_str).collect()
    }

    /// What a table shows: the status word, with `*` on a pass that has failures below the
    /// level.
    pub fn word(&self) -> String {
        let star = if self.below_level.is_empty() || self.status == CellStatus::Fail {
            ""
        } else {
            "*"
        };
        format!("{}{star}", self.status.word())
    }
}

/// Every cell of every client on every scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// [`CARD_VERSION`].
    pub version: u32,
    /// The misdirect version that made it.
    #[serde(default)]
    pub misdirect: String,
    /// Failures at or above this level fail a cell.
    pub level: Level,
    /// Each run's `--timeout-secs`.
    #[serde(default)]
    pub timeout_secs: u64,
    /// When it started (UTC, RFC 3339).
    #[serde(default)]
    pub started: String,
    /// How long the whole card took.
    #[serde(default)]
    pub duration_ms: u64,
    /// The columns.
    pub clients: Vec<Client>,
    /// The rows.
    pub scenarios: Vec<ScenarioInfo>,
    /// Client-major, in column and row order.
    pub cells: Vec<Cell>,
}

impl Card {
    /// The cells that did not plainly pass (a pass with failures below the level included),
    /// in card order: what every form of the card lists below its table.
    pub fn not_passing(&self) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .filter(|c| c.status != CellStatus::Pass || !c.below_level.is_empty())
    }

    /// The cell of a client and a scenario.
    pub fn cell(&self, client: &str, scenario: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.client == client && c.scenario == scenario)
    }

    /// Cells of each status, for one client (or all with `None`).
    pub fn counts(&self, client: Option<&str>) -> BTreeMap<CellStatus, usize> {
        let mut counts = BTreeMap::new();
        for cell in &self.cells {
            if client.is_none_or(|c| c == cell.client) {
                *counts.entry(cell.status).or_insert(0) += 1;
            }
        }
        counts
    }

    /// `5 pass, 6 fail, 3 not applicable, 0 error`.
    pub fn summary(&self, client: Option<&str>) -> String {
        let counts = self.counts(client);
        let n = |s| counts.get(&s).copied().unwrap_or(0);
        format!(
            "{} pass, {} fail, {} not applicable, {} error",
            n(CellStatus::Pass),
            n(CellStatus::Fail),
            n(CellStatus::NotApplicable),
            n(CellStatus::Error)
        )
    }
}

/// A cell's verdict judged at a level.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Pass, fail or not applicable (never error: the verdict is there).
    pub status: CellStatus,
    /// One line.
    pub reason: String,
    /// Failures at or above the level.
    pub failures: Vec<Failure>,
    /// Failures below it.
    pub below_level: Vec<Failure>,
    /// Expectations not exercised.
    pub not_exercised: Vec<Failure>,
}

/// Whether a failure of `level` counts when the card fails at `threshold` (`must` is the
/// most binding: `--level must` counts only `must` failures, `robust` counts all).
pub fn counts_at(level: Level, threshold: Level) -> bool {
    level <= threshold
}

/// Whether a failed check is a scenario's premise rather than a requirement: a `coalesced`
/// expectation at level `robust`.
fn is_premise(check: &Check) -> bool {
    check.level == Level::Robust && check.expectation.starts_with("coalesced (")
}

/// Judges a verdict at a level: a failed expectation at or above it fails the cell; below it
/// is listed; with nothing counted failing, any expectation not exercised makes the cell not
/// applicable (the scenario did not apply to the client).
pub fn judge(verdict: &Verdict, threshold: Level) -> Judged {
    let mut failures = Vec::new();
    let mut below_level = Vec::new();
    let mut not_exercised = Vec::new();
    for check in &verdict.checks {
        match check.status {
            Status::Pass => {}
            // A robust `coalesced` that failed is the scenario's premise not met: the client
            // did not coalesce (coalescing is allowed, not required), so what the scenario
            // stages never applied to it.
            Status::Fail if is_premise(check) => {
                let authority = check
                    .expectation
                    .strip_prefix("coalesced (")
                    .and_then(|a| a.strip_suffix(')'))
                    .unwrap_or("the name");
                not_exercised.push(Failure {
                    explanation: format!("the client did not coalesce {authority}"),
                    ..Failure::of(check)
                });
            }
            Status::Fail if counts_at(check.level, threshold) => failures.push(Failure::of(check)),
            Status::Fail => below_level.push(Failure::of(check)),
            Status::NotExercised => not_exercised.push(Failure::of(check)),
        }
    }
    let labelled = |list: &[Failure]| {
        list.iter()
            .map(|f| format!("{} [{}]", f.expectation, f.level.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (status, reason) = if !failures.is_empty() {
        (CellStatus::Fail, format!("failed: {}", labelled(&failures)))
    } else if !not_exercised.is_empty() {
        let mut why: Vec<String> = Vec::new();
        for f in &not_exercised {
            let line = f
                .explanation
                .strip_suffix(": nothing to judge")
                .unwrap_or(&f.explanation)
                .to_owned();
            if !why.contains(&line) {
                why.push(line);
            }
        }
        (
            CellStatus::NotApplicable,
            format!("not applicable: {}", why.join("; ")),
        )
    } else if !below_level.is_empty() {
        (
            CellStatus::Pass,
            format!(
                "passed at --level {}; below it failed: {}",
                threshold.as_str(),
                labelled(&below_level)
            ),
        )
    } else {
        (CellStatus::Pass, "passed".to_owned())
    };
    Judged {
        status,
        reason,
        failures,
        below_level,
        not_exercised,
    }
}

/// How a report's `command` reads, when it did not succeed: `None` when it did.
fn command_problem(command: &serde_json::Value) -> Option<String> {
    let code = command.get("code").and_then(serde_json::Value::as_i64);
    match command.get("outcome").and_then(serde_json::Value::as_str) {
        Some("exited") if code == Some(0) => None,
        Some("exited") => Some(format!(
            "the command exited with {}",
            code.map_or("?".to_owned(), |c| c.to_string())
        )),
        Some("signalled") => Some("the command was killed by a signal".to_owned()),
        Some("timed_out") => Some(format!(
            "the command timed out after {} s and was killed",
            command
                .get("after_secs")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        )),
        Some("not_started") => Some(format!(
            "the command could not be started: {}",
            command
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        )),
        _ => Some(format!(
            "the report's command outcome is unreadable: {command}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Clients from the command line
// ---------------------------------------------------------------------------------------

/// Splits a command line into words as a shell would, without expansions: whitespace
/// separates words, `'…'` keeps everything, `"…"` keeps everything but `\"`, `\\`, `\$` and
/// `` \` ``, and `\` outside quotes keeps the next character. (For pipes, variables and the
/// like, use `sh -c '…'`.)
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed ' in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed \" in {text:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed \" in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(format!("{text:?} ends in a lone \\")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether a client name can name a column and a folder: letters, digits, `.`, `_`, `-`,
/// not starting with `.`.
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A name made safe for a folder (and a URL): other characters become `_`.
fn safe_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches('.');
    if trimmed.is_empty() {
        "_".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `--client NAME=CMD`: the name and the command, split as [`split_command`] does.
pub fn parse_client(spec: &str) -> Result<Client, String> {
    let Some((name, command)) = spec.split_once('=') else {
        return Err(format!("--client {spec:?}: expected NAME=CMD"));
    };
    let name = name.trim();
    if !valid_client_name(name) {
        return Err(format!(
            "--client {spec:?}: the name {name:?} must be letters, digits, '.', '_' or '-' (not starting with '.')"
        ));
    }
    let command = split_command(command).map_err(|e| format!("--client {spec:?}: {e}"))?;
    if command.is_empty() {
        return Err(format!("--client {spec:?}: no command after '='"));
    }
    Ok(Client {
        name: name.to_owned(),
        command,
        jobs: None,
    })
}

/// The client given after `--`, named after its program — or, for an interpreter
/// (`python3 clients/curl.py`), after its script: `curl`; `client` when nothing fits.
pub fn client_from_command(command: Vec<String>) -> Client {
    const INTERPRETERS: &[&str] = &[
        "sh", "bash", "dash", "zsh", "env", "node", "nodejs", "deno", "bun", "ruby", "perl", "php",
        "java", "uv", "pypy3",
    ];
    let stem = |word: &str| {
        Path::new(word)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
    };
    let program = command.first().and_then(|p| stem(p));
    let interpreted = program
        .as_deref()
        .is_some_and(|p| INTERPRETERS.contains(&p) || p.starts_with("python"));
    let script = interpreted
        .then(|| {
            command
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-') && !a.contains('='))
                .and_then(|a| stem(a))
        })
        .flatten();
    let name = script
        .or(program)
        .map_or_else(|| "client".to_owned(), |n| safe_name(&n));
    Client {
        name,
        command,
        jobs: None,
    }
}

// ---------------------------------------------------------------------------------------
// Running a card
// ---------------------------------------------------------------------------------------

/// How to make a card.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `misdirect` executable each cell runs (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// Arguments given to it before `run` (global flags, e.g. `--allow-files-outside`).
    pub exe_args: Vec<OsString>,
    /// The card's folder.
    pub out: PathBuf,
    /// Most cells at once.
    pub jobs: usize,
    /// Each run's `--timeout-secs`.
    pub timeout_secs: u64,
    /// Failures at or above it fail a cell.
    pub level: Level,
}

/// What the caller is told as the card goes.
#[derive(Debug)]
pub struct Tick<'a> {
    /// Cells finished.
    pub done: usize,
    /// Cells in all.
    pub total: usize,
    /// `client/scenario` of the cells running now.
    pub running: &'a [String],
    /// The cell that just finished, if that is the news.
    pub finished: Option<&'a Cell>,
}

/// A card that could not be made at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScorecardError {
    /// The file or folder.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

fn io_error(path: &Path, err: impl std::fmt::Display) -> ScorecardError {
    ScorecardError {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}

/// Takes the card's folder for this process: creates it and locks `OUT/.lock` (flock) for as
/// long as the returned file lives, so that two cards never write one folder's cells. A
/// second scorecard given the same folder is refused, naming the holder.
pub fn lock_out(out: &Path) -> Result<std::fs::File, ScorecardError> {
    std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    let path = out.join(".lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = crate::locks::holder(&file)
                .map_or_else(String::new, |pid| format!(" (pid {pid}?)"));
            Err(io_error(
                out,
                format!(
                    "another misdirect scorecard{pid} is writing this folder; give each its own --out"
                ),
            ))
        }
        // A file system without locks: go on without one.
        Err(std::fs::TryLockError::Error(_)) => Ok(file),
    }
}

/// The current time in UTC as RFC 3339 (`2025-01-02T03:04:05Z`).
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// One job of the queue: (scenario index, client index).
type Job = (usize, usize);

/// The queue the workers share.
struct Queue {
    pending: Vec<Job>,
    running: Vec<usize>,
}

/// What a worker tells the main thread.
enum Event {
    Started(Job),
    Finished(Job, Box<Cell>),
}

/// Runs every client on every scenario and returns the card (not yet saved: see [`save`]).
/// Bundled scenarios (which have no file) are written to `OUT/scenarios/ID.json` first; each
/// cell's files go to `OUT/cells/CLIENT/ID/` (emptied first). `progress` hears of every cell
/// started and finished.
pub fn run(
    entries: &[Entry],
    clients: &[Client],
    settings: &Settings,
    progress: &mut dyn FnMut(&Tick<'_>),
) -> Result<Card, ScorecardError> {
    let started_at = Instant::now();
    let started = now_rfc3339();
    let scenarios_dir = settings.out.join("scenarios");
    std::fs::create_dir_all(&scenarios_dir).map_err(|e| io_error(&scenarios_dir, e))?;
    // Folder names for the scenarios, unique even where two ids differ only in characters a
    // folder name cannot hold.
    let mut used = BTreeSet::new();
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let base = safe_name(&entry.id);
        let mut dir = base.clone();
        let mut n = 2;
        while !used.insert(dir.clone()) {
            dir = format!("{base}-{n}");
            n += 1;
        }
        let file = match &entry.path {
            Some(path) => path.clone(),
            None => {
                let file = scenarios_dir.join(format!("{dir}.json"));
                crate::pki::write_atomic(&file, entry.text.as_bytes(), 0o644)
                    .map_err(|e| io_error(&file, e))?;
                file
            }
        };
        dirs.push(dir);
        files.push(file);
    }

    let total = entries.len() * clients.len();
    let mut jobs: Vec<Job> = Vec::with_capacity(total);
    for s in 0..entries.len() {
        for c in 0..clients.len() {
            jobs.push((s, c));
        }
    }
    let caps: Vec<usize> = clients
        .iter()
        .map(|c| c.jobs.unwrap_or(usize::MAX).max(1))
        .collect();
    let queue = Mutex::new(Queue {
        pending: jobs,
        running: vec![0; clients.len()],
    });
    let wake = Condvar::new();
    let workers = settings.jobs.max(1).min(total.max(1));
    let mut cells: BTreeMap<Job, Cell> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<Event>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, wake, caps, dirs, files) = (&queue, &wake, &caps, &dirs, &files);
            scope.spawn(move || {
                loop {
                    let job = {
                        let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
                        loop {
                            if q.pending.is_empty() {
                                break None;
                            }
                            let free = q.pending.iter().position(|&(_, c)| q.running[c] < caps[c]);
                            if let Some(at) = free {
                                let job = q.pending.remove(at);
                                q.running[job.1] += 1;
                                break Some(job);
                            }
                            q = wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    let Some(job @ (s, c)) = job else { break };
                    let _ = tx.send(Event::Started(job));
                    let cell = run_cell(settings, &files[s], &entries[s].id, &dirs[s], &clients[c]);
                    queue.lock().unwrap_or_else(PoisonError::into_inner).running[c] -= 1;
                    wake.notify_all();
                    let _ = tx.send(Event::Finished(job, Box::new(cell)));
                }
            });
        }
        drop(tx);
        let name = |(s, c): Job| format!("{}/{}", clients[c].name, entries[s].id);
        let mut running: Vec<(Job, String)> = Vec::new();
        for event in rx {
            match event {
                Event::Started(job) => {
                    running.push((job, name(job)));
                    let names: Vec<String> = running.iter().map(|(_, n)| n.clone()).collect();
                    progress(&Tick {
                        done: cells.len(),
                        total,
                        running: &names,
                        finished: None,
                    });
                }
                Event::Finished(job, cell) => {
                    running.retain(|(j, _)| *j != job);
                    let names: Vec<String> = running.iter().map(|(_, n)| n.clone()).collect();
                    let done = cells.len() + 1;
                    progress(&Tick {
                        done,
                        total,
                        running: &names,
                        finished: Some(&cell),
                    });
                    cells.insert(job, *cell);
                }
            }
        }
    });

    // Client-major, in the order given.
    let mut ordered = Vec::with_capacity(total);
    for c in 0..clients.len() {
        for s in 0..entries.len() {
            if let Some(cell) = cells.remove(&(s, c)) {
                ordered.push(cell);
            }
        }
    }
    Ok(Card {
        version: CARD_VERSION,
        misdirect: env!("CARGO_PKG_VERSION").to_owned(),
        level: settings.level,
        timeout_secs: settings.timeout_secs,
        started,
        duration_ms: millis(started_at.elapsed()),
        clients: clients.to_vec(),
        scenarios: entries
            .iter()
            .map(|e| ScenarioInfo {
                id: e.id.clone(),
                cause: e.scenario.cause,
                rfc: e.scenario.rfc.clone(),
                source: e.source.clone(),
            })
            .collect(),
        cells: ordered,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Writes the card as `OUT/card.json` (and returns its path).
pub fn save(card: &Card, out: &Path) -> Result<PathBuf, ScorecardError> {
    let path = out.join("card.json");
    let mut bytes = serde_json::to_vec_pretty(card).map_err(|e| io_error(&path, e))?;
    bytes.push(b'\n');
    crate::pki::write_atomic(&path, &bytes, 0o644).map_err(|e| io_error(&path, e))?;
    Ok(path)
}

/// Reads a card saved earlier (a baseline).
pub fn load(path: &Path) -> Result<Card, ScorecardError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let card: Card = serde_json::from_str(&text).map_err(|e| io_error(path, e))?;
    if card.version != CARD_VERSION {
        return Err(io_error(
            path,
            format!(
                "a card of version {}, this misdirect reads version {CARD_VERSION}",
                card.version
            ),
        ));
    }
    for client in &card.clients {
        if !valid_client_name(&client.name) {
            return Err(io_error(
                path,
                format!(
                    "client name {:?}: use letters, digits, '.', '_' and '-' (not first '.')",
                    client.name
                ),
            ));
        }
        if client.command.first().is_none_or(String::is_empty) {
            return Err(io_error(
                path,
                format!("client {:?} has no command", client.name),
            ));
        }
    }
    Ok(card)
}

/// A file a card names relative to its folder, if it lies inside that folder (a card read
/// from elsewhere must not make us read any file it names).
fn inside(folder: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && !relative.is_empty()).then(|| folder.join(rel))
}

/// Runs one cell: `misdirect run` on the scenario with the client, bounded in time, and
/// reads its report.
fn run_cell(
    settings: &Settings,
    scenario_file: &Path,
    scenario_id: &str,
    scenario_dir: &str,
    client: &Client,
) -> Cell {
    let rel = format!("cells/{}/{scenario_dir}", client.name);
    let dir = settings.out.join(&rel);
    let mut cell = Cell {
        client: client.name.clone(),
        scenario: scenario_id.to_owned(),
        status: CellStatus::Error,
        reason: String::new(),
        failures: Vec::new(),
        below_level: Vec::new(),
        not_exercised: Vec::new(),
        command: None,
        report: format!("{rel}/report.json"),
        html: format!("{rel}/report.html"),
        journal: format!("{rel}/journal.ndjson"),
        output: format!("{rel}/output.txt"),
        duration_ms: 0,
    };
    let error = |mut cell: Cell, reason: String| {
        cell.reason = reason;
        cell
    };
    // A report left by an earlier card must not be read as this run's.
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return error(cell, format!("cannot empty {}: {e}", dir.display())),
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return error(cell, format!("cannot make {}: {e}", dir.display()));
    }
    let output_path = dir.join("output.txt");
    let streams =
        std::fs::File::create(&output_path).and_then(|out| out.try_clone().map(|err| (out, err)));
    let (stdout, stderr) = match streams {
        Ok(streams) => streams,
        Err(e) => return error(cell, format!("cannot write {}: {e}", output_path.display())),
    };
    let report_path = dir.join("report.json");
    let mut command = Command::new(&settings.exe);
    command
        .args(&settings.exe_args)
        .arg("run")
        .arg(scenario_file)
        .arg("--report")
        .arg(&report_path)
        .arg("--html")
        .arg(dir.join("report.html"))
        .arg("--journal")
        .arg(dir.join("journal.ndjson"))
        .arg("--certs-dir")
        .arg(dir.join("certs"))
        .arg("--timeout-secs")
        .arg(settings.timeout_secs.to_string())
        .args(["--log", "warn", "--control", "127.0.0.1:0", "--"])
        .args(&client.command)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // What would make parallel runs share ports or bind beyond loopback.
    for var in [
        "MISDIRECT_CONTROL",
        "MISDIRECT_BASE_PORT",
        "MISDIRECT_BIND_ALL",
        "MISDIRECT_READY_FILE",
    ] {
        command.env_remove(var);
    }
    end_with_parent(&mut command);
    let started = Instant::now();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return error(
                cell,
                format!("cannot start {}: {e}", settings.exe.display()),
            );
        }
    };
    let limit = Duration::from_secs(settings.timeout_secs) + RUN_MARGIN;
    let waited = wait_bounded(child, limit);
    cell.duration_ms = millis(started.elapsed());
    let status = match waited {
        Ok(Some(status)) => status,
        Ok(None) => {
            return error(
                cell,
                format!(
                    "timed out: misdirect run did not finish within {} s and was stopped",
                    limit.as_secs()
                ),
            );
        }
        Err(e) => return error(cell, format!("waiting for misdirect run: {e}")),
    };
    let report = std::fs::read_to_string(&report_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let last = last_line(&output_path);
            return error(
                cell,
                format!(
                    "no report ({e}); misdirect run {}{}",
                    describe_status(status),
                    last.map_or(String::new(), |l| format!(": {l}"))
                ),
            );
        }
    };
    let verdict = report
        .get("verdict")
        .cloned()
        .map(serde_json::from_value::<Verdict>);
    let verdict = match verdict {
        Some(Ok(verdict)) => verdict,
        Some(Err(e)) => return error(cell, format!("the report's verdict is unreadable: {e}")),
        None => return error(cell, "the report has no verdict".to_owned()),
    };
    let judged = judge(&verdict, settings.level);
    cell.command = report.get("command").cloned();
    cell.failures = judged.failures;
    cell.below_level = judged.below_level;
    cell.not_exercised = judged.not_exercised;
    match cell.command.as_ref().map(command_problem) {
        Some(None) => {
            cell.status = judged.status;
            cell.reason = judged.reason;
        }
        Some(Some(problem)) => cell.reason = problem,
        None => cell.reason = "the report does not say how the command ended".to_owned(),
    }
    cell
}

fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

/// The last non-empty line of a file, shortened.
fn last_line(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(line.chars().take(300).collect())
}

/// Waits for the child up to `limit`; beyond it, SIGTERM (on which `misdirect run` ends the
/// client's process group and shuts down), then SIGKILL after [`STOP_GRACE`]. `None`: it
/// was stopped. The child is always reaped.
fn wait_bounded(mut child: Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    terminate(&child);
    let grace = Instant::now() + STOP_GRACE;
    while Instant::now() < grace {
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

/// Has the kernel send the child SIGTERM when the thread that started it ends — however the
/// scorecard ends, SIGKILL included — so that no `misdirect run` outlives it (on SIGTERM it
/// ends its client's process group and shuts down). The thread waits for the child before it
/// ends, so this fires only when the scorecard itself is gone.
#[cfg(target_os = "linux")]
fn end_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure calls only prctl(2) and getppid(2), which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have gone before the request took hold.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("the scorecard ended"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn end_with_parent(_command: &mut Command) {}

#[cfg(unix)]
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // not yet reaped, so it names that process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

// ---------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------

/// A cell that is not as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `client × scenario`.
    pub cell: String,
    /// What changed, in words.
    pub what: String,
}

/// How a card compares with what was expected of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Cells not as expected (they make the exit code 1).
    pub unexpected: Vec<Change>,
    /// Cells of the baseline this card does not have (said, not failed on).
    pub gone: Vec<String>,
    /// Cells as expected.
    pub as_expected: usize,
}

impl Comparison {
    /// Whether every cell is as expected.
    pub fn ok(&self) -> bool {
        self.unexpected.is_empty()
    }
}

fn status_words(cell: &Cell) -> String {
    let (status, [failing, below, unexercised]) = pinned(cell);
    let mut parts = Vec::new();
    for (what, labels) in [
        ("", failing),
        ("below level: ", below),
        ("not exercised: ", unexercised),
    ] {
        if !labels.is_empty() {
            parts.push(format!("{what}{}", Vec::from_iter(labels).join(", ")));
        }
    }
    if parts.is_empty() {
        status.as_str().to_owned()
    } else {
        format!("{} ({})", status.as_str(), parts.join("; "))
    }
}

/// What a baseline pins of a cell: its status and the labels of its failures (counted and
/// below the level) and of what was not exercised (why it is not applicable).
fn pinned(cell: &Cell) -> (CellStatus, [BTreeSet<&str>; 3]) {
    fn labels(list: &[Failure]) -> BTreeSet<&str> {
        list.iter().map(|f| f.expectation.as_str()).collect()
    }
    (
        cell.status,
        [
            labels(&cell.failures),
            labels(&cell.below_level),
            labels(&cell.not_exercised),
        ],
    )
}

/// Compares a card with what is expected of it: with no baseline, every cell passes or is
/// not applicable; with one, every cell has its baseline cell's status (same client name and
/// scenario id) and the same expectations failing, failing below the level, and not
/// exercised; a cell the baseline lacks is judged as without one.
pub fn compare(card: &Card, baseline: Option<&Card>) -> Comparison {
    let mut comparison = Comparison::default();
    for cell in &card.cells {
        let name = format!("{} × {}", cell.client, cell.scenario);
        let old = baseline.and_then(|b| b.cell(&cell.client, &cell.scenario));
        match (baseline, old) {
            (Some(_), Some(old)) => {
                if pinned(old) == pinned(cell) {
                    comparison.as_expected += 1;
                } else {
                    comparison.unexpected.push(Change {
                        cell: name,
                        what: format!("was {}, now {}", status_words(old), status_words(cell)),
                    });
                }
            }
            (Some(_), None) if !cell.status.acceptable() => comparison.unexpected.push(Change {
                cell: name,
                what: format!("not in the baseline, now {}", status_words(cell)),
            }),
            (None, _) if !cell.status.acceptable() => comparison.unexpected.push(Change {
                cell: name,
                what: status_words(cell),
            }),
            _ => comparison.as_expected += 1,
        }
    }
    if let Some(baseline) = baseline {
        for old in &baseline.cells {
            if card.cell(&old.client, &old.scenario).is_none() {
                comparison
                    .gone
                    .push(format!("{} × {}", old.client, old.scenario));
            }
        }
    }
    comparison
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// ANSI colours for a status word.
fn colour(status: CellStatus, text: &str) -> String {
    let code = match status {
        CellStatus::Pass => "32",
        CellStatus::Fail => "31;1",
        CellStatus::NotApplicable => "33",
        CellStatus::Error => "35;1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The terminal table: one row per scenario, one column per client, then the reasons of
/// every cell that did not plainly pass, each with its picture under `folder`.
pub fn table(card: &Card, ansi: bool, folder: &Path) -> String {
    let id_width = card
        .scenarios
        .iter()
        .map(|s| s.id.chars().count())
        .max()
        .unwrap_or(0)
        .max("SCENARIO".len());
    let cause_width = card
        .scenarios
        .iter()
        .map(|s| s.cause_label().len())
        .max()
        .unwrap_or(0)
        .max("CAUSE".len());
    let widths: Vec<usize> = card
        .clients
        .iter()
        .map(|c| c.name.chars().count().max(6))
        .collect();
    let mut out = format!("{:<id_width$}  {:<cause_width$}", "SCENARIO", "CAUSE");
    for (client, width) in card.clients.iter().zip(&widths) {
        let _ = write!(out, "  {:<width$}", client.name);
    }
    out = out.trim_end().to_owned();
    out.push('\n');
    let mut starred = false;
    for scenario in &card.scenarios {
        let mut line = format!(
            "{:<id_width$}  {:<cause_width$}",
            scenario.id,
            scenario.cause_label()
        );
        for (client, width) in card.clients.iter().zip(&widths) {
            let (word, status) = match card.cell(&client.name, &scenario.id) {
                Some(cell) => (cell.word(), Some(cell.status)),
                None => ("-".to_owned(), None),
            };
            starred |= word.ends_with('*');
            let padded = format!("{word:<width$}");
            match status {
                Some(status) if ansi => {
                    let _ = write!(line, "  {}", colour(status, &padded));
                }
                _ => {
                    let _ = write!(line, "  {padded}");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if starred {
        let _ = writeln!(
            out,
            "* passes at --level {}, with failures below it (listed below)",
            card.level.as_str()
        );
    }
    let mut details = String::new();
    for cell in card.not_passing() {
        let word = if ansi {
            colour(cell.status, &cell.word())
        } else {
            cell.word()
        };
        let _ = writeln!(details, "\n{} × {}  {word}", cell.client, cell.scenario);
        if cell.status == CellStatus::Error {
            let _ = writeln!(details, "    {}", cell.reason);
        }
        for f in &cell.failures {
            let _ = writeln!(details, "    FAIL           {}", f.line());
        }
        for f in &cell.below_level {
            let _ = writeln!(details, "    below level    {}", f.line());
        }
        for f in &cell.not_exercised {
            let _ = writeln!(details, "    not exercised  {}", f.line());
        }
        if let Some(page) = inside(folder, &cell.html).filter(|p| p.is_file()) {
            let _ = writeln!(details, "    see {}", page.display());
        }
    }
    out.push_str(&details);
    out.push('\n');
    for client in &card.clients {
        let _ = writeln!(
            out,
            "{}: {} (of {}, at --level {})",
            client.name,
            card.summary(Some(&client.name)),
            card.scenarios.len(),
            card.level.as_str()
        );
    }
    out
}

/// Escapes a Markdown table cell.
fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Escapes Markdown text outside a code span: also `<`, which would open HTML.
fn md_text(text: &str) -> String {
    md_cell(text).replace('<', "&lt;")
}

/// A cell as Markdown shows it: ✅ pass / ❌ fail (levels) / ➖ n/a / ⚠️ error.
pub fn markdown_word(cell: &Cell) -> String {
    match cell.status {
        CellStatus::Pass if cell.below_level.is_empty() => "✅ pass".to_owned(),
        CellStatus::Pass => "✅ pass*".to_owned(),
        CellStatus::Fail => format!("❌ fail ({})", cell.failing_levels().join(", ")),
        CellStatus::NotApplicable => "➖ n/a".to_owned(),
        CellStatus::Error => "⚠️ error".to_owned(),
    }
}

/// The card as Markdown: the table, then every failure.
pub fn markdown(card: &Card) -> String {
    let mut out = String::from("| scenario | cause |");
    let mut rule = String::from("|---|---|");
    for client in &card.clients {
        let _ = write!(out, " {} |", md_cell(&client.name));
        rule.push_str("---|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for scenario in &card.scenarios {
        let _ = write!(
            out,
            "| `{}` | {} |",
            md_cell(&scenario.id),
            md_cell(scenario.cause_label())
        );
        for client in &card.clients {
            let word = card
                .cell(&client.name, &scenario.id)
                .map_or_else(|| "-".to_owned(), markdown_word);
            let _ = write!(out, " {word} |");
        }
        out.push('\n');
    }
    out.push_str("| **passes** | |");
    for client in &card.clients {
        let counts = card.counts(Some(&client.name));
        let _ = write!(
            out,
            " {} / {} |",
            counts.get(&CellStatus::Pass).copied().unwrap_or(0),
            card.scenarios.len()
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "\nLevel: `{}` (failures at or above it fail a cell; ✅ pass* has failures below it).",
        card.level.as_str()
    );
    let not_passing = card.not_passing().count();
    if not_passing > 0 {
        // Folded, so that the table reads first (GitHub, GitLab and job summaries unfold it).
        let _ = writeln!(
            out,
            "\n<details><summary>Not passing: {not_passing} cell(s), with every failure and its evidence</summary>\n"
        );
    }
    for cell in card.not_passing() {
        let _ = writeln!(
            out,
            "- **{} × {}** — {}",
            md_text(&cell.client),
            md_text(&cell.scenario),
            md_text(&cell.reason)
        );
        for (what, list) in [
            ("fails", &cell.failures),
            ("fails (below level)", &cell.below_level),
            ("not exercised", &cell.not_exercised),
        ] {
            for f in list.iter() {
                let _ = writeln!(
                    out,
                    "  - {what} `{}` [{}]: {}{}",
                    md_cell(&f.expectation),
                    f.level.as_str(),
                    md_text(&f.explanation),
                    seqs(&f.evidence)
                );
            }
        }
    }
    if not_passing > 0 {
        out.push_str("\n</details>\n");
    }
    out
}

/// Keeps only characters XML 1.0 allows (`#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD]
/// | [#x10000-#x10FFFF]`).
pub fn xml_legal(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r')
                || ('\u{20}'..='\u{D7FF}').contains(&c)
                || ('\u{E000}'..='\u{FFFD}').contains(&c)
                || c >= '\u{10000}'
        })
        .collect()
}

/// Escapes text for an XML element's content (after dropping illegal characters).
pub fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in xml_legal(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a double- or single-quoted XML attribute (whitespace kept as references,
/// so that a parser's attribute normalisation does not turn it into spaces).
pub fn xml_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in xml_legal(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds as JUnit writes them (`1.234`).
fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// At most [`SYSTEM_OUT_MAX`] bytes of a text: its start and its end, cut at characters.
fn truncated(text: &str) -> String {
    if text.len() <= SYSTEM_OUT_MAX {
        return text.to_owned();
    }
    let head_end = (0..=SYSTEM_OUT_MAX / 4)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail_start = (text.len() - SYSTEM_OUT_MAX * 3 / 4..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!(
        "{}\n[… {} bytes left out …]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

/// The card as JUnit XML, as GitLab, Jenkins (xunit's `junit-10.xsd`), Azure Pipelines and
/// CircleCI read it: one `testsuite` per client, one `testcase` per scenario; a failing cell
/// has a `failure` (type: the most binding level failed) with every failed expectation, its
/// level, explanation and evidence; an error cell an `error`; a not applicable cell
/// `skipped`; every test case the adapter's output (`output.txt` under `out`, cut to 64 KiB)
/// as `system-out`.
pub fn junit(card: &Card, out: &Path) -> String {
    let timestamp: String = card.started.chars().take(19).collect();
    let total_ms: u64 = card.cells.iter().map(|c| c.duration_ms).sum();
    let count = |s| card.counts(None).get(&s).copied().unwrap_or(0);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"misdirect scorecard\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{}\">",
        card.cells.len(),
        count(CellStatus::Fail),
        count(CellStatus::Error),
        secs(total_ms)
    );
    for client in &card.clients {
        let cells: Vec<&Cell> = card
            .scenarios
            .iter()
            .filter_map(|s| card.cell(&client.name, &s.id))
            .collect();
        let n = |s: CellStatus| cells.iter().filter(|c| c.status == s).count();
        let ms: u64 = cells.iter().map(|c| c.duration_ms).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
            xml_attr(&client.name),
            cells.len(),
            n(CellStatus::Fail),
            n(CellStatus::Error),
            n(CellStatus::NotApplicable),
            secs(ms),
            xml_attr(&timestamp)
        );
        for cell in cells {
            let _ = writeln!(
                xml,
                "    <testcase classname=\"misdirect.{}\" name=\"{}\" time=\"{}\">",
                xml_attr(&client.name),
                xml_attr(&cell.scenario),
                secs(cell.duration_ms)
            );
            let mut details = String::new();
            for f in &cell.failures {
                let _ = writeln!(details, "FAIL {}", f.line());
            }
            for f in &cell.below_level {
                let _ = writeln!(
                    details,
                    "FAIL (below --level {}) {}",
                    card.level.as_str(),
                    f.line()
                );
            }
            for f in &cell.not_exercised {
                let _ = writeln!(details, "NOT EXERCISED {}", f.line());
            }
            let _ = writeln!(details, "picture: {}", cell.html);
            match cell.status {
                CellStatus::Fail => {
                    let level = cell.worst_level().unwrap_or(card.level);
                    let _ = writeln!(
                        xml,
                        "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                        xml_attr(&cell.reason),
                        level.as_str(),
                        xml_text(&details)
                    );
                }
                CellStatus::Error => {
                    let _ = writeln!(
                        xml,
                        "      <error message=\"{}\" type=\"error\">{}</error>",
                        xml_attr(&cell.reason),
                        xml_text(&format!(
                            "{}\nThe verdict on what the journal holds:\n{details}",
                            cell.reason
                        ))
                    );
                }
                CellStatus::NotApplicable => {
                    let _ = writeln!(
                        xml,
                        "      <skipped message=\"{}\"/>",
                        xml_attr(&cell.reason)
                    );
                }
                CellStatus::Pass => {}
            }
            let output = inside(out, &cell.output)
                .and_then(|path| std::fs::read(path).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let mut system_out = String::new();
            // What a passing or skipped case has to say beyond the adapter's output.
            let quiet = matches!(cell.status, CellStatus::Pass | CellStatus::NotApplicable);
            if quiet && (!cell.below_level.is_empty() || !cell.not_exercised.is_empty()) {
                system_out.push_str(&details);
                system_out.push('\n');
            }
            system_out.push_str(&truncated(&output));
            let _ = writeln!(
                xml,
                "      <system-out>{}</system-out>",
                xml_text(&system_out)
            );
            xml.push_str("    </testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// The card as one self-contained HTML page: the table, each cell linking to its run's
/// picture (`report.html`, relative to the card's folder: save the page there), then the
/// reasons.
pub fn html(card: &Card) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>misdirect scorecard</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n\
         table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\n\
         td.cell a{color:inherit;text-decoration:none;display:block}\n\
         .pass{background:#d9f2d9}.fail{background:#f8d0d0;font-weight:bold}\n\
         .not_applicable{background:#f3ecc8}.error{background:#e8d0f0;font-weight:bold}\n\
         code{font-size:90%}li{margin:.2em 0}.muted{color:#666}\n\
         </style></head><body>\n<h1>misdirect scorecard</h1>\n",
    );
    let _ = writeln!(
        page,
        "<p class=\"muted\">{} · misdirect {} · level <code>{}</code> (failures at or above it fail a cell; * : failures below it) · {} s</p>",
        html_escape(&card.started),
        html_escape(&card.misdirect),
        card.level.as_str(),
        secs(card.duration_ms)
    );
    page.push_str("<table>\n<tr><th>scenario</th><th>cause</th><th>RFC</th>");
    for client in &card.clients {
        let _ = write!(
            page,
            "<th title=\"{}\">{}</th>",
            html_escape(&client.command.join(" ")),
            html_escape(&client.name)
        );
    }
    page.push_str("</tr>\n");
    for scenario in &card.scenarios {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td>",
            html_escape(&scenario.id),
            html_escape(scenario.cause_label()),
            html_escape(&scenario.rfc.join(", "))
        );
        for client in &card.clients {
            match card.cell(&client.name, &scenario.id) {
                Some(cell) => {
                    let _ = write!(
                        page,
                        "<td class=\"cell {}\" title=\"{}\"><a href=\"{}\">{}</a></td>",
                        cell.status.as_str(),
                        html_escape(&cell.reason),
                        html_escape(&cell.html),
                        html_escape(&cell.word())
                    );
                }
                None => page.push_str("<td>-</td>"),
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
    for client in &card.clients {
        let _ = writeln!(
            page,
            "<p><b>{}</b>: {}</p>",
            html_escape(&client.name),
            html_escape(&card.summary(Some(&client.name)))
        );
    }
    let mut listed = false;
    for cell in card.not_passing() {
        if !listed {
            page.push_str("<h2>Not passing</h2>\n<ul>\n");
            listed = true;
        }
        let _ = write!(
            page,
            "<li><a href=\"{}\">{} × {}</a> <span class=\"{}\">{}</span> — {}",
            html_escape(&cell.html),
            html_escape(&cell.client),
            html_escape(&cell.scenario),
            cell.status.as_str(),
            html_escape(&cell.word()),
            html_escape(&cell.reason)
        );
        let items: Vec<String> = [
            ("fails", &cell.failures),
            ("fails (below level)", &cell.below_level),
            ("not exercised", &cell.not_exercised),
        ]
        .iter()
        .flat_map(|(what, list)| {
            list.iter().map(move |f| {
                format!(
                    "<li>{what} <code>{}</code> [{}]: {}{}</li>",
                    html_escape(&f.expectation),
                    f.level.as_str(),
                    html_escape(&f.explanation),
                    html_escape(&seqs(&f.evidence))
                )
            })
        })
        .collect();
        if !items.is_empty() {
            let _ = write!(page, "<ul>{}</ul>", items.join(""));
        }
        page.push_str("</li>\n");
    }
    if listed {
        page.push_str("</ul>\n");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expectation: &str, status: Status, level: Level) -> Check {
        Check {
            index: 0,
            expectation: expectation.to_owned(),
            status,
            level,
            explanation: format!("{expectation} explained: nothing to judge"),
            evidence: vec![4, 8],
        }
    }

    fn verdict(checks: Vec<Check>) -> Verdict {
        Verdict {
            passed: checks.iter().all(|c| c.status == Status::Pass),
            checks,
        }
    }

    #[test]
    fn the_level_threshold_counts_only_failures_at_or_above_it() {
        assert!(counts_at(Level::Must, Level::Must));
        assert!(!counts_at(Level::Should, Level::Must));
        assert!(!counts_at(Level::Robust, Level::Must));
        assert!(counts_at(Level::Must, Level::Should));
        assert!(counts_at(Level::Should, Level::Should));
        assert!(!counts_at(Level::Robust, Level::Should));
        assert!(counts_at(Level::Robust, Level::Robust));

        let v = verdict(vec![
            check("retried_on_new_connection", Status::Fail, Level::Robust),
            check("no_retry_on_same_connection", Status::Fail, Level::Should),
            check("not_coalesced (b.test)", Status::Pass, Level::Must),
        ]);
        let robust = judge(&v, Level::Robust);
        assert_eq!(robust.status, CellStatus::Fail);
        assert_eq!(robust.failures.len(), 2);
        assert!(robust.below_level.is_empty());
        assert!(robust.reason.contains("retried_on_new_connection [robust]"));

        let should = judge(&v, Level::Should);
        assert_eq!(should.status, CellStatus::Fail);
        assert_eq!(
            should.failures[0].expectation,
            "no_retry_on_same_connection"
        );
        assert_eq!(
            should.below_level[0].expectation,
            "retried_on_new_connection"
        );

        let must = judge(&v, Level::Must);
        assert_eq!(must.status, CellStatus::Pass);
        assert!(must.failures.is_empty());
        assert_eq!(must.below_level.len(), 2);
        assert!(
            must.reason.starts_with("passed at --level must"),
            "{}",
            must.reason
        );
    }

    #[test]
    fn nothing_failed_but_something_not_exercised_is_not_applicable() {
        let v = verdict(vec![
            check(
                "retried_on_new_connection (b.test)",
                Status::NotExercised,
                Level::Robust,
            ),
            check(
                "stopped_coalescing (b.test)",
                Status::NotExercised,
                Level::Should,
            ),
            check("requests = 2", Status::Pass, Level::Robust),
        ]);
        let judged = judge(&v, Level::Robust);
        assert_eq!(judged.status, CellStatus::NotApplicable);
        assert_eq!(
            judged.reason,
            "not applicable: retried_on_new_connection (b.test) explained; stopped_coalescing (b.test) explained"
        );
        // A failure below the level does not turn it into a fail; one at the level does.
        let mut checks = v.checks.clone();
        checks.push(check("max_attempts 2", Status::Fail, Level::Robust));
        let v = verdict(checks);
        assert_eq!(judge(&v, Level::Should).status, CellStatus::NotApplicable);
        assert_eq!(judge(&v, Level::Robust).status, CellStatus::Fail);
        // A robust `coalesced` that failed is the premise not met: not applicable, and says so.
        let v = verdict(vec![
            check("coalesced (b.test)", Status::Fail, Level::Robust),
            check(
                "retried_on_new_connection (b.test)",
                Status::NotExercised,
                Level::Robust,
            ),
        ]);
        let judged = judge(&v, Level::Robust);
        assert_eq!(judged.status, CellStatus::NotApplicable);
        assert!(
            judged
                .reason
                .starts_with("not applicable: the client did not coalesce b.test"),
            "{}",
            judged.reason
        );
        // At level should it is a requirement of the scenario (origin-lists-b): a failure.
        let v = verdict(vec![check(
            "coalesced (b.test)",
            Status::Fail,
            Level::Should,
        )]);
        assert_eq!(judge(&v, Level::Robust).status, CellStatus::Fail);
        // Every check passing is a pass.
        let v = verdict(vec![check("requests = 2", Status::Pass, Level::Robust)]);
        assert_eq!(judge(&v, Level::Robust).status, CellStatus::Pass);
        assert_eq!(judge(&v, Level::Robust).reason, "passed");
    }

    fn cell(client: &str, scenario: &str, status: CellStatus, failing: &[&str]) -> Cell {
        Cell {
            client: client.to_owned(),
            scenario: scenario.to_owned(),
            status,
            reason: format!("{status:?}"),
            failures: failing
                .iter()
                .map(|e| Failure {
                    expectation: (*e).to_owned(),
                    level: Level::Robust,
                    explanation: "x".to_owned(),
                    evidence: vec![1],
                })
                .collect(),
            below_level: Vec::new(),
            not_exercised: Vec::new(),
            command: None,
            report: String::new(),
            html: format!("cells/{client}/{scenario}/report.html"),
            journal: String::new(),
            output: format!("cells/{client}/{scenario}/output.txt"),
            duration_ms: 1234,
        }
    }

    /// The cell, with these failures below the level.
    fn below(mut cell: Cell, labels: &[&str]) -> Cell {
        cell.below_level = unexercised(cell.clone(), labels).not_exercised;
        cell
    }

    /// The cell, with these expectations not exercised.
    fn unexercised(mut cell: Cell, labels: &[&str]) -> Cell {
        cell.not_exercised = labels
            .iter()
            .map(|e| Failure {
                expectation: (*e).to_owned(),
                level: Level::Robust,
                explanation: "nothing to judge".to_owned(),
                evidence: Vec::new(),
            })
            .collect();
        cell
    }

    fn card(cells: Vec<Cell>) -> Card {
        let mut clients: Vec<Client> = Vec::new();
        let mut scenarios: Vec<ScenarioInfo> = Vec::new();
        for c in &cells {
            if !clients.iter().any(|x| x.name == c.client) {
                clients.push(Client {
                    name: c.client.clone(),
                    command: vec!["true".to_owned()],
                    jobs: None,
                });
            }
            if !scenarios.iter().any(|s| s.id == c.scenario) {
                scenarios.push(ScenarioInfo {
                    id: c.scenario.clone(),
                    cause: Some(Cause::RetryHygiene),
                    rfc: vec!["RFC 9110 §15.5.20".to_owned()],
                    source: String::new(),
                });
            }
        }
        Card {
            version: CARD_VERSION,
            misdirect: "test".to_owned(),
            level: Level::Robust,
            timeout_secs: 120,
            started: "2025-01-02T03:04:05Z".to_owned(),
            duration_ms: 5000,
            clients,
            scenarios,
            cells,
        }
    }

    #[test]
    fn without_a_baseline_pass_and_not_applicable_are_expected() {
        let c = card(vec![
            cell("curl", "a", CellStatus::Pass, &[]),
            cell("curl", "b", CellStatus::NotApplicable, &[]),
            cell(
                "curl",
                "c",
                CellStatus::Fail,
                &["retried_on_new_connection"],
            ),
            cell("curl", "d", CellStatus::Error, &[]),
        ]);
        let cmp = compare(&c, None);
        let names: Vec<&str> = cmp.unexpected.iter().map(|c| c.cell.as_str()).collect();
        assert_eq!(names, ["curl × c", "curl × d"]);
        assert!(!cmp.ok());
    }

    #[test]
    fn a_baseline_pins_statuses_and_failing_labels() {
        let not_coalesced = "retried_on_new_connection (b.test)";
        let baseline = card(vec![
            cell("curl", "a", CellStatus::Pass, &[]),
            unexercised(
                cell("curl", "b", CellStatus::NotApplicable, &[]),
                &[not_coalesced],
            ),
            cell(
                "curl",
                "c",
                CellStatus::Fail,
                &["retried_on_new_connection"],
            ),
            cell("curl", "d", CellStatus::Error, &[]),
            cell("curl", "gone", CellStatus::Pass, &[]),
            below(
                cell("curl", "p", CellStatus::Pass, &[]),
                &["stopped_coalescing"],
            ),
        ]);
        // The same card, less a cell ("gone").
        let mut same = baseline.clone();
        same.cells.retain(|c| c.scenario != "gone");
        let cmp = compare(&same, Some(&baseline));
        assert!(cmp.ok(), "{cmp:?}");
        assert_eq!(cmp.as_expected, 5);
        assert_eq!(cmp.gone, ["curl × gone"]);

        // A pass that now fails, a not applicable for another reason, a fail with other
        // labels, a fail that now passes (better, but not as pinned: the baseline is to be
        // updated), a new cell that fails.
        let changed = card(vec![
            cell("curl", "a", CellStatus::Fail, &["requests = 2"]),
            unexercised(
                cell("curl", "b", CellStatus::NotApplicable, &[]),
                &["retry_same_body"],
            ),
            cell(
                "curl",
                "c",
                CellStatus::Fail,
                &["retried_on_new_connection", "requests = 2"],
            ),
            cell("curl", "d", CellStatus::Pass, &[]),
            below(
                cell("curl", "p", CellStatus::Pass, &[]),
                &["no_retry_on_same_connection"],
            ),
            cell("curl", "new", CellStatus::Fail, &["x"]),
            cell("curl", "new-ok", CellStatus::NotApplicable, &[]),
        ]);
        let cmp = compare(&changed, Some(&baseline));
        let got: Vec<String> = cmp
            .unexpected
            .iter()
            .map(|c| format!("{}: {}", c.cell, c.what))
            .collect();
        assert_eq!(
            got,
            [
                "curl × a: was pass, now fail (requests = 2)",
                "curl × b: was not_applicable (not exercised: retried_on_new_connection (b.test)), now not_applicable (not exercised: retry_same_body)",
                "curl × c: was fail (retried_on_new_connection), now fail (requests = 2, retried_on_new_connection)",
                "curl × d: was error, now pass",
                "curl × p: was pass (below level: stopped_coalescing), now pass (below level: no_retry_on_same_connection)",
                "curl × new: not in the baseline, now fail (x)",
            ]
        );
        // Another client's cells are other cells.
        let other = card(vec![cell("wget", "a", CellStatus::Pass, &[])]);
        let cmp = compare(&other, Some(&baseline));
        assert!(cmp.ok());
        assert_eq!(cmp.gone.len(), 6);
    }

    #[test]
    fn xml_is_escaped_and_illegal_characters_are_dropped() {
        assert_eq!(xml_text("a<b & c>d"), "a&lt;b &amp; c&gt;d");
        assert_eq!(
            xml_attr("say \"hi\" & 'bye'\n<x>\t"),
            "say &quot;hi&quot; &amp; &apos;bye&apos;&#10;&lt;x&gt;&#9;"
        );
        // ANSI escapes, NUL, form feed and the non-characters U+FFFE/U+FFFF are not XML 1.0.
        assert_eq!(
            xml_text("\u{1b}[31mred\u{1b}[0m\u{0}\u{c}\u{fffe}\u{ffff}ok"),
            "[31mred[0mok"
        );
        assert_eq!(xml_legal("é ✓ 😀 \t\n"), "é ✓ 😀 \t\n");
        assert_eq!(xml_text("a\r\nb"), "a&#13;\nb");
        // A whole document carries them the same way.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = cell("cu<rl", "a&b", CellStatus::Fail, &["x \"y\" <z>"]);
        c.output = "out.txt".to_owned();
        std::fs::write(dir.path().join("out.txt"), "ok \u{1b}[0m </system-out> ]]>")
            .expect("write");
        let xml = junit(&card(vec![c]), dir.path());
        assert!(xml.contains("<testsuite name=\"cu&lt;rl\""), "{xml}");
        assert!(
            xml.contains("classname=\"misdirect.cu&lt;rl\" name=\"a&amp;b\""),
            "{xml}"
        );
        assert!(xml.contains("type=\"robust\""), "{xml}");
        assert!(
            xml.contains("FAIL x \"y\" &lt;z&gt; [robust]: x  [seq 1]"),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>ok [0m &lt;/system-out&gt; ]]&gt;</system-out>"),
            "{xml}"
        );
        assert!(!xml.contains('\u{1b}'));
    }

    #[test]
    fn long_output_is_cut_in_the_middle_at_characters() {
        let text = "é".repeat(SYSTEM_OUT_MAX);
        let cut = truncated(&text);
        assert!(cut.len() < SYSTEM_OUT_MAX + 100, "{}", cut.len());
        assert!(cut.contains("bytes left out"));
        assert_eq!(truncated("short"), "short");
    }

    #[test]
    fn commands_split_like_a_shell_and_clients_are_named() {
        assert_eq!(
            split_command(r#"python3 clients/python_h2.py --on-421 'retry same' "a \"b\"" c\ d"#)
                .expect("splits"),
            [
                "python3",
                "clients/python_h2.py",
                "--on-421",
                "retry same",
                "a \"b\"",
                "c d"
            ]
        );
        assert_eq!(split_command("  ").expect("splits"), Vec::<String>::new());
        assert_eq!(split_command("''").expect("splits"), [""]);
        assert!(split_command("a 'b").is_err());
        assert!(split_command("a \"b").is_err());

        let client =
            parse_client("h2=python3 clients/python_h2.py --on-421 retry-same").expect("parses");
        assert_eq!(client.name, "h2");
        assert_eq!(client.command.len(), 4);
        assert!(parse_client("no-command").is_err());
        assert!(parse_client("a b=curl").is_err());
        assert!(parse_client("x=").is_err());
        assert!(parse_client("../x=curl").is_err());

        let named = |words: &[&str]| {
            client_from_command(words.iter().map(|w| (*w).to_owned()).collect()).name
        };
        assert_eq!(named(&["python3", "clients/curl.py"]), "curl");
        assert_eq!(
            named(&[
                ".venv/bin/python",
                "-u",
                "clients/python_h2.py",
                "--on-421",
                "x"
            ]),
            "python_h2"
        );
        assert_eq!(named(&["clients/chromium.sh"]), "chromium");
        assert_eq!(named(&["node", "clients/node_fetch.mjs"]), "node_fetch");
        assert_eq!(named(&["/usr/bin/my client"]), "my_client");
        assert_eq!(named(&["python3"]), "python3");
    }

    #[test]
    fn markdown_and_html_show_every_cell() {
        let mut pass_below = cell("curl", "b|c", CellStatus::Pass, &[]);
        pass_below.below_level.push(Failure {
            expectation: "x".to_owned(),
            level: Level::Robust,
            explanation: "y".to_owned(),
            evidence: vec![],
        });
        let c = card(vec![
            cell(
                "curl",
                "a",
                CellStatus::Fail,
                &["retried_on_new_connection"],
            ),
            pass_below,
            cell("curl", "n", CellStatus::NotApplicable, &[]),
            cell("curl", "e", CellStatus::Error, &[]),
        ]);
        let md = markdown(&c);
        assert!(
            md.contains("| `a` | retry hygiene | ❌ fail (robust) |"),
            "{md}"
        );
        assert!(
            md.contains("| `b\\|c` | retry hygiene | ✅ pass* |"),
            "{md}"
        );
        assert!(md.contains("➖ n/a") && md.contains("⚠️ error"), "{md}");
        // Each client's passes under its column; the failures folded below the table.
        assert!(md.contains("| **passes** | | 1 / 4 |"), "{md}");
        let folded = md
            .split_once("<details><summary>Not passing: 4 cell(s)")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        assert!(folded.contains("- **curl × a** —"), "{md}");
        assert!(folded.trim_end().ends_with("</details>"), "{md}");
        let page = html(&c);
        assert!(
            page.contains("<a href=\"cells/curl/a/report.html\">FAIL</a>"),
            "{page}"
        );
        // Each cell's picture is named where it is (only a's is here).
        let dir = tempfile::tempdir().expect("temp dir");
        let picture = dir.path().join("cells/curl/a/report.html");
        std::fs::create_dir_all(picture.parent().expect("folder")).expect("mkdir");
        std::fs::write(&picture, "<html>").expect("write");
        let text = table(&c, false, dir.path());
        assert!(text.contains("curl × a  FAIL"), "{text}");
        assert!(text.contains("PASS*"), "{text}");
        assert!(
            text.contains(&format!("see {}", picture.display())),
            "{text}"
        );
        assert_eq!(text.matches("    see ").count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'));
        assert!(table(&c, true, Path::new("card")).contains("\u{1b}[31;1m"));
        // A card read from elsewhere names no file outside its folder.
        assert_eq!(inside(dir.path(), "../x"), None);
        assert_eq!(inside(dir.path(), "/etc/passwd"), None);
        assert_eq!(inside(dir.path(), ""), None);
        assert_eq!(
            inside(dir.path(), "cells/a/output.txt"),
            Some(dir.path().join("cells/a/output.txt"))
        );
    }
}
