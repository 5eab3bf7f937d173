//! The mock Railway API (shared/scenarios/pocketos.md): bearer auth, the
//! `me` query, and a `volumeDelete` that really deletes data and backups.

use blastwall_mocks::TestCa;
use blastwall_mocks::http::serve;
use blastwall_mocks::railway::{HOST, MockRailway, VOLUME};

use super::{curl, have, loopback};

#[test]
fn volume_delete_over_tls_takes_the_data_and_its_backups() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mock CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let rail = MockRailway::create(&dir.path().join("railway"), "REAL_TOKEN_1").unwrap();
    let before = rail.volume_digest(VOLUME).unwrap();
    assert_eq!(3, rail.volume_files(VOLUME));
    let server = serve(
        loopback(),
        Some(ca.server_config(&[HOST]).unwrap()),
        rail.handler(),
    )
    .unwrap();
    let url = format!("https://{HOST}/graphql/v2");
    let post = |token: &str, body: &str| {
        curl(
            &ca_file,
            HOST,
            server.port(),
            &[
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
                &url,
            ],
        )
    };
    // A wrong token is refused and deletes nothing.
    let (out, _) = post(
        "WRONG",
        r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
    );
    assert!(out.contains("Not Authorized"), "{out}");
    assert_eq!(Some(before.clone()), rail.volume_digest(VOLUME));
    // The `me` query answers.
    let (out, code) = post("REAL_TOKEN_1", r#"{"query":"query { me { email } }"}"#);
    assert_eq!(0, code, "{out}");
    assert!(out.contains("ops@pocketos.example"), "{out}");
    // A custom domain is recorded.
    let (out, _) = post(
        "REAL_TOKEN_1",
        r#"{"query":"mutation { customDomainCreate(input: {domain: \"pocketos.app\"}) { id } }"}"#,
    );
    assert!(out.contains("pocketos.app"), "{out}");
    assert_eq!(vec!["pocketos.app".to_owned()], rail.domains());
    // volumeDelete with the same token: data and backups gone in one call.
    let (out, _) = post(
        "REAL_TOKEN_1",
        r#"{"query":"mutation Del($id: String!) { volumeDelete(volumeId: $id) }","variables":{"id":"vol_prod"}}"#,
    );
    assert!(out.contains(r#""volumeDelete":true"#), "{out}");
    assert_eq!(None, rail.volume_digest(VOLUME));
    assert_eq!(0, rail.volume_files(VOLUME));
    // Its own log holds every request, with what was asked and by whom.
    let log = rail.requests();
    assert_eq!(4, log.len(), "{log:?}");
    assert_eq!(false, log[0]["token_ok"]);
    assert_eq!("Bearer REAL_TOKEN_1", log[1]["authorization"]);
    assert_eq!(serde_json::json!(["volumeDelete"]), log[3]["fields"]);
}

#[test]
fn a_gzip_body_and_a_batch_are_executed() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rail = MockRailway::create(dir.path(), "T").unwrap();
    let server = serve(loopback(), None, rail.handler()).unwrap();
    let body = r#"[{"query":"{ me { email } }"},{"query":"mutation { a: volumeDelete(volumeId: \"vol_prod\") }"}]"#;
    let gz = dir.path().join("body.gz");
    let mut enc = flate2_write(body.as_bytes());
    std::fs::write(&gz, std::mem::take(&mut enc)).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-H", "Authorization: Bearer T"])
        .args(["-H", "Content-Encoding: gzip", "--data-binary"])
        .arg(format!("@{}", gz.display()))
        .arg(format!("http://127.0.0.1:{}/graphql/v2", server.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ops@pocketos.example"), "{text}");
    assert_eq!(0, rail.volume_files(VOLUME));
}

/// gzip without a dev-dependency: `gzip -c` from the system.
fn flate2_write(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}
