//! Credential injection and the placeholder and secret scans.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use blastwall_policy::{Credential, HostName, Placement};
use blastwall_secrets::Secret;

/// A credential the proxy may swap in: what the manifest declares, the
/// placeholder the agent holds, and the real value.
#[derive(Debug, Clone)]
pub struct BoundCredential {
    /// The manifest's declaration (hosts, placement).
    pub cred: Credential,
    /// The per-session placeholder (see [`crate::Placeholder::generate`]).
    pub placeholder: String,
    /// The real value.
    pub secret: Secret,
}

impl BoundCredential {
    pub(crate) fn bound_to(&self, host: &HostName) -> bool {
        self.cred.hosts.iter().any(|p| p.matches(host))
    }
}

/// What to change on an allowed request.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// (header index, credential index, prefix as sent).
    pub(crate) headers: Vec<(usize, usize, String)>,
    /// The query rewritten with real values, when a query placement applied.
    pub(crate) query: Option<(String, Vec<usize>)>,
    /// Whether the host has a bound credential (its responses are scrubbed).
    pub(crate) bound_host: bool,
}

impl Plan {
    pub(crate) fn injects(&self) -> bool {
        !self.headers.is_empty() || self.query.is_some()
    }
}

/// Why a request is refused on account of credentials.
#[derive(Debug, Clone)]
pub(crate) struct Misuse {
    pub(crate) rule: &'static str,
    pub(crate) credential: Option<String>,
    pub(crate) reason: String,
}

/// Decides where placeholders may be swapped, and refuses a placeholder
/// anywhere else, or an auth header or cookie the proxy would not inject.
pub(crate) fn plan(
    creds: &[BoundCredential],
    host: &HostName,
    path: &str,
    query: Option<&str>,
    headers: &[(String, String)],
    bodies: &[&[u8]],
) -> Result<Plan, Misuse> {
    let mut plan = Plan {
        bound_host: creds.iter().any(|c| c.bound_to(host)),
        ..Plan::default()
    };
    let leak = |c: &BoundCredential, place: String| Misuse {
        rule: "proxy.placeholder",
        credential: Some(c.cred.name.clone()),
        reason: format!(
            "the placeholder of credential `{}` was found in {place}; it is only swapped in {} of requests to {}",
            c.cred.name,
            placement_words(&c.cred.placement),
            hosts_words(&c.cred),
        ),
    };
    for (hi, (name, value)) in headers.iter().enumerate() {
        let mut injected = false;
        for (ci, c) in creds.iter().enumerate() {
            let ph = c.placeholder.as_str();
            if name.contains(ph) {
                return Err(leak(c, format!("the name of header `{name}`")));
            }
            if !value.contains(ph) {
                continue;
            }
            match &c.cred.placement {
                Placement::Header { name: pn, prefix }
                    if c.bound_to(host)
                        && name.eq_ignore_ascii_case(pn)
                        && value.len() == prefix.len() + ph.len()
                        && value
                            .get(..prefix.len())
                            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                        && value.ends_with(ph) =>
                {
                    let sent = value.get(..prefix.len()).unwrap_or_default().to_owned();
                    plan.headers.push((hi, ci, sent));
                    injected = true;
                }
                Placement::Header { .. } | Placement::Query { .. } => {
                    return Err(leak(c, format!("header `{name}`")));
                }
            }
        }
        if plan.bound_host && !injected {
            let lower = name.to_ascii_lowercase();
            let own_auth = matches!(lower.as_str(), "authorization" | "cookie" | "proxy-authorization")
                || creds.iter().any(|c| {
                    c.bound_to(host)
                        && matches!(&c.cred.placement, Placement::Header { name: pn, .. } if pn.eq_ignore_ascii_case(name))
                });
            if own_auth {
                return Err(Misuse {
                    rule: "proxy.own-credential",
                    credential: None,
                    reason: format!(
                        "header `{name}` to {host} carries a credential the proxy did not inject; on a host with a bound credential only the placeholder may be sent, and the proxy swaps it"
                    ),
                });
            }
        }
    }
    for c in creds {
        if path.contains(c.placeholder.as_str()) {
            return Err(leak(c, "the URL path".into()));
        }
        if bodies.iter().any(|b| contains(b, c.placeholder.as_bytes())) {
            return Err(leak(c, "the request body".into()));
        }
    }
    if let Some(q) = query {
        let mut rewritten = Vec::new();
        let mut used = Vec::new();
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut out = pair.to_owned();
            for (ci, c) in creds.iter().enumerate() {
                if !pair.contains(c.placeholder.as_str()) {
                    if plan.bound_host
                        && c.bound_to(host)
                        && matches!(&c.cred.placement, Placement::Query { name } if name == k)
                    {
                        return Err(Misuse {
                            rule: "proxy.own-credential",
                            credential: Some(c.cred.name.clone()),
                            reason: format!(
                                "query parameter `{k}` to {host} carries a value the proxy did not inject"
                            ),
                        });
                    }
                    continue;
                }
                match &c.cred.placement {
                    Placement::Query { name }
                        if c.bound_to(host) && name == k && v == c.placeholder =>
                    {
                        let real = percent_encoding::percent_encode(
                            c.secret.expose(),
                            percent_encoding::NON_ALPHANUMERIC,
                        )
                        .to_string();
                        out = format!("{k}={real}");
                        used.push(ci);
                    }
                    Placement::Query { .. } | Placement::Header { .. } => {
                        return Err(leak(c, format!("query parameter `{k}`")));
                    }
                }
            }
            rewritten.push(out);
        }
        if !used.is_empty() {
            plan.query = Some((rewritten.join("&"), used));
        }
    }
    Ok(plan)
}

