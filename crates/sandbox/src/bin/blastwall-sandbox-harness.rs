//! Test harness: runs one sandbox from a JSON spec, the way the `blastwall`
//! binary will (same hidden init entry point).
//!
//! - `blastwall-sandbox-harness run SPEC.json OUTCOME.json [LATE.json]`:
//!   runs the spec, writes the [`RunOutcome`] (or `{"error": "..."}`) to
//!   OUTCOME.json and exits with the command's shell status (125 on a
//!   sandbox error). LATE.json, a list of injected files, is what the
//!   harness gives at [`SupervisorHooks::before_start`].
//! - `blastwall-sandbox-harness filter-only CMD [ARGS…]`: sets
//!   no_new_privs, installs only the seccomp filter and executes CMD, to
//!   prove each rule where the kernel alone would allow the call.
//! - `blastwall-sandbox-harness doctor`: prints the doctor report as JSON.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use blastwall_sandbox::{InjectedFile, SandboxSpec, SupervisorHooks};

/// Accepts on the loopback listeners from the supervisor side and greets
/// each connection, so tests can see the one way out work; gives the
/// injected files of LATE.json before the start.
struct Greeter {
    late: Vec<InjectedFile>,
}

impl SupervisorHooks for Greeter {
    fn before_start(&mut self) -> Result<Vec<InjectedFile>, String> {
        Ok(std::mem::take(&mut self.late))
    }

    fn loopback_listeners(
        &mut self,
        listeners: Vec<(u16, std::net::TcpListener)>,
    ) -> Result<(), String> {
        use std::io::Write;
        for (port, l) in listeners {
            std::thread::spawn(move || {
                for mut conn in l.incoming().flatten() {
                    let _ = writeln!(conn, "hello from the supervisor on {port}");
                }
            });
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    blastwall_sandbox::harden_self();
    if let Some(code) = blastwall_sandbox::init_if_requested() {
        return code;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("run") => {
            blastwall_sandbox::clone_init_ahead();
            run(&args[1..])
        }
        // The same, with the init cloned and executed by `run` itself.
        Some("run-exec") => run(&args[1..]),
        Some("filter-only") => filter_only(&args[1..]),
        Some("doctor") => {
            let report = blastwall_sandbox::doctor();
            match serde_json::to_string_pretty(&report) {
                Ok(s) => {
                    println!("{s}");
                    if report.can_run {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(_) => ExitCode::from(2),
            }
        }
        _ => {
            eprintln!(
                "usage: blastwall-sandbox-harness run|run-exec SPEC.json OUTCOME.json | filter-only CMD... | doctor"
            );
            ExitCode::from(2)
        }
    }
}

fn run(args: &[std::ffi::OsString]) -> ExitCode {
    let (Some(spec_path), Some(out_path)) = (args.first(), args.get(1)) else {
        eprintln!("run needs SPEC.json OUTCOME.json");
        return ExitCode::from(2);
    };
    let spec: SandboxSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read the spec: {e}");
            return ExitCode::from(2);
        }
    };
    let late: Vec<InjectedFile> = match args.get(2).map(|p| {
        std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    }) {
        None => Vec::new(),
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            eprintln!("cannot read the late injected files: {e}");
            return ExitCode::from(2);
        }
    };
    let result = blastwall_sandbox::run(&spec, &mut Greeter { late });
    let (json, code) = match &result {
        Ok(outcome) => (
            serde_json::to_string_pretty(outcome).unwrap_or_default(),
            outcome.status.as_shell_code(),
        ),
        Err(e) => (
            serde_json::json!({ "error": e.to_string() }).to_string(),
            125,
        ),
    };
    if std::fs::write(out_path, json).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

fn filter_only(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Some(cmd) = args.first() else {
        return ExitCode::from(2);
    };
    if let Err(e) = blastwall_sandbox::seccomp::install_for_test() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let err = std::process::Command::new(cmd).args(&args[1..]).exec();
    eprintln!("cannot execute {}: {err}", cmd.to_string_lossy());
    ExitCode::from(127)
}
