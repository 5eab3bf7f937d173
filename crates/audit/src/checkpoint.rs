//! Signed checkpoints: what makes a cut at a record boundary and a rewrite
//! of the whole chain detectable.
//!
//! The hash chain alone shows a changed, removed or reordered record, but
//! whoever can write the file can cut it at a record boundary (a valid
//! shorter chain) or recompute every hash from any point on. A checkpoint
//! closes both gaps with two things the log file does not hold:
//!
//! - a **signature**: every checkpoint record carries an ed25519 signature,
//!   by a key kept outside the wall (`$BLASTWALL_HOME/keys/audit.ed25519`),
//!   over (session, head seq, head hash). A rewritten chain would need new
//!   signatures, and so the key;
//! - a **heads file** (`$BLASTWALL_HOME/audit-heads.jsonl`), where each
//!   checkpoint's head is also appended and synced, one line per
//!   checkpoint. A log cut before the last head recorded there is short of
//!   what was signed.
//!
//! The writer opts in with [`crate::AuditLog::with_checkpoints`]; the reader
//! checks with [`crate::verify_with`]. What a process with the user's uid
//! outside the wall can still do (delete the key, cut log and heads file
//! consistently) is in `docs/threat-model.md`: remote sinks are the answer
//! there.
//!
//! # Why `ring`
//!
//! The signatures use `ring` (0.17), which is already in the dependency tree
//! through rustls and the proxy, so checkpoints add no crate: its ed25519 is
//! the BoringSSL code, audited and maintained, and it has the system random
//! source the key is made from. `ed25519-dalek` would have done as well and
//! added five crates.
//!
//! # The key file
//!
//! The private key is the 32-byte ed25519 seed written as 64 lowercase hex
//! digits and a newline, mode 0600 in a 0700 directory; a key file that is a
//! symlink or that others can read is refused. The public key sits beside it
//! (`audit.ed25519.pub`, the 32-byte key as 64 hex digits), for
//! `blastwall log verify` and for anyone who copies it elsewhere.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::ChainHash;

/// The signing key's file name under `$BLASTWALL_HOME/keys/`.
pub const KEY_FILE: &str = "audit.ed25519";

/// The heads file's name under `$BLASTWALL_HOME`.
pub const HEADS_FILE: &str = "audit-heads.jsonl";

/// What every checkpoint signature starts with, so that a signature made for
/// a checkpoint can never pass for one made for anything else.
const DOMAIN: &[u8] = b"blastwall audit checkpoint v2\n";

/// The longest line read from a heads file or a key file.
const MAX_LINE: u64 = 64 * 1024;

/// A failure to create, read or use the checkpoint key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key (or its directory) could not be created.
    #[error("cannot create audit signing key {}: {error}", path.display())]
    Create {
        /// The file or directory.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The key file could not be read.
    #[error("cannot read audit key {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The key file does not hold a key.
    #[error("audit key {} is malformed: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
    /// The private key file is not a regular file of the user's, readable by
    /// no one else.
    #[error("audit signing key {} is {detail}: it must be a regular file with mode 0600", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. "readable by group or others (mode 0644)".
        detail: String,
    },
    /// The system's random source failed.
    #[error("cannot generate an audit signing key: the system random source failed")]
    Random,
}

/// An ed25519 public key that checks checkpoint signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        ChainHash::from_hex(text).map(|h| PublicKey(*h.as_bytes()))
    }

    /// The 64 lowercase hex digits, as written in checkpoints and key files.
    pub fn to_hex(&self) -> String {
        ChainHash::from_bytes(self.0).to_hex()
    }

    /// Reads a public key file (64 hex digits, a trailing newline allowed).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = read_small(path)?;
        PublicKey::from_hex(text.trim_end()).ok_or(KeyError::Malformed {
            path: path.to_path_buf(),
            detail: "expected 64 lowercase hex digits",
        })
    }

    /// Whether `sig` is this key's signature of the checkpoint
    /// (`session`, `head_seq`, `head_hash`).
    pub fn verify_checkpoint(
        &self,
        session: &str,
        head_seq: u64,
        head_hash: &ChainHash,
        sig: &[u8; 64],
    ) -> bool {
        let message = signed_message(session, head_seq, head_hash);
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&message, sig)
            .is_ok()
    }
}

