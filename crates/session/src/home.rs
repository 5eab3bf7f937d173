//! `BLASTWALL_HOME`: where blastwall keeps its state, never visible inside
//! the wall.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variables blastwall reads, captured once by the caller.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `BLASTWALL_HOME`.
    pub blastwall_home: Option<OsString>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

impl Env {
    /// Reads the variables from the process environment (call once, in `main`).
    pub fn from_process() -> Env {
        Env {
            blastwall_home: std::env::var_os("BLASTWALL_HOME").filter(|v| !v.is_empty()),
            xdg_data_home: std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()),
            home: std::env::var_os("HOME").filter(|v| !v.is_empty()),
        }
    }

    /// The user's home directory (`/` when `HOME` is unset).
    pub fn home_dir(&self) -> PathBuf {
        self.home
            .as_ref()
            .map_or_else(|| PathBuf::from("/"), PathBuf::from)
    }
}

/// The state directory and the paths within it.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `BLASTWALL_HOME`, else `$XDG_DATA_HOME/blastwall`, else
    /// `~/.local/share/blastwall`. Relative values are ignored as XDG says.
    pub fn locate(env: &Env) -> Home {
        let abs = |v: &OsString| {
            let p = PathBuf::from(v);
            p.is_absolute().then_some(p)
        };
        let root = env
            .blastwall_home
            .as_ref()
            .and_then(abs)
            .or_else(|| {
                env.xdg_data_home
                    .as_ref()
                    .and_then(abs)
                    .map(|p| p.join("blastwall"))
            })
            .unwrap_or_else(|| env.home_dir().join(".local/share/blastwall"));
        Home { root }
    }

    /// A home at an explicit path.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The user's own config: credential sources and grants outside projects.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The trust store.
    pub fn trust_file(&self) -> PathBuf {
        self.root.join("trust.json")
    }

    /// The approval store (SQLite), shared by every session of the user.
    pub fn approvals_db(&self) -> PathBuf {
        self.root.join("approvals.db")
    }

    /// Where sessions live.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }

    /// Creates the directory (0700) if it is missing.
    pub fn ensure(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
    }
}
