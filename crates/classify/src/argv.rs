//! Labels for a command line (argv), for `exec` rules: `rm -rf`, `git push
//! --force`, `dropdb`, `mkfs`, `dd of=`.
//!
//! This is a modest classifier of one argv, not a shell parser: it looks at
//! the program's base name and its options, and only for the commands listed
//! below. Everything it does not know gets no label ([`Labels::EMPTY`]); a
//! policy must not read "no label" as "harmless".
//!
//! # Wrappers
//!
//! These run the rest of the line as a command, and are unwrapped (their own
//! options, `VAR=value` assignments and, for `timeout`, the duration are
//! skipped): `sudo`, `doas`, `env`, `nice`, `nohup`, `setsid`, `timeout`,
//! `xargs`, `command`, `exec`, `time`, `stdbuf`, `ionice`, `busybox`.
//! `command -v`/`-V` only looks a name up and runs nothing. `env -S` (split a
//! string into arguments) is `opaque`.
//!
//! # Commands
//!
//! | command | labels |
//! |---|---|
//! | `rm` with `-r`, `-R`, `--recursive` | destructive, irreversible |
//! | `rm` otherwise (`-f`, or any operand) | destructive |
//! | `git push` with `--force`, `-f`, `--force-with-lease`, `--mirror`, `--delete`, `-d`, `--prune`, or a `+refspec` / `:ref` | write, destructive, irreversible |
//! | `git push` otherwise | write |
//! | `git reset --hard`, `git clean` (unless `-n`), `git branch -D`/`-M`/`-C`/`-d -f`, `git checkout -- …`/`-f`/`.`, `git restore`, `git switch -f`/`--discard-changes`, `git stash drop`/`clear` | destructive |
//! | `find … -delete`, `find … -exec rm …` (and `-execdir`, `-ok`, `-okdir`) | destructive, irreversible, plus the labels of the executed command |
//! | `dd … of=…`, `mkfs*`, `mke2fs`, `shred`, `wipefs`, `dropdb`, `truncate` | destructive, irreversible |
//! | `chmod`, `chown`, `chgrp` with `-R`/`--recursive` | write, destructive |
//! | `curl` with `-d`, `--data*`, `--json`, `-F`, `--form*`, `-T`, `--upload-file`, or `-X`/`--request` with a method other than `GET`/`HEAD`/`OPTIONS`/`TRACE` | write (and destructive for `DELETE`) |
//! | `wget` with `--post-data`, `--post-file`, `--body-data`, `--body-file`, or `--method` other than a read | write (and destructive for `DELETE`) |
//! | `sh`, `bash`, `zsh`, `dash`, `ksh`, `mksh`, `ash`, `yash`, except `--version`/`--help` | opaque (a `-c` string, a script or standard input is not parsed here) |
//!
//! Long options may be abbreviated, as GNU `getopt_long`, git and curl
//! allow: any prefix of a listed long option counts as that option.
//!
//! Independently of the command, any argument that names a credential file
//! (see [`CREDENTIAL_PATHS`]) adds `credential-access`.

use crate::http;
use crate::{Label, Labels};

/// Path fragments that name a credential file; an argument containing one
/// (after `//` and `/./` are collapsed) adds `credential-access`.
pub const CREDENTIAL_PATHS: &[&str] = &[
    ".aws/credentials",
    ".ssh/id_",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".docker/config.json",
    ".kube/config",
    ".config/gh/hosts.yml",
    ".config/gcloud/",
];

/// How many wrappers (and `find -exec` levels) are followed before the line
/// is called `opaque`.
const MAX_WRAPPERS: usize = 16;

/// The labels of a command line; see the [module documentation](self).
pub fn argv_labels(argv: &[String]) -> Labels {
    credential_labels(argv).union(command_labels(argv, 0))
}

fn di() -> Labels {
    Labels::of(&[Label::Destructive, Label::Irreversible])
}

fn opaque() -> Labels {
    Labels::of(&[Label::Opaque])
}