/// The ed25519 key that signs checkpoints. Keep it outside the wall: under
/// `BLASTWALL_HOME`, which is never visible inside.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key whose 32-byte seed is `seed` (tests and reproducible examples;
    /// a real key comes from [`SigningKey::load_or_create`]).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::Random)?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            public: PublicKey(public),
        })
    }

    /// A new key from the system's random source, kept in memory only.
    pub fn generate() -> Result<Self, KeyError> {
        let seed = random_seed()?;
        SigningKey::from_seed(&seed)
    }

    /// Reads the private key at `path` (see the module docs for its format
    /// and the checks made on it).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let read_error = |error| KeyError::Read {
            path: path.to_path_buf(),
            error,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        if !meta.is_file() {
            return Err(KeyError::Unsafe {
                path: path.to_path_buf(),
                detail: "not a regular file".to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Unsafe {
                path: path.to_path_buf(),
                detail: format!("readable by group or others (mode {mode:04o})"),
            });
        }
        let mut text = String::new();
        file.take(MAX_LINE)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        let seed = ChainHash::from_hex(text.trim_end()).ok_or(KeyError::Malformed {
            path: path.to_path_buf(),
            detail: "expected a 32-byte seed as 64 lowercase hex digits",
        })?;
        SigningKey::from_seed(seed.as_bytes())
    }

    /// Loads the key at `path`, creating it first if there is none: its
    /// directory with mode 0700, the key with mode 0600, and the public key
    /// beside it ([`public_key_path`]). The key appears under its name only
    /// once fully written and synced (a hard link from a temporary file), so
    /// two supervisors starting together end up with the same key.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let key = match SigningKey::load(path) {
            Ok(key) => key,
            Err(KeyError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                create_key(path)?
            }
            Err(e) => return Err(e),
        };
        let public_path = public_key_path(path);
        let current = PublicKey::load(&public_path).ok();
        if current != Some(key.public) {
            write_atomically(&public_path, format!("{}\n", key.public.to_hex()), 0o644).map_err(
                |error| KeyError::Create {
                    path: public_path.clone(),
                    error,
                },
            )?;
        }
        Ok(key)
    }

    /// The public half, which checks this key's signatures.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Signs the checkpoint (`session`, `head_seq`, `head_hash`).
    pub fn sign_checkpoint(&self, session: &str, head_seq: u64, head_hash: &ChainHash) -> [u8; 64] {
        let message = signed_message(session, head_seq, head_hash);
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(&message).as_ref());
        out
    }
}

fn random_seed() -> Result<[u8; 32], KeyError> {
    let mut seed = [0u8; 32];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| KeyError::Random)?;
    Ok(seed)
}

