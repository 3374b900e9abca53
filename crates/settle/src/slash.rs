//! Taking an epoch's slashes on chain, as pure logic: which slashes a posted epoch's table
//! asks for, the rule by which a member signs one, the check of a member's signature, and
//! the record a node keeps of each slash's outcome.
//!
//! The amounts come from the ledger's table (`Penalty::slashed`, already capped by the bond
//! the epoch read), and every member signs only what its own posted table contains:
//! [`sign_slash`] refuses any operator, amount or deadline its own record does not list,
//! so a member never signs what a peer asks without having computed it itself. The
//! `Staking` contract binds the digest to the operator, amount, epoch, deadline, chain and
//! contract, and takes each (operator, epoch) at most once.

use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct};
use serde::{Deserialize, Serialize};
use xnode_chain::{Staking, typed};
use xnode_ledger::Epoch;
use xnode_types::NodeId;
use xnode_wire::Versioned;

use crate::CommitteeConfig;
use crate::close::{EpochRecord, EpochStatus};
use crate::config::OperatorPayout;
use crate::error::SlashError;

/// The slash vote format version this code signs and accepts.
pub const SLASH_VOTE_VERSION: u8 = 1;

/// One slash as the `Staking` contract takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashTerms {
    /// The operator's address (its payout address, which holds the bond).
    pub operator: Address,
    /// The amount the epoch's table slashes (base units).
    pub amount: u128,
    /// The epoch whose table computed it.
    pub epoch: Epoch,
    /// The signatures' deadline (Unix seconds).
    pub deadline: u64,
}

impl SlashTerms {
    /// The EIP-712 digest the committee signs (`Staking.slashDigest`).
    pub fn digest(&self, staking_domain: &Eip712Domain) -> B256 {
        typed::Slash {
            operator: self.operator,
            amount: U256::from(self.amount),
            epoch: self.epoch.0,
            deadline: U256::from(self.deadline),
        }
        .eip712_signing_hash(staking_domain)
    }

    /// The `Staking.slash` call with `signatures` (ascending by signer).
    pub fn calldata(&self, signatures: Vec<Bytes>) -> Bytes {
        Bytes::from(
            Staking::slashCall {
                operator: self.operator,
                amount: U256::from(self.amount),
                epoch: self.epoch.0,
                deadline: U256::from(self.deadline),
                signatures,
            }
            .abi_encode(),
        )
    }
}

/// The slashes a posted epoch's table asks for, by node: every penalty with a slash above
/// zero whose node has a payout address in `operators` (a node without one has no bond the
/// ledger knows of, so its slash is zero anyway). The deadline is the root's plus
/// `extra_seconds`, so every member that computed the same root names the same deadline,
/// and the committee has as long to take a slash after the root's deadline as it had to
/// post the root. Nothing for an epoch that is not posted.
pub fn slashes_of(
    record: &EpochRecord,
    operators: &[OperatorPayout],
    extra_seconds: u64,
) -> Vec<(NodeId, SlashTerms)> {
    if record.status != EpochStatus::Posted {
        return Vec::new();
    }
    record
        .penalties
        .iter()
        .filter(|p| p.slashed > 0)
        .filter_map(|p| {
            let operator = operators.iter().find(|o| o.node == p.node)?.payout;
            Some((
                p.node,
                SlashTerms {
                    operator,
                    amount: p.slashed,
                    epoch: Epoch(record.epoch),
                    deadline: record.deadline.saturating_add(extra_seconds),
                },
            ))
        })
        .collect()
}

/// One member's signature over a slash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashVote {
    /// Format version ([`SLASH_VOTE_VERSION`]).
    pub v: u8,
    /// What it signs.
    pub terms: SlashTerms,
    /// The member's committee address.
    pub signer: Address,
    /// 65 bytes `r ‖ s ‖ v` over [`SlashTerms::digest`], as the contract recovers them.
    pub signature: Bytes,
}

