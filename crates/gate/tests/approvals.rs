//! Held asks: approve, deny, timeout, abandon, the cap, single use, and
//! the order of records (the yes is durable before the release).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blastwall_audit::{AuditLog, FsyncPolicy};
use blastwall_gate::{ApprovalConfig, ApprovalStore, Gate, Queue, SqliteStore, State, now_ns};
use blastwall_policy::{Action, Context, NetAction, Origin, Source, Verdict};
use serde_json::json;

const MANIFEST: &str = r#"version = 1
[[network.rule]]
host = "backboard.railway.app"
graphql = { type = "mutation" }
verdict = "ask"
[[network.rule]]
host = "api.example.com"
methods = ["DELETE"]
verdict = "ask"
"#;

struct Fixture {
    gate: Arc<Gate>,
    store: Arc<SqliteStore>,
    dir: tempfile::TempDir,
}

fn fixture(cfg: ApprovalConfig) -> Fixture {
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
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path().join("audit.jsonl"), "s1", FsyncPolicy::Batch).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("approvals.db")).unwrap());
    let dyn_store: Arc<dyn ApprovalStore> = store.clone();
    let gate = Gate::new(Arc::new(policy), log).with_approvals(Queue::new(dyn_store, "s1", cfg));
    gate.start(json!({})).unwrap();
    Fixture {
        gate: Arc::new(gate),
        store,
        dir,
    }
}

/// A person's answer to a pending approval, through `store`: the
/// approval as it is afterwards, or `None` when it was no longer pending.
fn decide(
    store: &dyn ApprovalStore,
    id: &str,
    to: State,
    by: Option<&str>,
    note: Option<&str>,
) -> Option<blastwall_gate::Approval> {
    store
        .transition(id, &[State::Pending], to, now_ns(), by, note)
        .unwrap()
}

fn cfg() -> ApprovalConfig {
    ApprovalConfig {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        ..ApprovalConfig::default()
    }
}

fn volume_delete() -> Action {
    let body = br#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#;
    Action::Net(
        NetAction::from_request(
            "POST",
            "https://backboard.railway.app/graphql/v2",
            &[],
            Some(body),
        )
        .unwrap(),
    )
}

