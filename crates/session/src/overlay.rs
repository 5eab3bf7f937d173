//! Reading an overlay's upper directory as a list of changes to the project:
//! added, modified and deleted files, mode and type changes, whiteouts and
//! opaque directories in both of overlayfs' encodings (a 0:0 character
//! device, or the `overlay.whiteout` xattr; `overlay.opaque`), under the
//! `user.` prefix (`userxattr`, as mounted in a user namespace) or
//! `trusted.`.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// It did not exist in the project.
    Added,
    /// Its content changed.
    Modified,
    /// Only its permission bits changed.
    ModeChanged,
    /// It is now of another type (a file became a symlink, …).
    TypeChanged,
    /// It was removed.
    Deleted,
}

/// What a path is in the upper directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device node, fifo or socket: never committed.
    Special,
    /// Nothing (a deletion).
    None,
}

/// One change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The path relative to the project root.
    pub path: PathBuf,
    /// What happened.
    pub kind: ChangeKind,
    /// What the path is now.
    pub entry: Entry,
    /// The mode before (permission bits), if it existed.
    pub old_mode: Option<u32>,
    /// The mode now, if it exists.
    pub new_mode: Option<u32>,
}

/// Why the changes could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct ReadError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError {
        path: path.to_path_buf(),
        source,
    }
}

fn xattr_is(path: &Path, suffix: &str, want: &[u8]) -> bool {
    ["user.overlay.", "trusted.overlay."].iter().any(|prefix| {
        let mut buf = [0u8; 8];
        match rustix::fs::lgetxattr(path, format!("{prefix}{suffix}").as_str(), &mut buf[..]) {
            Ok(n) => want.is_empty() || buf.get(..n) == Some(want),
            Err(_) => false,
        }
    })
}

/// Whether an upper entry is a whiteout (the lower path is deleted).
fn is_whiteout(path: &Path, md: &Metadata) -> bool {
    (md.file_type().is_char_device() && md.rdev() == 0)
        || (md.is_file() && md.len() == 0 && xattr_is(path, "whiteout", b""))
}

fn is_opaque(path: &Path) -> bool {
    xattr_is(path, "opaque", b"y")
}

fn entry_of(md: &Metadata) -> Entry {
    let t = md.file_type();
    if t.is_symlink() {
        Entry::Symlink
    } else if t.is_dir() {
        Entry::Dir
    } else if t.is_file() {
        Entry::File
    } else {
        Entry::Special
    }
}

fn mode(md: &Metadata) -> u32 {
    md.permissions().mode() & 0o7777
}

