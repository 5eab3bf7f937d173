//! `blastwall init`: a commented starter manifest for this project.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use blastwall_session::{Env, Home, MANIFEST_NAME, TrustStore};

use crate::Status;
use crate::args::{Agent, InitArgs};
use crate::out;

/// What an agent needs: its model-API hosts, its state directories
/// (read-write, granted in the user's own config), its settings and hooks
/// (read-only), and the credential it would rather have injected.
struct AgentFacts {
    name: &'static str,
    hosts: &'static [&'static str],
    state_rw: &'static [&'static str],
    settings_ro: &'static [&'static str],
    credential: Option<(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    )>,
}

fn facts(agent: Agent) -> AgentFacts {
    match agent {
        Agent::Claude => AgentFacts {
            name: "Claude Code",
            hosts: &[
                "api.anthropic.com",
                "claude.ai",
                "platform.claude.com",
                "mcp-proxy.anthropic.com",
            ],
            state_rw: &["~/.claude", "~/.claude.json"],
            settings_ro: &[
                "~/.claude/settings.json",
                "~/.claude/hooks",
                "/etc/claude-code",
            ],
            credential: Some((
                "anthropic",
                "ANTHROPIC_API_KEY",
                "api.anthropic.com",
                "x-api-key",
                "",
            )),
        },
        Agent::Codex => AgentFacts {
            name: "Codex CLI",
            hosts: &["api.openai.com", "chatgpt.com", "auth.openai.com"],
            state_rw: &["~/.codex"],
            settings_ro: &[
                "~/.codex/config.toml",
                "~/.codex/hooks.json",
                "~/.codex/rules",
                "/etc/codex",
            ],
            credential: Some((
                "openai",
                "OPENAI_API_KEY",
                "api.openai.com",
                "Authorization",
                "Bearer ",
            )),
        },
        Agent::Cursor => AgentFacts {
            name: "Cursor agent",
            hosts: &["api2.cursor.sh", "*.cursor.sh"],
            state_rw: &["~/.cursor"],
            settings_ro: &[
                "~/.cursor/hooks.json",
                "~/.cursor/cli-config.json",
                "/etc/cursor",
            ],
            credential: None,
        },
        Agent::Gemini => AgentFacts {
            name: "Gemini CLI",
            hosts: &[
                "generativelanguage.googleapis.com",
                "cloudcode-pa.googleapis.com",
                "oauth2.googleapis.com",
            ],
            state_rw: &["~/.gemini"],
            settings_ro: &["~/.gemini/settings.json", "/etc/gemini-cli"],
            credential: Some((
                "gemini",
                "GEMINI_API_KEY",
                "generativelanguage.googleapis.com",
                "x-goog-api-key",
                "",
            )),
        },
        Agent::Generic => AgentFacts {
            name: "a generic agent",
            hosts: &[],
            state_rw: &[],
            settings_ro: &[],
            credential: None,
        },
    }
}

/// Package registries a lockfile suggests, allowed read-only.
const REGISTRIES: &[(&str, &str, &[&str])] = &[
    (
        "Cargo.lock",
        "crates.io",
        &["index.crates.io", "static.crates.io", "crates.io"],
    ),
    ("package-lock.json", "npm", &["registry.npmjs.org"]),
    ("npm-shrinkwrap.json", "npm", &["registry.npmjs.org"]),
    (
        "yarn.lock",
        "npm (yarn)",
        &["registry.npmjs.org", "registry.yarnpkg.com"],
    ),
    ("pnpm-lock.yaml", "npm (pnpm)", &["registry.npmjs.org"]),
    (
        "poetry.lock",
        "PyPI",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    ("uv.lock", "PyPI", &["pypi.org", "files.pythonhosted.org"]),
    (
        "Pipfile.lock",
        "PyPI",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "requirements.txt",
        "PyPI",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "go.sum",
        "the Go module proxy",
        &["proxy.golang.org", "sum.golang.org"],
    ),
    (
        "Gemfile.lock",
        "RubyGems",
        &["rubygems.org", "index.rubygems.org"],
    ),
    ("composer.lock", "Packagist", &["repo.packagist.org"]),
];

pub(crate) fn run(a: &InitArgs, env: &Env) -> anyhow::Result<Status> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let text = manifest_text(a.agent, &dir);
    if a.stdout {
        out::text(&text)?;
        let f = facts(a.agent);
        if !f.state_rw.is_empty() {
            eprintln!(
                "note: this manifest names {}'s files in your home; it passes `policy check` only once your own config grants them (plain `blastwall init --agent` does that)",
                f.name
            );
        }
        return Ok(Status::Ok);
    }
    let path = dir.join(MANIFEST_NAME);
    if path.exists() && !a.force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let home = Home::locate(env);
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let added = grant_agent_state(a.agent, &home)?;
    let digest = TrustStore::open(&home.trust_file())?.trust(&path, text.as_bytes())?;
    let mut msg = format!("wrote {} (trusted, sha256 {digest})\n", path.display());
    if !added.is_empty() {
        let _ = writeln!(
            msg,
            "granted {} in your own config {}: {}",
            facts(a.agent).name,
            home.config_file().display(),
            added.join(", ")
        );
    }
    msg.push_str("next: review it, then `blastwall policy check` and `blastwall policy explain net GET https://…`\n");
    out::text(&msg)?;
    Ok(Status::Ok)
}

