//! GraphQL inspection: the project's acceptance cases, then the edges.

use blastwall_classify::graphql::{
    Call, Inspection, MAX_BODY, MAX_CALLS, MAX_OPERATIONS, OpType, Opaque, field_labels,
    inspect_body, inspect_document, inspect_query_string,
};
use blastwall_classify::{Label, Labels};
use pretty_assertions::assert_eq;
use proptest::prelude::*;
use serde_json::json;

fn body(v: &serde_json::Value) -> Inspection {
    inspect_body(v.to_string().as_bytes())
}

fn query(doc: &str) -> Inspection {
    body(&json!({ "query": doc }))
}

/// `(op, field, alias, batch_index)` of every call, or the opaque reason.
type Summary = Result<Vec<(OpType, String, Option<String>, usize)>, Opaque>;

fn summary(i: &Inspection) -> Summary {
    match i {
        Inspection::Calls { calls } => Ok(calls
            .iter()
            .map(|c| (c.op, c.field.clone(), c.alias.clone(), c.batch_index))
            .collect()),
        Inspection::Opaque { reason } => Err(reason.clone()),
    }
}

fn call(op: OpType, field: &str) -> (OpType, String, Option<String>, usize) {
    (op, field.to_owned(), None, 0)
}

fn destructive_delete() -> Labels {
    Labels::of(&[Label::Write, Label::Destructive, Label::Irreversible])
}

#[test]
fn plain_mutation_delete() {
    let i = query(r#"mutation { volumeDelete(volumeId: "v") }"#);
    assert_eq!(
        i,
        Inspection::Calls {
            calls: vec![Call {
                op: OpType::Mutation,
                operation_name: None,
                field: "volumeDelete".to_owned(),
                alias: None,
                batch_index: 0,
                labels: destructive_delete(),
                args: vec![("volumeId".to_owned(), "v".to_owned())],
            }]
        }
    );
}

#[test]
fn aliased_delete_is_listed_under_its_real_name() {
    let i = query(r#"mutation { a: volumeDelete(volumeId: "v") }"#);
    assert_eq!(
        summary(&i),
        Ok(vec![(
            OpType::Mutation,
            "volumeDelete".to_owned(),
            Some("a".to_owned()),
            0
        )])
    );
    assert!(i.labels().contains(Label::Destructive));
}

#[test]
fn operation_name_does_not_hide_other_operations() {
    let i = body(&json!({
        "query": "query Harmless { me { email } } mutation Evil { volumeDelete(volumeId: \"v\") }",
        "operationName": "Harmless",
    }));
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Query, "me"),
            call(OpType::Mutation, "volumeDelete")
        ])
    );
    let names: Vec<_> = i.calls().iter().map(|c| c.operation_name.clone()).collect();
    assert_eq!(
        names,
        [Some("Harmless".to_owned()), Some("Evil".to_owned())]
    );
}

#[test]
fn batched_array_second_element_deletes() {
    let i = body(&json!([
        { "query": "{ me { email } }" },
        { "query": "mutation { volumeDelete(volumeId: \"v\") }" },
    ]));
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Query, "me"),
            (OpType::Mutation, "volumeDelete".to_owned(), None, 1),
        ])
    );
}

#[test]
fn anonymous_shorthand_and_anonymous_mutation_in_one_document() {
    let i = query(r#"{ me { email } } mutation { volumeDelete(volumeId: "v") }"#);
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Query, "me"),
            call(OpType::Mutation, "volumeDelete")
        ])
    );
}

#[test]
fn persisted_query_hash_without_document_is_opaque() {
    let i = body(&json!({
        "operationName": "Op",
        "variables": {},
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38" } },
    }));
    assert_eq!(summary(&i), Err(Opaque::PersistedQuery));
    assert_eq!(i.labels(), Labels::of(&[Label::Opaque]));
    for key in ["id", "documentId", "doc_id", "queryId"] {
        let i = body(&json!({ key: "abc" }));
        assert_eq!(summary(&i), Err(Opaque::PersistedQuery), "{key}");
    }
}

