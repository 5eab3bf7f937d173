//! What `run` shows the agent of the host, derived from a manifest: the
//! hidden paths to cover with decoys, and the environment. Reading the file
//! system (the hidden-path search) is I/O, so it lives here, not in policy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use blastwall_policy::{Policy, Settings};

/// The hidden-path search was cut short; `run` does not start (an
/// unfinished search could leave a secret visible).
#[derive(Debug, thiserror::Error)]
#[error(
    "searching for hidden paths read {limit} entries under {} and more remain; a search left unfinished could leave a secret visible: narrow the project or the grants",
    root.display()
)]
pub struct HiddenSearchError {
    /// Where the search was when it stopped.
    pub root: PathBuf,
    /// The bound.
    pub limit: usize,
}

/// How many directory entries `run` reads looking for hidden paths before
/// it refuses to start (it never starts with a search it did not finish).
pub const HIDDEN_SEARCH_BUDGET: usize = 2_000_000;

/// Every existing path the manifest hides: the defaults under the home,
/// blastwall's own state, and every match of the hide globs (`.env*` in the
/// project and the manifest's own) under the project, the grants and the
/// fixed prefix of each absolute glob.
pub fn hidden_paths(
    policy: &Policy,
    s: &Settings,
    home: &Path,
    bw_home: &Path,
    budget: usize,
) -> Result<Vec<PathBuf>, HiddenSearchError> {
    let mut out = Vec::new();
    for rel in blastwall_policy::DEFAULT_HIDDEN_HOME {
        let p = home.join(rel);
        if std::fs::symlink_metadata(&p).is_ok() {
            out.push(p);
        }
    }
    // blastwall's own state (trust store, config, secrets, sessions, audit
    // logs) is never visible inside, whatever a grant covers (I5).
    if std::fs::symlink_metadata(bw_home).is_ok() {
        out.push(bw_home.to_path_buf());
    }
    let mut roots = vec![s.project_root.clone()];
    roots.extend(s.read_paths.iter().cloned());
    roots.extend(s.write_paths.iter().cloned());
    for pat in &s.hidden {
        let fixed: PathBuf = Path::new(pat)
            .components()
            .take_while(|c| {
                !c.as_os_str()
                    .to_string_lossy()
                    .contains(['*', '?', '[', '{'])
            })
            .collect();
        if std::fs::symlink_metadata(&fixed).is_ok() {
            if policy.is_hidden(&fixed) {
                out.push(fixed);
            } else if fixed.is_dir() && !roots.iter().any(|r| fixed.starts_with(r)) {
                roots.push(fixed);
            }
        }
    }
    let limit = budget;
    let mut budget = budget;
    for root in roots {
        walk_hidden(policy, &root, &mut out, &mut budget);
        if budget == 0 {
            return Err(HiddenSearchError { root, limit });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk_hidden(policy: &Policy, dir: &Path, out: &mut Vec<PathBuf>, budget: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let p = e.path();
        if policy.is_hidden(&p) {
            out.push(p);
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_hidden(policy, &p, out, budget);
        }
    }
}

/// The environment inside, from the host's variables (passed in): an
/// allowlist (PATH, TERM, LANG, LC_*, TZ, HOME, USER, SHELL and the
/// manifest's `env.pass`), then the manifest's `env.set`; never the rest.
pub fn environment(
    host: impl IntoIterator<Item = (OsString, OsString)>,
    s: &Settings,
    home: &Path,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    for (k, v) in host {
        let name = k.to_string_lossy();
        let always = blastwall_policy::ENV_ALWAYS
            .iter()
            .any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == *a,
            });
        if (always || s.env_pass.iter().any(|p| *p == name)) && name != "HOME" {
            out.push((k, v));
        }
    }
    out.push(("HOME".into(), home.as_os_str().to_owned()));
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    for (k, v) in &s.env_set {
        out.retain(|(x, _)| x.to_string_lossy() != *k);
        out.push((k.into(), v.into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use blastwall_policy::{Context, Origin, Source};

    fn policy(root: &Path, home: &Path, text: &str) -> Policy {
        let cx = Context {
            origin: Origin::Project,
            project_root: root.into(),
            home: home.into(),
            user: None,
            enforce: false,
        };
        match blastwall_policy::load(&Source::new("blastwall.toml", text), &cx) {
            Ok(l) => l.policy,
            Err(d) => panic!("{d:?}"),
        }
    }

    #[test]
    fn hides_defaults_env_files_own_state_and_absolute_globs() -> std::io::Result<()> {
        let t = tempfile::tempdir()?;
        let (root, home, other) = (
            t.path().join("p"),
            t.path().join("h"),
            t.path().join("opt/keys"),
        );
        for d in [
            root.join("app"),
            home.join(".aws"),
            home.join(".local/share/blastwall"),
            other.clone(),
        ] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(root.join("app/.env.local"), "x")?;
        std::fs::write(root.join("README.md"), "x")?;
        std::fs::write(other.join("k.pem"), "x")?;
        std::fs::write(other.join("k.pub"), "x")?;
        let text = format!(
            "version = 1\n[filesystem]\nhide = [\"{}/*.pem\"]\n",
            other.display()
        );
        let p = policy(&root, &home, &text);
        let bw = home.join(".local/share/blastwall");
        let got = hidden_paths(&p, p.settings(), &home, &bw, HIDDEN_SEARCH_BUDGET)
            .map_err(std::io::Error::other)?;
        assert_eq!(got, {
            let mut v = vec![
                home.join(".aws"),
                bw.clone(),
                root.join("app/.env.local"),
                other.join("k.pem"),
            ];
            v.sort();
            v
        });
        // A search cut short refuses rather than returning what it found.
        assert!(hidden_paths(&p, p.settings(), &home, &bw, 2).is_err());
        Ok(())
    }

    #[test]
    fn the_environment_is_an_allowlist() {
        let p = policy(
            Path::new("/p"),
            Path::new("/h"),
            "version = 1\n[env]\npass = [\"CI\"]\nset = { RUST_LOG = \"info\" }\n",
        );
        let host: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin"),
            ("TERM", "xterm"),
            ("LC_ALL", "C"),
            ("HOME", "/root"),
            ("CI", "1"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("GITHUB_TOKEN", "t"),
            ("DATABASE_URL", "d"),
            ("ANTHROPIC_API_KEY", "a"),
            ("RUST_LOG", "trace"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let env = environment(host, p.settings(), Path::new("/h"));
        let get = |k: &str| {
            env.iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(Some("/h".to_owned()), get("HOME"));
        assert_eq!(Some("1".to_owned()), get("CI"));
        assert_eq!(Some("C".to_owned()), get("LC_ALL"));
        assert_eq!(Some("info".to_owned()), get("RUST_LOG"));
        for k in [
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "DATABASE_URL",
            "ANTHROPIC_API_KEY",
        ] {
            assert_eq!(None, get(k), "{k}");
        }
    }
}
