//! Canonical signing texts and a signature checker that amortises key work over a batch.
//!
//! Every signed ledger item (receipt, audit) is signed over a *signing text*: a domain
//! separator naming the item type and version, then every field in a fixed order, fixed
//! width integers big-endian and variable-length fields prefixed by their length (u64
//! big-endian). No two different items share a text, and a signature for one item type
//! can never be replayed as another.
//!
//! [`KeyCache`] decodes (decompresses) each distinct ed25519 key once and derives each
//! distinct node id once, which is most of the per-item work beyond the signature
//! equation itself when the same providers and tenants sign many receipts. It checks each
//! signature with the same single-signature rule as `xnode_types::PublicKeyBytes::verify`
//! (ed25519-dalek's `verify`), deliberately not with a randomised batch equation: batch
//! ed25519 accepts some signatures that single verification rejects (small-order
//! components, non-canonical `R`), and if two nodes checked the same receipt with two
//! different rules a crafted receipt could make their epoch outputs differ.

use std::collections::BTreeMap;

use libp2p_identity::{PeerId, PublicKey, ed25519};
use xnode_types::{NodeId, PublicKeyBytes, SignatureBytes};

/// Builds a signing text field by field.
pub(crate) struct SigningText {
    bytes: Vec<u8>,
}

impl SigningText {
    /// Starts a text with its domain separator.
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(domain);
        Self { bytes }
    }

    pub(crate) fn byte(mut self, value: u8) -> Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn fixed(mut self, value: &[u8]) -> Self {
        self.bytes.extend_from_slice(value);
        self
    }

    /// A variable-length field: its length as u64 big-endian, then the bytes.
    pub(crate) fn variable(self, value: &[u8]) -> Self {
        let length = u64::try_from(value.len()).unwrap_or(u64::MAX);
        self.u64(length).fixed(value)
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Distinct keys remembered before the cache is emptied, bounding its memory.
const MAX_CACHED_KEYS: usize = 1 << 16;

/// Decoded keys and derived node ids, remembered across the items of a batch.
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: BTreeMap<[u8; 32], Option<ed25519::PublicKey>>,
}

/// Why a key could not vouch for a node id.
pub(crate) enum NodeKeyProblem {
    Malformed,
    Mismatch,
}

impl KeyCache {
    fn decoded(&mut self, key: &PublicKeyBytes) -> Option<&ed25519::PublicKey> {
        if self.keys.len() >= MAX_CACHED_KEYS && !self.keys.contains_key(&key.0) {
            self.keys.clear();
        }
        self.keys
            .entry(key.0)
            .or_insert_with(|| ed25519::PublicKey::try_from_bytes(&key.0).ok())
            .as_ref()
    }

    /// Whether `signature` by `key` over `message` verifies (false for malformed keys).
    pub(crate) fn verify(
        &mut self,
        key: &PublicKeyBytes,
        message: &[u8],
        signature: &SignatureBytes,
    ) -> bool {
        self.decoded(key)
            .is_some_and(|decoded| decoded.verify(message, &signature.0))
    }

    /// Checks that `key` is a valid ed25519 key whose node id is `node`.
    pub(crate) fn check_node_key(
        &mut self,
        key: &PublicKeyBytes,
        node: &NodeId,
    ) -> Result<(), NodeKeyProblem> {
        let decoded = self.decoded(key).ok_or(NodeKeyProblem::Malformed)?;
        let derived = PeerId::from_public_key(&PublicKey::from(decoded.clone()));
        if derived == node.peer_id() {
            Ok(())
        } else {
            Err(NodeKeyProblem::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    #[test]
    fn variable_fields_cannot_be_confused() {
        let a = SigningText::new(b"d")
            .variable(b"ab")
            .variable(b"c")
            .finish();
        let b = SigningText::new(b"d")
            .variable(b"a")
            .variable(b"bc")
            .finish();
        assert_ne!(a, b);
    }

    #[test]
    fn cache_agrees_with_single_verification_and_node_ids() {
        let key = SecretKey::from_seed(&[7; 32]).unwrap();
        let signature = key.sign(b"text");
        let mut cache = KeyCache::default();
        assert!(cache.verify(&key.public(), b"text", &signature));
        assert!(cache.verify(&key.public(), b"text", &signature));
        assert!(!cache.verify(&key.public(), b"texT", &signature));
        assert!(key.public().verify(b"text", &signature));
        assert!(cache.check_node_key(&key.public(), &key.node_id()).is_ok());
        let other = SecretKey::from_seed(&[8; 32]).unwrap();
        assert!(matches!(
            cache.check_node_key(&other.public(), &key.node_id()),
            Err(NodeKeyProblem::Mismatch)
        ));
        assert!(!cache.verify(&PublicKeyBytes([0xff; 32]), b"text", &signature));
    }
}
