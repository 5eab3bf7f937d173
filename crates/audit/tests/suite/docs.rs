//! The example in docs/audit-schema.md is a real log that verifies.

use std::io::Cursor;

use blastwall_audit::{Kind, LogReader, verify};
use pretty_assertions::assert_eq;

use super::common::{TestResult, verify_bytes};

const SCHEMA_DOC: &str = include_str!("../../../../docs/audit-schema.md");

fn example_log() -> Result<String, Box<dyn std::error::Error>> {
    let start = SCHEMA_DOC.find("```jsonl\n").ok_or("no jsonl block")? + "```jsonl\n".len();
    let len = SCHEMA_DOC[start..]
        .find("```")
        .ok_or("unclosed jsonl block")?;
    Ok(SCHEMA_DOC[start..start + len].to_owned())
}

#[test]
fn schema_doc_example_verifies() -> TestResult {
    let log = example_log()?;
    let report = verify_bytes(log.as_bytes())?;
    assert_eq!(report.events, 4);
    assert_eq!(report.session, "s-20260501-a1");
    assert!(report.sealed);
    let kinds = LogReader::new("doc", Cursor::new(log.as_bytes()))
        .map(|e| e.map(|e| e.kind))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(
        kinds,
        [
            Kind::SessionStart,
            Kind::Decision,
            Kind::Outcome,
            Kind::SessionEnd
        ]
    );
    Ok(())
}

#[test]
fn schema_doc_example_verifies_from_a_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, example_log()?)?;
    assert_eq!(verify(&path)?.events, 4);
    Ok(())
}
