//! The gate: decide, then record, then release or refuse (I4).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use blastwall_audit::{AuditLog, FsyncPolicy, LogFile};
use blastwall_gate::Gate;
use blastwall_policy::{Action, Context, NetAction, Origin, Source, Verdict};
use pretty_assertions::assert_eq;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write(String),
    Sync,
}

/// A log file that records what the writer did, and can be made to fail.
#[derive(Debug, Clone, Default)]
struct Recorder {
    ops: Arc<Mutex<Vec<Op>>>,
    fail_writes: Arc<Mutex<bool>>,
}

impl LogFile for Recorder {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if *self.fail_writes.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.ops
            .lock()
            .unwrap()
            .push(Op::Write(String::from_utf8_lossy(buf).into_owned()));
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.ops.lock().unwrap().push(Op::Sync);
        Ok(())
    }
}

const MANIFEST: &str = r#"version = 1
[[network.rule]]
host = "api.example.com"
methods = ["GET", "POST"]
verdict = "allow"
[[network.rule]]
host = "api.example.com"
methods = ["DELETE"]
verdict = "ask"
"#;

fn gate(rec: &Recorder) -> Gate<Recorder> {
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from("/work/p"),
        home: PathBuf::from("/home/a"),
        user: None,
        enforce: false,
    };
    let policy = blastwall_policy::load(&Source::new("blastwall.toml", MANIFEST), &cx)
        .unwrap()
        .policy;
    let log = AuditLog::with_file(
        rec.clone(),
        "/virtual/audit.jsonl",
        "s1",
        FsyncPolicy::Batch,
    )
    .unwrap();
    let g = Gate::new(Arc::new(policy), log);
    g.start(json!({})).unwrap();
    g
}

fn req(method: &str, path: &str) -> Action {
    Action::Net(
        NetAction::from_request(method, &format!("https://api.example.com{path}"), &[], None)
            .unwrap(),
    )
}

#[test]
fn a_side_effect_is_durable_before_it_is_released() {
    let rec = Recorder::default();
    let g = gate(&rec);
    rec.ops.lock().unwrap().clear();
    let release = g.check(&req("POST", "/orders")).unwrap();
    let ops = rec.ops.lock().unwrap().clone();
    assert_eq!(2, ops.len(), "{ops:?}");
    assert!(
        matches!(&ops[0], Op::Write(l) if l.contains("\"decision\"") && l.contains("\"allow\""))
    );
    assert_eq!(
        Op::Sync,
        ops[1],
        "the decision must be synced before release"
    );
    assert_eq!(1, release.request_id);
}

#[test]
fn a_read_is_recorded_first_and_group_committed() {
    let rec = Recorder::default();
    let g = gate(&rec);
    rec.ops.lock().unwrap().clear();
    g.check(&req("GET", "/orders")).unwrap();
    let ops = rec.ops.lock().unwrap().clone();
    assert_eq!(1, ops.len(), "{ops:?}");
    assert!(matches!(&ops[0], Op::Write(_)));
    g.flush().unwrap();
    assert_eq!(Some(&Op::Sync), rec.ops.lock().unwrap().last());
}

#[test]
fn without_a_queue_an_ask_is_refused_with_needs_approval() {
    let rec = Recorder::default();
    let g = gate(&rec);
    let r = g.check(&req("DELETE", "/orders/1")).unwrap_err();
    assert_eq!(Verdict::Ask, r.verdict);
    let text = r.to_string();
    assert!(
        text.starts_with("blastwall: needs approval: DELETE https://api.example.com/orders/1"),
        "{text}"
    );
    assert!(
        text.contains("blastwall.toml:6:1 (network.rule[1])"),
        "{text}"
    );
    assert!(text.contains("request id: 1"), "{text}");
}

#[test]
fn deny_names_the_rule_and_the_request_id() {
    let rec = Recorder::default();
    let g = gate(&rec);
    let r = g
        .check(&Action::Net(
            NetAction::from_request("GET", "https://evil.example.com/", &[], None).unwrap(),
        ))
        .unwrap_err();
    assert_eq!(Verdict::Deny, r.verdict);
    assert_eq!(Some(1), r.request_id);
    assert!(r.to_string().contains("built-in network.default"), "{r}");
}

#[test]
fn a_decision_that_cannot_be_recorded_is_refused() {
    let rec = Recorder::default();
    let g = gate(&rec);
    *rec.fail_writes.lock().unwrap() = true;
    let r = g.check(&req("GET", "/orders")).unwrap_err();
    assert_eq!(Verdict::Deny, r.verdict);
    assert_eq!(None, r.request_id);
    assert!(r.reason.contains("could not be recorded"), "{}", r.reason);
    // The log is poisoned: nothing passes afterwards either.
    *rec.fail_writes.lock().unwrap() = false;
    assert!(g.check(&req("GET", "/orders")).is_err());
}
