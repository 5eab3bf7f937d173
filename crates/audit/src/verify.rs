//! Reading a log back: checking every hash, link and sequence number, and
//! handing out the records.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

use crate::line::{self, Cut};
use crate::schema::{ChainHash, Event, Kind, MAX_RECORD_BYTES, SCHEMA_VERSION};

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
    /// Whether the last record is `session-end`.
    ///
    /// `false` means the session crashed, is still running, or the log was
    /// cut at a record boundary: a cut there leaves a valid shorter chain
    /// that the file alone cannot tell from a session still being written.
    /// Signed checkpoints (a later schema) close that gap.
    pub sealed: bool,
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
    /// A record's `v` is not [`SCHEMA_VERSION`].
    #[error("schema version {found} is not supported (this reader knows version {SCHEMA_VERSION})")]
    WrongVersion {
        /// The version the record carries.
        found: u64,
    },
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
    pub(crate) sealed: bool,
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
            state: ChainState {
                next_seq: 0,
                head: ChainHash::ZERO,
                session: None,
                sealed: false,
            },
            finished: false,
            clean_end: false,
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
                self.state.next_seq += 1;
                self.state.head = event.hash;
                if self.state.session.is_none() {
                    self.state.session = Some(event.session.clone());
                }
                self.state.sealed = event.kind == Kind::SessionEnd;
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
    let wrong_version = version.filter(|&v| v != u64::from(SCHEMA_VERSION));
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
    if event.v != SCHEMA_VERSION {
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
    if let Some(session) = &state.session
        && *session != event.session
    {
        return Err(VerifyErrorKind::SessionMismatch {
            expected: session.clone(),
            found: event.session,
        }
        .into());
    }
    if let Some(rule) = placement_rule(event.seq, event.kind, state.sealed) {
        return Err(VerifyErrorKind::KindOutOfPlace {
            kind: event.kind,
            rule,
        }
        .into());
    }
    Ok(event)
}

/// The placement rule a record of `kind` at `seq` breaks, if any.
pub(crate) fn placement_rule(seq: u64, kind: Kind, sealed: bool) -> Option<&'static str> {
    if sealed {
        Some("nothing may follow session-end")
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
    let mut reader = LogReader::open(path)?;
    while reader.next_event()?.is_some() {}
    Ok(reader.summary())
}

/// Verifies the whole log at `path` as [`verify`] does and returns its
/// records; any problem fails the whole read. To show the records before a
/// problem, iterate a [`LogReader`] instead.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>, VerifyError> {
    LogReader::open(path)?.collect()
}
