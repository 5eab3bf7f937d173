//! The anomaly rules, one by one: when each fires, and when it stays quiet.

use std::time::Duration;

use blastwall_audit::anomaly::{
    AlertRule, Detector, MAX_HOSTS, NetFacts, Observation, Thresholds, Verdict, shannon_entropy,
};
use pretty_assertions::assert_eq;
use serde_json::json;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn net<'a>(method: &'a str, host: &'a str, query: Option<&'a str>, declared: bool) -> NetFacts<'a> {
    NetFacts {
        method,
        host,
        port: 443,
        path: "/x",
        query,
        host_declared: declared,
    }
}

fn rules(alerts: &[blastwall_audit::anomaly::AlertData]) -> Vec<AlertRule> {
    alerts.iter().map(|a| a.rule).collect()
}

#[test]
fn first_contact_alerts_once_per_undeclared_host() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Deny);
    ev.decision_seq = Some(7);
    ev.net = Some(net("GET", "evil.example.com", None, false));
    let a = d.observe(&ev);
    assert_eq!(rules(&a), [AlertRule::FirstContact]);
    assert_eq!(a[0].decision_seq, Some(7));
    let data = a[0].to_json();
    assert_eq!(data["rule"], "anomaly.first-contact");
    assert_eq!(data["host"], "evil.example.com");
    assert_eq!(data["decision_seq"], 7);
    assert!(d.observe(&ev).is_empty(), "second contact");
    ev.net = Some(net("GET", "other.example.com", None, false));
    assert_eq!(rules(&d.observe(&ev)), [AlertRule::FirstContact]);
    // A declared host never alerts.
    ev.net = Some(net("GET", "api.github.com", None, true));
    assert!(d.observe(&ev).is_empty());
    let c = d.counts();
    assert_eq!((c.undeclared_requests, c.undeclared_hosts), (3, 2));
}

#[test]
fn first_contact_stops_remembering_past_the_cap_and_says_so() {
    let mut d = Detector::new(Thresholds::default());
    let hosts: Vec<String> = (0..=MAX_HOSTS + 1)
        .map(|i| format!("h{i}.example"))
        .collect();
    let mut fired = 0;
    let mut said_stop = 0;
    for h in &hosts {
        let mut ev = Observation::new(secs(1), Verdict::Allow);
        ev.net = Some(net("GET", h, None, false));
        for a in d.observe(&ev) {
            if a.reason.contains("no more first-contact alerts") {
                said_stop += 1;
            } else {
                fired += 1;
            }
        }
    }
    assert_eq!((fired, said_stop), (MAX_HOSTS, 1));
}

#[test]
fn placeholder_leak_alerts_every_time() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Deny);
    ev.placeholder_leak = Some(("github", "evil.example.com"));
    ev.net = Some(net("POST", "evil.example.com", None, true));
    for _ in 0..3 {
        let a = d.observe(&ev);
        assert_eq!(rules(&a), [AlertRule::PlaceholderLeak]);
        assert_eq!(
            a[0].detail,
            json!({"credential": "github", "host": "evil.example.com"})
        );
    }
}

#[test]
fn hidden_path_alerts_on_the_first_attempt_and_counts_the_rest() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Deny);
    ev.hidden_path = Some("/home/ana/.aws/credentials");
    assert_eq!(rules(&d.observe(&ev)), [AlertRule::HiddenPath]);
    ev.hidden_path = Some("/home/ana/.ssh/id_ed25519");
    assert!(d.observe(&ev).is_empty());
    assert!(d.observe(&ev).is_empty());
    assert_eq!(d.counts().hidden_path_attempts, 3);
}

#[test]
fn a_burst_of_denials_alerts_once_per_burst() {
    let t = Thresholds {
        deny_burst_count: 3,
        deny_burst_window: secs(10),
        ..Thresholds::default()
    };
    let mut d = Detector::new(t);
    let deny = |s| Observation::new(secs(s), Verdict::Deny);
    // Spread out: never 3 within 10 s.
    for s in [0, 6, 12, 18, 24] {
        assert!(d.observe(&deny(s)).is_empty(), "at {s}");
    }
    // Three within 10 s.
    assert!(d.observe(&deny(100)).is_empty());
    assert!(d.observe(&deny(101)).is_empty());
    assert_eq!(rules(&d.observe(&deny(102))), [AlertRule::DenyBurst]);
    // The window starts empty again: two more are not a burst.
    assert!(d.observe(&deny(103)).is_empty());
    assert!(d.observe(&deny(104)).is_empty());
    assert_eq!(rules(&d.observe(&deny(105))), [AlertRule::DenyBurst]);
    assert_eq!(d.counts().deny_bursts, 2);
    // Allowed actions never count.
    assert!(
        d.observe(&Observation::new(secs(106), Verdict::Allow))
            .is_empty()
    );
}

