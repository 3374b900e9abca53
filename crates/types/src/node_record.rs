//! The record every node publishes about itself in the registry.

use serde::{Deserialize, Serialize};

use crate::{Capacity, NodeId, OperatorCert};

/// Whether a node intends to be part of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Running and serving.
    Active,
    /// Stopped for good (after `xnode drain` or `xnode leave`); it announced its departure,
    /// and repair copies what it held at once. A node that only restarts (SIGTERM) stays
    /// `Active`: see docs/decisions/2026-11-26-a-restart-is-not-a-leave.md.
    Left,
    /// Moving its data and work to other nodes before it leaves (`xnode drain`): placement
    /// no longer chooses it, but it still serves what it holds until the drain ends.
    /// Appended last, so the encodings of the older variants are unchanged.
    Draining,
}

impl NodeStatus {
    /// The name the API and the CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Left => "left",
            NodeStatus::Draining => "draining",
        }
    }
}

/// A node's self-description. It is stored in the registry under `node/<id>`, signed by the
/// node's own key, and re-published whenever something in it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: NodeId,
    /// libp2p multiaddrs the node listens on, as text.
    pub addresses: Vec<String>,
    /// The base URL of the node's HTTP API, if it serves one.
    pub api_url: Option<String>,
    pub zone: String,
    pub capacity: Capacity,
    pub version: String,
    /// Bumped on every restart and every refutation, so newer news about a node always wins.
    pub incarnation: u64,
    pub status: NodeStatus,
    /// When this incarnation started, in Unix milliseconds.
    pub started_at_ms: u64,
    /// Operator-set labels that deployments can require in their placement.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Who runs this node: the operator's certificate for this node id and network.
    /// `None` only in records written before operators existed (format version 2), which
    /// are never placement candidates.
    pub operator: Option<OperatorCert>,
}

impl NodeRecord {
    /// The registry key under which a node's record lives.
    pub fn registry_key(node: &NodeId) -> String {
        format!("{}{}", Self::KEY_PREFIX, node)
    }

    pub const KEY_PREFIX: &'static str = "node/";
}
