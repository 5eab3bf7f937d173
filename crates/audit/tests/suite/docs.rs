//! The examples in docs/audit-schema.md are real logs that verify: the
//! checkpointed version 2 log with its signature and heads line, and the
//! version 1 log.

use std::io::Cursor;

use blastwall_audit::{Kind, LogReader, PublicKey, SigningKey, VerifyOptions, verify, verify_with};
use pretty_assertions::assert_eq;

use super::common::{TestResult, verify_bytes};

const SCHEMA_DOC: &str = include_str!("../../../../docs/audit-schema.md");

/// The `n`th block fenced as `lang` in the schema doc.
fn block(lang: &str, n: usize) -> Result<String, Box<dyn std::error::Error>> {
    let fence = format!("```{lang}\n");
    let mut rest = SCHEMA_DOC;
    for _ in 0..n {
        let at = rest.find(&fence).ok_or("no such block")?;
        rest = &rest[at + fence.len()..];
    }
    let start = rest.find(&fence).ok_or("no such block")? + fence.len();
    let len = rest[start..].find("```").ok_or("unclosed block")?;
    Ok(rest[start..start + len].to_owned())
}

fn kinds(log: &str) -> Result<Vec<Kind>, Box<dyn std::error::Error>> {
    Ok(LogReader::new("doc", Cursor::new(log.as_bytes()))
        .map(|e| e.map(|e| e.kind))
        .collect::<Result<Vec<_>, _>>()?)
}

#[test]
fn schema_doc_example_verifies() -> TestResult {
    let log = block("jsonl", 0)?;
    let report = verify_bytes(log.as_bytes())?;
    assert_eq!(report.events, 5);
    assert_eq!(report.version, 2);
    assert_eq!(report.session, "s-20260501-a1");
    assert!(report.sealed);
    assert_eq!(
        kinds(&log)?,
        [
            Kind::SessionStart,
            Kind::Decision,
            Kind::Outcome,
            Kind::SessionEnd,
            Kind::Checkpoint
        ]
    );
    Ok(())
}

#[test]
fn schema_doc_example_is_signed_by_the_documented_test_key() -> TestResult {
    let key = SigningKey::from_seed(&[1; 32])?.public_key();
    // The page spells the public key out on a line of its own.
    let spelled = SCHEMA_DOC.lines().find_map(PublicKey::from_hex);
    assert_eq!(spelled, Some(key));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let heads = dir.path().join("audit-heads.jsonl");
    std::fs::write(&path, block("jsonl", 0)?)?;
    let heads_line = SCHEMA_DOC
        .lines()
        .find(|l| l.starts_with("{\"session\":\"s-20260501-a1\""))
        .ok_or("no heads line")?;
    std::fs::write(&heads, format!("{heads_line}\n"))?;
    let report = verify_with(&path, &VerifyOptions::new(Some(key), Some(heads)))?;
    assert_eq!(report.signed_through, Some(4));
    assert_eq!(report.heads_matched, Some(1));
    Ok(())
}

#[test]
fn schema_doc_version_1_example_verifies() -> TestResult {
    let log = block("jsonl", 1)?;
    let report = verify_bytes(log.as_bytes())?;
    assert_eq!(report.events, 4);
    assert_eq!(report.version, 1);
    assert!(report.sealed);
    assert_eq!(report.checkpoints, 0);
    Ok(())
}

#[test]
fn schema_doc_example_verifies_from_a_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, block("jsonl", 0)?)?;
    assert_eq!(verify(&path)?.events, 5);
    Ok(())
}
