//! A small blocking HTTP/1.1 client for the sinks: `POST` a body, read the
//! status, keep the connection for the next batch when the server allows.
//!
//! Hand-written rather than a client crate because the sinks need one
//! request shape and no more: a `POST` with a `Content-Length` from one
//! background thread per sink, and every piece it needs is already in the
//! tree (`url` to parse, `rustls` with the webpki roots for `https://`, as
//! the proxy uses them). `ureq` would have added a dozen crates for the
//! same. The response is read only as far as framing requires (status,
//! headers, a `Content-Length` or chunked body, at most 1 MiB of it) and
//! thrown away.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

/// The most response body read (and discarded) before the connection is
/// dropped instead.
const MAX_RESPONSE_BODY: u64 = 1024 * 1024;
/// The longest status line or header line accepted.
const MAX_HEAD_LINE: u64 = 16 * 1024;

/// Where requests go: a parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, starting with `/`.
    pub(crate) path: String,
}

impl Target {
    /// Parses `url`; only `http` and `https` with a host, no user info.
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("{url:?}: scheme {other} is not http or https")),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!("{url:?}: user info in a sink URL is not supported"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = u
            .port_or_known_default()
            .ok_or_else(|| format!("{url:?} has no port"))?;
        let mut path = u.path().to_owned();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }

    /// The same server with `suffix` appended to the path (OTLP's
    /// `/v1/logs` after the endpoint), without doubling a `/`.
    pub(crate) fn join(&self, suffix: &str) -> Target {
        let mut t = self.clone();
        let base = t.path.trim_end_matches('/');
        t.path = format!("{base}{suffix}");
        t
    }

    fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection, kept between requests when the server allows it.
pub(crate) struct Client {
    target: Target,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<BufReader<Box<dyn Stream>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(target: Target, timeout: Duration) -> Result<Client, String> {
        let tls = if target.tls {
            Some(tls_config()?)
        } else {
            None
        };
        Ok(Client {
            target,
            timeout,
            tls,
            conn: None,
        })
    }

    /// Posts `body` as `content_type`; `Ok` on a 2xx status.
    pub(crate) fn post(&mut self, content_type: &str, body: &[u8]) -> Result<(), String> {
        // A kept connection the server closed meanwhile fails on first use:
        // try once more on a fresh one.
        let reused = self.conn.is_some();
        match self.try_post(content_type, body) {
            Err(e) if reused && e.retry_fresh => {
                self.try_post(content_type, body).map_err(|e| e.text)
            }
            other => other.map_err(|e| e.text),
        }
    }

    fn try_post(&mut self, content_type: &str, body: &[u8]) -> Result<(), PostError> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(self.connect().map_err(PostError::fatal)?));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(PostError::fatal("not connected".to_owned()));
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: blastwall-audit\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.target.path,
            self.target.host_header(),
            body.len()
        );
        let sent = conn
            .get_mut()
            .write_all(head.as_bytes())
            .and_then(|()| conn.get_mut().write_all(body))
            .and_then(|()| conn.get_mut().flush());
        if let Err(e) = sent {
            self.conn = None;
            return Err(PostError::fresh(format!("cannot send: {e}")));
        }
        let answer = read_response(conn);
        match answer {
            Ok((status, keep)) => {
                if !keep {
                    self.conn = None;
                }
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(PostError::fatal(format!("answered {status}")))
                }
            }
            Err(e) => {
                self.conn = None;
                let fresh = e.kind() == io::ErrorKind::UnexpectedEof;
                let text = format!("no answer: {e}");
                Err(if fresh {
                    PostError::fresh(text)
                } else {
                    PostError::fatal(text)
                })
            }
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let t = &self.target;
        let addrs = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", t.host))?;
        let mut last = format!("{} resolves to no address", t.host);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(tcp) => {
                    let setup = tcp
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| tcp.set_write_timeout(Some(self.timeout)))
                        .and_then(|()| tcp.set_nodelay(true));
                    if let Err(e) = setup {
                        last = format!("cannot set up the connection to {addr}: {e}");
                        continue;
                    }
                    return match &self.tls {
                        None => Ok(Box::new(tcp)),
                        Some(config) => {
                            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                                .map_err(|e| format!("{}: {e}", t.host))?;
                            let conn = rustls::ClientConnection::new(config.clone(), name)
                                .map_err(|e| format!("TLS to {}: {e}", t.host))?;
                            Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
                        }
                    };
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(last)
    }
}

