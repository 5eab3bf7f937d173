//! The connection loop: accept, read each request, decide it through the
//! gate, forward it or refuse it.

use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use blastwall_classify::graphql::{self, Inspection, Opaque};
use blastwall_gate::{Gate, Refusal, Release, summarize};
use blastwall_policy::{Action, HostName, NetAction, Policy, Resolve, Scheme, Verdict};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::agent::{Agent, BodyLen};
use crate::creds::{self, BoundCredential, Misuse, Plan, Scrub};
use crate::decode::{DecodeError, decode};
use crate::error::{Fault, ProxyError, ProxyRefusal};
use crate::h1::{Conn, Framing, Head, ReadError, Reply, Reservation};
use crate::upstream::{self, ResolveError, Stream, Target};
use crate::{Intercept, Limits, ProxyConfig, SessionCa};

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) gate: Arc<Gate>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) creds: Vec<BoundCredential>,
    pub(crate) ca: SessionCa,
    /// Upstream TLS offering `h2` and `http/1.1`.
    client_tls: Arc<ClientConfig>,
    /// Upstream TLS offering `http/1.1` only (WebSocket handshakes).
    client_tls_h1: Arc<ClientConfig>,
    resolve: Vec<Resolve>,
    limits: Limits,
    intercept: Intercept,
    conns: Arc<Semaphore>,
    /// Request bytes held across connections, in KiB (see [`Limits::max_held_bytes`]).
    held: Arc<Semaphore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .field("intercept", &self.intercept)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(cfg: ProxyConfig) -> Result<Shared, ProxyError> {
        for (i, c) in cfg.credentials.iter().enumerate() {
            if c.placeholder.len() < 16 {
                return Err(ProxyError::Credential {
                    name: c.cred.name.clone(),
                    why: "the placeholder is shorter than 16 characters".into(),
                });
            }
            if c.secret.is_empty() {
                return Err(ProxyError::Credential {
                    name: c.cred.name.clone(),
                    why: "the real value is empty".into(),
                });
            }
            if cfg.credentials.iter().skip(i + 1).any(|o| {
                o.placeholder.contains(&c.placeholder) || c.placeholder.contains(&o.placeholder)
            }) {
                return Err(ProxyError::Credential {
                    name: c.cred.name.clone(),
                    why: "its placeholder overlaps another credential's".into(),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let constraints = match &cfg.intercept {
            Intercept::All => None,
            Intercept::Only(list) => Some(list.as_slice()),
        };
        let ca = SessionCa::new(constraints, Arc::clone(&provider))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for c in &cfg.extra_roots {
            roots
                .add(c.clone())
                .map_err(|e| ProxyError::Tls(format!("an upstream CA is not usable: {e}")))?;
        }
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client_h1 = client.clone();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        client_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Shared {
            gate: cfg.gate,
            policy: cfg.policy,
            creds: cfg.credentials,
            ca,
            client_tls: Arc::new(client),
            client_tls_h1: Arc::new(client_h1),
            resolve: cfg.resolve,
            conns: Arc::new(Semaphore::new(cfg.limits.max_connections.max(1))),
            held: Arc::new(Semaphore::new(
                cfg.limits
                    .max_held_bytes
                    .div_ceil(1024)
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            limits: cfg.limits,
            intercept: cfg.intercept,
        })
    }
}

/// How agent connections reach an accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// The proxy port: absolute-form requests and CONNECT.
    Proxy,
    /// Straight to port `port`, TLS: the SNI names the host.
    Tls { port: u16 },
    /// Straight to port `port`, plain HTTP: each `Host` header names it.
    Http { port: u16 },
    /// Straight to port `port`, TLS or plain HTTP, told apart by the first
    /// byte (a TLS handshake record starts with 0x16).
    Sniff { port: u16 },
}

pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    entry: Entry,
) -> Result<(), ProxyError> {
    listener.set_nonblocking(true).map_err(ProxyError::Listen)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ProxyError::Listen)?;
    loop {
        let permit = Arc::clone(&shared.conns)
            .acquire_owned()
            .await
            .map_err(|_| ProxyError::Listen(std::io::Error::other("connection limit closed")))?;
        let sock = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("proxy accept failed: {e}");
                // EMFILE and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            match entry {
                Entry::Proxy => s.serve_plain(sock).await,
                Entry::Tls { port } => s.serve_transparent_tls(sock, port).await,
                Entry::Http { port } => {
                    let mut conn = Conn::new(sock);
                    let _ = s.serve_requests(&mut conn, &Via::Origin { port }).await;
                }
                Entry::Sniff { port } => {
                    let mut first = [0u8; 1];
                    let peeked =
                        tokio::time::timeout(s.limits.idle_timeout, sock.peek(&mut first)).await;
                    match peeked {
                        Ok(Ok(1)) if first[0] == 0x16 => s.serve_transparent_tls(sock, port).await,
                        Ok(Ok(1)) => {
                            let mut conn = Conn::new(sock);
                            let _ = s.serve_requests(&mut conn, &Via::Origin { port }).await;
                        }
                        _ => {}
                    }
                }
            }
        });
    }
}

/// How the agent reached this connection.
#[derive(Debug, Clone)]
enum Via {
    /// Straight to the proxy: absolute-form requests, or CONNECT.
    Plain,
    /// Inside an intercepted CONNECT tunnel (or a TLS connection made
    /// straight to the port, named by its SNI) to this host and port.
    Tunnel { host: HostName, port: u16 },
    /// Plain HTTP made straight to this port (a program that ignores the
    /// proxy variables): origin-form requests, the `Host` header names the host.
    Origin { port: u16 },
}

/// A cached upstream connection of one agent connection.
struct Upstream {
    key: (Scheme, HostName, u16),
    target: Target,
    sender: Sender,
}

impl Upstream {
    /// Another handle on an HTTP/2 connection, which carries many requests
    /// at once; an HTTP/1.1 connection carries one and is not shared.
    fn share(&self) -> Option<Upstream> {
        match &self.sender {
            Sender::H2(s) => Some(Upstream {
                key: self.key.clone(),
                target: self.target,
                sender: Sender::H2(s.clone()),
            }),
            Sender::H1(_) => None,
        }
    }
}

