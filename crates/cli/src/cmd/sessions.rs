//! `blastwall sessions | diff | commit | discard | doctor`.

use std::io::IsTerminal as _;
use std::io::Write as _;

use anyhow::bail;
use blastwall_session::{
    ChangeKind, CommitOptions, Env, Home, SessionDir, Status as SessionStatus, changes, commit,
    discard, list_sessions, render_change, stat_line,
};
use serde_json::json;

use crate::Status;
use crate::args::{CommitArgs, DiffArgs, DiscardArgs, DoctorArgs, SessionsArgs};
use crate::out;

fn status_word(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Running => "running",
        SessionStatus::Exited => "exited",
        SessionStatus::Crashed => "crashed",
    }
}

/// PATH arguments as paths relative to the project root: `./src`, a path
/// relative to the current directory inside the project, or an absolute one.
fn project_paths(
    paths: &[std::path::PathBuf],
    project: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_default();
    paths
        .iter()
        .map(|p| {
            let abs = blastwall_policy::normalize(&if p.is_absolute() {
                p.clone()
            } else {
                cwd.join(p)
            });
            match abs.strip_prefix(project) {
                Ok(rel) => rel.to_path_buf(),
                Err(_) => {
                    let n = blastwall_policy::normalize(p);
                    n.strip_prefix("/")
                        .map_or_else(|_| n.clone(), std::path::Path::to_path_buf)
                }
            }
        })
        .collect()
}

pub(crate) fn sessions(a: &SessionsArgs, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    let mut rows = Vec::new();
    for d in list_sessions(&home)? {
        let Ok(meta) = d.meta() else { continue };
        let status = d.status(&meta);
        let changed = changes(&d.upper(), &meta.project).map(|c| c.len()).ok();
        rows.push(json!({
            "id": meta.id,
            "name": meta.name,
            "started_ns": meta.started_ns.to_string(),
            "command": meta.command,
            "project": meta.project.display().to_string(),
            "project_mode": meta.project_mode,
            "status": status_word(status),
            "exit_code": meta.exit_code,
            "files_changed": changed,
            "closed": meta.closed,
            "layers": meta.layers,
        }));
    }
    if a.json {
        out::json(&rows)?;
        return Ok(Status::Ok);
    }
    if rows.is_empty() {
        out::text("no sessions")?;
        return Ok(Status::Ok);
    }
    let mut t = format!(
        "{:<24} {:<8} {:>7} {:<10} {}\n",
        "ID", "STATUS", "CHANGED", "OVERLAY", "COMMAND"
    );
    for r in rows {
        let layers = &r["layers"];
        let missing = layers["missing"].as_array().map_or(0, Vec::len);
        t.push_str(&format!(
            "{:<24} {:<8} {:>7} {:<10} {}{}\n",
            r["id"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["files_changed"]
                .as_u64()
                .map_or("?".to_owned(), |n| n.to_string()),
            r["closed"].as_str().unwrap_or("pending"),
            out::escape_controls(
                &r["command"]
                    .as_array()
                    .map(|c| c
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default()
            ),
            if missing > 0 {
                format!("  [{missing} layer(s) missing]")
            } else {
                String::new()
            }
        ));
    }
    out::text(&t)?;
    Ok(Status::Ok)
}

pub(crate) fn diff(a: &DiffArgs, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    let d = SessionDir::open(&home, a.session.as_deref())?;
    let meta = d.meta()?;
    let all = changes(&d.upper(), &meta.project)?;
    let picked: Vec<_> = all
        .into_iter()
        .filter(|c| {
            let paths = project_paths(&a.paths, &meta.project);
            paths.is_empty() || paths.iter().any(|p| c.path.starts_with(p))
        })
        .collect();
    if a.json {
        out::json(
            &json!({"session": meta.id, "project": meta.project.display().to_string(), "changes": picked}),
        )?;
        return Ok(Status::Ok);
    }
    let mut t = String::new();
    for c in &picked {
        if a.stat {
            t.push_str(&stat_line(c));
            t.push('\n');
        } else {
            t.push_str(&render_change(c, &meta.project, &d.upper()));
        }
    }
    if picked.is_empty() {
        eprintln!("session {}: no changes", meta.id);
    } else {
        out::text(&out::escape_controls(&t))?;
    }
    Ok(Status::Ok)
}

pub(crate) fn commit_cmd(a: &CommitArgs, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    let d = SessionDir::open(&home, a.session.as_deref())?;
    let meta = d.meta()?;
    let opts = CommitOptions {
        paths: project_paths(&a.paths, &meta.project),
        force: a.force,
        dry_run: true,
    };
    let preview = commit(&d, &opts)?;
    if !a.yes && !a.json {
        let mut t = format!("session {} → {}\n", meta.id, meta.project.display());
        for c in &preview.applied {
            t.push_str(&format!("  {}\n", stat_line(c)));
        }
        for p in &preview.sensitive {
            t.push_str(&format!("  SKIPPED (would run code or widen permissions outside the wall; name it to commit it): {}\n", p.display()));
        }
        for (p, why) in &preview.conflicts {
            t.push_str(&format!("  CONFLICT {}: {why}\n", p.display()));
        }
        for (p, why) in &preview.refused {
            t.push_str(&format!("  REFUSED {}: {why}\n", p.display()));
        }
        out::text(&out::escape_controls(&t))?;
        if !preview.conflicts.is_empty() && !a.force {
            eprintln!(
                "blastwall: nothing committed: {} file(s) changed in the project during the session; `--force` overwrites them",
                preview.conflicts.len()
            );
            return Ok(Status::No);
        }
        if preview.applied.is_empty() {
            eprintln!("blastwall: nothing to commit");
            return Ok(Status::Ok);
        }
        if !std::io::stdin().is_terminal() {
            bail!("not committing without a yes: pass --yes (stdin is not a terminal)");
        }
        eprint!(
            "apply {} change(s) to {}? [y/N] ",
            preview.applied.len(),
            meta.project.display()
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            eprintln!("blastwall: nothing committed");
            return Ok(Status::No);
        }
    }
    let report = commit(
        &d,
        &CommitOptions {
            dry_run: false,
            ..opts
        },
    )?;
    let ok = report.conflicts.is_empty() || a.force;
    if a.json {
        out::json(&report)?;
    } else if ok {
        let deleted = report
            .applied
            .iter()
            .filter(|c| c.kind == ChangeKind::Deleted)
            .count();
        out::text(&format!(
            "committed {} change(s) ({deleted} deletion(s)) to {}{}",
            report.applied.len(),
            meta.project.display(),
            if report.sensitive.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} sensitive path(s) left in the overlay",
                    report.sensitive.len()
                )
            }
        ))?;
        for (p, why) in &report.refused {
            eprintln!(
                "blastwall: REFUSED {}: {why} (left in the overlay)",
                out::escape_controls(&p.display().to_string())
            );
        }
    } else {
        for (p, why) in &report.conflicts {
            eprintln!("CONFLICT {}: {why}", p.display());
        }
    }
    Ok(if ok && report.refused.is_empty() {
        Status::Ok
    } else {
        Status::No
    })
}

