//! `blastwall demo`: incident replays without the wall and inside it.
//!
//! Each scenario of `shared/scenarios/` runs twice, each time in a world of
//! its own (a scratch directory with a fake home, a project, mock
//! services with real state): once without blastwall's policy, in a
//! throw-away sandbox that shows the damage really happening without
//! touching this machine ([`unprotected`]), and once inside the wall,
//! `blastwall run` under the scenario's manifest ([`run::protected`]).
//! The checks then read the world outside ([`scenarios`]). The table and
//! `--json` are two views of the same rows; docs/demo.md has both.
//!
//! Exit status: 0 when every protected run was contained, did the
//! permitted work and left a log that verifies; 1 otherwise; 2 on an error.

mod run;
mod scenarios;
mod unprotected;
mod world;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use blastwall_session::Env;
use clap::Args;
use serde::Serialize;

use self::scenarios::{ALL, Assessment, Before, Half, Scenario};
use self::world::World;
use crate::Status;
use crate::out;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Scenarios to run: pocketos, credential-bleed, exfiltration, rm-home,
    /// force-push, replit; or `all` (the default).
    #[arg(value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Print the results as one JSON object (shape in docs/demo.md).
    #[arg(long)]
    pub(crate) json: bool,
    /// Use the manifests `DIR/NAME.toml` for the protected half instead of
    /// the built-in ones, for a scenario that has one there. For testing
    /// that the checks catch a wrong manifest: the table names the file.
    #[arg(long, value_name = "DIR")]
    pub(crate) manifest_override: Option<PathBuf>,
    /// Keep each scratch world under DIR instead of removing it (its path
    /// is in the JSON as `world`): for looking at, or testing, the state
    /// the agents left.
    #[arg(long, value_name = "DIR")]
    pub(crate) keep_worlds: Option<PathBuf>,
    /// Internal: run one unprotected half (the child the demo starts).
    #[arg(long, hide = true, value_name = "FILE")]
    pub(crate) unprotected_job: Option<PathBuf>,
}

/// The exit status when the demo was interrupted (128 + SIGINT).
const INTERRUPTED: u8 = 130;

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    name: &'static str,
    title: &'static str,
    tried: &'static str,
    skipped: Option<&'static str>,
    manifest: String,
    without: Option<HalfRow>,
    with: Option<HalfRow>,
    permitted: String,
    permitted_done: bool,
    approvals: usize,
    /// The first approval as a person reads it, and how it ended (when
    /// this build has an approval queue).
    first_approval: Option<String>,
    alerts: usize,
    log_verified: bool,
    passed: bool,
    error: Option<String>,
}

