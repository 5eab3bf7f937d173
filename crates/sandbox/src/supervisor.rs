//! The supervisor side of a run: outside the wall.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{BufReader, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::plan::{Plan, RealHost};
use crate::proto::{InitConfig, Msg, TtyConfig};
use crate::{
    ExitStatus, INIT_ARG, Layer, LayerReport, RunOutcome, SandboxError, SandboxSpec,
    SupervisorHooks,
};

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> SandboxError {
    let what = what.into();
    move |e| SandboxError::Io {
        what,
        source: e.into(),
    }
}

/// Canonical form of a path the spec names.
fn canonical(what: &'static str, p: &Path) -> Result<PathBuf, SandboxError> {
    std::fs::canonicalize(p).map_err(|source| SandboxError::Open {
        what,
        path: p.to_path_buf(),
        source,
    })
}

/// The spec with canonical paths (binds of `/oldroot/...` must not meet a
/// symlink, whose absolute target would resolve in the wrong root).
fn canonical_spec(spec: &SandboxSpec) -> Result<SandboxSpec, SandboxError> {
    if spec.argv.is_empty() {
        return Err(SandboxError::Spec("the command is empty".to_owned()));
    }
    if spec.identity.host_uid == 0 || spec.identity.host_gid == 0 {
        return Err(SandboxError::Spec(
            "the agent must not run as host uid or gid 0".to_owned(),
        ));
    }
    let mut s = spec.clone();
    s.project = canonical("project", &spec.project)?;
    if s.cwd_inside == spec.project {
        s.cwd_inside = s.project.clone();
    }
    s.project_mode = match &spec.project_mode {
        crate::ProjectMode::Overlay { upper, work } => crate::ProjectMode::Overlay {
            upper: canonical("overlay upper dir", upper)?,
            work: canonical("overlay work dir", work)?,
        },
        other => other.clone(),
    };
    s.ro_paths = spec
        .ro_paths
        .iter()
        .map(|p| canonical("read-only path", p))
        .collect::<Result<_, _>>()?;
    s.rw_paths = spec
        .rw_paths
        .iter()
        .map(|p| canonical("read-write path", p))
        .collect::<Result<_, _>>()?;
    // The home need not exist (a CI user may have none): keep it as given.
    s.home = std::fs::canonicalize(&spec.home).unwrap_or_else(|_| spec.home.clone());
    // A hidden path is hidden where it really is.
    s.hidden = spec
        .hidden
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    for f in &mut s.injected {
        if let Ok(c) = std::fs::canonicalize(&f.path) {
            f.path = c;
        }
    }
    // Host unix sockets inside a granted tree: a read-only bind does not
    // stop connect(), and Landlock does not mediate it. Each one the host
    // lists is covered by a decoy file.
    let granted: Vec<PathBuf> = std::iter::once(s.project.clone())
        .chain(s.ro_paths.iter().cloned())
        .chain(s.rw_paths.iter().cloned())
        .collect();
    for sock in host_unix_socket_paths() {
        if granted.iter().any(|g| sock.starts_with(g)) && !s.hidden.contains(&sock) {
            s.hidden.push(sock);
        }
    }
    Ok(s)
}

/// The path sockets the host lists in `/proc/net/unix` (this network
/// namespace: the supervisor's).
pub(crate) fn host_unix_socket_paths() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Kills and reaps the init if the run stops early.
struct InitGuard {
    pid: Option<Pid>,
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// The supervisor thread's stay in the sandbox's cgroups, for the clone.
struct ThreadInCgroups<'c> {
    cgroups: &'c crate::limits::Cgroups,
    entered: bool,
}

impl<'c> ThreadInCgroups<'c> {
    fn enter(cgroups: &'c crate::limits::Cgroups) -> ThreadInCgroups<'c> {
        let entered = cgroups.enter_thread();
        ThreadInCgroups { cgroups, entered }
    }
}

impl Drop for ThreadInCgroups<'_> {
    fn drop(&mut self) {
        if self.entered {
            self.cgroups.leave_thread();
        }
    }
}

/// Restores SIGINT/SIGQUIT after the run.
struct IgnoreInterrupts {
    saved: Vec<(Signal, nix::sys::signal::SigAction)>,
}

