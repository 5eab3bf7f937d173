//! The supervisor's loop while the sandbox runs: the init's reports, the
//! pty relay, the decoys' inotify watch and the overlay size watch, in one
//! `poll`.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::proto::Msg;
use crate::{ExitStatus, SandboxError, SupervisorHooks};

/// How often the overlay's size is measured.
pub(crate) const OVERLAY_TICK: Duration = Duration::from_millis(200);

/// What the loop saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) started: Option<Msg>,
    pub(crate) failure: Option<SandboxError>,
    pub(crate) exited: Option<ExitStatus>,
    pub(crate) overlay_limit_hit: bool,
    pub(crate) hidden_touched: Vec<PathBuf>,
}

/// What the loop watches besides the reports.
#[derive(Debug)]
pub(crate) struct Watches {
    pub(crate) tty_sock: Option<OwnedFd>,
    pub(crate) decoys: Option<DecoyWatch>,
    /// The overlay's upper directory and its byte limit.
    pub(crate) overlay: Option<(PathBuf, u64)>,
    pub(crate) init: Pid,
}

/// inotify on the decoys, in a helper process (a fork of the supervisor
/// without `execve`, `crate::sys::fork_decoy_watcher`): closing an inotify
/// instance waits for an SRCU grace period (~10 ms), which the helper pays
/// in its own exit instead of the run's. The helper writes one line per
/// event: the index of the decoy.
#[derive(Debug)]
pub(crate) struct DecoyWatch {
    pid: Option<Pid>,
    /// Its command pipe: closing it stops the helper.
    cmd: Option<OwnedFd>,
    out: BufReader<File>,
    paths: Vec<PathBuf>,
    /// Its last line (`done`) was read: nothing more comes but its exit,
    /// which waits for an SRCU grace period, not to be waited for.
    done: bool,
}

