//! `blastwall watch`: a terminal view of live events and pending approvals.

use blastwall_session::Env;
use clap::Args;

use crate::Status;

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {}

pub(crate) fn run(_a: &WatchArgs, _env: &Env) -> anyhow::Result<Status> {
    anyhow::bail!("`blastwall watch` is not available in this build yet")
}
