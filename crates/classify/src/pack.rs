//! Whether a pushed ref update is a fast-forward, from the packfile the
//! client sent with it.
//!
//! A client pushing `old → new` sends every object reachable from `new`
//! that the remote lacks. For a fast-forward those include every commit
//! between `new` and `old`, so walking parents from `new` through the
//! pack's commits reaches `old`. If the walk reaches root commits without
//! meeting `old`, the update provably rewrites history. If it leaves the
//! pack at a commit the remote already has, the pack cannot tell: such an
//! update is *not shown* to be a fast-forward, which the policy treats as
//! a rewrite (a fast-forward to a commit the remote already has, e.g. a
//! branch pushed earlier, is asked about too — safe, and said in the docs).
//!
//! The reader is bounded ([`MAX_OBJECTS`], [`MAX_INFLATED`]) and never
//! panics on hostile input; commits stored as deltas are resolved against
//! bases earlier in the same pack, and a base outside it (a thin pack)
//! leaves that commit unknown.

use std::collections::HashMap;

use flate2::{Decompress, FlushDecompress, Status};
use sha1::Digest as _;

/// Objects read from one pack at most.
pub const MAX_OBJECTS: usize = 200_000;
/// Bytes inflated from one pack at most.
pub const MAX_INFLATED: usize = 64 * 1024 * 1024;
/// The largest commit object kept.
const MAX_COMMIT: usize = 1024 * 1024;
/// Parents of one commit at most (more: the pack is not read further).
const MAX_PARENTS: usize = 64;
/// Commits visited across every ancestry question about one pack.
pub const MAX_WALK: usize = 1_000_000;

/// What the pack says of one ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ancestry {
    /// `old` is an ancestor of `new` (or they are equal).
    FastForward,
    /// Walking from `new` reached every root without meeting `old`.
    NotFastForward,
    /// The pack cannot tell; why.
    Unknown(&'static str),
}

/// The commits of a pack: id (hex) → parent ids (hex).
#[derive(Debug, Default)]
pub struct Commits {
    parents: HashMap<String, Vec<String>>,
    complete: bool,
    /// Commits visited so far by [`Commits::ancestry`], against [`MAX_WALK`].
    walked: std::cell::Cell<usize>,
    /// Answers already given, by (old, new).
    answers: std::cell::RefCell<HashMap<(String, String), Ancestry>>,
}

impl Commits {
    /// Whether every object of the pack was read (no bound hit, no damage).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// How many commits the pack holds.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether the pack holds no commit.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// Whether moving a ref from `old` to `new` is a fast-forward.
    pub fn ancestry(&self, old: &str, new: &str) -> Ancestry {
        if old == new {
            return Ancestry::FastForward;
        }
        if !self.complete {
            return Ancestry::Unknown("the pack could not be read whole");
        }
        if !self.parents.contains_key(new) {
            return Ancestry::Unknown(
                "the new commit is not in the pack: the remote already has it",
            );
        }
        let key = (old.to_owned(), new.to_owned());
        if let Some(a) = self.answers.borrow().get(&key) {
            return a.clone();
        }
        let a = self.walk(old, new);
        self.answers.borrow_mut().insert(key, a.clone());
        a
    }

    fn walk(&self, old: &str, new: &str) -> Ancestry {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut stack = vec![new];
        let mut left_pack = false;
        while let Some(c) = stack.pop() {
            if c == old {
                return Ancestry::FastForward;
            }
            if !seen.insert(c) {
                continue;
            }
            let walked = self.walked.get() + 1;
            self.walked.set(walked);
            if walked > MAX_WALK {
                return Ancestry::Unknown("the pushed history is past the inspection bound");
            }
            match self.parents.get(c) {
                Some(ps) => stack.extend(ps.iter().map(String::as_str)),
                None => left_pack = true,
            }
        }
        if left_pack {
            Ancestry::Unknown("the new history builds on commits the remote already has")
        } else {
            Ancestry::NotFastForward
        }
    }
}

