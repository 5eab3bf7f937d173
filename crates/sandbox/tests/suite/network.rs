//! Host sockets and the network: nothing outside is reachable.

use std::os::unix::net::UnixListener;

use super::common::sandbox;

#[test]
fn host_unix_socket_is_unreachable() {
    let Some(mut f) = sandbox() else { return };
    let outside = f.path("host.sock");
    let listener = UnixListener::bind(&outside).unwrap();
    listener.set_nonblocking(true).unwrap();
    // The socket works from outside.
    std::os::unix::net::UnixStream::connect(&outside).unwrap();
    let _ = listener.accept().unwrap();
    let r = f.check(&["unix", outside.to_str().unwrap()]).ok();
    assert_ne!(r.stdout().trim(), "0", "connected to a host unix socket");
    assert!(
        listener.accept().is_err(),
        "the host socket accepted a connection from inside"
    );
}

#[test]
fn host_loopback_tcp_is_unreachable() {
    let Some(mut f) = sandbox() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let r = f.check(&["tcp", &addr]).ok();
    assert_ne!(r.stdout().trim(), "0", "connected to the host's {addr}");
    assert!(
        listener.accept().is_err(),
        "the host listener accepted a connection from inside"
    );
}