/// The streams in flight on one HTTP/2 connection, and since when none is.
#[derive(Debug)]
struct Activity {
    open: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            open: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

/// A stream in flight: counted until dropped.
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(PoisonError::into_inner) = std::time::Instant::now();
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Activity {
    fn open(this: &Arc<Activity>) -> OpenStream {
        this.open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OpenStream(Arc::clone(this))
    }

    fn idle_since(&self) -> std::time::Instant {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection may next have been idle for `d`.
    fn next_check(&self, d: std::time::Duration) -> std::time::Instant {
        if self.open.load(std::sync::atomic::Ordering::Acquire) > 0 {
            std::time::Instant::now() + d
        } else {
            self.idle_since() + d
        }
    }

    fn is_idle_for(&self, d: std::time::Duration) -> bool {
        self.open.load(std::sync::atomic::Ordering::Acquire) == 0
            && self.idle_since().elapsed() >= d
    }
}

/// The client half of an upstream connection: HTTP/2 when the upstream's
/// TLS handshake chose it by ALPN, HTTP/1.1 otherwise.
enum Sender {
    H1(SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    async fn send(
        &mut self,
        mut req: http::Request<Full<Bytes>>,
        scheme: Scheme,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => {
                // HTTP/2 names the host in `:authority`, taken from an
                // absolute URI; `Host` would say it twice.
                let authority = req
                    .headers_mut()
                    .remove(http::header::HOST)
                    .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = Some(match scheme {
                    Scheme::Http => http::uri::Scheme::HTTP,
                    Scheme::Https => http::uri::Scheme::HTTPS,
                });
                parts.authority = authority;
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
                s.send_request(req).await
            }
        }
    }
}

/// The outcome of a request that went out: the upstream's status and the
/// address it was sent to.
#[derive(serde::Serialize)]
struct Forwarded {
    status: u16,
    upstream: std::net::SocketAddr,
}

/// Streams an agent may have open at once on one HTTP/2 connection.
const H2_MAX_STREAMS: u32 = 100;

/// Idle upstream connections kept for the streams of one HTTP/2 connection.
const H2_IDLE_UPSTREAMS: usize = 8;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
    "host",
];

impl Shared {
    /// A TLS connection made straight to `port` inside the wall: the SNI
    /// names the host; intercepted with the session CA, then each request
    /// is decided like any other. No SNI, no service: the host is unknown.
    async fn serve_transparent_tls(self: &Arc<Self>, sock: TcpStream, port: u16) {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock);
        let Ok(Ok(start)) = tokio::time::timeout(self.limits.connect_timeout, acceptor).await
        else {
            return;
        };
        let sni = start.client_hello().server_name().map(str::to_owned);
        let Some(host) = sni.as_deref().and_then(|s| HostName::parse(s).ok()) else {
            let _ = self.proxy_refusal(
                "proxy.transparent",
                400,
                Fault::Agent,
                "a TLS connection made straight to a port inside the wall must name its host (SNI); this one does not".into(),
                format!("TLS to port {port} without SNI"),
                json!({}),
            );
            return;
        };
        let line = format!("TLS to {host}:{port}");
        self.intercept(start, host, port, line).await;
    }

