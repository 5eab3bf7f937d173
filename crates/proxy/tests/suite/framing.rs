//! Requests two parsers could read differently are refused; the upstream
//! never sees them.

use super::common::Harness;

fn refused(h: &Harness, req: &str, why: &str) {
    let out = h.raw(req.as_bytes());
    assert!(out.starts_with("HTTP/1.1 400"), "{why}: {out}");
    assert!(out.contains("proxy.framing"), "{why}: {out}");
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let h = Harness::start();
    refused(
        &h,
        "POST http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "CL+TE",
    );
    refused(
        &h,
        "POST http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "TE+CL",
    );
    refused(
        &h,
        "GET http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nHost: other.test\r\n\r\n",
        "duplicate Host",
    );
    refused(
        &h,
        "GET http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nX-A: a\r\n b\r\n\r\n",
        "obs-fold",
    );
    refused(
        &h,
        "GET http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        "h2c",
    );
    refused(
        &h,
        "POST http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "a coding before chunked",
    );
    refused(
        &h,
        "POST http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "repeated Content-Length",
    );
    assert!(h.seen().is_empty(), "{:?}", h.seen());
    let alerts = h
        .audit_events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "decision"
                && e["data"]["verdict"] == "deny"
                && e["data"]["rule"]["id"] == "proxy.framing"
        })
        .count();
    assert_eq!(7, alerts);
}

#[test]
fn a_host_header_naming_another_host_is_refused() {
    let h = Harness::start();
    let out = h
        .raw(b"GET http://other.test/x HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("proxy.host-mismatch"), "{out}");
    assert!(h.seen().is_empty());
}

#[test]
fn pipelined_requests_are_each_decided() {
    let h = Harness::start();
    let out = h.raw(
        b"GET http://other.test/1 HTTP/1.1\r\nHost: other.test\r\n\r\nGET http://denied.test/2 HTTP/1.1\r\nHost: denied.test\r\n\r\nGET http://other.test/3 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i..i + 12])
        .collect();
    assert_eq!(3, statuses.len(), "{out}");
    assert!(
        statuses[0].contains("200") && statuses[1].contains("403") && statuses[2].contains("200"),
        "{out}"
    );
    let paths: Vec<String> = h.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(vec!["/1".to_owned(), "/3".to_owned()], paths);
}

#[test]
fn inside_a_tunnel_the_host_header_must_name_the_connect_target() {
    let h = Harness::start();
    let (_, text) = h.curl(&["-H", "Host: denied.test", "https://other.test/x"]);
    assert_eq!(400, super::common::final_status(&text), "{text}");
    assert!(text.contains("proxy.host-mismatch"), "{text}");
    assert!(h.seen().is_empty());
}

#[test]
fn tls_sni_must_name_the_connect_target() {
    let h = Harness::start();
    // CONNECT to other.test, then a TLS handshake whose SNI says echo.test.
    let script = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n")
resp = b""
while b"\r\n\r\n" not in resp:
    resp += s.recv(1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    t = ctx.wrap_socket(s, server_hostname="echo.test")
    t.sendall(b"GET /x HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n")
    print("ANSWERED", t.recv(100))
except Exception as e:
    print("REFUSED", type(e).__name__)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(h.proxy_url.trim_start_matches("http://"))
        .arg(&h.ca_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("REFUSED"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.seen().is_empty());
    let alerts = h
        .audit_events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "decision"
                && e["data"]["verdict"] == "deny"
                && e["data"]["rule"]["id"] == "proxy.host-mismatch"
        })
        .count();
    assert_eq!(1, alerts);
}

#[test]
fn the_bytes_held_across_connections_are_bounded() {
    let h = Harness::with_limits(
        "",
        None,
        blastwall_proxy::Limits {
            max_held_bytes: 16 * 1024,
            connect_timeout: std::time::Duration::from_millis(500),
            ..blastwall_proxy::Limits::default()
        },
    );
    let big = "x".repeat(32 * 1024);
    let req = format!(
        "POST http://other.test/big HTTP/1.1\r\nHost: other.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let out = h.raw(req.as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 503"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(
        out.contains("request bytes"),
        "{}",
        &out[..out.len().min(600)]
    );
    let small = "y".repeat(8 * 1024);
    let req = format!(
        "POST http://other.test/small HTTP/1.1\r\nHost: other.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{small}",
        small.len()
    );
    let out = h.raw(req.as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(300)]
    );
    let paths: Vec<String> = h.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(vec!["/small".to_owned()], paths);
}

#[test]
fn a_head_with_many_headers_is_read_up_to_the_limit_and_refused_past_it() {
    let h = Harness::start();
    let head = |n: usize| {
        let mut r = String::from(
            "GET http://other.test/many HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n",
        );
        for i in 0..n {
            r.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        r.push_str("\r\n");
        r
    };
    // 60 headers: past the 32 read without allocating, within the 128 allowed.
    let out = h.raw(head(60).as_bytes());
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = h.raw(head(200).as_bytes());
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(out.contains("too many request headers"), "{out}");
    let seen = h.seen();
    assert_eq!(1, seen.len());
    assert_eq!(Some("59"), seen[0].header("x-h59"));
}
