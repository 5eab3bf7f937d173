//! The writer's file operations, seen through a recording fake: when records
//! are written and synced, and what happens when the disk fails.

use std::io;
use std::os::unix::fs::PermissionsExt as _;

use blastwall_audit::{AuditError, AuditLog, FixedClock, FsyncPolicy, Kind, LogFile, Timestamp};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{SESSION, TestResult, split_lines, verify_bytes};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write(Vec<u8>),
    Sync,
}

/// A [`LogFile`] that records every operation and can be told to fail.
#[derive(Debug, Default)]
struct Recorder {
    ops: Vec<Op>,
    fail_writes: bool,
    fail_syncs: bool,
}

impl LogFile for Recorder {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.fail_writes {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.ops.push(Op::Write(buf.to_vec()));
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail_syncs {
            return Err(io::Error::from(io::ErrorKind::Other));
        }
        self.ops.push(Op::Sync);
        Ok(())
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<&'static str> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Write(_) => "write",
                Op::Sync => "sync",
            })
            .collect()
    }

    fn bytes(&self) -> Vec<u8> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Write(b) => Some(b.as_slice()),
                Op::Sync => None,
            })
            .collect::<Vec<_>>()
            .concat()
    }
}

fn fake(fsync: FsyncPolicy) -> Result<AuditLog<Recorder>, AuditError> {
    let time = Timestamp::new(1_777_636_800, 0).unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(
        AuditLog::with_file(Recorder::default(), "fake.jsonl", SESSION, fsync)?
            .with_clock(FixedClock(time)),
    )
}

#[test]
fn always_syncs_before_append_returns() -> TestResult {
    let mut log = fake(FsyncPolicy::Always)?;
    let a = log.append(Kind::SessionStart, json!({}))?;
    assert_eq!(log.file().kinds(), ["write", "sync"]);
    assert_eq!(log.durable_seq(), Some(a.seq));
    let b = log.append(Kind::Decision, json!({"verdict": "allow"}))?;
    assert_eq!(log.file().kinds(), ["write", "sync", "write", "sync"]);
    assert_eq!(log.durable_seq(), Some(b.seq));
    // Nothing new to sync.
    log.sync()?;
    assert_eq!(log.file().ops.len(), 4);
    Ok(())
}

/// `append_data_unsynced` leaves `always`'s sync to the caller (a
/// `Syncer`, outside the caller's lock); a `session-end` is still synced.
#[test]
fn unsynced_append_leaves_the_sync_to_the_caller() -> TestResult {
    let mut log = fake(FsyncPolicy::Always)?;
    log.append_data_unsynced(Kind::SessionStart, &json!({}))?;
    log.append_data_unsynced(Kind::Decision, &json!({"verdict": "allow"}))?;
    assert_eq!(log.file().kinds(), ["write", "write"]);
    assert_eq!(log.durable_seq(), None);
    log.sync()?;
    assert_eq!(log.durable_seq(), Some(1));
    log.append_data_unsynced(Kind::SessionEnd, &json!({}))?;
    assert_eq!(
        log.file().kinds(),
        ["write", "write", "sync", "write", "sync"]
    );
    assert_eq!(log.durable_seq(), Some(2));
    Ok(())
}

#[test]
fn never_does_not_sync() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(Kind::Decision, json!({}))?;
    assert_eq!(log.file().kinds(), ["write", "write"]);
    log.sync()?;
    log.append(Kind::SessionEnd, json!({}))?;
    assert_eq!(log.file().kinds(), ["write", "write", "write"]);
    assert_eq!(log.durable_seq(), None);
    Ok(())
}

#[test]
fn batch_syncs_when_asked_once_for_many_records() -> TestResult {
    let mut log = fake(FsyncPolicy::Batch)?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(Kind::Decision, json!({}))?;
    log.append(Kind::Decision, json!({}))?;
    assert_eq!(log.file().kinds(), ["write", "write", "write"]);
    assert_eq!(log.durable_seq(), None);
    log.sync()?;
    assert_eq!(log.durable_seq(), Some(2));
    log.sync()?;
    assert_eq!(log.file().kinds(), ["write", "write", "write", "sync"]);
    log.append(
        Kind::Outcome,
        json!({"decision_seq": 2, "outcome": "forwarded"}),
    )?;
    assert_eq!(log.durable_seq(), Some(2));
    // session-end is synced even under Batch.
    log.append(Kind::SessionEnd, json!({}))?;
    assert_eq!(
        log.file().kinds(),
        ["write", "write", "write", "sync", "write", "write", "sync"]
    );
    assert_eq!(log.durable_seq(), Some(4));
    Ok(())
}

#[test]
fn each_record_is_one_whole_line_in_one_write() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    log.append(
        Kind::SessionStart,
        json!({"text": "line\nbreak \u{2028} \"q\""}),
    )?;
    for i in 0..10 {
        log.append(Kind::Decision, json!({"i": i}))?;
    }
    for op in &log.file().ops {
        let Op::Write(bytes) = op else { continue };
        assert_eq!(split_lines(bytes).len(), 1, "one line per write");
        assert!(bytes.ends_with(b"\n"));
    }
    let report = verify_bytes(&log.file().bytes())?;
    assert_eq!(report.events, 11);
    assert_eq!(report.head_hash, log.head_hash());
    Ok(())
}

