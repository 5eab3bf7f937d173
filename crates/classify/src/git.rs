//! Git smart-HTTP pushes: the ref updates at the head of a
//! `git-receive-pack` request body.
//!
//! A push (`POST …/git-receive-pack`, protocol v0/v1) starts with a list of
//! pkt-lines, then a flush packet `0000`, then (optionally) push options and
//! the packfile. Only the list is read here:
//!
//! ```text
//! update-request = *shallow command-list
//! shallow        = PKT-LINE("shallow" SP obj-id LF)
//! command-list   = PKT-LINE(command NUL capability-list LF)
//!                  *PKT-LINE(command LF)
//!                  flush-pkt
//! command        = old-id SP new-id SP refname
//! ```
//!
//! An all-zero old id creates the ref, an all-zero new id deletes it. Object
//! ids are SHA-1 (40 hex digits) or SHA-256 (64). As `git receive-pack`
//! does, capabilities after a NUL are accepted on any line and `shallow`
//! lines anywhere in the list are skipped.
//!
//! Signed pushes (`push-cert`) are refused with [`GitError::PushCert`]: their
//! commands sit inside the certificate. Note that a force push (an update
//! that is not a fast-forward) cannot be told from a plain update without
//! the object graph, so [`ref_labels`] cannot mark it.

use thiserror::Error;

use crate::{Label, Labels};

/// The most commands read from one push.
pub const MAX_COMMANDS: usize = 4096;

/// The most `shallow` lines skipped in one push.
pub const MAX_SHALLOW: usize = 4096;

/// The largest pkt-line git sends (4 length bytes plus 65516 data bytes).
pub const MAX_PKT_LEN: usize = 65520;

/// What a ref update does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefUpdateKind {
    /// The ref does not exist yet (old id all zeros).
    Create,
    /// The ref moves from one object to another (maybe not a fast-forward).
    Update,
    /// The ref is deleted (new id all zeros).
    Delete,
}

/// One command of a push: set ref `name` from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The object id the client believes the ref has (hex, as sent).
    pub old: String,
    /// The object id the ref is to have (hex, as sent).
    pub new: String,
    /// The full ref name (`refs/heads/main`).
    pub name: String,
    /// Create, update or delete.
    pub kind: RefUpdateKind,
}

/// Why a receive-pack body could not be read. The agent is at fault for all
/// of them: a real git client does not send these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GitError {
    /// The body ends before the flush packet that closes the command list.
    #[error("receive-pack command list ends before its flush packet (at byte {offset})")]
    Truncated {
        /// Where the missing data should have been.
        offset: usize,
    },
    /// A pkt-line length is not four hex digits, or is 1–3, or is too long.
    #[error("bad pkt-line length {found:?} at byte {offset}")]
    BadLength {
        /// Where the length starts.
        offset: usize,
        /// The four bytes found, lossily decoded.
        found: String,
    },
    /// A special packet (delimiter `0001` or response end `0002`) inside the command list.
    #[error("unexpected special packet {found:?} at byte {offset} in a receive-pack command list")]
    UnexpectedSpecial {
        /// Where the packet starts.
        offset: usize,
        /// The packet.
        found: String,
    },
    /// A line is not `old-id SP new-id SP refname`.
    #[error("bad receive-pack command at byte {offset}: {reason}")]
    BadCommand {
        /// Where the packet starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `shallow` line whose object id is not hex of a known length.
    #[error("bad shallow line at byte {offset}")]
    BadShallow {
        /// Where the packet starts.
        offset: usize,
    },
    /// A signed push: its commands are inside a certificate this parser does not read.
    #[error("signed pushes (push-cert) are not supported")]
    PushCert,
    /// More commands or shallow lines than [`MAX_COMMANDS`] or [`MAX_SHALLOW`].
    #[error("receive-pack command list longer than the inspection bound")]
    TooMany,
}

/// Reads the ref updates at the head of a `git-receive-pack` request body.
///
/// Stops at the first flush packet; what follows (push options, the
/// packfile) is not read. A body that is only a flush packet gives no
/// updates.
pub fn parse_receive_pack(body: &[u8]) -> Result<Vec<RefUpdate>, GitError> {
    receive_pack_commands(body).map(|(u, _)| u)
}

