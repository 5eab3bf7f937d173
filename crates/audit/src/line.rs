//! The byte layout of one record, shared by the writer and the reader.
//!
//! A record is `{"v":1,"seq":…,"time":"…","session":…,"kind":"…","data":{…},"prev":"…"`
//! followed by `,"hash":"<64 hex>"}` and `\n`. The hash covers the record with
//! its hash member cut out: the bytes up to and including the `prev` value,
//! then `}`.

use std::io::{self, Write as _};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::schema::{ChainHash, Kind, SCHEMA_VERSION};
use crate::time::Timestamp;

/// `,"hash":"` — the start of the hash member.
const HASH_OPEN: &[u8] = b",\"hash\":\"";
/// `"}` — the end of the hash member and of the record.
const HASH_CLOSE: &[u8] = b"\"}";
/// Length of `,"hash":"<64 hex>"}`.
pub(crate) const HASH_SUFFIX_LEN: usize = HASH_OPEN.len() + 64 + HASH_CLOSE.len();

/// Builds one record, newline included, into `buf` (cleared first) and
/// returns its hash. `session_json` is the session id already encoded as a
/// JSON string. Only `buf` grows; nothing else is allocated.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    time: Timestamp,
    session_json: &[u8],
    kind: Kind,
    data: &Value,
    prev: &ChainHash,
) -> io::Result<ChainHash> {
    buf.clear();
    write!(
        buf,
        "{{\"v\":{SCHEMA_VERSION},\"seq\":{seq},\"time\":\"{time}\",\"session\":"
    )?;
    buf.extend_from_slice(session_json);
    buf.extend_from_slice(b",\"kind\":\"");
    buf.extend_from_slice(kind.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"data\":");
    serde_json::to_writer(&mut *buf, data).map_err(io::Error::other)?;
    buf.extend_from_slice(b",\"prev\":\"");
    buf.extend_from_slice(&prev.hex());
    buf.extend_from_slice(b"\"}");
    let hash = ChainHash::from_bytes(Sha256::digest(&buf[..]).into());
    // Replace the closing brace just hashed with the hash member and the end.
    buf.pop();
    buf.extend_from_slice(HASH_OPEN);
    buf.extend_from_slice(&hash.hex());
    buf.extend_from_slice(HASH_CLOSE);
    buf.push(b'\n');
    Ok(hash)
}

/// The result of cutting the hash member off a record (newline removed).
pub(crate) enum Cut<'a> {
    /// The record ends in `,"hash":"…"}`: `stored` is what sits between the
    /// quotes (64 bytes, not yet checked to be hex) and `computed` the hash of
    /// the record without that member.
    Hashed {
        stored: &'a [u8],
        computed: ChainHash,
    },
    /// The record does not end in a hash member of the right shape.
    NoHashMember,
}

/// Cuts `,"hash":"<64 bytes>"}` off `record` and hashes the rest plus `}`,
/// without re-serializing anything.
pub(crate) fn cut_and_hash(record: &[u8]) -> Cut<'_> {
    let Some(body_len) = record.len().checked_sub(HASH_SUFFIX_LEN) else {
        return Cut::NoHashMember;
    };
    let (body, suffix) = record.split_at(body_len);
    let Some(rest) = suffix.strip_prefix(HASH_OPEN) else {
        return Cut::NoHashMember;
    };
    let Some(stored) = rest.strip_suffix(HASH_CLOSE) else {
        return Cut::NoHashMember;
    };
    if body.is_empty() {
        return Cut::NoHashMember;
    }
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    Cut::Hashed {
        stored,
        computed: ChainHash::from_bytes(hasher.finalize().into()),
    }
}

/// Reads `v` and `seq` from the fixed start of a record,
/// `{"v":<digits>,"seq":<digits>,`, without parsing the rest. Used to name a
/// record that failed to parse and to look ahead for a missing seq.
pub(crate) fn prefix(record: &[u8]) -> Option<(u64, u64)> {
    let rest = record.strip_prefix(b"{\"v\":")?;
    let (v, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(b",\"seq\":")?;
    let (seq, rest) = leading_number(rest)?;
    rest.starts_with(b",").then_some((v, seq))
}

fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 20 {
        return None;
    }
    let (digits, rest) = bytes.split_at(len);
    let value = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((value, rest))
}
