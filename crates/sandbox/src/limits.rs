//! Resource limits: cgroup v1 (as root), cgroup v2 (a delegated subtree),
//! rlimits as fallback. Never `RLIMIT_AS` (it breaks V8/Node, which
//! reserves large address ranges it never touches).
//!
//! The supervisor creates a child cgroup of its own cgroup for each
//! controller it needs, writes the limits, moves the sandbox init in before
//! it starts, and removes the cgroup after the run.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::{Layer, LimitInForce, LimitMechanism, Limits, LimitsReport};

/// Cgroups created for one sandbox.
#[derive(Debug, Default)]
pub(crate) struct Cgroups {
    dirs: Vec<PathBuf>,
    memory_dir: Option<(PathBuf, LimitMechanism)>,
}

/// What the limits setup produced.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub(crate) cgroups: Cgroups,
    pub(crate) report: LimitsReport,
    /// RLIMIT_NPROC to set inside (no pids cgroup).
    pub(crate) nproc_rlimit: Option<u64>,
    /// Why the cgroup layer is missing, if it is.
    pub(crate) missing: Option<(Layer, String)>,
}

#[derive(Debug, Clone)]
struct Mount {
    point: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

fn mounts() -> Vec<Mount> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        // id parent maj:min root point opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(point), Some(fstype)) = (fields.get(4), rfields.first()) else {
            continue;
        };
        let superopts = rfields.get(2).copied().unwrap_or("");
        match *fstype {
            "cgroup2" => out.push(Mount {
                point: PathBuf::from(point),
                v2: true,
                controllers: Vec::new(),
            }),
            "cgroup" => out.push(Mount {
                point: PathBuf::from(point),
                v2: false,
                controllers: superopts.split(',').map(str::to_owned).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// What [`setup`] reads about the host's cgroups, once per run (the
/// mount table and this process's cgroups; each read is a generated
/// procfs file).
struct Host {
    mounts: Vec<Mount>,
    own: String,
}

impl Host {
    fn read() -> Host {
        Host {
            mounts: mounts(),
            own: std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        }
    }
}

/// This process's cgroup path for a v1 controller, or for v2 (`None`),
/// from the text of `/proc/self/cgroup`.
fn own_path(text: &str, controller: Option<&str>) -> Option<String> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        match controller {
            None if ctrls.is_empty() => return Some(path.to_owned()),
            Some(c) if ctrls.split(',').any(|x| x == c) => return Some(path.to_owned()),
            _ => {}
        }
    }
    None
}

fn join(point: &Path, cg: &str, name: &str) -> PathBuf {
    point.join(cg.trim_start_matches('/')).join(name)
}

/// Where a v1 controller can take a child cgroup of ours, if writable.
fn v1_dir(host: &Host, controller: &str, name: &str) -> Option<PathBuf> {
    let m = host
        .mounts
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
    let cg = own_path(&host.own, Some(controller))?;
    let parent = join(&m.point, &cg, "");
    nix::unistd::access(&parent, nix::unistd::AccessFlags::W_OK).ok()?;
    Some(join(&m.point, &cg, name))
}

/// Where v2 can take a child cgroup of ours with `controllers` enabled.
fn v2_dir(host: &Host, controllers: &[&str], name: &str) -> Option<PathBuf> {
    let m = host.mounts.iter().find(|m| m.v2)?;
    let cg = own_path(&host.own, None)?;
    let parent = join(&m.point, &cg, "");
    let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).ok()?;
    if !controllers
        .iter()
        .all(|c| enabled.split_whitespace().any(|e| e == *c))
    {
        return None;
    }
    nix::unistd::access(&parent, nix::unistd::AccessFlags::W_OK).ok()?;
    Some(join(&m.point, &cg, name))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(file).display()))
}

/// Creates the cgroups for `limits`. Missing cgroup support is reported in
/// [`Setup::missing`]; the caller decides whether that stops the run.
pub(crate) fn setup(limits: &Limits, name: &str) -> Setup {
    let mut s = Setup::default();
    if limits.memory_bytes.is_none() && limits.pids.is_none() {
        return s;
    }
    let mut wanted = Vec::new();
    if limits.memory_bytes.is_some() {
        wanted.push("memory");
    }
    if limits.pids.is_some() {
        wanted.push("pids");
    }
    let host = Host::read();
    // v2 first: one directory for every controller.
    if let Some(dir) = v2_dir(&host, &wanted, name) {
        match setup_v2(&dir, limits, &mut s) {
            Ok(()) => return s,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                s = Setup {
                    missing: Some((Layer::Cgroup, e)),
                    ..Setup::default()
                };
            }
        }
    }
    // v1, one hierarchy per controller.
    let mut errors = Vec::new();
    if let Some(mem) = limits.memory_bytes {
        match v1_dir(&host, "memory", name)
            .ok_or_else(|| {
                "no writable cgroup v1 memory controller or delegated cgroup v2 subtree".to_owned()
            })
            .and_then(|dir| {
                std::fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                s.cgroups.dirs.push(dir.clone());
                write(&dir, "memory.limit_in_bytes", &mem.to_string())?;
                // No swap beyond the limit, where the kernel accounts swap.
                let _ = write(&dir, "memory.memsw.limit_in_bytes", &mem.to_string());
                let _ = write(&dir, "memory.swappiness", "0");
                s.cgroups.memory_dir = Some((dir, LimitMechanism::CgroupV1));
                Ok(())
            }) {
            Ok(()) => {
                s.report.memory_bytes = Some(LimitInForce {
                    value: mem,
                    mechanism: LimitMechanism::CgroupV1,
                })
            }
            Err(e) => errors.push(format!("memory: {e}")),
        }
    }
    if let Some(pids) = limits.pids {
        let r = v1_dir(&host, "pids", name)
            .ok_or_else(|| "no writable cgroup v1 pids controller".to_owned())
            .and_then(|dir| {
                std::fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                s.cgroups.dirs.push(dir.clone());
                write(&dir, "pids.max", &pids.to_string())
            });
        match r {
            Ok(()) => {
                s.report.pids = Some(LimitInForce {
                    value: pids,
                    mechanism: LimitMechanism::CgroupV1,
                })
            }
            Err(_) => {
                // RLIMIT_NPROC counts the processes of the sandbox's user
                // namespace: a fair fallback for the pids controller.
                s.nproc_rlimit = Some(pids);
            }
        }
    }
    if !errors.is_empty() {
        s.missing = Some((Layer::Cgroup, errors.join("; ")));
    }
    s
}

