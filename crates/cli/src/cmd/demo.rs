//! `blastwall demo`: incident replays without the wall and inside it.

use blastwall_session::Env;
use clap::Args;

use crate::Status;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {}

pub(crate) fn run(_a: &DemoArgs, _env: &Env) -> anyhow::Result<Status> {
    anyhow::bail!("`blastwall demo` is not available in this build yet")
}
