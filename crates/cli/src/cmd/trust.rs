//! `blastwall trust [FILE]`: record a manifest's hash after reading what it grants.

use anyhow::Context as _;
use blastwall_policy::{Placement, ProjectMode, Settings};
use blastwall_session::{Env, Home, Purpose, TrustStore};
use serde_json::json;

use super::{load, manifest_path};
use crate::Status;
use crate::args::TrustArgs;
use crate::out;

pub(crate) fn run(a: &TrustArgs, env: &Env) -> anyhow::Result<Status> {
    let path = manifest_path(a.file.as_deref(), env)?;
    if a.check {
        // Exactly what an enforcing command does with it.
        let Some(m) = load(&path, env, Purpose::Enforce, a.json)? else {
            return Ok(Status::No);
        };
        if a.json {
            out::json(&json!({"file": m.path.display().to_string(), "trusted": true}))?;
        } else {
            out::text(&format!("{}: trusted", m.path.display()))?;
        }
        return Ok(Status::Ok);
    }
    // A manifest that cannot be enforced is not worth trusting: check first.
    let Some(m) = load(&path, env, Purpose::Inspect, a.json)? else {
        if !a.json {
            eprintln!("blastwall: not trusted: fix the errors above first");
        }
        return Ok(Status::No);
    };
    // Trust the very bytes that were checked and shown, not a second read.
    let bytes = &m.bytes;
    let home = Home::locate(env);
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let digest = TrustStore::open(&home.trust_file())?.trust(&m.path, bytes)?;
    let s = m.loaded.policy.settings();
    if a.json {
        out::json(&json!({
            "file": m.path.display().to_string(),
            "sha256": digest,
            "grants": grants_json(s, m.loaded.policy.net_rule_count()),
        }))?;
    } else {
        out::text(&format!(
            "trusted {} (sha256 {digest})\n{}",
            m.path.display(),
            grants_text(s, m.loaded.policy.net_rule_count())
        ))?;
    }
    Ok(Status::Ok)
}

fn grants_json(s: &Settings, rules: usize) -> serde_json::Value {
    json!({
        "project": s.project_mode,
        "read": s.read_paths,
        "write": s.write_paths,
        "network_rules": rules,
        "credentials": s.credentials.iter().map(|c| json!({"name": c.name, "env": c.env, "hosts": c.hosts})).collect::<Vec<_>>(),
        "audit_sinks": s.audit.sinks,
        "approval_webhook": s.approval.webhook.as_ref().map(|w| &w.url),
    })
}

/// What the manifest lets the agent do, for the person trusting it.
pub(crate) fn grants_text(s: &Settings, rules: usize) -> String {
    let mut t = String::from("it grants:\n");
    t.push_str(&format!(
        "  project {}: {}\n",
        s.project_root.display(),
        match s.project_mode {
            ProjectMode::Overlay => "copy-on-write overlay (diff, commit or discard after)",
            ProjectMode::Ro => "read-only",
            ProjectMode::Rw => "READ-WRITE: the agent's writes reach the real files",
        }
    ));
    for p in &s.write_paths {
        t.push_str(&format!("  read-write {}\n", p.display()));
    }
    for p in &s.read_paths {
        t.push_str(&format!("  read-only  {}\n", p.display()));
    }
    t.push_str(&format!(
        "  {rules} network rule(s); everything else is denied or asked\n"
    ));
    for c in &s.credentials {
        let place = match &c.placement {
            Placement::Header { name, .. } => format!("header {name}"),
            Placement::Query { name } => format!("query parameter {name}"),
        };
        let hosts: Vec<String> = c.hosts.iter().map(ToString::to_string).collect();
        t.push_str(&format!(
            "  credential {} (${}): sent only to {} in the {place}\n",
            c.name,
            c.env,
            hosts.join(", ")
        ));
    }
    // Where the supervisor itself sends records (which carry what the agent
    // asked for, even when it was refused): the person trusting says yes to
    // these destinations too.
    for sink in &s.audit.sinks {
        let to = match sink {
            blastwall_policy::AuditSink::File { path } => format!(
                "a copy of every audit record to the file {} (hidden inside the wall)",
                path.as_ref()
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
            blastwall_policy::AuditSink::Otlp { endpoint, .. } => {
                format!("every audit record to the OpenTelemetry collector {endpoint}")
            }
            blastwall_policy::AuditSink::Webhook { url } => {
                format!("every audit record to the webhook {url}")
            }
        };
        t.push_str(&format!(
            "  sends {to}
"
        ));
    }
    if let Some(w) = &s.approval.webhook {
        t.push_str(&format!(
            "  sends each approval's summary to the webhook {}\n",
            w.url
        ));
    }
    t
}
