//! `blastwall-sandbox` is the wall around the agent: Linux namespaces, the
//! mount view (system read-only, project as overlay, private home, `/tmp`,
//! `/proc`, `/dev`), Landlock, seccomp, resource limits, the sandbox's own
//! init (pid 1) and `doctor`.
//!
//! It owns every syscall and every `unsafe` block of blastwall; they live in
//! the private `sys` module and everything else calls safe wrappers. It must
//! not know about policy rules: it takes a plain [`SandboxSpec`] that the
//! caller built from the manifest.
//!
//! Main items: [`SandboxSpec`] and [`run`] (the supervisor side),
//! [`init_if_requested`] (the hidden in-sandbox entry point of the same
//! binary), [`harden_self`] (the first line of `main`), [`doctor`].
//! The steps, the seccomp rules with their reasons and what the wall does
//! not protect are in `docs/sandbox.md`.
//!
//! # Compatibility
//!
//! Linux only, x86_64 and aarch64. Needs user namespaces (unprivileged, or
//! running as root), overlayfs mountable in a user namespace (Linux 5.11,
//! `userxattr`), `mount_setattr` (5.12); as root with a root-owned
//! project, overlayfs over an idmapped mount (5.19). Landlock and seccomp layers are
//! required unless the spec lists them in [`SandboxSpec::accept_missing`];
//! [`RunOutcome::layers`] says what was really in force.
//!
//! # Test strategy
//!
//! The mount plan is built as data and applied through the [`plan::Syscalls`]
//! trait; unit tests check the plan with a recording fake, without root.
//! `tests/all.rs` drives real sandboxes through the
//! `blastwall-sandbox-harness` binary and runs `blastwall-sandbox-check`
//! inside to attack the wall from the agent's side. A test that cannot run
//! on this host prints why and passes, unless `BLASTWALL_REQUIRE_SANDBOX=1`.

// The workspace denies `unsafe_code`. This crate is the one place in
// blastwall allowed to hold it (STYLE.md "unsafe and syscalls"): it is
// confined to the `sys` module; every other module forbids it.
#![allow(unsafe_code)]

mod ahead;
mod doctor;
mod events;
mod init;
mod landlock_rules;
mod limits;
pub mod plan;
pub mod probe;
mod proto;
pub mod seccomp;
mod supervisor;
mod sys;
mod tty;
mod volatile;

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use ahead::clone_init_ahead;
pub use doctor::{Check, CheckStatus, DoctorReport, doctor};
pub use init::{INIT_ARG, init_if_requested};
pub use supervisor::run;

/// What to run inside the wall and what it may see.
///
/// Every path is absolute and is mounted at the same path inside. The
/// caller (the session crate) resolves the manifest into this plain
/// description; the sandbox knows no policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The command and its arguments; `argv[0]` is looked up in the `PATH`
    /// of [`SandboxSpec::env`] when it has no slash.
    pub argv: Vec<OsString>,
    /// The directory the command starts in (usually the project).
    pub cwd_inside: PathBuf,
    /// The project directory on the host, mounted at the same path.
    pub project: PathBuf,
    /// How the project is mounted.
    pub project_mode: ProjectMode,
    /// Extra paths mounted read-only at the same path (directories or
    /// files); each must exist.
    pub ro_paths: Vec<PathBuf>,
    /// Extra paths mounted read-write at the same path; each must exist.
    pub rw_paths: Vec<PathBuf>,
    /// Absolute paths made absent inside: an existing directory is covered
    /// by an empty read-only directory, a file by an empty read-only file
    /// (a decoy). The caller expands `.env*` files of the project.
    pub hidden: Vec<PathBuf>,
    /// The user's home path. Inside it is an empty, read-only tmpfs except
    /// for what `ro_paths`/`rw_paths` grant below it.
    pub home: PathBuf,
    /// The complete environment inside (the caller builds the allowlist).
    pub env: Vec<(OsString, OsString)>,
    /// Resource limits.
    pub limits: Limits,
    /// Layers the manifest accepts missing; any other layer that cannot be
    /// applied stops the run with [`SandboxError::Layer`].
    pub accept_missing: Vec<Layer>,
    /// Give the command a pty of the sandbox's own devpts and relay it to
    /// the supervisor's stdin/stdout. When false, stdin/stdout/stderr are
    /// passed as they are (pipes or files: never pass a terminal here,
    /// TIOCSTI aside, a shared terminal crosses the wall).
    pub tty: bool,
    /// Who the command is, inside and on the host.
    pub identity: Identity,
    /// TCP ports on loopback the command may connect to (Landlock ABI 4);
    /// empty: none (the proxy issue adds its port here).
    pub tcp_connect_ports: Vec<u16>,
    /// TCP ports the command may bind (Landlock ABI 4); empty: none.
    pub tcp_bind_ports: Vec<u16>,
    /// The hostname inside the UTS namespace.
    pub hostname: String,
    /// Ports on which the sandbox init listens on 127.0.0.1 inside the
    /// sandbox's network namespace; the listening sockets are handed to
    /// [`SupervisorHooks::loopback_listeners`] (the proxy accepts on them),
    /// and the command may connect to them (Landlock).
    #[serde(default)]
    pub loopback_listeners: Vec<u16>,
    /// UDP ports bound on 127.0.0.1 inside the sandbox's network namespace
    /// and handed to [`SupervisorHooks::loopback_udp`] (the name server
    /// blastwall answers on).
    #[serde(default)]
    pub loopback_udp: Vec<u16>,
    /// Files shown read-only inside with contents the caller chose (a
    /// sanitised `.git/config` or `~/.gitconfig`, the CA bundle with the
    /// session CA). The path must exist on the host, or lie in the home
    /// outside any grant (then it is created on the private home).
    #[serde(default)]
    pub injected: Vec<InjectedFile>,
}

