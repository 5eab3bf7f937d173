//! A small HTTP/1.1 server for the mocks: one thread per connection,
//! keep-alive, `Content-Length` and chunked bodies, optional TLS.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::ServerConfig;

use crate::{MockError, io_err};

/// The largest request head and body a mock reads.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as a mock sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked (not decompressed).
    pub body: Vec<u8>,
    /// Whether it came over TLS.
    pub tls: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string, without `?`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The headers as a JSON object (later headers of one name win).
    pub fn headers_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.headers {
            m.insert(k.to_ascii_lowercase(), v.clone().into());
        }
        m.into()
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers (`Content-Length` is added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            reason: reason(status).to_owned(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, "application/json", v.to_string())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// What answers requests.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server: stops (and joins its accept thread) when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    port: u16,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("port", &self.port).finish()
    }
}

impl Server {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Serves `handler` on `listener`, over TLS when `tls` is given.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    handler: Handler,
) -> Result<Server, MockError> {
    let port = listener
        .local_addr()
        .map_err(io_err("mock listener"))?
        .port();
    accept_loop(listener, move |stream| {
        let handler = Arc::clone(&handler);
        let tls = tls.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            match tls {
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    let s = rustls::StreamOwned::new(conn, stream);
                    serve_conn(s, true, &handler);
                }
                None => serve_conn(stream, false, &handler),
            }
        });
    })
    .map(|(stop, accept)| Server {
        stop,
        accept: Some(accept),
        port,
    })
}

/// Accepts on `listener` (non-blocking, polled, so that dropping the
/// server stops it even when the listener lives in another network
/// namespace) and hands each connection to `each`.
pub(crate) fn accept_loop(
    listener: TcpListener,
    each: impl Fn(TcpStream) + Send + 'static,
) -> Result<(Arc<AtomicBool>, JoinHandle<()>), MockError> {
    listener
        .set_nonblocking(true)
        .map_err(io_err("mock listener"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let t = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(false).is_ok() {
                        each(s);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Ok((stop, t))
}

fn serve_conn<S: Read + Write>(stream: S, tls: bool, handler: &Handler) {
    let mut r = BufReader::new(stream);
    loop {
        let req = match read_request(&mut r, tls) {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let w = r.get_mut();
        if w.write_all(head.as_bytes()).is_err()
            || w.write_all(&resp.body).is_err()
            || w.flush().is_err()
        {
            return;
        }
        if close {
            return;
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// One line without its end; `None` at the end of the stream.
fn line_opt<R: std::io::BufRead>(r: &mut R, budget: &mut usize) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r
        .take(u64::try_from(*budget).unwrap_or(0))
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    *budget = budget.saturating_sub(n);
    if !buf.ends_with(b"\n") {
        return Err(bad("request head too long"));
    }
    Ok(Some(
        String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    ))
}

fn read_line_limited<R: std::io::BufRead>(
    r: &mut R,
    budget: &mut usize,
) -> std::io::Result<String> {
    line_opt(r, budget)?.ok_or_else(|| bad("connection closed mid-request"))
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request<S: Read + Write>(
    r: &mut BufReader<S>,
    tls: bool,
) -> std::io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    let line = loop {
        match line_opt(r, &mut budget)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    if method.is_empty() || target.is_empty() {
        return Err(bad("bad request line"));
    }
    let mut headers = Vec::new();
    loop {
        let l = read_line_limited(r, &mut budget)?;
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad("bad header line"));
        };
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        tls,
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let w = r.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut b = MAX_HEAD;
            let size_line = read_line_limited(r, &mut b)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !read_line_limited(r, &mut b)?.is_empty() {}
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            let _ = read_line_limited(r, &mut b)?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// Decodes a body by its `Content-Encoding` (gzip, deflate), else returns
/// it as it is.
pub fn decoded_body(req: &Request) -> Vec<u8> {
    let enc = req
        .header("content-encoding")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let ok = match enc.as_str() {
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&req.body[..])
            .take(u64::try_from(MAX_BODY).unwrap_or(u64::MAX))
            .read_to_end(&mut out)
            .is_ok(),
        "deflate" => flate2::read::ZlibDecoder::new(&req.body[..])
            .take(u64::try_from(MAX_BODY).unwrap_or(u64::MAX))
            .read_to_end(&mut out)
            .is_ok(),
        _ => false,
    };
    if ok { out } else { req.body.clone() }
}
