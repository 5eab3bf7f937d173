//! `blastwall-proxy` is the one way out of the wall for the network (I2,
//! steps 2 and 3 of the playbook): an HTTP/1.1 proxy for absolute-form
//! requests and `CONNECT`, which terminates TLS with a per-session CA
//! (and speaks HTTP/2 inside when the agent's client offers it),
//! turns every request into a [`blastwall_policy::NetAction`] and asks the
//! [`blastwall_gate::Gate`] (decide, record write-ahead, release or
//! refuse), swaps credential placeholders for real values only where the
//! manifest binds them, and swaps real values in responses back.
//!
//! It must not decide on its own: every verdict comes from the policy
//! through the gate. What the proxy refuses itself (a request two parsers
//! could read differently, a misplaced placeholder, the agent's own
//! credential, a blocked address) is recorded as an audit alert with its
//! reason and refused with a [`ProxyRefusal`] rendered like the gate's.
//! Library code never prints; the real value of a secret is never in a log
//! line, an alert or an error.
//!
//! Main types: [`ProxyConfig`] and [`Limits`] (what the supervisor hands
//! over), [`Proxy`] (its [`Proxy::serve`] accepts on a listener the
//! supervisor created inside the sandbox's network namespace),
//! [`BoundCredential`] and [`Placeholder`], [`ProxyError`] with its
//! [`Fault`].
//!
//! # The request path
//!
//! 1. **Read** the head with `httparse`; refuse obs-fold, bare LF, duplicate
//!    `Host`, `Content-Length` with `Transfer-Encoding`, repeated
//!    `Content-Length`, codings other than a lone `chunked`, `Upgrade: h2c`.
//!    On HTTP/2 (ALPN `h2` inside an intercepted tunnel) hyper's server
//!    reads each stream and refuses what HTTP/2 calls malformed; the
//!    stream becomes the same head, with `Host` from `:authority` (the two
//!    must agree when both are sent). Read the body whole up to
//!    [`Limits::max_request_body`]; the bytes forwarded are exactly these
//!    bytes.
//! 2. **Inspect**: decode `Content-Encoding` (gzip, deflate, br) up to
//!    `graphql::MAX_BODY` for the GraphQL and git inspection; a body that
//!    cannot be decoded or is past the bound is opaque, which gives it the
//!    strictest verdict the host's rules allow.
//! 3. **Credentials**: the placeholder may appear only in its credential's
//!    declared place on requests to its bound hosts; anywhere else (another
//!    host, header, the URL, the body) the request is refused and alerted.
//!    On a bound host, an `Authorization`, `Cookie` or the credential's own
//!    header that the proxy would not inject is refused.
//! 4. **Decide** through [`blastwall_gate::Gate::check_with`], with side
//!    effects when the method has them or a credential will be injected
//!    (then the decision is durable before anything leaves).
//! 5. **Resolve** outside the wall (a `[network.resolve]` entry wins),
//!    filter every address (loopback, private, link-local incl.
//!    169.254.169.254, CGNAT, NAT64, IPv4-mapped, multicast, unspecified…)
//!    unless it came from `[network.resolve]`, connect to the checked
//!    address (pinned), verify upstream TLS against the real roots plus
//!    `upstream_ca`, SNI = the host name.
//! 6. **Respond**: responses from a host with a bound credential are held
//!    (up to [`Limits::max_response_scan`]), decoded, and every real value
//!    (raw, base64, URL-encoded) is swapped back to the placeholder in the
//!    headers (incl. `Location`) and the body; other responses stream.
//!
//! # CONNECT: intercept or pass through
//!
//! Whether a host's rules look past its name (methods, paths, GraphQL,
//! labels, git pushes, a bound credential) is not something the policy
//! crate exposes yet, and git push rules apply to every host. So by
//! default ([`Intercept::All`]) every CONNECT is terminated with the
//! session CA and each request inside is decided on its own: stricter,
//! and nothing passes unseen. [`Intercept::Only`] lists the hosts to
//! intercept (the CA then carries name constraints for exactly those);
//! a CONNECT to any other host is decided as a `GET https://host:port/` on
//! the name alone and its bytes are passed through untouched. The caller
//! must only leave out hosts no rule looks past the name of.
//!
//! The CONNECT target, the TLS SNI and every inner request's `Host` must
//! name the same host, or the connection is refused.
//!
//! # HTTP/2
//!
//! The session CA's TLS offers `h2` before `http/1.1`. On `h2`, every
//! stream runs as a task of its own through the same exchange as an
//! HTTP/1.1 request (the `agent` module's trait hides the protocol), so
//! a stream held for approval holds up no other, and one the agent resets
//! is abandoned. Upstream TLS offers `h2` too (not for a WebSocket
//! handshake); an HTTP/2 upstream connection is shared by the streams of
//! one agent connection, HTTP/1.1 ones are pooled (up to 8 idle), and the
//! upstream's trailers reach an HTTP/2 agent. At most 100 streams at once
//! per connection; a connection with none in flight for
//! [`Limits::idle_timeout`] is closed.
//!
//! # Approvals, WebSockets, programs that ignore the proxy
//!
//! An `ask` is held: the address is resolved first, the approval binds to
//! a digest of the request as it will be forwarded and that address, the
//! agent's connection waits until a person decides (or it times out, or
//! the agent goes away), and an approved request goes on a connection of
//! its own to the approved address. A WebSocket handshake is decided like
//! its GET; once the upstream answers 101 the bytes are spliced both ways
//! uninspected, so a host with a bound credential gets no WebSocket. Ports
//! 80 and 443 on the sandbox's loopback catch programs that ignore the
//! proxy variables ([`Proxy::serve_transparent`], [`dns`]).
//!
//! # Not yet
//!
//! `h2c` is refused outright (by upgrade, and by prior knowledge, whose
//! preface is not an HTTP/1.1 request); WebSockets over HTTP/2 (RFC 8441's
//! extended CONNECT is not offered, so clients use HTTP/1.1 for them);
//! streaming of request bodies (each body is held whole up to
//! [`Limits::max_request_body`], so the proxy holds at most
//! `max_connections` × that); a request body in a coding other than gzip,
//! deflate or br is not searched for placeholders; WebSocket frames are
//! not inspected.
//!
//! # Test strategy
//!
//! `tests/suite/` runs the proxy on a real loopback listener against echo
//! upstreams (plain HTTP, and HTTPS with a test CA given as an extra root)
//! that record what they receive, drives it with real `curl` and `python3`,
//! and asserts on what the upstream saw, what the agent got back and what
//! the audit log holds (and that it verifies).
#![forbid(unsafe_code)]

