//! Signed checkpoints: a checkpointed log verifies with its key and heads
//! file, and the attacks the chain alone misses (a cut at a record boundary,
//! a chain rewritten with every hash recomputed) are caught, with the first
//! bad seq.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blastwall_audit::checkpoint::{self, public_key_path, read_heads};
use blastwall_audit::{
    AuditError, AuditLog, CheckpointEvery, Checkpointer, FsyncPolicy, KeyError, Kind, PublicKey,
    SigningKey, VerifyError, VerifyErrorKind, VerifyOptions, VerifyReport, verify, verify_with,
};
use pretty_assertions::assert_eq;
use serde_json::{Map, Value, json};

use super::common::{
    SESSION, StepClock, TestResult, lines, sample_data, sample_kind, seal_body, write_lines,
};

const SEED: [u8; 32] = [42; 32];

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    heads: PathBuf,
    key: PublicKey,
}

impl Setup {
    fn options(&self) -> VerifyOptions {
        VerifyOptions::new(Some(self.key), Some(self.heads.clone()))
    }

    fn verify(&self) -> Result<VerifyReport, VerifyError> {
        verify_with(&self.log, &self.options())
    }
}

pub(super) fn checkpointer(heads: &Path, every: u64) -> Result<Checkpointer, KeyError> {
    Ok(Checkpointer {
        key: SigningKey::from_seed(&SEED)?,
        heads_path: heads.to_path_buf(),
        every: CheckpointEvery {
            records: every,
            interval: None,
        },
    })
}

/// A log of `n` sample records with a checkpoint every `every` records.
fn checkpointed(n: u64, every: u64, sealed: bool) -> Result<Setup, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let heads = dir.path().join("audit-heads.jsonl");
    let mut w = AuditLog::create(&log, SESSION, FsyncPolicy::Batch)?
        .with_clock(StepClock::default())
        .with_checkpoints(checkpointer(&heads, every)?)?;
    for i in 0..n {
        let kind = sample_kind(i, n, sealed);
        w.append(kind, sample_data(kind, i))?;
    }
    w.sync()?;
    Ok(Setup {
        _dir: dir,
        log,
        heads,
        key: SigningKey::from_seed(&SEED)?.public_key(),
    })
}

fn kinds(path: &Path) -> Result<Vec<Kind>, Box<dyn std::error::Error>> {
    Ok(blastwall_audit::read_events(path)?
        .into_iter()
        .map(|e| e.kind)
        .collect())
}

fn record(line: &[u8]) -> Result<Map<String, Value>, Box<dyn std::error::Error>> {
    let value: Value = serde_json::from_slice(line)?;
    value
        .as_object()
        .cloned()
        .ok_or_else(|| "not an object".into())
}

/// What a forger does to each checkpoint met while rewriting a chain.
#[derive(Clone, Copy)]
enum Forge<'a> {
    /// Keeps the checkpoint, with the new head, and its old signature.
    KeepSignature,
    /// Re-signs it with another key.
    SignWith(&'a SigningKey),
    /// Leaves checkpoints out (renumbering what follows).
    Drop,
}

/// Rewrites the log from seq `from` on: changes the data of the first
/// record there that is not a checkpoint, then recomputes every later seq,
/// prev and hash, as someone who can write the file and knows the format,
/// but not the key, would.
fn rewrite(path: &Path, from: usize, forge: Forge<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let old = lines(path)?;
    let mut out: Vec<Vec<u8>> = old[..from].to_vec();
    let mut prev = match out.last() {
        Some(l) => record(l)?["hash"].clone(),
        None => json!("0".repeat(64)),
    };
    let mut changed = false;
    for line in &old[from..] {
        let mut r = record(line)?;
        let seq = u64::try_from(out.len())?;
        let is_checkpoint = r["kind"] == "checkpoint";
        if is_checkpoint && matches!(forge, Forge::Drop) {
            continue;
        }
        r.remove("hash");
        r.insert("seq".into(), json!(seq));
        r.insert("prev".into(), prev.clone());
        if !changed && !is_checkpoint {
            r.insert(
                "data".into(),
                json!({"verdict": "allow", "rewritten": true}),
            );
            changed = true;
        }
        if is_checkpoint {
            let head_hash = prev.as_str().ok_or("prev")?.to_owned();
            let data = r
                .get_mut("data")
                .and_then(Value::as_object_mut)
                .ok_or("data")?;
            data.insert("head_seq".into(), json!(seq - 1));
            data.insert("head_hash".into(), json!(head_hash));
            if let Forge::SignWith(key) = forge {
                let hash = blastwall_audit::ChainHash::from_hex(&head_hash).ok_or("hash")?;
                let sig = key.sign_checkpoint(SESSION, seq - 1, &hash);
                data.insert("key".into(), json!(key.public_key().to_hex()));
                data.insert("sig".into(), json!(hex::encode(sig)));
            }
        }
        let sealed = seal_body(&serde_json::to_string(&r)?);
        prev = record(&sealed)?["hash"].clone();
        out.push(sealed);
    }
    Ok(write_lines(path, &out)?)
}

