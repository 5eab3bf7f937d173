//! `blastwall policy check | explain | test | schema`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use blastwall_policy::{
    Action, Decision, Diagnostic, ExecAction, FsAction, FsOp, NetAction, Policy, Severity,
    TestAction, TestCase, Verdict, normalize, parse_header_lines,
};
use blastwall_session::{Env, Home, LoadError, Purpose, TrustState, load_manifest};
use serde::Serialize;
use serde_json::json;

use super::{load, manifest_path};
use crate::Status;
use crate::args::{CheckArgs, ExplainAction, ExplainArgs, FsOpArg, TestArgs};
use crate::out;

#[derive(Serialize)]
struct CheckReport<'a> {
    file: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

pub(crate) fn check(a: &CheckArgs, env: &Env) -> anyhow::Result<Status> {
    let path = manifest_path(a.file.as_deref(), env)?;
    let home = Home::locate(env);
    let diagnostics = match load_manifest(&path, env, &home, Purpose::Inspect) {
        Ok(m) => m.loaded.warnings,
        Err(LoadError::Invalid { diagnostics, .. } | LoadError::UserConfig { diagnostics, .. }) => {
            diagnostics
        }
        Err(e) => return Err(e.into()),
    };
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if a.json {
        out::json(&CheckReport {
            file: path.display().to_string(),
            valid: errors == 0,
            errors,
            warnings,
            diagnostics: &diagnostics,
        })?;
    } else {
        for d in &diagnostics {
            out::text(&d.to_string())?;
        }
        if errors == 0 {
            eprintln!("{}: valid ({warnings} warning(s))", path.display());
        } else {
            eprintln!(
                "{}: {errors} error(s), {warnings} warning(s)",
                path.display()
            );
        }
    }
    Ok(if errors == 0 { Status::Ok } else { Status::No })
}

pub(crate) fn schema() -> anyhow::Result<Status> {
    out::json(&blastwall_policy::json_schema())?;
    Ok(Status::Ok)
}

#[derive(Serialize)]
struct Explained<'a> {
    verdict: Verdict,
    rule: &'a blastwall_policy::RuleRef,
    reason: &'a str,
    labels: blastwall_policy::Labels,
    subject: Option<&'a str>,
    action: &'a Action,
}

pub(crate) fn explain(a: &ExplainArgs, env: &Env) -> anyhow::Result<Status> {
    let path = match &a.policy {
        Some(p) => p.clone(),
        None => manifest_path(None, env)?,
    };
    let Some(m) = load(&path, env, Purpose::Inspect, a.json)? else {
        return Ok(Status::No);
    };
    if !a.json {
        note_trust(&m.trust, &m.path);
    }
    let policy = &m.loaded.policy;
    let action = match &a.action {
        ExplainAction::Net {
            method,
            url,
            headers,
            body,
        } => {
            let body = match body {
                Some(p) => Some(read_body(p)?),
                None => None,
            };
            let headers = parse_header_lines(headers)?;
            Action::Net(NetAction::from_request(
                method,
                url,
                &headers,
                body.as_deref(),
            )?)
        }
        ExplainAction::Exec { argv } => {
            let cwd = std::env::current_dir().ok();
            Action::Exec(ExecAction::new(argv.clone(), cwd))
        }
        ExplainAction::Fs { op, path } => Action::Fs(FsAction {
            op: match op {
                FsOpArg::Read => FsOp::Read,
                FsOpArg::Write => FsOp::Write,
            },
            path: absolute(path, env)?,
        }),
    };
    let d = policy.decide(&action);
    if a.json {
        out::json(&Explained {
            verdict: d.verdict,
            rule: &d.rule,
            reason: &d.reason,
            labels: d.labels,
            subject: d.subject.as_deref(),
            action: &action,
        })?;
    } else {
        out::text(&render_decision(&d))?;
    }
    Ok(Status::Ok)
}

fn note_trust(t: &TrustState, path: &Path) {
    match t {
        TrustState::Trusted => {}
        TrustState::Untrusted => eprintln!(
            "note: {} is not trusted yet; `blastwall run` refuses it until `blastwall trust`",
            path.display()
        ),
        TrustState::Changed { .. } => eprintln!(
            "note: {} changed since it was trusted; `blastwall run` refuses it until `blastwall trust`",
            path.display()
        ),
    }
}

fn render_decision(d: &Decision) -> String {
    let labels: Vec<&str> = d.labels.iter().map(|l| l.as_str()).collect();
    let mut s = format!(
        "verdict: {}\nrule:    {}\nreason:  {}\n",
        d.verdict,
        d.rule,
        out::escape_controls(&d.reason)
    );
    if let Some(sub) = &d.subject {
        s.push_str(&format!("part:    {}\n", out::escape_controls(sub)));
    }
    s.push_str(&format!(
        "labels:  {}\n",
        if labels.is_empty() {
            "-".to_owned()
        } else {
            labels.join(", ")
        }
    ));
    s
}

