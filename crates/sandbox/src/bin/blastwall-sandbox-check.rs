//! The checker that runs inside the wall and attacks it from the agent's
//! side (youki `tests/contest/runtimetest/`). Each subcommand prints one
//! JSON value on stdout.
//!
//! - `probes`: every forbidden syscall with harmless arguments.
//! - `status`: uid, gid, NoNewPrivs, Seccomp, capabilities from
//!   `/proc/self/status`.
//! - `unix PATH`: connect to a unix socket; prints the errno (0: connected).
//! - `tcp ADDR:PORT`: connect over TCP; prints the errno.
//! - `tcp-read ADDR:PORT`: connect and print the first line received.
//! - `write PATH`: create/append to a file; prints the errno.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

fn errno_of(r: std::io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("probes") => {
            serde_json::to_string(&blastwall_sandbox::probe::run_probes()).unwrap_or_default()
        }
        Some("status") => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let pick = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .map(|l| l[k.len()..].trim().to_owned())
                    .unwrap_or_default()
            };
            serde_json::json!({
                "uid": pick("Uid:"), "gid": pick("Gid:"), "groups": pick("Groups:"),
                "no_new_privs": pick("NoNewPrivs:"), "seccomp": pick("Seccomp:"),
                "cap_eff": pick("CapEff:"), "cap_prm": pick("CapPrm:"), "cap_bnd": pick("CapBnd:"),
            })
            .to_string()
        }
        Some("unix") => {
            let p = args.get(1).cloned().unwrap_or_default();
            errno_of(std::os::unix::net::UnixStream::connect(p).map(drop)).to_string()
        }
        Some("tcp") => {
            let a = args.get(1).cloned().unwrap_or_default();
            let r = a
                .parse::<std::net::SocketAddr>()
                .map_err(|_| std::io::Error::from_raw_os_error(22))
                .and_then(|sa| {
                    std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(5))
                        .map(drop)
                });
            errno_of(r).to_string()
        }
        Some("tcp-read") => {
            use std::io::BufRead;
            let a = args.get(1).cloned().unwrap_or_default();
            match a
                .parse::<std::net::SocketAddr>()
                .map_err(|_| std::io::Error::from_raw_os_error(22))
                .and_then(std::net::TcpStream::connect)
            {
                Ok(s) => {
                    let mut line = String::new();
                    let _ = std::io::BufReader::new(s).read_line(&mut line);
                    serde_json::json!({ "errno": 0, "line": line.trim() }).to_string()
                }
                Err(e) => {
                    serde_json::json!({ "errno": e.raw_os_error().unwrap_or(-1) }).to_string()
                }
            }
        }
        Some("write") => {
            let p = args.get(1).cloned().unwrap_or_default();
            errno_of(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .and_then(|mut f| f.write_all(b"x\n")),
            )
            .to_string()
        }
        _ => {
            eprintln!(
                "usage: blastwall-sandbox-check probes|status|unix PATH|tcp ADDR:PORT|write PATH"
            );
            return ExitCode::from(2);
        }
    };
    println!("{out}");
    ExitCode::SUCCESS
}
