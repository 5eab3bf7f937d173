//! The other approval channels, end to end with the real binary: the page
//! of `blastwall serve` (a real Chromium clicks approve while a sandboxed
//! curl is held on an `ask`; the recording upstream is the judge), the
//! webhook posted by `blastwall run` (to a recorder on loopback), and
//! `blastwall watch --once --json` (shared/scenarios/pocketos.md).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::World;
use super::approvals::{ask_world as world, bodies, next_pending};
use super::network::{curl_available, upstream};

/// Waits for `blastwall run` to end, checks it succeeded, returns its stdout.
fn succeeded(run: &mut Child) -> String {
    let status = run.wait().unwrap();
    let mut stdout = String::new();
    run.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "{stdout}");
    stdout
}

/// `blastwall serve --port 0 --json`, running; stopped (SIGTERM) on drop.
struct Serve {
    child: Child,
    url: String,
    port: u16,
}

impl Serve {
    fn start(w: &World) -> Serve {
        let mut child = w
            .command(&w.project(), &["serve", "--port", "0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let j: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve printed {line:?}: {e}"));
        Serve {
            child,
            url: j["url"].as_str().unwrap().to_owned(),
            port: u16::try_from(j["port"].as_u64().unwrap()).unwrap(),
        }
    }

    fn base(&self) -> &str {
        self.url.split_once('?').unwrap().0
    }

