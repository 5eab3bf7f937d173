//! `blastwall log [--follow]` and `blastwall log verify`.
//!
//! Both check what the audit crate can check with what `BLASTWALL_HOME`
//! holds: the hash chain always; the checkpoint signatures when the public
//! key `keys/audit.ed25519.pub` is there; the heads the heads file
//! `audit-heads.jsonl` recorded for the session.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blastwall_audit::checkpoint::{HEADS_FILE, key_path, public_key_path};
use blastwall_audit::{
    Event, HeadsError, Kind, LogReader, PublicKey, VerifyError, VerifyErrorKind, VerifyOptions,
    VerifyReport, verify_with,
};
use blastwall_session::{Env, Home, SessionDir, Status as SessionStatus};
use serde_json::{Value, json};

use crate::Status;
use crate::args::{LogArgs, LogCommand};
use crate::out;

/// The audit log of a session directory.
pub(crate) const AUDIT_FILE: &str = "audit.jsonl";

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// How long `--follow` waits after `session-end` for the checkpoint that
/// follows it in a checkpointed log (the writer appends both in one call).
const FINAL_CHECKPOINT_WAIT: Duration = Duration::from_secs(2);

/// What `BLASTWALL_HOME` holds to check a log with beyond its chain.
struct Trust {
    /// The public key, if its file is there.
    key: Option<PublicKey>,
    /// Where the public key was looked for.
    key_file: PathBuf,
    /// The heads file (it may not exist: then it holds no heads).
    heads: PathBuf,
}

impl Trust {
    fn locate(home: &Home) -> anyhow::Result<Trust> {
        let key_file = public_key_path(&key_path(home.root()));
        let key = if key_file.exists() {
            Some(PublicKey::load(&key_file).context("cannot check checkpoint signatures")?)
        } else {
            None
        };
        Ok(Trust {
            key,
            key_file,
            heads: home.root().join(HEADS_FILE),
        })
    }

    fn options(&self) -> VerifyOptions {
        VerifyOptions::new(self.key, Some(self.heads.clone()))
    }

    fn reader(
        &self,
        path: &Path,
    ) -> Result<LogReader<std::io::BufReader<std::fs::File>>, VerifyError> {
        let reader = LogReader::open(path)?;
        Ok(match self.key {
            Some(key) => reader.with_public_key(key),
            None => reader,
        })
    }
}

/// The log to read, and its session directory when it has one (for
/// `--follow` to tell a session that died).
fn log_path(a: &LogArgs, home: &Home) -> anyhow::Result<(PathBuf, Option<SessionDir>)> {
    if let Some(f) = &a.file {
        return Ok((f.clone(), None));
    }
    let sessions = home.sessions_dir();
    if let Some(s) = &a.session {
        if s.is_empty() || s.contains('/') || s.starts_with('.') {
            bail!("bad session id `{}`", out::escape_controls(s));
        }
        let direct = sessions.join(s).join(AUDIT_FILE);
        if direct.exists() {
            let dir = SessionDir::open(home, Some(s)).ok();
            return Ok((direct, dir));
        }
        // A unique prefix of a session id will do.
        let dir = SessionDir::open(home, Some(s))
            .with_context(|| format!("no session `{}`", out::escape_controls(s)))?;
        return Ok((dir.audit_log(), Some(dir)));
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
    let (_, path) = newest.with_context(|| format!("no session logs in {}", sessions.display()))?;
    let id = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let dir = id.and_then(|id| SessionDir::open(home, Some(&id)).ok());
    Ok((path, dir))
}

pub(crate) fn run(a: &LogArgs, env: &Env) -> anyhow::Result<Status> {
    let kind = match &a.kind {
        Some(k) => Some(Kind::parse(k).with_context(|| {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown event kind `{}`: expected one of {}",
                out::escape_controls(k),
                known.join(", ")
            )
        })?),
        None => None,
    };
    let home = Home::locate(env);
    let trust = Trust::locate(&home)?;
    let (path, dir) = log_path(a, &home)?;
    match a.command {
        Some(LogCommand::Verify) => {
            if a.follow {
                bail!("--follow prints a log as it grows; `log verify` checks a whole log");
            }
            verify_cmd(&path, &trust, a.json)
        }
        None if a.follow => follow(&path, dir.as_ref(), &trust, a.json, kind),
        None => print(&path, &trust, a.json, kind),
    }
}

