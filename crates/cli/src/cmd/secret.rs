//! `blastwall secret set | list | rm`: the store under `BLASTWALL_HOME`.
//! What protects it is the file permissions (0600 files in a 0700
//! directory) and your uid; there is no encryption (a key stored beside the
//! data would not be any).

use std::io::Read as _;

use anyhow::Context as _;
use blastwall_secrets::SecretStore;
use blastwall_session::{Env, Home};
use serde_json::json;

use crate::Status;
use crate::args::SecretCommand;
use crate::out;

pub(crate) fn run(c: &SecretCommand, env: &Env) -> anyhow::Result<Status> {
    let home = Home::locate(env);
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let store = SecretStore::open(home.root().join("secrets"))?;
    match c {
        SecretCommand::Set { name } => {
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .context("cannot read the value from stdin")?;
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            if value.is_empty() {
                anyhow::bail!(
                    "refusing to store an empty secret `{name}` (pipe the value on stdin)"
                );
            }
            store.set(name, &value)?;
            value.iter_mut().for_each(|b| *b = 0);
            out::text(&format!(
                "stored `{name}` in {}; name it in your own config as source = \"store:{name}\"",
                store.dir().display()
            ))?;
        }
        SecretCommand::List { json } => {
            let entries = store.list()?;
            if *json {
                out::json(&json!(
                    entries
                        .iter()
                        .map(|e| json!({"name": e.name}))
                        .collect::<Vec<_>>()
                ))?;
            } else {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                out::text(&if names.is_empty() {
                    "no secrets".to_owned()
                } else {
                    names.join("\n")
                })?;
            }
        }
        SecretCommand::Rm { name } => {
            store.remove(name)?;
            out::text(&format!("removed `{name}`"))?;
        }
    }
    Ok(Status::Ok)
}