impl IgnoreInterrupts {
    /// Like system(3): while the sandbox runs, ^C and ^\ from the terminal
    /// are for the command inside (its init forwards them), not for the
    /// supervisor. SIGTERM still ends the supervisor, and the sandbox with
    /// it.
    fn new() -> IgnoreInterrupts {
        let ignore = nix::sys::signal::SigAction::new(
            SigHandler::SigIgn,
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        let mut saved = Vec::new();
        for s in [Signal::SIGINT, Signal::SIGQUIT] {
            if let Ok(old) = crate::sys::sigaction_ignore(s, &ignore) {
                saved.push((s, old));
            }
        }
        IgnoreInterrupts { saved }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for (s, old) in &self.saved {
            let _ = crate::sys::sigaction_restore(*s, old);
        }
    }
}

/// Runs `spec.argv` inside the wall and waits for it.
///
/// Blocks the calling thread until the command and everything it started
/// inside have ended. The sandbox's parent-death signal follows the
/// *thread* that created it, so this thread must live for the whole run:
/// call `run` from a thread that does nothing else (not from a pooled
/// async worker that may be retired). If the process dies, however it
/// dies, the sandbox dies with it.
///
/// The binary that calls `run` must dispatch [`crate::init_if_requested`]
/// at the start of `main`: the sandbox init is this same executable.
pub fn run(
    spec: &SandboxSpec,
    hooks: &mut dyn SupervisorHooks,
) -> Result<RunOutcome, SandboxError> {
    let given = spec;
    // Limits that the supervisor enforces (cgroups), set up beside the
    // view's preparation.
    let name = format!("blastwall-{}-{}", std::process::id(), unique());
    let (view, limits) = std::thread::scope(|scope| {
        let limits = scope.spawn(|| crate::limits::setup(&given.limits, &name));
        let view = (|| {
            let spec = canonical_spec(given)?;
            // Decoys for the hidden paths, on a directory the supervisor
            // owns (a tmpfs where there is one) and watches. It is made
            // and filled once the init has its config to read (below).
            let decoy_dir = DecoyDir::reserve();
            let plan = Plan::build(&spec, &RealHost, Some(decoy_dir.path()))?;
            Ok::<_, SandboxError>((spec, decoy_dir, plan))
        })();
        (view, limits.join())
    });
    let limits = limits.map_err(|_| SandboxError::Spec("the cgroup setup panicked".to_owned()))?;
    let cgroups = CgroupGuard(limits.cgroups);
    let (spec, decoy_dir, plan) = view?;
    let decoy_pairs: Vec<(PathBuf, PathBuf)> = plan
        .decoys
        .iter()
        .map(|(s, h, _)| (s.clone(), h.clone()))
        .collect();
    let accepted = |l: Layer| spec.accept_missing.contains(&l);
    let mut missing = Vec::new();

    if let Some((layer, reason)) = limits.missing {
        if !accepted(layer) {
            return Err(SandboxError::Layer { layer, reason });
        }
        missing.push((layer, reason));
    }
    // The overlay's size: watched by the supervisor.
    let mut limits_report = limits.report.clone();
    let overlay_watch = match (&spec.project_mode, spec.limits.overlay_bytes) {
        (crate::ProjectMode::Overlay { upper, .. }, Some(max)) => {
            limits_report.overlay_bytes = Some(crate::LimitInForce {
                value: max,
                mechanism: crate::LimitMechanism::SupervisorWatch,
            });
            Some((upper.clone(), max))
        }
        _ => None,
    };

    // Pipes: start/lifeline (supervisor writes), report (init writes).
    let (sync_read, sync_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(nix_err("cannot create the start pipe"))?;
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(nix_err("cannot create the report pipe"))?;
    let tty_pair = if spec.tty
        || !spec.loopback_listeners.is_empty()
        || !spec.loopback_udp.is_empty()
        || plan.wants_tree()
    {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(nix_err("cannot create the pty socket"))?;
        Some((a, b))
    } else {
        None
    };
    let (rows, cols) = crate::tty::host_size();

    // The injected files are written to the decoy directory (below), and
    // the init binds them from there: their contents (a CA bundle is
    // 220 KB, twice that as hex) stay out of the config it reads and
    // parses.
    let mut init_spec = spec.clone();
    for f in &mut init_spec.injected {
        f.contents = Vec::new();
    }
    let wants_tree = plan.wants_tree();
    let injected_sources = plan.injected.clone();
    let decoys = plan.decoys.clone();
    // The decoys and the injected files, which the init binds in its plan.
    let fill_decoys = || {
        decoy_dir.make()?;
        decoy_dir.fill(&decoys)?;
        decoy_dir.inject(&spec, &injected_sources)
    };
    // The overlay is mounted volatile: clear (or refuse) what a run that
    // did not finish left, and note when this run starts. The init mounts
    // it as soon as it has its config (the agent starts at the start byte).
    // (Done once the init exists: a host that cannot make the namespaces
    // is told so first.)
    let prepare_overlay = || match &spec.project_mode {
        crate::ProjectMode::Overlay { upper, work } => crate::volatile::prepare(upper, work)
            .map(|since| Some((upper.clone(), work.clone(), since))),
        _ => Ok(None),
    };

    // The init cloned ahead at the start of `main`, if there is one (see
    // `crate::ahead`); otherwise it is cloned and executed below.
    let ahead = crate::ahead::take();
    // From here on an init exists: it is killed and reaped however the run
    // stops.
    let mut guard = InitGuard {
        pid: ahead.as_ref().map(|a| a.pid),
    };
    // An init cloned ahead moves itself into v1 cgroups (no RCU grace
    // period, see `Cgroups::open_tasks`); on v2 it is attached by pid.
    let tasks = if ahead.is_some() {
        cgroups.0.open_tasks()
    } else {
        None
    };
    let cfg = InitConfig {
        spec: init_spec,
        plan,
        report_fd: report_write.as_raw_fd(),
        lifeline_fd: sync_read.as_raw_fd(),
        limits: limits_report,
        nproc_rlimit: limits.nproc_rlimit,
        tty: spec.tty.then_some(TtyConfig { rows, cols }),
        fd_socket: tty_pair.as_ref().map(|(_, inside)| inside.as_raw_fd()),
        unshare_cgroup: ahead.is_some(),
        cgroup_tasks: tasks.as_ref().map_or(0, Vec::len),
        root_private: false,
        network_ready: false,
    };
    let config = config_memfd(&cfg)?;

    let mut flags = crate::ahead::flags();
    let attach_to_cgroups = |pid: Pid| {
        cgroups
            .0
            .attach(pid.as_raw())
            .map_err(|reason| SandboxError::Layer {
                layer: Layer::Cgroup,
                reason,
            })
    };
    let (pid, mut sync_file, ready_read, tty_sock, overlay_dirs) = match ahead {
        Some(ahead) => {
            let pid = ahead.pid;
            let send = |tag: &[u8; 3], fd: std::os::fd::RawFd| {
                crate::tty::send_fd(&ahead.sock, tag, fd)
                    .map_err(io_err("cannot hand the sandbox init its config"))
            };
            // What it reads and parses first, while its ids are written.
            send(b"cfg", config.as_raw_fd())?;
            send(b"rep", report_write.as_raw_fd())?;
            send(b"lif", sync_read.as_raw_fd())?;
            if let Some((_, inside)) = &tty_pair {
                send(b"tty", inside.as_raw_fd())?;
            }
            fill_decoys()?;
            // It said it is ready: dumpable, when we are unprivileged.
            write_id_maps(pid, &spec.identity)?;
            // The agent dies first when the host runs out of memory. Its
            // /proc files belong to the host's root once it is not dumpable
            // (its memory was made outside), so this is written from here.
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), "1000")
                .map_err(io_err("cannot write the sandbox init's oom_score_adj"))?;
            // In the run's cgroups before it goes on: it roots a cgroup
            // namespace of its own where it is then.
            if tasks.is_none() {
                attach_to_cgroups(pid)?;
            }
            for t in tasks.iter().flatten() {
                send(b"cgt", t.as_raw_fd())?;
            }
            let overlay_dirs = prepare_overlay()?;
            // Its ids are written, it is in its cgroups (or has their
            // files), the overlay's work directory is ready: it may go on.
            crate::ahead::send(&ahead.sock, b'G', 0).map_err(|e| {
                inner_failure(&report_read).unwrap_or(SandboxError::Io {
                    what: "cannot start the sandbox init".to_owned(),
                    source: e.into(),
                })
            })?;
            drop(tasks);
            drop(report_write);
            drop(config);
            let tty_sock = tty_pair.map(|(outside, inside)| {
                drop(inside);
                outside
            });
            (pid, File::from(sync_write), None, tty_sock, overlay_dirs)
        }
        None => {
            fill_decoys()?;
            let mut keep = vec![
                config.as_raw_fd(),
                report_write.as_raw_fd(),
                sync_read.as_raw_fd(),
            ];
            if let Some((_, inside)) = &tty_pair {
                keep.push(inside.as_raw_fd());
            }
            let exe = CString::new("/proc/self/exe")
                .map_err(|_| SandboxError::Spec("exe path".to_owned()))?;
            let argv = vec![
                CString::new("blastwall-init")
                    .map_err(|_| SandboxError::Spec("argv".to_owned()))?,
                CString::new(INIT_ARG).map_err(|_| SandboxError::Spec("argv".to_owned()))?,
                CString::new(config.as_raw_fd().to_string())
                    .map_err(|_| SandboxError::Spec("argv".to_owned()))?,
            ];
            let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(nix_err("cannot create the ready pipe"))?;
            let prepared = crate::sys::PreparedExec::new(
                exe,
                argv,
                Vec::new(),
                sync_read.as_raw_fd(),
                sync_write.as_raw_fd(),
                keep,
                nix::unistd::geteuid().is_root(),
                ready_write.as_raw_fd(),
            );

            // Step 2: the namespaces.
            // The child starts in its cgroups: this thread enters them for
            // the clone and leaves right after (see `Cgroups::enter_thread`).
            let in_cgroups = ThreadInCgroups::enter(&cgroups.0);
            let pid = match crate::sys::clone_into_namespaces(flags.bits(), &prepared) {
                Ok(pid) => pid,
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && accepted(Layer::CgroupNamespace) =>
                {
                    flags.remove(CloneFlags::CLONE_NEWCGROUP);
                    missing.push((
                        Layer::CgroupNamespace,
                        "the kernel refused CLONE_NEWCGROUP".to_owned(),
                    ));
                    crate::sys::clone_into_namespaces(flags.bits(), &prepared)
                        .map_err(|source| SandboxError::Namespaces { source })?
                }
                Err(source) => return Err(SandboxError::Namespaces { source }),
            };
            let entered = in_cgroups.entered;
            drop(in_cgroups);
            guard.pid = Some(pid);
            drop(prepared);
            drop(report_write);
            drop(config);
            let tty_sock = tty_pair.map(|(outside, inside)| {
                drop(inside);
                outside
            });

            drop(ready_write);
            // An unprivileged supervisor may write the child's id maps only
            // once the child made itself dumpable; root may write them at
            // once, while the child is still being scheduled. (The read end
            // stays open until the start byte: the child's ready byte must
            // not meet a closed pipe.)
            let ready_read = if nix::unistd::geteuid().is_root() {
                Some(ready_read)
            } else {
                wait_ready(ready_read)?;
                None
            };
            write_id_maps(pid, &spec.identity)?;
            let overlay_dirs = prepare_overlay()?;
            // First byte on the start pipe: the maps are written, the child
            // may become the namespace's root and execute the init, which
            // sets up the wall and then waits for the second byte before it
            // starts the agent. All of that overlaps what follows here.
            let mut sync_file = File::from(sync_write);
            sync_file
                .write_all(b"m")
                .map_err(io_err("cannot start the sandbox init"))?;
            if !entered {
                attach_to_cgroups(pid)?;
            }
            (pid, sync_file, ready_read, tty_sock, overlay_dirs)
        }
    };
    // The decoy watch (a fork of this process) starts while the init
    // executes; it is ready, or the run stops, before the start byte.
    let mut decoy_watch = if decoy_pairs.is_empty() {
        None
    } else {
        Some(crate::events::DecoyWatch::new(&decoy_pairs)?)
    };
    hooks
        .netns_ready(pid.as_raw())
        .map_err(SandboxError::Hook)?;

