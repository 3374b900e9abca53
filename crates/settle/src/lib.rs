//! Closing an epoch inside the network, as pure logic without I/O: what every node
//! publishes, how any node turns the published evidence into the ledger's input, and how
//! the committee agrees on the root it posts.
//!
//! 1. **Evidence bundles** ([`EvidenceBundle`]): after an epoch ends, every node signs one
//!    versioned, size-bounded bundle of the countersigned receipts it holds as provider
//!    and the audit verdicts it issued as auditor. [`EvidenceBundle::decode`] and
//!    [`EvidenceBundle::verify`] treat a bundle as hostile input: size and counts first,
//!    then version, network, epoch, the publisher's key and signature, and every receipt
//!    and audit inside (a bundle with one bad item is rejected whole, so every node reaches
//!    the same verdict on it).
//! 2. **The evidence set** ([`EvidenceSet`]): the bundles a node holds for an epoch, at most
//!    one per publisher (the lowest digest wins if a publisher signed two), with a digest
//!    over the whole set. Committee members exchange [`SetSummary`]s, fetch the bundles
//!    they lack ([`EvidenceSet::wanted_from`]) and so converge on the union before signing.
//!    [`EvidenceSet::epoch_input`] builds a canonical [`xnode_ledger::EpochInput`]: the
//!    latest receipt per counter (a superseded receipt counts once), audits deduplicated,
//!    both in a fixed order, so equal sets give equal roots bit for bit.
//! 3. **The committee** ([`committee`]): each member signs the EIP-712 digest of the root
//!    it computed with a secp256k1 key derived from its node key
//!    ([`committee_signer`]); a [`QuorumCollector`] checks each [`RootVote`] (recovered
//!    signer, membership, epoch, same digest and same [`EpochContext`]) and releases the
//!    signatures only when at least the threshold (f+1 or more) agree. The context binds
//!    the ledger parameters (prices) and the reputation carried from the previous settled
//!    epoch ([`carry`]).
//!
//! 4. **The chain client** ([`ChainClient`]): a minimal JSON-RPC
//!    client that signs transactions locally to post roots and claim rewards.
//!
//! 5. **The close** ([`EpochClose`], `close.rs`): one epoch's state machine (set, root,
//!    votes, record) without I/O, and ([`Settlement`], `worker.rs`) the node's `settle`
//!    RPC service and `epoch-close` worker that drive it over the mesh and the chain;
//!    the node supplies its evidence through [`EvidenceSource`]. See
//!    `docs/design/settlement-in-the-network.md`.
//! 6. **Slashes** ([`slash`]): once an epoch is posted, the committee takes each slash
//!    of its table on chain (`Staking.slash`); a member signs a slash only if its own
//!    posted table takes exactly that amount from that operator.
//! 7. **Exits** ([`exit`], [`exit_client`]): a member clears an operator's exit only from
//!    its own ledger state; [`exit_client::withdraw_cleared`] is the operator's side
//!    (`xnode stake withdraw --quiet-epoch N`): collect the clearance through a node and
//!    send `Staking.withdrawCleared`.

#![warn(missing_docs)]

mod bundle;
pub mod carry;
pub mod close;
pub mod committee;
pub mod config;
mod error;
mod evidence;
pub mod exit;
pub mod exit_client;
pub mod proto;
mod rpc;
pub mod slash;
mod worker;

pub use bundle::{
    BUNDLE_DOMAIN, BUNDLE_VERSION, BundleBody, BundleLimits, EvidenceBundle, VerifiedBundle,
};
pub use carry::{CONTEXT_DOMAIN, CarriedReputation, EpochContext};
pub use close::{EpochClose, EpochRecord, EpochStatus};
pub use committee::{
    CommitteeConfig, QuorumCollector, ROOT_VOTE_VERSION, RootVote, VOTE_CONTEXT_DOMAIN,
    VoteOutcome, committee_signer, context_signing_hash,
};
pub use config::{ChainConfig, CommitteeMember, OperatorPayout, SettlementConfig};
pub use error::{
    BundleError, CarryError, CloseError, CommitteeError, ConfigError, ExitClearanceError,
    SlashError,
};
pub use evidence::{EvidenceSet, SET_DOMAIN, SetSummary};
pub use exit::{ExitClearanceTerms, ExitClearanceVote};
pub use rpc::{ChainClient, Mined, MinedLog, RpcError};
pub use slash::{EpochSlashes, SlashOutcome, SlashStatus, SlashTerms, SlashVote};
pub use worker::{
    EvidenceSource, ExitClearance, SETTLE_BUNDLES, SETTLE_EPOCHS, SETTLE_REPUTATION,
    SETTLE_SLASHES, SettleService, Settlement, SettlementStatus, SlashMetrics,
};

#[cfg(test)]
mod anvil_tests;
#[cfg(test)]
mod close_tests;
#[cfg(test)]
mod exit_tests;
#[cfg(test)]
mod slash_tests;
#[cfg(test)]
mod tests;