#[test]
fn persisted_query_hash_must_match_the_document_sent() {
    let doc = "{ me { email } }";
    let hash = {
        use sha2::Digest as _;
        use std::fmt::Write as _;
        let d = sha2::Sha256::digest(doc.as_bytes());
        d.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let i = body(&json!({
        "query": doc,
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } },
    }));
    assert_eq!(summary(&i), Ok(vec![call(OpType::Query, "me")]));

    let i = body(&json!({
        "query": doc,
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "00" } },
    }));
    assert_eq!(summary(&i), Err(Opaque::PersistedQuery));

    let i = body(&json!({ "query": doc, "documentId": "abc" }));
    assert_eq!(summary(&i), Err(Opaque::PersistedQuery));
}

#[test]
fn bodies_that_are_not_graphql_are_opaque() {
    for b in [
        &b"hello"[..],
        b"<html></html>",
        b"42",
        b"\"query\"",
        b"{\"query\": 1}",
        b"{\"query\": [\"{ me }\"]}",
        b"{\"variables\": {}}",
        b"[1, 2]",
        b"{\"query\": \"{ me }\"} {\"query\": \"mutation { volumeDelete }\"}",
        b"{\"query\": \"{ me }\", \"operationName\": 5}",
        b"{\"query\": \"{ me }\", \"extensions\": []}",
        b"\xff\xfe{}",
    ] {
        let i = inspect_body(b);
        assert!(
            matches!(
                i,
                Inspection::Opaque {
                    reason: Opaque::NotJson(_)
                }
            ),
            "{:?} gave {i:?}",
            String::from_utf8_lossy(b)
        );
    }
    assert!(matches!(
        summary(&query("this is not graphql")),
        Err(Opaque::Syntax(_))
    ));
    assert!(matches!(
        summary(&query("fragment F on Query { me }")),
        Err(Opaque::Syntax(_))
    ));
    assert_eq!(summary(&inspect_body(b"")), Err(Opaque::Empty));
    assert_eq!(summary(&inspect_body(b"  \n")), Err(Opaque::Empty));
    assert_eq!(summary(&inspect_body(b"[]")), Err(Opaque::Empty));
    assert_eq!(summary(&inspect_document("")), Err(Opaque::Empty));
}

#[test]
fn mutation_through_a_root_fragment_spread() {
    let i = query(r#"mutation { ...F } fragment F on Mutation { volumeDelete(volumeId: "v") }"#);
    assert_eq!(
        summary(&i),
        Ok(vec![call(OpType::Mutation, "volumeDelete")])
    );
    assert_eq!(i.labels(), destructive_delete());
}

#[test]
fn fragments_nest_and_inline_fragments_count() {
    let i = query(
        "mutation { ... on Mutation { a: volumeDelete(volumeId: \"v\") } ...F }
         fragment F on Mutation { ...G serviceCreate }
         fragment G on Mutation { ... { tokenRevoke } }",
    );
    assert_eq!(
        summary(&i),
        Ok(vec![
            (
                OpType::Mutation,
                "volumeDelete".to_owned(),
                Some("a".to_owned()),
                0
            ),
            call(OpType::Mutation, "tokenRevoke"),
            call(OpType::Mutation, "serviceCreate"),
        ])
    );
}

#[test]
fn mutation_with_variables() {
    let i = body(&json!({
        "query": "mutation($id: ID!) { volumeDelete(volumeId: $id) }",
        "variables": { "id": "v" },
    }));
    assert_eq!(
        summary(&i),
        Ok(vec![call(OpType::Mutation, "volumeDelete")])
    );
    // The variable is resolved for the summary a person reads.
    assert_eq!(
        i.calls()[0].args,
        vec![("volumeId".to_owned(), "v".to_owned())]
    );
}

#[test]
fn arguments_are_kept_as_text_for_people() {
    let i = query(
        r#"mutation { volumeDelete(volumeId: "vol\u202eprod", force: true, n: 3, e: ALL, l: [1], o: {a: 1}, v: $missing) }"#,
    );
    assert_eq!(
        i.calls()[0].args,
        vec![
            ("volumeId".to_owned(), "vol\u{202e}prod".to_owned()),
            ("force".to_owned(), "true".to_owned()),
            ("n".to_owned(), "3".to_owned()),
            ("e".to_owned(), "ALL".to_owned()),
            ("v".to_owned(), "$missing".to_owned()),
        ]
    );
    let long = "x".repeat(1000);
    let i = query(&format!(
        r#"mutation {{ volumeDelete(volumeId: "{long}") }}"#
    ));
    assert_eq!(
        i.calls()[0].args[0].1.len(),
        blastwall_classify::graphql::MAX_ARG_CHARS
    );
}

#[test]
fn query_and_shorthand_give_one_read_call() {
    for doc in ["query { me { email } }", "{ me { email } }"] {
        let i = query(doc);
        assert_eq!(summary(&i), Ok(vec![call(OpType::Query, "me")]), "{doc}");
        assert_eq!(i.labels(), Labels::of(&[Label::Read]), "{doc}");
        assert_eq!(inspect_document(doc), i, "{doc}");
    }
}

#[test]
fn words_in_strings_comments_and_aliases_make_no_calls() {
    let docs = [
        r#"{ search(q: "mutation { volumeDelete(volumeId: \"v\") }") { id } }"#,
        "# mutation { volumeDelete(volumeId: \"v\") }\n{ me { email } }",
        "{ volumeDelete: me { email } }",
        "{ mutation: me { volumeDelete: email } }",
        "query mutation { me { email } }",
        r#"{ me(note: """mutation { volumeDelete }""") { email } }"#,
        "{ me { volumeDelete } }",
    ];
    for doc in docs {
        let i = query(doc);
        let calls = i.calls();
        assert!(!calls.is_empty(), "{doc}: {i:?}");
        for c in calls {
            assert_eq!(c.op, OpType::Query, "{doc}");
            assert_ne!(c.field, "volumeDelete", "{doc}");
            assert!(!c.labels.contains(Label::Write), "{doc}");
            assert!(!c.labels.contains(Label::Destructive), "{doc}");
        }
    }
}

#[test]
fn custom_domain_fields_are_exact() {
    let i =
        query("mutation { customDomainCreate(input: {}) { id } customDomainDelete(id: \"d\") }");
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Mutation, "customDomainCreate"),
            call(OpType::Mutation, "customDomainDelete"),
        ])
    );
    let labels: Vec<_> = i.calls().iter().map(|c| c.labels).collect();
    assert_eq!(labels, [Labels::of(&[Label::Write]), destructive_delete()]);
}

