//! `scorecard`: its flags, the progress line, the output and the exit status. The card itself
//! is made by [`crate::scorecard`].

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::scenario::{self, Level};
use crate::scorecard::{self, Card, Client, Settings, Tick};

/// Arguments of `misdirect scorecard`.
#[derive(Debug, clap::Args)]
pub struct ScorecardArgs {
    /// Scenario files or folders of them; the bundled library when none is given.
    pub paths: Vec<PathBuf>,
    /// A client to score, as NAME=CMD (repeatable): CMD is split into words as a shell would,
    /// without expansions (use `sh -c '…'` for those). The command after `--` is one more,
    /// named after its program (or, for `python3 x.py`, `node x.mjs`…, its script).
    #[arg(long = "client", value_name = "NAME=CMD")]
    pub clients: Vec<String>,
    /// At most N cells of client NAME at once, as NAME=N (repeatable): 1 for browsers.
    #[arg(long = "client-jobs", value_name = "NAME=N")]
    pub client_jobs: Vec<String>,
    /// Most cells at once [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub jobs: Option<u64>,
    /// Each run's `--timeout-secs`: the adapter is killed after this long and the cell is an
    /// error (1 to 86400) [default: the --expect card's, else 120].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: Option<u64>,
    /// Folder for the card (`card.json`, `card.html`), the bundled scenarios' files
    /// (`scenarios/`) and every cell's report, picture, journal and output
    /// (`cells/CLIENT/SCENARIO/`).
    #[arg(long, default_value = "misdirect-scorecard")]
    pub out: PathBuf,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: CardFormat,
    /// The least binding level whose failures fail a cell: `must` counts only RFC
    /// requirements, `should` adds recommendations, `robust` everything [default: the
    /// --expect card's, else robust].
    #[arg(long, value_enum)]
    pub level: Option<LevelArg>,
    /// A card saved earlier (`OUT/card.json`): exit 0 only if every cell has its status
    /// there and the same expectations failing and not exercised; cells it lacks must pass
    /// or be not applicable. With no client given, its clients are scored again.
    #[arg(long, value_name = "CARD.json")]
    pub expect: Option<PathBuf>,
    /// Prints a card saved earlier in `--format` (compared with `--expect`, if given) and
    /// runs nothing: e.g. JUnit in a later CI step, or two cards compared.
    #[arg(
        long,
        value_name = "CARD.json",
        conflicts_with_all = ["paths", "clients", "client_jobs", "jobs", "timeout_secs", "out", "level", "command"]
    )]
    pub from: Option<PathBuf>,
    /// The client command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Output formats of `scorecard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CardFormat {
    /// A table for a terminal (coloured when stdout is one), then the reasons.
    Table,
    /// A Markdown table and the reasons.
    Markdown,
    /// The card as JSON (what `--expect` reads).
    Json,
    /// JUnit XML: a test suite per client, a test case per scenario.
    Junit,
    /// One HTML page linking each cell to its run's picture.
    Html,
}

/// The levels, as flags name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LevelArg {
    /// RFC requirements only.
    Must,
    /// Requirements and recommendations.
    Should,
    /// Everything.
    Robust,
}

impl From<LevelArg> for Level {
    fn from(level: LevelArg) -> Level {
        match level {
            LevelArg::Must => Level::Must,
            LevelArg::Should => Level::Should,
            LevelArg::Robust => Level::Robust,
        }
    }
}

/// Each run's `--timeout-secs` when neither the flag nor a baseline gives one.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// The exit status of a card that could not be made as asked.
const USAGE: u8 = 2;

fn usage(message: &str) -> ExitCode {
    eprintln!("misdirect scorecard: {message}");
    ExitCode::from(USAGE)
}

