//! Errors, classified by who is at fault (pingora's Upstream / Downstream /
//! Internal, with the manifest added), and the proxy's own refusals.

use std::fmt;
use std::path::PathBuf;

/// Who is at fault when something fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The agent (the downstream client) sent something the proxy will not
    /// forward: a malformed or ambiguous request, a misplaced placeholder.
    Agent,
    /// The upstream server: unreachable, bad TLS, a malformed response.
    Upstream,
    /// The manifest or the user's config: a CA file that does not parse, a
    /// credential that cannot be placed.
    Manifest,
    /// blastwall itself: the session CA, the audit log, a listener.
    Blastwall,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Agent => "agent",
            Fault::Upstream => "upstream",
            Fault::Manifest => "manifest",
            Fault::Blastwall => "blastwall",
        })
    }
}

/// A failure of the proxy. Messages name the host, file or credential, never
/// a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The session CA or a leaf certificate could not be made.
    #[error("cannot make the session certificate authority: {0}")]
    Ca(String),
    /// A TLS configuration could not be built.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(String),
    /// An `upstream_ca` file could not be read or holds no certificate.
    #[error("cannot use upstream CA {path}: {why}")]
    UpstreamCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A credential's placeholder is unusable (empty, or one placeholder for two credentials).
    #[error("credential `{name}`: {why}")]
    Credential {
        /// The credential's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The listener could not be used.
    #[error("cannot listen on the proxy socket: {0}")]
    Listen(std::io::Error),
    /// The agent's request cannot be read or is ambiguous.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The upstream could not be reached or answered badly.
    #[error("upstream {host}: {why}")]
    Upstream {
        /// `host:port`.
        host: String,
        /// What happened.
        why: String,
    },
    /// The agent's connection failed.
    #[error("agent connection: {0}")]
    Downstream(std::io::Error),
}

impl ProxyError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::Ca(_) | ProxyError::Tls(_) | ProxyError::Listen(_) => Fault::Blastwall,
            ProxyError::UpstreamCa { .. } | ProxyError::Credential { .. } => Fault::Manifest,
            ProxyError::BadRequest(_) | ProxyError::Downstream(_) => Fault::Agent,
            ProxyError::Upstream { .. } => Fault::Upstream,
        }
    }
}

/// A request the proxy itself refused before or after the policy decided:
/// a malformed or ambiguous request, a misplaced placeholder, the agent's
/// own credential, a blocked address. Recorded as an audit alert; rendered
/// for the agent like a policy [`blastwall_gate::Refusal`].
#[derive(Debug, Clone)]
pub struct ProxyRefusal {
    /// The built-in rule's name (`proxy.framing`, `proxy.placeholder`, …).
    pub rule: &'static str,
    /// Why.
    pub reason: String,
    /// What was refused, in a line.
    pub summary: String,
    /// Who is at fault.
    pub fault: Fault,
    /// The HTTP status the agent gets.
    pub status: u16,
    /// The audit sequence number of the alert (or of the decision it follows).
    pub request_id: Option<u64>,
}

impl fmt::Display for ProxyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "blastwall: denied: {}", self.summary)?;
        writeln!(f, "  rule:       built-in {} (blastwall proxy)", self.rule)?;
        writeln!(f, "  reason:     {}", self.reason)?;
        match self.request_id {
            Some(id) => writeln!(f, "  request id: {id}"),
            None => writeln!(f, "  request id: none (the refusal could not be recorded)"),
        }
    }
}
