//! `proxy-bench`: blastwall's proxy side by side with direct requests and
//! peer proxies, in one run (DESIGN.md §8; see `bench/README.md`, "Proxy").
//!
//! `proxy-bench run` starts a loopback upstream (plain and TLS), blastwall's
//! proxy twice (audit fsync `side-effects`, i.e. [`FsyncPolicy::Batch`], and
//! `always`), srt's HTTP proxy (twice: plain, and with its TLS termination),
//! and a plain forwarding proxy (httpjail if given, else tinyproxy), each in
//! its own process; then drives every target in turn with the same load
//! generator (`load.rs`), round after round, and prints medians and ratios
//! against direct requests measured in the same round.
//!
//! The `upstream` and `blastwall` subcommands are the children `run` starts.
#![forbid(unsafe_code)]

mod children;
mod load;
mod upstream;
mod wrk;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use blastwall_audit::{AuditLog, FsyncPolicy};
use blastwall_gate::Gate;
use blastwall_policy::{Context, Origin, Source};
use blastwall_proxy::{Proxy, ProxyConfig};
use clap::{Parser, Subcommand, ValueEnum};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::children::Running;
use crate::load::{Method, Outcome, Plan, Route, Target};
use crate::upstream::HOST;

#[derive(Parser)]
#[command(about = "blastwall's proxy beside direct requests and peer proxies (DESIGN.md §8)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start everything, measure every target, print the tables.
    Run(RunArgs),
    /// (child) The loopback upstream.
    Upstream {
        /// Where to write the test CA.
        #[arg(long)]
        dir: PathBuf,
    },
    /// (child) blastwall's proxy for a manifest, with an audit log in `dir`.
    Blastwall {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        fsync: Fsync,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fsync {
    /// `[audit] fsync = "side-effects"`: group commit; a request with side
    /// effects is synced before it is released, a read is not.
    SideEffects,
    /// `[audit] fsync = "always"`: every record synced before it returns.
    Always,
}

impl Fsync {
    fn policy(self) -> FsyncPolicy {
        match self {
            Fsync::SideEffects => FsyncPolicy::Batch,
            Fsync::Always => FsyncPolicy::Always,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Fsync::SideEffects => "side-effects",
            Fsync::Always => "always",
        }
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Seconds measured per target.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up per target before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Rounds over every target (figures are medians over rounds).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections for the throughput cases.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// srt's package directory (`…/node_modules/@anthropic-ai/sandbox-runtime`); srt is left out without it.
    #[arg(long)]
    srt: Option<PathBuf>,
    /// httpjail binary, used as the plain forwarding peer instead of tinyproxy.
    #[arg(long)]
    httpjail: Option<PathBuf>,
    /// tinyproxy binary (the plain forwarding peer when httpjail is not given).
    #[arg(long)]
    tinyproxy: Option<PathBuf>,
    /// wrk binary: adds a cross-check of the GET section with wrk as the load generator.
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// Write every round's figures here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only these sections (get, get-wrk, post1, post, https); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Upstream { dir } => child_upstream(&dir),
        Cmd::Blastwall {
            manifest,
            dir,
            fsync,
        } => child_blastwall(&manifest, &dir, fsync),
    }
}

/// The upstream's runtime: two workers.
fn server_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn child_upstream(dir: &Path) -> Result<()> {
    let ca = dir.join("upstream-ca.pem");
    let tls = upstream::test_tls(&ca)?;
    let rt = server_runtime()?;
    let (plain, secure) = rt.block_on(async {
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ports = (plain.local_addr()?.port(), secure.local_addr()?.port());
        tokio::spawn(upstream::serve(plain, None));
        tokio::spawn(upstream::serve(secure, Some(tls)));
        Ok::<_, anyhow::Error>(ports)
    })?;
    children::say_ready(&json!({"plain": plain, "tls": secure, "ca": ca}))?;
    children::wait_for_stdin_eof();
    rt.shutdown_background();
    Ok(())
}

fn child_blastwall(manifest: &Path, dir: &Path, fsync: Fsync) -> Result<()> {
    let text = std::fs::read_to_string(manifest)?;
    let cx = Context {
        origin: Origin::Project,
        project_root: dir.to_path_buf(),
        home: dir.join("home"),
        user: None,
        enforce: false,
    };
    let loaded = blastwall_policy::load(&Source::new("blastwall.toml", text.as_str()), &cx)
        .map_err(|d| anyhow!("the bench manifest does not load: {d:?}"))?;
    if !loaded.warnings.is_empty() {
        bail!(
            "the bench manifest loads with warnings: {:?}",
            loaded.warnings
        );
    }
    let policy = Arc::new(loaded.policy);
    let audit = dir.join(format!("audit-{}.jsonl", fsync.word()));
    let log = AuditLog::create(&audit, "proxy-bench", fsync.policy())?;
    let gate = Arc::new(Gate::new(Arc::clone(&policy), log).with_group_commit()?);
    gate.start(json!({"bench": "proxy-bench"}))?;
    let proxy = Proxy::new(ProxyConfig::from_policy(
        policy,
        Arc::clone(&gate),
        Vec::new(),
    )?)?;
    let ca = dir.join(format!("session-ca-{}.pem", fsync.word()));
    std::fs::write(&ca, proxy.ca_pem())?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // As `blastwall run` gives its proxy: one thread drives the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("blastwall-proxy".into())
        .spawn(move || {
            let _ = rt.block_on(proxy.serve(listener));
        })?;
    children::say_ready(&json!({"port": port, "ca": ca, "audit": audit}))?;
    children::wait_for_stdin_eof();
    gate.finish(json!({}))?;
    Ok(())
}

fn ready_field<'a>(r: &'a Running, key: &str) -> Result<&'a Value> {
    r.ready
        .get(key)
        .ok_or_else(|| anyhow!("{}: no `{key}` in `{}`", r.name, r.ready))
}