/// A file shown inside with contents of the caller's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFile {
    /// Where it appears (absolute).
    pub path: PathBuf,
    /// What it holds (hex in the serialised spec: a CA bundle as a JSON
    /// array of numbers cost milliseconds at every start).
    #[serde(with = "hex_bytes")]
    pub contents: Vec<u8>,
}

/// Bytes as a hex string in serde.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

impl SandboxSpec {
    /// A spec with the safe defaults: overlay needs upper/work dirs, so the
    /// default project mode is read-only; no extra paths, no limits, no
    /// accepted missing layer, no tty, [`Identity::for_current_user`].
    pub fn new(argv: Vec<OsString>, project: PathBuf, home: PathBuf) -> Self {
        SandboxSpec {
            argv,
            cwd_inside: project.clone(),
            identity: Identity::for_current_user(Some(&project)),
            project,
            project_mode: ProjectMode::ReadOnly,
            ro_paths: Vec::new(),
            rw_paths: Vec::new(),
            hidden: Vec::new(),
            home,
            env: Vec::new(),
            limits: Limits::default(),
            accept_missing: Vec::new(),
            tty: false,
            tcp_connect_ports: Vec::new(),
            tcp_bind_ports: Vec::new(),
            hostname: "blastwall".to_owned(),
            loopback_listeners: Vec::new(),
            loopback_udp: Vec::new(),
            injected: Vec::new(),
        }
    }
}

/// How the project directory is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectMode {
    /// overlayfs: lower = the real project (never written), the agent's
    /// writes land in `upper`; `work` is overlayfs's scratch directory on
    /// the same filesystem. Both must exist, be empty at the first run, and
    /// belong to [`Identity::host_uid`].
    Overlay {
        /// The overlay's upper directory (the session's changes).
        upper: PathBuf,
        /// overlayfs's work directory.
        work: PathBuf,
    },
    /// A read-only bind of the project.
    ReadOnly,
    /// A read-write bind of the project: the agent writes the real tree.
    ReadWrite,
}

/// Resource limits; `None` is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory of the whole sandbox, bytes (cgroup memory controller).
    pub memory_bytes: Option<u64>,
    /// Number of processes/threads of the whole sandbox (cgroup pids
    /// controller; `RLIMIT_NPROC` as fallback).
    pub pids: Option<u64>,
    /// CPU seconds per process (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Bytes the overlay's upper directory may hold: the supervisor
    /// measures it every 200 ms and stops the sandbox past it (a fast
    /// writer can overshoot by what it writes in that time).
    pub overlay_bytes: Option<u64>,
}

/// A layer of the wall, as reported and as a manifest may accept missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// Landlock file-system rules.
    Landlock,
    /// Landlock TCP bind/connect rules (ABI 4).
    LandlockNet,
    /// Landlock scopes: abstract unix sockets and signals (ABI 6).
    LandlockScope,
    /// The seccomp filter.
    Seccomp,
    /// cgroup limits (memory, pids).
    Cgroup,
    /// The cgroup namespace.
    CgroupNamespace,
}

impl Layer {
    /// Every layer.
    pub const ALL: [Layer; 6] = [
        Layer::Landlock,
        Layer::LandlockNet,
        Layer::LandlockScope,
        Layer::Seccomp,
        Layer::Cgroup,
        Layer::CgroupNamespace,
    ];

