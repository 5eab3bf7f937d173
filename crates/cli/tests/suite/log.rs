//! `blastwall log verify` on a log the gate wrote, and on every kind of
//! tampering; signed logs (checkpoints, the heads file) and what only they
//! catch; `blastwall log --follow`; the human view's escaping.

use std::sync::Arc;

use blastwall_audit::{AuditLog, CheckpointEvery, Checkpointer, FsyncPolicy, Kind, SigningKey};
use blastwall_gate::Gate;
use blastwall_policy::{Action, Context, NetAction, Origin, Source};
use serde_json::json;

use super::World;

fn gate_log(w: &World) -> std::path::PathBuf {
    let text = std::fs::read_to_string(super::example("pocketos.toml")).unwrap();
    let cx = Context {
        origin: Origin::Project,
        project_root: w.project(),
        home: w.home(),
        user: None,
        enforce: false,
    };
    let policy = blastwall_policy::load(&Source::new("pocketos.toml", text), &cx)
        .unwrap()
        .policy;
    let dir = w.bw_home().join("sessions/s1");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let log = AuditLog::create(&path, "s1", FsyncPolicy::Batch).unwrap();
    let gate = Gate::new(Arc::new(policy), log);
    gate.start(json!({"manifest": "pocketos.toml"})).unwrap();
    let url = "https://backboard.railway.app/graphql/v2";
    for body in [
        r#"{"query":"{ me { email } }"}"#,
        r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
        r#"{"query":"mutation { customDomainCreate(input: {}) { id } }"}"#,
    ] {
        let a =
            Action::Net(NetAction::from_request("POST", url, &[], Some(body.as_bytes())).unwrap());
        if let Ok(release) = gate.check(&a) {
            gate.outcome(&release, "forwarded", json!({"status": 200}))
                .unwrap();
        }
    }
    let a = Action::Net(
        NetAction::from_request("GET", "https://evil.example.com/x", &[], None).unwrap(),
    );
    let refusal = gate.check(&a).unwrap_err();
    assert!(refusal.to_string().contains("request id"));
    gate.finish(json!({})).unwrap();
    path
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &std::path::Path, ls: &[String]) {
    std::fs::write(
        path,
        ls.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn verify_passes_on_the_gates_log() {
    let w = World::new();
    let path = gate_log(&w);
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap()])
        .expect(0);
    assert!(r.stdout().contains("ok: 8 event(s)"), "{}", r.stdout());
    assert!(r.stdout().contains("sealed"), "{}", r.stdout());
    // The newest session is the default, and `log` prints it.
    w.run(&["log", "verify"]).expect(0);
    let r = w.run(&["log", "--kind", "decision"]).expect(0);
    assert_eq!(4, r.stdout().lines().count(), "{}", r.stdout());
    assert!(
        r.stdout()
            .contains("ask POST backboard.railway.app:443/graphql/v2"),
        "{}",
        r.stdout()
    );
}

#[test]
fn verify_fails_on_a_changed_byte() {
    let w = World::new();
    let path = gate_log(&w);
    let mut ls = lines(&path);
    ls[3] = ls[3].replacen("\"ask\"", "\"allow\"", 1);
    write_lines(&path, &ls);
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap(), "--json"])
        .expect(1);
    assert_eq!(3, r.json()["first_bad_seq"]);
}

#[test]
fn verify_fails_on_a_removed_event() {
    let w = World::new();
    let path = gate_log(&w);
    let mut ls = lines(&path);
    ls.remove(3);
    write_lines(&path, &ls);
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap(), "--json"])
        .expect(1);
    assert_eq!(3, r.json()["first_bad_seq"]);
}

#[test]
fn verify_fails_on_two_swapped() {
    let w = World::new();
    let path = gate_log(&w);
    let mut ls = lines(&path);
    ls.swap(2, 3);
    write_lines(&path, &ls);
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap(), "--json"])
        .expect(1);
    assert_eq!(2, r.json()["first_bad_seq"]);
}

#[test]
fn verify_fails_on_a_truncated_tail() {
    let w = World::new();
    let path = gate_log(&w);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap()])
        .expect(1);
    assert!(r.stdout().contains("FAILED"), "{}", r.stdout());
    assert!(r.stdout().contains("seq 7"), "{}", r.stdout());
}

