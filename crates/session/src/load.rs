//! Loading a manifest: read once from the real tree, trust checked, merged
//! with the user's own grants, compiled.

use std::path::{Path, PathBuf};

use blastwall_policy::{Context, Diagnostic, Loaded, Origin, Source, UserGrants};

use crate::home::{Env, Home};
use crate::trust::{TrustError, TrustState, TrustStore};

/// Why the manifest is being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To enforce it (`run`, the proxy): it must be trusted.
    Enforce,
    /// To check, explain or test it: trust is reported, not required.
    Inspect,
}

/// A manifest ready for use.
#[derive(Debug)]
pub struct LoadedManifest {
    /// The canonical path of the manifest.
    pub path: PathBuf,
    /// The compiled policy and its warnings.
    pub loaded: Loaded,
    /// Its trust state.
    pub trust: TrustState,
    /// The user's own config was read and merged.
    pub user_config: Option<PathBuf>,
    /// The exact bytes that were checked, loaded and hashed.
    pub bytes: Vec<u8>,
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read manifest {path}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest has errors.
    #[error("{} has {} error(s)", path.display(), diagnostics.iter().filter(|d| d.severity == blastwall_policy::Severity::Error).count())]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// Every problem.
        diagnostics: Vec<Diagnostic>,
    },
    /// The user's own config has errors.
    #[error("your config {path} has errors")]
    UserConfig {
        /// The config file.
        path: PathBuf,
        /// Every problem.
        diagnostics: Vec<Diagnostic>,
    },
    /// The manifest was never trusted.
    #[error(
        "{path} is not trusted: a manifest in a repository is untrusted input until you have read it; review it, then run `blastwall trust {path}`"
    )]
    Untrusted {
        /// The manifest.
        path: PathBuf,
    },
    /// The manifest changed since it was trusted.
    #[error(
        "{path} changed since you trusted it (trusted sha256 {trusted}); review the change, then run `blastwall trust {path}`"
    )]
    Changed {
        /// The manifest.
        path: PathBuf,
        /// The hash that was trusted.
        trusted: String,
    },
    /// The trust store failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// Loads the manifest at `path` for `purpose`.
pub fn load_manifest(
    path: &Path,
    env: &Env,
    home: &Home,
    purpose: Purpose,
) -> Result<LoadedManifest, LoadError> {
    let canonical = std::fs::canonicalize(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = std::fs::read(&canonical).map_err(|source| LoadError::Read {
        path: canonical.clone(),
        source,
    })?;
    let trust = TrustStore::open(&home.trust_file())?.state(&canonical, &bytes);
    if purpose == Purpose::Enforce {
        match &trust {
            TrustState::Trusted => {}
            TrustState::Untrusted => return Err(LoadError::Untrusted { path: canonical }),
            TrustState::Changed { trusted } => {
                return Err(LoadError::Changed {
                    path: canonical,
                    trusted: trusted.clone(),
                });
            }
        }
    }
    let home_dir = env.home_dir();
    let (grants, user_config) = read_user_grants(home, &home_dir)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let source = Source::new(path.display().to_string(), text);
    let project_root = canonical
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let cx = Context {
        origin: Origin::Project,
        project_root,
        home: home_dir,
        user: grants.as_ref(),
        enforce: purpose == Purpose::Enforce,
    };
    let loaded =
        blastwall_policy::load(&source, &cx).map_err(|diagnostics| LoadError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        })?;
    Ok(LoadedManifest {
        path: canonical,
        loaded,
        trust,
        user_config,
        bytes,
    })
}

fn read_user_grants(
    home: &Home,
    home_dir: &Path,
) -> Result<(Option<UserGrants>, Option<PathBuf>), LoadError> {
    let path = home.config_file();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let source = Source::new(
        path.display().to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    );
    let grants = blastwall_policy::load_user_grants(&source, home_dir).map_err(|diagnostics| {
        LoadError::UserConfig {
            path: path.clone(),
            diagnostics,
        }
    })?;
    Ok((Some(grants), Some(path)))
}
