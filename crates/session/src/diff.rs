//! `blastwall diff`: the changes as a unified diff for text, a line for
//! binaries, symlinks and mode changes.

use std::fmt::Write as _;
use std::path::Path;

use similar::TextDiff;

use crate::overlay::{Change, ChangeKind, Entry, is_text};

/// Renders one change against the project; `upper` holds the new content.
pub fn render(change: &Change, project: &Path, upper: &Path) -> String {
    let rel = change.path.display();
    let old = project.join(&change.path);
    let new = upper.join(&change.path);
    let mut out = String::new();
    match (change.kind, change.entry) {
        (ChangeKind::ModeChanged, _) => {
            let _ = writeln!(
                out,
                "mode {rel}: {:o} -> {:o}",
                change.old_mode.unwrap_or(0),
                change.new_mode.unwrap_or(0)
            );
        }
        (_, Entry::Dir) => {
            let _ = writeln!(out, "{} directory {rel}/", word(change.kind));
        }
        (_, Entry::Symlink) => {
            let target = std::fs::read_link(&new)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "{} symlink {rel} -> {target}", word(change.kind));
        }
        (_, Entry::Special) => {
            let _ = writeln!(
                out,
                "{} special file {rel} (never committed)",
                word(change.kind)
            );
        }
        (ChangeKind::Deleted, _) if std::fs::symlink_metadata(&old).is_ok_and(|m| !m.is_file()) => {
            let what = match std::fs::symlink_metadata(&old) {
                Ok(m) if m.is_dir() => "directory",
                Ok(m) if m.file_type().is_symlink() => "symlink",
                Ok(_) | Err(_) => "special file",
            };
            let _ = writeln!(out, "deleted {what} {rel}");
        }
        (ChangeKind::Deleted, _) | (_, Entry::File | Entry::None) => {
            if change.kind == ChangeKind::Added {
                let _ = writeln!(
                    out,
                    "new file {rel} mode {:o}",
                    change.new_mode.unwrap_or(0)
                );
            }
            let before = if change.kind == ChangeKind::Added {
                Vec::new()
            } else {
                read_file(&old)
            };
            let after = if change.kind == ChangeKind::Deleted {
                Vec::new()
            } else {
                read_file(&new)
            };
            if !(is_text(&before) && is_text(&after)) {
                let _ = writeln!(
                    out,
                    "{} binary file {rel} ({} -> {} bytes)",
                    word(change.kind),
                    before.len(),
                    after.len()
                );
            } else {
                let a = String::from_utf8_lossy(&before);
                let b = String::from_utf8_lossy(&after);
                let from = if change.kind == ChangeKind::Added {
                    "/dev/null".to_owned()
                } else {
                    format!("a/{rel}")
                };
                let to = if change.kind == ChangeKind::Deleted {
                    "/dev/null".to_owned()
                } else {
                    format!("b/{rel}")
                };
                if a.is_empty() && b.is_empty() {
                    let _ = writeln!(out, "{} empty file {rel}", word(change.kind));
                }
                let diff = TextDiff::from_lines(a.as_ref(), b.as_ref());
                let _ = write!(
                    out,
                    "{}",
                    diff.unified_diff().context_radius(3).header(&from, &to)
                );
                if let (Some(o), Some(n)) = (change.old_mode, change.new_mode)
                    && o != n
                {
                    let _ = writeln!(out, "mode {rel}: {o:o} -> {n:o}");
                }
            }
        }
    }
    out
}

fn word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Modified => "modified",
        ChangeKind::ModeChanged => "mode changed",
        ChangeKind::TypeChanged => "replaced by a",
        ChangeKind::Deleted => "deleted",
    }
}

fn read_file(p: &Path) -> Vec<u8> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => std::fs::read(p).unwrap_or_default(),
        Ok(_) | Err(_) => Vec::new(),
    }
}

/// One line per change: `A path`, `M path`, `D path`, `T path`, `P path` (mode).
pub fn stat_line(change: &Change) -> String {
    let c = match change.kind {
        ChangeKind::Added => 'A',
        ChangeKind::Modified => 'M',
        ChangeKind::ModeChanged => 'P',
        ChangeKind::TypeChanged => 'T',
        ChangeKind::Deleted => 'D',
    };
    let suffix = if change.entry == Entry::Dir { "/" } else { "" };
    format!("{c} {}{suffix}", change.path.display())
}