impl DecoyWatch {
    /// Starts watching `decoys` (decoy source on the host, hidden path
    /// inside). The helper sets its watches while the sandbox comes up;
    /// [`DecoyWatch::wait_ready`] waits until every one is in place.
    pub(crate) fn new(decoys: &[(PathBuf, PathBuf)]) -> Result<DecoyWatch, SandboxError> {
        use std::os::fd::AsRawFd;
        let io = |e: std::io::Error| SandboxError::Io {
            what: "cannot start the decoy watch".to_owned(),
            source: e,
        };
        let paths = decoys
            .iter()
            .map(|(s, _)| crate::sys::path_cstring(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        let (cmd_read, cmd_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| io(e.into()))?;
        let (out_read, out_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| io(e.into()))?;
        let mut prepared =
            crate::sys::PreparedWatch::new(paths, cmd_read.as_raw_fd(), out_write.as_raw_fd());
        let pid = crate::sys::fork_decoy_watcher(&mut prepared).map_err(io)?;
        drop((cmd_read, out_write));
        Ok(DecoyWatch {
            pid: Some(pid),
            cmd: Some(cmd_write),
            out: BufReader::new(File::from(out_read)),
            paths: decoys.iter().map(|(_, h)| h.clone()).collect(),
            done: false,
        })
    }

    /// Waits until the helper watches every decoy (before the sandbox may
    /// start anything that could open one).
    pub(crate) fn wait_ready(&mut self) -> Result<(), SandboxError> {
        use std::io::BufRead;
        let mut line = String::new();
        let read = self.out.read_line(&mut line);
        if read.is_err() || line.trim() != "ready" {
            return Err(SandboxError::Io {
                what: "cannot start the decoy watch".to_owned(),
                source: read.err().unwrap_or_else(|| {
                    std::io::Error::other("the helper could not watch every decoy")
                }),
            });
        }
        Ok(())
    }

    /// Handles one line from the helper; `false` at its end.
    fn line(&mut self, seen: &mut Seen, hooks: &mut dyn SupervisorHooks) -> bool {
        use std::io::BufRead;
        let mut line = String::new();
        if self.done {
            return false;
        }
        match self.out.read_line(&mut line) {
            Ok(0) | Err(_) => {
                self.done = true;
                false
            }
            Ok(_) if line.trim() == "done" => {
                self.done = true;
                false
            }
            Ok(_) => {
                if let Some(p) = line
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.paths.get(i))
                {
                    hooks.hidden_path_touched(p);
                    if !seen.hidden_touched.contains(p) {
                        seen.hidden_touched.push(p.clone());
                    }
                }
                true
            }
        }
    }

    /// Stops the helper once it has passed on every event already queued
    /// (the sandbox is gone, so no new one can come), without waiting for
    /// its exit (a thread reaps it).
    fn finish(mut self, seen: &mut Seen, hooks: &mut dyn SupervisorHooks) {
        drop(self.cmd.take());
        while self.line(seen, hooks) {}
    }
}

impl Drop for DecoyWatch {
    /// Closes the helper's command pipe (it exits on its own, or dies with
    /// the supervisor) and reaps it on a thread: its exit waits for the
    /// grace period this helper exists to keep off the run.
    fn drop(&mut self) {
        drop(self.cmd.take());
        if let Some(pid) = self.pid.take() {
            let _ = std::thread::Builder::new()
                .name("blastwall-decoy-watch".to_owned())
                .spawn(move || nix::sys::wait::waitpid(pid, None));
        }
    }
}

/// Bytes used by a directory tree (allocated blocks; symlinks not
/// followed).
pub(crate) fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn take(msg: Msg, seen: &mut Seen) {
    match msg {
        Msg::Started { .. } => seen.started = Some(msg),
        Msg::Failed(e) => {
            if seen.failure.is_none() {
                seen.failure = Some(e.into());
            }
        }
        Msg::Exited(s) => seen.exited = Some(s),
        Msg::Stopped => {}
    }
}

struct Tty {
    master: OwnedFd,
    master_out: File,
    winch_read: OwnedFd,
    winch: signal_hook::SigId,
    raw: Option<crate::tty::RawMode>,
}

fn open_tty(sock: &OwnedFd) -> Result<Option<Tty>, SandboxError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| SandboxError::Io { what, source: e }
    };
    // The master arrives before the agent starts, or never (setup failed:
    // the socket closes and the reports say why).
    let Ok(master) = crate::tty::recv_master(sock) else {
        return Ok(None);
    };
    let (winch_read, winch_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| io("cannot create the SIGWINCH pipe")(e.into()))?;
    let winch = signal_hook::low_level::pipe::register(libc::SIGWINCH, File::from(winch_write))
        .map_err(io("cannot watch SIGWINCH"))?;
    crate::tty::copy_size(master.as_fd());
    let master_out = File::from(
        master
            .try_clone()
            .map_err(io("cannot duplicate the pty master"))?,
    );
    Ok(Some(Tty {
        master,
        master_out,
        winch_read,
        winch,
        raw: crate::tty::RawMode::enter(),
    }))
}

/// The agent stopped on its terminal (^Z): give the user's terminal back
/// and stop the supervisor as well, as a shell job; on resume take the
/// terminal again and continue the agent.
fn suspend(t: &mut Tty, init: Pid) {
    if t.raw.is_none() {
        // No terminal of ours to give back (stdin is not a tty): just let
        // the agent go on.
        let _ = nix::sys::signal::kill(init, Signal::SIGCONT);
        return;
    }
    drop(t.raw.take());
    let _ = nix::sys::signal::raise(Signal::SIGTSTP);
    // Resumed (SIGCONT from the shell's `fg`).
    t.raw = crate::tty::RawMode::enter();
    crate::tty::copy_size(t.master.as_fd());
    // The init forwards SIGCONT to the agent's process group.
    let _ = nix::sys::signal::kill(init, Signal::SIGCONT);
}