fn create_key(path: &Path) -> Result<SigningKey, KeyError> {
    let create_error = |p: &Path| {
        let p = p.to_path_buf();
        move |error| KeyError::Create { path: p, error }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create_error(dir))?;
    }
    let seed = random_seed()?;
    let text = format!("{}\n", ChainHash::from_bytes(seed).to_hex());
    let tmp = temp_name(path);
    write_new(&tmp, text.as_bytes(), 0o600).map_err(create_error(&tmp))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path).map_err(create_error(path))?;
            SigningKey::from_seed(&seed)
        }
        // Another supervisor made it first: use theirs.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => SigningKey::load(path),
        Err(error) => Err(KeyError::Create {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{}", std::process::id(), nanos_now()));
    path.with_file_name(name)
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_atomically(path: &Path, text: String, mode: u32) -> io::Result<()> {
    let tmp = temp_name(path);
    write_new(&tmp, text.as_bytes(), mode)?;
    let renamed = fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn read_small(path: &Path) -> Result<String, KeyError> {
    let read_error = |error| KeyError::Read {
        path: path.to_path_buf(),
        error,
    };
    let mut text = String::new();
    File::open(path)
        .map_err(read_error)?
        .take(MAX_LINE)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    Ok(text)
}

/// The public key file that goes with the private key at `key_path`: the
/// same name with `.pub` appended.
pub fn public_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// The bytes a checkpoint signature covers: a domain string, the session id
/// (its length as 8 bytes big-endian, then its UTF-8 bytes), the head seq (8
/// bytes big-endian) and the head hash (32 bytes).
pub fn signed_message(session: &str, head_seq: u64, head_hash: &ChainHash) -> Vec<u8> {
    let session = session.as_bytes();
    let mut out = Vec::with_capacity(DOMAIN.len() + 8 + session.len() + 8 + 32);
    out.extend_from_slice(DOMAIN);
    // usize → u64 never truncates on Linux targets.
    out.extend_from_slice(
        &u64::try_from(session.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(session);
    out.extend_from_slice(&head_seq.to_be_bytes());
    out.extend_from_slice(head_hash.as_bytes());
    out
}

/// When the writer writes a checkpoint.
///
/// After `records` records since the last checkpoint, or once `interval` has
/// passed since it (checked when a record is appended: a quiet log gets its
/// checkpoint with its next record, or when the supervisor calls
/// [`crate::AuditLog::checkpoint`] on a timer), and always after
/// `session-end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEvery {
    /// Records between two checkpoints (at least 1).
    pub records: u64,
    /// Time between two checkpoints, if any.
    pub interval: Option<Duration>,
}

impl CheckpointEvery {
    /// 1000 records or 10 seconds: at most one extra `fdatasync` of the log
    /// and one of the heads file per thousand records.
    pub const DEFAULT: CheckpointEvery = CheckpointEvery {
        records: 1000,
        interval: Some(Duration::from_secs(10)),
    };
}

impl Default for CheckpointEvery {
    fn default() -> Self {
        CheckpointEvery::DEFAULT
    }
}

/// What the writer needs to write checkpoints: the key, where the heads go,
/// and how often.
#[derive(Debug)]
pub struct Checkpointer {
    /// The signing key (usually [`SigningKey::load_or_create`] of
    /// `$BLASTWALL_HOME/keys/audit.ed25519`).
    pub key: SigningKey,
    /// The heads file (usually `$BLASTWALL_HOME/audit-heads.jsonl`), shared
    /// by every session; created with mode 0600 if missing.
    pub heads_path: PathBuf,
    /// How often.
    pub every: CheckpointEvery,
}

impl Checkpointer {
    /// The usual set-up under `blastwall_home`: the key at
    /// `keys/audit.ed25519` (created on first use), the heads file
    /// `audit-heads.jsonl`, [`CheckpointEvery::DEFAULT`].
    pub fn in_home(blastwall_home: &Path) -> Result<Self, KeyError> {
        Ok(Checkpointer {
            key: SigningKey::load_or_create(key_path(blastwall_home))?,
            heads_path: blastwall_home.join(HEADS_FILE),
            every: CheckpointEvery::DEFAULT,
        })
    }
}

/// `$BLASTWALL_HOME/keys/audit.ed25519`.
pub fn key_path(blastwall_home: &Path) -> PathBuf {
    blastwall_home.join("keys").join(KEY_FILE)
}

/// One line of the heads file: a checkpoint's head, kept apart from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The session id.
    pub session: String,
    /// The seq of the record the checkpoint signs (the head).
    pub seq: u64,
    /// That record's hash.
    pub hash: ChainHash,
    /// The seq of the checkpoint record itself (`seq + 1`).
    pub checkpoint_seq: u64,
    /// The signer's public key, 64 hex digits.
    pub key: String,
    /// The signature, 128 hex digits.
    pub sig: String,
}

/// A heads file that could not be read, or holds a line that is not a head.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    /// Reading failed.
    #[error("cannot read heads file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// A complete line that is not a head.
    #[error("heads file {}, line {line}: not a checkpoint head: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: u64,
        /// What is wrong.
        detail: String,
    },
}

/// The heads of `session` in the heads file at `path`, in file order.
///
/// A missing file holds no heads. A last line with no newline is a write
/// cut short by a crash and is skipped; any other line that is not a head is
/// an error (someone edited the file).
pub fn read_heads(path: &Path, session: &str) -> Result<Vec<Head>, HeadsError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(HeadsError::Io {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    let mut input = BufReader::new(file);
    let mut heads = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let read = (&mut input)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|error| HeadsError::Io {
                path: path.to_path_buf(),
                error,
            })?;
        if read == 0 {
            break;
        }
        line += 1;
        let Some(text) = buf.strip_suffix(b"\n") else {
            if read < usize::try_from(MAX_LINE).unwrap_or(usize::MAX) {
                break; // a torn last line
            }
            return Err(HeadsError::Malformed {
                path: path.to_path_buf(),
                line,
                detail: "line too long".to_owned(),
            });
        };
        let head: Head = serde_json::from_slice(text).map_err(|e| HeadsError::Malformed {
            path: path.to_path_buf(),
            line,
            detail: e.to_string(),
        })?;
        if head.session == session {
            heads.push(head);
        }
    }
    Ok(heads)
}

/// Appends `head` to the open heads file as one line, with one write.
pub(crate) fn write_head(file: &mut File, head: &Head) -> io::Result<()> {
    let mut line = serde_json::to_vec(head).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)
}

/// Opens (creating with mode 0600) the heads file for appending.
pub(crate) fn open_heads(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// A checkpoint record's `data`, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointData {
    pub(crate) head_seq: u64,
    pub(crate) head_hash: ChainHash,
    pub(crate) key: PublicKey,
    pub(crate) sig: [u8; 64],
}

impl CheckpointData {
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.to_hex(),
            "key": self.key.to_hex(),
            "sig": hex::encode(self.sig),
        })
    }

    /// Parses a checkpoint's `data`; the reason for a refusal otherwise.
    pub(crate) fn from_json(data: &Value) -> Result<Self, &'static str> {
        let head_seq = data
            .get("head_seq")
            .and_then(Value::as_u64)
            .ok_or("\"head_seq\" is not a number")?;
        let head_hash = data
            .get("head_hash")
            .and_then(Value::as_str)
            .and_then(ChainHash::from_hex)
            .ok_or("\"head_hash\" is not 64 lowercase hex digits")?;
        let key = data
            .get("key")
            .and_then(Value::as_str)
            .and_then(PublicKey::from_hex)
            .ok_or("\"key\" is not 64 lowercase hex digits")?;
        let sig = data
            .get("sig")
            .and_then(Value::as_str)
            .and_then(parse_sig)
            .ok_or("\"sig\" is not 128 lowercase hex digits")?;
        Ok(CheckpointData {
            head_seq,
            head_hash,
            key,
            sig,
        })
    }
}

/// Parses 128 lowercase hex digits into a signature.
pub(crate) fn parse_sig(text: &str) -> Option<[u8; 64]> {
    if text.len() != 128 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}
