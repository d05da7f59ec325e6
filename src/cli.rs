//! The command line: `check`, `certs`, `schema`. Wiring only: every command calls into the
//! library and turns its result into output and an exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::pki::Pki;
use crate::scenario::{self, Scenario};

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
