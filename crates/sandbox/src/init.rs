//! The sandbox's pid 1 and the agent child it forks.
//!
//! The supervisor clones a child into new namespaces, which executes this
//! same binary with [`INIT_ARG`]; `main` hands over to
//! [`init_if_requested`]. The init then, in bubblewrap's order: ties its
//! life to the supervisor, sets `no_new_privs`, builds the mount view,
//! brings up loopback, applies the rlimits, closes stray descriptors,
//! drops its capabilities and forks the agent. The agent child enters a
//! second user namespace (so it has its real uid inside and its namespace
//! does not own the mounts), drops every capability, applies Landlock and
//! seccomp last, and executes the command. The init reaps, forwards
//! signals, and kills everything when the agent ends or the supervisor
//! dies.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::proto::{InitConfig, Msg, WireError};
use crate::{ExitStatus, Layer, LimitInForce, LimitMechanism};

/// The hidden first argument that makes the binary the sandbox init.
pub const INIT_ARG: &str = "__blastwall-init";

/// Exit code of the init when it could not even read its configuration.
const EXIT_NO_CONFIG: u8 = 125;
/// Exit code when setup failed (the reason went to the supervisor).
const EXIT_SETUP: u8 = 126;
/// Exit status of an init cloned ahead that could not take its ids (the
/// exec path's child exits with the same).
const EXIT_ID: u8 = 124;
/// Exit code when the command could not be executed.
const EXIT_EXEC: u8 = 127;

/// The signals the init forwards to the agent's process group.
const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
];

/// Runs the sandbox init if this process was started as one
/// (`argv[1] == INIT_ARG`), and returns its exit code; `None` otherwise.
///
/// `main` calls it right after [`crate::harden_self`]:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     blastwall_sandbox::harden_self();
///     if let Some(code) = blastwall_sandbox::init_if_requested() {
///         return code;
///     }
///     // ... the normal program
///     std::process::ExitCode::SUCCESS
/// }
/// ```
pub fn init_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(INIT_ARG)) {
        return None;
    }
    let arg = args.next();
    if arg.as_deref() == Some(OsStr::new(crate::supervisor::PROBE_ARG)) {
        return Some(ExitCode::from(crate::supervisor::probe_main()));
    }
    let fd: Option<RawFd> = arg.and_then(|a| a.to_str().and_then(|s| s.parse().ok()));
    Some(match fd {
        Some(fd) => init_main(fd),
        None => ExitCode::from(EXIT_NO_CONFIG),
    })
}