#[test]
fn checkpointed_log_verifies_with_key_and_heads() -> TestResult {
    let s = checkpointed(10, 4, true)?;
    // 4 records, checkpoint, 4 records, checkpoint, 2 records (the last is
    // session-end), final checkpoint.
    let got = kinds(&s.log)?;
    assert_eq!(got.len(), 13);
    assert_eq!(got[4], Kind::Checkpoint);
    assert_eq!(got[9], Kind::Checkpoint);
    assert_eq!(got[11], Kind::SessionEnd);
    assert_eq!(got[12], Kind::Checkpoint);
    let report = s.verify()?;
    assert_eq!(report.events, 13);
    assert!(report.sealed);
    assert_eq!(report.version, 2);
    assert_eq!(report.checkpoints, 3);
    assert!(report.signatures_checked);
    assert_eq!(report.signed_through, Some(12));
    assert_eq!(report.heads_matched, Some(3));
    // The heads file holds one line per checkpoint.
    let heads = read_heads(&s.heads, SESSION)?;
    let seqs: Vec<(u64, u64)> = heads.iter().map(|h| (h.seq, h.checkpoint_seq)).collect();
    assert_eq!(seqs, [(3, 4), (8, 9), (11, 12)]);
    // The chain alone verifies too.
    assert_eq!(verify(&s.log)?.events, 13);
    Ok(())
}

#[test]
fn interval_checkpoints_follow_each_record_once_due() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let heads = dir.path().join("heads.jsonl");
    let mut cp = checkpointer(&heads, u64::MAX)?;
    cp.every.interval = Some(Duration::ZERO);
    let mut w = AuditLog::create(&log, SESSION, FsyncPolicy::Never)?.with_checkpoints(cp)?;
    w.append(Kind::SessionStart, json!({}))?;
    let d = w.append(Kind::Decision, json!({}))?;
    assert_eq!(d.seq, 2, "a checkpoint follows seq 0");
    assert_eq!(w.next_seq(), 4);
    // Nothing new to sign: no checkpoint.
    assert_eq!(w.checkpoint()?, None);
    drop(w);
    assert_eq!(
        kinds(&log)?,
        [
            Kind::SessionStart,
            Kind::Checkpoint,
            Kind::Decision,
            Kind::Checkpoint
        ]
    );
    Ok(())
}

#[test]
fn explicit_checkpoint_signs_the_head() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let heads = dir.path().join("heads.jsonl");
    let mut w = AuditLog::create(&log, SESSION, FsyncPolicy::Always)?
        .with_checkpoints(checkpointer(&heads, 1000)?)?;
    w.append(Kind::SessionStart, json!({}))?;
    w.append(Kind::Decision, json!({}))?;
    let c = w.checkpoint()?.ok_or("no checkpoint")?;
    assert_eq!(c.seq, 2);
    assert_eq!(w.durable_seq(), Some(2));
    let h = read_heads(&heads, SESSION)?;
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].seq, h[0].checkpoint_seq), (1, 2));
    Ok(())
}