#[test]
fn duplicate_json_keys_are_opaque() {
    let b = br#"{"query":"{ me }","query":"mutation { volumeDelete }"}"#;
    assert_eq!(
        summary(&inspect_body(b)),
        Err(Opaque::DuplicateKey("query".to_owned()))
    );
    // Escaped spellings of one key are the same key.
    let b = br#"{"query":"{ me }","\u0071uery":"mutation { volumeDelete }"}"#;
    assert!(matches!(
        summary(&inspect_body(b)),
        Err(Opaque::DuplicateKey(_))
    ));
    // At any depth, and in any request of a batch.
    for b in [
        &br#"{"query":"{ me }","extensions":{"a":1,"a":2}}"#[..],
        br#"{"query":"{ me }","variables":{"x":[{"k":1,"k":1}]}}"#,
        br#"[{"query":"{ me }"},{"query":"{ me }","operationName":null,"operationName":"x"}]"#,
        br#"{"query":"{ me }","unknown":{"z":{"z":{"y":1,"y":2}}}}"#,
    ] {
        assert!(
            matches!(summary(&inspect_body(b)), Err(Opaque::DuplicateKey(_))),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn fragment_cycles_and_unknown_fragments_are_opaque() {
    for doc in [
        "mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { ...A }",
        "{ ...A } fragment A on Query { ...A }",
        "{ ...Missing }",
        "{ ...A } fragment A on Query { me } fragment A on Query { volumeDelete }",
    ] {
        assert!(
            matches!(summary(&query(doc)), Err(Opaque::BadFragment(_))),
            "{doc}"
        );
    }
}

#[test]
fn directives_do_not_hide_fields() {
    let i = query(
        "mutation($no: Boolean!) { volumeDelete(volumeId: \"v\") @skip(if: true) \
         me @include(if: $no) }",
    );
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Mutation, "volumeDelete"),
            call(OpType::Mutation, "me")
        ])
    );
}

#[test]
fn typename_and_subscriptions_are_calls() {
    let i = query("{ __typename } subscription { volumeEvents { id } }");
    assert_eq!(
        summary(&i),
        Ok(vec![
            call(OpType::Query, "__typename"),
            call(OpType::Subscription, "volumeEvents"),
        ])
    );
    assert_eq!(i.labels(), Labels::of(&[Label::Read]));
}

