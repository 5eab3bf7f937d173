//! `Syncer`: records made durable outside the writer's lock, one
//! `fdatasync` shared by concurrent callers.

use std::sync::{Arc, Mutex};

use blastwall_audit::{AuditLog, FsyncPolicy, Kind, verify};
use serde_json::json;

use super::common::{SESSION, TestResult};

#[test]
fn threads_append_under_the_lock_and_sync_outside_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path, SESSION, FsyncPolicy::Batch)?;
    log.append(Kind::SessionStart, json!({}))?;
    let syncer = Arc::new(log.syncer()?);
    let log = Arc::new(Mutex::new(log));
    let mut threads = Vec::new();
    for t in 0..4 {
        let log = Arc::clone(&log);
        let syncer = Arc::clone(&syncer);
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            for i in 0..100 {
                let seq = log
                    .lock()
                    .map_err(|e| e.to_string())?
                    .append(Kind::Decision, json!({"thread": t, "i": i}))
                    .map_err(|e| e.to_string())?
                    .seq;
                syncer.sync_through(seq).map_err(|e| e.to_string())?;
                // Once it returns, the record is durable.
                let durable = syncer.durable_seq().ok_or("nothing durable")?;
                if durable < seq {
                    return Err(format!("seq {seq} returned with only {durable} durable"));
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a thread panicked")??;
    }
    let log = log.lock().map_err(|e| e.to_string())?;
    // The writer sees what the syncer made durable.
    assert_eq!(log.durable_seq(), Some(400));
    assert_eq!(syncer.durable_seq(), Some(400));
    drop(log);
    assert_eq!(verify(&path)?.events, 401);
    Ok(())
}

#[test]
fn a_syncer_under_never_does_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = AuditLog::create(dir.path().join("a.jsonl"), SESSION, FsyncPolicy::Never)?;
    let a = log.append(Kind::SessionStart, json!({}))?;
    let syncer = log.syncer()?;
    syncer.sync_through(a.seq)?;
    assert_eq!(syncer.durable_seq(), None);
    assert_eq!(log.durable_seq(), None);
    Ok(())
}

#[test]
fn the_writers_own_syncs_count_for_the_syncer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = AuditLog::create(dir.path().join("a.jsonl"), SESSION, FsyncPolicy::Always)?;
    let syncer = log.syncer()?;
    let a = log.append(Kind::SessionStart, json!({}))?;
    assert_eq!(syncer.durable_seq(), Some(a.seq));
    // Already durable: returns at once.
    syncer.sync_through(a.seq)?;
    Ok(())
}
