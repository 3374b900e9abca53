//! Typed errors of the ledger.
//!
//! Three families, kept apart because callers react differently to each:
//! [`ReceiptError`] and [`AuditError`] reject one signed item (the caller drops it and may
//! blame its sender), while [`LedgerError`] rejects a whole epoch input (inconsistent
//! parameters or accounts: a bug or a misconfiguration, never a single bad peer). Inputs
//! that are merely irrelevant to the epoch (another epoch, another network) are not errors:
//! [`compute_epoch`](crate::compute_epoch) skips and counts them.

use xnode_types::{NodeId, PublicKeyBytes};

/// Why an epoch input was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Two stake records name the same operator; which one counts would be ambiguous.
    #[error("two stake records for operator {0}")]
    DuplicateStake(NodeId),
    /// Two escrow records name the same tenant.
    #[error("two escrow records for tenant {0}")]
    DuplicateEscrow(PublicKeyBytes),
    /// Penalty thresholds must satisfy `eject <= reduce <= warn <= 1_000_000` ppm.
    #[error("penalty thresholds must satisfy eject <= reduce <= warn <= 1000000 ppm")]
    ThresholdsOutOfOrder,
    /// The reputation decay factor (λ) must be at most one (1,000,000 ppm).
    #[error("reputation decay of {0} ppm is above 1000000")]
    DecayAboveOne(u64),
    /// A price's `10^k` denominator must fit in a `u128` (`k <= 38`).
    #[error("price denominator 10^{0} does not fit in u128 (exponent at most 38)")]
    PriceExponentTooLarge(u8),
    /// Trimming `trimmed` auditors from each side needs `2 * trimmed + 1` auditors at least.
    #[error(
        "trimming {trimmed} auditors per side needs at least {needed} distinct auditors, \
         but the minimum is {configured}"
    )]
    TooFewAuditorsForTrim {
        /// The configured `min_distinct_auditors`.
        configured: u32,
        /// The configured `trimmed_auditors_per_side`.
        trimmed: u32,
        /// `2 * trimmed + 1`.
        needed: u64,
    },
    /// The per-auditor cap must be at least one audit, or no audit could ever count.
    #[error("max_audits_per_auditor must be at least 1")]
    ZeroAuditCap,
    /// The sum of all escrows plus the emission budget does not fit in a `u128`; every
    /// reward total is bounded by that sum, so it must fit.
    #[error("escrow balances plus the emission budget exceed u128")]
    AmountOverflow,
}

/// Why a receipt was not accepted as countersigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt's format version is not one this code can check.
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u8),
    /// The receipt was signed for another network.
    #[error("receipt is for network {found:?}, expected {expected:?}")]
    WrongNetwork {
        /// The network the verifier accepts.
        expected: String,
        /// The network the item was signed for.
        found: String,
    },
    /// The provider's public key is not a valid ed25519 key.
    #[error("provider public key is not a valid ed25519 key")]
    MalformedProviderKey,
    /// The provider's public key does not derive the provider's node id.
    #[error("provider public key does not match the provider node id")]
    ProviderKeyMismatch,
    /// The provider's signature does not verify.
    #[error("provider signature does not verify")]
    BadProviderSignature,
    /// The tenant has not countersigned (a provider-only receipt earns nothing).
    #[error("receipt has no tenant countersignature")]
    MissingTenantSignature,
    /// The tenant's countersignature does not verify.
    #[error("tenant signature does not verify")]
    BadTenantSignature,
    /// The countersignature was made under a grant that does not hold.
    #[error("countersigning grant refused: {0}")]
    BadGrant(&'static str),
}

/// Why an audit result was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The audit's format version is not one this code can check.
    #[error("unsupported audit version {0}")]
    UnsupportedVersion(u8),
    /// The audit was signed for another network.
    #[error("audit is for network {found:?}, expected {expected:?}")]
    WrongNetwork {
        /// The network the verifier accepts.
        expected: String,
        /// The network the item was signed for.
        found: String,
    },
    /// The auditor's public key is not a valid ed25519 key.
    #[error("auditor public key is not a valid ed25519 key")]
    MalformedAuditorKey,
    /// The auditor's public key does not derive the auditor's node id.
    #[error("auditor public key does not match the auditor node id")]
    AuditorKeyMismatch,
    /// The auditor's signature does not verify.
    #[error("auditor signature does not verify")]
    BadSignature,
}
