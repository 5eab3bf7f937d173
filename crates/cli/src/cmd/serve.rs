//! `blastwall serve`: the local web page for approvals and live events.

use blastwall_session::Env;
use clap::Args;

use crate::Status;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {}

pub(crate) fn run(_a: &ServeArgs, _env: &Env) -> anyhow::Result<Status> {
    anyhow::bail!("`blastwall serve` is not available in this build yet")
}
