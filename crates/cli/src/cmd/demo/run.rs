//! Running the two halves of a scenario: the agent without the wall (in a
//! child that builds the throw-away sandbox) and inside it (`blastwall run`
//! under the scenario's manifest, mocks on the host's loopback).

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blastwall_mocks::TestCa;

use super::unprotected::{Job, TCP_PORT};
use super::world::{HOSTS, World};

/// The longest one half may take before it is stopped (each agent's
/// network calls carry their own shorter caps).
const HALF_CAP: Duration = Duration::from_secs(300);

/// What the agent did, as seen from outside.
#[derive(Debug, Default)]
pub(super) struct AgentRun {
    pub(super) code: i32,
    /// stdout and stderr of the agent (and, inside, of `blastwall run`).
    pub(super) output: String,
    /// The session, for the protected half.
    pub(super) session: Option<String>,
}

/// Runs a command with its output captured, stopping it past `cap`.
pub(super) fn run_capped(mut cmd: Command, cap: Duration) -> anyhow::Result<(i32, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start a child process")?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    })
    .collect();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > cap {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = Vec::new();
    for r in readers {
        out.extend(r.join().unwrap_or_default());
    }
    let code = status.code().unwrap_or(-1);
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the blastwall binary")
}

/// Host paths the throw-away sandbox must not show: the real home and
/// what is in it, and the other entries of the directory the scratch world
/// lives in.
fn must_not_see(real_home: &Path, w: &World) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let ancestor = |p: &Path| w.root.starts_with(p);
    // A home of `/` (some containers) holds the system directories the
    // sandbox shows read-only on purpose: nothing to look for there.
    if real_home.parent().is_none() {
        return v;
    }
    if !ancestor(real_home) {
        v.push(real_home.to_path_buf());
    }
    for e in std::fs::read_dir(real_home)
        .into_iter()
        .flatten()
        .flatten()
        .take(20)
    {
        if !ancestor(&e.path()) {
            v.push(e.path());
        }
    }
    if let Some(parent) = w.root.parent() {
        for e in std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .take(20)
        {
            if e.path() != w.root && !ancestor(&e.path()) {
                v.push(e.path());
            }
        }
    }
    v
}

/// The half without the wall.
pub(super) fn unprotected(
    script: &str,
    w: &World,
    accept_missing: &[String],
    real_home: &Path,
) -> anyhow::Result<AgentRun> {
    let mut env: Vec<(String, String)> = vec![
        ("ATTACKER_TCP_PORT".into(), TCP_PORT.to_string()),
        ("ATTACKER_DNS_PORT".into(), "53".into()),
        w.env_secret.clone(),
    ];
    for k in ["GIT_AUTHOR", "GIT_COMMITTER"] {
        env.push((format!("{k}_NAME"), "agent".into()));
        env.push((format!("{k}_EMAIL"), "agent@example.test".into()));
    }
    let job = Job {
        script: script.to_owned(),
        project: w.project.clone(),
        home: w.home.clone(),
        root: w.root.clone(),
        token: w.token.clone(),
        env,
        accept_missing: accept_missing.to_vec(),
        must_not_see: must_not_see(real_home, w),
    };
    let file = w.srv.join("unprotected-job.json");
    std::fs::write(&file, serde_json::to_vec(&job)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut cmd = Command::new(exe()?);
    cmd.args(["demo", "--unprotected-job"])
        .arg(&file)
        .current_dir(&w.root)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8");
    let (code, output) = run_capped(cmd, HALF_CAP)?;
    // The child says `blastwall: error: …` and exits 2 when the preflight
    // refused or the sandbox did not start: nothing ran, say so.
    if code == 2 && output.contains("blastwall: error:") {
        bail!("the unprotected run did not start:\n{output}");
    }
    Ok(AgentRun {
        code,
        output,
        session: None,
    })
}

/// The mocks on the host's loopback for the protected half.
pub(super) struct HostMocks {
    pub(super) tls_port: u16,
    pub(super) tcp_port: u16,
    pub(super) dns_port: u16,
    pub(super) ca_file: PathBuf,
    _tls: blastwall_mocks::http::Server,
    _tcp: blastwall_mocks::attacker::RawServer,
    _dns: blastwall_mocks::attacker::RawServer,
}

impl std::fmt::Debug for HostMocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMocks")
            .field("tls_port", &self.tls_port)
            .finish_non_exhaustive()
    }
}