#[test]
fn a_cut_at_a_record_boundary_shows_as_unsealed() {
    let w = World::new();
    let path = gate_log(&w);
    let mut ls = lines(&path);
    ls.pop();
    write_lines(&path, &ls);
    let r = w
        .run(&["log", "verify", "--file", path.to_str().unwrap(), "--json"])
        .expect(0);
    assert_eq!(false, r.json()["sealed"]);
}

#[test]
fn an_unreadable_log_is_an_error_not_a_verdict() {
    let w = World::new();
    let r = w.run(&["log", "verify", "--file", "/nonexistent/audit.jsonl"]);
    assert_eq!(2, r.code(), "{}", r.stderr());
}

/// A log written by the gate with checkpoints every 3 records, signed by the
/// key under this world's BLASTWALL_HOME (created on first use), heads in
/// its heads file.
fn signed_gate_log(w: &World, id: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(super::example("pocketos.toml")).unwrap();
    let cx = Context {
        origin: Origin::Project,
        project_root: w.project(),
        home: w.home(),
        user: None,
        enforce: false,
    };
    let policy = blastwall_policy::load(&Source::new("pocketos.toml", text), &cx)
        .unwrap()
        .policy;
    let dir = w.bw_home().join("sessions").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let log = AuditLog::create(&path, id, FsyncPolicy::Batch)
        .unwrap()
        .with_checkpoints(checkpointer(w, 3))
        .unwrap();
    let gate = Gate::new(Arc::new(policy), log);
    gate.start(json!({"manifest": "pocketos.toml"})).unwrap();
    let url = "https://backboard.railway.app/graphql/v2";
    for body in [
        r#"{"query":"{ me { email } }"}"#,
        r#"{"query":"{ projects { id } }"}"#,
        r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
        r#"{"query":"mutation { customDomainCreate(input: {}) { id } }"}"#,
    ] {
        let a =
            Action::Net(NetAction::from_request("POST", url, &[], Some(body.as_bytes())).unwrap());
        if let Ok(release) = gate.check(&a) {
            gate.outcome(&release, "forwarded", json!({"status": 200}))
                .unwrap();
        }
    }
    gate.finish(json!({})).unwrap();
    path
}

fn checkpointer(w: &World, every: u64) -> Checkpointer {
    let mut cp = Checkpointer::in_home(&w.bw_home()).unwrap();
    cp.every = CheckpointEvery {
        records: every,
        interval: None,
    };
    cp
}