fn manifest_text(agent: Agent, dir: &Path) -> String {
    let f = facts(agent);
    let mut t = String::new();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "# blastwall.toml — what {} may do in this project.",
        f.name
    );
    t.push_str(
        "# Everything not granted here is denied. Check it with `blastwall policy check`,\n\
         # ask it with `blastwall policy explain`, and see docs/manifest.md for every key.\n\
         version = 1\n\n",
    );
    let _ = writeln!(t, "[project]\nname = {}\n", toml_str(&name));
    t.push_str(
        "[filesystem]\n\
         # The agent's writes land in an overlay: `blastwall diff`, then `commit` or `discard`.\n\
         project = \"overlay\"\n",
    );
    if !f.settings_ro.is_empty() {
        let _ = writeln!(
            t,
            "# {}'s state is read-write (granted in your own config, where grants outside\n# the project live); its settings and hooks stay read-only, so the agent\n# cannot rewrite the rules it runs under.",
            f.name
        );
        let _ = writeln!(t, "write = [{}]", list(f.state_rw));
        let _ = writeln!(t, "read = [{}]", list(f.settings_ro));
    }
    t.push_str(
        "# Hidden on top of the defaults (~/.aws, ~/.ssh, ~/.kube, ~/.config/gcloud,\n\
         # ~/.docker/config.json, ~/.netrc, ~/.npmrc, ~/.pypirc, ~/.git-credentials,\n\
         # ~/.config/gh, ~/.railway, ~/.gnupg, ~/.password-store,\n\
         # ~/.local/share/keyrings and .env* files in the project):\n\
         hide = []\n\n",
    );
    t.push_str("[network]\n# A request no rule allows is denied.\ndefault = \"deny\"\n\n");
    if !f.hosts.is_empty() {
        let _ = writeln!(t, "# {}'s own API.", f.name);
        let _ = writeln!(
            t,
            "[[network.rule]]\nhost = [{}]\nverdict = \"allow\"\nreason = \"the agent's model API\"\n",
            list(f.hosts)
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for (lock, what, hosts) in REGISTRIES {
        if !dir.join(lock).exists() || seen.contains(what) {
            continue;
        }
        seen.push(what);
        let _ = writeln!(t, "# {what}, read-only (found {lock}).");
        let _ = writeln!(
            t,
            "[[network.rule]]\nhost = [{}]\nmethods = [\"GET\", \"HEAD\"]\nverdict = \"allow\"\nreason = \"package downloads\"\n",
            list(hosts)
        );
    }
    t.push_str(
        "# Destructive calls anywhere wait for a person's yes. Example:\n\
         # [[network.rule]]\n\
         # host = \"api.example.com\"\n\
         # methods = [\"DELETE\"]\n\
         # verdict = \"ask\"\n\n",
    );
    if let Some((cname, var, host, header, prefix)) = f.credential {
        let _ = writeln!(
            t,
            "# Keep the real model key out of the wall: define `{cname}` with its source in\n# your own config ($BLASTWALL_HOME/config.toml), then uncomment. Inside,\n# ${var} then holds a placeholder the proxy swaps on requests to {host}.\n# [[credential]]\n# name = \"{cname}\"\n# env = \"{var}\"\n# hosts = [\"{host}\"]\n# header = \"{header}\"\n# prefix = \"{prefix}\"\n"
        );
    }
    let doctor = blastwall_sandbox::doctor();
    let missing: Vec<&blastwall_sandbox::Check> = doctor
        .checks
        .iter()
        .filter(|c| {
            !c.required
                && c.status == blastwall_sandbox::CheckStatus::Missing
                && blastwall_sandbox::Layer::ALL
                    .iter()
                    .any(|l| l.name() == c.name)
        })
        .collect();
    if !missing.is_empty() {
        t.push_str("[sandbox]\n# `blastwall doctor` found layers this host cannot apply; `run` refuses to\n# start without a layer unless it is accepted missing here:\n");
        for c in &missing {
            let _ = writeln!(t, "#   {}: {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                let _ = writeln!(t, "#   fix: {fix}");
            }
        }
        let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(t, "accept_missing = [{}]\n", list(&names));
    }
    t.push_str(
        "[approval]\n\
         # An ask nobody answers becomes a deny.\n\
         timeout = \"5m\"\n\
         on_timeout = \"deny\"\n\n\
         [audit]\n\
         # Actions with side effects are on disk before they are released.\n\
         fsync = \"side-effects\"\n",
    );
    t
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| toml_str(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_owned()
}

/// Adds the agent's state directories to `filesystem.write` of the user's
/// own config (creating it), so the project manifest may name them (I8).
fn grant_agent_state(agent: Agent, home: &Home) -> anyhow::Result<Vec<String>> {
    let f = facts(agent);
    if f.state_rw.is_empty() {
        return Ok(Vec::new());
    }
    let path: PathBuf = home.config_file();
    let existing = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from(
            "# Your own blastwall config: credential sources and grants outside projects.\n# A project's blastwall.toml may only name what is granted here.\nversion = 1\n",
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = existing
        .parse()
        .with_context(|| format!("cannot edit {}: it is not valid TOML", path.display()))?;
    let fs = doc
        .entry("filesystem")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .with_context(|| format!("`filesystem` in {} is not a table", path.display()))?;
    let mut added = Vec::new();
    let home_ro: Vec<&str> = f
        .settings_ro
        .iter()
        .copied()
        .filter(|p| p.starts_with("~/"))
        .collect();
    for (key, paths) in [("write", f.state_rw), ("read", home_ro.as_slice())] {
        let list = fs
            .entry(key)
            .or_insert(toml_edit::Item::Value(toml_edit::Value::Array(
                toml_edit::Array::new(),
            )))
            .as_array_mut()
            .with_context(|| format!("`filesystem.{key}` in {} is not an array", path.display()))?;
        for p in paths {
            if !list.iter().any(|v| v.as_str() == Some(p)) {
                list.push(*p);
                added.push(format!("{p} ({key})"));
            }
        }
    }
    if !added.is_empty() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension("toml.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(doc.to_string().as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(added)
}