impl HostMocks {
    pub(super) fn start(w: &World) -> anyhow::Result<HostMocks> {
        let ca = TestCa::new("blastwall demo mock CA")?;
        let ca_file = w.srv.join("mock-ca.pem");
        std::fs::write(&ca_file, ca.cert_pem())?;
        let l = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
        let tls_port = l.local_addr()?.port();
        let tls = blastwall_mocks::http::serve(l, Some(ca.server_config(&HOSTS)?), w.router())?;
        let l = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
        let tcp_port = l.local_addr()?.port();
        let tcp = w.attacker().serve_tcp(l)?;
        let u = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket on loopback")?;
        let dns_port = u.local_addr()?.port();
        let dns = w.attacker().serve_dns(u)?;
        Ok(HostMocks {
            tls_port,
            tcp_port,
            dns_port,
            ca_file,
            _tls: tls,
            _tcp: tcp,
            _dns: dns,
        })
    }
}

/// `blastwall ARGS` in the world's project, with the world's HOME and
/// BLASTWALL_HOME and nothing else of this process's environment.
pub(super) fn bw(
    w: &World,
    args: &[&str],
    extra: &[(String, String)],
) -> anyhow::Result<(i32, String)> {
    let mut cmd = Command::new(exe()?);
    cmd.args(args)
        .current_dir(&w.project)
        .env_clear()
        .env("HOME", &w.home)
        .env("BLASTWALL_HOME", &w.bw_home)
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run_capped(cmd, HALF_CAP)
}

/// The manifest with the placeholders filled in.
pub(super) fn fill(manifest: &str, m: &HostMocks, sandbox: &str) -> String {
    manifest
        .replace("@MOCK_PORT@", &m.tls_port.to_string())
        .replace("@MOCK_CA@", &m.ca_file.to_string_lossy())
        .replace("@TCP_PORT@", &m.tcp_port.to_string())
        .replace("@DNS_PORT@", &m.dns_port.to_string())
        .replace("@SANDBOX@", sandbox)
}

/// The half inside the wall: trust the manifest, run the agent.
pub(super) fn protected(script: &str, w: &World, manifest: &str) -> anyhow::Result<AgentRun> {
    let path = w.project.join("blastwall.toml");
    std::fs::write(&path, manifest).with_context(|| format!("cannot write {}", path.display()))?;
    let (code, out) = bw(w, &["trust"], &[])?;
    if code != 0 {
        bail!("`blastwall trust` refused the scenario's manifest:\n{out}");
    }
    let extra = vec![
        ("BLASTWALL_DEMO_RAILWAY_TOKEN".to_owned(), w.token.clone()),
        w.env_secret.clone(),
    ];
    let (code, output) = bw(
        w,
        &["run", "--name", "demo", "--", "sh", "-c", script],
        &extra,
    )?;
    let session = std::fs::read_dir(w.bw_home.join("sessions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next();
    if session.is_none() || code == 125 {
        bail!("`blastwall run` did not start the agent (status {code}):\n{output}");
    }
    Ok(AgentRun {
        code,
        output,
        session,
    })
}

/// The first approval the session raised, as a person would read it
/// (`blastwall approvals --json --all --session ID`), with how it ended;
/// `None` when this build has no approval queue.
pub(super) fn first_approval(w: &World, session: &str) -> Option<String> {
    let (code, out) = bw(
        w,
        &["approvals", "--json", "--all", "--session", session],
        &[],
    )
    .ok()?;
    if code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let a = v["approvals"]
        .as_array()?
        .iter()
        .min_by_key(|a| a["request_id"].as_u64())?;
    let text = a["summary_text"].as_str()?;
    Some(match (a["state"].as_str(), a["decided_by"].as_str()) {
        (Some(state), Some(by)) => format!("{text} ({state}: {by})"),
        (Some(state), None) => format!("{text} ({state})"),
        _ => text.to_owned(),
    })
}

/// The `rule` (or `alert`) of each alert in the session's log.
pub(super) fn alert_rules(w: &World, session: &str) -> Vec<String> {
    let (_, log) = bw(w, &["log", "--session", session, "--json"], &[]).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "alert")
        .map(|v| {
            let d = &v["data"];
            d["rule"]
                .as_str()
                .or(d["alert"].as_str())
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

/// What the session's own log says: (asks, alerts, verified).
pub(super) fn audit(w: &World, session: &str) -> (usize, usize, bool) {
    let (_, log) = bw(w, &["log", "--session", session, "--json"], &[]).unwrap_or_default();
    let mut asks = 0;
    let mut alerts = 0;
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["kind"] == "decision" && v["data"]["verdict"] == "ask" {
            asks += 1;
        }
        if v["kind"] == "alert" {
            alerts += 1;
        }
    }
    let verified =
        bw(w, &["log", "verify", "--session", session], &[]).is_ok_and(|(code, _)| code == 0);
    (asks, alerts, verified)
}