/// Finds the packfile after a receive-pack command list ending at
/// `offset` (push options may come first, as pkt-lines up to a flush).
pub fn find_pack(body: &[u8], offset: usize) -> Option<&[u8]> {
    let mut at = offset;
    // Push options: pkt-lines up to a flush, then the pack (right after the
    // commands, or right after that flush, as git reads it).
    if !body.get(at..)?.starts_with(b"PACK") {
        loop {
            let pkt = crate::git::next_pkt(body, at).ok()?;
            at = pkt.end;
            if pkt.data.is_none() {
                break;
            }
        }
    }
    body.get(at..).filter(|p| p.starts_with(b"PACK"))
}

/// Reads the commits of `pack` (`PACK`, version 2 or 3, count, objects).
/// `hash_len` is 20 for SHA-1 repositories, 32 for SHA-256.
pub fn read_commits(pack: &[u8], hash_len: usize) -> Commits {
    let mut out = Commits::default();
    let Some(count) = pack_header(pack) else {
        return out;
    };
    if count > MAX_OBJECTS {
        return out;
    }
    // Contents of commits by their offset in the pack (delta bases), and
    // by id (for ref-deltas).
    let mut by_offset: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut by_id: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut inflated_total = 0usize;
    let mut pos = 12usize;
    for _ in 0..count {
        let start = pos;
        let Some((kind, size, header_len)) = entry_header(pack, pos) else {
            return out;
        };
        pos += header_len;
        let base = match kind {
            6 => {
                let Some((rel, n)) = ofs_delta_offset(pack, pos) else {
                    return out;
                };
                pos += n;
                match start.checked_sub(rel) {
                    Some(b) => Base::Offset(b),
                    None => return out,
                }
            }
            7 => {
                let Some(id) = pack.get(pos..pos + hash_len) else {
                    return out;
                };
                pos += hash_len;
                Base::Id(id.to_vec())
            }
            1..=4 => Base::None,
            _ => return out,
        };
        // The bound holds before inflating, not after.
        if inflated_total.saturating_add(size) > MAX_INFLATED {
            return out;
        }
        // Keep the bytes only for commits and deltas that may be commits.
        let keep = matches!(kind, 1 | 6 | 7) && size <= MAX_COMMIT;
        let Some((data, used)) = inflate(pack.get(pos..).unwrap_or_default(), size, keep) else {
            return out;
        };
        pos += used;
        inflated_total = inflated_total.saturating_add(size);
        if inflated_total > MAX_INFLATED {
            return out;
        }
        let commit = match (kind, base) {
            (1, _) => data,
            (6, Base::Offset(b)) => by_offset.get(&b).and_then(|src| apply_delta(src, &data?)),
            (7, Base::Id(id)) => by_id
                .get(&id)
                .and_then(|o| by_offset.get(o))
                .and_then(|src| apply_delta(src, &data?)),
            _ => None,
        };
        if let Some(c) = commit {
            let id = object_id(&c, hash_len);
            let ps = parents(&c);
            if ps.len() > MAX_PARENTS {
                return out;
            }
            out.parents.insert(hex::encode(&id), ps);
            by_id.insert(id, start);
            by_offset.insert(start, c);
        }
    }
    out.complete = true;
    out
}

enum Base {
    None,
    Offset(usize),
    Id(Vec<u8>),
}

fn pack_header(pack: &[u8]) -> Option<usize> {
    if !pack.starts_with(b"PACK") {
        return None;
    }
    let v = u32::from_be_bytes(pack.get(4..8)?.try_into().ok()?);
    if v != 2 && v != 3 {
        return None;
    }
    usize::try_from(u32::from_be_bytes(pack.get(8..12)?.try_into().ok()?)).ok()
}

/// Type, inflated size and header length of the entry at `pos`.
fn entry_header(pack: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let first = *pack.get(pos)?;
    let kind = (first >> 4) & 0x7;
    let mut size = usize::from(first & 0x0f);
    let mut shift = 4u32;
    let mut i = pos;
    let mut b = first;
    while b & 0x80 != 0 {
        i += 1;
        b = *pack.get(i)?;
        if shift > 56 {
            return None;
        }
        size |= usize::from(b & 0x7f).checked_shl(shift)?;
        shift += 7;
    }
    Some((kind, size, i + 1 - pos))
}