#[test]
fn a_cut_at_a_record_boundary_before_the_last_head_is_truncation() -> TestResult {
    let s = checkpointed(10, 4, true)?;
    let mut l = lines(&s.log)?;
    // Keep seq 0..=10: the last checkpoint (12) and session-end (11) go.
    l.truncate(11);
    write_lines(&s.log, &l)?;
    // The chain alone cannot tell.
    assert!(!verify(&s.log)?.sealed);
    let e = s.verify().err().ok_or("the cut went unnoticed")?;
    let VerifyErrorKind::Truncated {
        last,
        head_seq,
        checkpoint_seq,
        ..
    } = e.kind
    else {
        return Err(format!("expected truncation, got {e}").into());
    };
    assert_eq!((last, head_seq, checkpoint_seq), (10, 11, 12));
    // Signed through the checkpoint at 9: seq 10 is the first no signature covers.
    assert_eq!(e.seq(), Some(10));
    Ok(())
}

#[test]
fn a_cut_that_removes_several_checkpoints_is_truncation() -> TestResult {
    let s = checkpointed(10, 4, false)?;
    let mut l = lines(&s.log)?;
    l.truncate(3);
    write_lines(&s.log, &l)?;
    let e = s.verify().err().ok_or("the cut went unnoticed")?;
    assert!(matches!(e.kind, VerifyErrorKind::Truncated { .. }), "{e}");
    assert_eq!(e.seq(), Some(0));
    assert!(e.to_string().contains("no record is covered"), "{e}");
    Ok(())
}

#[test]
fn heads_file_saying_more_than_the_log_has_is_truncation() -> TestResult {
    let s = checkpointed(10, 4, true)?;
    let mut l = lines(&s.log)?;
    l.pop(); // only the final checkpoint goes: the log still ends in session-end
    write_lines(&s.log, &l)?;
    assert!(verify(&s.log)?.sealed);
    let e = s.verify().err().ok_or("the cut went unnoticed")?;
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::Truncated {
                checkpoint_seq: 12,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.seq(), Some(10));
    Ok(())
}

#[test]
fn rewritten_chain_with_old_signatures_fails_at_the_first_checkpoint() -> TestResult {
    let s = checkpointed(12, 4, true)?;
    rewrite(&s.log, 6, Forge::KeepSignature)?;
    // The chain is consistent again ...
    verify(&s.log)?;
    // ... but the signature of the checkpoint at 9 no longer holds.
    let e = s.verify().err().ok_or("the rewrite went unnoticed")?;
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::BadSignature {
                checkpoint_seq: 9,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.seq(), Some(5));
    // With the key alone (no heads file) too.
    let e = verify_with(&s.log, &VerifyOptions::new(Some(s.key), None))
        .err()
        .ok_or("unnoticed without heads")?;
    assert_eq!(e.seq(), Some(5));
    Ok(())
}

#[test]
fn rewritten_chain_signed_with_a_forged_key_is_refused() -> TestResult {
    let s = checkpointed(12, 4, true)?;
    let forger = SigningKey::from_seed(&[7; 32])?;
    rewrite(&s.log, 2, Forge::SignWith(&forger))?;
    verify(&s.log)?;
    let e = s.verify().err().ok_or("the rewrite went unnoticed")?;
    let VerifyErrorKind::WrongKey {
        checkpoint_seq,
        found,
        ..
    } = e.kind
    else {
        return Err(format!("expected a wrong key, got {e}").into());
    };
    assert_eq!(checkpoint_seq, 4);
    assert_eq!(found, forger.public_key());
    assert_eq!(e.seq(), Some(0));
    Ok(())
}

#[test]
fn rewritten_chain_without_checkpoints_is_caught_by_the_heads_file() -> TestResult {
    let s = checkpointed(12, 4, true)?;
    rewrite(&s.log, 6, Forge::Drop)?;
    // Chain and key find nothing wrong: the checkpoints before the rewrite
    // still verify and the later ones are gone.
    let keyed = verify_with(&s.log, &VerifyOptions::new(Some(s.key), None))?;
    assert_eq!(keyed.checkpoints, 1);
    // The heads file holds the head of the checkpoint at 9.
    let e = s.verify().err().ok_or("the rewrite went unnoticed")?;
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::HeadMismatch {
                checkpoint_seq: 9,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.seq(), Some(5));
    Ok(())
}