/// Every change the upper directory holds against the project, sorted by path.
pub fn changes(upper: &Path, project: &Path) -> Result<Vec<Change>, ReadError> {
    let mut out = Vec::new();
    walk(upper, project, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(upper: &Path, project: &Path, rel: &Path, out: &mut Vec<Change>) -> Result<(), ReadError> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(err(&dir))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let up = upper.join(&r);
        let low = project.join(&r);
        let umd = std::fs::symlink_metadata(&up).map_err(err(&up))?;
        let lmd = std::fs::symlink_metadata(&low).ok();
        if is_whiteout(&up, &umd) {
            if let Some(l) = &lmd {
                deleted(&low, &r, l, out);
            }
            continue;
        }
        let entry = entry_of(&umd);
        match (&lmd, entry) {
            (None, Entry::Dir) => {
                out.push(Change {
                    path: r.clone(),
                    kind: ChangeKind::Added,
                    entry,
                    old_mode: None,
                    new_mode: Some(mode(&umd)),
                });
                walk(upper, project, &r, out)?;
            }
            (None, _) => out.push(Change {
                path: r,
                kind: ChangeKind::Added,
                entry,
                old_mode: None,
                new_mode: Some(mode(&umd)),
            }),
            (Some(l), Entry::Dir) if l.is_dir() => {
                if mode(l) != mode(&umd) {
                    out.push(Change {
                        path: r.clone(),
                        kind: ChangeKind::ModeChanged,
                        entry,
                        old_mode: Some(mode(l)),
                        new_mode: Some(mode(&umd)),
                    });
                }
                if is_opaque(&up) {
                    // Everything below in the project not in the upper is gone.
                    for child in std::fs::read_dir(&low).map_err(err(&low))?.flatten() {
                        if !up.join(child.file_name()).exists()
                            && std::fs::symlink_metadata(up.join(child.file_name())).is_err()
                        {
                            let cr = r.join(child.file_name());
                            if let Ok(cmd) = std::fs::symlink_metadata(project.join(&cr)) {
                                deleted(&project.join(&cr), &cr, &cmd, out);
                            }
                        }
                    }
                }
                walk(upper, project, &r, out)?;
            }
            (Some(l), _) if entry_of(l) != entry => {
                // The old one is gone (a directory with all it held), the new one is here.
                out.push(Change {
                    path: r.clone(),
                    kind: ChangeKind::TypeChanged,
                    entry,
                    old_mode: Some(mode(l)),
                    new_mode: Some(mode(&umd)),
                });
                if entry == Entry::Dir {
                    walk_added(upper, &r, out)?;
                }
            }
            (Some(l), _) => {
                let same = same_content(&low, &up, l, &umd).map_err(err(&up))?;
                if !same {
                    out.push(Change {
                        path: r,
                        kind: ChangeKind::Modified,
                        entry,
                        old_mode: Some(mode(l)),
                        new_mode: Some(mode(&umd)),
                    });
                } else if mode(l) != mode(&umd) && entry != Entry::Symlink {
                    out.push(Change {
                        path: r,
                        kind: ChangeKind::ModeChanged,
                        entry,
                        old_mode: Some(mode(l)),
                        new_mode: Some(mode(&umd)),
                    });
                }
            }
        }
    }
    Ok(())
}

fn walk_added(upper: &Path, rel: &Path, out: &mut Vec<Change>) -> Result<(), ReadError> {
    let dir = upper.join(rel);
    for e in std::fs::read_dir(&dir).map_err(err(&dir))?.flatten() {
        let r = rel.join(e.file_name());
        let p = upper.join(&r);
        let md = std::fs::symlink_metadata(&p).map_err(err(&p))?;
        if is_whiteout(&p, &md) {
            continue;
        }
        let entry = entry_of(&md);
        out.push(Change {
            path: r.clone(),
            kind: ChangeKind::Added,
            entry,
            old_mode: None,
            new_mode: Some(mode(&md)),
        });
        if entry == Entry::Dir {
            walk_added(upper, &r, out)?;
        }
    }
    Ok(())
}

fn deleted(low: &Path, rel: &Path, md: &Metadata, out: &mut Vec<Change>) {
    out.push(Change {
        path: rel.to_path_buf(),
        kind: ChangeKind::Deleted,
        entry: Entry::None,
        old_mode: Some(mode(md)),
        new_mode: None,
    });
    let _ = low;
}

fn same_content(low: &Path, up: &Path, lmd: &Metadata, umd: &Metadata) -> std::io::Result<bool> {
    if lmd.file_type().is_symlink() {
        return Ok(std::fs::read_link(low)? == std::fs::read_link(up)?);
    }
    if !lmd.is_file() {
        return Ok(true);
    }
    if lmd.len() != umd.len() {
        return Ok(false);
    }
    use std::io::Read as _;
    let mut a = std::fs::File::open(low)?;
    let mut b = std::fs::File::open(up)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = a.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        let slice = bb.get_mut(..n).unwrap_or_default();
        b.read_exact(slice)?;
        if ba.get(..n) != Some(&*slice) {
            return Ok(false);
        }
    }
}

/// Whether bytes look like text (UTF-8, no NUL in the first 8 KiB).
pub fn is_text(bytes: &[u8]) -> bool {
    !bytes.iter().take(8192).any(|b| *b == 0) && std::str::from_utf8(bytes).is_ok()
}
