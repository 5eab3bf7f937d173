//! `blastwall doctor`: what this host offers the wall, what is missing,
//! and the exact fix.
#![forbid(unsafe_code)]

use serde::Serialize;

/// ok / missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// Available.
    Ok,
    /// Available in part (e.g. an older Landlock ABI).
    Partial,
    /// Not available.
    Missing,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked (`user-namespaces`, `landlock`, …).
    pub name: String,
    /// The result.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// The exact fix, when not ok.
    pub fix: Option<String>,
    /// `run` cannot work without it (no manifest can accept it missing).
    pub required: bool,
}

/// Every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// `run` can work here (every required check is ok).
    pub can_run: bool,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn check(
    name: &str,
    status: CheckStatus,
    detail: String,
    fix: Option<String>,
    required: bool,
) -> Check {
    Check {
        name: name.to_owned(),
        status,
        detail,
        fix,
        required,
    }
}

/// Checks the host. Probes user namespaces and overlayfs by trying them in
/// a short-lived child (`unshare -U` through this binary is not needed:
/// the probe forks).
pub fn doctor() -> DoctorReport {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();

    // User namespaces.
    let max = read("/proc/sys/user/max_user_namespaces");
    let debian = read("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let probe = crate::supervisor::probe_namespaces();
    let (status, detail, fix) = match &probe.userns {
        Ok(()) => (
            CheckStatus::Ok,
            format!(
                "user namespaces can be created (max_user_namespaces={})",
                max.as_deref().unwrap_or("?")
            ),
            None,
        ),
        Err(e) => {
            let fix = if max.as_deref() == Some("0") {
                "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)"
                    .to_owned()
            } else if debian.as_deref() == Some("0") {
                "sysctl -w kernel.unprivileged_userns_clone=1".to_owned()
            } else if apparmor.as_deref() == Some("1") && !root {
                "Ubuntu's AppArmor restricts unprivileged user namespaces: add an AppArmor profile for blastwall granting `userns,` (see docs/deploy.md), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".to_owned()
            } else {
                "run outside a container that forbids nested namespaces, or with a seccomp profile that allows clone(CLONE_NEWUSER)".to_owned()
            };
            (
                CheckStatus::Missing,
                format!("cannot create a user namespace: {e}"),
                Some(fix),
            )
        }
    };
    checks.push(check("user-namespaces", status, detail, fix, true));
    if let Some(a) = &apparmor {
        let ok = a == "0" || root;
        checks.push(check(
            "apparmor-userns-restriction",
            if ok { CheckStatus::Ok } else { CheckStatus::Missing },
            format!("kernel.apparmor_restrict_unprivileged_userns={a}"),
            (!ok).then(|| "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for blastwall with `userns,`".to_owned()),
            false,
        ));
    }
    let (status, detail, fix) = match &probe.overlay {
        Ok(()) => (
            CheckStatus::Ok,
            "overlayfs mounts inside a user namespace (userxattr)".to_owned(),
            None,
        ),
        Err(e) => (
            CheckStatus::Missing,
            format!("overlayfs in a user namespace failed: {e}"),
            Some(
                "Linux 5.11 or later with CONFIG_OVERLAY_FS; or use project mode `ro`/`rw`"
                    .to_owned(),
            ),
        ),
    };
    checks.push(check("overlayfs-in-userns", status, detail, fix, false));

    // Landlock.
    let (status, detail, fix) = match crate::sys::landlock_abi() {
        Ok(v) if v >= 6 => (CheckStatus::Ok, format!("Landlock ABI {v} (files, TCP, scopes)"), None),
        Ok(v) => (
            CheckStatus::Partial,
            format!("Landlock ABI {v}: {}", if v >= 4 { "no scopes (ABI 6)" } else { "no TCP rules (ABI 4) and no scopes (ABI 6)" }),
            Some("Linux 6.12 or later for every Landlock layer; or accept `landlock-net`/`landlock-scope` missing in the manifest".to_owned()),
        ),
        Err(nix::errno::Errno::EOPNOTSUPP) => (
            CheckStatus::Missing,
            "Landlock is built in but not enabled".to_owned(),
            Some("add `landlock` to the kernel's lsm= boot parameter (e.g. lsm=landlock,lockdown,yama,apparmor,bpf)".to_owned()),
        ),
        Err(e) => (CheckStatus::Missing, format!("no Landlock: {e}"), Some("a kernel with CONFIG_SECURITY_LANDLOCK=y (Linux 5.13+)".to_owned())),
    };
    checks.push(check("landlock", status, detail, fix, false));

    // seccomp.
    let seccomp = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Seccomp:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let ok = !seccomp.is_empty() && crate::seccomp::deny_program().is_ok();
    checks.push(check(
        "seccomp",
        if ok {
            CheckStatus::Ok
        } else {
            CheckStatus::Missing
        },
        if ok {
            format!("seccomp filters available ({})", seccomp.replace('\t', " "))
        } else {
            "no seccomp in /proc/self/status".to_owned()
        },
        (!ok).then(|| "a kernel with CONFIG_SECCOMP_FILTER=y".to_owned()),
        false,
    ));

    // cgroups.
    let (v2, v1) = crate::limits::describe_host();
    let usable = crate::limits::usable(&["memory", "pids"]);
    let detail = format!(
        "cgroup v2 mounted: {v2}; v1 controllers: {}; writable for limits: {}",
        if v1.is_empty() {
            "none".to_owned()
        } else {
            v1.join(",")
        },
        usable.unwrap_or("no")
    );
    checks.push(check(
        "cgroup",
        if usable.is_some() { CheckStatus::Ok } else { CheckStatus::Missing },
        detail,
        usable.is_none().then(|| {
            if root {
                "mount the memory and pids controllers (v1) or enable them in the unified hierarchy's cgroup.subtree_control".to_owned()
            } else {
                "run inside a delegated cgroup v2 subtree (systemd-run --user --scope -p Delegate=yes blastwall run ...), or accept `cgroup` missing (pids fall back to RLIMIT_NPROC; memory is then unlimited)".to_owned()
            }
        }),
        false,
    ));

    let can_run = checks
        .iter()
        .all(|c| !c.required || c.status == CheckStatus::Ok);
    DoctorReport { checks, can_run }
}
