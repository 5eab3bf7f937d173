//! The seccomp filter, as reviewed data: every rule carries its reason.
//!
//! The filter is a denylist (default allow): the network namespace and the
//! mount view are the wall, seccomp is depth that closes the kernel
//! interfaces an agent never needs and that have let peers escape
//! (STYLE.md "Smells to avoid"). The rules are compiled with `seccompiler`;
//! `docs/sandbox.md` lists them with their cost.
//!
//! Three filters are installed, in this order:
//! 1. the rules below, refused with `EPERM` (seccompiler's prologue also
//!    kills a process that calls through a foreign architecture, e.g. the
//!    i386 `int 0x80` entry, whose syscall numbers differ);
//! 2. `clone3` answered with `ENOSYS`, so that libc falls back to `clone`,
//!    whose flags a filter can read (clone3 passes them in memory);
//! 3. x32 syscalls (numbers with bit 30 set, same audit architecture as
//!    x86_64) refused with `EPERM`: four instructions written by hand,
//!    because seccompiler matches syscall numbers one by one.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// When a rule refuses a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// When argument `arg` masked with `mask` equals `value`.
    ArgMasked {
        /// Argument index.
        arg: u8,
        /// Mask.
        mask: u64,
        /// Value after masking.
        value: u64,
    },
    /// When argument `arg` equals `value` (32-bit compare).
    ArgEq {
        /// Argument index.
        arg: u8,
        /// Value.
        value: u64,
    },
}

/// One rule of the filter.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The syscall name (for docs and errors).
    pub name: &'static str,
    /// The syscall number on this architecture.
    pub nr: i64,
    /// When it is refused.
    pub when: When,
    /// Why.
    pub reason: &'static str,
}

const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
// socket(2) type argument: the low 4 bits are the type, the rest flags.
const SOCK_TYPE_MASK: u64 = 0xf;

macro_rules! rule {
    ($name:ident, $when:expr, $reason:expr) => {
        Rule {
            name: stringify!($name),
            nr: libc::$name as i64,
            when: $when,
            reason: $reason,
        }
    };
}

/// The rules, refused with `EPERM`.
pub fn rules() -> Vec<Rule> {
    use When::*;
    let newuser = ArgMasked {
        arg: 0,
        mask: CLONE_NEWUSER,
        value: CLONE_NEWUSER,
    };
    vec![
        rule!(
            SYS_unshare,
            newuser,
            "a new user namespace gives back every capability inside it and a large kernel attack surface (most container escapes start here)"
        ),
        rule!(
            SYS_clone,
            newuser,
            "same as unshare(CLONE_NEWUSER); clone's flags are in a register, so the filter can read them"
        ),
        rule!(
            SYS_setns,
            Always,
            "joining another namespace would leave the wall (the sandbox never needs it after setup)"
        ),
        rule!(
            SYS_mount,
            Always,
            "the mount view is fixed before exec; remounting could reveal or write what it hides"
        ),
        rule!(
            SYS_umount2,
            Always,
            "unmounting a decoy or a mask would reveal what it covers"
        ),
        rule!(SYS_pivot_root, Always, "changing the root after setup"),
        rule!(SYS_move_mount, Always, "new mount API: moves mounts"),
        rule!(
            SYS_fsopen,
            Always,
            "new mount API: creates a file-system context"
        ),
        rule!(
            SYS_fsconfig,
            Always,
            "new mount API: configures a file-system context"
        ),
        rule!(
            SYS_fsmount,
            Always,
            "new mount API: makes a mount from a context"
        ),
        rule!(
            SYS_fspick,
            Always,
            "new mount API: reconfigures an existing mount"
        ),
        rule!(SYS_open_tree, Always, "new mount API: clones mounts"),
        rule!(
            SYS_mount_setattr,
            Always,
            "new mount API: changes mount flags (e.g. read-only)"
        ),
        rule!(
            SYS_ptrace,
            Always,
            "tracing reads and writes another process's memory; blocks debuggers inside too"
        ),
        rule!(
            SYS_process_vm_readv,
            Always,
            "reads another process's memory"
        ),
        rule!(
            SYS_process_vm_writev,
            Always,
            "writes another process's memory"
        ),
        rule!(SYS_kexec_load, Always, "loads a new kernel"),
        rule!(SYS_kexec_file_load, Always, "loads a new kernel"),
        rule!(
            SYS_bpf,
            Always,
            "eBPF programs are a large kernel attack surface and can observe the host"
        ),
        rule!(
            SYS_perf_event_open,
            Always,
            "performance events leak host information and have a history of kernel bugs"
        ),
        rule!(
            SYS_keyctl,
            Always,
            "the kernel keyring is not namespaced: it can hold host secrets"
        ),
        rule!(SYS_add_key, Always, "the kernel keyring is not namespaced"),
        rule!(
            SYS_request_key,
            Always,
            "the kernel keyring is not namespaced"
        ),
        rule!(
            SYS_userfaultfd,
            Always,
            "used to win kernel races in exploits"
        ),
        rule!(
            SYS_io_uring_setup,
            Always,
            "io_uring can open sockets and files without the syscalls this filter sees"
        ),
        rule!(SYS_io_uring_enter, Always, "io_uring, see io_uring_setup"),
        rule!(
            SYS_io_uring_register,
            Always,
            "io_uring, see io_uring_setup"
        ),
        rule!(
            SYS_open_by_handle_at,
            Always,
            "opens files by handle, bypassing the path walk (the 'shocker' container escape)"
        ),
        rule!(
            SYS_name_to_handle_at,
            Always,
            "the other half of open_by_handle_at"
        ),
        rule!(
            SYS_syslog,
            Always,
            "the kernel log is not namespaced and leaks host information"
        ),
        rule!(
            SYS_socket,
            ArgEq {
                arg: 0,
                value: libc::AF_PACKET as u64
            },
            "packet sockets see and forge link-level traffic"
        ),
        rule!(
            SYS_socket,
            ArgMasked {
                arg: 1,
                mask: SOCK_TYPE_MASK,
                value: libc::SOCK_RAW as u64
            },
            "raw sockets forge IP packets, bypassing the proxy"
        ),
        rule!(
            SYS_socket,
            ArgEq {
                arg: 0,
                value: libc::AF_VSOCK as u64
            },
            "vsock reaches the host or hypervisor without the network namespace"
        ),
        rule!(
            SYS_socketpair,
            ArgEq {
                arg: 0,
                value: libc::AF_VSOCK as u64
            },
            "vsock, see socket"
        ),
        rule!(
            SYS_ioctl,
            ArgMasked {
                arg: 1,
                mask: 0xffff_ffff,
                value: libc::TIOCSTI
            },
            "TIOCSTI types into a terminal's input: commands run outside the wall if a host terminal is reachable"
        ),
        rule!(
            SYS_ioctl,
            ArgMasked {
                arg: 1,
                mask: 0xffff_ffff,
                value: libc::TIOCLINUX
            },
            "TIOCLINUX can paste the console selection into the input, like TIOCSTI"
        ),
        rule!(
            SYS_personality,
            ArgMasked {
                arg: 0,
                mask: 0x0040_0000,
                value: 0x0040_0000
            },
            "ADDR_NO_RANDOMIZE turns off address-space randomisation, which helps exploits"
        ),
    ]
}