fn read_config(fd: OwnedFd) -> Option<InitConfig> {
    let mut f = File::from(fd);
    f.rewind().ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

fn init_main(config_fd: RawFd) -> ExitCode {
    let Some(cfg) = crate::sys::take_inherited_fd(config_fd)
        .ok()
        .and_then(read_config)
    else {
        return ExitCode::from(EXIT_NO_CONFIG);
    };
    let Ok(report_fd) = crate::sys::take_inherited_fd(cfg.report_fd) else {
        return ExitCode::from(EXIT_NO_CONFIG);
    };
    let Ok(lifeline) = crate::sys::take_inherited_fd(cfg.lifeline_fd) else {
        return ExitCode::from(EXIT_NO_CONFIG);
    };
    let tty_socket = match cfg.fd_socket {
        Some(t) => match crate::sys::take_inherited_fd(t) {
            Ok(fd) => Some(fd),
            Err(_) => return ExitCode::from(EXIT_NO_CONFIG),
        },
        None => None,
    };
    let filters = crate::seccomp::Filters::compile();
    ExitCode::from(run_init(&cfg, report_fd, &lifeline, tty_socket, &filters))
}

/// The init cloned ahead (`crate::ahead`), in its new namespaces: waits on
/// `sock` for its config and descriptors, which the supervisor sends once
/// its id maps are written and it is in the run's cgroups, becomes the
/// namespace's root and goes on as the executed init does. `root`: the
/// supervisor is root (it may write our maps while we are not dumpable;
/// our supplementary groups are root's and must go).
pub(crate) fn ahead(sock: OwnedFd, root: bool) -> ! {
    crate::sys::exit_now(i32::from(ahead_main(sock, root)))
}

fn ahead_main(owned: OwnedFd, root: bool) -> u8 {
    let sock = &owned;
    // The supervisor's main thread is our parent (CLONE_PARENT). If it is
    // gone already, the socket says so below.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    let _ = nix::sys::prctl::set_name(c"blastwall-init");
    crate::sys::rewrite_cmdline(b"blastwall-init\0__blastwall-init\0");
    // An unprivileged supervisor can write our id maps only while we are
    // dumpable (/proc/<pid>/uid_map belongs to root otherwise). What this
    // exposes to the user's own processes until the config arrives is a
    // copy of the spawner: the program and its arguments, nothing the
    // supervisor read.
    if !root {
        let _ = nix::sys::prctl::set_dumpable(true);
    }
    if crate::ahead::send(sock, b'R', 0).is_err() {
        return EXIT_NO_CONFIG;
    }
    // What is the same for every run is done while the supervisor
    // prepares: the seccomp filters compiled, `/` made rprivate (the
    // plan's first step).
    let filters = crate::seccomp::Filters::compile();
    let root_private = crate::plan::Plan::make_root_private(&crate::plan::LinuxSyscalls).is_ok();
    // The config first; end-of-file: the supervisor is gone, or took the
    // exec path.
    let Some(mut cfg) = crate::tty::recv_fd(sock)
        .ok()
        .filter(|(tag, _)| tag == b"cfg")
        .and_then(|(_, fd)| read_config(fd))
    else {
        return EXIT_NO_CONFIG;
    };
    let next = |want: &[u8; 3]| match crate::tty::recv_fd(sock) {
        Ok((tag, fd)) if &tag == want => Some(fd),
        _ => None,
    };
    let (Some(report_fd), Some(lifeline)) = (next(b"rep"), next(b"lif")) else {
        return EXIT_NO_CONFIG;
    };
    let tty_socket = match cfg.fd_socket {
        Some(_) => match next(b"tty") {
            Some(fd) => Some(fd),
            None => return EXIT_NO_CONFIG,
        },
        None => None,
    };
    // Into the run's cgroups: this process moves itself (it has one
    // thread), before it roots a cgroup namespace there.
    for _ in 0..cfg.cgroup_tasks {
        let Some(tasks) = next(b"cgt") else {
            return EXIT_NO_CONFIG;
        };
        if let Err(e) = nix::unistd::write(&tasks, b"0") {
            return failed(
                report_fd,
                WireError::Layer {
                    layer: Layer::Cgroup,
                    reason: format!("the sandbox init cannot enter its cgroup: {e}"),
                },
            );
        }
    }
    // The network namespace needs neither ids nor the view: set up now.
    if let Err(e) = network(&cfg, tty_socket.as_ref()) {
        return failed(report_fd, e);
    }
    cfg.network_ready = true;
    // The supervisor says go once our id maps are written (and the
    // overlay's work directory is ready).
    if !matches!(crate::ahead::recv(sock), Some((b'G', _))) {
        return EXIT_NO_CONFIG;
    }
    cfg.root_private = root_private;
    cfg.report_fd = report_fd.as_raw_fd();
    cfg.lifeline_fd = lifeline.as_raw_fd();
    cfg.fd_socket = tty_socket.as_ref().map(AsRawFd::as_raw_fd);
    // Our id maps are written: become the namespace's root, which maps to
    // the unprivileged host uid/gid. Groups first: a root supervisor's
    // gid 0 must not follow us.
    let _ = nix::sys::prctl::set_dumpable(false);
    if root && nix::unistd::setgroups(&[]).is_err() {
        return EXIT_ID;
    }
    let zero_gid = nix::unistd::Gid::from_raw(0);
    let zero_uid = nix::unistd::Uid::from_raw(0);
    if nix::unistd::setresgid(zero_gid, zero_gid, zero_gid).is_err()
        || nix::unistd::setresuid(zero_uid, zero_uid, zero_uid).is_err()
    {
        return EXIT_ID;
    }
    // A credential change clears the parent-death signal: setup_and_run
    // sets it again. The supervisor's death from then on closes the
    // lifeline, which the init reads before the agent may execute (and its
    // reap loop watches).
    // The socket is done with; close_stray_fds must not meet a number
    // something still owns.
    drop(owned);
    run_init(&cfg, report_fd, &lifeline, tty_socket, &filters)
}

/// Reports a setup failure of the init cloned ahead before it runs the
/// common setup: the exit status.
fn failed(report_fd: OwnedFd, e: WireError) -> u8 {
    let _ = crate::proto::send(&mut File::from(report_fd), &Msg::Failed(e));
    EXIT_SETUP
}

/// The init's part once it holds its config and descriptors: the exit
/// status of the init process.
fn run_init(
    cfg: &InitConfig,
    report_fd: OwnedFd,
    lifeline: &OwnedFd,
    tty_socket: Option<OwnedFd>,
    filters: &Result<crate::seccomp::Filters, String>,
) -> u8 {
    let mut report = File::from(report_fd);
    match setup_and_run(cfg, &mut report, lifeline, tty_socket, filters) {
        Ok(Role::Init(status)) => {
            let _ = crate::proto::send(&mut report, &Msg::Exited(status));
            u8::try_from(status.as_shell_code() & 0xff).unwrap_or(1)
        }
        Ok(Role::AgentFailed(code)) => code,
        Err(e) => {
            let _ = crate::proto::send(&mut report, &Msg::Failed(e));
            EXIT_SETUP
        }
    }
}

enum Role {
    /// The init, after the agent ended.
    Init(ExitStatus),
    /// The agent child, whose setup or exec failed (already reported).
    AgentFailed(u8),
}

fn setup_err(step: &str, e: impl std::fmt::Display) -> WireError {
    WireError::Setup {
        step: step.to_owned(),
        reason: e.to_string(),
    }
}

fn setup_and_run(
    cfg: &InitConfig,
    report: &mut File,
    lifeline: &OwnedFd,
    tty_socket: Option<OwnedFd>,
    filters: &Result<crate::seccomp::Filters, String>,
) -> Result<Role, WireError> {
    // Step 3 of the order (tie life to the supervisor), repeated: the
    // parent-death signal set before may have been cleared by a credential
    // change, and pid 1 of a new pid namespace cannot use getppid() to
    // detect a parent that already died; the lifeline pipe's end-of-file
    // tells, and it is read before the agent may execute anything.
    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL))
        .map_err(|e| setup_err("set parent-death signal", e))?;
    // An init cloned ahead was born in the supervisor's cgroup, and its
    // cgroup namespace is rooted there; the supervisor has moved it into the
    // run's cgroups since: a namespace of its own makes that the root, as
    // the executed init's is (`crate::ahead`).
    if cfg.unshare_cgroup {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| setup_err("enter a cgroup namespace", e))?;
    }
    // Not dumpable: nothing inside can ptrace or read the memory of pid 1.
    nix::sys::prctl::set_dumpable(false).map_err(|e| setup_err("set non-dumpable", e))?;
    // Step 1: no_new_privs before anything executes inside.
    nix::sys::prctl::set_no_new_privs().map_err(|e| setup_err("set no_new_privs", e))?;
    // Step 4: the new root (with the idmapped project the supervisor sent
    // first, if the plan attaches one).
    let tree = match (&tty_socket, cfg.plan.wants_tree()) {
        (Some(sock), true) => match crate::tty::recv_fd(sock) {
            Ok((tag, fd)) if &tag == b"prj" => Some(fd),
            Ok(_) => {
                return Err(setup_err(
                    "receive the idmapped project",
                    "unexpected message",
                ));
            }
            Err(e) => return Err(setup_err("receive the idmapped project", e)),
        },
        _ => None,
    };
    cfg.plan
        .apply_after(
            &crate::plan::LinuxSyscalls,
            tree.as_ref().map(AsFd::as_fd),
            cfg.root_private,
        )
        .map_err(WireError::from)?;
    drop(tree);
    if !cfg.network_ready {
        network(cfg, tty_socket.as_ref())?;
    }

    // Limits that are per process.
    let mut limits = cfg.limits.clone();
    // The agent dies first when the host runs out of memory.
    // (An init cloned ahead has it from the supervisor: its /proc files
    // belong to the host's root, as its memory came from outside.)
    if !std::fs::read_to_string("/proc/self/oom_score_adj").is_ok_and(|v| v.trim() == "1000") {
        std::fs::write("/proc/self/oom_score_adj", "1000")
            .map_err(|e| setup_err("write /proc/self/oom_score_adj", e))?;
    }
    limits.oom_score_adj = 1000;
    if let Some(cpu) = cfg.spec.limits.cpu_seconds {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CPU, cpu, cpu)
            .map_err(|e| setup_err("set RLIMIT_CPU", e))?;
        limits.cpu_seconds = Some(LimitInForce {
            value: cpu,
            mechanism: LimitMechanism::Rlimit,
        });
    }
    if let Some(n) = cfg.nproc_rlimit {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, n, n)
            .map_err(|e| setup_err("set RLIMIT_NPROC", e))?;
        limits.pids = Some(LimitInForce {
            value: n,
            mechanism: LimitMechanism::Rlimit,
        });
    }

    // Step 5: close stray descriptors; keep stdio, report, lifeline, tty.
    let mut keep = vec![0, 1, 2, report.as_raw_fd(), lifeline.as_raw_fd()];
    if let Some(t) = &tty_socket {
        keep.push(t.as_raw_fd());
    }
    close_stray_fds(&keep).map_err(|e| setup_err("close stray descriptors", e))?;
    for fd in [report.as_fd(), lifeline.as_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| setup_err("set close-on-exec", e))?;
    }

    // The pty, from the sandbox's own devpts.
    let pty = match (&cfg.tty, tty_socket) {
        (Some(t), Some(sock)) => Some(
            crate::tty::open_inside(t, &sock).map_err(|e| setup_err("open the sandbox pty", e))?,
        ),
        _ => None,
    };
    if let Some(slave) = &pty {
        // The init leads the pty's session and the agent is a job in it:
        // the agent's process group then has a parent in its session in
        // another group, so it is not orphaned and ^Z (SIGTSTP) stops it
        // (an orphaned group ignores it), which lets the supervisor
        // suspend too.
        nix::unistd::setsid().map_err(|e| setup_err("setsid", e))?;
        crate::sys::set_controlling_tty(slave.as_raw_fd())
            .map_err(|e| setup_err("take the pty", e))?;
    }

    // Signals are handled through a signalfd; block them before the fork so
    // none is lost, and unblock them in the agent.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(|e| setup_err("block signals", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| setup_err("create signalfd", e))?;

    // The agent is forked and sets itself up (its user namespace,
    // Landlock, seccomp) while the supervisor finishes its part (the
    // session on disk, the decoy watch, the proxy); it executes the
    // command only once the init passes the supervisor's start byte on.
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| setup_err("create the agent's start pipe", e))?;
    if crate::sys::thread_count() != Some(1) {
        return Err(setup_err(
            "fork the agent",
            "the init is not single-threaded",
        ));
    }
    match crate::sys::fork_single_threaded().map_err(|e| setup_err("fork the agent", e))? {
        ForkResult::Child => {
            drop(sfd);
            // Our own job, in the foreground of the pty (done while
            // SIGTTOU is still blocked, so tcsetpgrp from the background
            // works); without a pty, a session of our own, so a host
            // terminal (if any) is not our controlling terminal.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
            let job = match &pty {
                Some(slave) => nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))
                    .and_then(|()| nix::unistd::tcsetpgrp(slave, nix::unistd::getpid()))
                    .map_err(|e| setup_err("make the agent the pty's foreground job", e))
                    .and_then(|()| {
                        crate::tty::attach(slave).map_err(|e| setup_err("attach the pty", e))
                    }),
                None => nix::unistd::setsid()
                    .map(drop)
                    .map_err(|e| setup_err("setsid", e)),
            };
            let _ =
                nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            drop(go_write);
            let err = match job {
                Ok(()) => agent(cfg, report, &limits, &go_read, filters),
                Err(e) => e,
            };
            let code = match &err {
                WireError::Exec { .. } => EXIT_EXEC,
                _ => EXIT_SETUP,
            };
            let _ = crate::proto::send(report, &Msg::Failed(err));
            Ok(Role::AgentFailed(code))
        }
        ForkResult::Parent { child } => {
            drop(pty);
            drop(go_read);
            // The init needs no capability any more: it reaps and forwards
            // signals to processes of its own uid. (Not before the fork:
            // mapping the agent's namespace to our root needs CAP_SETFCAP
            // at its unshare, see verify_root_map in the kernel.)
            if let Err(e) = crate::sys::drop_all_capabilities() {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                return Err(setup_err("drop the init's capabilities", e));
            }
            // The supervisor's second byte on the lifeline says go, once
            // the session is on disk. End-of-file: it is gone, and the
            // agent never executes.
            if let Err(e) = wait_for_start(lifeline) {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(e);
            }
            // The agent may have failed its setup and gone (its report
            // says why): a write to no reader is no error here.
            let _ = nix::unistd::write(&go_write, b"g");
            drop(go_write);
            Ok(Role::Init(reap_until(child, &sfd, lifeline, report)))
        }
    }
}

