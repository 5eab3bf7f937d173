//! The sandbox's init, cloned ahead.
//!
//! A run's critical path used to hold a `clone` of the supervisor (a large,
//! multi-threaded process by then) into seven namespaces, and an `execve`
//! of this large binary as the init, which then paid the dynamic loader and
//! its own start-up again: about 3 ms of every run. Both can be done before
//! the supervisor knows what it will run, while it still has one thread:
//!
//! 1. `main` calls [`clone_init_ahead`] first thing, before it reads any
//!    file or starts any thread. That forks a small *spawner* (a copy of a
//!    process that has read nothing yet) and goes on at once.
//! 2. The spawner empties its environment and zeroes the strings the kernel
//!    placed for it (the host's environment must not follow into the wall),
//!    then clones the init into new user, mount, pid, network, IPC, UTS and
//!    cgroup namespaces, with `CLONE_PARENT`: the init is the supervisor's
//!    own child, and its parent-death signal follows the supervisor's main
//!    thread, which lives as long as the process. The spawner sends the
//!    init's pid (or the clone's error) and exits.
//! 3. The init renames itself `blastwall-init`, makes itself dumpable only
//!    when the supervisor is unprivileged (who must write its id maps),
//!    says it is ready, and waits.
//! 4. [`crate::run`] takes it ([`take`]): it sends the config and the
//!    descriptors the exec path passes by inheritance, then, while the init
//!    reads them, writes its id maps and puts it in the run's cgroups, and
//!    says go. The init becomes the namespace's root, enters a cgroup
//!    namespace rooted at its new cgroup, and goes on as the executed init
//!    does (its agent executes at the start byte).
//!
//! Anything unexpected (no pid, an error from the clone, a user namespace
//! the host refuses) makes [`take`] return `None` and `run` clone and
//! execute the init as before, which also reports why a layer is missing.
//! The init cloned ahead holds a copy of the spawner's memory: the
//! program, its arguments, and nothing the supervisor read or derived
//! later (no manifest, no credential, no environment).
#![forbid(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{ForkResult, Pid};

/// The flags of the clone ahead: every namespace of a run.
pub(crate) fn flags() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP
}

/// How long [`take`] waits for the spawner's and the init's messages. They
/// are sent within a millisecond or two of `main`'s start, long before a
/// run needs them.
const WAIT: Duration = Duration::from_secs(2);

/// The spawner and the supervisor's end of the socket both it and the init
/// hold.
struct Spawner {
    pid: Pid,
    sock: OwnedFd,
}

static SPAWNER: Mutex<Option<Spawner>> = Mutex::new(None);

/// Clones the sandbox's init ahead (see the module's text), for a process
/// that will call [`crate::run`] once.
///
/// Call it first thing in `main`, after [`crate::harden_self`] and
/// [`crate::init_if_requested`], before the program reads a file, its
/// environment, or starts a thread. When it cannot (the process already
/// has threads), it does nothing and `run` takes the exec path.
pub fn clone_init_ahead() {
    if crate::sys::thread_count() != Some(1) {
        return;
    }
    let Ok((ours, theirs)) = nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    let parent = nix::unistd::getpid();
    match crate::sys::fork_single_threaded() {
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            if let Ok(mut s) = SPAWNER.lock() {
                *s = Some(Spawner {
                    pid: child,
                    sock: ours,
                });
            }
        }
        Ok(ForkResult::Child) => {
            drop(ours);
            spawner(theirs, parent)
        }
        Err(_) => {}
    }
}

/// The spawner: clones the init and exits.
fn spawner(sock: OwnedFd, parent: Pid) -> ! {
    // Dies with the supervisor; if it is gone already, leaves.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if nix::unistd::getppid() != parent {
        crate::sys::exit_now(1);
    }
    if crate::sys::scrub_environment().is_err() {
        let _ = send(&sock, b'E', libc::EINVAL);
        crate::sys::exit_now(0);
    }
    let root = nix::unistd::geteuid().is_root();
    match crate::sys::clone_sibling(flags().bits()) {
        Ok(Some(pid)) => {
            let _ = send(&sock, b'P', pid.as_raw());
            crate::sys::exit_now(0)
        }
        Ok(None) => crate::init::ahead(sock, root),
        Err(e) => {
            let _ = send(&sock, b'E', e.raw_os_error().unwrap_or(libc::EINVAL));
            crate::sys::exit_now(0)
        }
    }
}

/// One message between the supervisor, the spawner and the init: a tag
/// and a number.
pub(crate) fn send(sock: &OwnedFd, tag: u8, n: i32) -> nix::Result<()> {
    let mut m = [0u8; 5];
    m[0] = tag;
    m[1..].copy_from_slice(&n.to_be_bytes());
    nix::sys::socket::send(sock.as_raw_fd(), &m, MsgFlags::empty()).map(drop)
}

/// Receives one message of [`send`]; `None` at end-of-file or on anything
/// else than one whole message.
pub(crate) fn recv(sock: &OwnedFd) -> Option<(u8, i32)> {
    let mut m = [0u8; 5];
    loop {
        match nix::sys::socket::recv(sock.as_raw_fd(), &mut m, MsgFlags::empty()) {
            Ok(5) => return Some((m[0], i32::from_be_bytes([m[1], m[2], m[3], m[4]]))),
            Err(nix::errno::Errno::EINTR) => {}
            _ => return None,
        }
    }
}

/// The init cloned ahead, ready for its id maps.
pub(crate) struct Ahead {
    /// Its pid, as the supervisor sees it.
    pub(crate) pid: Pid,
    /// The socket on which it waits for its config and descriptors.
    pub(crate) sock: OwnedFd,
}

/// Takes the init cloned ahead, once it said it is ready; `None` when there
/// is none (not cloned ahead, taken already, or its clone failed: `run`
/// then clones and executes the init).
pub(crate) fn take() -> Option<Ahead> {
    let s = SPAWNER.lock().ok()?.take()?;
    let mut pid = None;
    let mut ready = false;
    let mut spawner_done = false;
    let deadline = std::time::Instant::now() + WAIT;
    while pid.is_none() || !ready {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&s.sock),
            PollFlags::POLLIN,
        )];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(n) if n > 0 => {}
            Err(nix::errno::Errno::EINTR) => continue,
            _ => break,
        }
        match recv(&s.sock) {
            Some((b'P', n)) if n > 0 => {
                pid = Some(Pid::from_raw(n));
                spawner_done = true;
            }
            Some((b'R', _)) => ready = true,
            other => {
                spawner_done = matches!(other, Some((b'E', _)));
                break;
            }
        }
    }
    // The spawner exits once it sent the pid (or its error).
    if !spawner_done {
        let _ = nix::sys::signal::kill(s.pid, Signal::SIGKILL);
    }
    let _ = nix::sys::wait::waitpid(s.pid, None);
    match (pid, ready) {
        (Some(pid), true) => Some(Ahead { pid, sock: s.sock }),
        (Some(pid), false) => {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            None
        }
        _ => None,
    }
}
