//! `blastwall run -- CMD`: the manifest is read once from the real tree,
//! checked for trust, and turned into a sandbox spec; the session directory
//! and its audit log are opened; the command runs inside the wall; the
//! overlay then waits for `diff`, `commit` or `discard`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use blastwall_audit::AuditLog;
use blastwall_gate::{Gate, fsync_policy};
use blastwall_policy::{NonInteractive, Policy, ProjectMode, Settings};
use blastwall_sandbox::{Layer, SandboxSpec, SupervisorHooks};
use blastwall_session::{Env, Home, Purpose, SessionDir, SessionMeta, now_ns, process_start_time};
use serde_json::json;

use super::{load, manifest_path};
use crate::Status;
use crate::args::RunArgs;

/// Where a root supervisor keeps overlay directories (see
/// [`SessionDir::create_for`]).
const OVERLAY_BASE_AS_ROOT: &str = "/var/lib/blastwall/overlays";

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Who the project's files belong to: committed files get this owner.
fn project_owner(root: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(root).map_or((0, 0), |m| (m.uid(), m.gid()))
}

/// The proxy's port on the sandbox's loopback.
const PROXY_PORT: u16 = 3128;

/// Ports where programs that ignore the proxy variables are caught: names
/// inside resolve to 127.0.0.1 (blastwall's name server on udp 53), and
/// the supervisor accepts on these ports there (plain HTTP, TLS), and on
/// every port a network rule names.
const TRANSPARENT_HTTP: u16 = 80;
const TRANSPARENT_TLS: u16 = 443;
const DNS_PORT: u16 = 53;

/// The resolver configuration inside: blastwall's name server only.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where the session CA is added to the system bundle inside (a view: the
/// host's file is not changed), and where it goes when the host has none.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A credential of the manifest and the placeholder the agent holds for it.
/// Made before the sandbox (its environment is fixed when it is cloned);
/// the real value is read beside the sandbox's start, in [`start_proxy`].
struct Held {
    cred: blastwall_policy::Credential,
    placeholder: String,
}

fn placeholders(policy: &Policy) -> anyhow::Result<Vec<Held>> {
    policy
        .settings()
        .credentials
        .iter()
        .map(|c| {
            Ok(Held {
                placeholder: blastwall_proxy::Placeholder::generate(&c.name)?,
                cred: c.clone(),
            })
        })
        .collect()
}

fn start_proxy(
    policy: &Arc<Policy>,
    gate: &Arc<Gate>,
    home: &Home,
    held: Vec<Held>,
) -> anyhow::Result<blastwall_proxy::Proxy> {
    let store_dir = home.root().join("secrets");
    let store = if store_dir.exists() {
        Some(blastwall_secrets::SecretStore::open(&store_dir)?)
    } else {
        None
    };
    let read_env = |name: &str| std::env::var_os(name).map(|v| v.into_encoded_bytes());
    let mut bound = Vec::new();
    for Held {
        cred: c,
        placeholder,
    } in held
    {
        let Some(src) = &c.source else {
            anyhow::bail!(
                "credential `{}` has no source: define it in your own config ($BLASTWALL_HOME/config.toml) with `source = \"store:{}\"` and `blastwall secret set {}`",
                c.name,
                c.name,
                c.name
            );
        };
        let secret = blastwall_secrets::SecretSource::parse(src)
            .and_then(|s| {
                s.resolve(
                    store.as_ref(),
                    &read_env,
                    blastwall_secrets::DEFAULT_COMMAND_TIMEOUT,
                )
            })
            .with_context(|| format!("cannot read credential `{}` from {src}", c.name))?;
        bound.push(blastwall_proxy::BoundCredential {
            cred: c,
            placeholder,
            secret,
        });
    }
    let cfg =
        blastwall_proxy::ProxyConfig::from_policy(Arc::clone(policy), Arc::clone(gate), bound)?;
    Ok(blastwall_proxy::Proxy::new(cfg)?)
}

