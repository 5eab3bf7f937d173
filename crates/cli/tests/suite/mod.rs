mod approvals;
mod demo;
mod init;
mod log;
mod network;
mod policy;
mod run;
mod trust;
mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch world: a fake home, a BLASTWALL_HOME inside it, a project.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        // The agent may run as another uid (a root supervisor maps it to an
        // unprivileged one): it must be able to reach the project.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("project/.git")).unwrap();
        World { dir }
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(crate) fn bw_home(&self) -> PathBuf {
        self.dir.path().join("home/.local/share/blastwall")
    }

    pub(crate) fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `blastwall ARGS` in `cwd` with only this world's environment.
    pub(crate) fn run_in(&self, cwd: &Path, args: &[&str]) -> Run {
        Run(self.command(cwd, args).output().unwrap())
    }

    /// The command, not started: this world's environment only.
    pub(crate) fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_blastwall"));
        c.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_in(&self.project(), args)
    }
}

/// A finished run.
pub(crate) struct Run(pub(crate) Output);

impl Run {
    pub(crate) fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Asserts the exit code, printing everything on failure.
    pub(crate) fn expect(self, code: i32) -> Run {
        assert_eq!(
            code,
            self.code(),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The repository's examples directory.
pub(crate) fn example(name: &str) -> PathBuf {
    // At run time first: a test archive run elsewhere (scripts/test's
    // unprivileged pass) remaps the sources and says so in this variable.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../examples")
        .join(name)
}

/// `[sandbox] accept_missing` for the layers `blastwall doctor` finds
/// missing on this host (an unprivileged user has no writable memory
/// cgroup here), as `blastwall init` writes it.
pub(crate) fn accept_missing_here(w: &World) -> String {
    let j = w.run(&["doctor", "--json"]).json();
    let layers = [
        "landlock",
        "landlock-net",
        "landlock-scope",
        "seccomp",
        "cgroup",
        "cgroup-namespace",
    ];
    let missing: Vec<String> = j["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "missing" && c["required"] == false)
        .filter_map(|c| c["name"].as_str())
        .filter(|n| layers.contains(n))
        .map(|n| format!("\"{n}\""))
        .collect();
    if missing.is_empty() {
        String::new()
    } else {
        format!("[sandbox]\naccept_missing = [{}]\n", missing.join(", "))
    }
}

/// As root, the agent runs as uid 65534: it gets `p` (and everything
/// below it) so it can work there, as a user's agent could in their own
/// project. Does nothing when the tests run unprivileged.
pub(crate) fn give_to_agent(p: &Path) {
    fn chown_tree(p: &Path, id: u32) {
        std::os::unix::fs::lchown(p, Some(id), Some(id)).unwrap();
        if std::fs::symlink_metadata(p).unwrap().is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                chown_tree(&e.path(), id);
            }
        }
    }
    if rustix::process::geteuid().is_root() {
        chown_tree(p, 65534);
    }
}
