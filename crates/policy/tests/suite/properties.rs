//! Properties of `decide()`: with no rule everything is denied, and putting
//! a deny rule in front never turns a deny into an allow.

use blastwall_policy::{Action, NetAction, Verdict};
use proptest::prelude::*;

use super::policy;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api.example.com".to_owned()),
        Just("example.com".to_owned()),
        Just("a.b.example.com".to_owned()),
        Just("backboard.railway.app".to_owned()),
        Just("127.0.0.1".to_owned()),
        "[a-z]{1,8}\\.(com|net|io)",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("DELETE"),
        Just("PUT"),
        Just("PATCH")
    ]
    .prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    "(/[a-z0-9]{0,6}){0,4}"
}

fn body() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(r#"{"query":"{ me { email } }"}"#.to_owned())),
        Just(Some(
            r#"{"query":"mutation { volumeDelete(volumeId: \"v\") }"}"#.to_owned()
        )),
        ".{0,40}".prop_map(Some),
    ]
}

fn rules() -> impl Strategy<Value = String> {
    let rule = (
        host(),
        proptest::option::of(method()),
        proptest::option::of(path()),
        prop_oneof![Just("allow"), Just("ask"), Just("deny")],
        prop_oneof![
            Just(""),
            Just("graphql = { type = \"query\" }\n"),
            Just("graphql = { type = \"mutation\" }\n")
        ],
    )
        .prop_map(|(h, m, p, v, g)| {
            let mut r = format!("[[network.rule]]\nhost = \"{h}\"\n");
            if let Some(m) = m {
                r.push_str(&format!("methods = [\"{m}\"]\n"));
            }
            if let Some(p) = p.filter(|p| !p.is_empty()) {
                r.push_str(&format!("paths = [\"{p}\"]\n"));
            }
            r.push_str(g);
            r.push_str(&format!("verdict = \"{v}\"\n"));
            r
        });
    proptest::collection::vec(rule, 0..8).prop_map(|rs| rs.concat())
}

fn decide(
    p: &blastwall_policy::Policy,
    m: &str,
    h: &str,
    path: &str,
    body: Option<&str>,
) -> Option<Verdict> {
    let url = format!("https://{h}{path}");
    let a = NetAction::from_request(m, &url, &[], body.map(str::as_bytes)).ok()?;
    Some(p.decide(&Action::Net(a)).verdict)
}

proptest! {
    #[test]
    fn no_rule_means_deny(m in method(), h in host(), p in path(), b in body()) {
        let pol = policy("version = 1\n");
        if let Some(v) = decide(&pol, &m, &h, &p, b.as_deref()) {
            prop_assert_eq!(Verdict::Deny, v);
        }
    }

    #[test]
    fn a_deny_rule_in_front_never_turns_deny_into_allow(
        rs in rules(), dh in host(), dm in proptest::option::of(method()),
        m in method(), h in host(), p in path(), b in body(),
    ) {
        let base = format!("version = 1\n{rs}");
        let Ok(before) = super::load_text(&base) else { return Ok(()) };
        let mut deny = format!("[[network.rule]]\nhost = \"{dh}\"\n");
        if let Some(dm) = dm {
            deny.push_str(&format!("methods = [\"{dm}\"]\n"));
        }
        deny.push_str("verdict = \"deny\"\n");
        let Ok(after) = super::load_text(&format!("version = 1\n{deny}{rs}")) else { return Ok(()) };
        if let (Some(v0), Some(v1)) = (
            decide(&before.policy, &m, &h, &p, b.as_deref()),
            decide(&after.policy, &m, &h, &p, b.as_deref()),
        ) {
            prop_assert!(v1 >= v0, "{v0:?} -> {v1:?}");
            if v0 == Verdict::Deny {
                prop_assert_eq!(Verdict::Deny, v1);
            }
        }
    }

    #[test]
    fn load_never_panics(text in ".{0,300}") {
        let _ = super::load_text(&text);
    }
}
