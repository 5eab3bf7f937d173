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
        .filter(|e| e["kind"] == "alert" && e["data"]["rule"] == "proxy.framing")
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
