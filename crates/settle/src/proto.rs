//! The `settle` service on the wire: every node serves its evidence for a closed epoch;
//! committee members also serve the bundles they gathered and their vote.
//!
//! Everything is pulled: a member asks each node for its set summary, fetches the bundles
//! that would change its own set, and asks the other members for their votes. Nothing
//! arrives unasked, so a hostile node can only answer what it was asked, within the size
//! limit, and every bundle it answers is verified like any other.
//!
//! Append new variants at the end of each enum: postcard encodes the variant index.

use serde::{Deserialize, Serialize};
use xnode_ledger::Epoch;
use xnode_types::NodeId;
use xnode_wire::Versioned;

use crate::exit::{ExitClearanceTerms, ExitClearanceVote};
use crate::slash::{SlashTerms, SlashVote};
use crate::{RootVote, SetSummary};

/// The largest message: one bundle at its limit (8 MiB) and framing.
pub const MAX_SETTLE_MESSAGE: usize = (8 << 20) + 4096;

/// A request of the `settle` service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleRequest {
    /// "Which bundles do you hold for this epoch?"
    Summary {
        /// The epoch.
        epoch: Epoch,
    },
    /// "Send me the bundle you hold of this publisher."
    Bundle {
        /// The epoch.
        epoch: Epoch,
        /// Whose bundle.
        publisher: NodeId,
    },
    /// "Send me your vote on this epoch's root."
    Vote {
        /// The epoch.
        epoch: Epoch,
    },
    /// "Send me the reputation this settled epoch output, with the votes on it."
    Reputation {
        /// The settled epoch.
        epoch: Epoch,
    },
    /// "Sign this slash if your own posted table of its epoch takes exactly this."
    SlashSignature {
        /// The slash asked for.
        terms: SlashTerms,
    },
    /// "Sign this operator's exit clearance if your own records clear its exit."
    ExitClearance {
        /// The clearance asked for.
        terms: ExitClearanceTerms,
    },
}

impl Versioned for SettleRequest {
    const KIND_TAG: u8 = xnode_wire::kinds::SETTLE_REQUEST;
    const KIND_NAME: &'static str = "settle request";
    /// Version 2 appended `SlashSignature`; version 3 appended `ExitClearance`.
    const VERSION: u8 = 3;

    /// Versions 1 and 2 are version 3 without its last variants: the body decodes as is.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        upgrade_appended::<Self>(version, 1..=2, body)
    }
}

/// An answer of the `settle` service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleResponse {
    /// The bundles held (empty before the node closed the epoch).
    Summary(SetSummary),
    /// The encoded bundle ([`crate::EvidenceBundle::encode`]), if held.
    Bundle(Option<Vec<u8>>),
    /// The member's current vote, if it computed a root yet.
    Vote(Option<RootVote>),
    /// The encoded [`crate::CarriedReputation`] of the epoch, if this node holds it.
    Reputation(Option<Vec<u8>>),
    /// The member's signature of the slash asked for, or `None` when its own table does
    /// not take exactly that (or it has no posted table of that epoch).
    SlashSignature(Option<SlashVote>),
    /// The member's signature of the exit clearance asked for, or `None` when its own
    /// records do not clear the exit.
    ExitClearance(Option<ExitClearanceVote>),
}

impl Versioned for SettleResponse {
    const KIND_TAG: u8 = xnode_wire::kinds::SETTLE_RESPONSE;
    const KIND_NAME: &'static str = "settle response";
    /// Version 2: votes carry their context and its signature; `Reputation` appended.
    /// Version 3 appended `SlashSignature`; version 4 appended `ExitClearance`.
    const VERSION: u8 = 4;

    /// Versions 2 and 3 are version 4 without its last variants: the body decodes as is.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        upgrade_appended::<Self>(version, 2..=3, body)
    }
}

/// Decodes a body of an earlier version of `T` (one in `previous`), which differs only by
/// variants appended since (postcard encodes a variant by its index, so the old body is a
/// valid new one).
fn upgrade_appended<T: Versioned>(
    version: u8,
    previous: std::ops::RangeInclusive<u8>,
    body: &[u8],
) -> Result<T, xnode_wire::WireError> {
    if !previous.contains(&version) {
        return Err(xnode_wire::unsupported::<T>(version));
    }
    xnode_wire::decode_body::<T, T>(body)
}
