//! What a person reads before saying yes: a summary built from the decoded
//! action ("delete volume vol_prod on backboard.railway.app — GraphQL
//! mutation volumeDelete — irreversible"), and its rendering for each
//! channel.
//!
//! Every part the agent controls (a GraphQL argument, a path, a ref name, a
//! query string) is hostile: it may carry terminal escapes (C0, C1, OSC 52),
//! bidi overrides, zero-width or look-alike characters, HTML, or Slack and
//! Discord markup. So a [`Summary`] holds only printable ASCII in its parts:
//! anything else is written as a visible `\u{…}` escape (and `\` as `\\`),
//! which makes a Cyrillic `о` in `vol_prоd` or a right-to-left override
//! show up as what it is. Hosts are already punycode (the policy normalises
//! them). Each part is cut to a bound so that truncation keeps the verb,
//! the target and the host. The renderers then escape what each channel
//! gives meaning to: HTML entities for the page; for Slack and Discord the
//! agent's parts go in code spans (no markup, links or mentions there) with
//! `&`, `<`, `>` escaped; the terminal gets the ASCII as it is.

use std::fmt::Write as _;

use blastwall_classify::graphql::Inspection;
use blastwall_classify::{Label, Labels};
use blastwall_policy::{Action, FsOp, GitPush, NetAction, Scheme};
use serde::{Deserialize, Serialize};

/// The longest target shown (characters, after escaping).
pub const MAX_TARGET: usize = 120;
/// The longest host shown.
pub const MAX_HOST: usize = 260;
/// The longest mechanism shown.
pub const MAX_HOW: usize = 160;

/// A summary of one held action, in parts; every part is printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// What would be done: `delete`, `force-push`, `POST`.
    pub verb: String,
    /// To what: `volume vol_prod`, `ref refs/heads/main`, a path.
    pub target: String,
    /// Where: the host (punycode), or empty for a local action.
    pub host: String,
    /// How: `GraphQL mutation volumeDelete`, `HTTP DELETE`, `git push`.
    pub how: String,
    /// `irreversible`, `destructive`, or empty.
    pub risk: String,
    /// How many further parts of the same request are not named here.
    pub more: usize,
    /// The other dangerous parts of the same request (every destructive or
    /// irreversible GraphQL call, every deleted or rewritten ref), each
    /// named in full: a person approves all of them at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl Summary {
    /// Builds the summary of `action` as decided with `labels` (the
    /// decision's risk labels) and `subject` (the part that decided).
    pub fn of(action: &Action, labels: Labels, subject: Option<&str>) -> Summary {
        let risk = if labels.contains(Label::Irreversible) {
            "irreversible"
        } else if labels.contains(Label::Destructive) {
            "destructive"
        } else if labels.contains(Label::Opaque) {
            "not inspectable"
        } else {
            ""
        };
        let mut s = match action {
            Action::Net(n) => net(n, subject),
            Action::Exec(e) => Summary {
                verb: "run".into(),
                target: clean(&e.argv.join(" "), MAX_TARGET),
                host: String::new(),
                how: "exec".into(),
                risk: String::new(),
                more: 0,
                also: Vec::new(),
            },
            Action::Fs(f) => Summary {
                verb: match f.op {
                    FsOp::Read => "read".into(),
                    FsOp::Write => "write".into(),
                },
                target: clean(&f.path.to_string_lossy(), MAX_TARGET),
                host: String::new(),
                how: "file".into(),
                risk: String::new(),
                more: 0,
                also: Vec::new(),
            },
        };
        s.risk = risk.into();
        s
    }

    /// The summary as one line of plain text (the parts are already
    /// printable ASCII; the separators are the summary's own).
    pub fn text(&self) -> String {
        self.render(ascii_only, ascii_only)
    }

    /// For a terminal: the same as [`Summary::text`]; nothing in it can
    /// move the cursor, change colours, set the clipboard or reorder text.
    pub fn terminal(&self) -> String {
        self.text()
    }

    /// For the web page: HTML-escaped, to go inside an element.
    pub fn html(&self) -> String {
        let esc = |s: &str| html_escape(&ascii_only(s));
        self.render(esc, esc)
    }

    /// For Slack's mrkdwn: the agent's parts in code spans, `&<>` escaped
    /// (so no `<!channel>`, no `<url|disguised link>`, no formatting).
    pub fn slack(&self) -> String {
        let span = |s: &str| code_span(&ascii_only(s), slack_escape);
        self.render(span, |w| plain_word(w).unwrap_or_else(|| span(w)))
    }

    /// For Discord's markdown: the agent's parts in code spans (no
    /// formatting, links or mentions are parsed there). Post it with
    /// `allowed_mentions: {"parse": []}` as well.
    pub fn discord(&self) -> String {
        let span = |s: &str| code_span(&ascii_only(s), |t| t.to_owned());
        self.render(span, |w| plain_word(w).unwrap_or_else(|| span(w)))
    }

    /// `part` renders the agent's parts (target, host, how); `word` the
    /// verb, which the agent may also influence (an HTTP method is any
    /// token, `*` and `` ` `` included), and the risk (ours, but a summary
    /// read back from a store is not re-checked). `more` is a number.
    fn render(&self, part: impl Fn(&str) -> String, word: impl Fn(&str) -> String) -> String {
        let mut out = format!("{} {}", word(&self.verb), part(&self.target));
        if !self.host.is_empty() {
            let _ = write!(out, " on {}", part(&self.host));
        }
        let _ = write!(out, " \u{2014} {}", part(&self.how));
        if !self.risk.is_empty() {
            let _ = write!(out, " \u{2014} {}", word(&self.risk));
        }
        for a in &self.also {
            let _ = write!(out, " \u{2014} and {}", part(a));
        }
        if self.more > 0 {
            let _ = write!(out, " (+{} more in the same request)", self.more);
        }
        out
    }
}

