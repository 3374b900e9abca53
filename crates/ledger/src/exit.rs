//! Graceful exit: when an operator's bond may be returned without waiting for the staking
//! contract's long fallback delay.
//!
//! A bond stands behind the data its nodes hold. Returning it as soon as the operator asks
//! would let a node that still holds chunks (or silently lost them) walk away before an
//! audit catches it. So a committee member clears an exit only if its own view says the
//! bond no longer stands behind anything:
//!
//! 1. every node of the operator is gone: its signed registry record says it is draining
//!    or has left, since an epoch strictly before the *quiet epoch*;
//! 2. the quiet epoch is settled (posted), and in it none of those nodes held data: no
//!    storage byte-hours were countersigned for them and no audit challenged them (an
//!    audit is only issued to a node believed to hold the chunk, so one that names the
//!    node, passed or failed, means the network still places data there);
//! 3. no failed audit counted against those nodes in the quiet epoch and none was
//!    slashed in it, and no slash of any posted epoch is still waiting to be taken from
//!    the operator (an ejection only because the operator unbonded its bond, or a warning
//!    carried from earlier epochs, does not block the exit).
//!
//! The quiet epoch's audits run over the chunks' new holders as usual, so a chunk lost in
//! the move is charged to whichever node holds it then, never to the exiting operator.
//! [`check_exit`] is the rule, pure like the rest of the ledger: the same inputs give the
//! same verdict on every member, and no input makes it panic or overflow.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::audit::VerifiedAudit;
use crate::params::{Epoch, Resource};
use crate::penalties::Penalty;
use crate::receipt::VerifiedReceipt;

/// One node of an exiting operator as its signed registry record shows it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDeparture {
    /// The node.
    pub node: NodeId,
    /// The epoch in which its record first said `draining` or `left`, if it says so now;
    /// `None` for a node that is still a member (or came back).
    pub gone_since: Option<Epoch>,
}

/// What one node did in an epoch, as far as an exit is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeActivity {
    /// Storage byte-hours countersigned for the node as provider (the highest cumulative
    /// of each tenant's counter, summed, saturating).
    pub storage_byte_hours: u64,
    /// Audits of the epoch that challenged the node, passed or failed.
    pub audits_challenged: u64,
}

impl NodeActivity {
    /// Whether the node held data in the epoch.
    pub fn held_data(&self) -> bool {
        self.storage_byte_hours > 0 || self.audits_challenged > 0
    }
}

/// The activity of `nodes` in `epoch`, from that epoch's verified receipts and audits.
/// Items of other epochs are ignored, so a peer cannot clear or block an exit with
/// evidence of another epoch.
pub fn node_activity(
    epoch: Epoch,
    nodes: &[NodeId],
    receipts: &[VerifiedReceipt],
    audits: &[VerifiedAudit],
) -> BTreeMap<NodeId, NodeActivity> {
    let wanted: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let mut highest: BTreeMap<(NodeId, PublicKeyBytes), u64> = BTreeMap::new();
    for receipt in receipts {
        let body = receipt.body();
        if body.epoch != epoch
            || body.resource != Resource::StorageByteHours
            || !wanted.contains(&body.provider)
        {
            continue;
        }
        let counter = highest.entry((body.provider, body.tenant)).or_insert(0);
        *counter = (*counter).max(body.cumulative);
    }
    let mut activity: BTreeMap<NodeId, NodeActivity> = wanted
        .iter()
        .map(|node| (*node, NodeActivity::default()))
        .collect();
    for ((node, _), cumulative) in highest {
        if let Some(entry) = activity.get_mut(&node) {
            entry.storage_byte_hours = entry.storage_byte_hours.saturating_add(cumulative);
        }
    }
    for audit in audits {
        let body = audit.body();
        if body.epoch != epoch {
            continue;
        }
        if let Some(entry) = activity.get_mut(&body.audited) {
            entry.audits_challenged = entry.audits_challenged.saturating_add(1);
        }
    }
    activity
}

