//! Deciding an approval from the page or the terminal view, exactly the way
//! `blastwall approve` and `deny` do: a compare-and-set from `pending` in
//! the store (an expired one becomes `expired` instead), then a wake-up on
//! the session's control socket so the held request re-reads the store.

use blastwall_gate::{Approval, ApprovalStore, State, StoreError, now_ns};
use blastwall_session::{Home, wake_session};
use serde::Serialize;

/// What became of a decision.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Decided {
    /// Done: the approval as it is now, and whether the session answered
    /// the wake-up (if not, it re-reads the store within its poll interval).
    Done {
        /// The approval afterwards.
        approval: Box<Approval>,
        /// Whether the session's supervisor was woken.
        woken: bool,
    },
    /// It was not pending (already decided, used, expired or abandoned).
    NotPending {
        /// Its state.
        state: State,
    },
    /// It had expired: it is now recorded as expired, a deny.
    Expired,
    /// No such approval.
    Missing,
}

impl Decided {
    /// A line for a person (the id is ours, the state a fixed word).
    pub fn message(&self, id: &str) -> String {
        match self {
            Decided::Done { approval, woken } => format!(
                "{id} {}{}",
                match approval.state {
                    State::Approved => "approved (once)",
                    State::Denied => "denied",
                    other => other.as_str(),
                },
                if *woken {
                    ""
                } else {
                    " (the session did not answer now; it reads the store within a second if it still runs)"
                }
            ),
            Decided::NotPending { state } => {
                format!("{id} is {state}, not pending: nothing done")
            }
            Decided::Expired => format!("{id} had expired: it was denied"),
            Decided::Missing => format!("no approval {id}"),
        }
    }
}

/// Approves (once) or denies `id`, recording `by` (`uid 1000 (ana) via
/// web`) and `note`, then wakes its session.
pub fn decide(
    home: &Home,
    store: &dyn ApprovalStore,
    id: &str,
    approve: bool,
    by: &str,
    note: Option<&str>,
) -> Result<Decided, StoreError> {
    let Some(current) = store.get(id)? else {
        return Ok(Decided::Missing);
    };
    if current.state != State::Pending {
        return Ok(Decided::NotPending {
            state: current.state,
        });
    }
    let now = now_ns();
    if now >= current.expires_ns {
        let _ = store.transition(
            id,
            &[State::Pending],
            State::Expired,
            now,
            Some("timeout"),
            None,
        )?;
        return Ok(Decided::Expired);
    }
    let to = if approve {
        State::Approved
    } else {
        State::Denied
    };
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    let Some(after) = store.transition(id, &[State::Pending], to, now_ns(), Some(by), note)? else {
        let state = store.get(id)?.map_or(State::Abandoned, |x| x.state);
        return Ok(Decided::NotPending { state });
    };
    let woken = wake_session(home, &after.session, &after.id);
    Ok(Decided::Done {
        approval: Box::new(after),
        woken,
    })
}