#[test]
fn failed_write_is_returned_and_poisons_the_log() -> TestResult {
    let mut log = fake(FsyncPolicy::Always)?;
    log.append(Kind::SessionStart, json!({}))?;
    let mut broken = AuditLog::with_file(
        Recorder {
            fail_writes: true,
            ..Recorder::default()
        },
        "full.jsonl",
        SESSION,
        FsyncPolicy::Always,
    )?;
    let e = broken
        .append(Kind::SessionStart, json!({}))
        .err()
        .ok_or("write succeeded")?;
    let AuditError::Write { seq: 0, error, .. } = &e else {
        return Err(format!("expected a write error, got {e}").into());
    };
    assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    assert!(
        e.to_string()
            .starts_with("cannot write seq 0 to audit log full.jsonl: "),
        "{e}"
    );
    let again = broken
        .append(Kind::SessionStart, json!({}))
        .err()
        .ok_or("poisoned log wrote")?;
    assert!(
        matches!(again, AuditError::Poisoned { seq: 0, .. }),
        "{again}"
    );
    assert!(matches!(broken.sync(), Err(AuditError::Poisoned { .. })));
    assert_eq!(broken.next_seq(), 0);
    Ok(())
}

#[test]
fn failed_sync_is_returned_and_poisons_the_log() -> TestResult {
    let mut log = AuditLog::with_file(
        Recorder {
            fail_syncs: true,
            ..Recorder::default()
        },
        "bad.jsonl",
        SESSION,
        FsyncPolicy::Always,
    )?;
    let e = log
        .append(Kind::SessionStart, json!({}))
        .err()
        .ok_or("sync succeeded")?;
    assert!(matches!(e, AuditError::Sync { seq: 0, .. }), "{e}");
    assert_eq!(log.durable_seq(), None);
    let again = log
        .append(Kind::Decision, json!({}))
        .err()
        .ok_or("poisoned log wrote")?;
    assert!(
        matches!(again, AuditError::Poisoned { seq: 0, .. }),
        "{again}"
    );
    Ok(())
}

#[test]
fn failed_batch_sync_poisons_the_log() -> TestResult {
    let mut log = AuditLog::with_file(
        Recorder {
            fail_syncs: true,
            ..Recorder::default()
        },
        "bad.jsonl",
        SESSION,
        FsyncPolicy::Batch,
    )?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(Kind::Decision, json!({}))?;
    let e = log.sync().err().ok_or("sync succeeded")?;
    assert!(matches!(e, AuditError::Sync { seq: 1, .. }), "{e}");
    assert!(matches!(
        log.append(Kind::Decision, json!({})),
        Err(AuditError::Poisoned { seq: 1, .. })
    ));
    Ok(())
}

#[test]
fn first_record_must_be_session_start_and_only_the_first() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    let e = log
        .append(Kind::Decision, json!({}))
        .err()
        .ok_or("decision at seq 0")?;
    assert!(
        matches!(
            e,
            AuditError::KindOutOfPlace {
                seq: 0,
                kind: Kind::Decision,
                ..
            }
        ),
        "{e}"
    );
    log.append(Kind::SessionStart, json!({}))?;
    let e = log
        .append(Kind::SessionStart, json!({}))
        .err()
        .ok_or("second session-start")?;
    assert!(
        matches!(e, AuditError::KindOutOfPlace { seq: 1, .. }),
        "{e}"
    );
    assert!(log.file().ops.len() == 1, "refused records are not written");
    Ok(())
}

#[test]
fn nothing_follows_session_end() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(Kind::SessionEnd, json!({}))?;
    assert!(log.is_sealed());
    let e = log
        .append(Kind::Alert, json!({}))
        .err()
        .ok_or("append after end")?;
    assert!(matches!(e, AuditError::Sealed { seq: 1, .. }), "{e}");
    Ok(())
}

#[test]
fn data_must_be_an_object() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    let e = log
        .append(Kind::SessionStart, json!([1]))
        .err()
        .ok_or("array data")?;
    assert!(
        matches!(
            e,
            AuditError::DataNotObject {
                found: "an array",
                ..
            }
        ),
        "{e}"
    );
    assert!(log.file().ops.is_empty());
    Ok(())
}

#[test]
fn typed_data_must_be_an_object_too() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    for (data, found) in [
        (json!(null), "null"),
        (json!(true), "a boolean"),
        (json!(-3), "a number"),
        (json!("x"), "a string"),
        (json!([1]), "an array"),
    ] {
        let e = log
            .append_data(Kind::SessionStart, &data)
            .err()
            .ok_or("not an object")?;
        assert!(
            matches!(e, AuditError::DataNotObject { found: f, seq: 0, .. } if f == found),
            "{e}"
        );
    }
    assert!(log.file().ops.is_empty());
    // The log is still usable: nothing was written.
    log.append_data(Kind::SessionStart, &json!({}))?;
    assert_eq!(log.next_seq(), 1);
    Ok(())
}

