//! The mount plan: the sandbox's file-system view as data.
//!
//! The supervisor builds a [`Plan`] from the [`SandboxSpec`] and what the
//! host has ([`HostQuery`]); the sandbox init applies it, before anything
//! of the agent runs, through the [`Syscalls`] trait. [`LinuxSyscalls`]
//! makes the real calls, [`RecordingSyscalls`] records them, so that a unit
//! test checks the plan of a spec without root (youki
//! `syscall/{syscall,linux,test}.rs`).
//!
//! The steps follow bubblewrap's `setup_newroot`: make `/` private, put a
//! tmpfs on a base directory, `pivot_root` into it with the host's root
//! under `/oldroot`, build the new root in `/newroot` from binds of
//! `/oldroot/...`, then `pivot_root` into `/newroot` and detach the old
//! tree (the base and `/oldroot` under it) in one go.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::{ProjectMode, SandboxError, SandboxSpec};

/// Where the init's base tmpfs is mounted before the first `pivot_root`;
/// the mount namespace is private by then, so the host never sees it.
pub const BASE: &str = "/tmp";
/// The host's root after the first `pivot_root`.
pub const OLDROOT: &str = "/oldroot";
/// The new root while it is being built.
pub const NEWROOT: &str = "/newroot";
/// An empty file and an empty directory on the base tmpfs, bound over
/// masked files.
pub const DECOY_FILE: &str = "/decoy/empty";

/// The system directories bound read-only (or recreated as the same
/// symlink when they are one on the host, as on merged-/usr systems).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// Files under the system view that hold host secrets; covered by an empty
/// read-only file. `/etc/ssh/ssh_host_*` keys are added from the host.
pub const MASKED_SYSTEM_FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/security/opasswd",
];

/// Directories under the system view that hold host secrets; covered by an
/// empty read-only tmpfs.
pub const MASKED_SYSTEM_DIRS: &[&str] = &["/etc/sudoers.d"];

/// runc's masked `/proc` files (`libcontainer/specconv/example.go`):
/// kernel memory, keys, timers and scheduler internals.
pub const PROC_MASKED_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/interrupts",
];

/// runc's masked `/proc` directories.
pub const PROC_MASKED_DIRS: &[&str] = &["/proc/acpi", "/proc/asound", "/proc/scsi"];

/// runc's read-only `/proc` paths: no kernel setting can be changed.
pub const PROC_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes bound from the host's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Op {
    /// `mount --make-rprivate /`: nothing we mount propagates to the host.
    MakeRootPrivate,
    /// Attach the mount tree the supervisor sent (the project as an
    /// idmapped mount, see [`HostQuery::owner_uid`]) on `target`, the
    /// project's own path in the host's tree, before the first
    /// `pivot_root`: the grant of the project then finds it under
    /// `/oldroot` like any other path. After [`Op::MakeRootPrivate`], so it
    /// never propagates to the host.
    AttachTree {
        /// Where (the project's host path).
        target: PathBuf,
    },
    /// A tmpfs at `target`.
    Tmpfs {
        /// Where.
        target: PathBuf,
        /// Mode of its root.
        mode: u32,
        /// Mounted read-only (an empty mask).
        readonly: bool,
    },
    /// `mkdir -p`.
    Mkdir {
        /// The directory.
        path: PathBuf,
    },
    /// Creates an empty file (a mount point for a file bind) if missing.
    CreateFile {
        /// The file.
        path: PathBuf,
    },
    /// A symlink.
    Symlink {
        /// What it points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// A (recursive) bind mount.
    Bind {
        /// The source.
        source: PathBuf,
        /// The mount point.
        target: PathBuf,
        /// With the mounts below the source.
        recursive: bool,
    },
    /// Sets attributes on a mount (and, if recursive, the mounts below).
    SetAttr {
        /// The mount.
        target: PathBuf,
        /// Also the mounts below.
        recursive: bool,
        /// Read-only.
        readonly: bool,
        /// nosuid and nodev.
        nosuid_nodev: bool,
    },
    /// overlayfs with the `userxattr` option (mounted inside the user
    /// namespace, so the upper layer's layout is the same as root and as a
    /// user) and `volatile`: overlayfs then never syncs the upper
    /// filesystem, above all not when the sandbox's mount namespace goes
    /// (a `syncfs` of the whole host filesystem, 10-90 ms on a busy disk,
    /// in the run's latency). The supervisor makes the session's changes
    /// durable itself after the run (`crate::volatile`).
    Overlay {
        /// The real project.
        lower: PathBuf,
        /// The session's changes.
        upper: PathBuf,
        /// overlayfs's scratch directory.
        work: PathBuf,
        /// The mount point.
        target: PathBuf,
    },
    /// A new `proc` for the sandbox's pid namespace.
    Proc {
        /// The mount point.
        target: PathBuf,
    },
    /// A new devpts instance (the sandbox's own ptys).
    Devpts {
        /// The mount point.
        target: PathBuf,
    },
    /// `chdir`.
    Chdir {
        /// The directory.
        path: PathBuf,
    },
    /// `pivot_root(new_root, put_old)`.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
        /// Where the old root goes.
        put_old: PathBuf,
    },
    /// `umount2(target, MNT_DETACH)`.
    Detach {
        /// The mount.
        target: PathBuf,
    },
}

/// The kind of a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// Anything else that can be bound (file, device, socket…).
    File,
    /// A symlink with its target.
    Symlink(PathBuf),
}