/// The negative offset of an ofs-delta's base, and its encoding's length.
fn ofs_delta_offset(pack: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut i = pos;
    let mut b = *pack.get(i)?;
    let mut v = usize::from(b & 0x7f);
    while b & 0x80 != 0 {
        i += 1;
        b = *pack.get(i)?;
        v = v.checked_add(1)?.checked_shl(7)? | usize::from(b & 0x7f);
        if v > (1 << 48) {
            return None;
        }
    }
    Some((v, i + 1 - pos))
}

/// Inflates one zlib stream of `size` bytes; returns the data (when
/// `keep`) and how many input bytes it used.
fn inflate(input: &[u8], size: usize, keep: bool) -> Option<(Option<Vec<u8>>, usize)> {
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(if keep { size } else { 0 });
    let mut scratch = [0u8; 16 * 1024];
    loop {
        let before_in = z.total_in();
        let before_out = z.total_out();
        let at = usize::try_from(before_in).ok()?;
        let status = if keep {
            out.reserve(16 * 1024);
            z.decompress_vec(input.get(at..)?, &mut out, FlushDecompress::None)
                .ok()?
        } else {
            z.decompress(input.get(at..)?, &mut scratch, FlushDecompress::None)
                .ok()?
        };
        if usize::try_from(z.total_out()).ok()? > size {
            return None;
        }
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if z.total_in() == before_in && z.total_out() == before_out {
                    return None; // truncated
                }
            }
        }
    }
    if usize::try_from(z.total_out()).ok()? != size {
        return None;
    }
    Some((keep.then_some(out), usize::try_from(z.total_in()).ok()?))
}

fn delta_size(d: &[u8], i: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0u32;
    loop {
        let b = *d.get(*i)?;
        *i += 1;
        v |= usize::from(b & 0x7f).checked_shl(shift)?;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(v);
        }
        if shift > 56 {
            return None;
        }
    }
}

