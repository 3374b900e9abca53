//! The summary a node gossips: cumulative counters per scope, system and peer figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;
use xnode_wire::{Versioned, kinds};

use crate::Histogram;

/// Largest summary accepted from a peer.
pub const MAX_SUMMARY_BYTES: usize = 256 * 1024;

/// A request for a node's own figures (the `observe-figures` service): how one node's
/// figures reach another once the network is too large for every summary to be gossiped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiguresRequest {}

impl Versioned for FiguresRequest {
    const KIND_TAG: u8 = kinds::FIGURES_REQUEST;
    const KIND_NAME: &'static str = "figures request";
    const VERSION: u8 = 1;
}

/// A node's answer to a [`FiguresRequest`]: its latest summary and what it did over each
/// window of [`crate::WINDOWS`]. The node computes its windows itself, from its own
/// summaries slot by slot: one summary alone says what a node did since it started, not
/// when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFigures {
    pub summary: NodeSummary,
    /// (window length in ms, per-scope totals over it).
    pub windows: Vec<(u64, BTreeMap<String, ScopeStats>)>,
}

impl NodeFigures {
    /// Whether a peer's answer has the shape this node asked for: one entry per known
    /// window at most, each a known length with at most as many scopes as a summary.
    pub fn is_well_formed(&self) -> bool {
        self.windows.len() <= crate::WINDOWS.len()
            && self.windows.iter().all(|(ms, scopes)| {
                crate::WINDOWS.iter().any(|(_, known)| known == ms)
                    && scopes.len() <= crate::MAX_SCOPES.saturating_add(1)
            })
    }
}

impl Versioned for NodeFigures {
    const KIND_TAG: u8 = kinds::NODE_FIGURES;
    const KIND_NAME: &'static str = "node figures";
    const VERSION: u8 = 1;
}

/// What happened in one scope (cumulative since the node started, or a delta).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeStats {
    pub requests: u64,
    /// Responses with a 4xx status: the client's mistake.
    pub client_errors: u64,
    /// Responses with a 5xx status (or a failed invocation): the system's failure.
    pub server_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Wasm fuel consumed (compute scopes).
    pub fuel: u64,
    pub latency: Histogram,
}

impl ScopeStats {
    pub fn merge(&mut self, other: &ScopeStats) {
        // Figures come from peers: saturate rather than overflow (a peer's `u64::MAX` must
        // not panic a debug build or wrap a release one).
        self.requests = self.requests.saturating_add(other.requests);
        self.client_errors = self.client_errors.saturating_add(other.client_errors);
        self.server_errors = self.server_errors.saturating_add(other.server_errors);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.fuel = self.fuel.saturating_add(other.fuel);
        self.latency.merge(&other.latency);
    }

    /// What happened between the cumulative snapshot `earlier` and this one.
    pub fn since(&self, earlier: &ScopeStats) -> ScopeStats {
        ScopeStats {
            requests: self.requests.saturating_sub(earlier.requests),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            fuel: self.fuel.saturating_sub(earlier.fuel),
            latency: self.latency.since(&earlier.latency),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.bytes_in == 0 && self.bytes_out == 0 && self.fuel == 0
    }
}

/// The machine a node runs on, as of the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStats {
    pub cpu_cores: u32,
    /// Busy CPU in thousandths of a core.
    pub cpu_busy_millis: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    /// Bytes received and sent over the network since the machine started.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// How a node sees its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    pub alive: u32,
    pub suspect: u32,
    pub dead: u32,
    pub left: u32,
    /// Mean SWIM probe round trip in microseconds.
    pub probe_rtt_us: u64,
}

/// Most peer round trips a summary carries.
pub const MAX_PEER_RTTS: usize = 256;

/// The smoothed round trip of the summarising node's direct probes to one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRtt {
    pub node: NodeId,
    pub rtt_us: u32,
}

/// One node's gossiped summary. Counters are cumulative since `started_ms`, so a receiver
/// recovers what happened between two summaries by subtraction and a lost summary costs
/// nothing. Its size is bounded: at most [`crate::MAX_SCOPES`] scopes and
/// [`MAX_PEER_RTTS`] peer round trips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node: NodeId,
    /// When this run of the node started; a new value means counters restarted from zero.
    pub started_ms: u64,
    /// Increases with every summary of this run.
    pub seq: u64,
    pub at_ms: u64,
    pub system: SystemStats,
    pub peers: PeerCounts,
    /// Distinct tenants active on this node in the last minute.
    pub active_tenants: u32,
    pub scopes: BTreeMap<String, ScopeStats>,
    /// Measured round trips to peers (format version 2 and later).
    pub peer_rtts: Vec<PeerRtt>,
}

