//! Nothing inside outlives the supervisor.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{harness, sandbox};

fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Waits for `cond` (checked on /proc) with a generous cap.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let cap = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < cap, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Issue 3: after kill -9 of the supervisor no sandbox process survives (a
// double-forked, setsid'd child included).
#[test]
fn sigkill_of_the_supervisor_kills_everything_inside() {
    let Some(mut f) = sandbox() else { return };
    let tag = format!("{}", 3_000_000 + std::process::id());
    f.spec.argv = vec![
        "sh".into(),
        "-c".into(),
        format!("(setsid sleep {tag}1 &) ; sleep {tag}2").into(),
    ];
    let spec_path = f.path("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&f.spec).unwrap()).unwrap();
    let mut sup = Command::new(harness())
        .arg(f.mode)
        .arg(&spec_path)
        .arg(f.path("outcome.json"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let inner = format!("sleep {tag}1");
    let outer = format!("sleep {tag}2");
    wait_for("both sleeps start", || {
        !pids_with_cmdline(&inner).is_empty() && !pids_with_cmdline(&outer).is_empty()
    });
    let init: Vec<i32> = pids_with_cmdline("__blastwall-init");
    sup.kill().unwrap();
    sup.wait().unwrap();
    wait_for("everything inside dies", || {
        pids_with_cmdline(&inner).is_empty() && pids_with_cmdline(&outer).is_empty()
    });
    for pid in init {
        wait_for("the init dies", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
            }
        });
    }
}

#[test]
fn exit_status_and_signals_are_passed_on() {
    let Some(mut f) = sandbox() else { return };
    assert_eq!(f.sh("exit 7").ok().code(), Some(7));
    let r = f.sh("kill -TERM $$").ok();
    assert_eq!(r.outcome["status"]["signal"], 15, "{:?}", r.outcome);
}

/// The pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

// A supervisor killed at any moment of the start (the spawner, the init
// waiting for its config, the wall being set up, the agent waiting for the
// start byte) leaves nothing behind: every child it had is gone within a
// second.
#[test]
fn sigkill_during_the_start_leaves_nothing() {
    let Some(mut f) = sandbox() else { return };
    f.spec.argv = vec!["sleep".into(), "30".into()];
    let spec_path = f.path("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&f.spec).unwrap()).unwrap();
    for step in 0..20u64 {
        let mut sup = Command::new(harness())
            .arg(f.mode)
            .arg(&spec_path)
            .arg(f.path("outcome.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(step * 500));
        let children = children_of(sup.id());
        sup.kill().unwrap();
        sup.wait().unwrap();
        for pid in children {
            wait_for("a child of the killed supervisor ends", || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.contains(") Z") || s.contains(") X"))
            });
        }
    }
}