fn setup_v2(dir: &Path, limits: &Limits, s: &mut Setup) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    s.cgroups.dirs.push(dir.to_path_buf());
    if let Some(mem) = limits.memory_bytes {
        write(dir, "memory.max", &mem.to_string())?;
        let _ = write(dir, "memory.swap.max", "0");
        s.report.memory_bytes = Some(LimitInForce {
            value: mem,
            mechanism: LimitMechanism::CgroupV2,
        });
        s.cgroups.memory_dir = Some((dir.to_path_buf(), LimitMechanism::CgroupV2));
    }
    if let Some(pids) = limits.pids {
        write(dir, "pids.max", &pids.to_string())?;
        s.report.pids = Some(LimitInForce {
            value: pids,
            mechanism: LimitMechanism::CgroupV2,
        });
    }
    Ok(())
}

impl Cgroups {
    /// Moves the calling thread into every cgroup, when all are v1 (by
    /// writing `0` to `tasks`), so that a child it clones starts in them.
    /// On v1, writing a pid to `cgroup.procs` afterwards waits for an RCU
    /// grace period (measured 4.5-27 ms a write here); a thread moving itself
    /// does not (0.3 ms). Returns whether it moved; the caller then skips
    /// [`Cgroups::attach`] and calls [`Cgroups::leave_thread`].
    pub(crate) fn enter_thread(&self) -> bool {
        if self.dirs.is_empty() || !self.dirs.iter().all(|d| d.join("tasks").is_file()) {
            return false;
        }
        for (i, d) in self.dirs.iter().enumerate() {
            if write(d, "tasks", "0").is_err() {
                self.leave(self.dirs.get(..i).unwrap_or_default());
                return false;
            }
        }
        true
    }

    /// Each cgroup's `tasks` file, open for writing, when all are v1: a
    /// process that writes `0` to them moves itself in, without the RCU
    /// grace period of a write of its pid from outside (see
    /// [`Cgroups::enter_thread`]); the init cloned ahead does
    /// (`crate::ahead`). `None`: attach by pid.
    pub(crate) fn open_tasks(&self) -> Option<Vec<std::os::fd::OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("tasks"))
                    .ok()
                    .map(std::os::fd::OwnedFd::from)
            })
            .collect()
    }

    /// Moves the calling thread back to the supervisor's own cgroups.
    pub(crate) fn leave_thread(&self) {
        self.leave(&self.dirs);
    }

    fn leave(&self, dirs: &[PathBuf]) {
        for d in dirs {
            if let Some(parent) = d.parent() {
                let _ = write(parent, "tasks", "0");
            }
        }
    }

    /// Moves `pid` into every cgroup.
    pub(crate) fn attach(&self, pid: i32) -> Result<(), String> {
        for d in &self.dirs {
            write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the memory controller killed a process for the limit.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((dir, mech)) = &self.memory_dir else {
            return false;
        };
        let (file, key) = match mech {
            LimitMechanism::CgroupV2 => ("memory.events", "oom_kill"),
            _ => ("memory.oom_control", "oom_kill"),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .is_some_and(|t| {
                t.lines().any(|l| {
                    l.split_once(' ')
                        .is_some_and(|(k, v)| k == key && v.trim() != "0")
                })
            })
    }

    /// Removes the cgroups (they are empty once the sandbox is gone).
    pub(crate) fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The cgroup layout of this host, for `doctor`.
pub(crate) fn describe_host() -> (bool, Vec<String>) {
    let ms = mounts();
    let v2 = ms.iter().any(|m| m.v2);
    let v1: Vec<String> = ms
        .iter()
        .filter(|m| !m.v2)
        .flat_map(|m| {
            m.controllers
                .iter()
                .filter(|c| matches!(c.as_str(), "memory" | "pids" | "cpu"))
                .cloned()
        })
        .collect();
    (v2, v1)
}

/// Whether a v1 controller or a v2 subtree with `controllers` is writable.
pub(crate) fn usable(controllers: &[&str]) -> Option<&'static str> {
    let host = Host::read();
    if v2_dir(&host, controllers, "probe").is_some() {
        return Some("v2");
    }
    if controllers
        .iter()
        .all(|c| v1_dir(&host, c, "probe").is_some())
    {
        return Some("v1");
    }
    None
}
