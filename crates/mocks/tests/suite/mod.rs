mod attacker;
mod git;
mod railway;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Whether `tool --version` runs; a skip says why (and fails under
/// BLASTWALL_REQUIRE_SANDBOX=1, as the CI sets it).
pub(crate) fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("BLASTWALL_REQUIRE_SANDBOX").is_none(),
            "{tool} is required"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

pub(crate) fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// curl against `https://HOST:443` resolved to the mock's port, trusting `ca`.
pub(crate) fn curl(ca: &Path, host: &str, port: u16, args: &[&str]) -> (String, i32) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:443:127.0.0.1"))
        .arg("--connect-to")
        .arg(format!("{host}:443:127.0.0.1:{port}"))
        .args(args)
        .output()
        .unwrap();
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        out.status.code().unwrap_or(-1),
    )
}