    /// Finishes a TLS handshake as `host` with the session CA, then serves
    /// the requests inside, each decided on its own.
    async fn intercept<IO>(
        self: &Arc<Self>,
        start: tokio_rustls::StartHandshake<IO>,
        host: HostName,
        port: u16,
        line: String,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = match self.ca.server_config(&host) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.proxy_refusal(
                    "proxy.tls",
                    502,
                    Fault::Blastwall,
                    e.to_string(),
                    line,
                    json!({}),
                );
                return;
            }
        };
        let Ok(Ok(tls)) =
            tokio::time::timeout(self.limits.connect_timeout, start.into_stream(cfg)).await
        else {
            return;
        };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            self.serve_h2(tls, host, port).await;
            return;
        }
        let mut inner = Conn::new(tls);
        let _ = self
            .serve_requests(&mut inner, &Via::Tunnel { host, port })
            .await;
    }

    /// HTTP/2 inside an intercepted tunnel to `host:port`: every stream is
    /// its own exchange, decided on its own, run as a task of its own so
    /// that one held for approval does not hold up the others. Upstream
    /// connections (HTTP/1.1, one request at a time) are kept in a small
    /// pool of the agent connection's.
    async fn serve_h2<IO>(self: &Arc<Self>, tls: IO, host: HostName, port: u16)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let via = Arc::new(Via::Tunnel { host, port });
        let pool: Arc<std::sync::Mutex<Vec<Upstream>>> = Arc::default();
        let activity = Arc::new(Activity::default());
        let shared = Arc::clone(self);
        let streams = Arc::clone(&activity);
        // hyper bounds the streams open at once; a stream the agent resets
        // is closed for hyper while its exchange still runs here. These
        // slots bound the exchanges themselves.
        let slots = Arc::new(tokio::sync::Semaphore::new(H2_MAX_STREAMS as usize));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (s, via, pool) = (Arc::clone(&shared), Arc::clone(&via), Arc::clone(&pool));
                let open = Activity::open(&streams);
                let slot = Arc::clone(&slots).try_acquire_owned().ok();
                tokio::spawn(async move {
                    s.h2_stream(req, tx, &via, &pool, slot).await;
                    drop(open);
                });
                async move {
                    // The stream's task always answers; if it failed before
                    // that, the stream gets a bare 502.
                    Ok::<_, std::convert::Infallible>(rx.await.unwrap_or_else(|_| {
                        let mut r = http::Response::new(crate::h2::OutBody::Empty);
                        *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                        r
                    }))
                }
            });
        let mut builder =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(u32::try_from(self.limits.max_head_bytes).unwrap_or(u32::MAX))
            .max_send_buf_size(256 * 1024);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
        tokio::pin!(conn);
        // As on HTTP/1.1, a connection with nothing in flight for the idle
        // timeout is closed (GOAWAY, then the streams already open finish).
        let idle = self.limits.idle_timeout;
        loop {
            let wake = activity.next_check(idle);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = tokio::time::sleep_until(wake.into()) => {
                    if activity.is_idle_for(idle) {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                        return;
                    }
                }
            }
        }
    }

    /// One HTTP/2 stream, start to end.
    async fn h2_stream(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        reply: tokio::sync::oneshot::Sender<http::Response<crate::h2::OutBody>>,
        via: &Via,
        pool: &std::sync::Mutex<Vec<Upstream>>,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let (parts, body) = req.into_parts();
        let read = crate::h2::head(&parts, &body, self.limits.max_headers);
        let head_only = parts.method == http::Method::HEAD;
        let mut stream = crate::h2::Stream::new(body, reply);
        if slot.is_none() {
            let r = self.proxy_refusal(
                "proxy.streams",
                503,
                Fault::Agent,
                format!(
                    "more than {H2_MAX_STREAMS} exchanges in flight on one connection (a stream reset by the agent counts until its exchange ends)"
                ),
                format!("{} {} (HTTP/2)", parts.method, parts.uri),
                json!({}),
            );
            let _ = self.send_refusal(&mut stream, &r, true, head_only).await;
            return;
        }
        let (head, framing) = match read {
            Ok(x) => x,
            Err(e) => {
                let (status, reason) = match e {
                    ReadError::Refuse { status, reason } => (status, reason),
                    ReadError::Closed | ReadError::Io(_) => (400, "a malformed request".into()),
                };
                self.refuse_framing(
                    &mut stream,
                    status,
                    reason,
                    format!("{} {} (HTTP/2)", parts.method, parts.uri),
                    head_only,
                )
                .await;
                return;
            }
        };
        if head.method == "CONNECT" {
            self.refuse_framing(
                &mut stream,
                400,
                "CONNECT inside a tunnel".into(),
                format!("CONNECT {} (HTTP/2)", head.target),
                head_only,
            )
            .await;
            return;
        }
        let mut upstream = {
            let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|u| !u.sender.is_closed());
            match idle.iter().find_map(Upstream::share) {
                Some(shared) => Some(shared),
                None => idle.pop(),
            }
        };
        let _ = self
            .exchange(&mut stream, &head, framing, via, &mut upstream)
            .await;
        if let Some(u) = upstream.filter(|u| !u.sender.is_closed()) {
            let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
            let known = matches!(u.sender, Sender::H2(_))
                && idle.iter().any(|i| matches!(i.sender, Sender::H2(_)));
            if !known && idle.len() < H2_IDLE_UPSTREAMS {
                idle.push(u);
            }
        }
    }

    async fn serve_plain(self: &Arc<Self>, sock: TcpStream) {
        let mut conn = Conn::new(sock);
        if let Some((head, _)) = self.serve_requests(&mut conn, &Via::Plain).await {
            self.connect(conn, head).await;
        }
    }

    /// Serves requests until the connection ends; returns a CONNECT head
    /// (with its framing) when one arrives on a plain connection.
    async fn serve_requests<S>(
        self: &Arc<Self>,
        conn: &mut Conn<S>,
        via: &Via,
    ) -> Option<(Head, Framing)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut upstream: Option<Upstream> = None;
        loop {
            let read =
                tokio::time::timeout(self.limits.idle_timeout, conn.read_head(&self.limits)).await;
            let (head, framing) = match read {
                Err(_) | Ok(Err(ReadError::Closed)) => return None,
                Ok(Err(ReadError::Io(e))) => {
                    tracing::debug!("agent connection ended mid-request: {e}");
                    return None;
                }
                Ok(Err(ReadError::Refuse { status, reason })) => {
                    self.refuse_framing(
                        conn,
                        status,
                        reason,
                        "a malformed or ambiguous request".into(),
                        false,
                    )
                    .await;
                    return None;
                }
                Ok(Ok(x)) => x,
            };
            if head.method == "CONNECT" {
                match via {
                    Via::Plain => return Some((head, framing)),
                    Via::Tunnel { .. } | Via::Origin { .. } => {
                        self.refuse_framing(
                            conn,
                            400,
                            "CONNECT inside a tunnel".into(),
                            format!("CONNECT {}", head.target),
                            false,
                        )
                        .await;
                        return None;
                    }
                }
            }
            let close = head.wants_close();
            let keep = self
                .exchange(conn, &head, framing, via, &mut upstream)
                .await;
            if !keep || close {
                let _ = conn.flush().await;
                return None;
            }
        }
    }

    /// One request and its response. Returns whether the connection may
    /// carry another request.
    async fn exchange<A: Agent>(
        self: &Arc<Self>,
        conn: &mut A,
        head: &Head,
        framing: Framing,
        via: &Via,
        upstream: &mut Option<Upstream>,
    ) -> bool {
        let head_only = head.method == "HEAD";
        let line = format!("{} {}", head.method, head.target);
        // 1. The URL.
        let url = match via {
            Via::Plain => {
                let lower = head.target.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    self.refuse_framing(
                        conn,
                        400,
                        "a proxy request needs an absolute URL (http://host/path) or CONNECT"
                            .into(),
                        line,
                        head_only,
                    )
                    .await;
                    return false;
                }
                head.target.clone()
            }
            Via::Tunnel { host, port } => {
                if !head.target.starts_with('/') {
                    self.refuse_framing(
                        conn,
                        400,
                        "inside a tunnel a request target must be a path (/…)".into(),
                        line,
                        head_only,
                    )
                    .await;
                    return false;
                }
                format!("https://{host}:{port}{}", head.target)
            }
            Via::Origin { port } => {
                let named = head.one("host").and_then(|h| {
                    let (host, p) = match parse_authority(h) {
                        Some((host, p)) => (host, p),
                        None => (HostName::parse(h).ok()?, *port),
                    };
                    (p == *port).then_some(host)
                });
                let Some(host) = named.filter(|_| head.target.starts_with('/')) else {
                    self.refuse_framing(conn, 400, format!(
                            "a request made straight to port {port} needs a path and a Host header naming a host on that port"
                        ), line, head_only)
                    .await;
                    return false;
                };
                format!("http://{host}:{port}{}", head.target)
            }
        };
        // 2. The body, whole and bounded.
        if framing != Framing::None
            && head
                .one("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && !conn.send_continue().await
        {
            return false;
        }
        let mut held = Reservation::new(Arc::clone(&self.held), self.limits.connect_timeout);
        // A body that stops arriving must not hold its reserved bytes; it
        // is refused like any request the proxy cannot read whole.
        let body = tokio::time::timeout(
            self.limits.idle_timeout,
            conn.read_body(framing, self.limits.max_request_body, &mut held),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ReadError::Refuse {
                status: 408,
                reason: format!(
                    "the request's body stopped arriving for {} s",
                    self.limits.idle_timeout.as_secs()
                ),
            })
        });
        let raw = match body {
            Ok(b) => b,
            Err(ReadError::Refuse { status, reason }) => {
                self.refuse_framing(conn, status, reason, line, head_only)
                    .await;
                return false;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return false,
        };
        // 3. The action, with the body decoded for inspection.
        let has_body = framing != Framing::None;
        let decoded = if has_body {
            decode(head.all("content-encoding"), &raw, graphql::MAX_BODY)
        } else {
            Ok(None)
        };
        let (inspect, opaque): (Option<&[u8]>, Option<Opaque>) = match &decoded {
            Ok(None) => (has_body.then_some(raw.as_slice()), None),
            Ok(Some(d)) => (Some(d.as_slice()), None),
            Err(DecodeError::TooLarge) => (None, Some(Opaque::TooLarge)),
            Err(DecodeError::Unsupported(c)) => (
                None,
                Some(Opaque::NotJson(format!(
                    "content coding `{c}` is not decoded by the proxy"
                ))),
            ),
            Err(DecodeError::Corrupt(e)) => (
                None,
                Some(Opaque::NotJson(format!(
                    "the coded body does not decode: {e}"
                ))),
            ),
        };
        let mut action = match NetAction::from_request(&head.method, &url, &head.headers, inspect) {
            Ok(a) => a,
            Err(e) => {
                let r = self.proxy_refusal(
                    "proxy.request",
                    400,
                    Fault::Agent,
                    e.to_string(),
                    line,
                    json!({}),
                );
                return self.send_refusal(conn, &r, false, head_only).await;
            }
        };
        if has_body {
            action.body_digest = Some(digest(&raw));
        }
        if let Some(reason) = opaque
            && self
                .policy
                .needs_body(&action.host, action.port, &action.method, &action.path)
        {
            action.graphql = Some(Inspection::Opaque { reason });
        }
        // One owned action for the gate; `action` reads it from here on.
        let act = Action::Net(action);
        let Action::Net(action) = &act else {
            return false;
        };
        let summary = summarize(&act);
        // A git push's capabilities, from the decoded body (git gzips
        // bodies over 1 KiB): a refusal is answered in git's terms.
        let push_caps: Vec<String> = if action.git_push.is_some() {
            let plain = match &decoded {
                Ok(Some(d)) => d.as_slice(),
                _ => raw.as_slice(),
            };
            blastwall_classify::git::receive_pack_capabilities(plain)
        } else {
            Vec::new()
        };
        // 4. Host agreement: the Host header names the URL's host and port.
        if let Some(h) = head.one("host")
            && !host_agrees(h, action)
        {
            let r = self.proxy_refusal(
                "proxy.host-mismatch",
                400,
                Fault::Agent,
                format!(
                    "the Host header `{h}` does not name {}:{} (the URL or CONNECT target)",
                    action.host, action.port
                ),
                summary,
                json!({}),
            );
            return self.send_refusal(conn, &r, false, head_only).await;
        }
        // 5. Credentials.
        let mut bodies: Vec<&[u8]> = vec![raw.as_slice()];
        if let Ok(Some(d)) = &decoded {
            bodies.push(d.as_slice());
        }
        let plan = match creds::plan(
            &self.creds,
            &action.host,
            &action.path,
            action.query.as_deref(),
            &head.headers,
            &bodies,
        ) {
            Ok(p) => p,
            Err(m) => {
                let r = self.misuse(m, summary);
                return self.send_refusal(conn, &r, false, head_only).await;
            }
        };
        // 5b. A real secret goes out over TLS only, unless the manifest
        // declared the host as a local address (a mock on this machine's
        // loopback): cleartext would show it to anyone on the path.
        if plan.injects() && action.scheme == Scheme::Http && !self.local(action) {
            let r = self.proxy_refusal(
                "proxy.cleartext-credential",
                403,
                Fault::Agent,
                format!(
                    "a credential is injected only over https; {}:{} is plain http and not a local address declared in [network.resolve]",
                    action.host, action.port
                ),
                summary,
                json!({}),
            );
            return self.send_refusal(conn, &r, false, head_only).await;
        }
        // 6. Decide (write-ahead; durable first when it has side effects).
        // A WebSocket opens a channel nothing inspects: as durable first as
        // any write.
        let websocket = is_websocket(head);
        let side_effects = blastwall_gate::side_effects(&act) || plan.injects() || websocket;
        let mut pinned: Option<Target> = None;
        let release = match self.check(&act, side_effects).await {
            Ok(r) => r,
            Err(refusal) if refusal.verdict == Verdict::Ask && refusal.approval.is_some() => {
                // 6a. Held for a person: the approval binds to the request
                // as it will be forwarded, to the address resolved now.
                let seq = refusal.request_id.unwrap_or_default();
                let target = match self.resolve(action, seq, &summary).await {
                    Ok(t) => t,
                    Err(r) => return self.send_refusal(conn, &r, false, head_only).await,
                };
                let digest = self.approval_digest(head, action, &plan, &raw, target.addr);
                let gate = Arc::clone(&self.gate);
                let (r2, a2) = (refusal.clone(), act.clone());
                let held = tokio::task::spawn_blocking(move || gate.hold(&r2, &a2, &digest)).await;
                let approval = match held {
                    Ok(Ok(a)) => a,
                    Ok(Err(r)) => {
                        return self
                            .send_push_aware(conn, &r, action, &push_caps, head_only)
                            .await;
                    }
                    Err(_) => {
                        return self
                            .send_push_aware(conn, &refusal, action, &push_caps, head_only)
                            .await;
                    }
                };
                match self
                    .gate
                    .wait(
                        &approval,
                        &refusal,
                        conn.wait_closed(self.limits.max_head_bytes),
                    )
                    .await
                {
                    Ok(r) => {
                        pinned = Some(target);
                        r
                    }
                    Err(r) => {
                        return self
                            .send_push_aware(conn, &r, action, &push_caps, head_only)
                            .await;
                    }
                }
            }
            Err(refusal) => {
                return self
                    .send_push_aware(conn, &refusal, action, &push_caps, head_only)
                    .await;
            }
        };
        // 7. Resolve, filter, connect (pinned), forward. An approved request
        // goes on a connection of its own to the address it was approved for.
        let key = (action.scheme, action.host.clone(), action.port);
        if pinned.is_some()
            || websocket
            || upstream
                .as_ref()
                .is_none_or(|u| u.key != key || u.sender.is_closed())
        {
            *upstream = None;
            let target = match pinned {
                Some(t) => t,
                None => match self.resolve(action, release.request_id, &summary).await {
                    Ok(t) => t,
                    Err(r) => return self.send_refusal(conn, &r, false, head_only).await,
                },
            };
            match self
                .open_upstream(action, target, &release, &summary, websocket)
                .await
            {
                Ok(u) => *upstream = Some(u),
                Err(r) => return self.send_refusal(conn, &r, false, head_only).await,
            }
        }
        let Some(up) = upstream.as_mut() else {
            return false;
        };
        if websocket && plan.bound_host {
            let r = self.after_release(
                &release,
                "proxy.websocket",
                403,
                Fault::Agent,
                "a WebSocket to a host with a bound credential is refused: its frames cannot be scanned for the credential's real value".into(),
                &summary,
            );
            return self.send_refusal(conn, &r, false, head_only).await;
        }
        let mut req = match self.upstream_request(head, action, &plan, raw) {
            Ok(r) => r,
            Err(why) => {
                let r =
                    self.after_release(&release, "proxy.request", 400, Fault::Agent, why, &summary);
                return self.send_refusal(conn, &r, false, head_only).await;
            }
        };
        if websocket {
            // The handshake was decided like any GET; the upgrade itself
            // is hop-by-hop, so it is put back for this one request.
            req.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            req.headers_mut().insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
        }
        if matches!(up.sender, Sender::H2(_))
            && head
                .all("te")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        {
            // The one `TE` HTTP/2 carries; gRPC servers insist on it.
            req.headers_mut()
                .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        if up.sender.ready().await.is_err() {
            *upstream = None;
            let r = self.after_release(
                &release,
                "proxy.upstream",
                502,
                Fault::Upstream,
                "the upstream connection closed".into(),
                &summary,
            );
            return self.send_refusal(conn, &r, false, head_only).await;
        }
        let resp = match up.sender.send(req, action.scheme).await {
            Ok(r) => r,
            Err(e) => {
                *upstream = None;
                let r = self.after_release(
                    &release,
                    "proxy.upstream",
                    502,
                    Fault::Upstream,
                    format!("the upstream failed: {e}"),
                    &summary,
                );
                return self.send_refusal(conn, &r, false, head_only).await;
            }
        };
        let status = resp.status().as_u16();
        let forwarded = Forwarded {
            status,
            upstream: up.target.addr,
        };
        if self.gate.fsync_policy() == blastwall_audit::FsyncPolicy::Always {
            // Synced before the call returns: on the blocking pool, not on
            // the workers that serve every other connection.
            let (gate, seq) = (Arc::clone(&self.gate), release.request_id);
            let _ = tokio::task::spawn_blocking(move || {
                gate.outcome_data(seq, "forwarded", &forwarded)
            })
            .await;
        } else {
            let _ = self
                .gate
                .outcome_data(release.request_id, "forwarded", &forwarded);
        }
        if websocket && status == 101 {
            *upstream = None;
            return self.splice_websocket(conn, resp, &release).await;
        }
        // 8. The response.
        self.respond(conn, resp, &plan, action, head_only, &release, &summary)
            .await
    }

    /// After an accepted WebSocket handshake: the 101 goes back to the
    /// agent, then bytes flow both ways unchanged until either side closes.
    /// The frames are not inspected (which is why a host with a bound
    /// credential gets no WebSocket); the upgrade was decided as its GET.
    async fn splice_websocket<A: Agent>(
        &self,
        conn: &mut A,
        mut resp: http::Response<hyper::body::Incoming>,
        release: &Release,
    ) -> bool {
        let mut head = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        for (k, v) in resp.headers() {
            head.extend_from_slice(k.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let upgraded = match hyper::upgrade::on(&mut resp).await {
            Ok(u) => u,
            Err(e) => {
                let _ = self.gate.outcome(
                    release,
                    "refused",
                    json!({"rule": "proxy.websocket", "reason": format!("the upgrade failed: {e}")}),
                );
                return false;
            }
        };
        let Some((to_up, to_agent)) = conn.splice(head, upgraded).await else {
            return false;
        };
        let _ = self.gate.outcome(
            release,
            "websocket-closed",
            json!({"bytes_out": to_up, "bytes_in": to_agent}),
        );
        false
    }

    /// Decides `action`; with side effects the decision is made durable on
    /// the blocking pool, off the async workers.
    async fn check(&self, action: &Action, side_effects: bool) -> Result<Release, Box<Refusal>> {
        // Under `fsync = "always"` every decision is synced before the call
        // returns, so each one goes to the blocking pool.
        let syncs =
            side_effects || self.gate.fsync_policy() == blastwall_audit::FsyncPolicy::Always;
        if syncs {
            let gate = Arc::clone(&self.gate);
            let action = action.clone();
            match tokio::task::spawn_blocking(move || gate.check_with(&action, side_effects)).await
            {
                Ok(r) => r,
                Err(_) => Err(Box::new(Refusal {
                    request_id: None,
                    verdict: blastwall_policy::Verdict::Deny,
                    rule: blastwall_policy::RuleRef {
                        id: Arc::from("proxy.gate"),
                        file: Arc::from("blastwall proxy"),
                        line: 0,
                        col: 0,
                    },
                    reason: "the decision could not be made (the gate's task failed)".into(),
                    subject: None,
                    approval: None,
                    summary: String::new(),
                    labels: blastwall_policy::Labels::EMPTY,
                })),
            }
        } else {
            self.gate.check_with(action, false)
        }
    }

    /// Whether `[network.resolve]` sends the action's host to a loopback
    /// address: traffic that never leaves this machine.
    fn local(&self, action: &NetAction) -> bool {
        self.resolve
            .iter()
            .any(|r| r.host == action.host && r.port == action.port && r.addr.ip().is_loopback())
    }

    /// Resolves the action's host outside the wall and filters the
    /// address; a refusal is recorded as the outcome of decision `seq`.
    async fn resolve(
        &self,
        action: &NetAction,
        seq: u64,
        summary: &str,
    ) -> Result<Target, ProxyRefusal> {
        match upstream::resolve(&action.host, action.port, &self.resolve).await {
            Ok(t) => Ok(t),
            Err(ResolveError::Blocked { addr, why }) => Err(self.after_decision(
                seq,
                "proxy.address",
                    403,
                    Fault::Agent,
                format!(
                    "{} resolves to {addr}, which is {why}; such addresses are refused unless [network.resolve] declares them",
                    action.host
                ),
                summary,
            )),
            Err(ResolveError::Lookup(why)) => Err(self.after_decision(
                seq,
                "proxy.resolve",
                502,
                Fault::Upstream,
                format!("cannot resolve {}: {why}", action.host),
                summary,
            )),
        }
    }

    /// The digest an approval binds to: the request as it will be
    /// forwarded (method, URL, end-to-end headers as the agent sent them,
    /// the credentials to inject by name, the body) and the pinned upstream
    /// address. Real secret values never go into it.
    fn approval_digest(
        &self,
        head: &Head,
        action: &NetAction,
        plan: &Plan,
        body: &[u8],
        addr: std::net::SocketAddr,
    ) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut field = |b: &[u8]| {
            h.update(u64::try_from(b.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(b);
        };
        field(b"blastwall-approval-v1");
        field(head.method.as_bytes());
        let scheme = match action.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let mut url = format!("{scheme}://{}:{}{}", action.host, action.port, action.path);
        if let Some(q) = &action.query {
            url.push('?');
            url.push_str(q);
        }
        field(url.as_bytes());
        let named_by_connection: Vec<String> = head
            .all("connection")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        for (k, v) in &head.headers {
            let lower = k.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str()) || named_by_connection.contains(&lower) {
                continue;
            }
            field(lower.as_bytes());
            field(v.as_bytes());
        }
        for (hi, ci, _) in &plan.headers {
            if let Some(c) = self.creds.get(*ci) {
                field(format!("credential {} in header {hi}", c.cred.name).as_bytes());
            }
        }
        if let Some((_, cis)) = &plan.query {
            for c in cis.iter().filter_map(|ci| self.creds.get(*ci)) {
                field(format!("credential {} in query", c.cred.name).as_bytes());
            }
        }
        field(body);
        field(addr.to_string().as_bytes());
        hex::encode(h.finalize())
    }

    /// Connects to the checked address; over TLS, HTTP/2 when the
    /// upstream offers it, unless the request is a WebSocket handshake
    /// (`h1_only`), whose upgrade exists only in HTTP/1.1.
    async fn open_upstream(
        &self,
        action: &NetAction,
        target: Target,
        release: &Release,
        summary: &str,
        h1_only: bool,
    ) -> Result<Upstream, ProxyRefusal> {
        let client = if h1_only {
            &self.client_tls_h1
        } else {
            &self.client_tls
        };
        let tls = (action.scheme == Scheme::Https).then_some(client);
        let stream = upstream::connect(target, &action.host, tls, self.limits.connect_timeout)
            .await
            .map_err(|why| {
                self.after_release(
                    release,
                    "proxy.upstream",
                    502,
                    Fault::Upstream,
                    why,
                    summary,
                )
            })?;
        let h2 = matches!(&stream, Stream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"));
        let failed = |e: hyper::Error| {
            self.after_release(
                release,
                "proxy.upstream",
                502,
                Fault::Upstream,
                format!("HTTP handshake failed: {e}"),
                summary,
            )
        };
        let sender = if h2 {
            let (sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .map_err(failed)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Sender::H2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(failed)?;
            tokio::spawn(async move {
                let _ = connection.with_upgrades().await;
            });
            Sender::H1(sender)
        };
        Ok(Upstream {
            key: (action.scheme, action.host.clone(), action.port),
            target,
            sender,
        })
    }

    fn upstream_request(
        &self,
        head: &Head,
        action: &NetAction,
        plan: &Plan,
        raw: Vec<u8>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let query = match &plan.query {
            Some((q, _)) => Some(q.as_str()),
            None => action.query.as_deref(),
        };
        let pq = match query {
            Some(q) => format!("{}?{q}", action.path),
            None => action.path.clone(),
        };
        let authority = if action.port == action.scheme.default_port() {
            action.host.to_string()
        } else {
            format!("{}:{}", action.host, action.port)
        };
        let mut b = http::Request::builder()
            .method(head.method.as_str())
            .uri(pq)
            .header(http::header::HOST, authority);
        let named_by_connection: Vec<String> = head
            .all("connection")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        for (i, (k, v)) in head.headers.iter().enumerate() {
            let lower = k.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str()) || named_by_connection.contains(&lower) {
                continue;
            }
            let value = match plan.headers.iter().find(|(hi, _, _)| *hi == i) {
                Some((_, ci, prefix)) => {
                    let c = self.creds.get(*ci).ok_or("credential index out of range")?;
                    let mut bytes = prefix.as_bytes().to_vec();
                    bytes.extend_from_slice(c.secret.expose());
                    let mut hv = http::HeaderValue::from_bytes(&bytes).map_err(|_| {
                        format!(
                            "the real value of credential `{}` cannot go in a header",
                            c.cred.name
                        )
                    })?;
                    hv.set_sensitive(true);
                    hv
                }
                None => http::HeaderValue::from_str(v)
                    .map_err(|_| format!("header `{k}` has a value that cannot be forwarded"))?,
            };
            b = b.header(k.as_str(), value);
        }
        if !raw.is_empty() || !matches!(head.method.as_str(), "GET" | "HEAD") {
            b = b.header(http::header::CONTENT_LENGTH, raw.len());
        }
        b.body(Full::new(Bytes::from(raw)))
            .map_err(|e| format!("the request cannot be forwarded: {e}"))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a struct would only rename them"
    )]
    async fn respond<A: Agent>(
        &self,
        conn: &mut A,
        resp: http::Response<hyper::body::Incoming>,
        plan: &Plan,
        action: &NetAction,
        head_only: bool,
        release: &Release,
        summary: &str,
    ) -> bool {
        let status = resp.status().as_u16();
        let no_body = head_only || status < 200 || status == 204 || status == 304;
        let (parts, body) = resp.into_parts();
        let named_by_connection: Vec<String> = parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        for (k, v) in &parts.headers {
            let name = k.as_str();
            if (HOP_BY_HOP.contains(&name) && name != "host")
                || named_by_connection.iter().any(|n| n == name)
            {
                continue;
            }
            headers.push((name.to_owned(), v.as_bytes().to_vec()));
        }
        let content_length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        if plan.bound_host {
            // Hold, decode, swap real values back.
            let bound: Vec<&BoundCredential> = self
                .creds
                .iter()
                .filter(|c| c.bound_to(&action.host))
                .collect();
            for (k, v) in headers.iter_mut() {
                match creds::scrub(&bound, v) {
                    Scrub::Clean => {}
                    Scrub::Swapped(n) => *v = n,
                    Scrub::Unswappable => {
                        let r = self.after_release(
                            release,
                            "proxy.secret-in-response",
                            502,
                            Fault::Upstream,
                            format!("the response header `{k}` carries the real credential in a form the proxy cannot swap back"),
                            summary,
                        );
                        return self.send_refusal(conn, &r, true, head_only).await;
                    }
                }
            }
            let mut held = Vec::new();
            if !no_body {
                let limited = http_body_util::Limited::new(body, self.limits.max_response_scan);
                match limited.collect().await {
                    Ok(c) => held = c.to_bytes().to_vec(),
                    Err(e) => {
                        let r = self.after_release(
                            release,
                            "proxy.secret-in-response",
                            502,
                            Fault::Upstream,
                            format!("the response could not be read whole to scan it for the credential ({e}); it is past the bound of {} bytes or broken", self.limits.max_response_scan),
                            summary,
                        );
                        return self.send_refusal(conn, &r, true, head_only).await;
                    }
                }
            }
            let encodings: Vec<String> = headers
                .iter()
                .filter(|(k, _)| k == "content-encoding")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            let mut out_body = held;
            if !out_body.is_empty() {
                let decoded = decode(
                    encodings.iter().map(String::as_str),
                    &out_body,
                    self.limits.max_response_scan,
                );
                let (scan, was_decoded) = match decoded {
                    Ok(Some(d)) => (d, true),
                    Ok(None) => (out_body.clone(), false),
                    Err(e) => {
                        let r = self.after_release(
                            release,
                            "proxy.secret-in-response",
                            502,
                            Fault::Upstream,
                            format!("the response body cannot be decoded to scan it for the credential ({e:?})"),
                            summary,
                        );
                        return self.send_refusal(conn, &r, true, head_only).await;
                    }
                };
                match creds::scrub(&bound, &scan) {
                    Scrub::Clean => {}
                    Scrub::Swapped(n) => {
                        out_body = n;
                        if was_decoded {
                            headers.retain(|(k, _)| k != "content-encoding");
                        }
                        let _ = self.gate.alert(json!({
                            "source": "proxy",
                            "rule": "proxy.secret-in-response",
                            "request": summary,
                            "decision_seq": release.request_id,
                            "reason": "the response carried the real credential; it was swapped back to the placeholder",
                        }));
                    }
                    Scrub::Unswappable => {
                        let r = self.after_release(
                            release,
                            "proxy.secret-in-response",
                            502,
                            Fault::Upstream,
                            "the response body carries the real credential in a form the proxy cannot swap back".into(),
                            summary,
                        );
                        return self.send_refusal(conn, &r, true, head_only).await;
                    }
                }
            }
            let len = if no_body {
                BodyLen::None(content_length)
            } else {
                BodyLen::Length(out_body.len().to_string())
            };
            if !conn.send_head(status, headers, len).await {
                return false;
            }
            if !no_body && !conn.send_data(Bytes::from(out_body)).await {
                return false;
            }
            return conn.finish().await;
        }

        // Stream.
        let len = match content_length {
            _ if no_body => BodyLen::None(content_length),
            Some(cl) => BodyLen::Length(cl),
            None => BodyLen::Unknown,
        };
        if !conn.send_head(status, headers, len).await {
            return false;
        }
        if no_body {
            return conn.finish().await;
        }
        let mut body = body;
        // A piece of the body that is already here leaves with the head;
        // otherwise the head goes now, without waiting for the body.
        let mut next = std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(f) => Some(f),
                Poll::Pending => None,
            })
        })
        .await;
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => {
                    if !conn.send_data(Bytes::new()).await {
                        return false;
                    }
                    body.frame().await
                }
            };
            let Some(frame) = frame else {
                break;
            };
            let Ok(frame) = frame else {
                return false;
            };
            let sent = match frame.into_data() {
                Ok(data) => conn.send_data(data).await,
                Err(frame) => match frame.into_trailers() {
                    Ok(t) => conn.send_trailers(t).await,
                    Err(_) => true,
                },
            };
            if !sent {
                return false;
            }
            next = Some(body.frame().await);
        }
        conn.finish().await
    }

    /// CONNECT: intercept (terminate TLS with the session CA) or pass through.
    async fn connect(self: &Arc<Self>, mut conn: Conn<TcpStream>, head: Head) {
        let line = format!("CONNECT {}", head.target);
        let Some((host, port)) = parse_authority(&head.target) else {
            self.refuse_framing(
                &mut conn,
                400,
                format!("CONNECT target `{}` is not host:port", head.target),
                line,
                false,
            )
            .await;
            return;
        };
        if let Some(h) = head.one("host")
            && parse_authority(h).is_none_or(|(hh, hp)| hh != host || hp != port)
        {
            let r = self.proxy_refusal(
                "proxy.host-mismatch",
                400,
                Fault::Agent,
                format!("the Host header `{h}` does not name the CONNECT target {host}:{port}"),
                line,
                json!({}),
            );
            let _ = self.send_refusal(&mut conn, &r, true, false).await;
            return;
        }
        let intercept = match &self.intercept {
            Intercept::All => true,
            Intercept::Only(list) => list.iter().any(|p| p.matches(&host)),
        };
        if intercept {
            if conn
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let rest = conn.buf.split().freeze();
            let io = Prefixed {
                prefix: rest,
                inner: conn.io,
            };
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
            let Ok(Ok(start)) = tokio::time::timeout(self.limits.connect_timeout, acceptor).await
            else {
                return;
            };
            if let Some(sni) = start.client_hello().server_name()
                && HostName::parse(sni).ok().as_ref() != Some(&host)
            {
                let _ = self.proxy_refusal(
                    "proxy.host-mismatch",
                    403,
                    Fault::Agent,
                    format!("TLS SNI `{sni}` does not name the CONNECT target {host}"),
                    line,
                    json!({}),
                );
                return;
            }
            self.intercept(start, host, port, line).await;
            return;
        }
        // Pass-through, decided on the name alone.
        let url = format!("https://{host}:{port}/");
        let action = match NetAction::from_request("GET", &url, &[], None) {
            Ok(a) => a,
            Err(e) => {
                let r = self.proxy_refusal(
                    "proxy.request",
                    400,
                    Fault::Agent,
                    e.to_string(),
                    line,
                    json!({}),
                );
                let _ = self.send_refusal(&mut conn, &r, true, false).await;
                return;
            }
        };
        let summary = line.clone();
        let release = match self.check(&Action::Net(action), false).await {
            Ok(r) => r,
            Err(refusal) => {
                let _ = conn
                    .write_all(&refusal_reply(&refusal).to_bytes(true, false))
                    .await;
                return;
            }
        };
        let target = match upstream::resolve(&host, port, &self.resolve).await {
            Ok(t) => t,
            Err(ResolveError::Blocked { addr, why }) => {
                let r = self.after_release(
                    &release,
                    "proxy.address",
                    403,
                    Fault::Agent,
                    format!("{host} resolves to {addr}, which is {why}"),
                    &summary,
                );
                let _ = self.send_refusal(&mut conn, &r, true, false).await;
                return;
            }
            Err(ResolveError::Lookup(why)) => {
                let r = self.after_release(
                    &release,
                    "proxy.resolve",
                    502,
                    Fault::Upstream,
                    format!("cannot resolve {host}: {why}"),
                    &summary,
                );
                let _ = self.send_refusal(&mut conn, &r, true, false).await;
                return;
            }
        };
        let up = match upstream::connect(target, &host, None, self.limits.connect_timeout).await {
            Ok(Stream::Plain(s)) => s,
            Ok(Stream::Tls(_)) | Err(_) => {
                let r = self.after_release(
                    &release,
                    "proxy.upstream",
                    502,
                    Fault::Upstream,
                    format!("cannot connect to {}", target.addr),
                    &summary,
                );
                let _ = self.send_refusal(&mut conn, &r, true, false).await;
                return;
            }
        };
        if conn
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let _ = self.gate.outcome(
            &release,
            "tunnelled",
            json!({"upstream": target.addr.to_string()}),
        );
        let rest = conn.buf.split().freeze();
        let mut down = Prefixed {
            prefix: rest,
            inner: conn.io,
        };
        let mut up = up;
        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    }

    /// A refusal the proxy makes itself: recorded as a deny decision with
    /// its built-in rule, like any other.
    fn proxy_refusal(
        &self,
        rule: &'static str,
        status: u16,
        fault: Fault,
        reason: String,
        summary: String,
        extra: Value,
    ) -> ProxyRefusal {
        let request_id = self
            .gate
            .refuse(
                None,
                rule,
                &reason,
                &summary,
                json!({"source": "proxy", "fault": fault.to_string(), "extra": extra}),
            )
            .ok();
        ProxyRefusal {
            rule,
            reason,
            summary,
            fault,
            status,
            request_id,
        }
    }

    /// A refusal after the policy allowed: recorded as the decision's
    /// outcome and as an alert.
    fn after_release(
        &self,
        release: &Release,
        rule: &'static str,
        status: u16,
        fault: Fault,
        reason: String,
        summary: &str,
    ) -> ProxyRefusal {
        self.after_decision(release.request_id, rule, status, fault, reason, summary)
    }

    /// A refusal after decision `seq`: recorded as its outcome and as a
    /// decision of the proxy's own.
    fn after_decision(
        &self,
        seq: u64,
        rule: &'static str,
        status: u16,
        fault: Fault,
        reason: String,
        summary: &str,
    ) -> ProxyRefusal {
        let _ = self.gate.outcome_of(
            seq,
            "refused",
            json!({"rule": rule, "reason": reason, "fault": fault.to_string()}),
        );
        let mut r = self.proxy_refusal(
            rule,
            status,
            fault,
            reason,
            summary.to_owned(),
            json!({"decision_seq": seq}),
        );
        if r.request_id.is_none() {
            r.request_id = Some(seq);
        }
        r
    }

    /// Writes the gate's refusal; a refused `git push` gets it in git's own
    /// report (each ref `ng` with the reason, the whole refusal as `remote:`
    /// lines), so the agent reads why instead of "unexpected disconnect".
    async fn send_push_aware<A: Agent>(
        &self,
        conn: &mut A,
        r: &Refusal,
        action: &NetAction,
        caps: &[String],
        head_only: bool,
    ) -> bool {
        if let Some(blastwall_policy::GitPush::Updates { updates }) = &action.git_push
            && let Some(reply) = push_report(r, updates, caps)
        {
            return conn.send_reply(&reply, false, head_only).await;
        }
        conn.send_reply(&refusal_reply(r), false, head_only).await
    }

    fn misuse(&self, m: Misuse, summary: String) -> ProxyRefusal {
        let kind = if m.rule == "proxy.placeholder" {
            "placeholder-leak"
        } else {
            "own-credential"
        };
        // A credential going where it must not is an anomaly, not just a deny.
        let _ = self.gate.alert(json!({
            "source": "proxy",
            "alert": kind,
            "rule": m.rule,
            "credential": m.credential,
            "request": summary,
        }));
        self.proxy_refusal(
            m.rule,
            403,
            Fault::Agent,
            m.reason,
            summary,
            json!({"alert": kind, "credential": m.credential}),
        )
    }

    /// Writes a refusal; returns whether the connection may go on.
    /// Refuses a request the proxy cannot read as it stands
    /// (`proxy.framing`, the agent's fault), on record, and closes the
    /// agent's connection (or stream).
    async fn refuse_framing<A: Agent>(
        &self,
        conn: &mut A,
        status: u16,
        reason: String,
        line: String,
        head_only: bool,
    ) {
        let r = self.proxy_refusal(
            "proxy.framing",
            status,
            Fault::Agent,
            reason,
            line,
            json!({}),
        );
        let _ = self.send_refusal(conn, &r, true, head_only).await;
    }

    async fn send_refusal<A: Agent>(
        &self,
        conn: &mut A,
        r: &ProxyRefusal,
        close: bool,
        head_only: bool,
    ) -> bool {
        let reply = Reply::text(r.status, r.request_id, r.to_string());
        conn.send_reply(&reply, close, head_only).await && !close
    }
}

