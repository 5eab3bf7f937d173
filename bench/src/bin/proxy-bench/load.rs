//! The load generator used for every target alike: `conns` keep-alive
//! HTTP/1.1 connections, each sending one request at a time (no
//! pipelining) for a fixed time after a warm-up, recording each request's
//! latency. A connection the server closes (`Connection: close`) is opened
//! again, and that connect counts in the next request's latency.
//!
//! Plain requests through a proxy are absolute-form (`GET http://host/…`);
//! HTTPS through a proxy opens a `CONNECT` tunnel once per connection, then
//! TLS inside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::{Buf as _, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::upstream::BODY;

/// How a target is reached.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Straight to the upstream (origin-form requests).
    Direct,
    /// Through a proxy: absolute-form requests.
    Absolute,
    /// Through a proxy: `CONNECT authority` once per connection, then origin-form inside.
    Connect,
}

/// One thing to measure.
#[derive(Clone)]
pub(crate) struct Target {
    /// Where TCP connects: the upstream or the proxy.
    pub(crate) addr: SocketAddr,
    pub(crate) route: Route,
    /// `host:port` of the upstream as this target names it (Host header, URL, CONNECT).
    pub(crate) authority: String,
    /// TLS to the upstream (end to end, or to the intercepting proxy), with the name to verify.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET /get`, 1 KiB answer.
    Get,
    /// `POST /post` with a 1 KiB JSON body, 1 KiB answer.
    Post,
}

/// A measurement's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) method: Method,
    pub(crate) conns: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// What a measurement found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Requests completed inside the measured window, per second.
    pub(crate) rps: f64,
    /// Latency percentiles of those requests, in microseconds.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Requests answered with another status than 200 or failed on the wire (whole run).
    pub(crate) errors: u64,
    /// Connections opened (whole run, warm-up included).
    pub(crate) connects: u64,
    /// The first error seen, if any.
    pub(crate) first_error: Option<String>,
    /// CPU time per request in the measured window, µs, of each process
    /// asked for (user + system, all threads).
    pub(crate) cpu_us: Vec<f64>,
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ; 100 on Linux unless `getconf` says otherwise).
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process so far (every thread, live or gone).
pub(crate) fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // After the command name in parentheses: state is field 3; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field(14) + field(15)) / ticks
}

/// A reused connection the server had closed before this request: retried
/// once on a fresh connection (as HTTP clients do), not an error.
#[derive(Debug)]
struct Stale;

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before a response head")
    }
}

impl std::error::Error for Stale {}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    fn request(&self, method: Method) -> Vec<u8> {
        let path = match method {
            Method::Get => "/get",
            Method::Post => "/post",
        };
        let target = match self.route {
            Route::Absolute => format!("http://{}{path}", self.authority),
            Route::Direct | Route::Connect => path.to_owned(),
        };
        let mut r = match method {
            Method::Get => format!(
                "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxy-bench\r\nAccept: */*\r\n\r\n",
                self.authority
            )
            .into_bytes(),
            Method::Post => format!(
                "POST {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxy-bench\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n",
                self.authority
            )
            .into_bytes(),
        };
        if method == Method::Post {
            // {"data":"xxx…"}, exactly BODY bytes.
            let fill = BODY - r#"{"data":""}"#.len();
            r.extend_from_slice(br#"{"data":""#);
            r.extend(std::iter::repeat_n(b'x', fill));
            r.extend_from_slice(br#""}"#);
        }
        r
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        let mut tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        if let Route::Connect = self.route {
            let req = format!(
                "CONNECT {a} HTTP/1.1\r\nHost: {a}\r\nUser-Agent: proxy-bench\r\n\r\n",
                a = self.authority
            );
            tcp.write_all(req.as_bytes()).await?;
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                if tcp.read_buf(&mut buf).await? == 0 {
                    bail!("the proxy closed the connection after CONNECT");
                }
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(n) = resp.parse(&buf)? {
                    if resp.code != Some(200) {
                        bail!("CONNECT answered {:?}", resp.code);
                    }
                    if buf.len() != n {
                        bail!("bytes after the CONNECT answer");
                    }
                    break;
                }
            }
        }
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((cfg, name)) => {
                let s = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                Ok(Box::new(s))
            }
        }
    }
}

/// Reads one response; returns its status and whether the connection may be reused.
async fn read_response(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> Result<(u16, bool)> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf)? {
                httparse::Status::Complete(n) => {
                    let code = resp.code.unwrap_or(0);
                    let mut len = None;
                    let mut chunked = false;
                    let mut keep = resp.version == Some(1);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                            if v.contains("close") {
                                keep = false;
                            } else if v.contains("keep-alive") {
                                keep = true;
                            }
                        }
                    }
                    Some((n, code, len, chunked, keep))
                }
                httparse::Status::Partial => None,
            }
        };
        match parsed {
            None => {
                if io.read_buf(buf).await? == 0 {
                    if buf.is_empty() {
                        return Err(Stale.into());
                    }
                    bail!("connection closed mid-head");
                }
            }
            Some((n, code, len, chunked, keep)) => {
                buf.advance(n);
                if code == 204 || code == 304 || (100..200).contains(&code) {
                    return Ok((code, keep));
                }
                if let Some(len) = len {
                    while buf.len() < len {
                        if io.read_buf(buf).await? == 0 {
                            bail!("connection closed mid-body");
                        }
                    }
                    buf.advance(len);
                    return Ok((code, keep));
                }
                if chunked {
                    read_chunked(io, buf).await?;
                    return Ok((code, keep));
                }
                // Delimited by close.
                while io.read_buf(buf).await? != 0 {
                    buf.clear();
                }
                buf.clear();
                return Ok((code, false));
            }
        }
    }
}