    fn stop(&mut self) -> String {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 GET with the given Host; the status code.
fn get_status(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[test]
fn serve_refuses_a_request_without_the_token_or_with_a_wrong_host() {
    let w = World::new();
    let mut serve = Serve::start(&w);
    let own = format!("127.0.0.1:{}", serve.port);
    let token = serve.url.split_once("token=").unwrap().1.to_owned();
    let (code, out) = get_status(serve.port, "/", &own);
    assert_eq!(401, code, "{out}");
    assert!(out.contains("frame-ancestors 'none'"), "{out}");
    let (code, out) = get_status(serve.port, "/api/approvals", &own);
    assert_eq!(401, code, "{out}");
    let (code, out) = get_status(
        serve.port,
        &format!("/?token={token}"),
        &format!("rebind.example:{}", serve.port),
    );
    assert_eq!(421, code, "{out}");
    assert!(!out.to_ascii_lowercase().contains("set-cookie"), "{out}");
    let (code, out) = get_status(serve.port, &format!("/?token={token}"), &own);
    assert_eq!(303, code, "{out}");
    // Where the page is, for webhooks: never with the token.
    let info = std::fs::read_to_string(w.bw_home().join("serve.json")).unwrap();
    assert!(info.contains(serve.base()), "{info}");
    assert!(!info.contains(&token), "{info}");
    serve.stop();
    assert!(!w.bw_home().join("serve.json").exists());
}

#[test]
fn serve_listens_beyond_loopback_only_when_told() {
    let w = World::new();
    let r = w.run(&["serve", "--port", "0", "--listen", "0.0.0.0"]);
    assert_eq!(2, r.code(), "{}", r.stderr());
    assert!(r.stderr().contains("--allow-remote"), "{}", r.stderr());
}

/// Chromium, node and playwright-core, or why not.
fn browser() -> Option<PathBuf> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/web");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !std::path::Path::new("/usr/bin/chromium").exists() {
        Some("/usr/bin/chromium is missing (apt-get install chromium)".to_owned())
    } else if !node {
        Some("node is missing".to_owned())
    } else if !dir.join("node_modules/playwright-core").is_dir() {
        Some(format!(
            "{}/node_modules is missing (npm install --prefix {})",
            dir.display(),
            dir.display()
        ))
    } else {
        None
    };
    match missing {
        None => Some(dir),
        Some(why) => {
            assert!(
                std::env::var_os("BLASTWALL_REQUIRE_SANDBOX").is_none(),
                "the browser test cannot run: {why}"
            );
            eprintln!("skipped: the browser test cannot run: {why}");
            None
        }
    }
}

#[test]
fn a_click_on_the_page_lets_the_held_request_through_exactly_once() {
    let Some(web) = browser() else { return };
    let up = upstream();
    let w = world(
        &up,
        "[approval]\ntimeout = \"120s\"\nnon_interactive = \"wait\"",
    );
    if !curl_available(&w) {
        return;
    }
    let url = format!("http://api.example.test:{}/volumes/v1/delete", up.port);
    let script = format!(r#"echo "r1=$(curl -s -X POST --data one {url})""#);
    let mut run = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut serve = Serve::start(&w);
    let a = next_pending(&w, &[]);
    let id = a["id"].as_str().unwrap().to_owned();
    let summary = a["summary_text"].as_str().unwrap().to_owned();
    assert!(up.seen.lock().unwrap().is_empty(), "held until the click");

    let out = std::process::Command::new("node")
        .arg(web.join("approve.js"))
        .current_dir(&web)
        .env("BW_URL", &serve.url)
        .env("BW_APPROVAL", &id)
        .env("BW_SUMMARY", &summary)
        .env("HOME", w.home())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let browser_err = String::from_utf8_lossy(&out.stderr).into_owned();

    let status = run.wait().unwrap();
    let mut stdout = String::new();
    run.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    run.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let serve_err = serve.stop();
    assert!(
        out.status.success(),
        "browser: {report}\n{browser_err}\nserve: {serve_err}"
    );
    let r: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(401, r["steps"]["no_token"]["status"], "{report}");
    assert_eq!(421, r["steps"]["wrong_host"]["status"], "{report}");
    assert_eq!(Value::from(summary.clone()), r["steps"]["summary"]);
    assert!(status.success(), "{stdout}\n{stderr}");
    // Through once, after the click, and only then.
    assert_eq!(vec!["one"], bodies(&up), "{stdout}");
    assert!(stdout.contains("r1=you sent"), "{stdout}");
    let all = w.run(&["approvals", "--all", "--json"]).expect(0).json();
    let me = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!("consumed", me["state"], "{me}");
    let by = me["decided_by"].as_str().unwrap();
    assert!(by.starts_with("uid ") && by.ends_with(" via web"), "{by}");
    w.run(&["log", "verify"]).expect(0);
}

/// A loopback recorder for webhook posts: each body on the channel.
fn recorder() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ = c.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (port, rx)
}

#[test]
fn non_interactive_webhook_posts_the_ask_and_waits() {
    let up = upstream();
    let (hook, posts) = recorder();
    let w = world(
        &up,
        &format!(
            "[approval]\ntimeout = \"60s\"\nnon_interactive = \"webhook\"\n[approval.webhook]\nurl = \"http://127.0.0.1:{hook}/hooks/secret\"\nformat = \"discord\""
        ),
    );
    if !curl_available(&w) {
        return;
    }
    let url = format!("http://api.example.test:{}/volumes/v1/delete", up.port);
    let script = format!(r#"echo "r1=$(curl -s -X POST --data 'one' {url})""#);
    let mut run = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let post = posts.recv_timeout(Duration::from_secs(60)).unwrap();
    let v: Value = serde_json::from_str(&post).unwrap();
    assert_eq!(
        serde_json::json!({"parse": []}),
        v["allowed_mentions"],
        "{v}"
    );
    let content = v["content"].as_str().unwrap();
    let a = next_pending(&w, &[]);
    let id = a["id"].as_str().unwrap();
    assert!(content.contains(id), "{content}");
    assert!(content.contains("`/volumes/v1/delete`"), "{content}");
    // No page runs: the notice says how to get one.
    assert!(content.contains("run `blastwall serve`"), "{content}");
    // Held: nothing reached the upstream; a yes from anywhere lets it through.
    assert!(up.seen.lock().unwrap().is_empty());
    w.run(&["approve", id, "--yes"]).expect(0);
    let stdout = succeeded(&mut run);
    assert_eq!(vec!["one"], bodies(&up), "{stdout}");
    assert!(stdout.contains("r1=you sent"), "{stdout}");
}

#[test]
fn watch_once_prints_a_snapshot_without_a_terminal() {
    let w = World::new();
    let j = w.run(&["watch", "--once", "--json"]).expect(0).json();
    assert_eq!(
        serde_json::json!({"sessions": [], "approvals": [], "events": []}),
        j
    );
    let r = w.run(&["watch", "--once"]).expect(0);
    assert!(
        r.stdout().contains("pending approvals (0)"),
        "{}",
        r.stdout()
    );
    let r = w.run(&["watch"]);
    assert_eq!(2, r.code());
    assert!(r.stderr().contains("not a terminal"), "{}", r.stderr());
    let r = w.run(&["watch", "--json"]);
    assert_eq!(2, r.code(), "--json needs --once: {}", r.stderr());
}

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the pane shows `text` (generous cap; no fixed sleeps).
fn wait_screen(session: &str, text: &str) -> String {
    let cap = Instant::now() + Duration::from_secs(30);
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(text) {
            return screen;
        }
        assert!(
            Instant::now() < cap,
            "the screen never showed {text:?}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn watch_approves_with_a_then_y_and_the_held_request_goes_through_once() {
    let tmux_ok = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !tmux_ok {
        assert!(
            std::env::var_os("BLASTWALL_REQUIRE_SANDBOX").is_none(),
            "tmux is required"
        );
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let up = upstream();
    let w = world(
        &up,
        "[approval]\ntimeout = \"120s\"\nnon_interactive = \"wait\"",
    );
    if !curl_available(&w) {
        return;
    }
    // The agent's path carries an OSC 52 (set the clipboard) and a bidi
    // override, percent-encoded by curl as any client would.
    let url = format!(
        "http://api.example.test:{}/volumes/v1/delete?x=%1B%5D52%3Bc%3BeA%3D%3D%07%E2%80%AE",
        up.port
    );
    let script = format!(r#"echo "r1=$(curl -s -X POST --data one '{url}')""#);
    let mut run = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = next_pending(&w, &[]);
    let id = a["id"].as_str().unwrap().to_owned();
    // The snapshot shows it, and the ask in the session's log.
    let snap = w.run(&["watch", "--once", "--json"]).expect(0).json();
    assert_eq!(id, snap["approvals"][0]["id"].as_str().unwrap(), "{snap}");
    let events = snap["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "decision" && e["verdict"] == "ask"),
        "{snap}"
    );
    let name = format!("bw-watch-{}", std::process::id());
    let _session = TmuxSession(name.clone());
    let cmd = format!(
        "env -i HOME='{}' PATH='{}' TERM=xterm '{}' watch",
        w.home().display(),
        std::env::var("PATH").unwrap_or_default(),
        env!("CARGO_BIN_EXE_blastwall")
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "200",
        "-y",
        "40",
        &cmd,
    ]);
    let screen = wait_screen(&name, &id);
    assert!(!screen.contains('\u{1b}'), "{screen:?}");
    assert!(up.seen.lock().unwrap().is_empty(), "held until the yes");
    tmux(&["send-keys", "-t", &name, "a"]);
    wait_screen(&name, "press y to approve");
    tmux(&["send-keys", "-t", &name, "y"]);
    wait_screen(&name, &format!("{id} approved (once)"));
    tmux(&["send-keys", "-t", &name, "q"]);
    let stdout = succeeded(&mut run);
    assert_eq!(vec!["one"], bodies(&up), "{stdout}");
    assert!(stdout.contains("r1=you sent"), "{stdout}");
    let all = w.run(&["approvals", "--all", "--json"]).expect(0).json();
    let by = all["approvals"][0]["decided_by"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(by.ends_with(" via watch"), "{by}");
}

/// The page is on the host's loopback: from inside the wall neither the
/// proxy (a loopback address is refused unless the manifest declares it)
/// nor a direct connection (the sandbox's own network namespace) reaches
/// it, even with the token in hand.
#[test]
fn the_page_is_out_of_the_agents_reach_even_with_its_token() {
    let up = upstream();
    let w = world(&up, "");
    if !curl_available(&w) {
        return;
    }
    let mut serve = Serve::start(&w);
    let url = serve.url.clone();
    let script = format!(
        "echo \"proxied=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' '{url}')\"\n\
         echo \"direct=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{{http_code}}' '{url}'; echo \" rc=$?\")\"\n"
    );
    let out = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    serve.stop();
    // Through the proxy: refused by the proxy itself (403), never the page's 303.
    assert!(stdout.contains("proxied=403"), "{stdout}");
    // Directly: no connection at all.
    assert!(stdout.contains("direct=000"), "{stdout}");
    assert!(!stdout.contains(" rc=0"), "{stdout}");
}