fn placement_words(p: &Placement) -> String {
    match p {
        Placement::Header { name, prefix } if prefix.is_empty() => format!("header `{name}`"),
        Placement::Header { name, prefix } => format!("header `{name}: {}<placeholder>`", prefix),
        Placement::Query { name } => format!("query parameter `{name}`"),
    }
}

fn hosts_words(c: &Credential) -> String {
    c.hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || !contains(hay, from) {
        return None;
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay.get(i..i + from.len()) == Some(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.extend_from_slice(hay.get(i..=i).unwrap_or_default());
            i += 1;
        }
    }
    Some(out)
}

/// The outcome of scanning bytes for real values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scrub {
    /// Nothing found.
    Clean,
    /// Found and swapped back to the placeholder.
    Swapped(Vec<u8>),
    /// Found in a form that cannot be swapped (unaligned base64): the bytes must not pass.
    Unswappable,
}

/// Swaps each real value (raw, base64 in four alphabets, URL-encoded) back
/// to its placeholder in the same encoding, and detects base64 of the value
/// at the other two alignments (inside a longer base64 string).
pub(crate) fn scrub(creds: &[&BoundCredential], data: &[u8]) -> Scrub {
    let mut cur: Option<Vec<u8>> = None;
    for c in creds {
        let real = c.secret.expose();
        let ph = c.placeholder.as_bytes();
        let mut forms: Vec<(Vec<u8>, Vec<u8>)> = vec![(real.to_vec(), ph.to_vec())];
        for e in [&STANDARD, &URL_SAFE] {
            forms.push((e.encode(real).into_bytes(), e.encode(ph).into_bytes()));
        }
        for e in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            forms.push((e.encode(real).into_bytes(), e.encode(ph).into_bytes()));
        }
        let pct = percent_encoding::percent_encode(real, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into_bytes();
        forms.push((pct, ph.to_vec()));
        let pct_lower =
            String::from_utf8_lossy(&forms.last().map(|f| f.0.clone()).unwrap_or_default())
                .to_ascii_lowercase()
                .into_bytes();
        forms.push((pct_lower, ph.to_vec()));
        for (from, to) in forms {
            let src = cur.as_deref().unwrap_or(data);
            if let Some(next) = replace_all(src, &from, &to) {
                cur = Some(next);
            }
        }
        let src = cur.as_deref().unwrap_or(data);
        for core in unaligned_cores(real) {
            if contains(src, &core) {
                return Scrub::Unswappable;
            }
        }
    }
    match cur {
        Some(v) => Scrub::Swapped(v),
        None => Scrub::Clean,
    }
}

