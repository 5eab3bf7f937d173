//! The typed, validated settings of a manifest that are not rules: what
//! `run` mounts, which credentials it swaps, how asks reach a person, how
//! the audit is written, the limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::host::{HostName, HostPattern};

/// How the project directory is mounted inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectMode {
    /// Writes land in the session's overlay, for diff/commit/discard.
    Overlay,
    /// Read-only.
    Ro,
    /// Read-write: writes reach the real tree (no longer a boundary for the project).
    Rw,
}

/// Where a credential's real value goes on an allowed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Placement {
    /// In a header, after a prefix.
    Header {
        /// Header name.
        name: String,
        /// What precedes the value (`Bearer `).
        prefix: String,
    },
    /// As a query parameter.
    Query {
        /// Parameter name.
        name: String,
    },
}

/// A credential the proxy swaps in.
#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    /// Its name.
    pub name: String,
    /// The variable that holds the placeholder inside.
    pub env: String,
    /// The hosts the real value may go to.
    pub hosts: Vec<HostPattern>,
    /// Where it goes.
    pub placement: Placement,
    /// How long the placeholder lives.
    pub ttl: Option<Duration>,
    /// Where the real value comes from (only from the user's own config).
    pub source: Option<String>,
}

/// A `[network.resolve]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolve {
    /// The host it applies to.
    pub host: HostName,
    /// The port it applies to.
    pub port: u16,
    /// Where to connect instead of resolving the name.
    pub addr: SocketAddr,
}

/// What an ask becomes with no terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonInteractive {
    /// Deny at once.
    Deny,
    /// Wait for `blastwall approve`, `watch` or the page, as with a terminal.
    Wait,
    /// Post to the webhook and wait.
    Webhook,
}

/// An outgoing webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Where to post.
    pub url: String,
    /// `slack`, `discord` or `json`.
    pub format: String,
}

/// `[approval]`.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalSettings {
    /// How long an ask waits before it becomes a deny.
    pub timeout: Duration,
    /// Channels asks are shown on.
    pub channels: Vec<String>,
    /// What happens with no terminal.
    pub non_interactive: NonInteractive,
    /// The webhook, if any.
    pub webhook: Option<Webhook>,
}

/// When the audit log is flushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncMode {
    /// Every event is durable before its action is released.
    Always,
    /// Actions with side effects are durable before release; reads are group-committed.
    SideEffects,
}

/// An audit sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AuditSink {
    /// An extra copy in a file.
    File {
        /// The file.
        path: Option<PathBuf>,
    },
    /// An OpenTelemetry collector.
    Otlp {
        /// Its endpoint.
        endpoint: String,
        /// `logs` or `spans`.
        signal: String,
    },
    /// A webhook.
    Webhook {
        /// Where to post.
        url: String,
    },
}

/// `[audit.alerts]`.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// Alert on the first request to an undeclared host.
    pub first_contact: bool,
    /// Alert on a placeholder outside its hosts.
    pub placeholder_leak: bool,
    /// Alert on an attempt on a hidden path.
    pub hidden_path: bool,
    /// Alert on a destructive ask.
    pub destructive_ask: bool,
    /// Alert on this many denials...
    pub deny_burst_count: u32,
    /// ...within this window.
    pub deny_burst_window: Duration,
}

/// `[audit]`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSettings {
    /// The flush policy.
    pub fsync: FsyncMode,
    /// Extra sinks.
    pub sinks: Vec<AuditSink>,
    /// Anomaly rules.
    pub alerts: Alerts,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Memory, bytes.
    pub memory: u64,
    /// Processes and threads.
    pub pids: u64,
    /// CPU time.
    pub cpu: Option<Duration>,
    /// Bytes written to the overlay.
    pub overlay: u64,
}

/// Everything a manifest says that is not a rule.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The project's name.
    pub project_name: Option<String>,
    /// The project root (the manifest's directory).
    pub project_root: PathBuf,
    /// The home directory the manifest's `~` means.
    pub home: PathBuf,
    /// How the project is mounted.
    pub project_mode: ProjectMode,
    /// Extra read-only paths, absolute.
    pub read_paths: Vec<PathBuf>,
    /// Extra read-write paths, absolute.
    pub write_paths: Vec<PathBuf>,
    /// Hidden path globs, absolute (defaults and the manifest's).
    pub hidden: Vec<String>,
    /// Credentials.
    pub credentials: Vec<Credential>,
    /// Resolve overrides.
    pub resolve: Vec<Resolve>,
    /// Extra upstream CAs, absolute paths.
    pub upstream_ca: Vec<PathBuf>,
    /// How asks reach a person.
    pub approval: ApprovalSettings,
    /// How the audit is written.
    pub audit: AuditSettings,
    /// Resource limits.
    pub limits: Limits,
    /// Layers `run` may start without.
    pub accept_missing: Vec<String>,
    /// Host variables passed in.
    pub env_pass: Vec<String>,
    /// Variables set inside.
    pub env_set: Vec<(String, String)>,
    /// Whether the manifest has exec rules (not enforced by `run` yet).
    pub has_exec_rules: bool,
}

/// The paths hidden by default, relative to the home directory.
pub const DEFAULT_HIDDEN_HOME: &[&str] = &[
    ".aws",
    ".ssh",
    ".kube",
    ".config/gcloud",
    ".docker/config.json",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".config/gh",
    ".railway",
    ".gnupg",
    ".password-store",
    ".local/share/keyrings",
];

/// Hidden by default inside the project, as globs relative to its root.
pub const DEFAULT_HIDDEN_PROJECT: &[&str] = &["**/.env*"];

/// The environment variables always passed in (when set on the host).
pub const ENV_ALWAYS: &[&str] = &[
    "PATH", "TERM", "LANG", "LC_*", "TZ", "HOME", "USER", "SHELL",
];
