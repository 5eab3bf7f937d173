//! The page: server-rendered HTML (it works without script), a small
//! script for the live parts, a stylesheet. No inline script or style: the
//! Content-Security-Policy allows only `'self'`.
//!
//! Every agent-influenced string is HTML-escaped here: summaries through
//! [`blastwall_gate::Summary::html`], everything else through [`text`]
//! (cleaned to printable ASCII, then escaped). The script only ever sets
//! `textContent`, never `innerHTML`.

use std::fmt::Write as _;

use blastwall_gate::now_ns;
use blastwall_gate::summary::clean;

use crate::feed::{ApprovalView, FeedEvent, SessionInfo};

/// HTML-escapes `s` (already printable ASCII, or not: it is cleaned first).
pub(crate) fn text(s: &str, max: usize) -> String {
    escape(&clean(s, max))
}

/// HTML entity escaping for text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    blastwall_gate::summary::html_escape(s)
}

use blastwall_gate::relative_time as when;

/// Whether `id` looks like an approval id (`ap-` and hex): anything else
/// is never put in a URL or an element id.
pub(crate) fn is_approval_id(id: &str) -> bool {
    id.strip_prefix("ap-")
        .is_some_and(|h| !h.is_empty() && h.len() <= 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One pending approval with its buttons.
fn approval(out: &mut String, a: &ApprovalView, csrf: &str, now: i64) {
    let ap = &a.approval;
    if !is_approval_id(&ap.id) {
        return;
    }
    let id = &ap.id;
    let _ = write!(
        out,
        r#"<li class="approval{d}" id="{id}" data-id="{id}">
<p class="summary">{summary}</p>
<p class="meta"><code>{id}</code> · session <code>{session}</code> · rule <code>{rule}</code>: {reason} · expires {expires}</p>
<div class="actions">
<form method="post" action="/approvals/{id}/approve"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="approve" name="approve" data-id="{id}">Approve once</button></form>
<form method="post" action="/approvals/{id}/deny"><input type="hidden" name="csrf" value="{csrf}"><input type="text" name="note" maxlength="300" placeholder="note for the agent (optional)" aria-label="note"><button type="submit" class="deny" name="deny" data-id="{id}">Deny</button></form>
</div>
</li>
"#,
        d = if ap.destructive { " destructive" } else { "" },
        summary = ap.summary.html(),
        session = text(&ap.session, 80),
        rule = text(&ap.rule.to_string(), 200),
        reason = text(&ap.reason, 300),
        expires = escape(&when(ap.expires_ns, now)),
        csrf = escape(csrf),
    );
}

fn session_row(out: &mut String, s: &SessionInfo) {
    let status = match s.status {
        blastwall_session::Status::Running => "running",
        blastwall_session::Status::Exited => "exited",
        blastwall_session::Status::Crashed => "crashed",
    };
    let _ = writeln!(
        out,
        "<tr class=\"{status}\"><td><code>{id}</code></td><td>{status}{exit}</td><td><code>{cmd}</code></td><td>{project}</td></tr>",
        id = escape(&s.id),
        exit = s.exit_code.map_or(String::new(), |c| format!(" ({c})")),
        cmd = escape(&s.command),
        project = escape(&s.project),
    );
}

/// One event line (the script adds later ones the same way).
fn event(out: &mut String, e: &FeedEvent) {
    let _ = writeln!(
        out,
        "<li class=\"ev {kind} {verdict}\"><span class=\"time\">{time}</span> <code>{session}</code> #{seq} {text}</li>",
        kind = escape(&clean(&e.kind, 40)),
        verdict = escape(
            &e.verdict
                .as_deref()
                .map(|v| clean(v, 40))
                .unwrap_or_default()
        ),
        time = escape(&clean(&e.time, 40)),
        session = escape(&e.session),
        seq = e.seq,
        text = escape(&e.text),
    );
}

/// The whole page.
pub(crate) fn index(
    approvals: &[ApprovalView],
    sessions: &[SessionInfo],
    events: &[FeedEvent],
    csrf: &str,
    flash: Option<&str>,
) -> String {
    let now = now_ns();
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
<title>blastwall: approvals</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header><h1>blastwall</h1><span id="live" class="live">live updates off</span></header>
"#,
        csrf = escape(csrf)
    );
    if let Some(f) = flash {
        let _ = writeln!(out, "<p id=\"flash\" class=\"flash\">{}</p>", text(f, 400));
    }
    let _ = write!(
        out,
        "<section><h2>Pending approvals (<span id=\"pending-count\">{}</span>)</h2>\n<p class=\"hint\">A yes lets one exact request through, once. Read what it does first.</p>\n<ul id=\"approvals\">\n",
        approvals.len()
    );
    for a in approvals {
        approval(&mut out, a, csrf, now);
    }
    out.push_str("</ul>\n");
    if approvals.is_empty() {
        out.push_str("<p id=\"none\" class=\"none\">Nothing is waiting.</p>\n");
    }
    out.push_str("</section>\n<section><h2>Sessions</h2>\n<table id=\"sessions\"><thead><tr><th>id</th><th>status</th><th>command</th><th>project</th></tr></thead><tbody>\n");
    for s in sessions {
        session_row(&mut out, s);
    }
    out.push_str(
        "</tbody></table>\n</section>\n<section><h2>Live events</h2>\n<ol id=\"events\">\n",
    );
    for e in events.iter().rev().take(200).rev() {
        event(&mut out, e);
    }
    out.push_str("</ol>\n</section>\n</body>\n</html>\n");
    out
}

/// A refusal page (no cookie, wrong token, wrong host…).
pub(crate) fn refusal(title: &str, why: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>blastwall: {t}</title></head>\n<body><h1>{t}</h1><p>{w}</p></body></html>\n",
        t = text(title, 100),
        w = text(why, 400)
    )
}

