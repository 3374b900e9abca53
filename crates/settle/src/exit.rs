//! Clearing an operator's exit on chain, as pure logic: the terms the `Staking` contract
//! checks, the rule by which a committee member signs them, and the check of a member's
//! signature.
//!
//! `Staking.withdrawCleared` pays an operator's unbonding tokens after `unbondDelay` only
//! with a committee quorum over `ExitClearance(operator, unbondReadyAt, quietEpoch,
//! deadline)`; without one, `withdraw` waits for the much longer `exitFallbackDelay`. A
//! member signs only if its own ledger state clears the exit
//! ([`xnode_ledger::check_exit`]: the operator's nodes drained or left before the quiet
//! epoch, which is posted in this member's records and in which they held no data and
//! had no failed audit or slash, and no slash is still owed), and only for a deadline at most
//! [`MAX_CLEARANCE_SECONDS`] ahead, so a clearance is used soon after the state it
//! attests. The clearance names the unbond's `readyAt`, which every `requestUnbond`
//! restarts, so it never releases tokens unbonded after it was signed.

use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct};
use serde::{Deserialize, Serialize};
use xnode_chain::{Staking, typed};
use xnode_ledger::{Epoch, ExitCheck, check_exit};

use crate::CommitteeConfig;
use crate::error::ExitClearanceError;

/// The exit clearance vote format version this code signs and accepts.
pub const EXIT_CLEARANCE_VOTE_VERSION: u8 = 1;

/// The furthest ahead of now a member lets a clearance's deadline be: a day, long enough
/// to collect signatures and send the transaction, short enough that the clearance is
/// used while the state it attests still holds.
pub const MAX_CLEARANCE_SECONDS: u64 = 24 * 3600;

/// One exit clearance as the `Staking` contract checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitClearanceTerms {
    /// The operator's address (its payout address, which holds the bond).
    pub operator: Address,
    /// The `readyAt` of the unbond it releases (`Staking.unbonding(operator).readyAt`).
    pub unbond_ready_at: u64,
    /// The settled epoch in which the operator's nodes held nothing.
    pub quiet_epoch: Epoch,
    /// The signatures' deadline (Unix seconds).
    pub deadline: u64,
}

impl ExitClearanceTerms {
    /// The EIP-712 digest the committee signs (`Staking.exitClearanceDigest`).
    pub fn digest(&self, staking_domain: &Eip712Domain) -> B256 {
        typed::ExitClearance {
            operator: self.operator,
            unbondReadyAt: U256::from(self.unbond_ready_at),
            quietEpoch: self.quiet_epoch.0,
            deadline: U256::from(self.deadline),
        }
        .eip712_signing_hash(staking_domain)
    }

    /// The `Staking.withdrawCleared` call with `signatures` (ascending by signer), sent by
    /// the operator.
    pub fn calldata(&self, signatures: Vec<Bytes>) -> Bytes {
        Bytes::from(
            Staking::withdrawClearedCall {
                quietEpoch: self.quiet_epoch.0,
                deadline: U256::from(self.deadline),
                signatures,
            }
            .abi_encode(),
        )
    }
}

/// One member's signature over an exit clearance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitClearanceVote {
    /// Format version ([`EXIT_CLEARANCE_VOTE_VERSION`]).
    pub v: u8,
    /// What it signs.
    pub terms: ExitClearanceTerms,
    /// The member's committee address.
    pub signer: Address,
    /// 65 bytes `r ‖ s ‖ v` over [`ExitClearanceTerms::digest`].
    pub signature: Bytes,
}

/// The signing rule: a member signs `asked` only if `own` (built from its own records
/// for `asked.quiet_epoch` and the operator's nodes) passes [`check_exit`], and the
/// deadline is neither past nor more than [`MAX_CLEARANCE_SECONDS`] after `now_s`.
pub fn sign_exit_clearance(
    own: &ExitCheck<'_>,
    asked: &ExitClearanceTerms,
    now_s: u64,
    staking_domain: &Eip712Domain,
    signer: &PrivateKeySigner,
) -> Result<ExitClearanceVote, ExitClearanceError> {
    if own.quiet_epoch != asked.quiet_epoch {
        return Err(ExitClearanceError::OtherEpoch {
            ours: own.quiet_epoch.0,
            asked: asked.quiet_epoch.0,
        });
    }
    if asked.deadline < now_s || asked.deadline > now_s.saturating_add(MAX_CLEARANCE_SECONDS) {
        return Err(ExitClearanceError::Deadline {
            deadline: asked.deadline,
            now: now_s,
        });
    }
    check_exit(own)?;
    let signature = signer
        .sign_hash_sync(&asked.digest(staking_domain))
        .map_err(ExitClearanceError::Signing)?;
    Ok(ExitClearanceVote {
        v: EXIT_CLEARANCE_VOTE_VERSION,
        terms: *asked,
        signer: signer.address(),
        signature: Bytes::from(signature.as_bytes().to_vec()),
    })
}

impl ExitClearanceVote {
    /// Checks a vote from the network against the terms asked: version, terms, the
    /// signature recovers to the named signer, who is a committee member.
    pub fn check(
        &self,
        asked: &ExitClearanceTerms,
        staking_domain: &Eip712Domain,
        committee: &CommitteeConfig,
    ) -> Result<(), ExitClearanceError> {
        if self.v != EXIT_CLEARANCE_VOTE_VERSION {
            return Err(ExitClearanceError::UnsupportedVersion(self.v));
        }
        if self.terms != *asked {
            return Err(ExitClearanceError::OtherVote);
        }
        let recovered = Signature::try_from(self.signature.as_ref())
            .and_then(|s| s.recover_address_from_prehash(&asked.digest(staking_domain)))
            .map_err(ExitClearanceError::MalformedSignature)?;
        if recovered != self.signer || !committee.is_member(&self.signer) {
            return Err(ExitClearanceError::BadSigner);
        }
        Ok(())
    }
}
