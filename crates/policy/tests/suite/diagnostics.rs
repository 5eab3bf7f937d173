//! Golden diagnostics: each `tests/manifests/bad/X.toml` next to the
//! `X.stderr` that `blastwall policy check` must print for it. Run with
//! `BLESS=1` to rewrite the expected files after a deliberate change.

use std::path::PathBuf;

use blastwall_policy::{Context, Origin, Source};
use pretty_assertions::assert_eq;

use super::{HOME, manifests};

fn render(name: &str, text: &str, root: &str) -> String {
    let source = Source::new(name, text);
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from(root),
        home: PathBuf::from(HOME),
        user: None,
        enforce: false,
    };
    let diags = match blastwall_policy::load(&source, &cx) {
        Ok(l) => l.warnings,
        Err(d) => d,
    };
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn bad_manifests_match_their_golden_diagnostics() {
    let dir = manifests().join("bad");
    let bless = std::env::var_os("BLESS").is_some();
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let name = format!("bad/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let got = render(&name, &text, "/work/proj");
        let expected_path = path.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}; run with BLESS=1", expected_path.display()));
        assert_eq!(expected, got, "diagnostics of {name}");
        assert!(
            !got.is_empty(),
            "{name} must produce at least one diagnostic"
        );
    }
    assert!(
        seen >= 12,
        "expected the whole bad-manifest set, read {seen}"
    );
}

#[test]
fn good_manifests_load_without_diagnostics() {
    let dir = manifests().join("good");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = e.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = render(
            &name,
            &std::fs::read_to_string(&path).unwrap(),
            "/work/proj",
        );
        assert_eq!("", out, "{name} should be clean");
    }
    assert!(seen >= 1);
}

#[test]
fn every_error_names_file_line_and_column() {
    let out = render(
        "m.toml",
        "version = 1\n[network]\ndefault = \"allow\"\n",
        "/p",
    );
    assert_eq!(
        "m.toml:3:11: error: `network.default` cannot be \"allow\": expected one of \"ask\", \"deny\"\n",
        out
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let out = render(
        "m.toml",
        "version = 1\n[[network.rule]]\nhost = \"*\"\nverdict = \"alow\"\nmethdos = [\"GET\"]\n",
        "/p",
    );
    assert_eq!(3, out.lines().count(), "{out}");
}
