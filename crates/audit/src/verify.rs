//! Reading a log back: checking every hash, link and sequence number, and
//! handing out the records.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, CheckpointData, Head, PublicKey};
use crate::line::{self, Cut};
use crate::schema::{
    ChainHash, Event, Kind, MAX_RECORD_BYTES, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// What [`verify`] found in a log whose every record checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// How many records the log holds (its last seq + 1).
    pub events: u64,
    /// The `hash` of the last record: what the next record's `prev` must be.
    pub head_hash: ChainHash,
    /// The session id every record carries.
    pub session: String,
    /// Whether the log holds `session-end` (its last record, or the last
    /// but its final checkpoint).
    ///
    /// `false` means the session crashed, is still running, or the log was
    /// cut at a record boundary: a cut there leaves a valid shorter chain
    /// that the file alone cannot tell from a session still being written.
    /// Signed checkpoints and the heads file ([`verify_with`]) close that gap.
    pub sealed: bool,
    /// The schema version of the log's records.
    pub version: u32,
    /// How many checkpoint records the log holds.
    pub checkpoints: u64,
    /// Whether checkpoint signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// The seq of the last checkpoint record whose signature verified with
    /// the given key: every record up to it is signed. `None` without a key
    /// or without a verified checkpoint.
    pub signed_through: Option<u64>,
    /// How many heads of this session the heads file holds, all found in
    /// the log; `None` when no heads file was checked.
    pub heads_matched: Option<u64>,
}

/// Where in the log a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The seq the bad record holds or should hold. Every record before it
    /// verified, so the log can be trusted up to `seq - 1`.
    pub seq: u64,
    /// The 1-based line of the bad record in the file.
    pub line: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {} (line {})", self.seq, self.line)
    }
}

