//! Xnode's settlement ledger: a pure, deterministic state machine that turns an epoch's
//! evidence (countersigned usage receipts, signed storage audits, stakes, escrows) into
//! its money (tenant charges, operator rewards, penalties) and the Merkle root of the
//! reward table that an EVM contract pays claims against.
//!
//! Why pure: every token paid must be backed by a verifiable receipt or proof, and anyone
//! must be able to recompute the payout. So [`compute_epoch`] does no I/O and reads no
//! clock or randomness (time and epoch come in), uses integers only (fixed point in parts
//! per million, exact 256-bit intermediate products, floors documented at each use), and
//! sorts everything it iterates, so the output does not depend on the order of its inputs.
//! No input can make it overflow or panic; inconsistent inputs are a typed
//! [`LedgerError`].
//!
//! # Evidence
//!
//! - **Receipts** ([`Receipt`]): cumulative, dual-signed counters per (tenant, provider,
//!   resource, epoch); the highest cumulative supersedes the rest. Signatures are checked
//!   outside the epoch ([`Receipt::verify`], [`SignatureVerifier`]), which yields the
//!   [`VerifiedReceipt`]s the epoch takes. A provider-only or forged receipt never becomes
//!   one, so it earns nothing.
//! - **Audits** ([`AuditResult`]): one auditor's signed verdict on one chunk held by
//!   another node, likewise verified into [`VerifiedAudit`]s.
//!
//! # Reputation
//!
//! A beta model after Storj's audit score: `α ← λ^n·α + w·S`, `β ← λ^n·β + w·F` for an
//! epoch's `n = S + F` counted audits, `score = α / (α + β)` in ppm, with Storj's
//! `λ = 0.999, w = 1, α0 = 1000, β0 = 0` as defaults. Audits of a node count only if at
//! least 3 distinct auditors issued them; each auditor is capped at 64 audits per node and
//! epoch, and the auditor with the highest and the one with the lowest failure ratio are
//! dropped before summing, so one hostile auditor can neither ruin nor pad a score. Details
//! in the `reputation` module.
//!
//! # Penalties, stepped and proportional to harm
//!
//! From the score after the epoch's audits (defaults in parentheses):
//! 1. **warning** below threshold 1 (0.99): reported, nothing taken;
//! 2. **reduced reward** below threshold 2 (0.975): the operator keeps `payment × score`
//!    of its tenant payments, and its emission weight is scaled by the score too;
//! 3. **slashing**, at any level, sized to the repair cost of the data the node lost:
//!    `min(bond, counted failed audits × chunk size (1 MiB) × repair price per byte
//!    (1.5 × the egress price))`;
//! 4. **ejection** below threshold 3 (0.96, Storj's disqualification line) or when
//!    slashing leaves less than the minimum bond: no reward at all this epoch.
//!
//! Payments withheld from penalised operators are still charged to tenants (they signed
//! for the service) and stay in escrow custody, where they fund repairs; they are
//! reported per node and in [`Totals::withheld`].
//!
//! # Rewards and emission
//!
//! A tenant is charged exactly the priced sum of its countersigned receipts, or its whole
//! escrow if that is less, shared pro rata over its providers with the rounding remainder
//! placed exactly (largest remainder). Operators receive those payments, no fee taken, so
//! the rewards attributable to a tenant's payments never exceed what it paid. An optional
//! emission (at most `budget_per_epoch`) is shared in proportion to **verified storage**:
//! each (tenant, operator) line weighs `storage payment × operator score`, i.e. storage
//! that the tenant both countersigned and paid for, discounted by the audits the
//! operator passed; never a self-reported number. Wash trading is made unprofitable:
//! - only storage earns emission, because the network's placement, not the tenant,
//!   chooses which nodes hold a tenant's chunks; egress and compute, whose provider a
//!   tenant can pick, earn their payments only;
//! - a line where the tenant's key is the operator's own key, or the key of any operator
//!   paid at the same payout address, weighs nothing: paying oneself gains no emission;
//! - the emission attributable to one tenant is at most `max_per_paid_ppm` (0.5) of its
//!   storage payments. A wash trader with an unlinked key that pays `P` for storage gets
//!   back its own placement share `s` of `P` plus at most `0.5·s·P` of emission, a loss
//!   unless it holds more than two thirds of the network's placement capacity;
//! - ejected and unbonding operators earn no emission.
//!
//! Emission left over by the caps is not minted. The emission attributable to a tenant
//! comes on top of its payments (it is new tokens, not anyone's money), so "rewards
//! attributable to a tenant never exceed what it paid" holds for payment-funded rewards,
//! and emission is separately bounded by the cap above.
//!
//! Rewards are summed per payout address into [`EpochOutput::payouts`]; its Merkle tree
//! follows OpenZeppelin's `StandardMerkleTree` leaf encoding and `MerkleProof`'s sorted
//! pair hashing (see the `merkle` module), so [`EpochOutput::proof`] is what a claim
//! transaction carries.
//!
//! # Graceful exit
//!
//! [`check_exit`] decides whether a committee member may clear an operator's exit (the
//! `Staking` contract then returns its unbonding tokens without the long fallback delay):
//! every node of the operator drained or left before a settled *quiet epoch* in which
//! none of them held data (no storage byte-hours countersigned, no audit challenged them)
//! or failed an audit or was slashed, and no slash is still owed. See the `exit` module.

#![warn(missing_docs)]
mod accounts;
mod audit;
mod digest;
mod epoch;
mod error;
mod exit;
mod fixed;
mod grant;
mod lookup;
mod merkle;
mod params;
mod penalties;
mod receipt;
mod reputation;
mod settlement;
mod signing;

#[cfg(test)]
mod tests;

pub use accounts::{Stake, TenantEscrow, operator_key};
pub use audit::{AUDIT_DOMAIN, AUDIT_VERSION, AuditBody, AuditResult, VerifiedAudit};
pub use digest::{PARAMS_DIGEST_DOMAIN, REPUTATION_DIGEST_DOMAIN};
pub use epoch::{
    EpochInput, EpochOutput, IgnoredReceipts, OperatorReward, Payout, TenantCharge, Totals,
    compute_epoch,
};
pub use error::{AuditError, LedgerError, ReceiptError};
pub use exit::{ExitCheck, ExitRefusal, NodeActivity, NodeDeparture, check_exit, node_activity};
pub use fixed::{PPM, mul_div, pow_ppm};
pub use grant::{CountersignGrant, GRANT_DOMAIN, GRANT_VERSION, GrantBody, MAX_GRANT_EPOCHS};
pub use merkle::{
    Hash, MerkleTree, abi_encode_leaf, hash_pair, keccak256, leaf_hash, verify_proof,
};
pub use params::{
    EmissionParams, Epoch, LedgerParams, PenaltyParams, Price, PriceTable, ReputationParams,
    Resource,
};
pub use penalties::{EjectionReason, Penalty, PenaltyLevel};
pub use receipt::{
    RECEIPT_DOMAIN, RECEIPT_VERSION, Receipt, ReceiptBody, ReceiptBook, ReceiptKey,
    SignatureVerifier, VerifiedReceipt,
};
pub use reputation::{AuditTally, IgnoredAudits, Reputation, ReputationState, tally_audits};
