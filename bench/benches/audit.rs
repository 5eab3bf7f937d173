//! Audit append throughput (DESIGN.md §8: ≥ 100 k events/s hash-chained
//! with batched fsync; ≥ 10 k events/s durable before forward).
//!
//! Each sample writes a fresh log under `CARGO_TARGET_TMPDIR` (on the same
//! file system as the target directory, so `fdatasync` is real: not a
//! tmpfs) and times appending `iters` decision records of the size the gate
//! writes (~600 bytes), so criterion's "time" is the cost of one event and
//! its throughput line is events per second. Creating the log and its
//! `session-start` are outside the timed part; the file is removed after.
//!
//! Cases:
//!
//! - `never`: `FsyncPolicy::Never`, append only: encoding, SHA-256 chain,
//!   one `write(2)` per record.
//! - `batch_unsynced`: `FsyncPolicy::Batch` with no `sync()` call: what a
//!   side-effect-free read pays before it is released.
//! - `batch_durable_N`: `Batch`, `sync()` after every N appends (group
//!   commit): every event is durable, N share one `fdatasync`.
//! - `floor_write_fdatasync`: no log, a 600-byte `write(2)` and an
//!   `fdatasync`: what one durable record cannot be faster than here.
//! - `always`: `FsyncPolicy::Always`, one `fdatasync` per event.
//! - `batch_checkpointed`: as `batch_unsynced`, with signed checkpoints
//!   every 1000 records (each one an ed25519 signature, a `fdatasync` of
//!   the log and one of the heads file).
//! - `never_file_sink`: as `never`, with a file sink on the tap (the copy is
//!   written by the sink's thread, which shares the two cores).
//!
//! And, in `audit_durable_threads`, 4 or 16 threads each appending a record
//! and waiting until it is durable (the gate's pattern for actions with side
//! effects, `Batch` policy): `sync_under_lock_N` syncs while holding the
//! log's mutex, as `Gate` did before group commit; `syncer_group_commit_N` releases it and
//! syncs through a `Syncer`, so one `fdatasync` covers every record
//! appended meanwhile. Each record's `Value` is built (before taking the
//! lock) inside the timed part here.
//!
//! And, in `gate_request`, what the gate costs one proxied request end to
//! end: `Gate::check_with` on a GET (decide, build the decision record,
//! encode, chain, write) then `Gate::outcome` (the outcome record), on a
//! 200-rule manifest, `FsyncPolicy::Batch` (a read: written, not synced),
//! with group commit as the proxy runs it. `Gate::check_with` + `outcome`
//! is the one API this case uses, so it runs unchanged on older trees for
//! before/after figures.

use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blastwall_audit::sinks::{SinkConfig, Sinks};
use blastwall_audit::{AuditLog, CheckpointEvery, Checkpointer, FsyncPolicy, Kind, SigningKey};
use blastwall_bench::{BUSY_HOST, HOME, PROJECT_ROOT, manifest};
use blastwall_gate::Gate;
use blastwall_policy::{Action, Context, NetAction, Origin, Source, Verdict};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

