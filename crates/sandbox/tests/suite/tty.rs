//! Interactive use through the sandbox's own pty, driven with tmux.

use std::process::Command;
use std::time::{Duration, Instant};

use super::common::{harness, os, sandbox, skip};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the pane shows `text` (generous cap; no fixed sleeps).
fn wait_screen(session: &str, text: &str) -> String {
    let cap = Instant::now() + Duration::from_secs(15);
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(text) {
            return screen;
        }
        assert!(
            Instant::now() < cap,
            "the screen never showed {text:?}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn wait_file(path: &std::path::Path) -> String {
    let cap = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(Instant::now() < cap, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

// Issue 3: typed input reaches a program inside, a window resize is seen
// inside, Ctrl-C interrupts the program inside and not blastwall, and the
// terminal is restored on exit.
#[test]
fn interactive_shell_through_the_sandbox_pty() {
    if Command::new("tmux").arg("-V").output().is_err() {
        return skip("tmux is not installed");
    }
    let Some(mut f) = sandbox() else { return };
    f.spec.tty = true;
    f.spec.argv = vec![os("sh")];
    f.spec.env.push((os("TERM"), os("xterm")));
    f.spec.env.push((os("PS1"), os("bw$ ")));
    let spec = f.path("spec.json");
    std::fs::write(&spec, serde_json::to_vec(&f.spec).unwrap()).unwrap();
    let after = f.path("stty-after");
    let name = format!("bwtest{}", std::process::id());
    let cmd = format!(
        "{} run {} {}; stty -a > {}; sleep 600",
        harness(),
        spec.display(),
        f.path("outcome.json").display(),
        after.display()
    );
    let _session = Session(name.clone());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "80",
        "-y",
        "24",
        &cmd,
    ]);
    wait_screen(&name, "bw$");
    tmux(&[
        "send-keys",
        "-t",
        &name,
        "echo typed-$((6*7)); tty",
        "Enter",
    ]);
    wait_screen(&name, "typed-42");
    // The sandbox's own devpts: its first pty.
    wait_screen(&name, "\n/dev/pts/0");
    tmux(&["resize-window", "-t", &name, "-x", "101", "-y", "31"]);
    // SIGWINCH is asynchronous: ask until the new size shows.
    let cap = Instant::now() + Duration::from_secs(15);
    loop {
        tmux(&["send-keys", "-t", &name, "stty size", "Enter"]);
        if tmux(&["capture-pane", "-t", &name, "-p"]).contains("31 101") {
            break;
        }
        assert!(Instant::now() < cap, "the resize never reached the pty");
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux(&["send-keys", "-t", &name, "sleep 600", "Enter"]);
    std::thread::sleep(Duration::from_millis(200));
    tmux(&["send-keys", "-t", &name, "C-c"]);
    tmux(&["send-keys", "-t", &name, "echo still-$((1+1))", "Enter"]);
    wait_screen(&name, "still-2");
    tmux(&["send-keys", "-t", &name, "exit 3", "Enter"]);
    let stty = wait_file(&after);
    let outcome: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.path("outcome.json")).unwrap()).unwrap();
    assert_eq!(outcome["status"]["code"], 3, "{outcome}");
    let words: Vec<&str> = stty.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "terminal not restored: {stty}"
    );
}

// Issue 3: Ctrl-Z suspends the agent and blastwall (the user's terminal is
// given back), `fg` resumes both and input reaches the agent again.
#[test]
fn ctrl_z_suspends_and_fg_resumes() {
    if Command::new("tmux").arg("-V").output().is_err()
        || Command::new("bash").arg("--version").output().is_err()
    {
        return skip("tmux or bash is not installed");
    }
    let Some(mut f) = sandbox() else { return };
    f.spec.tty = true;
    f.spec.argv = vec![os("cat")];
    f.spec.env.push((os("TERM"), os("xterm")));
    let spec = f.path("spec.json");
    std::fs::write(&spec, serde_json::to_vec(&f.spec).unwrap()).unwrap();
    let name = format!("bwtestz{}", std::process::id());
    let _session = Session(name.clone());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "100",
        "-y",
        "30",
        "env PS1='sh$ ' bash --norc --noprofile -i",
    ]);
    wait_screen(&name, "sh$");
    let cmd = format!(
        "{} run {} {}",
        harness(),
        spec.display(),
        f.path("outcome.json").display()
    );
    tmux(&["send-keys", "-t", &name, &cmd, "Enter"]);
    tmux(&["send-keys", "-t", &name, "first-line", "Enter"]);
    wait_screen(&name, "first-line\nfirst-line");
    tmux(&["send-keys", "-t", &name, "C-z"]);
    wait_screen(&name, "Stopped");
    tmux(&[
        "send-keys",
        "-t",
        &name,
        "stty -a | grep -c -w icanon",
        "Enter",
    ]);
    let screen = wait_screen(&name, "\n1\n");
    assert!(screen.contains("Stopped"), "{screen}");
    tmux(&["send-keys", "-t", &name, "fg", "Enter"]);
    tmux(&["send-keys", "-t", &name, "second-line", "Enter"]);
    wait_screen(&name, "second-line\nsecond-line");
    tmux(&["send-keys", "-t", &name, "C-d"]);
    let out = wait_file(&f.path("outcome.json"));
    let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome["status"]["code"], 0, "{outcome}");
}
