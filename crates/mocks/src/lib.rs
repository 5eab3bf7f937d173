//! `blastwall-mocks`: the services of blastwall's incident replays
//! (`shared/scenarios/`), with real state, for `blastwall demo` and its
//! tests. Nothing else in blastwall depends on this crate: `run` never
//! reaches it.
//!
//! - [`TestCa`]: a throw-away certificate authority (rcgen) and server
//!   certificates for the mocked hosts, so the mocks speak real TLS;
//! - [`http`]: a small HTTP/1.1 server (plain or TLS) on a listener the
//!   caller gives it: a host loopback port, or a socket the sandbox bound
//!   inside a network namespace;
//! - [`railway::MockRailway`]: Railway's public GraphQL API as the PocketOS
//!   incident met it: bearer auth, `me`, `volumes`, `customDomainCreate`,
//!   `customDomainDelete`, and `volumeDelete`, which really deletes the
//!   directory holding the volume's data file and its backups; every
//!   request goes to its own JSONL log;
//! - [`attacker::Attacker`]: a recorder of everything sent to an
//!   attacker's host: HTTP, HTTPS, raw TCP, DNS over UDP;
//! - [`git::GitServer`]: a git remote over smart HTTP(S), served by git's
//!   own `git http-backend` (CGI).
//!
//! What it must not do: listen anywhere but the listener it is given (the
//! callers bind loopback or a socket inside a namespace of their own), or
//! run anything but `git http-backend`.
//!
//! # Test strategy
//!
//! `tests/all.rs` drives each mock over real sockets with `curl` and `git`
//! (skipped, saying why, when they are missing) and checks the state the
//! mock keeps on disk.
#![forbid(unsafe_code)]

pub mod attacker;
mod ca;
pub mod git;
pub mod http;
pub mod railway;

pub use ca::TestCa;

/// Why a mock could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed, naming its object.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate authority could not issue a certificate.
    #[error("test CA: {0}")]
    Ca(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MockError {
    let what = what.into();
    move |source| MockError::Io { what, source }
}

/// Seconds since the epoch, with fractions, for log records.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Appends one JSON line to a log file (created if needed).
pub(crate) fn append_jsonl(path: &std::path::Path, v: &serde_json::Value) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let mut line = v.to_string();
        line.push('\n');
        let _ = f.write_all(line.as_bytes());
    }
}

/// Reads a JSONL log; lines that do not parse are skipped.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