/// Words that no chat markup gives meaning to (letters, digits, `-`,
/// spaces), as they are; anything else is `None` and goes in a code span.
fn plain_word(w: &str) -> Option<String> {
    (!w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b' '))
    .then(|| w.to_owned())
}

/// Defence in depth for parts that did not come through [`clean`] (a
/// summary built by hand or read back from a store): every character
/// outside printable ASCII as a visible `\u{…}`. Already-clean text is
/// unchanged (backslashes are left as they are, unlike [`clean`]).
fn ascii_only(s: &str) -> String {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out
}

/// Printable ASCII only: every other character as a visible `\u{…}`, `\`
/// as `\\`; cut to `max` characters with `...` when longer.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        // Cut on a character boundary (everything here is ASCII).
        out.truncate(max.saturating_sub(3));
        out.push_str("...");
    }
    out
}

/// HTML entity escaping for text and attribute values (`& < > " '`).
pub fn html_escape(s: &str) -> String {
    entities(s, true)
}

/// Slack's escaping of message text: `&`, `<` and `>` only.
fn slack_escape(s: &str) -> String {
    entities(s, false)
}

fn entities(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A code span: a backtick inside would end it, so it is written as the
/// same visible escape the summary uses for other characters.
fn code_span(s: &str, escape: impl Fn(&str) -> String) -> String {
    format!("`{}`", escape(&s.replace('`', "\\u{60}")))
}

fn scheme(s: Scheme) -> &'static str {
    match s {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

fn net(n: &NetAction, subject: Option<&str>) -> Summary {
    let host = clean(
        &if n.port == n.scheme.default_port() {
            n.host.to_string()
        } else {
            format!("{}:{}", n.host, n.port)
        },
        MAX_HOST,
    );
    if let Some(GitPush::Updates { updates }) = &n.git_push
        && let Some(first) = pick_update(updates, subject)
    {
        let repo = clean(n.path.trim_end_matches("/git-receive-pack"), MAX_HOW);
        // Every deletion and rewrite in the push is named, not counted.
        let also: Vec<String> = updates
            .iter()
            .filter(|u| {
                !std::ptr::eq(*u, first) && (u.update.delete || u.non_fast_forward == Some(true))
            })
            .map(|u| {
                let (verb, what) = update_words(u);
                clean_middle(&format!("{verb} {what} {}", u.update.name), MAX_TARGET)
            })
            .collect();
        let (verb, what) = update_words(first);
        return Summary {
            verb: verb.into(),
            target: clean_middle(&format!("{what} {}", first.update.name), MAX_TARGET),
            host,
            how: format!("git push to {repo}"),
            risk: String::new(),
            more: updates.len().saturating_sub(1 + also.len()),
            also,
        };
    }
    if let Some(Inspection::Calls { calls }) = &n.graphql
        && !calls.is_empty()
    {
        let dangerous = |c: &blastwall_classify::graphql::Call| {
            c.labels.contains(Label::Irreversible) || c.labels.contains(Label::Destructive)
        };
        // The call that decided (the subject names it as `mutation field`),
        // else the most dangerous one.
        let rank = |c: &&blastwall_classify::graphql::Call| {
            let l = c.labels;
            (
                l.contains(Label::Irreversible),
                l.contains(Label::Destructive),
                l.contains(Label::Write),
            )
        };
        let by_subject = subject.and_then(|s| {
            calls
                .iter()
                .find(|c| s == format!("{} {}", c.op.as_str(), c.field))
        });
        let call = by_subject.or_else(|| calls.iter().max_by_key(rank));
        if let Some(call) = call {
            let (verb, target) = call_words(call);
            let mut how = format!("GraphQL {} {}", call.op.as_str(), call.field);
            if let Some(a) = &call.alias {
                let _ = write!(how, " (aliased as {a})");
            }
            // Every other destructive call of the request is named too.
            let also: Vec<String> = calls
                .iter()
                .filter(|c| !std::ptr::eq(*c, call) && dangerous(c))
                .map(|c| {
                    let (v, t) = call_words(c);
                    clean_middle(
                        &format!("{v} {t} ({} {})", c.op.as_str(), c.field),
                        MAX_TARGET,
                    )
                })
                .collect();
            return Summary {
                verb: clean(&verb, 40),
                target: clean_middle(target.trim(), MAX_TARGET),
                host,
                how: clean(&how, MAX_HOW),
                risk: String::new(),
                more: calls.len().saturating_sub(1 + also.len()),
                also,
            };
        }
    }
    let mut target = n.path.clone();
    if let Some(q) = &n.query {
        target.push('?');
        target.push_str(q);
    }
    let upgrade = n.header_names.iter().any(|h| h == "upgrade");
    let mut how = format!("{} {}", scheme(n.scheme).to_ascii_uppercase(), n.method);
    if !n.method_overrides.is_empty() {
        let _ = write!(how, " (overridden to {})", n.method_overrides.join(", "));
    }
    // The method the request carries; overrides are shown beside it.
    let verb = if upgrade {
        "open a WebSocket to".to_owned()
    } else {
        n.method.clone()
    };
    if upgrade {
        how.push_str(", upgraded to a WebSocket: an open two-way channel, not inspected");
    }
    Summary {
        verb: clean(&verb, 40),
        // The middle is cut, never the end: a query's last parameter stays.
        target: clean_middle(&target, MAX_TARGET),
        host,
        how: clean(&how, MAX_HOW),
        risk: String::new(),
        more: 0,
        also: Vec::new(),
    }
}

/// The verb and object of a ref update.
fn update_words(u: &blastwall_policy::PushUpdate) -> (&'static str, &'static str) {
    if u.update.delete {
        ("delete", "ref")
    } else if u.non_fast_forward == Some(true) && u.ancestry.is_none() {
        ("force-push", "ref")
    } else if u.non_fast_forward == Some(true) {
        ("push (not shown to be a fast-forward)", "ref")
    } else if u.update.old.bytes().all(|b| b == b'0') {
        ("create", "ref")
    } else {
        ("push", "ref")
    }
}

/// The verb and object of a GraphQL call, with its target argument.
fn call_words(call: &blastwall_classify::graphql::Call) -> (String, String) {
    let (verb, noun) = split_field(&call.field);
    let target_arg = call
        .args
        .iter()
        .find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "id" || k.ends_with("id") || k.ends_with("name")
        })
        .or_else(|| call.args.first());
    let target = match target_arg {
        Some((_, v)) => format!("{noun} {v}"),
        None => noun,
    };
    (verb, target)
}

