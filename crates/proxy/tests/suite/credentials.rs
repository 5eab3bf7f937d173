//! Credential injection and the credential-bleed scenario
//! (shared/scenarios/credential-bleed.md, pocketos.md "must also").

use base64::Engine;

use super::common::{Harness, REAL_ECHO, final_status};

fn no_secret(text: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(REAL_ECHO);
    assert!(
        !text.contains(REAL_ECHO),
        "the real token reached the agent:\n{text}"
    );
    assert!(
        !text.contains(&b64),
        "the real token (base64) reached the agent:\n{text}"
    );
    assert!(
        !text.contains(&REAL_ECHO.replace('-', "%2D")),
        "the real token (URL-encoded) reached the agent:\n{text}"
    );
}

#[test]
fn https_request_arrives_with_the_real_token_and_the_echo_is_swapped_back() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    let (status, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "https://echo.test/echo",
    ]);
    assert_eq!(200, final_status(&text), "{text}");
    let _ = status;
    let seen = h.seen();
    assert_eq!(1, seen.len(), "{seen:?}");
    assert_eq!(
        ("GET", "echo.test"),
        (seen[0].method.as_str(), seen[0].host.as_str())
    );
    assert_eq!(
        Some(format!("Bearer {REAL_ECHO}").as_str()),
        seen[0].header("authorization")
    );
    no_secret(&text);
    assert!(
        text.contains(&ph),
        "the echo shows the placeholder instead:\n{text}"
    );
    // The audit log holds the decision and an alert for the swapped echo.
    let events = h.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "decision" && e["data"]["verdict"] == "allow")
    );
    let log = std::fs::read_to_string(&h.audit).unwrap();
    assert!(
        !log.contains(REAL_ECHO),
        "the real token is in the audit log"
    );
}

#[test]
fn plain_http_request_arrives_with_the_real_token() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    let (_, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "http://echo.test/echo",
    ]);
    assert_eq!(200, final_status(&text), "{text}");
    let seen = h.seen();
    assert_eq!(
        Some(format!("Bearer {REAL_ECHO}").as_str()),
        seen[0].header("authorization")
    );
    no_secret(&text);
}

#[test]
fn a_real_secret_never_goes_out_in_cleartext_to_a_host_off_this_machine() {
    // The same request is fine to echo.test, which [network.resolve] sends
    // to this machine's loopback (above); backboard.railway.app over plain
    // http has no such entry: the credential would cross a network unencrypted.
    let h = Harness::start();
    let ph = h.placeholder("RAILWAY_TOKEN");
    let (status, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"query":"{ me { email } }"}"#,
        "http://backboard.railway.app/graphql/v2",
    ]);
    assert_eq!(403, status, "{text}");
    assert!(text.contains("proxy.cleartext-credential"), "{text}");
    assert!(h.seen().is_empty());
    no_secret(&text);
}

#[test]
fn a_redirect_location_never_shows_the_real_token() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    let (_, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "https://echo.test/redirect",
    ]);
    assert_eq!(302, final_status(&text), "{text}");
    no_secret(&text);
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("location: https://echo.test/next?token={ph}").to_ascii_lowercase()),
        "{text}"
    );
}

#[test]
fn python_urllib_gets_the_same_treatment() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    let auth = format!("Bearer {ph}");
    let (status, text) = h.python(
        "GET",
        "https://echo.test/echo",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(200, status, "{text}");
    no_secret(&text);
    assert_eq!(
        Some(format!("Bearer {REAL_ECHO}").as_str()),
        h.seen()[0].header("authorization")
    );
}

#[test]
fn the_agents_own_bearer_token_to_the_bound_host_is_refused() {
    let h = Harness::start();
    let (_, text) = h.curl(&[
        "-H",
        "Authorization: Bearer my-own-token-for-another-account",
        "https://echo.test/echo",
    ]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(text.contains("proxy.own-credential"), "{text}");
    let (_, text) = h.curl(&["-H", "Cookie: session=abc", "http://echo.test/echo"]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(h.seen().is_empty(), "the upstream saw {:?}", h.seen());
}

#[test]
fn a_placeholder_sent_to_another_allowed_host_is_refused_and_alerted() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    let (_, text) = h.curl(&[
        "-H",
        &format!("Authorization: Bearer {ph}"),
        "https://other.test/echo",
    ]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(text.contains("proxy.placeholder"), "{text}");
    // Elsewhere on the bound host too: URL, another header, the body.
    let url = format!("https://echo.test/echo?t={ph}");
    let (_, text) = h.curl(&[&url]);
    assert_eq!(403, final_status(&text), "{text}");
    let hdr = format!("X-Token: {ph}");
    let (_, text) = h.curl(&["-H", &hdr, "https://echo.test/echo"]);
    assert_eq!(403, final_status(&text), "{text}");
    let body = format!("{{\"token\":\"{ph}\"}}");
    let (_, text) = h.curl(&["--data-binary", &body, "https://echo.test/echo"]);
    assert_eq!(403, final_status(&text), "{text}");
    let (status, text) = h.python(
        "POST",
        "http://other.test/echo",
        &[],
        format!("token={ph}").as_bytes(),
    );
    assert_eq!(403, status, "{text}");
    assert!(h.seen().is_empty(), "the upstream saw {:?}", h.seen());
    let alerts: Vec<_> = h
        .audit_events()
        .into_iter()
        .filter(|e| e["kind"] == "alert" && e["data"]["alert"] == "placeholder-leak")
        .collect();
    assert_eq!(5, alerts.len(), "{alerts:#?}");
}
