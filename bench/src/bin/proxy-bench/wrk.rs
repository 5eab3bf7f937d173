//! A cross-check with `wrk` (Debian's, C, epoll) as the load generator for
//! plain GET: wrk does not speak to proxies, so a Lua script makes its
//! requests absolute-form (`wrk.path = "http://host:port/get"`) with the
//! upstream's `Host`, sent to the proxy's address.

use std::path::Path;
use std::process::Command;

use crate::load::{Outcome, Plan, Route, Target};

/// wrk's latency figure (`123.45us`, `1.23ms`, `1.00s`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// Parses wrk's `--latency` report.
fn parse(out: &str) -> Outcome {
    let mut o = Outcome {
        rps: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        ..Outcome::default()
    };
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("50%") {
            o.p50_us = micros(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("99%") {
            o.p99_us = micros(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            o.rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            o.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            o.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    o
}

/// Runs wrk (warm-up run, then the measured run) against `target`; the CPU
/// of `pids` is accounted over the measured run.
pub(crate) fn measure(
    wrk: &Path,
    dir: &Path,
    target: &Target,
    plan: Plan,
    pids: &[u32],
) -> Outcome {
    let script = dir.join(format!("wrk-{}.lua", target.addr.port()));
    let path = match target.route {
        Route::Absolute => format!("http://{}/get", target.authority),
        Route::Direct | Route::Connect => "/get".to_owned(),
    };
    let lua = format!(
        "wrk.path = \"{path}\"\nwrk.headers[\"Host\"] = \"{}\"\nwrk.headers[\"User-Agent\"] = \"proxy-bench\"\n",
        target.authority
    );
    if let Err(e) = std::fs::write(&script, lua) {
        return Outcome {
            errors: 1,
            first_error: Some(e.to_string()),
            ..Outcome::default()
        };
    }
    let run = |secs: f64| {
        Command::new(wrk)
            .arg("-t2")
            .arg(format!("-c{}", plan.conns))
            .arg(format!("-d{}s", secs.ceil().max(1.0)))
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{}/", target.addr))
            .output()
    };
    if plan.warmup.as_secs_f64() > 0.0 {
        let _ = run(plan.warmup.as_secs_f64());
    }
    let ticks = crate::load::clock_ticks();
    let before: Vec<f64> = pids
        .iter()
        .map(|p| crate::load::cpu_seconds(*p, ticks))
        .collect();
    let out = run(plan.duration.as_secs_f64());
    let spent: Vec<f64> = pids
        .iter()
        .zip(before)
        .map(|(p, b)| crate::load::cpu_seconds(*p, ticks) - b)
        .collect();
    match out {
        Ok(out) if out.status.success() => {
            let mut o = parse(&String::from_utf8_lossy(&out.stdout));
            let n = o.rps * plan.duration.as_secs_f64().ceil().max(1.0);
            // The load generator is wrk's process: not accounted (NaN).
            o.cpu_us = spent
                .iter()
                .enumerate()
                .map(|(i, s)| if i == 0 { f64::NAN } else { s * 1e6 / n })
                .collect();
            o
        }
        Ok(out) => Outcome {
            errors: 1,
            first_error: Some(format!(
                "wrk failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            ..Outcome::default()
        },
        Err(e) => Outcome {
            errors: 1,
            first_error: Some(format!("cannot run {}: {e}", wrk.display())),
            ..Outcome::default()
        },
    }
}