/// The proxy as the agent sees it: the variables pointing at it, the
/// placeholders, and the trust store with the session CA. Returns the
/// bundle's path inside: its contents (the session CA is made beside the
/// sandbox's start) are given at [`Hooks::before_start`].
fn wire_proxy(
    spec: &mut SandboxSpec,
    held: &[Held],
    home: &Path,
    declared_ports: &[u16],
) -> PathBuf {
    spec.loopback_listeners
        .extend([PROXY_PORT, TRANSPARENT_HTTP, TRANSPARENT_TLS]);
    // Ports the manifest's rules name catch programs that ignore the proxy
    // variables too (TLS or HTTP, told apart by the first byte).
    for &p in declared_ports {
        if !spec.loopback_listeners.contains(&p) && p != DNS_PORT {
            spec.loopback_listeners.push(p);
        }
    }
    spec.loopback_udp.push(DNS_PORT);
    // Where the host's resolv.conf is a symlink (systemd-resolved), the
    // view goes over the file it points to.
    match std::fs::canonicalize(RESOLV_CONF) {
        Ok(path) if path.is_file() => spec.injected.push(blastwall_sandbox::InjectedFile {
            path,
            contents: b"# blastwall: names are answered inside the wall\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n".to_vec(),
        }),
        _ => eprintln!(
            "blastwall: note: {RESOLV_CONF} is missing on this host; programs that ignore the proxy variables find no name server inside"
        ),
    }
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        spec.env.push((k.into(), url.clone().into()));
    }
    let bundle = if Path::new(SYSTEM_BUNDLE).is_file() {
        PathBuf::from(SYSTEM_BUNDLE)
    } else {
        home.join(".blastwall-ca.pem")
    };
    spec.injected.push(blastwall_sandbox::InjectedFile {
        path: bundle.clone(),
        contents: Vec::new(),
    });
    for (k, v) in blastwall_proxy::ca_env_vars(&bundle) {
        spec.env.push((k.into(), v.into()));
    }
    for h in held {
        let k = &h.cred.env;
        spec.env.retain(|(x, _)| x.to_string_lossy() != k.as_str());
        spec.env.push((k.into(), h.placeholder.clone().into()));
    }
    bundle
}

/// The trust store inside: the host's bundle, when it has one, and the
/// session CA.
fn ca_bundle(proxy: &blastwall_proxy::Proxy) -> Vec<u8> {
    let mut contents = std::fs::read(SYSTEM_BUNDLE).unwrap_or_default();
    if !contents.is_empty() && !contents.ends_with(b"\n") {
        contents.push(b'\n');
    }
    contents.extend_from_slice(proxy.ca_pem().as_bytes());
    contents
}

/// `run`'s own exit code when the command could not be started (as `env`
/// and container runtimes do); otherwise the command's status is returned.
const CANNOT_RUN: u8 = 125;