fn kinds_of(path: &std::path::Path) -> Vec<String> {
    lines(path)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn verify_checks_the_signatures_and_the_heads_file() {
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    let kinds = kinds_of(&path);
    assert_eq!(Some("checkpoint"), kinds.last().map(String::as_str));
    let n = kinds.len();
    let checkpoints = kinds.iter().filter(|k| *k == "checkpoint").count();
    assert!(checkpoints >= 3, "{kinds:?}");
    let r = w
        .run(&["log", "verify", "--session", "s1", "--json"])
        .expect(0);
    let j = r.json();
    assert_eq!(true, j["ok"]);
    assert_eq!(true, j["sealed"]);
    assert_eq!(true, j["signatures_checked"]);
    assert_eq!(Some(n as u64 - 1), j["signed_through"].as_u64());
    assert_eq!(Some(checkpoints as u64), j["heads_matched"].as_u64());
    let r = w.run(&["log", "verify", "--session", "s1"]).expect(0);
    assert!(r.stdout().contains("signed through seq"), "{}", r.stdout());
    // `log` shows checkpoints, and --kind picks them.
    let r = w
        .run(&["log", "--session", "s1", "--kind", "checkpoint"])
        .expect(0);
    assert_eq!(checkpoints, r.stdout().lines().count(), "{}", r.stdout());
    assert!(r.stdout().contains("signs seq"), "{}", r.stdout());
}

/// `log verify --session s1` fails at `seq`, saying `says`.
fn verify_fails(w: &World, seq: u64, says: &str) {
    let r = w
        .run(&["log", "verify", "--session", "s1", "--json"])
        .expect(1);
    assert_eq!(seq, r.json()["first_bad_seq"], "{}", r.stdout());
    assert!(
        r.json()["error"].as_str().unwrap().contains(says),
        "{}",
        r.stdout()
    );
}

#[test]
fn verify_fails_on_a_cut_at_a_record_boundary_when_signed() {
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    let mut ls = lines(&path);
    // Drop session-end and the checkpoint after it: a valid shorter chain.
    ls.truncate(ls.len() - 2);
    write_lines(&path, &ls);
    let last_checkpoint = kinds_of(&path)
        .iter()
        .rposition(|k| k == "checkpoint")
        .unwrap();
    verify_fails(
        &w,
        last_checkpoint as u64 + 1,
        "records were removed from the end",
    );
    // `log` says so too.
    let r = w.run(&["log", "--session", "s1"]).expect(1);
    assert!(
        r.stderr().contains("does not match its signed heads"),
        "{}",
        r.stderr()
    );
}

#[test]
fn verify_fails_on_a_chain_rewritten_with_blastwalls_own_writer() {
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    // The forger keeps seq 0..=4, then continues the chain with the real
    // writer (which verifies and links it), without checkpoints.
    let mut ls = lines(&path);
    ls.truncate(5);
    write_lines(&path, &ls);
    let mut log = AuditLog::open_append(&path, FsyncPolicy::Never).unwrap();
    for _ in 0..12 {
        log.append(
            Kind::Decision,
            json!({"verdict": "allow", "reason": "nothing to see"}),
        )
        .unwrap();
    }
    log.append(Kind::SessionEnd, json!({})).unwrap();
    drop(log);
    // The chain alone is sound.
    w.run(&["log", "verify", "--file", path.to_str().unwrap()]);
    let first_kept_checkpoint = kinds_of(&path)[..5]
        .iter()
        .rposition(|k| k == "checkpoint")
        .map_or(0, |i| i as u64 + 1);
    verify_fails(&w, first_kept_checkpoint, "rewritten");
}

#[test]
fn verify_fails_on_a_log_rewritten_and_signed_with_another_key() {
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    // A whole new log for the same session, checkpointed with the forger's
    // own key and heads file.
    std::fs::remove_file(&path).unwrap();
    let forged = Checkpointer {
        key: SigningKey::generate().unwrap(),
        heads_path: w.dir.path().join("forged-heads.jsonl"),
        every: CheckpointEvery {
            records: 3,
            interval: None,
        },
    };
    let mut log = AuditLog::create(&path, "s1", FsyncPolicy::Never)
        .unwrap()
        .with_checkpoints(forged)
        .unwrap();
    log.append(Kind::SessionStart, json!({})).unwrap();
    for _ in 0..5 {
        log.append(Kind::Decision, json!({"verdict": "allow"}))
            .unwrap();
    }
    log.append(Kind::SessionEnd, json!({})).unwrap();
    drop(log);
    verify_fails(&w, 0, "not by the trusted key");
}

#[test]
fn verify_fails_when_the_heads_file_knows_a_session_whose_log_has_no_checkpoint() {
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    // Replaced by an unsigned log for the same session.
    std::fs::remove_file(&path).unwrap();
    let mut log = AuditLog::create(&path, "s1", FsyncPolicy::Never).unwrap();
    log.append(Kind::SessionStart, json!({})).unwrap();
    log.append(Kind::SessionEnd, json!({})).unwrap();
    drop(log);
    verify_fails(&w, 0, "the heads file holds a signed head");
}

#[test]
fn follow_prints_events_as_they_are_written_until_session_end() {
    use std::io::BufRead as _;
    let w = World::new();
    let dir = w.bw_home().join("sessions/s3");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::create(&path, "s3", FsyncPolicy::Batch)
        .unwrap()
        .with_checkpoints(checkpointer(&w, 1000))
        .unwrap();
    log.append(Kind::SessionStart, json!({"agent": "test"}))
        .unwrap();
    log.sync().unwrap();
    let mut child = w
        .command(
            &w.project(),
            &["log", "--follow", "--session", "s3", "--json"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("\"session-start\""), "{line}");
    // Now that the follower has read the start, the rest comes.
    for i in 0..3 {
        log.append(Kind::Decision, json!({"verdict": "allow", "i": i}))
            .unwrap();
    }
    log.append(Kind::SessionEnd, json!({"exit": 0})).unwrap();
    drop(log);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(Some(0), status.code(), "{rest}\n{stderr}");
    let kinds: Vec<String> = rest
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "\"decision\"",
            "\"decision\"",
            "\"decision\"",
            "\"session-end\"",
            "\"checkpoint\""
        ]
    );
}