/// What the plan builder asks the host.
pub trait HostQuery {
    /// The kind of `path`, without following a final symlink; `None` if
    /// absent.
    fn kind(&self, path: &Path) -> Option<Kind>;
    /// The names in a directory (empty if unreadable).
    fn list(&self, dir: &Path) -> Vec<OsString>;
    /// The owner of `path`; `None` if unknown.
    fn owner_uid(&self, path: &Path) -> Option<u32> {
        let _ = path;
        None
    }
    /// The supervisor runs as root (it can make idmapped mounts).
    fn supervisor_is_root(&self) -> bool {
        false
    }
}

/// [`HostQuery`] on the real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl HostQuery for RealHost {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.file_type().is_symlink() {
            return std::fs::read_link(path).ok().map(Kind::Symlink);
        }
        Some(if meta.is_dir() { Kind::Dir } else { Kind::File })
    }

    fn list(&self, dir: &Path) -> Vec<OsString> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<OsString> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        names
    }

    fn owner_uid(&self, path: &Path) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.uid())
    }

    fn supervisor_is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }
}

/// The mount plan for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps, in order.
    pub ops: Vec<Op>,
    /// The decoys bound over hidden paths from the supervisor's decoy
    /// directory: (decoy on the host, hidden path inside, is a directory).
    /// The supervisor creates them and watches them with inotify.
    pub decoys: Vec<(PathBuf, PathBuf, bool)>,
    /// Files the supervisor writes into its directory and the plan binds
    /// read-only over a path inside: (file on the host, index into
    /// [`SandboxSpec::injected`]).
    pub injected: Vec<(PathBuf, usize)>,
}

/// `/newroot` + an absolute path.
pub fn in_newroot(path: &Path) -> PathBuf {
    under(Path::new(NEWROOT), path)
}

/// `/oldroot` + an absolute path.
pub fn in_oldroot(path: &Path) -> PathBuf {
    under(Path::new(OLDROOT), path)
}

fn under(base: &Path, path: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in path.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Checks that `path` is absolute and has no `..` or `.` component.
fn check_abs(what: &str, path: &Path) -> Result<(), SandboxError> {
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean {
        Ok(())
    } else {
        Err(SandboxError::Spec(format!(
            "{what} {} is not an absolute path without `.` or `..`",
            path.display()
        )))
    }
}

/// Characters overlayfs's option parser treats specially.
fn check_overlay_path(what: &str, path: &Path) -> Result<(), SandboxError> {
    if path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
    {
        return Err(SandboxError::Spec(format!(
            "{what} {} holds `,`, `:` or `\\`, which overlayfs options cannot carry",
            path.display()
        )));
    }
    Ok(())
}

/// A directory or file to make visible inside.
struct Grant<'a> {
    path: &'a Path,
    how: GrantHow<'a>,
}

enum GrantHow<'a> {
    Ro,
    Rw,
    Overlay { upper: &'a Path, work: &'a Path },
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

