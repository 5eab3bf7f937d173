//! `blastwall run` end to end: the real binary, a real sandbox, and
//! assertions on what happened outside (issue: the sandbox and the
//! copy-on-write project).

use std::path::Path;
use std::process::Stdio;

use pretty_assertions::assert_eq;

use super::World;

/// A trusted project with a README, sources and a planted `.env`.
fn project(w: &World) {
    w.write("project/README.md", "# demo\n");
    w.write("project/src/main.rs", "fn main() {}\n");
    w.write("project/.env", "API_KEY=MARKER_DOTENV_7731\n");
    w.run(&["init"]).expect(0);
    // Run as root, blastwall gives the agent the project owner's uid (never
    // root's): make the project belong to an ordinary user, as it does when
    // a person runs `sudo blastwall run` in their checkout.
    if rustix::process::geteuid().is_root() {
        chown_tree(&w.project(), 65534);
    }
}

fn chown_tree(p: &Path, id: u32) {
    std::os::unix::fs::lchown(p, Some(id), Some(id)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), id);
        }
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.push((rel, b"dir".to_vec()));
                stack.push(p);
            } else {
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Starts `blastwall ARGS` and returns once the command inside printed
/// `ready` (so the sandbox is up), with the child still running.
fn spawn_until_ready(w: &World, args: &[&str]) -> std::process::Child {
    let mut child = w
        .command(&w.project(), args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!("ready\n", line);
    child
}

fn require_sandbox(w: &World) -> bool {
    let r = w.run(&["doctor", "--json"]);
    if r.code() == 0 {
        return true;
    }
    let why = format!("the sandbox cannot run here:\n{}", r.stdout());
    if std::env::var_os("BLASTWALL_REQUIRE_SANDBOX").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    false
}

#[test]
fn run_refuses_an_untrusted_manifest_and_says_how_to_trust_it() {
    let w = World::new();
    w.write("project/blastwall.toml", "version = 1\n");
    let r = w.run(&["run", "--", "sh", "-c", "echo RAN"]);
    assert_eq!(125, r.code(), "{}", r.stderr());
    assert!(!r.stdout().contains("RAN"));
    assert!(r.stderr().contains("blastwall trust"), "{}", r.stderr());
}

#[test]
fn writes_land_in_the_overlay_until_commit() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    let before = snapshot(&w.project());
    let r = w.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "rm -rf ./* && echo new > created.txt && mkdir -p lib && echo x > lib/x.rs && echo edited > README.md && ls",
    ]);
    assert_eq!(0, r.code(), "{}", r.stderr());
    // The real project is byte-identical.
    assert_eq!(before, snapshot(&w.project()));
    let d = w.run(&["diff", "--stat"]).expect(0);
    assert_eq!(
        "M README.md\nD blastwall.toml\nA created.txt\nA lib/\nA lib/x.rs\nD src\n",
        d.stdout()
    );
    // Paths may be given as `./x`, and from a subdirectory.
    let only = w.run(&["diff", "--stat", "--", "./lib"]).expect(0);
    assert_eq!("A lib/\nA lib/x.rs\n", only.stdout());
    let full = w.run(&["diff"]).expect(0).stdout();
    assert!(full.contains("-# demo\n+edited\n"), "{full}");
    let j = w.run(&["diff", "--json"]).expect(0).json();
    assert_eq!(6, j["changes"].as_array().unwrap().len());
    // blastwall.toml itself was deleted inside: a sensitive path, skipped.
    let c = w.run(&["commit", "--yes"]).expect(0);
    assert!(c.stdout().contains("sensitive"), "{}", c.stdout());
    assert_eq!(
        "edited\n",
        std::fs::read_to_string(w.project().join("README.md")).unwrap()
    );
    assert!(w.project().join("lib/x.rs").exists());
    assert!(!w.project().join("src").exists());
    assert!(w.project().join("blastwall.toml").exists());
    // Files the agent created belong to the project's owner.
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(w.project()).unwrap().uid();
    assert_eq!(
        owner,
        std::fs::metadata(w.project().join("created.txt"))
            .unwrap()
            .uid()
    );
}

#[test]
fn discard_throws_the_changes_away() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    let before = snapshot(&w.project());
    w.run(&["run", "--", "sh", "-c", "echo gone > README.md"])
        .expect(0);
    w.run(&["discard"]).expect(0);
    assert_eq!(before, snapshot(&w.project()));
    let r = w.run(&["diff", "--stat"]).expect(0);
    assert_eq!("", r.stdout());
}

