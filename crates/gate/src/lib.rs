//! `blastwall-gate` is the one gate every interceptor (proxy, exec, SQL,
//! MCP, file system) goes through: **decide, then record, then release or
//! refuse**. Nothing takes effect before its decision is in the audit log;
//! an action with side effects is durable before it is released (I4); if
//! the record cannot be written, the action is refused.
//!
//! It owns the approval queue: with [`Gate::with_approvals`], an `ask`
//! gets an approval id in its decision record, [`Gate::hold`] makes it a
//! pending [`Approval`] bound to the digest of the request as it will be
//! forwarded, and [`Gate::wait`] holds it until a person decides, it times
//! out (a deny) or the agent goes away (abandoned). Without a queue an
//! `ask` is refused with "needs approval", and says so.
//!
//! Main types: [`Gate`], [`Release`], [`Refusal`], [`Approval`] and its
//! [`ApprovalStore`] ([`SqliteStore`]), [`Queue`], [`Summary`].
#![forbid(unsafe_code)]

pub mod approval;
mod queue;
mod record;
pub mod summary;

pub use approval::{Approval, ApprovalStore, Query, SqliteStore, State, StoreError};
pub use queue::{ApprovalConfig, Notifier, Queue};
pub use summary::Summary;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use blastwall_audit::anomaly::{
    Detector, NetFacts, Observation, Thresholds, Verdict as AnomalyVerdict,
};
use blastwall_audit::bytes::path_to_json;
use blastwall_audit::{AuditError, AuditLog, FsyncPolicy, Kind, LogFile};
use blastwall_policy::{Action, Decision, FsOp, FsyncMode, Labels, Policy, RuleRef, Verdict};
use serde::Serialize;
use serde_json::{Value, json};

use crate::record::{BuiltinRule, DecisionRecord, OutcomeRecord, RefusalRecord};

/// The audit flush policy a manifest's `[audit] fsync` asks for.
pub fn fsync_policy(mode: FsyncMode) -> FsyncPolicy {
    match mode {
        FsyncMode::Always => FsyncPolicy::Always,
        FsyncMode::SideEffects => FsyncPolicy::Batch,
    }
}

/// An action the gate let through. Hand it back to [`Gate::outcome`] once
/// the action has taken effect (or failed).
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// The audit sequence number of the decision: the request id.
    pub request_id: u64,
    /// The decision.
    pub decision: Decision,
}

/// An action the gate refused, with what the agent needs to stop retrying:
/// what was blocked, by which rule, why, and the request id.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The audit sequence number of the decision, when it was recorded.
    pub request_id: Option<u64>,
    /// `deny`, or `ask` while approvals are not available.
    pub verdict: Verdict,
    /// The rule that decided.
    pub rule: RuleRef,
    /// Why.
    pub reason: String,
    /// The part of the action that decided, if one of several.
    pub subject: Option<String>,
    /// The approval's id, for an `ask` the queue holds.
    pub approval: Option<String>,
    /// What was blocked, in a line.
    pub summary: String,
    /// The risk labels of the decision.
    pub labels: Labels,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.verdict {
            Verdict::Ask => "needs approval",
            Verdict::Deny | Verdict::Allow => "denied",
        };
        writeln!(f, "blastwall: {what}: {}", self.summary)?;
        if let Some(s) = &self.subject {
            writeln!(f, "  part:       {s}")?;
        }
        writeln!(f, "  rule:       {}", self.rule)?;
        writeln!(f, "  reason:     {}", self.reason)?;
        match (&self.approval, self.verdict) {
            (Some(id), Verdict::Ask) => writeln!(f, "  approval:   {id} (pending)")?,
            (Some(id), _) => writeln!(f, "  approval:   {id}")?,
            (None, Verdict::Ask) => writeln!(
                f,
                "  approval:   none: asks are not held in this session, so every ask is refused"
            )?,
            (None, _) => {}
        }
        match self.request_id {
            Some(id) => writeln!(f, "  request id: {id}"),
            None => writeln!(f, "  request id: none (the decision could not be recorded)"),
        }
    }
}

