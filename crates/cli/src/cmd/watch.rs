//! `blastwall watch`: a terminal view of live events and pending
//! approvals, with single-key approve and deny. The data (the feed of
//! running sessions' audit logs, the approvals, deciding) comes from
//! `blastwall-server`; this module draws and reads keys, with crossterm.
//!
//! Every string an agent can influence reaches the screen through
//! `Summary::terminal()` or `summary::clean` (printable ASCII only), so no
//! escape sequence of the agent's is ever written to the terminal; the
//! only escapes written are crossterm's own.

use std::collections::VecDeque;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blastwall_gate::summary::clean;
use blastwall_gate::{SqliteStore, now_ns};
use blastwall_server::decide::decide;
use blastwall_server::feed::{self, ApprovalView, Feed, FeedEvent};
use blastwall_session::{Env, Home};
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};

use crate::Status;
use crate::out;

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Print one snapshot (sessions, pending approvals, recent events of
    /// running sessions) and exit; no terminal needed.
    #[arg(long)]
    pub(crate) once: bool,
    /// With --once: print the snapshot as JSON.
    #[arg(long, requires = "once")]
    pub(crate) json: bool,
}

/// How often the feed and the store are re-read.
const TICK: Duration = Duration::from_millis(300);
/// How many events are kept on screen.
const KEEP: usize = 500;

fn open_store(home: &Home) -> Option<SqliteStore> {
    let db = home.approvals_db();
    db.exists().then(|| SqliteStore::open(&db).ok()).flatten()
}

pub(crate) fn run(a: &WatchArgs, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    if a.once {
        return once(a, &home);
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("not a terminal: `blastwall watch` needs one (use --once, or --once --json)");
    }
    interactive(&home)
}

fn once(a: &WatchArgs, home: &Home) -> anyhow::Result<Status> {
    let store = open_store(home);
    let mut f = Feed::new(home.clone());
    f.poll();
    let snap = feed::snapshot(
        home,
        store
            .as_ref()
            .map(|s| s as &dyn blastwall_gate::ApprovalStore),
        &f,
    )?;
    if a.json {
        out::json(&snap)?;
        return Ok(Status::Ok);
    }
    let now = now_ns();
    let mut text = format!("pending approvals ({})\n", snap.approvals.len());
    for v in &snap.approvals {
        text.push_str(&format!("  {}\n", approval_line(v, now)));
    }
    text.push_str("sessions\n");
    for s in snap.sessions.iter().take(10) {
        let status = match s.status {
            blastwall_session::Status::Running => "running",
            blastwall_session::Status::Exited => "exited",
            blastwall_session::Status::Crashed => "crashed",
        };
        text.push_str(&format!("  {}  {status:<8} {}\n", s.id, s.command));
    }
    text.push_str("events\n");
    let skip = snap.events.len().saturating_sub(20);
    for e in snap.events.iter().skip(skip) {
        text.push_str(&format!("  {}\n", event_line(e)));
    }
    out::text(&text)?;
    Ok(Status::Ok)
}

fn approval_line(v: &ApprovalView, now: i64) -> String {
    let a = &v.approval;
    let left =
        Duration::from_secs(a.expires_ns.saturating_sub(now).max(0).unsigned_abs() / 1_000_000_000);
    format!(
        "{}{}  {}  (session {}, expires in {})",
        if a.destructive { "! " } else { "" },
        clean(&a.id, 40),
        a.summary.terminal(),
        clean(&a.session, 40),
        blastwall_gate::human_duration(left)
    )
}

fn event_line(e: &FeedEvent) -> String {
    // The feed's fields are already printable ASCII; clean again all the
    // same, it costs nothing.
    let time = e.time.get(11..19).unwrap_or(&e.time);
    format!(
        "{} {} #{} {}",
        clean(time, 20),
        clean(&e.session, 40),
        e.seq,
        clean(&e.text, 400)
    )
}

/// Restores the terminal however the view ends.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let s = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(s)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            ResetColor,
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

struct View {
    approvals: Vec<ApprovalView>,
    selected: usize,
    events: VecDeque<FeedEvent>,
    /// The approval waiting for its confirm key.
    confirm: Option<String>,
    status: String,
}

impl View {
    fn selected_id(&self) -> Option<&str> {
        self.approvals
            .get(self.selected)
            .map(|v| v.approval.id.as_str())
    }

