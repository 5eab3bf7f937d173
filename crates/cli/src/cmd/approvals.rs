//! `blastwall approvals`, `approve ID`, `deny ID`: the user's side of the
//! approval queue, outside every wall. The store under `BLASTWALL_HOME` is
//! the authority; the session's control socket only wakes the held request
//! so it re-reads the store at once.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use blastwall_gate::{Approval, ApprovalStore as _, Query, SqliteStore, State, now_ns};
use blastwall_session::{Env, Home};
use clap::Args;
use serde_json::json;

use crate::Status;
use crate::out;

#[derive(Debug, Args)]
pub(crate) struct ApprovalsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Include decided approvals (the newest 200), not only pending ones.
    #[arg(long)]
    pub(crate) all: bool,
    /// Only this session's.
    #[arg(long)]
    pub(crate) session: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// The approval id (`ap-…`, from the refusal, the banner or `blastwall approvals`).
    pub(crate) id: String,
    /// A note kept with the decision (and shown to the agent on a deny).
    #[arg(long)]
    pub(crate) note: Option<String>,
    /// Approve without asking first.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

fn open_store(env: &Env) -> anyhow::Result<SqliteStore> {
    let home = Home::locate(env);
    let db = home.approvals_db();
    if !db.exists() {
        bail!(
            "no approval store at {} (no session of yours has asked for anything yet)",
            db.display()
        );
    }
    SqliteStore::open(&db).with_context(|| format!("cannot open {}", db.display()))
}

use blastwall_gate::relative_time as when;

fn approval_json(a: &Approval) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["summary_text"] = json!(a.summary.text());
    v
}

pub(crate) fn list(a: &ApprovalsArgs, env: &Env) -> anyhow::Result<Status> {
    let db = Home::locate(env).approvals_db();
    let items = if db.exists() {
        let store = open_store(env)?;
        store.list(&Query {
            session: a.session.clone(),
            states: if a.all {
                Vec::new()
            } else {
                vec![State::Pending]
            },
            limit: if a.all { 200 } else { 0 },
        })?
    } else {
        Vec::new()
    };
    let now = now_ns();
    if a.json {
        out::json(&json!({
            "approvals": items.iter().map(approval_json).collect::<Vec<_>>(),
        }))?;
        return Ok(Status::Ok);
    }
    if items.is_empty() {
        out::text(if a.all {
            "no approvals"
        } else {
            "no pending approvals"
        })?;
        return Ok(Status::Ok);
    }
    let mut text = String::new();
    let mut group = String::new();
    for x in &items {
        if x.group != group {
            group.clone_from(&x.group);
            let n = items.iter().filter(|y| y.group == group).count();
            text.push_str(&format!(
                "{}{} ({n})\n",
                if x.destructive { "! " } else { "" },
                blastwall_gate::summary::clean(&group, 200)
            ));
        }
        let timing = match x.state {
            State::Pending => format!("expires {}", when(x.expires_ns, now)),
            _ => format!(
                "{} {}",
                x.state,
                x.decided_ns.map(|t| when(t, now)).unwrap_or_default()
            ),
        };
        text.push_str(&format!(
            "  {}  {}  session {}  {}\n",
            x.id,
            x.summary.terminal(),
            x.session,
            timing
        ));
    }
    text.push_str("approve once: blastwall approve ID    deny: blastwall deny ID");
    out::text(&text)?;
    Ok(Status::Ok)
}

fn describe(a: &Approval, now: i64) -> String {
    let clean = |s: &str| blastwall_gate::summary::clean(s, 400);
    format!(
        "approval {id} ({state})\n  {summary}\n  session:  {session}\n  rule:     {rule}\n  reason:   {reason}\n  labels:   {labels}\n  digest:   sha256:{digest}\n  created:  {created}\n  expires:  {expires}\n",
        id = a.id,
        state = a.state,
        summary = a.summary.terminal(),
        session = clean(&a.session),
        rule = clean(&a.rule.to_string()),
        reason = clean(&a.reason),
        labels = if a.labels.is_empty() {
            "none".to_owned()
        } else {
            a.labels.join(", ")
        },
        digest = a.digest,
        created = when(a.created_ns, now),
        expires = when(a.expires_ns, now),
    )
}

fn whoami() -> String {
    let uid = nix::unistd::getuid().as_raw();
    let name = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    if name.is_empty() {
        format!("uid {uid}")
    } else {
        format!("uid {uid} ({name})")
    }
}

/// Asks on the terminal; only a typed `y`/`yes` is a yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("cannot open the terminal to ask; pass --yes to approve without asking")?;
    write!(tty, "{question} [y/N] ")?;
    tty.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(&mut tty).read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub(crate) fn decide(a: &DecideArgs, env: &Env, approve: bool) -> anyhow::Result<Status> {
    let store = open_store(env)?;
    let Some(current) = store.get(&a.id)? else {
        bail!("no approval {} (see `blastwall approvals`)", a.id);
    };
    let now = now_ns();
    let refuse = |why: String| -> anyhow::Result<Status> {
        if a.json {
            out::json(&json!({"id": a.id, "done": false, "state": current.state, "why": why}))?;
        } else {
            eprintln!("blastwall: {why}");
        }
        Ok(Status::No)
    };
    if current.state != State::Pending {
        return refuse(format!(
            "approval {} is {}, not pending: nothing to do",
            a.id, current.state
        ));
    }
    if now >= current.expires_ns {
        let _ = store.transition(
            &a.id,
            &[State::Pending],
            State::Expired,
            now,
            Some("timeout"),
            None,
        );
        return refuse(format!(
            "approval {} expired {}: it was denied",
            a.id,
            when(current.expires_ns, now)
        ));
    }
    if approve && !a.yes {
        if !a.json {
            eprint!("{}", describe(&current, now));
        }
        if !std::io::stdin().is_terminal() && std::fs::metadata("/dev/tty").is_err() {
            bail!("not a terminal: pass --yes to approve without asking");
        }
        if !confirm("approve this action, once?")? {
            return refuse("not approved (no yes typed)".into());
        }
    }
    let by = format!(
        "{} via blastwall {}",
        whoami(),
        if approve { "approve" } else { "deny" }
    );
    let to = if approve {
        State::Approved
    } else {
        State::Denied
    };
    let Some(after) = store.transition(
        &a.id,
        &[State::Pending],
        to,
        now_ns(),
        Some(&by),
        a.note.as_deref(),
    )?
    else {
        let state = store.get(&a.id)?.map_or(State::Abandoned, |x| x.state);
        return refuse(format!(
            "approval {} became {state} meanwhile: nothing done",
            a.id
        ));
    };
    let woken = blastwall_session::wake_session(&Home::locate(env), &after.session, &after.id);
    if a.json {
        out::json(
            &json!({"id": a.id, "done": true, "state": after.state, "woken": woken,
                          "approval": approval_json(&after)}),
        )?;
    } else {
        let what = if approve { "approved (once)" } else { "denied" };
        out::text(&format!(
            "{} {what}: {}{}",
            a.id,
            after.summary.terminal(),
            if woken {
                ""
            } else {
                " (the session was not reachable now; it reads the store within a second if it still runs)"
            }
        ))?;
    }
    Ok(Status::Ok)
}
