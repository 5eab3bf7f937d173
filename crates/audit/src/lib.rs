//! `blastwall-audit` is the write-ahead, hash-chained record of every decision
//! blastwall makes (DESIGN.md I4).
//!
//! It owns the event schema, the hash chain, the writer and the verifier; its
//! later versions add segments, signed checkpoints, sinks and anomaly rules.
//! It must not block on slow sinks: the log file is written first and
//! everything else reads from it. Nothing inside the wall can reach the log;
//! it lives in the session directory, outside.
//!
//! Main types: [`AuditLog`] (the writer, over a [`LogFile`], with an
//! [`FsyncPolicy`]), [`Event`] and [`Kind`] (the schema), [`verify`] with its
//! [`VerifyReport`] and [`VerifyError`], [`LogReader`] to read records one by
//! one.
//!
//! # Format
//!
//! One record per line, keys in a fixed order, the hash last:
//!
//! ```text
//! {"v":1,"seq":0,"time":"2026-05-01T12:00:00.000000000Z","session":"s1","kind":"session-start","data":{},"prev":"000…000","hash":"…"}
//! ```
//!
//! `hash` is SHA-256 of the line's bytes with `,"hash":"…"` cut out (that is,
//! up to and including the `prev` value, then `}`). Since `prev` is inside the
//! hashed bytes, each record commits to the whole chain before it. The
//! verifier checks hashes on the bytes as written, never on re-serialized
//! JSON. Field by field: `docs/audit-schema.md`. Bytes that may not be UTF-8
//! go into `data` through [`bytes`].
//!
//! # What the chain does and does not show
//!
//! A changed byte, a removed, inserted, repeated or reordered record, and a
//! record torn by a crash mid-write are all detected, and reported with the
//! first bad seq. A log cut exactly at a record boundary is a valid shorter
//! chain: [`VerifyReport::sealed`] is then `false`, as it is for a session
//! that crashed or is still running. Someone who can rewrite the file can
//! also rewrite the chain from any point on; signed checkpoints kept apart
//! from the log are the later answer to both.
//!
//! # Test strategy
//!
//! `tests/suite/` writes logs and then attacks them: every single-byte flip
//! and every truncation of a small log is tried, swaps, removals, forged
//! records with a correct hash but a wrong link or session. The writer's file
//! operations go through [`LogFile`], so a recording fake shows when
//! `fdatasync` happens relative to `append` returning, and a failing fake
//! shows that a write error poisons the writer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anomaly;
pub mod bytes;
pub mod checkpoint;
mod line;
mod schema;
pub mod sinks;
mod time;
mod verify;
mod writer;

pub use checkpoint::{
    CheckpointEvery, Checkpointer, Head, HeadsError, KeyError, PublicKey, SigningKey,
};
pub use schema::{ChainHash, Event, Kind, MAX_RECORD_BYTES, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION};
pub use time::{Clock, FixedClock, SystemClock, Timestamp, TimestampError};
pub use verify::{
    LogReader, Position, VerifyError, VerifyErrorKind, VerifyOptions, VerifyReport, read_events,
    verify, verify_with,
};
pub use writer::{Appended, AuditError, AuditLog, FsyncPolicy, LineTap, LogFile, Syncer};
