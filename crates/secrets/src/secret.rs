//! The value type: zeroized on drop, never printed.

use std::fmt;

use zeroize::Zeroizing;

/// A real secret value. Its bytes are overwritten when it is dropped, and
/// `Debug` and `Display` print `[redacted]`. Use [`Secret::expose`] only
/// where the value must go on the wire.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps a value. The vector is taken over (not copied), so the only copy
    /// is zeroized on drop.
    pub fn new(value: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8, when it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
