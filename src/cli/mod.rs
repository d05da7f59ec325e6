//! The command line. Wiring only: every command calls into the library and turns its
//! result into output and an exit status.

mod scorecard;
mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::pki::Pki;
use crate::scenario::{self, Scenario};

pub use scorecard::{CardFormat, LevelArg, ScorecardArgs};
pub use serve::{LogFormat, RunArgs, ServeArgs, ServerArgs};

/// A scriptable HTTP/2 test-harness server that answers 421 Misdirected Request (and the
/// other misdirection signals) exactly when a scenario says so.
#[derive(Debug, Parser)]
#[command(name = "misdirect", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Let a scenario's `body_file`s lie outside the scenario file's folder (by default they
    /// are refused, so that a scenario from elsewhere cannot serve any file it names).
    #[arg(long, global = true, env = "MISDIRECT_ALLOW_FILES_OUTSIDE")]
    pub allow_files_outside: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate scenario files; prints a summary per file or every problem found.
    Check {
        /// Scenario files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Write the CA and every certificate of a scenario as PEM files.
    Certs {
        /// The scenario file.
        file: PathBuf,
        /// Folder for the PEM files.
        #[arg(long, default_value = "certs", env = "MISDIRECT_CERTS_DIR")]
        out: PathBuf,
        /// Reuse `ca.pem` + `ca.key` already in the folder (as `"ca": {"reuse": true}` does).
        #[arg(long)]
        reuse_ca: bool,
        /// Print the manifest (files, SANs, SPKI hashes) as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
    /// List scenarios: id, the cause they stage, the RFC sections they check, and their
    /// expectations with the level of each (`must`, `should`, `robust`).
    Scenarios {
        /// Scenario files or folders; the bundled library when none is given.
        paths: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the bundled scenario with this id, as its file is (to save and edit, or to
        /// serve where the repository is not).
        #[arg(long, value_name = "ID", conflicts_with_all = ["paths", "json"])]
        show: Option<String>,
    },
    /// Serve a scenario: bind its listeners, misdirect as it says, journal everything.
    /// Prints one JSON line on stdout once ready; stops cleanly on SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Serve a scenario, run a client command against it, and judge the client: prints the
    /// verdict and exits 0 only if the command succeeded and every expectation passed.
    Run(RunArgs),
    /// Run client commands against every scenario (the bundled library by default), each
    /// cell a `run` of its own, in parallel; print the card (a table, Markdown, JSON, JUnit
    /// XML or HTML) and exit 0 only if every cell is as expected.
    Scorecard(ScorecardArgs),
    /// Ask a running server's control API whether it is healthy (exit 0) or not (exit 1):
    /// the container image's HEALTHCHECK, which has no shell or curl to do it.
    Health {
        /// The control API address (`0.0.0.0` is asked at `127.0.0.1`).
        #[arg(long, default_value = "127.0.0.1:9000", env = "MISDIRECT_CONTROL")]
        control: std::net::SocketAddr,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Render a journal for a human: connections as lanes, 421s linked to their retries.
    Report {
        /// The NDJSON journal (`--journal` of serve or run).
        journal: PathBuf,
        /// Also judge the journal against this scenario's expectations.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Write a self-contained HTML page (inline SVG) here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let load = scenario::LoadOptions {
        allow_files_outside_folder: cli.allow_files_outside,
        base_dir: None,
    };
    match cli.command {
        Command::Check { files, strict } => check(&files, strict, &load),
        Command::Certs {
            file,
            out,
            reuse_ca,
            json,
        } => certs(&file, &out, reuse_ca, json, &load),
        Command::Schema => schema(),
        Command::Scenarios { show: Some(id), .. } => show_bundled(&id),
        Command::Scenarios { paths, json, .. } => scenarios(&paths, json, &load),
        Command::Serve(args) => serve::serve(args, &load),
        Command::Run(args) => serve::run(args, &load),
        Command::Scorecard(args) => scorecard::scorecard(args, &load),
        Command::Health {
            control,
            timeout_secs,
        } => health(control, timeout_secs),
        Command::Report {
            journal,
            scenario,
            html,
        } => report(&journal, scenario.as_deref(), html.as_deref(), &load),
    }
}

fn check(files: &[PathBuf], strict: bool, load: &scenario::LoadOptions) -> ExitCode {
    let mut failed = false;
    for file in files {
        let shown = file.display();
        match scenario::from_path_with(file, load) {
            Ok((scenario, diagnostics)) => {
                let strict_failure = strict && !diagnostics.warnings.is_empty();
                failed |= strict_failure;
                let verdict = if strict_failure { "FAIL" } else { "ok" };
                println!("{verdict}  {shown}: {}", summary(&scenario));
                for warning in &diagnostics.warnings {
                    println!("  warning: {warning}");
                }
            }
            Err(err) => {
                failed = true;
                println!("FAIL  {shown}");
                for line in err.lines() {
                    println!("  {shown}: {line}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn show_bundled(id: &str) -> ExitCode {
    match crate::library::BUNDLED.iter().find(|(stem, _)| *stem == id) {
        Some((_, text)) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("misdirect scenarios: writing to stdout: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let ids: Vec<&str> = crate::library::BUNDLED.iter().map(|(s, _)| *s).collect();
            eprintln!(
                "misdirect scenarios: no bundled scenario {id:?}; the bundled ones are {}",
                ids.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

fn scenarios(paths: &[PathBuf], json: bool, load: &scenario::LoadOptions) -> ExitCode {
    let entries = match crate::library::catalog(paths, load) {
        Ok(entries) => entries,
        Err(err) => {
            eprintln!("misdirect scenarios: {err}");
            return ExitCode::FAILURE;
        }
    };
    let expectations = |entry: &crate::library::Entry| -> Vec<(String, &'static str)> {
        entry
            .scenario
            .expect
            .iter()
            .map(|e| (crate::expect::label(e), e.level().as_str()))
            .collect()
    };
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "id": entry.id,
                    "name": entry.scenario.name,
                    "cause": entry.scenario.cause,
                    "rfc": entry.scenario.rfc,
                    "description": entry.scenario.description,
                    "source": entry.source,
                    "expect": expectations(entry)
                        .into_iter()
                        .map(|(e, level)| serde_json::json!({"expectation": e, "level": level}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        return match serde_json::to_string_pretty(&list) {
            Ok(text) => print_out(&format!("{text}\n")),
            Err(err) => {
                eprintln!("misdirect scenarios: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
    let mut out = format!(
        "{:<width$}  {:<18}  {:<38}  EXPECTATIONS (level)\n",
        "ID", "CAUSE", "RFC"
    );
    for entry in &entries {
        let expect: Vec<String> = expectations(entry)
            .into_iter()
            .map(|(e, level)| format!("{e} [{level}]"))
            .collect();
        out.push_str(&format!(
            "{:<width$}  {:<18}  {:<38}  {}\n",
            entry.id,
            entry.cause_label(),
            entry.scenario.rfc.join(", "),
            expect.join("; ")
        ));
    }
    print_out(&out)
}

/// Writes to stdout; a reader that went away (`| head`) is no error.
fn print_out(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("misdirect: writing to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One line describing what a scenario contains.
pub fn summary(scenario: &Scenario) -> String {
    fn count(n: usize, what: &str) -> String {
        format!("{n} {what}{}", if n == 1 { "" } else { "s" })
    }
    let steps = scenario.client.as_ref().map_or(0, |c| c.steps.len());
    format!(
        "{:?}: {}, {}, {}, {}, {}, {}",
        scenario.name.as_deref().unwrap_or("unnamed"),
        count(scenario.certificates.len(), "certificate"),
        count(scenario.listeners.len(), "listener"),
        count(scenario.hosts.len(), "host"),
        count(scenario.rules.len(), "rule"),
        count(steps, "client step"),
        count(scenario.expect.len(), "expectation"),
    )
}

fn certs(
    file: &Path,
    out: &Path,
    reuse_ca: bool,
    json: bool,
    load: &scenario::LoadOptions,
) -> ExitCode {
    let scenario = match scenario::from_path_with(file, load) {
        Ok((scenario, _)) => scenario,
        Err(err) => {
            for line in err.lines() {
                eprintln!("{}: {line}", file.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let reuse = (reuse_ca || scenario.ca.reuse).then_some(out);
    let written = Pki::generate(&scenario, reuse, time::OffsetDateTime::now_utc())
        .and_then(|pki| pki.write(out));
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(err) => {
            eprintln!("misdirect certs: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let printed = if json {
        serde_json::to_string_pretty(&manifest)
            .map_err(std::io::Error::from)
            .and_then(|text| writeln!(stdout, "{text}"))
    } else {
        let mut lines = vec![format!(
            "CA    {} ({})",
            manifest.ca.cert.display(),
            if manifest.ca.reused == Some(true) {
                "reused"
            } else {
                "generated"
            }
        )];
        for (name, entry) in &manifest.certificates {
            lines.push(format!(
                "cert  {name}: {} [{}] spki-sha256 {}",
                entry.cert.display(),
                entry.sans.join(", "),
                entry.spki_sha256
            ));
        }
        writeln!(stdout, "{}", lines.join("\n"))
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn schema() -> ExitCode {
    let schema = schemars::schema_for!(Scenario);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("misdirect schema: {err}");
            ExitCode::FAILURE
        }
    }
}

fn report(
    journal: &Path,
    scenario_file: Option<&Path>,
    html: Option<&Path>,
    load: &scenario::LoadOptions,
) -> ExitCode {
    let text = match std::fs::read_to_string(journal) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("misdirect report: {}: {err}", journal.display());
            return ExitCode::FAILURE;
        }
    };
    let events = match crate::journal::read_ndjson(&text) {
        Ok(events) => events,
        Err(err) => {
            eprintln!("misdirect report: {}: {err}", journal.display());
            return ExitCode::FAILURE;
        }
    };
    let verdict = match scenario_file.map(|file| scenario::from_path_with(file, load)) {
        None => None,
        Some(Ok((scenario, _))) => Some(crate::expect::evaluate(&scenario.expect, &events, false)),
        Some(Err(err)) => {
            for line in err.lines() {
                eprintln!("{}: {line}", scenario_file.unwrap_or(journal).display());
            }
            return ExitCode::FAILURE;
        }
    };
    print!("{}", crate::report::text(&events, verdict.as_ref()));
    if let Some(path) = html {
        let page = crate::report::html(&events, verdict.as_ref());
        if let Err(err) = crate::pki::write_atomic(path, page.as_bytes(), 0o644) {
            eprintln!("misdirect report: {err}");
            return ExitCode::FAILURE;
        }
        eprintln!("misdirect report: wrote {}", path.display());
    }
    match verdict {
        Some(v) if !v.passed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// `GET /health` over a plain TCP connection: the image has nothing else to ask with.
fn health(mut control: std::net::SocketAddr, timeout_secs: u64) -> ExitCode {
    use std::io::Read;
    if control.ip().is_unspecified() {
        control.set_ip(match control.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if control.port() == 0 {
        eprintln!("misdirect health: --control needs the control API's real port, not 0");
        return ExitCode::FAILURE;
    }
    let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
    let answer = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&control, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(
            format!("GET /health HTTP/1.1\r\nHost: {control}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut answer = String::new();
        stream.take(64 * 1024).read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match answer {
        Ok(text) if text.starts_with("HTTP/1.1 200") && text.contains("\"ok\": true") => {
            println!("healthy: {control}");
            ExitCode::SUCCESS
        }
        Ok(text) => {
            let status = text.lines().next().unwrap_or("no answer");
            eprintln!("misdirect health: {control} answered {status:?}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("misdirect health: cannot ask {control}: {err}");
            ExitCode::FAILURE
        }
    }
}
