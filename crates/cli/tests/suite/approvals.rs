//! A person's yes, end to end: a real curl inside the wall is held on an
//! `ask` rule; `blastwall approve` from outside lets it through once; the
//! recording upstream is the judge (shared/scenarios/pocketos.md).

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::World;
use super::network::{Upstream, curl_available, upstream};

fn world(up: &Upstream, timeout: &str) -> World {
    ask_world(
        up,
        &format!("[approval]\ntimeout = \"{timeout}\"\nnon_interactive = \"wait\""),
    )
}

/// A trusted project whose POSTs and DELETEs to `api.example.test` (the
/// recording upstream) are asks, with `approval` (an `[approval]` table, or
/// nothing) added to its manifest.
pub(super) fn ask_world(up: &Upstream, approval: &str) -> World {
    let w = World::new();
    w.write(
        "project/blastwall.toml",
        &format!(
            r#"version = 1
[[network.rule]]
host = "api.example.test"
ports = [{p}]
methods = ["POST", "DELETE"]
verdict = "ask"
reason = "volumes are deleted only with a person's yes"
[network.resolve]
"api.example.test:{p}" = "127.0.0.1:{p}"
{approval}
{accept}"#,
            p = up.port,
            accept = super::accept_missing_here(&w),
        ),
    );
    w.run(&["trust"]).expect(0);
    super::give_to_agent(&w.project());
    w
}