    // A root-owned project, as root: sent as an idmapped mount tree whose
    // owner is the sandbox's root (the agent). The init attaches it before
    // its first mount (`Op::AttachTree`).
    if wants_tree {
        let sock = tty_sock
            .as_ref()
            .ok_or_else(|| SandboxError::Spec("no fd socket".to_owned()))?;
        // (An init that failed its setup is gone: its report says why.)
        send_idmapped_project(pid, &spec, sock)
            .map_err(|e| inner_failure(&report_read).unwrap_or(e))?;
    }

    // The decoys are watched before anything inside can open one.
    if let Some(w) = &mut decoy_watch {
        w.wait_ready()?;
    }

    // What the caller fills in last (its preparation may have run beside
    // the sandbox's until now). Nothing of the agent's has run. The init
    // may have bound the injected files already: their contents are
    // written into the same files (the same inodes, `inject_late`), so the
    // binds show them.
    let late = hooks.before_start().map_err(SandboxError::Hook)?;
    decoy_dir.inject_late(given, &injected_sources, &late)?;

    // Start. The write end stays open until we return: it is the lifeline.
    // The init set up the wall while the session was prepared; if that
    // failed, it is gone, this write finds no reader, and its report below
    // says why.
    let _ = sync_file.write_all(b"g");
    drop(sync_read);
    drop(ready_read);

