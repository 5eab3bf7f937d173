//! Session directories, diff, commit and discard (I7), on overlay upper
//! layouts built by hand the way overlayfs writes them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use blastwall_session::{
    ChangeKind, CommitOptions, Home, SessionDir, SessionMeta, Status, changes, commit, discard,
    now_ns, process_start_time, stat_line,
};
use pretty_assertions::assert_eq;

struct World {
    _t: tempfile::TempDir,
    project: PathBuf,
    outside: PathBuf,
    session: SessionDir,
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A whiteout as overlayfs writes it (the xattr form works unprivileged).
fn whiteout(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "").unwrap();
    rustix::fs::lsetxattr(
        p,
        "user.overlay.whiteout",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn world() -> World {
    let t = tempfile::tempdir().unwrap();
    let project = t.path().join("project");
    let outside = t.path().join("outside");
    write(&project.join("README.md"), "hello\n");
    write(&project.join("src/main.rs"), "fn main() {}\n");
    write(&project.join("old.txt"), "old\n");
    write(&project.join("docs/a.md"), "a\n");
    write(&outside.join("keep.txt"), "outside\n");
    let home = Home::at(t.path().join("bw"));
    let session = SessionDir::create(&home).unwrap();
    let meta = SessionMeta {
        id: session.id(),
        name: None,
        started_ns: now_ns(),
        command: vec!["agent".into()],
        project: project.clone(),
        manifest: project.join("blastwall.toml"),
        project_mode: "overlay".into(),
        supervisor: None,
        exit_code: Some(0),
        layers: serde_json::Value::Null,
        owner: (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        ),
        closed: None,
    };
    session.write_meta(&meta).unwrap();
    World {
        _t: t,
        project,
        outside,
        session,
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    fn rec(root: &Path, d: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut es: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.file_type().is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else if md.is_dir() {
                out.push((rel, "dir".into()));
                rec(root, &p, out);
            } else {
                out.push((
                    rel,
                    std::fs::read_to_string(&p).unwrap_or_else(|_| "<binary>".into()),
                ));
            }
        }
    }
    rec(dir, dir, &mut out);
    out
}

#[test]
fn diff_lists_exactly_the_changes_and_commit_applies_them() {
    let w = world();
    let up = w.session.upper();
    write(&up.join("README.md"), "hello, edited\n");
    write(&up.join("new/file.txt"), "new\n");
    whiteout(&up.join("old.txt"));
    std::fs::create_dir_all(up.join("src")).unwrap();
    write(&up.join("src/main.rs"), "fn main() {}\n"); // copied up, unchanged
    let before = snapshot(&w.project);
    let cs = changes(&up, &w.project).unwrap();
    let lines: Vec<String> = cs.iter().map(stat_line).collect();
    assert_eq!(
        vec!["M README.md", "A new/", "A new/file.txt", "D old.txt"],
        lines
    );
    // Nothing touched the project yet.
    assert_eq!(before, snapshot(&w.project));
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert_eq!(4, r.applied.len());
    assert_eq!(
        "hello, edited\n",
        std::fs::read_to_string(w.project.join("README.md")).unwrap()
    );
    assert_eq!(
        "new\n",
        std::fs::read_to_string(w.project.join("new/file.txt")).unwrap()
    );
    assert!(!w.project.join("old.txt").exists());
    assert!(changes(&up, &w.project).unwrap().is_empty());
    assert_eq!(
        Some("committed".to_owned()),
        w.session.meta().unwrap().closed
    );
    assert!(!w.session.journal().exists());
}

#[test]
fn an_opaque_directory_deletes_what_it_hides() {
    let w = world();
    let up = w.session.upper();
    std::fs::create_dir_all(up.join("docs")).unwrap();
    rustix::fs::lsetxattr(
        up.join("docs"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write(&up.join("docs/b.md"), "b\n");
    let lines: Vec<String> = changes(&up, &w.project)
        .unwrap()
        .iter()
        .map(stat_line)
        .collect();
    assert_eq!(vec!["D docs/a.md", "A docs/b.md"], lines);
}

#[test]
fn rm_rf_of_the_project_is_a_list_of_deletions_until_committed() {
    let w = world();
    let up = w.session.upper();
    for p in ["README.md", "src", "old.txt", "docs"] {
        whiteout(&up.join(p));
    }
    let before = snapshot(&w.project);
    let cs = changes(&up, &w.project).unwrap();
    assert!(cs.iter().all(|c| c.kind == ChangeKind::Deleted));
    assert_eq!(4, cs.len());
    discard(&w.session).unwrap();
    assert_eq!(before, snapshot(&w.project));
    assert_eq!(
        Some("discarded".to_owned()),
        w.session.meta().unwrap().closed
    );
}

#[test]
fn a_symlink_in_the_overlay_is_committed_as_a_symlink_never_followed() {
    let w = world();
    let up = w.session.upper();
    std::fs::create_dir_all(&up).unwrap();
    symlink("/etc/passwd", up.join("passwd-link")).unwrap();
    symlink("../outside/keep.txt", up.join("escape")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    commit(&w.session, &CommitOptions::default()).unwrap();
    assert_eq!(
        Path::new("/etc/passwd"),
        std::fs::read_link(w.project.join("passwd-link")).unwrap()
    );
    assert_eq!(
        Path::new("../outside/keep.txt"),
        std::fs::read_link(w.project.join("escape")).unwrap()
    );
    assert_eq!(passwd, std::fs::read("/etc/passwd").unwrap());
    assert_eq!(
        "outside\n",
        std::fs::read_to_string(w.outside.join("keep.txt")).unwrap()
    );
}

#[test]
fn a_symlink_already_in_the_real_tree_is_never_followed_out() {
    let w = world();
    // The real tree holds `out -> ../outside`; the overlay writes `out/x.txt`
    // (as after the agent replaced the link by a directory).
    symlink("../outside", w.project.join("out")).unwrap();
    let up = w.session.upper();
    write(&up.join("out/keep.txt"), "pwned\n");
    let r = commit(
        &w.session,
        &CommitOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        "outside\n",
        std::fs::read_to_string(w.outside.join("keep.txt")).unwrap(),
        "{r:?}"
    );
    // The link was replaced by a real directory inside the project.
    assert!(
        std::fs::symlink_metadata(w.project.join("out"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn a_parent_swapped_for_a_symlink_during_the_session_is_refused() {
    let w = world();
    let up = w.session.upper();
    write(&up.join("docs/new.md"), "new\n");
    // Outside the wall, during the session, docs/ became a link out. (File
    // times come from the kernel's coarse clock, up to a tick behind the
    // session's start: the change is made a tick later to be one.)
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::remove_dir_all(w.project.join("docs")).unwrap();
    symlink(&w.outside, w.project.join("docs")).unwrap();
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert!(r.applied.is_empty());
    assert!(!r.conflicts.is_empty());
    let r = commit(
        &w.session,
        &CommitOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!w.outside.join("new.md").exists(), "{r:?}");
    assert!(!r.refused.is_empty() || !r.applied.is_empty());
}

#[test]
fn a_file_changed_outside_is_a_conflict_not_overwritten() {
    let w = world();
    let up = w.session.upper();
    write(&up.join("README.md"), "agent\n");
    std::thread::sleep(std::time::Duration::from_millis(5));
    std::fs::write(w.project.join("README.md"), "human\n").unwrap();
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert_eq!(
        vec![PathBuf::from("README.md")],
        r.conflicts.iter().map(|c| c.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        "human\n",
        std::fs::read_to_string(w.project.join("README.md")).unwrap()
    );
    commit(
        &w.session,
        &CommitOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        "agent\n",
        std::fs::read_to_string(w.project.join("README.md")).unwrap()
    );
}

#[test]
fn sensitive_files_are_flagged_and_skipped_unless_named() {
    let w = world();
    let up = w.session.upper();
    write(&up.join(".git/hooks/pre-commit"), "#!/bin/sh\ncurl evil\n");
    write(&up.join(".claude/settings.json"), "{}\n");
    write(&up.join("blastwall.toml"), "version = 1\n");
    write(&up.join("src/lib.rs"), "// ok\n");
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    for p in [
        ".git/hooks/pre-commit",
        ".claude/settings.json",
        "blastwall.toml",
    ] {
        assert!(r.sensitive.contains(&PathBuf::from(p)), "{p}: {r:?}");
    }
    assert!(!w.project.join(".git/hooks/pre-commit").exists());
    assert!(w.project.join("src/lib.rs").exists());
    let r = commit(
        &w.session,
        &CommitOptions {
            paths: vec![PathBuf::from("blastwall.toml")],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(1, r.applied.len());
    assert!(w.project.join("blastwall.toml").exists());
}

#[test]
fn setuid_and_setgid_bits_are_stripped() {
    let w = world();
    let up = w.session.upper();
    write(&up.join("tool"), "#!/bin/sh\n");
    std::fs::set_permissions(up.join("tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    commit(&w.session, &CommitOptions::default()).unwrap();
    let mode = std::fs::metadata(w.project.join("tool"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(0o755, mode);
}

#[test]
fn fifos_are_refused() {
    let w = world();
    let up = w.session.upper();
    std::fs::create_dir_all(&up).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert_eq!(1, r.refused.len());
    assert!(!w.project.join("pipe").exists());
}

#[test]
fn an_interrupted_commit_resumes() {
    let w = world();
    let up = w.session.upper();
    write(&up.join("a.txt"), "a\n");
    write(&up.join("b.txt"), "b\n");
    // As if a commit had applied a.txt and died.
    std::fs::write(w.project.join("a.txt"), "a\n").unwrap();
    std::fs::write(
        w.session.journal(),
        "{\"begin\":[\"a.txt\",\"b.txt\"]}\n{\"done\":\"a.txt\"}\n",
    )
    .unwrap();
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert!(r.resumed);
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert_eq!(
        "b\n",
        std::fs::read_to_string(w.project.join("b.txt")).unwrap()
    );
    assert!(!w.session.journal().exists());
}

#[test]
fn a_running_session_is_refused_and_a_dead_supervisor_is_crashed() {
    let w = world();
    let mut meta = w.session.meta().unwrap();
    meta.exit_code = None;
    let me = std::process::id();
    meta.supervisor = Some((me, process_start_time(me).unwrap()));
    w.session.write_meta(&meta).unwrap();
    assert_eq!(Status::Running, w.session.status(&meta));
    assert!(commit(&w.session, &CommitOptions::default()).is_err());
    assert!(discard(&w.session).is_err());
    meta.supervisor = Some((me, 1));
    w.session.write_meta(&meta).unwrap();
    assert_eq!(Status::Crashed, w.session.status(&meta));
    commit(&w.session, &CommitOptions::default()).unwrap();
}

#[test]
fn a_file_replaced_by_a_directory_is_not_a_conflict() {
    let w = world();
    // Inside: `rm old.txt; mkdir old.txt; echo x > old.txt/a`.
    let up = w.session.upper();
    write(&up.join("old.txt/a"), "x\n");
    let r = commit(&w.session, &CommitOptions::default()).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert_eq!(
        "x\n",
        std::fs::read_to_string(w.project.join("old.txt/a")).unwrap()
    );
}

#[test]
fn sensitive_paths_are_flagged_at_any_depth() {
    for p in [
        "sub/.envrc",
        "pkg/.vscode/tasks.json",
        "a/b/.claude/settings.json",
        "x/blastwall.toml",
    ] {
        assert!(blastwall_session::is_sensitive(Path::new(p)), "{p}");
    }
}
