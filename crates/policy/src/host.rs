//! Host names and host patterns, normalised one way for the manifest and
//! for requests: lower case, no trailing dot, IDNs as punycode, IP literals
//! in their canonical form whatever notation they came in (`0x7f.1` is
//! `127.0.0.1`).

use std::fmt;
use std::net::IpAddr;

use url::Host;

/// A normalised host: a DNS name in ASCII lower case, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    /// A DNS name, ASCII (punycode), lower case, no trailing dot.
    Domain(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl HostName {
    /// Normalises a host as it appears in a URL, a `Host` header, a CONNECT
    /// target or SNI (without port). IPv6 literals may be bracketed.
    pub fn parse(raw: &str) -> Result<HostName, String> {
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        if trimmed.is_empty() {
            return Err("empty host name".into());
        }
        // Neither an IP literal (no `:`, no number last) nor anything the
        // checks below refuse.
        if let Some(name) = plain_ascii_name(trimmed) {
            return Ok(HostName::Domain(name.to_owned()));
        }
        if trimmed.contains(['/', '@', '?', '#', ' ', '\\']) {
            return Err(format!("`{raw}` is not a host name"));
        }
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        if trimmed.contains(':') {
            return Err(format!(
                "`{raw}` is not a host name (a port belongs elsewhere)"
            ));
        }
        Self::parse_idna(raw, trimmed)
    }

    /// The full normalisation (percent-decoding, IDNA, IPv4 notations) of
    /// `trimmed`, through the `url` crate's host parser.
    fn parse_idna(raw: &str, trimmed: &str) -> Result<HostName, String> {
        match Host::parse(trimmed) {
            Ok(Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(&d).to_owned();
                if d.is_empty() || d.split('.').any(str::is_empty) {
                    return Err(format!("`{raw}` has an empty label"));
                }
                Ok(HostName::Domain(d))
            }
            Ok(Host::Ipv4(ip)) => Ok(HostName::Ip(IpAddr::V4(ip))),
            Ok(Host::Ipv6(ip)) => Ok(HostName::Ip(IpAddr::V6(ip))),
            Err(e) => Err(format!("`{raw}` is not a valid host name: {e}")),
        }
    }

    /// The key the matcher indexes by.
    pub fn key(&self) -> String {
        match self {
            HostName::Domain(d) => d.clone(),
            HostName::Ip(ip) => ip.to_string(),
        }
    }
}

/// `name` itself when IDNA would return it unchanged, which is what most
/// requests carry: lower-case ASCII letters, digits, `-` and `.`, no empty
/// label, no `xn--` label (punycode is decoded to be checked), and a last
/// label that does not start with a digit (a name ending in a number is
/// parsed as an IPv4 address, `0x7f.1` included). `None` sends it through
/// the full parser.
fn plain_ascii_name(name: &str) -> Option<&str> {
    let mut last = "";
    for label in name.split('.') {
        let plain = !label.is_empty()
            && !label.starts_with("xn--")
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !plain {
            return None;
        }
        last = label;
    }
    (!last.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Domain(d) => f.write_str(d),
            HostName::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HostName::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
        }
    }
}

/// A host pattern of a rule or a credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(HostName),
    /// Any subdomain of this domain (`*.example.com`), not the domain itself.
    Subdomains(String),
}

