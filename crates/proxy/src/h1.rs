//! The agent's side of HTTP/1.1: request heads read with `httparse`, bodies
//! framed by `Content-Length` or chunked encoding, and anything a second
//! parser could read differently refused (DESIGN.md "no tricks through the
//! matcher"). Responses are written here too.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Limits;

/// A request head as the agent sent it.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub(crate) minor: u8,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The values of a header, by name (case-insensitive).
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The single value of a header.
    pub(crate) fn one<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Whether the agent asked to close after this exchange.
    pub(crate) fn wants_close(&self) -> bool {
        let conn_close = self
            .all("connection")
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        conn_close || self.minor == 0
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Why a request cannot be read; the connection is closed after the answer.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The agent closed the connection between requests.
    Closed,
    /// I/O failed or timed out.
    Io(std::io::Error),
    /// The request is malformed or ambiguous: refused with this reason and status.
    Refuse { status: u16, reason: String },
}

pub(crate) fn refuse(status: u16, reason: impl Into<String>) -> ReadError {
    ReadError::Refuse {
        status,
        reason: reason.into(),
    }
}

/// Request bytes the proxy holds at once, across every connection, in KiB
/// permits: a connection reserves before it reads a body and releases when
/// the exchange ends, so the agent cannot make the supervisor hold more
/// than the budget however many connections it opens.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    bytes: usize,
    wait: std::time::Duration,
}

impl Reservation {
    pub(crate) fn new(
        budget: std::sync::Arc<tokio::sync::Semaphore>,
        wait: std::time::Duration,
    ) -> Reservation {
        Reservation {
            budget,
            held: None,
            bytes: 0,
            wait,
        }
    }

