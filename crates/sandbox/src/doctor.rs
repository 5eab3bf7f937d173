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

    // Idmapped mounts: as root, a project owned by root is shown to the
    // agent (an unprivileged uid) as its own through one.
    checks.push(idmap_check(
        &read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        root,
    ));

    // Landlock: one check per layer a manifest names in `accept_missing`.
    checks.extend(landlock_checks(crate::sys::landlock_abi()));

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

/// The Landlock checks for the kernel's ABI (or why there is none): one
/// per layer, named as [`crate::Layer`] names them, so that `blastwall
/// init` can write the missing ones to `accept_missing`: `landlock` (file
/// rules, ABI 1), `landlock-net` (TCP rules, ABI 4), `landlock-scope`
/// (abstract unix sockets and signals, ABI 6).
fn landlock_checks(abi: Result<i32, nix::errno::Errno>) -> Vec<Check> {
    let (files, why_none, fix_none) = match abi {
        Ok(v) if v >= 1 => (
            check(
                crate::Layer::Landlock.name(),
                CheckStatus::Ok,
                format!("Landlock ABI {v} (file rules)"),
                None,
                false,
            ),
            None,
            None,
        ),
        Err(nix::errno::Errno::EOPNOTSUPP) => (
            check(
                crate::Layer::Landlock.name(),
                CheckStatus::Missing,
                "Landlock is built in but not enabled".to_owned(),
                Some("add `landlock` to the kernel's lsm= boot parameter (e.g. lsm=landlock,lockdown,yama,apparmor,bpf)".to_owned()),
                false,
            ),
            Some("Landlock is not enabled"),
            Some("enable Landlock (see `landlock`)"),
        ),
        other => (
            check(
                crate::Layer::Landlock.name(),
                CheckStatus::Missing,
                match other {
                    Err(e) => format!("no Landlock: {e}"),
                    Ok(v) => format!("no Landlock (ABI {v})"),
                },
                Some("a kernel with CONFIG_SECURITY_LANDLOCK=y (Linux 5.13+)".to_owned()),
                false,
            ),
            Some("no Landlock"),
            Some("a kernel with Landlock (see `landlock`)"),
        ),
    };
    let v = abi.unwrap_or(0);
    let part = |layer: crate::Layer, min: i32, what: &str, linux: &str| -> Check {
        if v >= min {
            return check(
                layer.name(),
                CheckStatus::Ok,
                format!("Landlock ABI {v}: {what}"),
                None,
                false,
            );
        }
        let detail = match why_none {
            Some(w) => format!("{w}: no {what}"),
            None => format!("Landlock ABI {v}: no {what} (ABI {min})"),
        };
        let fix = fix_none.map_or_else(
            || {
                format!(
                    "Linux {linux} or later; or accept `{}` missing in the manifest",
                    layer.name()
                )
            },
            |f| format!("{f}; or accept `{}` missing in the manifest", layer.name()),
        );
        check(layer.name(), CheckStatus::Missing, detail, Some(fix), false)
    };
    vec![
        files,
        part(
            crate::Layer::LandlockNet,
            4,
            "TCP bind/connect rules",
            "6.7",
        ),
        part(
            crate::Layer::LandlockScope,
            6,
            "scopes (abstract unix sockets, signals)",
            "6.12",
        ),
    ]
}

/// The `idmapped-mounts` check, from the kernel's version (overlayfs over
/// an idmapped lower layer: Linux 5.19). Never required: only a root
/// supervisor with a root-owned project in `overlay` or `rw` mode needs
/// it, and that run stops with an error naming the fix when it fails.
fn idmap_check(release: &str, root: bool) -> Check {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let who = if root {
        "as root, a project owned by root is shown to the agent as its own"
    } else {
        "used only when blastwall runs as root"
    };
    if version >= (5, 19) {
        check(
            "idmapped-mounts",
            CheckStatus::Ok,
            format!("Linux {release}: idmapped mounts under overlayfs ({who})"),
            None,
            false,
        )
    } else {
        check(
            "idmapped-mounts",
            CheckStatus::Missing,
            format!("Linux {release}: no overlayfs over idmapped mounts (5.19); as root, a project owned by root stays read-only to the agent"),
            Some("Linux 5.19 or later; or give the project to the user the agent runs as, or use project mode \"ro\"".to_owned()),
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(abi: Result<i32, nix::errno::Errno>) -> Vec<(String, CheckStatus)> {
        landlock_checks(abi)
            .into_iter()
            .map(|c| (c.name, c.status))
            .collect()
    }

    // On a kernel without Landlock ABI 4 or 6, the layers `landlock-net`
    // and `landlock-scope` are reported missing by name (the names
    // `blastwall init` writes to `accept_missing`), never hidden in a
    // "partial" `landlock`.
    #[test]
    fn idmapped_mounts_by_kernel_version() {
        assert_eq!(idmap_check("6.18.44-fc-v669", true).status, CheckStatus::Ok);
        assert_eq!(idmap_check("5.19.0", false).status, CheckStatus::Ok);
        let old = idmap_check("5.15.0-91-generic", true);
        assert_eq!(old.status, CheckStatus::Missing);
        assert!(!old.required);
        assert!(old.fix.is_some_and(|f| f.contains("5.19")));
        assert_eq!(idmap_check("", true).status, CheckStatus::Missing);
    }

    #[test]
    fn each_landlock_layer_is_its_own_check() {
        use CheckStatus::Missing;
        const OK: CheckStatus = CheckStatus::Ok;
        let names =
            |v: Vec<(String, CheckStatus)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        for abi in [
            Ok(7),
            Ok(5),
            Ok(3),
            Err(nix::errno::Errno::EOPNOTSUPP),
            Err(nix::errno::Errno::ENOSYS),
        ] {
            let n = names(statuses(abi));
            assert_eq!(n, ["landlock", "landlock-net", "landlock-scope"]);
            for name in &n {
                assert!(crate::Layer::ALL.iter().any(|l| l.name() == name), "{name}");
            }
        }
        let s = |abi| {
            statuses(abi)
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        };
        assert_eq!(s(Ok(7)), [OK, OK, OK]);
        assert_eq!(s(Ok(6)), [OK, OK, OK]);
        assert_eq!(s(Ok(5)), [OK, OK, Missing]);
        assert_eq!(s(Ok(3)), [OK, Missing, Missing]);
        assert_eq!(
            s(Err(nix::errno::Errno::EOPNOTSUPP)),
            [Missing, Missing, Missing]
        );
        assert_eq!(
            s(Err(nix::errno::Errno::ENOSYS)),
            [Missing, Missing, Missing]
        );
        let c = landlock_checks(Ok(3));
        let net = &c[1];
        assert!(
            net.detail.contains("ABI 3") && net.detail.contains("ABI 4"),
            "{}",
            net.detail
        );
        assert!(
            net.fix
                .as_deref()
                .is_some_and(|f| f.contains("accept `landlock-net` missing"))
        );
        assert!(!c.iter().any(|c| c.required));
    }
}