#[test]
fn a_destructive_ask_alerts_and_a_plain_ask_does_not() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Ask);
    assert!(d.observe(&ev).is_empty());
    ev.destructive = true;
    assert_eq!(rules(&d.observe(&ev)), [AlertRule::DestructiveAsk]);
    ev.verdict = Verdict::Deny;
    assert!(
        d.observe(&ev).is_empty(),
        "a destructive deny is not an ask"
    );
}

#[test]
fn a_long_or_random_query_on_an_allowed_get_alerts() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Allow);
    // Ordinary queries: quiet.
    for q in [
        "page=2",
        "q=how+to+configure+a+reverse+proxy+with+nginx+and+lets+encrypt+on+debian",
        "utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_content=link",
    ] {
        ev.net = Some(net("GET", "api.example.com", Some(q), true));
        assert!(
            d.observe(&ev).is_empty(),
            "{q}: {}",
            shannon_entropy(q.as_bytes())
        );
    }
    // Base64 of random bytes, 88 characters: high entropy.
    let b64 =
        "q=kX9vQ2mZ8rT1yL4nB7wE0aS5dF3gH6jK+pO/uI2cV8bN1mQ4xZ7eR0tY3wA6sD9fG2hJ5kL8zX1cV4bN7mQ0";
    ev.net = Some(net("GET", "api.example.com", Some(b64), true));
    let a = d.observe(&ev);
    assert_eq!(rules(&a), [AlertRule::QueryExfiltration]);
    assert!(a[0].reason.contains("bits per byte"), "{}", a[0].reason);
    // Hex is low entropy but a long one is caught by length.
    let hex = format!("d={}", "0123456789abcdef".repeat(40));
    ev.net = Some(net("GET", "api.example.com", Some(&hex), true));
    let a = d.observe(&ev);
    assert_eq!(rules(&a), [AlertRule::QueryExfiltration]);
    assert!(a[0].reason.contains("642 bytes"), "{}", a[0].reason);
    // Not on a POST, and not when denied.
    ev.net = Some(net("POST", "api.example.com", Some(&hex), true));
    assert!(d.observe(&ev).is_empty());
    ev.net = Some(net("GET", "api.example.com", Some(&hex), true));
    ev.verdict = Verdict::Deny;
    assert!(d.observe(&ev).is_empty());
}

#[test]
fn rules_turned_off_stay_quiet_but_still_count() {
    let t = Thresholds {
        first_contact: false,
        placeholder_leak: false,
        hidden_path: false,
        destructive_ask: false,
        deny_burst_count: 0,
        query_max_bytes: 0,
        ..Thresholds::default()
    };
    let mut d = Detector::new(t);
    let mut ev = Observation::new(secs(1), Verdict::Ask);
    ev.destructive = true;
    ev.hidden_path = Some("/root/.aws");
    ev.placeholder_leak = Some(("c", "h"));
    let long = "a".repeat(2000);
    ev.net = Some(net("GET", "x.example", Some(&long), false));
    assert!(d.observe(&ev).is_empty());
    ev.verdict = Verdict::Deny;
    for _ in 0..20 {
        assert!(d.observe(&ev).is_empty());
    }
    let c = d.counts();
    assert_eq!(
        (c.destructive_asks, c.hidden_path_attempts, c.denials),
        (1, 21, 20)
    );
}

#[test]
fn several_rules_can_fire_on_one_decision_in_rule_order() {
    let mut d = Detector::new(Thresholds::default());
    let mut ev = Observation::new(secs(1), Verdict::Ask);
    ev.destructive = true;
    ev.placeholder_leak = Some(("railway", "evil.example.com"));
    ev.net = Some(net("DELETE", "evil.example.com", None, false));
    assert_eq!(
        rules(&d.observe(&ev)),
        [
            AlertRule::PlaceholderLeak,
            AlertRule::FirstContact,
            AlertRule::DestructiveAsk
        ]
    );
}

#[test]
fn entropy_is_in_bits_per_byte() {
    assert_eq!(shannon_entropy(b""), 0.0);
    assert_eq!(shannon_entropy(b"aaaa"), 0.0);
    assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-9);
    let all: Vec<u8> = (0..=255).collect();
    assert!((shannon_entropy(&all) - 8.0).abs() < 1e-9);
}