/// A page that reloads itself once: a link followed from another site
/// (a chat message) arrives without the SameSite=Strict cookie; the reload
/// is same-site and carries it.
pub(crate) fn reload() -> String {
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0\"><title>blastwall</title></head>\n<body><p>Opening the approvals page…</p></body></html>\n".to_owned()
}

/// The script: live events over Server-Sent Events, the approvals list
/// rebuilt from `/api/approvals` when it changes. Text only ever goes in
/// `textContent`.
pub(crate) const APP_JS: &str = r#"'use strict';
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const live = document.getElementById('live');
  const events = document.getElementById('events');
  const list = document.getElementById('approvals');
  const count = document.getElementById('pending-count');
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function form(id, action, label, cls, note) {
    const f = el('form');
    f.method = 'post';
    f.action = '/approvals/' + encodeURIComponent(id) + '/' + action;
    const c = el('input');
    c.type = 'hidden'; c.name = 'csrf'; c.value = csrf;
    f.appendChild(c);
    if (note) {
      const n = el('input');
      n.type = 'text'; n.name = 'note'; n.maxLength = 300;
      n.placeholder = 'note for the agent (optional)';
      n.setAttribute('aria-label', 'note');
      f.appendChild(n);
    }
    const b = el('button', cls, label);
    b.type = 'submit'; b.name = action; b.dataset.id = id;
    f.appendChild(b);
    return f;
  }
  function item(a) {
    const li = el('li', 'approval' + (a.destructive ? ' destructive' : ''));
    li.id = a.id; li.dataset.id = a.id;
    li.appendChild(el('p', 'summary', a.summary_text));
    const m = el('p', 'meta');
    m.appendChild(el('code', '', a.id));
    m.appendChild(document.createTextNode(' · session '));
    m.appendChild(el('code', '', a.session));
    m.appendChild(document.createTextNode(' · rule '));
    m.appendChild(el('code', '', a.rule.id));
    m.appendChild(document.createTextNode(': ' + a.reason));
    li.appendChild(m);
    const act = el('div', 'actions');
    act.appendChild(form(a.id, 'approve', 'Approve once', 'approve', false));
    act.appendChild(form(a.id, 'deny', 'Deny', 'deny', true));
    li.appendChild(act);
    return li;
  }
  function refresh() {
    fetch('/api/approvals', {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (j) {
        const focused = document.activeElement && list.contains(document.activeElement);
        if (focused) return;
        list.replaceChildren.apply(list, j.approvals.map(item));
        count.textContent = String(j.approvals.length);
        const none = document.getElementById('none');
        if (none) none.hidden = j.approvals.length > 0;
      })
      .catch(function () {});
  }
  function addEvent(e) {
    const li = el('li', 'ev ' + e.kind + ' ' + (e.verdict || ''));
    li.appendChild(el('span', 'time', e.time));
    li.appendChild(document.createTextNode(' '));
    li.appendChild(el('code', '', e.session));
    li.appendChild(document.createTextNode(' #' + e.seq + ' ' + e.text));
    events.appendChild(li);
    while (events.children.length > 500) events.removeChild(events.firstChild);
  }
  if (!window.EventSource) return;
  const src = new EventSource('/api/events');
  let first = true;
  src.addEventListener('open', function () { live.textContent = 'live'; live.className = 'live on'; });
  src.addEventListener('error', function () { live.textContent = 'reconnecting'; live.className = 'live'; });
  src.addEventListener('hello', function () {
    if (first) { first = false; events.replaceChildren(); }
  });
  src.addEventListener('audit', function (m) { addEvent(JSON.parse(m.data)); });
  src.addEventListener('approvals', function () { refresh(); });
})();
"#;

/// The stylesheet.
pub(crate) const APP_CSS: &str = r#"body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 70rem; padding: 0 1rem 3rem; color: #1b1b1b; }
header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 1px solid #ccc; }
h1 { font-size: 1.3rem; margin: .6rem 0; }
.live { font-size: .85rem; color: #777; }
.live.on { color: #1a7f37; }
.flash { background: #eef6ee; border: 1px solid #9c9; padding: .4rem .6rem; }
ul#approvals { list-style: none; padding: 0; }
li.approval { border: 1px solid #bbb; border-radius: 4px; padding: .5rem .8rem; margin: .6rem 0; }
li.approval.destructive { border-color: #c33; background: #fff5f5; }
li.approval:target { outline: 3px solid #36c; }
.summary { font-family: ui-monospace, monospace; font-size: 1.05rem; margin: .2rem 0; word-break: break-all; }
.meta { color: #555; font-size: .85rem; margin: .2rem 0; word-break: break-all; }
.actions { display: flex; gap: 1rem; flex-wrap: wrap; }
.actions form { display: flex; gap: .4rem; }
button.approve { background: #1a7f37; color: #fff; border: 0; padding: .35rem .8rem; border-radius: 3px; }
button.deny { background: #b42318; color: #fff; border: 0; padding: .35rem .8rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; word-break: break-all; }
ol#events { font-family: ui-monospace, monospace; font-size: .8rem; padding-left: 0; list-style: none; }
.ev.deny, .ev.alert, .ev.denied { color: #b42318; }
.ev.ask { color: #9a6700; }
.ev.allow, .ev.approved { color: #1a7f37; }
.time { color: #888; }
"#;