fn credential_labels(argv: &[String]) -> Labels {
    let names_credential = |arg: &String| {
        let mut norm = arg.replace("/./", "/");
        while norm.contains("//") {
            norm = norm.replace("//", "/");
        }
        CREDENTIAL_PATHS.iter().any(|p| norm.contains(p))
    };
    if argv.iter().any(names_credential) {
        Labels::of(&[Label::CredentialAccess])
    } else {
        Labels::EMPTY
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `arg` is a long option (`--name` or `--name=value`) whose name is
/// a non-empty prefix of one of `names`.
fn long_is(arg: &str, names: &[&str]) -> bool {
    let Some(rest) = arg.strip_prefix("--") else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or(rest);
    !name.is_empty() && names.iter().any(|n| n.starts_with(name))
}

/// Whether `arg` is a cluster of short options (`-rf`) holding one of `letters`.
fn short_has(arg: &str, letters: &[char]) -> bool {
    match arg.strip_prefix('-') {
        Some(rest) if !rest.is_empty() && !rest.starts_with('-') => {
            rest.chars().any(|c| letters.contains(&c))
        }
        _ => false,
    }
}

fn is_assignment(arg: &str) -> bool {
    match arg.split_once('=') {
        Some((name, _)) => {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Skips a wrapper's options (and, if `assignments`, `VAR=value` words);
/// options in `value_opts` take the next word as their value when it is not
/// attached. Returns the command that follows.
fn skip_opts<'a>(args: &'a [String], value_opts: &[&str], assignments: bool) -> &'a [String] {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            i += if takes_separate_value(a, value_opts) {
                2
            } else {
                1
            };
            continue;
        }
        if assignments && is_assignment(a) {
            i += 1;
            continue;
        }
        break;
    }
    args.get(i..).unwrap_or(&[])
}

/// Whether option word `a` consumes the next word as its value.
fn takes_separate_value(a: &str, value_opts: &[&str]) -> bool {
    if a.starts_with("--") {
        return !a.contains('=') && value_opts.contains(&a);
    }
    // A short cluster: the first letter that takes a value takes the rest of
    // the word, or the next word when it is the last letter.
    let letters: Vec<char> = a.chars().skip(1).collect();
    for (i, c) in letters.iter().enumerate() {
        let opt = format!("-{c}");
        if value_opts.contains(&opt.as_str()) {
            return i + 1 == letters.len();
        }
    }
    false
}

/// Unwraps wrapper commands; `Err` carries the labels when the line cannot
/// be followed (`env -S`, too many wrappers).
fn unwrap_wrappers(mut argv: &[String]) -> Result<&[String], Labels> {
    for _ in 0..MAX_WRAPPERS {
        let Some((cmd, rest)) = argv.split_first() else {
            return Ok(argv);
        };
        argv = match basename(cmd) {
            "sudo" => skip_opts(
                rest,
                &[
                    "-u",
                    "-g",
                    "-C",
                    "-D",
                    "-p",
                    "-r",
                    "-t",
                    "-U",
                    "-T",
                    "-R",
                    "--user",
                    "--group",
                    "--close-from",
                    "--chdir",
                    "--prompt",
                    "--role",
                    "--type",
                    "--other-user",
                    "--command-timeout",
                    "--chroot",
                    "--host",
                ],
                true,
            ),
            "doas" => skip_opts(rest, &["-u", "-C"], false),
            "env" => {
                let opts = skip_opts(rest, &["-u", "--unset", "-C", "--chdir", "-P"], true);
                let used = rest.len() - opts.len();
                let split = rest
                    .iter()
                    .take(used)
                    .any(|a| a == "-S" || short_has(a, &['S']) || long_is(a, &["split-string"]));
                if split {
                    return Err(opaque());
                }
                opts
            }
            "nice" => skip_opts(rest, &["-n", "--adjustment"], false),
            "nohup" | "setsid" => skip_opts(rest, &[], false),
            "timeout" => {
                let after = skip_opts(rest, &["-s", "--signal", "-k", "--kill-after"], false);
                after.get(1..).unwrap_or(&[])
            }
            "xargs" => skip_opts(
                rest,
                &[
                    "-a",
                    "--arg-file",
                    "-d",
                    "--delimiter",
                    "-E",
                    "-I",
                    "-L",
                    "-n",
                    "--max-args",
                    "-P",
                    "--max-procs",
                    "-s",
                    "--max-chars",
                    "--process-slot-var",
                ],
                false,
            ),
            "command" => {
                let after = skip_opts(rest, &[], false);
                let used = rest.len() - after.len();
                if rest.iter().take(used).any(|a| short_has(a, &['v', 'V'])) {
                    return Ok(&[]);
                }
                after
            }
            "exec" => skip_opts(rest, &["-a"], false),
            "time" => skip_opts(rest, &["-f", "--format", "-o", "--output"], false),
            "stdbuf" => skip_opts(
                rest,
                &["-i", "-o", "-e", "--input", "--output", "--error"],
                false,
            ),
            "ionice" => skip_opts(
                rest,
                &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"],
                false,
            ),
            "busybox" => rest,
            _ => return Ok(argv),
        };
    }
    Err(opaque())
}

