//! Every `unsafe` block and every raw syscall of blastwall lives here.
//!
//! Everything else in the crate calls the safe wrappers below, or safe
//! wrappers from `nix`, `landlock` and `seccompiler`. Each block says which
//! preconditions the call has and why they hold at that point
//! (STYLE.md "unsafe and syscalls"; firecracker `CONTRIBUTING.md`).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::Pid;

/// What the freshly cloned child does before it becomes the sandbox init.
///
/// Everything is prepared by the parent before `clone`, so that the child
/// between `clone` and `execve` only makes async-signal-safe raw syscalls
/// and touches no allocator or lock (the supervisor may be multi-threaded).
#[derive(Debug)]
pub(crate) struct PreparedExec {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Read end of the start pipe; the child waits for one byte on it.
    sync_read: RawFd,
    /// Write end of the start pipe, which the child closes so that the
    /// supervisor's death reads as end-of-file.
    sync_write: RawFd,
    /// Descriptors that must survive `execve` (their close-on-exec flag is
    /// cleared in the child only, so no other fork of the supervisor
    /// inherits them).
    keep: Vec<RawFd>,
    /// Drop the supplementary groups (the supervisor is root).
    drop_groups: bool,
    /// Write end of the ready pipe: the child writes one byte once the
    /// supervisor may write its id maps, then closes it.
    ready_write: RawFd,
}

impl PreparedExec {
    // Each argument is one descriptor or list the child needs; a builder
    // would only add code on the path that must stay simple.
    #[expect(clippy::too_many_arguments, reason = "one plain value per child input")]
    pub(crate) fn new(
        path: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        sync_read: RawFd,
        sync_write: RawFd,
        keep: Vec<RawFd>,
        drop_groups: bool,
        ready_write: RawFd,
    ) -> Self {
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        PreparedExec {
            path,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            sync_read,
            sync_write,
            keep,
            drop_groups,
            ready_write,
        }
    }
}

/// Raw `clone(2)` with a NULL stack, like `fork(2)`: the child runs on a
/// copy-on-write copy of the calling thread's stack and of the memory.
/// Returns `None` in the child, the child's pid in the caller.
///
/// # Safety
///
/// What the child may do is the caller's to ensure: in a multi-threaded
/// process, only raw async-signal-safe syscalls on data prepared before
/// the clone (another thread may have held any lock), leaving with
/// `_exit`/`execve`. `flags` must hold no `CLONE_*SETTID`/`CLONE_SETTLS`
/// (no pointer is passed) and no `CLONE_VM`.
unsafe fn fork_like_clone(flags: libc::c_ulong) -> io::Result<Option<Pid>> {
    // SAFETY: parent_tid, child_tid and tls are 0, and the caller passes
    // no flag that makes the kernel read or write them; with a NULL stack
    // the child gets a copy-on-write copy of this thread's stack, so
    // returning from this function in the child is sound.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        return Ok(None);
    }
    let pid = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    Ok(Some(Pid::from_raw(pid)))
}

/// Clones a child into new namespaces (`flags` are `CLONE_NEW*` flags) that
/// waits for the start byte and then executes `prepared`.
///
/// Returns the child's pid as the supervisor sees it.
pub(crate) fn clone_into_namespaces(
    flags: libc::c_int,
    prepared: &PreparedExec,
) -> io::Result<Pid> {
    let clone_flags = libc::c_ulong::try_from(flags | libc::SIGCHLD)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the flags are CLONE_NEW* and SIGCHLD only. The parent may
    // have other threads, so the child (`child_after_clone`) uses only raw
    // async-signal-safe syscalls on data prepared before the clone (no
    // allocation, no locks) and leaves with `_exit`/`execve`, never
    // returning into Rust code.
    // JUSTIFICATION: std::process and nix::unistd::fork cannot pass
    // CLONE_NEWUSER|CLONE_NEWPID...; unshare(CLONE_NEWPID) would need a
    // second fork and CLONE_NEWUSER fails in a multi-threaded process.
    match unsafe { fork_like_clone(clone_flags)? } {
        Some(pid) => Ok(pid),
        // SAFETY: we are the child of a fork-like clone; `child_after_clone`
        // only makes async-signal-safe syscalls and never returns.
        None => unsafe { child_after_clone(prepared) },
    }
}

