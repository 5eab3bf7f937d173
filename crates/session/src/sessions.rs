//! Session directories under `BLASTWALL_HOME/sessions/<id>/`, never visible
//! inside the wall: the overlay's upper and work directories, the audit log,
//! and `session.json` with what the session was and how it ended.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::home::Home;

/// How a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Its supervisor is alive.
    Running,
    /// It ended and recorded how.
    Exited,
    /// Its supervisor died without recording an end (killed, crashed).
    Crashed,
}

/// What `session.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionMeta {
    /// The session id (also the directory name).
    pub id: String,
    /// A name given with `--name`, if any.
    pub name: Option<String>,
    /// Start, nanoseconds since the Unix epoch (the conflict cut-off of `commit`).
    pub started_ns: u128,
    /// The command run inside.
    pub command: Vec<String>,
    /// The project root on the host.
    pub project: PathBuf,
    /// The manifest in force.
    pub manifest: PathBuf,
    /// `overlay`, `ro` or `rw`.
    pub project_mode: String,
    /// The supervisor's pid and its start time in clock ticks (so a reused
    /// pid is not taken for a live session).
    pub supervisor: Option<(u32, u64)>,
    /// The exit code (128+N for a signal) once it exited.
    pub exit_code: Option<i32>,
    /// The layers really in force, as the sandbox reported them.
    pub layers: serde_json::Value,
    /// The user on whose behalf the session ran (files committed get this owner).
    pub owner: (u32, u32),
    /// Whether the overlay was committed or discarded.
    pub closed: Option<String>,
}

/// A session's directory.
#[derive(Debug, Clone)]
pub struct SessionDir {
    root: PathBuf,
}

/// A failure about a session directory.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session.
    #[error("no session `{0}` (see `blastwall sessions`)")]
    NotFound(String),
    /// No session at all.
    #[error("there are no sessions yet")]
    NoSessions,
    /// The session's files could not be read or written.
    #[error("session {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `session.json` is not what blastwall writes.
    #[error("session file {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A bad session id.
    #[error("bad session id `{0}`")]
    BadId(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl SessionDir {
    /// Creates a new session directory (0700) with a fresh id.
    pub fn create(home: &Home) -> Result<SessionDir, SessionError> {
        let d = SessionDir::create_root(home)?;
        for sub in ["upper", "work"] {
            let p = d.root.join(sub);
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(io(&p))?;
        }
        Ok(d)
    }

    /// The session's directory alone, with a fresh id.
    fn create_root(home: &Home) -> Result<SessionDir, SessionError> {
        let sessions = home.sessions_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sessions)
            .map_err(io(&sessions))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rand = random_suffix();
        let id = format!("{}-{rand}", format_id_time(secs));
        let root = sessions.join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(io(&root))?;
        Ok(SessionDir { root })
    }

    /// Like [`SessionDir::create`], for a supervisor running as root whose
    /// agent runs as the unprivileged `owner`: the overlay mount happens in
    /// the agent's user namespace, which cannot traverse root's private
    /// home, so the upper and work directories live under
    /// `overlay_base/<id>/` (the base 0711, the session's directory 0700
    /// owned by `owner`), reached from the session directory by symlinks
    /// the supervisor alone follows.
    pub fn create_for(
        home: &Home,
        overlay_base: &Path,
        owner: (u32, u32),
    ) -> Result<SessionDir, SessionError> {
        let d = SessionDir::create_root(home)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(overlay_base)
            .map_err(io(overlay_base))?;
        let ext = overlay_base.join(d.id());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&ext)
            .map_err(io(&ext))?;
        let chown =
            |p: &Path| std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1)).map_err(io(p));
        chown(&ext)?;
        for sub in ["upper", "work"] {
            let inside = d.root.join(sub);
            let target = ext.join(sub);
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&target)
                .map_err(io(&target))?;
            chown(&target)?;
            std::os::unix::fs::symlink(&target, &inside).map_err(io(&inside))?;
        }
        Ok(d)
    }

    /// Once a session is closed, removes overlay directories kept outside
    /// the session directory (a root supervisor's), leaving empty ones in it.
    pub fn release_overlay(&self) -> Result<(), SessionError> {
        let link = self.root.join("upper");
        let Ok(target) = std::fs::read_link(&link) else {
            return Ok(());
        };
        if let Some(ext) = target.parent() {
            let _ = std::fs::remove_dir_all(ext);
        }
        for sub in ["upper", "work"] {
            let p = self.root.join(sub);
            std::fs::remove_file(&p).map_err(io(&p))?;
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(io(&p))?;
        }
        Ok(())
    }

    /// The overlay directories' real location (they may be symlinked).
    fn resolved(&self, sub: &str) -> PathBuf {
        let p = self.root.join(sub);
        std::fs::read_link(&p).unwrap_or(p)
    }

    /// Opens session `id`, or the newest one when `id` is `None`.
    pub fn open(home: &Home, id: Option<&str>) -> Result<SessionDir, SessionError> {
        let sessions = home.sessions_dir();
        match id {
            Some(id) => {
                if id.is_empty() || id.contains('/') || id.starts_with('.') {
                    return Err(SessionError::BadId(id.to_owned()));
                }
                let root = sessions.join(id);
                if root.join("session.json").is_file() {
                    return Ok(SessionDir { root });
                }
                // A unique prefix will do.
                let matches: Vec<SessionDir> = list(home)?
                    .into_iter()
                    .filter(|d| d.id().starts_with(id))
                    .collect();
                match <[SessionDir; 1]>::try_from(matches) {
                    Ok([one]) => Ok(one),
                    Err(_) => Err(SessionError::NotFound(id.to_owned())),
                }
            }
            None => list(home)?.pop().ok_or(SessionError::NoSessions),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The session id.
    pub fn id(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The overlay's upper directory: the agent's writes.
    pub fn upper(&self) -> PathBuf {
        self.resolved("upper")
    }

    /// The overlay's work directory.
    pub fn work(&self) -> PathBuf {
        self.resolved("work")
    }

    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }

    /// The supervisor's control socket (present while it runs): `approve`
    /// and `deny` poke it so a held ask re-reads the store at once.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// The commit journal (present only while a commit is under way).
    pub fn journal(&self) -> PathBuf {
        self.root.join("commit.journal")
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join("session.json")
    }

    /// Reads `session.json`.
    pub fn meta(&self) -> Result<SessionMeta, SessionError> {
        let p = self.meta_path();
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&bytes).map_err(|e| SessionError::Damaged {
            path: p,
            reason: e.to_string(),
        })
    }

    /// Writes `session.json` atomically (0600).
    pub fn write_meta(&self, meta: &SessionMeta) -> Result<(), SessionError> {
        self.stage_meta(meta)?.commit()
    }

    /// The first half of [`SessionDir::write_meta`]: the new `session.json`
    /// is written beside the current one and synced, and takes its place
    /// at [`StagedMeta::commit`]. Until then the current one stands (a
    /// crash in between leaves it, never a partial file).
    pub fn stage_meta(&self, meta: &SessionMeta) -> Result<StagedMeta<'_>, SessionError> {
        let (f, tmp) = self.stage_unsynced(meta)?;
        if let Err(e) = f.sync_all() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        Ok(StagedMeta { dir: self, tmp })
    }

    /// [`SessionDir::write_meta`] in two steps: the new `session.json` is
    /// written beside the current one and put in its place at once (a
    /// rename: other readers see it now), and made durable by
    /// [`PublishedMeta::sync`], which may run beside other work.
    pub fn publish_meta(&self, meta: &SessionMeta) -> Result<PublishedMeta, SessionError> {
        let staged = self.stage_unsynced(meta)?;
        let path = self.meta_path();
        std::fs::rename(&staged.1, &path).map_err(io(&path))?;
        Ok(PublishedMeta {
            file: staged.0,
            path,
        })
    }

    /// Writes `.session.json.tmp`, not synced.
    fn stage_unsynced(&self, meta: &SessionMeta) -> Result<(std::fs::File, PathBuf), SessionError> {
        let tmp = self.root.join(".session.json.tmp");
        let body = serde_json::to_vec_pretty(meta).map_err(|e| SessionError::Damaged {
            path: self.meta_path(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        Ok((f, tmp))
    }

    /// The session's status, from its record and whether its supervisor lives.
    pub fn status(&self, meta: &SessionMeta) -> Status {
        if meta.exit_code.is_some() {
            return Status::Exited;
        }
        match meta.supervisor {
            Some((pid, start)) if process_start_time(pid) == Some(start) => Status::Running,
            Some(_) | None => Status::Crashed,
        }
    }
}

/// A `session.json` written and synced, not yet in place (see
/// [`SessionDir::stage_meta`]).
#[derive(Debug)]
#[must_use = "the staged session.json takes effect only at commit"]
pub struct StagedMeta<'d> {
    dir: &'d SessionDir,
    tmp: PathBuf,
}

impl StagedMeta<'_> {
    /// Puts the staged `session.json` in place (a rename: atomic).
    pub fn commit(mut self) -> Result<(), SessionError> {
        let p = self.dir.meta_path();
        let tmp = std::mem::take(&mut self.tmp);
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }
}

