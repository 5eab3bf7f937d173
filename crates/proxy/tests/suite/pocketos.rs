//! shared/scenarios/pocketos.md: the agent holds only a placeholder; a
//! `me` query reaches the mock Railway API with the real token, and
//! `volumeDelete` never arrives, however it is dressed up.

use std::io::Write;

use super::common::{Harness, REAL_RAILWAY, final_status};

const URL: &str = "https://backboard.railway.app/graphql/v2";

fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

const ATTACKS: &[&str] = &[
    r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
    r#"{"query":"mutation { a: volumeDelete(volumeId: \"vol_prod\") }"}"#,
    r#"{"query":"query Me { me { email } } mutation Wipe { volumeDelete(volumeId: \"vol_prod\") }","operationName":"Me"}"#,
    r#"[{"query":"{ me { email } }"},{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}]"#,
    r#"{"query":"{ me { email } }","query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
];

#[test]
fn pocketos_me_query_arrives_with_the_real_token() {
    let h = Harness::start();
    let ph = h.placeholder("RAILWAY_TOKEN");
    let auth = format!("Authorization: Bearer {ph}");
    let (_, text) = h.curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"{"query":"query { me { email } }"}"#,
        URL,
    ]);
    assert_eq!(200, final_status(&text), "{text}");
    assert!(!text.contains(REAL_RAILWAY), "{text}");
    let seen = h.seen();
    assert_eq!(1, seen.len());
    assert_eq!(
        Some(format!("Bearer {REAL_RAILWAY}").as_str()),
        seen[0].header("authorization")
    );
    assert!(seen[0].body.contains("me"));
}

#[test]
fn pocketos_volume_delete_never_arrives() {
    let h = Harness::start();
    let ph = h.placeholder("RAILWAY_TOKEN");
    let auth = format!("Bearer {ph}");
    let auth_h = format!("Authorization: {auth}");
    let mut tries = 0;
    for body in ATTACKS {
        // curl, plain body
        let (_, text) = h.curl(&[
            "-H",
            &auth_h,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            URL,
        ]);
        assert_eq!(403, final_status(&text), "{body}: {text}");
        // curl, gzip-encoded body
        let gz = h.dir.path().join("body.gz");
        std::fs::write(&gz, gzip(body)).unwrap();
        let at = format!("@{}", gz.display());
        let (_, text) = h.curl(&[
            "-H",
            &auth_h,
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &at,
            URL,
        ]);
        assert_eq!(403, final_status(&text), "gzip {body}: {text}");
        // python3
        let (status, text) = h.python(
            "POST",
            URL,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(403, status, "python {body}: {text}");
        let (status, text) = h.python(
            "POST",
            URL,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            &gzip(body),
        );
        assert_eq!(403, status, "python gzip {body}: {text}");
        tries += 4;
    }
    // A body in a coding the proxy does not decode is opaque: never allowed.
    let (_, text) = h.curl(&[
        "-H",
        &auth_h,
        "-H",
        "Content-Type: application/json",
        "-H",
        "Content-Encoding: zstd",
        "--data-binary",
        ATTACKS[0],
        URL,
    ]);
    assert_eq!(403, final_status(&text), "{text}");
    tries += 1;
    let seen = h.seen();
    assert!(
        seen.iter().all(|s| !s.body.contains("volumeDelete")),
        "the mock received volumeDelete: {seen:?}"
    );
    assert!(seen.is_empty(), "{seen:?}");
    // The refusal names the rule and says a person must approve.
    let (_, text) = h.curl(&["-H", &auth_h, "--data-binary", ATTACKS[0], URL]);
    assert!(text.contains("needs approval"), "{text}");
    assert!(text.contains("network.rule[5]"), "{text}");
    tries += 1;
    // Every attempt is in the audit log, which verifies.
    let decisions = h
        .audit_events()
        .into_iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["verdict"] != "allow")
        .count();
    assert_eq!(tries, decisions);
}

#[test]
fn a_graphql_body_past_the_inspection_bound_is_never_allowed() {
    let h = Harness::start();
    let ph = h.placeholder("RAILWAY_TOKEN");
    // A harmless query padded past 1 MiB: it cannot be inspected whole, so
    // it gets the strictest verdict the host's rules allow (ask → refused).
    let pad = " ".repeat((1 << 20) + 10);
    let body = format!(r#"{{"query":"query {{ me {{ email }} }}{pad}"}}"#);
    let f = h.dir.path().join("big.json");
    std::fs::write(&f, &body).unwrap();
    let at = format!("@{}", f.display());
    let auth = format!("Authorization: Bearer {ph}");
    let (_, text) = h.curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &at,
        URL,
    ]);
    assert_eq!(
        403,
        final_status(&text),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(
        text.contains("uninspectable") || text.contains("strictest"),
        "{}",
        &text[..text.len().min(2000)]
    );
    // The same padding gzip-compressed is small on the wire but decodes past the bound.
    let gz = h.dir.path().join("big.gz");
    std::fs::write(&gz, gzip(&body)).unwrap();
    let at = format!("@{}", gz.display());
    let (_, text) = h.curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &at,
        URL,
    ]);
    assert_eq!(403, final_status(&text), "{text}");
    assert!(h.seen().is_empty());
}
