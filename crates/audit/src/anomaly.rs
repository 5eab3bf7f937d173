//! Anomaly rules: what, among the gate's decisions, an operator should be
//! told about as it happens.
//!
//! Pure: a [`Detector`] keeps a little state (hosts seen, recent denials)
//! and turns each [`Observation`] the gate makes into zero or more
//! [`AlertData`], which the gate writes as `alert` records
//! ([`AlertData::to_json`] is the record's `data`). No I/O, no clock: the
//! caller passes the time of each observation, so tests replay a session
//! exactly.
//!
//! | rule | fires on | how often |
//! |---|---|---|
//! | `first-contact` | a network action to a host no rule names | once per host (up to [`MAX_HOSTS`] hosts, then once more to say it stopped counting) |
//! | `placeholder-leak` | a credential placeholder sent to a host outside its declared hosts | every time |
//! | `hidden-path` | an attempt on a hidden secret path | the first attempt; later ones are counted ([`Detector::counts`], for the session's summary) |
//! | `deny-burst` | `deny_burst_count` denials within `deny_burst_window` | once per burst: the window then starts empty again |
//! | `destructive-ask` | an `ask` on an action labelled destructive or irreversible | every time |
//! | `query-exfiltration` | an allowed `GET`/`HEAD` whose query string is over [`Thresholds::query_max_bytes`] (512) bytes, or at least [`Thresholds::query_entropy_min_len`] (64) bytes with a Shannon entropy over [`Thresholds::query_entropy_bits`] (4.5) bits per byte | every time |
//!
//! The query rule is about data leaving in a URL the manifest allows: a
//! long blob in `?q=` to an allowed search API. Ordinary queries (`?page=2`,
//! English words: about 4 bits per byte) stay below both thresholds;
//! base64 of random bytes reaches about 5 to 6 bits per byte over 64
//! characters and more. Hex-encoded data (at most 4 bits per byte) escapes
//! the entropy test and is caught by length only: 512 bytes is 256 bytes of
//! payload per request.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

/// The most undeclared hosts remembered for `first-contact`.
pub const MAX_HOSTS: usize = 4096;

/// When the rules fire. Mirrors the manifest's `[audit.alerts]`
/// (`blastwall_policy::Alerts`) field for field, plus the query-string
/// thresholds, which the manifest does not set.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Alert on the first request to an undeclared host.
    pub first_contact: bool,
    /// Alert on a placeholder outside its hosts.
    pub placeholder_leak: bool,
    /// Alert on an attempt on a hidden path.
    pub hidden_path: bool,
    /// Alert on a destructive ask.
    pub destructive_ask: bool,
    /// Alert on this many denials... (0 turns the rule off)
    pub deny_burst_count: u32,
    /// ...within this window.
    pub deny_burst_window: Duration,
    /// Alert on an allowed GET whose query string is longer than this, in
    /// bytes (0 turns the query rule off).
    pub query_max_bytes: usize,
    /// Alert on an allowed GET whose query string's Shannon entropy is
    /// over this many bits per byte...
    pub query_entropy_bits: f64,
    /// ...when the query string is at least this long.
    pub query_entropy_min_len: usize,
}

impl Default for Thresholds {
    /// Every rule on; 10 denials in 10 seconds; queries over 512 bytes, or
    /// over 4.5 bits per byte across at least 64 bytes.
    fn default() -> Self {
        Thresholds {
            first_contact: true,
            placeholder_leak: true,
            hidden_path: true,
            destructive_ask: true,
            deny_burst_count: 10,
            deny_burst_window: Duration::from_secs(10),
            query_max_bytes: 512,
            query_entropy_bits: 4.5,
            query_entropy_min_len: 64,
        }
    }
}

/// The gate's verdict, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Held for a person.
    Ask,
    /// Refused.
    Deny,
}

/// A network action, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetFacts<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The host, normalised (lowercase, no trailing dot).
    pub host: &'a str,
    /// The port.
    pub port: u16,
    /// The path.
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Whether a manifest rule names this host (an exact or a wildcard
    /// match); the default verdict is not a rule.
    pub host_declared: bool,
}

/// One decision the gate made, with the facts the rules look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// When, as a monotonic offset from any fixed origin (the session's
    /// start, say); only differences matter.
    pub at: Duration,
    /// The seq of the decision record, to point the alert at it.
    pub decision_seq: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether the action carries the `destructive` or `irreversible`
    /// label.
    pub destructive: bool,
    /// The network action, if it is one.
    pub net: Option<NetFacts<'a>>,
    /// The hidden path the action tried to reach, if it did.
    pub hidden_path: Option<&'a str>,
    /// A credential placeholder found on a request to a host outside the
    /// credential's hosts: the credential's name and that host.
    pub placeholder_leak: Option<(&'a str, &'a str)>,
}

