//! Logs written by the writer verify, read back field for field, and have
//! exactly the documented bytes.

use blastwall_audit::{
    AuditLog, ChainHash, FixedClock, FsyncPolicy, Kind, LogReader, SCHEMA_VERSION, Timestamp,
    read_events, verify,
};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{
    BASE_SECS, SESSION, TestResult, lines, sample_data, sample_kind, seal_body, write_log,
};

#[test]
fn written_log_verifies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let appended = write_log(&path, 20, true)?;
    let report = verify(&path)?;
    assert_eq!(report.events, 20);
    assert_eq!(report.session, SESSION);
    assert!(report.sealed);
    let last = appended.last().ok_or("no record")?;
    assert_eq!(report.head_hash, last.hash);
    assert_eq!(last.seq, 19);
    Ok(())
}

#[test]
fn system_clock_times_verify() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path, SESSION, FsyncPolicy::Always)?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(Kind::SessionEnd, json!({}))?;
    drop(log);
    let events = read_events(&path)?;
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.time.unix_secs() > BASE_SECS - 365 * 86_400)
    );
    Ok(())
}

#[test]
fn unsealed_log_verifies_but_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5, false)?;
    let report = verify(&path)?;
    assert_eq!(report.events, 5);
    assert!(!report.sealed);
    Ok(())
}

#[test]
fn read_events_returns_what_was_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let appended = write_log(&path, 6, true)?;
    let events = read_events(&path)?;
    assert_eq!(events.len(), 6);
    let mut prev = ChainHash::ZERO;
    for (i, (event, app)) in (0u64..).zip(events.iter().zip(&appended)) {
        let kind = sample_kind(i, 6, true);
        assert_eq!(event.v, SCHEMA_VERSION);
        assert_eq!(event.seq, i);
        assert_eq!(event.session, SESSION);
        assert_eq!(event.kind, kind);
        assert_eq!(event.data, sample_data(kind, i));
        assert_eq!(event.prev, prev);
        assert_eq!(event.hash, app.hash);
        // The stepping clock moves 1.5 ms per record.
        let nanos = i * 1_500_000;
        assert_eq!(event.time.unix_secs(), BASE_SECS + nanos / 1_000_000_000);
        assert_eq!(u64::from(event.time.subsec_nanos()), nanos % 1_000_000_000);
        prev = event.hash;
    }
    Ok(())
}

#[test]
fn reader_report_matches_verify() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 4, true)?;
    let mut reader = LogReader::open(&path)?;
    assert_eq!(reader.report(), None, "no report before the end");
    let count = reader
        .by_ref()
        .map(|e| e.map(|_| ()))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(count.len(), 4);
    assert_eq!(reader.report(), Some(verify(&path)?));
    Ok(())
}

/// The exact bytes of a record, built independently from the documented
/// format (docs/audit-schema.md) and compared with what the writer wrote.
#[test]
fn line_format_is_exactly_as_documented() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let time = Timestamp::new(BASE_SECS, 123_456_789).ok_or("bad time")?;
    let mut log =
        AuditLog::create(&path, "s-\"1\"", FsyncPolicy::Never)?.with_clock(FixedClock(time));
    let first = log.append(Kind::SessionStart, json!({"b": 1, "a": [true, null]}))?;
    let second = log.append(Kind::Decision, json!({"verdict": "deny"}))?;
    drop(log);

    let zeros = "0".repeat(64);
    let body0 = format!(
        "{{\"v\":2,\"seq\":0,\"time\":\"2026-05-01T12:00:00.123456789Z\",\"session\":\"s-\\\"1\\\"\",\
         \"kind\":\"session-start\",\"data\":{{\"b\":1,\"a\":[true,null]}},\"prev\":\"{zeros}\"}}"
    );
    let line0 = seal_body(&body0);
    let hash0 = first.hash.to_hex();
    let body1 = format!(
        "{{\"v\":2,\"seq\":1,\"time\":\"2026-05-01T12:00:00.123456789Z\",\"session\":\"s-\\\"1\\\"\",\
         \"kind\":\"decision\",\"data\":{{\"verdict\":\"deny\"}},\"prev\":\"{hash0}\"}}"
    );
    let line1 = seal_body(&body1);
    let got = lines(&path)?;
    assert_eq!(
        got.iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>(),
        vec![
            String::from_utf8_lossy(&line0).into_owned(),
            String::from_utf8_lossy(&line1).into_owned()
        ]
    );
    assert!(
        String::from_utf8_lossy(&line1).ends_with(&format!(",\"hash\":\"{}\"}}\n", second.hash))
    );
    Ok(())
}

/// A golden record: any change to the bytes the writer produces (and so to
/// every hash) shows up here first.
#[test]
fn golden_first_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let time = Timestamp::new(BASE_SECS, 0).ok_or("bad time")?;
    let mut log = AuditLog::create(&path, "s1", FsyncPolicy::Never)?.with_clock(FixedClock(time));
    log.append(Kind::SessionStart, json!({"manifest": "sha256:ab"}))?;
    drop(log);
    let text = std::fs::read_to_string(&path)?;
    assert_eq!(
        text,
        "{\"v\":2,\"seq\":0,\"time\":\"2026-05-01T12:00:00.000000000Z\",\"session\":\"s1\",\
         \"kind\":\"session-start\",\"data\":{\"manifest\":\"sha256:ab\"},\
         \"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\",\
         \"hash\":\"c70b7db4a1504adc95748febe5da142430c89f87fe52f58ac4e361d9b9391cc0\"}\n"
    );
    Ok(())
}

#[test]
fn event_serializes_with_the_same_keys_in_the_same_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2, false)?;
    let events = read_events(&path)?;
    let first = events.first().ok_or("no event")?;
    let text = serde_json::to_string(first)?;
    let original = std::fs::read_to_string(&path)?;
    assert_eq!(Some(text.as_str()), original.lines().next());
    Ok(())
}

#[test]
fn kinds_are_spelled_as_documented() -> TestResult {
    let spelled: Vec<String> = Kind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        spelled,
        [
            "session-start",
            "decision",
            "outcome",
            "alert",
            "session-end",
            "checkpoint"
        ]
    );
    for kind in Kind::ALL {
        assert_eq!(serde_json::to_value(kind)?, json!(kind.as_str()));
    }
    Ok(())
}