pub(crate) fn run(a: &RunArgs, env: &Env) -> anyhow::Result<Status> {
    let path = match manifest_path(a.policy.as_deref(), env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("blastwall: error: {e:#}");
            return Ok(Status::Code(CANNOT_RUN));
        }
    };
    // Read once, from the real tree, before the wall goes up (I5, I8).
    let Some(m) = load(&path, env, Purpose::Enforce, false)? else {
        return Ok(Status::Code(CANNOT_RUN));
    };
    let policy = Arc::new(m.loaded.policy);
    let s = policy.settings();
    let home = Home::locate(env);
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;

    let not_enforced = not_enforced_notes(s);
    for n in &not_enforced {
        eprintln!("blastwall: note: {n}");
    }

    let identity = blastwall_sandbox::Identity::for_current_user(Some(&s.project_root));
    let session = if running_as_root() {
        SessionDir::create_for(
            &home,
            Path::new(OVERLAY_BASE_AS_ROOT),
            (identity.host_uid, identity.host_gid),
        )?
    } else {
        SessionDir::create(&home)?
    };
    let id = session.id();
    let me = std::process::id();
    let mut meta = SessionMeta {
        id: id.clone(),
        name: a.name.clone(),
        started_ns: now_ns(),
        command: a
            .argv
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect(),
        project: s.project_root.clone(),
        manifest: m.path.clone(),
        project_mode: mode_word(s.project_mode).into(),
        supervisor: process_start_time(me).map(|t| (me, t)),
        exit_code: None,
        layers: serde_json::Value::Null,
        owner: project_owner(&s.project_root),
        closed: None,
    };
    let not_started = |meta: &mut SessionMeta, e: anyhow::Error| -> anyhow::Result<Status> {
        meta.exit_code = Some(i32::from(CANNOT_RUN));
        meta.closed = Some("not started".into());
        session.write_meta(meta)?;
        eprintln!("blastwall: session {}: not started: {e:#}", meta.id);
        Ok(Status::Code(CANNOT_RUN))
    };
    let held = match placeholders(&policy) {
        Ok(h) => h,
        Err(e) => return not_started(&mut meta, e),
    };
    let mut spec = match build_spec(a, s, &policy, &session, env, home.root()) {
        Ok(spec) => spec,
        Err(e) => return not_started(&mut meta, e),
    };
    spec.identity = identity;
    // A file sink lies inside the project (a project manifest may write
    // nowhere else): inside the wall it is hidden like a secret, so the
    // agent can neither read the audit copy nor tamper with it. It is made
    // here, before the sandbox takes the spec: a hidden path is hidden
    // where it exists, and the sink itself is opened beside the sandbox.
    for sink in &s.audit.sinks {
        if let blastwall_policy::AuditSink::File { path: Some(p) } = sink {
            if let Err(e) = create_file_sink(&s.project_root, p) {
                return not_started(&mut meta, e);
            }
            spec.hidden.push(p.clone());
        }
    }
    // The one way out: the proxy, accepting in the supervisor on sockets
    // bound inside the sandbox's network namespace.
    let bundle = wire_proxy(&mut spec, &held, &env.home_dir(), &policy.declared_ports());

    // SIGTERM and SIGHUP to blastwall go to the command, through the
    // sandbox's init, so the session ends on record instead of crashing.
    let init_pid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            return not_started(
                &mut meta,
                anyhow::Error::new(e).context("cannot watch for SIGTERM and SIGHUP"),
            );
        }
    };
    let signals_handle = signals.handle();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let (ended_tx, ended_rx) = std::sync::mpsc::sync_channel(1);
    let hooks = Hooks {
        init_pid: &init_pid,
        pending: Some(ready_rx),
        ready: None,
        bundle,
        ended: Some(ended_tx),
    };
    let mut end_meta = meta.clone();
    let prep = Prep {
        policy: &policy,
        home: &home,
        session: &session,
        meta: &meta,
        manifest: &m.path,
        manifest_sha256: blastwall_session::manifest_digest(&m.bytes),
        tty: spec.tty,
        not_enforced: &not_enforced,
    };
    // The signal thread is not joined: once the run is over, the
    // iterator is closed and the process's exit takes the thread down.
    let pid = Arc::clone(&init_pid);
    let signal_thread = std::thread::Builder::new()
        .name("blastwall-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let target = pid.load(std::sync::atomic::Ordering::SeqCst);
                let signal = nix::sys::signal::Signal::try_from(sig)
                    .unwrap_or(nix::sys::signal::Signal::SIGTERM);
                if target > 0 {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), signal);
                }
            }
        })
        .context("cannot start the signal thread");
    if let Err(e) = signal_thread {
        return not_started(&mut meta, e);
    }
    let (outcome, prepared, recorded) = std::thread::scope(|scope| {
        // Closes the signal thread's iterator however this closure ends.
        let _close = CloseSignals(signals_handle);
        let ready_tx = ready_tx;
        // The sandbox's parent-death signal follows the creating thread (an
        // init cloned ahead is the main thread's child; an executed one is
        // this thread's): run it from a thread that lives exactly as long
        // as the sandbox. It comes up (namespaces, the init, its mounts) while this thread
        // prepares the session; it waits for that only before its start
        // byte (`Hooks::before_start`), so all of it is done, and on disk,
        // before anything runs inside.
        // The hooks live on that thread: however it ends, `ended_rx` below
        // is told.
        let spec = &spec;
        let sandbox = scope.spawn(move || {
            let mut hooks = hooks;
            blastwall_sandbox::run(spec, &mut hooks)
        });
        let mut prepared = prepare(prep, held);
        let _ = ready_tx.send(
            prepared
                .as_mut()
                .map(Prepared::ready)
                .map_err(|e| format!("{e:#}")),
        );
        // The end is recorded while the sandbox is torn down.
        let recorded = match (&prepared, ended_rx.recv()) {
            (Ok(p), Ok(out)) => Some(record_end(&session, &mut end_meta, &p.gate, &out)),
            _ => None,
        };
        (sandbox.join(), prepared, recorded)
    });
    // The init is reaped: its pid is nobody's to signal any more.
    init_pid.store(0, std::sync::atomic::Ordering::SeqCst);
    let Prepared {
        gate,
        sinks,
        runtime,
        control,
        ..
    } = match prepared {
        Ok(p) => p,
        // The sandbox stopped at its hook: nothing ran inside.
        Err(e) => return not_started(&mut meta, e),
    };
    let _ = std::fs::remove_file(&control);
    // Sinks get what is queued before the process goes. What a sink that
    // is down cannot take in time is not delivered: every record is in the
    // session's audit log, and those past its memory queue in its spool.
    let flush_sinks = || {
        if let Some(sinks) = &sinks
            && !sinks.flush(std::time::Duration::from_secs(3))
        {
            eprintln!(
                "blastwall: note: an audit sink is behind and did not get every record; the session's audit log {} has them all",
                session.root().join("audit.jsonl").display()
            );
        }
    };
    let outcome = match outcome {
        Ok(r) => r,
        Err(_) => {
            if recorded.is_none() {
                let _ = gate.finish(json!({"error": "the supervisor thread panicked"}));
            }
            anyhow::bail!("the supervisor thread panicked");
        }
    };
    let status = match (outcome, recorded) {
        (Ok(out), recorded) => {
            match recorded {
                Some(r) => {
                    meta = end_meta;
                    r?;
                }
                None => record_end(&session, &mut meta, &gate, &out)?,
            }
            flush_sinks();
            summary(&session, &meta, &out);
            let code = out.status.as_shell_code();
            Status::Code(u8::try_from(code.clamp(0, 255)).unwrap_or(CANNOT_RUN))
        }
        // `ended` is never called for a run that fails.
        (Err(e), Some(_)) => anyhow::bail!("the sandbox failed after the command ended: {e}"),
        (Err(e), None) => {
            meta.exit_code = Some(i32::from(CANNOT_RUN));
            meta.closed = Some("not started".into());
            session.write_meta(&meta)?;
            let _ = gate.finish(json!({"error": e.to_string()}));
            flush_sinks();
            eprintln!("blastwall: cannot start the sandbox: {e}");
            eprintln!(
                "blastwall: nothing ran. `blastwall doctor` says what this host lacks and how to fix it; a manifest may accept a layer missing with [sandbox] accept_missing"
            );
            Status::Code(CANNOT_RUN)
        }
    };
    // The log is sealed and the sinks are flushed: the runtime is told to
    // stop, and the process's exit, which follows, takes its thread down
    // (joining it would wait for it to drop every task first).
    runtime.stop();
    Ok(status)
}

