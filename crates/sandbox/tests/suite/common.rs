//! The fixture: a project, overlay dirs and a home in a tempdir, a spec
//! pointing at them, and the harness that runs it.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use blastwall_sandbox::{Identity, ProjectMode, SandboxSpec};

/// The host uid the tests map the agent to when they run as root.
pub(crate) const ROOT_TEST_UID: u32 = 65534;

pub(crate) fn harness() -> &'static str {
    env!("CARGO_BIN_EXE_blastwall-sandbox-harness")
}

pub(crate) fn checker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_blastwall-sandbox-check"))
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (prints why) or, under `BLASTWALL_REQUIRE_SANDBOX=1`, fails.
pub(crate) fn skip(why: &str) {
    if std::env::var_os("BLASTWALL_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
        panic!("required sandbox test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

pub(crate) fn os(s: &str) -> OsString {
    OsString::from(s)
}

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) spec: SandboxSpec,
    /// Injected files the harness gives at `before_start`.
    pub(crate) late: Vec<blastwall_sandbox::InjectedFile>,
    /// The harness's command: `run` (the init cloned ahead) or `run-exec`
    /// (the init cloned and executed by `run`, the fallback path), which
    /// `BLASTWALL_TEST_INIT=exec` makes the default (scripts/test runs the
    /// suite both ways).
    pub(crate) mode: &'static str,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("bw-sandbox-test")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        for d in ["proj", "upper", "work", "home"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::write(root.join("proj/README.md"), "# the real readme\n").unwrap();
        std::fs::create_dir_all(root.join("proj/src/deep")).unwrap();
        std::fs::write(root.join("proj/src/deep/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("proj/.env"), "TOKEN=marker-env-9f3a\n").unwrap();
        std::fs::create_dir_all(root.join("home/.aws")).unwrap();
        std::fs::write(root.join("home/.aws/credentials"), "marker-aws-77c1\n").unwrap();
        let identity = if is_root() {
            chown_tree(root, ROOT_TEST_UID);
            Identity {
                uid: 1000,
                gid: 1000,
                host_uid: ROOT_TEST_UID,
                host_gid: ROOT_TEST_UID,
            }
        } else {
            Identity::for_current_user(None)
        };
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let proj = root.join("proj");
        let mut spec = SandboxSpec::new(vec![os("true")], proj.clone(), root.join("home"));
        spec.identity = identity;
        spec.project_mode = ProjectMode::Overlay {
            upper: root.join("upper"),
            work: root.join("work"),
        };
        spec.ro_paths
            .push(checker().parent().unwrap().to_path_buf());
        spec.hidden.push(proj.join(".env"));
        spec.hidden.push(root.join("home/.aws"));
        spec.env = vec![
            (os("PATH"), os("/usr/local/bin:/usr/bin:/bin")),
            (os("HOME"), root.join("home").into_os_string()),
            (os("LANG"), os("C.UTF-8")),
        ];
        Fixture {
            dir,
            spec,
            late: Vec::new(),
            mode: if std::env::var_os("BLASTWALL_TEST_INIT").is_some_and(|v| v == "exec") {
                "run-exec"
            } else {
                "run"
            },
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `sh -c script` inside.
    pub(crate) fn sh(&mut self, script: &str) -> Run {
        self.spec.argv = vec![os("sh"), os("-c"), os(script)];
        self.run()
    }

    /// Runs the checker inside with `args`.
    pub(crate) fn check(&mut self, args: &[&str]) -> Run {
        self.spec.argv = std::iter::once(checker().into_os_string())
            .chain(args.iter().map(|a| os(a)))
            .collect();
        self.run()
    }

    pub(crate) fn run(&self) -> Run {
        self.run_under(&[])
    }

    /// Runs the harness under a wrapper command (`wrapper[0] wrapper[1..]
    /// harness run ...`); no wrapper when empty.
    pub(crate) fn run_under(&self, wrapper: &[&str]) -> Run {
        let spec_path = self.path("spec.json");
        let out_path = self.path("outcome.json");
        let _ = std::fs::remove_file(&out_path);
        std::fs::write(&spec_path, serde_json::to_vec(&self.spec).unwrap()).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(harness());
                c
            }
            None => Command::new(harness()),
        };
        cmd.arg(self.mode).arg(&spec_path).arg(&out_path);
        if !self.late.is_empty() {
            let late_path = self.path("late.json");
            std::fs::write(&late_path, serde_json::to_vec(&self.late).unwrap()).unwrap();
            cmd.arg(&late_path);
        }
        let output = cmd.output().unwrap();
        let outcome: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out_path).unwrap_or_default())
                .unwrap_or(serde_json::Value::Null);
        Run { output, outcome }
    }
}

pub(crate) fn chown_tree(p: &Path, uid: u32) {
    let id = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(p, id, gid).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

pub(crate) struct Run {
    pub(crate) output: Output,
    pub(crate) outcome: serde_json::Value,
}

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub(crate) fn error(&self) -> Option<String> {
        self.outcome
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
    }

    pub(crate) fn code(&self) -> Option<i64> {
        self.outcome
            .pointer("/status/code")
            .and_then(serde_json::Value::as_i64)
    }

    /// Panics with everything when the sandbox itself failed.
    pub(crate) fn ok(self) -> Run {
        if let Some(e) = self.error() {
            panic!(
                "sandbox error: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
        }
        assert!(
            self.outcome.get("status").is_some(),
            "no outcome: {:?}\nstderr:\n{}",
            self.outcome,
            self.stderr()
        );
        self
    }
}

/// A fixture if the sandbox can run here; otherwise skips (see [`skip`]).
pub(crate) fn sandbox() -> Option<Fixture> {
    let f = Fixture::new();
    let r = f.run();
    match r.error() {
        None if r.code() == Some(0) => Some(f),
        None => {
            skip(&format!(
                "`true` in the sandbox failed: {:?} {}",
                r.outcome,
                r.stderr()
            ));
            None
        }
        Some(e) if e.contains("namespaces") || e.contains("cannot be applied") => {
            skip(&format!("the sandbox cannot run on this host: {e}"));
            None
        }
        Some(e) => panic!("sandbox error on `true`: {e}\n{}", r.stderr()),
    }
}

/// Every regular file under `dir` with its content and mode, sorted.
pub(crate) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new(), m.mode()));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default(), m.mode()));
            }
        }
    }
    out.sort();
    out
}
