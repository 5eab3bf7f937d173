//! Attacks on a written log: each one must fail verification, at the first
//! bad seq, with the right kind.

use blastwall_audit::{ChainHash, VerifyError, VerifyErrorKind, verify};
use pretty_assertions::assert_eq;

use super::common::{
    SESSION, TestResult, hash_of, lines, reforge, seal_body, split_lines, verify_bytes,
    write_lines, write_log,
};

/// Writes a sealed log of `n` records, applies `attack` to its lines, and
/// returns the verification error.
fn attacked(
    n: u64,
    attack: impl FnOnce(&mut Vec<Vec<u8>>),
) -> Result<VerifyError, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, n, true)?;
    let mut l = lines(&path)?;
    attack(&mut l);
    write_lines(&path, &l)?;
    match verify(&path) {
        Ok(report) => Err(format!("attacked log verified: {report:?}").into()),
        Err(e) => {
            assert_eq!(e.path, path, "the error names the log");
            Ok(e)
        }
    }
}

/// Replaces the first occurrence of `from` after byte `start` of `line`.
fn replace_after(line: &mut Vec<u8>, start: usize, from: &[u8], to: &[u8]) {
    let text = line.clone();
    let at = text[start..]
        .windows(from.len())
        .position(|w| w == from)
        .map(|p| p + start);
    if let Some(at) = at {
        line.splice(at..at + from.len(), to.iter().copied());
    } else {
        panic!("{:?} not found", String::from_utf8_lossy(from));
    }
}

fn find(line: &[u8], what: &[u8]) -> usize {
    line.windows(what.len())
        .position(|w| w == what)
        .unwrap_or(usize::MAX)
}

