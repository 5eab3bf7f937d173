//! `blastwall-secrets` owns the user's secret store under
//! `$BLASTWALL_HOME/secrets/` and the credential sources a user's own config
//! may name (`store:NAME`, `env:VAR`, `file:PATH`, `command:PROG ARGS`).
//! It hands out real values only as [`Secret`], which zeroizes its bytes on
//! drop and prints as `[redacted]`.
//!
//! It must not: read the process environment (an `env:` value is passed in
//! by the caller), run a shell, echo a command's stderr, or put a secret's
//! value in an error message or a log.
//!
//! Main types: [`SecretStore`] (set, get, list, remove), [`SecretSource`]
//! (a parsed `source = "…"`), [`Secret`], [`SecretError`].
//!
//! # What protects the store
//!
//! File permissions and the user's uid, nothing else. The directory is
//! created mode 0700 and each secret is a file of mode 0600 holding the raw
//! value, so any process running as the same user (or as root) can read it.
//! There is no encryption: a key kept beside the data would not be
//! encryption, only obfuscation. What keeps the agent away from the store
//! is the sandbox: `BLASTWALL_HOME` is never visible inside the wall (I5).
//! Users who want the value encrypted at rest use a `command:` source
//! (`pass show railway`, `op read op://…`), so the store never holds it.
//!
//! Writes are atomic: the value goes to a temporary file in the same
//! directory (0600 from creation), which is synced and renamed over the
//! old file; the directory is then synced.
//!
//! # Test strategy
//!
//! `tests/suite/` uses temporary directories: modes of the directory and
//! the files, atomic replacement, name validation (path tricks included),
//! redaction of `Debug`/`Display`, and each source kind, with `command:`
//! sources run as real programs (`printf`, `sh -c` as the program itself,
//! a sleeper for the timeout).
#![forbid(unsafe_code)]

mod secret;
mod source;
mod store;

pub use secret::Secret;
pub use source::{CommandSource, DEFAULT_COMMAND_TIMEOUT, SecretSource};
pub use store::{Entry, SecretStore, validate_name};

use std::path::PathBuf;

/// Why a secret could not be stored, listed, read or produced. Messages name
/// the secret, the file or the program, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The name is not `[A-Za-z0-9_-]{1,64}`.
    #[error("bad secret name `{name}`: use 1 to 64 of A-Z a-z 0-9 _ -")]
    BadName {
        /// The name as given (names are not secret).
        name: String,
    },
    /// No such secret in the store.
    #[error("no secret `{name}` in {dir}")]
    NotFound {
        /// The name.
        name: String,
        /// The store directory.
        dir: PathBuf,
    },
    /// A file operation on the store failed.
    #[error("cannot {op} {path}: {error}")]
    Io {
        /// What was attempted (`create`, `write`, `read`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The store directory is not a directory owned by this user with mode 0700.
    #[error("refusing secret store {path}: {why}")]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A `source = "…"` does not start with `store:`, `env:`, `file:` or `command:`, or is empty after it.
    #[error("bad credential source `{text}`: {why}")]
    BadSource {
        /// The source text (a source names where a value is, never the value).
        text: String,
        /// What is wrong.
        why: String,
    },
    /// An `env:` source whose variable the caller did not provide.
    #[error("variable `{var}` is not set")]
    EnvMissing {
        /// The variable.
        var: String,
    },
    /// A `command:` source could not be started.
    #[error("cannot run `{program}`: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A `command:` source failed (its stderr is not shown: it may hold the value).
    #[error("`{program}` failed ({status}); its stderr is not shown")]
    CommandFailed {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
    },
    /// A `command:` source took longer than its timeout and was killed.
    #[error("`{program}` did not finish within {secs} s and was killed")]
    Timeout {
        /// The program.
        program: String,
        /// The timeout.
        secs: u64,
    },
    /// The secret is empty (after trimming, for `command:` sources).
    #[error("secret from {origin} is empty")]
    Empty {
        /// Where it came from.
        origin: String,
    },
    /// The secret is larger than [`MAX_SECRET_BYTES`].
    #[error("secret from {origin} is larger than {MAX_SECRET_BYTES} bytes")]
    TooLarge {
        /// Where it came from.
        origin: String,
    },
}

/// The largest secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