/// The child side of [`clone_into_namespaces`].
///
/// # Safety
///
/// Must only be called in the child of a fork-like clone; it never returns.
unsafe fn child_after_clone(p: &PreparedExec) -> ! {
    // SAFETY: every call below is a raw async-signal-safe
    // syscall on integers or on pointers into `p`, which the parent built
    // before the clone and which is still mapped (copy-on-write) here;
    // `argv_ptrs`/`envp_ptrs` are NULL-terminated arrays of pointers into
    // CStrings owned by `p`.
    unsafe {
        // Die with the thread that cloned us (it is the supervisor thread
        // that waits for the sandbox); set before anything can block.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // An unprivileged supervisor can write our id maps only while we
        // are dumpable (/proc/<pid>/uid_map belongs to root otherwise). The
        // window holds a copy-on-write image of the supervisor, readable
        // by the user's own host processes until the start byte; see
        // docs/sandbox.md "What the sandbox does not protect".
        if !p.drop_groups {
            libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong, 0, 0, 0);
        }
        // Tell the supervisor it may write our id maps now.
        let one = 1u8;
        libc::write(p.ready_write, (&raw const one).cast(), 1);
        libc::close(p.ready_write);
        // Our copy of the write end must go, so that the supervisor's death
        // shows as end-of-file on the read end (lifeline).
        libc::close(p.sync_write);
        // Wait for the supervisor to write our uid/gid maps and cgroup.
        let mut byte = 0u8;
        loop {
            let n = libc::read(p.sync_read, (&raw mut byte).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // End-of-file: the supervisor gave up or died.
            libc::_exit(1);
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0);
        // Become the namespace's root, which the supervisor mapped to the
        // unprivileged host uid/gid. A root supervisor's child still has
        // host uid 0 (unmapped here) until it does so; an unprivileged one
        // already is the mapped uid and this is a no-op. Groups first: the
        // root supervisor's gid 0 must not follow us.
        if p.drop_groups
            && libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
        {
            libc::_exit(124);
        }
        if libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) != 0
            || libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32) != 0
        {
            libc::_exit(124);
        }
        // A credential change clears the parent-death signal: set it again.
        // (If the supervisor died in between, the init sees the lifeline
        // closed right after it sets the signal itself.)
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        for &fd in &p.keep {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
        libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        libc::_exit(127)
    }
}

/// Forks a single-threaded process (the sandbox init forks the agent; `main`
/// forks the spawner of the init cloned ahead).
pub(crate) fn fork_single_threaded() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: only called from a process with one thread: the sandbox init,
    // which starts no threads, and `main` before it starts any
    // (`crate::ahead`); each caller checks `thread_count() == 1`. The child
    // cannot inherit a lock held by another thread; it may allocate freely.
    unsafe { nix::unistd::fork() }
}

