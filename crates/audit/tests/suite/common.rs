//! Helpers shared by the test modules: a stepping clock, a log writer, line
//! surgery, and an independent encoder of the record format.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use blastwall_audit::{
    Appended, AuditLog, Clock, FsyncPolicy, Kind, LogReader, Timestamp, VerifyError, VerifyReport,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The session id every test log uses.
pub(crate) const SESSION: &str = "sess-0001";

/// 2026-05-01T12:00:00Z.
pub(crate) const BASE_SECS: u64 = 1_777_636_800;

/// A clock that starts at [`BASE_SECS`] and moves 1.5 ms per reading.
#[derive(Debug, Default)]
pub(crate) struct StepClock {
    readings: AtomicU64,
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        let total_nanos = n * 1_500_000;
        let secs = BASE_SECS + total_nanos / 1_000_000_000;
        let nanos = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
        Timestamp::new(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The data of the `i`th record of a test log of kind `kind`.
pub(crate) fn sample_data(kind: Kind, i: u64) -> Value {
    match kind {
        Kind::SessionStart => json!({"manifest": "sha256:00ff", "agent": "claude"}),
        Kind::Decision => json!({
            "action": {"kind": "net", "method": "GET", "url": format!("https://api.example.com/items/{i}")},
            "verdict": "allow",
            "rule": "network.hosts[0]",
            "reason": "GET on api.example.com is allowed",
            "labels": ["read"],
            "approval": null,
        }),
        Kind::Outcome => json!({"decision_seq": i - 1, "outcome": "forwarded"}),
        Kind::SessionEnd => json!({"exit": 0}),
        _ => json!({"note": "other"}),
    }
}

/// The kind of the `i`th of `n` records: session-start, then decisions and
/// outcomes alternating, then session-end if `sealed`.
pub(crate) fn sample_kind(i: u64, n: u64, sealed: bool) -> Kind {
    if i == 0 {
        Kind::SessionStart
    } else if sealed && i + 1 == n {
        Kind::SessionEnd
    } else if i % 2 == 1 {
        Kind::Decision
    } else {
        Kind::Outcome
    }
}

/// Writes `n` sample records to a new log at `path`.
pub(crate) fn write_log(
    path: &Path,
    n: u64,
    sealed: bool,
) -> Result<Vec<Appended>, Box<dyn std::error::Error>> {
    let mut log =
        AuditLog::create(path, SESSION, FsyncPolicy::Batch)?.with_clock(StepClock::default());
    let mut out = Vec::new();
    for i in 0..n {
        let kind = sample_kind(i, n, sealed);
        out.push(log.append(kind, sample_data(kind, i))?);
    }
    log.sync()?;
    Ok(out)
}

/// The lines of the file at `path`, each with its newline.
pub(crate) fn lines(path: &Path) -> Result<Vec<Vec<u8>>, std::io::Error> {
    let bytes = std::fs::read(path)?;
    Ok(split_lines(&bytes))
}

pub(crate) fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

pub(crate) fn write_lines(path: &Path, lines: &[Vec<u8>]) -> Result<(), std::io::Error> {
    std::fs::write(path, lines.concat())
}

/// Length of `,"hash":"<64 hex>"}`.
const HASH_SUFFIX_LEN: usize = 75;

/// Builds a full line from a record body that has no hash member (it ends
/// in `}`), computing the hash the way `docs/audit-schema.md` says, with no
/// help from the crate.
pub(crate) fn seal_body(body: &str) -> Vec<u8> {
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let open = body.strip_suffix('}').unwrap_or(body);
    format!("{open},\"hash\":\"{hash}\"}}\n").into_bytes()
}

/// Cuts the hash member off a line, lets `edit` change the body, and re-seals
/// it with a correct hash: a forger who knows the format.
pub(crate) fn reforge(line: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let record = line.strip_suffix(b"\n").unwrap_or(line);
    let cut = record.len().saturating_sub(HASH_SUFFIX_LEN);
    let body = format!("{}}}", String::from_utf8_lossy(&record[..cut]));
    seal_body(&edit(&body))
}

/// The hash a line carries (its last 64 hex digits before `"}`).
pub(crate) fn hash_of(line: &[u8]) -> String {
    let record = line.strip_suffix(b"\n").unwrap_or(line);
    let end = record.len().saturating_sub(2);
    String::from_utf8_lossy(&record[end.saturating_sub(64)..end]).into_owned()
}

/// Verifies a log held in memory, returning the report.
pub(crate) fn verify_bytes(bytes: &[u8]) -> Result<VerifyReport, VerifyError> {
    let mut reader = LogReader::new("mem.jsonl", Cursor::new(bytes));
    for event in &mut reader {
        event?;
    }
    Ok(reader.report().unwrap_or_else(unreachable_report))
}

fn unreachable_report() -> VerifyReport {
    // `report` is `Some` once iteration ended without an error, which the
    // loop above guarantees; reaching here is a bug in the reader.
    panic!("LogReader ended without error but has no report")
}
