//! Ref updates of a `git-receive-pack` body.

use blastwall_classify::git::{
    GitError, MAX_COMMANDS, RefUpdate, RefUpdateKind, parse_receive_pack, ref_labels,
};
use blastwall_classify::{Label, Labels};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

const OLD: &str = "6f1b2c3d4e5f60718293a4b5c6d7e8f901234567";
const NEW: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const ZERO: &str = "0000000000000000000000000000000000000000";

fn pkt(line: &str) -> Vec<u8> {
    let mut out = format!("{:04x}", line.len() + 4).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

fn push(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend(pkt(l));
    }
    out.extend_from_slice(b"0000PACK\x00\x00\x00\x02garbage after the flush");
    out
}

#[test]
fn a_real_looking_push() {
    let body = push(&[
        format!(
            "{OLD} {NEW} refs/heads/main\0 report-status-v2 side-band-64k object-format=sha1 agent=git/2.45.0\n"
        ),
        format!("{ZERO} {NEW} refs/heads/feature\n"),
        format!("{OLD} {ZERO} refs/tags/v1.0\n"),
    ]);
    assert_eq!(
        parse_receive_pack(&body),
        Ok(vec![
            RefUpdate {
                old: OLD.to_owned(),
                new: NEW.to_owned(),
                name: "refs/heads/main".to_owned(),
                kind: RefUpdateKind::Update,
            },
            RefUpdate {
                old: ZERO.to_owned(),
                new: NEW.to_owned(),
                name: "refs/heads/feature".to_owned(),
                kind: RefUpdateKind::Create,
            },
            RefUpdate {
                old: OLD.to_owned(),
                new: ZERO.to_owned(),
                name: "refs/tags/v1.0".to_owned(),
                kind: RefUpdateKind::Delete,
            },
        ])
    );
}

#[test]
fn labels_per_kind() {
    let update = |kind| RefUpdate {
        old: OLD.to_owned(),
        new: NEW.to_owned(),
        name: "refs/heads/main".to_owned(),
        kind,
    };
    assert_eq!(
        ref_labels(&update(RefUpdateKind::Create)),
        Labels::of(&[Label::Write])
    );
    assert_eq!(
        ref_labels(&update(RefUpdateKind::Update)),
        Labels::of(&[Label::Write])
    );
    assert_eq!(
        ref_labels(&update(RefUpdateKind::Delete)),
        Labels::of(&[Label::Write, Label::Destructive, Label::Irreversible])
    );
}

#[test]
fn sha256_object_ids() {
    let old = "b".repeat(64);
    let zero = "0".repeat(64);
    let body = push(&[format!(
        "{old} {zero} refs/heads/gone\0object-format=sha256"
    )]);
    let got = parse_receive_pack(&body);
    assert_eq!(
        got.map(|v| v.into_iter().map(|u| u.kind).collect::<Vec<_>>()),
        Ok(vec![RefUpdateKind::Delete])
    );
}

#[test]
fn mixed_id_lengths_and_bad_ids_are_refused() {
    let long = "b".repeat(64);
    for line in [
        format!("{OLD} {long} refs/heads/x"),
        format!("{OLD} {NEW}"),
        format!("{OLD}  refs/heads/x"),
        format!("{} {NEW} refs/heads/x", "g".repeat(40)),
        format!("{OLD} {NEW} "),
        format!("{OLD} {NEW} refs/heads/a b"),
        "garbage".to_owned(),
    ] {
        assert!(
            matches!(
                parse_receive_pack(&push(std::slice::from_ref(&line))),
                Err(GitError::BadCommand { .. })
            ),
            "{line:?}"
        );
    }
}

#[test]
fn shallow_lines_are_skipped() {
    let body = push(&[
        format!("shallow {OLD}"),
        format!("{OLD} {NEW} refs/heads/main\0caps"),
    ]);
    assert_eq!(parse_receive_pack(&body).map(|v| v.len()), Ok(1));
    let body = push(&["shallow xyz".to_owned()]);
    assert!(matches!(
        parse_receive_pack(&body),
        Err(GitError::BadShallow { .. })
    ));
}

#[test]
fn no_flush_is_truncated() {
    let mut body = pkt(&format!("{OLD} {NEW} refs/heads/main\n"));
    assert!(matches!(
        parse_receive_pack(&body),
        Err(GitError::Truncated { .. })
    ));
    body.extend_from_slice(b"00");
    assert!(matches!(
        parse_receive_pack(&body),
        Err(GitError::Truncated { .. })
    ));
}

#[test]
fn errors_read_well() {
    let e = parse_receive_pack(b"xx00");
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("bad pkt-line length \"xx00\" at byte 0".to_owned())
    );
}

#[test]
fn too_many_commands() {
    let lines: Vec<String> = (0..=MAX_COMMANDS)
        .map(|n| format!("{OLD} {NEW} refs/heads/b{n}"))
        .collect();
    assert_eq!(parse_receive_pack(&push(&lines)), Err(GitError::TooMany));
}

proptest! {
    #[test]
    fn parse_receive_pack_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_receive_pack(&b);
    }

    #[test]
    fn parse_receive_pack_never_panics_on_pkt_ish(
        lines in proptest::collection::vec("[0-9a-f ]{0,100}(refs/heads/[a-z]{1,8})?", 0..5),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = Vec::new();
        for l in &lines {
            body.extend(pkt(l));
        }
        body.extend(tail);
        let _ = parse_receive_pack(&body);
    }

    #[test]
    fn well_formed_commands_round_trip(
        old in "[0-9a-f]{40}", new in "[0-9a-f]{40}", name in "refs/heads/[a-z0-9/_.-]{1,30}",
    ) {
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        prop_assume!(!(zero(&old) && zero(&new)));
        let got = parse_receive_pack(&push(&[format!("{old} {new} {name}\0caps\n")]));
        let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got.first().map(|u| u.name.clone()), Some(name));
    }
}