/// Waits for a pending approval whose id is not in `seen`.
pub(super) fn next_pending(w: &World, seen: &[String]) -> Value {
    let start = Instant::now();
    loop {
        let j = w.run(&["approvals", "--json"]).expect(0).json();
        if let Some(a) = j["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| !seen.contains(&a["id"].as_str().unwrap().to_owned()))
        {
            return a.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no new pending approval"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bodies the recording upstream received, in order.
pub(super) fn bodies(up: &Upstream) -> Vec<String> {
    up.seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.rsplit_once('\n').map_or("", |(_, b)| b).to_owned())
        .collect()
}

#[test]
fn a_yes_lets_the_held_request_through_exactly_once() {
    let up = upstream();
    let w = world(&up, "60s");
    if !curl_available(&w) {
        return;
    }
    let url = format!("http://api.example.test:{}/volumes/v1/delete", up.port);
    let bw = env!("CARGO_BIN_EXE_blastwall");
    let script = format!(
        r#"curl -s -X POST --data one {url} > r1.txt 2>&1 &
sleep 3
# From inside: the store, the approve command and the control socket are out of reach.
"{bw}" approvals --json > inside.txt 2>&1; echo "inside-approvals-rc=$?" >> inside.txt
ls -la "$HOME/.local/share/blastwall" >> inside.txt 2>&1
wait
echo "r1=$(cat r1.txt)"
echo "r2=$(curl -s -X POST --data one {url})"
echo "r3=$(curl -s -X POST --data two {url})"
echo "inside=$(cat inside.txt | tr '\n' ' ')"
"#
    );
    let mut child = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let first = next_pending(&w, &[]);
    let id1 = first["id"].as_str().unwrap().to_owned();
    assert_eq!(
        first["summary_text"],
        format!(
            "POST /volumes/v1/delete on api.example.test:{} \u{2014} HTTP POST",
            up.port
        )
    );
    // Held: the upstream has seen nothing yet.
    std::thread::sleep(Duration::from_secs(4));
    assert!(up.seen.lock().unwrap().is_empty());
    let ok = w
        .run(&["approve", &id1, "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(ok["state"], "approved");

    // The same request again asks again, with the same digest.
    let second = next_pending(&w, std::slice::from_ref(&id1));
    let id2 = second["id"].as_str().unwrap().to_owned();
    assert_eq!(first["digest"], second["digest"]);
    w.run(&["deny", &id2, "--note", "not this one"]).expect(0);

    // Another body is another approval.
    let third = next_pending(&w, &[id1.clone(), id2.clone()]);
    assert_ne!(first["digest"], third["digest"]);
    let id3 = third["id"].as_str().unwrap().to_owned();
    w.run(&["approve", &id3, "--yes"]).expect(0);

    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(vec!["one", "two"], bodies(&up), "{stdout}");
    assert!(stdout.contains("r1=you sent"), "{stdout}");
    assert!(stdout.contains("denied by"), "{stdout}");
    assert!(stdout.contains("not this one"), "{stdout}");
    assert!(stdout.contains("r3=you sent"), "{stdout}");
    // Inside, nothing of the queue was visible.
    let inside = stdout.lines().find(|l| l.starts_with("inside=")).unwrap();
    assert!(!inside.contains(&id1), "{inside}");
    assert!(!inside.contains("approvals.db"), "{inside}");
    assert!(!inside.contains("\"pending\""), "{inside}");
    // The banner went to the user's stderr, never to the agent's output.
    assert!(
        stderr.contains(&format!("APPROVAL NEEDED {id1}")),
        "{stderr}"
    );
    assert!(!stdout.contains("APPROVAL NEEDED"), "{stdout}");
    // A used approval cannot be used again.
    let again = w.run(&["approve", &id1, "--yes"]);
    assert_eq!(1, again.code(), "{}", again.stderr());
    assert!(again.stderr().contains("consumed"), "{}", again.stderr());
    w.run(&["log", "verify"]).expect(0);
    let log = w.run(&["log", "--json"]).expect(0).stdout();
    assert!(log.contains(&id1) && log.contains("\"approved\""), "{log}");
}

#[test]
fn silence_and_a_closed_connection_are_denies() {
    let up = upstream();
    let w = world(&up, "2s");
    if !curl_available(&w) {
        return;
    }
    let url = format!("http://api.example.test:{}/volumes/v1", up.port);
    let script = format!(
        r#"echo "timeout=$(curl -s -X DELETE {url})"
curl -s --max-time 1 -X DELETE {url}/gone; echo "gone-rc=$?"
sleep 3
"#
    );
    let out = w
        .command(&w.project(), &["run", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("nobody answered within 2s"), "{stdout}");
    assert!(stdout.contains("gone-rc=28"), "{stdout}");
    assert!(up.seen.lock().unwrap().is_empty());
    let all = w.run(&["approvals", "--all", "--json"]).expect(0).json();
    let states: Vec<&str> = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"expired"), "{states:?}");
    assert!(states.contains(&"abandoned"), "{states:?}");
    let abandoned = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "abandoned")
        .unwrap();
    let late = w.run(&["approve", abandoned["id"].as_str().unwrap(), "--yes"]);
    assert_eq!(1, late.code());
    assert!(up.seen.lock().unwrap().is_empty());
}

#[test]
fn a_flood_of_asks_is_capped_and_the_supervisor_stays_usable() {
    let up = upstream();
    let w = world(&up, "4s");
    if !curl_available(&w) {
        return;
    }
    // 300 asks at once, each with a fresh nonce so none collapse.
    let script = format!(
        r#"import concurrent.futures, urllib.request
def ask(i):
    req = urllib.request.Request("http://api.example.test:{p}/volumes/v%d?nonce=%d" % (i, i), method="DELETE")
    try:
        urllib.request.urlopen(req, timeout=30).read()
        return "through"
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        return "capped" if "already waiting" in body else "refused"
    except Exception as e:
        return "error " + type(e).__name__
with concurrent.futures.ThreadPoolExecutor(max_workers=150) as ex:
    results = list(ex.map(ask, range(300)))
for k in sorted(set(results)):
    print(k, results.count(k))
"#,
        p = up.port
    );
    let mut child = w
        .command(&w.project(), &["run", "--", "python3", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // While the flood is held, the queue answers and is capped.
    let start = Instant::now();
    let mut most = 0usize;
    while start.elapsed() < Duration::from_secs(3) {
        let j = w.run(&["approvals", "--json"]).expect(0).json();
        most = most.max(j["approvals"].as_array().unwrap().len());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(most > 0 && most <= 64, "pending at most 64, saw {most}");
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "{stdout}");
    assert!(!stdout.contains("through"), "{stdout}");
    assert!(!stdout.contains("error"), "{stdout}");
    assert!(stdout.contains("capped"), "{stdout}");
    assert!(up.seen.lock().unwrap().is_empty());
    let log = w.run(&["log", "--json"]).expect(0).stdout();
    assert!(log.contains("approval-flood"), "the cap is alerted");
    w.run(&["log", "verify"]).expect(0);
}
