//! The project overlay is mounted `volatile`; this module keeps the
//! session's changes as durable as a plain overlay kept them.
//!
//! A plain overlayfs syncs its upper filesystem when it is unmounted: when
//! the sandbox's mount namespace goes, its init's exit runs `syncfs` on the
//! whole host filesystem of the session directory (every dirty page of
//! every process on it, then a journal commit), 10-90 ms on a shared disk,
//! in series with the end of every run even when nothing changed.
//! `volatile` skips every sync of the upper filesystem (also the agent's
//! own `fsync` calls, which then only order nothing), and leaves a marker,
//! `WORK/work/incompat/volatile`, with which overlayfs refuses the next
//! mount of the same directories.
//!
//! So the supervisor:
//! - before the mount ([`prepare`]): when the marker is there, a run of
//!   this session ended without the cleanup below (a killed supervisor, or
//!   the host went down). If the host has not rebooted since (the boot id
//!   recorded next to the work directory is this boot's), every write is
//!   still in the page cache: one `syncfs`, then the marker goes. From
//!   another boot (or with
//!   no record) the changes may be torn: the run stops and says so. Then it
//!   records this boot's id (not synced: after a crash a lost or older
//!   record can only differ from the new boot's id, so the check fails
//!   closed).
//! - after the run, once the overlay is gone with the sandbox ([`finish`]):
//!   `fsync` of every file and directory of the upper tree changed since
//!   the run started (ctime, which the agent cannot set back, against the
//!   ctime of the boot id record written just before), or one
//!   `syncfs` when one of them cannot be opened; then it removes the
//!   marker. Nothing changed: nothing to sync.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Where this boot's id is recorded, beside overlayfs's own `work`
/// directory inside the work directory.
const BOOT_ID_FILE: &str = "blastwall-boot-id";

/// overlayfs's marker of a volatile mount, under the work directory.
fn marker(work: &Path) -> PathBuf {
    work.join("work").join("incompat").join("volatile")
}

fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Before the overlay is mounted: clears a marker left in this boot, or
/// refuses one from another boot; records this boot's id. Returns the
/// record's ctime: what changes in the upper tree from now on has a ctime
/// at least as late.
pub(crate) fn prepare(upper: &Path, work: &Path) -> Result<Stamp, SandboxError> {
    let boot = boot_id().map_err(|source| SandboxError::Io {
        what: "cannot read /proc/sys/kernel/random/boot_id".to_owned(),
        source,
    })?;
    let m = marker(work);
    if marker_exists(work).map_err(|source| SandboxError::Io {
        what: format!("cannot look for {}", m.display()),
        source,
    })? {
        let recorded = std::fs::read_to_string(work.join(BOOT_ID_FILE)).unwrap_or_default();
        if recorded.trim() != boot {
            return Err(SandboxError::Setup {
                step: format!("overlay work dir {}", work.display()),
                reason: format!(
                    "the overlay was in use when the host went down: the changes in {} may be \
                     incomplete (files written but never synced); check them, then remove {} \
                     to run again",
                    upper.display(),
                    m.display()
                ),
            });
        }
        // Whatever that run left unsynced goes to disk before the marker.
        let synced =
            File::open(upper).and_then(|f| nix::unistd::syncfs(&f).map_err(io::Error::from));
        synced
            .and_then(|()| remove_marker(work))
            .map_err(|source| SandboxError::Io {
                what: format!("cannot sync {} and remove {}", upper.display(), m.display()),
                source,
            })?;
    }
    let rec = work.join(BOOT_ID_FILE);
    std::fs::write(&rec, boot.as_bytes())
        .and_then(|()| rec.symlink_metadata())
        .map(|m| Stamp::ctime(&m))
        .map_err(|source| SandboxError::Io {
            what: format!("cannot write {}", rec.display()),
            source,
        })
}

/// A ctime, as the filesystem's clock gave it: compared with the ctimes of
/// the upper tree (same clock, same granularity), it tells what changed
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(i64, i64);

impl Stamp {
    fn ctime(m: &std::fs::Metadata) -> Stamp {
        Stamp(m.ctime(), m.ctime_nsec())
    }
}

/// After the run (the overlay unmounted): makes what changed in `upper`
/// since `since` durable, then removes the marker.
pub(crate) fn finish(upper: &Path, work: &Path, since: Stamp) -> Result<(), SandboxError> {
    sync(upper, since)?;
    remove_volatile_marker(work)
}

/// The first half of [`finish`]: makes what changed in `upper` since
/// `since` durable.
pub(crate) fn sync(upper: &Path, since: Stamp) -> Result<(), SandboxError> {
    sync_changed(upper, since).map_err(|source| SandboxError::Io {
        what: format!("cannot sync the overlay's changes in {}", upper.display()),
        source,
    })
}

/// The second half of [`finish`], once the changes are durable: removes
/// the marker.
pub(crate) fn remove_volatile_marker(work: &Path) -> Result<(), SandboxError> {
    remove_marker(work).map_err(|source| SandboxError::Io {
        what: format!("cannot remove {}", marker(work).display()),
        source,
    })
}

