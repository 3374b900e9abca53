//! The crate's error type.

use alloy::primitives::U256;

/// Why a settlement could not be prepared or signed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A committee key failed to sign (it should not, for a valid local key).
    #[error("a committee key failed to sign")]
    Signing(#[source] alloy::signers::Error),
    /// A committee private key is not a valid secp256k1 scalar.
    #[error("invalid committee private key")]
    InvalidKey(#[source] alloy::signers::k256::ecdsa::Error),
    /// Asked for more signatures than there are committee keys.
    #[error("asked for {wanted} signatures from a committee of {available} keys")]
    NotEnoughKeys {
        /// Signatures asked for.
        wanted: usize,
        /// Keys held.
        available: usize,
    },
    /// The epoch output's Merkle root is not the root of its own payouts.
    #[error("the epoch's Merkle root does not match its payouts")]
    RootMismatch,
    /// The claimable total differs from the sum of the payouts.
    #[error("the payouts sum to {payouts} but the epoch's rewards total is {total}")]
    TotalMismatch {
        /// Sum of the payout table.
        payouts: U256,
        /// The ledger's `totals.rewards`.
        total: U256,
    },
    /// Two payout rows name the same address; the contract pays one claim per address.
    #[error("two payouts for the same address")]
    DuplicatePayout,
}