/// Why a log failed verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// A record's bytes do not hash to the `hash` it carries: a byte was
    /// changed (in the record or in its hash).
    #[error("hash mismatch: the record says {stored}, its bytes hash to {computed}")]
    HashMismatch {
        /// The `hash` as written (lossily decoded if it is not text).
        stored: String,
        /// The hash of the record's bytes.
        computed: ChainHash,
    },
    /// A record's seq is higher than the next one expected and the expected
    /// one is nowhere later in the file: records were removed.
    #[error("sequence gap: expected seq {expected}, found seq {found} (records are missing)")]
    SeqGap {
        /// The seq that should come next.
        expected: u64,
        /// The seq the record carries.
        found: u64,
    },
    /// A record's seq is not the next one, and the expected one is elsewhere:
    /// records were swapped, moved or repeated.
    #[error("records out of order: expected seq {expected}, found seq {found}")]
    OutOfOrder {
        /// The seq that should come next.
        expected: u64,
        /// The seq the record carries.
        found: u64,
    },
    /// A record's `prev` is not the previous record's `hash`.
    #[error("broken chain: prev is {found}, but the previous record's hash is {expected}")]
    PrevMismatch {
        /// The previous record's hash ([`ChainHash::ZERO`] for seq 0).
        expected: ChainHash,
        /// The `prev` the record carries.
        found: ChainHash,
    },
    /// The file ends inside a record (no trailing newline): the writer
    /// stopped mid-write or the file was truncated mid-record.
    #[error("torn record: the file ends without a newline (the writer stopped mid-record)")]
    TornTail,
    /// A line is longer than [`MAX_RECORD_BYTES`].
    #[error("record longer than {limit} bytes")]
    TooLong {
        /// The limit, [`MAX_RECORD_BYTES`].
        limit: usize,
    },
    /// A line is not a well-formed record: not JSON, a missing, extra or
    /// mistyped field, no hash member at the end, `data` not an object.
    #[error("malformed record: {detail}")]
    BadJson {
        /// What is wrong, for a human.
        detail: String,
    },
    /// A record's `v` is not a version this reader knows
    /// ([`OLDEST_SCHEMA_VERSION`] to [`SCHEMA_VERSION`]).
    #[error(
        "schema version {found} is not supported (this reader knows versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION})"
    )]
    WrongVersion {
        /// The version the record carries.
        found: u64,
    },
    /// A record's `v` differs from seq 0's: one log has one version.
    #[error("schema version changed from {expected} to {found}")]
    MixedVersions {
        /// The version of seq 0.
        expected: u32,
        /// The version this record carries.
        found: u32,
    },
    /// A checkpoint record whose `data` is not a checkpoint of the record
    /// before it.
    #[error("malformed checkpoint at seq {checkpoint_seq}: {detail}")]
    BadCheckpoint {
        /// The checkpoint record's seq.
        checkpoint_seq: u64,
        /// What is wrong.
        detail: &'static str,
    },
    /// A checkpoint is signed by another key than the one trusted: it was
    /// forged, or the log belongs to another installation.
    #[error(
        "checkpoint at seq {checkpoint_seq} is signed by key {}, not by the trusted key{}",
        found.to_hex(),
        Untrusted(*first_unsigned)
    )]
    WrongKey {
        /// The checkpoint record's seq.
        checkpoint_seq: u64,
        /// The key the checkpoint names.
        found: PublicKey,
        /// The first seq no valid signature covers.
        first_unsigned: u64,
    },
    /// A checkpoint's signature does not verify: the chain was rewritten and
    /// the checkpoint recomputed without the key.
    #[error(
        "checkpoint at seq {checkpoint_seq}: the signature does not verify{}",
        Untrusted(*first_unsigned)
    )]
    BadSignature {
        /// The checkpoint record's seq.
        checkpoint_seq: u64,
        /// The first seq no valid signature covers.
        first_unsigned: u64,
    },
    /// The heads file holds a signed head past the end of the log: the log
    /// was cut (at a record boundary or not).
    #[error(
        "the log ends at seq {last} but the heads file holds a signed head at seq {head_seq} (checkpoint seq {checkpoint_seq}): records were removed from the end{}",
        Untrusted(*first_unsigned)
    )]
    Truncated {
        /// The last seq the log holds.
        last: u64,
        /// The head seq the heads file recorded.
        head_seq: u64,
        /// The seq of the checkpoint that recorded it.
        checkpoint_seq: u64,
        /// The first seq no valid signature covers.
        first_unsigned: u64,
    },
    /// A head in the heads file is not the log's checkpoint at that seq:
    /// the chain was rewritten from an earlier point.
    #[error(
        "the heads file holds head seq {head_seq} (checkpoint seq {checkpoint_seq}), but the log {found}: the chain was rewritten{}",
        Untrusted(*first_unsigned)
    )]
    HeadMismatch {
        /// The head seq the heads file recorded.
        head_seq: u64,
        /// The seq of the checkpoint that recorded it.
        checkpoint_seq: u64,
        /// What the log has there instead of the recorded head.
        found: String,
        /// The first seq no valid signature covers.
        first_unsigned: u64,
    },
    /// A head of this session in the heads file that the trusted key did not
    /// sign: the heads file was edited.
    #[error(
        "the heads file holds a head at seq {head_seq} whose signature does not verify with the trusted key"
    )]
    ForgedHead {
        /// The head seq of the bad line.
        head_seq: u64,
    },
    /// The heads file could not be read or holds a line that is not a head.
    #[error("{0}")]
    Heads(#[from] checkpoint::HeadsError),
    /// A record's `session` differs from the first record's.
    #[error("session id changed from {expected:?} to {found:?}")]
    SessionMismatch {
        /// The session id of seq 0.
        expected: String,
        /// The session id this record carries.
        found: String,
    },
    /// A kind where the schema does not allow it: seq 0 that is not
    /// `session-start`, a second `session-start`, a record after
    /// `session-end`.
    #[error("{kind} record out of place: {rule}")]
    KindOutOfPlace {
        /// The record's kind.
        kind: Kind,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The file holds no record at all (a log is never empty once its
    /// session started: seq 0 is `session-start`).
    #[error("the log is empty (no session-start record)")]
    Empty,
    /// Reading the file failed.
    #[error("cannot read: {error}")]
    Io {
        /// The error from the operating system.
        error: io::Error,
    },
}

/// A log that failed verification: which log, where, and why.
///
/// The message names the path and the first bad seq, e.g.
/// `audit log /s/audit.jsonl, seq 7 (line 8): sequence gap: expected seq 7, found seq 9 (records are missing)`.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}{}: {kind}", path.display(), At(*at))]
pub struct VerifyError {
    /// The log file.
    pub path: PathBuf,
    /// Where the first problem is; `None` when it concerns the whole file
    /// (it is empty, or could not be opened).
    pub at: Option<Position>,
    /// What is wrong.
    pub kind: VerifyErrorKind,
}

struct Untrusted(u64);

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_sub(1) {
            Some(last) => write!(f, "; signed records end at seq {last}"),
            None => f.write_str("; no record is covered by a valid signature"),
        }
    }
}