mod agent;
mod ca;
mod creds;
mod decode;
pub mod dns;
mod error;
mod h1;
mod h2;
mod placeholder;
mod serve;
mod upstream;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blastwall_gate::Gate;
use blastwall_policy::{Credential, HostPattern, Policy, Resolve};
use blastwall_secrets::Secret;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use ca::SessionCa;
pub use creds::BoundCredential;
pub use error::{Fault, ProxyError, ProxyRefusal};
pub use placeholder::Placeholder;
pub use upstream::blocked_reason;

/// Bounds on what one proxy holds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Agent connections served at once (more wait in the kernel's backlog).
    pub max_connections: usize,
    /// Bytes of one request head.
    pub max_head_bytes: usize,
    /// Header lines in one request head.
    pub max_headers: usize,
    /// Bytes of one request body (held whole before it is decided).
    pub max_request_body: usize,
    /// Request-body bytes held at once across every connection (bodies
    /// waiting for a decision, an approval, or their upstream); a body that
    /// cannot reserve its bytes within `connect_timeout` is refused (503).
    pub max_held_bytes: usize,
    /// Bytes of a response held to swap real values back (responses of hosts with a bound credential).
    pub max_response_scan: usize,
    /// How long a kept-alive agent connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// How long connecting (TCP and TLS) to an upstream may take.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_request_body: 16 * 1024 * 1024,
            max_held_bytes: 256 * 1024 * 1024,
            max_response_scan: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Which CONNECT targets are intercepted (see the crate docs).
#[derive(Debug, Clone, Default)]
pub enum Intercept {
    /// Terminate TLS for every CONNECT (the default: nothing passes unseen).
    #[default]
    All,
    /// Terminate TLS only for these hosts; pass the others through, decided on their name.
    Only(Vec<HostPattern>),
}

/// What the supervisor hands the proxy.
#[derive(Debug)]
pub struct ProxyConfig {
    /// The policy in force (the same one the gate decides by).
    pub policy: Arc<Policy>,
    /// The gate every request goes through.
    pub gate: Arc<Gate>,
    /// The credentials to swap in, with their placeholders and real values.
    pub credentials: Vec<BoundCredential>,
    /// Upstream CAs trusted besides the real roots (`[network] upstream_ca`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `[network.resolve]`: host:port → address, exempt from the address filter.
    pub resolve: Vec<Resolve>,
    /// Bounds.
    pub limits: Limits,
    /// Which CONNECT targets are intercepted.
    pub intercept: Intercept,
}