impl HostPattern {
    /// Parses a pattern as written in a manifest.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        if raw.contains("://") {
            return Err(format!(
                "`{raw}` is a URL; write the host alone (paths go in `paths`, ports in `ports`)"
            ));
        }
        if let Some(rest) = raw.strip_prefix("*.") {
            if rest.contains('*') {
                return Err(format!(
                    "bad host pattern `{raw}`: `*` may only stand for the leftmost labels (`*.example.com`)"
                ));
            }
            return match HostName::parse(rest)? {
                HostName::Domain(d) if d.contains('.') => Ok(HostPattern::Subdomains(d)),
                HostName::Domain(_) => Err(format!(
                    "bad host pattern `{raw}`: a wildcard over a whole top-level domain is too broad"
                )),
                HostName::Ip(_) => Err(format!(
                    "bad host pattern `{raw}`: an IP address has no subdomains"
                )),
            };
        }
        if raw.contains('*') {
            return Err(format!(
                "bad host pattern `{raw}`: `*` may only stand for the leftmost labels (`*.example.com`); there is no catch-all host"
            ));
        }
        HostName::parse(raw).map(HostPattern::Exact)
    }

    /// Whether a normalised host matches.
    pub fn matches(&self, host: &HostName) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Subdomains(suffix), HostName::Domain(d)) => is_subdomain(d, suffix),
            (HostPattern::Subdomains(_), HostName::Ip(_)) => false,
        }
    }

    /// Whether every host this pattern matches is also matched by `other`.
    pub fn within(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (a, b) if a == b => true,
            (HostPattern::Exact(h), HostPattern::Subdomains(_)) => other.matches(h),
            (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => is_subdomain(a, b),
            (HostPattern::Exact(_) | HostPattern::Subdomains(_), _) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => write!(f, "{h}"),
            HostPattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// Whether `host` is a strict subdomain of `domain`.
pub(crate) fn is_subdomain(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1
        && host.ends_with(domain)
        && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.')
}

impl serde::Serialize for HostName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalises_case_dot_idn_and_ip_notations() {
        assert_eq!(
            HostName::parse("Backboard.Railway.App.").ok(),
            Some(HostName::Domain("backboard.railway.app".into()))
        );
        assert_eq!(
            HostName::parse("bücher.example").ok(),
            Some(HostName::Domain("xn--bcher-kva.example".into()))
        );
        for ip in ["127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1"] {
            assert_eq!(
                HostName::parse(ip).ok(),
                Some(HostName::Ip(
                    "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
                )),
                "{ip}"
            );
        }
        assert!(HostName::parse("[::1]").is_ok());
        assert!(HostName::parse("a..b").is_err());
        assert!(HostName::parse("a.com:443").is_err());
    }

    #[test]
    fn patterns() {
        let p = HostPattern::parse("*.example.com");
        assert!(matches!(p, Ok(HostPattern::Subdomains(_))));
        let Ok(p) = p else { return };
        assert!(p.matches(&HostName::Domain("a.example.com".into())));
        assert!(p.matches(&HostName::Domain("a.b.example.com".into())));
        assert!(!p.matches(&HostName::Domain("example.com".into())));
        assert!(!p.matches(&HostName::Domain("badexample.com".into())));
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("*.com").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("https://a.com").is_err());
    }

    proptest! {
        /// Whatever the fast path takes, the full parser returns unchanged.
        #[test]
        fn plain_names_are_what_idna_returns(name in "[a-z0-9x.-]{1,12}(\\.(xn--[a-z0-9]{1,4}|[a-z0-9-]{1,6}|0x[0-9a-f]{1,3})){0,3}") {
            if let Some(fast) = plain_ascii_name(&name) {
                let full = match url::Host::parse(&name) {
                    Ok(Host::Domain(d)) => Some(d),
                    Ok(_) | Err(_) => None,
                };
                prop_assert_eq!(Some(fast.to_owned()), full);
            }
        }
    }

    #[test]
    fn the_fast_path_leaves_the_hard_names_to_idna() {
        for name in [
            "127.0.0.1",
            "0x7f.1",
            "example.123",
            "a..b",
            ".a",
            "xn--nxasmq6b.com",
            "B\u{fc}cher.example",
            "Example.COM",
            "a%41.com",
            "a_b.com",
        ] {
            assert_eq!(plain_ascii_name(name), None, "{name}");
        }
        for (raw, want) in [
            ("api.example.com", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            ("a-1.b--c.io", "a-1.b--c.io"),
        ] {
            assert_eq!(
                HostName::parse(raw),
                Ok(HostName::Domain(want.to_owned())),
                "{raw}"
            );
        }
    }
}
