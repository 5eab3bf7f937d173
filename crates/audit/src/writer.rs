//! Appending records: the write-ahead half of I4.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufReader};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::line::EncodeError;

use crate::checkpoint::{self, CheckpointData, Checkpointer, Head};
use crate::line;
use crate::schema::{ChainHash, Kind, MAX_RECORD_BYTES};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::verify::{self, LogReader, VerifyError};

/// When the writer makes records durable with `fdatasync(2)`.
///
/// I4 asks that an action with side effects be *durable* before it is
/// released, while a side-effect-free read only needs to be *written* first
/// and may become durable later. The three policies serve that:
///
/// - [`FsyncPolicy::Always`]: every [`AuditLog::append`] syncs before it
///   returns. Simple and strict; costs one `fdatasync` per record.
/// - [`FsyncPolicy::Batch`]: group commit. `append` only writes (the record
///   is in the page cache: it survives a crash of blastwall, not of the
///   machine) and the caller decides when to pay for durability by calling
///   [`AuditLog::sync`]. One `sync` makes every record written so far
///   durable, so a writer task serving many connections appends the records
///   that arrive together, calls `sync` once, then releases every action whose
///   seq is at most [`AuditLog::durable_seq`]. Reads are released after
///   `append`; actions with side effects wait for the `sync`. A
///   `session-end` record is always synced.
/// - [`FsyncPolicy::Never`]: never syncs, and `sync` does nothing. Records
///   reach the disk when the kernel writes them back; a power loss can lose
///   the tail. For throwaway sessions and tests; I4's durability does not hold.
///
/// Benchmarks state the policy they ran with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// `fdatasync` after every append, before `append` returns.
    Always,
    /// `fdatasync` when the caller calls [`AuditLog::sync`] (group commit),
    /// and after `session-end`.
    Batch,
    /// Never `fdatasync`.
    Never,
}

/// Bytes reserved on disk for a new log when it is created (the file's
/// size stays that of what was written).
pub(crate) const PREALLOCATE: u64 = 8 * 1024 * 1024;

/// The two file operations the writer performs, so that tests can record
/// them (and make them fail) without a disk.
///
/// The real implementation is [`std::fs::File`] opened with `O_APPEND`.
pub trait LogFile {
    /// Writes all of `buf` at the end of the file. The writer passes one whole
    /// record, newline included, per call.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Makes everything written so far durable (`fdatasync(2)`).
    fn sync_data(&mut self) -> io::Result<()>;
}

impl LogFile for File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Where the writer hands a copy of every record it wrote: the sinks
/// ([`crate::sinks::Sinks`]), or a test's recorder.
///
/// [`LineTap::offer`] is called with each whole line (newline included)
/// right after it is written to the log, under the writer's lock: it must
/// not block (queue the line and return). Whatever
/// [`LineTap::take_alerts`] returns after an append is written to the log
/// as `alert` records (the data of each), so that a sink falling behind is
/// on record.
pub trait LineTap: Send + fmt::Debug {
    /// Takes a copy of one record. Must not block.
    fn offer(&self, line: &[u8]);

    /// Alerts to record, each the `data` of an `alert` record.
    fn take_alerts(&self) -> Vec<Value> {
        Vec::new()
    }
}

impl<T: LineTap + Sync> LineTap for Arc<T> {
    fn offer(&self, line: &[u8]) {
        T::offer(self, line);
    }

    fn take_alerts(&self) -> Vec<Value> {
        T::take_alerts(self)
    }
}

/// What [`AuditLog::append`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The record's seq.
    pub seq: u64,
    /// The record's hash, which the next record's `prev` will carry.
    pub hash: ChainHash,
}

