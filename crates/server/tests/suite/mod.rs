mod web;
mod webhook;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use blastwall_gate::{Approval, ApprovalStore as _, SqliteStore, State, Summary, now_ns};
use blastwall_policy::RuleRef;
use blastwall_session::Home;

/// The hostile parts an agent can put in what a person reads (raw, as a
/// store record could hold them if a summary were built carelessly).
pub(crate) const HOSTILE: &[&str] = &[
    "\u{1b}[2J\u{1b}]0;pwned\u{7}",
    "\u{1b}]52;c;cm0gLXJmIH4=\u{7}",
    "vol_pr\u{43e}d\u{202e}dorp_lov",
    "<script>alert(1)</script>",
    "<!channel> <!here>",
    "<http://evil.example|click>",
    "@everyone @here",
    "[x](http://evil.example)",
    "`code` *bold* _it_ ~s~ ||spoiler||",
    "\"'><img src=x onerror=alert(1)>",
];

/// A summary whose every agent-controlled part carries `hostile`, built
/// the way the gate builds one (cleaned).
pub(crate) fn hostile_summary(hostile: &str) -> Summary {
    let clean = |s: &str| blastwall_gate::summary::clean(s, blastwall_gate::summary::MAX_TARGET);
    Summary {
        verb: "DELETE".into(),
        target: clean(&format!("/volumes/{hostile}")),
        host: clean(&format!("api.{hostile}.example")),
        how: clean(&format!("HTTP DELETE {hostile}")),
        risk: "destructive".into(),
        more: 0,
        also: Vec::new(),
    }
}

pub(crate) fn approval(id: &str, session: &str, summary: Summary) -> Approval {
    let now = now_ns();
    Approval {
        id: id.into(),
        session: session.into(),
        request_id: 3,
        summary,
        action: serde_json::json!({"kind": "net"}),
        digest: "ab".repeat(32),
        rule: RuleRef {
            id: "network.rule[0]".into(),
            file: "blastwall.toml".into(),
            line: 2,
            col: 1,
        },
        reason: "volumes are deleted only with a person's yes".into(),
        labels: vec!["destructive".into()],
        destructive: true,
        group: "network.rule[0] @ api.example.test".into(),
        created_ns: now,
        expires_ns: now + 300 * 1_000_000_000,
        state: State::Pending,
        decided_ns: None,
        decided_by: None,
        note: None,
    }
}

pub(crate) fn store(home: &Home) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&home.approvals_db()).unwrap())
}

pub(crate) fn insert(home: &Home, a: &Approval) {
    store(home).insert(a).unwrap();
}

/// A response, as read off the socket.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the
/// whole response. `headers` are sent as given: no Host is added.
pub(crate) fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse(&buf)
}

pub(crate) fn parse(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}
