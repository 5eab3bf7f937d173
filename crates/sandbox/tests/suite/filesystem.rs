//! The file-system view: overlay, read-only system, private home, hidden
//! paths, host secrets, /proc.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use blastwall_sandbox::ProjectMode;

use super::common::{ROOT_TEST_UID, chown_tree, is_root, sandbox, skip};

// Issue 3 "Done when": rm -rf of the whole project, editing README.md and
// creating files leave the real project byte-identical; the upper layer
// holds the changes, deletions as whiteouts.
#[test]
fn overlay_rm_rf_leaves_the_real_project_identical() {
    let Some(mut f) = sandbox() else { return };
    let before = super::common::snapshot(&f.path("proj"));
    let r = f
        .sh("echo edited >> README.md && echo new > created.txt && rm -rf ./src && ls -A && rm -rf ./* && ls -A | wc -l")
        .ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(
        super::common::snapshot(&f.path("proj")),
        before,
        "the real project changed"
    );
    let upper = f.path("upper");
    let wh =
        std::fs::symlink_metadata(upper.join("README.md")).expect("README.md whiteout in upper");
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "README.md in upper is not a whiteout: {wh:?}"
    );
    let src = std::fs::symlink_metadata(upper.join("src")).expect("src whiteout in upper");
    assert!(
        src.file_type().is_char_device(),
        "src in upper is not a whiteout"
    );
    assert!(
        !upper.join("created.txt").exists(),
        "created then deleted: no trace expected"
    );
}

#[test]
fn overlay_keeps_edits_in_upper() {
    let Some(mut f) = sandbox() else { return };
    let r = f
        .sh("echo edited >> README.md && echo new > created.txt && cat README.md")
        .ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.stdout(), "# the real readme\nedited\n");
    assert_eq!(
        std::fs::read_to_string(f.path("proj/README.md")).unwrap(),
        "# the real readme\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("upper/README.md")).unwrap(),
        "# the real readme\nedited\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("upper/created.txt")).unwrap(),
        "new\n"
    );
}

// The overlay is mounted `volatile` (no syncfs of the host filesystem when
// the sandbox goes): the supervisor syncs the changes and removes
// overlayfs's marker after each run, so the same session runs again, and a
// marker left by a run that did not finish in this boot is cleared.
#[test]
fn overlay_runs_again_after_a_volatile_mount() {
    let Some(mut f) = sandbox() else { return };
    let marker = f.path("work/work/incompat/volatile");
    let r = f.sh("echo one > a.txt").ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert!(!marker.exists(), "the volatile marker outlived the run");
    let r = f.sh("cat a.txt && echo two >> a.txt").ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.stdout(), "one\n");
    assert_eq!(
        std::fs::read_to_string(f.path("upper/a.txt")).unwrap(),
        "one\ntwo\n"
    );
    // A marker a killed supervisor left in this boot: cleared, run again.
    std::fs::create_dir_all(marker.join("dirty")).unwrap();
    let r = f.sh("cat a.txt").ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.stdout(), "one\ntwo\n");
    assert!(!marker.exists());
}

// As root the agent runs as an unprivileged uid; a project owned by root
// is attached as an idmapped mount, so its files are the agent's inside:
// through the overlay it edits them (the copies in the upper directory
// belong to the sandbox's host uid) and the real tree stays as it was.
#[test]
fn root_owned_project_is_writable_through_the_overlay_as_root() {
    if !is_root() {
        eprintln!("note: only a root supervisor idmaps the project");
        return;
    }
    let Some(mut f) = sandbox() else { return };
    chown_tree(&f.path("proj"), 0);
    let r = f
        .sh("stat -c %u README.md && echo edited >> README.md && echo new > src/created.txt && cat README.md")
        .ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.stdout(), "1000\n# the real readme\nedited\n");
    let real = f.path("proj/README.md");
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "# the real readme\n"
    );
    assert_eq!(std::fs::metadata(&real).unwrap().uid(), 0);
    for p in ["upper/README.md", "upper/src/created.txt"] {
        assert_eq!(
            std::fs::metadata(f.path(p)).unwrap().uid(),
            ROOT_TEST_UID,
            "{p}"
        );
    }
    assert!(!f.path("proj/src/created.txt").exists());
}