/// A decision record's data, as the gate writes one for a proxied GET.
fn decision(i: u64) -> Value {
    json!({
        "action": {
            "kind": "net", "method": "GET", "scheme": "https",
            "host": "api.example-39.com", "port": 443,
            "path": format!("/v2/repos/blastwall/releases/{i}/assets"),
            "query": null,
            "headers": ["accept", "authorization", "user-agent"],
            "body": null,
        },
        "verdict": "allow",
        "rule": {"id": "network.rule[199]", "file": "blastwall.toml", "line": 812},
        "reason": "GET on api.example-39.com /v2/repos/** is allowed",
        "labels": ["read"],
        "approval": null,
    })
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Records prepared at a time outside the timed part.
const CHUNK: u64 = 1024;

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn fresh_log(policy: FsyncPolicy) -> (PathBuf, AuditLog) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = scratch().join(format!("bench-{}-{n}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut log = match AuditLog::create(&path, "bench", policy) {
        Ok(log) => log,
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    };
    if let Err(e) = log.append(Kind::SessionStart, json!({})) {
        panic!("cannot start the log: {e}");
    }
    (path, log)
}

/// Times `iters` appends on a fresh log, calling `sync()` every `sync_every`
/// appends (0: never) and once at the end.
fn run(
    iters: u64,
    policy: FsyncPolicy,
    sync_every: u64,
    setup: impl FnOnce(AuditLog) -> AuditLog,
) -> Duration {
    let (path, log) = fresh_log(policy);
    let mut log = setup(log);
    let template: Vec<Value> = (0..CHUNK).map(decision).collect();
    // The records' data is cloned outside the timed part, a chunk at a
    // time: building a `Value` is the caller's cost, not the log's.
    let mut took = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let chunk: Vec<Value> = template
            .iter()
            .take(usize::try_from(n).unwrap_or(0))
            .cloned()
            .collect();
        let start = Instant::now();
        for d in chunk {
            if let Err(e) = log.append(Kind::Decision, black_box(d)) {
                panic!("append failed: {e}");
            }
            done += 1;
            if sync_every > 0
                && done.is_multiple_of(sync_every)
                && let Err(e) = log.sync()
            {
                panic!("sync failed: {e}");
            }
        }
        if done == iters
            && sync_every > 0
            && let Err(e) = log.sync()
        {
            panic!("sync failed: {e}");
        }
        took += start.elapsed();
    }
    drop(log);
    let _ = std::fs::remove_file(&path);
    took
}

/// The floor of a durable record on this disk: `iters` times a 600-byte
/// `write(2)` and an `fdatasync`, no log.
fn floor(iters: u64) -> Duration {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = scratch().join(format!("floor-{}-{n}.bin", std::process::id()));
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let record = [b'x'; 600];
    let start = Instant::now();
    for _ in 0..iters {
        if let Err(e) = file.write_all(&record).and_then(|()| file.sync_data()) {
            panic!("{e}");
        }
    }
    let took = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    took
}

/// Times `iters` durable appends from `threads` threads sharing one log
/// behind a mutex, as the gate does: each appends under the lock, then
/// either syncs under it too (`syncer` false: what `Gate` did before group commit) or
/// releases it and waits on a shared [`blastwall_audit::Syncer`] (group
/// commit across threads).
fn run_threads(iters: u64, threads: u64, syncer: bool) -> Duration {
    let (path, log) = fresh_log(FsyncPolicy::Batch);
    let sync = match log.syncer() {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("{e}"),
    };
    let log = Arc::new(Mutex::new(log));
    let per = iters.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            let sync = Arc::clone(&sync);
            std::thread::spawn(move || {
                for i in 0..per {
                    let data = decision(t * per + i);
                    let mut guard = log.lock().unwrap_or_else(PoisonError::into_inner);
                    let seq = match guard.append(Kind::Decision, data) {
                        Ok(a) => a.seq,
                        Err(e) => panic!("append failed: {e}"),
                    };
                    let synced = if syncer {
                        drop(guard);
                        sync.sync_through(seq)
                    } else {
                        guard.sync()
                    };
                    if let Err(e) = synced {
                        panic!("sync failed: {e}");
                    }
                }
            })
        })
        .collect();
    for t in handles {
        if t.join().is_err() {
            panic!("a bench thread panicked");
        }
    }
    let took = start.elapsed();
    drop(log);
    let _ = std::fs::remove_file(&path);
    // `per * threads` events were written; scale to `iters`.
    took.mul_f64(iters as f64 / (per * threads) as f64)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("never", |b| {
        b.iter_custom(|iters| run(iters, FsyncPolicy::Never, 0, |l| l));
    });
    g.bench_function("batch_unsynced", |b| {
        b.iter_custom(|iters| run(iters, FsyncPolicy::Batch, 0, |l| l));
    });
    for n in [1u64, 16, 64, 256] {
        g.bench_function(format!("batch_durable_{n}"), |b| {
            b.iter_custom(|iters| run(iters, FsyncPolicy::Batch, n, |l| l));
        });
    }
    g.bench_function("floor_write_fdatasync", |b| {
        b.iter_custom(floor);
    });
    g.bench_function("always", |b| {
        b.iter_custom(|iters| run(iters, FsyncPolicy::Always, 0, |l| l));
    });
    g.bench_function("batch_checkpointed", |b| {
        b.iter_custom(|iters| {
            let heads = scratch().join(format!("heads-{}.jsonl", std::process::id()));
            let took = run(iters, FsyncPolicy::Batch, 0, |l| {
                let cp = Checkpointer {
                    key: match SigningKey::from_seed(&[3; 32]) {
                        Ok(k) => k,
                        Err(e) => panic!("{e}"),
                    },
                    heads_path: heads.clone(),
                    every: CheckpointEvery {
                        records: 1000,
                        interval: None,
                    },
                };
                match l.with_checkpoints(cp) {
                    Ok(l) => l,
                    Err(e) => panic!("{e}"),
                }
            });
            let _ = std::fs::remove_file(&heads);
            took
        });
    });
    g.bench_function("never_file_sink", |b| {
        b.iter_custom(|iters| {
            let copy = scratch().join(format!("copy-{}.jsonl", std::process::id()));
            let sinks =
                match Sinks::start(vec![SinkConfig::File { path: copy.clone() }], &scratch()) {
                    Ok(s) => Arc::new(s),
                    Err(e) => panic!("{e}"),
                };
            let tap = Arc::clone(&sinks);
            let took = run(iters, FsyncPolicy::Never, 0, move |l| l.with_tap(tap));
            sinks.flush(Duration::from_secs(60));
            let _ = std::fs::remove_file(&copy);
            took
        });
    });
    g.finish();

    let mut g = c.benchmark_group("audit_durable_threads");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for threads in [4u64, 16] {
        g.bench_function(format!("sync_under_lock_{threads}"), |b| {
            b.iter_custom(|iters| run_threads(iters, threads, false));
        });
        g.bench_function(format!("syncer_group_commit_{threads}"), |b| {
            b.iter_custom(|iters| run_threads(iters, threads, true));
        });
    }
    g.finish();
}

