//! One module per command.

pub(crate) mod approvals;
pub(crate) mod demo;
mod init;
mod log;
mod policy;
mod run;
mod secret;
pub(crate) mod serve;
mod sessions;
mod trust;
pub(crate) mod watch;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use blastwall_session::{
    Env, Home, LoadError, LoadedManifest, Purpose, find_manifest, load_manifest,
};

use crate::Status;
use crate::args::{Cli, Command, PolicyCommand};

pub(crate) fn dispatch(cli: Cli, env: &Env) -> anyhow::Result<Status> {
    match cli.command {
        Command::Init(a) => init::run(&a, env),
        Command::Trust(a) => trust::run(&a, env),
        Command::Policy(PolicyCommand::Check(a)) => policy::check(&a, env),
        Command::Policy(PolicyCommand::Explain(a)) => policy::explain(&a, env),
        Command::Policy(PolicyCommand::Test(a)) => policy::test(&a, env),
        Command::Policy(PolicyCommand::Schema) => policy::schema(),
        Command::Log(a) => log::run(&a, env),
        Command::Run(a) => run::run(&a, env),
        Command::Sessions(a) => sessions::sessions(&a, env),
        Command::Diff(a) => sessions::diff(&a, env),
        Command::Commit(a) => sessions::commit_cmd(&a, env),
        Command::Discard(a) => sessions::discard_cmd(&a, env),
        Command::Doctor(a) => sessions::doctor(&a),
        Command::Secret(c) => secret::run(&c, env),
        Command::Approvals(a) => approvals::list(&a, env),
        Command::Approve(a) => approvals::decide(&a, env, true),
        Command::Deny(a) => approvals::decide(&a, env, false),
        Command::Watch(a) => watch::run(&a, env),
        Command::Serve(a) => serve::run(&a, env),
        Command::Demo(a) => demo::run(&a, env),
    }
}

/// The manifest a command works on: the one given, else `./blastwall.toml`,
/// else the nearest one above (stopping at the git root or home).
pub(crate) fn manifest_path(given: Option<&Path>, env: &Env) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    match find_manifest(&cwd, &env.home_dir()) {
        Some(p) => Ok(p),
        None => bail!(
            "no blastwall.toml in {} or above it (up to the git root or your home); write one with `blastwall init` or name one",
            cwd.display()
        ),
    }
}

/// Loads a manifest; manifest errors are printed as FILE:LINE:COL lines and
/// come back as `Ok(None)` (a negative answer, exit 1).
pub(crate) fn load(
    path: &Path,
    env: &Env,
    purpose: Purpose,
    json: bool,
) -> anyhow::Result<Option<LoadedManifest>> {
    let home = Home::locate(env);
    match load_manifest(path, env, &home, purpose) {
        Ok(m) => {
            for w in &m.loaded.warnings {
                eprintln!("{w}");
            }
            Ok(Some(m))
        }
        Err(
            ref e @ (LoadError::Invalid {
                ref path,
                ref diagnostics,
            }
            | LoadError::UserConfig {
                ref path,
                ref diagnostics,
            }),
        ) => {
            if json {
                crate::out::json(&serde_json::json!({
                    "file": path.display().to_string(),
                    "valid": false,
                    "error": e.to_string(),
                    "diagnostics": diagnostics,
                }))?;
            } else {
                for d in diagnostics {
                    eprintln!("{d}");
                }
                eprintln!("blastwall: {e}");
            }
            Ok(None)
        }
        Err(e @ (LoadError::Untrusted { .. } | LoadError::Changed { .. })) => {
            if json {
                crate::out::json(&serde_json::json!({"trusted": false, "error": e.to_string()}))?;
            } else {
                eprintln!("blastwall: {e}");
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