impl Plan {
    /// Builds the plan for `spec` on a host described by `host`.
    ///
    /// The spec's paths must be absolute and canonical (the supervisor
    /// canonicalises them); each grant must exist.
    ///
    /// With `decoy_dir`, each hidden path is covered by a decoy from that
    /// host directory (named in [`Plan::decoys`], for the supervisor to
    /// create and watch); without it, by an empty tmpfs or file that only
    /// the init knows.
    pub fn build(
        spec: &SandboxSpec,
        host: &dyn HostQuery,
        decoy_dir: Option<&Path>,
    ) -> Result<Plan, SandboxError> {
        let mut ops = Vec::new();
        let mut decoys = Vec::new();
        let nr = in_newroot;

        // Base: a private tmpfs, pivot into it, host root under /oldroot.
        ops.push(Op::MakeRootPrivate);
        // As root, the agent runs as an unprivileged uid: a project owned
        // by root would be read-only to it, even through the overlay (its
        // permission checks use the lower file's owner). The supervisor
        // sends the project as an idmapped mount whose root-owned files
        // show as owned by the sandbox's root, i.e. the agent; it covers
        // the project's path here. (A read-only project needs none.)
        if host.supervisor_is_root()
            && !matches!(spec.project_mode, ProjectMode::ReadOnly)
            && host.owner_uid(&spec.project) == Some(0)
        {
            check_abs("project", &spec.project)?;
            ops.push(Op::AttachTree {
                target: spec.project.clone(),
            });
        }
        ops.push(Op::Tmpfs {
            target: BASE.into(),
            mode: 0o755,
            readonly: false,
        });
        ops.push(Op::Mkdir {
            path: under(Path::new(BASE), Path::new(OLDROOT)),
        });
        ops.push(Op::Mkdir {
            path: under(Path::new(BASE), Path::new(NEWROOT)),
        });
        ops.push(Op::Chdir { path: BASE.into() });
        ops.push(Op::PivotRoot {
            new_root: BASE.into(),
            put_old: under(Path::new(BASE), Path::new(OLDROOT)),
        });
        ops.push(Op::Chdir { path: "/".into() });
        ops.push(Op::Mkdir {
            path: "/decoy".into(),
        });
        ops.push(Op::CreateFile {
            path: DECOY_FILE.into(),
        });
        ops.push(Op::Tmpfs {
            target: NEWROOT.into(),
            mode: 0o755,
            readonly: false,
        });

        // The system, read-only.
        for dir in SYSTEM_DIRS {
            let p = Path::new(dir);
            match host.kind(p) {
                Some(Kind::Symlink(t)) => ops.push(Op::Symlink {
                    target: t,
                    link: nr(p),
                }),
                Some(Kind::Dir) => {
                    ops.push(Op::Mkdir { path: nr(p) });
                    ops.extend(ro_bind(in_oldroot(p), nr(p), true));
                }
                Some(Kind::File) | None => {}
            }
        }
        // Host secrets inside the system view.
        let mut masked_files: Vec<PathBuf> =
            MASKED_SYSTEM_FILES.iter().map(PathBuf::from).collect();
        for name in host.list(Path::new("/etc/ssh")) {
            if name.as_encoded_bytes().starts_with(b"ssh_host_") {
                masked_files.push(Path::new("/etc/ssh").join(name));
            }
        }
        for f in &masked_files {
            if host.kind(f) == Some(Kind::File) {
                ops.extend(mask_file(&nr(f)));
            }
        }
        for d in MASKED_SYSTEM_DIRS {
            if host.kind(Path::new(d)) == Some(Kind::Dir) {
                ops.push(Op::Tmpfs {
                    target: nr(Path::new(d)),
                    mode: 0o755,
                    readonly: true,
                });
            }
        }

        // /proc of the sandbox's pid namespace, with runc's masks.
        ops.push(Op::Mkdir {
            path: nr(Path::new("/proc")),
        });
        ops.push(Op::Proc {
            target: nr(Path::new("/proc")),
        });
        for f in PROC_MASKED_FILES {
            if host.kind(Path::new(f)) == Some(Kind::File) {
                ops.extend(mask_file(&nr(Path::new(f))));
            }
        }
        for d in PROC_MASKED_DIRS {
            if host.kind(Path::new(d)) == Some(Kind::Dir) {
                ops.push(Op::Tmpfs {
                    target: nr(Path::new(d)),
                    mode: 0o555,
                    readonly: true,
                });
            }
        }
        for p in PROC_READONLY {
            if host.kind(Path::new(p)).is_some() {
                let t = nr(Path::new(p));
                ops.extend(ro_bind(t.clone(), t, true));
            }
        }

        // A minimal /dev.
        let dev = nr(Path::new("/dev"));
        ops.push(Op::Mkdir { path: dev.clone() });
        ops.push(Op::Tmpfs {
            target: dev.clone(),
            mode: 0o755,
            readonly: false,
        });
        for d in DEVICES {
            let host_dev = Path::new("/dev").join(d);
            if host.kind(&host_dev) == Some(Kind::File) {
                let t = dev.join(d);
                ops.push(Op::CreateFile { path: t.clone() });
                // The bind keeps the flags of the host's /dev mount (not
                // nodev, or the node would not work); there is nothing to
                // set on it.
                ops.push(Op::Bind {
                    source: in_oldroot(&host_dev),
                    target: t,
                    recursive: false,
                });
            }
        }
        ops.push(Op::Mkdir {
            path: dev.join("pts"),
        });
        ops.push(Op::Devpts {
            target: dev.join("pts"),
        });
        ops.push(Op::Symlink {
            target: "pts/ptmx".into(),
            link: dev.join("ptmx"),
        });
        ops.push(Op::Symlink {
            target: "/proc/self/fd".into(),
            link: dev.join("fd"),
        });
        for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
            ops.push(Op::Symlink {
                target: format!("/proc/self/fd/{i}").into(),
                link: dev.join(name),
            });
        }
        ops.push(Op::Mkdir {
            path: dev.join("shm"),
        });
        ops.push(Op::Tmpfs {
            target: dev.join("shm"),
            mode: 0o1777,
            readonly: false,
        });

        // Private /tmp, /run, /var/tmp: no host unix socket is reachable.
        for d in ["/tmp", "/run", "/var/tmp"] {
            ops.push(Op::Mkdir {
                path: nr(Path::new(d)),
            });
            ops.push(Op::Tmpfs {
                target: nr(Path::new(d)),
                mode: 0o1777,
                readonly: false,
            });
        }
        ops.push(Op::Symlink {
            target: "../run".into(),
            link: nr(Path::new("/var/run")),
        });

        // Home: an empty tmpfs, made read-only once the grants are in.
        check_abs("home", &spec.home)?;
        let home = nr(&spec.home);
        ops.push(Op::Mkdir { path: home.clone() });
        ops.push(Op::Tmpfs {
            target: home.clone(),
            mode: 0o755,
            readonly: false,
        });

        // Grants: the project and the extra paths, parents first.
        check_abs("project", &spec.project)?;
        let mut grants: Vec<Grant<'_>> = Vec::new();
        grants.push(Grant {
            path: &spec.project,
            how: match &spec.project_mode {
                ProjectMode::ReadOnly => GrantHow::Ro,
                ProjectMode::ReadWrite => GrantHow::Rw,
                ProjectMode::Overlay { upper, work } => {
                    check_abs("overlay upper dir", upper)?;
                    check_abs("overlay work dir", work)?;
                    check_overlay_path("project", &spec.project)?;
                    check_overlay_path("overlay upper dir", upper)?;
                    check_overlay_path("overlay work dir", work)?;
                    GrantHow::Overlay { upper, work }
                }
            },
        });
        for p in &spec.ro_paths {
            check_abs("read-only path", p)?;
            grants.push(Grant {
                path: p,
                how: GrantHow::Ro,
            });
        }
        for p in &spec.rw_paths {
            check_abs("read-write path", p)?;
            grants.push(Grant {
                path: p,
                how: GrantHow::Rw,
            });
        }
        grants.sort_by_key(|g| depth(g.path));
        for g in &grants {
            let kind = host.kind(g.path).ok_or_else(|| {
                SandboxError::Spec(format!("granted path {} does not exist", g.path.display()))
            })?;
            let t = nr(g.path);
            match kind {
                Kind::Dir => ops.push(Op::Mkdir { path: t.clone() }),
                Kind::File => {
                    if let Some(parent) = t.parent() {
                        ops.push(Op::Mkdir {
                            path: parent.to_path_buf(),
                        });
                    }
                    ops.push(Op::CreateFile { path: t.clone() });
                }
                Kind::Symlink(_) => {
                    return Err(SandboxError::Spec(format!(
                        "granted path {} is a symlink; pass its canonical path",
                        g.path.display()
                    )));
                }
            }
            match g.how {
                GrantHow::Ro => {
                    ops.extend(ro_bind(in_oldroot(g.path), t, true));
                }
                GrantHow::Rw => {
                    ops.push(Op::Bind {
                        source: in_oldroot(g.path),
                        target: t.clone(),
                        recursive: true,
                    });
                    ops.push(Op::SetAttr {
                        target: t,
                        recursive: true,
                        readonly: false,
                        nosuid_nodev: true,
                    });
                }
                GrantHow::Overlay { upper, work } => {
                    ops.push(Op::Overlay {
                        lower: in_oldroot(g.path),
                        upper: in_oldroot(upper),
                        work: in_oldroot(work),
                        target: t.clone(),
                    });
                    ops.push(Op::SetAttr {
                        target: t,
                        recursive: false,
                        readonly: false,
                        nosuid_nodev: true,
                    });
                }
            }
        }