// The same in `rw` mode: the agent writes the real root-owned tree, and
// what it creates there belongs to root like the rest of the project.
#[test]
fn root_owned_project_is_writable_in_rw_mode_as_root() {
    if !is_root() {
        eprintln!("note: only a root supervisor idmaps the project");
        return;
    }
    let Some(mut f) = sandbox() else { return };
    chown_tree(&f.path("proj"), 0);
    f.spec.project_mode = ProjectMode::ReadWrite;
    let r = f
        .sh("echo edited >> README.md && echo new > created.txt")
        .ok();
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(f.path("proj/README.md")).unwrap(),
        "# the real readme\nedited\n"
    );
    assert_eq!(
        std::fs::metadata(f.path("proj/created.txt")).unwrap().uid(),
        0
    );
}

#[test]
fn writes_to_home_etc_usr_fail() {
    let Some(mut f) = sandbox() else { return };
    let home = f.path("home");
    for target in [
        home.join("planted"),
        "/etc/planted".into(),
        "/usr/planted".into(),
        "/planted".into(),
    ] {
        let r = f.check(&["write", target.to_str().unwrap()]).ok();
        let errno: i32 = r.stdout().trim().parse().unwrap();
        assert_ne!(errno, 0, "writing {} succeeded inside", target.display());
        assert!(
            !target.exists()
                || target.starts_with("/etc") && !std::path::Path::new("/etc/planted").exists()
        );
    }
    assert!(!home.join("planted").exists());
    assert!(!std::path::Path::new("/etc/planted").exists());
    assert!(!std::path::Path::new("/usr/planted").exists());
}

#[test]
fn hidden_paths_are_empty_decoys() {
    let Some(mut f) = sandbox() else { return };
    let r = f
        .sh("cat .env; ls -A ~/.aws; cat ~/.aws/credentials 2>/dev/null; echo done")
        .ok();
    let out = r.stdout();
    assert!(!out.contains("marker-env-9f3a"), "the .env leaked: {out}");
    assert!(!out.contains("marker-aws-77c1"), "~/.aws leaked: {out}");
    assert!(out.ends_with("done\n"), "{out}");
    // The home is otherwise empty: no host file shows through.
    let r = f.sh("ls -A \"$HOME\"").ok();
    assert_eq!(r.stdout().trim(), ".aws", "home should hold only the decoy");
}

#[test]
fn host_secrets_are_masked() {
    let Some(mut f) = sandbox() else { return };
    let r = f.sh("cat /etc/shadow /etc/gshadow 2>&1; ls -A /etc/sudoers.d 2>&1; ls /root /home 2>&1; echo end").ok();
    let out = r.stdout();
    if let Ok(shadow) = std::fs::read_to_string("/etc/shadow") {
        for line in shadow.lines().filter(|l| !l.is_empty()) {
            assert!(!out.contains(line), "a line of /etc/shadow leaked: {line}");
        }
    }
    assert!(
        out.contains("/root") && out.contains("/home"),
        "/root or /home visible: {out}"
    );
}

// Issue 3: as root, the agent cannot rewrite a value under /proc/sys
// (written back: the current value, so a failure of the wall is harmless).
#[test]
fn proc_sys_write_back_fails() {
    let Some(mut f) = sandbox() else { return };
    let r = f
        .sh("v=$(cat /proc/sys/kernel/sysrq) && { echo \"$v\" > /proc/sys/kernel/sysrq && echo WROTE; } 2>/dev/null; echo done")
        .ok();
    assert!(
        !r.stdout().contains("WROTE"),
        "a kernel setting was written from inside: {}",
        r.stdout()
    );
    if !is_root() {
        eprintln!("note: not root, the kernel would refuse this write anyway");
    }
}

#[test]
fn proc_shows_only_the_sandbox() {
    let Some(mut f) = sandbox() else { return };
    if !std::path::Path::new("/usr/bin/ps").exists() && !std::path::Path::new("/bin/ps").exists() {
        return skip("ps is not installed");
    }
    let r = f.sh("ps -e -o pid=,args=").ok();
    let lines: Vec<String> = r.stdout().lines().map(|l| l.trim().to_owned()).collect();
    assert!(
        lines.len() <= 4,
        "more processes than the sandbox's: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1 ") && l.contains("blastwall-init")),
        "{lines:?}"
    );
    let r = f.sh("ls /proc | grep -c '^[0-9]'").ok();
    let n: u32 = r.stdout().trim().parse().unwrap();
    assert!(n <= 5, "{n} pids visible in /proc");
}