/// A failure to record something that is not a decision.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The audit log refused the record.
    #[error("cannot record to the audit log: {0}")]
    Audit(#[from] AuditError),
}

/// The gate: the compiled policy and the session's audit log.
///
/// Generic over the log's file so tests can record the order of writes and
/// syncs; in use it is a real file.
#[derive(Debug)]
pub struct Gate<F: LogFile = std::fs::File> {
    policy: Arc<Policy>,
    log: Mutex<AuditLog<F>>,
    queue: Option<Arc<Queue>>,
    anomaly: Option<Anomaly>,
    /// Group commit outside the log's lock, when the log is a real file.
    syncer: Option<blastwall_audit::Syncer>,
    /// The log's fsync policy (fixed when the log is opened).
    fsync: FsyncPolicy,
}

/// The anomaly rules of a gate, and who is told when one fires.
struct Anomaly {
    detector: Mutex<Detector>,
    origin: std::time::Instant,
    notify: Option<AlertNotifier>,
}

impl fmt::Debug for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anomaly").finish_non_exhaustive()
    }
}

/// A function told of each alert the anomaly rules raise (a banner on the
/// user's terminal). It must not block.
pub type AlertNotifier = Box<dyn Fn(&Value) + Send + Sync>;

impl<F: LogFile> Gate<F> {
    /// A gate deciding by `policy` and recording to `log`.
    pub fn new(policy: Arc<Policy>, log: AuditLog<F>) -> Gate<F> {
        Gate {
            policy,
            fsync: log.fsync_policy(),
            log: Mutex::new(log),
            queue: None,
            anomaly: None,
            syncer: None,
        }
    }

    /// Runs the anomaly rules on every decision; each alert is recorded
    /// (durably) and handed to `notify`.
    pub fn with_anomaly_rules(mut self, t: Thresholds, notify: Option<AlertNotifier>) -> Gate<F> {
        self.anomaly = Some(Anomaly {
            detector: Mutex::new(Detector::new(t)),
            origin: std::time::Instant::now(),
            notify,
        });
        self
    }

    /// How often each anomaly trigger was seen (for the session's summary).
    pub fn anomaly_counts(&self) -> Option<blastwall_audit::anomaly::Counts> {
        self.anomaly.as_ref().map(|a| {
            a.detector
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .counts()
        })
    }

    /// Records an attempt on a hidden path inside the wall (a denied read:
    /// the sandbox showed an empty decoy) and runs the anomaly rules on it:
    /// every attempt is an event, the first one an alert.
    pub fn hidden_path(&self, path: &std::path::Path) -> Result<u64, GateError> {
        let seq = self.record(
            Kind::Decision,
            json!({
                "action": {"kind": "fs", "op": "read", "path": path_to_json(path)},
                "verdict": Verdict::Deny,
                "rule": RuleRef { id: "filesystem.hidden".into(), file: "blastwall".into(), line: 0, col: 0 },
                "reason": "a hidden path: inside the wall it is an empty decoy",
                "labels": ["read", "credential-access"],
                "subject": Value::Null,
                "side_effects": false,
                "approval": Value::Null,
            }),
            false,
        )?;
        let shown = path.to_string_lossy();
        let mut o = Observation::new(self.since_start(), AnomalyVerdict::Deny);
        o.decision_seq = Some(seq);
        o.hidden_path = Some(&shown);
        self.raise(&o);
        Ok(seq)
    }

    fn since_start(&self) -> std::time::Duration {
        self.anomaly
            .as_ref()
            .map_or_else(Default::default, |a| a.origin.elapsed())
    }

