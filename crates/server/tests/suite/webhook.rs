//! Webhooks: every format's payload for hostile summaries (golden files in
//! `tests/golden/`, rewritten with `BLASTWALL_BLESS=1`), the link back to
//! the page (never its token), and a poster that never blocks its caller.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use blastwall_gate::Approval;
use blastwall_server::webhook::{Format, Poster, payload, redact};
use blastwall_session::Home;
use pretty_assertions::assert_eq;

use super::{HOSTILE, approval, hostile_summary};

const BASE: &str = "http://127.0.0.1:4477/";

fn fixed(i: usize, h: &str) -> Approval {
    let mut a = approval(
        &format!("ap-{i:016x}"),
        "20261125-120000-abcdef",
        hostile_summary(h),
    );
    a.created_ns = 1_795_607_702_000_000_000;
    a.expires_ns = a.created_ns + 300 * 1_000_000_000;
    a.reason = format!("reason {h}");
    a
}

fn golden(name: &str, got: &str) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLASTWALL_BLESS").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, got).unwrap();
    }
    let want = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (write it with BLASTWALL_BLESS=1)", p.display()));
    assert_eq!(want, got, "{}", p.display());
}

/// The text with every code span (`…`) cut out: what the chat renders as markup.
fn outside_code(s: &str) -> String {
    s.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

fn all_payloads(format: Format) -> String {
    let mut out = String::new();
    for (i, h) in HOSTILE.iter().enumerate() {
        let v = payload(format, &fixed(i, h), Some(BASE));
        out.push_str(&serde_json::to_string_pretty(&v).unwrap());
        out.push('\n');
    }
    out
}

fn assert_plain(s: &str) {
    for c in s.chars() {
        assert!(
            c == '\n' || !c.is_control(),
            "control character {c:?} in {s:?}"
        );
        assert!(
            !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}'),
            "bidi or zero-width {c:?} in {s:?}"
        );
        assert!(c != '\u{43e}', "homoglyph in {s:?}");
    }
}

#[test]
fn slack_payloads_carry_no_markup_links_or_mentions_of_the_agent() {
    golden("webhook-slack.json", &all_payloads(Format::Slack));
    for (i, h) in HOSTILE.iter().enumerate() {
        let v = payload(Format::Slack, &fixed(i, h), Some(BASE));
        let text = v["text"].as_str().unwrap();
        assert_plain(text);
        let outside = outside_code(text);
        // Slack's control sequences: only our own link to the page.
        assert!(!text.contains("<!"), "{text}");
        assert!(!text.contains("<http://evil"), "{text}");
        assert_eq!(1, text.matches('<').count(), "{text}");
        assert!(
            text.contains(&format!("<{BASE}#ap-{i:016x}|open the approvals page>")),
            "{text}"
        );
        for bad in ["@everyone", "](http", "*bold*", "~s~", "<script"] {
            assert!(!outside.contains(bad), "{bad} outside code in {text}");
        }
        assert_eq!(false, v["unfurl_links"]);
    }
}

#[test]
fn discord_payloads_ping_nobody_and_render_no_agent_markup() {
    golden("webhook-discord.json", &all_payloads(Format::Discord));
    for (i, h) in HOSTILE.iter().enumerate() {
        let v = payload(Format::Discord, &fixed(i, h), Some(BASE));
        assert_eq!(serde_json::json!({"parse": []}), v["allowed_mentions"]);
        let text = v["content"].as_str().unwrap();
        assert_plain(text);
        let outside = outside_code(text);
        for bad in [
            "@everyone",
            "@here",
            "](http",
            "*bold*",
            "||spoiler||",
            "<script",
            "<http://evil",
            "<!channel",
        ] {
            assert!(!outside.contains(bad), "{bad} outside code in {text}");
        }
        assert!(text.len() < 2000, "Discord's limit: {}", text.len());
    }
}

#[test]
fn json_payloads_hold_the_cleaned_summary() {
    golden("webhook-json.json", &all_payloads(Format::Json));
    for (i, h) in HOSTILE.iter().enumerate() {
        let v = payload(Format::Json, &fixed(i, h), Some(BASE));
        let s = serde_json::to_string(&v).unwrap();
        assert!(!s.contains("\\u001b"), "{s}");
        assert_plain(v["summary"].as_str().unwrap());
        assert_eq!(format!("{BASE}#ap-{i:016x}"), v["url"]);
    }
    let v = payload(Format::Json, &fixed(0, "x"), None);
    assert_eq!(serde_json::Value::Null, v["url"]);
    assert!(v["hint"].as_str().unwrap().contains("blastwall serve"));
    let slack = payload(Format::Slack, &fixed(0, "x"), None);
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("run `blastwall serve`")
    );
}

/// A loopback recorder: each request's body, sent on the channel; answers 200.
fn recorder() -> (u16, mpsc::Receiver<(String, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (port, rx)
}

#[test]
fn a_notice_is_posted_with_a_link_to_the_page_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let (port, rx) = recorder();
    let url = format!("http://127.0.0.1:{port}/hooks/T000/B000/SECRETPATH");
    let poster = Poster::start(&url, "discord", home.clone(), Box::new(|_| {})).unwrap();
    // No page running: the notice says how to get one.
    assert!(poster.notify(&fixed(1, "@everyone")));
    let (head, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with("POST /hooks/T000/B000/SECRETPATH"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .contains("run `blastwall serve`"),
        "{v}"
    );
    assert_eq!(serde_json::json!({"parse": []}), v["allowed_mentions"]);
    // With a page recorded by a live process (this one), the notice links to it.
    blastwall_server::serve_file::write(&home, "http://127.0.0.1:4477/").unwrap();
    assert!(poster.notify(&fixed(2, "x")));
    let (_, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        body.contains("<http://127.0.0.1:4477/#ap-0000000000000002>"),
        "{body}"
    );
    assert!(!body.contains("token"), "{body}");
    assert_eq!(0, poster.dropped());
}

#[test]
fn a_dead_webhook_never_blocks_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    let poster = Poster::start(
        &format!("http://127.0.0.1:{port}/x"),
        "slack",
        Home::at(dir.path()),
        Box::new(|_| {}),
    )
    .unwrap();
    let start = Instant::now();
    for i in 0..200 {
        poster.notify(&fixed(i, "x"));
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(poster.dropped() > 100, "{}", poster.dropped());
}

#[test]
fn a_failed_post_is_reported_without_the_secret_path() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let poster = Poster::start(
        &format!("http://user:pw@127.0.0.1:{port}/services/SECRET"),
        "json",
        Home::at(dir.path()),
        Box::new(move |m| {
            let _ = tx.lock().unwrap().send(m);
        }),
    )
    .unwrap();
    poster.notify(&fixed(0, "x"));
    let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(m.contains("failed"), "{m}");
    assert!(!m.contains("SECRET") && !m.contains("pw"), "{m}");
    assert_eq!(
        format!("http://127.0.0.1:{port}/..."),
        redact(&format!("http://user:pw@127.0.0.1:{port}/services/SECRET"))
    );
    assert!(Poster::start("http://x/", "teams", Home::at(dir.path()), Box::new(|_| {})).is_err());
}
