//! The live feed: the audit logs of running sessions, followed record by
//! record (each verified against the chain as it is read), and what a
//! person needs beside them: the sessions and the pending approvals.
//!
//! Every text here is made for display: agent-controlled parts go through
//! [`clean`], so a [`FeedEvent`]'s `text` is printable ASCII. The page
//! still HTML-escapes it (or puts it in `textContent`).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufReader;

use blastwall_audit::{Event, Kind, LogReader};
use blastwall_gate::summary::clean;
use blastwall_gate::{Approval, ApprovalStore, Query, State, StoreError};
use blastwall_session::{Home, SessionDir, Status};
use serde::Serialize;
use serde_json::Value;

/// How many recent events the feed keeps for a newcomer.
pub const RECENT: usize = 500;

/// The longest event text.
const MAX_TEXT: usize = 400;

/// One audit record, made readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedEvent {
    /// The session it belongs to.
    pub session: String,
    /// Its sequence number in the session's log.
    pub seq: u64,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// `session-start`, `decision`, `outcome`, `alert`, `session-end`, `checkpoint`.
    pub kind: String,
    /// `allow`, `ask`, `deny` for a decision; the outcome for an outcome.
    pub verdict: Option<String>,
    /// What happened, in a line of printable ASCII.
    pub text: String,
}

/// A session, for the lists.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Its id.
    pub id: String,
    /// Its `--name`, cleaned.
    pub name: Option<String>,
    /// `running`, `exited`, `crashed`.
    pub status: Status,
    /// The command, cleaned, in a line.
    pub command: String,
    /// The project root, cleaned.
    pub project: String,
    /// Start, ns since the epoch.
    pub started_ns: u128,
    /// Its exit code once it exited.
    pub exit_code: Option<i32>,
}

/// An approval as the channels show it: the stored record plus its
/// one-line summary.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// The record.
    #[serde(flatten)]
    pub approval: Approval,
    /// [`blastwall_gate::Summary::text`].
    pub summary_text: String,
}

impl From<Approval> for ApprovalView {
    fn from(approval: Approval) -> Self {
        ApprovalView {
            summary_text: approval.summary.text(),
            approval,
        }
    }
}

/// Everything at one moment (`watch --once --json`, the page's first load).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Every session, newest first.
    pub sessions: Vec<SessionInfo>,
    /// Pending approvals, destructive first.
    pub approvals: Vec<ApprovalView>,
    /// The recent events of running sessions, oldest first.
    pub events: Vec<FeedEvent>,
}

/// Every session, newest first (at most `limit`, 0 = all).
pub fn sessions(home: &Home, limit: usize) -> Vec<SessionInfo> {
    let mut out: Vec<SessionInfo> = blastwall_session::list_sessions(home)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .filter_map(|d| {
            let m = d.meta().ok()?;
            Some(SessionInfo {
                id: clean(&d.id(), 80),
                name: m.name.as_deref().map(|n| clean(n, 80)),
                status: d.status(&m),
                command: clean(&m.command.join(" "), 200),
                project: clean(&m.project.to_string_lossy(), 200),
                started_ns: m.started_ns,
                exit_code: m.exit_code,
            })
        })
        .collect();
    if limit > 0 {
        out.truncate(limit);
    }
    out
}

/// The pending approvals (or, with `all`, the newest 200 of every state).
pub fn approvals(store: &dyn ApprovalStore, all: bool) -> Result<Vec<ApprovalView>, StoreError> {
    let q = Query {
        session: None,
        states: if all {
            Vec::new()
        } else {
            vec![State::Pending]
        },
        limit: if all { 200 } else { 0 },
    };
    Ok(store
        .list(&q)?
        .into_iter()
        .map(ApprovalView::from)
        .collect())
}