fn command_labels(argv: &[String], depth: usize) -> Labels {
    if depth > MAX_WRAPPERS {
        return opaque();
    }
    let argv = match unwrap_wrappers(argv) {
        Ok(a) => a,
        Err(labels) => return labels,
    };
    let Some((cmd, args)) = argv.split_first() else {
        return Labels::EMPTY;
    };
    match basename(cmd) {
        "rm" => rm(args),
        "git" => git(args),
        "find" => find(args, depth),
        "dd" => {
            if args.iter().any(|a| a.starts_with("of=")) {
                di()
            } else {
                Labels::EMPTY
            }
        }
        "mke2fs" | "shred" | "wipefs" | "dropdb" | "truncate" => di(),
        name if name.starts_with("mkfs") => di(),
        "chmod" | "chown" | "chgrp" => {
            if args
                .iter()
                .any(|a| short_has(a, &['R']) || long_is(a, &["recursive"]))
            {
                Labels::of(&[Label::Write, Label::Destructive])
            } else {
                Labels::EMPTY
            }
        }
        "curl" => curl(args),
        "wget" => wget(args),
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "yash" => shell(args),
        _ => Labels::EMPTY,
    }
}

fn rm(args: &[String]) -> Labels {
    let mut recursive = false;
    let mut any = false;
    let mut options_done = false;
    for a in args {
        if !options_done && a == "--" {
            options_done = true;
            continue;
        }
        if !options_done && a.starts_with('-') && a.len() > 1 {
            recursive |= short_has(a, &['r', 'R']) || long_is(a, &["recursive"]);
            any |= short_has(a, &['f']) || long_is(a, &["force"]) || recursive;
            continue;
        }
        any = true;
    }
    if recursive {
        di()
    } else if any {
        Labels::of(&[Label::Destructive])
    } else {
        Labels::EMPTY
    }
}

fn git(args: &[String]) -> Labels {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
            | "--config-env" => i += 2,
            _ if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    let Some(sub) = args.get(i) else {
        return Labels::EMPTY;
    };
    let rest = args.get(i + 1..).unwrap_or(&[]);
    let destructive = Labels::of(&[Label::Destructive]);
    let any = |f: &dyn Fn(&str) -> bool| rest.iter().any(|a| f(a));
    match sub.as_str() {
        "push" => git_push(rest),
        "reset" if any(&|a| long_is(a, &["hard"])) => destructive,
        "clean" if !any(&|a| short_has(a, &['n']) || long_is(a, &["dry-run"])) => destructive,
        "branch"
            if any(&|a| short_has(a, &['D', 'M', 'C']))
                || (any(&|a| short_has(a, &['d']) || long_is(a, &["delete"]))
                    && any(&|a| short_has(a, &['f']) || long_is(a, &["force"]))) =>
        {
            destructive
        }
        "checkout"
            if any(&|a| {
                a == "--" || a == "." || short_has(a, &['f']) || long_is(a, &["force"])
            }) =>
        {
            destructive
        }
        "restore" => destructive,
        "switch" if any(&|a| short_has(a, &['f']) || long_is(a, &["force", "discard-changes"])) => {
            destructive
        }
        "stash" if rest.first().is_some_and(|a| a == "drop" || a == "clear") => destructive,
        _ => Labels::EMPTY,
    }
}