impl<'a> Observation<'a> {
    /// An observation with no facts but its time and verdict.
    pub fn new(at: Duration, verdict: Verdict) -> Self {
        Observation {
            at,
            decision_seq: None,
            verdict,
            destructive: false,
            net: None,
            hidden_path: None,
            placeholder_leak: None,
        }
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertRule {
    /// A host no rule names, contacted for the first time.
    FirstContact,
    /// A placeholder sent outside its hosts.
    PlaceholderLeak,
    /// An attempt on a hidden path.
    HiddenPath,
    /// Many denials in a short time.
    DenyBurst,
    /// An ask on a destructive action.
    DestructiveAsk,
    /// A long or high-entropy query string on an allowed GET.
    QueryExfiltration,
}

impl AlertRule {
    /// The rule's name in an alert's `rule` member, e.g.
    /// `"anomaly.first-contact"`.
    pub const fn name(self) -> &'static str {
        match self {
            AlertRule::FirstContact => "anomaly.first-contact",
            AlertRule::PlaceholderLeak => "anomaly.placeholder-leak",
            AlertRule::HiddenPath => "anomaly.hidden-path",
            AlertRule::DenyBurst => "anomaly.deny-burst",
            AlertRule::DestructiveAsk => "anomaly.destructive-ask",
            AlertRule::QueryExfiltration => "anomaly.query-exfiltration",
        }
    }
}

/// An alert to record: the `data` of an `alert` record.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertData {
    /// The rule.
    pub rule: AlertRule,
    /// What happened, for a person.
    pub reason: String,
    /// The decision that triggered it, if one did.
    pub decision_seq: Option<u64>,
    /// The facts, as a JSON object.
    pub detail: Value,
}

impl AlertData {
    /// The `alert` record's data: `rule`, `reason`, `decision_seq`, then the
    /// members of `detail`.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("rule".into(), json!(self.rule.name()));
        out.insert("reason".into(), json!(self.reason));
        out.insert("decision_seq".into(), json!(self.decision_seq));
        if let Value::Object(detail) = &self.detail {
            for (k, v) in detail {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Value::Object(out)
    }
}

/// How many times each rule's trigger was seen (fired or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Requests to undeclared hosts.
    pub undeclared_requests: u64,
    /// Distinct undeclared hosts (up to [`MAX_HOSTS`]).
    pub undeclared_hosts: u64,
    /// Placeholders outside their hosts.
    pub placeholder_leaks: u64,
    /// Attempts on hidden paths.
    pub hidden_path_attempts: u64,
    /// Denials.
    pub denials: u64,
    /// Bursts of denials alerted.
    pub deny_bursts: u64,
    /// Destructive asks.
    pub destructive_asks: u64,
    /// Suspicious query strings.
    pub suspicious_queries: u64,
}

/// The anomaly rules' state for one session.
#[derive(Debug, Clone)]
pub struct Detector {
    thresholds: Thresholds,
    hosts: HashSet<String>,
    hosts_full: bool,
    denials: VecDeque<Duration>,
    counts: Counts,
}

