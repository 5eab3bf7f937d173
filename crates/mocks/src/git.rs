//! A git remote over smart HTTP(S): each request is handed to git's own
//! `git http-backend` as a CGI program (`shared/scenarios/force-push.md`).
//! Pushes are enabled (`REMOTE_USER` is set); every request is logged.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::json;

use crate::http::{Handler, Request, Response};
use crate::{append_jsonl, now, read_jsonl};

/// A git HTTP remote serving the bare repositories under a directory.
#[derive(Debug, Clone)]
pub struct GitServer {
    root: PathBuf,
    log: PathBuf,
}

impl GitServer {
    /// Serves the bare repositories under `root`
    /// (`https://HOST/NAME.git` is `root/NAME.git`), logging to `log`.
    pub fn new(root: &Path, log: &Path) -> GitServer {
        GitServer {
            root: root.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// Every request so far (`method`, `target`, `status`).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.log)
    }

    /// The request handler.
    pub fn handler(&self) -> Handler {
        let me = self.clone();
        Arc::new(move |req| {
            let resp = me.cgi(req);
            append_jsonl(
                &me.log,
                &json!({"time": now(), "method": req.method, "target": req.target, "status": resp.status}),
            );
            resp
        })
    }

    fn cgi(&self, req: &Request) -> Response {
        let path = req.path();
        if path.split('/').any(|s| s == "..") {
            return Response::new(400, "text/plain", "bad path\n");
        }
        let mut cmd = Command::new("git");
        cmd.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REMOTE_USER", "demo")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", &req.method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", req.query())
            .env("CONTENT_LENGTH", req.body.len().to_string())
            .env("HOME", &self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(t) = req.header("content-type") {
            cmd.env("CONTENT_TYPE", t);
        }
        if let Some(e) = req.header("content-encoding") {
            cmd.env("HTTP_CONTENT_ENCODING", e);
        }
        if let Some(p) = req.header("git-protocol") {
            cmd.env("HTTP_GIT_PROTOCOL", p);
        }
        let Ok(mut child) = cmd.spawn() else {
            return Response::new(500, "text/plain", "cannot start git http-backend\n");
        };
        let body = req.body.clone();
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                let _ = s.write_all(&body);
            }
        });
        let out = child.wait_with_output();
        let _ = writer.join();
        let Ok(out) = out else {
            return Response::new(500, "text/plain", "git http-backend failed\n");
        };
        parse_cgi(&out.stdout)
    }
}

/// A CGI response: headers (with `Status:`), a blank line, the body.
fn parse_cgi(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((i, sep)) = split else {
        return Response::new(500, "text/plain", "bad CGI response\n");
    };
    let head = String::from_utf8_lossy(out.get(..i).unwrap_or_default());
    let mut resp = Response {
        status: 200,
        reason: "OK".into(),
        headers: Vec::new(),
        body: out.get(i + sep..).unwrap_or_default().to_vec(),
    };
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let (code, reason) = v.split_once(' ').unwrap_or((v, ""));
            resp.status = code.parse().unwrap_or(500);
            reason.clone_into(&mut resp.reason);
        } else {
            resp.headers.push((k.trim().to_owned(), v.to_owned()));
        }
    }
    resp
}
