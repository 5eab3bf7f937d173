//! Reaching the upstream: names resolved outside the wall, every address
//! filtered, the connection pinned to the address that was checked, TLS
//! verified against the real roots plus the manifest's `upstream_ca`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use blastwall_policy::{HostName, Resolve};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why an address may not be connected to, or `None` when it may.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return Some("an IPv4-mapped IPv6 address");
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique local (private) address")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                Some("NAT64 (64:ff9b::/96 and /48)")
            } else if s[0] == 0x2002 {
                Some("6to4 (embeds an IPv4 address)")
            } else if s[0] == 0x2001 && s[1] == 0 {
                Some("Teredo (embeds an IPv4 address)")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[..6] == [0; 6] {
                Some("an IPv4-compatible IPv6 address")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("the unspecified network 0.0.0.0/8")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16, incl. cloud metadata at 169.254.169.254)")
    } else if ip.is_private() {
        Some("a private network (RFC 1918)")
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        Some("carrier-grade NAT (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking (198.18.0.0/15)")
    } else {
        None
    }
}

/// An address the upstream may be reached at, and whether it was declared
/// in `[network.resolve]` (then the filter does not apply to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) declared: bool,
}

/// Why no address could be used.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The name does not resolve (or the lookup failed).
    Lookup(String),
    /// Every address is in a refused range.
    Blocked { addr: IpAddr, why: &'static str },
}

/// Resolves `host:port` outside the wall: a `[network.resolve]` entry wins;
/// an IP literal is itself; a name is looked up. Returns the first address
/// the filter lets through.
pub(crate) async fn resolve(
    host: &HostName,
    port: u16,
    overrides: &[Resolve],
) -> Result<Target, ResolveError> {
    if let Some(r) = overrides.iter().find(|r| &r.host == host && r.port == port) {
        return Ok(Target {
            addr: r.addr,
            declared: true,
        });
    }
    let addrs: Vec<SocketAddr> = match host {
        HostName::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        HostName::Domain(d) => tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::lookup_host((d.as_str(), port)),
        )
        .await
        .map_err(|_| ResolveError::Lookup("the lookup timed out".into()))?
        .map_err(|e| ResolveError::Lookup(e.to_string()))?
        .collect(),
    };
    let mut first_blocked = None;
    for a in addrs {
        match blocked_reason(a.ip()) {
            None => {
                return Ok(Target {
                    addr: a,
                    declared: false,
                });
            }
            Some(why) => {
                first_blocked.get_or_insert((a.ip(), why));
            }
        }
    }
    match first_blocked {
        Some((addr, why)) => Err(ResolveError::Blocked { addr, why }),
        None => Err(ResolveError::Lookup("no address".into())),
    }
}

/// A connection to the upstream, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to the checked address (pinned: no second lookup), and for
/// HTTPS verifies the upstream's certificate for `host` (SNI = the name).
pub(crate) async fn connect(
    target: Target,
    host: &HostName,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Stream, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(target.addr))
        .await
        .map_err(|_| format!("connecting to {} timed out", target.addr))?
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    let _ = tcp.set_nodelay(true);
    let Some(cfg) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = match host {
        HostName::Domain(d) => ServerName::try_from(d.clone())
            .map_err(|e| format!("`{d}` cannot be a TLS server name: {e}"))?,
        HostName::Ip(ip) => ServerName::IpAddress((*ip).into()),
    };
    let s = tokio::time::timeout(
        timeout,
        TlsConnector::from(Arc::clone(cfg)).connect(name, tcp),
    )
    .await
    .map_err(|_| "the TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS handshake failed: {e}"))?;
    Ok(Stream::Tls(Box::new(s)))
}