/// The signing rule: a member signs `asked` only if its own slashes of that epoch
/// (`own`, from [`slashes_of`] over its own posted record) contain exactly that operator,
/// amount, epoch and deadline.
pub fn sign_slash(
    own: &[SlashTerms],
    asked: &SlashTerms,
    staking_domain: &Eip712Domain,
    signer: &PrivateKeySigner,
) -> Result<SlashVote, SlashError> {
    let Some(ours) = own
        .iter()
        .find(|t| t.operator == asked.operator && t.epoch == asked.epoch)
    else {
        return Err(SlashError::NotInTable {
            epoch: asked.epoch.0,
            operator: asked.operator,
        });
    };
    if ours != asked {
        return Err(SlashError::OtherTerms {
            epoch: asked.epoch.0,
            operator: asked.operator,
            ours: ours.amount,
            asked: asked.amount,
            our_deadline: ours.deadline,
            asked_deadline: asked.deadline,
        });
    }
    let signature = signer
        .sign_hash_sync(&asked.digest(staking_domain))
        .map_err(SlashError::Signing)?;
    Ok(SlashVote {
        v: SLASH_VOTE_VERSION,
        terms: *asked,
        signer: signer.address(),
        signature: Bytes::from(signature.as_bytes().to_vec()),
    })
}

impl SlashVote {
    /// Checks a vote from the network against the terms this node asked for: version,
    /// terms, the signature recovers to the named signer, who is a committee member.
    pub fn check(
        &self,
        asked: &SlashTerms,
        staking_domain: &Eip712Domain,
        committee: &CommitteeConfig,
    ) -> Result<(), SlashError> {
        if self.v != SLASH_VOTE_VERSION {
            return Err(SlashError::UnsupportedVersion(self.v));
        }
        if self.terms != *asked {
            return Err(SlashError::OtherVote);
        }
        let recovered = Signature::try_from(self.signature.as_ref())
            .and_then(|s| s.recover_address_from_prehash(&asked.digest(staking_domain)))
            .map_err(SlashError::MalformedSignature)?;
        if recovered != self.signer || !committee.is_member(&self.signer) {
            return Err(SlashError::BadSigner);
        }
        Ok(())
    }
}

/// Where one slash stands on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlashStatus {
    /// Not on chain yet: waiting for this node's turn or for the threshold's signatures.
    Pending,
    /// This node's transaction took it.
    Taken,
    /// It is on chain, taken by another member's transaction.
    TakenByAnother,
    /// Skipped: the operator had nothing bonded or unbonding left, so there was nothing to
    /// take and a transaction would only waste gas.
    NoBond,
    /// Its deadline passed before it was taken.
    Expired,
    /// Submitting it failed [`MAX_SLASH_ATTEMPTS`] times; not tried again.
    Failed,
}

/// Transactions tried for one slash before this node gives up on it.
pub const MAX_SLASH_ATTEMPTS: u32 = 3;

/// One slash's outcome on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashOutcome {
    /// The penalised node.
    pub node: NodeId,
    /// What the table slashes.
    pub terms: SlashTerms,
    /// Where it stands.
    pub status: SlashStatus,
    /// The transaction that took it, if this node sent it.
    pub tx_hash: Option<B256>,
    /// What the contract took (its `Slashed` event): the amount, capped by the bond and
    /// unbonding tokens left.
    pub taken: Option<u128>,
    /// Gas the transaction used.
    pub gas_used: Option<u64>,
    /// Transactions this node sent for it that failed.
    pub attempts: u32,
    /// The last failure, or why it waits.
    pub error: Option<String>,
}

impl SlashOutcome {
    /// A slash not tried yet.
    pub fn pending(node: NodeId, terms: SlashTerms) -> Self {
        Self {
            node,
            terms,
            status: SlashStatus::Pending,
            tx_hash: None,
            taken: None,
            gas_used: None,
            attempts: 0,
            error: None,
        }
    }

    /// Whether nothing more will be done for it.
    pub fn is_final(&self) -> bool {
        self.status != SlashStatus::Pending
    }
}

/// The slashes of one posted epoch on this node, kept in its database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSlashes {
    /// The epoch.
    pub epoch: u64,
    /// One entry per slashed operator.
    pub slashes: Vec<SlashOutcome>,
}

impl Versioned for EpochSlashes {
    const KIND_TAG: u8 = xnode_wire::kinds::SETTLE_SLASHES;
    const KIND_NAME: &'static str = "settlement epoch slashes";
    const VERSION: u8 = 1;
}