/// `append_data` serializes a struct straight into the record: the bytes
/// are those of `append` with the struct turned into a `Value` first.
#[test]
fn typed_data_writes_the_same_bytes_as_a_value() -> TestResult {
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        kind: &'a str,
        port: u16,
        list: &'a [&'a str],
        none: Option<u64>,
    }
    #[derive(serde::Serialize)]
    struct Data<'a> {
        action: Inner<'a>,
        verdict: &'a str,
        side_effects: bool,
        text: &'a str,
        neg: i64,
        big: u64,
        detail: &'a serde_json::Value,
    }
    let detail = json!({"status": 200, "z": [1, {"b": null, "a": "\u{2028}"}]});
    let data = Data {
        action: Inner {
            kind: "net",
            port: 8443,
            list: &["accept", "host"],
            none: None,
        },
        verdict: "allow",
        side_effects: false,
        text: "quote \" backslash \\ newline \n tab \t nul \u{0} é ☃",
        neg: -42,
        big: u64::MAX,
        detail: &detail,
    };
    let mut typed = fake(FsyncPolicy::Never)?;
    let mut valued = fake(FsyncPolicy::Never)?;
    typed.append_data(Kind::SessionStart, &json!({"s": 1}))?;
    valued.append(Kind::SessionStart, json!({"s": 1}))?;
    for _ in 0..3 {
        typed.append_data(Kind::Decision, &data)?;
        valued.append(Kind::Decision, serde_json::to_value(&data)?)?;
    }
    assert_eq!(
        String::from_utf8(typed.file().bytes())?,
        String::from_utf8(valued.file().bytes())?
    );
    verify_bytes(&typed.file().bytes())?;
    Ok(())
}

#[test]
fn empty_session_is_refused() {
    let e = AuditLog::with_file(Recorder::default(), "x.jsonl", "", FsyncPolicy::Never);
    assert!(matches!(e, Err(AuditError::EmptySession { .. })));
}

#[test]
fn oversized_record_is_refused_and_not_written() -> TestResult {
    let mut log = fake(FsyncPolicy::Never)?;
    log.append(Kind::SessionStart, json!({}))?;
    let big = "x".repeat(blastwall_audit::MAX_RECORD_BYTES);
    let e = log
        .append(Kind::Decision, json!({"argv": big}))
        .err()
        .ok_or("huge record")?;
    assert!(matches!(e, AuditError::TooLong { seq: 1, .. }), "{e}");
    // The log is still usable and the chain intact.
    log.append(Kind::Decision, json!({}))?;
    assert_eq!(verify_bytes(&log.file().bytes())?.events, 2);
    Ok(())
}

#[test]
fn create_makes_a_private_file_and_never_overwrites() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path, SESSION, FsyncPolicy::Always)?;
    log.append(Kind::SessionStart, json!({}))?;
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    let e = AuditLog::create(&path, SESSION, FsyncPolicy::Always)
        .err()
        .ok_or("second create succeeded")?;
    let AuditError::Create { error, .. } = &e else {
        return Err(format!("expected a create error, got {e}").into());
    };
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    Ok(())
}

#[test]
fn create_refuses_a_symlink() -> TestResult {
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("elsewhere");
    let path = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&target, &path)?;
    assert!(matches!(
        AuditLog::create(&path, SESSION, FsyncPolicy::Never),
        Err(AuditError::Create { .. })
    ));
    assert!(!target.exists());
    Ok(())
}

#[test]
fn a_second_writer_is_locked_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path, SESSION, FsyncPolicy::Never)?;
    log.append(Kind::SessionStart, json!({}))?;
    let e = AuditLog::open_append(&path, FsyncPolicy::Never)
        .err()
        .ok_or("second writer opened")?;
    assert!(matches!(e, AuditError::Locked { .. }), "{e}");
    drop(log);
    AuditLog::open_append(&path, FsyncPolicy::Never)?;
    Ok(())
}

#[test]
fn a_session_end_and_its_checkpoint_share_one_sync() -> TestResult {
    for fsync in [FsyncPolicy::Batch, FsyncPolicy::Always] {
        let dir = tempfile::tempdir()?;
        let heads = dir.path().join("audit-heads.jsonl");
        let mut log =
            fake(fsync)?.with_checkpoints(super::checkpoint::checkpointer(&heads, 1000)?)?;
        log.append(Kind::SessionStart, json!({}))?;
        let before = log.file().ops.len();
        let end = log.append(Kind::SessionEnd, json!({"exit": 0}))?;
        // session-end, then the checkpoint, then one sync through both.
        assert_eq!(
            log.file().kinds().get(before..),
            Some(&["write", "write", "sync"][..]),
            "{fsync:?}"
        );
        assert!(log.durable_seq().is_some_and(|d| d > end.seq), "{fsync:?}");
    }
    Ok(())
}