impl Detector {
    /// A detector with no history.
    pub fn new(thresholds: Thresholds) -> Self {
        Detector {
            thresholds,
            hosts: HashSet::new(),
            hosts_full: false,
            denials: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// How often each trigger was seen so far (for the session's summary).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Applies every rule to one decision; returns the alerts to record, in
    /// rule order.
    pub fn observe(&mut self, ev: &Observation<'_>) -> Vec<AlertData> {
        let mut out = Vec::new();
        if let Some((credential, host)) = ev.placeholder_leak {
            self.placeholder(ev, credential, host, &mut out);
        }
        if let Some(path) = ev.hidden_path {
            self.hidden(ev, path, &mut out);
        }
        if let Some(net) = &ev.net {
            self.first_contact(ev, net, &mut out);
            self.query(ev, net, &mut out);
        }
        if ev.verdict == Verdict::Ask && ev.destructive {
            self.counts.destructive_asks += 1;
            if self.thresholds.destructive_ask {
                out.push(alert(
                    ev,
                    AlertRule::DestructiveAsk,
                    "a destructive or irreversible action is waiting for approval".to_owned(),
                    json!({}),
                ));
            }
        }
        if ev.verdict == Verdict::Deny {
            self.deny(ev, &mut out);
        }
        out
    }

    fn placeholder(
        &mut self,
        ev: &Observation<'_>,
        credential: &str,
        host: &str,
        out: &mut Vec<AlertData>,
    ) {
        self.counts.placeholder_leaks += 1;
        if self.thresholds.placeholder_leak {
            out.push(alert(
                ev,
                AlertRule::PlaceholderLeak,
                format!("the placeholder of credential {credential} was sent to {host}, outside its hosts"),
                json!({"credential": credential, "host": host}),
            ));
        }
    }

    fn hidden(&mut self, ev: &Observation<'_>, path: &str, out: &mut Vec<AlertData>) {
        self.counts.hidden_path_attempts += 1;
        if self.thresholds.hidden_path && self.counts.hidden_path_attempts == 1 {
            out.push(alert(
                ev,
                AlertRule::HiddenPath,
                format!(
                    "an attempt on the hidden path {path} (later attempts are counted, not alerted)"
                ),
                json!({"path": path, "attempts": 1}),
            ));
        }
    }

    fn first_contact(
        &mut self,
        ev: &Observation<'_>,
        net: &NetFacts<'_>,
        out: &mut Vec<AlertData>,
    ) {
        if net.host_declared {
            return;
        }
        self.counts.undeclared_requests += 1;
        if self.hosts.contains(net.host) {
            return;
        }
        if self.hosts.len() >= MAX_HOSTS {
            if !self.hosts_full {
                self.hosts_full = true;
                if self.thresholds.first_contact {
                    out.push(alert(
                        ev,
                        AlertRule::FirstContact,
                        format!("more than {MAX_HOSTS} undeclared hosts contacted: no more first-contact alerts this session"),
                        json!({"host": net.host, "hosts": MAX_HOSTS}),
                    ));
                }
            }
            return;
        }
        self.hosts.insert(net.host.to_owned());
        self.counts.undeclared_hosts += 1;
        if self.thresholds.first_contact {
            out.push(alert(
                ev,
                AlertRule::FirstContact,
                format!("first request to {}, a host no rule names", net.host),
                json!({"host": net.host, "port": net.port, "method": net.method, "path": net.path}),
            ));
        }
    }

    fn query(&mut self, ev: &Observation<'_>, net: &NetFacts<'_>, out: &mut Vec<AlertData>) {
        let t = &self.thresholds;
        let Some(query) = net.query else { return };
        let read =
            net.method.eq_ignore_ascii_case("GET") || net.method.eq_ignore_ascii_case("HEAD");
        if ev.verdict != Verdict::Allow || !read || t.query_max_bytes == 0 {
            return;
        }
        let len = query.len();
        let bits = shannon_entropy(query.as_bytes());
        let why = if len > t.query_max_bytes {
            format!("a query string of {len} bytes (over {})", t.query_max_bytes)
        } else if len >= t.query_entropy_min_len && bits > t.query_entropy_bits {
            format!(
                "a query string of {len} bytes at {bits:.2} bits per byte (over {})",
                t.query_entropy_bits
            )
        } else {
            return;
        };
        self.counts.suspicious_queries += 1;
        out.push(alert(
            ev,
            AlertRule::QueryExfiltration,
            format!(
                "{why} on an allowed {} to {}: data may be leaving in the URL",
                net.method, net.host
            ),
            json!({
                "host": net.host,
                "path": net.path,
                "query_bytes": len,
                "entropy_bits": (bits * 100.0).round() / 100.0,
            }),
        ));
    }

    fn deny(&mut self, ev: &Observation<'_>, out: &mut Vec<AlertData>) {
        self.counts.denials += 1;
        let count = self.thresholds.deny_burst_count;
        if count == 0 {
            return;
        }
        let window = self.thresholds.deny_burst_window;
        while self
            .denials
            .front()
            .is_some_and(|&t| ev.at.saturating_sub(t) > window)
        {
            self.denials.pop_front();
        }
        self.denials.push_back(ev.at);
        if self.denials.len() >= usize::try_from(count).unwrap_or(usize::MAX) {
            self.denials.clear();
            self.counts.deny_bursts += 1;
            out.push(alert(
                ev,
                AlertRule::DenyBurst,
                format!(
                    "{count} denials within {} s: the agent may be probing the wall",
                    window.as_secs_f64()
                ),
                json!({"denials": count, "window_secs": window.as_secs_f64()}),
            ));
        }
    }
}

fn alert(ev: &Observation<'_>, rule: AlertRule, reason: String, detail: Value) -> AlertData {
    AlertData {
        rule,
        reason,
        decision_seq: ev.decision_seq,
        detail,
    }
}

/// Shannon entropy of `bytes`, in bits per byte (0 for no bytes).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut freq = [0u64; 256];
    for &b in bytes {
        freq[usize::from(b)] += 1;
    }
    // Lengths here are far below 2^52, so the conversions are exact.
    let n = bytes.len() as f64;
    freq.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}
