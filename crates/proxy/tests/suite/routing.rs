//! Allowed, denied and undeclared hosts; the address filter.

use super::common::{Harness, final_status};

#[test]
fn a_denied_host_gets_403_naming_the_rule_and_the_upstream_never_sees_it() {
    let h = Harness::start();
    for url in ["http://denied.test/x", "https://denied.test/x"] {
        let (_, text) = h.curl(&[url]);
        assert_eq!(403, final_status(&text), "{text}");
        assert!(text.contains("blastwall: denied: GET"), "{text}");
        assert!(text.contains("blastwall.toml:"), "{text}");
        assert!(text.contains("denied in the test manifest"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("x-blastwall-request-id:"),
            "{text}"
        );
    }
    let (_, text) = h.curl(&["https://undeclared.example/"]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(text.contains("network.default"), "{text}");
    assert!(h.seen().is_empty());
    let events = h.audit_events();
    let denies = events
        .iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["verdict"] == "deny")
        .count();
    assert_eq!(3, denies);
}

#[test]
fn keep_alive_and_each_request_decided() {
    let h = Harness::start();
    // Two URLs on one curl invocation reuse the connection; the second is denied.
    let (_, text) = h.curl(&[
        "http://other.test/a",
        "http://denied.test/b",
        "http://other.test/c",
    ]);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i..i + 12])
        .collect();
    assert_eq!(3, statuses.len(), "{text}");
    assert!(statuses[1].contains("403"), "{text}");
    let paths: Vec<String> = h.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(vec!["/a".to_owned(), "/c".to_owned()], paths);
}

#[test]
fn loopback_is_refused_unless_declared_in_resolve() {
    let h = Harness::with_rules(
        "[[network.rule]]\nhost = \"127.0.0.1\"\nports = [{plain}]\nverdict = \"allow\"\n",
    );
    let url = format!("http://127.0.0.1:{}/x", h.plain_port);
    let (_, text) = h.curl(&[&url]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(text.contains("proxy.address"), "{text}");
    assert!(text.contains("loopback"), "{text}");
    assert!(h.seen().is_empty());
    // Every notation of the same address is the same host.
    let url = format!("http://0x7f.1:{}/x", h.plain_port);
    let (_, text) = h.curl(&[&url]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(h.seen().is_empty());
}

#[test]
fn address_filter_ranges() {
    use blastwall_proxy::blocked_reason;
    for bad in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "64:ff9b::a9fe:a9fe",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "ff02::1",
    ] {
        assert!(blocked_reason(bad.parse().unwrap()).is_some(), "{bad}");
    }
    for good in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
        assert!(blocked_reason(good.parse().unwrap()).is_none(), "{good}");
    }
}

#[test]
fn hosts_left_out_of_interception_pass_through_decided_on_their_name() {
    let h = Harness::with("", Some(&["echo.test", "backboard.railway.app"]));
    // other.test is passed through: the client sees the upstream's own certificate.
    let (_, text) = h.curl(&["https://other.test/through"]);
    assert_eq!(200, final_status(&text), "{text}");
    assert_eq!(
        vec!["/through".to_owned()],
        h.seen().into_iter().map(|s| s.path).collect::<Vec<_>>()
    );
    // A denied host is refused at the CONNECT.
    let (_, text) = h.curl(&["https://denied.test/x"]);
    assert!(text.contains("403"), "{text}");
    assert_eq!(1, h.seen().len());
    // Intercepted hosts are still decided request by request.
    let ph = h.placeholder("ECHO_TOKEN");
    let (_, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "https://echo.test/echo",
    ]);
    assert_eq!(200, final_status(&text), "{text}");
    assert!(!text.contains(super::common::REAL_ECHO), "{text}");
    let events = h.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "outcome" && e["data"]["outcome"] == "tunnelled")
    );
}