        // Injected files (sanitised views, e.g. .git/config, ~/.gitconfig,
        // the CA bundle): read-only binds from the supervisor's directory.
        let mut injected = Vec::new();
        let mut order: Vec<usize> = (0..spec.injected.len()).collect();
        order.sort_by_key(|&i| spec.injected.get(i).map_or(0, |f| depth(&f.path)));
        for i in order {
            let Some(file) = spec.injected.get(i) else {
                continue;
            };
            let p = &file.path;
            check_abs("injected file", p)?;
            let Some(dd) = decoy_dir else {
                return Err(SandboxError::Spec(
                    "injected files need the supervisor's directory".to_owned(),
                ));
            };
            let under_grant = grants.iter().any(|g| p.starts_with(g.path));
            let under_system = SYSTEM_DIRS.iter().any(|d| p.starts_with(d));
            let t = nr(p);
            let on_home_tmpfs = p.starts_with(&spec.home) && !under_grant;
            match host.kind(p) {
                // On the host or not, a path on the private home tmpfs has
                // no mount point inside until one is made.
                Some(Kind::File) | None if on_home_tmpfs => {
                    // A new mount point on the private home tmpfs.
                    if let Some(parent) = t.parent() {
                        ops.push(Op::Mkdir {
                            path: parent.to_path_buf(),
                        });
                    }
                    ops.push(Op::CreateFile { path: t.clone() });
                }
                Some(Kind::File) => {}
                None if under_grant || under_system => {
                    return Err(SandboxError::Spec(format!(
                        "injected file {} does not exist; creating its mount point would write the real tree or the overlay",
                        p.display()
                    )));
                }
                None => continue,
                Some(_) => {
                    return Err(SandboxError::Spec(format!(
                        "injected file {} is a directory or a symlink on the host",
                        p.display()
                    )));
                }
            }
            let source = dd.join(format!("i{i}"));
            ops.extend(ro_bind(in_oldroot(&source), t, false));
            injected.push((source, i));
        }

        // Hidden paths: an empty decoy where the path is visible inside.
        let visible_roots: Vec<&Path> = std::iter::once(spec.home.as_path())
            .chain(grants.iter().map(|g| g.path))
            .chain(SYSTEM_DIRS.iter().map(Path::new))
            .collect();
        let mut hidden = spec.hidden.clone();
        hidden.sort_by_key(|p| depth(p));
        for h in &hidden {
            check_abs("hidden path", h)?;
            if !visible_roots.iter().any(|r| h.starts_with(r))
                || spec.injected.iter().any(|f| &f.path == h)
            {
                continue;
            }
            let t = nr(h);
            let n = decoys.len();
            match (host.kind(h), decoy_dir) {
                (Some(Kind::Dir), None) => {
                    ops.push(Op::Mkdir { path: t.clone() });
                    ops.push(Op::Tmpfs {
                        target: t,
                        mode: 0o755,
                        readonly: true,
                    });
                }
                (Some(Kind::Dir), Some(dd)) => {
                    let source = dd.join(format!("d{n}"));
                    ops.push(Op::Mkdir { path: t.clone() });
                    ops.extend(ro_bind(in_oldroot(&source), t, false));
                    decoys.push((source, h.clone(), true));
                }
                (Some(Kind::File), dd) => {
                    if let Some(parent) = t.parent() {
                        ops.push(Op::Mkdir {
                            path: parent.to_path_buf(),
                        });
                    }
                    ops.push(Op::CreateFile { path: t.clone() });
                    match dd {
                        None => ops.extend(mask_file(&t)),
                        Some(dd) => {
                            let source = dd.join(format!("f{n}"));
                            ops.extend(ro_bind(in_oldroot(&source), t, false));
                            decoys.push((source, h.clone(), false));
                        }
                    }
                }
                // A symlink is not followed: it would point the decoy at
                // a path of the caller's choosing. Absent: nothing to hide.
                (Some(Kind::Symlink(_)) | None, _) => {}
            }
        }

        // Seal: home and the root tmpfs read-only.
        ops.push(Op::SetAttr {
            target: home,
            recursive: false,
            readonly: true,
            nosuid_nodev: true,
        });
        ops.push(Op::SetAttr {
            target: NEWROOT.into(),
            recursive: false,
            readonly: true,
            nosuid_nodev: true,
        });

