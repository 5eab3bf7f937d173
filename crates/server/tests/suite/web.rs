//! `blastwall serve` over loopback: who gets in, what a change needs, and
//! that hostile text reaches the page only escaped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use blastwall_audit::{AuditLog, FsyncPolicy, Kind};
use blastwall_gate::{ApprovalStore as _, State};
use blastwall_server::web::{CSP, ServeConfig, ServeError, Server};
use blastwall_session::{Home, SessionDir, SessionMeta, process_start_time};
use pretty_assertions::assert_eq;

use super::{HOSTILE, approval, hostile_summary, insert, raw, store};

const BY: &str = "uid 1000 (ana) via web";

struct Running {
    port: u16,
    url: String,
    home: Home,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(home: &Home) -> ServeConfig {
    ServeConfig {
        home: home.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        hosts: Vec::new(),
        by: BY.into(),
        poll: Duration::from_millis(50),
        record: true,
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("bw"));
    let cfg = config(&home);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Server::bind(&cfg).await.unwrap();
            tx.send((s.url(), s.port())).unwrap();
            s.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let (url, port) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Running {
        port,
        url,
        home,
        _dir: dir,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Running {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn token(&self) -> &str {
        self.url.split_once("token=").unwrap().1
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> super::Resp {
        let host = self.host();
        let mut h = vec![("Host", host.as_str())];
        if let Some(c) = cookie {
            h.push(("Cookie", c));
        }
        raw(self.port, "GET", path, &h, "")
    }

    /// Exchanges the token: the cookie (`name=value`) and the page's CSRF token.
    fn login(&self) -> (String, String) {
        let r = self.get(&format!("/?token={}", self.token()), None);
        assert_eq!(303, r.status, "{r:?}");
        let set = r.header("set-cookie").unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = self.get("/", Some(&cookie));
        assert_eq!(200, page.status, "{page:?}");
        let csrf = page
            .body
            .split_once("<meta name=\"csrf\" content=\"")
            .unwrap()
            .1
            .split_once('"')
            .unwrap()
            .0
            .to_owned();
        (cookie, csrf)
    }

    fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        body: &str,
    ) -> super::Resp {
        let host = self.host();
        let mut h = vec![
            ("Host", host.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if let Some(c) = cookie {
            h.push(("Cookie", c));
        }
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        raw(self.port, "POST", path, &h, body)
    }

    fn state(&self, id: &str) -> State {
        store(&self.home).get(id).unwrap().unwrap().state
    }
}

fn assert_secured(r: &super::Resp) {
    assert_eq!(Some(CSP), r.header("content-security-policy"), "{r:?}");
    assert_eq!(Some("DENY"), r.header("x-frame-options"));
    assert_eq!(Some("nosniff"), r.header("x-content-type-options"));
    assert_eq!(Some("same-origin"), r.header("referrer-policy"));
    assert_eq!(Some("no-store"), r.header("cache-control"));
}

#[test]
fn the_csp_allows_no_inline_script_and_no_framing() {
    assert!(CSP.contains("default-src 'self'"));
    assert!(CSP.contains("script-src 'self'"));
    assert!(CSP.contains("frame-ancestors 'none'"));
    assert!(!CSP.contains("unsafe-inline"));
    assert!(!CSP.contains("unsafe-eval"));
}

#[test]
fn without_the_token_nothing_is_served() {
    let s = start();
    for path in [
        "/",
        "/api/approvals",
        "/api/sessions",
        "/api/events",
        "/app.js",
    ] {
        let r = s.get(path, None);
        assert_eq!(401, r.status, "{path}: {r:?}");
        assert_secured(&r);
        assert!(r.header("set-cookie").is_none());
    }
    // A made-up cookie is no better.
    let r = s.get(
        "/api/approvals",
        Some(&format!("blastwall_{}={}", s.port, "00".repeat(32))),
    );
    assert_eq!(401, r.status);
    // A wrong token gets no cookie.
    let r = s.get(&format!("/?token={}", "0".repeat(64)), None);
    assert_eq!(401, r.status);
    assert!(r.header("set-cookie").is_none());
    let r = s.get("/?token=", None);
    assert_eq!(401, r.status);
}

#[test]
fn the_token_becomes_a_strict_httponly_cookie_and_leaves_the_url() {
    let s = start();
    let r = s.get(&format!("/?token={}", s.token()), None);
    assert_eq!(303, r.status);
    assert_secured(&r);
    assert_eq!(Some("/"), r.header("location"));
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        !set.contains(s.token()),
        "the token is not the cookie: {set}"
    );
    let (cookie, csrf) = s.login();
    let page = s.get("/", Some(&cookie));
    assert_secured(&page);
    assert!(
        !page.body.contains(s.token()),
        "the page never shows the token"
    );
    assert_eq!(64, csrf.len());
    // Every script is an external file from the page's own origin.
    for tag in page.body.split("<script").skip(1) {
        let open = tag.split_once('>').unwrap().0;
        assert!(open.contains("src=\"/app.js\""), "inline script: {tag}");
        assert!(tag.split_once('>').unwrap().1.starts_with("</script>"));
    }
    let handlers = page.body.split(" on").skip(1).filter(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        rest[name.len()..].starts_with('=')
    });
    assert_eq!(0, handlers.count(), "no inline event handlers");
    let js = s.get("/app.js", Some(&cookie));
    assert_eq!(200, js.status);
    assert!(!js.body.contains("innerHTML"));
    // serve.json says where the page is, never with the token.
    let info = std::fs::read_to_string(s.home.root().join("serve.json")).unwrap();
    assert!(
        info.contains(&format!("http://127.0.0.1:{}/", s.port)),
        "{info}"
    );
    assert!(!info.contains(s.token()), "{info}");
}

#[test]
fn serve_json_is_removed_when_the_server_stops() {
    let s = start();
    let p = s.home.root().join("serve.json");
    assert!(p.exists());
    let home = s.home.clone();
    drop(s);
    assert!(!p.exists());
    assert!(blastwall_server::serve_file::running_url(&home).is_none());
}

#[test]
fn a_wrong_host_header_is_refused_even_with_the_token() {
    let s = start();
    let path = format!("/?token={}", s.token());
    for host in [
        format!("evil.example:{}", s.port),
        "evil.example".to_owned(),
        format!("127.0.0.1:{}", s.port.wrapping_add(1)),
        format!("127.0.0.2:{}", s.port),
        String::new(),
    ] {
        let r = raw(s.port, "GET", &path, &[("Host", &host)], "");
        assert_eq!(421, r.status, "{host}: {r:?}");
        assert_secured(&r);
        assert!(r.header("set-cookie").is_none());
    }
    // No Host at all (an HTTP/1.1 request without one).
    let r = raw(s.port, "GET", &path, &[], "");
    assert!(r.status == 421 || r.status == 400, "{r:?}");
    // Its own names are fine, in any case.
    for host in [
        format!("localhost:{}", s.port),
        format!("LOCALHOST:{}", s.port),
        format!("[::1]:{}", s.port),
    ] {
        let r = raw(s.port, "GET", &path, &[("Host", &host)], "");
        assert_eq!(303, r.status, "{host}: {r:?}");
    }
    // A rebinding page with a cookie is still refused.
    let (cookie, _) = s.login();
    let evil = format!("evil.example:{}", s.port);
    let r = raw(
        s.port,
        "GET",
        "/api/approvals",
        &[("Host", &evil), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(421, r.status);
}

#[test]
fn a_change_needs_the_cookie_the_csrf_token_and_the_page_origin() {
    let s = start();
    let a = approval("ap-00000000000000a1", "s1", hostile_summary("x"));
    insert(&s.home, &a);
    let (cookie, csrf) = s.login();
    let path = "/approvals/ap-00000000000000a1/approve";
    let good = format!("csrf={csrf}");
    let origin = s.origin();
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, String, u16);
    let cases: Vec<Case<'_>> = vec![
        ("no cookie", None, Some(&origin), good.clone(), 401),
        (
            "cross-origin",
            Some(&cookie),
            Some("http://evil.example"),
            good.clone(),
            403,
        ),
        (
            "another local port",
            Some(&cookie),
            Some("http://127.0.0.1:1"),
            good.clone(),
            403,
        ),
        (
            "null origin",
            Some(&cookie),
            Some("null"),
            good.clone(),
            403,
        ),
        ("no origin", Some(&cookie), None, good.clone(), 403),
        ("no csrf", Some(&cookie), Some(&origin), String::new(), 403),
        (
            "wrong csrf",
            Some(&cookie),
            Some(&origin),
            format!("csrf={}", "1".repeat(64)),
            403,
        ),
    ];
    for (what, c, o, body, status) in cases {
        let r = s.post(path, c, o, &body);
        assert_eq!(status, r.status, "{what}: {r:?}");
        assert_secured(&r);
        assert_eq!(State::Pending, s.state(&a.id), "{what}");
    }
    // A GET never decides.
    let r = s.get(path, Some(&cookie));
    assert_eq!(405, r.status, "{r:?}");
    assert_eq!(State::Pending, s.state(&a.id));
    // The CSRF token of another browser session does not fit this cookie.
    let (_, other_csrf) = s.login();
    let r = s.post(
        path,
        Some(&cookie),
        Some(&origin),
        &format!("csrf={other_csrf}"),
    );
    assert_eq!(403, r.status);
    assert_eq!(State::Pending, s.state(&a.id));
    // All three: approved, by the web, once.
    let r = s.post(path, Some(&cookie), Some(&origin), &good);
    assert_eq!(303, r.status, "{r:?}");
    assert_eq!(Some("/"), r.header("location"));
    let after = store(&s.home).get(&a.id).unwrap().unwrap();
    assert_eq!(State::Approved, after.state);
    assert_eq!(Some(BY), after.decided_by.as_deref());
    let page = s.get("/", Some(&cookie));
    assert!(
        page.body.contains("ap-00000000000000a1 approved (once)"),
        "{}",
        page.body
    );
    // Again: nothing to do.
    let r = s.post(path, Some(&cookie), Some(&origin), &good);
    assert_eq!(303, r.status);
    assert_eq!(State::Approved, s.state(&a.id));
}

#[test]
fn a_deny_through_the_api_keeps_the_note() {
    let s = start();
    let a = approval("ap-00000000000000b2", "s1", hostile_summary("x"));
    insert(&s.home, &a);
    let (cookie, csrf) = s.login();
    let host = s.host();
    let origin = s.origin();
    let r = raw(
        s.port,
        "POST",
        "/approvals/ap-00000000000000b2/deny",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("X-CSRF-Token", &csrf),
            ("Accept", "application/json"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "note=not+in+prod",
    );
    assert_eq!(200, r.status, "{r:?}");
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(true, j["done"]);
    assert_eq!("denied", j["decision"]["approval"]["state"]);
    let after = store(&s.home).get(&a.id).unwrap().unwrap();
    assert_eq!(State::Denied, after.state);
    assert_eq!(Some("not in prod"), after.note.as_deref());
    // Not pending any more: a conflict, nothing changes.
    let r = raw(
        s.port,
        "POST",
        "/approvals/ap-00000000000000b2/approve",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("X-CSRF-Token", &csrf),
            ("Accept", "application/json"),
        ],
        "",
    );
    assert_eq!(409, r.status, "{r:?}");
    assert_eq!(State::Denied, s.state(&a.id));
    // Ids that are not approval ids never reach the store.
    let r = s.post(
        "/approvals/..%2F..%2Fetc/approve",
        Some(&cookie),
        Some(&origin),
        &format!("csrf={csrf}"),
    );
    assert_eq!(404, r.status);
}

#[test]
fn hostile_summaries_reach_the_page_and_the_api_only_escaped() {
    let s = start();
    for (i, h) in HOSTILE.iter().enumerate() {
        let mut a = approval(&format!("ap-{i:016x}"), "s1", hostile_summary(h));
        a.reason = (*h).to_owned();
        a.session = format!("s-{h}");
        insert(&s.home, &a);
    }
    let (cookie, _) = s.login();
    let page = s.get("/", Some(&cookie)).body;
    for bad in [
        "<script>alert",
        "<img",
        "\u{1b}",
        "\u{202e}",
        "\u{43e}",
        "<!channel>",
        "<http://",
    ] {
        assert!(!page.contains(bad), "{bad:?} reached the page:\n{page}");
    }
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("vol_pr\\u{43e}d\\u{202e}dorp_lov"), "{page}");
    assert!(page.contains("\\u{1b}]52;c;"), "{page}");
    // Every approval is there, ten pending.
    assert!(page.contains("Pending approvals (<span id=\"pending-count\">10</span>)"));
    let api = s.get("/api/approvals", Some(&cookie));
    assert_eq!(Some("application/json"), api.header("content-type"));
    let j: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    let texts: Vec<&str> = j["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["summary_text"].as_str().unwrap())
        .collect();
    assert_eq!(10, texts.len());
    for t in texts {
        assert!(
            t.chars()
                .all(|c| (' '..='~').contains(&c) || c == '\u{2014}'),
            "{t:?}"
        );
    }
}

fn fake_session(home: &Home, path: &str) -> String {
    let d = SessionDir::create(home).unwrap();
    let me = std::process::id();
    d.write_meta(&SessionMeta {
        id: d.id(),
        name: Some("\u{1b}[31mred".into()),
        started_ns: blastwall_session::now_ns(),
        command: vec!["sh".into(), "-c".into(), "curl <script>x</script>".into()],
        project: "/p".into(),
        manifest: "/p/blastwall.toml".into(),
        project_mode: "overlay".into(),
        supervisor: Some((me, process_start_time(me).unwrap())),
        exit_code: None,
        layers: serde_json::Value::Null,
        owner: (0, 0),
        closed: None,
    })
    .unwrap();
    let mut log = AuditLog::create(d.audit_log(), &d.id(), FsyncPolicy::Never).unwrap();
    log.append(Kind::SessionStart, serde_json::json!({"command": ["sh"]}))
        .unwrap();
    log.append(
        Kind::Decision,
        serde_json::json!({
            "action": {"kind": "net", "method": "DELETE", "scheme": "http", "host": "api.example.test", "port": 80, "path": path},
            "verdict": "deny",
            "rule": {"id": "default", "file": "blastwall", "line": 0, "col": 0},
            "reason": "default deny",
            "approval": null,
        }),
    )
    .unwrap();
    log.sync().unwrap();
    d.id()
}

/// Reads an event stream until `want` shows up (or 10 s pass).
fn read_stream_until(s: &Running, cookie: &str, want: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        c,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n",
        s.host()
    )
    .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&got).contains(want) {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn live_events_follow_running_sessions_escaped() {
    let s = start();
    let (cookie, _) = s.login();
    let id = fake_session(&s.home, "/v/\u{1b}]52;c;eA==\u{7}<b>");
    let got = read_stream_until(&s, &cookie, "[default]");
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(got.contains("event: hello"), "{got}");
    assert!(got.contains("event: audit"), "{got}");
    assert!(got.contains(&id), "{got}");
    assert!(
        got.contains("deny DELETE http://api.example.test/v/\\\\u{1b}]52;c;eA==\\\\u{7}<b>"),
        "{got}"
    );
    assert!(!got.contains('\u{1b}'), "{got:?}");
    // The sessions list knows it as running, its fields cleaned.
    let j: serde_json::Value =
        serde_json::from_str(&s.get("/api/sessions", Some(&cookie)).body).unwrap();
    let me = j["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap();
    assert_eq!("running", me["status"]);
    assert_eq!("\\u{1b}[31mred", me["name"]);
    let page = s.get("/", Some(&cookie)).body;
    assert!(
        page.contains("curl &lt;script&gt;x&lt;/script&gt;"),
        "{page}"
    );
    // A new pending approval is announced on the stream.
    insert(
        &s.home,
        &approval("ap-00000000000000c3", &id, hostile_summary("y")),
    );
    let got = read_stream_until(&s, &cookie, "\"pending\":1");
    assert!(got.contains("event: approvals"), "{got}");
}

#[test]
fn beyond_loopback_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("bw"));
    let mut cfg = config(&home);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(Server::bind(&cfg));
    assert!(matches!(r, Err(ServeError::NotLoopback(_))), "{r:?}");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("--allow-remote"), "{msg}");
    // With it, the token is still required, and the base URL names the host given.
    cfg.allow_remote = true;
    cfg.hosts = vec!["bw.internal".into()];
    let s = rt.block_on(Server::bind(&cfg)).unwrap();
    assert_eq!(format!("http://bw.internal:{}/", s.port()), s.base_url());
    assert!(s.url().contains("?token="));
}

#[test]
fn another_loopback_address_is_its_own_base() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("bw"));
    let mut cfg = config(&home);
    cfg.listen = "127.0.0.2:0".parse().unwrap();
    cfg.record = false;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(Server::bind(&cfg)).unwrap();
    assert_eq!(format!("http://127.0.0.2:{}/", s.port()), s.base_url());
    // A taken port says what to do.
    cfg.listen = format!("127.0.0.2:{}", s.port()).parse().unwrap();
    let e = rt.block_on(Server::bind(&cfg)).unwrap_err().to_string();
    assert!(e.contains("--port 0"), "{e}");
}