/// The part of base64(prefix + value) that depends only on the value, for
/// prefixes of 0, 1 and 2 bytes mod 3, in both alphabets. Short values give
/// no core (too short to tell apart from noise).
fn unaligned_cores(real: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if real.len() < 6 {
        return out;
    }
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(real);
        // Characters fully determined by the value's bytes: skip the group
        // the prefix touches, drop the last (partial) group.
        let start = if k == 0 { 0 } else { 3 };
        let usable = buf.len().saturating_sub(start) / 3 * 3;
        let Some(mid) = buf.get(start..start + usable) else {
            continue;
        };
        // At least 9 bytes (12 characters, 72 bits): shorter cores would
        // match random base64 in a large response.
        if mid.len() < 9 {
            continue;
        }
        for e in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.push(e.encode(mid).into_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;
    use blastwall_policy::HostPattern;

    fn cred() -> BoundCredential {
        BoundCredential {
            cred: Credential {
                name: "t".into(),
                env: "T".into(),
                hosts: vec![HostPattern::parse("api.test").unwrap()],
                placement: Placement::Header {
                    name: "Authorization".into(),
                    prefix: "Bearer ".into(),
                },
                ttl: None,
                source: None,
            },
            placeholder: "bw_ph_t_00112233445566778899aabbccddeeff".into(),
            secret: Secret::from("s3cr3t-value/with+odd=chars"),
        }
    }

    #[test]
    fn scrub_swaps_raw_base64_and_url_encoded_forms_back() {
        let c = cred();
        let real = c.secret.expose().to_vec();
        let ph = c.placeholder.clone();
        for (form, back) in [
            (real.clone(), ph.clone().into_bytes()),
            (
                STANDARD.encode(&real).into_bytes(),
                STANDARD.encode(&ph).into_bytes(),
            ),
            (
                URL_SAFE_NO_PAD.encode(&real).into_bytes(),
                URL_SAFE_NO_PAD.encode(&ph).into_bytes(),
            ),
            (
                percent_encoding::percent_encode(&real, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .into_bytes(),
                ph.clone().into_bytes(),
            ),
        ] {
            let mut data = b"before ".to_vec();
            data.extend_from_slice(&form);
            data.extend_from_slice(b" after");
            // Padded and unpadded encodings may coincide for the value but
            // not for the placeholder: compare without padding.
            let Scrub::Swapped(got) = scrub(&[&c], &data) else {
                panic!("not swapped: {}", String::from_utf8_lossy(&data));
            };
            let unpadded: Vec<u8> = back.iter().copied().filter(|b| *b != b'=').collect();
            assert!(!contains(&got, &form), "{}", String::from_utf8_lossy(&got));
            assert!(
                contains(&got, &unpadded),
                "{}",
                String::from_utf8_lossy(&got)
            );
            assert!(got.starts_with(b"before ") && got.ends_with(b" after"));
        }
        assert_eq!(Scrub::Clean, scrub(&[&c], b"nothing here"));
    }

    #[test]
    fn unaligned_base64_of_the_value_is_caught() {
        let c = cred();
        // base64("Bearer " + value): the value sits at offset 7 (1 mod 3).
        let mut v = b"Bearer ".to_vec();
        v.extend_from_slice(c.secret.expose());
        let enc = STANDARD.encode(&v);
        assert_eq!(Scrub::Unswappable, scrub(&[&c], enc.as_bytes()));
        let mut v = b"xy".to_vec();
        v.extend_from_slice(c.secret.expose());
        let enc = URL_SAFE_NO_PAD.encode(&v);
        assert_eq!(Scrub::Unswappable, scrub(&[&c], enc.as_bytes()));
    }

    #[test]
    fn placeholder_only_in_its_place_on_its_hosts() {
        let c = cred();
        let host = HostName::parse("api.test").unwrap();
        let other = HostName::parse("other.test").unwrap();
        let auth = vec![(
            "authorization".to_owned(),
            format!("Bearer {}", c.placeholder),
        )];
        let p = plan(std::slice::from_ref(&c), &host, "/", None, &auth, &[]).unwrap();
        assert!(p.injects());
        assert!(plan(std::slice::from_ref(&c), &other, "/", None, &auth, &[]).is_err());
        let basic = vec![(
            "authorization".to_owned(),
            format!("Basic {}", c.placeholder),
        )];
        assert!(plan(std::slice::from_ref(&c), &host, "/", None, &basic, &[]).is_err());
        let q = format!("a=1&k={}", c.placeholder);
        assert!(plan(std::slice::from_ref(&c), &host, "/", Some(&q), &[], &[]).is_err());
        // No credential at all to the bound host is fine; the agent's own is not.
        assert!(plan(std::slice::from_ref(&c), &host, "/", None, &[], &[]).is_ok());
        let own = vec![("Authorization".to_owned(), "Bearer mine".to_owned())];
        assert!(plan(std::slice::from_ref(&c), &host, "/", None, &own, &[]).is_err());
        assert!(plan(std::slice::from_ref(&c), &other, "/", None, &own, &[]).is_ok());
    }
}
