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

/// How long the client command's process group gets between SIGTERM and SIGKILL, whenever
/// `run` ends it: at the timeout, when `run` itself is stopped, and after the command exits
/// while processes it started in the background are still running.
pub const GROUP_GRACE: Duration = Duration::from_millis(500);

/// Runs `program args…` with the harness environment, waits for it (bounded), ends whatever
/// it left running, lets the journal settle, and judges the journal.
///
/// The command runs in a process group of its own (Unix), so that everything it starts goes
/// with it: at the timeout, after a normal exit (what it left in the background), and when
/// this future is dropped before the end (`run` itself stopped by a signal), the group gets
/// SIGTERM, then SIGKILL if anything in it outlives [`GROUP_GRACE`]. A process that puts
/// itself in a new session or group (`setsid`) escapes this.
pub async fn run_client(
    handle: &Handle,
    program: &OsString,
    args: &[OsString],
    settings: &RunSettings,
) -> RunOutcome {
    let env = handle.environment();
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env).kill_on_drop(true);
    #[cfg(unix)]
    {
        command.process_group(0);
        // A process group of its own is not the terminal's foreground group: reading the
        // terminal would stop the command (SIGTTIN) until the timeout. A client command
        // reads no input, so a terminal is not handed on as its stdin.
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            command.stdin(std::process::Stdio::null());
        }
    }
    let command = match command.spawn() {
        Err(err) => CommandOutcome::NotStarted {
            error: err.to_string(),
        },
        Ok(child) => {
            let mut group = Group::new(child);
            let outcome = match tokio::time::timeout(settings.timeout, group.child.wait()).await {
                Ok(Ok(status)) => match status.code() {
                    Some(code) => CommandOutcome::Exited { code },
                    None => CommandOutcome::Signalled,
                },
                Ok(Err(err)) => CommandOutcome::NotStarted {
                    error: err.to_string(),
                },
                Err(_) => CommandOutcome::TimedOut {
                    after_secs: settings.timeout.as_secs(),
                },
            };
            // At the timeout the whole tree; after an exit, what it left in the background.
            group.end().await;
            outcome
        }
    };
    settle(handle, settings.settle).await;
    RunOutcome {
        command,
        verdict: handle.verdict(settings.allow_not_exercised),
    }
}

/// The client command and its process group (whose id is the command's pid). Ended with
/// [`Group::end`]; when dropped before that (the future running the command was dropped),
/// ended the same way, blocking the dropping thread for at most [`GROUP_GRACE`].
struct Group {
    child: tokio::process::Child,
    #[cfg(unix)]
    pgid: Option<libc::pid_t>,
    /// SIGTERM was sent.
    terminated: bool,
}

/// One step of ending a group.
enum Step {
    /// Nothing is left in the group.
    Gone,
    /// Something is; look again shortly.
    Wait,
}

impl Group {
    fn new(child: tokio::process::Child) -> Group {
        Group {
            #[cfg(unix)]
            pgid: child
                .id()
                .and_then(|pid| libc::pid_t::try_from(pid).ok())
                .filter(|&pid| pid > 0),
            terminated: false,
            child,
        }
    }

    /// Ends every process left in the group: SIGTERM (and SIGCONT, so that a stopped process
    /// sees it), up to [`GROUP_GRACE`] for them to go, then SIGKILL. Returns at once when
    /// nothing is left; reaps the command itself.
    async fn end(&mut self) {
        let deadline = tokio::time::Instant::now() + GROUP_GRACE;
        while let Step::Wait = self.step(tokio::time::Instant::now() >= deadline) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The first call sends SIGTERM to a live group; `overdue` sends SIGKILL and gives up.
    fn step(&mut self, overdue: bool) -> Step {
        // The command itself, once it exited, leaves the group only when reaped.
        let _ = self.child.try_wait();
        #[cfg(unix)]
        if let Some(pgid) = self.pgid {
            if !group_alive(pgid) {
                self.pgid = None;
                return Step::Gone;
            }
            if overdue {
                signal_group(pgid, libc::SIGKILL);
                self.pgid = None;
                return Step::Gone;
            }
            if !self.terminated {
                signal_group(pgid, libc::SIGTERM);
                signal_group(pgid, libc::SIGCONT);
                self.terminated = true;
            }
            return Step::Wait;
        }
        let _ = overdue;
        Step::Gone
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + GROUP_GRACE;
        while let Step::Wait = self.step(std::time::Instant::now() >= deadline) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // `kill_on_drop` then takes care of the command itself.
    }
}

/// Whether any process (a zombie included) is still in process group `pgid`.
#[cfg(unix)]
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; a negative pid names the process group.
    let checked = unsafe { libc::kill(-pgid, 0) };
    checked == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(unix)]
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg(2) has no memory-safety preconditions; errors (ESRCH: the group is
    // gone) need no handling.
    unsafe {
        libc::killpg(pgid, signal);
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