/// Like [`parse_receive_pack`], with the offset where the command list
/// ends (after its flush packet): push options or the packfile follow.
pub fn receive_pack_commands(body: &[u8]) -> Result<(Vec<RefUpdate>, usize), GitError> {
    let mut updates = Vec::new();
    let mut shallow = 0usize;
    let mut offset = 0usize;
    loop {
        let pkt = next_pkt(body, offset)?;
        let start = offset;
        offset = pkt.end;
        let Some(data) = pkt.data else {
            return Ok((updates, offset));
        };
        // Git strips one trailing LF; capabilities follow a NUL on any line.
        let data = data.strip_suffix(b"\n").unwrap_or(data);
        let line = match data.iter().position(|&b| b == 0) {
            Some(nul) => data.get(..nul).unwrap_or(data),
            None => data,
        };
        if let Some(oid) = line.strip_prefix(b"shallow ") {
            if oid_len(oid).is_none() {
                return Err(GitError::BadShallow { offset: start });
            }
            shallow += 1;
            if shallow > MAX_SHALLOW {
                return Err(GitError::TooMany);
            }
            continue;
        }
        if line.starts_with(b"push-cert") {
            return Err(GitError::PushCert);
        }
        if updates.len() >= MAX_COMMANDS {
            return Err(GitError::TooMany);
        }
        updates.push(parse_command(line, start)?);
    }
}