#[test]
fn a_forged_line_in_the_heads_file_is_refused() -> TestResult {
    let s = checkpointed(6, 4, false)?;
    let forger = SigningKey::from_seed(&[9; 32])?;
    let hash = blastwall_audit::ChainHash::ZERO;
    let sig = forger.sign_checkpoint(SESSION, 40, &hash);
    let line = json!({
        "session": SESSION, "seq": 40, "hash": hash.to_hex(), "checkpoint_seq": 41,
        "key": forger.public_key().to_hex(), "sig": hex::encode(sig),
    });
    let mut text = std::fs::read_to_string(&s.heads)?;
    text.push_str(&format!("{line}\n"));
    std::fs::write(&s.heads, text)?;
    let e = s.verify().err().ok_or("the forged head went unnoticed")?;
    assert!(
        matches!(e.kind, VerifyErrorKind::ForgedHead { head_seq: 40 }),
        "{e}"
    );
    Ok(())
}

#[test]
fn heads_of_other_sessions_and_a_torn_last_line_are_ignored() -> TestResult {
    let s = checkpointed(6, 4, false)?;
    let mut text = std::fs::read_to_string(&s.heads)?;
    let other = json!({
        "session": "other", "seq": 900, "hash": "0".repeat(64), "checkpoint_seq": 901,
        "key": "0".repeat(64), "sig": "0".repeat(128),
    });
    text.push_str(&format!("{other}\n{{\"session\":\"sess"));
    std::fs::write(&s.heads, text)?;
    assert_eq!(s.verify()?.heads_matched, Some(1));
    Ok(())
}

#[test]
fn a_damaged_checkpoint_record_is_bad() -> TestResult {
    let s = checkpointed(6, 4, false)?;
    let mut l = lines(&s.log)?;
    let mut r = record(&l[4])?;
    r.remove("hash");
    r["data"]["head_seq"] = json!(2);
    l[4] = seal_body(&serde_json::to_string(&r)?);
    // The hash of seq 4 changed, so seq 5's prev no longer links: keep the
    // log short so the checkpoint's own check is what fails.
    l.truncate(5);
    write_lines(&s.log, &l)?;
    let e = verify(&s.log).err().ok_or("unnoticed")?;
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::BadCheckpoint {
                checkpoint_seq: 4,
                ..
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn nothing_but_one_checkpoint_follows_session_end() -> TestResult {
    let s = checkpointed(4, 100, true)?;
    let mut l = lines(&s.log)?;
    // A second copy of the final checkpoint, re-chained.
    let mut r = record(&l[4])?;
    let prev = record(&l[4])?["hash"].clone();
    r.remove("hash");
    r.insert("seq".into(), json!(5));
    r.insert("prev".into(), prev);
    l.push(seal_body(&serde_json::to_string(&r)?));
    write_lines(&s.log, &l)?;
    let e = verify(&s.log).err().ok_or("unnoticed")?;
    assert!(
        matches!(e.kind, VerifyErrorKind::KindOutOfPlace { .. }),
        "{e}"
    );
    assert_eq!(e.seq(), Some(5));
    Ok(())
}

#[test]
fn the_writer_refuses_checkpoints_from_callers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut w = AuditLog::create(dir.path().join("a.jsonl"), SESSION, FsyncPolicy::Never)?;
    w.append(Kind::SessionStart, json!({}))?;
    let e = w
        .append(Kind::Checkpoint, json!({}))
        .err()
        .ok_or("accepted")?;
    assert!(matches!(e, AuditError::KindOutOfPlace { .. }), "{e}");
    Ok(())
}

#[test]
fn a_reopened_log_keeps_checkpointing() -> TestResult {
    let s = checkpointed(5, 4, false)?;
    let mut w = AuditLog::open_append(&s.log, FsyncPolicy::Batch)?
        .with_checkpoints(checkpointer(&s.heads, 4)?)?;
    for i in 0..5 {
        w.append(Kind::Decision, sample_data(Kind::Decision, i))?;
    }
    w.append(Kind::SessionEnd, json!({}))?;
    drop(w);
    let r = s.verify()?;
    assert!(r.sealed);
    assert_eq!(r.checkpoints, 3);
    Ok(())
}

#[test]
fn a_version_1_log_cannot_gain_a_version_2_record() -> TestResult {
    let s = checkpointed(3, 100, false)?;
    let mut l = lines(&s.log)?;
    let mut r = record(&l[0])?;
    r.remove("hash");
    r.insert("v".into(), json!(1));
    l[0] = seal_body(&serde_json::to_string(&r)?);
    l.truncate(1);
    let mut r1 = record(&lines(&s.log)?[1])?;
    r1.remove("hash");
    r1.insert("prev".into(), record(&l[0])?["hash"].clone());
    l.push(seal_body(&serde_json::to_string(&r1)?));
    write_lines(&s.log, &l)?;
    let e = verify(&s.log).err().ok_or("unnoticed")?;
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::MixedVersions {
                expected: 1,
                found: 2
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn the_key_is_created_once_with_mode_0600_and_its_public_half_beside_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let cp = Checkpointer::in_home(&home)?;
    let key_path = checkpoint::key_path(&home);
    let mode = std::fs::metadata(&key_path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let keys_mode = std::fs::metadata(home.join("keys"))?.permissions().mode() & 0o777;
    assert_eq!(keys_mode, 0o700);
    let public = PublicKey::load(public_key_path(&key_path))?;
    assert_eq!(public, cp.key.public_key());
    // Second use: the same key.
    let again = Checkpointer::in_home(&home)?;
    assert_eq!(again.key.public_key(), public);
    assert_eq!(cp.heads_path, home.join("audit-heads.jsonl"));
    Ok(())
}

#[test]
fn a_key_others_can_read_or_a_symlinked_key_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path();
    let key_path = checkpoint::key_path(home);
    SigningKey::load_or_create(&key_path)?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644))?;
    let e = SigningKey::load(&key_path).err().ok_or("accepted")?;
    assert!(matches!(e, KeyError::Unsafe { .. }), "{e}");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    let link = home.join("link.ed25519");
    std::os::unix::fs::symlink(&key_path, &link)?;
    assert!(SigningKey::load(&link).is_err());
    Ok(())
}

