//! Node and tenant identities: ed25519 keys, node ids (libp2p peer ids) and signatures.
//!
//! Nodes and tenants both use ed25519. A node id is the libp2p `PeerId` of the node's key,
//! so the mesh can authenticate a peer at the transport layer and the registry can check
//! that a record about node `N` was signed by `N` itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use libp2p_identity::PeerId;

/// Errors from parsing or using keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid ed25519 secret key: {0}")]
    InvalidSecret(String),
    #[error("invalid ed25519 public key: {0}")]
    InvalidPublic(String),
    #[error("invalid node id {input:?}: {reason}")]
    InvalidNodeId { input: String, reason: String },
}

/// A node's identity in the mesh: the libp2p peer id derived from its ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(#[serde(with = "peer_id_string")] PeerId);

impl NodeId {
    pub fn from_peer_id(peer: PeerId) -> Self {
        Self(peer)
    }

    pub fn peer_id(&self) -> PeerId {
        self.0
    }

    /// The node id that belongs to an ed25519 public key.
    pub fn from_public_key(key: &PublicKeyBytes) -> Result<Self, KeyError> {
        let public = key.to_libp2p()?;
        Ok(Self(PeerId::from_public_key(&public)))
    }

    /// Whether this is the node id of the ed25519 public key `key`, as
    /// [`NodeId::from_public_key`] would say, without decoding the key's curve point: an
    /// ed25519 node id is the identity multihash of the key's protobuf encoding, so this
    /// compares bytes. It says nothing of whether `key` is a valid point (a signature check
    /// with the key does); readers call it for every entry they check, and the decoding
    /// cost more than the rest of a remembered seal's check.
    pub fn is_id_of_key(&self, key: &PublicKeyBytes) -> bool {
        /// The identity multihash's code (0) and length (36), then the protobuf header of
        /// an ed25519 public key: field 1 (key type) = 1 (Ed25519), field 2 (data), 32 bytes.
        const ED25519_ID_HEADER: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        let id = self.0.to_bytes();
        id.len() == ED25519_ID_HEADER.len() + key.0.len()
            && id.starts_with(&ED25519_ID_HEADER)
            && id.ends_with(&key.0)
    }

    /// The raw bytes of the multihash, used for deterministic hashing (placement, ordering).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl FromStr for NodeId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerId::from_str(s)
            .map(Self)
            .map_err(|e| KeyError::InvalidNodeId {
                input: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl From<PeerId> for NodeId {
    fn from(peer: PeerId) -> Self {
        Self(peer)
    }
}

/// A node id is written as its base58 text. Base58 is quadratic in the length and every
/// metadata entry names its writer, so encoding an entry (for the wire, and for the hashes
/// of digests and seals) spent more time on that one field than on all the others: the
/// texts of recent ids are remembered, both ways. Few distinct ids recur (the nodes of a
/// network); a peer that sends many only empties the memo now and then.
mod peer_id_string {
    use std::collections::HashMap;
    use std::str::FromStr;
    use std::sync::{Arc, LazyLock, RwLock};

    use libp2p_identity::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Ids remembered in each direction; the memo is emptied when it is full.
    const MAX_REMEMBERED: usize = 4096;

    static TEXT_OF: LazyLock<RwLock<HashMap<PeerId, Arc<str>>>> = LazyLock::new(Default::default);
    static ID_OF: LazyLock<RwLock<HashMap<Arc<str>, PeerId>>> = LazyLock::new(Default::default);

    fn remember<K: std::hash::Hash + Eq, V>(memo: &RwLock<HashMap<K, V>>, key: K, value: V) {
        let mut memo = memo
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if memo.len() >= MAX_REMEMBERED {
            memo.clear();
        }
        memo.insert(key, value);
    }

    fn text_of(peer: &PeerId) -> Arc<str> {
        let known = TEXT_OF
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(peer)
            .cloned();
        known.unwrap_or_else(|| {
            let text: Arc<str> = peer.to_base58().into();
            remember(&TEXT_OF, *peer, text.clone());
            text
        })
    }

    pub fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text_of(peer))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let text = String::deserialize(d)?;
        let known = ID_OF
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(text.as_str())
            .copied();
        if let Some(peer) = known {
            return Ok(peer);
        }
        let peer = PeerId::from_str(&text).map_err(serde::de::Error::custom)?;
        remember(&ID_OF, Arc::from(text), peer);
        Ok(peer)
    }
}

/// A raw 32-byte ed25519 public key. Tenants are identified by theirs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKeyBytes(pub [u8; 32]);

impl PublicKeyBytes {
    fn to_libp2p(self) -> Result<libp2p_identity::PublicKey, KeyError> {
        let ed = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|e| KeyError::InvalidPublic(e.to_string()))?;
        Ok(ed.into())
    }