struct At(Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(f, ", {position}"),
            None => Ok(()),
        }
    }
}

impl VerifyError {
    /// The first bad seq, if the problem is at a record.
    pub fn seq(&self) -> Option<u64> {
        self.at.map(|p| p.seq)
    }

    /// The 1-based line of the first bad record, if the problem is at one.
    pub fn line(&self) -> Option<u64> {
        self.at.map(|p| p.line)
    }
}

/// The chain as verified so far.
#[derive(Debug, Clone)]
pub(crate) struct ChainState {
    pub(crate) next_seq: u64,
    pub(crate) head: ChainHash,
    pub(crate) session: Option<String>,
    pub(crate) version: Option<u32>,
    /// `session-end` was read.
    pub(crate) sealed: bool,
    /// The checkpoint after `session-end` was read: nothing may follow.
    pub(crate) closed: bool,
    /// Every checkpoint read, in order.
    pub(crate) checkpoints: Vec<SeenCheckpoint>,
    /// The seq of the last checkpoint whose signature verified.
    pub(crate) signed_through: Option<u64>,
}

/// A checkpoint record, as read.
#[derive(Debug, Clone)]
pub(crate) struct SeenCheckpoint {
    pub(crate) seq: u64,
    pub(crate) data: CheckpointData,
}

impl ChainState {
    pub(crate) fn new() -> Self {
        ChainState {
            next_seq: 0,
            head: ChainHash::ZERO,
            session: None,
            version: None,
            sealed: false,
            closed: false,
            checkpoints: Vec::new(),
            signed_through: None,
        }
    }

    /// The first seq after the last checkpoint whose signature verified
    /// (before `before`), or 0.
    fn first_unsigned(&self, before: u64) -> u64 {
        self.checkpoints
            .iter()
            .rev()
            .filter(|c| c.seq < before)
            .find(|c| self.signed_through.is_none_or(|s| c.seq <= s))
            .map_or(0, |c| c.seq + 1)
    }
}

/// What [`verify_with`] checks beyond the chain.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The trusted public key (`$BLASTWALL_HOME/keys/audit.ed25519.pub`):
    /// every checkpoint must name it and carry its valid signature.
    pub public_key: Option<PublicKey>,
    /// The heads file (`$BLASTWALL_HOME/audit-heads.jsonl`): every head it
    /// holds for the log's session must be one of the log's checkpoints.
    pub heads_file: Option<PathBuf>,
}

impl VerifyOptions {
    /// Checks with `key` and the heads file at `heads_file`.
    pub fn new(public_key: Option<PublicKey>, heads_file: Option<PathBuf>) -> Self {
        VerifyOptions {
            public_key,
            heads_file,
        }
    }
}

/// Reads a log record by record, verifying each one against the chain before
/// handing it out.
///
/// As an iterator it yields each verified [`Event`] in order; at the first
/// problem it yields the [`VerifyError`] and then ends. `blastwall log` can
/// so print everything up to the damage and then the damage. The records it
/// yields are checked only against what precedes them: a log is sound only
/// if iteration ends without an error.
#[derive(Debug)]
pub struct LogReader<R> {
    path: PathBuf,
    input: R,
    line: Vec<u8>,
    line_no: u64,
    state: ChainState,
    public_key: Option<PublicKey>,
    /// `line` holds the start of a record whose end is not written yet
    /// ([`LogReader::next_available`]).
    partial: bool,
    finished: bool,
    clean_end: bool,
}

impl LogReader<BufReader<File>> {
    /// Opens the log at `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VerifyError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|error| VerifyError {
            path: path.to_path_buf(),
            at: None,
            kind: VerifyErrorKind::Io { error },
        })?;
        Ok(LogReader::new(path, BufReader::new(file)))
    }
}

