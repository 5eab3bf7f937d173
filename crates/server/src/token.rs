//! Random secrets (the access token, cookies, CSRF tokens) and comparing
//! them without leaking where they differ.

use std::fmt::Write as _;

/// A failure to get randomness: no secret can be made, so nothing is served.
#[derive(Debug, thiserror::Error)]
#[error("no randomness for a secret: {0}")]
pub struct NoRandom(String);

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, NoRandom> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(|e| NoRandom(e.to_string()))?;
    let mut s = String::with_capacity(bytes * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    Ok(s)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn secrets_are_long_distinct_hex() {
        let a = random_hex(32).unwrap();
        let b = random_hex(32).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[1..]));
    }
}