/// The clients, from `-- CMD` and `--client` (or, with neither, the baseline's), with their
/// `--client-jobs`.
fn clients(args: &ScorecardArgs, baseline: Option<&Card>) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    if !args.command.is_empty() {
        let mut words = Vec::new();
        for word in &args.command {
            match word.to_str() {
                Some(w) => words.push(w.to_owned()),
                None => return Err(format!("the command word {word:?} is not UTF-8")),
            }
        }
        clients.push(scorecard::client_from_command(words));
    }
    for spec in &args.clients {
        clients.push(scorecard::parse_client(spec)?);
    }
    if clients.is_empty() {
        match baseline {
            Some(card) if !card.clients.is_empty() => clients.clone_from(&card.clients),
            Some(_) => {
                return Err(
                    "no client: the baseline names none; give one after `--` or with --client NAME=CMD"
                        .to_owned(),
                );
            }
            None => {
                return Err(
                    "no client: give one after `--` (misdirect scorecard -- python3 clients/curl.py) or with --client NAME=CMD"
                        .to_owned(),
                );
            }
        }
    }
    for (i, client) in clients.iter().enumerate() {
        if clients[..i].iter().any(|c| c.name == client.name) {
            return Err(format!(
                "two clients are named {:?}: name them apart with --client NAME=CMD",
                client.name
            ));
        }
    }
    for spec in &args.client_jobs {
        let parsed = spec
            .split_once('=')
            .and_then(|(name, n)| Some((name, n.trim().parse::<usize>().ok()?)))
            .filter(|&(_, n)| n >= 1);
        let Some((name, n)) = parsed else {
            return Err(format!(
                "--client-jobs {spec:?}: expected NAME=N with N at least 1"
            ));
        };
        match clients.iter_mut().find(|c| c.name == name) {
            Some(client) => client.jobs = Some(n),
            None => {
                let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
                return Err(format!(
                    "--client-jobs {spec:?}: no client named {name:?} (clients: {})",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(clients)
}

/// The progress line on a terminal (cells done / total and the running ones, rewritten in
/// place); elsewhere one line per finished cell.
fn progress(live: bool) -> impl FnMut(&Tick<'_>) {
    move |tick: &Tick<'_>| {
        let mut err = std::io::stderr().lock();
        if live {
            let line = if tick.running.is_empty() {
                format!("[{}/{}]", tick.done, tick.total)
            } else {
                format!(
                    "[{}/{}] running: {}",
                    tick.done,
                    tick.total,
                    tick.running.join(", ")
                )
            };
            let width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(100)
                .max(20);
            let shown: String = if line.chars().count() >= width {
                let mut s: String = line.chars().take(width - 2).collect();
                s.push('…');
                s
            } else {
                line
            };
            let _ = write!(err, "\r\x1b[K{shown}");
            let _ = err.flush();
        } else if let Some(cell) = tick.finished {
            let _ = writeln!(
                err,
                "[{}/{}] {}/{}: {} ({}, {} ms)",
                tick.done,
                tick.total,
                cell.client,
                cell.scenario,
                cell.word(),
                cell.reason,
                cell.duration_ms
            );
        }
    }
}

/// Runs `misdirect scorecard`.
pub(super) fn scorecard(args: ScorecardArgs, load: &scenario::LoadOptions) -> ExitCode {
    let baseline = match &args.expect {
        Some(path) => match scorecard::load(path) {
            Ok(card) => Some(card),
            Err(err) => return usage(&format!("--expect {err}")),
        },
        None => None,
    };
    if let Some(path) = &args.from {
        let card = match scorecard::load(path) {
            Ok(card) => card,
            Err(err) => return usage(&format!("--from {err}")),
        };
        // The cells' files are relative to the card's folder.
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        return show(&card, &args, baseline.as_ref(), folder, path);
    }
    let clients = match clients(&args, baseline.as_ref()) {
        Ok(clients) => clients,
        Err(err) => return usage(&err),
    };
    let entries = match crate::library::catalog(&args.paths, load) {
        Ok(entries) if entries.is_empty() => return usage("no scenarios in the paths given"),
        Ok(entries) => entries,
        Err(err) => return usage(&err.to_string()),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return usage(&format!("cannot find the misdirect executable: {err}")),
    };
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |n| usize::try_from(n).unwrap_or(1),
    );
    let settings = Settings {
        exe,
        exe_args: if load.allow_files_outside_folder {
            vec![OsString::from("--allow-files-outside")]
        } else {
            Vec::new()
        },
        out: args.out.clone(),
        jobs,
        // Compared with a baseline, a card is made as the baseline was, unless told otherwise.
        timeout_secs: args
            .timeout_secs
            .or(baseline.as_ref().map(|b| b.timeout_secs).filter(|&t| t > 0))
            .unwrap_or(DEFAULT_TIMEOUT_SECS),
        level: args
            .level
            .map(Level::from)
            .or(baseline.as_ref().map(|b| b.level))
            .unwrap_or(Level::Robust),
    };
    // Held until the card is written: one scorecard per folder.
    let _lock = match scorecard::lock_out(&args.out) {
        Ok(lock) => lock,
        Err(err) => return usage(&err.to_string()),
    };
    let live = std::io::stderr().is_terminal();
    let mut tell = progress(live);
    let made = scorecard::run(&entries, &clients, &settings, &mut tell);
    if live {
        eprint!("\r\x1b[K");
    }
    let card = match made {
        Ok(card) => card,
        Err(err) => return usage(&format!("cannot make the card: {err}")),
    };
    let saved = scorecard::save(&card, &args.out).and_then(|path| {
        let page = args.out.join("card.html");
        crate::pki::write_atomic(&page, scorecard::html(&card).as_bytes(), 0o644)
            .map(|()| path)
            .map_err(|e| scorecard::ScorecardError {
                path: page.display().to_string(),
                message: e.to_string(),
            })
    });
    if let Err(err) = saved {
        return usage(&format!("cannot save the card: {err}"));
    }
    let code = show(
        &card,
        &args,
        baseline.as_ref(),
        &args.out,
        &args.out.join("card.json"),
    );
    eprintln!(
        "misdirect scorecard: card in {} ({} cells in {:.1} s; each cell's report, picture and journal under {})",
        args.out.join("card.json").display(),
        card.cells.len(),
        card.duration_ms as f64 / 1000.0,
        args.out.join("cells").display()
    );
    code
}

/// Prints the card in `--format`, then what it comes to against the baseline (after the
/// table, or on stderr for the other formats); exit 0 if every cell is as expected.
fn show(
    card: &Card,
    args: &ScorecardArgs,
    baseline: Option<&Card>,
    folder: &std::path::Path,
    card_path: &std::path::Path,
) -> ExitCode {
    let rendered = match args.format {
        CardFormat::Table => scorecard::table(card, std::io::stdout().is_terminal(), folder),
        CardFormat::Markdown => scorecard::markdown(card),
        CardFormat::Json => match serde_json::to_string_pretty(card) {
            Ok(text) => format!("{text}\n"),
            Err(err) => return usage(&format!("cannot write the card as JSON: {err}")),
        },
        CardFormat::Junit => scorecard::junit(card, folder),
        CardFormat::Html => scorecard::html(card),
    };
    let compared = scorecard::compare(card, baseline);
    let verdict = verdict_text(card, &compared, baseline, args.expect.as_deref(), card_path);
    // The table is for people: the comparison follows it. Other formats are for machines:
    // stdout stays the document, and the comparison goes to stderr.
    let written = {
        let mut stdout = std::io::stdout().lock();
        let mut text = rendered;
        if args.format == CardFormat::Table {
            text.push('\n');
            text.push_str(&verdict);
        }
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
    };
    match written {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(err) => eprintln!("misdirect scorecard: writing to stdout: {err}"),
    }
    if args.format != CardFormat::Table {
        eprint!("{verdict}");
    }
    if compared.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the card comes to, against its baseline or without one.
fn verdict_text(
    card: &Card,
    compared: &scorecard::Comparison,
    baseline: Option<&Card>,
    baseline_path: Option<&std::path::Path>,
    card_path: &std::path::Path,
) -> String {
    let mut out = String::new();
    if card.cells.is_empty() {
        out.push_str("note: the card has no cells\n");
    }
    match (baseline, baseline_path) {
        (Some(baseline), Some(path)) => {
            if baseline.level != card.level {
                out.push_str(&format!(
                    "note: the baseline was made at --level {}, this card at --level {}\n",
                    baseline.level.as_str(),
                    card.level.as_str()
                ));
            }
            if compared.unexpected.is_empty() {
                out.push_str(&format!(
                    "as expected: {} cell(s) match the baseline {}\n",
                    compared.as_expected,
                    path.display()
                ));
            } else {
                out.push_str(&format!(
                    "changed vs the baseline {} ({} cell(s)):\n",
                    path.display(),
                    compared.unexpected.len()
                ));
                for change in &compared.unexpected {
                    out.push_str(&format!("  {}: {}\n", change.cell, change.what));
                }
            }
            for gone in &compared.gone {
                out.push_str(&format!("  (in the baseline, not in this card: {gone})\n"));
            }
        }
        _ => {
            if compared.unexpected.is_empty() {
                out.push_str(&format!(
                    "as expected: every cell passes or is not applicable ({})\n",
                    card.summary(None)
                ));
            } else {
                out.push_str(&format!(
                    "not as expected: {} cell(s) fail or are errors ({}); to pin them, keep a copy of {} and pass it to --expect\n",
                    compared.unexpected.len(),
                    card.summary(None),
                    card_path.display()
                ));
            }
        }
    }
    out
}