#[test]
fn agent_has_no_privilege() {
    let Some(mut f) = sandbox() else { return };
    let r = f.check(&["status"]).ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout().trim()).unwrap();
    assert_eq!(v["no_new_privs"], "1");
    assert_eq!(v["seccomp"], "2");
    assert_eq!(v["cap_eff"], "0000000000000000");
    assert_eq!(v["cap_prm"], "0000000000000000");
    assert_eq!(v["cap_bnd"], "0000000000000000");
    let uid = f.spec.identity.uid.to_string();
    assert!(
        v["uid"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .all(|u| u == uid),
        "{v}"
    );
    // What the layers report says was in force.
    let r = f.sh("true").ok();
    let layers = &r.outcome["layers"];
    assert_eq!(layers["seccomp"], true);
    if layers["landlock_abi"].is_null() {
        skip("no Landlock on this kernel");
    } else {
        assert_eq!(layers["landlock_fs"], true, "{layers}");
    }
}

#[test]
fn unshare_user_namespace_fails() {
    let Some(mut f) = sandbox() else { return };
    let ok_outside = std::process::Command::new("unshare")
        .args(["-U", "true"])
        .status();
    if !ok_outside.is_ok_and(|s| s.success()) {
        return skip("`unshare -U true` does not work outside the wall either");
    }
    let r = f.sh("unshare -U true && echo ESCAPED; echo done").ok();
    assert!(!r.stdout().contains("ESCAPED"), "unshare -U worked inside");
}

