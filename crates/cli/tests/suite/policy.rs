//! `blastwall policy check | explain | test | schema`.

use pretty_assertions::assert_eq;

use super::{World, example};

const URL: &str = "https://backboard.railway.app/graphql/v2";

#[test]
fn check_accepts_a_valid_manifest_and_rejects_a_bad_one_with_file_line_col() {
    let w = World::new();
    let good = example("pocketos.toml");
    w.run(&["policy", "check", good.to_str().unwrap()])
        .expect(0);
    let bad = w.write(
        "project/blastwall.toml",
        "version = 1\n[network]\ndefualt = \"deny\"\n[[network.rule]]\nhost = \"*\"\nverdict = \"allow\"\n",
    );
    let r = w.run(&["policy", "check"]).expect(1);
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(2, lines.len(), "{out}");
    assert!(
        lines[0].ends_with(
            "blastwall.toml:3:1: error: unknown key `defualt` in [network]; did you mean `default`?"
        ),
        "{out}"
    );
    assert!(
        lines[1].contains("blastwall.toml:5:8: error: bad host pattern"),
        "{out}"
    );
    let j = w
        .run(&["policy", "check", "--json", bad.to_str().unwrap()])
        .expect(1)
        .json();
    assert_eq!(false, j["valid"]);
    assert_eq!(2, j["errors"]);
    assert_eq!(3, j["diagnostics"][0]["line"]);
}

#[test]
fn explain_gives_ask_for_volume_delete_and_allow_for_me() {
    let w = World::new();
    let del = w.write(
        "del.json",
        r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#,
    );
    let me = w.write("me.json", r#"{"query":"query { me { email } }"}"#);
    let policy = example("pocketos.toml");
    let p = policy.to_str().unwrap();
    let j = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "--json",
            "net",
            "POST",
            URL,
            "--body",
            del.to_str().unwrap(),
        ])
        .expect(0)
        .json();
    assert_eq!("ask", j["verdict"]);
    assert_eq!("network.rule[2]", j["rule"]["id"]);
    assert!(j["rule"]["line"].as_u64().unwrap() > 0);
    assert!(j["reason"].as_str().unwrap().contains("volumeDelete"));
    assert!(
        j["labels"]
            .as_array()
            .unwrap()
            .contains(&"destructive".into())
    );
    let j = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "--json",
            "net",
            "POST",
            URL,
            "--body",
            me.to_str().unwrap(),
        ])
        .expect(0)
        .json();
    assert_eq!("allow", j["verdict"]);
    let j = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "--json",
            "net",
            "GET",
            "https://evil.example.com/",
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
    assert_eq!("network.default", j["rule"]["id"]);
    // Human output names the rule by file and line.
    let r = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "net",
            "POST",
            URL,
            "--body",
            del.to_str().unwrap(),
        ])
        .expect(0);
    assert!(
        r.stdout().starts_with("verdict: ask\nrule:    "),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("pocketos.toml:"), "{}", r.stdout());
    // Headers and stdin bodies.
    let j = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "--json",
            "net",
            "POST",
            URL,
            "-H",
            "X-HTTP-Method-Override: DELETE",
            "--body",
            me.to_str().unwrap(),
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
}

#[test]
fn explain_fs_and_exec() {
    let w = World::new();
    let policy = example("pocketos.toml");
    let p = policy.to_str().unwrap();
    let j = w
        .run(&[
            "policy",
            "explain",
            "--policy",
            p,
            "--json",
            "fs",
            "read",
            "~/.ssh/id_ed25519",
        ])
        .expect(0)
        .json();
    assert_eq!("deny", j["verdict"]);
    let j = w
        .run(&[
            "policy", "explain", "--policy", p, "--json", "exec", "--", "rm", "-rf", "/",
        ])
        .expect(0)
        .json();
    assert!(
        j["labels"]
            .as_array()
            .unwrap()
            .contains(&"destructive".into())
    );
}

#[test]
fn explain_with_an_invalid_manifest_says_so_in_json() {
    let w = World::new();
    w.write("project/blastwall.toml", "version = 2\n");
    let r = w
        .run(&[
            "policy",
            "explain",
            "--json",
            "net",
            "GET",
            "https://a.example.com/",
        ])
        .expect(1);
    let j = r.json();
    assert_eq!(false, j["valid"]);
    assert_eq!(1, j["diagnostics"][0]["line"]);
}

#[test]
fn test_runs_the_cases_and_reports_a_failure_in_full() {
    let w = World::new();
    let policy = example("pocketos.toml");
    let r = w
        .run(&["policy", "test", policy.to_str().unwrap()])
        .expect(0);
    assert!(
        r.stdout().contains("21 of 21 case(s) pass"),
        "{}",
        r.stdout()
    );
    w.write(
        "project/blastwall.toml",
        r#"version = 1
[[network.rule]]
host = "api.example.com"
methods = ["DELETE"]
verdict = "allow"
[[test]]
name = "deletes need a person"
net = { method = "DELETE", url = "https://api.example.com/v1/x" }
expect = "ask"
"#,
    );
    let r = w.run(&["policy", "test"]).expect(1);
    let out = r.stdout();
    assert!(out.contains("FAIL deletes need a person"), "{out}");
    assert!(out.contains("expected: ask"), "{out}");
    assert!(out.contains("actual:   allow"), "{out}");
    assert!(out.contains("(network.rule[0])"), "{out}");
    let j = w.run(&["policy", "test", "--json"]).expect(1).json();
    assert_eq!(1, j["failed"]);
}

#[test]
fn schema_is_json_schema() {
    let w = World::new();
    let j = w.run(&["policy", "schema"]).expect(0).json();
    assert_eq!("https://json-schema.org/draft/2020-12/schema", j["$schema"]);
}

#[test]
fn manifest_discovery_walks_up_but_not_past_the_git_root() {
    let w = World::new();
    w.write("blastwall.toml", "version = 1\n");
    std::fs::create_dir_all(w.project().join("src/deep")).unwrap();
    let r = w
        .run_in(&w.project().join("src/deep"), &["policy", "check"])
        .expect(2);
    assert!(r.stderr().contains("no blastwall.toml"), "{}", r.stderr());
    w.write("project/blastwall.toml", "version = 1\n");
    w.run_in(&w.project().join("src/deep"), &["policy", "check"])
        .expect(0);
}

#[test]
fn a_missing_file_is_an_error_said_once() {
    let w = World::new();
    let r = w.run(&["policy", "check", "nope.toml"]).expect(2);
    assert_eq!(
        1,
        r.stderr().matches("No such file").count(),
        "{}",
        r.stderr()
    );
}
