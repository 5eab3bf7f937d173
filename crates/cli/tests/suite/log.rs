//! `blastwall log verify` on a log the gate wrote, and on every kind of
//! tampering.

use std::sync::Arc;

use blastwall_audit::{AuditLog, FsyncPolicy};
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