/// Removes `WORK/work/incompat/volatile`. overlayfs makes `work/work` and
/// `incompat` mode 000 (owned by the sandbox's host uid): an unprivileged
/// owner opens them first. Absent (the overlay was never mounted): done.
fn remove_marker(work: &Path) -> io::Result<()> {
    if !marker_exists(work)? {
        return Ok(());
    }
    let m = marker(work);
    if m.symlink_metadata()?.is_dir() {
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::remove_dir_all(&m)
}

/// Whether the marker is there. overlayfs makes `WORK/work`, `incompat`
/// and the marker mode 000: they are opened to their owner first (overlayfs
/// removes and makes `WORK/work` again at every mount, so their mode does
/// not last).
fn marker_exists(work: &Path) -> io::Result<bool> {
    for d in [work.join("work"), work.join("work").join("incompat")] {
        match d.symlink_metadata() {
            Ok(meta) if meta.is_dir() => {
                if meta.mode() & 0o700 != 0o700 {
                    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
                }
            }
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    match marker(work).symlink_metadata() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fsync`s every file and directory under `upper` whose ctime is not
/// before `since` (for `upper` itself: its mtime), the directories after
/// their entries. If one cannot be
/// opened (the agent may leave a file mode 000), one `syncfs` of the upper
/// filesystem instead. Symlinks, devices and whiteouts are covered by
/// their directory's sync. (A wall clock stepped back during the run can
/// hide a change from this: the kernel's writeback still writes it within
/// seconds, as it writes everything the agent wrote before the end.)
fn sync_changed(upper: &Path, since: Stamp) -> io::Result<()> {
    let changed = |m: &std::fs::Metadata| Stamp::ctime(m) >= since;
    // Depth-first; a directory is synced after everything below it.
    let mut todo = vec![(upper.to_path_buf(), false)];
    let mut opened_all = true;
    let mut to_sync: Vec<(PathBuf, bool)> = Vec::new();
    while let Some((dir, visited)) = todo.pop() {
        if visited {
            to_sync.push((dir, true));
            continue;
        }
        let meta = dir.symlink_metadata()?;
        // overlayfs itself changes the upper root's ctime at every mount
        // (an xattr), so for the root only a change of its entries (mtime)
        // counts: what a run adds, removes or renames there.
        let dir_changed = if dir == upper {
            Stamp(meta.mtime(), meta.mtime_nsec()) >= since
        } else {
            changed(&meta)
        };
        if dir_changed {
            todo.push((dir.clone(), true));
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                todo.push((e.path(), false));
            } else if ft.is_file() && changed(&e.metadata()?) {
                to_sync.push((e.path(), false));
            }
        }
    }
    for (p, is_dir) in &to_sync {
        let mut o = std::fs::OpenOptions::new();
        o.read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
        if *is_dir {
            o.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY);
        }
        match o.open(p) {
            Ok(f) => f.sync_all()?,
            Err(_) => opened_all = false,
        }
    }
    if !opened_all {
        let f = File::open(upper)?;
        nix::unistd::syncfs(&f).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_marker_from_this_boot_is_cleared_and_one_from_another_refused() {
        let d = tempfile::tempdir().unwrap();
        let (upper, work) = (d.path().join("upper"), d.path().join("work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(marker(&work).join("dirty")).unwrap();
        // No record: refused, and the message says what to check.
        let e = prepare(&upper, &work).unwrap_err().to_string();
        assert!(e.contains("went down") && e.contains("remove"), "{e}");
        assert!(marker(&work).exists());
        // Another boot's record: refused.
        std::fs::write(work.join(BOOT_ID_FILE), "00000000-0000").unwrap();
        assert!(prepare(&upper, &work).is_err());
        // This boot's, with overlayfs's mode-000 directories: cleared.
        std::fs::write(work.join(BOOT_ID_FILE), boot_id().unwrap()).unwrap();
        for p in [
            &marker(&work),
            marker(&work).parent().unwrap(),
            &work.join("work"),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        prepare(&upper, &work).unwrap();
        assert!(!marker(&work).exists());
        assert_eq!(
            std::fs::read_to_string(work.join(BOOT_ID_FILE)).unwrap(),
            boot_id().unwrap()
        );
    }

    #[test]
    fn finish_syncs_the_changes_and_removes_the_marker() {
        let d = tempfile::tempdir().unwrap();
        let (upper, work) = (d.path().join("upper"), d.path().join("work"));
        std::fs::create_dir_all(upper.join("a/b")).unwrap();
        std::fs::write(upper.join("a/b/f"), "x").unwrap();
        let locked = upper.join("a/locked");
        std::fs::write(&locked, "y").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::create_dir_all(marker(&work)).unwrap();
        finish(&upper, &work, Stamp(0, 0)).unwrap();
        assert!(!marker(&work).exists());
        // Nothing there at all (the overlay never mounted): fine too.
        let empty = d.path().join("none");
        std::fs::create_dir_all(&empty).unwrap();
        finish(&empty, &empty, Stamp(0, 0)).unwrap();
    }
}