        // Make /newroot the root; the old root (the base tmpfs, and the
        // host's root under /oldroot) ends up stacked on it, and one lazy
        // detach removes the whole old tree. (bubblewrap detaches
        // /oldroot first and the base after: each detach waits for an RCU
        // grace period, 0.3-4 ms here, so one detach, not two.)
        ops.push(Op::Chdir {
            path: NEWROOT.into(),
        });
        ops.push(Op::PivotRoot {
            new_root: ".".into(),
            put_old: ".".into(),
        });
        ops.push(Op::Detach { target: ".".into() });
        ops.push(Op::Chdir { path: "/".into() });
        Ok(Plan {
            ops,
            decoys,
            injected,
        })
    }

    /// Applies the plan. The error names the step.
    pub fn apply(&self, sys: &dyn Syscalls) -> Result<(), SandboxError> {
        self.apply_with_tree(sys, None)
    }

    /// Whether the plan attaches a mount tree from the supervisor
    /// ([`Op::AttachTree`]).
    pub fn wants_tree(&self) -> bool {
        self.ops.iter().any(|o| matches!(o, Op::AttachTree { .. }))
    }

    /// Applies the plan with the tree the supervisor sent for
    /// [`Op::AttachTree`]. The error names the step.
    pub fn apply_with_tree(
        &self,
        sys: &dyn Syscalls,
        tree: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), SandboxError> {
        self.apply_after(sys, tree, false)
    }

    /// [`Plan::apply_with_tree`], without its first step when
    /// `root_private` says [`Plan::make_root_private`] was done already.
    pub(crate) fn apply_after(
        &self,
        sys: &dyn Syscalls,
        tree: Option<std::os::fd::BorrowedFd<'_>>,
        root_private: bool,
    ) -> Result<(), SandboxError> {
        for op in &self.ops {
            if root_private && matches!(op, Op::MakeRootPrivate) {
                continue;
            }
            apply_op(op, sys, tree).map_err(|e| SandboxError::Setup {
                step: describe(op),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The first step of every plan, which needs nothing of the spec: `/`
    /// made rprivate (it walks every mount the host has). An init cloned
    /// ahead takes it while it waits for its config.
    pub(crate) fn make_root_private(sys: &dyn Syscalls) -> io::Result<()> {
        apply_op(&Op::MakeRootPrivate, sys, None)
    }
}

fn mask_file(target: &Path) -> [Op; 2] {
    ro_bind(DECOY_FILE.into(), target.to_path_buf(), false)
}

/// A bind mount made read-only, nosuid and nodev: every view the agent may
/// read but not change.
fn ro_bind(source: PathBuf, target: PathBuf, recursive: bool) -> [Op; 2] {
    [
        Op::Bind {
            source,
            target: target.clone(),
            recursive,
        },
        Op::SetAttr {
            target,
            recursive,
            readonly: true,
            nosuid_nodev: true,
        },
    ]
}

/// A one-line description of a step, for errors.
pub fn describe(op: &Op) -> String {
    match op {
        Op::MakeRootPrivate => "make / rprivate".to_owned(),
        Op::AttachTree { target } => {
            format!("attach the idmapped project on {}", target.display())
        }
        Op::Tmpfs { target, .. } => format!("mount tmpfs on {}", target.display()),
        Op::Mkdir { path } => format!("create directory {}", path.display()),
        Op::CreateFile { path } => format!("create mount point {}", path.display()),
        Op::Symlink { target, link } => {
            format!("create symlink {} -> {}", link.display(), target.display())
        }
        Op::Bind { source, target, .. } => {
            format!("bind {} on {}", source.display(), target.display())
        }
        Op::SetAttr { target, .. } => format!("set mount attributes of {}", target.display()),
        Op::Overlay { lower, target, .. } => {
            format!(
                "mount overlay of {} on {}",
                lower.display(),
                target.display()
            )
        }
        Op::Proc { target } => format!("mount proc on {}", target.display()),
        Op::Devpts { target } => format!("mount devpts on {}", target.display()),
        Op::Chdir { path } => format!("chdir to {}", path.display()),
        Op::PivotRoot { new_root, .. } => format!("pivot_root into {}", new_root.display()),
        Op::Detach { target } => format!("detach {}", target.display()),
    }
}

fn apply_op(
    op: &Op,
    sys: &dyn Syscalls,
    tree: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<()> {
    match op {
        Op::MakeRootPrivate => sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        ),
        Op::Tmpfs {
            target,
            mode,
            readonly,
        } => {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if *readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            let data = format!("mode={mode:o}");
            sys.mount(
                Some(Path::new("tmpfs")),
                target,
                Some("tmpfs"),
                flags,
                Some(&data),
            )
        }
        Op::Mkdir { path } => sys.mkdir_all(path),
        Op::CreateFile { path } => sys.create_file(path),
        Op::Symlink { target, link } => sys.symlink(target, link),
        Op::Bind {
            source,
            target,
            recursive,
        } => {
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            sys.mount(Some(source), target, None, flags, None)
        }
        Op::SetAttr {
            target,
            recursive,
            readonly,
            nosuid_nodev,
        } => {
            let mut set = 0;
            if *readonly {
                set |= crate::sys::MOUNT_ATTR_RDONLY;
            }
            if *nosuid_nodev {
                set |= crate::sys::MOUNT_ATTR_NOSUID | crate::sys::MOUNT_ATTR_NODEV;
            }
            sys.mount_setattr(target, *recursive, set)
        }
        Op::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={},userxattr,volatile",
                lower.display(),
                upper.display(),
                work.display()
            );
            sys.mount(
                Some(Path::new("overlay")),
                target,
                Some("overlay"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            )
        }
        Op::Proc { target } => sys.mount(
            Some(Path::new("proc")),
            target,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        Op::Devpts { target } => sys.mount(
            Some(Path::new("devpts")),
            target,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        ),
        Op::Chdir { path } => sys.chdir(path),
        Op::PivotRoot { new_root, put_old } => sys.pivot_root(new_root, put_old),
        Op::Detach { target } => sys.umount_detach(target),
        Op::AttachTree { target } => match tree {
            Some(t) => sys.attach_tree(t, target),
            None => Err(io::Error::other("the supervisor sent no mount tree")),
        },
    }
}

/// The system calls a plan needs.
pub trait Syscalls {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// mount_setattr(2) setting `set` (MOUNT_ATTR_* bits).
    fn mount_setattr(&self, target: &Path, recursive: bool, set: u64) -> io::Result<()>;
    /// umount2(2) with MNT_DETACH.
    fn umount_detach(&self, target: &Path) -> io::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// `mkdir -p`.
    fn mkdir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates an empty file if none exists.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// move_mount(2) of the detached tree `tree` onto `target`.
    fn attach_tree(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        let _ = (tree, target);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscalls;

impl Syscalls for LinuxSyscalls {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        tracing::debug!(?source, ?target, ?fstype, ?flags, ?data, "mount");
        nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn mount_setattr(&self, target: &Path, recursive: bool, set: u64) -> io::Result<()> {
        tracing::debug!(?target, recursive, set, "mount_setattr");
        crate::sys::mount_setattr(target, recursive, set, 0)
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        tracing::debug!(?target, "umount2 MNT_DETACH");
        nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        tracing::debug!(?new_root, ?put_old, "pivot_root");
        nix::unistd::pivot_root(new_root, put_old).map_err(io::Error::from)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chdir(path).map_err(io::Error::from)
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir_all(path) {
            Ok(()) => Ok(()),
            // A read-only parent still holds an existing directory.
            Err(e) if path.is_dir() => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn attach_tree(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        tracing::debug!(?target, "move_mount");
        crate::sys::move_mount_tree(tree, target)
    }
}

/// Records the calls instead of making them, for unit tests.
#[derive(Debug, Default)]
pub struct RecordingSyscalls {
    calls: RefCell<Vec<String>>,
    /// A call whose description starts with this string fails with EPERM
    /// (fault injection).
    pub fail_on: Option<String>,
}

impl RecordingSyscalls {
    /// The calls made so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> io::Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|f| line.starts_with(f));
        self.calls.borrow_mut().push(line);
        if fail {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        } else {
            Ok(())
        }
    }
}

impl Syscalls for RecordingSyscalls {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {} {} {} {} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            format!("{flags:?}")
                .trim_start_matches("MsFlags(")
                .trim_end_matches(')'),
            data.unwrap_or("-")
        ))
    }

    fn mount_setattr(&self, target: &Path, recursive: bool, set: u64) -> io::Result<()> {
        self.record(format!(
            "setattr {} rec={recursive} set={set:#x}",
            target.display()
        ))
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        self.record(format!("detach {}", target.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        self.record(format!("mkdir {}", path.display()))
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.record(format!("touch {}", path.display()))
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} {}", link.display(), target.display()))
    }

    fn attach_tree(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        let _ = tree;
        self.record(format!("attach {}", target.display()))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::collections::BTreeMap;

    use pretty_assertions::assert_eq;

    use super::*;
    use crate::{Identity, SandboxSpec};

    /// A host made of a fixed set of paths.
    struct FakeHost(BTreeMap<PathBuf, Kind>);

    impl FakeHost {
        fn new() -> FakeHost {
            let mut m = BTreeMap::new();
            for d in [
                "/usr",
                "/etc",
                "/lib",
                "/etc/sudoers.d",
                "/etc/ssh",
                "/proc/sys",
                "/proc/acpi",
                "/home/u/proj",
                "/home/u/.aws",
                "/s/upper",
                "/s/work",
                "/opt/tool",
            ] {
                m.insert(PathBuf::from(d), Kind::Dir);
            }
            for f in [
                "/etc/shadow",
                "/etc/sudoers",
                "/etc/ssh/ssh_host_ed25519_key",
                "/etc/ssh/ssh_config",
                "/proc/kcore",
                "/dev/null",
                "/dev/tty",
                "/home/u/proj/.env",
                "/home/u/.gitconfig",
            ] {
                m.insert(PathBuf::from(f), Kind::File);
            }
            m.insert(PathBuf::from("/bin"), Kind::Symlink("usr/bin".into()));
            FakeHost(m)
        }
    }

    impl HostQuery for FakeHost {
        fn kind(&self, path: &Path) -> Option<Kind> {
            self.0.get(path).cloned()
        }
        fn list(&self, dir: &Path) -> Vec<OsString> {
            self.0
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(OsString::from))
                .collect()
        }
    }

    fn spec() -> SandboxSpec {
        let mut s = SandboxSpec::new(vec!["true".into()], "/home/u/proj".into(), "/home/u".into());
        s.identity = Identity {
            uid: 1000,
            gid: 1000,
            host_uid: 1000,
            host_gid: 1000,
        };
        s.project_mode = ProjectMode::Overlay {
            upper: "/s/upper".into(),
            work: "/s/work".into(),
        };
        s.ro_paths = vec!["/home/u/.gitconfig".into(), "/opt/tool".into()];
        s.hidden = vec![
            "/home/u/proj/.env".into(),
            "/home/u/.aws".into(),
            "/var/secret".into(),
        ];
        s
    }

    fn calls(spec: &SandboxSpec) -> Vec<String> {
        let plan = Plan::build(spec, &FakeHost::new(), None).unwrap();
        let rec = RecordingSyscalls::default();
        plan.apply(&rec).unwrap();
        rec.calls()
    }

    fn index(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
    }

    #[test]
    fn base_is_private_and_pivots_twice() {
        let c = calls(&spec());
        assert_eq!(c[0], "mount - / - MS_REC | MS_PRIVATE -");
        assert!(c[1].starts_with("mount tmpfs /tmp tmpfs"));
        let first = index(&c, "pivot_root /tmp /tmp/oldroot");
        let second = index(&c, "pivot_root . .");
        assert!(first < second);
        // One detach, after the second pivot: it takes the base tmpfs and
        // the host's root under it (the whole old tree) at once.
        assert_eq!(c.iter().filter(|l| l.starts_with("detach")).count(), 1);
        assert_eq!(&c[c.len() - 3..], ["pivot_root . .", "detach .", "chdir /"]);
    }

    #[test]
    fn system_is_read_only_and_secrets_masked() {
        let c = calls(&spec());
        for d in ["/usr", "/etc", "/lib"] {
            let bind = index(
                &c,
                &format!("mount /oldroot{d} /newroot{d} - MS_BIND | MS_REC"),
            );
            let ro = index(&c, &format!("setattr /newroot{d} rec=true set=0x7"));
            assert!(bind < ro);
        }
        assert!(c.contains(&"symlink /newroot/bin usr/bin".to_owned()));
        for f in [
            "/etc/shadow",
            "/etc/sudoers",
            "/etc/ssh/ssh_host_ed25519_key",
            "/proc/kcore",
        ] {
            index(&c, &format!("mount /decoy/empty /newroot{f} - MS_BIND"));
        }
        assert!(
            !c.iter()
                .any(|x| x.contains("ssh_config") && x.contains("decoy")),
            "only host keys are masked"
        );
        index(&c, "mount tmpfs /newroot/etc/sudoers.d tmpfs MS_RDONLY");
        index(&c, "mount tmpfs /newroot/proc/acpi tmpfs MS_RDONLY");
        index(
            &c,
            "mount /newroot/proc/sys /newroot/proc/sys - MS_BIND | MS_REC",
        );
        index(&c, "setattr /newroot/proc/sys rec=true set=0x7");
    }

    #[test]
    fn project_overlay_after_home_and_hidden_after_grants() {
        let c = calls(&spec());
        let home = index(&c, "mount tmpfs /newroot/home/u tmpfs");
        let overlay = index(
            &c,
            "mount overlay /newroot/home/u/proj overlay MS_NOSUID | MS_NODEV lowerdir=/oldroot/home/u/proj,upperdir=/oldroot/s/upper,workdir=/oldroot/s/work,userxattr,volatile",
        );
        let env = index(&c, "mount /decoy/empty /newroot/home/u/proj/.env - MS_BIND");
        let aws = index(&c, "mount tmpfs /newroot/home/u/.aws tmpfs MS_RDONLY");
        let gitconfig = index(
            &c,
            "mount /oldroot/home/u/.gitconfig /newroot/home/u/.gitconfig - MS_BIND | MS_REC",
        );
        let seal = index(&c, "setattr /newroot/home/u rec=false set=0x7");
        assert!(home < overlay && overlay < env && gitconfig < env && env < seal && aws < seal);
        // A hidden path outside the view is simply absent.
        assert!(!c.iter().any(|x| x.contains("/var/secret")));
        index(&c, "touch /newroot/home/u/.gitconfig");
    }

    #[test]
    fn private_tmp_run_dev() {
        let c = calls(&spec());
        for d in ["/tmp", "/run", "/var/tmp", "/dev/shm"] {
            index(&c, &format!("mount tmpfs /newroot{d} tmpfs"));
        }
        index(
            &c,
            "mount devpts /newroot/dev/pts devpts MS_NOSUID | MS_NOEXEC newinstance,ptmxmode=0666",
        );
        index(&c, "mount /oldroot/dev/null /newroot/dev/null - MS_BIND");
        index(&c, "symlink /newroot/dev/ptmx pts/ptmx");
        index(&c, "mount proc /newroot/proc proc");
    }

    #[test]
    fn read_only_and_read_write_projects_bind() {
        let mut s = spec();
        s.project_mode = ProjectMode::ReadOnly;
        let c = calls(&s);
        index(
            &c,
            "mount /oldroot/home/u/proj /newroot/home/u/proj - MS_BIND | MS_REC",
        );
        index(&c, "setattr /newroot/home/u/proj rec=true set=0x7");
        s.project_mode = ProjectMode::ReadWrite;
        let c = calls(&s);
        index(&c, "setattr /newroot/home/u/proj rec=true set=0x6");
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut s = spec();
        s.project = "relative/proj".into();
        assert!(matches!(
            Plan::build(&s, &FakeHost::new(), None),
            Err(SandboxError::Spec(_))
        ));
        let mut s = spec();
        s.project_mode = ProjectMode::Overlay {
            upper: "/s/up,per".into(),
            work: "/s/work".into(),
        };
        assert!(matches!(
            Plan::build(&s, &FakeHost::new(), None),
            Err(SandboxError::Spec(_))
        ));
        let mut s = spec();
        s.ro_paths.push("/does/not/exist".into());
        assert!(matches!(
            Plan::build(&s, &FakeHost::new(), None),
            Err(SandboxError::Spec(_))
        ));
        let mut s = spec();
        s.ro_paths.push("/home/u/../../etc".into());
        assert!(matches!(
            Plan::build(&s, &FakeHost::new(), None),
            Err(SandboxError::Spec(_))
        ));
    }

    /// The host of a root supervisor whose project belongs to `owner`.
    struct RootHost {
        inner: FakeHost,
        owner: u32,
    }

    impl HostQuery for RootHost {
        fn kind(&self, path: &Path) -> Option<Kind> {
            self.inner.kind(path)
        }
        fn list(&self, dir: &Path) -> Vec<OsString> {
            self.inner.list(dir)
        }
        fn owner_uid(&self, _path: &Path) -> Option<u32> {
            Some(self.owner)
        }
        fn supervisor_is_root(&self) -> bool {
            true
        }
    }

    // As root, a root-owned project is attached as the supervisor's
    // idmapped tree over its own path, right after / is made private
    // (never propagating to the host) and before the first pivot_root, so
    // the overlay's lower (or the rw bind) is that tree; not for a
    // read-only project, another owner, or an unprivileged supervisor.
    #[test]
    fn a_root_owned_project_is_attached_idmapped_as_root() {
        let s = spec();
        let plan = Plan::build(
            &s,
            &RootHost {
                inner: FakeHost::new(),
                owner: 0,
            },
            None,
        )
        .unwrap();
        assert!(plan.wants_tree());
        let rec = RecordingSyscalls::default();
        // Without the tree the step fails, naming it.
        let e = plan.apply(&rec).unwrap_err().to_string();
        assert!(
            e.contains("attach the idmapped project on /home/u/proj"),
            "{e}"
        );
        let c = calls_with(&plan);
        assert_eq!(c[0], "mount - / - MS_REC | MS_PRIVATE -");
        assert_eq!(c[1], "attach /home/u/proj");
        let lower = index(&c, "mount overlay /newroot/home/u/proj");
        assert!(c[lower].contains("lowerdir=/oldroot/home/u/proj,"));
        assert!(index(&c, "pivot_root /tmp /tmp/oldroot") > 1);

        let mut rw = spec();
        rw.project_mode = ProjectMode::ReadWrite;
        let host = |owner| RootHost {
            inner: FakeHost::new(),
            owner,
        };
        assert!(Plan::build(&rw, &host(0), None).unwrap().wants_tree());
        let mut ro = spec();
        ro.project_mode = ProjectMode::ReadOnly;
        assert!(!Plan::build(&ro, &host(0), None).unwrap().wants_tree());
        assert!(!Plan::build(&s, &host(1000), None).unwrap().wants_tree());
        assert!(
            !Plan::build(&s, &FakeHost::new(), None)
                .unwrap()
                .wants_tree()
        );
    }

    /// The calls of `plan` applied with a stand-in tree descriptor.
    fn calls_with(plan: &Plan) -> Vec<String> {
        use std::os::fd::AsFd;
        let rec = RecordingSyscalls::default();
        let stand_in = std::fs::File::open("/dev/null").unwrap();
        plan.apply_with_tree(&rec, Some(stand_in.as_fd())).unwrap();
        rec.calls()
    }

    // Fail closed: a fault injected behind the syscall layer stops the
    // setup with an error naming the step, and nothing after it runs.
    #[test]
    fn injected_fault_stops_the_setup_naming_the_step() {
        let plan = Plan::build(&spec(), &FakeHost::new(), None).unwrap();
        let rec = RecordingSyscalls {
            fail_on: Some("mount overlay".to_owned()),
            ..Default::default()
        };
        let err = plan.apply(&rec).unwrap_err();
        let SandboxError::Setup { step, reason } = err else {
            panic!("wrong error")
        };
        assert_eq!(
            step,
            "mount overlay of /oldroot/home/u/proj on /newroot/home/u/proj"
        );
        assert!(reason.contains("not permitted"), "{reason}");
        assert!(
            rec.calls().last().unwrap().starts_with("mount overlay"),
            "nothing runs after the failed step"
        );
    }

    #[test]
    fn decoys_come_from_the_supervisor_directory() {
        let plan =
            Plan::build(&spec(), &FakeHost::new(), Some(Path::new("/dev/shm/bw-d"))).unwrap();
        assert_eq!(
            plan.decoys,
            vec![
                (
                    PathBuf::from("/dev/shm/bw-d/d0"),
                    PathBuf::from("/home/u/.aws"),
                    true
                ),
                (
                    PathBuf::from("/dev/shm/bw-d/f1"),
                    PathBuf::from("/home/u/proj/.env"),
                    false
                ),
            ]
        );
        let rec = RecordingSyscalls::default();
        plan.apply(&rec).unwrap();
        let c = rec.calls();
        index(
            &c,
            "mount /oldroot/dev/shm/bw-d/f1 /newroot/home/u/proj/.env - MS_BIND",
        );
        index(
            &c,
            "mount /oldroot/dev/shm/bw-d/d0 /newroot/home/u/.aws - MS_BIND",
        );
    }

    #[test]
    fn injected_files_bind_read_only_and_never_create_in_grants() {
        let mut s = spec();
        s.injected = vec![
            crate::InjectedFile {
                path: "/home/u/.gitconfig".into(),
                contents: b"x".to_vec(),
            },
            crate::InjectedFile {
                path: "/home/u/.config/new".into(),
                contents: b"y".to_vec(),
            },
        ];
        let dd = Path::new("/dev/shm/bw-d");
        let plan = Plan::build(&s, &FakeHost::new(), Some(dd)).unwrap();
        assert_eq!(plan.injected, vec![(dd.join("i0"), 0), (dd.join("i1"), 1)]);
        let rec = RecordingSyscalls::default();
        plan.apply(&rec).unwrap();
        let c = rec.calls();
        index(
            &c,
            "mount /oldroot/dev/shm/bw-d/i0 /newroot/home/u/.gitconfig - MS_BIND",
        );
        index(&c, "touch /newroot/home/u/.config/new");
        index(&c, "setattr /newroot/home/u/.config/new rec=false set=0x7");
        // A missing file under the project would be created in the overlay.
        s.injected = vec![crate::InjectedFile {
            path: "/home/u/proj/.git/config".into(),
            contents: Vec::new(),
        }];
        assert!(matches!(
            Plan::build(&s, &FakeHost::new(), Some(dd)),
            Err(SandboxError::Spec(_))
        ));
    }

    #[test]
    fn plan_round_trips_as_json() {
        let plan = Plan::build(&spec(), &FakeHost::new(), None).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }
}
