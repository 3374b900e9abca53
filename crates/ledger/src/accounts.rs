//! Stakes and tenant escrows: the on-chain balances settlement reads at an epoch's start.
//!
//! Both are snapshots taken from the staking and escrow contracts by the caller; the
//! ledger never changes them, it outputs what should change (charges, slashes, rewards)
//! for the contracts to apply. Each operator and each tenant may appear once: a second
//! record would make the result depend on which one was read, so it is an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::error::LedgerError;
use crate::params::Epoch;

/// An operator's bond and where its rewards are paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stake {
    /// The node the bond stands behind.
    pub operator: NodeId,
    /// The EVM address that claims the operator's rewards.
    pub payout_address: [u8; 20],
    /// Tokens bonded (base units); slashes are taken from here, capped at it.
    pub bonded: u128,
    /// Set once the operator asked to unbond; the bond is released by the staking
    /// contract after that epoch. An unbonding operator is still paid for countersigned
    /// service and can still be slashed, but earns no emission.
    pub unbonding_at: Option<Epoch>,
}

/// A tenant's escrowed balance at the epoch's start: the most it can be charged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantEscrow {
    /// The tenant, by its ed25519 public key.
    pub tenant: PublicKeyBytes,
    /// Escrowed tokens (base units).
    pub balance: u128,
}

/// Protobuf prefix of an ed25519 public key inside an identity-multihash peer id:
/// field 1 (key type) = 1 (Ed25519), field 2 (data) of length 32.
const ED25519_PEER_ID_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];

/// The ed25519 public key embedded in a node id, read without any curve arithmetic.
///
/// libp2p inlines keys of at most 42 encoded bytes in the peer id (identity multihash,
/// code 0), so an ed25519 node id carries its key; other ids yield `None`.
pub fn operator_key(node: &NodeId) -> Option<PublicKeyBytes> {
    let peer = node.peer_id();
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let encoded = multihash.digest();
    if encoded.len() != 36 || encoded[..4] != ED25519_PEER_ID_PREFIX {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&encoded[4..]);
    Some(PublicKeyBytes(key))
}

/// Stakes by operator; a duplicate operator is an error.
pub(crate) fn index_stakes(stakes: &[Stake]) -> Result<BTreeMap<NodeId, &Stake>, LedgerError> {
    let mut indexed = BTreeMap::new();
    for stake in stakes {
        if indexed.insert(stake.operator, stake).is_some() {
            return Err(LedgerError::DuplicateStake(stake.operator));
        }
    }
    Ok(indexed)
}

/// Escrow balances by tenant; a duplicate tenant is an error.
pub(crate) fn index_escrows(
    escrows: &[TenantEscrow],
) -> Result<BTreeMap<PublicKeyBytes, u128>, LedgerError> {
    let mut indexed = BTreeMap::new();
    for escrow in escrows {
        if indexed.insert(escrow.tenant, escrow.balance).is_some() {
            return Err(LedgerError::DuplicateEscrow(escrow.tenant));
        }
    }
    Ok(indexed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    #[test]
    fn node_ids_carry_their_ed25519_key() {
        for seed in 1..20u8 {
            let key = SecretKey::from_seed(&[seed; 32]).unwrap();
            assert_eq!(operator_key(&key.node_id()), Some(key.public()));
        }
    }
}