#[test]
fn changed_byte_in_data_fails_at_that_seq() -> TestResult {
    let e = attacked(8, |l| {
        replace_after(&mut l[3], 0, b"\"allow\"", b"\"allox\"")
    })?;
    assert_eq!(e.seq(), Some(3));
    assert_eq!(e.line(), Some(4));
    assert!(
        matches!(e.kind, VerifyErrorKind::HashMismatch { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn changed_digit_in_hash_fails_at_that_seq() -> TestResult {
    let e = attacked(8, |l| {
        let line = &mut l[4];
        let at = line.len() - 4; // last hex digit, before `"}` and the newline
        line[at] = if line[at] == b'0' { b'1' } else { b'0' };
    })?;
    assert_eq!(e.seq(), Some(4));
    let VerifyErrorKind::HashMismatch { stored, computed } = &e.kind else {
        return Err(format!("expected a hash mismatch, got {e}").into());
    };
    assert_ne!(stored, &computed.to_hex());
    Ok(())
}

#[test]
fn non_hex_byte_in_hash_fails_at_that_seq() -> TestResult {
    let e = attacked(8, |l| {
        let line = &mut l[4];
        let at = line.len() - 10;
        line[at] = b'G';
    })?;
    assert_eq!(e.seq(), Some(4));
    assert!(
        matches!(e.kind, VerifyErrorKind::HashMismatch { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn changed_digit_in_prev_fails_at_that_seq() -> TestResult {
    let e = attacked(8, |l| {
        let line = &mut l[5];
        let at = find(line, b"\"prev\":\"") + 8 + 10;
        line[at] = if line[at] == b'a' { b'b' } else { b'a' };
    })?;
    assert_eq!(e.seq(), Some(5));
    assert!(
        matches!(e.kind, VerifyErrorKind::HashMismatch { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn changed_seq_number_fails_at_that_record() -> TestResult {
    let e = attacked(8, |l| {
        replace_after(&mut l[5], 0, b"\"seq\":5", b"\"seq\":6")
    })?;
    assert_eq!(e.seq(), Some(5));
    assert!(
        matches!(e.kind, VerifyErrorKind::HashMismatch { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn removed_middle_record_is_a_gap_at_the_missing_seq() -> TestResult {
    let e = attacked(8, |l| {
        l.remove(3);
    })?;
    assert_eq!(e.seq(), Some(3));
    assert_eq!(e.line(), Some(4));
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::SeqGap {
                expected: 3,
                found: 4
            }
        ),
        "{e}"
    );
    let message = e.to_string();
    assert!(message.contains("seq 3"), "{message}");
    assert!(message.contains(&e.path.display().to_string()), "{message}");
    Ok(())
}

#[test]
fn removed_first_record_is_a_gap_at_seq_0() -> TestResult {
    let e = attacked(5, |l| {
        l.remove(0);
    })?;
    assert_eq!(e.seq(), Some(0));
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::SeqGap {
                expected: 0,
                found: 1
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn swapped_records_are_out_of_order() -> TestResult {
    let e = attacked(8, |l| l.swap(3, 4))?;
    assert_eq!(e.seq(), Some(3));
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::OutOfOrder {
                expected: 3,
                found: 4
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn swapped_distant_records_are_out_of_order() -> TestResult {
    let e = attacked(9, |l| l.swap(2, 6))?;
    assert_eq!(e.seq(), Some(2));
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::OutOfOrder {
                expected: 2,
                found: 6
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn repeated_record_is_out_of_order() -> TestResult {
    let e = attacked(6, |l| {
        let copy = l[2].clone();
        l.insert(3, copy);
    })?;
    assert_eq!(e.seq(), Some(3));
    assert!(
        matches!(
            e.kind,
            VerifyErrorKind::OutOfOrder {
                expected: 3,
                found: 2
            }
        ),
        "{e}"
    );
    Ok(())
}

#[test]
fn tail_cut_mid_record_is_torn() -> TestResult {
    let e = attacked(6, |l| {
        let last = l.len() - 1;
        l[last].truncate(40);
    })?;
    assert_eq!(e.seq(), Some(5));
    assert!(matches!(e.kind, VerifyErrorKind::TornTail), "{e}");
    assert!(e.to_string().contains("seq 5"), "{e}");
    Ok(())
}

#[test]
fn missing_final_newline_is_torn() -> TestResult {
    let e = attacked(6, |l| {
        if let Some(last) = l.last_mut() {
            last.pop();
        }
    })?;
    assert_eq!(e.seq(), Some(5));
    assert!(matches!(e.kind, VerifyErrorKind::TornTail), "{e}");
    Ok(())
}

#[test]
fn empty_file_is_empty() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, b"")?;
    let e = verify(&path).err().ok_or("empty log verified")?;
    assert!(matches!(e.kind, VerifyErrorKind::Empty), "{e}");
    assert_eq!(e.seq(), None);
    assert_eq!(
        e.to_string(),
        format!(
            "audit log {}: the log is empty (no session-start record)",
            path.display()
        )
    );
    Ok(())
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nope.jsonl");
    let e = verify(&path).err().ok_or("missing log verified")?;
    assert!(matches!(e.kind, VerifyErrorKind::Io { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("audit log {}: cannot read: ", path.display()))
    );
    Ok(())
}

#[test]
fn forged_record_with_wrong_prev_breaks_the_chain() -> TestResult {
    let bogus = "ab".repeat(32);
    let e = attacked(6, |l| {
        l[3] = reforge(&l[3], |body| {
            let at = body.find("\"prev\":\"").unwrap_or(0) + 8;
            format!("{}{bogus}{}", &body[..at], &body[at + 64..])
        });
    })?;
    assert_eq!(e.seq(), Some(3));
    let VerifyErrorKind::PrevMismatch { found, .. } = e.kind else {
        return Err(format!("expected a prev mismatch, got {e}").into());
    };
    assert_eq!(Some(found), ChainHash::from_hex(&bogus));
    Ok(())
}

#[test]
fn rewritten_record_breaks_the_next_link() -> TestResult {
    // A forger rewrites seq 2 with a valid hash: seq 3 no longer links to it.
    let e = attacked(6, |l| {
        l[2] = reforge(&l[2], |body| body.replace("forwarded", "dropped"));
    })?;
    assert_eq!(e.seq(), Some(3));
    assert!(
        matches!(e.kind, VerifyErrorKind::PrevMismatch { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn forged_session_is_a_session_mismatch() -> TestResult {
    let e = attacked(6, |l| {
        l[2] = reforge(&l[2], |body| body.replace(SESSION, "other"));
        l[3] = reforge(&l[3], |body| body.replace(SESSION, "other"));
    })?;
    assert_eq!(e.seq(), Some(2));
    let VerifyErrorKind::SessionMismatch { expected, found } = &e.kind else {
        return Err(format!("expected a session mismatch, got {e}").into());
    };
    assert_eq!((expected.as_str(), found.as_str()), (SESSION, "other"));
    Ok(())
}

#[test]
fn other_version_is_refused() -> TestResult {
    let e = attacked(4, |l| {
        l[0] = reforge(&l[0], |body| body.replacen("{\"v\":2,", "{\"v\":3,", 1));
    })?;
    assert_eq!(e.seq(), Some(0));
    assert!(
        matches!(e.kind, VerifyErrorKind::WrongVersion { found: 3 }),
        "{e}"
    );
    Ok(())
}

#[test]
fn other_version_with_another_layout_is_refused_as_such() -> TestResult {
    let e = attacked(4, |l| {
        l[1] = b"{\"v\":3,\"seq\":1,\"sig\":\"...\"}\n".to_vec();
    })?;
    assert_eq!(e.seq(), Some(1));
    assert!(
        matches!(e.kind, VerifyErrorKind::WrongVersion { found: 3 }),
        "{e}"
    );
    Ok(())
}

#[test]
fn garbage_line_is_bad_json_at_its_line() -> TestResult {
    let e = attacked(4, |l| l.insert(2, b"hello\n".to_vec()))?;
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.seq(), Some(2));
    assert!(matches!(e.kind, VerifyErrorKind::BadJson { .. }), "{e}");
    Ok(())
}

#[test]
fn unknown_field_is_bad_json() -> TestResult {
    let e = attacked(4, |l| {
        l[1] = reforge(&l[1], |body| {
            body.replacen(",\"data\":", ",\"extra\":1,\"data\":", 1)
        });
    })?;
    assert_eq!(e.seq(), Some(1));
    assert!(matches!(e.kind, VerifyErrorKind::BadJson { .. }), "{e}");
    Ok(())
}

#[test]
fn data_that_is_not_an_object_is_bad_json() -> TestResult {
    let e = attacked(4, |l| {
        l[1] = reforge(&l[1], |body| {
            let start = body.find(",\"data\":").unwrap_or(0);
            let end = body.find(",\"prev\":").unwrap_or(0);
            format!("{},\"data\":[1,2]{}", &body[..start], &body[end..])
        });
    })?;
    assert_eq!(e.seq(), Some(1));
    assert!(matches!(e.kind, VerifyErrorKind::BadJson { .. }), "{e}");
    Ok(())
}

#[test]
fn record_after_session_end_is_out_of_place() -> TestResult {
    let e = attacked(4, |l| {
        let prev = hash_of(&l[3]);
        let body = format!(
            "{{\"v\":2,\"seq\":4,\"time\":\"2026-05-01T12:00:01.000000000Z\",\"session\":\"{SESSION}\",\
             \"kind\":\"decision\",\"data\":{{}},\"prev\":\"{prev}\"}}"
        );
        l.push(seal_body(&body));
    })?;
    assert_eq!(e.seq(), Some(4));
    assert!(
        matches!(e.kind, VerifyErrorKind::KindOutOfPlace { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn first_record_must_be_session_start() -> TestResult {
    let e = attacked(4, |l| {
        l[0] = reforge(&l[0], |body| body.replace("session-start", "decision"));
    })?;
    assert_eq!(e.seq(), Some(0));
    assert!(
        matches!(e.kind, VerifyErrorKind::KindOutOfPlace { .. }),
        "{e}"
    );
    Ok(())
}

#[test]
fn bad_time_is_bad_json() -> TestResult {
    let e = attacked(4, |l| {
        l[1] = reforge(&l[1], |body| body.replacen(".0015", ".00x5", 1));
    })?;
    assert_eq!(e.seq(), Some(1));
    assert!(matches!(e.kind, VerifyErrorKind::BadJson { .. }), "{e}");
    Ok(())
}

#[test]
fn reader_yields_the_good_records_then_the_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 8, true)?;
    let mut l = lines(&path)?;
    l.remove(5);
    write_lines(&path, &l)?;
    let mut reader = blastwall_audit::LogReader::open(&path)?;
    let mut good = 0;
    let mut error = None;
    for item in &mut reader {
        match item {
            Ok(_) => good += 1,
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(good, 5);
    assert_eq!(error.and_then(|e| e.seq()), Some(5));
    assert_eq!(reader.report(), None);
    assert!(reader.next().is_none(), "the reader stops after an error");
    Ok(())
}

/// Every single-byte change anywhere in a log is caught, and blamed on the
/// record holding that byte (a changed newline on the record it ends).
#[test]
fn every_single_byte_flip_is_detected_at_its_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5, true)?;
    let original = std::fs::read(&path)?;
    verify_bytes(&original)?;
    let mut record_of = Vec::with_capacity(original.len());
    let mut seq = 0u64;
    for &b in &original {
        record_of.push(seq);
        if b == b'\n' {
            seq += 1;
        }
    }
    for (at, &expected_seq) in record_of.iter().enumerate() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut bytes = original.clone();
            bytes[at] ^= mask;
            match verify_bytes(&bytes) {
                Ok(report) => {
                    return Err(format!("flip {mask:#x} at byte {at} verified: {report:?}").into());
                }
                Err(e) => assert_eq!(
                    e.seq(),
                    Some(expected_seq),
                    "flip {mask:#x} at byte {at}: {e}"
                ),
            }
        }
    }
    Ok(())
}

/// Cutting a log anywhere inside a record is a torn tail naming that record;
/// cutting it at a record boundary leaves a valid, unsealed, shorter log.
#[test]
fn every_truncation_is_torn_or_a_shorter_unsealed_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5, true)?;
    let original = std::fs::read(&path)?;
    for len in 0..original.len() {
        let cut = &original[..len];
        let complete = u64::try_from(
            split_lines(cut)
                .iter()
                .filter(|l| l.ends_with(b"\n"))
                .count(),
        )?;
        match verify_bytes(cut) {
            Ok(report) => {
                assert!(cut.ends_with(b"\n"), "cut at {len} verified mid-record");
                assert_eq!(report.events, complete);
                assert!(!report.sealed, "cut at {len} still sealed");
            }
            Err(e) if len == 0 => assert!(matches!(e.kind, VerifyErrorKind::Empty), "{e}"),
            Err(e) => {
                assert!(
                    matches!(e.kind, VerifyErrorKind::TornTail),
                    "cut at {len}: {e}"
                );
                assert_eq!(e.seq(), Some(complete), "cut at {len}");
            }
        }
    }
    Ok(())
}

/// Lines of pseudo-random bytes never panic the reader and never verify.
#[test]
fn random_garbage_never_verifies() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = usize::try_from(next() % 300).unwrap_or(0);
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if next() % 2 == 0 {
            bytes.splice(0..0, b"{\"v\":1,\"seq\":0,".iter().copied());
        }
        assert!(verify_bytes(&bytes).is_err());
    }
}

#[test]
fn overlong_line_is_refused_without_reading_it_whole() -> TestResult {
    let mut bytes = vec![b'x'; blastwall_audit::MAX_RECORD_BYTES + 10];
    bytes.push(b'\n');
    let e = verify_bytes(&bytes).err().ok_or("overlong line verified")?;
    assert!(matches!(e.kind, VerifyErrorKind::TooLong { .. }), "{e}");
    assert_eq!(e.seq(), Some(0));
    Ok(())
}
