//! Applying a session's overlay to the real project (I7): every target is
//! opened relative to the project root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so no symlink — in the overlay or already in the
//! real tree — is ever followed out of it; each file is written beside its
//! target, synced and renamed over it; a journal lets an interrupted commit
//! resume; files changed in the real tree since the session began are
//! conflicts, never overwritten without `--force`.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::overlay::{Change, ChangeKind, Entry, changes};
use crate::sessions::{SessionDir, SessionMeta, Status};

/// Paths whose change would run code or widen permissions later, outside
/// the wall. They are flagged, and skipped unless named on the command line.
const SENSITIVE_PREFIXES: &[&str] = &[
    ".claude/",
    ".cursor/",
    ".codex/",
    ".gemini/",
    ".git/hooks/",
    ".vscode/",
    ".idea/",
    ".github/workflows/",
    ".circleci/",
    ".husky/",
];
const SENSITIVE_FILES: &[&str] = &[
    "blastwall.toml",
    ".mcp.json",
    ".git/config",
    ".envrc",
    ".gitlab-ci.yml",
    ".npmrc",
    ".yarnrc.yml",
    ".pre-commit-config.yaml",
];
const SHELL_STARTUP: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    "config.fish",
];

/// Whether a change to `rel` is one that would run code or widen permissions later.
pub fn is_sensitive(rel: &Path) -> bool {
    // At any depth: a nested project's `.envrc` or `.vscode/` runs code too.
    let s = format!("/{}", rel.to_string_lossy());
    SENSITIVE_FILES
        .iter()
        .any(|f| s.ends_with(&format!("/{f}")))
        || SENSITIVE_PREFIXES.iter().any(|p| {
            s.contains(&format!("/{p}")) || s.ends_with(&format!("/{}", p.trim_end_matches('/')))
        })
        || rel
            .file_name()
            .is_some_and(|n| SHELL_STARTUP.contains(&n.to_string_lossy().as_ref()))
}

/// Options of a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Only these paths (relative to the project); all when empty. A
    /// sensitive path is committed only when named here.
    pub paths: Vec<PathBuf>,
    /// Overwrite files changed in the real tree since the session began.
    pub force: bool,
    /// Only report what would happen.
    pub dry_run: bool,
}

/// What a commit did, or would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitReport {
    /// Applied to the real tree.
    pub applied: Vec<Change>,
    /// Flagged and skipped: would run code or widen permissions later.
    pub sensitive: Vec<PathBuf>,
    /// Changed in the real tree since the session began (not applied unless forced).
    pub conflicts: Vec<(PathBuf, String)>,
    /// Refused: device nodes, fifos, sockets, paths through a symlink.
    pub refused: Vec<(PathBuf, String)>,
    /// Whether the commit resumed an interrupted one.
    pub resumed: bool,
}

/// Why a commit or discard could not run.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The session is still running.
    #[error("session {0} is still running; stop it before committing or discarding")]
    Running(String),
    /// Reading the overlay failed.
    #[error(transparent)]
    Read(#[from] crate::overlay::ReadError),
    /// The session record failed.
    #[error(transparent)]
    Session(#[from] crate::sessions::SessionError),
    /// The session was already closed.
    #[error("session {id} is closed ({how}): nothing left to apply or throw away")]
    Closed {
        /// The session.
        id: String,
        /// committed or discarded.
        how: String,
    },
    /// A file operation failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path (relative to the project, or the journal).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JournalLine {
    Begin { begin: Vec<PathBuf> },
    Done { done: PathBuf },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustix::io::Errno) -> CommitError + 'a {
    move |e| CommitError::Io {
        what,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn std_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CommitError + 'a {
    move |source| CommitError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The project root, opened once; everything else is opened beneath it.
struct Root {
    fd: OwnedFd,
}

impl Root {
    fn open(project: &Path) -> Result<Root, CommitError> {
        let fd = rustix::fs::open(
            project,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(io_err("open the project", project))?;
        Ok(Root { fd })
    }

    /// Opens the parent directory of `rel` beneath the root, creating
    /// missing directories when `create` (owned by `owner` when root).
    fn parent(
        &self,
        rel: &Path,
        create: Option<(u32, u32)>,
    ) -> Result<(OwnedFd, PathBuf), CommitError> {
        let name = rel.file_name().map(PathBuf::from).unwrap_or_default();
        let mut dir = rustix::io::dup(&self.fd).map_err(io_err("open the project", rel))?;
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                let Component::Normal(part) = c else {
                    return Err(CommitError::Io {
                        what: "resolve",
                        path: rel.to_path_buf(),
                        source: std::io::Error::other("path leaves the project"),
                    });
                };
                let open = |d: &OwnedFd| {
                    rustix::fs::openat2(
                        d,
                        part,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                        BENEATH,
                    )
                };
                dir = match open(&dir) {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::NOENT) if create.is_some() => {
                        rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755))
                            .map_err(io_err("create directory for", rel))?;
                        let fd = open(&dir).map_err(io_err("open directory for", rel))?;
                        if let Some((uid, gid)) =
                            create.filter(|_| rustix::process::geteuid().is_root())
                        {
                            chown_fd(&fd, uid, gid)
                                .map_err(io_err("set the owner of a directory for", rel))?;
                        }
                        fd
                    }
                    Err(e) => return Err(io_err("open directory for", rel)(e)),
                };
            }
        }
        Ok((dir, name))
    }
}