impl Row {
    /// The row of scenario `sc` before anything ran.
    fn new(sc: &'static Scenario) -> Row {
        Row {
            name: sc.name,
            title: sc.title,
            tried: sc.tried,
            skipped: None,
            manifest: String::new(),
            without: None,
            with: None,
            permitted: String::new(),
            permitted_done: false,
            approvals: 0,
            first_approval: None,
            alerts: 0,
            log_verified: false,
            passed: false,
            error: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct HalfRow {
    /// Without the wall: whether the damage really happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    damage_done: Option<bool>,
    /// Inside the wall: whether every containment check held.
    #[serde(skip_serializing_if = "Option::is_none")]
    contained: Option<bool>,
    #[serde(flatten)]
    assessment: Assessment,
    exit: i32,
    session: Option<String>,
    /// The scratch world, when kept (`--keep-worlds`).
    world: Option<PathBuf>,
    /// What the agent printed (and, inside, what blastwall told it).
    output: String,
}

struct Paint {
    on: bool,
}

impl Paint {
    fn new(stream_is_tty: bool) -> Paint {
        Paint {
            on: stream_is_tty
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb"),
        }
    }
    fn c(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn red(&self, s: &str) -> String {
        self.c("31", s)
    }
    fn green(&self, s: &str) -> String {
        self.c("32", s)
    }
    fn dim(&self, s: &str) -> String {
        self.c("2", s)
    }
    fn bold(&self, s: &str) -> String {
        self.c("1", s)
    }
}

/// `[sandbox] accept_missing` for what `blastwall doctor` finds missing
/// here, as `blastwall init` writes it.
fn accept_missing() -> anyhow::Result<Vec<String>> {
    let r = blastwall_sandbox::doctor();
    if !r.can_run {
        bail!("the sandbox cannot run on this host; `blastwall doctor` says why");
    }
    let layers: Vec<&str> = blastwall_sandbox::Layer::ALL
        .iter()
        .map(|l| l.name())
        .collect();
    Ok(r.checks
        .iter()
        .filter(|c| !c.required && c.status == blastwall_sandbox::CheckStatus::Missing)
        .map(|c| c.name.clone())
        .filter(|n| layers.contains(&n.as_str()))
        .collect())
}

pub(crate) fn run(a: &DemoArgs, env: &Env) -> anyhow::Result<Status> {
    if let Some(job) = &a.unprotected_job {
        return unprotected::run_job(job);
    }
    let chosen: Vec<&Scenario> = if a.names.is_empty() || a.names.iter().any(|n| n == "all") {
        ALL.iter().collect()
    } else {
        let mut v = Vec::new();
        for n in &a.names {
            match ALL.iter().find(|s| s.name == n) {
                Some(s) => v.push(s),
                None => bail!(
                    "no scenario `{n}`; expected one of {}, or all",
                    ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        v
    };
    let paint = Paint::new(std::io::stderr().is_terminal());
    let missing = accept_missing()?;
    let sandbox = if missing.is_empty() {
        String::new()
    } else {
        eprintln!(
            "{}",
            paint.dim(&format!(
                "demo: this host lacks {}: `blastwall doctor` reports it missing, so the demo's manifests accept it missing ([sandbox] accept_missing)",
                missing.join(", ")
            ))
        );
        format!(
            "[sandbox]\naccept_missing = [{}]\n",
            missing
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let real_home = env.home_dir();
    // Ctrl-C reaches the half that runs (its agent stops); the demo then
    // stops between halves, so every scratch world is removed on the way
    // out instead of left behind by a killed process.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot watch for SIGINT, SIGTERM and SIGHUP")?;
    }
    let mut rows = Vec::new();
    for sc in chosen {
        if stop.load(Ordering::SeqCst) {
            eprintln!("demo: interrupted; the scratch worlds are removed");
            return Ok(Status::Code(INTERRUPTED));
        }
        let row = match sc.skipped {
            Some(why) => {
                eprintln!("{} {}: skipped: {why}", paint.bold("demo:"), sc.name);
                Row {
                    skipped: Some(why),
                    passed: true,
                    ..Row::new(sc)
                }
            }
            None => scenario(sc, a, &missing, &sandbox, &real_home, &paint, &stop),
        };
        rows.push(row);
    }
    let passed = rows.iter().all(|r| r.passed);
    if a.json {
        out::json(&serde_json::json!({
            "passed": passed,
            "accepted_missing": missing,
            "scenarios": rows,
        }))?;
    } else {
        out::text(&table(&rows, &Paint::new(std::io::stdout().is_terminal())))?;
        out::text(&if passed {
            "every protected run was contained, did its permitted work and left a log that verifies"
                .to_owned()
        } else {
            "NOT every protected run was contained (see the rows above, and --json for every check)"
                .to_owned()
        })?;
    }
    Ok(if passed { Status::Ok } else { Status::No })
}

fn scenario(
    sc: &'static Scenario,
    a: &DemoArgs,
    missing: &[String],
    sandbox: &str,
    real_home: &std::path::Path,
    paint: &Paint,
    stop: &AtomicBool,
) -> Row {
    let mut row = Row {
        manifest: "built-in".into(),
        ..Row::new(sc)
    };
    eprintln!("{} {} ({})", paint.bold("demo:"), sc.name, sc.title);
    eprintln!("  without the wall, in a throw-away sandbox and world …");
    let keep = a.keep_worlds.as_deref();
    match without(sc, missing, real_home, keep) {
        Ok(h) => {
            let mark = if h.assessment.ok {
                paint.red("damage done")
            } else {
                paint.dim("no damage")
            };
            eprintln!("    {mark}: {}", h.assessment.outcome);
            row.without = Some(h);
        }
        Err(e) => {
            eprintln!("    {}: {e:#}", paint.red("error"));
            row.error = Some(format!("without the wall: {e:#}"));
        }
    }
    if stop.load(Ordering::SeqCst) {
        row.error = Some("interrupted".into());
        return row;
    }
    eprintln!("  inside the wall (blastwall run) …");
    let manifest = match &a.manifest_override {
        Some(dir) if dir.join(format!("{}.toml", sc.name)).is_file() => {
            let p = dir.join(format!("{}.toml", sc.name));
            row.manifest = p.display().to_string();
            eprintln!(
                "    {}",
                paint.red(&format!("manifest override: {}", p.display()))
            );
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
        }
        _ => Ok(sc.manifest.to_owned()),
    };
    match manifest.and_then(|m| with(sc, &m, sandbox, keep)) {
        Ok((h, approvals, first_approval, alerts, verified)) => {
            row.permitted.clone_from(&h.assessment.permitted);
            row.permitted_done = h.assessment.permitted_done;
            row.approvals = approvals;
            if let Some(t) = &first_approval {
                eprintln!("    first approval: {t}");
            }
            row.first_approval = first_approval;
            row.alerts = alerts;
            row.log_verified = verified;
            row.passed = h.assessment.ok && h.assessment.permitted_done && verified;
            let mark = if h.assessment.ok {
                paint.green("contained")
            } else {
                paint.red("NOT CONTAINED")
            };
            eprintln!("    {mark}: {}", h.assessment.outcome);
            eprintln!(
                "    permitted work: {} ({}); {approvals} approval(s), {alerts} alert(s), log {}",
                h.assessment.permitted,
                if h.assessment.permitted_done {
                    "done"
                } else {
                    "NOT done"
                },
                if verified { "verified" } else { "NOT verified" }
            );
            row.with = Some(h);
        }
        Err(e) => {
            eprintln!("    {}: {e:#}", paint.red("error"));
            row.error = Some(format!("inside the wall: {e:#}"));
        }
    }
    row
}

fn without(
    sc: &Scenario,
    missing: &[String],
    real_home: &std::path::Path,
    keep: Option<&std::path::Path>,
) -> anyhow::Result<HalfRow> {
    let w = World::create(keep)?;
    let before = Before::take(&w);
    let r = run::unprotected(sc.agent, &w, missing, real_home)?;
    let assessment = scenarios::assess(sc, Half::Without, &w, &before, &r);
    Ok(HalfRow {
        damage_done: Some(assessment.ok),
        contained: None,
        assessment,
        exit: r.code,
        session: None,
        world: keep.map(|_| w.root.clone()),
        output: r.output,
    })
}

fn with(
    sc: &Scenario,
    manifest: &str,
    sandbox: &str,
    keep: Option<&std::path::Path>,
) -> anyhow::Result<(HalfRow, usize, Option<String>, usize, bool)> {
    let w = World::create(keep)?;
    let mocks = run::HostMocks::start(&w)?;
    let manifest = run::fill(manifest, &mocks, sandbox);
    // The manifest is part of the project before the agent starts.
    std::fs::write(w.project.join("blastwall.toml"), &manifest)?;
    let before = Before::take(&w);
    let r = run::protected(sc.agent, &w, &manifest)?;
    // Let the raw recorders write what they got.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (asks, alerts, verified) = r
        .session
        .as_deref()
        .map_or((0, 0, false), |id| run::audit(&w, id));
    let first_approval = r
        .session
        .as_deref()
        .and_then(|id| run::first_approval(&w, id));
    let assessment = scenarios::assess(sc, Half::With, &w, &before, &r);
    // The overlay goes with the world (as root it lives outside it).
    if let Some(id) = &r.session {
        let _ = run::bw(&w, &["discard", id], &[]);
    }
    drop(mocks);
    Ok((
        HalfRow {
            damage_done: None,
            contained: Some(assessment.ok),
            assessment,
            exit: r.code,
            session: r.session,
            world: keep.map(|_| w.root.clone()),
            output: r.output,
        },
        asks,
        first_approval,
        alerts,
        verified,
    ))
}

fn table(rows: &[Row], paint: &Paint) -> String {
    let head = [
        "scenario",
        "what the agent tried",
        "without the wall",
        "with the wall",
        "permitted work",
        "approvals",
        "alerts",
        "log verified",
    ];
    let mut cells: Vec<[String; 8]> = Vec::new();
    let mut colour: Vec<[u8; 8]> = Vec::new();
    for r in rows {
        if let Some(why) = r.skipped {
            cells.push([
                r.name.into(),
                r.tried.into(),
                format!("skipped: {why}"),
                "skipped".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            colour.push([0, 0, 3, 3, 0, 0, 0, 0]);
            continue;
        }
        let without = r.without.as_ref().map_or_else(
            || format!("error: {}", r.error.clone().unwrap_or_default()),
            |h| h.assessment.outcome.clone(),
        );
        let with = r.with.as_ref().map_or_else(
            || format!("error: {}", r.error.clone().unwrap_or_default()),
            |h| h.assessment.outcome.clone(),
        );
        let contained = r.with.as_ref().is_some_and(|h| h.assessment.ok);
        let name = if r.manifest == "built-in" {
            r.name.to_owned()
        } else {
            format!("{} (manifest override)", r.name)
        };
        cells.push([
            name,
            r.tried.into(),
            without,
            with,
            format!(
                "{}: {}",
                if r.permitted_done { "done" } else { "NOT done" },
                r.permitted
            ),
            r.approvals.to_string(),
            r.alerts.to_string(),
            if r.log_verified { "yes" } else { "NO" }.into(),
        ]);
        colour.push([
            0,
            0,
            1,
            if contained { 2 } else { 1 },
            if r.permitted_done { 2 } else { 1 },
            0,
            0,
            if r.log_verified { 2 } else { 1 },
        ]);
    }
    // Wrap long cells so the table fits a terminal.
    const WIDTH: [usize; 8] = [16, 30, 30, 30, 26, 9, 6, 12];
    let wrap = |s: &str, w: usize| -> Vec<String> {
        let mut lines = vec![String::new()];
        for word in s.split(' ') {
            let cur = lines.last_mut().map_or(0, |l| l.chars().count());
            if cur > 0 && cur + 1 + word.chars().count() > w {
                lines.push(String::new());
            }
            if let Some(l) = lines.last_mut() {
                if !l.is_empty() {
                    l.push(' ');
                }
                l.push_str(word);
            }
        }
        lines
    };
    let sep: String = WIDTH
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("-+-");
    let mut t = String::new();
    let line = |cols: Vec<String>, paints: Option<&[u8; 8]>| -> String {
        let wrapped: Vec<Vec<String>> = cols.iter().zip(WIDTH).map(|(c, w)| wrap(c, w)).collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut s = String::new();
        for i in 0..height {
            let parts: Vec<String> = wrapped
                .iter()
                .zip(WIDTH)
                .enumerate()
                .map(|(j, (c, w))| {
                    let text = c.get(i).cloned().unwrap_or_default();
                    let pad = w.saturating_sub(text.chars().count());
                    let coloured = match paints.and_then(|p| p.get(j)) {
                        Some(1) => paint.red(&text),
                        Some(2) => paint.green(&text),
                        Some(3) => paint.dim(&text),
                        _ => text,
                    };
                    format!("{coloured}{}", " ".repeat(pad))
                })
                .collect();
            s.push_str(parts.join(" | ").trim_end());
            s.push('\n');
        }
        s
    };
    t.push_str(&line(head.iter().map(|s| (*s).to_owned()).collect(), None));
    t.push_str(&sep);
    t.push('\n');
    for (c, p) in cells.into_iter().zip(colour) {
        t.push_str(&line(c.to_vec(), Some(&p)));
        t.push_str(&sep);
        t.push('\n');
    }
    t
}