    /// Checks `signature` over `message`. Returns false for malformed keys or signatures.
    pub fn verify(&self, message: &[u8], signature: &SignatureBytes) -> bool {
        match libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0) {
            Ok(key) => key.verify(message, &signature.0),
            Err(_) => false,
        }
    }

    pub fn to_hex(&self) -> String {
        // Into a buffer at once: `hex::encode` builds the string a char at a time, and
        // readers format keys per entry (registry prefixes of a tenant's revocations).
        let mut text = [0u8; 64];
        match hex::encode_to_slice(self.0, &mut text) {
            Ok(()) => String::from_utf8_lossy(&text).into_owned(),
            Err(_) => hex::encode(self.0),
        }
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text).map_err(|e| KeyError::InvalidPublic(e.to_string()))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::InvalidPublic("expected 32 bytes".into()))?;
        Ok(Self(array))
    }
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignatureBytes(#[serde(with = "sig_bytes")] pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

mod sig_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: Vec<u8> = serde_bytes_compat::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))
    }

    /// Accepts both a byte string and a sequence of numbers, so JSON and postcard both work.
    mod serde_bytes_compat {
        use serde::Deserializer;
        use serde::de::{SeqAccess, Visitor};

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct BytesVisitor;
            impl<'de> Visitor<'de> for BytesVisitor {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(64));
                    while let Some(b) = seq.next_element::<u8>()? {
                        if out.len() >= 64 {
                            return Err(serde::de::Error::custom("signature too long"));
                        }
                        out.push(b);
                    }
                    Ok(out)
                }
            }
            d.deserialize_bytes(BytesVisitor)
        }
    }
}

/// An ed25519 secret key (node or tenant). Zeroed on drop by the underlying library.
#[derive(Clone)]
pub struct SecretKey {
    keypair: libp2p_identity::ed25519::Keypair,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={})", self.public().to_hex())
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        Self {
            keypair: libp2p_identity::ed25519::Keypair::generate(),
        }
    }

    /// Builds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, KeyError> {
        let mut bytes = seed.to_vec();
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(&mut bytes)
            .map_err(|e| KeyError::InvalidSecret(e.to_string()))?;
        Ok(Self {
            keypair: secret.into(),
        })
    }

    /// The 32-byte seed that [`SecretKey::from_seed`] accepts.
    pub fn seed(&self) -> [u8; 32] {
        let full = self.keypair.to_bytes();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&full[..32]);
        seed
    }

    pub fn public(&self) -> PublicKeyBytes {
        PublicKeyBytes(self.keypair.public().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        let sig = self.keypair.sign(message);
        let mut out = [0u8; 64];
        // ed25519 signatures are always 64 bytes; copy defensively all the same.
        let n = sig.len().min(64);
        out[..n].copy_from_slice(&sig[..n]);
        SignatureBytes(out)
    }

    /// The libp2p keypair for this key, used as a node's transport identity.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        self.keypair.clone().into()
    }

    /// The node id this key has when used as a node identity.
    pub fn node_id(&self) -> NodeId {
        NodeId(PeerId::from_public_key(&self.to_libp2p_keypair().public()))
    }
}

/// Something that can sign on behalf of an owner.
pub trait Signer {
    fn public(&self) -> PublicKeyBytes;
    fn sign(&self, message: &[u8]) -> SignatureBytes;
}

impl Signer for SecretKey {
    fn public(&self) -> PublicKeyBytes {
        SecretKey::public(self)
    }
    fn sign(&self, message: &[u8]) -> SignatureBytes {
        SecretKey::sign(self, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_written_as_their_text_whatever_the_memo_holds() {
        // More ids than the memo keeps, twice over, so it is emptied along the way.
        let ids: Vec<NodeId> = (0..5000).map(|_| SecretKey::generate().node_id()).collect();
        for round in 0..2 {
            for id in &ids {
                let json = serde_json::to_string(id).unwrap();
                assert_eq!(
                    json,
                    format!("\"{}\"", id.peer_id().to_base58()),
                    "round {round}"
                );
                assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), *id);
            }
        }
        assert!(serde_json::from_str::<NodeId>("\"not a peer id\"").is_err());
    }

    #[test]
    fn a_node_id_is_recognised_as_its_keys_without_decoding_the_key() {
        for _ in 0..200 {
            let key = SecretKey::generate();
            let id = key.node_id();
            assert_eq!(NodeId::from_public_key(&key.public()).ok(), Some(id));
            assert!(id.is_id_of_key(&key.public()));
            let other = SecretKey::generate();
            assert!(!id.is_id_of_key(&other.public()));
            assert!(!other.node_id().is_id_of_key(&key.public()));
            let mut flipped = key.public();
            flipped.0[31] ^= 1;
            assert!(!id.is_id_of_key(&flipped));
        }
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let key = SecretKey::generate();
        let sig = key.sign(b"hello");
        assert!(key.public().verify(b"hello", &sig));
        assert!(!key.public().verify(b"hellp", &sig));
        let other = SecretKey::generate();
        assert!(!other.public().verify(b"hello", &sig));
    }

    #[test]
    fn tampered_signature_fails() {
        let key = SecretKey::generate();
        let mut sig = key.sign(b"payload");
        sig.0[10] ^= 0x01;
        assert!(!key.public().verify(b"payload", &sig));
    }

    #[test]
    fn seed_round_trip_keeps_identity() {
        let key = SecretKey::generate();
        let again = SecretKey::from_seed(&key.seed()).unwrap();
        assert_eq!(key.public(), again.public());
        assert_eq!(key.node_id(), again.node_id());
        assert_eq!(
            NodeId::from_public_key(&key.public()).unwrap(),
            key.node_id()
        );
    }

    #[test]
    fn bad_seed_is_an_error() {
        assert!(SecretKey::from_seed(&[1, 2, 3]).is_err());
    }

    #[test]
    fn node_id_parses_and_rejects_garbage() {
        let id = SecretKey::generate().node_id();
        let parsed: NodeId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert!("not-a-peer-id".parse::<NodeId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
    }

    #[test]
    fn malformed_public_key_never_verifies() {
        let key = PublicKeyBytes([0xff; 32]);
        assert!(!key.verify(b"x", &SignatureBytes([0; 64])));
    }
}
