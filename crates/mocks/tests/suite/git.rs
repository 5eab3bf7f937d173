//! The git remote over smart HTTPS, served by `git http-backend`
//! (shared/scenarios/force-push.md): clone, push a branch, force-push.

use std::path::Path;
use std::process::Command;

use blastwall_mocks::TestCa;
use blastwall_mocks::git::GitServer;
use blastwall_mocks::http::serve;

use super::{have, loopback};

fn git(dir: &Path, ca: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
        .args(["-c", "protocol.version=2", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_SSL_CAINFO", ca)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rev(repo: &Path, r: &str) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", r])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn clone_push_and_force_push_over_https() {
    if !have("git") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("mock CA").unwrap();
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    // A bare remote with one commit on main.
    std::fs::create_dir_all(d.join("srv")).unwrap();
    std::fs::create_dir_all(d.join("seed")).unwrap();
    assert!(git(d, &ca_file, &["init", "-q", "--bare", "srv/shop.git"]).0);
    let seed = d.join("seed");
    assert!(git(&seed, &ca_file, &["init", "-q"]).0);
    std::fs::write(seed.join("a"), "a\n").unwrap();
    assert!(git(&seed, &ca_file, &["add", "a"]).0);
    assert!(git(&seed, &ca_file, &["commit", "-qm", "a"]).0);
    let srv = d.join("srv/shop.git");
    assert!(
        git(
            &seed,
            &ca_file,
            &["push", "-q", srv.to_str().unwrap(), "main"]
        )
        .0
    );
    let main_before = rev(&srv, "main");

    let server = GitServer::new(&d.join("srv"), &d.join("git.jsonl"));
    let s = serve(
        loopback(),
        Some(ca.server_config(&["127.0.0.1"]).unwrap()),
        server.handler(),
    )
    .unwrap();
    let url = format!("https://127.0.0.1:{}/shop.git", s.port());
    let (ok, out) = git(d, &ca_file, &["clone", "-q", &url, "work"]);
    assert!(ok, "{out}");
    let work = d.join("work");
    std::fs::write(work.join("b"), "b\n").unwrap();
    assert!(git(&work, &ca_file, &["add", "b"]).0);
    assert!(git(&work, &ca_file, &["commit", "-qm", "b"]).0);
    let (ok, out) = git(
        &work,
        &ca_file,
        &["push", "-q", "origin", "HEAD:refs/heads/feature"],
    );
    assert!(ok, "{out}");
    assert_eq!(rev(&work.join(".git"), "HEAD"), rev(&srv, "feature"));
    // A rewritten history force-pushed over main lands: the mock protects nothing.
    assert!(
        git(
            &work,
            &ca_file,
            &["commit", "-q", "--amend", "-m", "rewritten"]
        )
        .0
    );
    let (ok, out) = git(
        &work,
        &ca_file,
        &["push", "-q", "--force", "origin", "HEAD:main"],
    );
    assert!(ok, "{out}");
    assert_ne!(main_before, rev(&srv, "main"));
    assert!(server.requests().iter().any(|r| {
        r["target"]
            .as_str()
            .unwrap_or("")
            .ends_with("git-receive-pack")
    }));
}