/// Records the end of the session: the log's seal and session.json's new
/// version are synced side by side; the record says the session ended only
/// once the log is sealed.
fn record_end(
    session: &SessionDir,
    meta: &mut SessionMeta,
    gate: &Gate,
    out: &blastwall_sandbox::RunOutcome,
) -> anyhow::Result<()> {
    let code = out.status.as_shell_code();
    meta.exit_code = Some(code);
    meta.layers = serde_json::to_value(&out.layers).unwrap_or_default();
    let meta = &*meta;
    let (staged, sealed) = std::thread::scope(|scope| {
        let staged = scope.spawn(|| session.stage_meta(meta));
        let sealed = gate.finish(json!({
            "exit": code,
            "layers": out.layers,
            "memory_limit_hit": out.memory_limit_hit,
            "overlay_limit_hit": out.overlay_limit_hit,
        }));
        (staged.join(), sealed)
    });
    let staged =
        staged.map_err(|_| anyhow::anyhow!("the thread writing session.json panicked"))??;
    // session.json says the session ended only once the log is sealed.
    sealed?;
    staged.commit()?;
    Ok(())
}

/// Closes the signal iterator when dropped.
struct CloseSignals(signal_hook::iterator::Handle);

impl Drop for CloseSignals {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What [`prepare`] needs of the run.
struct Prep<'a> {
    policy: &'a Arc<Policy>,
    home: &'a Home,
    session: &'a SessionDir,
    meta: &'a SessionMeta,
    manifest: &'a Path,
    manifest_sha256: String,
    tty: bool,
    not_enforced: &'a [String],
}