    /// The name used in messages and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Landlock => "landlock",
            Layer::LandlockNet => "landlock-net",
            Layer::LandlockScope => "landlock-scope",
            Layer::Seccomp => "seccomp",
            Layer::Cgroup => "cgroup",
            Layer::CgroupNamespace => "cgroup-namespace",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who the command is inside, and which host ids stand behind it.
///
/// The sandbox builds two user namespaces: the outer one maps its root to
/// `host_uid`/`host_gid` (the sandbox init sets up the mounts there), the
/// inner one, where the command runs, maps `uid`/`gid` to that root. The
/// command therefore never is host uid 0, even when blastwall runs as root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// The host uid the sandbox runs as. Unprivileged: must be the caller's
    /// own uid. As root: any uid but 0.
    pub host_uid: u32,
    /// The host gid the sandbox runs as.
    pub host_gid: u32,
}

/// The host uid used when blastwall runs as root and no better owner is
/// known (not `sudo`, project owned by root): the conventional `nobody`.
pub const FALLBACK_HOST_ID: u32 = 65534;

impl Identity {
    /// The default identity: an unprivileged caller runs as itself. Root
    /// runs the agent as the invoking user (`SUDO_UID`/`SUDO_GID`), else as
    /// the owner of `project` when that is not root, else as
    /// [`FALLBACK_HOST_ID`]. Inside, the ids are the same numbers.
    pub fn for_current_user(project: Option<&std::path::Path>) -> Identity {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid != 0 {
            return Identity {
                uid,
                gid,
                host_uid: uid,
                host_gid: gid,
            };
        }
        let from_env = |name: &str| -> Option<u32> {
            std::env::var(name).ok()?.parse().ok().filter(|&v| v != 0)
        };
        if let (Some(u), Some(g)) = (from_env("SUDO_UID"), from_env("SUDO_GID")) {
            return Identity {
                uid: u,
                gid: g,
                host_uid: u,
                host_gid: g,
            };
        }
        if let Some(meta) = project.and_then(|p| std::fs::metadata(p).ok()) {
            use std::os::unix::fs::MetadataExt;
            if meta.uid() != 0 {
                let g = if meta.gid() != 0 {
                    meta.gid()
                } else {
                    FALLBACK_HOST_ID
                };
                return Identity {
                    uid: meta.uid(),
                    gid: g,
                    host_uid: meta.uid(),
                    host_gid: g,
                };
            }
        }
        Identity {
            uid: FALLBACK_HOST_ID,
            gid: FALLBACK_HOST_ID,
            host_uid: FALLBACK_HOST_ID,
            host_gid: FALLBACK_HOST_ID,
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn as_shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// How a limit was put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitMechanism {
    /// cgroup v1 controller (as root).
    CgroupV1,
    /// cgroup v2 (delegated subtree).
    CgroupV2,
    /// A per-process rlimit.
    Rlimit,
    /// Measured by the supervisor, which stops the sandbox past it.
    SupervisorWatch,
}

/// A limit that was really in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitInForce {
    /// The value.
    pub value: u64,
    /// How it was enforced.
    pub mechanism: LimitMechanism,
}

/// Which limits were really in force (`None`: not limited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsReport {
    /// Memory of the sandbox, bytes.
    pub memory_bytes: Option<LimitInForce>,
    /// Processes of the sandbox.
    pub pids: Option<LimitInForce>,
    /// CPU seconds per process.
    pub cpu_seconds: Option<LimitInForce>,
    /// Overlay bytes.
    pub overlay_bytes: Option<LimitInForce>,
    /// `oom_score_adj` of the sandbox's processes.
    pub oom_score_adj: i32,
}

/// Which layers were really in force for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The namespaces created (`user`, `mnt`, `pid`, `net`, `ipc`, `uts`,
    /// `cgroup`).
    pub namespaces: Vec<String>,
    /// The Landlock ABI the rules were built for (`None`: no Landlock).
    pub landlock_abi: Option<i32>,
    /// Landlock file-system rules fully enforced.
    pub landlock_fs: bool,
    /// Landlock TCP rules enforced.
    pub landlock_net: bool,
    /// Landlock scopes (abstract unix sockets, signals) enforced.
    pub landlock_scope: bool,
    /// The seccomp filter was installed.
    pub seccomp: bool,
    /// Limits in force.
    pub limits: LimitsReport,
    /// Layers that were missing and that the spec accepted missing, with
    /// the reason.
    pub missing: Vec<(Layer, String)>,
    /// The identity the command ran as.
    pub identity: Option<Identity>,
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// What was in force.
    pub layers: LayerReport,
    /// The memory limit killed a process inside.
    pub memory_limit_hit: bool,
    /// The overlay grew past its limit and the sandbox was stopped.
    pub overlay_limit_hit: bool,
    /// Hidden paths something inside opened (their decoys), in order.
    pub hidden_touched: Vec<PathBuf>,
}