    // The loopback listeners arrive before the agent starts, or never
    // (setup failed: the socket closes and the reports say why).
    let expected = spec.loopback_listeners.len() + spec.loopback_udp.len();
    if let Some(sock) = &tty_sock
        && expected > 0
    {
        let mut listeners = Vec::new();
        let mut udp = Vec::new();
        for _ in 0..expected {
            match crate::tty::recv_fd(sock) {
                Ok(([b'l', hi, lo], fd)) => {
                    listeners.push((
                        u16::from_be_bytes([hi, lo]),
                        std::net::TcpListener::from(fd),
                    ));
                }
                Ok(([b'u', hi, lo], fd)) => {
                    udp.push((u16::from_be_bytes([hi, lo]), std::net::UdpSocket::from(fd)));
                }
                _ => break,
            }
        }
        if listeners.len() == spec.loopback_listeners.len() && udp.len() == spec.loopback_udp.len()
        {
            if !listeners.is_empty() {
                hooks
                    .loopback_listeners(listeners)
                    .map_err(SandboxError::Hook)?;
            }
            if !udp.is_empty() {
                hooks.loopback_udp(udp).map_err(SandboxError::Hook)?;
            }
        }
    }
    let tty_sock = if spec.tty { tty_sock } else { None };

    let _interrupts = IgnoreInterrupts::new();
    let mut reader = BufReader::new(File::from(report_read));
    let seen = crate::events::run_loop(
        &mut reader,
        crate::events::Watches {
            tty_sock,
            decoys: decoy_watch,
            overlay: overlay_watch,
            init: pid,
        },
        hooks,
    )?;

