//! Reputation carried from one settled epoch to the next, identically on every member.
//!
//! The ledger is pure: epoch N's table depends on the reputation state it starts from. So
//! members must start from the same state, and a hostile peer must not be able to hand a
//! node a false one. The rules (see
//! `docs/decisions/2026-11-27-reputation-is-carried-by-the-committee-signed-context.md`):
//!
//! - Every vote carries an [`EpochContext`]: the digest of the ledger parameters, the
//!   epoch whose output reputation the computation started from (and that state's
//!   digest), and the digest of the state it outputs. Members count a vote only if its
//!   context equals theirs, so nothing computed from another history or other prices is
//!   posted with their signatures.
//! - Once an epoch is posted with this node's quorum, the node stores its output state
//!   with the context and the agreeing votes: a [`CarriedReputation`].
//! - Epoch N starts from the newest carried state of an epoch before N. A member that
//!   lacks epoch N-1's (it was down, or dissented) asks the other members for it and
//!   accepts one only if [`CarriedReputation::verify`] passes: the state hashes to the
//!   context's output digest, the parameters are its own, and at least the threshold of
//!   committee members signed that context with one root digest. Forging one takes the
//!   same f+1 members as forging a root.

use std::collections::BTreeSet;

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};
use xnode_ledger::{Epoch, Hash, ReputationState, keccak256};
use xnode_wire::Versioned;

use crate::error::CarryError;
use crate::{CommitteeConfig, QuorumCollector, RootVote, VoteOutcome};

/// Domain of [`EpochContext::digest`].
pub const CONTEXT_DOMAIN: &[u8] = b"xnode epoch context v1\n";

/// What a member's root depends on besides the evidence set, as it votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochContext {
    /// The epoch computed.
    pub epoch: Epoch,
    /// [`xnode_ledger::LedgerParams::digest`] of the parameters used (prices included).
    pub params_digest: Hash,
    /// The settled epoch whose output reputation was the input (`None`: the initial,
    /// empty state).
    pub previous_epoch: Option<u64>,
    /// The digest of that input state.
    pub previous_reputation: Hash,
    /// The digest of the output state, which the next epoch starts from.
    pub reputation: Hash,
}

impl EpochContext {
    /// keccak-256 of [`CONTEXT_DOMAIN`], the epoch, the parameters' digest, a presence
    /// byte and the previous epoch (0 when absent), the previous state's digest and the
    /// output state's digest; integers 8 bytes big-endian.
    pub fn digest(&self) -> B256 {
        let mut material = CONTEXT_DOMAIN.to_vec();
        material.extend_from_slice(&self.epoch.0.to_be_bytes());
        material.extend_from_slice(&self.params_digest);
        material.push(u8::from(self.previous_epoch.is_some()));
        material.extend_from_slice(&self.previous_epoch.unwrap_or(0).to_be_bytes());
        material.extend_from_slice(&self.previous_reputation);
        material.extend_from_slice(&self.reputation);
        B256::from(keccak256(&material))
    }
}

/// A settled epoch's output reputation, with what proves the committee agreed on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedReputation {
    /// The epoch's context (its `reputation` is the digest of `state`).
    pub context: EpochContext,
    /// The EIP-712 digest of the posted root.
    pub digest: B256,
    /// The output state.
    pub state: ReputationState,
    /// The agreeing members' votes (digest and context both equal), at least the
    /// threshold of them.
    pub votes: Vec<RootVote>,
}

impl Versioned for CarriedReputation {
    const KIND_TAG: u8 = xnode_wire::kinds::SETTLE_CARRIED_REPUTATION;
    const KIND_NAME: &'static str = "carried reputation";
    const VERSION: u8 = 1;
}

impl CarriedReputation {
    /// Checks a carried state as hostile input: the epoch asked for, this node's
    /// parameters, the state's digest, and at least the threshold of distinct committee
    /// members' valid votes for exactly this digest and context. Cheap checks first; the
    /// state is hashed once and each signature recovered once.
    pub fn verify(
        &self,
        epoch: Epoch,
        params_digest: &Hash,
        committee: &CommitteeConfig,
    ) -> Result<(), CarryError> {
        if self.context.epoch != epoch {
            return Err(CarryError::WrongEpoch {
                expected: epoch.0,
                found: self.context.epoch.0,
            });
        }
        if &self.context.params_digest != params_digest {
            return Err(CarryError::OtherParams);
        }
        if self.state.digest() != self.context.reputation {
            return Err(CarryError::StateMismatch);
        }
        let mut quorum =
            QuorumCollector::new(committee.clone(), epoch, self.digest, self.context.digest());
        let mut signers = BTreeSet::new();
        for vote in &self.votes {
            if matches!(quorum.add(vote), Ok(VoteOutcome::Counted)) {
                signers.insert(vote.signer);
            }
        }
        if !quorum.has_quorum() {
            return Err(CarryError::TooFewSignatures {
                have: signers.len(),
                need: committee.threshold(),
            });
        }
        Ok(())
    }
}
