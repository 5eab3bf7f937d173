//! Syscall probes for the checker that runs inside the wall (bubblewrap
//! `tests/try-syscall.c`): each forbidden syscall is called with harmless
//! arguments (a bad descriptor, an unmapped pointer, an invalid flag), so
//! that EBADF/EFAULT/EINVAL/ESRCH mean "the kernel got the call, no side
//! effect" and EPERM/ENOSYS mean "refused before the kernel acted".
//!
//! Some calls need a capability the agent never has; the kernel then
//! answers EPERM even without the filter. [`Probe::cap_gated`] marks them:
//! they prove the filter only where the prober has the capability (the
//! test suite runs the checker once under the filter alone, as root).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::sys::BAD_POINTER as BAD;

/// One probe.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Name, as in the seccomp rules.
    pub name: &'static str,
    /// Syscall number.
    pub nr: i64,
    /// Arguments.
    pub args: [u64; 6],
    /// The errno that means "refused" for this probe (EPERM, or ENOSYS for
    /// clone3).
    pub refused: i32,
    /// The kernel itself refuses it with EPERM without a capability.
    pub cap_gated: bool,
}

const NEG1: u64 = u64::MAX;

macro_rules! p {
    ($nr:ident, [$($a:expr),*], $refused:expr, $gated:expr) => {{
        let mut args = [0u64; 6];
        let given: &[u64] = &[$($a),*];
        let mut i = 0;
        while i < given.len() && i < 6 {
            args[i] = given[i];
            i += 1;
        }
        Probe { name: stringify!($nr), nr: libc::$nr as i64, args, refused: $refused, cap_gated: $gated }
    }};
}

/// The probes, each harmless when allowed.
pub fn probes() -> Vec<Probe> {
    let eperm = libc::EPERM;
    let newuser = libc::CLONE_NEWUSER as u64;
    vec![
        // clone with CLONE_NEWUSER|CLONE_FS is EINVAL in the kernel: no child.
        p!(SYS_clone, [newuser | libc::CLONE_FS as u64], eperm, false),
        p!(SYS_clone3, [BAD, 88], libc::ENOSYS, false),
        p!(SYS_setns, [NEG1, 0], eperm, false),
        p!(SYS_mount, [BAD, BAD, BAD, 0, BAD], eperm, false),
        p!(SYS_umount2, [BAD, 0], eperm, false),
        p!(SYS_pivot_root, [BAD, BAD], eperm, true),
        p!(SYS_move_mount, [NEG1, BAD, NEG1, BAD, 0], eperm, true),
        p!(SYS_fsopen, [BAD, 0], eperm, true),
        p!(SYS_fsconfig, [NEG1, 0, 0, 0, 0], eperm, false),
        p!(SYS_fsmount, [NEG1, 0, 0], eperm, true),
        p!(SYS_fspick, [NEG1, BAD, 0], eperm, true),
        p!(SYS_open_tree, [NEG1, BAD, 0], eperm, false),
        p!(SYS_mount_setattr, [NEG1, BAD, 0, BAD, 0], eperm, false),
        // PTRACE_PEEKDATA of pid 0, which is never a tracee: ESRCH.
        p!(
            SYS_ptrace,
            [libc::PTRACE_PEEKDATA as u64, 0, 0, 0],
            eperm,
            false
        ),
        p!(SYS_process_vm_readv, [0, 0, 0, 0, 0, 1], eperm, false),
        p!(SYS_process_vm_writev, [0, 0, 0, 0, 0, 1], eperm, false),
        p!(SYS_kexec_load, [0, 9999, 0, 0], eperm, true),
        p!(SYS_kexec_file_load, [NEG1, NEG1, 0, 0, 0], eperm, true),
        p!(SYS_bpf, [NEG1, 0, 0], eperm, false),
        p!(SYS_perf_event_open, [BAD, 0, NEG1, NEG1, 0], eperm, false),
        p!(SYS_keyctl, [NEG1, 0, 0, 0, 0], eperm, false),
        p!(SYS_add_key, [BAD, BAD, 0, 0, 0], eperm, false),
        p!(SYS_request_key, [BAD, BAD, 0, 0], eperm, false),
        // UFFD_USER_MODE_ONLY passes the sysctl check; bit 30 is invalid.
        p!(SYS_userfaultfd, [1 | (1 << 30)], eperm, false),
        p!(SYS_io_uring_setup, [1, BAD], eperm, false),
        p!(SYS_io_uring_enter, [NEG1, 0, 0, 0, 0, 0], eperm, false),
        p!(SYS_io_uring_register, [NEG1, 0, 0, 0], eperm, false),
        p!(SYS_open_by_handle_at, [NEG1, BAD, 0], eperm, true),
        p!(
            SYS_name_to_handle_at,
            [NEG1, BAD, BAD, BAD, 0],
            eperm,
            false
        ),
        // SYSLOG_ACTION_SIZE_BUFFER: allowed even with dmesg_restrict.
        p!(SYS_syslog, [10, 0, 0], eperm, false),
        p!(
            SYS_socket,
            [libc::AF_PACKET as u64, libc::SOCK_RAW as u64, 0],
            eperm,
            true
        ),
        p!(
            SYS_socket,
            [libc::AF_INET as u64, libc::SOCK_RAW as u64, 255],
            eperm,
            true
        ),
        p!(
            SYS_socket,
            [libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0],
            eperm,
            false
        ),
        p!(SYS_ioctl, [NEG1, libc::TIOCSTI, BAD], eperm, false),
        p!(SYS_ioctl, [NEG1, libc::TIOCLINUX, BAD], eperm, false),
        // unshare(CLONE_NEWUSER) really creates a namespace for the prober
        // when allowed, so it runs last.
        p!(SYS_unshare, [newuser], eperm, false),
    ]
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// The errno, or 0 when the call succeeded.
    pub errno: i32,
    /// The call was refused (the probe's refusal errno).
    pub refused: bool,
    /// The kernel refuses it without a capability anyway.
    pub cap_gated: bool,
}

/// Runs every probe in this process.
pub fn run_probes() -> Vec<ProbeResult> {
    probes()
        .into_iter()
        .map(|p| {
            let errno = match crate::sys::probe_syscall(p.nr, p.args) {
                Ok(_) => 0,
                Err(e) => e as i32,
            };
            ProbeResult {
                name: format!("{}{}", p.name.trim_start_matches("SYS_"), suffix(&p)),
                errno,
                refused: errno == p.refused,
                cap_gated: p.cap_gated,
            }
        })
        .collect()
}

fn suffix(p: &Probe) -> String {
    match p.name {
        "SYS_socket" => format!("({},{})", p.args[0], p.args[1]),
        "SYS_ioctl" => format!("({:#x})", p.args[1]),
        _ => String::new(),
    }
}
