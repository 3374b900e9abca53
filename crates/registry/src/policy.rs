//! Write policies: which owner may write which registry key.

use xnode_types::{NodeId, NodeRecord, PublicKeyBytes};

use crate::Entry;

/// Decides whether `owner` may write `key`, given the entry currently stored there.
pub trait WritePolicy: Send + Sync {
    fn may_write(&self, key: &str, owner: &PublicKeyBytes, current: Option<&Entry>) -> bool;
}

/// The policy every node enforces:
///
/// - `node/<node-id>`: only that node's own key;
/// - `admission/<node-id>`: only that node's own key (it carries a signed admission list);
/// - `payout/<operator-public-key-hex>/...`: only that operator's key;
/// - `tenant/<tenant-public-key-hex>/...`: only that tenant's key;
/// - any other namespace: refused, until a subsystem defines its rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPolicy;

impl WritePolicy for DefaultPolicy {
    fn may_write(&self, key: &str, owner: &PublicKeyBytes, _current: Option<&Entry>) -> bool {
        if let Some(node) = key.strip_prefix(NodeRecord::KEY_PREFIX) {
            let Ok(node) = node.parse::<NodeId>() else {
                return false;
            };
            return NodeId::from_public_key(owner).is_ok_and(|id| id == node);
        }
        // The admission list a node carries: `admission/<node>`, by that node. The list
        // inside is signed by the network's authority; readers check that, not this.
        if let Some(node) = key.strip_prefix(crate::admission::ADMISSION_PREFIX) {
            let Ok(node) = node.parse::<NodeId>() else {
                return false;
            };
            return NodeId::from_public_key(owner).is_ok_and(|id| id == node);
        }
        // What a node reports about the work it runs: `run/<node>/...`, by that node.
        if let Some(rest) = key.strip_prefix("run/") {
            let Ok(node) = rest.split('/').next().unwrap_or_default().parse::<NodeId>() else {
                return false;
            };
            return NodeId::from_public_key(owner).is_ok_and(|id| id == node);
        }
        // An operator's payout bindings: `payout/<operator>/<serial>`, by that operator key.
        if let Some(rest) = key.strip_prefix(crate::payout::PAYOUT_PREFIX) {
            let operator = rest.split('/').next().unwrap_or_default();
            return operator == owner.to_hex();
        }
        if let Some(rest) = key.strip_prefix("tenant/") {
            let tenant = rest.split('/').next().unwrap_or_default();
            return tenant == owner.to_hex();
        }
        false
    }
}
