//! `blastwall-session` owns blastwall's state on disk, outside every wall:
//! `BLASTWALL_HOME` and what lives there (the user's own config, the trust
//! store, session directories), finding a project's manifest, and loading a
//! manifest the way an enforcing command must (trusted, merged with the
//! user's own grants).
//!
//! It must not decide anything (that is `blastwall-policy`) and must not
//! read the process environment itself: the caller passes an [`Env`], so
//! tests never mutate the environment.
//!
//! Main types: [`Env`], [`Home`], [`TrustStore`], [`LoadedManifest`].
#![forbid(unsafe_code)]

mod commit;
mod diff;
mod discover;
mod gitconfig;
mod home;
mod load;
mod overlay;
mod sessions;
mod trust;
mod wall;

pub use commit::{CommitError, CommitOptions, CommitReport, commit, discard, is_sensitive};
pub use diff::{render as render_change, stat_line};
pub use gitconfig::sanitize_git_config;
pub use overlay::{Change, ChangeKind, Entry, ReadError, changes, is_text};
pub use sessions::{
    SessionDir, SessionError, SessionMeta, StagedMeta, Status, list as list_sessions, now_ns,
    process_start_time, wake_session,
};

pub use discover::{MANIFEST_NAME, find_manifest};
pub use home::{Env, Home};
pub use load::{LoadError, LoadedManifest, Purpose, load_manifest};
pub use trust::{TrustError, TrustState, TrustStore, manifest_digest};
pub use wall::{HIDDEN_SEARCH_BUDGET, HiddenSearchError, environment, hidden_paths};
