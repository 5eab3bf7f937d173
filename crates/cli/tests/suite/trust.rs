//! Trust on first use (I8) through the CLI.

use pretty_assertions::assert_eq;

use super::World;

const MANIFEST: &str =
    "version = 1\n[[network.rule]]\nhost = \"api.example.com\"\nverdict = \"allow\"\n";

#[test]
fn an_untrusted_or_changed_manifest_is_refused_until_trusted() {
    let w = World::new();
    let m = w.write("project/blastwall.toml", MANIFEST);
    let r = w.run(&["trust", "--check"]).expect(1);
    assert!(r.stderr().contains("is not trusted"), "{}", r.stderr());
    assert!(r.stderr().contains("blastwall trust"), "{}", r.stderr());
    let r = w.run(&["trust"]).expect(0);
    assert!(r.stdout().contains("trusted "), "{}", r.stdout());
    assert!(r.stdout().contains("1 network rule(s)"), "{}", r.stdout());
    w.run(&["trust", "--check"]).expect(0);
    // Any change, even a comment, needs a new yes.
    std::fs::write(&m, format!("{MANIFEST}# changed\n")).unwrap();
    let r = w.run(&["trust", "--check"]).expect(1);
    assert!(
        r.stderr().contains("changed since you trusted it"),
        "{}",
        r.stderr()
    );
    w.run(&["trust"]).expect(0);
    w.run(&["trust", "--check"]).expect(0);
    // The store is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.bw_home().join("trust.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(0o600, mode & 0o777);
}

#[test]
fn a_manifest_that_names_a_credential_source_or_an_outside_rw_path_is_refused() {
    let w = World::new();
    w.write(
        "project/blastwall.toml",
        r#"version = 1
[filesystem]
write = ["~/.ssh"]
[[network.rule]]
host = "api.github.com"
verdict = "allow"
[[credential]]
name = "github"
hosts = ["api.github.com"]
source = "env:GITHUB_TOKEN"
"#,
    );
    let r = w.run(&["trust"]).expect(1);
    let err = r.stderr();
    assert!(
        err.contains("a project manifest may not name a credential source"),
        "{err}"
    );
    assert!(err.contains("outside the project"), "{err}");
    assert!(!w.bw_home().join("trust.json").exists());
}

#[test]
fn the_users_own_config_grants_what_a_project_may_name() {
    let w = World::new();
    w.write(
        "home/.local/share/blastwall/config.toml",
        r#"version = 1
[filesystem]
write = ["~/.cache/shared"]
[[credential]]
name = "github"
hosts = ["api.github.com"]
source = "env:GITHUB_TOKEN"
"#,
    );
    w.write(
        "project/blastwall.toml",
        r#"version = 1
[filesystem]
write = ["~/.cache/shared"]
[[network.rule]]
host = "api.github.com"
verdict = "allow"
[[credential]]
name = "github"
hosts = ["api.github.com"]
"#,
    );
    let r = w.run(&["trust", "--json"]).expect(0);
    assert_eq!("github", r.json()["grants"]["credentials"][0]["name"]);
}
