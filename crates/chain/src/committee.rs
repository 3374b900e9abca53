//! EIP-712 domains and committee signing.

use alloy::primitives::{Address, B256, Bytes};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;

use crate::error::ChainError;

/// The contracts that verify committee signatures, by the EIP-712 domain name they use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainName {
    /// `Committee` (signs its own rotations).
    Committee,
    /// `Settlement` (epoch roots).
    Settlement,
    /// `Staking` (slashes).
    Staking,
}

impl DomainName {
    fn as_str(self) -> &'static str {
        match self {
            DomainName::Committee => "Xnode Committee",
            DomainName::Settlement => "Xnode Settlement",
            DomainName::Staking => "Xnode Staking",
        }
    }
}

/// The EIP-712 domain of one deployed contract: its name, version "1", the chain and its
/// address, the four fields the contracts' `domainSeparator` hashes.
pub fn domain(name: DomainName, chain_id: u64, contract: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.as_str().into()),
        Some("1".into()),
        Some(alloy::primitives::U256::from(chain_id)),
        Some(contract),
        None,
    )
}

/// Committee keys held in one place: a test's whole committee, or a node's single key.
#[derive(Clone, Debug)]
pub struct CommitteeSigners {
    /// Sorted by address, the order the contracts require signatures in.
    keys: Vec<PrivateKeySigner>,
}

impl CommitteeSigners {
    /// The committee of these secp256k1 private keys.
    pub fn from_private_keys(keys: &[B256]) -> Result<Self, ChainError> {
        let keys = keys
            .iter()
            .map(|key| PrivateKeySigner::from_bytes(key).map_err(ChainError::InvalidKey))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys))
    }

    /// The committee of these signers.
    pub fn new(mut keys: Vec<PrivateKeySigner>) -> Self {
        keys.sort_by_key(|key| key.address());
        Self { keys }
    }

    /// The signer addresses, ascending (what the `Committee` contract is deployed with).
    pub fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(PrivateKeySigner::address).collect()
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The smallest threshold the contract accepts for `n` signers: f+1 for
    /// f = floor((n-1)/3), i.e. more than the faulty third of n = 3f+1.
    pub fn min_threshold(n: usize) -> usize {
        n.saturating_sub(1) / 3 + 1
    }

    /// Signatures over `digest` by the first `count` keys (ascending address order), as
    /// 65-byte `r ‖ s ‖ v` with v in {27, 28} and low s, the form the contracts recover.
    pub fn sign(&self, digest: B256, count: usize) -> Result<Vec<Bytes>, ChainError> {
        let keys = self.keys.get(..count).ok_or(ChainError::NotEnoughKeys {
            wanted: count,
            available: self.keys.len(),
        })?;
        keys.iter()
            .map(|key| {
                key.sign_hash_sync(&digest)
                    .map(|signature| Bytes::from(signature.as_bytes().to_vec()))
                    .map_err(ChainError::Signing)
            })
            .collect()
    }
}