pub(crate) fn discard_cmd(a: &DiscardArgs, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    let d = SessionDir::open(&home, a.session.as_deref())?;
    let n = discard(&d)?;
    out::text(&format!("discarded {n} change(s) of session {}", d.id()))?;
    Ok(Status::Ok)
}

pub(crate) fn doctor(a: &DoctorArgs) -> anyhow::Result<Status> {
    let r = blastwall_sandbox::doctor();
    if a.json {
        out::json(&r)?;
    } else {
        let mut t = String::new();
        for c in &r.checks {
            let st = serde_json::to_value(c.status)?;
            t.push_str(&format!(
                "{:<8} {:<22} {}\n",
                st.as_str().unwrap_or("?"),
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                t.push_str(&format!("         fix: {fix}\n"));
            }
        }
        let optional_missing: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.required && c.status == blastwall_sandbox::CheckStatus::Missing)
            .map(|c| c.name.as_str())
            .collect();
        if !r.can_run {
            t.push_str("`blastwall run` CANNOT work here: fix the required checks above\n");
        } else if optional_missing.is_empty() {
            t.push_str("`blastwall run` can work here\n");
        } else {
            t.push_str(&format!(
                "`blastwall run` can work here only with a manifest that accepts these missing: [sandbox] accept_missing = [{}] (`blastwall init` writes that), or after the fixes above\n",
                optional_missing.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
            ));
        }
        out::text(&t)?;
    }
    Ok(if r.can_run { Status::Ok } else { Status::No })
}
