//! `serve` and `run`: the long-running commands, their shared flags, logging and signals.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{Control, ControlOptions};
use crate::harness::Harness;
use crate::run::{RunSettings, run_client};
use crate::scenario::{self, Scenario};
use crate::server::{Limits, ServeOptions};

/// Flags shared by `serve` and `run`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Folder for the generated PEM files [serve: `certs`; run: a fresh temporary folder,
    /// removed afterwards, so that parallel runs never share a CA].
    #[arg(long, env = "MISDIRECT_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Reuse `ca.pem` + `ca.key` already in the certificate folder.
    #[arg(long, env = "MISDIRECT_REUSE_CA")]
    pub reuse_ca: bool,
    /// Write the journal to this file as NDJSON, one event per line, as it happens.
    #[arg(long, env = "MISDIRECT_JOURNAL")]
    pub journal: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "MISDIRECT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing's env-filter syntax), e.g. `debug` or `misdirect=trace`.
    #[arg(long, default_value = "info", env = "MISDIRECT_LOG")]
    pub log: String,
    /// Seconds a client has to finish the TLS handshake, send its first bytes (cleartext) or
    /// the HTTP/2 preface (1 to 86400) [default: the scenario's `limits`, else 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds without a request, request body data or room to send an answer, after which a
    /// connection (or the stalled stream) is closed (1 to 86400) [default: the scenario's
    /// `limits`, else 60].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: Option<u64>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients (1 to 10000) [default:
    /// the scenario's `limits`, else 100].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_streams: Option<u32>,
    /// Largest request body accepted (bytes); larger ones get 413 [default: the scenario's
    /// `limits`, else 1048576].
    #[arg(long)]
    pub max_body_bytes: Option<u64>,
    /// Seconds in-flight requests get to finish on shutdown (0 to 3600); every connection is
    /// closed by then, and the process exits within about half a second more [default: the
    /// scenario's `limits`, else 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_grace_secs: Option<u64>,
    /// Most connections open at once over all listeners (1 to 1000000); one more is closed at
    /// once and journaled as refused. Lowered to fit the open-files limit if that is smaller
    /// [default: the scenario's `limits`, else 10000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE advertised to HTTP/2 clients, and the most header bytes
    /// read of an HTTP/1.1 request (1024 to 16777216) [default: the scenario's `limits`, else
    /// 65536].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub max_header_list_size: Option<u32>,
    /// Address of the control API (HTTP/1.1 + JSON); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", env = "MISDIRECT_CONTROL")]
    pub control: SocketAddr,
    /// Run without the control API.
    #[arg(long, conflicts_with_all = ["control_token", "control_allow_remote"])]
    pub no_control: bool,
    /// Require `Authorization: Bearer <token>` on the control API (all but /health).
    #[arg(long, env = "MISDIRECT_CONTROL_TOKEN")]
    pub control_token: Option<String>,
    /// Allow the control API on a non-loopback address (it can load scenarios: use a token).
    #[arg(long, env = "MISDIRECT_CONTROL_ALLOW_REMOTE")]
    pub control_allow_remote: bool,
    /// Bind every listener on all interfaces (`0.0.0.0`, or `[::]` for IPv6 listeners) at the
    /// scenario's port, instead of its loopback address: for containers, where clients come
    /// from other hosts. The container image sets this; nothing else does.
    #[arg(long, env = "MISDIRECT_BIND_ALL")]
    pub bind_all: bool,
    /// Listeners whose port is 0 bind this port instead (the first one; the next such
    /// listener this + 1, and so on): predictable ports to publish from a container.
    #[arg(long, env = "MISDIRECT_BASE_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub base_port: Option<u16>,
}

/// What `serve` and `run` start: the server's options and the control API's, if any.
struct Options {
    serve: ServeOptions,
    control: Option<ControlOptions>,
}

