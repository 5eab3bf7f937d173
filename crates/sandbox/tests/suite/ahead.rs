//! The init cloned ahead (`blastwall_sandbox::clone_init_ahead`): it holds
//! none of the host's environment, and the exec path it replaces still
//! builds the same wall.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{harness, is_root, os, sandbox};

/// The pids whose parent is `parent` and whose command line holds `needle`.
fn children_with_cmdline(parent: u32, needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Whether `needle` occurs in any readable mapping of `pid`'s memory (as
/// root: a process that is not dumpable is read through /proc/PID/mem).
fn memory_holds(pid: i32, needle: &[u8]) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        // The binary's own text and data are the same in every process:
        // the marker is only ever in what the process read or was given.
        let mut buf = vec![0u8; usize::try_from(b - a).unwrap()];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

// The host's environment (tokens and keys among it) must not follow into
// the wall: the init is cloned from a copy of the supervisor made before
// it read anything, whose environment strings are zeroed. Read from
// outside, as root, while the command runs: the supervisor holds the
// marker (so the scan can find it), the init does not.
#[test]
fn the_init_cloned_ahead_holds_none_of_the_hosts_environment() {
    let Some(mut f) = sandbox() else { return };
    if !is_root() {
        eprintln!("note: reading the memory of a process that is not dumpable needs root");
        return;
    }
    let marker = format!("marker-env-ahead-{}-7d1e", std::process::id());
    f.spec.argv = vec![os("sh"), os("-c"), os("sleep 30")];
    let spec_path = f.path("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&f.spec).unwrap()).unwrap();
    let mut sup = Command::new(harness())
        .arg("run")
        .arg(&spec_path)
        .arg(f.path("outcome.json"))
        .env("GITHUB_TOKEN", &marker)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let cap = Instant::now() + Duration::from_secs(20);
    let init = loop {
        if let [pid] = children_with_cmdline(sup.id(), "__blastwall-init")[..] {
            // Running: the agent (sleep) is its child by now.
            let started = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x0030"))
            });
            if started {
                break pid;
            }
        }
        assert!(Instant::now() < cap, "the sandbox did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let environ = std::fs::read(format!("/proc/{init}/environ")).unwrap();
    let supervisor_holds = memory_holds(i32::try_from(sup.id()).unwrap(), marker.as_bytes());
    let init_holds = memory_holds(init, marker.as_bytes());
    sup.kill().unwrap();
    sup.wait().unwrap();
    assert!(
        supervisor_holds,
        "the scan did not find the marker in the supervisor"
    );
    assert!(
        !environ
            .windows(marker.len())
            .any(|w| w == marker.as_bytes()),
        "the init's environment holds the marker"
    );
    assert!(
        !init_holds,
        "the init's memory holds the host's environment"
    );
}

// Without the init cloned ahead (a program that did not call
// clone_init_ahead), `run` clones and executes the init: the same wall.
#[test]
fn the_executed_init_builds_the_same_wall() {
    let Some(mut f) = sandbox() else { return };
    f.mode = "run-exec";
    let r = f
        .sh(
            "echo changed > README.md; cat .env 2>/dev/null; cat ~/.aws/credentials 2>/dev/null; \
             tr '\\0' ' ' < /proc/1/cmdline; echo; \
             unshare -U true 2>/dev/null && echo ESCAPED; exit 7",
        )
        .ok();
    assert_eq!(r.code(), Some(7), "{}", r.stderr());
    let out = r.stdout();
    assert!(out.contains("__blastwall-init"), "{out}");
    assert!(
        !out.contains("marker-env-9f3a") && !out.contains("marker-aws-77c1"),
        "{out}"
    );
    assert!(!out.contains("ESCAPED"), "{out}");
    assert_eq!(
        std::fs::read_to_string(f.path("proj/README.md")).unwrap(),
        "# the real readme\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("upper/README.md")).unwrap(),
        "changed\n"
    );
    let ns = &r.outcome["layers"]["namespaces"];
    assert!(ns.as_array().is_some_and(|n| n.len() >= 6), "{ns}");
}

// Both ways, the agent's cgroup namespace is rooted at its own cgroup: it
// sees `/` for every hierarchy, not the host's cgroup paths. (The init
// cloned ahead is born in the supervisor's cgroup and roots a namespace of
// its own once it is moved into the run's cgroups.)
#[test]
fn the_cgroup_namespace_hides_the_hosts_cgroup_paths() {
    for mode in ["run", "run-exec"] {
        let Some(mut f) = sandbox() else { return };
        f.mode = mode;
        // In force as root; an unprivileged user without a delegated
        // cgroup tree runs in the supervisor's own cgroup, which is then
        // the namespace's root.
        f.spec.limits.memory_bytes = Some(1 << 30);
        f.spec.limits.pids = Some(256);
        f.spec.accept_missing.push(blastwall_sandbox::Layer::Cgroup);
        let r = f.sh("cat /proc/self/cgroup").ok();
        let out = r.stdout();
        assert!(!out.trim().is_empty(), "{mode}: {}", r.stderr());
        for line in out.lines() {
            assert!(line.ends_with(":/"), "{mode}: {line} in {out}");
        }
    }
}