    /// Runs the anomaly rules on one observation; records what fires.
    fn raise(&self, o: &Observation<'_>) {
        let Some(a) = &self.anomaly else {
            return;
        };
        let alerts = a
            .detector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(o);
        for alert in alerts {
            let data = alert.to_json();
            let _ = self.alert(data.clone());
            if let Some(n) = &a.notify {
                n(&data);
            }
        }
    }

    fn observe_decision(&self, action: &Action, decision: &Decision, seq: u64) {
        if self.anomaly.is_none() {
            return;
        }
        let verdict = match decision.verdict {
            Verdict::Allow => AnomalyVerdict::Allow,
            Verdict::Ask => AnomalyVerdict::Ask,
            Verdict::Deny => AnomalyVerdict::Deny,
        };
        let mut o = Observation::new(self.since_start(), verdict);
        o.decision_seq = Some(seq);
        o.destructive = decision
            .labels
            .contains(blastwall_policy::Label::Destructive)
            || decision
                .labels
                .contains(blastwall_policy::Label::Irreversible);
        let host: std::borrow::Cow<'_, str>;
        if let Action::Net(n) = action {
            // No allocation for a name on the request path; an address is rare.
            host = match &n.host {
                blastwall_policy::HostName::Domain(d) => std::borrow::Cow::Borrowed(d.as_str()),
                blastwall_policy::HostName::Ip(_) => std::borrow::Cow::Owned(n.host.to_string()),
            };
            o.net = Some(NetFacts {
                method: &n.method,
                host: &host,
                port: n.port,
                path: &n.path,
                query: n.query.as_deref(),
                // The default verdict is not a rule naming the host.
                host_declared: &*decision.rule.id != "network.default",
            });
        }
        self.raise(&o);
    }

    /// The audit log's fsync policy. Under [`FsyncPolicy::Always`] every
    /// call that records something waits for `fdatasync` before it returns,
    /// so an async caller runs those calls off its workers.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records the start of the session (first record of the log), durably.
    pub fn start(&self, data: Value) -> Result<u64, GateError> {
        let mut log = self.lock();
        let a = log.append(Kind::SessionStart, data)?;
        log.sync()?;
        Ok(a.seq)
    }

    /// Decides on `action`, records the decision, and releases or refuses.
    /// An allowed action with side effects is durable before this returns.
    pub fn check(&self, action: &Action) -> Result<Release, Box<Refusal>> {
        self.check_with(action, side_effects(action))
    }

    /// Like [`Gate::check`], with the caller saying whether the action has
    /// side effects (e.g. the proxy knows it will inject a credential).
    pub fn check_with(&self, action: &Action, side_effects: bool) -> Result<Release, Box<Refusal>> {
        let decision = self.policy.decide(action);
        // An ask the queue will hold gets its approval's id on record now.
        let approval =
            (decision.verdict == Verdict::Ask && self.queue.is_some()).then(approval::new_id);
        let data = DecisionRecord {
            action,
            verdict: decision.verdict,
            rule: &decision.rule,
            reason: &decision.reason,
            labels: decision.labels,
            subject: decision.subject.as_deref(),
            side_effects,
            approval: approval.as_deref(),
        };
        // Append in one critical section and make durable in another, so
        // that one fdatasync covers every record appended meanwhile (group
        // commit): a request whose record an earlier sync already covered
        // is released without a sync of its own.
        let durable = side_effects && decision.verdict == Verdict::Allow;
        // (An action always serializes: its paths go as bytes when they are
        // not UTF-8. Any failure to record denies, I4.)
        let seq = match self.append(Kind::Decision, &data, durable) {
            Ok(seq) => {
                self.observe_decision(action, &decision, seq);
                seq
            }
            Err(e) => {
                return Err(Box::new(Refusal {
                    request_id: None,
                    verdict: Verdict::Deny,
                    rule: decision.rule,
                    reason: format!(
                        "the decision could not be recorded, so the action is refused (I4): {e}"
                    ),
                    subject: decision.subject,
                    approval: None,
                    summary: summarize(action),
                    labels: decision.labels,
                }));
            }
        };
        match decision.verdict {
            Verdict::Allow => Ok(Release {
                request_id: seq,
                decision,
            }),
            Verdict::Ask | Verdict::Deny => Err(Box::new(Refusal {
                request_id: Some(seq),
                verdict: decision.verdict,
                reason: decision.reason.to_string(),
                rule: decision.rule,
                subject: decision.subject,
                approval,
                summary: summarize(action),
                labels: decision.labels,
            })),
        }
    }