/// Like [`clean`], but a part past `max` loses its middle, not its end.
pub fn clean_middle(s: &str, max: usize) -> String {
    let all = clean(s, usize::MAX / 2);
    if all.len() <= max {
        return all;
    }
    let keep = max.saturating_sub(3) / 2;
    // Everything is ASCII: byte offsets are character boundaries.
    let head = all.get(..keep).unwrap_or_default();
    let tail = all.get(all.len() - keep..).unwrap_or_default();
    format!("{head}...{tail}")
}

fn pick_update<'a>(
    updates: &'a [blastwall_policy::PushUpdate],
    subject: Option<&str>,
) -> Option<&'a blastwall_policy::PushUpdate> {
    // The subject names the deciding update exactly (`ref refs/heads/main`).
    subject
        .and_then(|s| {
            updates
                .iter()
                .find(|u| s == format!("ref {}", u.update.name))
        })
        .or_else(|| updates.iter().find(|u| u.update.delete))
        .or_else(|| updates.iter().find(|u| u.non_fast_forward == Some(true)))
        .or_else(|| updates.first())
}

/// Words a GraphQL field name is made of, and which one is the verb:
/// `volumeDelete` → (`delete`, `volume`), `deleteVolume` → the same.
fn split_field(field: &str) -> (String, String) {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in field.chars() {
        if (c.is_ascii_uppercase() || c == '_') && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        if c != '_' {
            cur.push(c.to_ascii_lowercase());
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let is_verb = |w: &str| VERBS.contains(&w);
    match words.as_slice() {
        [] => ("call".into(), field.into()),
        [one] => ("call".into(), one.clone()),
        [first, rest @ ..] if is_verb(first) => (first.clone(), rest.join(" ")),
        [rest @ .., last] if is_verb(last) => (last.clone(), rest.join(" ")),
        _ => ("call".into(), field.into()),
    }
}

const VERBS: &[&str] = &[
    "add",
    "archive",
    "cancel",
    "change",
    "clear",
    "create",
    "delete",
    "deploy",
    "destroy",
    "detach",
    "disable",
    "disconnect",
    "drop",
    "enable",
    "erase",
    "purge",
    "redeploy",
    "remove",
    "rename",
    "reset",
    "restart",
    "restore",
    "revoke",
    "rollback",
    "set",
    "stop",
    "transfer",
    "truncate",
    "uninstall",
    "update",
    "upsert",
    "wipe",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use blastwall_policy::NetAction;

    fn graphql(query: &str) -> Summary {
        let body = serde_json::to_vec(&serde_json::json!({ "query": query })).unwrap();
        let a = NetAction::from_request(
            "POST",
            "https://backboard.railway.app/graphql/v2",
            &[("content-type".into(), "application/json".into())],
            Some(&body),
        )
        .unwrap();
        let labels = a.graphql.as_ref().map_or(Labels::EMPTY, Inspection::labels);
        Summary::of(&Action::Net(a), labels, None)
    }

    #[test]
    fn the_railway_delete_reads_as_what_it_destroys() {
        let s = graphql(r#"mutation { volumeDelete(volumeId: "vol_prod") }"#);
        assert_eq!(
            s.text(),
            "delete volume vol_prod on backboard.railway.app \u{2014} GraphQL mutation volumeDelete \u{2014} irreversible"
        );
    }

    #[test]
    fn the_dangerous_call_is_named_whatever_comes_first() {
        let s = graphql(
            r#"mutation { a: customDomainCreate(domain: "x.example") b: volumeDelete(volumeId: "vol_prod") }"#,
        );
        assert_eq!(s.verb, "delete");
        assert_eq!(s.target, "volume vol_prod");
        assert_eq!(s.how, "GraphQL mutation volumeDelete (aliased as b)");
        assert_eq!(s.more, 1);
    }

    #[test]
    fn every_destructive_call_is_named_not_counted() {
        let s = graphql(
            r#"mutation { a: volumeDelete(volumeId: "vol_scratch") b: volumeDelete(volumeId: "vol_prod") }"#,
        );
        let t = s.text();
        assert!(t.contains("vol_scratch"), "{t}");
        assert!(t.contains("vol_prod"), "{t}");
        assert_eq!(s.more, 0);
    }

    fn http(method: &str, url: &str, headers: &[(&str, &str)]) -> Summary {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let a = NetAction::from_request(method, url, &h, None).unwrap();
        Summary::of(&Action::Net(a), Labels::EMPTY, None)
    }

    #[test]
    fn a_long_query_keeps_its_end() {
        let url = format!(
            "https://api.example.com/p_scratch?confirm=1&pad={}&project=p_prod",
            "a".repeat(300)
        );
        let s = http("DELETE", &url, &[]);
        assert!(s.target.ends_with("project=p_prod"), "{}", s.target);
        assert!(s.target.starts_with("/p_scratch"), "{}", s.target);
        assert!(s.target.len() <= MAX_TARGET);
    }

    #[test]
    fn the_real_method_is_the_verb_and_an_override_is_shown() {
        let s = http(
            "DELETE",
            "https://api.example.com/v1/volumes/vol_prod",
            &[("x-http-method-override", "GET")],
        );
        assert_eq!(s.verb, "DELETE");
        assert!(s.how.contains("overridden to GET"), "{}", s.how);
    }

    #[test]
    fn a_websocket_says_so() {
        let s = http(
            "GET",
            "https://api.example.com/chat",
            &[("upgrade", "websocket"), ("connection", "upgrade")],
        );
        assert!(s.verb.contains("WebSocket"), "{}", s.verb);
        assert!(s.how.contains("WebSocket"), "{}", s.how);
    }

    #[test]
    fn field_names_split_into_verb_and_object() {
        assert_eq!(
            split_field("volumeDelete"),
            ("delete".into(), "volume".into())
        );
        assert_eq!(
            split_field("deleteVolume"),
            ("delete".into(), "volume".into())
        );
        assert_eq!(
            split_field("customDomainCreate"),
            ("create".into(), "custom domain".into())
        );
        assert_eq!(split_field("me"), ("call".into(), "me".into()));
        assert_eq!(
            split_field("project_remove"),
            ("remove".into(), "project".into())
        );
    }

    #[test]
    fn clean_leaves_only_printable_ascii() {
        assert_eq!(clean("a\u{1b}[2Jb", 100), "a\\u{1b}[2Jb");
        assert_eq!(clean("vol_pr\u{43e}d", 100), "vol_pr\\u{43e}d");
        assert_eq!(clean("x\\u{41}", 100), "x\\\\u{41}");
        let long = clean(&"y".repeat(500), 20);
        assert_eq!(long.len(), 20);
        assert!(long.ends_with("..."));
    }
}
