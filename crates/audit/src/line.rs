//! The byte layout of one record, shared by the writer and the reader.
//!
//! A record is `{"v":1,"seq":…,"time":"…","session":…,"kind":"…","data":{…},"prev":"…"`
//! followed by `,"hash":"<64 hex>"}` and `\n`. The hash covers the record with
//! its hash member cut out: the bytes up to and including the `prev` value,
//! then `}`.

use std::io;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::schema::{ChainHash, Kind, SCHEMA_VERSION};
use crate::time::Timestamp;

/// `,"hash":"` — the start of the hash member.
const HASH_OPEN: &[u8] = b",\"hash\":\"";
/// `"}` — the end of the hash member and of the record.
const HASH_CLOSE: &[u8] = b"\"}";
/// Length of `,"hash":"<64 hex>"}`.
pub(crate) const HASH_SUFFIX_LEN: usize = HASH_OPEN.len() + 64 + HASH_CLOSE.len();

/// Why [`encode`] built no record.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// `data` did not serialize.
    Serialize(io::Error),
    /// `data` serialized to a JSON value that is not an object (its type).
    NotObject(&'static str),
}

/// Builds one record, newline included, into `buf` (cleared first) and
/// returns its hash. `session_json` is the session id already encoded as a
/// JSON string. `data` is serialized straight into `buf` (no intermediate
/// `serde_json::Value`) and must come out as a JSON object. Only `buf`
/// grows; nothing else is allocated.
pub(crate) fn encode<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    seq: u64,
    time: Timestamp,
    session_json: &[u8],
    kind: Kind,
    data: &T,
    prev: &ChainHash,
) -> Result<ChainHash, EncodeError> {
    buf.clear();
    buf.extend_from_slice(b"{\"v\":");
    push_decimal(buf, u64::from(SCHEMA_VERSION));
    buf.extend_from_slice(b",\"seq\":");
    push_decimal(buf, seq);
    buf.extend_from_slice(b",\"time\":\"");
    buf.extend_from_slice(&time.rfc3339());
    buf.extend_from_slice(b"\",\"session\":");
    buf.extend_from_slice(session_json);
    buf.extend_from_slice(b",\"kind\":\"");
    buf.extend_from_slice(kind.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"data\":");
    let data_at = buf.len();
    serde_json::to_writer(&mut *buf, data)
        .map_err(|e| EncodeError::Serialize(io::Error::other(e)))?;
    if let Some(found) = not_an_object(buf.get(data_at..).unwrap_or_default()) {
        return Err(EncodeError::NotObject(found));
    }
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

/// `None` if `json` (what `serde_json` wrote for one value) is an object,
/// else the type it is, named as in [`crate::AuditError::DataNotObject`].
fn not_an_object(json: &[u8]) -> Option<&'static str> {
    match json.first() {
        Some(b'{') => None,
        Some(b'n') | None => Some("null"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'"') => Some("a string"),
        Some(b'[') => Some("an array"),
        Some(_) => Some("a number"),
    }
}

/// Appends `n` in decimal, as `write!(buf, "{n}")` would, without the
/// formatting machinery.
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        let digit = (n % 10) as u8;
        digits[at] = b'0' + digit;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
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
