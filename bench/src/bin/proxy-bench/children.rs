//! The processes a run starts: this binary's own `upstream` and `blastwall`
//! modes, srt's HTTP proxy under node, tinyproxy, httpjail. Each prints
//! one `ready …` line on stdout once it accepts; each ends when its stdin
//! closes (or is killed when the guard drops).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

/// A child process, killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) name: String,
    child: Child,
    /// What followed `ready ` on its first such line (JSON), or null.
    pub(crate) ready: serde_json::Value,
}

impl Running {
    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        // Give it a moment to leave on its own (stdin closed), then kill it.
        for _ in 0..20 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (up to 30 s) for its `ready` line. `ready`
/// `None` means the child prints nothing: it is ready once `port` on
/// 127.0.0.1 accepts.
pub(crate) fn start(name: &str, mut cmd: Command, port: Option<u16>) -> Result<Running> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
    // The pid, for `perf record -p` while a run goes.
    eprintln!("{name}: pid {}", child.id());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name}: no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.strip_prefix("ready ") {
                let _ = tx.send(rest.to_owned());
                sent = true;
            }
        }
    });
    let mut running = Running {
        name: name.to_owned(),
        child,
        ready: serde_json::Value::Null,
    };
    match port {
        None => {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| anyhow!("{name} did not get ready within 30 s"))?;
            running.ready = serde_json::from_str(&line)
                .with_context(|| format!("{name}: bad ready line `{line}`"))?;
        }
        Some(p) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Ok(Some(st)) = running.child.try_wait() {
                    bail!("{name} exited ({st}) before it accepted on port {p}");
                }
                if std::time::Instant::now() > deadline {
                    bail!("{name} did not accept on port {p} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Ok(running)
}

/// A port that was free a moment ago (for peers that need one in their config).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Blocks until stdin closes: a child's way of knowing the run is over.
pub(crate) fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
}

/// Prints the `ready` line.
pub(crate) fn say_ready(what: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {what}")?;
    out.flush()?;
    Ok(())
}

/// The tinyproxy configuration for a plain forwarding proxy on 127.0.0.1.
pub(crate) fn tinyproxy_conf(
    dir: &Path,
    port: u16,
    connect_port: u16,
) -> Result<std::path::PathBuf> {
    let conf = dir.join("tinyproxy.conf");
    let text = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 512\nLogLevel Critical\nLogFile \"{log}\"\nAllow 127.0.0.1\nDisableViaHeader Yes\nConnectPort {connect_port}\n",
        log = dir.join("tinyproxy.log").display(),
    );
    std::fs::write(&conf, text)?;
    Ok(conf)
}