fn ready_port(r: &Running, key: &str) -> Result<u16> {
    ready_field(r, key)?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| anyhow!("{}: `{key}` is not a port", r.name))
}

fn ready_path(r: &Running, key: &str) -> Result<PathBuf> {
    ready_field(r, key)?
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("{}: `{key}` is not a path", r.name))
}

/// A client TLS configuration trusting exactly the certificates in `pem`.
fn client_tls(pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pem)? {
        roots.add(c?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What drives a case.
#[derive(Clone)]
enum Driver {
    /// This binary's load generator.
    Ours(Target),
    /// wrk.
    Wrk(Target),
    /// `write` + `fdatasync` back to back, no HTTP (the floor of a durable decision).
    FsyncFloor,
}

/// One measured case.
struct Case {
    section: &'static str,
    label: String,
    /// The direct case of the same section (ratios are against it).
    direct: bool,
    driver: Driver,
    plan: Plan,
    /// The proxy's process, for CPU accounting.
    proxy_pid: Option<u32>,
}

/// What the peers set up: (label, target) per section, and notes for the README.
struct Peers {
    get: Vec<(String, Target, u32)>,
    https: Vec<(String, Target, u32)>,
    notes: Vec<String>,
    _running: Vec<Running>,
}

fn run(a: &RunArgs) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("proxy-bench-").tempdir()?;
    let dir = tmp.path();
    let me = std::env::current_exe()?;
    let dur = Duration::from_secs_f64(a.duration);
    let warm = Duration::from_secs_f64(a.warmup);

    // The upstream.
    let mut cmd = Command::new(&me);
    cmd.arg("upstream").arg("--dir").arg(dir);
    let up = children::start("upstream", cmd, None)?;
    let plain = ready_port(&up, "plain")?;
    let tls = ready_port(&up, "tls")?;
    let up_ca = ready_path(&up, "ca")?;

    // blastwall, twice.
    let manifest = dir.join("blastwall.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n\n[network]\ndefault = \"deny\"\nupstream_ca = [\"{ca}\"]\n\n[network.resolve]\n\"{HOST}:{plain}\" = \"127.0.0.1:{plain}\"\n\"{HOST}:{tls}\" = \"127.0.0.1:{tls}\"\n\n[[network.rule]]\nhost = \"{HOST}\"\nports = [{plain}, {tls}]\nmethods = [\"GET\", \"POST\"]\nverdict = \"allow\"\nreason = \"the bench's loopback upstream\"\n",
            ca = up_ca.display()
        ),
    )?;
    let blastwall = |fsync: Fsync| -> Result<Running> {
        let mut cmd = Command::new(&me);
        cmd.arg("blastwall")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--dir")
            .arg(dir)
            .arg("--fsync")
            .arg(fsync.word());
        children::start(&format!("blastwall ({})", fsync.word()), cmd, None)
    };
    let bw_batch = blastwall(Fsync::SideEffects)?;
    let bw_always = blastwall(Fsync::Always)?;

    let up_tls = client_tls(&up_ca)?;
    let name = ServerName::try_from(HOST)?.to_owned();
    let auth_plain = format!("{HOST}:{plain}");
    let auth_tls = format!("{HOST}:{tls}");
    let direct_plain = Target {
        addr: loopback(plain),
        route: Route::Direct,
        authority: auth_plain.clone(),
        tls: None,
    };
    let direct_tls = Target {
        addr: loopback(tls),
        route: Route::Direct,
        authority: auth_tls.clone(),
        tls: Some((Arc::clone(&up_tls), name.clone())),
    };
    let via_plain = |port: u16| Target {
        addr: loopback(port),
        route: Route::Absolute,
        authority: auth_plain.clone(),
        tls: None,
    };
    let bw_plain_batch = via_plain(ready_port(&bw_batch, "port")?);
    let bw_plain_always = via_plain(ready_port(&bw_always, "port")?);
    let bw_tls = Target {
        addr: loopback(ready_port(&bw_batch, "port")?),
        route: Route::Connect,
        authority: auth_tls.clone(),
        tls: Some((client_tls(&ready_path(&bw_batch, "ca")?)?, name.clone())),
    };

    let peers = start_peers(a, dir, plain, tls, &up_ca, &auth_plain, &auth_tls, &name)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // Every target answers before anything is timed.
    let mut get_peers = Vec::new();
    let mut https_peers = Vec::new();
    let mut notes = peers.notes.clone();
    rt.block_on(async {
        for (what, t, m) in [
            ("direct", &direct_plain, Method::Get),
            ("direct TLS", &direct_tls, Method::Get),
            ("blastwall", &bw_plain_batch, Method::Get),
            ("blastwall", &bw_plain_batch, Method::Post),
            ("blastwall (always)", &bw_plain_always, Method::Post),
            ("blastwall HTTPS", &bw_tls, Method::Get),
        ] {
            load::probe(t, m)
                .await
                .with_context(|| format!("{what} {m:?} does not answer"))?;
        }
        for (label, t, pid) in &peers.get {
            match load::probe(t, Method::Get).await {
                Ok(()) => get_peers.push((label.clone(), t.clone(), *pid)),
                Err(e) => notes.push(format!("{label}: left out, a probe failed: {e:#}")),
            }
        }
        for (label, t, pid) in &peers.https {
            match load::probe(t, Method::Get).await {
                Ok(()) => https_peers.push((label.clone(), t.clone(), *pid)),
                Err(e) => notes.push(format!("{label} (HTTPS): left out, a probe failed: {e:#}")),
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;

    let plan = |method, conns| Plan {
        method,
        conns,
        warmup: warm,
        duration: dur,
    };
    let bw_batch_label = "blastwall (audit fsync side-effects)".to_owned();
    let bw_always_label = "blastwall (audit fsync always)".to_owned();
    let want = |s: &str| a.only.is_empty() || a.only.iter().any(|o| o == s);
    let mut cases = Vec::new();
    let mut section = |key: &'static str,
                       title: &'static str,
                       m: Method,
                       conns: usize,
                       direct: &Target,
                       ours: Vec<(String, Target, u32)>,
                       others: &[(String, Target, u32)]| {
        if !want(key) {
            return;
        }
        let drive = |t: Target| {
            if key == "get-wrk" {
                Driver::Wrk(t)
            } else {
                Driver::Ours(t)
            }
        };
        cases.push(Case {
            section: title,
            label: "direct".into(),
            direct: true,
            driver: drive(direct.clone()),
            plan: plan(m, conns),
            proxy_pid: None,
        });
        if key == "post1" {
            cases.push(Case {
                section: title,
                label: "no HTTP: write + fdatasync of a 700-byte record beside the audit logs (the floor of a durable decision)".into(),
                direct: false,
                driver: Driver::FsyncFloor,
                plan: plan(m, conns),
                proxy_pid: None,
            });
        }
        for (label, target, pid) in ours.into_iter().chain(others.iter().cloned()) {
            cases.push(Case {
                section: title,
                label,
                direct: false,
                driver: drive(target),
                plan: plan(m, conns),
                proxy_pid: Some(pid),
            });
        }
    };
    section(
        "get",
        "GET, keep-alive, 1 KiB",
        Method::Get,
        a.conns,
        &direct_plain,
        vec![(
            bw_batch_label.clone(),
            bw_plain_batch.clone(),
            bw_batch.pid(),
        )],
        &get_peers,
    );
    if a.wrk.is_some() {
        section(
            "get-wrk",
            "GET, keep-alive, 1 KiB, wrk -t2 as the load generator",
            Method::Get,
            a.conns,
            &direct_plain,
            vec![(
                bw_batch_label.clone(),
                bw_plain_batch.clone(),
                bw_batch.pid(),
            )],
            &get_peers,
        );
    }
    section(
        "post1",
        "POST 1 KiB, one connection",
        Method::Post,
        1,
        &direct_plain,
        vec![
            (
                bw_batch_label.clone(),
                bw_plain_batch.clone(),
                bw_batch.pid(),
            ),
            (
                bw_always_label.clone(),
                bw_plain_always.clone(),
                bw_always.pid(),
            ),
        ],
        &get_peers,
    );
    section(
        "post",
        "POST 1 KiB, keep-alive",
        Method::Post,
        a.conns,
        &direct_plain,
        vec![
            (
                bw_batch_label.clone(),
                bw_plain_batch.clone(),
                bw_batch.pid(),
            ),
            (
                bw_always_label.clone(),
                bw_plain_always.clone(),
                bw_always.pid(),
            ),
        ],
        &get_peers,
    );
    section(
        "https",
        "HTTPS GET, keep-alive, 1 KiB",
        Method::Get,
        a.conns,
        &direct_tls,
        vec![(
            "blastwall, intercepting (audit fsync side-effects)".into(),
            bw_tls.clone(),
            bw_batch.pid(),
        )],
        &https_peers,
    );

    // Measure, round after round.
    let mut results: Vec<Vec<Outcome>> = vec![Vec::new(); cases.len()];
    for round in 0..a.rounds {
        for (i, c) in cases.iter().enumerate() {
            // CPU accounting: this process (the load generator), the upstream, the proxy.
            let mut pids = vec![std::process::id(), up.pid()];
            pids.extend(c.proxy_pid);
            let o = match (&c.driver, &a.wrk) {
                (Driver::Ours(t), _) => rt.block_on(load::measure(t, c.plan, &pids)),
                (Driver::Wrk(t), Some(w)) => wrk::measure(w, dir, t, c.plan, &pids),
                (Driver::Wrk(_), None) => Outcome::default(),
                (Driver::FsyncFloor, _) => load::fsync_floor(dir, c.plan),
            };
            eprintln!(
                "round {}/{} | {} | {} | c={} | {:.0} req/s p50 {:.0} µs p99 {:.0} µs | CPU µs/req client, upstream, proxy {:.1?} | errors {} connects {}{}",
                round + 1,
                a.rounds,
                c.section,
                c.label,
                c.plan.conns,
                o.rps,
                o.p50_us,
                o.p99_us,
                o.cpu_us,
                o.errors,
                o.connects,
                o.first_error
                    .as_deref()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            );
            results[i].push(o);
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));

    let table = report(&cases, &results);
    println!("{table}");
    for n in &notes {
        println!("- {n}");
    }
    let check = blastwall_audit::verify(ready_path(&bw_batch, "audit")?);
    println!(
        "- blastwall's audit log (side-effects) while running: {}",
        match check {
            Ok(r) => format!("verifies ({r:?})"),
            Err(e) => format!("does not verify: {e}"),
        }
    );
    if let Some(path) = &a.json {
        let rows: Vec<Value> = cases
            .iter()
            .zip(&results)
            .map(|(c, rs)| {
                json!({
                    "section": c.section,
                    "target": c.label,
                    "conns": c.plan.conns,
                    "rounds": rs.iter().map(|o| json!({
                        "rps": o.rps, "p50_us": o.p50_us, "p99_us": o.p99_us,
                        "errors": o.errors, "connects": o.connects,
                        "cpu_us_per_req": {"client": o.cpu_us.first(), "upstream": o.cpu_us.get(1), "proxy": o.cpu_us.get(2)},
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({"cases": rows, "notes": notes}))?,
        )?;
    }
    drop(peers);
    drop((bw_batch, bw_always, up));
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the run's addresses"
)]
fn start_peers(
    a: &RunArgs,
    dir: &Path,
    plain: u16,
    tls: u16,
    up_ca: &Path,
    auth_plain: &str,
    auth_tls: &str,
    name: &ServerName<'static>,
) -> Result<Peers> {
    let mut p = Peers {
        get: Vec::new(),
        https: Vec::new(),
        notes: Vec::new(),
        _running: Vec::new(),
    };
    // srt: its HTTP proxy alone, plain and TLS-terminating.
    if let Some(pkg) = &a.srt {
        let script = dir.join("srt-proxy.mjs");
        std::fs::write(&script, include_str!("srt-proxy.mjs"))?;
        let srt = |ca_out: Option<&Path>| -> Result<Running> {
            let mut cmd = Command::new("node");
            cmd.arg(&script).arg(pkg).arg(up_ca);
            if let Some(c) = ca_out {
                cmd.arg(c);
            }
            children::start(
                if ca_out.is_some() {
                    "srt (tlsTerminate)"
                } else {
                    "srt"
                },
                cmd,
                None,
            )
        };
        match srt(None) {
            Ok(r) => {
                p.get.push((
                    "srt's proxy".into(),
                    Target {
                        addr: loopback(ready_port(&r, "port")?),
                        route: Route::Absolute,
                        authority: auth_plain.to_owned(),
                        tls: None,
                    },
                    r.pid(),
                ));
                p._running.push(r);
            }
            Err(e) => p.notes.push(format!("srt: left out: {e:#}")),
        }
        match srt(Some(&dir.join("srt-ca.pem"))) {
            Ok(r) => {
                p.https.push((
                    "srt's proxy, tlsTerminate".into(),
                    Target {
                        addr: loopback(ready_port(&r, "port")?),
                        route: Route::Connect,
                        authority: auth_tls.to_owned(),
                        tls: Some((client_tls(&ready_path(&r, "ca")?)?, name.clone())),
                    },
                    r.pid(),
                ));
                p._running.push(r);
            }
            Err(e) => p.notes.push(format!("srt (tlsTerminate): left out: {e:#}")),
        }
    } else {
        p.notes
            .push("srt: left out (no --srt package directory given)".into());
    }
    // The plain forwarding peer.
    if let Some(bin) = &a.httpjail {
        let port = children::free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(["--server", "--js", "true"])
            .env("HTTPJAIL_HTTP_BIND", format!("127.0.0.1:{port}"))
            .env(
                "HTTPJAIL_HTTPS_BIND",
                format!("127.0.0.1:{}", children::free_port()?),
            );
        match children::start("httpjail", cmd, Some(port)) {
            Ok(r) => {
                p.get.push((
                    "httpjail".into(),
                    Target {
                        addr: loopback(port),
                        route: Route::Absolute,
                        authority: format!("127.0.0.1:{plain}"),
                        tls: None,
                    },
                    r.pid(),
                ));
                p._running.push(r);
            }
            Err(e) => p.notes.push(format!("httpjail: left out: {e:#}")),
        }
    } else if let Some(bin) = &a.tinyproxy {
        let port = children::free_port()?;
        let conf = children::tinyproxy_conf(dir, port, tls)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-d").arg("-c").arg(&conf);
        match children::start("tinyproxy", cmd, Some(port)) {
            Ok(r) => {
                // tinyproxy resolves names itself: it is given the address.
                p.get.push((
                    "tinyproxy (plain forwarding)".into(),
                    Target {
                        addr: loopback(port),
                        route: Route::Absolute,
                        authority: format!("127.0.0.1:{plain}"),
                        tls: None,
                    },
                    r.pid(),
                ));
                let up_tls = client_tls(up_ca)?;
                p.https.push((
                    "tinyproxy, CONNECT tunnel (no interception)".into(),
                    Target {
                        addr: loopback(port),
                        route: Route::Connect,
                        authority: format!("127.0.0.1:{tls}"),
                        tls: Some((up_tls, name.clone())),
                    },
                    r.pid(),
                ));
                p._running.push(r);
            }
            Err(e) => p.notes.push(format!("tinyproxy: left out: {e:#}")),
        }
    } else {
        p.notes
            .push("plain forwarding peer: left out (neither --httpjail nor --tinyproxy)".into());
    }
    Ok(p)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn us(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{x:.0} µs")
    }
}

fn signed_us(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 0.0 {
        format!("+{}", us(x))
    } else {
        format!("−{}", us(-x))
    }
}

/// The markdown tables: medians over rounds; ratios and added latency are
/// taken per round against that round's direct case, then their median
/// (with the range over rounds).
fn report(cases: &[Case], results: &[Vec<Outcome>]) -> String {
    let mut out = String::new();
    let mut current = "";
    let mut direct: Option<&Vec<Outcome>> = None;
    for (c, rs) in cases.iter().zip(results) {
        if c.section != current {
            current = c.section;
            let _ = write!(
                out,
                "\n**{} ({} connection{})**\n\n| target | req/s | vs direct (range over rounds) | p50 | p99 | p99 added over direct (range) | CPU µs/req: proxy | upstream | load generator | connections opened | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
                c.section,
                c.plan.conns,
                if c.plan.conns == 1 { "" } else { "s" }
            );
        }
        if c.direct {
            direct = Some(rs);
        }
        let rps = median(rs.iter().map(|o| o.rps).collect());
        let p50 = median(rs.iter().map(|o| o.p50_us).collect());
        let p99 = median(rs.iter().map(|o| o.p99_us).collect());
        let errors: u64 = rs.iter().map(|o| o.errors).sum();
        let connects: u64 = rs.iter().map(|o| o.connects).sum();
        let cpu = |i: usize| {
            let v = median(
                rs.iter()
                    .map(|o| o.cpu_us.get(i).copied().unwrap_or(f64::NAN))
                    .collect(),
            );
            if v.is_finite() {
                format!("{v:.1}")
            } else {
                "—".into()
            }
        };
        let (ratio, added) = match direct {
            Some(d) if !c.direct && !matches!(c.driver, Driver::FsyncFloor) => {
                let ratios: Vec<f64> = rs.iter().zip(d).map(|(o, d)| o.rps / d.rps).collect();
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let added: Vec<f64> = rs.iter().zip(d).map(|(o, d)| o.p99_us - d.p99_us).collect();
                let alo = added.iter().copied().fold(f64::INFINITY, f64::min);
                let ahi = added.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (
                    format!(
                        "{:.0} % ({:.0}–{:.0} %)",
                        median(ratios) * 100.0,
                        lo * 100.0,
                        hi * 100.0
                    ),
                    format!(
                        "{} ({} to {})",
                        signed_us(median(added)),
                        signed_us(alo),
                        signed_us(ahi)
                    ),
                )
            }
            _ => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.label,
            rps,
            ratio,
            us(p50),
            us(p99),
            added,
            cpu(2),
            cpu(1),
            cpu(0),
            connects,
            errors
        );
    }
    out
}