impl ProxyConfig {
    /// A configuration from the policy's settings: its `[network.resolve]`
    /// entries and its `upstream_ca` files (read here), default limits,
    /// every CONNECT intercepted.
    pub fn from_policy(
        policy: Arc<Policy>,
        gate: Arc<Gate>,
        credentials: Vec<BoundCredential>,
    ) -> Result<ProxyConfig, ProxyError> {
        let mut extra_roots = Vec::new();
        for p in &policy.settings().upstream_ca {
            extra_roots.extend(load_pem_certs(p)?);
        }
        Ok(ProxyConfig {
            resolve: policy.settings().resolve.clone(),
            policy,
            gate,
            credentials,
            extra_roots,
            limits: Limits::default(),
            intercept: Intercept::All,
        })
    }
}

impl BoundCredential {
    /// Binds a credential to its real value with a fresh placeholder.
    pub fn new(cred: Credential, secret: Secret) -> Result<BoundCredential, ProxyError> {
        let placeholder = Placeholder::generate(&cred.name)?;
        Ok(BoundCredential {
            cred,
            placeholder,
            secret,
        })
    }
}

/// Reads every certificate of a PEM file.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let err = |why: String| ProxyError::UpstreamCa {
        path: path.to_path_buf(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// The variables tools read for extra CA certificates, each pointing at
/// `bundle` (a file holding the session CA, alone or appended to the
/// system bundle). The sandbox sets them inside.
pub fn ca_env_vars(bundle: &Path) -> Vec<(String, String)> {
    let p = bundle.display().to_string();
    [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
        "AWS_CA_BUNDLE",
        "DENO_CERT",
        "CARGO_HTTP_CAINFO",
        "NPM_CONFIG_CAFILE",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), p.clone()))
    .collect()
}

/// The proxy: built once per session, then [`Proxy::serve`]d.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<serve::Shared>,
}

impl Proxy {
    /// Builds the proxy: the session CA (key in memory only), the upstream
    /// TLS configuration (real roots plus `extra_roots`). Fails if two
    /// credentials share a placeholder or one is empty.
    pub fn new(cfg: ProxyConfig) -> Result<Proxy, ProxyError> {
        Ok(Proxy {
            shared: Arc::new(serve::Shared::new(cfg)?),
        })
    }

    /// The session CA certificate, PEM, to install inside the wall.
    pub fn ca_pem(&self) -> &str {
        self.shared.ca.cert_pem()
    }

    /// `(variable, placeholder)` for each credential: what the agent's
    /// environment holds instead of the real values.
    pub fn placeholder_env(&self) -> Vec<(String, String)> {
        self.shared
            .creds
            .iter()
            .map(|c| (c.cred.env.clone(), c.placeholder.clone()))
            .collect()
    }

    /// Accepts agent connections on `listener` (created by the supervisor,
    /// e.g. inside the sandbox's network namespace) until the future is
    /// dropped. Must be polled inside a tokio runtime with the I/O and time
    /// drivers enabled.
    pub fn serve(
        &self,
        listener: std::net::TcpListener,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move { serve::accept_loop(shared, listener, serve::Entry::Proxy).await }
    }

    /// Accepts connections that programs ignoring the proxy variables made
    /// straight to `port` (names inside the wall resolve to 127.0.0.1, see
    /// [`dns`]): with `tls`, the ClientHello's SNI names the host and the
    /// connection is intercepted with the session CA like a CONNECT to
    /// `host:port`; without, each request's `Host` header names it. Every
    /// request is then decided exactly as through the proxy.
    pub fn serve_transparent(
        &self,
        listener: std::net::TcpListener,
        port: u16,
        tls: bool,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let entry = if tls {
            serve::Entry::Tls { port }
        } else {
            serve::Entry::Http { port }
        };
        async move { serve::accept_loop(shared, listener, entry).await }
    }

    /// Like [`Proxy::serve_transparent`] for a port that may carry TLS or
    /// plain HTTP (a port a manifest rule names, such as 8443): the first
    /// byte tells them apart.
    pub fn serve_transparent_any(
        &self,
        listener: std::net::TcpListener,
        port: u16,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move { serve::accept_loop(shared, listener, serve::Entry::Sniff { port }).await }
    }

    /// Answers name lookups inside the wall on `socket` (UDP, created by the
    /// supervisor in the sandbox's network namespace): see [`dns`].
    pub fn serve_dns(
        &self,
        socket: std::net::UdpSocket,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send + 'static {
        let gate = Arc::clone(&self.shared.gate);
        async move { dns::serve(socket, gate).await }
    }
}