#[test]
fn get_query_strings() {
    let i = inspect_query_string("?query=%7B+me+%7B+email+%7D+%7D&operationName=Q");
    assert_eq!(
        i.as_ref().map(summary),
        Some(Ok(vec![call(OpType::Query, "me")]))
    );
    let i = inspect_query_string("query=mutation%7BvolumeDelete(volumeId:%22v%22)%7D");
    assert_eq!(
        i.as_ref().map(summary),
        Some(Ok(vec![call(OpType::Mutation, "volumeDelete")]))
    );
    assert_eq!(inspect_query_string("page=2&sort=asc"), None);
    assert_eq!(inspect_query_string(""), None);
    let i = inspect_query_string("query=%7Bme%7D&query=mutation%7BvolumeDelete%7D");
    assert!(matches!(
        i.as_ref().map(summary),
        Some(Err(Opaque::DuplicateKey(_)))
    ));
    // An encoded parameter name is the same parameter.
    let i = inspect_query_string("query=%7Bme%7D&q%75ery=mutation%7BvolumeDelete%7D");
    assert!(matches!(
        i.as_ref().map(summary),
        Some(Err(Opaque::DuplicateKey(_)))
    ));
    // `;` as a separator on some servers.
    let i = inspect_query_string("query=%7Bme%7D%20%23;query=mutation%7BvolumeDelete%7D");
    assert!(matches!(
        i.as_ref().map(summary),
        Some(Err(Opaque::DuplicateKey(_)))
    ));
    let ext = "extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22abc%22%7D%7D";
    assert_eq!(
        inspect_query_string(ext).as_ref().map(summary),
        Some(Err(Opaque::PersistedQuery))
    );
    assert_eq!(
        inspect_query_string("documentId=abc").as_ref().map(summary),
        Some(Err(Opaque::PersistedQuery))
    );
    assert!(matches!(
        inspect_query_string("query=%FF").as_ref().map(summary),
        Some(Err(Opaque::Syntax(_)))
    ));
    assert!(matches!(
        inspect_query_string("query=%7Bme%7D&extensions=%7B%22a%22:1,%22a%22:2%7D")
            .as_ref()
            .map(summary),
        Some(Err(Opaque::DuplicateKey(_)))
    ));
}