fn events(f: &Fixture) -> Vec<serde_json::Value> {
    blastwall_audit::read_events(f.dir.path().join("audit.jsonl"))
        .unwrap()
        .into_iter()
        .map(|e| json!({"kind": e.kind.as_str(), "data": e.data}))
        .collect()
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yes_releases_the_request_once_and_is_on_record_first() {
    let f = fixture(cfg());
    let action = volume_delete();
    let refusal = f.gate.check(&action).unwrap_err();
    assert_eq!(Verdict::Ask, refusal.verdict);
    let id = refusal.approval.clone().expect("an approval id");
    let held = f.gate.hold(&refusal, &action, "d1").unwrap();
    assert_eq!(held.id, id);
    assert_eq!(
        held.summary.text(),
        "delete volume vol_prod on backboard.railway.app \u{2014} GraphQL mutation volumeDelete \u{2014} irreversible"
    );
    let pending = f.store.get(&id).unwrap().unwrap();
    assert_eq!(State::Pending, pending.state);
    assert_eq!("d1", pending.digest);

    let gate = Arc::clone(&f.gate);
    let (h2, r2) = (held.clone(), (*refusal).clone());
    let waiter = tokio::spawn(async move { gate.wait(&h2, &r2, never()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "released before anyone said yes");
    decide(&*f.store, &id, State::Approved, Some("ana"), Some("ok")).unwrap();
    f.gate.queue().unwrap().wake();
    let release = waiter.await.unwrap().unwrap();
    assert_eq!(refusal.request_id, Some(release.request_id));
    assert_eq!(Verdict::Allow, release.decision.verdict);
    // Consumed: it cannot be used again.
    assert_eq!(State::Consumed, f.store.get(&id).unwrap().unwrap().state);
    let again = f.gate.wait(&held, &refusal, never()).await.unwrap_err();
    assert!(again.reason.contains("consumed"), "{}", again.reason);
    // The decision carries the approval id; the yes is an outcome on record.
    let ev = events(&f);
    let decision = ev.iter().find(|e| e["kind"] == "decision").unwrap();
    assert_eq!(decision["data"]["approval"], json!(id));
    assert!(
        ev.iter()
            .any(|e| e["kind"] == "outcome" && e["data"]["outcome"] == "approved"),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_again_asks_again() {
    let f = fixture(cfg());
    let action = volume_delete();
    let a = f.gate.check(&action).unwrap_err();
    let b = f.gate.check(&action).unwrap_err();
    assert_ne!(a.approval, b.approval);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_is_a_refusal_naming_who_and_why() {
    let f = fixture(cfg());
    let action = volume_delete();
    let refusal = f.gate.check(&action).unwrap_err();
    let held = f.gate.hold(&refusal, &action, "d").unwrap();
    decide(
        &*f.store,
        &held.id,
        State::Denied,
        Some("ana"),
        Some("not today"),
    );
    let r = f.gate.wait(&held, &refusal, never()).await.unwrap_err();
    assert_eq!(Verdict::Deny, r.verdict);
    assert!(r.reason.contains("denied by ana"), "{}", r.reason);
    assert!(r.reason.contains("not today"), "{}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_a_deny() {
    let f = fixture(ApprovalConfig {
        timeout: Duration::from_millis(200),
        ..cfg()
    });
    let action = volume_delete();
    let refusal = f.gate.check(&action).unwrap_err();
    let held = f.gate.hold(&refusal, &action, "d").unwrap();
    let r = f.gate.wait(&held, &refusal, never()).await.unwrap_err();
    assert!(r.reason.contains("nobody answered"), "{}", r.reason);
    assert_eq!(
        State::Expired,
        f.store.get(&held.id).unwrap().unwrap().state
    );
    // A yes after the deadline changes nothing.
    assert!(decide(&*f.store, &held.id, State::Approved, None, None).is_none());
    assert!(
        events(&f)
            .iter()
            .any(|e| e["data"]["outcome"] == "denied-timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_abandons_even_an_approved_ask() {
    let f = fixture(cfg());
    let action = volume_delete();
    let refusal = f.gate.check(&action).unwrap_err();
    let held = f.gate.hold(&refusal, &action, "d").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let gate = Arc::clone(&f.gate);
    let (h2, r2) = (held.clone(), (*refusal).clone());
    let waiter = tokio::spawn(async move {
        gate.wait(&h2, &r2, async {
            let _ = rx.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    drop(tx);
    let r = waiter.await.unwrap().unwrap_err();
    assert!(r.reason.contains("connection closed"), "{}", r.reason);
    assert_eq!(
        State::Abandoned,
        f.store.get(&held.id).unwrap().unwrap().state
    );
    // A yes arriving now finds nothing to approve.
    assert!(decide(&*f.store, &held.id, State::Approved, None, None).is_none());
}

#[test]
fn past_the_cap_asks_are_denied_with_an_alert() {
    let f = fixture(ApprovalConfig {
        max_pending: 3,
        ..cfg()
    });
    for i in 0..3 {
        let action = Action::Net(
            NetAction::from_request(
                "DELETE",
                &format!("https://api.example.com/x/{i}"),
                &[],
                None,
            )
            .unwrap(),
        );
        let r = f.gate.check(&action).unwrap_err();
        f.gate.hold(&r, &action, "d").unwrap();
    }
    let action = volume_delete();
    let r = f.gate.check(&action).unwrap_err();
    let denied = f.gate.hold(&r, &action, "d").unwrap_err();
    assert_eq!(Verdict::Deny, denied.verdict);
    assert!(
        denied.reason.contains("already waiting"),
        "{}",
        denied.reason
    );
    assert!(
        events(&f)
            .iter()
            .any(|e| e["kind"] == "alert" && e["data"]["rule"] == "approval-flood")
    );
    // The pending ones are listed destructive first.
    let list = f
        .store
        .list(&blastwall_gate::Query {
            states: vec![State::Pending],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(3, list.len());
    assert!(list.iter().all(|a| a.destructive));
}

#[test]
fn with_nobody_to_ask_an_ask_is_denied_at_once_and_listed() {
    let f = fixture(ApprovalConfig {
        wait: false,
        ..cfg()
    });
    let action = volume_delete();
    let r = f.gate.check(&action).unwrap_err();
    let denied = f.gate.hold(&r, &action, "d").unwrap_err();
    assert!(
        denied.reason.contains("nobody can answer"),
        "{}",
        denied.reason
    );
    let a = f
        .store
        .get(r.approval.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(State::Denied, a.state);
}

#[test]
fn a_store_shared_by_two_handles_sees_one_decision() {
    // `approve` and the supervisor open the same file.
    let f = fixture(cfg());
    let action = volume_delete();
    let r = f.gate.check(&action).unwrap_err();
    let held = f.gate.hold(&r, &action, "d").unwrap();
    let other = SqliteStore::open(&f.dir.path().join("approvals.db")).unwrap();
    let first = decide(&other, &held.id, State::Approved, Some("a"), None);
    let second = decide(&*f.store, &held.id, State::Denied, Some("b"), None);
    assert!(first.is_some());
    assert!(second.is_none(), "a decided approval was decided again");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(f.dir.path().join("approvals.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(0o600, mode & 0o777);
}

#[test]
fn a_yes_after_the_deadline_is_refused_even_before_the_waiter_notices() {
    let f = fixture(ApprovalConfig {
        timeout: Duration::from_millis(50),
        ..cfg()
    });
    let action = volume_delete();
    let r = f.gate.check(&action).unwrap_err();
    let held = f.gate.hold(&r, &action, "d").unwrap();
    std::thread::sleep(Duration::from_millis(120));
    // Nobody waits on it (a busy supervisor): the store itself says no.
    assert!(decide(&*f.store, &held.id, State::Approved, Some("late"), None).is_none());
    assert_eq!(
        State::Pending,
        f.store.get(&held.id).unwrap().unwrap().state
    );
}