impl<R: BufRead> LogReader<R> {
    /// Reads a log from `input`; `path` names it in errors.
    pub fn new(path: impl Into<PathBuf>, input: R) -> Self {
        LogReader {
            path: path.into(),
            input,
            line: Vec::new(),
            line_no: 0,
            state: ChainState::new(),
            public_key: None,
            partial: false,
            finished: false,
            clean_end: false,
        }
    }

    /// Also checks every checkpoint's signature with `key` as it is read: a
    /// checkpoint that names another key or whose signature does not verify
    /// ends the reading with [`VerifyErrorKind::WrongKey`] or
    /// [`VerifyErrorKind::BadSignature`].
    #[must_use]
    pub fn with_public_key(mut self, key: PublicKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Whether the log read so far holds `session-end`.
    pub fn is_sealed(&self) -> bool {
        self.state.sealed
    }

    /// How many records were read and verified so far.
    pub fn records_read(&self) -> u64 {
        self.state.next_seq
    }

    /// Checks the heads of this log's session in the heads file at `path`
    /// against the log read so far (call it once reading ended with no
    /// error): every head must be one of the log's checkpoints, with the
    /// same head seq, hash and signature, and, when a public key was given,
    /// signed by it. Returns how many heads matched.
    pub fn check_heads(&self, path: &Path) -> Result<u64, VerifyError> {
        let session = self.state.session.as_deref().unwrap_or_default();
        let mut heads = checkpoint::read_heads(path, session).map_err(|e| self.whole(e.into()))?;
        heads.sort_by_key(|h| h.checkpoint_seq);
        for head in &heads {
            self.check_head(head)?;
        }
        Ok(u64::try_from(heads.len()).unwrap_or(u64::MAX))
    }

    fn check_head(&self, head: &Head) -> Result<(), VerifyError> {
        let state = &self.state;
        let session = state.session.as_deref().unwrap_or_default();
        if let Some(key) = &self.public_key {
            let signed = checkpoint::parse_sig(&head.sig)
                .is_some_and(|sig| key.verify_checkpoint(session, head.seq, &head.hash, &sig));
            if !signed {
                return Err(self.whole(VerifyErrorKind::ForgedHead { head_seq: head.seq }));
            }
        }
        let first_unsigned = state.first_unsigned(head.checkpoint_seq);
        let at = |seq: u64| Some(Position { seq, line: seq + 1 });
        if head.checkpoint_seq >= state.next_seq {
            return Err(VerifyError {
                path: self.path.clone(),
                at: at(first_unsigned),
                kind: VerifyErrorKind::Truncated {
                    last: state.next_seq.saturating_sub(1),
                    head_seq: head.seq,
                    checkpoint_seq: head.checkpoint_seq,
                    first_unsigned,
                },
            });
        }
        let found = state
            .checkpoints
            .iter()
            .find(|c| c.seq == head.checkpoint_seq);
        let mismatch = match found {
            None => Some(format!("has no checkpoint at seq {}", head.checkpoint_seq)),
            Some(c) if c.data.head_seq != head.seq || c.data.head_hash != head.hash => {
                Some(format!(
                    "signs head seq {} with hash {} there, not hash {}",
                    c.data.head_seq, c.data.head_hash, head.hash
                ))
            }
            Some(c) if checkpoint::parse_sig(&head.sig) != Some(c.data.sig) => Some(format!(
                "checkpoint at seq {} carries another signature",
                c.seq
            )),
            Some(_) => None,
        };
        match mismatch {
            None => Ok(()),
            Some(found) => Err(VerifyError {
                path: self.path.clone(),
                at: at(first_unsigned),
                kind: VerifyErrorKind::HeadMismatch {
                    head_seq: head.seq,
                    checkpoint_seq: head.checkpoint_seq,
                    found,
                    first_unsigned,
                },
            }),
        }
    }

    fn whole(&self, kind: VerifyErrorKind) -> VerifyError {
        VerifyError {
            path: self.path.clone(),
            at: None,
            kind,
        }
    }

    /// The summary of the log, once iteration has reached its end with no
    /// error; `None` before that or after an error.
    pub fn report(&self) -> Option<VerifyReport> {
        self.clean_end.then(|| self.summary())
    }

    fn summary(&self) -> VerifyReport {
        VerifyReport {
            events: self.state.next_seq,
            head_hash: self.state.head,
            session: self.state.session.clone().unwrap_or_default(),
            sealed: self.state.sealed,
            version: self.state.version.unwrap_or(SCHEMA_VERSION),
            checkpoints: u64::try_from(self.state.checkpoints.len()).unwrap_or(u64::MAX),
            signatures_checked: self.public_key.is_some(),
            signed_through: self.state.signed_through,
            heads_matched: None,
        }
    }

    pub(crate) fn into_state(self) -> ChainState {
        self.state
    }

    fn error(&self, kind: VerifyErrorKind) -> VerifyError {
        VerifyError {
            path: self.path.clone(),
            at: (self.line_no > 0).then_some(Position {
                seq: self.state.next_seq,
                line: self.line_no,
            }),
            kind,
        }
    }

    /// Reads one line, newline included, into `buf`; at most
    /// [`MAX_RECORD_BYTES`] + 1 bytes so that a line with no end cannot
    /// exhaust memory. Returns the number of bytes read (0 at end of file).
    fn read_line(input: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        // usize → u64 never truncates on the 32- and 64-bit targets Linux has.
        let limit = u64::try_from(MAX_RECORD_BYTES).unwrap_or(u64::MAX);
        input.take(limit.saturating_add(1)).read_until(b'\n', buf)
    }

    /// For following a log that is still being written: verifies and
    /// returns the next record if a whole one is there, else `Ok(None)`
    /// (the file ends, possibly in the middle of a record the writer is
    /// still writing: that part is kept and completed by a later call).
    /// Call again once the file has grown. An empty file is not an error
    /// here.
    pub fn next_available(&mut self) -> Result<Option<Event>, VerifyError> {
        if !self.partial {
            self.line.clear();
        }
        let room = MAX_RECORD_BYTES
            .saturating_add(1)
            .saturating_sub(self.line.len());
        let room = u64::try_from(room).unwrap_or(u64::MAX);
        let read = (&mut self.input)
            .take(room)
            .read_until(b'\n', &mut self.line)
            .map_err(|error| self.error(VerifyErrorKind::Io { error }))?;
        if self.line.ends_with(b"\n") {
            self.partial = false;
            self.line_no += 1;
            return self.check_line();
        }
        if self.line.len() > MAX_RECORD_BYTES {
            self.line_no += 1;
            return Err(self.error(VerifyErrorKind::TooLong {
                limit: MAX_RECORD_BYTES,
            }));
        }
        self.partial = !self.line.is_empty();
        let _ = read;
        Ok(None)
    }

    /// Verifies and returns the next record, `Ok(None)` at a clean end.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, VerifyError> {
        let read = Self::read_line(&mut self.input, &mut self.line);
        let read = read.map_err(|error| {
            self.line_no += 1;
            self.error(VerifyErrorKind::Io { error })
        })?;
        if read == 0 {
            if self.line_no == 0 {
                return Err(self.error(VerifyErrorKind::Empty));
            }
            self.clean_end = true;
            return Ok(None);
        }
        self.line_no += 1;
        self.check_line()
    }