    /// Records a refusal that an interceptor made itself, outside the
    /// policy (a malformed request, a blocked address, a placeholder sent
    /// to the wrong host): a `decision` record with verdict `deny` and a
    /// built-in rule (`proxy.placeholder`, …), written before it returns
    /// and made durable by the next group commit: nothing took effect, so
    /// nothing waits for the disk (a flood of refusals cannot tie the
    /// proxy's workers to `fdatasync`). Returns the record's sequence
    /// number: the request id.
    pub fn refuse(
        &self,
        action: Option<&Action>,
        rule: &str,
        reason: &str,
        summary: &str,
        detail: Value,
    ) -> Result<u64, GateError> {
        let data = RefusalRecord {
            action,
            verdict: Verdict::Deny,
            rule: BuiltinRule::new(rule),
            reason,
            labels: [],
            subject: summary,
            side_effects: false,
            approval: None,
            detail: &detail,
        };
        Ok(self.append(Kind::Decision, &data, false)?)
    }

    /// Records what became of a released action.
    pub fn outcome(
        &self,
        release: &Release,
        outcome: &str,
        detail: Value,
    ) -> Result<(), GateError> {
        self.outcome_of(release.request_id, outcome, detail)
    }

    /// Records what became of the action decided in record `seq`.
    pub fn outcome_of(&self, seq: u64, outcome: &str, detail: Value) -> Result<(), GateError> {
        self.outcome_data(seq, outcome, &detail)
    }

    /// [`Gate::outcome_of`] with a `detail` serialized straight into the
    /// record (a struct, or a `Value`): the same bytes as its
    /// `serde_json::to_value`, without building it. `detail` must serialize
    /// to a JSON object for the record to read as documented.
    pub fn outcome_data<T: Serialize + ?Sized>(
        &self,
        seq: u64,
        outcome: &str,
        detail: &T,
    ) -> Result<(), GateError> {
        let data = OutcomeRecord {
            decision_seq: seq,
            outcome,
            detail,
        };
        self.append(Kind::Outcome, &data, false)?;
        Ok(())
    }

    /// Records an alert, durably.
    pub fn alert(&self, data: Value) -> Result<u64, GateError> {
        Ok(self.append(Kind::Alert, &data, true)?)
    }

    /// Appends one record and returns its seq; durable before it returns
    /// when `durable` (and every record under [`FsyncPolicy::Always`]).
    ///
    /// With group commit the record is appended under the log's lock and
    /// synced after it is released, so that one `fdatasync` covers every
    /// record appended meanwhile and no caller waits for the disk holding
    /// the lock. Without it (a test's recording log), the log syncs under
    /// the lock as its policy says.
    fn append<T: Serialize + ?Sized>(
        &self,
        kind: Kind,
        data: &T,
        durable: bool,
    ) -> Result<u64, AuditError> {
        match &self.syncer {
            Some(syncer) => {
                let (seq, last) = {
                    let mut log = self.lock();
                    let a = log.append_data_unsynced(kind, data)?;
                    // The tap's alerts may follow the record: under
                    // `always` they are synced with it.
                    (a.seq, log.next_seq().saturating_sub(1))
                };
                match self.fsync {
                    FsyncPolicy::Always => syncer.sync_through(last)?,
                    FsyncPolicy::Batch if durable => syncer.sync_through(seq)?,
                    FsyncPolicy::Batch | FsyncPolicy::Never => {}
                }
                Ok(seq)
            }
            None => {
                let mut log = self.lock();
                let seq = log.append_data(kind, data)?.seq;
                if durable && log.durable_seq().is_none_or(|d| d < seq) {
                    log.sync()?;
                }
                Ok(seq)
            }
        }
    }

