//! An epoch's settlement on chain: the root to post, its funding and charges, and every
//! claim with its proof, all derived from the ledger's output.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct};
use xnode_ledger::{EpochOutput, MerkleTree, Payout, TenantCharge, leaf_hash};

use crate::bindings::{Settlement, typed};
use crate::error::ChainError;

/// One account's claim: what `Settlement.claim` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The payout address.
    pub account: Address,
    /// The amount under the root.
    pub amount: U256,
    /// The Merkle proof of `(epoch, account, amount)`.
    pub proof: Vec<B256>,
}

/// What the chain needs to settle one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementPlan {
    /// The epoch (part of every leaf and of the signed root).
    pub epoch: u64,
    /// The reward table's Merkle root.
    pub rewards_root: B256,
    /// The sum of all claims, moved from the treasury into the epoch's pot.
    pub total: U256,
    /// Tenants' charges, ascending by tenant key, zero charges left out.
    pub charges: Vec<typed::Charge>,
    /// One claim per payout, ascending by address.
    pub claims: Vec<Claim>,
}

impl SettlementPlan {
    /// The plan of a computed epoch. Checks that the output is self-consistent (its root
    /// is the root of its payouts and its rewards total their sum), since a root posted
    /// with a wrong total would either leave claims unpaid or lock tokens in a pot.
    pub fn from_epoch(output: &EpochOutput) -> Result<Self, ChainError> {
        let plan = Self::from_payouts(output.epoch.0, &output.payouts, &output.tenants)?;
        if plan.rewards_root.0 != output.merkle_root {
            return Err(ChainError::RootMismatch);
        }
        let total = U256::from(output.totals.rewards);
        if plan.total != total {
            return Err(ChainError::TotalMismatch {
                payouts: plan.total,
                total,
            });
        }
        Ok(plan)
    }

    /// The plan of a payout table and tenant charges, the tree built as the ledger builds it.
    pub fn from_payouts(
        epoch: u64,
        payouts: &[Payout],
        tenants: &[TenantCharge],
    ) -> Result<Self, ChainError> {
        let ledger_epoch = xnode_ledger::Epoch(epoch);
        let mut rows: Vec<&Payout> = payouts.iter().filter(|row| row.amount > 0).collect();
        rows.sort_by_key(|row| row.address);
        if rows
            .windows(2)
            .any(|pair| pair[0].address == pair[1].address)
        {
            return Err(ChainError::DuplicatePayout);
        }
        let leaves: Vec<_> = rows
            .iter()
            .map(|row| leaf_hash(ledger_epoch, &row.address, row.amount))
            .collect();
        let tree = MerkleTree::new(leaves.clone());
        // u128 amounts summed in 256 bits cannot overflow for fewer than 2^128 rows.
        let total = rows
            .iter()
            .fold(U256::ZERO, |sum, row| sum + U256::from(row.amount));
        let claims = rows
            .iter()
            .zip(&leaves)
            .map(|(row, leaf)| Claim {
                account: Address::from(row.address),
                amount: U256::from(row.amount),
                // Every leaf was put in the tree just above, so its proof exists.
                proof: tree
                    .proof(leaf)
                    .unwrap_or_default()
                    .into_iter()
                    .map(B256::from)
                    .collect(),
            })
            .collect();
        let mut charges: Vec<typed::Charge> = tenants
            .iter()
            .filter(|row| row.charged > 0)
            .map(|row| typed::Charge {
                tenant: B256::from(row.tenant.0),
                amount: U256::from(row.charged),
            })
            .collect();
        charges.sort_by_key(|charge| charge.tenant);
        Ok(Self {
            epoch,
            rewards_root: B256::from(tree.root()),
            total,
            charges,
            claims,
        })
    }

    /// The typed struct the committee signs, valid until `deadline` (unix seconds).
    pub fn epoch_root(&self, deadline: U256) -> typed::EpochRoot {
        typed::EpochRoot {
            epoch: self.epoch,
            rewardsRoot: self.rewards_root,
            total: self.total,
            charges: self.charges.clone(),
            deadline,
        }
    }

    /// The EIP-712 digest of [`Self::epoch_root`] under the settlement contract's domain.
    pub fn digest(&self, settlement_domain: &Eip712Domain, deadline: U256) -> B256 {
        self.epoch_root(deadline)
            .eip712_signing_hash(settlement_domain)
    }

    /// The calldata of `Settlement.postRoot` with these signatures.
    pub fn post_root_calldata(&self, deadline: U256, signatures: Vec<Bytes>) -> Bytes {
        Settlement::postRootCall {
            epoch: self.epoch,
            rewardsRoot: self.rewards_root,
            total: self.total,
            charges: self
                .charges
                .iter()
                .map(|charge| Settlement::Charge {
                    tenant: charge.tenant,
                    amount: charge.amount,
                })
                .collect(),
            deadline,
            signatures,
        }
        .abi_encode()
        .into()
    }

    /// The claim of `account`, if it has one.
    pub fn claim_of(&self, account: Address) -> Option<&Claim> {
        self.claims.iter().find(|claim| claim.account == account)
    }

    /// The calldata of `Settlement.claim` for one claim of this epoch.
    pub fn claim_calldata(&self, claim: &Claim) -> Bytes {
        Settlement::claimCall {
            epoch: self.epoch,
            account: claim.account,
            amount: claim.amount,
            proof: claim.proof.clone(),
        }
        .abi_encode()
        .into()
    }
}