#[test]
fn every_cut_at_a_record_boundary_of_a_signed_log_is_caught() -> TestResult {
    let s = checkpointed(12, 4, true)?;
    let whole = lines(&s.log)?;
    s.verify()?;
    for keep in 1..whole.len() {
        write_lines(&s.log, &whole[..keep])?;
        // The chain alone verifies every one of them.
        verify(&s.log)?;
        let e = s
            .verify()
            .err()
            .ok_or(format!("a cut to {keep} records went unnoticed"))?;
        assert!(
            matches!(e.kind, VerifyErrorKind::Truncated { .. }),
            "{keep}: {e}"
        );
        // The first bad seq is never past the cut.
        assert!(e.seq().is_some_and(|s| s <= keep as u64), "{keep}: {e}");
    }
    Ok(())
}

#[test]
fn every_rewrite_point_is_caught_whatever_the_forger_does_with_checkpoints() -> TestResult {
    let forger = SigningKey::from_seed(&[5; 32])?;
    for forge in [Forge::KeepSignature, Forge::SignWith(&forger), Forge::Drop] {
        let s = checkpointed(12, 4, true)?;
        let whole = lines(&s.log)?;
        for from in 0..whole.len() {
            // The rewrite changes the first record at or after `from` that
            // is not a checkpoint; from the final checkpoint on there is
            // none, and nothing to catch.
            let Some(first_changed) = (from..whole.len())
                .find(|&i| record(&whole[i]).is_ok_and(|r| r["kind"] != "checkpoint"))
            else {
                continue;
            };
            write_lines(&s.log, &whole)?;
            rewrite(&s.log, from, forge)?;
            verify(&s.log)?;
            let e = s
                .verify()
                .err()
                .ok_or(format!("a rewrite from line {from} went unnoticed"))?;
            // The first bad seq is never past the first record changed.
            assert!(
                e.seq().is_some_and(|s| s <= first_changed as u64),
                "{from}: {e}"
            );
        }
    }
    Ok(())
}