/// Number of threads of this process, from `/proc/self/status`.
pub(crate) fn thread_count() -> Option<u64> {
    // One read: the file is about 1.5 KB, and read_to_string would grow its
    // buffer from 32 bytes, one read each time.
    let mut buf = Vec::with_capacity(8192);
    std::io::Read::read_to_end(
        &mut std::fs::File::open("/proc/self/status").ok()?,
        &mut buf,
    )
    .ok()?;
    let status = String::from_utf8(buf).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Drops every capability: bounding set, ambient set, and the effective,
/// permitted and inheritable sets.
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the
    // capset below removes.
    for cap in 0..=63u32 {
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes two integers and touches
        // no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // EINVAL: past the last capability this kernel knows.
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(e);
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integers only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset(2) with a version-3 header reads exactly two CapData
    // entries (the 64 capability bits), which `data` holds; both pointers
    // are valid for the duration of the call. pid 0 means this thread.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Flags for [`mount_setattr`], from `linux/mount.h`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;

/// Sets mount attributes on the mount at `path` and, if `recursive`, on
/// every mount below it (mount_setattr(2), Linux 5.12).
pub(crate) fn mount_setattr(path: &Path, recursive: bool, set: u64, clear: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = path_cstring(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a NUL-terminated path that lives across the call;
    // `attr` is a MOUNT_ATTR_SIZE_VER0 (32 bytes) struct passed with its
    // exact size; the kernel only reads it.
    // JUSTIFICATION: neither nix nor rustix wraps mount_setattr; the old
    // MS_REMOUNT|MS_BIND way needs one call per submount and the locked
    // flags of each repeated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings a network interface up (the loopback of the new network
/// namespace).
pub(crate) fn interface_up(name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name from `req` and
    // writes the flags into it; `req` is a valid, writable ifreq.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
    }
    // SAFETY: SIOCSIFFLAGS reads the name and flags from the valid `req`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The Landlock ABI version of the running kernel, or the errno that says
/// why there is none (ENOSYS: not built in; EOPNOTSUPP: not enabled).
pub(crate) fn landlock_abi() -> Result<i32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag, landlock_create_ruleset takes a NULL
    // attribute pointer and size 0 and only returns an integer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    i32::try_from(r).map_err(|_| Errno::EOVERFLOW)
}

/// Removes the dynamic-loader variables from this process's environment.
///
/// Called by [`crate::harden_self`], the first line of `main`, before any
/// thread exists.
pub(crate) fn strip_loader_env() {
    // The names are read straight from `environ`: `std::env::vars_os` would
    // copy every value (secrets among them) into heap blocks that stay in
    // the process's memory after they are freed, and the sandbox's init is
    // cloned from this memory (`crate::ahead`).
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    // SAFETY: `environ` is the NULL-terminated array of NUL-terminated
    // strings libc keeps; harden_self is documented to be the first call
    // of `main`, before the program starts any thread, so nothing changes
    // it while it is read here.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p).to_bytes();
            if let Some(name) = entry
                .strip_prefix(b"LD_")
                .and_then(|_| entry.split(|&b| b == b'=').next())
            {
                names.push(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_owned(),
                );
            }
            p = p.add(1);
        }
    }
    for name in names {
        // SAFETY: remove_var is unsafe because another thread could read the
        // environment at the same time; harden_self is documented to be the
        // first call of `main`, before the program starts any thread.
        unsafe { std::env::remove_var(name) };
    }
}

unsafe extern "C" {
    static mut environ: *const *const libc::c_char;
}

/// Ends this process at once: no atexit handler, no flush (for a forked
/// copy whose buffers are its parent's).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes an integer and does not return.
    unsafe { libc::_exit(code) }
}

/// The start and end addresses of this process's argument and environment
/// blocks (`/proc/self/stat` fields 48 to 51).
fn arg_env_blocks() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: field 3 first.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<usize>().ok());
    Some([at(48)?, at(49)?, at(50)?, at(51)?])
}

/// Empties this process's environment and zeroes the strings the kernel
/// placed for it (what `/proc/<pid>/environ` shows). For a process that is
/// single-threaded and has not read its environment into other memory.
pub(crate) fn scrub_environment() -> io::Result<()> {
    let [_, _, env_start, env_end] =
        arg_env_blocks().ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
    // SAFETY: clearenv only sets `environ` to NULL (the array is the
    // kernel's, never allocated by libc here); the caller is
    // single-threaded, so no getenv runs beside it.
    if unsafe { libc::clearenv() } != 0 {
        return Err(io::Error::other("clearenv failed"));
    }
    if env_end > env_start {
        // SAFETY: [env_start, env_end) is the environment block on this
        // process's initial stack, mapped and writable for its whole life;
        // after clearenv `environ` no longer points into it. Pointers kept
        // elsewhere (the dynamic loader's to LD_* strings) still point at
        // valid memory, which reads as empty strings.
        unsafe { std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start) };
    }
    Ok(())
}