/// The capabilities the client asked for on the first command line of a
/// `git-receive-pack` body (`report-status`, `side-band-64k`, …): what a
/// reply to it may use. Empty when the body does not start with a command.
pub fn receive_pack_capabilities(body: &[u8]) -> Vec<String> {
    let Ok(Pkt {
        data: Some(line), ..
    }) = next_pkt(body, 0)
    else {
        return Vec::new();
    };
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.iter()
        .position(|&b| b == 0)
        .and_then(|nul| line.get(nul + 1..))
        .map(|caps| {
            caps.split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The labels of one ref update: a deletion is `write`, `destructive` and
/// `irreversible`; a creation or update is `write`.
pub fn ref_labels(update: &RefUpdate) -> Labels {
    match update.kind {
        RefUpdateKind::Delete => {
            Labels::of(&[Label::Write, Label::Destructive, Label::Irreversible])
        }
        RefUpdateKind::Create | RefUpdateKind::Update => Labels::of(&[Label::Write]),
    }
}

pub(crate) struct Pkt<'a> {
    /// The payload; `None` for a flush packet.
    pub(crate) data: Option<&'a [u8]>,
    /// Offset just past the packet.
    pub(crate) end: usize,
}

pub(crate) fn next_pkt(body: &[u8], offset: usize) -> Result<Pkt<'_>, GitError> {
    let head = body
        .get(offset..offset.saturating_add(4))
        .ok_or(GitError::Truncated { offset })?;
    let bad_length = || GitError::BadLength {
        offset,
        found: String::from_utf8_lossy(head).into_owned(),
    };
    let mut len = 0usize;
    for &b in head {
        let digit = char::from(b).to_digit(16).ok_or_else(bad_length)?;
        len = len * 16 + usize::try_from(digit).map_err(|_| bad_length())?;
    }
    match len {
        0 => {
            return Ok(Pkt {
                data: None,
                end: offset + 4,
            });
        }
        1 | 2 => {
            return Err(GitError::UnexpectedSpecial {
                offset,
                found: String::from_utf8_lossy(head).into_owned(),
            });
        }
        3 => return Err(bad_length()),
        _ if len > MAX_PKT_LEN => return Err(bad_length()),
        _ => {}
    }
    let end = offset + len;
    let data = body
        .get(offset + 4..end)
        .ok_or(GitError::Truncated { offset: body.len() })?;
    Ok(Pkt {
        data: Some(data),
        end,
    })
}

/// The length of a hex object id, if `s` is one (40 or 64 hex digits).
fn oid_len(s: &[u8]) -> Option<usize> {
    ((s.len() == 40 || s.len() == 64) && s.iter().all(u8::is_ascii_hexdigit)).then_some(s.len())
}

fn parse_command(line: &[u8], offset: usize) -> Result<RefUpdate, GitError> {
    let bad = |reason| GitError::BadCommand { offset, reason };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let old = parts.next().ok_or_else(|| bad("no old object id"))?;
    let new = parts.next().ok_or_else(|| bad("no new object id"))?;
    let name = parts.next().ok_or_else(|| bad("no ref name"))?;
    let old_len = oid_len(old).ok_or_else(|| bad("old object id is not 40 or 64 hex digits"))?;
    let new_len = oid_len(new).ok_or_else(|| bad("new object id is not 40 or 64 hex digits"))?;
    if old_len != new_len {
        return Err(bad("old and new object ids differ in length"));
    }
    if name.is_empty() {
        return Err(bad("empty ref name"));
    }
    if name.iter().any(|&b| b.is_ascii_control() || b == b' ') {
        return Err(bad("ref name holds a space or a control character"));
    }
    let name = std::str::from_utf8(name).map_err(|_| bad("ref name is not utf-8"))?;
    let zero = |s: &[u8]| s.iter().all(|&b| b == b'0');
    let kind = match (zero(old), zero(new)) {
        (true, true) => return Err(bad("old and new object ids are both zero")),
        (true, false) => RefUpdateKind::Create,
        (false, true) => RefUpdateKind::Delete,
        (false, false) => RefUpdateKind::Update,
    };
    // Both ids were checked to be ASCII hex digits above.
    let hex = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    Ok(RefUpdate {
        old: hex(old),
        new: hex(new),
        name: name.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn create_update_delete() {
        let body = format!(
            "{}{}{}0000PACK....",
            pkt(&format!(
                "{Z} {A} refs/heads/new\0report-status side-band-64k\n"
            )),
            pkt(&format!("{A} {B} refs/heads/main\n")),
            pkt(&format!("{B} {Z} refs/heads/old\n")),
        );
        let got = parse_receive_pack(body.as_bytes());
        let kinds: Vec<_> = got
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.name, u.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("refs/heads/new".to_owned(), RefUpdateKind::Create),
                ("refs/heads/main".to_owned(), RefUpdateKind::Update),
                ("refs/heads/old".to_owned(), RefUpdateKind::Delete),
            ]
        );
    }

    #[test]
    fn shallow_lines_are_skipped_and_sha256_ids_accepted() {
        let a = "a".repeat(64);
        let z = "0".repeat(64);
        let body = format!(
            "{}{}0000",
            pkt(&format!("shallow {A}\n")),
            pkt(&format!("{a} {z} refs/tags/v1\0caps")),
        );
        let got = parse_receive_pack(body.as_bytes()).unwrap_or_default();
        assert_eq!(got.len(), 1);
        assert_eq!(got.first().map(|u| u.kind), Some(RefUpdateKind::Delete));
        assert_eq!(
            got.first().map(ref_labels),
            Some(Labels::of(&[
                Label::Write,
                Label::Destructive,
                Label::Irreversible
            ]))
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            parse_receive_pack(b""),
            Err(GitError::Truncated { .. })
        ));
        assert!(matches!(
            parse_receive_pack(b"00"),
            Err(GitError::Truncated { .. })
        ));
        assert!(matches!(
            parse_receive_pack(b"zzzz"),
            Err(GitError::BadLength { .. })
        ));
        assert!(matches!(
            parse_receive_pack(b"0003"),
            Err(GitError::BadLength { .. })
        ));
        assert!(matches!(
            parse_receive_pack(b"0001"),
            Err(GitError::UnexpectedSpecial { .. })
        ));
        assert!(matches!(
            parse_receive_pack(b"0010abc"),
            Err(GitError::Truncated { .. })
        ));
        let body = format!("{}0000", pkt(&format!("{A} {B}\n")));
        assert!(matches!(
            parse_receive_pack(body.as_bytes()),
            Err(GitError::BadCommand { .. })
        ));
        let body = format!("{}0000", pkt(&format!("{Z} {Z} refs/heads/x\n")));
        assert!(matches!(
            parse_receive_pack(body.as_bytes()),
            Err(GitError::BadCommand { .. })
        ));
        let body = pkt(&format!("{A} {B} refs/heads/x\n"));
        assert!(matches!(
            parse_receive_pack(body.as_bytes()),
            Err(GitError::Truncated { .. })
        ));
        let body = format!("{}0000", pkt("push-cert\0caps\n"));
        assert_eq!(parse_receive_pack(body.as_bytes()), Err(GitError::PushCert));
    }

    #[test]
    fn capabilities_are_read_with_or_without_a_newline() {
        let old = "a".repeat(40);
        let new = "b".repeat(40);
        for end in ["", "\n"] {
            let body = format!(
                "{}0000PACK",
                pkt(&format!(
                    "{old} {new} refs/heads/main\0 report-status-v2 side-band-64k quiet{end}"
                ))
            );
            assert_eq!(
                vec!["report-status-v2", "side-band-64k", "quiet"],
                receive_pack_capabilities(body.as_bytes())
            );
        }
        assert!(receive_pack_capabilities(b"0000").is_empty());
        assert!(receive_pack_capabilities(b"zz").is_empty());
    }

    #[test]
    fn flush_alone_is_no_update() {
        assert_eq!(parse_receive_pack(b"0000"), Ok(vec![]));
    }
}