async fn read_chunked(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> Result<()> {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if io.read_buf(buf).await? == 0 {
                bail!("connection closed mid-chunk");
            }
        };
        let size_text = std::str::from_utf8(&buf[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)?;
        buf.advance(line_end + 2);
        // The chunk and its CRLF (for the last chunk: the empty trailer's CRLF).
        while buf.len() < size + 2 {
            if io.read_buf(buf).await? == 0 {
                bail!("connection closed mid-chunk");
            }
        }
        buf.advance(size + 2);
        if size == 0 {
            return Ok(());
        }
    }
}

#[derive(Default)]
struct Tally {
    lat_ns: Vec<u64>,
    errors: u64,
    connects: u64,
    first_error: Option<String>,
}

async fn one_connection(
    target: Arc<Target>,
    request: Arc<Vec<u8>>,
    from: Instant,
    until: Instant,
) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Box<dyn Io>> = None;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let r: Result<(u16, bool)> = async {
            loop {
                let fresh = conn.is_none();
                if fresh {
                    t.connects += 1;
                    conn = Some(target.connect().await?);
                    buf.clear();
                }
                let io = conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
                let r = match io.write_all(&request).await {
                    Ok(()) => read_response(io, &mut buf).await,
                    Err(e) if !fresh => Err(anyhow::Error::new(Stale).context(e)),
                    Err(e) => Err(e.into()),
                };
                match r {
                    Err(e) if !fresh && e.is::<Stale>() => conn = None,
                    r => return r,
                }
            }
        }
        .await;
        let done = Instant::now();
        match r {
            Ok((status, keep)) => {
                if status != 200 {
                    t.errors += 1;
                    t.first_error
                        .get_or_insert_with(|| format!("status {status}"));
                } else if done >= from && done < until {
                    t.lat_ns
                        .push(u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX));
                }
                if !keep {
                    conn = None;
                }
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
                conn = None;
                if t.errors > 100 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// One request, checked: 200 and a 1 KiB body.
pub(crate) async fn probe(target: &Target, method: Method) -> Result<()> {
    let mut io = target.connect().await?;
    io.write_all(&target.request(method)).await?;
    let mut buf = BytesMut::new();
    let (status, _) = read_response(&mut io, &mut buf).await?;
    if status != 200 {
        bail!("answered {status}");
    }
    Ok(())
}

/// Runs `plan` against `target` on the current runtime, and accounts the
/// CPU time of `pids` over the measured window.
pub(crate) async fn measure(target: &Target, plan: Plan, pids: &[u32]) -> Outcome {
    let ticks = clock_ticks();
    let target = Arc::new(target.clone());
    let request = Arc::new(target.request(plan.method));
    let start = Instant::now();
    let from = start + plan.warmup;
    let until = from + plan.duration;
    let tasks: Vec<_> = (0..plan.conns)
        .map(|_| {
            tokio::spawn(one_connection(
                Arc::clone(&target),
                Arc::clone(&request),
                from,
                until,
            ))
        })
        .collect();
    let pids_owned = pids.to_vec();
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let before: Vec<f64> = pids_owned.iter().map(|p| cpu_seconds(*p, ticks)).collect();
        tokio::time::sleep_until(until.into()).await;
        pids_owned
            .iter()
            .zip(before)
            .map(|(p, b)| cpu_seconds(*p, ticks) - b)
            .collect::<Vec<f64>>()
    });
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => {
                all.lat_ns.extend(t.lat_ns);
                all.errors += t.errors;
                all.connects += t.connects;
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    all.lat_ns.sort_unstable();
    let n = all.lat_ns.len();
    let cpu = cpu.await.unwrap_or_default();
    Outcome {
        rps: n as f64 / plan.duration.as_secs_f64(),
        p50_us: percentile(&all.lat_ns, 0.50),
        p99_us: percentile(&all.lat_ns, 0.99),
        errors: all.errors,
        connects: all.connects,
        first_error: all.first_error,
        cpu_us: cpu.iter().map(|s| s * 1e6 / n as f64).collect(),
    }
}

/// The nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil();
    // `rank` is in 1..=len: index it without a float-to-int cast.
    let idx = sorted
        .iter()
        .enumerate()
        .position(|(i, _)| (i + 1) as f64 >= rank)
        .unwrap_or(sorted.len() - 1);
    sorted[idx] as f64 / 1000.0
}

/// The floor under a durable decision: `write(2)` of an audit-sized record
/// (700 bytes) then `fdatasync(2)`, back to back for `plan.duration`, in
/// `dir` (where the audit logs are), on a blocking thread.
pub(crate) fn fsync_floor(dir: &std::path::Path, plan: Plan) -> Outcome {
    use std::io::Write as _;
    let path = dir.join("fsync-floor.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            return Outcome {
                errors: 1,
                first_error: Some(format!("{}: {e}", path.display())),
                ..Outcome::default()
            };
        }
    };
    let mut record = vec![b'x'; 699];
    record.push(b'\n');
    let start = Instant::now();
    let from = start + plan.warmup;
    let until = from + plan.duration;
    let mut lat = Vec::new();
    let mut t = Tally::default();
    loop {
        let s = Instant::now();
        if s >= until {
            break;
        }
        let r = file.write_all(&record).and_then(|()| file.sync_data());
        let done = Instant::now();
        match r {
            Ok(()) if done >= from => {
                lat.push(u64::try_from((done - s).as_nanos()).unwrap_or(u64::MAX));
            }
            Ok(()) => {}
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    lat.sort_unstable();
    Outcome {
        rps: lat.len() as f64 / plan.duration.as_secs_f64(),
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        errors: t.errors,
        connects: 0,
        first_error: t.first_error,
        cpu_us: Vec::new(),
    }
}
