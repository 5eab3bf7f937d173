//! `blastwall log [verify]`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use blastwall_audit::{LogReader, verify};
use blastwall_session::{Env, Home};
use serde_json::json;

use crate::Status;
use crate::args::{LogArgs, LogCommand};
use crate::out;

/// The audit log of a session directory.
pub(crate) const AUDIT_FILE: &str = "audit.jsonl";

fn log_path(a: &LogArgs, env: &Env) -> anyhow::Result<PathBuf> {
    if let Some(f) = &a.file {
        return Ok(f.clone());
    }
    let sessions = Home::locate(env).sessions_dir();
    if let Some(s) = &a.session {
        if s.contains('/') || s.starts_with('.') {
            bail!("bad session id `{s}`");
        }
        return Ok(sessions.join(s).join(AUDIT_FILE));
    }
    // The newest session with a log.
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let entries = std::fs::read_dir(&sessions).with_context(|| {
        format!(
            "no sessions in {} (name a log with --file)",
            sessions.display()
        )
    })?;
    for e in entries.flatten() {
        let p = e.path().join(AUDIT_FILE);
        if let Ok(m) = std::fs::metadata(&p) {
            let t = m.modified().unwrap_or(std::time::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(nt, _)| t > *nt) {
                newest = Some((t, p));
            }
        }
    }
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("no session logs in {}", sessions.display()))
}

pub(crate) fn run(a: &LogArgs, env: &Env) -> anyhow::Result<Status> {
    if let Some(k) = &a.kind {
        let known = [
            "session-start",
            "decision",
            "outcome",
            "alert",
            "session-end",
        ];
        if !known.contains(&k.as_str()) {
            bail!(
                "unknown event kind `{k}`: expected one of {}",
                known.join(", ")
            );
        }
    }
    let path = log_path(a, env)?;
    match a.command {
        Some(LogCommand::Verify) => verify_cmd(&path, a.json),
        None => print(&path, a),
    }
}

fn verify_cmd(path: &std::path::Path, as_json: bool) -> anyhow::Result<Status> {
    match verify(path) {
        Ok(r) => {
            if as_json {
                out::json(&json!({
                    "file": path.display().to_string(),
                    "ok": true,
                    "events": r.events,
                    "session": r.session,
                    "head": r.head_hash.to_hex(),
                    "sealed": r.sealed,
                }))?;
            } else {
                out::text(&format!(
                    "{}: ok: {} event(s), session {}, head {}{}",
                    path.display(),
                    r.events,
                    out::escape_controls(&r.session),
                    r.head_hash.to_hex(),
                    if r.sealed {
                        ", sealed".to_owned()
                    } else {
                        "; not sealed: the session is running or crashed, or the log was cut at a record boundary".to_owned()
                    }
                ))?;
            }
            Ok(Status::Ok)
        }
        Err(e) if matches!(e.kind, blastwall_audit::VerifyErrorKind::Io { .. }) => {
            Err(anyhow::Error::new(e).context("cannot verify"))
        }
        Err(e) => {
            if as_json {
                out::json(&json!({
                    "file": path.display().to_string(),
                    "ok": false,
                    "first_bad_seq": e.seq(),
                    "line": e.line(),
                    "error": e.to_string(),
                }))?;
            } else {
                out::text(&format!("FAILED: {}", out::escape_controls(&e.to_string())))?;
            }
            Ok(Status::No)
        }
    }
}

fn print(path: &std::path::Path, a: &LogArgs) -> anyhow::Result<Status> {
    let reader = LogReader::open(path)?;
    let mut status = Status::Ok;
    for item in reader {
        match item {
            Ok(ev) => {
                let kind = serde_json::to_value(ev.kind)?;
                let kind = kind.as_str().unwrap_or_default().to_owned();
                if a.kind.as_deref().is_some_and(|k| k != kind) {
                    continue;
                }
                if a.json {
                    out::text(&serde_json::to_string(&ev)?)?;
                } else {
                    let d = &ev.data;
                    let detail = match kind.as_str() {
                        "decision" => format!(
                            "{} {} ({}; {})",
                            d["verdict"].as_str().unwrap_or("?"),
                            if d["action"].is_null() {
                                d["subject"].as_str().unwrap_or("?").to_owned()
                            } else {
                                summarize_action(&d["action"])
                            },
                            d["rule"]["id"].as_str().unwrap_or("?"),
                            d["reason"].as_str().unwrap_or("")
                        ),
                        _ => d.to_string(),
                    };
                    out::text(&format!(
                        "{:>6} {} {:<13} {}",
                        ev.seq,
                        ev.time,
                        kind,
                        out::escape_controls(&detail)
                    ))?;
                }
            }
            Err(e) => {
                eprintln!("blastwall: the log is damaged from here on: {e}");
                status = Status::No;
            }
        }
    }
    Ok(status)
}

fn summarize_action(a: &serde_json::Value) -> String {
    match a["kind"].as_str() {
        Some("net") => format!(
            "{} {}:{}{}",
            a["method"].as_str().unwrap_or("?"),
            a["host"].as_str().unwrap_or("?"),
            a["port"],
            a["path"].as_str().unwrap_or("")
        ),
        Some("exec") => format!("exec {}", a["argv"]),
        Some("fs") => format!("{} {}", a["op"].as_str().unwrap_or("?"), a["path"]),
        _ => a.to_string(),
    }
}
