//! WebSocket upgrades: the handshake is decided like a GET; once the
//! upstream accepts, bytes flow both ways unchanged. A host with a bound
//! credential gets none (its frames could carry the real value back).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::common::Harness;

/// An upstream that answers any handshake with 101 and then echoes.
fn ws_upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !text.contains("upgrade: websocket") {
                    let _ =
                        c.write_all(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n");
                    return;
                }
                let _ = c.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
                let mut buf = [0u8; 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

fn handshake(h: &Harness, host: &str) -> (TcpStream, String) {
    let addr = h.proxy_url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET http://{host}/chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn an_allowed_websocket_is_spliced_after_its_handshake_is_decided() {
    let port = ws_upstream();
    let h = Harness::with_rules(&format!(
        "\"ws.test:80\" = \"127.0.0.1:{port}\"\n[[network.rule]]\nhost = \"ws.test\"\nmethods = [\"GET\"]\nverdict = \"allow\"\n"
    ));
    let (mut s, head) = handshake(&h, "ws.test");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("sec-websocket-accept"),
        "{head}"
    );
    s.write_all(b"\x81\x05hello").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\x81\x05hello");
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(&h.audit).unwrap();
    assert!(
        log.contains("ws.test") && log.contains("\"allow\""),
        "{log}"
    );
}

#[test]
fn a_websocket_is_denied_like_its_get_and_refused_to_a_bound_host() {
    let port = ws_upstream();
    let h = Harness::with_rules(&format!("\"ws.test:80\" = \"127.0.0.1:{port}\"\n"));
    let (_, head) = handshake(&h, "ws.test");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // echo.test has a bound credential: frames cannot be scanned.
    let (mut s, head) = handshake(&h, "echo.test");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The refusal keeps the connection open: read its body by its length.
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let rest = String::from_utf8_lossy(&body);
    assert!(rest.contains("proxy.websocket"), "{head}{rest}");
}
