//! The agent's terminal: a pty of the sandbox's own devpts instance.
//!
//! The init opens the pty inside (after `pivot_root`, so `/dev/ptmx` is
//! the sandbox's devpts), passes the master to the supervisor over a unix
//! socket, and the agent gets the slave as its controlling terminal. The
//! supervisor relays its own terminal to the master in raw mode and passes
//! window-size changes on. No host terminal descriptor ever crosses the
//! wall, so TIOCSTI inside can only type into the sandbox's own pty.
#![forbid(unsafe_code)]

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::proto::TtyConfig;

/// Inside (init): opens a pty, sends its master to the supervisor and
/// returns the slave.
pub(crate) fn open_inside(cfg: &TtyConfig, sock: &OwnedFd) -> std::io::Result<OwnedFd> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let ws = nix::libc::winsize {
        ws_row: cfg.rows,
        ws_col: cfg.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    crate::sys::set_winsize(master.as_raw_fd(), &ws)?;
    send_fd(sock, b"m\0\0", master.as_raw_fd())?;
    Ok(slave)
}

/// Sends one descriptor with a 3-byte tag over the init's fd socket.
pub(crate) fn send_fd(sock: &OwnedFd, tag: &[u8; 3], fd: RawFd) -> std::io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(tag)];
    nix::sys::socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one tagged descriptor from the init's fd socket.
pub(crate) fn recv_fd(sock: &OwnedFd) -> std::io::Result<([u8; 3], OwnedFd)> {
    let mut buf = [0u8; 3];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // Take every descriptor received, so none leaks.
                let owned = crate::sys::take_received_fd(fd)?;
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    let n = msg.bytes;
    match got {
        Some(fd) if n == 3 => Ok((buf, fd)),
        _ => Err(std::io::Error::other("the sandbox init sent no descriptor")),
    }
}

/// Inside (agent, the foreground job of the init's pty session): makes
/// `slave` its stdin/stdout/stderr.
pub(crate) fn attach(slave: &OwnedFd) -> std::io::Result<()> {
    crate::sys::dup_onto_stdio(slave.as_raw_fd())
}

/// Supervisor: receives the pty master from the init.
pub(crate) fn recv_master(sock: &OwnedFd) -> std::io::Result<OwnedFd> {
    match recv_fd(sock)? {
        (tag, fd) if tag[0] == b'm' => Ok(fd),
        _ => Err(std::io::Error::other(
            "the sandbox init sent something else than the pty",
        )),
    }
}

/// The supervisor's terminal in raw mode; restored on drop.
#[derive(Debug)]
pub(crate) struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode, if stdin is a terminal.
    pub(crate) fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd().try_clone_to_owned().ok()?;
        let saved = termios::tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// The supervisor terminal's size (rows, cols), 24x80 when unknown.
pub(crate) fn host_size() -> (u16, u16) {
    match crate::sys::get_winsize(std::io::stdin().as_raw_fd()) {
        Ok(ws) if ws.ws_row > 0 && ws.ws_col > 0 => (ws.ws_row, ws.ws_col),
        _ => match crate::sys::get_winsize(std::io::stdout().as_raw_fd()) {
            Ok(ws) if ws.ws_row > 0 && ws.ws_col > 0 => (ws.ws_row, ws.ws_col),
            _ => (24, 80),
        },
    }
}

/// Copies the host's window size to the pty.
pub(crate) fn copy_size(master: BorrowedFd<'_>) {
    let (rows, cols) = host_size();
    let ws = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = crate::sys::set_winsize(master.as_raw_fd(), &ws);
}

/// Reads what is available on `from` and writes it all to `to`; `false`
/// at end-of-file or error.
pub(crate) fn pump(from: BorrowedFd<'_>, to: &mut dyn Write) -> bool {
    let mut buf = [0u8; 8192];
    let mut file = std::fs::File::from(match from.try_clone_to_owned() {
        Ok(f) => f,
        Err(_) => return false,
    });
    match file.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).and_then(|()| to.flush()).is_ok(),
    }
}