    /// New approvals, keeping the same one selected where it still is.
    fn set_approvals(&mut self, new: Vec<ApprovalView>) {
        let keep = self.selected_id().map(str::to_owned);
        self.approvals = new;
        if let Some(id) = keep
            && let Some(i) = self.approvals.iter().position(|v| v.approval.id == id)
        {
            self.selected = i;
        }
        self.selected = self.selected.min(self.approvals.len().saturating_sub(1));
        if let Some(c) = self.confirm.take() {
            if self.approvals.iter().any(|v| v.approval.id == c) {
                self.confirm = Some(c);
            } else {
                self.status = format!("{} is no longer pending", clean(&c, 40));
            }
        }
    }
}

fn fit(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// One screen line: its text, colour and weight.
type Line = (String, Option<Color>, bool);

fn lines(v: &View, height: usize) -> Vec<Line> {
    let now = now_ns();
    let mut l: Vec<Line> = vec![
        (
            format!(
                "blastwall watch: {} pending    j/k or arrows: select   a: approve (then y)   d: deny   q: quit",
                v.approvals.len()
            ),
            None,
            true,
        ),
        (String::new(), None, false),
    ];
    if v.approvals.is_empty() {
        l.push(("  nothing is waiting".into(), None, false));
    }
    let room = (height.saturating_sub(6) / 2).max(3);
    // Keep the selected one on screen.
    let first = v.selected.saturating_sub(room.saturating_sub(1));
    for (i, a) in v.approvals.iter().enumerate().skip(first).take(room) {
        let mark = if i == v.selected { "> " } else { "  " };
        let color = a.approval.destructive.then_some(Color::Red);
        l.push((
            format!("{mark}{}", approval_line(a, now)),
            color,
            i == v.selected,
        ));
    }
    l.push((String::new(), None, false));
    let status = match &v.confirm {
        Some(id) => format!(
            "approve {} once? press y to approve, any other key cancels",
            clean(id, 40)
        ),
        None => v.status.clone(),
    };
    l.push((status, Some(Color::Yellow), v.confirm.is_some()));
    l.push(("events:".into(), None, true));
    let left = height.saturating_sub(l.len());
    let skip = v.events.len().saturating_sub(left);
    for e in v.events.iter().skip(skip) {
        let color = match e.verdict.as_deref() {
            Some("deny" | "denied" | "denied-timeout") => Some(Color::Red),
            Some("ask") => Some(Color::Yellow),
            Some("allow" | "approved") => Some(Color::Green),
            _ if e.kind == "alert" => Some(Color::Red),
            _ => None,
        };
        l.push((event_line(e), color, false));
    }
    l
}

fn draw(v: &View) -> anyhow::Result<()> {
    let (w, h) = terminal::size().unwrap_or((80, 24));
    let mut out = std::io::stdout().lock();
    queue!(out, terminal::Clear(ClearType::All))?;
    for (row, (text, color, bold)) in (0..h).zip(lines(v, usize::from(h))) {
        queue!(out, cursor::MoveTo(0, row))?;
        if let Some(c) = color {
            queue!(out, SetForegroundColor(c))?;
        }
        if bold {
            queue!(out, SetAttribute(Attribute::Bold))?;
        }
        queue!(
            out,
            Print(fit(&text, usize::from(w))),
            SetAttribute(Attribute::Reset),
            ResetColor
        )?;
    }
    out.flush()?;
    Ok(())
}

fn interactive(home: &Home) -> anyhow::Result<Status> {
    let by = super::serve::decided_by("watch");
    let mut store = open_store(home);
    let mut feed = Feed::new(home.clone());
    let mut v = View {
        approvals: Vec::new(),
        selected: 0,
        events: VecDeque::new(),
        confirm: None,
        status: String::new(),
    };
    let _screen = Screen::enter()?;
    let mut next_tick = Instant::now();
    loop {
        if Instant::now() >= next_tick {
            if store.is_none() {
                store = open_store(home);
            }
            for e in feed.poll() {
                v.events.push_back(e);
            }
            while v.events.len() > KEEP {
                v.events.pop_front();
            }
            if let Some(s) = &store {
                match feed::approvals(s, false) {
                    Ok(list) => v.set_approvals(list),
                    Err(e) => v.status = clean(&format!("the approval store failed: {e}"), 300),
                }
            }
            draw(&v)?;
            next_tick = Instant::now() + TICK;
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        if !event::poll(wait)? {
            continue;
        }
        let key = match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => k,
            Event::Resize(..) => {
                draw(&v)?;
                continue;
            }
            _ => continue,
        };
        if handle_key(&key, &mut v, home, store.as_ref(), &by) {
            return Ok(Status::Ok);
        }
        draw(&v)?;
    }
}

/// Applies one key; `true` to quit.
fn handle_key(
    key: &KeyEvent,
    v: &mut View,
    home: &Home,
    store: Option<&SqliteStore>,
    by: &str,
) -> bool {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if let Some(id) = v.confirm.take() {
        if key.code == KeyCode::Char('y') && !ctrl_c {
            v.status = decide_now(home, store, &id, true, by);
        } else {
            v.status = format!("not approved: {}", clean(&id, 40));
        }
        return false;
    }
    match key.code {
        _ if ctrl_c => return true,
        KeyCode::Char('q') | KeyCode::Esc => return true,
        KeyCode::Char('j') | KeyCode::Down => {
            v.selected = (v.selected + 1).min(v.approvals.len().saturating_sub(1));
        }
        KeyCode::Char('k') | KeyCode::Up => v.selected = v.selected.saturating_sub(1),
        KeyCode::Char('a') => match v.selected_id() {
            Some(id) => v.confirm = Some(id.to_owned()),
            None => v.status = "nothing to approve".into(),
        },
        KeyCode::Char('d') => match v.selected_id().map(str::to_owned) {
            Some(id) => v.status = decide_now(home, store, &id, false, by),
            None => v.status = "nothing to deny".into(),
        },
        _ => {}
    }
    false
}

fn decide_now(
    home: &Home,
    store: Option<&SqliteStore>,
    id: &str,
    approve: bool,
    by: &str,
) -> String {
    let Some(store) = store else {
        return "no approval store yet".into();
    };
    let msg = match decide(home, store, id, approve, by, None) {
        Ok(d) => d.message(id),
        Err(e) => format!("the approval store failed: {e}"),
    };
    clean(&msg, 300)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const HOSTILE: &str =
        "\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{9b}31m vol_pr\u{43e}d\u{202e}x\u{200b}\r\n";

    fn view() -> View {
        let summary = blastwall_gate::Summary {
            verb: HOSTILE.into(),
            target: HOSTILE.into(),
            host: HOSTILE.into(),
            how: HOSTILE.into(),
            risk: HOSTILE.into(),
            more: 1,
            also: vec![HOSTILE.into()],
        };
        let approval: blastwall_gate::Approval = serde_json::from_value(serde_json::json!({
            "id": "ap-0000000000000001",
            "session": HOSTILE,
            "request_id": 1,
            "summary": summary,
            "action": {},
            "digest": "00",
            "rule": {"id": HOSTILE, "file": "f", "line": 1, "col": 1},
            "reason": HOSTILE,
            "labels": [],
            "destructive": true,
            "group": HOSTILE,
            "created_ns": 0,
            "expires_ns": i64::MAX,
            "state": "pending",
            "decided_ns": null,
            "decided_by": null,
            "note": null,
        }))
        .unwrap();
        View {
            approvals: vec![ApprovalView::from(approval)],
            selected: 0,
            events: VecDeque::from([FeedEvent {
                session: HOSTILE.into(),
                seq: 1,
                time: HOSTILE.into(),
                kind: "decision".into(),
                verdict: Some("ask".into()),
                text: HOSTILE.into(),
            }]),
            confirm: Some(HOSTILE.into()),
            status: String::new(),
        }
    }

    /// Nothing of the agent's can be an escape sequence, a bidi override or
    /// a line break on screen, even from fields that skipped cleaning.
    #[test]
    fn no_agent_text_reaches_the_terminal_raw() {
        for (text, _, _) in lines(&view(), 40) {
            for c in text.chars() {
                assert!(
                    (' '..='~').contains(&c) || c == '\u{2014}',
                    "{c:?} on screen: {text:?}"
                );
            }
        }
        let all: String = lines(&view(), 40).into_iter().map(|l| l.0).collect();
        assert!(all.contains("\\u{1b}]52;c;"), "{all}");
        assert!(all.contains("vol_pr\\u{43e}d\\u{202e}x"), "{all}");
    }
}
