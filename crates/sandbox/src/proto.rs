//! What the supervisor tells the sandbox init, and what comes back.
//!
//! The supervisor writes an [`InitConfig`] as JSON into a memfd the init
//! inherits; the init and the agent child answer with one JSON [`Msg`] per
//! line on the report pipe. Nothing from inside the wall is trusted beyond
//! "how did it go": a malformed message ends the run as an error.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::{ExitStatus, Layer, LimitsReport, SandboxError, SandboxSpec};

/// Everything the init needs, decided by the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub(crate) spec: SandboxSpec,
    pub(crate) plan: Plan,
    /// Write end of the report pipe.
    pub(crate) report_fd: i32,
    /// Read end of the start pipe; end-of-file means the supervisor died.
    pub(crate) lifeline_fd: i32,
    /// Limits the supervisor put in force with cgroups; the init adds the
    /// rlimit fallbacks.
    pub(crate) limits: LimitsReport,
    /// Use RLIMIT_NPROC for the pid limit (no pids cgroup).
    pub(crate) nproc_rlimit: Option<u64>,
    /// The pty the agent gets (the supervisor relays the other side).
    pub(crate) tty: Option<TtyConfig>,
    /// Socket on which the init sends descriptors to the supervisor: the
    /// loopback listeners, then the pty master.
    pub(crate) fd_socket: Option<i32>,
    /// The init was cloned ahead (`crate::ahead`): it enters a cgroup
    /// namespace of its own first.
    #[serde(default)]
    pub(crate) unshare_cgroup: bool,
    /// How many cgroup `tasks` files follow the config for an init cloned
    /// ahead: it writes `0` to each, moving itself into the run's cgroups.
    #[serde(default)]
    pub(crate) cgroup_tasks: usize,
    /// Set by an init cloned ahead that made `/` rprivate while it waited
    /// (never sent).
    #[serde(skip)]
    pub(crate) root_private: bool,
    /// Set by an init cloned ahead that set up its network namespace while
    /// it waited (never sent).
    #[serde(skip)]
    pub(crate) network_ready: bool,
}

/// The agent's terminal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TtyConfig {
    /// Initial window size (rows, cols).
    pub(crate) rows: u16,
    /// Columns.
    pub(crate) cols: u16,
}

/// A failure reported from inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum WireError {
    Layer { layer: Layer, reason: String },
    Setup { step: String, reason: String },
    Exec { program: String, reason: String },
}

impl From<WireError> for SandboxError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Layer { layer, reason } => SandboxError::Layer { layer, reason },
            WireError::Setup { step, reason } => SandboxError::Setup { step, reason },
            WireError::Exec { program, reason } => SandboxError::Exec { program, reason },
        }
    }
}

impl From<SandboxError> for WireError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Layer { layer, reason } => WireError::Layer { layer, reason },
            SandboxError::Setup { step, reason } => WireError::Setup { step, reason },
            SandboxError::Exec { program, reason } => WireError::Exec { program, reason },
            other => WireError::Setup {
                step: "init".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// One report line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "msg")]
pub(crate) enum Msg {
    /// The agent is about to exec; what it runs under.
    Started {
        landlock_abi: Option<i32>,
        landlock_fs: bool,
        landlock_net: bool,
        landlock_scope: bool,
        seccomp: bool,
        limits: LimitsReport,
        missing: Vec<(Layer, String)>,
    },
    /// Setup failed; the run stops.
    Failed(WireError),
    /// The agent ended.
    Exited(ExitStatus),
    /// The agent was stopped (e.g. ^Z on its terminal).
    Stopped,
}

/// Writes one message as a line.
pub(crate) fn send(w: &mut impl Write, msg: &Msg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one message; `None` at end-of-file.
pub(crate) fn recv(r: &mut impl BufRead) -> Result<Option<Msg>, String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| format!("malformed report from the sandbox: {e}")),
        Err(e) => Err(format!("cannot read the sandbox report: {e}")),
    }
}
