//! `misdirect run`: run a client command against a running server, with the harness described
//! in its environment, then judge what the client did.

use std::ffi::OsString;
use std::time::Duration;

use serde::Serialize;

use crate::expect::Verdict;
use crate::harness::Handle;

/// How to run the client command.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The command is killed after this long.
    pub timeout: Duration,
    /// After the command exits, wait until the journal has been quiet this long (in-flight
    /// requests finishing), at most ten times as long.
    pub settle: Duration,
    /// Let expectations that nothing exercised pass.
    pub allow_not_exercised: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            timeout: Duration::from_secs(120),
            settle: Duration::from_millis(250),
            allow_not_exercised: false,
        }
    }
}

/// How the client command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CommandOutcome {
    /// It exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal ended it.
    Signalled,
    /// It ran past the timeout and was killed.
    TimedOut {
        /// The timeout, in seconds.
        after_secs: u64,
    },
    /// It could not be started.
    NotStarted {
        /// Why.
        error: String,
    },
}

impl CommandOutcome {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        *self == CommandOutcome::Exited { code: 0 }
    }

    /// One line for a human.
    pub fn describe(&self, program: &str) -> String {
        match self {
            CommandOutcome::Exited { code: 0 } => format!("command {program:?} succeeded"),
            CommandOutcome::Exited { code } => format!("command {program:?} exited with {code}"),
            CommandOutcome::Signalled => format!("command {program:?} was killed by a signal"),
            CommandOutcome::TimedOut { after_secs } => {
                format!("command {program:?} timed out after {after_secs} s and was killed")
            }
            CommandOutcome::NotStarted { error } => {
                format!("command {program:?} could not be started: {error}")
            }
        }
    }
}

/// What a run came to.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// How the command ended.
    pub command: CommandOutcome,
    /// The verdict on the client.
    pub verdict: Verdict,
}

impl RunOutcome {
    /// Whether the run passes: the command succeeded and the verdict passed.
    pub fn passed(&self) -> bool {
        self.command.success() && self.verdict.passed
    }
}

/// Runs `program args…` with the harness environment, waits for it (bounded), lets the
/// journal settle, and judges the journal.
pub async fn run_client(
    handle: &Handle,
    program: &OsString,
    args: &[OsString],
    settings: &RunSettings,
) -> RunOutcome {
    let env = handle.environment();
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .envs(env)
        .kill_on_drop(true)
        .spawn();
    let command = match spawned {
        Err(err) => CommandOutcome::NotStarted {
            error: err.to_string(),
        },
        Ok(mut child) => match tokio::time::timeout(settings.timeout, child.wait()).await {
            Ok(Ok(status)) => match status.code() {
                Some(code) => CommandOutcome::Exited { code },
                None => CommandOutcome::Signalled,
            },
            Ok(Err(err)) => CommandOutcome::NotStarted {
                error: err.to_string(),
            },
            Err(_) => {
                let _ = child.kill().await;
                CommandOutcome::TimedOut {
                    after_secs: settings.timeout.as_secs(),
                }
            }
        },
    };
    settle(handle, settings.settle).await;
    RunOutcome {
        command,
        verdict: handle.verdict(settings.allow_not_exercised),
    }
}

/// Waits until no new journal event has arrived for `quiet`, at most `10 × quiet`.
async fn settle(handle: &Handle, quiet: Duration) {
    let journal = handle.journal();
    let deadline = tokio::time::Instant::now() + quiet * 10;
    let step = (quiet / 5).max(Duration::from_millis(10));
    let mut last = journal.last_seq();
    let mut quiet_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(step).await;
        let now = journal.last_seq();
        if now != last {
            last = now;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= quiet {
            return;
        }
    }
}