/// Whether a verification error is about reading files rather than about
/// the log (exit 2, not a verdict).
fn is_io(e: &VerifyError) -> bool {
    matches!(
        e.kind,
        VerifyErrorKind::Io { .. } | VerifyErrorKind::Heads(HeadsError::Io { .. })
    )
}

fn verify_cmd(path: &Path, trust: &Trust, as_json: bool) -> anyhow::Result<Status> {
    match verify_with(path, &trust.options()) {
        Ok(r) => {
            if as_json {
                out::json(&json!({
                    "file": path.display().to_string(),
                    "ok": true,
                    "events": r.events,
                    "session": r.session,
                    "head": r.head_hash.to_hex(),
                    "sealed": r.sealed,
                    "version": r.version,
                    "checkpoints": r.checkpoints,
                    "signatures_checked": r.signatures_checked,
                    "signed_through": r.signed_through,
                    "heads_matched": r.heads_matched,
                }))?;
            } else {
                out::text(&format!(
                    "{}: ok: {} event(s), session {}, head {}{}{}",
                    path.display(),
                    r.events,
                    escape_view(&r.session),
                    r.head_hash.to_hex(),
                    if r.sealed {
                        ", sealed".to_owned()
                    } else {
                        "; not sealed: the session is running or crashed, or the log was cut at a record boundary".to_owned()
                    },
                    signing_note(&r, trust),
                ))?;
            }
            Ok(Status::Ok)
        }
        Err(e) if is_io(&e) => Err(anyhow::Error::new(e).context("cannot verify")),
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
                out::text(&format!("FAILED: {}", escape_view(&e.to_string())))?;
            }
            Ok(Status::No)
        }
    }
}

/// What the signatures and the heads file say, for the human report.
fn signing_note(r: &VerifyReport, trust: &Trust) -> String {
    let mut note = String::new();
    if r.checkpoints == 0 {
        note.push_str("; no checkpoints (an unsigned log: a cut at a record boundary or a rewrite would not show)");
    } else if let Some(through) = r.signed_through {
        note.push_str(&format!(
            "; {} checkpoint(s), signed through seq {through}",
            r.checkpoints
        ));
        let last = r.events.saturating_sub(1);
        if through < last {
            // Normal while a session runs (the next checkpoint is not due);
            // a sealed log that was signed ends with its checkpoint.
            note.push_str(&format!(
                " (seq {} to {last} are not signed yet{})",
                through + 1,
                if r.sealed {
                    ": the checkpoint after session-end is missing"
                } else {
                    ""
                }
            ));
        }
    } else {
        note.push_str(&format!(
            "; {} checkpoint(s), signatures NOT checked: no public key at {}",
            r.checkpoints,
            trust.key_file.display()
        ));
    }
    match r.heads_matched {
        Some(0) if r.checkpoints > 0 => note.push_str(&format!(
            "; the heads file {} holds no head of this session",
            trust.heads.display()
        )),
        Some(0) | None => {}
        Some(n) => note.push_str(&format!("; {n} head(s) in the heads file match")),
    }
    note
}

fn print(path: &Path, trust: &Trust, as_json: bool, kind: Option<Kind>) -> anyhow::Result<Status> {
    let mut reader = trust.reader(path)?;
    for item in &mut reader {
        match item {
            Ok(ev) => show(&ev, as_json, kind)?,
            Err(e) => return damaged(&e),
        }
    }
    heads_checked(&reader, trust)
}

/// After the last record: the heads file's heads of this session against
/// what was read.
fn heads_checked<R: std::io::BufRead>(
    reader: &LogReader<R>,
    trust: &Trust,
) -> anyhow::Result<Status> {
    match reader.check_heads(&trust.heads) {
        Ok(_) => Ok(Status::Ok),
        Err(e) if is_io(&e) => Err(anyhow::Error::new(e).context("cannot read the heads file")),
        Err(e) => {
            eprintln!(
                "blastwall: the log does not match its signed heads: {}",
                escape_view(&e.to_string())
            );
            Ok(Status::No)
        }
    }
}

fn damaged(e: &VerifyError) -> anyhow::Result<Status> {
    eprintln!(
        "blastwall: the log is damaged from here on: {}",
        escape_view(&e.to_string())
    );
    Ok(Status::No)
}