fn condition(when: When) -> Result<Option<SeccompCondition>, seccompiler::BackendError> {
    match when {
        When::Always => Ok(None),
        When::ArgMasked { arg, mask, value } => SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )
        .map(Some),
        When::ArgEq { arg, value } => {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).map(Some)
        }
    }
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the seccomp filter: {0}")]
pub struct CompileError(String);

/// Compiles the deny rules into a BPF program (`EPERM`).
pub fn deny_program() -> Result<BpfProgram, CompileError> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut always: Vec<i64> = Vec::new();
    for r in rules() {
        match condition(r.when).map_err(|e| CompileError(format!("{}: {e}", r.name)))? {
            None => {
                always.push(r.nr);
                map.insert(r.nr, Vec::new());
            }
            Some(c) => {
                if always.contains(&r.nr) {
                    continue;
                }
                let rule = SeccompRule::new(vec![c])
                    .map_err(|e| CompileError(format!("{}: {e}", r.name)))?;
                map.entry(r.nr).or_default().push(rule);
            }
        }
    }
    let filter = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        target_arch(),
    )
    .map_err(|e| CompileError(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| CompileError(e.to_string()))
}

/// Compiles the `clone3` → `ENOSYS` filter.
pub fn clone3_program() -> Result<BpfProgram, CompileError> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    map.insert(libc::SYS_clone3, Vec::new());
    let filter = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        target_arch(),
    )
    .map_err(|e| CompileError(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| CompileError(e.to_string()))
}

/// The x32 filter: refuse syscall numbers with `__X32_SYSCALL_BIT` set.
///
/// Hand-written because seccompiler matches numbers one by one; four
/// instructions, each commented, tested by `x32_program_shape`.
pub fn x32_program() -> BpfProgram {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let eperm = u32::try_from(libc::EPERM).unwrap_or(1);
    vec![
        // A = seccomp_data.nr (offset 0)
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A >= X32_SYSCALL_BIT goto deny else goto allow
        sock_filter {
            code: BPF_JGE_K,
            jt: 1,
            jf: 0,
            k: X32_SYSCALL_BIT,
        },
        // allow
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
        // deny: EPERM
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | eperm,
        },
    ]
}

/// The three filters, compiled: the sandbox's init compiles them while it
/// waits (they are the same for every run), the agent installs them.
#[derive(Debug)]
pub struct Filters {
    deny: BpfProgram,
    clone3: BpfProgram,
    #[cfg(target_arch = "x86_64")]
    x32: BpfProgram,
}

impl Filters {
    /// Compiles the filters.
    pub fn compile() -> Result<Filters, String> {
        Ok(Filters {
            deny: deny_program().map_err(|e| e.to_string())?,
            clone3: clone3_program().map_err(|e| e.to_string())?,
            #[cfg(target_arch = "x86_64")]
            x32: x32_program(),
        })
    }