impl ServerArgs {
    /// Each limit from its flag, else the scenario's `limits`, else the default.
    fn limits(&self, spec: &scenario::LimitsSpec) -> Limits {
        let default = Limits::default();
        let secs = |flag: Option<u64>, spec: Option<u64>, default: Duration| {
            flag.or(spec).map_or(default, Duration::from_secs)
        };
        Limits {
            handshake_timeout: secs(
                self.handshake_timeout_secs,
                spec.handshake_timeout_secs,
                default.handshake_timeout,
            ),
            idle_timeout: secs(
                self.idle_timeout_secs,
                spec.idle_timeout_secs,
                default.idle_timeout,
            ),
            max_concurrent_streams: self
                .max_concurrent_streams
                .or(spec.max_concurrent_streams)
                .unwrap_or(default.max_concurrent_streams),
            max_header_list_size: self
                .max_header_list_size
                .or(spec.max_header_list_size)
                .unwrap_or(default.max_header_list_size),
            max_body_bytes: self
                .max_body_bytes
                .or(spec.max_body_bytes)
                .unwrap_or(default.max_body_bytes),
            shutdown_grace: secs(
                self.shutdown_grace_secs,
                spec.shutdown_grace_secs,
                default.shutdown_grace,
            ),
            max_connections: fit_open_files(
                self.max_connections
                    .or(spec.max_connections)
                    .map_or(default.max_connections, |n| n as usize),
            ),
        }
    }

    fn options(
        &self,
        scenario: &Scenario,
        default_certs_dir: PathBuf,
        load: scenario::LoadOptions,
    ) -> Result<Options, String> {
        if !self.no_control && !self.control.ip().is_loopback() && !self.control_allow_remote {
            return Err(format!(
                "--control {}: not a loopback address; add --control-allow-remote (and a --control-token) to expose the control API",
                self.control
            ));
        }
        let serve = ServeOptions {
            certs_dir: self.certs_dir.clone().unwrap_or(default_certs_dir),
            reuse_ca: self.reuse_ca,
            journal_path: self.journal.clone(),
            limits: self.limits(&scenario.limits),
            bind_all: self.bind_all,
            base_port: self.base_port,
        };
        let control = (!self.no_control).then(|| ControlOptions {
            address: self.control,
            token: self.control_token.clone(),
            load,
        });
        Ok(Options { serve, control })
    }
}

/// Arguments of `misdirect serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// Also write the readiness JSON to this file (atomically), for callers that cannot
    /// read stdout.
    #[arg(long, env = "MISDIRECT_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Stop, as on SIGTERM, once stdin reaches its end: a launcher that holds stdin open as a
    /// pipe ends the server by closing it — or by dying, however it dies, so that no server
    /// outlives the test that started it.
    #[arg(long, env = "MISDIRECT_EXIT_WITH_STDIN")]
    pub exit_with_stdin: bool,
    /// Server flags.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Resolves when stdin reaches its end (or cannot be read). Read on a thread of its own, not
/// tokio's blocking pool: a read that never ends must not hold up the runtime's shutdown.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".to_owned())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 4096];
            loop {
                match stdin.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
    match spawned {
        // Either way stdin is done: EOF, or the thread (and so the sender) is gone.
        Ok(_) => {
            let _ = rx.await;
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch stdin; only signals stop the server");
            std::future::pending::<()>().await;
        }
    }
}

/// Arguments of `misdirect run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// Kill the command after this many seconds (the run then fails; 1 to 86400).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
    /// After the command exits, wait until the journal has been quiet this long (0 to 60000).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub settle_ms: u64,
    /// Let expectations that nothing exercised pass (by default they fail the run).
    #[arg(long)]
    pub allow_not_exercised: bool,
    /// Write the run (command outcome, verdict, journal) as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a self-contained HTML picture of the run here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Server flags.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The client command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the scenario, sets up logging and the runtime; `None` after saying why not.