#[test]
fn bounds() {
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(summary(&inspect_body(&big)), Err(Opaque::TooLarge));
    assert_eq!(
        summary(&inspect_document(&" ".repeat(MAX_BODY + 1))),
        Err(Opaque::TooLarge)
    );

    let many_ops: String = (0..=MAX_OPERATIONS)
        .map(|n| format!("query Q{n} {{ me }} "))
        .collect();
    assert_eq!(summary(&query(&many_ops)), Err(Opaque::TooComplex));

    let many_calls: String = format!("{{ {} }}", "me ".repeat(MAX_CALLS + 1));
    assert_eq!(summary(&query(&many_calls)), Err(Opaque::TooComplex));

    // Exponential fragment fan-out stops at the bound, quickly.
    let mut doc = String::from("{ ...F0 } ");
    for n in 0..30 {
        doc.push_str(&format!(
            "fragment F{n} on Query {{ ...F{} ...F{} }} ",
            n + 1,
            n + 1
        ));
    }
    doc.push_str("fragment F30 on Query { me }");
    assert_eq!(summary(&query(&doc)), Err(Opaque::TooComplex));

    let batch: Vec<_> = (0..100).map(|_| json!({ "query": "{ me }" })).collect();
    assert_eq!(summary(&body(&json!(batch))), Err(Opaque::TooComplex));

    // serde_json's own depth limit (128) holds, with or without our seeds.
    let nested = format!(
        "{{\"query\":\"{{ me }}\",\"variables\":{}1{}}}",
        "{\"a\":".repeat(120),
        "}".repeat(120)
    );
    assert_eq!(
        summary(&inspect_body(nested.as_bytes())),
        Ok(vec![call(OpType::Query, "me")])
    );
    let nested = format!(
        "{{\"query\":\"{{ me }}\",\"extensions\":{}1{}}}",
        "{\"a\":".repeat(120),
        "}".repeat(120)
    );
    assert_eq!(
        summary(&inspect_body(nested.as_bytes())),
        Ok(vec![call(OpType::Query, "me")])
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(matches!(
        summary(&inspect_body(deep.as_bytes())),
        Err(Opaque::NotJson(_))
    ));
}

#[test]
fn a_large_ordinary_document_parses() {
    let fields: String = (0..500)
        .map(|n| format!("f{n}: project(id: \"{n}\", filter: {{ a: [1, 2, {{ b: $v }}] }}) {{ id name owner {{ email }} }}\n"))
        .collect();
    let doc = format!("query Big($v: Int) {{\n{fields}}}");
    let i = query(&doc);
    assert_eq!(i.calls().len(), 500, "{:?}", i.opaque_reason());
}

#[test]
fn labels_word_list() {
    let di = destructive_delete();
    for f in [
        "volumeDelete",
        "deleteVolume",
        "projectRemove",
        "environmentDestroy",
        "dropTable",
        "cachePurge",
        "wipe_data",
        "eraseDisk",
        "truncateLogs",
    ] {
        assert_eq!(field_labels(OpType::Mutation, f), di, "{f}");
    }
    let d = Labels::of(&[Label::Write, Label::Destructive]);
    for f in [
        "apiTokenRevoke",
        "passwordReset",
        "instanceTerminate",
        "killProcess",
        "volumeDetach",
        "disconnectRepo",
        "pluginUninstall",
        "deploymentRollback",
    ] {
        assert_eq!(field_labels(OpType::Mutation, f), d, "{f}");
    }
    for f in ["customDomainCreate", "serviceUpdate", "volumeCreate"] {
        assert_eq!(
            field_labels(OpType::Mutation, f),
            Labels::of(&[Label::Write]),
            "{f}"
        );
    }
}

#[test]
fn inspection_serialises_with_tags() {
    let i = query("{ me }");
    let v = serde_json::to_value(&i).unwrap_or_default();
    assert_eq!(
        v,
        json!({"kind": "calls", "calls": [{
            "op": "query", "operation_name": null, "field": "me", "alias": null,
            "batch_index": 0, "labels": ["read"],
        }]})
    );
    let v = serde_json::to_value(Inspection::Opaque {
        reason: Opaque::PersistedQuery,
    })
    .unwrap_or_default();
    assert_eq!(
        v,
        json!({"kind": "opaque", "reason": {"kind": "persisted-query"}})
    );
}

proptest! {
    #[test]
    fn inspect_body_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = inspect_body(&b);
    }

    #[test]
    fn inspect_body_never_panics_on_json_ish(s in r#"[\[\]{}":,a-z0-9 \\]{0,200}"#) {
        let _ = inspect_body(s.as_bytes());
    }

    #[test]
    fn inspect_document_never_panics(s in r##"[{}()\[\]"#\n.:$@!a-z \\]{0,200}"##) {
        if let Inspection::Calls { calls } = inspect_document(&s) {
            prop_assert!(!calls.is_empty());
        }
        let _ = inspect_body(serde_json::json!({ "query": s }).to_string().as_bytes());
    }

    /// Documents made of GraphQL tokens parse often enough to reach the
    /// fragment walk; whatever comes out lists only fields of the document.
    #[test]
    fn token_soup_documents(tokens in proptest::collection::vec(
        "(query|mutation|subscription|fragment F on Q|fragment G on Q|\\{|\\}|\\.\\.\\.F|\\.\\.\\.G|\\.\\.\\. on Q|\\.\\.\\.|a|volumeDelete|x:|\\(id: 1\\)|@skip\\(if: true\\)|#c\n|\"s\")",
        0..40,
    )) {
        let doc = tokens.join(" ");
        if let Inspection::Calls { calls } = inspect_document(&doc) {
            prop_assert!(!calls.is_empty());
            for c in &calls {
                prop_assert!(["a", "volumeDelete", "x", "query", "mutation", "subscription", "fragment", "on", "F", "G", "Q"].contains(&c.field.as_str()), "{}", c.field);
            }
        }
    }

    #[test]
    fn inspect_query_string_never_panics(s in ".{0,200}") {
        let _ = inspect_query_string(&s);
    }

    #[test]
    fn inspect_query_string_never_panics_on_params(s in "(query|extensions|operationName|[a-z%0-9+;&=]){0,40}") {
        let _ = inspect_query_string(&s);
    }

    /// Whatever the names, a mutation's calls are writes and a query's reads.
    #[test]
    fn op_type_decides_read_or_write(field in "[a-zA-Z_][a-zA-Z0-9_]{0,20}") {
        let i = query(&format!("mutation {{ {field} }}"));
        if let Inspection::Calls { calls } = &i {
            for c in calls {
                prop_assert!(c.labels.contains(Label::Write));
                prop_assert_eq!(&c.field, &field);
            }
        }
    }
}