    /// Checks the line just read (`self.line`, counted in `line_no`).
    fn check_line(&mut self) -> Result<Option<Event>, VerifyError> {
        let Some(record) = self.line.strip_suffix(b"\n") else {
            return Err(self.error(if self.line.len() > MAX_RECORD_BYTES {
                VerifyErrorKind::TooLong {
                    limit: MAX_RECORD_BYTES,
                }
            } else {
                VerifyErrorKind::TornTail
            }));
        };
        match check_record(record, &self.state) {
            Ok(event) => {
                if event.kind == Kind::Checkpoint {
                    self.check_checkpoint(&event)?;
                }
                self.state.next_seq += 1;
                self.state.head = event.hash;
                if self.state.session.is_none() {
                    self.state.session = Some(event.session.clone());
                    self.state.version = Some(event.v);
                }
                if self.state.sealed && event.kind == Kind::Checkpoint {
                    self.state.closed = true;
                }
                if event.kind == Kind::SessionEnd {
                    self.state.sealed = true;
                }
                Ok(Some(event))
            }
            Err(Problem::Kind(kind)) => Err(self.error(kind)),
            Err(Problem::SeqMismatch { found }) => {
                let expected = self.state.next_seq;
                let kind = if found < expected || self.seq_appears_later(expected) {
                    VerifyErrorKind::OutOfOrder { expected, found }
                } else {
                    VerifyErrorKind::SeqGap { expected, found }
                };
                Err(self.error(kind))
            }
        }
    }

