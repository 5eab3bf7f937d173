//! The seccomp filter, proved from inside (bubblewrap `tests/try-syscall.c`).

use std::process::Command;

use blastwall_sandbox::probe::ProbeResult;

use super::common::{checker, harness, sandbox};

fn parse(out: &[u8]) -> Vec<ProbeResult> {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("bad checker output {e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn every_forbidden_syscall_is_refused_inside() {
    let Some(mut f) = sandbox() else { return };
    let r = f.check(&["probes"]).ok();
    let results = parse(r.stdout().trim().as_bytes());
    let leaks: Vec<&ProbeResult> = results.iter().filter(|p| !p.refused).collect();
    assert!(leaks.is_empty(), "allowed inside: {leaks:#?}");
}

// Each rule of the filter alone: the checker runs outside any namespace,
// under the filter only, and every call the kernel alone would allow
// (the baseline run without the filter) must be refused.
#[test]
fn the_filter_alone_refuses_each_rule() {
    let base = Command::new(checker()).arg("probes").output().unwrap();
    let baseline = parse(&base.stdout);
    let filtered = Command::new(harness())
        .arg("filter-only")
        .arg(checker())
        .arg("probes")
        .output()
        .unwrap();
    assert!(
        filtered.status.success(),
        "{}",
        String::from_utf8_lossy(&filtered.stderr)
    );
    let filtered = parse(&filtered.stdout);
    let mut proved = 0;
    for (b, f) in baseline.iter().zip(&filtered) {
        assert_eq!(b.name, f.name);
        assert!(
            f.refused,
            "{} not refused by the filter: errno {}",
            f.name, f.errno
        );
        if !b.refused {
            proved += 1;
        } else {
            eprintln!(
                "note: {} is refused by the kernel here even without the filter (errno {})",
                b.name, b.errno
            );
        }
    }
    assert!(
        proved > 20,
        "too few rules proved against the kernel's own answer: {proved}"
    );
    let clone3 = filtered.iter().find(|p| p.name == "clone3").unwrap();
    assert_eq!(
        clone3.errno,
        libc::ENOSYS,
        "clone3 must be ENOSYS so libc falls back to clone"
    );
}