/// The runtime of the proxy, the name server and the control socket: one
/// thread drives all of them. One thread rather than a pool of workers
/// saves the wake-ups between workers, about a quarter of the proxy's CPU
/// per request (bench/README.md, "Proxy"); what may block (durable
/// decisions, the approval store) runs on the runtime's blocking pool.
struct ProxyRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyRuntime {
    fn start() -> std::io::Result<ProxyRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .thread_name("blastwall-proxy")
            .enable_io()
            .enable_time()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("blastwall-proxy".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(ProxyRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Tells the runtime to stop, without waiting for its thread.
    fn stop(mut self) {
        drop(self.stop.take());
        drop(self.thread.take());
    }
}

impl Drop for ProxyRuntime {
    /// Stops the runtime: its tasks are dropped and its thread joined.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The session, prepared beside the sandbox's start.
struct Prepared {
    gate: Arc<Gate>,
    proxy: blastwall_proxy::Proxy,
    runtime: ProxyRuntime,
    sinks: Option<Sinks>,
    control: PathBuf,
    bundle: Vec<u8>,
}

impl Prepared {
    /// What the sandbox's hooks need of it.
    /// The CA bundle (the system's and the session CA, ≈ 220 KB) goes with
    /// it: it is written into the sandbox once.
    fn ready(&mut self) -> Ready {
        Ready {
            gate: Arc::clone(&self.gate),
            proxy: self.proxy.clone(),
            runtime: self.runtime.handle().clone(),
            bundle: std::mem::take(&mut self.bundle),
        }
    }
}

/// The session's bookkeeping: its record on disk, the audit log and its
/// `session-start`, the approval queue, the gate, the proxy with its
/// session CA, the runtime that serves it, the control socket.
fn prepare(p: Prep<'_>, held: Vec<Held>) -> anyhow::Result<Prepared> {
    let (session, meta) = (p.session, p.meta);
    // On record from the start, so a session that fails to start is listed
    // with why, and one whose supervisor dies is listed as crashed: in
    // place before the audit log exists, synced beside the log's own
    // syncs; both are durable before the start.
    let published = session.publish_meta(meta)?;
    std::thread::scope(|scope| {
        let recorded = scope.spawn(|| published.sync());
        let prepared = prepare_log(p, held);
        recorded
            .join()
            .map_err(|_| anyhow::anyhow!("the thread writing session.json panicked"))??;
        prepared
    })
}

/// [`prepare`] but for `session.json`.
fn prepare_log(p: Prep<'_>, held: Vec<Held>) -> anyhow::Result<Prepared> {
    let Prep {
        policy,
        home,
        session,
        meta,
        manifest,
        manifest_sha256,
        tty,
        not_enforced,
    } = p;
    let s = policy.settings();
    let (log, sinks) = open_log(session, &meta.id, s, home)?;
    // Asks are held for a person: the store is shared with `approve`.
    let queue = approval_queue(s, home, &meta.id, tty)?;
    let gate = Arc::new(
        Gate::new(Arc::clone(policy), log)
            .with_approvals(queue)
            .with_anomaly_rules(
                thresholds(&s.audit.alerts),
                Some(Box::new(move |a| alert_banner(a, tty))),
            )
            .with_group_commit()?,
    );
    let proxy = match start_proxy(policy, &gate, home, held) {
        Ok(p) => p,
        Err(e) => {
            let _ = gate.start(json!({"error": format!("{e:#}")}));
            let _ = gate.finish(json!({"error": "not started"}));
            return Err(e);
        }
    };
    let bundle = ca_bundle(&proxy);
    let runtime = ProxyRuntime::start().context("cannot start the proxy's runtime")?;
    let control = session.control_socket();
    if let Err(e) = listen_control(&control, &gate, runtime.handle()) {
        eprintln!(
            "blastwall: note: no control socket at {} ({e}); approvals reach this session by polling the store",
            control.display()
        );
    }
    gate.start(json!({
        "manifest": manifest.display().to_string(),
        "manifest_sha256": manifest_sha256,
        "command": meta.command,
        "project": s.project_root.display().to_string(),
        "project_mode": meta.project_mode,
        "not_enforced": not_enforced,
    }))?;
    eprintln!(
        "blastwall: session {}: {} (project {} as {})",
        meta.id,
        meta.command.join(" "),
        s.project_root.display(),
        meta.project_mode
    );
    Ok(Prepared {
        gate,
        proxy,
        runtime,
        sinks,
        control,
        bundle,
    })
}

/// The approval queue of this session: the user's store, the manifest's
/// timeout, and whether anybody can answer (a terminal, or a manifest that
/// says to wait without one).
fn approval_queue(
    s: &Settings,
    home: &Home,
    session: &str,
    tty: bool,
) -> anyhow::Result<blastwall_gate::Queue> {
    let db = home.approvals_db();
    // Opened at the first ask: a session that never asks never waits for it.
    let store = blastwall_gate::SqliteStore::open_lazily(&db);
    let interactive = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
    let cfg = blastwall_gate::ApprovalConfig {
        timeout: s.approval.timeout,
        wait: interactive || s.approval.non_interactive != NonInteractive::Deny,
        ..blastwall_gate::ApprovalConfig::default()
    };
    let mut queue = blastwall_gate::Queue::new(Arc::new(store), session, cfg);
    if s.approval.channels.iter().any(|c| c == "terminal") {
        // The user's own terminal (the supervisor's stderr), never the
        // agent's pty: the agent can neither forge nor overwrite it.
        let timeout = blastwall_gate::human_duration(s.approval.timeout);
        queue = queue.on_pending(Box::new(move |a| announce(a, tty, &timeout)));
    }
    // The webhook: always when it is a channel; with no terminal when
    // `non_interactive = "webhook"` says to post and wait. Posting happens
    // on a thread of its own, never on the agent's request path.
    let post = s.approval.channels.iter().any(|c| c == "webhook")
        || (!interactive && s.approval.non_interactive == NonInteractive::Webhook);
    if let (true, Some(hook)) = (post, &s.approval.webhook) {
        let report: Box<dyn Fn(String) + Send> =
            Box::new(|m| eprintln!("blastwall: note: {m}; the ask still waits"));
        let poster =
            blastwall_server::webhook::Poster::start(&hook.url, &hook.format, home.clone(), report)
                .context("cannot start the approval webhook")?;
        queue = queue.on_pending(Box::new(move |a| {
            if !poster.notify(a) {
                eprintln!(
                    "blastwall: note: the webhook queue is full; approval {} was not posted",
                    a.id
                );
            }
        }));
    }
    Ok(queue)
}

fn announce(a: &blastwall_gate::Approval, raw: bool, timeout: &str) {
    let nl = if raw { "\r\n" } else { "\n" };
    let text = format!(
        "{nl}blastwall: APPROVAL NEEDED {id}: {summary}{nl}  rule {rule}: {reason}{nl}  approve once: blastwall approve {id}    deny: blastwall deny {id}    (denied in {timeout} without an answer){nl}",
        id = a.id,
        summary = a.summary.terminal(),
        rule = blastwall_gate::summary::clean(&a.rule.to_string(), 200),
        reason = blastwall_gate::summary::clean(&a.reason, 400),
    );
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The session's control socket: `approve` and `deny` poke it so a held ask
/// re-reads the store at once. Only the user (or root) may connect; what it
/// carries is a wake-up, never a decision (the store holds those).
fn listen_control(
    path: &Path,
    gate: &Arc<Gate>,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(queue) = gate.queue().cloned() else {
        return Ok(());
    };
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let me = nix::unistd::geteuid().as_raw();
    runtime.spawn(async move {
        let Ok(listener) = tokio::net::UnixListener::from_std(listener) else {
            return;
        };
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let allowed = sock
                .peer_cred()
                .is_ok_and(|c| c.uid() == me || c.uid() == 0);
            if !allowed {
                continue;
            }
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 128];
                let read =
                    tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf))
                        .await;
                if let Ok(Ok(n)) = read
                    && buf.get(..n).is_some_and(|b| b.starts_with(b"wake"))
                {
                    queue.wake();
                    let _ = sock.write_all(b"ok\n").await;
                }
            });
        }
    });
    Ok(())
}

