//! What a person reads, on every channel, when the agent writes the text:
//! hostile summaries (terminal escapes, OSC 52, bidi, homoglyphs, HTML,
//! Slack and Discord markup and mentions) through every renderer, against
//! golden files (`tests/golden/summary-*.txt`, rewritten with
//! `BLASTWALL_BLESS=1`) and against what each channel gives meaning to.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

use std::path::PathBuf;

use blastwall_classify::Labels;
use blastwall_classify::graphql::Inspection;
use blastwall_gate::Summary;
use blastwall_policy::{Action, NetAction};
use pretty_assertions::assert_eq;

const HOSTILE: &[&str] = &[
    "\u{1b}[2J\u{1b}[H\u{1b}]0;pwned\u{7}",
    "\u{1b}]52;c;cm0gLXJmIH4=\u{7}",
    "\u{9b}31m\u{90}q",
    "vol_pr\u{43e}d",
    "vol_prod\u{202e}gnp.exe\u{2066}x\u{2069}",
    "a\u{200b}b\u{feff}c",
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "<!channel> <!here> <@U123>",
    "<http://evil.example|click here>",
    "@everyone @here",
    "[x](http://evil.example)",
    "`code` *bold* _it_ ~s~ ||spoiler|| > quote",
    "line\nbreak\rreturn\ttab",
    "back\\slash \\u{1b}",
];

/// The summary the gate builds for a GraphQL delete whose argument is `h`.
fn graphql(h: &str) -> Summary {
    let arg = serde_json::to_string(h).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "query": format!("mutation {{ volumeDelete(volumeId: {arg}) }}")
    }))
    .unwrap();
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

/// A summary with `h` in every part, never cleaned (as a careless caller
/// or a store record could hold it): the renderers must still hold.
fn raw(h: &str) -> Summary {
    Summary {
        verb: h.into(),
        target: h.into(),
        host: h.into(),
        how: h.into(),
        risk: h.into(),
        more: 2,
        also: vec![h.into()],
    }
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

fn summaries() -> Vec<(String, Summary)> {
    let mut v = Vec::new();
    for (i, h) in HOSTILE.iter().enumerate() {
        v.push((format!("graphql[{i}]"), graphql(h)));
        v.push((format!("raw[{i}]"), raw(h)));
    }
    v
}

fn render_all(f: impl Fn(&Summary) -> String) -> String {
    let mut out = String::new();
    for (name, s) in summaries() {
        out.push_str(&format!("{name}: {}\n", f(&s)));
    }
    out
}

/// Nothing but printable ASCII and the summary's own em dash.
fn assert_plain(s: &str) {
    for c in s.chars() {
        assert!(
            (' '..='~').contains(&c) || c == '\u{2014}',
            "{c:?} in {s:?}"
        );
    }
}

/// The text outside code spans (what chat markup applies to).
fn outside_code(s: &str) -> String {
    assert_eq!(0, s.matches('`').count() % 2, "unbalanced code span: {s}");
    s.split('`').step_by(2).collect::<Vec<_>>().join("")
}

/// Outside code spans only our own words: letters, digits, spaces, `-`,
/// `(`, `)`, `+` and the em dash; no markup, link or mention can start there.
fn assert_no_markup_outside_code(s: &str) {
    let outside = outside_code(s);
    for c in outside.chars() {
        assert!(
            c.is_ascii_alphanumeric() || " -()+\u{2014}".contains(c),
            "{c:?} outside code spans in {s:?}"
        );
    }
}

#[test]
fn terminal_text_has_no_escapes_bidi_or_lookalikes() {
    golden("summary-terminal.txt", &render_all(Summary::terminal));
    for (_, s) in summaries() {
        assert_plain(&s.terminal());
        assert_eq!(s.text(), s.terminal());
    }
    // The homoglyph and the override show up as what they are.
    assert!(
        graphql("vol_pr\u{43e}d")
            .terminal()
            .contains("vol_pr\\u{43e}d")
    );
    assert!(raw("x\u{202e}y").terminal().contains("x\\u{202e}y"));
}

#[test]
fn html_has_no_markup_of_the_agent() {
    golden("summary-html.txt", &render_all(Summary::html));
    for (_, s) in summaries() {
        let h = s.html();
        assert_plain(&h);
        for c in ['<', '>', '"', '\''] {
            assert!(!h.contains(c), "{c:?} in {h}");
        }
        // Every & starts an entity.
        for (i, _) in h.match_indices('&') {
            let rest = &h[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "{h}"
            );
        }
    }
}

#[test]
fn slack_text_has_no_control_sequences_links_mentions_or_formatting() {
    golden("summary-slack.txt", &render_all(Summary::slack));
    for (_, s) in summaries() {
        let t = s.slack();
        assert_plain(&t);
        assert!(!t.contains('<') && !t.contains('>'), "{t}");
        assert_no_markup_outside_code(&t);
    }
}

#[test]
fn discord_text_has_no_mentions_links_or_formatting() {
    golden("summary-discord.txt", &render_all(Summary::discord));
    for (_, s) in summaries() {
        let t = s.discord();
        assert_plain(&t);
        assert_no_markup_outside_code(&t);
    }
}

#[test]
fn a_plain_summary_reads_the_same_everywhere_but_for_escaping() {
    let s = graphql("vol_prod");
    let text = "delete volume vol_prod on backboard.railway.app \u{2014} GraphQL mutation volumeDelete \u{2014} irreversible";
    assert_eq!(text, s.text());
    assert_eq!(text, s.html());
    assert_eq!(
        "delete `volume vol_prod` on `backboard.railway.app` \u{2014} `GraphQL mutation volumeDelete` \u{2014} irreversible",
        s.slack()
    );
    assert_eq!(s.slack(), s.discord());
}