/// A fingerprint of the pending approvals: it changes when one is added or
/// leaves `pending`.
pub fn pending_fingerprint(store: &dyn ApprovalStore) -> String {
    match approvals(store, false) {
        Ok(v) => v
            .iter()
            .map(|a| a.approval.id.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("error: {e}"),
    }
}

struct Tail {
    /// `None` once the session ended (sealed) or its log is damaged:
    /// nothing more comes.
    reader: Option<LogReader<BufReader<File>>>,
}

/// Follows the audit logs of running sessions.
pub struct Feed {
    home: Home,
    tails: HashMap<String, Tail>,
    recent: VecDeque<FeedEvent>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("home", &self.home)
            .field("following", &self.tails.len())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// A feed over the sessions under `home`.
    pub fn new(home: Home) -> Feed {
        Feed {
            home,
            tails: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// The most recent events, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &FeedEvent> {
        self.recent.iter()
    }

    /// Reads what the running sessions' logs gained since the last call
    /// (a session seen running for the first time is read from its start).
    pub fn poll(&mut self) -> Vec<FeedEvent> {
        let mut out = Vec::new();
        for d in blastwall_session::list_sessions(&self.home).unwrap_or_default() {
            let id = d.id();
            if self.tails.contains_key(&id) {
                continue;
            }
            let running = d.meta().is_ok_and(|m| d.status(&m) == Status::Running);
            if running {
                self.follow(&d, &mut out);
            }
        }
        let ids: Vec<String> = self.tails.keys().cloned().collect();
        for id in ids {
            self.read_more(&id, &mut out);
        }
        // A finished log stays in the map (so it is not read again) with
        // its reader closed.
        for e in &out {
            self.recent.push_back(e.clone());
        }
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        out
    }

    fn follow(&mut self, d: &SessionDir, out: &mut Vec<FeedEvent>) {
        let id = d.id();
        match LogReader::open(d.audit_log()) {
            Ok(reader) => {
                self.tails.insert(
                    id,
                    Tail {
                        reader: Some(reader),
                    },
                );
            }
            // Not there yet: look again next time.
            Err(_) if !d.audit_log().exists() => {}
            Err(e) => {
                out.push(problem(&id, &e.to_string()));
                self.tails.insert(id, Tail { reader: None });
            }
        }
    }

    fn read_more(&mut self, id: &str, out: &mut Vec<FeedEvent>) {
        let Some(t) = self.tails.get_mut(id) else {
            return;
        };
        // Bounded per poll so one busy session cannot starve the others.
        for _ in 0..10_000 {
            let Some(reader) = t.reader.as_mut() else {
                return;
            };
            match reader.next_available() {
                Ok(Some(e)) => out.push(describe(&e)),
                Ok(None) => {
                    if reader.is_sealed() {
                        t.reader = None;
                    }
                    return;
                }
                Err(e) => {
                    t.reader = None;
                    out.push(problem(id, &e.to_string()));
                    return;
                }
            }
        }
    }
}

fn problem(session: &str, what: &str) -> FeedEvent {
    FeedEvent {
        session: clean(session, 80),
        seq: 0,
        time: String::new(),
        kind: "problem".into(),
        verdict: None,
        text: clean(
            &format!("the audit log cannot be followed: {what}"),
            MAX_TEXT,
        ),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// One line saying what an audited action was.
pub fn describe_action(a: &Value) -> String {
    match s(a, "kind") {
        "net" => {
            let port = a.get("port").and_then(Value::as_u64);
            let scheme = s(a, "scheme");
            let default = matches!((scheme, port), ("http", Some(80)) | ("https", Some(443)));
            let port = match port {
                Some(p) if !default => format!(":{p}"),
                _ => String::new(),
            };
            let query = match s(a, "query") {
                "" => String::new(),
                q => format!("?{q}"),
            };
            format!(
                "{} {scheme}://{}{port}{}{query}",
                s(a, "method"),
                s(a, "host"),
                s(a, "path")
            )
        }
        "exec" => {
            let argv: Vec<&str> = a
                .get("argv")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("exec {}", argv.join(" "))
        }
        "fs" => format!(
            "{} {}",
            s(a, "op"),
            a.get("path").map_or(String::new(), value_text)
        ),
        "" => String::new(),
        other => other.to_owned(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An audit record as a feed line.
pub fn describe(e: &Event) -> FeedEvent {
    let d = &e.data;
    let (verdict, text) = match e.kind {
        Kind::SessionStart => {
            let cmd: Vec<&str> = d
                .get("command")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (None, format!("session started: {}", cmd.join(" ")))
        }
        Kind::Decision => {
            let verdict = s(d, "verdict").to_owned();
            let rule = d
                .get("rule")
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let what = d.get("action").map_or_else(
                || s(d, "subject").to_owned(),
                |a| {
                    if a.is_null() {
                        s(d, "subject").to_owned()
                    } else {
                        describe_action(a)
                    }
                },
            );
            let approval = match s(d, "approval") {
                "" => String::new(),
                id => format!(" ({id})"),
            };
            (
                Some(verdict.clone()),
                format!("{verdict} {what} [{rule}]{approval}"),
            )
        }
        Kind::Outcome => {
            let outcome = s(d, "outcome").to_owned();
            let of = d
                .get("decision_seq")
                .and_then(Value::as_u64)
                .map_or(String::new(), |n| format!(" of #{n}"));
            let approval = match s(d, "approval") {
                "" => String::new(),
                id => format!(" ({id})"),
            };
            let by = d
                .get("detail")
                .and_then(|x| x.get("by"))
                .and_then(Value::as_str)
                .map_or(String::new(), |b| format!(" by {b}"));
            (
                Some(outcome.clone()),
                format!("{outcome}{of}{approval}{by}"),
            )
        }
        Kind::Alert => {
            // Older alerts say `what`, the anomaly rules `reason`.
            let what = match s(d, "what") {
                "" => s(d, "reason"),
                w => w,
            };
            (None, format!("ALERT {}: {what}", s(d, "rule")))
        }
        Kind::SessionEnd => {
            let exit = d
                .get("exit")
                .map_or_else(|| s(d, "error").to_owned(), |x| format!("exit {x}"));
            (None, format!("session ended ({exit})"))
        }
        Kind::Checkpoint => (None, "checkpoint (signed)".to_owned()),
        // `Kind` is #[non_exhaustive]: a newer record kind is shown by name.
        _ => (None, e.kind.as_str().to_owned()),
    };
    FeedEvent {
        session: clean(&e.session, 80),
        seq: e.seq,
        time: e.time.to_string(),
        kind: e.kind.as_str().to_owned(),
        verdict: verdict.map(|v| clean(&v, 40)),
        text: clean(&text, MAX_TEXT),
    }
}

/// A snapshot: sessions, pending approvals, and the events `feed` has.
pub fn snapshot(
    home: &Home,
    store: Option<&dyn ApprovalStore>,
    feed: &Feed,
) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        sessions: sessions(home, 50),
        approvals: match store {
            Some(s) => approvals(s, false)?,
            None => Vec::new(),
        },
        events: feed.recent().cloned().collect(),
    })
}
