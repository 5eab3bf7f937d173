//! Runs every committed fuzz corpus input through the function its fuzz
//! target calls, so stable CI exercises the corpus (`cargo fuzz` needs a
//! nightly toolchain; see `fuzz/README.md`).

use std::path::PathBuf;

use blastwall_classify::git::parse_receive_pack;
use blastwall_classify::graphql::{Inspection, inspect_body};

/// The files of `fuzz/corpus/<target>`, sorted.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => panic!("cannot read corpus dir {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => panic!("cannot list corpus dir {}: {e}", dir.display()),
        };
        match std::fs::read(&path) {
            Ok(bytes) => out.push((path, bytes)),
            Err(e) => panic!("cannot read corpus file {}: {e}", path.display()),
        }
    }
    out.sort();
    out
}

#[test]
fn graphql_body_corpus() {
    let files = corpus("graphql_body");
    assert!(
        files.len() >= 10,
        "graphql_body corpus has {} files",
        files.len()
    );
    let mut opaque = 0;
    for (path, bytes) in &files {
        // The fuzz target's body: inspect, and check the labels agree.
        let i = inspect_body(bytes);
        if let Inspection::Opaque { .. } = i {
            opaque += 1;
        }
        assert!(
            !i.labels().is_empty() || i.calls().is_empty(),
            "{}",
            path.display()
        );
    }
    // The corpus holds both kinds on purpose.
    assert!(opaque > 0 && opaque < files.len());
}

#[test]
fn git_receive_pack_corpus() {
    let files = corpus("git_receive_pack");
    assert!(
        files.len() >= 4,
        "git_receive_pack corpus has {} files",
        files.len()
    );
    let ok = files
        .iter()
        .filter(|(_, bytes)| parse_receive_pack(bytes).is_ok())
        .count();
    assert!(ok > 0 && ok < files.len());
}