    /// Reserves `more` bytes, waiting up to the reservation's wait.
    pub(crate) async fn grow(&mut self, more: usize) -> Result<(), ReadError> {
        let before = self.bytes.div_ceil(1024);
        self.bytes = self.bytes.saturating_add(more);
        let after = self.bytes.div_ceil(1024);
        let need = u32::try_from(after - before).unwrap_or(u32::MAX);
        if need == 0 {
            return Ok(());
        }
        let got = tokio::time::timeout(
            self.wait,
            std::sync::Arc::clone(&self.budget).acquire_many_owned(need),
        )
        .await;
        match got {
            Ok(Ok(p)) => {
                match &mut self.held {
                    Some(h) => h.merge(p),
                    None => self.held = Some(p),
                }
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(refuse(
                503,
                "the proxy holds as many request bytes as it may (other requests are waiting or being approved); retry later",
            )),
        }
    }
}

/// A buffered connection to the agent.
pub(crate) struct Conn<S> {
    pub(crate) io: S,
    pub(crate) buf: BytesMut,
    /// Whether the response being written is chunked.
    pub(crate) chunked_out: bool,
    /// A response head not written yet: it goes out with the first piece
    /// of the body, in one write.
    pub(crate) pending: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S) -> Conn<S> {
        Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            chunked_out: false,
            pending: Vec::new(),
        }
    }

    async fn fill(&mut self) -> Result<usize, ReadError> {
        self.io.read_buf(&mut self.buf).await.map_err(ReadError::Io)
    }

    /// Completes when the agent closes its side (or the connection fails)
    /// while a request is held. Bytes that arrive meanwhile (a pipelined
    /// request) are kept for later, up to `max` bytes; past that it
    /// completes too: a held request whose agent floods the connection is
    /// given up (abandoned) rather than watched blind.
    pub(crate) async fn wait_closed(&mut self, max: usize) {
        while self.buf.len() < max {
            match self.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Reads the next request head. Refuses obs-fold, bad header bytes,
    /// duplicate `Host`, `Content-Length` with `Transfer-Encoding`, repeated
    /// or malformed `Content-Length`, a transfer coding other than a lone
    /// `chunked`, and `Upgrade: h2c`.
    pub(crate) async fn read_head(
        &mut self,
        limits: &Limits,
    ) -> Result<(Head, Framing), ReadError> {
        loop {
            // Skip empty lines between requests (RFC 9112 §2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head_len = end + 4;
                if head_len > limits.max_head_bytes {
                    return Err(refuse(431, "request head too large"));
                }
                let head_bytes = self.buf.split_to(head_len);
                return parse_head(&head_bytes, limits);
            }
            if self.buf.len() > limits.max_head_bytes {
                return Err(refuse(431, "request head too large"));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Err(ReadError::Closed)
                } else {
                    Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }

    /// Reads the whole body, decoding chunked framing. Past `max` bytes the
    /// body is refused (413) and the connection must be closed. Every byte
    /// held is reserved in `held` first (the proxy's budget across all
    /// connections); when the budget stays exhausted the body is refused
    /// (503).
    pub(crate) async fn read_body(
        &mut self,
        framing: Framing,
        max: usize,
        held: &mut Reservation,
    ) -> Result<Vec<u8>, ReadError> {
        match framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => {
                let n = declared_within(n, max)?;
                held.grow(n).await?;
                while self.buf.len() < n {
                    if self.fill().await? == 0 {
                        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Ok(self.buf.split_to(n).to_vec())
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let line = self.read_line(1024).await?;
                    let size_part = line.split(|b| *b == b';').next().unwrap_or_default();
                    let size_str = std::str::from_utf8(size_part)
                        .map_err(|_| refuse(400, "bad chunk size"))?;
                    if size_str.is_empty() || !size_str.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(refuse(400, "bad chunk size"));
                    }
                    let size = usize::from_str_radix(size_str, 16)
                        .map_err(|_| refuse(400, "bad chunk size"))?;
                    if size == 0 {
                        // Trailers are read and dropped, bounded.
                        let mut total = 0usize;
                        loop {
                            let t = self.read_line(8 * 1024).await?;
                            total += t.len();
                            if total > 8 * 1024 {
                                return Err(refuse(431, "chunked trailers too large"));
                            }
                            if t.is_empty() {
                                return Ok(body);
                            }
                        }
                    }
                    if body.len().saturating_add(size) > max {
                        return Err(past_bound(max));
                    }
                    held.grow(size).await?;
                    while self.buf.len() < size + 2 {
                        if self.fill().await? == 0 {
                            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                        }
                    }
                    body.extend_from_slice(self.buf.get(..size).unwrap_or_default());
                    if self.buf.get(size..size + 2) != Some(b"\r\n") {
                        return Err(refuse(400, "chunk not followed by CRLF"));
                    }
                    self.buf.advance(size + 2);
                }
            }
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF). A bare LF is refused.
    async fn read_line(&mut self, max: usize) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                if i == 0 || self.buf.get(i - 1) != Some(&b'\r') {
                    return Err(refuse(400, "bare LF in chunked framing"));
                }
                let line = self.buf.split_to(i + 1);
                return Ok(line.get(..i - 1).unwrap_or_default().to_vec());
            }
            if self.buf.len() > max {
                return Err(refuse(400, "chunked framing line too long"));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Writes bytes and flushes.
    pub(crate) async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.io.write_all(b).await
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8], limits: &Limits) -> Result<(Head, Framing), ReadError> {
    // obs-fold: a header line that starts with a space or a tab.
    if bytes.windows(3).any(|w| w == b"\r\n " || w == b"\r\n\t") {
        return Err(refuse(
            400,
            "obsolete line folding (obs-fold) in the request head",
        ));
    }
    if bytes.contains(&b'\n')
        && bytes
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || bytes.get(i - 1) != Some(&b'\r')))
    {
        return Err(refuse(400, "bare LF in the request head"));
    }
    // Most heads fit the stack's 32 slots; a table of `max_headers` is
    // allocated only for a head with more (a 4 KiB allocation on every
    // request made malloc consolidate its free lists each time).
    let mut large: Vec<httparse::Header<'_>>;
    let mut small = [httparse::EMPTY_HEADER; 32];
    let n = limits.max_headers.min(small.len());
    let mut req = httparse::Request::new(small.get_mut(..n).unwrap_or_default());
    let mut parsed = req.parse(bytes);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && limits.max_headers > n {
        large = vec![httparse::EMPTY_HEADER; limits.max_headers];
        req = httparse::Request::new(&mut large);
        parsed = req.parse(bytes);
    }
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "too many request headers"));
        }
        Err(e) => return Err(refuse(400, format!("malformed request head: {e}"))),
    }
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default().to_owned();
    let minor = req.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| refuse(400, format!("header `{}` is not UTF-8", h.name)))?;
        if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(refuse(
                400,
                format!("header `{}` holds a control character", h.name),
            ));
        }
        headers.push((h.name.to_owned(), v.to_owned()));
    }
    let head = Head {
        method,
        target,
        minor,
        headers,
    };
    if head.all("host").count() > 1 {
        return Err(refuse(400, "duplicate Host header"));
    }
    let te: Vec<&str> = head.all("transfer-encoding").collect();
    let cl: Vec<&str> = head.all("content-length").collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err(refuse(
            400,
            "Content-Length and Transfer-Encoding together (request smuggling: two parsers could frame the body differently)",
        ));
    }
    if head
        .all("upgrade")
        .any(|v| v.to_ascii_lowercase().contains("h2c"))
        || head.one("http2-settings").is_some()
    {
        return Err(refuse(
            400,
            "Upgrade: h2c is refused (it would hide later requests from the proxy)",
        ));
    }
    let framing = if !te.is_empty() {
        if head.minor == 0 {
            return Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        if codings != ["chunked"] {
            return Err(refuse(
                400,
                format!(
                    "transfer coding `{}` refused: only a lone `chunked` is accepted",
                    te.join(", ")
                ),
            ));
        }
        Framing::Chunked
    } else {
        content_length(&cl)?.unwrap_or(Framing::None)
    };
    Ok((head, framing))
}

