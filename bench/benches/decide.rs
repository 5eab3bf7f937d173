//! `decide()` on a 200-rule manifest (DESIGN.md §8: ≤ 1 µs median per
//! decision), and, apart from it, the GraphQL inspection a request goes
//! through before `decide()` sees it.
//!
//! A third group times `load()` of the same manifest, which `blastwall run`
//! pays once at start.
//!
//! Every action is built outside the timed loop; the `decide` group times
//! `Policy::decide` alone. Setup checks each action gets the verdict and rule
//! the case is named for, so a change to the manifest or the matcher cannot
//! quietly turn a bench into a different one.

use std::hint::black_box;
use std::path::PathBuf;

use blastwall_bench::{
    BUSY_HOST, HOME, NET_RULES, PROJECT_ROOT, RAILWAY_HOST, SMALL_QUERY, THREE_CALLS,
    VOLUME_DELETE, batch_of_ten, manifest,
};
use blastwall_classify::graphql;
use blastwall_policy::{
    Action, Context, ExecAction, FsAction, FsOp, NetAction, Origin, Policy, Source, Verdict,
};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

/// One timed case: a name, the action, and what setup checks it decides.
struct Case {
    name: &'static str,
    action: Action,
    verdict: Verdict,
    rule: &'static str,
}

fn json_headers() -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("Authorization".into(), "Bearer bw-placeholder-0001".into()),
        ("User-Agent".into(), "agent/1.0".into()),
    ]
}

fn load() -> Result<Policy, String> {
    let text = manifest();
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from(PROJECT_ROOT),
        home: PathBuf::from(HOME),
        user: None,
        enforce: false,
    };
    let loaded = blastwall_policy::load(&Source::new("bench/blastwall.toml", text), &cx).map_err(
        |diags| {
            let lines: Vec<String> = diags.iter().map(|d| format!("{d:?}")).collect();
            format!(
                "the generated manifest does not load:\n{}",
                lines.join("\n")
            )
        },
    )?;
    if !loaded.warnings.is_empty() {
        return Err(format!(
            "the generated manifest has warnings: {:?}",
            loaded.warnings
        ));
    }
    let n = loaded.policy.net_rule_count();
    if n != NET_RULES {
        return Err(format!("expected {NET_RULES} network rules, loaded {n}"));
    }
    Ok(loaded.policy)
}

fn net(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<Action, String> {
    NetAction::from_request(method, url, headers, body.map(str::as_bytes))
        .map(Action::Net)
        .map_err(|e| format!("{method} {url}: {e}"))
}

fn cases() -> Result<Vec<Case>, String> {
    let headers = json_headers();
    Ok(vec![
        Case {
            name: "a_exact_host_late_path_glob",
            action: net(
                "GET",
                &format!("https://{BUSY_HOST}/v2/repos/blastwall/releases/latest/assets"),
                &[],
                None,
            )?,
            verdict: Verdict::Allow,
            rule: "network.rule[199]",
        },
        Case {
            name: "b_unnamed_host_default_deny",
            action: net("GET", "https://evil.example.com/exfil?d=1", &[], None)?,
            verdict: Verdict::Deny,
            rule: "network.default",
        },
        Case {
            name: "c_wildcard_host",
            action: net(
                "GET",
                "https://cdn.eu.example-36.com/public/js/app.js",
                &[],
                None,
            )?,
            verdict: Verdict::Allow,
            rule: "network.rule[116]",
        },
        Case {
            name: "d_graphql_3_calls_inspected",
            action: net(
                "POST",
                &format!("https://{RAILWAY_HOST}/graphql/v2"),
                &headers,
                Some(THREE_CALLS),
            )?,
            verdict: Verdict::Ask,
            rule: "network.rule[175]",
        },
        Case {
            name: "e_fs_read_in_project",
            action: Action::Fs(FsAction {
                op: FsOp::Read,
                path: PathBuf::from(PROJECT_ROOT).join("crates/policy/src/decide.rs"),
            }),
            verdict: Verdict::Allow,
            rule: "filesystem.project",
        },
        Case {
            name: "f_exec",
            action: Action::Exec(ExecAction::new(
                ["cargo", "test", "--workspace"].map(String::from).to_vec(),
                Some(PathBuf::from(PROJECT_ROOT)),
            )),
            verdict: Verdict::Allow,
            rule: "exec.rule[4]",
        },
    ])
}

fn check(policy: &Policy, cases: &[Case]) -> Result<(), String> {
    for c in cases {
        let d = policy.decide(&c.action);
        if d.verdict != c.verdict || &*d.rule.id != c.rule {
            return Err(format!(
                "{}: expected {} by {}, got {} by {} ({})",
                c.name, c.verdict, c.rule, d.verdict, d.rule.id, d.reason
            ));
        }
    }
    Ok(())
}

fn or_die<T>(r: Result<T, String>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("bench setup: {e}"),
    }
}

fn bench_decide(c: &mut Criterion) {
    let policy = or_die(load());
    let cases = or_die(cases());
    or_die(check(&policy, &cases));
    let mut g = c.benchmark_group("decide");
    for case in &cases {
        g.bench_function(case.name, |b| {
            b.iter(|| policy.decide(black_box(&case.action)));
        });
    }
    g.finish();
}

fn bench_graphql(c: &mut Criterion) {
    let batch = batch_of_ten();
    let mut g = c.benchmark_group("graphql");
    for (name, body, calls) in [
        ("inspect_small_query", SMALL_QUERY, 1),
        ("inspect_volume_delete", VOLUME_DELETE, 1),
        ("inspect_batch_of_10", batch.as_str(), 10),
    ] {
        let got = graphql::inspect_body(body.as_bytes());
        if got.calls().len() != calls {
            panic!("bench setup: {name}: expected {calls} calls, got {got:?}");
        }
        g.bench_function(name, |b| {
            b.iter(|| graphql::inspect_body(black_box(body.as_bytes())));
        });
    }
    let headers = json_headers();
    let url = format!("https://{RAILWAY_HOST}/graphql/v2");
    g.bench_function("from_request_graphql_post", |b| {
        b.iter(|| {
            NetAction::from_request(
                black_box("POST"),
                black_box(&url),
                black_box(&headers),
                black_box(Some(VOLUME_DELETE.as_bytes())),
            )
        });
    });
    g.finish();
}

/// Loading the manifest is not on any request's path, but `blastwall run`
/// pays it once before the agent starts (DESIGN.md §8, `run -- true` wall
/// time), so it is measured here too.
fn bench_load(c: &mut Criterion) {
    let text = manifest();
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from(PROJECT_ROOT),
        home: PathBuf::from(HOME),
        user: None,
        enforce: false,
    };
    let mut g = c.benchmark_group("load");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("manifest_200_rules", |b| {
        b.iter(|| {
            blastwall_policy::load(
                &Source::new("bench/blastwall.toml", text.as_str()),
                black_box(&cx),
            )
        });
    });
    g.finish();
}

criterion_group!(benches, bench_decide, bench_graphql, bench_load);
criterion_main!(benches);
