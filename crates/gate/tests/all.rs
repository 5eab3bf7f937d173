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

/// The test manifest's policy.
fn policy() -> blastwall_policy::Policy {
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from("/work/p"),
        home: PathBuf::from("/home/a"),
        user: None,
        enforce: false,
    };
    blastwall_policy::load(&Source::new("blastwall.toml", MANIFEST), &cx)
        .unwrap()
        .policy
}

fn gate(rec: &Recorder) -> Gate<Recorder> {
    let policy = policy();
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

/// The gate builds its records as structs serialized straight into the
/// line; the bytes must be those it wrote when it built `json!` values
/// (docs/audit-schema.md), so logs read and verify as before.
#[test]
fn records_are_the_bytes_the_value_path_wrote() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;

    use blastwall_audit::{FixedClock, Kind, Timestamp};
    use blastwall_gate::action_json;
    use blastwall_policy::{ExecAction, FsAction, FsOp, RuleRef};

    let t = Timestamp::new(1_777_636_800, 5).unwrap();
    let rec = Recorder::default();
    let g = {
        let policy = policy();
        let log = AuditLog::with_file(rec.clone(), "/v/a.jsonl", "s1", FsyncPolicy::Batch)
            .unwrap()
            .with_clock(FixedClock(t));
        Gate::new(Arc::new(policy), log)
    };
    let want = Recorder::default();
    let mut log = AuditLog::with_file(want.clone(), "/v/b.jsonl", "s1", FsyncPolicy::Batch)
        .unwrap()
        .with_clock(FixedClock(t));
    g.start(json!({"bench": "x"})).unwrap();
    log.append(Kind::SessionStart, json!({"bench": "x"}))
        .unwrap();

    let headers = [
        ("Host".to_owned(), "api.example.com".to_owned()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-HTTP-Method-Override".to_owned(), "DELETE".to_owned()),
    ];
    let body = br#"{"query":"mutation { volumeDelete(id: \"v\\u00e9\") { id } }"}"#;
    let actions = [
        req("GET", "/orders?page=2&q=%22x%22"),
        req("POST", "/orders"),
        req("DELETE", "/orders/1"),
        Action::Net(
            NetAction::from_request("GET", "https://evil.example.com:8443/a b", &[], None).unwrap(),
        ),
        Action::Net(
            NetAction::from_request(
                "POST",
                "https://api.example.com/graphql",
                &headers,
                Some(body),
            )
            .unwrap(),
        ),
        Action::Exec(ExecAction::new(
            vec!["rm".into(), "-rf".into(), "a\"b\n".into()],
            Some(PathBuf::from("/work/p")),
        )),
        // A working directory that is not UTF-8 goes on record as bytes.
        Action::Exec(ExecAction::new(
            vec!["ls".into()],
            Some(PathBuf::from(OsStr::from_bytes(b"/work/\xe9"))),
        )),
        Action::Fs(FsAction {
            op: FsOp::Write,
            path: PathBuf::from(OsStr::from_bytes(b"/work/p/caf\xe9")),
        }),
        Action::Fs(FsAction {
            op: FsOp::Read,
            path: PathBuf::from("/work/p/ok.txt"),
        }),
    ];
    assert_eq!(
        action_json(&actions[6])["cwd"],
        json!({"hex": "2f776f726b2fe9"})
    );
    for (i, action) in actions.iter().enumerate() {
        let side_effects = i % 2 == 0;
        let got = g.check_with(action, side_effects);
        let decision = g.policy().decide(action);
        log.append(
            Kind::Decision,
            json!({
                "action": action_json(action),
                "verdict": decision.verdict,
                "rule": decision.rule,
                "reason": decision.reason,
                "labels": decision.labels,
                "subject": decision.subject,
                "side_effects": side_effects,
                "approval": serde_json::Value::Null,
            }),
        )
        .unwrap();
        let seq = match got {
            Ok(r) => r.request_id,
            Err(r) => r.request_id.unwrap(),
        };
        let detail = json!({"status": 200, "upstream": "127.0.0.1:8443", "i": i});
        g.outcome_of(seq, "forwarded", detail.clone()).unwrap();
        log.append(
            Kind::Outcome,
            json!({"decision_seq": seq, "outcome": "forwarded", "detail": detail}),
        )
        .unwrap();
    }
    #[derive(serde::Serialize)]
    struct Forwarded<'a> {
        status: u16,
        upstream: &'a str,
    }
    let typed = Forwarded {
        status: 502,
        upstream: "[::1]:8443",
    };
    g.outcome_data(1, "forwarded", &typed).unwrap();
    log.append(
        Kind::Outcome,
        json!({"decision_seq": 1, "outcome": "forwarded", "detail": {"status": 502, "upstream": "[::1]:8443"}}),
    )
    .unwrap();
    for action in [None, Some(&actions[0]), Some(&actions[6])] {
        g.refuse(
            action,
            "proxy.request",
            "a \"bad\" request",
            "GET http://x/",
            json!({"extra": [1, null]}),
        )
        .unwrap();
        log.append(
            Kind::Decision,
            json!({
                "action": action.map(action_json),
                "verdict": Verdict::Deny,
                "rule": RuleRef {
                    id: "proxy.request".into(),
                    file: "blastwall".into(),
                    line: 0,
                    col: 0,
                },
                "reason": "a \"bad\" request",
                "labels": [],
                "subject": "GET http://x/",
                "side_effects": false,
                "approval": serde_json::Value::Null,
                "detail": {"extra": [1, null]},
            }),
        )
        .unwrap();
    }
    g.alert(json!({"rule": "anomaly.x", "reason": "r", "n": 1}))
        .unwrap();
    log.append(
        Kind::Alert,
        json!({"rule": "anomaly.x", "reason": "r", "n": 1}),
    )
    .unwrap();
    g.finish(json!({"exit": 0})).unwrap();
    log.append(Kind::SessionEnd, json!({"exit": 0})).unwrap();

    let writes = |r: &Recorder| {
        r.ops
            .lock()
            .unwrap()
            .iter()
            .filter_map(|op| match op {
                Op::Write(l) => Some(l.clone()),
                Op::Sync => None,
            })
            .collect::<Vec<_>>()
    };
    let got = writes(&rec);
    assert_eq!(writes(&want), got);
    assert!(
        got.iter()
            .any(|l| l.contains(r#"{"hex":"2f776f726b2f702f636166e9"}"#))
    );
    assert!(
        got.iter()
            .any(|l| l.contains(r#""graphql":{"kind":"calls""#))
    );
}