    /// Checks a checkpoint record that passed the chain checks: its data, and
    /// its signature when a key is trusted.
    fn check_checkpoint(&mut self, event: &Event) -> Result<(), VerifyError> {
        let bad = |detail| VerifyErrorKind::BadCheckpoint {
            checkpoint_seq: event.seq,
            detail,
        };
        let data = CheckpointData::from_json(&event.data).map_err(|d| self.error(bad(d)))?;
        if Some(data.head_seq) != event.seq.checked_sub(1) {
            return Err(self.error(bad("\"head_seq\" is not the seq of the record before it")));
        }
        if data.head_hash != event.prev {
            return Err(self.error(bad("\"head_hash\" is not the hash of the record before it")));
        }
        if let Some(key) = self.public_key {
            let first_unsigned = self.state.first_unsigned(event.seq);
            let kind = if data.key != key {
                Some(VerifyErrorKind::WrongKey {
                    checkpoint_seq: event.seq,
                    found: data.key,
                    first_unsigned,
                })
            } else if !key.verify_checkpoint(
                &event.session,
                data.head_seq,
                &data.head_hash,
                &data.sig,
            ) {
                Some(VerifyErrorKind::BadSignature {
                    checkpoint_seq: event.seq,
                    first_unsigned,
                })
            } else {
                None
            };
            if let Some(kind) = kind {
                return Err(VerifyError {
                    path: self.path.clone(),
                    at: Some(Position {
                        seq: first_unsigned,
                        line: first_unsigned + 1,
                    }),
                    kind,
                });
            }
            self.state.signed_through = Some(event.seq);
        }
        self.state.checkpoints.push(SeenCheckpoint {
            seq: event.seq,
            data,
        });
        Ok(())
    }

    /// Whether a later line starts with seq `wanted` (reads to the end of the
    /// file; only used once a log has already failed).
    fn seq_appears_later(&mut self, wanted: u64) -> bool {
        let mut buf = Vec::new();
        while let Ok(read) = Self::read_line(&mut self.input, &mut buf) {
            if read == 0 {
                break;
            }
            if line::prefix(&buf).is_some_and(|(_, seq)| seq == wanted) {
                return true;
            }
        }
        false
    }
}

impl<R: BufRead> Iterator for LogReader<R> {
    type Item = Result<Event, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }
}

enum Problem {
    Kind(VerifyErrorKind),
    SeqMismatch { found: u64 },
}

impl From<VerifyErrorKind> for Problem {
    fn from(kind: VerifyErrorKind) -> Self {
        Problem::Kind(kind)
    }
}

fn bad_json(detail: impl Into<String>) -> Problem {
    Problem::Kind(VerifyErrorKind::BadJson {
        detail: detail.into(),
    })
}