/// Applies a git delta to `src`.
fn apply_delta(src: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0usize;
    if delta_size(delta, &mut i)? != src.len() {
        return None;
    }
    let target = delta_size(delta, &mut i)?;
    if target > MAX_COMMIT {
        return None;
    }
    let mut out = Vec::with_capacity(target);
    while i < delta.len() {
        let op = *delta.get(i)?;
        i += 1;
        if op & 0x80 != 0 {
            let mut off = 0usize;
            let mut len = 0usize;
            for k in 0..4 {
                if op & (1 << k) != 0 {
                    off |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            for k in 0..3 {
                if op & (0x10 << k) != 0 {
                    len |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            out.extend_from_slice(src.get(off..off.checked_add(len)?)?);
        } else if op != 0 {
            let n = usize::from(op);
            out.extend_from_slice(delta.get(i..i + n)?);
            i += n;
        } else {
            return None;
        }
        if out.len() > target {
            return None;
        }
    }
    (out.len() == target).then_some(out)
}

fn object_id(commit: &[u8], hash_len: usize) -> Vec<u8> {
    let header = format!("commit {}\0", commit.len());
    if hash_len == 32 {
        let mut h = sha2::Sha256::new();
        h.update(header.as_bytes());
        h.update(commit);
        h.finalize().to_vec()
    } else {
        let mut h = sha1::Sha1::new();
        h.update(header.as_bytes());
        h.update(commit);
        h.finalize().to_vec()
    }
}

/// The `parent` lines of a commit's header.
fn parents(commit: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for line in commit.split(|&b| b == b'\n') {
        if line.is_empty() {
            break; // end of the header
        }
        if let Some(p) = line.strip_prefix(b"parent ") {
            out.push(String::from_utf8_lossy(p).to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use std::process::Command;

    // The pack comes right after the commands, or after the push options'
    // flush; never in the middle of the options, where git does not read
    // one.
    #[test]
    fn the_pack_is_found_where_git_reads_it() {
        let pack = b"PACK\0\0\0\x02";
        assert_eq!(find_pack(pack, 0), Some(&pack[..]));
        let with_options = [&b"000aopt=1\n0000"[..], pack].concat();
        assert_eq!(find_pack(&with_options, 0), Some(&pack[..]));
        let no_flush = [&b"000aopt=1\n"[..], pack].concat();
        assert_eq!(find_pack(&no_flush, 0), None);
    }

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .env("HOME", dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn commit(dir: &std::path::Path, msg: &str) -> String {
        std::fs::write(dir.join("f"), msg).unwrap();
        git(dir, &["add", "f"]);
        git(dir, &["commit", "-q", "-m", msg]);
        git(dir, &["rev-parse", "HEAD"])
    }

    /// The pack a client would send to move a ref from `old` to `new`.
    fn pack(dir: &std::path::Path, new: &str, old: &str) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .args(["pack-objects", "--stdout", "--revs", "--thin", "-q"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "{new}\n^{old}").unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap().stdout
    }

    fn repo() -> Option<tempfile::TempDir> {
        let d = tempfile::tempdir().unwrap();
        if Command::new("git").arg("--version").output().is_err() {
            return None;
        }
        git(d.path(), &["init", "-q", "-b", "main"]);
        Some(d)
    }

    #[test]
    fn a_fast_forward_reaches_the_old_tip() {
        let Some(d) = repo() else { return };
        let a = commit(d.path(), "a");
        let b = commit(d.path(), "b");
        let c = commit(d.path(), "c");
        let p = pack(d.path(), &c, &a);
        let commits = read_commits(&p, 20);
        assert!(commits.complete());
        assert_eq!(2, commits.len());
        assert_eq!(Ancestry::FastForward, commits.ancestry(&a, &c));
        let _ = b;
    }

    #[test]
    fn an_amended_commit_is_not_shown_to_be_a_fast_forward() {
        let Some(d) = repo() else { return };
        let _a = commit(d.path(), "a");
        let b = commit(d.path(), "b");
        git(d.path(), &["commit", "-q", "--amend", "-m", "b2"]);
        let b2 = git(d.path(), &["rev-parse", "HEAD"]);
        // The remote has b; the client sends what b lacks.
        let p = pack(d.path(), &b2, &b);
        let commits = read_commits(&p, 20);
        assert!(matches!(commits.ancestry(&b, &b2), Ancestry::Unknown(_)));
    }

    #[test]
    fn unrelated_history_is_not_a_fast_forward() {
        let Some(d) = repo() else { return };
        let a = commit(d.path(), "a");
        git(d.path(), &["checkout", "-q", "--orphan", "other"]);
        let x = commit(d.path(), "x");
        let y = commit(d.path(), "y");
        let p = pack(d.path(), &y, &a);
        let commits = read_commits(&p, 20);
        assert_eq!(Ancestry::NotFastForward, commits.ancestry(&a, &y));
        let _ = x;
    }

    #[test]
    fn damaged_packs_are_unknown_and_never_panic() {
        let Some(d) = repo() else { return };
        let a = commit(d.path(), "a");
        let b = commit(d.path(), "b");
        let p = pack(d.path(), &b, &a);
        for cut in 0..p.len() {
            let c = read_commits(&p[..cut], 20);
            let _ = c.ancestry(&a, &b);
        }
        let mut x = p.clone();
        for i in 12..x.len() {
            x[i] ^= 0x5a;
            let _ = read_commits(&x, 20).ancestry(&a, &b);
            x[i] ^= 0x5a;
        }
    }

    #[test]
    fn deltas_apply() {
        let src = b"hello world".to_vec();
        // src size 11, target size 5; copy offset 6 len 5.
        let delta = [11u8, 5, 0x80 | 0x01 | 0x10, 6, 5];
        assert_eq!(apply_delta(&src, &delta).unwrap(), b"world");
        assert!(apply_delta(&src, &[11, 5, 0]).is_none());
    }
}
