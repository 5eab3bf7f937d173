//! Per-session placeholders: what the agent holds instead of a real value.

use ring::rand::{SecureRandom, SystemRandom};

use crate::ProxyError;

/// A placeholder generator.
#[derive(Debug, Clone, Copy)]
pub struct Placeholder;

impl Placeholder {
    /// A fresh placeholder for the credential `name`: `bw_ph_<name>_<32 hex>`,
    /// 128 random bits from the system RNG. It is made of letters, digits
    /// and `_` only, so tools that check a token's characters accept it, and
    /// it reads the same URL-encoded. Characters of `name` outside
    /// `[A-Za-z0-9]` become `_`. Fails only when the system has no RNG.
    pub fn generate(name: &str) -> Result<String, ProxyError> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| ProxyError::Credential {
                name: name.to_owned(),
                why: "the system random number generator failed".into(),
            })?;
        let clean: String = name
            .chars()
            .take(32)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Ok(format!("bw_ph_{clean}_{}", hex::encode(bytes)))
    }
}
