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

// A host socket inside a read-write project: a bind does not stop
// connect(), so the supervisor covers every socket /proc/net/unix lists
// under a grant with a decoy.
#[test]
fn host_unix_socket_inside_a_granted_tree_is_unreachable() {
    let Some(mut f) = sandbox() else { return };
    f.spec.project_mode = blastwall_sandbox::ProjectMode::ReadWrite;
    let inside = f.path("proj/db.sock");
    let listener = UnixListener::bind(&inside).unwrap();
    listener.set_nonblocking(true).unwrap();
    // Anyone may connect: only the wall stands in the way.
    std::fs::set_permissions(&inside, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let r = f.check(&["unix", inside.to_str().unwrap()]).ok();
    assert_ne!(
        r.stdout().trim(),
        "0",
        "connected to a host socket in the project"
    );
    assert!(
        listener.accept().is_err(),
        "the host socket accepted a connection from inside"
    );
}

// The one way out the proxy issue opens: a listener inside the sandbox's
// network namespace, accepted on by the supervisor; other loopback ports
// stay closed (Landlock connect rules).
#[test]
fn loopback_listener_reaches_the_supervisor_only() {
    let Some(mut f) = sandbox() else { return };
    f.spec.loopback_listeners = vec![3128];
    let r = f.check(&["tcp-read", "127.0.0.1:3128"]).ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout().trim()).unwrap();
    assert_eq!(v["line"], "hello from the supervisor on 3128", "{v}");
    // Another port inside: refused by Landlock (EACCES) or nothing there.
    let r = f.check(&["tcp-read", "127.0.0.1:3129"]).ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout().trim()).unwrap();
    assert_ne!(v["errno"], 0, "{v}");
}
