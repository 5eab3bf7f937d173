//! Holding an `ask` for a person: the gate creates the pending approval,
//! waits on the store (woken by the session's control socket, polled as a
//! fallback), and turns the outcome into a release or a refusal, each
//! recorded in the audit log first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use blastwall_audit::{Kind, LogFile};
use blastwall_policy::{Action, Decision, Verdict};
use serde_json::{Value, json};

use crate::approval::{Approval, ApprovalStore, State};
use crate::summary::Summary;
use crate::{Gate, Refusal, Release, now_ns};

/// How asks are held.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// How long an ask waits before it becomes a deny.
    pub timeout: Duration,
    /// Pending asks per session past which a new ask is denied (with an alert).
    pub max_pending: usize,
    /// `false`: nobody can answer (no terminal and `non_interactive =
    /// "deny"`): each ask is recorded and denied at once.
    pub wait: bool,
    /// How often a waiting ask re-reads the store when nothing wakes it.
    pub poll: Duration,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            timeout: Duration::from_secs(300),
            max_pending: 64,
            wait: true,
            poll: Duration::from_millis(250),
        }
    }
}

/// A function told of each new pending approval (the terminal banner, the
/// webhook). It must not block.
pub type Notifier = Box<dyn Fn(&Approval) + Send + Sync>;

/// The approval side of a gate: the store, this session's id, the waits.
pub struct Queue {
    store: Arc<dyn ApprovalStore>,
    session: String,
    cfg: ApprovalConfig,
    wake: tokio::sync::Notify,
    notify: Vec<Notifier>,
    /// Makes counting the pending asks and adding one a single step, so
    /// concurrent asks cannot overshoot the cap.
    admit: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("session", &self.session)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// A queue for `session` on `store`.
    pub fn new(store: Arc<dyn ApprovalStore>, session: &str, cfg: ApprovalConfig) -> Queue {
        Queue {
            store,
            session: session.to_owned(),
            cfg,
            wake: tokio::sync::Notify::new(),
            notify: Vec::new(),
            admit: std::sync::Mutex::new(()),
        }
    }

    /// Adds a function told of each new pending approval.
    pub fn on_pending(mut self, f: Notifier) -> Queue {
        self.notify.push(f);
        self
    }

