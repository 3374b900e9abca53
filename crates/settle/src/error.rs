//! The crate's error types.

use xnode_ledger::{AuditError, ReceiptError};

/// Why an evidence bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The encoded bundle is larger than the limit.
    #[error("bundle of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a bundle.
    #[error("bundle does not decode")]
    Malformed(#[source] postcard::Error),
    /// The bundle could not be encoded (should not happen for a well-formed bundle).
    #[error("bundle does not encode")]
    Encode(#[source] postcard::Error),
    /// A format version this code does not understand.
    #[error("unsupported bundle version {0}")]
    UnsupportedVersion(u8),
    /// Signed for another network.
    #[error("bundle is for network {found:?}, expected {expected:?}")]
    WrongNetwork {
        /// This node's network.
        expected: String,
        /// The bundle's network.
        found: String,
    },
    /// For another epoch than the one being closed.
    #[error("bundle is for epoch {found}, expected {expected}")]
    WrongEpoch {
        /// The epoch being closed.
        expected: u64,
        /// The bundle's epoch.
        found: u64,
    },
    /// More receipts or audits than the limits allow.
    #[error("bundle holds {receipts} receipts and {audits} audits, above the limits")]
    TooManyItems {
        /// Receipts held.
        receipts: usize,
        /// Audits held.
        audits: usize,
    },
    /// The publisher's key does not derive its node id, or is not a key.
    #[error("the publisher's key does not match its node id")]
    PublisherKeyMismatch,
    /// The publisher's signature does not verify.
    #[error("the bundle's signature does not verify")]
    BadSignature,
    /// A receipt names another provider than the publisher.
    #[error("receipt {index} is not the publisher's own")]
    ForeignReceipt {
        /// Position in the bundle.
        index: usize,
    },
    /// An audit names another auditor than the publisher.
    #[error("audit {index} was not issued by the publisher")]
    ForeignAudit {
        /// Position in the bundle.
        index: usize,
    },
    /// An item is for another epoch than the bundle.
    #[error("item {index} belongs to another epoch")]
    ItemEpoch {
        /// Position in the bundle (receipts first, then audits).
        index: usize,
    },
    /// A receipt fails verification.
    #[error("receipt {index} does not verify")]
    Receipt {
        /// Position in the bundle.
        index: usize,
        /// Why.
        #[source]
        source: ReceiptError,
    },
    /// An audit fails verification.
    #[error("audit {index} does not verify")]
    Audit {
        /// Position in the bundle.
        index: usize,
        /// Why.
        #[source]
        source: AuditError,
    },
}

/// Why a committee vote or quorum was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitteeError {
    /// The committee configuration is unusable.
    #[error("committee of {members} members with threshold {threshold}: {reason}")]
    BadConfig {
        /// Distinct members.
        members: usize,
        /// Configured threshold.
        threshold: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A format version this code does not understand.
    #[error("unsupported vote version {0}")]
    UnsupportedVersion(u8),
    /// A vote for another epoch.
    #[error("vote is for epoch {found}, expected {expected}")]
    WrongEpoch {
        /// The epoch being closed.
        expected: u64,
        /// The vote's epoch.
        found: u64,
    },
    /// The signature is not a recoverable secp256k1 signature.
    #[error("vote signature is malformed")]
    MalformedSignature(#[source] alloy::primitives::SignatureError),
    /// The signature recovers to another address than the vote names.
    #[error("vote signature is not by its claimed signer")]
    SignerMismatch,
    /// The signer is not on the committee.
    #[error("vote signer is not a committee member")]
    NotAMember,
    /// Fewer agreeing signatures than the threshold.
    #[error("{have} agreeing signatures, {need} needed")]
    BelowThreshold {
        /// Agreeing signatures held.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// Signing failed.
    #[error("signing the root failed")]
    Signing(#[source] alloy::signers::Error),
}

/// Why a carried reputation (from a peer, or read back) was refused.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    /// The state does not hash to the digest its context names.
    #[error("the reputation state does not match its context's digest")]
    StateMismatch,
    /// The context is of another epoch than the one asked for.
    #[error("carried reputation is of epoch {found}, expected {expected}")]
    WrongEpoch {
        /// The epoch asked for.
        expected: u64,
        /// The context's epoch.
        found: u64,
    },
    /// The context was computed with other ledger parameters (prices, reputation model,
    /// penalties, emission) than this node's.
    #[error("carried reputation was computed with other ledger parameters")]
    OtherParams,
    /// Fewer committee members than the threshold signed this context and digest.
    #[error("{have} committee members signed the carried reputation, {need} needed")]
    TooFewSignatures {
        /// Valid agreeing member votes.
        have: usize,
        /// The threshold.
        need: usize,
    },
}

/// Why a member refused to sign a slash, or refused another member's slash signature.
#[derive(Debug, thiserror::Error)]
pub enum SlashError {
    /// This node has no posted root for the epoch, so it has no table to check against.
    #[error("epoch {0} is not posted on this node")]
    NotPosted(u64),
    /// This node's own table of the epoch does not slash that operator.
    #[error("this node's table of epoch {epoch} does not slash {operator}")]
    NotInTable {
        /// The epoch.
        epoch: u64,
        /// The operator asked about.
        operator: alloy::primitives::Address,
    },
    /// This node's own table slashes the operator by another amount, or with another
    /// deadline.
    #[error(
        "this node's table of epoch {epoch} slashes {operator} by {ours} until {our_deadline}, not {asked} until {asked_deadline}"
    )]
    OtherTerms {
        /// The epoch.
        epoch: u64,
        /// The operator.
        operator: alloy::primitives::Address,
        /// The amount in this node's table.
        ours: u128,
        /// The amount asked.
        asked: u128,
        /// This node's deadline for the slash.
        our_deadline: u64,
        /// The deadline asked.
        asked_deadline: u64,
    },
    /// A slash vote of a format version this code does not know.
    #[error("unsupported slash vote version {0}")]
    UnsupportedVersion(u8),
    /// A vote for other terms than the ones asked.
    #[error("the slash vote is for other terms than the ones asked")]
    OtherVote,
    /// The signature does not recover to the named member, or the signer is not one.
    #[error("the slash vote is not signed by the committee member it names")]
    BadSigner,
    /// The signature is malformed.
    #[error("malformed slash signature")]
    MalformedSignature(#[source] alloy::primitives::SignatureError),
    /// Signing failed.
    #[error("signing the slash failed")]
    Signing(#[source] alloy::signers::Error),
}

/// Why a member refused to sign an exit clearance, or refused another member's signature.
#[derive(Debug, thiserror::Error)]
pub enum ExitClearanceError {
    /// This member's own state does not clear the exit.
    #[error("the exit is not clear")]
    NotClear(#[from] xnode_ledger::ExitRefusal),
    /// The state checked is of another epoch than the one asked about.
    #[error("checked epoch {ours}, asked about epoch {asked}")]
    OtherEpoch {
        /// The epoch this member checked.
        ours: u64,
        /// The epoch asked about.
        asked: u64,
    },
    /// The deadline is past, or further ahead than a member lets a clearance live.
    #[error("deadline {deadline} is past or too far ahead of {now}")]
    Deadline {
        /// The deadline asked (Unix seconds).
        deadline: u64,
        /// This member's clock (Unix seconds).
        now: u64,
    },
    /// A vote of a format version this code does not know.
    #[error("unsupported exit clearance vote version {0}")]
    UnsupportedVersion(u8),
    /// A vote for other terms than the ones asked.
    #[error("the exit clearance vote is for other terms than the ones asked")]
    OtherVote,
    /// The signature does not recover to the named member, or the signer is not one.
    #[error("the exit clearance vote is not signed by the committee member it names")]
    BadSigner,
    /// The signature is malformed.
    #[error("malformed exit clearance signature")]
    MalformedSignature(#[source] alloy::primitives::SignatureError),
    /// Signing failed.
    #[error("signing the exit clearance failed")]
    Signing(#[source] alloy::signers::Error),
}

/// A mistake in the `[chain]` or `[settlement]` section, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Why closing an epoch failed this round (the worker tries again next round).
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The node's database failed.
    #[error("settlement database")]
    Db(#[from] xnode_db::DbError),
    /// A stored record or bundle does not decode.
    #[error("stored settlement state")]
    Stored(#[from] xnode_wire::WireError),
    /// Building this node's bundle failed.
    #[error("this node's evidence bundle")]
    Bundle(#[from] BundleError),
    /// A vote could not be signed or the quorum refused.
    #[error("committee")]
    Committee(#[from] CommitteeError),
    /// The ledger refused the epoch's input.
    #[error("ledger")]
    Ledger(#[from] xnode_ledger::LedgerError),
    /// The settlement plan could not be built from the ledger's output.
    #[error("settlement plan")]
    Plan(#[from] xnode_chain::ChainError),
    /// The chain endpoint failed.
    #[error("chain")]
    Chain(#[from] crate::rpc::RpcError),
    /// Reading this node's evidence (receipts, audits) failed.
    #[error("reading evidence: {0}")]
    Evidence(String),
    /// A value read from the chain does not fit.
    #[error("chain value out of range: {0}")]
    ChainValue(&'static str),
    /// A stored carried reputation does not verify.
    #[error("carried reputation")]
    Carry(#[from] CarryError),
    /// A slash could not be signed or a slash vote was refused.
    #[error("slash")]
    Slash(#[from] SlashError),
    /// An exit clearance could not be signed or a clearance vote was refused.
    #[error("exit clearance")]
    ExitClearance(#[from] ExitClearanceError),
    /// This node is not on the committee, so it signs no clearance.
    #[error("this node is not a committee member")]
    NotMember,
    /// As many of these requests as the node takes at once are already under way.
    #[error("too many {0} at once; try again shortly")]
    Busy(&'static str),
}