    // Make the overlay's changes durable. When the init reported the
    // command's end, it had killed and reaped everything inside: no write
    // is in flight, and the sync runs while the init's own exit (its
    // namespaces' teardown) goes on. Otherwise, after the init is gone.
    let durable = |dirs: &Option<(PathBuf, PathBuf, crate::volatile::Stamp)>| match dirs {
        Some((upper, work, since)) => crate::volatile::finish(upper, work, *since),
        None => Ok(()),
    };
    let synced_early = seen.exited.is_some();
    if synced_early && let Some((upper, _, since)) = &overlay_dirs {
        crate::volatile::sync(upper, *since)?;
    }
    if seen.failure.is_none() && seen.started.is_some() && seen.exited.is_some() {
        // The command's end is known (the init reported it once it had
        // killed and reaped everything inside, so an OOM kill is counted
        // by now) and the overlay is durable: the caller may record it
        // while the init's namespaces are torn down and the overlay's
        // marker is removed.
        let out = outcome(seen, cgroups.0.oom_killed(), flags, missing, &spec, None)?;
        hooks.ended(&out);
        // The init ends after the report pipe closes.
        let _ = nix::sys::wait::waitpid(pid, None);
        guard.pid = None;
        drop(sync_file);
        // The end is handed on already: a marker left behind is only noted
        // (the next mount of this overlay in the same boot removes it).
        if let Some((_, work, _)) = &overlay_dirs
            && let Err(e) = crate::volatile::remove_volatile_marker(work)
        {
            tracing::warn!("{e}");
        }
        return Ok(out);
    }
    if synced_early && let Some((_, work, _)) = &overlay_dirs {
        crate::volatile::remove_volatile_marker(work)?;
    }
    let wait =
        nix::sys::wait::waitpid(pid, None).map_err(nix_err("cannot wait for the sandbox init"))?;
    guard.pid = None;
    drop(sync_file);
    if !synced_early {
        durable(&overlay_dirs)?;
    }
    outcome(
        seen,
        cgroups.0.oom_killed(),
        flags,
        missing,
        &spec,
        Some(wait),
    )
}

