use std::os::unix::fs::PermissionsExt;

use blastwall_secrets::{SecretError, SecretStore};
use pretty_assertions::assert_eq;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn set_get_list_remove_with_private_modes() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("secrets");
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(0o700, mode(&dir));
    store.set("railway", b"rw-real-token").unwrap();
    assert_eq!(0o600, mode(&dir.join("railway")));
    assert_eq!(b"rw-real-token", store.get("railway").unwrap().expose());
    store.set("railway", b"rotated").unwrap();
    assert_eq!(b"rotated", store.get("railway").unwrap().expose());
    store.set("gh_2", b"x").unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(vec!["gh_2".to_owned(), "railway".to_owned()], names);
    // Nothing but the secrets is left in the directory (no temporary files).
    assert_eq!(2, std::fs::read_dir(&dir).unwrap().count());
    store.remove("gh_2").unwrap();
    assert!(matches!(
        store.get("gh_2"),
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.remove("gh_2"),
        Err(SecretError::NotFound { .. })
    ));
}

#[test]
fn names_cannot_reach_the_file_system() {
    let home = tempfile::tempdir().unwrap();
    let store = SecretStore::open(home.path().join("s")).unwrap();
    for bad in [
        "",
        "../x",
        "a/b",
        ".hidden",
        "a.b",
        "a b",
        &"x".repeat(65),
        "é",
    ] {
        assert!(
            matches!(store.set(bad, b"v"), Err(SecretError::BadName { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(store.get(bad), Err(SecretError::BadName { .. })),
            "{bad:?}"
        );
    }
    assert!(store.set(&"x".repeat(64), b"v").is_ok());
}

#[test]
fn a_store_others_can_read_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("s");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = SecretStore::open(&dir).unwrap_err();
    assert!(err.to_string().contains("chmod 700"), "{err}");
}

#[test]
fn a_secret_file_others_can_read_or_a_symlink_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("s");
    let store = SecretStore::open(&dir).unwrap();
    store.set("a", b"v").unwrap();
    std::fs::set_permissions(dir.join("a"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(store.get("a"), Err(SecretError::Unsafe { .. })));
    std::fs::write(home.path().join("elsewhere"), b"v").unwrap();
    std::os::unix::fs::symlink(home.path().join("elsewhere"), dir.join("b")).unwrap();
    assert!(store.get("b").is_err());
}

#[test]
fn values_never_print() {
    let home = tempfile::tempdir().unwrap();
    let store = SecretStore::open(home.path().join("s")).unwrap();
    store.set("t", b"sekrit-value").unwrap();
    let s = store.get("t").unwrap();
    assert_eq!("[redacted]", format!("{s}"));
    assert_eq!("[redacted]", format!("{s:?}"));
    assert_eq!("Ok([redacted])", format!("{:?}", store.get("t")));
}