/// Everything [`check_exit`] reads.
#[derive(Clone, Copy, Debug)]
pub struct ExitCheck<'a> {
    /// The settled epoch in which the operator's nodes must have held nothing.
    pub quiet_epoch: Epoch,
    /// Whether this member holds the quiet epoch as posted on chain.
    pub quiet_epoch_posted: bool,
    /// Every node the operator's bond stands behind, with its registry state now.
    pub departures: &'a [NodeDeparture],
    /// The quiet epoch's activity of those nodes ([`node_activity`]).
    pub activity: &'a BTreeMap<NodeId, NodeActivity>,
    /// The quiet epoch's penalties (the posted table's).
    pub penalties: &'a [Penalty],
    /// Slashes of posted epochs, against the operator, not yet taken on chain (base
    /// units, saturating).
    pub unpaid_slashes: u128,
}

/// Why an exit is not cleared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExitRefusal {
    /// The operator has no node this member knows of, so nothing says its bond is free.
    #[error("the operator has no known node")]
    NoNodes,
    /// The same node is listed twice, so which state counts would be ambiguous.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// The quiet epoch is not posted in this member's records.
    #[error("epoch {0} is not settled")]
    NotSettled(u64),
    /// A node's registry record does not say it is draining or has left.
    #[error("node {0} has not drained or left")]
    StillMember(NodeId),
    /// A node went only in or after the quiet epoch, so that epoch is not a whole one
    /// after its departure.
    #[error("node {node} left in epoch {gone_since}, not before epoch {quiet_epoch}")]
    LeftTooLate {
        /// The node.
        node: NodeId,
        /// When it went.
        gone_since: u64,
        /// The epoch asked about.
        quiet_epoch: u64,
    },
    /// The quiet epoch's activity of a node is missing from the input.
    #[error("no activity of node {0} in the input")]
    UnknownActivity(NodeId),
    /// A node still held data in the quiet epoch.
    #[error(
        "node {node} held data in epoch {quiet_epoch}: {storage_byte_hours} byte-hours \
         stored, {audits_challenged} audits"
    )]
    HeldData {
        /// The node.
        node: NodeId,
        /// The epoch asked about.
        quiet_epoch: u64,
        /// Storage byte-hours countersigned for it.
        storage_byte_hours: u64,
        /// Audits that challenged it.
        audits_challenged: u64,
    },
    /// A node has failed audits counted or a slash in the quiet epoch.
    #[error("node {node} failed audits or was slashed in epoch {quiet_epoch}")]
    Penalised {
        /// The node.
        node: NodeId,
        /// The epoch asked about.
        quiet_epoch: u64,
    },
    /// Slashes of posted epochs are still to be taken from the operator.
    #[error("{0} of posted slashes not taken yet")]
    UnpaidSlashes(u128),
}