    /// Installs the filters on the calling thread. `no_new_privs` must be
    /// set already (it is, since step 1 of the sandbox).
    pub fn install(&self) -> Result<(), String> {
        seccompiler::apply_filter(&self.deny)
            .map_err(|e| format!("cannot install the deny filter: {e}"))?;
        seccompiler::apply_filter(&self.clone3)
            .map_err(|e| format!("cannot install the clone3 filter: {e}"))?;
        #[cfg(target_arch = "x86_64")]
        seccompiler::apply_filter(&self.x32)
            .map_err(|e| format!("cannot install the x32 filter: {e}"))?;
        Ok(())
    }
}

/// Compiles and installs the three filters on the calling thread.
/// `no_new_privs` must be set already.
pub fn install() -> Result<(), String> {
    Filters::compile()?.install()
}

/// For the test harness: sets `no_new_privs` and installs the filters on
/// the calling thread, with nothing else of the wall, so that a checker
/// executed next shows which calls the filter alone refuses.
pub fn install_for_test() -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    install()
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_reason_and_compiles() {
        for r in rules() {
            assert!(r.reason.len() > 10, "rule {} has no real reason", r.name);
            assert!(r.nr >= 0, "rule {} has no syscall number", r.name);
        }
        let prog = deny_program().expect("deny filter compiles");
        assert!(prog.len() < 4096, "filter too long: {}", prog.len());
        clone3_program().expect("clone3 filter compiles");
    }

    fn names() -> Vec<&'static str> {
        rules().iter().map(|r| r.name).collect()
    }

    // Each syscall family the issue lists is in the filter (codex
    // `network_seccomp_rules_deny_io_uring_syscalls`).
    #[test]
    fn denies_io_uring_syscalls() {
        for n in [
            "SYS_io_uring_setup",
            "SYS_io_uring_enter",
            "SYS_io_uring_register",
        ] {
            assert!(names().contains(&n), "{n} missing");
        }
    }

    #[test]
    fn denies_new_mount_api_and_mount() {
        for n in [
            "SYS_mount",
            "SYS_umount2",
            "SYS_pivot_root",
            "SYS_move_mount",
            "SYS_fsopen",
            "SYS_fsmount",
            "SYS_fspick",
            "SYS_open_tree",
            "SYS_mount_setattr",
        ] {
            assert!(names().contains(&n), "{n} missing");
        }
    }

    #[test]
    fn denies_tracing_keyring_kernel_interfaces() {
        for n in [
            "SYS_ptrace",
            "SYS_process_vm_readv",
            "SYS_process_vm_writev",
            "SYS_kexec_load",
            "SYS_kexec_file_load",
            "SYS_bpf",
            "SYS_perf_event_open",
            "SYS_keyctl",
            "SYS_add_key",
            "SYS_request_key",
            "SYS_userfaultfd",
            "SYS_open_by_handle_at",
            "SYS_syslog",
            "SYS_setns",
        ] {
            assert!(names().contains(&n), "{n} missing");
        }
    }

    #[test]
    fn denies_new_user_namespaces_only_by_flag() {
        let rs = rules();
        for n in ["SYS_unshare", "SYS_clone"] {
            let r = rs.iter().find(|r| r.name == n).expect("rule present");
            assert_eq!(
                r.when,
                When::ArgMasked {
                    arg: 0,
                    mask: CLONE_NEWUSER,
                    value: CLONE_NEWUSER
                }
            );
        }
    }

    #[test]
    fn denies_raw_packet_vsock_sockets_and_tty_injection() {
        let rs = rules();
        let socket: Vec<When> = rs
            .iter()
            .filter(|r| r.name == "SYS_socket")
            .map(|r| r.when)
            .collect();
        assert!(socket.contains(&When::ArgEq {
            arg: 0,
            value: libc::AF_PACKET as u64
        }));
        assert!(socket.contains(&When::ArgEq {
            arg: 0,
            value: libc::AF_VSOCK as u64
        }));
        assert!(socket.contains(&When::ArgMasked {
            arg: 1,
            mask: 0xf,
            value: libc::SOCK_RAW as u64
        }));
        let ioctl: Vec<When> = rs
            .iter()
            .filter(|r| r.name == "SYS_ioctl")
            .map(|r| r.when)
            .collect();
        assert!(ioctl.contains(&When::ArgMasked {
            arg: 1,
            mask: 0xffff_ffff,
            value: libc::TIOCSTI
        }));
        assert!(ioctl.contains(&When::ArgMasked {
            arg: 1,
            mask: 0xffff_ffff,
            value: libc::TIOCLINUX
        }));
    }

    #[test]
    fn x32_program_shape() {
        let p = x32_program();
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].k, 0x4000_0000);
        assert_eq!(p[3].k & 0xffff, libc::EPERM as u32);
        assert_eq!(p[2].k, 0x7fff_0000);
    }
}