/// The failure the init reported before it went, if it did: an init that
/// sets up the wall while the supervisor does its part may fail first, and
/// its reason is the one to give (waits up to 200 ms for its report).
fn inner_failure(report: &OwnedFd) -> Option<SandboxError> {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        report.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u8)).ok()? == 0 {
        return None;
    }
    let mut r = BufReader::new(File::from(report.try_clone().ok()?));
    match crate::proto::recv(&mut r) {
        Ok(Some(Msg::Failed(e))) => Some(e.into()),
        _ => None,
    }
}

/// What the run comes to, from what the init reported; `wait` says how the
/// init ended when that is known.
fn outcome(
    seen: crate::events::Seen,
    oom: bool,
    flags: CloneFlags,
    mut missing: Vec<(Layer, String)>,
    spec: &SandboxSpec,
    wait: Option<WaitStatus>,
) -> Result<RunOutcome, SandboxError> {
    if let Some(e) = seen.failure {
        return Err(e);
    }
    let Some(Msg::Started {
        landlock_abi,
        landlock_fs,
        landlock_net,
        landlock_scope,
        seccomp,
        limits: lim,
        missing: inside_missing,
    }) = seen.started
    else {
        return Err(SandboxError::InitDied(format!("{wait:?}")));
    };
    let status = match (seen.exited, seen.overlay_limit_hit) {
        (Some(s), _) => s,
        (None, true) => ExitStatus::Signal(Signal::SIGKILL as i32),
        (None, false) => return Err(SandboxError::InitDied(format!("{wait:?}"))),
    };
    missing.extend(inside_missing);
    let mut namespaces = vec!["user", "mnt", "pid", "net", "ipc", "uts"];
    if flags.contains(CloneFlags::CLONE_NEWCGROUP) {
        namespaces.push("cgroup");
    }
    Ok(RunOutcome {
        status,
        layers: LayerReport {
            namespaces: namespaces.into_iter().map(str::to_owned).collect(),
            landlock_abi,
            landlock_fs,
            landlock_net,
            landlock_scope,
            seccomp,
            limits: lim,
            missing,
            identity: Some(spec.identity.clone()),
        },
        memory_limit_hit: oom,
        overlay_limit_hit: seen.overlay_limit_hit,
        hidden_touched: seen.hidden_touched,
    })
}

/// Sends the project to the init as a detached, idmapped copy of its mount
/// tree: the id mapping is the sandbox's own user namespace (0 -> the
/// identity's host uid/gid), so files owned by root on the host show as
/// owned by the sandbox's root, and through the agent's namespace as the
/// agent's. Needs Linux 5.12 and a filesystem with idmapped mounts;
/// overlayfs over an idmapped lower layer needs 5.19.
fn send_idmapped_project(pid: Pid, spec: &SandboxSpec, sock: &OwnedFd) -> Result<(), SandboxError> {
    use std::os::fd::AsFd;
    let fail = |what: &str, e: std::io::Error| SandboxError::Setup {
        step: format!("idmap the project {}", spec.project.display()),
        reason: format!(
            "{what}: {e}; the project belongs to root and the agent runs as host uid {}, so              only an idmapped mount (Linux 5.19 or later, on a filesystem that supports them)              lets it write there: use project mode \"ro\", or give the project to the user              the agent should run as (`blastwall doctor` checks the kernel)",
            spec.identity.host_uid
        ),
    };
    let userns = File::open(format!("/proc/{}/ns/user", pid.as_raw()))
        .map_err(|e| fail("cannot open the sandbox's user namespace", e))?;
    let tree = crate::sys::open_tree_clone(&spec.project)
        .map_err(|e| fail("cannot copy the project's mount tree", e))?;
    crate::sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd())
        .map_err(|e| fail("cannot make an idmapped mount", e))?;
    crate::tty::send_fd(sock, b"prj", tree.as_raw_fd())
        .map_err(|e| fail("cannot send it to the sandbox init", e))
}

/// Waits until the cloned child says its id maps may be written.
fn wait_ready(ready: OwnedFd) -> Result<(), SandboxError> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(&ready, &mut b) {
            Ok(1) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {
                return Err(SandboxError::InitDied(
                    "the new sandbox process ended before its setup".to_owned(),
                ));
            }
            Err(e) => return Err(nix_err("cannot read the ready pipe")(e)),
        }
    }
}