    /// Wakes every waiting ask to re-read the store (the control socket
    /// calls this when `approve` or `deny` pokes it).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ApprovalConfig {
        &self.cfg
    }
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl<F: LogFile> Gate<F> {
    /// Makes an `ask` wait for a person instead of being refused at once.
    pub fn with_approvals(mut self, queue: Queue) -> Gate<F> {
        self.queue = Some(Arc::new(queue));
        self
    }

    /// The approval queue, if asks are held.
    pub fn queue(&self) -> Option<&Arc<Queue>> {
        self.queue.as_ref()
    }

    /// Turns an `ask` refusal from [`Gate::check_with`] into a pending
    /// approval bound to `digest` (the request as it will be forwarded).
    /// Refuses (recorded) when asks are not held, when nobody can answer,
    /// when the session has too many pending asks, or when the store fails.
    pub fn hold(
        &self,
        refusal: &Refusal,
        action: &Action,
        digest: &str,
    ) -> Result<Approval, Box<Refusal>> {
        let (Some(queue), Some(id), Some(seq), Verdict::Ask) = (
            self.queue.as_ref(),
            refusal.approval.as_ref(),
            refusal.request_id,
            refusal.verdict,
        ) else {
            return Err(Box::new(refusal.clone()));
        };
        let deny = |reason: String, outcome: &str, detail: Value| {
            self.end_ask(refusal, seq, id, outcome, reason, detail)
        };
        let admit = queue
            .admit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = match queue.store.pending_count(&queue.session) {
            Ok(n) => n,
            Err(e) => {
                return Err(deny(
                    format!("the approval could not be created ({e}), so the action is refused"),
                    "denied",
                    json!({"why": "store"}),
                ));
            }
        };
        if pending >= queue.cfg.max_pending {
            let _ = self.alert(json!({
                "rule": "approval-flood",
                "what": format!("{pending} asks already pending in this session; further asks are denied until some are answered"),
                "decision_seq": seq,
            }));
            return Err(deny(
                format!(
                    "{pending} asks of this session are already waiting for a person (the limit is {}); answer those first (`blastwall approvals`)",
                    queue.cfg.max_pending
                ),
                "denied",
                json!({"why": "too many pending asks"}),
            ));
        }
        let now = now_ns();
        let labels: Vec<String> = refusal.labels.iter().map(|l| l.to_string()).collect();
        let destructive = labels
            .iter()
            .any(|l| l == "destructive" || l == "irreversible");
        let summary = Summary::of(action, refusal.labels, refusal.subject.as_deref());
        let mut approval = Approval {
            id: id.clone(),
            session: queue.session.clone(),
            request_id: seq,
            group: format!("{} @ {}", refusal.rule.id, summary.host),
            summary,
            action: crate::action_json(action),
            digest: digest.to_owned(),
            rule: refusal.rule.clone(),
            reason: refusal.reason.clone(),
            labels,
            destructive,
            created_ns: now,
            expires_ns: now.saturating_add(ns(queue.cfg.timeout)),
            state: State::Pending,
            decided_ns: None,
            decided_by: None,
            note: None,
        };
        if !queue.cfg.wait {
            approval.state = State::Denied;
            approval.decided_ns = Some(now);
            approval.decided_by = Some("nobody to ask (non-interactive)".into());
        }
        let inserted = queue.store.insert(&approval);
        drop(admit);
        if let Err(e) = inserted {
            return Err(deny(
                format!("the approval could not be created ({e}), so the action is refused"),
                "denied",
                json!({"why": "store"}),
            ));
        }
        if !queue.cfg.wait {
            return Err(deny(
                "nobody can answer an ask in this session (no terminal, and [approval] non_interactive = \"deny\"), so it is denied at once".into(),
                "denied",
                json!({"by": approval.decided_by}),
            ));
        }
        for f in &queue.notify {
            f(&approval);
        }
        Ok(approval)
    }

    /// Waits until `approval` is decided, expires, or `closed` completes
    /// (the agent's connection went away: the approval is abandoned and
    /// nothing is forwarded). An approved ask is consumed here, once, and
    /// its yes is durable in the audit log before this returns the release.
    pub async fn wait(
        &self,
        approval: &Approval,
        refusal: &Refusal,
        closed: impl Future<Output = ()>,
    ) -> Result<Release, Box<Refusal>> {
        let Some(queue) = self.queue.clone() else {
            return Err(Box::new(refusal.clone()));
        };
        let id = approval.id.as_str();
        let seq = approval.request_id;
        let end = |outcome: &str, reason: String, detail: Value| {
            self.end_ask(refusal, seq, id, outcome, reason, detail)
        };
        tokio::pin!(closed);
        loop {
            let notified = queue.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let current = match off_worker(&queue, {
                let id = id.to_owned();
                move |st| st.get(&id)
            })
            .await
            {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Err(end(
                        "denied",
                        "the approval disappeared from the store, so the action is refused".into(),
                        json!({"why": "store"}),
                    ));
                }
                Err(e) => {
                    return Err(end(
                        "denied",
                        format!("the approval store failed ({e}), so the action is refused"),
                        json!({"why": "store"}),
                    ));
                }
            };
            let now = now_ns();
            match current.state {
                State::Approved => {
                    let consumed = off_worker(&queue, {
                        let id = id.to_owned();
                        move |st| {
                            st.transition(&id, &[State::Approved], State::Consumed, now, None, None)
                        }
                    })
                    .await;
                    match consumed {
                        Ok(Some(_)) => {}
                        Ok(None) => continue,
                        Err(e) => {
                            return Err(end(
                                "denied",
                                format!(
                                    "the approval store failed ({e}), so the action is refused"
                                ),
                                json!({"why": "store"}),
                            ));
                        }
                    }
                    let by = current.decided_by.clone().unwrap_or_default();
                    // The yes is durable before anything is released (I4).
                    if let Err(e) = self.record(
                        Kind::Outcome,
                        json!({"decision_seq": seq, "outcome": "approved", "approval": id,
                               "detail": {"by": by, "note": current.note, "digest": current.digest}}),
                        true,
                    ) {
                        let mut r = refusal.clone();
                        r.verdict = Verdict::Deny;
                        r.reason = format!(
                            "approved, but the approval could not be recorded, so the action is refused (I4): {e}"
                        );
                        return Err(Box::new(r));
                    }
                    return Ok(Release {
                        request_id: seq,
                        decision: Decision {
                            verdict: Verdict::Allow,
                            rule: refusal.rule.clone(),
                            reason: format!("approved by {by} ({id})").into(),
                            labels: refusal.labels,
                            subject: refusal.subject.clone(),
                        },
                    });
                }
                State::Denied => {
                    let by = current.decided_by.clone().unwrap_or_default();
                    let note = current
                        .note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default();
                    return Err(end(
                        "denied",
                        format!("denied by {by} ({id}){note}"),
                        json!({"by": by, "note": current.note}),
                    ));
                }
                State::Expired => {
                    return Err(end(
                        "denied-timeout",
                        timeout_reason(queue.cfg.timeout, id),
                        json!({}),
                    ));
                }
                State::Abandoned | State::Consumed => {
                    return Err(end(
                        "denied",
                        format!("approval {id} is {} and cannot be used", current.state),
                        json!({}),
                    ));
                }
                State::Pending => {}
            }
            if now >= current.expires_ns {
                let expired = off_worker(&queue, {
                    let id = id.to_owned();
                    move |st| {
                        st.transition(
                            &id,
                            &[State::Pending],
                            State::Expired,
                            now,
                            Some("timeout"),
                            None,
                        )
                    }
                })
                .await;
                match expired {
                    Ok(Some(_)) | Err(_) => {
                        return Err(end(
                            "denied-timeout",
                            timeout_reason(queue.cfg.timeout, id),
                            json!({}),
                        ));
                    }
                    // Decided meanwhile: read it again.
                    Ok(None) => continue,
                }
            }
            let left = u64::try_from(current.expires_ns.saturating_sub(now)).unwrap_or(0);
            let nap = queue.cfg.poll.min(Duration::from_nanos(left));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
                () = &mut closed => {
                    // Approved or not, nothing is forwarded for a request
                    // whose agent is gone.
                    let _ = off_worker(&queue, {
                        let id = id.to_owned();
                        move |st| {
                            st.transition(
                                &id,
                                &[State::Pending, State::Approved],
                                State::Abandoned,
                                now_ns(),
                                Some("the agent's connection closed"),
                                None,
                            )
                        }
                    })
                    .await;
                    return Err(end(
                        "abandoned",
                        "the agent's connection closed while the ask waited".into(),
                        json!({}),
                    ));
                }
            }
        }
    }

    /// An ask that ends without a yes: its outcome on record (durably),
    /// and the refusal the agent reads.
    fn end_ask(
        &self,
        refusal: &Refusal,
        seq: u64,
        id: &str,
        outcome: &str,
        reason: String,
        detail: Value,
    ) -> Box<Refusal> {
        let _ = self.record(
            Kind::Outcome,
            json!({"decision_seq": seq, "outcome": outcome, "approval": id, "detail": detail}),
            true,
        );
        let mut r = refusal.clone();
        r.verdict = Verdict::Deny;
        r.reason = reason;
        Box::new(r)
    }

    /// Appends a record; durable first when `durable` (through the group
    /// commit, outside the log's lock, like a decision).
    pub(crate) fn record(
        &self,
        kind: Kind,
        data: Value,
        durable: bool,
    ) -> Result<u64, crate::GateError> {
        Ok(self.append(kind, &data, durable)?)
    }
}

/// Runs a store call on the blocking pool, not on the async worker: a
/// store another process holds locked (`approve` writing) may make SQLite
/// wait, and the proxy's two workers also answer names and serve requests.
async fn off_worker<T: Send + 'static>(
    queue: &Arc<Queue>,
    f: impl FnOnce(&dyn ApprovalStore) -> Result<T, crate::StoreError> + Send + 'static,
) -> Result<T, crate::StoreError> {
    let store = Arc::clone(&queue.store);
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(r) => r,
        Err(e) => Err(crate::StoreError::Io {
            path: String::new(),
            source: std::io::Error::other(format!("the store's task failed: {e}")),
        }),
    }
}

fn timeout_reason(t: Duration, id: &str) -> String {
    format!(
        "nobody answered within {} ({id}); an ask that times out is a deny",
        crate::human_duration(t)
    )
}