/// The session's audit log: signed checkpoints with the user's key (their
/// heads also go to the heads file outside the session), and the
/// manifest's sinks fed from every record written.
type Sinks = Arc<blastwall_audit::sinks::Sinks>;

fn open_log(
    session: &SessionDir,
    id: &str,
    s: &Settings,
    home: &Home,
) -> anyhow::Result<(AuditLog, Option<Sinks>)> {
    let cp = blastwall_audit::Checkpointer::in_home(home.root())
        .context("cannot prepare the audit log's signing key")?;
    let mut log = AuditLog::create(session.audit_log(), id, fsync_policy(s.audit.fsync))?
        .with_checkpoints(cp)?;
    let mut sinks = None;
    if !s.audit.sinks.is_empty() {
        for sink in &s.audit.sinks {
            if let blastwall_policy::AuditSink::File { path: Some(p) } = sink {
                no_symlink_below(&s.project_root, p)?;
            }
        }
        let configs = s
            .audit
            .sinks
            .iter()
            .filter_map(|k| match k {
                blastwall_policy::AuditSink::File { path } => path
                    .clone()
                    .map(|path| blastwall_audit::sinks::SinkConfig::File { path }),
                blastwall_policy::AuditSink::Otlp { endpoint, signal } => {
                    Some(blastwall_audit::sinks::SinkConfig::Otlp {
                        endpoint: endpoint.clone(),
                        signal: if signal == "spans" {
                            blastwall_audit::sinks::OtlpSignal::Traces
                        } else {
                            blastwall_audit::sinks::OtlpSignal::Logs
                        },
                    })
                }
                blastwall_policy::AuditSink::Webhook { url } => {
                    Some(blastwall_audit::sinks::SinkConfig::Webhook { url: url.clone() })
                }
            })
            .collect();
        let started = Arc::new(
            blastwall_audit::sinks::Sinks::start(configs, &session.root().join("spool"))
                .context("cannot start the audit sinks")?,
        );
        log = log.with_tap(Arc::clone(&started));
        sinks = Some(started);
    }
    Ok((log, sinks))
}

/// Creates a file sink's file if it is missing, as the sink opens it (never
/// through a symlink, 0600), so that the sandbox finds it to hide.
fn create_file_sink(root: &Path, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    no_symlink_below(root, path)?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map(drop)
        .with_context(|| format!("cannot open the audit sink {}", path.display()))
}

/// Refuses a file sink reached through a symlink anywhere below the
/// project root: a repository could ship `logs/audit.jsonl -> ~/.bashrc`,
/// and the supervisor, outside the wall, would append the agent's requests
/// there. (The last component is also opened with `O_NOFOLLOW`.)
fn no_symlink_below(root: &Path, path: &Path) -> anyhow::Result<()> {
    let rel = path.strip_prefix(root).map_err(|_| {
        anyhow::anyhow!(
            "the audit sink {} is outside the project {}",
            path.display(),
            root.display()
        )
    })?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => anyhow::bail!(
                "the audit sink {} goes through the symlink {}: refused (a repository could point it at a file outside the project)",
                path.display(),
                at.display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot check the audit sink {}: {e}", path.display()),
        }
    }
    Ok(())
}

/// The manifest's `[audit.alerts]` as the anomaly rules take them.
fn thresholds(a: &blastwall_policy::Alerts) -> blastwall_audit::anomaly::Thresholds {
    blastwall_audit::anomaly::Thresholds {
        first_contact: a.first_contact,
        placeholder_leak: a.placeholder_leak,
        hidden_path: a.hidden_path,
        destructive_ask: a.destructive_ask,
        deny_burst_count: a.deny_burst_count,
        deny_burst_window: a.deny_burst_window,
        ..blastwall_audit::anomaly::Thresholds::default()
    }
}

