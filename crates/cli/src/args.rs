//! Every flag, defined once (clap derive); help comes from here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A wall around AI coding agents: a sandbox, a default-deny egress proxy
/// with credential placeholders, a human's yes for irreversible actions,
/// and a write-ahead audit of every decision — declared in one manifest,
/// `blastwall.toml`.
#[derive(Debug, Parser)]
#[command(
    name = "blastwall",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write a commented starter blastwall.toml for this project (and trust it).
    Init(InitArgs),
    /// Record a project manifest's hash so enforcing commands accept it.
    Trust(TrustArgs),
    /// Check, explain and test a manifest; print its JSON Schema.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a command inside the wall; exits with its status (125: it could not start).
    Run(RunArgs),
    /// List sessions: id, status (running, exited, crashed), files changed.
    Sessions(SessionsArgs),
    /// Show what a session changed in its overlay.
    Diff(DiffArgs),
    /// Apply a session's changes to the real project.
    Commit(CommitArgs),
    /// Throw a session's changes away.
    Discard(DiscardArgs),
    /// Say what this host offers the sandbox, what is missing, and the fix.
    Doctor(DoctorArgs),
    /// Read and verify audit logs.
    Log(LogArgs),
    /// The secret store under BLASTWALL_HOME (0600 files; no encryption).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// List pending approvals (held actions waiting for a person).
    Approvals(crate::cmd::approvals::ApprovalsArgs),
    /// Let one held action through (once).
    Approve(crate::cmd::approvals::DecideArgs),
    /// Refuse one held action.
    Deny(crate::cmd::approvals::DecideArgs),
    /// A terminal view of live events and pending approvals, with single-key approve/deny.
    Watch(crate::cmd::watch::WatchArgs),
    /// A local web page: sessions, live events, pending approvals.
    Serve(crate::cmd::serve::ServeArgs),
    /// Replay real incidents without the wall (in a throw-away world) and inside it.
    Demo(crate::cmd::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a secret; the value is read from stdin (one trailing newline dropped).
    Set {
        /// The name (`[A-Za-z0-9_-]`, at most 64).
        name: String,
    },
    /// List the secrets' names (never their values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Rm {
        /// The name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The manifest (default: the nearest blastwall.toml).
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
    /// A name for the session.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) argv: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct SessionsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The session (default: the newest; a unique prefix will do).
    pub(crate) session: Option<String>,
    /// Only these paths (relative to the project).
    #[arg(last = true)]
    pub(crate) paths: Vec<PathBuf>,
    /// One line per change.
    #[arg(long)]
    pub(crate) stat: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CommitArgs {
    /// The session (default: the newest).
    pub(crate) session: Option<String>,
    /// Only these paths; a flagged (sensitive) path is committed only when named.
    #[arg(last = true)]
    pub(crate) paths: Vec<PathBuf>,
    /// Do not ask.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Overwrite files changed in the project during the session.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the report as JSON (implies --yes).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiscardArgs {
    /// The session (default: the newest).
    pub(crate) session: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The agents `init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Agent {
    /// Claude Code.
    Claude,
    /// OpenAI Codex CLI.
    Codex,
    /// Cursor's agent CLI.
    Cursor,
    /// Gemini CLI.
    Gemini,
    /// Any other program.
    Generic,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The agent that will run inside.
    #[arg(long, value_enum, default_value = "generic")]
    pub(crate) agent: Agent,
    /// The project directory (default: the current directory).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Overwrite an existing blastwall.toml.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the manifest instead of writing it.
    #[arg(long)]
    pub(crate) stdout: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// The manifest (default: the nearest blastwall.toml).
    pub(crate) file: Option<PathBuf>,
    /// Only say whether the manifest is trusted as it is now (exit 0) or not (exit 1).
    #[arg(long)]
    pub(crate) check: bool,
    /// Print what happened as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a manifest: exit 0 when valid, else 1 and one FILE:LINE:COL line per problem.
    Check(CheckArgs),
    /// Show the verdict, the rule, the reason and the labels for one action.
    Explain(ExplainArgs),
    /// Run the [[test]] cases a manifest carries.
    Test(TestArgs),
    /// Print the manifest's JSON Schema.
    Schema,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The manifest (default: the nearest blastwall.toml).
    pub(crate) file: Option<PathBuf>,
    /// Print the diagnostics as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The manifest (default: the nearest blastwall.toml).
    pub(crate) file: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The manifest (default: ./blastwall.toml, else the nearest one above).
    #[arg(long, global = true)]
    pub(crate) policy: Option<PathBuf>,
    /// Print one JSON object: verdict, rule, reason, labels.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) action: ExplainAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExplainAction {
    /// A network request.
    Net {
        /// The method (GET, POST, …).
        method: String,
        /// The absolute URL.
        url: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// A file holding the request body (`-` for stdin).
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// A command line.
    Exec {
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
    /// A file access.
    Fs {
        /// read or write.
        #[arg(value_enum)]
        op: FsOpArg,
        /// The path (relative to the current directory, or `~/…`).
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FsOpArg {
    /// Open, list, stat.
    Read,
    /// Create, change, delete.
    Write,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(subcommand)]
    pub(crate) command: Option<LogCommand>,
    /// The session whose log to print (default: the newest).
    #[arg(long, global = true)]
    pub(crate) session: Option<String>,
    /// An audit log file, instead of a session.
    #[arg(long, global = true)]
    pub(crate) file: Option<PathBuf>,
    /// Print events as JSON lines.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Only events of this kind (session-start, decision, outcome, alert, session-end, checkpoint).
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Keep printing events as the session writes them, until its session-end.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Verify the hash chain, the checkpoint signatures and the heads file: exit 1 and the first
    /// bad sequence number on any tampering.
    Verify,
}
