//! The chain side of settlement: typed bindings to the Solidity contracts in `contracts/`
//! (compiled artifacts committed in `contracts/out`), the EIP-712 digests the committee
//! signs, committee signing with local keys, and the calls that post an epoch's root and
//! claim its rewards.
//!
//! The contracts verify exactly what the ledger produces: a reward leaf is
//! [`xnode_ledger::leaf_hash`] and a proof is [`xnode_ledger::MerkleTree::proof`], so a
//! [`SettlementPlan`] built from an [`xnode_ledger::EpochOutput`] is everything a poster
//! and the claimants need. Nothing here talks to a chain: callers submit the encoded calls
//! with whatever client they use (the tests run them on an in-process EVM).
//!
//! - `Committee` holds the signer set and its threshold (at least f+1 of n = 3f+1) and
//!   checks quorums for the other contracts; it rotates itself by the same quorum.
//! - `Settlement` holds tenant escrows, the treasury, each epoch's root and pot, and
//!   pays claims.
//! - `Staking` holds bonds, unbonds after a delay, and slashes by quorum.
//!
//! See `docs/design/settlement-contracts.md` for what each contract checks.

#[cfg(feature = "anvil")]
pub mod anvil;
mod bindings;
mod committee;
mod error;
mod plan;

pub use bindings::{Committee, Settlement, Staking, XnodeToken, typed};
pub use committee::{CommitteeSigners, DomainName, domain};
pub use error::ChainError;
pub use plan::{Claim, SettlementPlan};

/// Re-exported so callers name the same types as the bindings.
pub use alloy::primitives::{Address, B256, Bytes, U256};