fn chown_fd(fd: impl AsFd, uid: u32, gid: u32) -> rustix::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
}

fn ctime_ns(st: &rustix::fs::Stat) -> u128 {
    let secs = u128::try_from(st.st_ctime).unwrap_or(0);
    let nanos = u128::from(st.st_ctime_nsec);
    secs * 1_000_000_000 + nanos
}

fn tmp_name(name: &Path) -> PathBuf {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    PathBuf::from(format!(
        ".{}.blastwall-{}",
        name.to_string_lossy(),
        hex::encode(b)
    ))
}

/// Applies the session's changes to the real project.
pub fn commit(session: &SessionDir, opts: &CommitOptions) -> Result<CommitReport, CommitError> {
    let mut meta = session.meta()?;
    if session.status(&meta) == Status::Running {
        return Err(CommitError::Running(meta.id));
    }
    if let Some(how) = &meta.closed {
        return Err(CommitError::Closed {
            id: meta.id,
            how: how.clone(),
        });
    }
    let upper = session.upper();
    let all = changes(&upper, &meta.project)?;
    let mut report = CommitReport::default();

    // A journal left by an interrupted commit: what it had already done.
    let journal_path = session.journal();
    let mut done: Vec<PathBuf> = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&journal_path) {
        report.resumed = true;
        for line in text.lines() {
            if let Ok(JournalLine::Done { done: p }) = serde_json::from_str(line) {
                done.push(p);
            }
        }
    }

    let named = |c: &Change| opts.paths.iter().any(|p| c.path.starts_with(p));
    // Paths whose directory the commit itself (re)creates: their parent not
    // being there yet is not a conflict.
    let remade: Vec<PathBuf> = all
        .iter()
        .filter(|c| {
            c.entry == Entry::Dir && matches!(c.kind, ChangeKind::Added | ChangeKind::TypeChanged)
        })
        .map(|c| c.path.clone())
        .collect();
    let root = Root::open(&meta.project)?;
    let mut todo = Vec::new();
    for c in all {
        if !opts.paths.is_empty() && !named(&c) {
            continue;
        }
        if is_sensitive(&c.path) && !opts.paths.iter().any(|p| p == &c.path) {
            report.sensitive.push(c.path.clone());
            continue;
        }
        if c.entry == Entry::Special {
            report.refused.push((
                c.path.clone(),
                "a device node, fifo or socket is never committed".into(),
            ));
            continue;
        }
        let under_remade = remade.iter().any(|d| c.path != *d && c.path.starts_with(d));
        if !done.contains(&c.path)
            && !under_remade
            && let Some(why) = conflict(&root, &c, &meta)
        {
            report.conflicts.push((c.path.clone(), why));
        }
        todo.push(c);
    }
    if opts.dry_run || (!report.conflicts.is_empty() && !opts.force) {
        report.applied = todo;
        if !opts.dry_run {
            report.applied.clear();
        }
        return Ok(report);
    }

    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .map_err(std_err("write the journal", &journal_path))?;
    if !report.resumed {
        let line = serde_json::to_string(&JournalLine::Begin {
            begin: todo.iter().map(|c| c.path.clone()).collect(),
        })
        .unwrap_or_default();
        writeln!(journal, "{line}")
            .and_then(|()| journal.sync_data())
            .map_err(std_err("write the journal", &journal_path))?;
    }
    for c in todo {
        if !done.contains(&c.path) {
            match apply(&root, &upper, &c, &meta) {
                Ok(()) => {}
                Err(CommitError::Io { source, .. })
                    if source.raw_os_error() == Some(libc_eloop()) =>
                {
                    report.refused.push((
                        c.path.clone(),
                        "a symlink in the real tree lies on this path; not followed".into(),
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            }
            let line = serde_json::to_string(&JournalLine::Done {
                done: c.path.clone(),
            })
            .unwrap_or_default();
            writeln!(journal, "{line}")
                .and_then(|()| journal.sync_data())
                .map_err(std_err("write the journal", &journal_path))?;
        }
        report.applied.push(c);
    }
    // Take what was applied out of the overlay, so `diff` shows what is left.
    let everything =
        opts.paths.is_empty() && report.sensitive.is_empty() && report.refused.is_empty();
    if everything {
        clear_dir(&upper).map_err(std_err("clear", &upper))?;
        meta.closed = Some("committed".into());
        session.write_meta(&meta)?;
        session.release_overlay()?;
    } else {
        for c in &report.applied {
            let p = upper.join(&c.path);
            if matches!(c.entry, Entry::File | Entry::Symlink | Entry::None) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    drop(journal);
    std::fs::remove_file(&journal_path).map_err(std_err("remove the journal", &journal_path))?;
    Ok(report)
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

fn conflict(root: &Root, c: &Change, meta: &SessionMeta) -> Option<String> {
    let (parent, name) = match root.parent(&c.path, None) {
        Ok(x) => x,
        Err(CommitError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return match c.kind {
                ChangeKind::Added => None,
                ChangeKind::Modified
                | ChangeKind::ModeChanged
                | ChangeKind::TypeChanged
                | ChangeKind::Deleted => {
                    Some("its directory was removed from the project during the session".into())
                }
            };
        }
        Err(e) => return Some(format!("cannot check it: {e}")),
    };
    match rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match c.kind {
            ChangeKind::Added => Some("it was created in the project during the session".into()),
            ChangeKind::Modified
            | ChangeKind::ModeChanged
            | ChangeKind::TypeChanged
            | ChangeKind::Deleted => (ctime_ns(&st) >= meta.started_ns)
                .then(|| "it changed in the project during the session".into()),
        },
        Err(rustix::io::Errno::NOENT) => match c.kind {
            ChangeKind::Added | ChangeKind::Deleted => None,
            ChangeKind::Modified | ChangeKind::ModeChanged | ChangeKind::TypeChanged => {
                Some("it was deleted from the project during the session".into())
            }
        },
        Err(e) => Some(format!("cannot check it: {e}")),
    }
}

/// Opens `name` beneath `parent` (never through a symlink) and sets its mode.
fn chmod_beneath(
    parent: &OwnedFd,
    name: &Path,
    rel: &Path,
    extra: OFlags,
    mode: u32,
) -> Result<OwnedFd, CommitError> {
    let fd = rustix::fs::openat2(
        parent,
        name,
        extra | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    )
    .map_err(io_err("open", rel))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
        .map_err(io_err("change the mode of", rel))?;
    Ok(fd)
}

fn apply(root: &Root, upper: &Path, c: &Change, meta: &SessionMeta) -> Result<(), CommitError> {
    let rel = &c.path;
    let owner = meta.owner;
    let as_root = rustix::process::geteuid().is_root();
    let (parent, name) = root.parent(rel, Some(owner))?;
    let src = upper.join(rel);
    let clean_mode = c.new_mode.unwrap_or(0o644) & 0o1777; // no setuid, no setgid
    match (c.kind, c.entry) {
        (ChangeKind::Deleted, _) => remove_beneath(&parent, &name, rel),
        (ChangeKind::ModeChanged, Entry::Dir | Entry::File) => {
            chmod_beneath(&parent, &name, rel, OFlags::NOFOLLOW, clean_mode).map(drop)
        }
        (_, Entry::Dir) => {
            if c.kind == ChangeKind::TypeChanged {
                remove_beneath(&parent, &name, rel)?;
            }
            match rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(clean_mode & 0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_err("create directory", rel)(e)),
            }
            let fd = chmod_beneath(&parent, &name, rel, OFlags::DIRECTORY, clean_mode)?;
            if as_root {
                chown_fd(&fd, owner.0, owner.1).map_err(io_err("set the owner of", rel))?;
            }
            Ok(())
        }
        (_, Entry::File) => {
            let tmp = tmp_name(&name);
            let mut data = std::fs::File::open(&src).map_err(std_err("read the overlay's", rel))?;
            let fd = rustix::fs::openat(
                &parent,
                &tmp,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(io_err("create a file beside", rel))?;
            let mut out = std::fs::File::from(fd);
            std::io::copy(&mut data, &mut out).map_err(std_err("write", rel))?;
            rustix::fs::fchmod(&out, Mode::from_raw_mode(clean_mode))
                .map_err(io_err("change the mode of", rel))?;
            if as_root {
                chown_fd(&out, owner.0, owner.1).map_err(io_err("set the owner of", rel))?;
            }
            out.sync_all().map_err(std_err("sync", rel))?;
            drop(out);
            if c.kind == ChangeKind::TypeChanged {
                remove_beneath(&parent, &name, rel)?;
            }
            rustix::fs::renameat(&parent, &tmp, &parent, &name)
                .map_err(io_err("rename into place", rel))?;
            rustix::fs::fsync(&parent).map_err(io_err("sync the directory of", rel))
        }
        (_, Entry::Symlink) => {
            let target = std::fs::read_link(&src).map_err(std_err("read the overlay's", rel))?;
            let tmp = tmp_name(&name);
            rustix::fs::symlinkat(target.as_os_str(), &parent, &tmp)
                .map_err(io_err("create a symlink beside", rel))?;
            if as_root {
                rustix::fs::chownat(
                    &parent,
                    &tmp,
                    Some(rustix::fs::Uid::from_raw(owner.0)),
                    Some(rustix::fs::Gid::from_raw(owner.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("set the owner of", rel))?;
            }
            if c.kind == ChangeKind::TypeChanged {
                remove_beneath(&parent, &name, rel)?;
            }
            rustix::fs::renameat(&parent, &tmp, &parent, &name)
                .map_err(io_err("rename into place", rel))?;
            rustix::fs::fsync(&parent).map_err(io_err("sync the directory of", rel))
        }
        (_, Entry::Special | Entry::None) => Ok(()),
    }
}

/// Removes `name` in `parent` and, for a directory, all it holds, without
/// following any symlink.
fn remove_beneath(parent: &OwnedFd, name: &Path, rel: &Path) -> Result<(), CommitError> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err("inspect", rel)(e)),
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            let dir = rustix::fs::openat2(
                parent,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )
            .map_err(io_err("open", rel))?;
            let mut children = Vec::new();
            let iter = rustix::fs::Dir::read_from(&dir).map_err(io_err("list", rel))?;
            for entry in iter {
                let entry = entry.map_err(io_err("list", rel))?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    children.push(PathBuf::from(OsStr::from_bytes(n)));
                }
            }
            for ch in children {
                remove_beneath(&dir, &ch, &rel.join(&ch))?;
            }
            rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(io_err("remove", rel))
        }
        Ok(_) => {
            rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(io_err("remove", rel))
        }
    }
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if e.file_type()?.is_dir() {
            // overlayfs leaves its `work/work` directory with mode 000.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
            clear_dir(&p)?;
            std::fs::remove_dir(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Throws the session's changes away.
pub fn discard(session: &SessionDir) -> Result<usize, CommitError> {
    let mut meta = session.meta()?;
    if session.status(&meta) == Status::Running {
        return Err(CommitError::Running(meta.id));
    }
    if let Some(how) = &meta.closed {
        return Err(CommitError::Closed {
            id: meta.id,
            how: how.clone(),
        });
    }
    let n = changes(&session.upper(), &meta.project)?.len();
    let upper = session.upper();
    clear_dir(&upper).map_err(std_err("clear", &upper))?;
    let work = session.work();
    clear_dir(&work).map_err(std_err("clear", &work))?;
    meta.closed = Some("discarded".into());
    session.write_meta(&meta)?;
    session.release_overlay()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_paths() {
        for p in [
            "blastwall.toml",
            ".claude/settings.json",
            ".git/hooks/pre-commit",
            ".git/config",
            ".github/workflows/ci.yml",
            "sub/.bashrc",
            ".envrc",
            ".mcp.json",
            ".vscode",
        ] {
            assert!(is_sensitive(Path::new(p)), "{p}");
        }
        for p in ["src/main.rs", "README.md", ".gitignore", "docs/.claude.md"] {
            assert!(!is_sensitive(Path::new(p)), "{p}");
        }
    }
}
