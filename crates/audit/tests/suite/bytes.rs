//! Bytes that are not UTF-8 (paths, argv) survive a trip through the log.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use blastwall_audit::bytes::{
    argv_from_json, argv_to_json, bytes_from_json, bytes_to_json, path_from_json, path_to_json,
};
use blastwall_audit::{AuditLog, FsyncPolicy, Kind, read_events};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{SESSION, TestResult};

#[test]
fn non_utf8_path_and_argv_round_trip_through_a_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    let odd = PathBuf::from(OsStr::from_bytes(b"/work/caf\xe9/\xff\x00x"));
    let argv = [
        OsString::from("rm"),
        OsString::from("-rf"),
        OsStr::from_bytes(b"\x80dir").to_os_string(),
    ];
    let mut log = AuditLog::create(&path, SESSION, FsyncPolicy::Never)?;
    log.append(Kind::SessionStart, json!({}))?;
    log.append(
        Kind::Decision,
        json!({"action": {"path": path_to_json(&odd), "argv": argv_to_json(&argv)}}),
    )?;
    drop(log);
    let events = read_events(&path)?;
    let action = &events.get(1).ok_or("no decision")?.data["action"];
    assert_eq!(
        action["path"],
        json!({"hex": "2f776f726b2f636166e92fff0078"})
    );
    assert_eq!(path_from_json(&action["path"]), Some(odd));
    assert_eq!(argv_from_json(&action["argv"]), Some(argv.to_vec()));
    Ok(())
}

#[test]
fn utf8_is_a_plain_string() {
    assert_eq!(bytes_to_json("héllo".as_bytes()), json!("héllo"));
    assert_eq!(path_to_json(Path::new("/tmp/a b")), json!("/tmp/a b"));
    assert_eq!(bytes_to_json(b""), json!(""));
}

#[test]
fn a_string_that_looks_like_hex_stays_a_string() {
    let tricky = br#"{"hex":"00"}"#;
    let value = bytes_to_json(tricky);
    assert_eq!(value, json!(r#"{"hex":"00"}"#));
    assert_eq!(bytes_from_json(&value), Some(tricky.to_vec()));
}

#[test]
fn decoding_is_strict() {
    assert_eq!(
        bytes_from_json(&json!({"hex": "ff00"})),
        Some(vec![0xff, 0x00])
    );
    assert_eq!(bytes_from_json(&json!({"hex": "FF00"})), None, "uppercase");
    assert_eq!(bytes_from_json(&json!({"hex": "f"})), None, "odd length");
    assert_eq!(
        bytes_from_json(&json!({"hex": "ff", "x": 1})),
        None,
        "extra member"
    );
    assert_eq!(
        bytes_from_json(&json!({"b64": "AA=="})),
        None,
        "other encoding"
    );
    assert_eq!(bytes_from_json(&json!(12)), None);
    assert_eq!(argv_from_json(&json!(["a", 1])), None);
}