fn prepare(
    file: &std::path::Path,
    server: &ServerArgs,
    default_certs_dir: PathBuf,
    load: &scenario::LoadOptions,
) -> Option<(Scenario, Options, tokio::runtime::Runtime)> {
    init_logging(server.log_format, &server.log);
    let scenario = match scenario::from_path_with(file, load) {
        Ok((scenario, diagnostics)) => {
            for warning in &diagnostics.warnings {
                tracing::warn!("{}: {warning}", file.display());
            }
            scenario
        }
        Err(err) => {
            for line in err.lines() {
                eprintln!("{}: {line}", file.display());
            }
            return None;
        }
    };
    // A scenario loaded later through the control API reads its body files from the same
    // folder as this one.
    let reload = scenario::LoadOptions {
        base_dir: Some(
            std::path::absolute(file)
                .ok()
                .and_then(|f| f.parent().map(std::path::Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".")),
        ),
        ..load.clone()
    };
    let options = match server.options(&scenario, default_certs_dir, reload) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("misdirect: {err}");
            return None;
        }
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some((scenario, options, runtime)),
        Err(err) => {
            eprintln!("misdirect: cannot start the async runtime: {err}");
            None
        }
    }
}

/// Listens for signals (before anything can be ready), binds the control API, starts the
/// harness and serves the control API beside it; `None` after saying why not.
async fn start(command: &str, scenario: Scenario, options: Options) -> Option<(Signals, Harness)> {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("misdirect {command}: cannot listen for signals: {err}");
            return None;
        }
    };
    let control = match &options.control {
        Some(control) => match Control::bind(control).await {
            Ok(control) => Some(control),
            Err(err) => {
                eprintln!("misdirect {command}: {err}");
                return None;
            }
        },
        None => None,
    };
    let url = control.as_ref().map(|c| c.url().to_owned());
    let harness = match Harness::start(scenario, options.serve, url).await {
        Ok(harness) => harness,
        Err(err) => {
            eprintln!("misdirect {command}: {err}");
            return None;
        }
    };
    if let Some(control) = control {
        harness.spawn(control.serve(harness.handle()));
    }
    Some((signals, harness))
}

pub(super) fn serve(args: ServeArgs, load: &scenario::LoadOptions) -> ExitCode {
    let Some((scenario, options, runtime)) =
        prepare(&args.file, &args.server, PathBuf::from("certs"), load)
    else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let Some((mut signals, server)) = start("serve", scenario, options).await else {
            return ExitCode::FAILURE;
        };
        let line = match serde_json::to_string(server.ready()) {
            Ok(line) => line,
            Err(err) => {
                eprintln!("misdirect serve: {err}");
                return ExitCode::FAILURE;
            }
        };
        // Written atomically and locked for as long as this server runs: a second server
        // given the same path is refused instead of replacing this one's line.
        let _ready_file = match &args.ready_file {
            Some(path) => {
                let written = crate::pki::write_atomic_owned(
                    path,
                    format!("{line}\n").as_bytes(),
                    0o644,
                    "is serving with this ready file; give each server its own --ready-file",
                );
                match written {
                    Ok(lock) => lock,
                    Err(err) => {
                        eprintln!("misdirect serve: --ready-file {err}");
                        server.shutdown("could not write the ready file").await;
                        return ExitCode::FAILURE;
                    }
                }
            }
            None => None,
        };
        {
            let mut stdout = std::io::stdout().lock();
            // A launcher that closed our stdout does not stop the server.
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
        log_listening(&server);
        let reason = if args.exit_with_stdin {
            tokio::select! {
                signal = signals.next() => format!("received {signal}"),
                () = stdin_closed() => "stdin closed".to_owned(),
            }
        } else {
            format!("received {}", signals.next().await)
        };
        tracing::info!(%reason, "shutting down (a second signal exits at once)");
        let journal = server.journal();
        tokio::spawn(async move {
            let second = signals.next().await;
            eprintln!("misdirect: {second} again: exiting now");
            // Exiting skips destructors: write out what the journal still buffers.
            let _ = journal.flush();
            std::process::exit(130);
        });
        server.shutdown(&reason).await;
        ExitCode::SUCCESS
    })
}

fn log_listening(server: &Harness) {
    for listener in &server.ready().listeners {
        tracing::info!(
            listener = %listener.name,
            address = %listener.address,
            tls = listener.tls,
            "listening"
        );
    }
    if let Some(control) = &server.ready().control {
        tracing::info!(%control, "control API");
    }
}