/// Runs until the init's report pipe closes.
pub(crate) fn run_loop(
    reader: &mut BufReader<File>,
    mut w: Watches,
    hooks: &mut dyn SupervisorHooks,
) -> Result<Seen, SandboxError> {
    let mut seen = Seen::default();
    let mut tty = match &w.tty_sock {
        Some(sock) => open_tty(sock)?,
        None => None,
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut master_open = tty.is_some();
    let mut stdin_open = tty.is_some();
    let mut reports_open = true;
    let mut decoy_open = true;
    let mut next_tick = Instant::now();
    let mut master_out = tty.as_ref().and_then(|t| t.master_out.try_clone().ok());
    while reports_open || master_open {
        let mut fds = vec![PollFd::new(reader.get_ref().as_fd(), PollFlags::POLLIN)];
        let (mut i_master, mut i_stdin, mut i_winch, mut i_decoy) = (None, None, None, None);
        if let Some(t) = &tty {
            if master_open {
                i_master = Some(fds.len());
                fds.push(PollFd::new(t.master.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open && master_open {
                i_stdin = Some(fds.len());
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            i_winch = Some(fds.len());
            fds.push(PollFd::new(t.winch_read.as_fd(), PollFlags::POLLIN));
        }
        if let Some(d) = w.decoys.as_ref().filter(|_| decoy_open) {
            i_decoy = Some(fds.len());
            fds.push(PollFd::new(d.out.get_ref().as_fd(), PollFlags::POLLIN));
        }
        let timeout = if w.overlay.is_some() {
            let left = next_tick.saturating_duration_since(Instant::now());
            PollTimeout::try_from(left).unwrap_or(PollTimeout::NONE)
        } else {
            PollTimeout::NONE
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(SandboxError::Io {
                    what: "cannot poll the sandbox".to_owned(),
                    source: e.into(),
                });
            }
        }
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds.get(i))
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (r_report, r_master, r_stdin, r_winch, r_decoy) = (
            ready(Some(0)) && reports_open,
            ready(i_master),
            ready(i_stdin),
            ready(i_winch),
            ready(i_decoy),
        );
        drop(fds);

        if let Some(t) = &tty {
            if r_winch {
                let mut buf = [0u8; 64];
                let _ = nix::unistd::read(&t.winch_read, &mut buf);
                crate::tty::copy_size(t.master.as_fd());
            }
            if r_master && !crate::tty::pump(t.master.as_fd(), &mut stdout) {
                master_open = false;
            }
            if r_stdin
                && let Some(out) = master_out.as_mut()
                && !crate::tty::pump(stdin.as_fd(), out)
            {
                stdin_open = false;
            }
        }
        if r_decoy
            && let Some(d) = &mut w.decoys
            && !d.line(&mut seen, hooks)
        {
            decoy_open = false;
        }
        if let Some((upper, limit)) = &w.overlay
            && Instant::now() >= next_tick
        {
            next_tick = Instant::now() + OVERLAY_TICK;
            if !seen.overlay_limit_hit && tree_bytes(upper) > *limit {
                // Stop the agent, never the host: the whole sandbox dies
                // with its init.
                seen.overlay_limit_hit = true;
                let _ = nix::sys::signal::kill(w.init, Signal::SIGKILL);
            }
        }
        if r_report {
            match crate::proto::recv(reader) {
                Ok(Some(Msg::Stopped)) => {
                    if let Some(t) = tty.as_mut() {
                        suspend(t, w.init);
                    }
                }
                Ok(Some(msg)) => {
                    // The init reports the end once everything inside is
                    // dead: no decoy can be opened any more, so the watch
                    // is told to finish now, and its last lines are ready
                    // by the time the init is gone.
                    if matches!(msg, Msg::Exited(_))
                        && let Some(d) = &mut w.decoys
                    {
                        drop(d.cmd.take());
                    }
                    take(msg, &mut seen);
                }
                Ok(None) => {
                    reports_open = false;
                    // Everything inside is dead once the init is: what is
                    // left in the pty is read until EIO, which cannot block.
                    if let Some(t) = &tty {
                        while master_open && crate::tty::pump(t.master.as_fd(), &mut stdout) {}
                    }
                    master_open = false;
                }
                Err(e) => return Err(SandboxError::InitDied(e)),
            }
        }
    }
    if let Some(t) = tty {
        signal_hook::low_level::unregister(t.winch);
    }
    if let Some(d) = w.decoys {
        d.finish(&mut seen, hooks);
    }
    Ok(seen)
}