/// Overwrites this process's argument block (what `/proc/<pid>/cmdline`
/// shows) with `args`, NUL-separated, cut to the block's size and padded
/// with NULs. `std::env::args` reads the new text afterwards.
pub(crate) fn rewrite_cmdline(args: &[u8]) {
    let Some([arg_start, arg_end, _, _]) = arg_env_blocks() else {
        return;
    };
    let len = arg_end.saturating_sub(arg_start);
    if len == 0 {
        return;
    }
    let n = args.len().min(len - 1);
    // SAFETY: [arg_start, arg_end) is the argument block on this process's
    // initial stack, mapped and writable for its whole life; the strings
    // `argv` points to lie in it and stay NUL-terminated (the last byte is
    // written 0). The caller is single-threaded.
    unsafe {
        let base = arg_start as *mut u8;
        std::ptr::copy_nonoverlapping(args.as_ptr(), base, n);
        std::ptr::write_bytes(base.add(n), 0, len - n);
    }
}

/// `clone(2)` with `CLONE_PARENT` and `flags` (`CLONE_NEW*`), fork-like: the
/// child is a sibling of the caller (its parent, and its parent-death
/// signal's thread, are the caller's parent's) and runs on from here.
///
/// Returns `None` in the child, the child's pid in the caller.
///
/// Only for a single-threaded caller (checked): the child then holds no
/// lock another thread held and may allocate and run any code.
pub(crate) fn clone_sibling(flags: libc::c_int) -> io::Result<Option<Pid>> {
    if thread_count() != Some(1) {
        return Err(io::Error::other("the caller is not single-threaded"));
    }
    let clone_flags = libc::c_ulong::try_from(flags | libc::CLONE_PARENT | libc::SIGCHLD)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the flags are CLONE_NEW*, CLONE_PARENT and SIGCHLD only. The
    // caller is the only thread (checked above), so the child inherits no
    // lock held elsewhere and may return into Rust code. Unlike libc's
    // fork(), no atfork handler runs and
    // glibc's cached thread id (THREAD_SELF->tid) keeps the caller's: the
    // child must not use PI or robust pthread mutexes or anything else
    // that reads that id. The init does not (Rust's locks are futex words;
    // getpid, gettid and raise are system calls; it forks the agent with
    // libc's fork(), which sets the id anew).
    // JUSTIFICATION: fork(2) cannot create namespaces, CLONE_PARENT or
    // CLONE_NEWPID; nix's clone needs a separate stack and a callback.
    unsafe { fork_like_clone(clone_flags) }
}

/// Makes `fd` the controlling terminal of this (session leader) process.
pub(crate) fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and
    // touches no memory of ours.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Window size of a terminal.
pub(crate) fn get_winsize(fd: RawFd) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid, writable `ws`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ws)
}