/// An alert, on the user's own terminal (never the agent's pty).
fn alert_banner(a: &serde_json::Value, raw: bool) {
    let nl = if raw { "\r\n" } else { "\n" };
    let clean =
        |v: &serde_json::Value| blastwall_gate::summary::clean(v.as_str().unwrap_or_default(), 300);
    let text = format!(
        "{nl}blastwall: ALERT {}: {}{nl}",
        clean(&a["rule"]),
        clean(&a["reason"])
    );
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn mode_word(m: ProjectMode) -> &'static str {
    match m {
        ProjectMode::Overlay => "overlay",
        ProjectMode::Ro => "ro",
        ProjectMode::Rw => "rw",
    }
}

/// What the manifest says that this version does not enforce yet: said at
/// every start and recorded in the audit, never silently dropped.
fn not_enforced_notes(s: &Settings) -> Vec<String> {
    let mut v = Vec::new();
    if s.has_exec_rules {
        v.push("exec rules are parsed and explained but not enforced by `run` yet (no exec interceptor)".to_owned());
    }
    v.push("the network is reached only through the proxy: HTTP_PROXY/HTTPS_PROXY, or, for programs that ignore them, blastwall's name server and ports 80 and 443 on the sandbox's loopback; a connection to any other port finds no way out".to_owned());
    v
}

struct Hooks<'g> {
    init_pid: &'g std::sync::atomic::AtomicI32,
    /// The session being prepared beside the sandbox, until it is joined.
    pending: Option<std::sync::mpsc::Receiver<Result<Ready, String>>>,
    ready: Option<Ready>,
    /// Where the trust store with the session CA goes inside.
    bundle: PathBuf,
    /// Where the outcome goes as soon as the command's end is known.
    ended: Option<std::sync::mpsc::SyncSender<blastwall_sandbox::RunOutcome>>,
}

/// The prepared session, as the sandbox's hooks use it.
struct Ready {
    gate: Arc<Gate>,
    proxy: blastwall_proxy::Proxy,
    runtime: tokio::runtime::Handle,
    bundle: Vec<u8>,
}

impl Hooks<'_> {
    fn ready(&self) -> Result<&Ready, String> {
        self.ready
            .as_ref()
            .ok_or_else(|| "the session is not prepared".to_owned())
    }
}

impl SupervisorHooks for Hooks<'_> {
    fn netns_ready(&mut self, pid: i32) -> Result<(), String> {
        self.init_pid
            .store(pid, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn before_start(&mut self) -> Result<Vec<blastwall_sandbox::InjectedFile>, String> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| "the session was joined already".to_owned())?;
        let mut ready = pending
            .recv()
            .map_err(|_| "the session's preparation ended without a result".to_owned())?
            .map_err(|e| format!("the session could not be prepared: {e}"))?;
        let contents = std::mem::take(&mut ready.bundle);
        self.ready = Some(ready);
        Ok(vec![blastwall_sandbox::InjectedFile {
            path: self.bundle.clone(),
            contents,
        }])
    }

    fn loopback_listeners(
        &mut self,
        listeners: Vec<(u16, std::net::TcpListener)>,
    ) -> Result<(), String> {
        let r = self.ready()?;
        for (port, l) in listeners {
            l.set_nonblocking(true)
                .map_err(|e| format!("proxy listener on port {port}: {e}"))?;
            let serve: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match port {
                TRANSPARENT_HTTP => Box::pin(r.proxy.serve_transparent(l, port, false)),
                TRANSPARENT_TLS => Box::pin(r.proxy.serve_transparent(l, port, true)),
                PROXY_PORT => Box::pin(r.proxy.serve(l)),
                _ => Box::pin(r.proxy.serve_transparent_any(l, port)),
            };
            r.runtime.spawn(async move {
                if let Err(e) = serve.await {
                    eprintln!("blastwall: the proxy stopped on port {port}: {e}");
                }
            });
        }
        Ok(())
    }

    fn loopback_udp(&mut self, sockets: Vec<(u16, std::net::UdpSocket)>) -> Result<(), String> {
        let r = self.ready()?;
        for (port, u) in sockets {
            let serve = r.proxy.serve_dns(u);
            r.runtime.spawn(async move {
                if let Err(e) = serve.await {
                    eprintln!("blastwall: the name server stopped on port {port}: {e}");
                }
            });
        }
        Ok(())
    }

    fn ended(&mut self, outcome: &blastwall_sandbox::RunOutcome) {
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(outcome.clone());
        }
    }

    fn hidden_path_touched(&mut self, path: &Path) {
        // Every attempt is on record; the first raises an alert.
        if let Some(r) = &self.ready {
            let _ = r.gate.hidden_path(path);
        }
    }
}

fn layer(name: &str) -> Option<Layer> {
    Layer::ALL.into_iter().find(|l| l.name() == name)
}

