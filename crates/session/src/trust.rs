//! Trust on first use (I8): a project manifest is enforced only once the
//! user has recorded its hash with `blastwall trust`, and again after every
//! change.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The hex SHA-256 of a manifest's bytes.
pub fn manifest_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a manifest is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustState {
    /// Its hash is recorded.
    Trusted,
    /// It was never trusted.
    Untrusted,
    /// It was trusted, and has changed since.
    Changed {
        /// The hash that was trusted.
        trusted: String,
    },
}

/// A failure of the trust store.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The store could not be read.
    #[error("cannot read trust store {path}")]
    Read {
        /// The store.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store is not valid JSON of the expected shape.
    #[error(
        "trust store {path} is damaged: {reason}; move it aside and trust your manifests again"
    )]
    Damaged {
        /// The store.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store could not be written.
    #[error("cannot write trust store {path}")]
    Write {
        /// The store.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The trust store: canonical manifest path → trusted hash, in one JSON
/// file under `BLASTWALL_HOME` (0600, replaced atomically).
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    entries: BTreeMap<String, String>,
}

impl TrustStore {
    /// Opens the store at `path` (missing = empty).
    pub fn open(path: &Path) -> Result<TrustStore, TrustError> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<BTreeMap<String, String>>(&bytes).map_err(|e| {
                    TrustError::Damaged {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    }
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(TrustError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(TrustStore {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The state of the manifest at canonical path `manifest` with these bytes.
    pub fn state(&self, manifest: &Path, bytes: &[u8]) -> TrustState {
        let digest = manifest_digest(bytes);
        match self.entries.get(&key(manifest)) {
            Some(h) if *h == digest => TrustState::Trusted,
            Some(h) => TrustState::Changed { trusted: h.clone() },
            None => TrustState::Untrusted,
        }
    }

    /// Records the manifest's hash and saves the store.
    pub fn trust(&mut self, manifest: &Path, bytes: &[u8]) -> Result<String, TrustError> {
        let digest = manifest_digest(bytes);
        self.entries.insert(key(manifest), digest.clone());
        self.save()?;
        Ok(digest)
    }

    fn save(&self) -> Result<(), TrustError> {
        let err = |source| TrustError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.entries).map_err(|e| err(e.into()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        Ok(())
    }
}

fn key(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_then_change() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let store_path = t.path().join("trust.json");
        let m = Path::new("/p/blastwall.toml");
        let mut s = TrustStore::open(&store_path)?;
        assert_eq!(s.state(m, b"version = 1\n"), TrustState::Untrusted);
        s.trust(m, b"version = 1\n")?;
        let s = TrustStore::open(&store_path)?;
        assert_eq!(s.state(m, b"version = 1\n"), TrustState::Trusted);
        assert!(matches!(
            s.state(m, b"version = 1\n#x\n"),
            TrustState::Changed { .. }
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&store_path)?.permissions().mode() & 0o777,
            0o600
        );
        Ok(())
    }
}
