//! Outgoing webhooks: a notice posted when an ask is held, in Slack's,
//! Discord's or a plain JSON shape, linking back to the page (never with
//! its access token).
//!
//! Posting never blocks the agent's request path: [`Poster::notify`] puts
//! the notice on a bounded queue (a full queue drops it and counts the
//! drop) and returns; one background thread posts, each post with a
//! timeout. The notice only tells; deciding still happens on the page, in
//! `watch` or with `blastwall approve` (a webhook has no way back in).
//!
//! The agent's parts of the summary go through [`Summary::slack`] and
//! [`Summary::discord`] (code spans, `&<>` escaped for Slack), and Discord
//! posts carry `"allowed_mentions": {"parse": []}` so nothing pings anyone.
//!
//! [`Summary::slack`]: blastwall_gate::Summary::slack
//! [`Summary::discord`]: blastwall_gate::Summary::discord

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use blastwall_gate::Approval;
use blastwall_gate::summary::clean;
use blastwall_session::Home;
use serde_json::{Value, json};

/// How many notices may wait to be posted.
pub const QUEUE: usize = 32;
/// How long one post may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The shape of the posted JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Slack incoming webhook: `{"text": mrkdwn}`.
    Slack,
    /// Discord webhook: `{"content": markdown, "allowed_mentions": {"parse": []}}`.
    Discord,
    /// blastwall's own JSON (documented in docs/manifest.md).
    Json,
}

impl Format {
    /// `slack`, `discord` or `json`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "slack" => Some(Format::Slack),
            "discord" => Some(Format::Discord),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The link to the page for `approval`, or what to do when none runs.
fn link(base: Option<&str>, approval: &Approval) -> Option<String> {
    base.map(|b| format!("{}#{}", b.trim_end_matches('#'), approval.id))
}

/// The JSON posted for `approval` in `format`; `base` is the page's base
/// URL (from `serve.json`), without a token.
pub fn payload(format: Format, approval: &Approval, base: Option<&str>) -> Value {
    let a = approval;
    let url = link(base, a);
    // The id is ours (`ap-` and hex); the rule id and reason come from the
    // manifest, cleaned like the agent's parts.
    let id = clean(&a.id, 40);
    let rule = clean(&a.rule.id, 120);
    let reason = clean(&a.reason, 300);
    let session = clean(&a.session, 80);
    let expires = blastwall_gate::human_duration(Duration::from_secs(
        u64::try_from(a.expires_ns.saturating_sub(a.created_ns) / 1_000_000_000).unwrap_or(0),
    ));
    let how =
        "decide: `blastwall approve ID` / `blastwall deny ID`, `blastwall watch`, or the page";
    match format {
        Format::Json => json!({
            "type": "approval.pending",
            "id": id,
            "session": session,
            "summary": a.summary.text(),
            "parts": a.summary,
            "rule": rule,
            "reason": reason,
            "labels": a.labels,
            "destructive": a.destructive,
            "created_ns": a.created_ns,
            "expires_ns": a.expires_ns,
            "url": url,
            "hint": if url.is_some() { Value::Null } else { json!("run `blastwall serve` to decide on a page") },
        }),
        Format::Slack => {
            let open = match &url {
                // Ours, but escaped all the same: `<url|label>` is Slack's link.
                Some(u) => format!("<{}|open the approvals page>", slack_url(u)),
                None => "run `blastwall serve` to decide on a page".to_owned(),
            };
            json!({
                "text": format!(
                    "{bang}*blastwall: approval needed* `{id}`\n{summary}\nrule `{rule}`: `{reason}` (denied in {expires} without an answer)\n{open}; {how}",
                    bang = if a.destructive { ":warning: " } else { "" },
                    summary = a.summary.slack(),
                    rule = slack_code(&rule),
                    reason = slack_code(&reason),
                ),
                "unfurl_links": false,
                "unfurl_media": false,
            })
        }
        Format::Discord => {
            let open = match &url {
                Some(u) => format!("<{u}>"),
                None => "run `blastwall serve` to decide on a page".to_owned(),
            };
            json!({
                "content": format!(
                    "{bang}**blastwall: approval needed** `{id}`\n{summary}\nrule `{rule}`: `{reason}` (denied in {expires} without an answer)\n{open}; {how}",
                    bang = if a.destructive { "\u{26a0}\u{fe0f} " } else { "" },
                    summary = a.summary.discord(),
                    rule = code(&rule),
                    reason = code(&reason),
                ),
                "allowed_mentions": {"parse": []},
            })
        }
    }
}

fn code(s: &str) -> String {
    s.replace('`', "'")
}

fn slack_code(s: &str) -> String {
    code(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_url(u: &str) -> String {
    u.replace('&', "&amp;")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('|', "%7C")
}

struct Job {
    approval: Box<Approval>,
}

/// Posts notices from a background thread.
pub struct Poster {
    tx: SyncSender<Job>,
    format: Format,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("format", &self.format)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A failure to start the poster.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// An unknown `format`.
    #[error("webhook format `{0}` is not slack, discord or json")]
    Format(String),
    /// The thread could not start.
    #[error("cannot start the webhook thread: {0}")]
    Thread(std::io::Error),
}

impl Poster {
    /// Starts the posting thread for `url`; `report` is told of each
    /// failed post (it runs on that thread).
    pub fn start(
        url: &str,
        format: &str,
        home: Home,
        report: Box<dyn Fn(String) + Send>,
    ) -> Result<Poster, WebhookError> {
        let format = Format::parse(format).ok_or_else(|| WebhookError::Format(format.into()))?;
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("blastwall-webhook".into())
            .spawn(move || post_loop(&url, format, &home, &rx, &*report))
            .map_err(WebhookError::Thread)?;
        Ok(Poster {
            tx,
            format,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a notice of `approval`; never waits and does no I/O (the
    /// page's address is read and the payload built on the posting
    /// thread). Returns whether it was queued (a full queue drops it).
    pub fn notify(&self, approval: &Approval) -> bool {
        let job = Job {
            approval: Box::new(approval.clone()),
        };
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// How many notices were dropped (queue full or thread gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn post_loop(url: &str, format: Format, home: &Home, rx: &Receiver<Job>, report: &dyn Fn(String)) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .build()
        .into();
    while let Ok(job) = rx.recv() {
        let base = crate::serve_file::running_url(home);
        let body = serde_json::to_vec(&payload(format, &job.approval, base.as_deref()))
            .unwrap_or_default();
        let mut last = String::new();
        let mut ok = false;
        // One retry after a short pause: webhooks fail transiently.
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            match agent
                .post(url)
                .header("content-type", "application/json")
                .send(&body[..])
            {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        if !ok {
            report(format!("webhook post to {} failed: {last}", redact(url)));
        }
    }
}

/// The URL without its path and query (a Slack or Discord webhook URL is a
/// secret in itself).
pub fn redact(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Never a password: what follows the last `@`.
    let host = authority.rsplit('@').next().unwrap_or("");
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    clean(&format!("{scheme}://{host}/..."), 200)
}
