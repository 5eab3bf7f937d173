//! `open_append`: continuing a chain after a restart, and refusing to
//! continue a damaged or finished one.

use blastwall_audit::{AuditError, AuditLog, FsyncPolicy, Kind, VerifyErrorKind, verify};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{SESSION, TestResult, lines, write_lines, write_log};

#[test]
fn open_append_continues_the_chain() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let first = write_log(&path, 4, false)?;
    let mut log = AuditLog::open_append(&path, FsyncPolicy::Always)?;
    assert_eq!(log.next_seq(), 4);
    assert_eq!(log.session_id(), SESSION);
    assert_eq!(Some(log.head_hash()), first.last().map(|a| a.hash));
    assert_eq!(
        log.durable_seq(),
        Some(3),
        "existing records are synced on open"
    );
    let a = log.append(Kind::Decision, json!({"verdict": "deny"}))?;
    assert_eq!(a.seq, 4);
    log.append(Kind::SessionEnd, json!({}))?;
    drop(log);
    let report = verify(&path)?;
    assert_eq!(report.events, 6);
    assert!(report.sealed);
    Ok(())
}

#[test]
fn open_append_refuses_a_tampered_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5, false)?;
    let mut l = lines(&path)?;
    let text = String::from_utf8(l[2].clone())?.replace("forwarded", "forwardeX");
    l[2] = text.into_bytes();
    write_lines(&path, &l)?;
    let before = std::fs::read(&path)?;
    let e = AuditLog::open_append(&path, FsyncPolicy::Always)
        .err()
        .ok_or("tampered log opened")?;
    let AuditError::Damaged(inner) = &e else {
        return Err(format!("expected a damaged log, got {e}").into());
    };
    assert_eq!(inner.seq(), Some(2));
    assert!(matches!(inner.kind, VerifyErrorKind::HashMismatch { .. }));
    assert!(
        e.to_string()
            .starts_with("refusing to append to a damaged log: audit log "),
        "{e}"
    );
    assert_eq!(std::fs::read(&path)?, before, "nothing written");
    Ok(())
}

/// A crash mid-write leaves a record with no newline: reported with its seq,
/// never dropped silently.
#[test]
fn open_append_refuses_a_torn_tail_and_names_the_seq() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3, false)?;
    let mut bytes = std::fs::read(&path)?;
    bytes.extend_from_slice(b"{\"v\":2,\"seq\":3,\"time\":\"2026-05");
    std::fs::write(&path, &bytes)?;
    let e = AuditLog::open_append(&path, FsyncPolicy::Batch)
        .err()
        .ok_or("torn log opened")?;
    let AuditError::Damaged(inner) = &e else {
        return Err(format!("expected a damaged log, got {e}").into());
    };
    assert!(matches!(inner.kind, VerifyErrorKind::TornTail));
    assert_eq!(inner.seq(), Some(3));
    assert!(e.to_string().contains("seq 3 (line 4)"), "{e}");
    Ok(())
}

#[test]
fn open_append_refuses_a_sealed_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3, true)?;
    let e = AuditLog::open_append(&path, FsyncPolicy::Never)
        .err()
        .ok_or("sealed log opened")?;
    assert!(matches!(e, AuditError::Sealed { seq: 2, .. }), "{e}");
    Ok(())
}

#[test]
fn open_append_refuses_an_empty_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::create(&path, SESSION, FsyncPolicy::Never)?);
    let e = AuditLog::open_append(&path, FsyncPolicy::Never)
        .err()
        .ok_or("empty log opened")?;
    let AuditError::Damaged(inner) = &e else {
        return Err(format!("expected a damaged log, got {e}").into());
    };
    assert!(matches!(inner.kind, VerifyErrorKind::Empty));
    Ok(())
}

#[test]
fn open_append_refuses_a_missing_file_or_a_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("nope.jsonl");
    assert!(matches!(
        AuditLog::open_append(&missing, FsyncPolicy::Never),
        Err(AuditError::Open { .. })
    ));
    assert!(matches!(
        AuditLog::open_append(dir.path(), FsyncPolicy::Never),
        Err(AuditError::Open { .. } | AuditError::NotAFile { .. })
    ));
    Ok(())
}