struct PostError {
    text: String,
    /// The request may not have reached a live server: a new connection
    /// may succeed.
    retry_fresh: bool,
}

impl PostError {
    fn fatal(text: String) -> Self {
        PostError {
            text,
            retry_fresh: false,
        }
    }

    fn fresh(text: String) -> Self {
        PostError {
            text,
            retry_fresh: true,
        }
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| format!("cannot set up TLS: {e}"))
}

/// Reads one response: the status and whether the connection may be kept.
fn read_response<R: BufRead>(conn: &mut R) -> io::Result<(u16, bool)> {
    let mut line = String::new();
    read_head_line(conn, &mut line)?;
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_owned();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep = version == "HTTP/1.1";
    loop {
        read_head_line(conn, &mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((status, keep));
    }
    if chunked {
        let mut total = 0u64;
        loop {
            read_head_line(conn, &mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            total = total.saturating_add(size);
            if total > MAX_RESPONSE_BODY {
                return Ok((status, false));
            }
            io::copy(&mut conn.take(size), &mut io::sink())?;
            read_head_line(conn, &mut line)?;
            if size == 0 {
                return Ok((status, keep));
            }
        }
    }
    match length {
        Some(n) if n <= MAX_RESPONSE_BODY => {
            let got = io::copy(&mut conn.take(n), &mut io::sink())?;
            Ok((status, keep && got == n))
        }
        // Too long to read, or delimited by the end of the connection.
        _ => Ok((status, false)),
    }
}

fn read_head_line<R: BufRead>(conn: &mut R, line: &mut String) -> io::Result<()> {
    line.clear();
    let n = conn.take(MAX_HEAD_LINE).read_line(line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::{Target, read_response};

    #[test]
    fn targets_parse_and_join() -> Result<(), String> {
        let t = Target::parse("http://[::1]:4318")?;
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 4318, "/")
        );
        assert_eq!(t.host_header(), "[::1]:4318");
        assert_eq!(t.join("/v1/logs").path, "/v1/logs");
        let t = Target::parse("https://otel.example.com/base/?k=v")?;
        assert!(t.tls);
        assert_eq!(
            (t.port, t.host_header().as_str()),
            (443, "otel.example.com")
        );
        assert_eq!(t.path, "/base/?k=v");
        assert_eq!(
            Target::parse("http://c.example/otel/")?
                .join("/v1/traces")
                .path,
            "/otel/v1/traces"
        );
        assert!(Target::parse("unix:/run/x.sock").is_err());
        Ok(())
    }

    #[test]
    fn responses_are_framed() -> std::io::Result<()> {
        let mut r = Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 500 No\r\nConnection: close\r\n\r\n"[..]);
        assert_eq!(read_response(&mut r)?, (200, true));
        assert_eq!(read_response(&mut r)?, (500, false));
        let mut r = Cursor::new(&b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n"[..]);
        assert_eq!(read_response(&mut r)?, (202, true));
        // No length: delimited by the end of the connection, not kept.
        let mut r = Cursor::new(&b"HTTP/1.0 200 OK\r\n\r\nbody"[..]);
        assert_eq!(read_response(&mut r)?, (200, false));
        // Cut short.
        let mut r = Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-"[..]);
        assert!(read_response(&mut r).is_err());
        Ok(())
    }
}
