mod decide;
mod diagnostics;
mod pocketos;
mod properties;
mod schema;

use std::path::{Path, PathBuf};

use blastwall_policy::{Context, Diagnostic, Loaded, Origin, Source, UserGrants};

/// The directory holding the test manifests.
pub(crate) fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests")
}

/// The fake home every test uses.
pub(crate) const HOME: &str = "/home/agent";

/// Loads a manifest text as a project manifest rooted at `/work/proj`.
pub(crate) fn load_text(text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    load_with(text, "/work/proj", None)
}

pub(crate) fn load_with(
    text: &str,
    root: &str,
    user: Option<&UserGrants>,
) -> Result<Loaded, Vec<Diagnostic>> {
    load_full(text, root, user, false)
}

pub(crate) fn load_full(
    text: &str,
    root: &str,
    user: Option<&UserGrants>,
    enforce: bool,
) -> Result<Loaded, Vec<Diagnostic>> {
    let source = Source::new("blastwall.toml", text);
    let cx = Context {
        origin: Origin::Project,
        project_root: PathBuf::from(root),
        home: PathBuf::from(HOME),
        user,
        enforce,
    };
    blastwall_policy::load(&source, &cx)
}

/// Loads a manifest that must be valid.
pub(crate) fn policy(text: &str) -> blastwall_policy::Policy {
    match load_text(text) {
        Ok(l) => l.policy,
        Err(d) => panic!(
            "manifest should load:\n{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