/// The network namespace's part of the setup, which needs nothing of the
/// mount view (an init cloned ahead does it while its id maps are
/// written): the hostname, loopback up, and the loopback listeners for the
/// supervisor (the proxy), created here, in the sandbox's network
/// namespace, and handed out; the supervisor accepts on them itself, so
/// no forwarder runs inside.
fn network(cfg: &InitConfig, tty_socket: Option<&OwnedFd>) -> Result<(), WireError> {
    nix::unistd::sethostname(&cfg.spec.hostname).map_err(|e| setup_err("set hostname", e))?;
    crate::sys::interface_up("lo").map_err(|e| setup_err("bring up loopback", e))?;
    if let Some(sock) = tty_socket {
        for &port in &cfg.spec.loopback_listeners {
            let l = std::net::TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| setup_err(&format!("listen on 127.0.0.1:{port} inside"), e))?;
            let [hi, lo] = port.to_be_bytes();
            crate::tty::send_fd(sock, &[b'l', hi, lo], l.as_raw_fd())
                .map_err(|e| setup_err("hand a listener to the supervisor", e))?;
        }
        for &port in &cfg.spec.loopback_udp {
            let u = std::net::UdpSocket::bind(("127.0.0.1", port))
                .map_err(|e| setup_err(&format!("bind udp 127.0.0.1:{port} inside"), e))?;
            let [hi, lo] = port.to_be_bytes();
            crate::tty::send_fd(sock, &[b'u', hi, lo], u.as_raw_fd())
                .map_err(|e| setup_err("hand a udp socket to the supervisor", e))?;
        }
    }
    Ok(())
}

