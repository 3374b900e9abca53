//! The node's evidence for closing epochs: the countersigned receipts it holds as provider
//! (metering) and the audit verdicts it issued (storage), and the nodes to gather the
//! other bundles from (the live members of the mesh), and when an operator's node said it
//! was going (its signed registry record), for exit clearances. `xnode_settle` does the rest.

use std::sync::Arc;

use xnode_ledger::{AuditResult, Epoch, Receipt};
use xnode_mesh::{MemberState, Mesh};
use xnode_metering::Metering;
use xnode_registry::Registry;
use xnode_storage::Storage;
use xnode_types::{NodeId, NodeStatus};

/// Most receipts of one epoch read for a bundle: the bundle's own limit.
const MAX_BUNDLE_RECEIPTS: usize = 16_384;

/// This node's evidence, for `xnode_settle::Settlement`.
pub(crate) struct NodeEvidence {
    pub(crate) id: NodeId,
    pub(crate) metering: Arc<Metering>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) mesh: Mesh,
    pub(crate) registry: Arc<Registry>,
    pub(crate) network: String,
}

/// Each node's payout address from the registry: the node's record carries a certificate
/// of its operator for this network, and that operator's payout binding (written at or
/// before `cut_ms`, see `xnode_registry::payout`) names the address. A node without a
/// valid certificate, or whose operator has no binding, is not in the table. Sorted by
/// node.
pub(crate) fn registry_payouts(
    registry: &Registry,
    network: &str,
    cut_ms: u64,
) -> Vec<xnode_settle::OperatorPayout> {
    let bindings = registry.payout_table(cut_ms);
    if bindings.is_empty() {
        return Vec::new();
    }
    let mut payouts: Vec<xnode_settle::OperatorPayout> = registry
        .node_records()
        .into_iter()
        .filter_map(|record| {
            let cert = record.operator?;
            if !cert.verify(network, &record.node_id) {
                return None;
            }
            let payout = *bindings.get(&cert.operator)?;
            Some(xnode_settle::OperatorPayout {
                node: record.node_id,
                payout,
            })
        })
        .collect();
    payouts.sort_by_key(|p| p.node);
    payouts.dedup_by_key(|p| p.node);
    payouts
}

impl xnode_settle::EvidenceSource for NodeEvidence {
    fn receipts(&self, epoch: Epoch) -> Result<Vec<Receipt>, String> {
        // The store holds receipts as provider and as edge; only the provider's count.
        let mut receipts = self
            .metering
            .receipts(epoch, usize::MAX)
            .map_err(|e| e.to_string())?;
        receipts.retain(|r| r.body.provider == self.id);
        receipts.truncate(MAX_BUNDLE_RECEIPTS);
        Ok(receipts)
    }

    fn audits(&self, epoch: Epoch) -> Result<Vec<AuditResult>, String> {
        Ok(self.storage.audit_log(epoch.0))
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.mesh
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive && m.id != self.id)
            .map(|m| m.id)
            .collect()
    }

    fn payout_bindings(&self, cut_ms: u64) -> Vec<xnode_settle::OperatorPayout> {
        registry_payouts(&self.registry, &self.network, cut_ms)
    }

    fn departed_at_ms(&self, node: &NodeId) -> Option<u64> {
        // The record is signed by the node itself; its clock time is when it last changed,
        // never before the node said it was going (a later rewrite only delays a
        // clearance).
        self.registry
            .node_records_signed_at()
            .into_iter()
            .find(|(record, _)| record.node_id == *node)
            .filter(|(record, _)| matches!(record.status, NodeStatus::Draining | NodeStatus::Left))
            .map(|(_, signed_ms)| signed_ms)
    }
}
