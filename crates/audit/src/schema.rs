//! The event schema: what one line of the audit log holds.
//!
//! The field-by-field description, with the exact byte layout and the hash
//! rule, is `docs/audit-schema.md`; this module is its Rust side.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::time::Timestamp;

/// The version written in every record's `v` field.
///
/// Version 2 added the [`Kind::Checkpoint`] record; its line layout and hash
/// rule are those of version 1. A reader accepts versions
/// [`OLDEST_SCHEMA_VERSION`] to [`SCHEMA_VERSION`], one version per log, and
/// refuses any other value ([`crate::VerifyErrorKind::WrongVersion`]): a new
/// field, kind or hash rule is a new version.
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest version a reader still accepts: version 1 logs (no
/// checkpoints) verify as they always did.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// The longest record, newline included, that the writer emits and the reader
/// accepts (8 MiB).
///
/// A record holds descriptions of actions (argv, a URL, a digest of a body),
/// never a body itself; the bound keeps a damaged file with no newline from
/// being read into memory whole.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// What a record is about; the `kind` field.
///
/// A log is one session: `session-start` is seq 0 and appears nowhere else,
/// and nothing follows a `session-end` but, when the log is checkpointed,
/// one final `checkpoint` that signs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Kind {
    /// The first record of every log: the session began (`data` holds what
    /// the supervisor wants on record, such as the manifest digest).
    SessionStart,
    /// The gate decided on an action (`data`: `action`, `verdict`, `rule`,
    /// `reason`, `labels`, `approval`). Written before the action takes effect.
    Decision,
    /// What happened to an action after its decision (`data`: `decision_seq`,
    /// `outcome`).
    Outcome,
    /// Something an operator should look at (a placeholder sent to the wrong
    /// host, an anomaly rule firing).
    Alert,
    /// The last record: the session ended and the log is sealed.
    SessionEnd,
    /// A signed checkpoint (schema version 2): `data` holds `head_seq` and
    /// `head_hash`, the record just before it, the signer's public `key` and
    /// an ed25519 `sig` over (session, head seq, head hash). Written only by
    /// the writer's [`crate::Checkpointer`], every N records or T seconds and
    /// after `session-end`.
    Checkpoint,
}

impl Kind {
    /// Every kind, in schema order.
    pub const ALL: [Kind; 6] = [
        Kind::SessionStart,
        Kind::Decision,
        Kind::Outcome,
        Kind::Alert,
        Kind::SessionEnd,
        Kind::Checkpoint,
    ];

    /// The kind as it is written in the `kind` field, e.g. `"session-start"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::SessionStart => "session-start",
            Kind::Decision => "decision",
            Kind::Outcome => "outcome",
            Kind::Alert => "alert",
            Kind::SessionEnd => "session-end",
            Kind::Checkpoint => "checkpoint",
        }
    }

    /// The kind spelled `text` (as in the `kind` field), if there is one.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SHA-256 value of the chain: a record's `hash`, or the `prev` it links to.
///
/// Written as 64 lowercase hex digits; the reader accepts no other spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl ChainHash {
    /// The `prev` of seq 0: 32 zero bytes (64 `0` digits).
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ChainHash(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses exactly 64 lowercase hex digits; anything else is `None`.
    pub fn from_hex(text: &str) -> Option<Self> {
        Self::from_hex_bytes(text.as_bytes())
    }

    pub(crate) fn from_hex_bytes(text: &[u8]) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let &[hi, lo] = pair else {
                return None;
            };
            *byte = (hex_value(hi)? << 4) | hex_value(lo)?;
        }
        Some(ChainHash(out))
    }

    /// The 64 lowercase hex digits, without allocating.
    pub(crate) fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            let hi = HEX_DIGITS[usize::from(byte >> 4)];
            let lo = HEX_DIGITS[usize::from(byte & 0x0f)];
            pair.copy_from_slice(&[hi, lo]);
        }
        out
    }

    /// The 64 lowercase hex digits as a `String`.
    pub fn to_hex(&self) -> String {
        // The digits are ASCII by construction.
        self.hex().iter().map(|&b| char::from(b)).collect()
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ChainHash::from_hex(&text)
            .ok_or_else(|| de::Error::custom("expected 64 lowercase hex digits"))
    }
}

/// One record of the audit log, as read back and verified.
///
/// The fields are the line's keys, in the order they are written. `data` is
/// always a JSON object; its members depend on `kind` (see
/// `docs/audit-schema.md`). Serializing an `Event` gives the same keys in the
/// same order, though not necessarily the same bytes as the line it came from:
/// a hash is only ever checked against the original bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Event {
    /// Schema version: [`SCHEMA_VERSION`] for what this writer writes; a
    /// verified log may also hold an older version, the same in every record.
    pub v: u32,
    /// Position in the chain: 0 for the first record, then +1 with no gaps.
    pub seq: u64,
    /// Wall-clock time the writer stamped on the record (UTC). Informational:
    /// the order of records is `seq`, not `time`.
    pub time: Timestamp,
    /// The session id, the same in every record of a log.
    pub session: String,
    /// What the record is about.
    pub kind: Kind,
    /// Kind-specific payload; always a JSON object.
    pub data: serde_json::Value,
    /// The previous record's `hash` ([`ChainHash::ZERO`] for seq 0).
    pub prev: ChainHash,
    /// SHA-256 of this record's line without its `hash` member.
    pub hash: ChainHash,
}
