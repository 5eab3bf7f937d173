//! `decide()` behaviour by manifest section.

use std::path::PathBuf;

use blastwall_policy::{Action, ExecAction, FsAction, FsOp, NetAction, Verdict};
use pretty_assertions::assert_eq;

use super::{load_with, policy};

fn net(
    p: &blastwall_policy::Policy,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
) -> blastwall_policy::Decision {
    let a = NetAction::from_request(method, url, &[], body).unwrap();
    p.decide(&Action::Net(a))
}

fn fs(p: &blastwall_policy::Policy, op: FsOp, path: &str) -> Verdict {
    p.decide(&Action::Fs(FsAction {
        op,
        path: PathBuf::from(path),
    }))
    .verdict
}

fn exec(p: &blastwall_policy::Policy, argv: &[&str]) -> Verdict {
    let argv = argv.iter().map(|s| (*s).to_owned()).collect();
    p.decide(&Action::Exec(ExecAction::new(argv, None))).verdict
}

#[test]
fn no_rule_means_deny_and_the_default_is_named() {
    let p = policy("version = 1\n");
    let d = net(&p, "GET", "https://example.com/", None);
    assert_eq!(Verdict::Deny, d.verdict);
    assert!(d.rule.is_builtin());
    assert_eq!("network.default", &*d.rule.id);
    assert_eq!(Some("host example.com:443"), d.subject.as_deref());
}

#[test]
fn default_ask_is_pointed_at_its_line() {
    let p = policy("version = 1\n[network]\ndefault = \"ask\"\n");
    let d = net(&p, "GET", "https://example.com/", None);
    assert_eq!(Verdict::Ask, d.verdict);
    assert_eq!((3, 11), (d.rule.line, d.rule.col));
}

#[test]
fn first_matching_rule_decides_by_method_path_and_port() {
    let p = policy(
        r#"version = 1
[[network.rule]]
host = "api.example.com"
methods = ["GET"]
paths = ["/v1/*"]
verdict = "allow"
[[network.rule]]
host = "api.example.com"
methods = ["DELETE"]
verdict = "ask"
[[network.rule]]
host = "api.example.com"
ports = [8443]
verdict = "allow"
"#,
    );
    assert_eq!(
        Verdict::Allow,
        net(&p, "GET", "https://api.example.com/v1/users", None).verdict
    );
    // `*` stays within one segment.
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://api.example.com/v1/users/1", None).verdict
    );
    // Dot segments are resolved before matching.
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://api.example.com/v1/../admin", None).verdict
    );
    assert_eq!(
        Verdict::Ask,
        net(&p, "DELETE", "https://api.example.com/v1/users/1", None).verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(&p, "POST", "https://api.example.com/v1/users", None).verdict
    );
    // Ports: default 80/443 only, unless listed.
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://api.example.com:444/v1/users", None).verdict
    );
    assert_eq!(
        Verdict::Allow,
        net(&p, "POST", "https://api.example.com:8443/anything", None).verdict
    );
}

#[test]
fn wildcards_cover_subdomains_not_the_apex_or_lookalikes() {
    let p =
        policy("version = 1\n[[network.rule]]\nhost = \"*.example.com\"\nverdict = \"allow\"\n");
    assert_eq!(
        Verdict::Allow,
        net(&p, "GET", "https://a.example.com/", None).verdict
    );
    assert_eq!(
        Verdict::Allow,
        net(&p, "GET", "https://a.b.example.com/", None).verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://example.com/", None).verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://badexample.com/", None).verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "https://a.example.com.evil.net/", None).verdict
    );
}