fn git_push(args: &[String]) -> Labels {
    const DANGEROUS: &[&str] = &[
        "force",
        "force-with-lease",
        "force-if-includes",
        "mirror",
        "delete",
        "prune",
    ];
    const VALUE_OPTS: &[&str] = &["-o", "--push-option", "--repo", "--receive-pack", "--exec"];
    let mut dangerous = false;
    let mut i = 0;
    let mut options_done = false;
    while let Some(a) = args.get(i) {
        i += 1;
        if !options_done && a == "--" {
            options_done = true;
            continue;
        }
        if !options_done && a.starts_with('-') && a.len() > 1 {
            dangerous |= long_is(a, DANGEROUS) || short_push_dangerous(a);
            if takes_separate_value(a, VALUE_OPTS) {
                i += 1;
            }
            continue;
        }
        // The repository and the refspecs: `+src:dst` forces, `:dst` deletes.
        dangerous |= a.starts_with('+') || a.starts_with(':');
    }
    if dangerous {
        Labels::of(&[Label::Write, Label::Destructive, Label::Irreversible])
    } else {
        Labels::of(&[Label::Write])
    }
}

/// `-f` or `-d` in a short cluster of `git push`, before any `-o` value.
fn short_push_dangerous(a: &str) -> bool {
    let Some(rest) = a.strip_prefix('-') else {
        return false;
    };
    if rest.starts_with('-') {
        return false;
    }
    for c in rest.chars() {
        match c {
            'f' | 'd' => return true,
            'o' => return false,
            _ => {}
        }
    }
    false
}

fn find(args: &[String], depth: usize) -> Labels {
    let mut labels = Labels::EMPTY;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        match a.as_str() {
            "-delete" => labels = labels.union(di()),
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                let tail = args.get(i..).unwrap_or(&[]);
                let len = tail
                    .iter()
                    .position(|t| t == ";" || t == "+")
                    .unwrap_or(tail.len());
                let cmd = tail.get(..len).unwrap_or(&[]);
                i += len + 1;
                let inner = command_labels(cmd, depth + 1);
                labels = labels.union(inner);
                let runs_rm = match unwrap_wrappers(cmd) {
                    Ok(c) => c.first().is_some_and(|c| basename(c) == "rm"),
                    Err(_) => false,
                };
                if runs_rm {
                    labels = labels.union(di());
                }
            }
            _ => {}
        }
    }
    labels
}

/// Labels a method named by `curl -X` or `wget --method` adds: its
/// [`http::method_labels`] less `read`.
fn method_write_labels(method: &str) -> Labels {
    let m = http::method_labels(method);
    let mut out = Labels::EMPTY;
    for l in [Label::Write, Label::Destructive] {
        if m.contains(l) {
            out.insert(l);
        }
    }
    out
}

fn curl(args: &[String]) -> Labels {
    const WRITE_LONG: &[&str] = &[
        "data",
        "data-ascii",
        "data-binary",
        "data-raw",
        "data-urlencode",
        "json",
        "form",
        "form-string",
        "upload-file",
    ];
    // Short options that take a value (the rest of the word or the next word).
    const SHORT_VALUE: &str = "AbcCdDeEFHKmoPQrtTuUwxXyYz";
    let write = Labels::of(&[Label::Write]);
    let mut labels = Labels::EMPTY;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a.starts_with("--") {
            if long_is(a, WRITE_LONG) {
                labels = labels.union(write);
            }
            if long_is(a, &["request"]) && a.len() >= "--req".len() {
                let method = match a.split_once('=') {
                    Some((_, m)) => Some(m.to_owned()),
                    None => {
                        i += 1;
                        args.get(i - 1).cloned()
                    }
                };
                if let Some(m) = method {
                    labels = labels.union(method_write_labels(&m));
                }
            }
            continue;
        }
        let Some(cluster) = a.strip_prefix('-') else {
            continue;
        };
        for (at, c) in cluster.char_indices() {
            if !SHORT_VALUE.contains(c) {
                continue;
            }
            let attached = cluster.get(at + c.len_utf8()..).unwrap_or("");
            let value = if attached.is_empty() {
                i += 1;
                args.get(i - 1).map(String::as_str)
            } else {
                Some(attached)
            };
            match c {
                'd' | 'F' | 'T' => labels = labels.union(write),
                'X' => {
                    if let Some(m) = value {
                        labels = labels.union(method_write_labels(m));
                    }
                }
                _ => {}
            }
            break;
        }
    }
    labels
}