/// The exit rule (see the module's documentation). `Ok` means this member may sign the
/// operator's clearance for the quiet epoch.
pub fn check_exit(check: &ExitCheck<'_>) -> Result<(), ExitRefusal> {
    let quiet = check.quiet_epoch.0;
    if check.departures.is_empty() {
        return Err(ExitRefusal::NoNodes);
    }
    let mut seen = BTreeSet::new();
    for departure in check.departures {
        if !seen.insert(departure.node) {
            return Err(ExitRefusal::DuplicateNode(departure.node));
        }
    }
    if !check.quiet_epoch_posted {
        return Err(ExitRefusal::NotSettled(quiet));
    }
    if check.unpaid_slashes > 0 {
        return Err(ExitRefusal::UnpaidSlashes(check.unpaid_slashes));
    }
    // Sorted, so every member names the same node first when several fail.
    let mut departures = check.departures.to_vec();
    departures.sort_by_key(|d| d.node);
    for departure in &departures {
        let node = departure.node;
        let Some(gone_since) = departure.gone_since else {
            return Err(ExitRefusal::StillMember(node));
        };
        if gone_since.0 >= quiet {
            return Err(ExitRefusal::LeftTooLate {
                node,
                gone_since: gone_since.0,
                quiet_epoch: quiet,
            });
        }
        // A node whose activity was not computed is not presumed idle.
        let Some(activity) = check.activity.get(&node).copied() else {
            return Err(ExitRefusal::UnknownActivity(node));
        };
        if activity.held_data() {
            return Err(ExitRefusal::HeldData {
                node,
                quiet_epoch: quiet,
                storage_byte_hours: activity.storage_byte_hours,
                audits_challenged: activity.audits_challenged,
            });
        }
        // Only harm done counts: failed audits or a slash. An exiting node is also ejected
        // for its bond running out (its operator unbonded it), and a warning can carry
        // over from earlier epochs whose slashes `unpaid_slashes` accounts for.
        if check
            .penalties
            .iter()
            .any(|p| p.node == node && (p.counted_failures > 0 || p.slashed > 0))
        {
            return Err(ExitRefusal::Penalised {
                node,
                quiet_epoch: quiet,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::penalties::PenaltyLevel;
    use crate::tests::{NETWORK, key, node, signed_receipt, unchecked_audit};

    const QUIET: u64 = 10;

    fn gone(index: usize, since: u64) -> NodeDeparture {
        NodeDeparture {
            node: node(index),
            gone_since: Some(Epoch(since)),
        }
    }

    fn storage(provider: usize, tenant: usize, epoch: u64, cumulative: u64) -> VerifiedReceipt {
        signed_receipt(
            key(provider),
            key(tenant),
            Resource::StorageByteHours,
            epoch,
            cumulative,
        )
        .verify(NETWORK)
        .unwrap()
    }

    fn penalty(index: usize, level: PenaltyLevel, slashed: u128) -> Penalty {
        Penalty {
            node: node(index),
            score_ppm: 900_000,
            level,
            ejection: None,
            counted_failures: 1,
            slashed,
            bond_after: 0,
            reward_withheld: 0,
        }
    }

    /// The verdict over the operator of nodes 0 and 1, drained in epoch 8.
    fn verdict(
        departures: &[NodeDeparture],
        receipts: &[VerifiedReceipt],
        audits: &[VerifiedAudit],
        penalties: &[Penalty],
        unpaid_slashes: u128,
    ) -> Result<(), ExitRefusal> {
        let nodes: Vec<NodeId> = departures.iter().map(|d| d.node).collect();
        let activity = node_activity(Epoch(QUIET), &nodes, receipts, audits);
        check_exit(&ExitCheck {
            quiet_epoch: Epoch(QUIET),
            quiet_epoch_posted: true,
            departures,
            activity: &activity,
            penalties,
            unpaid_slashes,
        })
    }

    #[test]
    fn drained_nodes_that_held_nothing_in_a_later_settled_epoch_are_cleared() {
        let departures = [gone(0, 8), gone(1, 9)];
        // Other nodes stored, were audited and were penalised: none of it is the exiting
        // operator's, including the new holders' failed audits of the moved chunks.
        let receipts = [storage(2, 5, QUIET, 1_000), storage(3, 5, QUIET, 7)];
        let audits = [
            unchecked_audit(2, 3, QUIET, 1, true),
            unchecked_audit(4, 3, QUIET, 2, false),
        ];
        let penalties = [penalty(3, PenaltyLevel::Reduced, 50)];
        assert_eq!(
            verdict(&departures, &receipts, &audits, &penalties, 0),
            Ok(())
        );
        // What the exiting nodes did in other epochs does not count either way.
        let earlier = [storage(0, 5, QUIET - 1, 1_000_000)];
        let later_audit = [unchecked_audit(2, 1, QUIET + 1, 1, true)];
        assert_eq!(verdict(&departures, &earlier, &later_audit, &[], 0), Ok(()));
        // Ejected only because the operator unbonded (no failure, no slash), or warned on
        // a score carried from earlier epochs: not a reason to hold the bond.
        let mut unbonded = penalty(0, PenaltyLevel::Ejected, 0);
        unbonded.counted_failures = 0;
        unbonded.ejection = Some(crate::penalties::EjectionReason::BondExhausted);
        let mut warned = penalty(1, PenaltyLevel::Warning, 0);
        warned.counted_failures = 0;
        assert_eq!(
            verdict(&departures, &[], &[], &[unbonded, warned], 0),
            Ok(())
        );
    }

    #[test]
    fn a_node_that_still_held_data_is_refused() {
        let departures = [gone(0, 8), gone(1, 8)];
        let receipts = [storage(1, 5, QUIET, 3), storage(1, 5, QUIET, 9)];
        assert_eq!(
            verdict(&departures, &receipts, &[], &[], 0),
            Err(ExitRefusal::HeldData {
                node: node(1),
                quiet_epoch: QUIET,
                storage_byte_hours: 9,
                audits_challenged: 0,
            })
        );
        // An audit that challenged the node, even one it failed, means data was placed
        // on it.
        for passed in [true, false] {
            let audits = [unchecked_audit(3, 0, QUIET, 4, passed)];
            assert_eq!(
                verdict(&departures, &[], &audits, &[], 0),
                Err(ExitRefusal::HeldData {
                    node: node(0),
                    quiet_epoch: QUIET,
                    storage_byte_hours: 0,
                    audits_challenged: 1,
                })
            );
        }
    }

    #[test]
    fn a_node_still_a_member_or_gone_too_late_is_refused() {
        let member = NodeDeparture {
            node: node(1),
            gone_since: None,
        };
        assert_eq!(
            verdict(&[gone(0, 8), member], &[], &[], &[], 0),
            Err(ExitRefusal::StillMember(node(1)))
        );
        // Gone in the quiet epoch itself: not a whole epoch after.
        assert_eq!(
            verdict(&[gone(0, QUIET)], &[], &[], &[], 0),
            Err(ExitRefusal::LeftTooLate {
                node: node(0),
                gone_since: QUIET,
                quiet_epoch: QUIET,
            })
        );
        // A departure dated in the future (a hostile or confused input) is not before.
        assert_eq!(
            verdict(&[gone(0, u64::MAX)], &[], &[], &[], 0),
            Err(ExitRefusal::LeftTooLate {
                node: node(0),
                gone_since: u64::MAX,
                quiet_epoch: QUIET,
            })
        );
    }

    #[test]
    fn penalties_and_unpaid_slashes_block_the_exit() {
        let departures = [gone(0, 8)];
        for level in [PenaltyLevel::Warning, PenaltyLevel::Ejected] {
            assert_eq!(
                verdict(&departures, &[], &[], &[penalty(0, level, 0)], 0),
                Err(ExitRefusal::Penalised {
                    node: node(0),
                    quiet_epoch: QUIET,
                })
            );
        }
        assert_eq!(
            verdict(
                &departures,
                &[],
                &[],
                &[penalty(0, PenaltyLevel::None, 1)],
                0
            ),
            Err(ExitRefusal::Penalised {
                node: node(0),
                quiet_epoch: QUIET,
            })
        );
        assert_eq!(
            verdict(&departures, &[], &[], &[], u128::MAX),
            Err(ExitRefusal::UnpaidSlashes(u128::MAX))
        );
    }

    #[test]
    fn hostile_or_incomplete_inputs_are_refused_not_cleared() {
        let activity = node_activity(Epoch(QUIET), &[node(0)], &[], &[]);
        let check = |departures: &[NodeDeparture], posted: bool| {
            check_exit(&ExitCheck {
                quiet_epoch: Epoch(QUIET),
                quiet_epoch_posted: posted,
                departures,
                activity: &activity,
                penalties: &[],
                unpaid_slashes: 0,
            })
        };
        assert_eq!(check(&[], true), Err(ExitRefusal::NoNodes));
        assert_eq!(
            check(&[gone(0, 8), gone(0, 8)], true),
            Err(ExitRefusal::DuplicateNode(node(0)))
        );
        assert_eq!(
            check(&[gone(0, 8)], false),
            Err(ExitRefusal::NotSettled(QUIET))
        );
        // A node whose activity was not computed is not presumed idle.
        assert_eq!(
            check(&[gone(0, 8), gone(1, 8)], true),
            Err(ExitRefusal::UnknownActivity(node(1)))
        );
        assert_eq!(check(&[gone(0, 8)], true), Ok(()));
    }

    #[test]
    fn activity_sums_each_counter_once_and_saturates() {
        // Two tenants' counters, each with a superseded receipt: the highest of each counts.
        let receipts = [
            storage(0, 5, QUIET, 10),
            storage(0, 5, QUIET, 40),
            storage(0, 6, QUIET, u64::MAX),
            storage(0, 6, QUIET, 1),
        ];
        let activity = node_activity(Epoch(QUIET), &[node(0)], &receipts, &[]);
        assert_eq!(activity[&node(0)].storage_byte_hours, u64::MAX);
        let receipts = [
            storage(0, 5, QUIET, 10),
            storage(0, 5, QUIET, 40),
            storage(0, 6, QUIET, 2),
        ];
        // The order of the inputs does not matter.
        let mut reversed = receipts.to_vec();
        reversed.reverse();
        let forward = node_activity(Epoch(QUIET), &[node(0)], &receipts, &[]);
        let backward = node_activity(Epoch(QUIET), &[node(0)], &reversed, &[]);
        assert_eq!(forward, backward);
        assert_eq!(forward[&node(0)].storage_byte_hours, 42);
    }
}