#[test]
fn ip_literals_match_in_every_notation() {
    let p = policy(
        "version = 1\n[[network.rule]]\nhost = \"127.0.0.1\"\nports = [8080]\nverdict = \"allow\"\n",
    );
    for url in [
        "http://127.0.0.1:8080/",
        "http://0x7f.1:8080/",
        "http://2130706433:8080/",
        "http://0177.0.0.1:8080/",
        "http://127.1:8080/",
    ] {
        assert_eq!(Verdict::Allow, net(&p, "GET", url, None).verdict, "{url}");
    }
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "http://127.0.0.2:8080/", None).verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(&p, "GET", "http://[::ffff:127.0.0.1]:8080/", None).verdict
    );
}

#[test]
fn idn_hosts_match_in_unicode_or_punycode() {
    let p =
        policy("version = 1\n[[network.rule]]\nhost = \"bücher.example\"\nverdict = \"allow\"\n");
    assert_eq!(
        Verdict::Allow,
        net(&p, "GET", "https://xn--bcher-kva.example/", None).verdict
    );
    assert_eq!(
        Verdict::Allow,
        net(&p, "GET", "https://BÜCHER.example./", None).verdict
    );
}

#[test]
fn label_rules_catch_destructive_calls_anywhere() {
    let p = policy(
        r#"version = 1
[[network.rule]]
host = "api.example.com"
labels = ["destructive"]
verdict = "ask"
[[network.rule]]
host = "api.example.com"
verdict = "allow"
"#,
    );
    assert_eq!(
        Verdict::Ask,
        net(&p, "DELETE", "https://api.example.com/x", None).verdict
    );
    assert_eq!(
        Verdict::Allow,
        net(&p, "PUT", "https://api.example.com/x", None).verdict
    );
    let body = br#"{"query":"mutation { deleteProject(id: 1) }"}"#;
    assert_eq!(
        Verdict::Ask,
        net(&p, "POST", "https://api.example.com/graphql", Some(body)).verdict
    );
}