/// A failure to open or append to an audit log. The gate denies the action
/// whose record could not be written (I4).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be created (it may already exist: a log is
    /// never overwritten).
    #[error("cannot create audit log {}: {error}", path.display())]
    Create {
        /// The log file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The log file could not be opened or inspected.
    #[error("cannot open audit log {}: {error}", path.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The path is not a regular file.
    #[error("audit log {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Another writer holds the log's lock.
    #[error("audit log {} is locked by another writer", path.display())]
    Locked {
        /// The log file.
        path: PathBuf,
    },
    /// Taking the log's lock failed for another reason.
    #[error("cannot lock audit log {}: {error}", path.display())]
    Lock {
        /// The log file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The directory holding a new log could not be synced, so the log's
    /// name might not survive a power loss.
    #[error("cannot sync directory {} after creating its audit log: {error}", dir.display())]
    SyncDir {
        /// The directory.
        dir: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The existing log failed verification; nothing is appended to a
    /// damaged chain.
    #[error("refusing to append to a damaged log: {0}")]
    Damaged(Box<VerifyError>),
    /// The log ends with `session-end`; a sealed log takes no more records.
    #[error("audit log {} is sealed: seq {seq} is session-end", path.display())]
    Sealed {
        /// The log file.
        path: PathBuf,
        /// The seq of the `session-end` record.
        seq: u64,
    },
    /// Writing or syncing a checkpoint's head to the heads file failed (or
    /// the heads file could not be opened). The log takes no more records:
    /// what the heads file holds is no longer known.
    #[error("cannot write checkpoint head to {}: {error}", path.display())]
    Heads {
        /// The heads file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The session id is empty.
    #[error("audit log {}: the session id is empty", path.display())]
    EmptySession {
        /// The log file.
        path: PathBuf,
    },
    /// The record's kind is not allowed at this seq (seq 0 must be
    /// `session-start`, and only seq 0).
    #[error("audit log {}, seq {seq}: {kind} record out of place: {rule}", path.display())]
    KindOutOfPlace {
        /// The log file.
        path: PathBuf,
        /// The seq the record would have had.
        seq: u64,
        /// The record's kind.
        kind: Kind,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The record's `data` is not a JSON object.
    #[error("audit log {}, seq {seq}: data must be a JSON object, not {found}", path.display())]
    DataNotObject {
        /// The log file.
        path: PathBuf,
        /// The seq the record would have had.
        seq: u64,
        /// The JSON type given instead.
        found: &'static str,
    },
    /// The encoded record is longer than [`MAX_RECORD_BYTES`].
    #[error("audit log {}, seq {seq}: record of {len} bytes exceeds the limit of {limit}", path.display())]
    TooLong {
        /// The log file.
        path: PathBuf,
        /// The seq the record would have had.
        seq: u64,
        /// The record's length, newline included.
        len: usize,
        /// [`MAX_RECORD_BYTES`].
        limit: usize,
    },
    /// The record could not be encoded.
    #[error("audit log {}, seq {seq}: cannot encode record: {error}", path.display())]
    Encode {
        /// The log file.
        path: PathBuf,
        /// The seq the record would have had.
        seq: u64,
        /// What went wrong.
        error: io::Error,
    },
    /// Writing the record failed (disk full, I/O error). Part of it may be in
    /// the file; the log takes no more records.
    #[error("cannot write seq {seq} to audit log {}: {error}", path.display())]
    Write {
        /// The log file.
        path: PathBuf,
        /// The record's seq.
        seq: u64,
        /// The error from the operating system.
        error: io::Error,
    },
    /// `fdatasync` failed: the records are not known durable, and after a
    /// failed sync the kernel may have dropped them. The log takes no more
    /// records.
    #[error("cannot sync audit log {} through seq {seq}: {error}", path.display())]
    Sync {
        /// The log file.
        path: PathBuf,
        /// The last seq written.
        seq: u64,
        /// The error from the operating system.
        error: io::Error,
    },
    /// An earlier write or sync failed, so the end of the file is unknown;
    /// the log takes no more records. Start a new log.
    #[error("audit log {} takes no more records: writing or syncing seq {seq} failed", path.display())]
    Poisoned {
        /// The log file.
        path: PathBuf,
        /// The seq whose write or sync failed.
        seq: u64,
    },
}

/// The writer of one session's audit log.
///
/// Records are appended in seq order, each one built in a reused buffer and
/// written with a single [`LogFile::write_all`]. The writer holds an exclusive
/// `flock` on the file so that two writers cannot interleave a chain.
///
/// After a failed write or sync the writer is poisoned: every later call
/// fails with [`AuditError::Poisoned`], so the gate keeps denying.
///
/// Dropping the writer does not sync (a drop cannot report an error): end a
/// session with a `session-end` record, which is synced under
/// [`FsyncPolicy::Always`] and [`FsyncPolicy::Batch`], or call
/// [`AuditLog::sync`] first.
pub struct AuditLog<F: LogFile = File> {
    file: F,
    path: PathBuf,
    session: String,
    session_json: Vec<u8>,
    fsync: FsyncPolicy,
    clock: Box<dyn Clock>,
    next_seq: u64,
    head: ChainHash,
    durable: Option<u64>,
    sealed: bool,
    /// The checkpoint after `session-end` was written.
    closed: bool,
    failed_at: Option<u64>,
    buf: Vec<u8>,
    checkpoints: Option<Checkpointing>,
    tap: Option<Box<dyn LineTap>>,
    /// What a [`Syncer`] shares with the writer.
    shared: Arc<SyncShared>,
}

/// The counters a [`Syncer`] and its writer share.
#[derive(Debug, Default)]
struct SyncShared {
    /// Records written so far (the next seq), published after each write.
    written: AtomicU64,
    /// Records known durable: `seq + 1` of the last record whose
    /// `fdatasync` returned, 0 for none.
    durable: AtomicU64,
    /// `seq + 1` of the last record written when a sync failed, 0 if none
    /// did: the writer is then poisoned.
    failed: AtomicU64,
    /// Whether a [`Syncer`] call is inside `fdatasync` now (the leader);
    /// the others wait on `synced`.
    syncing: Mutex<bool>,
    /// Notified each time a leader's `fdatasync` returns.
    synced: Condvar,
}

/// Makes records durable outside the writer's lock (group commit across
/// threads): a second handle on the log file, from [`AuditLog::syncer`].
///
/// A gate that keeps its [`AuditLog`] behind a mutex can append under the
/// lock, release it, and call [`Syncer::sync_through`] with the record's
/// seq: one caller at a time (the leader) runs `fdatasync`, covering every
/// record written when it starts; the others wait, and when it returns,
/// every caller it covered returns at once and one of the rest leads the
/// next sync, which covers everything appended meanwhile. `fdatasync` on any
/// handle of the file makes all data written to it durable. A failed sync
/// poisons the writer as its own would.
#[derive(Debug)]
pub struct Syncer {
    file: File,
    path: PathBuf,
    fsync: FsyncPolicy,
    shared: Arc<SyncShared>,
}

impl Syncer {
    /// Returns once every record up to `seq` is durable, syncing if no
    /// other call already made it so. Under [`FsyncPolicy::Never`] it does
    /// nothing.
    pub fn sync_through(&self, seq: u64) -> Result<(), AuditError> {
        if self.fsync == FsyncPolicy::Never {
            return Ok(());
        }
        let want = seq.saturating_add(1);
        if self.shared.durable.load(Ordering::Acquire) >= want {
            return Ok(());
        }
        let shared = &*self.shared;
        let mut leading = shared
            .syncing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if shared.durable.load(Ordering::Acquire) >= want {
                return Ok(());
            }
            let failed = shared.failed.load(Ordering::Acquire);
            if failed != 0 {
                return Err(AuditError::Poisoned {
                    path: self.path.clone(),
                    seq: failed - 1,
                });
            }
            if !*leading {
                break;
            }
            leading = shared
                .synced
                .wait(leading)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // This call leads: everything written before this load is covered.
        *leading = true;
        drop(leading);
        let target = shared.written.load(Ordering::Acquire);
        let result = self.file.sync_data();
        let mut leading = shared
            .syncing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *leading = false;
        let outcome = match result {
            Ok(()) => {
                shared.durable.fetch_max(target, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                shared.failed.store(target.max(1), Ordering::Release);
                Err(AuditError::Sync {
                    path: self.path.clone(),
                    seq: target.saturating_sub(1),
                    error,
                })
            }
        };
        drop(leading);
        shared.synced.notify_all();
        outcome
    }

    /// The highest seq known durable, as [`AuditLog::durable_seq`].
    pub fn durable_seq(&self) -> Option<u64> {
        self.shared.durable.load(Ordering::Acquire).checked_sub(1)
    }
}

/// The writer's checkpoint state.
#[derive(Debug)]
struct Checkpointing {
    cp: Checkpointer,
    heads: File,
    /// Records written since the last checkpoint.
    since: u64,
    last_at: Instant,
}

/// Who syncs a record that [`FsyncPolicy::Always`] wants durable before the
/// append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncBy {
    /// The writer, before `append` returns.
    Writer,
    /// The caller, through a [`Syncer`], once it has released the writer.
    Caller,
}

/// The line buffer is kept between appends; after an unusually large record
/// it shrinks back to this size.
const KEEP_BUFFER: usize = 64 * 1024;

impl<F: LogFile> fmt::Debug for AuditLog<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("session", &self.session)
            .field("fsync", &self.fsync)
            .field("clock", &self.clock)
            .field("next_seq", &self.next_seq)
            .field("head", &self.head)
            .field("durable", &self.durable)
            .field("sealed", &self.sealed)
            .field("failed_at", &self.failed_at)
            .field("checkpoints", &self.checkpoints)
            .field("tap", &self.tap)
            .finish_non_exhaustive()
    }
}

fn lock(file: &File, path: &Path) -> Result<(), AuditError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(AuditError::Lock {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn sync_parent_dir(path: &Path) -> Result<(), AuditError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| AuditError::SyncDir {
            dir: dir.to_path_buf(),
            error,
        })
}

impl AuditLog<File> {
    /// Creates a new log at `path` for session `session_id`.
    ///
    /// The file must not exist (`O_CREAT|O_EXCL`, which also refuses a
    /// symlink); it is created with mode 0600, opened `O_APPEND` and locked.
    /// Unless `fsync` is [`FsyncPolicy::Never`], its directory is synced so the
    /// new name is durable. The first record must be `session-start`. If a
    /// step after the creation fails, the empty file stays behind.
    pub fn create(
        path: impl AsRef<Path>,
        session_id: &str,
        fsync: FsyncPolicy,
    ) -> Result<Self, AuditError> {
        let path = path.as_ref();
        if session_id.is_empty() {
            return Err(AuditError::EmptySession {
                path: path.to_path_buf(),
            });
        }
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| AuditError::Create {
                path: path.to_path_buf(),
                error,
            })?;
        lock(&file, path)?;
        // Reserve the first PREALLOCATE bytes on disk without changing the
        // file's size (readers see only what was written): a disk that
        // fills up while the session runs leaves the log room to record
        // the refusals it causes. Best effort: a file system without
        // fallocate gets a log that grows as it is written.
        let _ = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, PREALLOCATE);
        if fsync != FsyncPolicy::Never {
            sync_parent_dir(path)?;
        }
        AuditLog::with_file(file, path, session_id, fsync)
    }

    /// Opens an existing log to continue its chain.
    ///
    /// The file is opened `O_APPEND`, locked, and verified through the same
    /// handle before anything is written: a damaged log
    /// ([`AuditError::Damaged`], including a torn last record left by a crash
    /// mid-write, reported with its seq) or a sealed one
    /// ([`AuditError::Sealed`]) is refused. Unless `fsync` is
    /// [`FsyncPolicy::Never`], the existing records are synced, so
    /// [`AuditLog::durable_seq`] starts at the last of them.
    pub fn open_append(path: impl AsRef<Path>, fsync: FsyncPolicy) -> Result<Self, AuditError> {
        let path = path.as_ref();
        let open_error = |error| AuditError::Open {
            path: path.to_path_buf(),
            error,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        if !file.metadata().map_err(open_error)?.is_file() {
            return Err(AuditError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        lock(&file, path)?;
        let mut reader = LogReader::new(path, BufReader::new(&file));
        while reader
            .next_event()
            .map_err(|e| AuditError::Damaged(Box::new(e)))?
            .is_some()
        {}
        let state = reader.into_state();
        let last = state.next_seq.saturating_sub(1);
        if state.sealed {
            return Err(AuditError::Sealed {
                path: path.to_path_buf(),
                seq: last,
            });
        }
        let session = state.session.unwrap_or_default();
        let mut log = AuditLog::with_file(file, path, &session, fsync)?;
        log.next_seq = state.next_seq;
        log.head = state.head;
        if fsync != FsyncPolicy::Never {
            log.sync_through(last)?;
        }
        Ok(log)
    }
}

impl AuditLog<File> {
    /// A second handle on the log file that makes records durable without
    /// the writer (see [`Syncer`]).
    pub fn syncer(&self) -> Result<Syncer, AuditError> {
        let file = self.file.try_clone().map_err(|error| AuditError::Open {
            path: self.path.clone(),
            error,
        })?;
        Ok(Syncer {
            file,
            path: self.path.clone(),
            fsync: self.fsync,
            shared: Arc::clone(&self.shared),
        })
    }
}

impl<F: LogFile> AuditLog<F> {
    /// Starts a new chain (seq 0) in `file`, which must be empty; `path` names
    /// the log in errors. The clock is the system clock.
    ///
    /// [`AuditLog::create`] uses this with a real file; tests use it with a
    /// recording [`LogFile`].
    pub fn with_file(
        file: F,
        path: impl Into<PathBuf>,
        session_id: &str,
        fsync: FsyncPolicy,
    ) -> Result<Self, AuditError> {
        let path = path.into();
        if session_id.is_empty() {
            return Err(AuditError::EmptySession { path });
        }
        let session_json = serde_json::to_vec(session_id).map_err(|e| AuditError::Encode {
            path: path.clone(),
            seq: 0,
            error: io::Error::other(e),
        })?;
        Ok(AuditLog {
            file,
            path,
            session: session_id.to_owned(),
            session_json,
            fsync,
            clock: Box::new(SystemClock),
            next_seq: 0,
            head: ChainHash::ZERO,
            durable: None,
            sealed: false,
            closed: false,
            failed_at: None,
            buf: Vec::with_capacity(1024),
            checkpoints: None,
            tap: None,
            shared: Arc::default(),
        })
    }

    /// Turns on signed checkpoints (the supervisor opts in when it creates
    /// the log): after every `cp.every` records or interval, and after
    /// `session-end`, the writer appends a `checkpoint` record signing the
    /// record before it, makes the log durable through it (unless
    /// [`FsyncPolicy::Never`]), and appends its head to the heads file, synced
    /// as well. Opens (creating with mode 0600) the heads file.
    pub fn with_checkpoints(mut self, cp: Checkpointer) -> Result<Self, AuditError> {
        let heads = checkpoint::open_heads(&cp.heads_path).map_err(|error| AuditError::Heads {
            path: cp.heads_path.clone(),
            error,
        })?;
        self.checkpoints = Some(Checkpointing {
            cp,
            heads,
            since: 0,
            last_at: Instant::now(),
        });
        Ok(self)
    }

    /// Hands a copy of every record written from now on to `tap` (the
    /// sinks), and records the alerts it returns.
    #[must_use]
    pub fn with_tap(mut self, tap: impl LineTap + 'static) -> Self {
        self.tap = Some(Box::new(tap));
        self
    }

    /// Writes a checkpoint now if checkpoints are on and records were
    /// written since the last one (for a supervisor's timer: a checkpoint
    /// otherwise waits for the next append). Returns it, or `None` when
    /// there was nothing to sign.
    pub fn checkpoint(&mut self) -> Result<Option<Appended>, AuditError> {
        if let Some(seq) = self.failed_at {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                seq,
            });
        }
        let pending = self.checkpoints.as_ref().is_some_and(|c| c.since > 0);
        if !pending || self.closed || self.next_seq == 0 {
            return Ok(None);
        }
        self.write_checkpoint().map(Some)
    }

    /// Replaces the clock that stamps each record's `time`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Appends a record of `kind` with `data` (a JSON object), stamped with
    /// the clock's time.
    ///
    /// The record is written with one `write_all` before this returns; under
    /// [`FsyncPolicy::Always`] it is also synced. On any error nothing is
    /// known written and the caller must deny the action (I4).
    pub fn append(&mut self, kind: Kind, data: Value) -> Result<Appended, AuditError> {
        let time = self.clock.now();
        self.append_at(kind, data, time)
    }

    /// Appends a record as [`AuditLog::append`] does, stamped with `time`.
    ///
    /// With checkpoints on, a checkpoint may follow the record (then the log
    /// is durable through it); with a tap, the tap's pending alerts follow
    /// as `alert` records (before a `session-end`, since nothing may follow
    /// it). The returned seq is the record's own either way.
    pub fn append_at(
        &mut self,
        kind: Kind,
        data: Value,
        time: Timestamp,
    ) -> Result<Appended, AuditError> {
        // Not an object: refused when it is encoded (DataNotObject).
        self.append_data_at(kind, &data, time)
    }

    /// Appends a record of `kind` whose `data` is `data` serialized straight
    /// into the record, stamped with the clock's time: the same bytes as
    /// [`AuditLog::append`] with `serde_json::to_value(data)`, without
    /// building that value. `data` must serialize to a JSON object
    /// ([`AuditError::DataNotObject`] otherwise, found when it is encoded).
    pub fn append_data<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
    ) -> Result<Appended, AuditError> {
        let time = self.clock.now();
        self.append_data_at(kind, data, time)
    }

    /// [`AuditLog::append_data`], stamped with `time`; what follows the
    /// record is as for [`AuditLog::append_at`].
    pub fn append_data_at<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
        time: Timestamp,
    ) -> Result<Appended, AuditError> {
        self.append_with(kind, data, time, SyncBy::Writer)
    }

    /// [`AuditLog::append_data`], except that under [`FsyncPolicy::Always`]
    /// the record is only written: the caller makes it durable with
    /// [`Syncer::sync_through`] (through [`AuditLog::next_seq`] − 1, which
    /// covers the tap's alerts that may follow it) after releasing its lock
    /// on this writer, and before it releases the action, so that callers
    /// appending meanwhile share one `fdatasync` and none waits for the disk
    /// holding the lock. A `session-end` and checkpoints are synced here as
    /// usual. Under [`FsyncPolicy::Batch`] and [`FsyncPolicy::Never`] it is
    /// `append_data`.
    pub fn append_data_unsynced<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
    ) -> Result<Appended, AuditError> {
        let time = self.clock.now();
        self.append_with(kind, data, time, SyncBy::Caller)
    }

    fn append_with<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
        time: Timestamp,
        sync_by: SyncBy,
    ) -> Result<Appended, AuditError> {
        let seq = self.next_seq;
        self.check_usable()?;
        let rule = if kind == Kind::Checkpoint {
            Some("checkpoint records are written by the writer's checkpointer")
        } else {
            verify::placement_rule(seq, kind, false, false)
        };
        if let Some(rule) = rule {
            return Err(AuditError::KindOutOfPlace {
                path: self.path.clone(),
                seq,
                kind,
                rule,
            });
        }
        if kind == Kind::SessionEnd {
            // Nothing follows session-end: the tap's pending alerts go first.
            self.record_tap_alerts(sync_by)?;
        }
        let appended = self.append_checked(kind, data, time, sync_by)?;
        if !self.sealed {
            self.record_tap_alerts(sync_by)?;
        }
        Ok(appended)
    }

    /// Writes the alerts the tap has pending as `alert` records.
    fn record_tap_alerts(&mut self, sync_by: SyncBy) -> Result<(), AuditError> {
        let alerts = self
            .tap
            .as_ref()
            .map(|t| t.take_alerts())
            .unwrap_or_default();
        for alert in alerts.into_iter().filter(Value::is_object) {
            let time = self.clock.now();
            self.append_checked(Kind::Alert, &alert, time, sync_by)?;
        }
        Ok(())
    }

    /// Writes a record that passed the checks, syncs it as the policy says,
    /// and writes a checkpoint after it when one is due.
    fn append_checked<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
        time: Timestamp,
        sync_by: SyncBy,
    ) -> Result<Appended, AuditError> {
        let appended = self.write_record(kind, data, time)?;
        if let Some(c) = &mut self.checkpoints {
            c.since += 1;
        }
        let sync_now = match self.fsync {
            FsyncPolicy::Always => sync_by == SyncBy::Writer || kind == Kind::SessionEnd,
            FsyncPolicy::Batch => kind == Kind::SessionEnd,
            FsyncPolicy::Never => false,
        };
        let due = self.checkpoints.as_ref().is_some_and(|c| {
            kind == Kind::SessionEnd
                || c.since >= c.cp.every.records.max(1)
                || c.cp
                    .every
                    .interval
                    .is_some_and(|i| c.last_at.elapsed() >= i)
        });
        if !due {
            if sync_now {
                self.sync_through(appended.seq)?;
            }
            return Ok(appended);
        }
        // The checkpoint right behind the record is synced through, and
        // that one sync makes the record durable too (at a session's end
        // this saves an `fdatasync` on the way out). Should the checkpoint
        // fail, the record is still synced before the error is returned.
        if let Err(e) = self.write_checkpoint() {
            if sync_now && self.durable_seq().is_none_or(|d| d < appended.seq) {
                let _ = self.file.sync_data();
            }
            return Err(e);
        }
        Ok(appended)
    }

    /// Signs the head, appends the checkpoint record, makes the log durable
    /// through it, then appends the head to the heads file and syncs that.
    /// Any failure poisons the writer.
    fn write_checkpoint(&mut self) -> Result<Appended, AuditError> {
        let Some(mut cps) = self.checkpoints.take() else {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                seq: self.next_seq,
            });
        };
        let result = self.write_checkpoint_with(&mut cps);
        self.checkpoints = Some(cps);
        if let Err(AuditError::Heads { .. }) = &result {
            self.failed_at = Some(self.next_seq.saturating_sub(1));
        }
        result
    }

    fn write_checkpoint_with(&mut self, cps: &mut Checkpointing) -> Result<Appended, AuditError> {
        let head_seq = self.next_seq.saturating_sub(1);
        let head_hash = self.head;
        let sig = cps
            .cp
            .key
            .sign_checkpoint(&self.session, head_seq, &head_hash);
        let data = CheckpointData {
            head_seq,
            head_hash,
            key: cps.cp.key.public_key(),
            sig,
        };
        let time = self.clock.now();
        let appended = self.write_record(Kind::Checkpoint, &data.to_json(), time)?;
        if self.sealed {
            self.closed = true;
        }
        if self.fsync != FsyncPolicy::Never {
            self.sync_through(appended.seq)?;
        }
        let head = Head {
            session: self.session.clone(),
            seq: head_seq,
            hash: head_hash,
            checkpoint_seq: appended.seq,
            key: data.key.to_hex(),
            sig: hex::encode(sig),
        };
        let heads_error = |error| AuditError::Heads {
            path: cps.cp.heads_path.clone(),
            error,
        };
        checkpoint::write_head(&mut cps.heads, &head).map_err(heads_error)?;
        if self.fsync != FsyncPolicy::Never {
            cps.heads.sync_data().map_err(heads_error)?;
        }
        cps.since = 0;
        cps.last_at = Instant::now();
        Ok(appended)
    }

    /// Encodes and writes one record, updates the chain and hands the line
    /// to the tap. No sync.
    fn write_record<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        data: &T,
        time: Timestamp,
    ) -> Result<Appended, AuditError> {
        let seq = self.next_seq;
        let hash = line::encode(
            &mut self.buf,
            seq,
            time,
            &self.session_json,
            kind,
            data,
            &self.head,
        )
        .map_err(|e| match e {
            EncodeError::Serialize(error) => AuditError::Encode {
                path: self.path.clone(),
                seq,
                error,
            },
            EncodeError::NotObject(found) => AuditError::DataNotObject {
                path: self.path.clone(),
                seq,
                found,
            },
        })?;
        if self.buf.len() > MAX_RECORD_BYTES {
            let len = self.buf.len();
            self.buf.clear();
            self.buf.shrink_to(KEEP_BUFFER);
            return Err(AuditError::TooLong {
                path: self.path.clone(),
                seq,
                len,
                limit: MAX_RECORD_BYTES,
            });
        }
        let written = self.file.write_all(&self.buf);
        if let Err(error) = written {
            self.failed_at = Some(seq);
            return Err(AuditError::Write {
                path: self.path.clone(),
                seq,
                error,
            });
        }
        if let Some(tap) = &self.tap {
            tap.offer(&self.buf);
        }
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf.clear();
            self.buf.shrink_to(KEEP_BUFFER);
        }
        self.next_seq = seq + 1;
        self.shared.written.store(self.next_seq, Ordering::Release);
        self.head = hash;
        if kind == Kind::SessionEnd {
            self.sealed = true;
        }
        Ok(Appended { seq, hash })
    }

    /// Makes every record written so far durable (group commit under
    /// [`FsyncPolicy::Batch`]). Does nothing if they already are, or under
    /// [`FsyncPolicy::Never`].
    pub fn sync(&mut self) -> Result<(), AuditError> {
        if let Some(seq) = self.failed_at {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                seq,
            });
        }
        if self.fsync == FsyncPolicy::Never {
            return Ok(());
        }
        match self.next_seq.checked_sub(1) {
            Some(last) if self.durable_seq() != Some(last) => self.sync_through(last),
            _ => Ok(()),
        }
    }

    fn sync_through(&mut self, seq: u64) -> Result<(), AuditError> {
        match self.file.sync_data() {
            Ok(()) => {
                self.durable = Some(seq);
                self.shared
                    .durable
                    .fetch_max(seq.saturating_add(1), Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                self.failed_at = Some(seq);
                Err(AuditError::Sync {
                    path: self.path.clone(),
                    seq,
                    error,
                })
            }
        }
    }

    fn check_usable(&self) -> Result<(), AuditError> {
        let failed = self.shared.failed.load(Ordering::Acquire);
        if failed != 0 {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                seq: failed - 1,
            });
        }
        if let Some(seq) = self.failed_at {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                seq,
            });
        }
        if self.sealed {
            return Err(AuditError::Sealed {
                path: self.path.clone(),
                seq: self.next_seq.saturating_sub(1),
            });
        }
        Ok(())
    }

    /// The highest seq known durable (its `fdatasync` returned, here or
    /// through a [`Syncer`]), or `None` if no record is. Under
    /// [`FsyncPolicy::Never`] always `None`.
    pub fn durable_seq(&self) -> Option<u64> {
        let shared = self.shared.durable.load(Ordering::Acquire).checked_sub(1);
        self.durable.max(shared)
    }

    /// The seq the next record will get (the number of records so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last record ([`ChainHash::ZERO`] before the first).
    pub fn head_hash(&self) -> ChainHash {
        self.head
    }

    /// The session id every record carries.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fsync policy in force.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Whether a `session-end` record was written.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// The underlying file (a test's recording fake, for instance).
    pub fn file(&self) -> &F {
        &self.file
    }
}