impl Drop for StagedMeta<'_> {
    /// A staged file never committed is removed; the current one stands.
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A `session.json` in place, not yet durable ([`SessionDir::publish_meta`]).
#[derive(Debug)]
pub struct PublishedMeta {
    file: std::fs::File,
    path: PathBuf,
}

impl PublishedMeta {
    /// Makes it durable.
    pub fn sync(&self) -> Result<(), SessionError> {
        self.file.sync_all().map_err(io(&self.path))
    }
}

/// Every session, oldest first.
pub fn list(home: &Home) -> Result<Vec<SessionDir>, SessionError> {
    let sessions = home.sessions_dir();
    let rd = match std::fs::read_dir(&sessions) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&sessions)(e)),
    };
    let mut out: Vec<SessionDir> = rd
        .flatten()
        .map(|e| SessionDir { root: e.path() })
        .filter(|d| d.meta_path().is_file())
        .collect();
    // By start time (ids made in the same second sort by a random suffix).
    out.sort_by_cached_key(|d| (d.meta().map_or(0, |m| m.started_ns), d.id()));
    Ok(out)
}

/// The start time of a process in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last `)`.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn format_id_time(secs: u64) -> String {
    // UTC date and time, YYYYMMDD-HHMMSS, without a date library.
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}")
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn random_suffix() -> String {
    let mut buf = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut buf);
    }
    hex::encode(buf)
}

/// Wakes the held requests of `session` so they re-read the approval store
/// at once (after `approve`, `deny`, `watch` or the page decided
/// `approval`). Best effort: a held request also polls the store. Returns
/// whether the session's supervisor answered.
pub fn wake_session(home: &Home, session: &str, approval: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(dir) = SessionDir::open(home, Some(session)) else {
        return false;
    };
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(dir.control_socket()) else {
        return false;
    };
    let t = Some(std::time::Duration::from_secs(2));
    let _ = s.set_read_timeout(t);
    let _ = s.set_write_timeout(t);
    if s.write_all(format!("wake {approval}\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 8];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        assert_eq!("19700101-000000", format_id_time(0));
        assert_eq!("20261125-115502", format_id_time(1_795_607_702));
    }

    #[test]
    fn own_process_is_running() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
    }
}