pub(super) fn run(args: RunArgs, load: &scenario::LoadOptions) -> ExitCode {
    let private_certs = args.server.certs_dir.is_none().then(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::env::temp_dir().join(format!("misdirect-run-{}-{nanos}", std::process::id()))
    });
    let default_certs = private_certs
        .clone()
        .unwrap_or_else(|| PathBuf::from("certs"));
    let Some((scenario, options, runtime)) = prepare(&args.file, &args.server, default_certs, load)
    else {
        return ExitCode::FAILURE;
    };
    let code = run_prepared(args, scenario, options, runtime);
    if let Some(dir) = private_certs {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

fn run_prepared(
    args: RunArgs,
    scenario: Scenario,
    options: Options,
    runtime: tokio::runtime::Runtime,
) -> ExitCode {
    let Some((program, program_args)) = args.command.split_first() else {
        eprintln!("misdirect run: give the client command after `--`");
        return ExitCode::FAILURE;
    };
    let settings = RunSettings {
        timeout: Duration::from_secs(args.timeout_secs),
        settle: Duration::from_millis(args.settle_ms),
        allow_not_exercised: args.allow_not_exercised,
    };
    runtime.block_on(async move {
        let Some((mut signals, server)) = start("run", scenario, options).await else {
            return ExitCode::FAILURE;
        };
        log_listening(&server);
        let handle = server.handle();
        let outcome = tokio::select! {
            outcome = run_client(&handle, program, program_args, &settings) => outcome,
            signal = signals.next() => {
                eprintln!("misdirect run: {signal}: stopping");
                server.shutdown(&format!("received {signal}")).await;
                return ExitCode::from(130);
            }
        };
        let name = program.to_string_lossy();
        let events = handle.journal().snapshot();
        println!("\n{}", outcome.command.describe(&name));
        print!("{}", outcome.verdict.table());
        let mut ok = true;
        if let Some(path) = &args.report {
            let report = serde_json::json!({
                "scenario": handle.scenario().name,
                "passed": outcome.passed(),
                "command": outcome.command,
                "verdict": outcome.verdict,
                "events": events,
            });
            let written = serde_json::to_vec_pretty(&report)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    crate::pki::write_atomic(path, &bytes, 0o644).map_err(|e| e.to_string())
                });
            if let Err(err) = written {
                eprintln!("misdirect run: --report: {err}");
                ok = false;
            }
        }
        if let Some(path) = &args.html {
            let page = crate::report::html(&events, Some(&outcome.verdict));
            if let Err(err) = crate::pki::write_atomic(path, page.as_bytes(), 0o644) {
                eprintln!("misdirect run: --html: {err}");
                ok = false;
            }
        }
        server.shutdown("run finished").await;
        if ok && outcome.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
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

/// Connections the process can hold besides these (the listeners, the journal, the control
/// API, a child command's pipes).
const SPARE_FILES: usize = 64;

/// Raises the open-files soft limit to the hard limit (as servers do: nginx's
/// `worker_rlimit_nofile`), so that a flood meets the connection cap, which journals each
/// refusal, and not the file limit, where accept() fails silently; lowers `max_connections`
/// to what the limit allows, saying so.
fn fit_open_files(max_connections: usize) -> usize {
    let Some(files) = raise_open_files_limit() else {
        return max_connections;
    };
    let fits = files.saturating_sub(SPARE_FILES).max(1);
    if fits < max_connections {
        tracing::info!(
            max_connections = fits,
            open_files_limit = files,
            "--max-connections lowered to fit the open-files limit (raise it with ulimit -n)"
        );
        return fits;
    }
    max_connections
}

/// The open-files soft limit after raising it as far as the hard limit allows.
#[cfg(unix)]
fn raise_open_files_limit() -> Option<usize> {
    // The kernel refuses more than its nr_open (1 Mi by default), so never ask beyond it.
    const CEILING: libc::rlim_t = 1 << 20;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let wanted = limit.rlim_max.min(CEILING);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = wanted;
        }
    }
    usize::try_from(limit.rlim_cur).ok()
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<usize> {
    None
}