/// Prints the records as the writer appends them, until `session-end` (and
/// the checkpoint after it, in a checkpointed log); stops with exit 1 on
/// damage, or when the session's supervisor is gone and the log has no
/// `session-end`.
fn follow(
    path: &Path,
    dir: Option<&SessionDir>,
    trust: &Trust,
    as_json: bool,
    kind: Option<Kind>,
) -> anyhow::Result<Status> {
    let mut reader = trust
        .reader(path)
        .map_err(|e| anyhow::Error::new(e).context("cannot follow"))?;
    let mut sealed_at: Option<Instant> = None;
    let mut last_pass = false;
    let mut idle_polls = 0u32;
    loop {
        match reader.next_available() {
            Ok(Some(ev)) => {
                idle_polls = 0;
                show(&ev, as_json, kind)?;
                if ev.kind == Kind::SessionEnd {
                    sealed_at = Some(Instant::now());
                }
                if ev.kind == Kind::Checkpoint && reader.is_sealed() {
                    break;
                }
            }
            Ok(None) => {
                if let Some(t) = sealed_at {
                    if t.elapsed() >= FINAL_CHECKPOINT_WAIT {
                        break;
                    }
                } else if last_pass {
                    eprintln!(
                        "blastwall: the session is no longer running and its log ends at seq {} without session-end",
                        reader.records_read().saturating_sub(1)
                    );
                    return Ok(Status::No);
                } else if idle_polls % 10 == 9 && dir.is_some_and(|d| !is_running(d)) {
                    // Read once more: the last records may have landed
                    // just before the supervisor went.
                    last_pass = true;
                    continue;
                }
                idle_polls = idle_polls.saturating_add(1);
                std::thread::sleep(FOLLOW_POLL);
            }
            Err(e) if is_io(&e) => return Err(anyhow::Error::new(e).context("cannot follow")),
            Err(e) => return damaged(&e),
        }
    }
    heads_checked(&reader, trust)
}

fn is_running(dir: &SessionDir) -> bool {
    // A session without a readable record is taken as running: `--follow`
    // then waits, as it would on a log named with `--file`.
    dir.meta()
        .map_or(true, |m| dir.status(&m) == SessionStatus::Running)
}

fn show(ev: &Event, as_json: bool, only: Option<Kind>) -> anyhow::Result<()> {
    if only.is_some_and(|k| k != ev.kind) {
        return Ok(());
    }
    if as_json {
        return out::text(&serde_json::to_string(ev)?);
    }
    out::text(&format!(
        "{:>6} {} {:<13} {}",
        ev.seq,
        ev.time,
        ev.kind.as_str(),
        escape_view(&describe(ev))
    ))
}

/// One event's detail, for a person.
fn describe(ev: &Event) -> String {
    let d = &ev.data;
    match ev.kind {
        Kind::Decision => format!(
            "{} {} ({}; {})",
            d["verdict"].as_str().unwrap_or("?"),
            if d["action"].is_null() {
                d["subject"].as_str().unwrap_or("?").to_owned()
            } else {
                summarize_action(&d["action"])
            },
            d["rule"]["id"]
                .as_str()
                .or_else(|| d["rule"].as_str())
                .unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        ),
        Kind::Checkpoint => format!(
            "signs seq {} (hash {}…) with key {}…",
            d["head_seq"],
            short(&d["head_hash"]),
            short(&d["key"])
        ),
        Kind::Alert if d["rule"].is_string() && d["reason"].is_string() => {
            let mut text = format!(
                "{}: {}",
                d["rule"].as_str().unwrap_or_default(),
                d["reason"].as_str().unwrap_or_default()
            );
            if let Some(seq) = d["decision_seq"].as_u64() {
                text.push_str(&format!(" (decision {seq})"));
            }
            text
        }
        Kind::SessionStart | Kind::Outcome | Kind::Alert | Kind::SessionEnd => d.to_string(),
        // `Kind` is non-exhaustive: a kind this build does not know prints its data.
        _ => d.to_string(),
    }
}

fn short(v: &Value) -> String {
    v.as_str().unwrap_or("?").chars().take(16).collect()
}

fn summarize_action(a: &Value) -> String {
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

/// Makes text safe for a one-event-per-line view on a terminal: every
/// control character (newline and tab included, so a value cannot start a
/// line that looks like another event) and the Unicode marks that reorder
/// or hide text (bidirectional overrides and isolates, zero-width
/// characters, the byte-order mark) are written as `\u{…}` escapes.
/// `out::escape_controls` keeps newlines and tabs, which suits multi-line
/// messages but not this view.
fn escape_view(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hidden = matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
        );
        if c.is_control() || hidden {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
