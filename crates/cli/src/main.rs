//! The `blastwall` binary: argument parsing and output. Every decision and
//! every piece of state lives in the library crates; this crate parses,
//! calls them, and prints (human text, or `--json` for machines).
//!
//! Exit codes (stable, documented in `docs/cli.md`):
//! - 0: success (a valid manifest, passing tests, a log that verifies);
//! - 1: a negative answer (manifest errors, a failing test case, a log that
//!   does not verify, an untrusted manifest);
//! - 2: an error (bad usage, a file that cannot be read);
//! - `run` returns the child's status (128+N for a signal).
#![forbid(unsafe_code)]

mod args;
mod cmd;
mod out;

use std::process::ExitCode;

use clap::Parser;

/// The outcome of a command, mapped to the exit code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: a negative answer.
    No,
    /// A given exit code (`run` returns the command's status).
    Code(u8),
}

fn main() -> ExitCode {
    // No core dumps, not dumpable or ptraceable, no LD_* (I3, I5).
    blastwall_sandbox::harden_self();
    // The sandbox's init is this same binary behind a hidden entry point.
    if let Some(code) = blastwall_sandbox::init_if_requested() {
        return code;
    }
    // `run`: the sandbox's init is cloned now, while this process has one
    // thread and has read nothing, and comes up beside the preparation.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("run")) {
        blastwall_sandbox::clone_init_ahead();
    }
    let cli = args::Cli::parse();
    let env = blastwall_session::Env::from_process();
    match cmd::dispatch(cli, &env) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::No) => ExitCode::from(1),
        Ok(Status::Code(c)) => ExitCode::from(c),
        Err(e) => {
            if out::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("blastwall: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
