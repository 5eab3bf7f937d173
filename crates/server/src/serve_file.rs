//! `$BLASTWALL_HOME/serve.json`: where a running `blastwall serve` can be
//! reached, so a webhook can link back to the page. It never holds the
//! access token: a link opens the page only in a browser that already has
//! the cookie (or after the person opens the URL `serve` printed).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use blastwall_session::{Home, process_start_time};
use serde::{Deserialize, Serialize};

/// What `serve.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeInfo {
    /// The page's base URL, without the token: `http://127.0.0.1:4477/`.
    pub url: String,
    /// The serving process.
    pub pid: u32,
    /// Its start time in clock ticks (so a reused pid is not taken for it).
    pub start: Option<u64>,
}

/// The file's path.
pub fn path(home: &Home) -> PathBuf {
    home.root().join("serve.json")
}

/// Records `url` as this process's page (0600, replaced atomically).
pub fn write(home: &Home, url: &str) -> std::io::Result<()> {
    let me = std::process::id();
    let info = ServeInfo {
        url: url.to_owned(),
        pid: me,
        start: process_start_time(me),
    };
    let body = serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?;
    let p = path(home);
    let tmp = home.root().join(format!(".serve.json.{me}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)
}

/// Removes the file if it still names this process.
pub fn remove(home: &Home) {
    if read_any(home).is_some_and(|i| i.pid == std::process::id()) {
        let _ = std::fs::remove_file(path(home));
    }
}

fn read_any(home: &Home) -> Option<ServeInfo> {
    let bytes = std::fs::read(path(home)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The running page's base URL, if a `serve` that recorded it still runs.
pub fn running_url(home: &Home) -> Option<String> {
    let i = read_any(home)?;
    let alive = match i.start {
        Some(start) => process_start_time(i.pid) == Some(start),
        None => process_start_time(i.pid).is_some(),
    };
    let sane = i.url.starts_with("http://") || i.url.starts_with("https://");
    (alive && sane).then_some(i.url)
}
