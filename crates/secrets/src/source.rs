//! Credential sources: where a user's own config says a real value lives.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::store::read_bounded;
use crate::{MAX_SECRET_BYTES, Secret, SecretError, SecretStore, validate_name};

/// A `command:` source: a program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSource {
    /// The program (looked up in `PATH` when it has no `/`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// A parsed credential `source = "…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `store:NAME`: a secret in the [`SecretStore`].
    Store(String),
    /// `env:VAR`: a variable of the supervisor's environment, read by the caller.
    Env(String),
    /// `file:PATH`: a file's contents, one trailing newline removed.
    File(PathBuf),
    /// `command:PROG ARGS`: a program's stdout, trimmed.
    Command(CommandSource),
}

/// How long a `command:` source may run by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl SecretSource {
    /// Parses `store:NAME`, `env:VAR`, `file:PATH` or `command:PROG ARGS`.
    /// Arguments of a command are split on whitespace; single or double
    /// quotes group words (no escapes, no expansion: there is no shell).
    pub fn parse(s: &str) -> Result<SecretSource, SecretError> {
        let bad = |why: &str| SecretError::BadSource {
            text: s.to_owned(),
            why: why.to_owned(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected store:, env:, file: or command:"))?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(bad("nothing after the colon"));
        }
        match kind {
            "store" => {
                validate_name(rest)?;
                Ok(SecretSource::Store(rest.to_owned()))
            }
            "env" => Ok(SecretSource::Env(rest.to_owned())),
            "file" => Ok(SecretSource::File(PathBuf::from(rest))),
            "command" => {
                let words = split_words(rest).ok_or_else(|| bad("unbalanced quote"))?;
                let mut it = words.into_iter();
                let program = it.next().ok_or_else(|| bad("no program"))?;
                Ok(SecretSource::Command(CommandSource {
                    program,
                    args: it.collect(),
                }))
            }
            _ => Err(bad("expected store:, env:, file: or command:")),
        }
    }

    /// Produces the value. `env` answers `env:` sources (the library never
    /// reads the environment itself); `store` answers `store:` sources.
    /// A `command:` source is killed after `timeout`.
    pub fn resolve(
        &self,
        store: Option<&SecretStore>,
        env: &dyn Fn(&str) -> Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Store(name) => match store {
                Some(s) => s.get(name),
                None => Err(SecretError::BadSource {
                    text: format!("store:{name}"),
                    why: "no secret store was opened".into(),
                }),
            },
            SecretSource::Env(var) => {
                let v = env(var).ok_or_else(|| SecretError::EnvMissing { var: var.clone() })?;
                let origin = format!("env:{var}");
                checked(Secret::new(v), &origin)
            }
            SecretSource::File(path) => {
                let origin = format!("file:{}", path.display());
                let mut f = File::open(path).map_err(|error| SecretError::Io {
                    op: "open",
                    path: path.clone(),
                    error,
                })?;
                let mut v = read_bounded(&mut f, &origin, path)?;
                if v.last() == Some(&b'\n') {
                    v.pop();
                    if v.last() == Some(&b'\r') {
                        v.pop();
                    }
                }
                checked(Secret::new(v), &origin)
            }
            SecretSource::Command(c) => run(c, timeout),
        }
    }
}

fn checked(s: Secret, origin: &str) -> Result<Secret, SecretError> {
    if s.is_empty() {
        return Err(SecretError::Empty {
            origin: origin.to_owned(),
        });
    }
    if s.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge {
            origin: origin.to_owned(),
        });
    }
    Ok(s)
}

fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

fn run(c: &CommandSource, timeout: Duration) -> Result<Secret, SecretError> {
    let origin = format!("command:{}", c.program);
    let mut child = Command::new(&c.program)
        .args(&c.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| SecretError::Spawn {
            program: c.program.clone(),
            error,
        })?;
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SecretError::Spawn {
            program: c.program.clone(),
            error: std::io::Error::other("no stdout pipe"),
        });
    };
    // Read on a thread so a chatty program cannot block on a full pipe
    // while we wait for it.
    let reader = std::thread::spawn(move || {
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_BYTES + 1));
        let limit = u64::try_from(MAX_SECRET_BYTES).unwrap_or(u64::MAX) + 1;
        let r = (&mut stdout).take(limit).read_to_end(&mut buf);
        // Drain the rest so the program is not killed by SIGPIPE mid-write.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        r.map(|_| buf)
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SecretError::Timeout {
                    program: c.program.clone(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SecretError::Spawn {
                    program: c.program.clone(),
                    error,
                });
            }
        }
    };
    let out = reader
        .join()
        .map_err(|_| SecretError::CommandFailed {
            program: c.program.clone(),
            status: "its output could not be read".into(),
        })?
        .map_err(|error| SecretError::Io {
            op: "read the output of",
            path: PathBuf::from(&c.program),
            error,
        })?;
    if !status.success() {
        return Err(SecretError::CommandFailed {
            program: c.program.clone(),
            status: status.to_string(),
        });
    }
    if out.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge { origin });
    }
    let start = out
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let trimmed = out.get(start..end).unwrap_or_default().to_vec();
    checked(Secret::new(trimmed), &origin)
}
