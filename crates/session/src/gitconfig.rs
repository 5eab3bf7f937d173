//! Sanitised views of git's configuration for inside the wall: the agent
//! sees who the user is and where the remotes are, never a credential
//! (`http.extraHeader`, credential helpers, tokens in remote URLs,
//! includes that could pull in more).

/// Keys kept, by section (lower case); everything else is dropped.
fn keep(section: &str, sub: Option<&str>, key: &str, global: bool) -> bool {
    match (section, key) {
        ("user", "name" | "email") => true,
        _ if global => false,
        ("core", k) => !matches!(k, "sshcommand" | "askpass" | "fsmonitor" | "hookspath"),
        ("remote", "url" | "pushurl" | "fetch" | "push") => sub.is_some(),
        ("branch", "remote" | "merge" | "rebase") => sub.is_some(),
        ("init" | "pull" | "push" | "merge" | "diff" | "color", _) => true,
        _ => false,
    }
}

/// Removes `user:password@` from a URL.
fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, tail) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            format!("{scheme}://{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A sanitised copy of a git config file's text. `global` is for
/// `~/.gitconfig`, of which only `user.name` and `user.email` are kept.
pub fn sanitize_git_config(text: &str, global: bool) -> String {
    let mut out = String::from("# blastwall: a sanitised view; no credential enters the wall\n");
    let mut section = String::new();
    let mut sub: Option<String> = None;
    let mut header_written = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let (name, s) = match h.split_once(char::is_whitespace) {
                Some((n, s)) => (n, Some(s.trim().trim_matches('"').to_owned())),
                None => (h, None),
            };
            // `[a.b]` is the old form of `[a "b"]`.
            let (name, s) = match (name.split_once('.'), s) {
                (Some((n, b)), None) => (n.to_owned(), Some(b.to_owned())),
                (_, s) => (name.to_owned(), s),
            };
            section = name.to_ascii_lowercase();
            sub = s;
            header_written = false;
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (line.to_ascii_lowercase(), "true".to_owned()),
        };
        if !keep(&section, sub.as_deref(), &key, global) {
            continue;
        }
        if !header_written {
            match &sub {
                Some(s) => out.push_str(&format!("[{section} \"{}\"]\n", s.replace('"', ""))),
                None => out.push_str(&format!("[{section}]\n")),
            }
            header_written = true;
        }
        let value = if key.ends_with("url") {
            strip_userinfo(&value)
        } else {
            value
        };
        out.push_str(&format!("\t{key} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_helpers_never_survive() {
        let cfg = r#"[core]
	repositoryformatversion = 0
	sshCommand = ssh -i ~/.ssh/deploy
[remote "origin"]
	url = https://x-access-token:MARKER_TOKEN@github.com/acme/app.git
	fetch = +refs/heads/*:refs/remotes/origin/*
[http "https://github.com/"]
	extraheader = AUTHORIZATION: basic MARKER_HEADER
[credential]
	helper = store
[include]
	path = ~/.secrets.gitconfig
[branch "main"]
	remote = origin
[user]
	name = Ana
	email = ana@example.com
"#;
        let s = sanitize_git_config(cfg, false);
        assert!(!s.contains("MARKER"), "{s}");
        assert!(!s.contains("helper"), "{s}");
        assert!(!s.contains("include"), "{s}");
        assert!(!s.contains("sshcommand"), "{s}");
        assert!(s.contains("url = https://github.com/acme/app.git"), "{s}");
        assert!(s.contains("[branch \"main\"]"), "{s}");
        assert!(s.contains("name = Ana"), "{s}");
        let g = sanitize_git_config(cfg, true);
        assert_eq!(
            "# blastwall: a sanitised view; no credential enters the wall\n[user]\n\tname = Ana\n\temail = ana@example.com\n",
            g
        );
    }
}