impl NodeSummary {
    /// What happened between `earlier` (this node's previous summary, if any) and this
    /// summary, per scope, leaving out scopes where nothing did. `None` if this summary is
    /// not newer than `earlier`. A summary of a new run counts whole: its counters started
    /// from zero.
    pub fn scopes_since(
        &self,
        earlier: Option<&NodeSummary>,
    ) -> Option<BTreeMap<String, ScopeStats>> {
        match earlier {
            Some(last) if last.started_ms == self.started_ms => {
                if self.seq <= last.seq {
                    return None;
                }
                Some(
                    self.scopes
                        .iter()
                        .map(|(k, v)| {
                            let delta = last.scopes.get(k).map(|e| v.since(e));
                            (k.clone(), delta.unwrap_or_else(|| v.clone()))
                        })
                        .filter(|(_, v)| !v.is_empty())
                        .collect(),
                )
            }
            Some(last) if self.started_ms < last.started_ms => None,
            _ => Some(self.scopes.clone()),
        }
    }
}

/// Format version 1 of [`NodeSummary`], without peer round trips.
#[derive(Deserialize)]
struct NodeSummaryV1 {
    node: NodeId,
    started_ms: u64,
    seq: u64,
    at_ms: u64,
    system: SystemStats,
    peers: PeerCounts,
    active_tenants: u32,
    scopes: BTreeMap<String, ScopeStats>,
}

impl Versioned for NodeSummary {
    const KIND_TAG: u8 = kinds::NODE_SUMMARY;
    const KIND_NAME: &'static str = "node summary";
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        if version != 1 {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        let v1: NodeSummaryV1 = xnode_wire::decode_body::<Self, _>(body)?;
        Ok(NodeSummary {
            node: v1.node,
            started_ms: v1.started_ms,
            seq: v1.seq,
            at_ms: v1.at_ms,
            system: v1.system,
            peers: v1.peers,
            active_tenants: v1.active_tenants,
            scopes: v1.scopes,
            peer_rtts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(windows: Vec<(u64, BTreeMap<String, ScopeStats>)>) -> NodeFigures {
        NodeFigures {
            summary: NodeSummary {
                node: xnode_types::SecretKey::generate().node_id(),
                started_ms: 1,
                seq: 1,
                at_ms: 2,
                system: SystemStats::default(),
                peers: PeerCounts::default(),
                active_tenants: 0,
                scopes: BTreeMap::new(),
                peer_rtts: Vec::new(),
            },
            windows,
        }
    }

    fn scopes(n: usize) -> BTreeMap<String, ScopeStats> {
        (0..n)
            .map(|i| (format!("bucket:b{i}"), ScopeStats::default()))
            .collect()
    }

    #[test]
    fn figures_from_a_peer_have_known_windows_and_bounded_scopes() {
        let known: Vec<_> = crate::WINDOWS
            .iter()
            .map(|(_, ms)| (*ms, scopes(3)))
            .collect();
        assert!(figures(known.clone()).is_well_formed());
        assert!(figures(Vec::new()).is_well_formed());
        assert!(figures(vec![(60_000, scopes(crate::MAX_SCOPES + 1))]).is_well_formed());

        assert!(!figures(vec![(60_001, scopes(1))]).is_well_formed());
        assert!(!figures(vec![(60_000, scopes(crate::MAX_SCOPES + 2))]).is_well_formed());
        let mut too_many = known;
        too_many.push((60_000, scopes(1)));
        assert!(!figures(too_many).is_well_formed());
    }

    #[test]
    fn figures_round_trip_on_the_wire() {
        let f = figures(vec![(300_000, scopes(2))]);
        let bytes = xnode_wire::encode(&f).unwrap();
        assert_eq!(
            xnode_wire::decode::<NodeFigures>(&bytes, 1 << 20).unwrap(),
            f
        );
        assert!(
            xnode_wire::decode::<NodeFigures>(&[kinds::NODE_FIGURES, 1, 0xff], 1 << 20).is_err()
        );
    }
}
