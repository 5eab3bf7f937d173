//! `blastwall init`.

use super::World;

#[test]
fn init_writes_a_valid_trusted_manifest_from_the_lockfiles() {
    let w = World::new();
    w.write("project/Cargo.lock", "# lock\n");
    w.write("project/package-lock.json", "{}\n");
    let r = w.run(&["init", "--agent", "claude"]).expect(0);
    assert!(r.stdout().contains("trusted"), "{}", r.stdout());
    let text = std::fs::read_to_string(w.project().join("blastwall.toml")).unwrap();
    assert!(text.contains("api.anthropic.com"), "{text}");
    assert!(text.contains("index.crates.io"), "{text}");
    assert!(text.contains("registry.npmjs.org"), "{text}");
    assert!(text.contains("default = \"deny\""), "{text}");
    w.run(&["policy", "check"]).expect(0);
    w.run(&["trust", "--check"]).expect(0);
    // The agent's state is granted in the user's own config, privately.
    let cfg = std::fs::read_to_string(w.bw_home().join("config.toml")).unwrap();
    assert!(cfg.contains("~/.claude"), "{cfg}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.bw_home().join("config.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(0o600, mode & 0o777);
    // Registries are read-only.
    let j = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "net",
            "PUT",
            "https://registry.npmjs.org/x",
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
    let j = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "net",
            "GET",
            "https://index.crates.io/config.json",
        ])
        .expect(0)
        .json();
    assert_eq!("allow", j["verdict"]);
    // The agent's settings stay read-only.
    let j = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "fs",
            "write",
            "~/.claude/settings.json",
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
    let j = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "fs",
            "write",
            "~/.claude/projects/x.jsonl",
        ])
        .expect(0)
        .json();
    assert_eq!("allow", j["verdict"]);
    // Secrets stay hidden.
    let j = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "fs",
            "read",
            "~/.aws/credentials",
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let w = World::new();
    w.run(&["init"]).expect(0);
    let r = w.run(&["init"]).expect(2);
    assert!(r.stderr().contains("--force"), "{}", r.stderr());
    w.run(&["init", "--force", "--agent", "codex"]).expect(0);
    w.run(&["policy", "check"]).expect(0);
}

#[test]
fn every_agent_gets_a_valid_manifest() {
    for agent in ["claude", "codex", "cursor", "gemini", "generic"] {
        let w = World::new();
        w.run(&["init", "--agent", agent]).expect(0);
        w.run(&["policy", "check"]).expect(0);
    }
}