/// Blocks until the supervisor's start byte arrives on the lifeline.
fn wait_for_start(lifeline: &OwnedFd) -> Result<(), WireError> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(lifeline, &mut b) {
            Ok(1) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) | Err(_) => return Err(setup_err("start", "the supervisor is gone")),
        }
    }
}

/// Closes every descriptor not in `keep`.
fn close_stray_fds(keep: &[RawFd]) -> std::io::Result<()> {
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            open.push(fd);
        }
    }
    for fd in open {
        if !keep.contains(&fd) {
            // The read_dir descriptor is gone by now; EBADF is harmless.
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}

/// The init's loop: reap every child, forward signals to the agent's
/// process group, end when the agent ends or the supervisor dies.
fn reap_until(agent: Pid, sfd: &SignalFd, lifeline: &OwnedFd, report: &mut File) -> ExitStatus {
    loop {
        // Reap whatever ended (orphans re-parented to pid 1 included).
        loop {
            match nix::sys::wait::waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED),
            ) {
                // Job control: the supervisor suspends itself too, and
                // sends SIGCONT (forwarded) when it is resumed.
                Ok(WaitStatus::Stopped(pid, _)) if pid == agent => {
                    let _ = crate::proto::send(report, &Msg::Stopped);
                }
                Ok(WaitStatus::Exited(pid, code)) if pid == agent => {
                    return finish(ExitStatus::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == agent => {
                    return finish(ExitStatus::Signal(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(lifeline.as_fd(), PollFlags::POLLIN),
        ];
        if nix::poll::poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
        {
            // The supervisor is gone: nothing may outlive it.
            let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
            return ExitStatus::Signal(Signal::SIGKILL as i32);
        }
        if let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
                continue;
            };
            if sig != Signal::SIGCHLD {
                // The agent is a session leader: its pid is its group.
                let _ = nix::sys::signal::kill(Pid::from_raw(-agent.as_raw()), sig);
            }
        }
    }
}

/// The agent ended: nothing else inside may stay behind.
fn finish(status: ExitStatus) -> ExitStatus {
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    // Reap what the kill left.
    while let Ok(s) = nix::sys::wait::waitpid(Pid::from_raw(-1), None) {
        if matches!(s, WaitStatus::StillAlive) {
            break;
        }
    }
    status
}

/// The agent child: returns only on failure.
fn agent(
    cfg: &InitConfig,
    report: &mut File,
    limits: &crate::LimitsReport,
    go: &OwnedFd,
    filters: &Result<crate::seccomp::Filters, String>,
) -> WireError {
    match agent_setup(cfg, report, limits, go, filters) {
        Ok(e) | Err(e) => e,
    }
}

fn agent_setup(
    cfg: &InitConfig,
    report: &mut File,
    limits: &crate::LimitsReport,
    go: &OwnedFd,
    filters: &Result<crate::seccomp::Filters, String>,
) -> Result<WireError, WireError> {
    let spec = &cfg.spec;
    // A second user namespace: the agent is `uid` inside, mapped to the
    // init's root; its namespace owns no mount, so even a capability
    // regained inside it could not change the view.
    // The kernel refuses the id maps of a non-dumpable writer (inherited
    // from the init); execve makes the agent dumpable again anyway, and
    // it is the untrusted side, not the one to protect.
    nix::sys::prctl::set_dumpable(true).map_err(|e| setup_err("set dumpable", e))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| setup_err("create the agent's user namespace", e))?;
    std::fs::write("/proc/self/setgroups", "deny")
        .map_err(|e| setup_err("write /proc/self/setgroups", e))?;
    std::fs::write("/proc/self/uid_map", format!("{} 0 1\n", spec.identity.uid))
        .map_err(|e| setup_err("write /proc/self/uid_map", e))?;
    std::fs::write("/proc/self/gid_map", format!("{} 0 1\n", spec.identity.gid))
        .map_err(|e| setup_err("write /proc/self/gid_map", e))?;
    // Step 5: no capability at all.
    crate::sys::drop_all_capabilities().map_err(|e| setup_err("drop capabilities", e))?;
    nix::unistd::chdir(&spec.cwd_inside)
        .map_err(|e| setup_err(&format!("chdir to {}", spec.cwd_inside.display()), e))?;

    let mut missing = Vec::new();
    let accepted = |l: Layer| spec.accept_missing.contains(&l);

    // Step 6: Landlock.
    let ll = crate::landlock_rules::apply(&crate::landlock_rules::Rules {
        writable: writable_paths(spec),
        tcp_connect: spec
            .tcp_connect_ports
            .iter()
            .chain(&spec.loopback_listeners)
            .copied()
            .collect(),
        tcp_bind: spec.tcp_bind_ports.clone(),
    });
    for (layer, reason) in ll.missing.clone() {
        if !accepted(layer) {
            return Err(WireError::Layer { layer, reason });
        }
        missing.push((layer, reason));
    }

    // Step 7: seccomp, the last thing before execve.
    let seccomp = match filters
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|f| f.install())
    {
        Ok(()) => true,
        Err(reason) => {
            if !accepted(Layer::Seccomp) {
                return Err(WireError::Layer {
                    layer: Layer::Seccomp,
                    reason,
                });
            }
            missing.push((Layer::Seccomp, reason));
            false
        }
    };

    // Step 8: exec, once the init says go (the supervisor's start byte:
    // the session is on disk). End-of-file: the run stops here.
    let (program, argv, envp) = exec_args(spec)?;
    wait_for_start(go)?;
    crate::proto::send(
        report,
        &Msg::Started {
            landlock_abi: ll.abi,
            landlock_fs: ll.fs,
            landlock_net: ll.net,
            landlock_scope: ll.scope,
            seccomp,
            limits: limits.clone(),
            missing,
        },
    )
    .map_err(|e| setup_err("report to the supervisor", e))?;
    let err = match nix::unistd::execve(&program, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Ok(WireError::Exec {
        program: program.to_string_lossy().into_owned(),
        reason: err.desc().to_owned(),
    })
}

/// The paths Landlock lets the agent write.
fn writable_paths(spec: &crate::SandboxSpec) -> Vec<PathBuf> {
    let mut w: Vec<PathBuf> = ["/tmp", "/var/tmp", "/run", "/dev"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if !matches!(spec.project_mode, crate::ProjectMode::ReadOnly) {
        w.push(spec.project.clone());
    }
    w.extend(spec.rw_paths.iter().cloned());
    w
}

type ExecArgs = (CString, Vec<CString>, Vec<CString>);

fn exec_args(spec: &crate::SandboxSpec) -> Result<ExecArgs, WireError> {
    let nul = |what: &str| WireError::Exec {
        program: what.to_owned(),
        reason: "contains a NUL byte".to_owned(),
    };
    let first = spec.argv.first().ok_or_else(|| WireError::Exec {
        program: String::new(),
        reason: "empty command".to_owned(),
    })?;
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let program = resolve_program(first, path_var.as_deref()).ok_or_else(|| WireError::Exec {
        program: first.to_string_lossy().into_owned(),
        reason: "not found in PATH inside the sandbox".to_owned(),
    })?;
    let program_c = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul("program"))?;
    let argv = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("argument")))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = OsString::from(k);
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).map_err(|_| nul("environment"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((program_c, argv, envp))
}

/// `argv[0]` as is when it has a slash, else the first executable match in
/// `PATH` (the sandbox's, not the supervisor's).
fn resolve_program(name: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(name));
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in path.as_bytes().split(|&b| b == b':') {
        if dir.is_empty() {
            continue;
        }
        let candidate = Path::new(OsStr::from_bytes(dir)).join(name);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok()
            && candidate.is_file()
        {
            return Some(candidate);
        }
    }
    None
}
