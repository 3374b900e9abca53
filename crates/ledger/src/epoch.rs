//! One epoch's settlement: the input, the output and the pure function between them.
//!
//! [`compute_epoch`] is the only entry point that turns evidence into money. It reads
//! nothing but its argument, so any node holding the same [`EpochInput`] computes the
//! same [`EpochOutput`] bit for bit, and the committee that signs the Merkle root can be
//! checked by anyone. The steps: validate parameters and accounts, tally audits and
//! advance reputation, assess penalties, settle receipts into charges, payments and
//! emission, then build the payout table and its Merkle root.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::accounts::{Stake, TenantEscrow, index_escrows, index_stakes};
use crate::audit::VerifiedAudit;
use crate::error::LedgerError;
use crate::merkle::{Hash, MerkleTree, leaf_hash};
use crate::params::{Epoch, LedgerParams};
use crate::penalties::{Penalty, assess};
use crate::receipt::VerifiedReceipt;
use crate::reputation::{IgnoredAudits, ReputationState, tally_audits};
use crate::settlement::settle;

/// Everything an epoch's settlement depends on.
///
/// Serializable for publishing and debugging, but not deserializable: its receipts and
/// audits are verified items, which only signature checks construct.
#[derive(Clone, Debug, Serialize)]
pub struct EpochInput {
    /// The epoch being settled; receipts and audits of other epochs are ignored.
    pub epoch: Epoch,
    /// Prices, reputation, penalty and emission parameters, and the network name.
    pub params: LedgerParams,
    /// Countersigned receipts; superseded ones may be included (the highest counts).
    pub receipts: Vec<VerifiedReceipt>,
    /// Signed audit results of the epoch.
    pub audits: Vec<VerifiedAudit>,
    /// Every operator's stake at the epoch's start (one record per operator).
    pub stakes: Vec<Stake>,
    /// Every tenant's escrow at the epoch's start (one record per tenant).
    pub escrows: Vec<TenantEscrow>,
    /// The reputation state output by the previous epoch.
    pub reputation: ReputationState,
}

/// What one operator earns this epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorReward {
    /// The operator's node.
    pub operator: NodeId,
    /// Where its reward is claimable (from its stake record).
    pub payout_address: [u8; 20],
    /// Tenant payments passed on to the operator.
    pub from_payments: u128,
    /// Tenant payments withheld because of the operator's penalty level.
    pub withheld: u128,
    /// The operator's emission share.
    pub emission: u128,
    /// `from_payments + emission`.
    pub reward: u128,
}

/// What one tenant is charged this epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCharge {
    /// The tenant, by its ed25519 public key.
    pub tenant: PublicKeyBytes,
    /// The priced sum of its countersigned receipts (saturating at `u128::MAX`).
    pub usage_value: u128,
    /// What is taken from its escrow: `min(usage_value, escrow)`, exactly.
    pub charged: u128,
}

/// One row of the claimable payout table (one per payout address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The EVM address that can claim.
    pub address: [u8; 20],
    /// Claimable amount (base units).
    pub amount: u128,
}

/// Receipts that did not count, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredReceipts {
    /// Receipts for another epoch.
    pub wrong_epoch: u64,
    /// Receipts signed for another network.
    pub wrong_network: u64,
    /// Superseded by a receipt with a higher cumulative for the same counter.
    pub superseded: u64,
    /// The provider has no stake record, hence no payout address; the tenant is not
    /// charged for them either.
    pub provider_not_staked: u64,
    /// The tenant has no escrow record, so there is nothing to charge.
    pub tenant_without_escrow: u64,
}

/// Sums over the whole epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Taken from tenants' escrows.
    pub charged: u128,
    /// Passed on to operators; `charged = from_payments + withheld`.
    pub from_payments: u128,
    /// Kept back from penalised operators.
    pub withheld: u128,
    /// Newly emitted (at most the budget).
    pub emission: u128,
    /// Claimable in total: `from_payments + emission`.
    pub rewards: u128,
    /// Taken from bonds (saturating).
    pub slashed: u128,
}

/// The epoch's settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochOutput {
    /// The settled epoch (part of every Merkle leaf).
    pub epoch: Epoch,
    /// Operators with any payment or emission, by node id.
    pub operators: Vec<OperatorReward>,
    /// Tenants with countersigned usage, by key.
    pub tenants: Vec<TenantCharge>,
    /// Nodes with a warning, reduction, slash or ejection, by node id.
    pub penalties: Vec<Penalty>,
    /// The reputation state to pass to the next epoch.
    pub reputation: ReputationState,
    /// Claimable amounts by payout address (non-zero only), by address.
    pub payouts: Vec<Payout>,
    /// The Merkle root over `payouts` (see the `merkle` module).
    pub merkle_root: Hash,
    /// Sums over the epoch.
    pub totals: Totals,
    /// Receipts that did not count, by reason.
    pub ignored_receipts: IgnoredReceipts,
    /// Audit results that did not count, by reason.
    pub ignored_audits: IgnoredAudits,
}

