//! The attacker's side of the exfiltration scenario
//! (`shared/scenarios/exfiltration.md`): servers that accept anything and
//! record everything they receive, over HTTP, HTTPS, raw TCP and DNS
//! (UDP), in one JSONL log.

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::ServerConfig;
use serde_json::json;

use crate::http::{self, Handler, Response, Server};
use crate::{MockError, append_jsonl, io_err, now, read_jsonl};

/// The host name of the attacker in the scenarios.
pub const HOST: &str = "attacker.example";

/// The recorder: its log and the servers writing to it.
#[derive(Debug, Clone)]
pub struct Attacker {
    log: PathBuf,
}

/// A raw listener (TCP or UDP) of the attacker: stops when dropped.
#[derive(Debug)]
pub struct RawServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Attacker {
    /// A recorder writing to `log`.
    pub fn new(log: &Path) -> Attacker {
        Attacker {
            log: log.to_path_buf(),
        }
    }

    /// The log: one object per thing received, with `via` (`http`,
    /// `https`, `tcp`, `dns`) and what came (`method`, `target`,
    /// `headers`, `body`, or `data`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.log)
    }

    /// Whether anything received contains `needle` (in any field).
    pub fn saw(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|s| s.contains(needle))
    }

    /// The HTTP handler: records and answers 200.
    pub fn handler(&self) -> Handler {
        let log = self.log.clone();
        Arc::new(move |req| {
            let body = http::decoded_body(req);
            append_jsonl(
                &log,
                &json!({
                    "time": now(),
                    "via": if req.tls { "https" } else { "http" },
                    "method": req.method,
                    "target": req.target,
                    "headers": req.headers_json(),
                    "body": String::from_utf8_lossy(&body),
                }),
            );
            Response::new(200, "text/plain", "thanks\n")
        })
    }

    /// Serves HTTP (or HTTPS with `tls`) on `listener`.
    pub fn serve_http(
        &self,
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
    ) -> Result<Server, MockError> {
        http::serve(listener, tls, self.handler())
    }

    /// Records raw TCP: every byte a connection sends until it closes (or
    /// is idle for 5 s).
    pub fn serve_tcp(&self, listener: TcpListener) -> Result<RawServer, MockError> {
        let log = self.log.clone();
        let (stop, thread) = http::accept_loop(listener, move |mut s| {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut data = Vec::new();
                let _ = (&mut s).take(1 << 20).read_to_end(&mut data);
                append_jsonl(
                    &log,
                    &json!({"time": now(), "via": "tcp", "data": String::from_utf8_lossy(&data)}),
                );
            });
        })?;
        Ok(RawServer {
            stop,
            thread: Some(thread),
        })
    }

    /// Records DNS queries on a UDP socket: the query name of each packet
    /// (no answer is sent).
    pub fn serve_dns(&self, socket: UdpSocket) -> Result<RawServer, MockError> {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(io_err("attacker dns socket"))?;
        let log = self.log.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::SeqCst) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    let packet = buf.get(..n).unwrap_or_default();
                    append_jsonl(
                        &log,
                        &json!({"time": now(), "via": "dns", "data": dns_name(packet).unwrap_or_else(|| String::from_utf8_lossy(packet).into_owned())}),
                    );
                }
            }
        });
        Ok(RawServer {
            stop,
            thread: Some(thread),
        })
    }
}

/// The query name of a DNS packet.
fn dns_name(packet: &[u8]) -> Option<String> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(i)?);
        if len == 0 {
            break;
        }
        let label = packet.get(i + 1..i + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        i += 1 + len;
    }
    Some(labels.join("."))
}