// Fail closed, a real case: user namespaces disabled in an outer
// namespace (max_user_namespaces=0) stop the run with a message pointing at
// doctor, and nothing runs.
#[test]
fn user_namespaces_disabled_stops_the_run() {
    let Some(mut f) = sandbox() else { return };
    f.spec.argv = vec!["sh".into(), "-c".into(), "echo SHOULD-NOT-RUN".into()];
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"";
    // The harness runs as the outer namespace's root, which owns nothing
    // here: let it write its outcome.
    std::fs::set_permissions(
        f.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let r = f.run_under(&["unshare", "-U", "-r", "sh", "-c", script, "sh"]);
    let e = r
        .error()
        .unwrap_or_else(|| panic!("the run must refuse: {:?} {}", r.outcome, r.stderr()));
    assert!(e.contains("namespaces") && e.contains("doctor"), "{e}");
    assert!(!r.stdout().contains("SHOULD-NOT-RUN"));
}

// Issue 3: filling the overlay past its limit stops the agent; the host
// (and the real project) are unharmed.
#[test]
fn overlay_limit_stops_the_agent() {
    let Some(mut f) = sandbox() else { return };
    f.spec.limits.overlay_bytes = Some(4 << 20);
    let before = super::common::snapshot(&f.path("proj"));
    let r = f
        .sh("i=0; while :; do head -c 1048576 /dev/zero > fill.$i; i=$((i+1)); done")
        .ok();
    assert_eq!(r.outcome["overlay_limit_hit"], true, "{:?}", r.outcome);
    assert_eq!(r.outcome["status"]["signal"], 9);
    assert_eq!(
        r.outcome["layers"]["limits"]["overlay_bytes"]["mechanism"],
        "supervisor-watch"
    );
    assert_eq!(super::common::snapshot(&f.path("proj")), before);
}

// Issue 3: attempts on hidden paths are seen (decoys watched with inotify).
#[test]
fn hidden_path_attempts_are_seen() {
    let Some(mut f) = sandbox() else { return };
    let r = f.sh("cat .env; ls \"$HOME/.aws\" >/dev/null; true").ok();
    let touched: Vec<String> = r.outcome["hidden_touched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let env = f.path("proj/.env");
    let aws = f.path("home/.aws");
    let canon = |p: std::path::PathBuf| {
        std::fs::canonicalize(p)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert!(touched.contains(&canon(env)), "{touched:?}");
    assert!(touched.contains(&canon(aws)), "{touched:?}");
    let r = f.sh("true").ok();
    assert_eq!(
        r.outcome["hidden_touched"],
        serde_json::json!([]),
        "no attempt, no event"
    );
}

#[test]
fn limits_in_force_are_reported() {
    let Some(mut f) = sandbox() else { return };
    f.spec.limits.pids = Some(64);
    f.spec.limits.cpu_seconds = Some(600);
    f.spec.limits.memory_bytes = Some(512 << 20);
    f.spec.accept_missing.push(blastwall_sandbox::Layer::Cgroup);
    let r = f.sh("true").ok();
    let lim = &r.outcome["layers"]["limits"];
    assert_eq!(lim["cpu_seconds"]["value"], 600);
    assert_eq!(lim["pids"]["value"], 64);
    assert_eq!(lim["oom_score_adj"], 1000);
    if is_root() {
        assert_eq!(lim["memory_bytes"]["value"], 512u64 << 20, "{lim}");
    } else if lim["memory_bytes"].is_null() {
        let missing = &r.outcome["layers"]["missing"];
        assert!(missing.to_string().contains("cgroup"), "{missing}");
    }
}

// Issue 3: hitting the memory limit stops the agent, never the host, and
// says so.
#[test]
fn memory_limit_stops_the_agent() {
    let Some(mut f) = sandbox() else { return };
    f.spec.limits.memory_bytes = Some(64 << 20);
    let r = f.sh("true");
    if let Some(e) = r.error() {
        // No memory controller for this user (an unprivileged user on a
        // host without a delegated cgroup v2 subtree): the run must refuse,
        // naming the layer, rather than run unlimited.
        assert!(e.contains("cgroup") && e.contains("doctor"), "{e}");
        assert!(!is_root(), "root has cgroup v1 here: {e}");
        eprintln!(
            "note: memory limits cannot be enforced for this user; checked that the run refuses"
        );
        return;
    }
    // 256 MiB held in one shell variable.
    let r = f
        .sh("x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived ${#x}")
        .ok();
    assert!(
        !r.stdout().contains("survived 268435456"),
        "the memory limit did not hold: {}",
        r.stdout()
    );
    assert_eq!(r.outcome["memory_limit_hit"], true, "{:?}", r.outcome);
}

// A file whose contents the caller gives last (`before_start`, e.g. a CA
// bundle whose CA is made while the sandbox comes up) shows those contents
// inside, read-only; a late file the spec does not name stops the run.
#[test]
fn injected_contents_given_before_the_start_are_the_ones_inside() {
    let Some(mut f) = sandbox() else { return };
    let bundle = f.path("home/.ca-bundle.pem");
    f.spec.injected = vec![blastwall_sandbox::InjectedFile {
        path: bundle.clone(),
        contents: Vec::new(),
    }];
    f.late = vec![blastwall_sandbox::InjectedFile {
        path: bundle.clone(),
        contents: b"late-ca-marker-4c2e\n".to_vec(),
    }];
    let r = f
        .sh("cat ~/.ca-bundle.pem; echo x >> ~/.ca-bundle.pem && echo WROTE; true")
        .ok();
    let out = r.stdout();
    assert!(out.contains("late-ca-marker-4c2e"), "{out}");
    assert!(!out.contains("WROTE"), "the late view was writable: {out}");
    assert!(
        !bundle.exists(),
        "the mount point must not appear on the host"
    );

    f.late = vec![blastwall_sandbox::InjectedFile {
        path: f.path("home/not-in-the-spec"),
        contents: b"x".to_vec(),
    }];
    let r = f.sh("echo RAN");
    assert!(!r.stdout().contains("RAN"), "{}", r.stdout());
    assert!(
        r.error()
            .is_some_and(|e| e.contains("not an injected file")),
        "{:?}",
        r.outcome
    );
}

// Issue 3: `.git/config` and `~/.gitconfig` inside are sanitised views the
// caller writes; the real files (with their tokens) never show, and the
// views cannot be changed from inside.
#[test]
fn injected_files_replace_the_real_ones() {
    let Some(mut f) = sandbox() else { return };
    let git = f.path("proj/.git");
    std::fs::create_dir_all(&git).unwrap();
    std::fs::write(
        git.join("config"),
        "[http]\n\textraheader = AUTHORIZATION: bearer marker-git-5e1d\n",
    )
    .unwrap();
    if is_root() {
        super::common::chown_tree(&git, super::common::ROOT_TEST_UID);
    }
    f.spec.injected = vec![
        blastwall_sandbox::InjectedFile {
            path: git.join("config"),
            contents: b"[core]\n\tbare = false\n".to_vec(),
        },
        blastwall_sandbox::InjectedFile {
            path: f.path("home/.gitconfig"),
            contents: b"[user]\n\tname = Agent\n".to_vec(),
        },
    ];
    let r = f.sh("cat .git/config ~/.gitconfig; echo x >> .git/config && echo WROTE; echo x >> ~/.gitconfig && echo WROTE2; true").ok();
    let out = r.stdout();
    assert!(!out.contains("marker-git-5e1d"), "{out}");
    assert!(
        out.contains("bare = false") && out.contains("name = Agent"),
        "{out}"
    );
    assert!(
        !out.contains("WROTE"),
        "an injected view was writable: {out}"
    );
    assert!(
        std::fs::read_to_string(git.join("config"))
            .unwrap()
            .contains("marker-git-5e1d")
    );
    assert!(
        !f.path("home/.gitconfig").exists(),
        "the mount point must not appear on the host"
    );
    assert!(
        !f.path("upper/.git").exists(),
        "nothing lands in the overlay"
    );
}