fn wget(args: &[String]) -> Labels {
    const WRITE_LONG: &[&str] = &["post-data", "post-file", "body-data", "body-file"];
    let mut labels = Labels::EMPTY;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if long_is(a, WRITE_LONG) && a.len() >= "--po".len() {
            labels.insert(Label::Write);
        }
        if long_is(a, &["method"]) && a.len() >= "--met".len() {
            let method = match a.split_once('=') {
                Some((_, m)) => Some(m.to_owned()),
                None => {
                    i += 1;
                    args.get(i - 1).cloned()
                }
            };
            if let Some(m) = method {
                labels = labels.union(method_write_labels(&m));
            }
        }
    }
    labels
}

/// A shell runs code this classifier does not read: a `-c` string, a
/// script file, or commands on its standard input. Only `--version` and
/// `--help` are known to run nothing.
fn shell(args: &[String]) -> Labels {
    let only_info = !args.is_empty() && args.iter().all(|a| a == "--version" || a == "--help");
    if only_info { Labels::EMPTY } else { opaque() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn l(line: &str) -> Labels {
        let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        argv_labels(&argv)
    }

    #[test]
    fn long_option_prefixes() {
        assert!(long_is("--rec", &["recursive"]));
        assert!(long_is("--recursive=x", &["recursive"]));
        assert!(!long_is("--", &["recursive"]));
        assert!(!long_is("-r", &["recursive"]));
        assert!(!long_is("--recursively", &["recursive"]));
    }

    #[test]
    fn rm_variants() {
        assert_eq!(l("rm -rf /"), di());
        assert_eq!(l("/bin/rm -R dir"), di());
        assert_eq!(l("rm --rec dir"), di());
        assert_eq!(l("rm dir -r"), di());
        assert_eq!(l("rm -f x"), Labels::of(&[Label::Destructive]));
        assert_eq!(l("rm x"), Labels::of(&[Label::Destructive]));
        assert_eq!(l("rm -- -r"), Labels::of(&[Label::Destructive]));
        assert_eq!(l("rm"), Labels::EMPTY);
    }

    #[test]
    fn wrappers_are_unwrapped() {
        assert_eq!(l("sudo -u root rm -rf /"), di());
        assert_eq!(l("env A=1 B=2 rm -rf x"), di());
        assert_eq!(l("nice -n 10 rm -rf x"), di());
        assert_eq!(l("timeout -s KILL 10 rm -rf x"), di());
        assert_eq!(l("xargs -I {} rm -rf {}"), di());
        assert_eq!(l("nohup time -p exec rm -rf x"), di());
        assert_eq!(l("command -v rm"), Labels::EMPTY);
        assert_eq!(l("env -S rm"), opaque());
        assert_eq!(l("busybox rm -rf x"), di());
    }

    #[test]
    fn shells_with_c_are_opaque() {
        assert_eq!(l("sh -c ls"), opaque());
        assert_eq!(l("bash -lc ls"), opaque());
        assert_eq!(l("bash -o pipefail -c ls"), opaque());
        assert_eq!(l("bash script.sh"), opaque());
        assert_eq!(l("bash"), opaque());
        assert_eq!(l("bash --version"), Labels::EMPTY);
        assert_eq!(l("/usr/bin/env bash -c ls"), opaque());
    }
}
