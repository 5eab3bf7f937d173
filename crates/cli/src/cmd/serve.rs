//! `blastwall serve`: the local web page for approvals and live events
//! (the server itself is `blastwall-server`; this parses and prints).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use blastwall_server::web::{ServeConfig, Server, shutdown_signal};
use blastwall_session::{Env, Home};
use clap::Args;
use serde_json::json;

use crate::Status;

/// The default port: fixed, so a bookmark of the page keeps working across
/// restarts once its cookie is set (the token changes at every start).
pub(crate) const DEFAULT_PORT: u16 = 4477;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub(crate) port: u16,
    /// The address to listen on. Anything but loopback needs --allow-remote.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub(crate) listen: IpAddr,
    /// Allow a non-loopback --listen address. The access token is still
    /// required, and over plain HTTP it crosses the network in clear.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// A further name (`host` or `host:port`) the page answers to in the
    /// Host header, for a non-loopback listener reached by name.
    #[arg(long = "host", value_name = "NAME")]
    pub(crate) hosts: Vec<String>,
    /// Print the URL as one JSON line (`url`, `base_url`, `port`).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Who the person deciding is: `uid 1000 (ana) via CHANNEL`.
pub(crate) fn decided_by(channel: &str) -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    blastwall_server::decided_by(uid.as_raw(), name.as_deref(), channel)
}

pub(crate) fn run(a: &ServeArgs, env: &Env) -> anyhow::Result<Status> {
    let cfg = ServeConfig {
        home: Home::locate(env),
        listen: SocketAddr::new(a.listen, a.port),
        allow_remote: a.allow_remote,
        hosts: a.hosts.clone(),
        by: decided_by("web"),
        poll: Duration::from_millis(300),
        record: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("blastwall-serve")
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async {
        let server = Server::bind(&cfg).await?;
        let url = server.url();
        let mut out = std::io::stdout().lock();
        if a.json {
            writeln!(
                out,
                "{}",
                json!({"url": url, "base_url": server.base_url(), "port": server.port()})
            )?;
        } else {
            writeln!(out, "{url}")?;
        }
        out.flush()?;
        drop(out);
        if !a.json {
            eprintln!(
                "blastwall: serving approvals and live events; open the URL above in your browser (its token is exchanged for a cookie on the first visit). Ctrl-C stops."
            );
        }
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Ok)
}
