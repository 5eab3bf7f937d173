//! The store: one 0600 file per secret in a 0700 directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::{MAX_SECRET_BYTES, Secret, SecretError};

/// Checks a secret name: 1 to 64 of `A-Z a-z 0-9 _ -`. Nothing else can
/// reach the file system (no `/`, no `.`, no `..`).
pub fn validate_name(name: &str) -> Result<(), SecretError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SecretError::BadName {
            name: name.to_owned(),
        })
    }
}

/// One stored secret, as [`SecretStore::list`] shows it (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// When it was last set.
    pub modified: SystemTime,
}

/// The secret store under `$BLASTWALL_HOME/secrets/`.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + use<> {
    let path = path.to_path_buf();
    move |error| SecretError::Io { op, path, error }
}

impl SecretStore {
    /// Opens the store in `dir`, creating it with mode 0700 if it does not
    /// exist. An existing directory must be a real directory (not a symlink)
    /// owned by the current user, with no group or other permissions.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SecretStore, SecretError> {
        let dir = dir.into();
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = dir.parent() {
                    fs::create_dir_all(parent).map_err(io("create", parent))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io("create", &dir))?;
                // The umask may have taken bits away, never added any; set it exactly.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(io("chmod", &dir))?;
            }
            Err(e) => return Err(io("stat", &dir)(e)),
            Ok(_) => {}
        }
        let meta = fs::symlink_metadata(&dir).map_err(io("stat", &dir))?;
        if !meta.is_dir() {
            return Err(SecretError::Unsafe {
                path: dir,
                why: "not a directory (or a symlink)".into(),
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Unsafe {
                path: dir,
                why: format!("mode {mode:04o} lets others in; chmod 700 it"),
            });
        }
        let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if let Some(me) = me
            && meta.uid() != me
        {
            return Err(SecretError::Unsafe {
                path: dir,
                why: format!("owned by uid {}, not by you (uid {me})", meta.uid()),
            });
        }
        Ok(SecretStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, SecretError> {
        validate_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Stores `value` under `name`, replacing any previous value atomically:
    /// temporary file (0600 from creation) → write → fsync → rename → fsync
    /// of the directory.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), SecretError> {
        let path = self.path(name)?;
        let origin = format!("store:{name}");
        if value.is_empty() {
            return Err(SecretError::Empty { origin });
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge { origin });
        }
        let tmp = self.dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_o_nofollow())
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(value).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("sync", &tmp))?;
            fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &self.dir))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Reads the secret `name`. The file must be a regular file (not a
    /// symlink) with no group or other permissions.
    pub fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let path = self.path(name)?;
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::NotFound {
                    name: name.to_owned(),
                    dir: self.dir.clone(),
                });
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        let meta = f.metadata().map_err(io("stat", &path))?;
        if !meta.is_file() || meta.mode() & 0o077 != 0 {
            return Err(SecretError::Unsafe {
                path,
                why: format!(
                    "a secret must be a regular file of mode 0600 (found mode {:04o})",
                    meta.mode() & 0o7777
                ),
            });
        }
        read_bounded(&mut f, &format!("store:{name}"), &path).map(Secret::new)
    }

    /// The stored secrets' names and modification times, sorted by name.
    pub fn list(&self) -> Result<Vec<Entry>, SecretError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let e = e.map_err(io("list", &self.dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue; // temporary files and anything that is not ours
            }
            let meta = e.metadata().map_err(io("stat", &e.path()))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().map_err(io("stat", &e.path()))?;
            out.push(Entry { name, modified });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the secret `name`.
    pub fn remove(&self, name: &str) -> Result<(), SecretError> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &self.dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::NotFound {
                name: name.to_owned(),
                dir: self.dir.clone(),
            }),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }
}

/// `O_NOFOLLOW` on Linux (x86_64, aarch64 and most others).
fn libc_o_nofollow() -> i32 {
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        0o100000
    } else {
        0o400000
    }
}

/// Reads at most [`MAX_SECRET_BYTES`], into a buffer that is zeroized if
/// anything fails.
pub(crate) fn read_bounded(
    f: &mut impl Read,
    origin: &str,
    path: &Path,
) -> Result<Vec<u8>, SecretError> {
    // Reserved up front so the buffer never moves (a move would leave an
    // unzeroized copy behind in freed memory).
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_BYTES + 1));
    let limit = u64::try_from(MAX_SECRET_BYTES).unwrap_or(u64::MAX) + 1;
    f.take(limit)
        .read_to_end(&mut buf)
        .map_err(io("read", path))?;
    if buf.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge {
            origin: origin.to_owned(),
        });
    }
    if buf.is_empty() {
        return Err(SecretError::Empty {
            origin: origin.to_owned(),
        });
    }
    Ok(std::mem::take(&mut *buf))
}
