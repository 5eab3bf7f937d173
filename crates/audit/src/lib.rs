//! `blastwall-audit` is the write-ahead, hash-chained record of every decision
//! blastwall makes (DESIGN.md I4).
//!
//! It owns the event schema, the hash chain, the writer, the verifier,
//! signed checkpoints, the sinks and the anomaly rules. It must not block on
//! slow sinks: the log file is written first and everything else reads from
//! it or gets a copy through a queue. Nothing inside the wall can reach the
//! log; it lives in the session directory, outside.
//!
//! Main types: [`AuditLog`] (the writer, over a [`LogFile`], with an
//! [`FsyncPolicy`]; [`Syncer`] to make records durable outside its lock),
//! [`Event`] and [`Kind`] (the schema), [`verify`] / [`verify_with`] with
//! their [`VerifyReport`] and [`VerifyError`], [`LogReader`] to read records
//! one by one (or follow a log being written); [`Checkpointer`] and
//! [`SigningKey`] / [`PublicKey`] ([`checkpoint`]); [`sinks::Sinks`];
//! [`anomaly::Detector`].
//!
//! # What the supervisor and the gate call
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use blastwall_audit::anomaly::{Detector, Observation, Thresholds, Verdict};
//! use blastwall_audit::sinks::{OtlpSignal, SinkConfig, Sinks};
//! use blastwall_audit::{AuditLog, Checkpointer, FsyncPolicy, Kind};
//! # let home = std::path::Path::new("/tmp/bw"); let session_dir = home.join("sessions/s1");
//! // The supervisor, once per session:
//! let sinks = Arc::new(Sinks::start(
//!     vec![SinkConfig::Otlp { endpoint: "http://127.0.0.1:4318".into(), signal: OtlpSignal::Logs }],
//!     &session_dir,
//! )?);
//! let mut log = AuditLog::create(session_dir.join("audit.jsonl"), "s1", FsyncPolicy::Batch)?
//!     .with_checkpoints(Checkpointer::in_home(home)?)?
//!     .with_tap(Arc::clone(&sinks));
//! let syncer = log.syncer()?; // optional: group commit outside the gate's lock
//! // The gate, per decision: append, then (side effects) make it durable,
//! // then run the anomaly rules and record what they raise.
//! let mut detector = Detector::new(Thresholds::default());
//! let seq = log.append(Kind::Decision, serde_json::json!({"verdict": "deny"}))?.seq;
//! syncer.sync_through(seq)?;
//! let mut obs = Observation::new(Duration::from_secs(1), Verdict::Deny);
//! obs.decision_seq = Some(seq);
//! for alert in detector.observe(&obs) {
//!     log.append(Kind::Alert, alert.to_json())?;
//! }
//! // At the end: session-end (then a final checkpoint), and the sinks get
//! // a bounded time to deliver.
//! log.append(Kind::SessionEnd, serde_json::json!({"exit": 0}))?;
//! sinks.flush(Duration::from_secs(5));
//! # Ok(()) }
//! ```
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
//! from the log ([`checkpoint`], [`verify_with`]) are the answer to both.
//!
//! # Test strategy
//!
//! `tests/suite/` writes logs and then attacks them: every single-byte flip
//! and every truncation of a small log is tried, swaps, removals, forged
//! records with a correct hash but a wrong link or session. The writer's file
//! operations go through [`LogFile`], so a recording fake shows when
//! `fdatasync` happens relative to `append` returning, and a failing fake
//! shows that a write error poisons the writer. Checkpointed logs are cut
//! at record boundaries, rewritten with every hash recomputed (keeping the
//! old signatures, re-signing with another key, dropping the checkpoints)
//! and their heads files edited. Sinks run against a loopback HTTP server
//! the test starts, held shut (slow), absent (dead) and brought back. The
//! anomaly rules are pure and tested rule by rule.
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