/// Hooks the supervisor calls while the sandbox comes up.
pub trait SupervisorHooks {
    /// The namespaces exist and the sandbox init (host pid `pid`) waits for
    /// the start signal; e.g. create a listening socket in its network
    /// namespace through `/proc/<pid>/ns/net`. An error stops the run.
    fn netns_ready(&mut self, pid: i32) -> Result<(), String> {
        let _ = pid;
        Ok(())
    }

    /// The listening sockets of [`SandboxSpec::loopback_listeners`], bound
    /// inside the sandbox's network namespace, before the command starts.
    /// Keep them to accept connections from inside; dropping them closes
    /// the ports. An error stops the run.
    fn loopback_listeners(
        &mut self,
        listeners: Vec<(u16, std::net::TcpListener)>,
    ) -> Result<(), String> {
        drop(listeners);
        Ok(())
    }

    /// The sockets of [`SandboxSpec::loopback_udp`], bound inside the
    /// sandbox's network namespace, before the command starts.
    fn loopback_udp(&mut self, sockets: Vec<(u16, std::net::UdpSocket)>) -> Result<(), String> {
        drop(sockets);
        Ok(())
    }

    /// Called last before the start byte: the namespaces, the cgroups and
    /// the decoy watch are ready, and nothing inside has run yet. Returns
    /// the contents of [`SandboxSpec::injected`] files that the spec left
    /// to be filled in now (e.g. a CA bundle whose CA is made while the
    /// sandbox comes up), each named by its path as the spec gives it; the
    /// other injected files keep the contents the spec gave. The caller may
    /// block here until its own preparation is done. An error stops the
    /// run.
    fn before_start(&mut self) -> Result<Vec<InjectedFile>, String> {
        Ok(Vec::new())
    }

    /// The command ended, everything inside is gone and the overlay's
    /// changes are durable: `outcome` is what [`run`] returns once the
    /// sandbox is torn down (the init's namespaces, the cgroups, the
    /// decoys), which takes a little longer; e.g. record the end meanwhile.
    /// Called at most once, and never when [`run`] returns an error.
    fn ended(&mut self, outcome: &RunOutcome) {
        let _ = outcome;
    }

    /// Something inside opened the decoy of hidden path `path` (an audit
    /// event for the anomaly rules). Called once per inotify event.
    fn hidden_path_touched(&mut self, path: &std::path::Path) {
        let _ = path;
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl SupervisorHooks for NoHooks {}

/// Why the sandbox could not run the command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec is not usable.
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    /// A host path the spec names cannot be opened.
    #[error("cannot open {what} {path}: {source}")]
    Open {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The namespaces cannot be created.
    #[error("cannot create the sandbox namespaces: {source} (run `blastwall doctor`)")]
    Namespaces {
        /// The error of clone(2).
        source: std::io::Error,
    },
    /// A required layer cannot be applied.
    #[error(
        "{layer} cannot be applied: {reason} (run `blastwall doctor`; a manifest may accept it missing)"
    )]
    Layer {
        /// The layer.
        layer: Layer,
        /// Why.
        reason: String,
    },
    /// A setup step inside the sandbox failed.
    #[error("sandbox setup failed: {step}: {reason}")]
    Setup {
        /// The step, naming its path.
        step: String,
        /// The error.
        reason: String,
    },
    /// The command cannot be executed.
    #[error("cannot execute {program}: {reason}")]
    Exec {
        /// The program.
        program: String,
        /// The error.
        reason: String,
    },
    /// A supervisor-side operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed, naming its object.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The hook refused.
    #[error("supervisor hook failed: {0}")]
    Hook(String),
    /// The sandbox init ended without saying how the command ended.
    #[error("sandbox init ended without a report ({0})")]
    InitDied(String),
}

/// Hardens the current process: no core dumps, not dumpable (so not
/// ptraceable by same-uid processes), and every `LD_*` variable removed
/// from the environment. Call it as the first line of `main`, before any
/// thread starts.
pub fn harden_self() {
    // Errors are ignored on purpose: each step only narrows what a local
    // attacker can read, and none can fail on a supported kernel.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
    sys::strip_loader_env();
}