/// Sets the window size of a terminal.
pub(crate) fn set_winsize(fd: RawFd, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads a winsize from the valid `ws`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, std::ptr::from_ref(ws)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Number of a probe argument that is a pointer no process has mapped.
///
/// Page 1 (address 4096) is below `vm.mmap_min_addr`, so the kernel answers
/// EFAULT for it and never reads or writes our memory.
pub(crate) const BAD_POINTER: u64 = 4096;

/// Calls syscall `nr` with six integer arguments and returns the result or
/// the errno. Only the fixed probe list in [`crate::probe`] uses it: every
/// argument there is an integer, an invalid descriptor or [`BAD_POINTER`].
pub(crate) fn probe_syscall(nr: libc::c_long, args: [u64; 6]) -> Result<i64, Errno> {
    // SAFETY: the probe list passes no pointer into our own memory (only
    // integers, -1 descriptors and the unmapped BAD_POINTER), so the kernel
    // cannot write into this process; the syscalls probed either fail
    // before any side effect or act only on the probing process (e.g.
    // unshare of a new user namespace for itself).
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// NUL-terminated copy of a path.
pub(crate) fn path_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Takes ownership of a descriptor this process inherited across `execve`
/// (the sandbox init's config, report and lifeline descriptors).
pub(crate) fn take_inherited_fd(raw: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD takes no pointer; it only tells whether `raw` is open.
    let r = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if raw < 3 || r < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `raw` is open (checked above), is not stdio, and its number
    // came from the supervisor's config for exactly this purpose: nothing
    // else in this freshly executed process owns or closes it, and each
    // number is taken once by `init_main`.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// Takes ownership of a descriptor received with SCM_RIGHTS.
pub(crate) fn take_received_fd(raw: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD takes no pointer; it only tells whether `raw` is open.
    let r = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if r < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the kernel installed `raw` in our table while receiving the
    // message; recvmsg's caller takes it exactly once and nothing else in
    // this process knows its number.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// Sets `sig` to `act` (SIG_IGN or SIG_DFL only) and returns the old action.
pub(crate) fn sigaction_ignore(
    sig: nix::sys::signal::Signal,
    act: &nix::sys::signal::SigAction,
) -> nix::Result<nix::sys::signal::SigAction> {
    if !matches!(
        act.handler(),
        nix::sys::signal::SigHandler::SigIgn | nix::sys::signal::SigHandler::SigDfl
    ) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: nix marks sigaction unsafe because a handler function must be
    // async-signal-safe; the action installed here is SIG_IGN or SIG_DFL
    // (checked above), which runs no code of ours.
    unsafe { nix::sys::signal::sigaction(sig, act) }
}

/// Restores an action returned by [`sigaction_ignore`].
pub(crate) fn sigaction_restore(
    sig: nix::sys::signal::Signal,
    old: &nix::sys::signal::SigAction,
) -> nix::Result<()> {
    // SAFETY: `old` is the action that was in place before
    // `sigaction_ignore`, installed by this program's own code, so putting
    // it back restores a handler the program already vouched for.
    unsafe { nix::sys::signal::sigaction(sig, old) }.map(drop)
}

/// Makes `fd` this process's stdin, stdout and stderr.
pub(crate) fn dup_onto_stdio(fd: RawFd) -> io::Result<()> {
    for target in 0..3 {
        // SAFETY: dup2 takes two integers. Replacing descriptors 0-2 is the
        // point: the agent child owns its stdio and nothing else in it
        // holds a Rust handle to the old descriptors' numbers beyond the
        // process-global std streams, which then write to the pty.
        // JUSTIFICATION: nix's dup2 wants an OwnedFd for the target, which
        // would close stdio when dropped.
        let r = unsafe { libc::dup2(fd, target) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the decoy watcher child needs, prepared before the fork: the
/// decoys' paths and a table for their watch descriptors.
#[derive(Debug)]
pub(crate) struct PreparedWatch {
    paths: Vec<CString>,
    /// The watch descriptor of each path, filled in by the child (in its
    /// copy-on-write copy).
    wds: Vec<libc::c_int>,
    /// Read end of the command pipe (its end-of-file stops the child).
    cmd_read: RawFd,
    /// Write end of the event pipe.
    out_write: RawFd,
    /// The supervisor's pid, to notice it died before the child set its
    /// parent-death signal.
    parent: libc::pid_t,
}

impl PreparedWatch {
    pub(crate) fn new(paths: Vec<CString>, cmd_read: RawFd, out_write: RawFd) -> Self {
        let wds = vec![-1; paths.len()];
        PreparedWatch {
            paths,
            wds,
            cmd_read,
            out_write,
            parent: libc::pid_t::try_from(std::process::id()).unwrap_or(0),
        }
    }
}

/// Forks the decoy watcher: a child of the supervisor that puts an inotify
/// watch (open, access) on each path, writes `ready\n` to `out_write`, then
/// one line per event (the path's index) until the command pipe reaches
/// end-of-file, then `done\n`, and exits. Exit status 1: a watch could not
/// be set.
///
/// A fork without `execve`: the child is this process's copy-on-write
/// image and starts in microseconds, where executing this (large) binary
/// again costs milliseconds on the critical path of every run. It pays
/// the SRCU grace period of closing its inotify instance (~10 ms) in its
/// own exit, which nobody waits for.
pub(crate) fn fork_decoy_watcher(prepared: &mut PreparedWatch) -> io::Result<Pid> {
    // SAFETY: the flags are SIGCHLD only: fork(2). The parent may have
    // other threads, so the child (`watcher_child`) uses only raw
    // async-signal-safe syscalls on memory prepared before the fork (no
    // allocation, no locks, no panics) and leaves with `_exit`.
    // JUSTIFICATION: libc's fork() would run atfork handlers in the child
    // for nothing; std::process would need an execve of this binary, the
    // cost this function exists to avoid.
    match unsafe { fork_like_clone(libc::SIGCHLD as libc::c_ulong)? } {
        Some(pid) => Ok(pid),
        // SAFETY: we are the child of a fork-like clone; `watcher_child`
        // only makes async-signal-safe syscalls and never returns.
        None => unsafe { watcher_child(prepared) },
    }
}

/// Writes all of `buf` to `fd`; `false` on error (the reader is gone).
///
/// # Safety
///
/// Raw write(2) on a caller-owned buffer; callable in a forked child.
unsafe fn write_all_raw(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; write(2) reads at most its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            // SAFETY: errno of this thread.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        let n = usize::try_from(n).unwrap_or(0);
        buf = buf.get(n..).unwrap_or(&[]);
    }
    true
}

/// The child side of [`fork_decoy_watcher`].
///
/// # Safety
///
/// Must only be called in the child of a fork-like clone; it never returns.
unsafe fn watcher_child(p: &mut PreparedWatch) -> ! {
    // SAFETY: every call below is a raw async-signal-safe syscall on
    // integers, on pointers into `p` (built by the parent before the fork,
    // mapped here copy-on-write; `paths` are NUL-terminated), or on stack
    // buffers of this function (`ign` is a zeroed `struct sigaction`, a
    // valid value for it, with SIG_IGN as its handler). Nothing allocates,
    // locks or can panic (slice accesses use `get`).
    unsafe {
        // Die with the supervisor thread; if it is gone already, leave.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != p.parent {
            libc::_exit(1);
        }
        // ^C and ^\ at the terminal are for the command inside (the
        // supervisor ignores them while the sandbox runs): the watcher must
        // not die of them, nor run a handler it inherited.
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        for sig in [libc::SIGINT, libc::SIGQUIT] {
            libc::sigaction(sig, &raw const ign, std::ptr::null_mut());
        }
        // Only the two pipes stay open: no other descriptor of the
        // supervisor (sockets, logs, pipes whose end-of-file matters)
        // lives on in this process.
        if libc::dup2(p.cmd_read, 0) < 0 || libc::dup2(p.out_write, 1) < 0 {
            libc::_exit(1);
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let ino = libc::inotify_init1(libc::IN_CLOEXEC);
        if ino < 0 {
            libc::_exit(1);
        }
        for (i, path) in p.paths.iter().enumerate() {
            let wd = libc::inotify_add_watch(ino, path.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS);
            if wd < 0 {
                libc::_exit(1);
            }
            if let Some(slot) = p.wds.get_mut(i) {
                *slot = wd;
            }
        }
        if !write_all_raw(1, b"ready\n") {
            libc::_exit(0);
        }
        // inotify events are 4-byte aligned: read into u32 words.
        let mut buf = [0u32; 1024];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: ino,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if libc::poll(fds.as_mut_ptr(), 2, -1) < 0 {
                continue;
            }
            let closing = fds[1].revents != 0;
            if fds[0].revents != 0 {
                let n = libc::read(ino, buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf));
                let n = usize::try_from(n).unwrap_or(0);
                let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n);
                let mut off = 0usize;
                // struct inotify_event: wd, mask, cookie, len, name[len].
                while let Some(head) = bytes.get(off..off + 16) {
                    let word = |k: usize| -> u32 {
                        let mut w = [0u8; 4];
                        if let Some(b) = head.get(k * 4..k * 4 + 4) {
                            w.copy_from_slice(b);
                        }
                        u32::from_ne_bytes(w)
                    };
                    let wd = libc::c_int::from_ne_bytes(word(0).to_ne_bytes());
                    let len = usize::try_from(word(3)).unwrap_or(usize::MAX);
                    off = off.saturating_add(16).saturating_add(len);
                    let Some(i) = p.wds.iter().position(|&w| w == wd) else {
                        continue;
                    };
                    // The index in decimal, then a newline.
                    let mut line = [0u8; 24];
                    let mut at = line.len() - 1;
                    line[at] = b'\n';
                    let mut v = i;
                    loop {
                        at -= 1;
                        line[at] = b'0' + u8::try_from(v % 10).unwrap_or(0);
                        v /= 10;
                        if v == 0 {
                            break;
                        }
                    }
                    if !write_all_raw(1, line.get(at..).unwrap_or(&[])) {
                        libc::_exit(0);
                    }
                }
            }
            if closing {
                // Pass on what is still queued, then say so.
                let mut probe = [libc::pollfd {
                    fd: ino,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                if libc::poll(probe.as_mut_ptr(), 1, 0) > 0 {
                    continue;
                }
                write_all_raw(1, b"done\n");
                libc::_exit(0);
            }
        }
    }
}

/// A detached copy of the mount tree at `path`, submounts included
/// (open_tree(2) with `OPEN_TREE_CLONE | AT_RECURSIVE`, Linux 5.2): not
/// attached anywhere, so nothing on the host sees what is done to it.
pub(crate) fn open_tree_clone(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = path_cstring(path)?;
    let recursive = libc::c_uint::try_from(libc::AT_RECURSIVE).unwrap_or(0);
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | recursive;
    // SAFETY: `c` is a NUL-terminated path that lives across the call; the
    // other arguments are integers. The kernel returns a new descriptor or
    // -1.
    // JUSTIFICATION: neither nix nor rustix (as used here) wraps open_tree.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_tree just returned `fd`, a new descriptor that nothing
    // else in this process owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Makes the detached tree `tree` an idmapped mount (every mount in it):
/// file owners are shown through the id mapping of user namespace
/// `userns` (mount_setattr(2) with `MOUNT_ATTR_IDMAP`, Linux 5.12; the
/// filesystem must support it).
pub(crate) fn mount_setattr_idmap(
    tree: std::os::fd::BorrowedFd<'_>,
    userns: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
    };
    // SAFETY: `tree` and `userns` are open descriptors borrowed for the
    // call; the path is the empty C string with AT_EMPTY_PATH (act on
    // `tree` itself); `attr` is a MOUNT_ATTR_SIZE_VER0 (32 bytes) struct
    // passed with its exact size, only read by the kernel.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached tree `tree` on `target` in this process's mount
/// namespace (move_mount(2) with `MOVE_MOUNT_F_EMPTY_PATH`, Linux 5.2).
pub(crate) fn move_mount_tree(tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let c = path_cstring(target)?;
    // SAFETY: `tree` is an open descriptor borrowed for the call, the
    // source path is the empty C string with MOVE_MOUNT_F_EMPTY_PATH (the
    // tree itself), `c` a NUL-terminated path living across the call.
    // JUSTIFICATION: neither nix nor rustix (as used here) wraps
    // move_mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