/// git's receive-pack report for a refused push, when the client asked
/// for one (`report-status`): `unpack ok`, then `ng <ref> <reason>` for
/// every ref; with `side-band-64k`, the refusal's text goes first on the
/// progress band, which git prints as `remote:` lines.
fn push_report(
    r: &Refusal,
    updates: &[blastwall_policy::PushUpdate],
    caps: &[String],
) -> Option<Reply> {
    let has = |c: &str| caps.iter().any(|w| w == c);
    // `report-status-v2` reads the same `unpack` and `ng` lines.
    if !has("report-status") && !has("report-status-v2") {
        return None;
    }
    let pkt = |payload: &[u8]| -> Vec<u8> {
        let mut v = format!("{:04x}", payload.len() + 4).into_bytes();
        v.extend_from_slice(payload);
        v
    };
    let what = match r.verdict {
        blastwall_policy::Verdict::Ask => "needs approval",
        _ => "denied",
    };
    let mut reason: String = format!("blastwall {what}: {}", r.reason)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    reason.truncate(reason.floor_char_boundary(900));
    let mut report = pkt(b"unpack ok\n");
    for u in updates {
        report.extend(pkt(format!("ng {} {reason}\n", u.update.name).as_bytes()));
    }
    report.extend_from_slice(b"0000");
    let mut out = Vec::new();
    if has("side-band-64k") || has("side-band") {
        let max = if has("side-band-64k") { 65515 } else { 999 };
        let text = r.to_string();
        for line in text.lines() {
            let mut p = vec![2u8];
            p.extend_from_slice(line.as_bytes().get(..line.len().min(max - 2))?);
            p.push(b'\n');
            out.extend(pkt(&p));
        }
        for chunk in report.chunks(max - 1) {
            let mut p = vec![1u8];
            p.extend_from_slice(chunk);
            out.extend(pkt(&p));
        }
        out.extend_from_slice(b"0000");
    } else {
        out = report;
    }
    let mut headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-git-receive-pack-result".to_owned(),
        ),
        ("X-Blastwall".to_owned(), "refused".to_owned()),
    ];
    if let Some(id) = r.request_id {
        headers.push(("X-Blastwall-Request-Id".to_owned(), id.to_string()));
    }
    Some(Reply {
        status: 200,
        headers,
        body: out,
    })
}

fn refusal_reply(r: &Refusal) -> Reply {
    Reply::text(403, r.request_id, r.to_string())
}

fn digest(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A WebSocket handshake: `Upgrade: websocket` with `Connection: upgrade`.
fn is_websocket(head: &Head) -> bool {
    head.all("upgrade")
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && head
            .all("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// `host:port` (IPv6 in brackets) → normalised host and port.
fn parse_authority(s: &str) -> Option<(HostName, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    if h.contains(':') && !(h.starts_with('[') && h.ends_with(']')) {
        return None;
    }
    let port = p.parse::<u16>().ok().filter(|p| *p != 0)?;
    Some((HostName::parse(h).ok()?, port))
}

/// Whether a `Host` header names the action's host and port.
fn host_agrees(h: &str, a: &NetAction) -> bool {
    let h = h.trim();
    let parsed = match parse_authority(h) {
        Some(x) => Some(x),
        None => HostName::parse(h)
            .ok()
            .map(|n| (n, a.scheme.default_port())),
    };
    parsed.is_some_and(|(host, port)| host == a.host && port == a.port)
}

/// A stream whose first bytes were already read into a buffer.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