/// Checks one record (newline removed) against the chain so far, in the
/// order: hash, version, JSON shape, seq, prev, session, kind placement.
fn check_record(record: &[u8], state: &ChainState) -> Result<Event, Problem> {
    let version = line::prefix(record).map(|(v, _)| v);
    let known = u64::from(OLDEST_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION);
    let wrong_version = version.filter(|v| !known.contains(v));
    let stored_hash = match line::cut_and_hash(record) {
        Cut::Hashed { stored, computed } => {
            if stored != computed.hex() {
                // A record of another version may hash differently.
                if let Some(found) = wrong_version {
                    return Err(VerifyErrorKind::WrongVersion { found }.into());
                }
                return Err(VerifyErrorKind::HashMismatch {
                    stored: String::from_utf8_lossy(stored).into_owned(),
                    computed,
                }
                .into());
            }
            computed
        }
        Cut::NoHashMember => {
            if let Some(found) = wrong_version {
                return Err(VerifyErrorKind::WrongVersion { found }.into());
            }
            return Err(bad_json(
                "the record does not end with a \"hash\" member of 64 lowercase hex digits",
            ));
        }
    };
    if let Some(found) = wrong_version {
        return Err(VerifyErrorKind::WrongVersion { found }.into());
    }
    let event: Event = serde_json::from_slice(record).map_err(|e| bad_json(e.to_string()))?;
    if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&event.v) {
        return Err(VerifyErrorKind::WrongVersion {
            found: u64::from(event.v),
        }
        .into());
    }
    if event.hash != stored_hash {
        return Err(bad_json("the \"hash\" member is not the last member"));
    }
    if event.session.is_empty() {
        return Err(bad_json("\"session\" is empty"));
    }
    if !event.data.is_object() {
        return Err(bad_json("\"data\" is not a JSON object"));
    }
    if event.seq != state.next_seq {
        return Err(Problem::SeqMismatch { found: event.seq });
    }
    if event.prev != state.head {
        return Err(VerifyErrorKind::PrevMismatch {
            expected: state.head,
            found: event.prev,
        }
        .into());
    }
    if let Some(expected) = state.version
        && expected != event.v
    {
        return Err(VerifyErrorKind::MixedVersions {
            expected,
            found: event.v,
        }
        .into());
    }
    if let Some(session) = &state.session
        && *session != event.session
    {
        return Err(VerifyErrorKind::SessionMismatch {
            expected: session.clone(),
            found: event.session,
        }
        .into());
    }
    if event.kind == Kind::Checkpoint && event.v < 2 {
        return Err(VerifyErrorKind::KindOutOfPlace {
            kind: event.kind,
            rule: "checkpoint records need schema version 2",
        }
        .into());
    }
    if let Some(rule) = placement_rule(event.seq, event.kind, state.sealed, state.closed) {
        return Err(VerifyErrorKind::KindOutOfPlace {
            kind: event.kind,
            rule,
        }
        .into());
    }
    Ok(event)
}

/// The placement rule a record of `kind` at `seq` breaks, if any, after
/// `session-end` (`sealed`) and after the checkpoint that follows it
/// (`closed`).
pub(crate) fn placement_rule(
    seq: u64,
    kind: Kind,
    sealed: bool,
    closed: bool,
) -> Option<&'static str> {
    if closed {
        Some("nothing may follow the checkpoint after session-end")
    } else if sealed && kind != Kind::Checkpoint {
        Some("nothing but a checkpoint may follow session-end")
    } else if seq == 0 && kind != Kind::SessionStart {
        Some("seq 0 must be session-start")
    } else if seq != 0 && kind == Kind::SessionStart {
        Some("session-start is only allowed at seq 0")
    } else {
        None
    }
}

/// Verifies the whole log at `path`: every record's hash, the seq running
/// 0, 1, 2… with no gap, every `prev` linking to the record before, one
/// version and one session throughout, `session-start` first and nothing
/// after `session-end`.
///
/// Hashes are checked on the bytes as written, never on re-serialized JSON.
/// A log cut exactly at a record boundary verifies as a shorter log; see
/// [`VerifyReport::sealed`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
    verify_with(path, &VerifyOptions::default())
}

/// Verifies the log at `path` as [`verify`] does, and then what `options`
/// name: every checkpoint's signature with the trusted key, and every head
/// the heads file holds for the log's session against the log's
/// checkpoints.
///
/// So, beyond [`verify`]: a log cut at a record boundary before the last
/// head recorded is [`VerifyErrorKind::Truncated`]; a chain rewritten from
/// any point on, with its hashes recomputed, fails at its first checkpoint
/// ([`VerifyErrorKind::BadSignature`], or [`VerifyErrorKind::WrongKey`] if
/// re-signed with another key), or, with its checkpoints left out, at the
/// heads file ([`VerifyErrorKind::HeadMismatch`]). For these errors the
/// first bad seq is the first record no valid signature covers (the one
/// after the last good checkpoint): from there on the log cannot be told
/// from a rewrite.
pub fn verify_with(
    path: impl AsRef<Path>,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let mut reader = LogReader::open(path)?;
    if let Some(key) = options.public_key {
        reader = reader.with_public_key(key);
    }
    while reader.next_event()?.is_some() {}
    let mut report = reader.summary();
    if let Some(heads) = &options.heads_file {
        report.heads_matched = Some(reader.check_heads(heads)?);
    }
    Ok(report)
}

/// Verifies the whole log at `path` as [`verify`] does and returns its
/// records; any problem fails the whole read. To show the records before a
/// problem, iterate a [`LogReader`] instead.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>, VerifyError> {
    LogReader::open(path)?.collect()
}