/// `iters` GETs through `Gate::check_with` and `Gate::outcome`, on a fresh
/// log under `Batch` with group commit.
fn run_gate(iters: u64, gate_policy: &Arc<blastwall_policy::Policy>, action: &Action) -> Duration {
    let (path, log) = fresh_log(FsyncPolicy::Batch);
    let gate = match Gate::new(Arc::clone(gate_policy), log).with_group_commit() {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let start = Instant::now();
    for _ in 0..iters {
        let release = match gate.check_with(black_box(action), false) {
            Ok(r) => r,
            Err(r) => panic!("refused: {r}"),
        };
        if let Err(e) = gate.outcome(
            &release,
            "forwarded",
            json!({"status": 200, "upstream": "127.0.0.1:443"}),
        ) {
            panic!("{e}");
        }
    }
    let took = start.elapsed();
    drop(gate);
    let _ = std::fs::remove_file(&path);
    took
}

fn gate_request(c: &mut Criterion) {
    let cx = Context {
        origin: Origin::Project,
        project_root: PROJECT_ROOT.into(),
        home: HOME.into(),
        user: None,
        enforce: false,
    };
    let text = manifest();
    let policy = match blastwall_policy::load(&Source::new("blastwall.toml", text.as_str()), &cx) {
        Ok(l) => Arc::new(l.policy),
        Err(d) => panic!("the bench manifest does not load: {d:?}"),
    };
    let headers = [
        ("Host".to_owned(), BUSY_HOST.to_owned()),
        ("User-Agent".to_owned(), "proxy-bench".to_owned()),
        ("Accept".to_owned(), "*/*".to_owned()),
    ];
    let url = format!("https://{BUSY_HOST}/v2/repos/blastwall/releases/7/assets");
    let action = match NetAction::from_request("GET", &url, &headers, None) {
        Ok(a) => Action::Net(a),
        Err(e) => panic!("{e}"),
    };
    if policy.decide(&action).verdict != Verdict::Allow {
        panic!("the bench GET is not allowed by the manifest");
    }
    let mut g = c.benchmark_group("gate_request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_with_outcome_get", |b| {
        b.iter_custom(|iters| run_gate(iters, &policy, &action));
    });
    g.finish();
}

criterion_group!(benches, append, gate_request);
criterion_main!(benches);