fn read_body(p: &Path) -> anyhow::Result<Vec<u8>> {
    if p == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("cannot read the body from stdin")?;
        return Ok(v);
    }
    std::fs::read(p).with_context(|| format!("cannot read body file {}", p.display()))
}

fn absolute(p: &Path, env: &Env) -> anyhow::Result<PathBuf> {
    let s = p.to_string_lossy();
    let joined = if s == "~" {
        env.home_dir()
    } else if let Some(rest) = s.strip_prefix("~/") {
        env.home_dir().join(rest)
    } else if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p)
    };
    Ok(normalize(&joined))
}

#[derive(Serialize)]
struct CaseResult<'a> {
    name: Option<&'a str>,
    at: String,
    pass: bool,
    expected: &'a [Verdict],
    actual: Option<Verdict>,
    rule: Option<String>,
    reason: Option<String>,
    error: Option<String>,
}

pub(crate) fn test(a: &TestArgs, env: &Env) -> anyhow::Result<Status> {
    let path = manifest_path(a.file.as_deref(), env)?;
    let Some(m) = load(&path, env, Purpose::Inspect, a.json)? else {
        return Ok(Status::No);
    };
    let policy = &m.loaded.policy;
    let cases = policy.tests();
    let mut results = Vec::with_capacity(cases.len());
    for c in cases {
        results.push(run_case(policy, c));
    }
    let failed = results.iter().filter(|r| !r.pass).count();
    if a.json {
        out::json(&json!({
            "file": path.display().to_string(),
            "cases": results.len(),
            "failed": failed,
            "results": results,
        }))?;
    } else {
        let mut s = String::new();
        for (c, r) in cases.iter().zip(&results) {
            let name = c.name.as_deref().unwrap_or("(unnamed)");
            if r.pass {
                s.push_str(&format!("ok   {name}\n"));
                continue;
            }
            s.push_str(&format!(
                "FAIL {name}\n     case:     {}\n     action:   {}\n",
                r.at,
                describe(&c.action)
            ));
            let expected: Vec<&str> = c.expect.iter().map(|v| v.as_str()).collect();
            s.push_str(&format!("     expected: {}\n", expected.join(" or ")));
            match (&r.error, r.actual) {
                (Some(e), _) => s.push_str(&format!("     error:    {e}\n")),
                (None, Some(v)) => s.push_str(&format!(
                    "     actual:   {v}\n     rule:     {}\n     reason:   {}\n",
                    r.rule.as_deref().unwrap_or("-"),
                    r.reason.as_deref().unwrap_or("-")
                )),
                (None, None) => {}
            }
        }
        let total = results.len();
        s.push_str(&format!(
            "{}: {} of {total} case(s) pass\n",
            path.display(),
            total - failed
        ));
        out::text(&s)?;
    }
    Ok(if failed == 0 { Status::Ok } else { Status::No })
}

fn describe(a: &TestAction) -> String {
    match a {
        TestAction::Net { method, url, .. } => format!("{method} {url}"),
        TestAction::Exec { argv } => format!("exec {}", argv.join(" ")),
        TestAction::Fs { op, path } => format!(
            "{} {}",
            match op {
                FsOp::Read => "read",
                FsOp::Write => "write",
            },
            path.display()
        ),
    }
}

fn run_case<'a>(policy: &Policy, c: &'a TestCase) -> CaseResult<'a> {
    let at = c.at.to_string();
    let action = match &c.action {
        TestAction::Net {
            method,
            url,
            headers,
            body,
            body_file,
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => Ok(Some(b.as_bytes().to_vec())),
                (None, Some(f)) => std::fs::read(f)
                    .map(Some)
                    .map_err(|e| format!("cannot read body file {}: {e}", f.display())),
                (None, None) => Ok(None),
            };
            body.and_then(|body| {
                let headers = parse_header_lines(headers).map_err(|e| e.to_string())?;
                NetAction::from_request(method, url, &headers, body.as_deref())
                    .map(Action::Net)
                    .map_err(|e| e.to_string())
            })
        }
        TestAction::Exec { argv } => Ok(Action::Exec(ExecAction::new(argv.clone(), None))),
        TestAction::Fs { op, path } => Ok(Action::Fs(FsAction {
            op: *op,
            path: path.clone(),
        })),
    };
    match action {
        Ok(action) => {
            let d = policy.decide(&action);
            CaseResult {
                name: c.name.as_deref(),
                at,
                pass: c.expect.contains(&d.verdict),
                expected: &c.expect,
                actual: Some(d.verdict),
                rule: Some(d.rule.to_string()),
                reason: Some(d.reason.to_string()),
                error: None,
            }
        }
        Err(e) => CaseResult {
            name: c.name.as_deref(),
            at,
            pass: false,
            expected: &c.expect,
            actual: None,
            rule: None,
            reason: None,
            error: Some(e),
        },
    }
}