#[test]
fn uninspectable_graphql_is_never_allowed_even_when_every_rule_allows() {
    let p = policy(
        r#"version = 1
[[network.rule]]
host = "api.example.com"
graphql = { type = "query" }
verdict = "allow"
"#,
    );
    let d = net(
        &p,
        "POST",
        "https://api.example.com/graphql",
        Some(b"not graphql"),
    );
    assert_eq!(Verdict::Ask, d.verdict);
    assert!(d.labels.contains(blastwall_policy::Label::Opaque));
    assert_eq!(
        Verdict::Allow,
        net(
            &p,
            "POST",
            "https://api.example.com/graphql",
            Some(br#"{"query":"{ a }"}"#)
        )
        .verdict
    );
    assert_eq!(
        Verdict::Deny,
        net(
            &p,
            "POST",
            "https://api.example.com/graphql",
            Some(br#"{"query":"mutation { a }"}"#)
        )
        .verdict
    );
}

fn push_body(lines: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (old, new, name)) in lines.iter().enumerate() {
        let caps = if i == 0 {
            "\0report-status side-band-64k"
        } else {
            ""
        };
        let payload = format!("{old} {new} {name}{caps}\n");
        out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
        out.extend_from_slice(payload.as_bytes());
    }
    out.extend_from_slice(b"0000");
    out
}

#[test]
fn git_pushes_ask_for_protected_refs_and_deletions() {
    let p = policy(
        r#"version = 1
[[network.rule]]
host = "git.example.com"
verdict = "allow"
[network.git]
protected = ["main", "release/*"]
on_delete = "deny"
"#,
    );
    let z = "0".repeat(40);
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let url = "https://git.example.com/team/repo.git/git-receive-pack";
    let feature = push_body(&[(&a, &b, "refs/heads/feature/x")]);
    assert_eq!(Verdict::Allow, net(&p, "POST", url, Some(&feature)).verdict);
    // A pack that cannot show the update to be a fast-forward is treated
    // as a rewrite (`on_force`, ask by default).
    let mut unreadable = feature.clone();
    unreadable.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\x01garbage");
    let d = net(&p, "POST", url, Some(&unreadable));
    assert_eq!(Verdict::Ask, d.verdict);
    assert_eq!(Some("ref refs/heads/feature/x"), d.subject.as_deref());
    let main = push_body(&[
        (&a, &b, "refs/heads/feature/x"),
        (&a, &b, "refs/heads/main"),
    ]);
    let d = net(&p, "POST", url, Some(&main));
    assert_eq!(Verdict::Ask, d.verdict);
    assert_eq!(Some("ref refs/heads/main"), d.subject.as_deref());
    let del = push_body(&[(&a, &z, "refs/heads/feature/x")]);
    assert_eq!(Verdict::Deny, net(&p, "POST", url, Some(&del)).verdict);
    let rel = push_body(&[(&z, &b, "refs/heads/release/1.0")]);
    assert_eq!(Verdict::Ask, net(&p, "POST", url, Some(&rel)).verdict);
    assert_eq!(
        Verdict::Deny,
        net(&p, "POST", url, Some(b"garbage")).verdict
    );
}

#[test]
fn file_system_view() {
    let p = policy(
        r#"version = 1
[filesystem]
read = ["/opt/tools"]
write = ["build"]
hide = ["secrets/**"]
"#,
    );
    use FsOp::{Read, Write};
    // Hidden by default and by the manifest.
    assert_eq!(Verdict::Deny, fs(&p, Read, "/home/agent/.aws/credentials"));
    assert_eq!(Verdict::Deny, fs(&p, Read, "/home/agent/.ssh"));
    assert_eq!(Verdict::Deny, fs(&p, Read, "/work/proj/.env"));
    assert_eq!(
        Verdict::Deny,
        fs(&p, Read, "/work/proj/app/.env.production")
    );
    assert_eq!(Verdict::Deny, fs(&p, Read, "/work/proj/secrets/key.pem"));
    // The project: read, and writes land in the overlay.
    assert_eq!(Verdict::Allow, fs(&p, Read, "/work/proj/README.md"));
    assert_eq!(Verdict::Allow, fs(&p, Write, "/work/proj/README.md"));
    assert_eq!(Verdict::Allow, fs(&p, Write, "/work/proj/build/out.o"));
    // Grants: read-only stays read-only.
    assert_eq!(Verdict::Allow, fs(&p, Read, "/opt/tools/bin/x"));
    assert_eq!(Verdict::Deny, fs(&p, Write, "/opt/tools/bin/x"));
    // The home is private and empty.
    assert_eq!(Verdict::Deny, fs(&p, Read, "/home/agent/notes.txt"));
    // Host secrets are absent; the system is read-only.
    assert_eq!(Verdict::Deny, fs(&p, Read, "/etc/shadow"));
    assert_eq!(Verdict::Deny, fs(&p, Read, "/etc/ssh/ssh_host_ed25519_key"));
    assert_eq!(Verdict::Allow, fs(&p, Read, "/etc/hosts"));
    assert_eq!(Verdict::Deny, fs(&p, Write, "/etc/hosts"));
    assert_eq!(Verdict::Deny, fs(&p, Write, "/usr/bin/ls"));
    assert_eq!(Verdict::Allow, fs(&p, Write, "/tmp/scratch"));
}

#[test]
fn the_most_specific_grant_wins() {
    let user = blastwall_policy::UserGrants {
        write: vec![PathBuf::from("/home/agent/.claude")],
        ..Default::default()
    };
    let text = r#"version = 1
[filesystem]
write = ["~/.claude"]
read = ["~/.claude/settings.json"]
"#;
    let p = load_with(text, "/work/proj", Some(&user)).unwrap().policy;
    assert_eq!(
        Verdict::Allow,
        fs(&p, FsOp::Write, "/home/agent/.claude/projects/x.jsonl")
    );
    assert_eq!(
        Verdict::Deny,
        fs(&p, FsOp::Write, "/home/agent/.claude/settings.json")
    );
    assert_eq!(
        Verdict::Allow,
        fs(&p, FsOp::Read, "/home/agent/.claude/settings.json")
    );
}

#[test]
fn project_mode_ro_refuses_writes() {
    let p = policy("version = 1\n[filesystem]\nproject = \"ro\"\n");
    assert_eq!(Verdict::Deny, fs(&p, FsOp::Write, "/work/proj/a"));
    assert_eq!(Verdict::Allow, fs(&p, FsOp::Read, "/work/proj/a"));
}

#[test]
fn exec_rules() {
    let p = policy(
        r#"version = 1
[exec]
default = "allow"
[[exec.rule]]
program = "git"
args = ["push"]
labels = ["destructive"]
verdict = "ask"
[[exec.rule]]
labels = ["destructive"]
verdict = "deny"
"#,
    );
    assert_eq!(Verdict::Allow, exec(&p, &["git", "status"]));
    assert_eq!(
        Verdict::Ask,
        exec(&p, &["/usr/bin/git", "push", "--force", "origin", "main"])
    );
    assert_eq!(Verdict::Deny, exec(&p, &["rm", "-rf", "/"]));
    assert_eq!(Verdict::Allow, exec(&p, &["ls", "-la"]));
}

#[test]
fn user_config_binds_credentials_and_grants() {
    use blastwall_policy::{Source, load_user_grants};
    let user = load_user_grants(
        &Source::new(
            "config.toml",
            r#"version = 1
[filesystem]
write = ["~/.cache/shared"]
[[credential]]
name = "railway"
hosts = ["backboard.railway.app"]
source = "store:railway"
"#,
        ),
        std::path::Path::new("/home/agent"),
    )
    .unwrap();
    let ok = r#"version = 1
[filesystem]
write = ["~/.cache/shared/x"]
[[network.rule]]
host = "backboard.railway.app"
verdict = "allow"
[[credential]]
name = "railway"
hosts = ["backboard.railway.app"]
"#;
    assert!(load_with(ok, "/work/proj", Some(&user)).is_ok());
    let widened = r#"version = 1
[[network.rule]]
host = "evil.example.com"
verdict = "allow"
[[credential]]
name = "railway"
hosts = ["evil.example.com"]
"#;
    let errs = load_with(widened, "/work/proj", Some(&user)).unwrap_err();
    assert!(
        errs.iter().any(|d| d
            .message
            .contains("not among the hosts your own config binds it to")),
        "{errs:?}"
    );
    let unknown = "version = 1\n[[credential]]\nname = \"aws\"\nhosts = [\"s3.amazonaws.com\"]\n";
    // Checking warns; enforcing refuses, with or without a config file.
    let warned = load_with(unknown, "/work/proj", Some(&user)).unwrap();
    assert!(
        warned
            .warnings
            .iter()
            .any(|d| d.message.contains("not defined in your own config"))
    );
    for u in [Some(&user), None] {
        let errs = super::load_full(unknown, "/work/proj", u, true).unwrap_err();
        assert!(
            errs.iter()
                .any(|d| d.message.contains("not defined in your own config")),
            "{errs:?}"
        );
    }
    // Reads of the user's own files need the user's grant.
    let reads_home = "version = 1\n[filesystem]\nread = [\"~/Documents\"]\n";
    assert!(load_with(reads_home, "/work/proj", None).is_err());
    let granted = blastwall_policy::UserGrants {
        read: vec![PathBuf::from("/home/agent/Documents")],
        ..Default::default()
    };
    assert!(load_with(reads_home, "/work/proj", Some(&granted)).is_ok());
}

#[test]
fn a_user_config_credential_needs_a_source() {
    use blastwall_policy::{Source, load_user_grants};
    let r = load_user_grants(
        &Source::new(
            "config.toml",
            "version = 1\n[[credential]]\nname = \"x\"\nhosts = [\"a.example.com\"]\n",
        ),
        std::path::Path::new("/home/agent"),
    );
    assert!(r.is_err());
}
