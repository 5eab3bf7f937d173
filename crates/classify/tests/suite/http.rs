//! HTTP method labels and method-override headers.

use blastwall_classify::http::{
    MethodInfo, is_valid_method, method_info, method_labels, param_overrides,
};
use blastwall_classify::{Label, Labels};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn post_overridden_to_delete_is_destructive() {
    let info = method_info("POST", &headers(&[("X-HTTP-Method-Override", "DELETE")]));
    assert_eq!(
        info,
        MethodInfo {
            method: "POST".to_owned(),
            overrides: vec!["DELETE".to_owned()],
            labels: Labels::of(&[Label::Write, Label::Destructive]),
        }
    );
}

#[test]
fn every_override_header_name_counts_in_any_case() {
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X-METHOD-OVERRIDE",
    ] {
        let info = method_info("GET", &headers(&[(name, "delete")]));
        assert!(info.labels.contains(Label::Destructive), "{name}");
    }
}

#[test]
fn repeated_and_comma_separated_overrides_all_count() {
    let info = method_info(
        "get",
        &headers(&[
            ("X-HTTP-Method-Override", "GET"),
            ("X-HTTP-Method-Override", "HEAD, DELETE"),
        ]),
    );
    assert_eq!(info.method, "GET");
    assert_eq!(info.overrides, ["GET", "HEAD", "DELETE"]);
    assert_eq!(
        info.labels,
        Labels::of(&[Label::Read, Label::Write, Label::Destructive])
    );
}

#[test]
fn unknown_methods_and_connect_are_writes() {
    for m in ["CONNECT", "PROPPATCH", "MKCOL", "PURGE", "FOO"] {
        assert_eq!(method_labels(m), Labels::of(&[Label::Write]), "{m}");
    }
}

#[test]
fn form_overrides() {
    assert_eq!(param_overrides("_method=DELETE&x=1"), ["DELETE"]);
}

#[test]
fn method_tokens() {
    assert!(is_valid_method("PATCH"));
    assert!(!is_valid_method("PA TCH"));
    assert!(!is_valid_method("(GET)"));
}

proptest! {
    #[test]
    fn method_info_never_panics_and_is_a_superset(
        m in ".{0,20}",
        hs in proptest::collection::vec((".{0,30}", ".{0,30}"), 0..5),
    ) {
        let info = method_info(&m, &hs);
        prop_assert!(info.labels.contains_all(method_labels(&m)));
        prop_assert!(!info.labels.is_empty());
    }

    #[test]
    fn valid_methods_are_tokens(m in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}") {
        prop_assert!(is_valid_method(&m));
    }
}