/// A directory of empty decoys (`fN` files, `dN` directories), removed
/// after the run.
struct DecoyDir(PathBuf);

impl DecoyDir {
    /// Its path (made by [`DecoyDir::make`]): pid + counter + clock, so a
    /// pid reused after a supervisor was killed (its directory left
    /// behind) cannot collide.
    fn reserve() -> DecoyDir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        DecoyDir(base.join(format!(
            "blastwall-decoys-{}-{}-{nanos}",
            std::process::id(),
            unique()
        )))
    }

    /// Makes the directory (and removes those of supervisors that died).
    fn make(&self) -> Result<(), SandboxError> {
        let dir = &self.0;
        if let Some(base) = dir.parent() {
            remove_stale_decoy_dirs(base);
        }
        std::fs::create_dir(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        // The sandbox's host uid binds them: readable, not writable.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err(format!("cannot chmod {}", dir.display())))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn fill(&self, decoys: &[(PathBuf, PathBuf, bool)]) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        for (source, _, is_dir) in decoys {
            let made = if *is_dir {
                std::fs::create_dir(source)
            } else {
                File::create(source).map(drop)
            };
            made.map_err(io_err(format!("cannot create decoy {}", source.display())))?;
            let mode = if *is_dir { 0o555 } else { 0o444 };
            std::fs::set_permissions(source, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(format!("cannot chmod decoy {}", source.display())))?;
        }
        Ok(())
    }
}

impl DecoyDir {
    fn inject(
        &self,
        spec: &SandboxSpec,
        injected: &[(PathBuf, usize)],
    ) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        for (source, i) in injected {
            let Some(file) = spec.injected.get(*i) else {
                continue;
            };
            std::fs::write(source, &file.contents)
                .map_err(io_err(format!("cannot write {}", source.display())))?;
            std::fs::set_permissions(source, std::fs::Permissions::from_mode(0o444))
                .map_err(io_err(format!("cannot chmod {}", source.display())))?;
        }
        Ok(())
    }
}

impl DecoyDir {
    /// Writes the contents [`SupervisorHooks::before_start`] gave for
    /// injected files of `given` (the spec as the caller wrote it), over
    /// the files [`DecoyDir::inject`] wrote.
    fn inject_late(
        &self,
        given: &SandboxSpec,
        injected: &[(PathBuf, usize)],
        late: &[crate::InjectedFile],
    ) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        for file in late {
            let Some(i) = given.injected.iter().position(|f| f.path == file.path) else {
                return Err(SandboxError::Spec(format!(
                    "{} is not an injected file of the spec",
                    file.path.display()
                )));
            };
            let Some((source, _)) = injected.iter().find(|(_, j)| *j == i) else {
                // The plan does not show it (e.g. under a hidden path).
                continue;
            };
            // Read-only since `inject`: writable for this write only.
            std::fs::set_permissions(source, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("cannot chmod {}", source.display())))?;
            std::fs::write(source, &file.contents)
                .map_err(io_err(format!("cannot write {}", source.display())))?;
            std::fs::set_permissions(source, std::fs::Permissions::from_mode(0o444))
                .map_err(io_err(format!("cannot chmod {}", source.display())))?;
        }
        Ok(())
    }
}

/// Removes decoy directories of supervisors that died without cleaning up
/// (SIGKILL): their pid is gone and they belong to us.
fn remove_stale_decoy_dirs(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("blastwall-decoys-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let mine = e.metadata().is_ok_and(|m| m.uid() == me && m.is_dir());
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for DecoyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

struct CgroupGuard(crate::limits::Cgroups);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        self.0.remove();
    }
}