impl EpochOutput {
    /// An operator's reward (0 if none).
    pub fn reward_of(&self, operator: &NodeId) -> u128 {
        self.operators
            .binary_search_by(|row| row.operator.cmp(operator))
            .map_or(0, |index| self.operators[index].reward)
    }

    /// A tenant's charge (0 if none).
    pub fn charge_of(&self, tenant: &PublicKeyBytes) -> u128 {
        self.tenants
            .binary_search_by(|row| row.tenant.cmp(tenant))
            .map_or(0, |index| self.tenants[index].charged)
    }

    /// A node's penalty, if it has a material one.
    pub fn penalty_of(&self, node: &NodeId) -> Option<&Penalty> {
        self.penalties
            .binary_search_by(|row| row.node.cmp(node))
            .ok()
            .map(|index| &self.penalties[index])
    }

    /// The claimable amount of a payout address (0 if none).
    pub fn payout_of(&self, address: &[u8; 20]) -> u128 {
        self.payouts
            .binary_search_by(|row| row.address.cmp(address))
            .map_or(0, |index| self.payouts[index].amount)
    }

    /// The Merkle leaf of a payout address, if it has a payout.
    pub fn leaf(&self, address: &[u8; 20]) -> Option<Hash> {
        let amount = self.payout_of(address);
        (amount > 0).then(|| leaf_hash(self.epoch, address, amount))
    }

    /// The Merkle tree over the payout table.
    pub fn tree(&self) -> MerkleTree {
        payout_tree(self.epoch, &self.payouts)
    }

    /// The Merkle proof of a payout address's leaf (`None` if it has no payout). Pass it
    /// with `(epoch, address, amount)` to the rewards contract, or check it with
    /// [`verify_proof`](crate::verify_proof) against [`EpochOutput::merkle_root`].
    pub fn proof(&self, address: &[u8; 20]) -> Option<Vec<Hash>> {
        self.tree().proof(&self.leaf(address)?)
    }
}

fn payout_tree(epoch: Epoch, payouts: &[Payout]) -> MerkleTree {
    MerkleTree::new(
        payouts
            .iter()
            .map(|payout| leaf_hash(epoch, &payout.address, payout.amount))
            .collect(),
    )
}

/// Computes an epoch's settlement. Pure and deterministic: independent of the order of
/// every input list, free of I/O, clocks, randomness and floating point, and free of
/// overflow and panics whatever the numbers (see the crate docs for the rules).
pub fn compute_epoch(input: &EpochInput) -> Result<EpochOutput, LedgerError> {
    let params = &input.params;
    params.validate()?;
    let stakes = index_stakes(&input.stakes)?;
    let escrows = index_escrows(&input.escrows)?;
    // Every total below is bounded by this sum, so it fitting means they all fit.
    escrows
        .values()
        .try_fold(params.emission.budget_per_epoch, |sum, balance| {
            sum.checked_add(*balance)
        })
        .ok_or(LedgerError::AmountOverflow)?;

    let (tallies, ignored_audits) = tally_audits(
        &input.audits,
        input.epoch,
        &params.network,
        &params.reputation,
    );
    let reputation = input.reputation.advance(&tallies, &params.reputation);
    let mut penalties = assess(&stakes, &tallies, &reputation, params);

    let settled = settle(
        input.epoch,
        params,
        &input.receipts,
        &stakes,
        &escrows,
        &penalties,
    )?;

    let mut totals = Totals::default();
    let mut payouts: BTreeMap<[u8; 20], u128> = BTreeMap::new();
    for row in &settled.operators {
        if let Some(penalty) = penalties.get_mut(&row.operator) {
            penalty.reward_withheld = row.withheld;
        }
        totals.from_payments = checked_sum(totals.from_payments, row.from_payments)?;
        totals.withheld = checked_sum(totals.withheld, row.withheld)?;
        totals.emission = checked_sum(totals.emission, row.emission)?;
        if row.reward > 0 {
            let slot = payouts.entry(row.payout_address).or_insert(0);
            *slot = checked_sum(*slot, row.reward)?;
        }
    }
    totals.rewards = checked_sum(totals.from_payments, totals.emission)?;
    for row in &settled.tenants {
        totals.charged = checked_sum(totals.charged, row.charged)?;
    }
    for penalty in penalties.values() {
        totals.slashed = totals.slashed.saturating_add(penalty.slashed);
    }

    let payouts: Vec<Payout> = payouts
        .into_iter()
        .map(|(address, amount)| Payout { address, amount })
        .collect();
    let merkle_root = payout_tree(input.epoch, &payouts).root();
    Ok(EpochOutput {
        epoch: input.epoch,
        operators: settled.operators,
        tenants: settled.tenants,
        penalties: penalties
            .into_values()
            .filter(Penalty::is_material)
            .collect(),
        reputation,
        payouts,
        merkle_root,
        totals,
        ignored_receipts: settled.ignored,
        ignored_audits,
    })
}

fn checked_sum(a: u128, b: u128) -> Result<u128, LedgerError> {
    a.checked_add(b).ok_or(LedgerError::AmountOverflow)
}
