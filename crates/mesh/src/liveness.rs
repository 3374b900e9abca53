//! Signed liveness records: what a node says about itself (`alive` or `left`), signed with
//! its own key, so that no other node can say it on its behalf.
//!
//! A node id is the libp2p peer id of an ed25519 key, which inlines the public key, so a
//! record can be checked by anyone who holds it, however many hands it passed through. The
//! signature binds a domain-separation prefix, the network name, the node, its incarnation,
//! the status and the addresses. Records are small and bounded: at most
//! [`MAX_ADDRESSES`] addresses of at most [`MAX_ADDRESS_LEN`] bytes each.

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, SecretKey, SignatureBytes};

/// Most addresses one record may carry; more would let a peer make others dial anywhere.
pub const MAX_ADDRESSES: usize = 8;
/// Longest address (as text) one record may carry.
pub const MAX_ADDRESS_LEN: usize = 256;

/// Everything signed starts with this, so a liveness signature can never be replayed as
/// another kind of signed statement (a registry entry, a request) or the reverse.
const DOMAIN: &[u8] = b"xnode/membership/liveness/v1\0";

/// What a node may only say about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelfStatus {
    Alive,
    Left,
}

impl SelfStatus {
    fn tag(self) -> u8 {
        match self {
            SelfStatus::Alive => 1,
            SelfStatus::Left => 2,
        }
    }
}

/// A node's signed statement of its own liveness at one incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessRecord {
    pub node: NodeId,
    pub incarnation: u64,
    pub status: SelfStatus,
    pub addresses: Vec<String>,
    pub signature: SignatureBytes,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LivenessError {
    #[error("a liveness record carries {0} addresses (at most {MAX_ADDRESSES})")]
    TooManyAddresses(usize),
    #[error("a liveness record carries an address of {0} bytes (at most {MAX_ADDRESS_LEN})")]
    AddressTooLong(usize),
    #[error("node id {0} does not embed an ed25519 public key")]
    NoPublicKey(NodeId),
    #[error("the signature of {0}'s liveness record does not verify")]
    BadSignature(NodeId),
}

impl LivenessRecord {
    /// Signs a record for the node of `key`. Addresses beyond the limits are left out (the
    /// first [`MAX_ADDRESSES`] acceptable ones are kept), so signing never fails.
    pub fn sign(
        key: &SecretKey,
        network: &str,
        incarnation: u64,
        status: SelfStatus,
        addresses: &[String],
    ) -> Self {
        let addresses: Vec<String> = addresses
            .iter()
            .filter(|a| a.len() <= MAX_ADDRESS_LEN)
            .take(MAX_ADDRESSES)
            .cloned()
            .collect();
        let node = key.node_id();
        let signature = key.sign(&signed_bytes(
            network,
            &node,
            incarnation,
            status,
            &addresses,
        ));
        Self {
            node,
            incarnation,
            status,
            addresses,
            signature,
        }
    }

    /// Checks the record's bounds (cheap) and then its signature against the key embedded
    /// in its node id, for the given network.
    ///
    /// A record that verified once is remembered (by a hash of everything the check read:
    /// the signed bytes, which name the network and the key, and the signature), so the same
    /// record arriving again from other peers costs a hash, not a curve operation. In a
    /// process that runs many nodes (the membership simulator, multi-node tests) each
    /// record is then checked once, not once per node.
    pub fn verify(&self, network: &str) -> Result<(), LivenessError> {
        self.check_bounds()?;
        let message = signed_bytes(
            network,
            &self.node,
            self.incarnation,
            self.status,
            &self.addresses,
        );
        let checked = blake3::Hasher::new()
            .update(&message)
            .update(&self.signature.0)
            .finalize();
        if verified::remembers(checked.as_bytes()) {
            return Ok(());
        }
        let key = public_key_of(&self.node).ok_or(LivenessError::NoPublicKey(self.node))?;
        if key.verify(&message, &self.signature.0) {
            verified::remember(*checked.as_bytes());
            Ok(())
        } else {
            Err(LivenessError::BadSignature(self.node))
        }
    }

    /// The size limits alone, checked before any signature work.
    pub fn check_bounds(&self) -> Result<(), LivenessError> {
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(LivenessError::TooManyAddresses(self.addresses.len()));
        }
        if let Some(long) = self.addresses.iter().find(|a| a.len() > MAX_ADDRESS_LEN) {
            return Err(LivenessError::AddressTooLong(long.len()));
        }
        Ok(())
    }
}

/// Records whose signature verified, by the hash of their signed bytes and signature. Only
/// successes are remembered, so a flood of forgeries leaves no trace; valid records from
/// many keys only empty the memo now and then (it is cleared when full).
mod verified {
    use std::collections::HashSet;
    use std::sync::{LazyLock, Mutex};