fn build_spec(
    a: &RunArgs,
    s: &Settings,
    policy: &Policy,
    session: &SessionDir,
    env: &Env,
    bw_home: &Path,
) -> anyhow::Result<SandboxSpec> {
    let home = env.home_dir();
    let mut spec = SandboxSpec::new(a.argv.clone(), s.project_root.clone(), home.clone());
    let cwd = std::env::current_dir().unwrap_or_else(|_| s.project_root.clone());
    spec.cwd_inside = if cwd.starts_with(&s.project_root) {
        cwd
    } else {
        s.project_root.clone()
    };
    spec.project_mode = match s.project_mode {
        ProjectMode::Overlay => blastwall_sandbox::ProjectMode::Overlay {
            upper: session.upper(),
            work: session.work(),
        },
        ProjectMode::Ro => blastwall_sandbox::ProjectMode::ReadOnly,
        ProjectMode::Rw => blastwall_sandbox::ProjectMode::ReadWrite,
    };
    let existing = |paths: &[PathBuf], what: &str| -> Vec<PathBuf> {
        paths
            .iter()
            .filter(|p| {
                let ok = p.exists();
                if !ok {
                    eprintln!(
                        "blastwall: note: {what} path {} does not exist; not mounted",
                        p.display()
                    );
                }
                ok
            })
            .cloned()
            .collect()
    };
    spec.ro_paths = existing(&s.read_paths, "read-only");
    spec.rw_paths = existing(&s.write_paths, "read-write");
    spec.hidden = blastwall_session::hidden_paths(
        policy,
        s,
        &home,
        bw_home,
        blastwall_session::HIDDEN_SEARCH_BUDGET,
    )?;
    spec.env = blastwall_session::environment(std::env::vars_os(), s, &home);
    spec.limits = blastwall_sandbox::Limits {
        memory_bytes: Some(s.limits.memory),
        pids: Some(s.limits.pids),
        cpu_seconds: s.limits.cpu.map(|d| d.as_secs()),
        overlay_bytes: (s.project_mode == ProjectMode::Overlay).then_some(s.limits.overlay),
    };
    spec.accept_missing = s.accept_missing.iter().filter_map(|n| layer(n)).collect();
    spec.tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // Git's configuration inside is a sanitised view: who the user is and
    // where the remotes are, never a token or a credential helper.
    for (path, global) in [
        (s.project_root.join(".git/config"), false),
        (home.join(".gitconfig"), true),
    ] {
        if let Ok(text) = std::fs::read_to_string(&path) {
            spec.injected.push(blastwall_sandbox::InjectedFile {
                contents: blastwall_session::sanitize_git_config(&text, global).into_bytes(),
                path,
            });
        }
    }
    Ok(spec)
}

fn summary(session: &SessionDir, meta: &SessionMeta, out: &blastwall_sandbox::RunOutcome) {
    let changed =
        blastwall_session::changes(&session.upper(), &meta.project).map_or(0, |c| c.len());
    let l = &out.layers;
    let mut layers = l.namespaces.join("+");
    if l.landlock_fs {
        layers.push_str(&format!(", landlock abi {}", l.landlock_abi.unwrap_or(0)));
    }
    if l.seccomp {
        layers.push_str(", seccomp");
    }
    for (layer, why) in &l.missing {
        layers.push_str(&format!(", {layer} MISSING ({why})"));
    }
    eprintln!(
        "blastwall: session {} ended with status {}; {changed} file(s) changed in the overlay; layers: {layers}",
        meta.id,
        out.status.as_shell_code()
    );
    // What crossed the wall, from the session's own record.
    if let Ok(events) = blastwall_audit::read_events(session.audit_log()) {
        let mut counts = [0usize; 3];
        let mut alerts = 0usize;
        let mut approved = 0usize;
        for e in &events {
            if e.kind == blastwall_audit::Kind::Decision {
                match e.data["verdict"].as_str() {
                    Some("allow") => counts[0] += 1,
                    Some("ask") => counts[1] += 1,
                    Some("deny") => counts[2] += 1,
                    Some(_) | None => {}
                }
            }
            if e.kind == blastwall_audit::Kind::Outcome && e.data["outcome"] == "approved" {
                approved += 1;
            }
            if e.kind == blastwall_audit::Kind::Alert {
                alerts += 1;
            }
        }
        if counts.iter().sum::<usize>() + alerts > 0 {
            eprintln!(
                "blastwall: requests: {} allowed, {} asked ({approved} approved), {} denied; {alerts} alert(s) (`blastwall log`)",
                counts[0], counts[1], counts[2]
            );
        }
    }
    if out.memory_limit_hit {
        eprintln!("blastwall: the agent was stopped: memory limit reached");
    }
    if out.overlay_limit_hit {
        eprintln!("blastwall: the agent was stopped: overlay disk limit reached");
    }
    if !out.hidden_touched.is_empty() {
        eprintln!(
            "blastwall: ALERT: {} attempt(s) on hidden paths (see `blastwall log --kind alert`)",
            out.hidden_touched.len()
        );
    }
    if changed > 0 && meta.project_mode == "overlay" {
        eprintln!(
            "blastwall: review with `blastwall diff {}`, then `blastwall commit {}` or `blastwall discard {}`",
            meta.id, meta.id, meta.id
        );
    }
}
