//! Regression: shared/scenarios/pocketos.md — the 9-second wipe. Every way
//! of sending Railway's `volumeDelete` through `examples/pocketos.toml` must
//! come out `ask` or `deny`; the work the token exists for stays `allow`.

use std::path::Path;

use blastwall_policy::{Action, NetAction, Verdict};
use pretty_assertions::assert_eq;

use super::load_with;

const URL: &str = "https://backboard.railway.app/graphql/v2";

fn pocketos() -> blastwall_policy::Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pocketos.toml");
    let text = std::fs::read_to_string(path).unwrap();
    match load_with(&text, "/work/pocketos", None) {
        Ok(l) => {
            assert!(l.warnings.is_empty(), "{:?}", l.warnings);
            l.policy
        }
        Err(d) => panic!("{d:?}"),
    }
}

fn verdict_of(
    p: &blastwall_policy::Policy,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Verdict {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let a = NetAction::from_request(
        method,
        url,
        &headers,
        Some(body.as_bytes()).filter(|b| !b.is_empty()),
    )
    .unwrap();
    p.decide(&Action::Net(a)).verdict
}

fn post(p: &blastwall_policy::Policy, body: &str) -> Verdict {
    verdict_of(
        p,
        "POST",
        URL,
        &[("Content-Type", "application/json")],
        body,
    )
}

#[test]
fn volume_delete_is_never_allowed() {
    let p = pocketos();
    let attacks = [
        (
            "plain",
            r#"{"query":"mutation { volumeDelete(volumeId: \"v\") }"}"#,
        ),
        (
            "aliased",
            r#"{"query":"mutation { a: volumeDelete(volumeId: \"v\") }"}"#,
        ),
        (
            "operationName names the harmless one",
            r#"{"query":"query Me { me { email } } mutation Wipe { volumeDelete(volumeId: \"v\") }","operationName":"Me"}"#,
        ),
        (
            "batched, second element deletes",
            r#"[{"query":"{ me { email } }"},{"query":"mutation { volumeDelete(volumeId: \"v\") }"}]"#,
        ),
        (
            "anonymous shorthand query beside an anonymous mutation",
            r#"{"query":"{ me { email } } mutation { volumeDelete(volumeId: \"v\") }"}"#,
        ),
        (
            "persisted-query hash, no document",
            r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"00"}}}"#,
        ),
        ("not GraphQL", "volumeDelete(volumeId: v)"),
        ("not JSON either", "\u{0}\u{1}garbage"),
        (
            "fragment spread on the root",
            r#"{"query":"mutation { ...W } fragment W on Mutation { volumeDelete(volumeId: \"v\") }"}"#,
        ),
        (
            "inline fragment on the root",
            r#"{"query":"mutation { ... on Mutation { volumeDelete(volumeId: \"v\") } }"}"#,
        ),
        (
            "variables",
            r#"{"query":"mutation D($id: String!) { volumeDelete(volumeId: $id) }","variables":{"id":"v"}}"#,
        ),
        (
            "duplicate query key",
            r#"{"query":"{ me { email } }","query":"mutation { volumeDelete(volumeId: \"v\") }"}"#,
        ),
        ("an empty body on the GraphQL endpoint", ""),
    ];
    for (what, body) in attacks {
        let v = post(&p, body);
        assert!(v != Verdict::Allow, "{what}: got allow for {body}");
    }
    assert_eq!(
        Verdict::Ask,
        post(
            &p,
            r#"{"query":"mutation { volumeDelete(volumeId: \"v\") }"}"#
        )
    );
}

#[test]
fn graphql_over_get_is_inspected_too() {
    let p = pocketos();
    let v = verdict_of(
        &p,
        "GET",
        "https://backboard.railway.app/graphql/v2?query=mutation%20%7B%20volumeDelete(volumeId%3A%20%22v%22)%20%7D",
        &[],
        "",
    );
    assert!(v != Verdict::Allow);
    let v = verdict_of(
        &p,
        "GET",
        "https://backboard.railway.app/graphql/v2?query=%7B%20me%20%7B%20email%20%7D%20%7D",
        &[],
        "",
    );
    assert_eq!(Verdict::Allow, v);
}

#[test]
fn the_work_the_token_exists_for_is_allowed() {
    let p = pocketos();
    let ok = [
        r#"{"query":"query { me { email } }"}"#,
        r#"{"query":"{ me { email } }"}"#,
        r#"{"query":"query { me { email } }","operationName":null,"variables":{}}"#,
        r#"{"query":"query Q { projects(filter: \"mutation { volumeDelete }\") { id } } # mutation volumeDelete"}"#,
        r#"{"query":"query { volumeDelete: me { email } mutation: me { id } }"}"#,
        r#"{"query":"mutation { customDomainCreate(input: {domain: \"a.b\"}) { id } }"}"#,
        r#"{"query":"mutation { customDomainDelete(id: \"x\") }"}"#,
        r#"{"query":"mutation { a: customDomainCreate(input: {domain: \"a.b\"}) { id } b: customDomainDelete(id: \"x\") }"}"#,
    ];
    for body in ok {
        assert_eq!(Verdict::Allow, post(&p, body), "{body}");
    }
}

#[test]
fn a_substring_match_cannot_pass_these() {
    // An allowed field whose name contains a denied one, and the reverse.
    let p = pocketos();
    assert_eq!(
        Verdict::Ask,
        post(
            &p,
            r#"{"query":"mutation { customDomainCreateAndVolumeDelete }"}"#
        )
    );
    assert_eq!(
        Verdict::Ask,
        post(
            &p,
            r#"{"query":"mutation { volumeDeleteCustomDomainCreate }"}"#
        )
    );
}

#[test]
fn any_other_host_is_denied() {
    let p = pocketos();
    for url in [
        "https://evil.example.com/",
        "https://backboard.railway.app.evil.example.com/graphql/v2",
        "https://railway.app/graphql/v2",
        "http://backboard.railway.app:8080/graphql/v2",
        "https://127.0.0.1/graphql/v2",
        "https://[::1]/graphql/v2",
        "https://backboard.railway.app@evil.example.com/graphql/v2",
    ] {
        assert_eq!(
            Verdict::Deny,
            verdict_of(&p, "POST", url, &[], r#"{"query":"{ me { email } }"}"#),
            "{url}"
        );
    }
}

#[test]
fn method_override_counts_as_the_method_it_names() {
    let p = pocketos();
    let v = verdict_of(
        &p,
        "POST",
        URL,
        &[("X-HTTP-Method-Override", "DELETE")],
        r#"{"query":"{ me { email } }"}"#,
    );
    assert_eq!(Verdict::Deny, v);
}

#[test]
fn the_refusal_names_the_rule_and_the_call() {
    let p = pocketos();
    let a = NetAction::from_request(
        "POST",
        URL,
        &[],
        Some(br#"{"query":"mutation { a: volumeDelete(volumeId: \"v\") }"}"#),
    )
    .unwrap();
    let d = p.decide(&Action::Net(a));
    assert_eq!("network.rule[2]", &*d.rule.id);
    assert_eq!(Some("mutation volumeDelete"), d.subject.as_deref());
    assert!(d.labels.contains(blastwall_policy::Label::Destructive));
    assert!(d.rule.line > 0);
}
