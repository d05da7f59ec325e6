//! The command line: `check`, `certs`, `schema`. Wiring only: every command calls into the
//! library and turns its result into output and an exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::time::Duration;

use crate::pki::Pki;
use crate::scenario::{self, Scenario};
use crate::server::{Limits, ServeOptions, Server};

/// A scriptable HTTP/2 test-harness server that answers 421 Misdirected Request (and the
/// other misdirection signals) exactly when a scenario says so.
#[derive(Debug, Parser)]
#[command(name = "misdirect", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    /// Serve a scenario: bind its listeners, misdirect as it says, journal everything.
    /// Prints one JSON line on stdout once ready; stops cleanly on SIGINT/SIGTERM.
    Serve(ServeArgs),
}

/// Arguments of `misdirect serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// Folder for the generated PEM files.
    #[arg(long, default_value = "certs", env = "MISDIRECT_CERTS_DIR")]
    pub certs_dir: PathBuf,
    /// Reuse `ca.pem` + `ca.key` already in the certificate folder.
    #[arg(long, env = "MISDIRECT_REUSE_CA")]
    pub reuse_ca: bool,
    /// Write the journal to this file as NDJSON, one event per line, as it happens.
    #[arg(long, env = "MISDIRECT_JOURNAL")]
    pub journal: Option<PathBuf>,
    /// Also write the readiness JSON to this file (atomically), for callers that cannot
    /// read stdout.
    #[arg(long, env = "MISDIRECT_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "MISDIRECT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing's env-filter syntax), e.g. `debug` or `misdirect=trace`.
    #[arg(long, default_value = "info", env = "MISDIRECT_LOG")]
    pub log: String,
    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_secs: u64,
    /// Seconds without a request after which a connection is closed.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients.
    #[arg(long, default_value_t = 100)]
    pub max_concurrent_streams: u32,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, default_value_t = 5)]
    pub shutdown_grace_secs: u64,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, strict } => check(&files, strict),
        Command::Certs {
            file,
            out,
            reuse_ca,
            json,
        } => certs(&file, &out, reuse_ca, json),
        Command::Schema => schema(),
        Command::Serve(args) => serve(args),
    }
}

fn check(files: &[PathBuf], strict: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let shown = file.display();
        match scenario::from_path(file) {
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

fn certs(file: &Path, out: &Path, reuse_ca: bool, json: bool) -> ExitCode {
    let scenario = match scenario::from_path(file) {
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

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format, &args.log);
    let scenario = match scenario::from_path(&args.file) {
        Ok((scenario, diagnostics)) => {
            for warning in &diagnostics.warnings {
                tracing::warn!("{}: {warning}", args.file.display());
            }
            scenario
        }
        Err(err) => {
            for line in err.lines() {
                eprintln!("{}: {line}", args.file.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let options = ServeOptions {
        certs_dir: args.certs_dir.clone(),
        reuse_ca: args.reuse_ca,
        journal_path: args.journal.clone(),
        limits: Limits {
            handshake_timeout: Duration::from_secs(args.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            max_concurrent_streams: args.max_concurrent_streams,
            max_body_bytes: args.max_body_bytes,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            ..Limits::default()
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("misdirect serve: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("misdirect serve: cannot listen for signals: {err}");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::start(scenario, options).await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("misdirect serve: {err}");
                return ExitCode::FAILURE;
            }
        };
        let line = match serde_json::to_string(server.ready()) {
            Ok(line) => line,
            Err(err) => {
                eprintln!("misdirect serve: {err}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(path) = &args.ready_file
            && let Err(err) = crate::pki::write_atomic(path, format!("{line}\n").as_bytes(), 0o644)
        {
            eprintln!("misdirect serve: --ready-file: {err}");
            server.shutdown("could not write the ready file").await;
            return ExitCode::FAILURE;
        }
        {
            let mut stdout = std::io::stdout().lock();
            // A launcher that closed our stdout does not stop the server.
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
        for listener in &server.ready().listeners {
            tracing::info!(
                listener = %listener.name,
                address = %listener.address,
                tls = listener.tls,
                "listening"
            );
        }
        let signal = signals.next().await;
        tracing::info!(%signal, "shutting down (a second signal exits at once)");
        tokio::spawn(async move {
            let second = signals.next().await;
            eprintln!("misdirect serve: {second} again: exiting now");
            std::process::exit(130);
        });
        server.shutdown(&format!("received {signal}")).await;
        ExitCode::SUCCESS
    })
}

/// SIGINT and SIGTERM, listened for from before the readiness line is printed, so that a
/// launcher that stops the server right after reading it still gets a clean shutdown.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