    /// About 2 MiB of hashes: every member's current record in a network of tens of
    /// thousands of nodes.
    const MAX_REMEMBERED: usize = 65_536;

    static VERIFIED: LazyLock<Mutex<HashSet<[u8; 32]>>> = LazyLock::new(Default::default);

    pub(super) fn remembers(checked: &[u8; 32]) -> bool {
        VERIFIED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(checked)
    }

    pub(super) fn remember(checked: [u8; 32]) {
        let mut memo = VERIFIED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if memo.len() >= MAX_REMEMBERED {
            memo.clear();
        }
        memo.insert(checked);
    }
}

/// The ed25519 public key inlined in a node id (an identity multihash of the protobuf
/// encoding of the key), if it has one.
pub fn public_key_of(node: &NodeId) -> Option<libp2p::identity::PublicKey> {
    let peer = node.peer_id();
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()
}

/// The exact bytes a record's signature covers. Every variable-length field is length
/// prefixed, so no two different records share a signed form.
fn signed_bytes(
    network: &str,
    node: &NodeId,
    incarnation: u64,
    status: SelfStatus,
    addresses: &[String],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(DOMAIN);
    push_field(&mut out, network.as_bytes());
    push_field(&mut out, &node.to_bytes());
    out.extend_from_slice(&incarnation.to_be_bytes());
    out.push(status.tag());
    // At most MAX_ADDRESSES on the signing side; a record with more is refused before
    // this is built, so the count always fits.
    out.extend_from_slice(&(addresses.len() as u32).to_be_bytes());
    for address in addresses {
        push_field(&mut out, address.as_bytes());
    }
    out
}

fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn addrs() -> Vec<String> {
        vec!["/ip4/127.0.0.1/tcp/4001".into()]
    }

    #[test]
    fn a_signed_record_verifies_only_for_its_network_and_contents() {
        let key = SecretKey::generate();
        let record = LivenessRecord::sign(&key, "net", 7, SelfStatus::Alive, &addrs());
        assert_eq!(record.node, key.node_id());
        record.verify("net").unwrap();
        // The second check finds the record remembered; the answers must not change.
        record.verify("net").unwrap();
        assert!(record.verify("other").is_err(), "bound to the network name");
        for tamper in [
            |r: &mut LivenessRecord| r.incarnation += 1,
            |r: &mut LivenessRecord| r.status = SelfStatus::Left,
            |r: &mut LivenessRecord| r.addresses.push("/ip4/1.2.3.4/tcp/1".into()),
            |r: &mut LivenessRecord| r.addresses.clear(),
            |r: &mut LivenessRecord| r.node = SecretKey::generate().node_id(),
            |r: &mut LivenessRecord| r.signature.0[0] ^= 1,
        ] {
            let mut forged = record.clone();
            tamper(&mut forged);
            assert!(forged.verify("net").is_err(), "{forged:?}");
        }
    }

    #[test]
    fn a_record_about_another_node_cannot_be_signed_by_a_third_party() {
        let victim = SecretKey::generate().node_id();
        let rogue = SecretKey::generate();
        let mut forged = LivenessRecord::sign(&rogue, "net", u64::MAX, SelfStatus::Left, &[]);
        forged.node = victim;
        assert_eq!(
            forged.verify("net"),
            Err(LivenessError::BadSignature(victim))
        );
    }

    #[test]
    fn signing_keeps_addresses_within_the_limits_and_verify_refuses_more() {
        let key = SecretKey::generate();
        let many: Vec<String> = (0..20)
            .map(|i| format!("/ip4/10.0.0.{i}/tcp/1"))
            .chain(std::iter::once("x".repeat(1000)))
            .collect();
        let record = LivenessRecord::sign(&key, "net", 1, SelfStatus::Alive, &many);
        assert_eq!(record.addresses.len(), MAX_ADDRESSES);
        record.verify("net").unwrap();
        let mut bloated = record.clone();
        bloated.addresses.push("/ip4/10.0.0.99/tcp/1".into());
        assert_eq!(
            bloated.verify("net"),
            Err(LivenessError::TooManyAddresses(MAX_ADDRESSES + 1))
        );
        let mut long = record;
        long.addresses[0] = "y".repeat(MAX_ADDRESS_LEN + 1);
        assert_eq!(
            long.verify("net"),
            Err(LivenessError::AddressTooLong(MAX_ADDRESS_LEN + 1))
        );
    }

    #[test]
    fn the_public_key_is_recovered_from_the_node_id() {
        let key = SecretKey::generate();
        let public = public_key_of(&key.node_id()).unwrap();
        let ed = public.try_into_ed25519().unwrap();
        assert_eq!(ed.to_bytes(), key.public().0);
    }
}
