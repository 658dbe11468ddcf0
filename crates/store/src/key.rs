use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// A project API key in clear text. Exists only between creation and the moment it is shown;
/// its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub const PREFIX: &'static str = "cg_";
    /// How many leading characters are kept in clear to recognise a key.
    pub const SHOWN_CHARS: usize = 10;

    pub(crate) fn generate() -> Self {
        let secret: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Self(format!("{}{secret}", Self::PREFIX))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn prefix(&self) -> String {
        self.0.chars().take(Self::SHOWN_CHARS).collect()
    }

    pub(crate) fn hash(&self) -> String {
        hash_key(&self.0)
    }
}

/// Keys are 238 bits of randomness, so a fast hash is enough; no secret is ever stored.
pub(crate) fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A project's redaction hash key, hex: 256 random bits.
pub(crate) fn new_redaction_key() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 32]>())
}

pub(crate) fn parse_redaction_key(hex: &str) -> crate::Result<[u8; 32]> {
    hex::decode(hex)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| crate::StoreError::Corrupt("a project's redaction key".into()))
}

/// Compares two key hashes in constant time, so timing reveals nothing about a stored hash.
pub(crate) fn hashes_match(stored: &str, presented: &str) -> bool {
    bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_redacted() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert!(a.expose().starts_with("cg_"));
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.hash().len(), 64);
    }
}
