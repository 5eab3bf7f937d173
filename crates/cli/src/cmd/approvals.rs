//! `blastwall approvals`, `approve ID`, `deny ID`.

use blastwall_session::Env;
use clap::Args;

use crate::Status;

#[derive(Debug, Args)]
pub(crate) struct ApprovalsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// The approval id.
    pub(crate) id: String,
    /// A note kept with the decision.
    #[arg(long)]
    pub(crate) note: Option<String>,
    /// Do not ask before acting.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn list(_a: &ApprovalsArgs, _env: &Env) -> anyhow::Result<Status> {
    anyhow::bail!("approvals are not available in this build yet")
}

pub(crate) fn decide(_a: &DecideArgs, _env: &Env, _yes: bool) -> anyhow::Result<Status> {
    anyhow::bail!("approvals are not available in this build yet")
}