#[test]
fn planted_secrets_never_reach_the_agent() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    w.write(
        "home/.aws/credentials",
        "[default]\naws_secret_access_key = MARKER_AWS_1234\n",
    );
    w.write("home/.ssh/id_ed25519", "MARKER_SSH_5678\n");
    w.write("home/notes.txt", "MARKER_HOME_9999\n");
    w.write(
        "home/.gitconfig",
        "[user]\n\tname = Ana\n[credential]\n\thelper = store --file ~/MARKER_GITCRED\n",
    );
    w.write(
        "project/.git/config",
        "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://x:MARKER_REMOTE_TOKEN@github.com/a/b.git\n[http]\n\textraheader = AUTHORIZATION: basic MARKER_EXTRAHEADER\n",
    );
    if rustix::process::geteuid().is_root() {
        chown_tree(&w.project(), 65534);
    }
    let out = w
        .command(
            &w.project(),
            &[
                "run",
                "--",
                "sh",
                "-c",
                "cat ~/.aws/credentials ~/.ssh/id_ed25519 ~/notes.txt .env .git/config ~/.gitconfig; git config --list; env; grep -rs MARKER ~ . /tmp; echo END",
            ],
        )
        .env("GITHUB_TOKEN", "MARKER_ENV_GH")
        .env("AWS_SECRET_ACCESS_KEY", "MARKER_ENV_AWS")
        .env("DATABASE_URL", "postgres://MARKER_ENV_DB")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("END"), "the command must have run: {all}");
    assert!(!all.contains("MARKER_"), "a secret leaked:\n{all}");
    // The sanitised views still say who the user is and where the remote is.
    assert!(all.contains("https://github.com/a/b.git"), "{all}");
    assert!(all.contains("name = Ana"), "{all}");
    // The attempt on the hidden .env was recorded.
    let log = w.run(&["log", "--kind", "alert", "--json"]).expect(0);
    assert!(log.stdout().contains("hidden-path"), "{}", log.stdout());
}

#[test]
fn the_commands_status_is_returned() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    assert_eq!(7, w.run(&["run", "--", "sh", "-c", "exit 7"]).code());
    assert_eq!(
        143,
        w.run(&["run", "--", "sh", "-c", "kill -TERM $$"]).code()
    );
}

#[test]
fn sessions_record_layers_and_the_log_verifies() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    w.run(&["run", "--name", "first", "--", "true"]).expect(0);
    let j = w.run(&["sessions", "--json"]).expect(0).json();
    let s = &j[0];
    assert_eq!("exited", s["status"]);
    assert_eq!("first", s["name"]);
    assert!(
        s["layers"]["namespaces"].as_array().unwrap().len() >= 6,
        "{s}"
    );
    assert!(s["layers"]["seccomp"].as_bool().unwrap());
    w.run(&["log", "verify"]).expect(0);
}

#[test]
fn a_killed_supervisor_leaves_a_crashed_session_that_can_still_be_committed() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    let mut child = spawn_until_ready(
        &w,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo kept > kept.txt; echo ready; exec sleep 600",
        ],
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let j = w.run(&["sessions", "--json"]).expect(0).json();
    assert_eq!("crashed", j[0]["status"], "{j}");
    w.run(&["log", "verify"]).expect(0);
    w.run(&["commit", "--yes"]).expect(0);
    assert_eq!(
        "kept\n",
        std::fs::read_to_string(w.project().join("kept.txt")).unwrap()
    );
}

#[test]
fn exec_rules_are_listed_as_not_enforced() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    let m = std::fs::read_to_string(w.project().join("blastwall.toml")).unwrap();
    std::fs::write(
        w.project().join("blastwall.toml"),
        format!("{m}\n[[exec.rule]]\nprogram = \"rm\"\nverdict = \"ask\"\n"),
    )
    .unwrap();
    w.run(&["trust"]).expect(0);
    let r = w.run(&["run", "--", "true"]).expect(0);
    assert!(
        r.stderr()
            .contains("exec rules are parsed and explained but not enforced"),
        "{}",
        r.stderr()
    );
}

#[test]
fn blastwall_state_is_never_visible_inside_even_under_a_grant() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    // The user grants ~/.local read-write, which holds BLASTWALL_HOME.
    w.write(
        "home/.local/share/blastwall/config.toml",
        "version = 1\n[filesystem]\nwrite = [\"~/.local\"]\n",
    );
    w.write("home/.local/share/other/keep.txt", "x\n");
    project(&w);
    let m = std::fs::read_to_string(w.project().join("blastwall.toml")).unwrap();
    std::fs::write(
        w.project().join("blastwall.toml"),
        m.replace("[filesystem]\n", "[filesystem]\nwrite = [\"~/.local\"]\n"),
    )
    .unwrap();
    w.run(&["trust"]).expect(0);
    if rustix::process::geteuid().is_root() {
        chown_tree(&w.home().join(".local/share/other"), 65534);
    }
    let trust_before = std::fs::read(w.bw_home().join("trust.json")).unwrap();
    let r = w.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "ls ~/.local/share/; cat ~/.local/share/blastwall/trust.json; echo tampered >> ~/.local/share/blastwall/trust.json; echo END",
    ]);
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains("END"), "{all}");
    assert!(all.contains("other"), "the grant itself works: {all}");
    assert_eq!(
        trust_before,
        std::fs::read(w.bw_home().join("trust.json")).unwrap(),
        "{all}"
    );
    assert!(
        !r.stdout().contains("sha256") && !r.stdout().contains("blastwall.toml"),
        "{all}"
    );
}

#[test]
fn sigterm_to_blastwall_ends_the_command_and_the_session_on_record() {
    let w = World::new();
    if !require_sandbox(&w) {
        return;
    }
    project(&w);
    let mut child = spawn_until_ready(&w, &["run", "--", "sh", "-c", "echo ready; exec sleep 600"]);
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(Some(143), status.code());
    let j = w.run(&["sessions", "--json"]).expect(0).json();
    assert_eq!("exited", j[0]["status"], "{j}");
    let v = w.run(&["log", "verify", "--json"]).expect(0).json();
    assert_eq!(true, v["sealed"]);
}