/// The framing the `Content-Length` values of a head say: `None` when there
/// is none; one value of digits only, else refused (HTTP/1.1 and HTTP/2).
pub(crate) fn content_length(values: &[&str]) -> Result<Option<Framing>, ReadError> {
    match values {
        [] => Ok(None),
        [v] => {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 18 {
                return Err(refuse(400, format!("bad Content-Length `{v}`")));
            }
            match v.parse::<u64>() {
                Ok(0) => Ok(Some(Framing::None)),
                Ok(n) => Ok(Some(Framing::Length(n))),
                Err(_) => Err(refuse(400, format!("bad Content-Length `{v}`"))),
            }
        }
        _ => Err(refuse(400, "repeated Content-Length header")),
    }
}

/// A body whose length is declared up front: refused (413) past `max`
/// before any of it is read.
pub(crate) fn declared_within(n: u64, max: usize) -> Result<usize, ReadError> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > max {
        return Err(refuse(
            413,
            format!("request body of {n} bytes is past the proxy's bound of {max}"),
        ));
    }
    Ok(n)
}

/// The refusal of a body that grew past `max` as it arrived (413).
pub(crate) fn past_bound(max: usize) -> ReadError {
    refuse(
        413,
        format!("request body is past the proxy's bound of {max} bytes"),
    )
}

/// A response to write to the agent.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// A short text response from the proxy itself.
    pub(crate) fn text(status: u16, request_id: Option<u64>, body: String) -> Reply {
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ),
            ("X-Blastwall".to_owned(), "refused".to_owned()),
        ];
        if let Some(id) = request_id {
            headers.push(("X-Blastwall-Request-Id".to_owned(), id.to_string()));
        }
        Reply {
            status,
            headers,
            body: body.into_bytes(),
        }
    }

    /// Serialises the head with a `Content-Length`, then the body.
    pub(crate) fn to_bytes(&self, close: bool, head_only: bool) -> Vec<u8> {
        let mut out = status_line(self.status);
        for (k, v) in &self.headers {
            push_header(&mut out, k, v);
        }
        push_header(&mut out, "Content-Length", &self.body.len().to_string());
        if close {
            push_header(&mut out, "Connection", "close");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub(crate) fn status_line(status: u16) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    format!("HTTP/1.1 {status} {reason}\r\n").into_bytes()
}

pub(crate) fn push_header(out: &mut Vec<u8>, k: &str, v: &str) {
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(v.as_bytes());
    out.extend_from_slice(b"\r\n");
}