#[test]
fn follow_stops_on_damage() {
    let w = World::new();
    let path = gate_log(&w);
    let mut ls = lines(&path);
    ls.remove(3);
    write_lines(&path, &ls);
    let r = w
        .run(&["log", "--follow", "--file", path.to_str().unwrap()])
        .expect(1);
    assert!(r.stderr().contains("seq 3"), "{}", r.stderr());
}

#[test]
fn the_human_view_escapes_control_and_bidi_characters() {
    let w = World::new();
    let dir = w.bw_home().join("sessions/s4");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::create(&path, "s4", FsyncPolicy::Never).unwrap();
    log.append(Kind::SessionStart, json!({})).unwrap();
    let evil = "ok\n     9 2026-01-01T00:00:00.000000000Z decision      allow fake\u{1b}[2J\u{202e}txt.exe";
    log.append(
        Kind::Decision,
        json!({"verdict": "deny", "action": {"kind": "exec", "argv": [evil]}, "rule": evil, "reason": evil}),
    )
    .unwrap();
    log.append(Kind::Alert, json!({"rule": "x", "reason": evil}))
        .unwrap();
    drop(log);
    let r = w.run(&["log", "--session", "s4"]).expect(0);
    let out = r.stdout();
    assert_eq!(3, out.lines().count(), "{out}");
    assert!(!out.contains('\u{1b}'), "{out}");
    assert!(!out.contains('\u{202e}'), "{out}");
    assert!(out.contains("\\u{202e}"), "{out}");
    assert!(out.contains("alert         x: ok\\n"), "{out}");
}

#[test]
fn unknown_kind_lists_every_kind() {
    let w = World::new();
    gate_log(&w);
    let r = w.run(&["log", "--kind", "decsion"]).expect(2);
    assert!(
        r.stderr().contains("session-end, checkpoint"),
        "{}",
        r.stderr()
    );
}

#[test]
fn follow_stops_when_the_session_is_gone_without_session_end() {
    let w = World::new();
    let dir = w.bw_home().join("sessions/s5");
    std::fs::create_dir_all(&dir).unwrap();
    let mut log = AuditLog::create(dir.join("audit.jsonl"), "s5", FsyncPolicy::Never).unwrap();
    log.append(Kind::SessionStart, json!({})).unwrap();
    log.append(Kind::Decision, json!({"verdict": "allow"}))
        .unwrap();
    drop(log);
    // Its supervisor is a pid that does not run (or not since that start time).
    let meta = json!({
        "id": "s5", "name": null, "started_ns": 1, "command": ["true"],
        "project": w.project(), "manifest": w.project().join("blastwall.toml"),
        "project_mode": "overlay", "supervisor": [u32::MAX - 1, 1], "exit_code": null,
        "layers": {}, "owner": [0, 0], "closed": null,
    });
    std::fs::write(dir.join("session.json"), meta.to_string()).unwrap();
    let r = w.run(&["log", "--follow", "--session", "s5"]).expect(1);
    assert_eq!(2, r.stdout().lines().count(), "{}", r.stdout());
    assert!(
        r.stderr().contains("no longer running") && r.stderr().contains("seq 1"),
        "{}",
        r.stderr()
    );
}

#[test]
fn a_sealed_log_whose_end_is_not_signed_says_so() {
    // Someone who can write both the log and the heads file cuts the log
    // back to a checkpoint, keeps only the heads up to it, and appends a
    // session-end of their own: nothing fails, but the report says how
    // much is unsigned.
    let w = World::new();
    let path = signed_gate_log(&w, "s1");
    let kinds = kinds_of(&path);
    let first_checkpoint = kinds.iter().position(|k| k == "checkpoint").unwrap();
    let mut ls = lines(&path);
    ls.truncate(first_checkpoint + 1);
    write_lines(&path, &ls);
    let heads = w.bw_home().join("audit-heads.jsonl");
    let first_head = std::fs::read_to_string(&heads)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&heads, format!("{first_head}\n")).unwrap();
    let mut log = AuditLog::open_append(&path, FsyncPolicy::Never).unwrap();
    log.append(Kind::SessionEnd, json!({})).unwrap();
    drop(log);
    let r = w.run(&["log", "verify", "--session", "s1"]).expect(0);
    assert!(
        r.stdout()
            .contains("the checkpoint after session-end is missing"),
        "{}",
        r.stdout()
    );
}
