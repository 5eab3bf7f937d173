use std::time::Duration;

use blastwall_secrets::{CommandSource, SecretError, SecretSource, SecretStore};
use pretty_assertions::assert_eq;

fn no_env(_: &str) -> Option<Vec<u8>> {
    None
}

const T: Duration = Duration::from_secs(10);

#[test]
fn parses_each_kind() {
    assert_eq!(
        SecretSource::Store("railway".into()),
        SecretSource::parse("store:railway").unwrap()
    );
    assert_eq!(
        SecretSource::Env("RAILWAY_TOKEN".into()),
        SecretSource::parse("env:RAILWAY_TOKEN").unwrap()
    );
    assert_eq!(
        SecretSource::Command(CommandSource {
            program: "op".into(),
            args: vec!["read".into(), "op://vault/railway token".into()],
        }),
        SecretSource::parse("command:op read 'op://vault/railway token'").unwrap()
    );
    for bad in ["railway", "vault:x", "store:", "store:../x", "command:a 'b"] {
        assert!(SecretSource::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn store_env_and_file() {
    let home = tempfile::tempdir().unwrap();
    let store = SecretStore::open(home.path().join("s")).unwrap();
    store.set("a", b"from-store").unwrap();
    let s = SecretSource::parse("store:a").unwrap();
    assert_eq!(
        b"from-store",
        s.resolve(Some(&store), &no_env, T).unwrap().expose()
    );

    let env = |v: &str| (v == "TOK").then(|| b"from-env".to_vec());
    let e = SecretSource::parse("env:TOK").unwrap();
    assert_eq!(b"from-env", e.resolve(None, &env, T).unwrap().expose());
    assert!(matches!(
        SecretSource::parse("env:NOPE")
            .unwrap()
            .resolve(None, &env, T),
        Err(SecretError::EnvMissing { .. })
    ));

    let f = home.path().join("tok");
    std::fs::write(&f, b"from-file\n").unwrap();
    let fs = SecretSource::parse(&format!("file:{}", f.display())).unwrap();
    assert_eq!(b"from-file", fs.resolve(None, &no_env, T).unwrap().expose());
}

#[test]
fn command_output_is_trimmed_and_no_shell_runs() {
    let c = SecretSource::parse("command:printf '  tok-from-cmd\\n'").unwrap();
    // printf with no shell: the backslash-n is printf's own escape.
    assert_eq!(
        b"tok-from-cmd",
        c.resolve(None, &no_env, T).unwrap().expose()
    );
    // `$HOME` is not expanded: there is no shell.
    let c = SecretSource::parse("command:printf $HOME").unwrap();
    assert_eq!(b"$HOME", c.resolve(None, &no_env, T).unwrap().expose());
}

#[test]
fn command_failure_does_not_echo_stderr() {
    let c = SecretSource::parse("command:sh -c 'echo leaked-value >&2; exit 3'").unwrap();
    let err = c.resolve(None, &no_env, T).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecretError::CommandFailed { .. }), "{text}");
    assert!(!text.contains("leaked-value"), "{text}");
}

#[test]
fn command_is_killed_after_its_timeout() {
    let c = SecretSource::parse("command:sleep 30").unwrap();
    let start = std::time::Instant::now();
    let err = c
        .resolve(None, &no_env, Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, SecretError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn empty_values_are_refused() {
    let c = SecretSource::parse("command:true").unwrap();
    assert!(matches!(
        c.resolve(None, &no_env, T),
        Err(SecretError::Empty { .. })
    ));
}
