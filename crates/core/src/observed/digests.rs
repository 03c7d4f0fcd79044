//! Keyed digests of a host file's secrets: what lets the planner see that a secret on a host
//! differs from the declared one without the clear value being kept anywhere.
//!
//! Guarantees: a [`SecretDigests`] never prints, serializes or stores a digest or its key
//! (its `Debug` shows the secrets' names only; the observed model skips it when
//! serialized). Caveat: the digests are only as unguessable as their key: the caller draws
//! it at random once per process (the engine, with `getrandom`); the core does no I/O and
//! draws nothing.

use std::collections::BTreeMap;

/// Keyed digests of the secrets of a file read from a host, by name (`token`,
/// `KEEPALIVED_PASSWORD`): HMAC-SHA256 under the key they were made with, which they keep
/// to digest a declared value the same way. It is no part of an observed state's identity
/// (the key differs in every process): all values compare equal.
#[derive(Clone, Default)]
pub struct SecretDigests {
    key: [u8; 32],
    digests: BTreeMap<String, [u8; 32]>,
}

impl PartialEq for SecretDigests {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SecretDigests {}

impl std::fmt::Debug for SecretDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.digests.keys()).finish()
    }
}

impl SecretDigests {
    /// The digests of `secrets` (name, clear value) under `key`.
    pub fn new(key: [u8; 32], secrets: impl IntoIterator<Item = (String, String)>) -> Self {
        let digests = secrets
            .into_iter()
            .map(|(k, v)| (k, hmac_sha256(&key, v.as_bytes())))
            .collect();
        SecretDigests { key, digests }
    }

    /// Is the secret at `name` known and different from `value`?
    pub fn differs(&self, name: &str, value: &str) -> bool {
        self.digests
            .get(name)
            .is_some_and(|d| *d != hmac_sha256(&self.key, value.as_bytes()))
    }
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (≤ 64 bytes).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let d = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(d),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn digests_under_different_keys_compare_their_own_way() {
        let s = || [("token".to_string(), "K10right".to_string())];
        let a = SecretDigests::new([1; 32], s());
        let b = SecretDigests::new([2; 32], s());
        assert!(!a.differs("token", "K10right") && !b.differs("token", "K10right"));
        assert!(a.differs("token", "K10wrong") && b.differs("token", "K10wrong"));
        assert_eq!(format!("{a:?}"), "{\"token\"}", "no digest or key printed");
    }
}
