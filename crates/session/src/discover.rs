//! Finding a project's manifest.

use std::path::{Path, PathBuf};

/// The manifest's file name.
pub const MANIFEST_NAME: &str = "blastwall.toml";

/// The nearest `blastwall.toml` at or above `start`. The search stops after
/// the git root (a directory holding `.git`) or the home directory, so a
/// manifest above either is never picked up by accident.
pub fn find_manifest(start: &Path, home: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(MANIFEST_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if d.join(".git").exists() || d == home {
            return None;
        }
        dir = d.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_git_root_and_home() -> std::io::Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path();
        std::fs::write(root.join(MANIFEST_NAME), "version = 1\n")?;
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join(".git"))?;
        std::fs::create_dir_all(repo.join("src/deep"))?;
        // Above the git root: not found.
        assert_eq!(
            find_manifest(&repo.join("src/deep"), Path::new("/nonexistent")),
            None
        );
        std::fs::write(repo.join(MANIFEST_NAME), "version = 1\n")?;
        assert_eq!(
            find_manifest(&repo.join("src/deep"), Path::new("/nonexistent")),
            Some(repo.join(MANIFEST_NAME))
        );
        // Home stops the search too.
        let home = root.join("home");
        std::fs::create_dir_all(home.join("proj"))?;
        assert_eq!(find_manifest(&home.join("proj"), &home), None);
        Ok(())
    }
}