fn config_memfd(cfg: &InitConfig) -> Result<OwnedFd, SandboxError> {
    let fd = nix::sys::memfd::memfd_create(
        c"blastwall-init-config",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .map_err(nix_err("cannot create the init config memfd"))?;
    let mut f = File::from(fd);
    let json = serde_json::to_vec(cfg)
        .map_err(|e| SandboxError::Spec(format!("cannot serialise the init config: {e}")))?;
    f.write_all(&json)
        .map_err(io_err("cannot write the init config"))?;
    f.rewind()
        .map_err(io_err("cannot rewind the init config"))?;
    Ok(OwnedFd::from(f))
}

/// The outer user namespace: its root is the host uid/gid of the identity.
fn write_id_maps(pid: Pid, id: &crate::Identity) -> Result<(), SandboxError> {
    let proc = PathBuf::from(format!("/proc/{}", pid.as_raw()));
    let w = |file: &str, text: String| -> Result<(), SandboxError> {
        std::fs::write(proc.join(file), text).map_err(io_err(format!(
            "cannot write {}",
            proc.join(file).display()
        )))
    };
    w("uid_map", format!("0 {} 1\n", id.host_uid))?;
    if !nix::unistd::geteuid().is_root() {
        // An unprivileged writer may map its own gid only after denying
        // setgroups (user_namespaces(7)).
        w("setgroups", "deny".to_owned())?;
    }
    w("gid_map", format!("0 {} 1\n", id.host_gid))?;
    Ok(())
}

/// What [`probe_namespaces`] found.
#[derive(Debug)]
pub(crate) struct NsProbe {
    pub(crate) userns: Result<(), String>,
    pub(crate) overlay: Result<(), String>,
}

/// The argument that makes the init binary a namespace probe for `doctor`.
pub(crate) const PROBE_ARG: &str = "probe";

/// Tries, in a short-lived child, a user + mount namespace, a tmpfs and an
/// overlayfs with `userxattr` inside it.
pub(crate) fn probe_namespaces() -> NsProbe {
    let fail = |e: String| NsProbe {
        userns: Err(e.clone()),
        overlay: Err(e),
    };
    let Ok((sync_read, sync_write)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
        return fail("cannot create a pipe".to_owned());
    };
    let (Ok(exe), Ok(a0), Ok(a1), Ok(a2)) = (
        CString::new("/proc/self/exe"),
        CString::new("blastwall-init"),
        CString::new(INIT_ARG),
        CString::new(PROBE_ARG),
    ) else {
        return fail("argv".to_owned());
    };
    let Ok((ready_read, ready_write)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
        return fail("cannot create a pipe".to_owned());
    };
    let prepared = crate::sys::PreparedExec::new(
        exe,
        vec![a0, a1, a2],
        Vec::new(),
        sync_read.as_raw_fd(),
        sync_write.as_raw_fd(),
        Vec::new(),
        nix::unistd::geteuid().is_root(),
        ready_write.as_raw_fd(),
    );
    let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    let pid = match crate::sys::clone_into_namespaces(flags.bits(), &prepared) {
        Ok(pid) => pid,
        Err(e) => return fail(e.to_string()),
    };
    let mut guard = InitGuard { pid: Some(pid) };
    drop(ready_write);
    if let Err(e) = wait_ready(ready_read) {
        return fail(e.to_string());
    }
    let me = crate::Identity {
        uid: 0,
        gid: 0,
        host_uid: nix::unistd::geteuid().as_raw(),
        host_gid: nix::unistd::getegid().as_raw(),
    };
    if let Err(e) = write_id_maps(pid, &me) {
        return fail(e.to_string());
    }
    let mut f = File::from(sync_write);
    if f.write_all(b"g").is_err() {
        return fail("cannot start the probe".to_owned());
    }
    let status = nix::sys::wait::waitpid(pid, None);
    guard.pid = None;
    match status {
        Ok(WaitStatus::Exited(_, 0)) => NsProbe {
            userns: Ok(()),
            overlay: Ok(()),
        },
        Ok(WaitStatus::Exited(_, 200)) => NsProbe {
            userns: Ok(()),
            overlay: Err("cannot mount a tmpfs in the namespace".to_owned()),
        },
        Ok(WaitStatus::Exited(_, code)) if code < 125 => NsProbe {
            userns: Ok(()),
            overlay: Err(nix::errno::Errno::from_raw(code).desc().to_owned()),
        },
        other => fail(format!("the probe ended with {other:?}")),
    }
}

/// The probe child, after exec: exit 0 when overlayfs works, the errno
/// when it does not, 200 when not even a tmpfs can be mounted.
pub(crate) fn probe_main() -> u8 {
    use nix::mount::{MsFlags, mount};
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .is_err()
        || mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .is_err()
    {
        return 200;
    }
    for d in ["/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m"] {
        if std::fs::create_dir(d).is_err() {
            return 200;
        }
    }
    match mount(
        Some("overlay"),
        "/tmp/m",
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr"),
    ) {
        Ok(()) => 0,
        Err(e) => u8::try_from(e as i32).unwrap_or(124).min(124),
    }
}