    /// Makes every record so far durable (the group commit of reads).
    pub fn flush(&self) -> Result<(), GateError> {
        self.lock().sync()?;
        Ok(())
    }

    /// Seals the log with a `session-end` record.
    pub fn finish(&self, data: Value) -> Result<(), GateError> {
        let mut log = self.lock();
        log.append(Kind::SessionEnd, data)?;
        log.sync()?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog<F>> {
        // A panic while holding the lock leaves the log as it was: appends
        // are single writes, so the data behind a poisoned lock is usable.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `5m`, `90s`, `1h30m`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, 0) => format!("{}ms", d.as_millis()),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

impl Gate<std::fs::File> {
    /// Makes decisions durable by group commit outside the log's lock:
    /// appends stay serialised, and each `fdatasync` covers every record
    /// appended before it, for every waiting caller at once.
    pub fn with_group_commit(mut self) -> Result<Gate<std::fs::File>, GateError> {
        let syncer = self.lock().syncer()?;
        self.syncer = Some(syncer);
        Ok(self)
    }
}

/// `ns` (since the epoch) relative to `now`, to the second: `in 4m58s`,
/// `3s ago`.
pub fn relative_time(ns: i64, now: i64) -> String {
    let d = std::time::Duration::from_secs(ns.saturating_sub(now).unsigned_abs() / 1_000_000_000);
    let t = human_duration(d);
    if ns >= now {
        format!("in {t}")
    } else {
        format!("{t} ago")
    }
}

/// Whether an action changes state if it goes ahead.
pub fn side_effects(action: &Action) -> bool {
    match action {
        Action::Net(n) => net_side_effects(n),
        Action::Exec(_) => true,
        Action::Fs(f) => f.op == FsOp::Write,
    }
}

/// [`side_effects`] of a network request, without wrapping it in an
/// [`Action`] (which would take a copy of it).
pub fn net_side_effects(n: &blastwall_policy::NetAction) -> bool {
    let safe = |m: &str| matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE");
    !safe(&n.method) || n.method_overrides.iter().any(|m| !safe(m))
}

/// The action as it goes into the audit log (paths that are not UTF-8 are
/// encoded unambiguously).
pub fn action_json(action: &Action) -> Value {
    serde_json::to_value(action)
        .unwrap_or_else(|e| json!({"kind": action.kind(), "unserializable": e.to_string()}))
}

/// One line saying what the action is.
pub fn summarize(action: &Action) -> String {
    match action {
        Action::Net(n) => summarize_net(n),
        Action::Exec(e) => format!("exec {}", e.argv.join(" ")),
        Action::Fs(f) => {
            let op = match f.op {
                FsOp::Read => "read",
                FsOp::Write => "write",
            };
            format!("{op} {}", f.path.display())
        }
    }
}

/// [`summarize`] of a network request, without wrapping it in an
/// [`Action`] (which would take a copy of it).
pub fn summarize_net(n: &blastwall_policy::NetAction) -> String {
    use std::fmt::Write as _;
    let scheme = match n.scheme {
        blastwall_policy::Scheme::Http => "http",
        blastwall_policy::Scheme::Https => "https",
    };
    // One allocation: the proxy builds this line for every request.
    let host_len = match &n.host {
        blastwall_policy::HostName::Domain(d) => d.len(),
        blastwall_policy::HostName::Ip(_) => 41,
    };
    let mut line = String::with_capacity(n.method.len() + host_len + n.path.len() + 16);
    // Writing into a String cannot fail.
    let _ = write!(line, "{} {scheme}://{}", n.method, n.host);
    if n.port != n.scheme.default_port() {
        let _ = write!(line, ":{}", n.port);
    }
    line.push_str(&n.path);
    line
}
