//! Prometheus metrics owned by the mesh.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
    pub direction: &'static str,
}

/// Everything the mesh measures, registered under the `mesh_` prefix.
#[derive(Clone, Debug)]
pub struct MeshMetrics {
    pub peers: Family<StateLabel, Gauge>,
    pub connected_peers: Gauge,
    pub gossip_in: Family<TopicLabel, Counter>,
    pub gossip_out: Family<TopicLabel, Counter>,
    /// Payload bytes of gossip messages this node published (each sent once to each of
    /// its mesh peers by gossipsub) and received.
    pub gossip_bytes_out: Family<TopicLabel, Counter>,
    pub gossip_bytes_in: Family<TopicLabel, Counter>,
    pub gossip_dropped: Family<ReasonLabel, Counter>,
    pub probe_rtt_seconds: Histogram,
    pub probes: Family<ResultLabel, Counter>,
    pub membership_changes: Family<StateLabel, Counter>,
    pub rpc_requests: Family<ServiceLabel, Counter>,
    pub refutations: Counter,
    /// Verdicts on received gossip: accept, reject, ignore, or timeout (never judged).
    pub gossip_validation: Family<ResultLabel, Counter>,
    /// Membership updates refused, by the rule they broke.
    pub membership_refused: Family<ReasonLabel, Counter>,
    /// Inbound SWIM requests dropped unanswered, by reason.
    pub swim_dropped: Family<ReasonLabel, Counter>,
    /// Peers refused on connect, by reason (`incompatible_protocol`).
    pub peers_refused: Family<ReasonLabel, Counter>,
}

impl Default for MeshMetrics {
    fn default() -> Self {
        Self {
            peers: Family::default(),
            connected_peers: Gauge::default(),
            gossip_in: Family::default(),
            gossip_out: Family::default(),
            gossip_bytes_out: Family::default(),
            gossip_bytes_in: Family::default(),
            gossip_dropped: Family::default(),
            probe_rtt_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            probes: Family::default(),
            membership_changes: Family::default(),
            rpc_requests: Family::default(),
            refutations: Counter::default(),
            gossip_validation: Family::default(),
            membership_refused: Family::default(),
            swim_dropped: Family::default(),
            peers_refused: Family::default(),
        }
    }
}

impl MeshMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("mesh");
        r.register("peers", "Known peers by membership state", m.peers.clone());
        r.register(
            "connected_peers",
            "Peers with an open connection",
            m.connected_peers.clone(),
        );
        r.register(
            "gossip_messages_in",
            "Gossip messages received",
            m.gossip_in.clone(),
        );
        r.register(
            "gossip_messages_out",
            "Gossip messages published",
            m.gossip_out.clone(),
        );
        r.register_with_unit(
            "gossip_payload_out",
            "Payload bytes of gossip messages published",
            prometheus_client::registry::Unit::Bytes,
            m.gossip_bytes_out.clone(),
        );
        r.register_with_unit(
            "gossip_payload_in",
            "Payload bytes of gossip messages received",
            prometheus_client::registry::Unit::Bytes,
            m.gossip_bytes_in.clone(),
        );
        r.register(
            "gossip_messages_dropped",
            "Gossip messages dropped, by reason",
            m.gossip_dropped.clone(),
        );
        r.register(
            "probe_rtt_seconds",
            "Round-trip time of successful direct SWIM probes",
            m.probe_rtt_seconds.clone(),
        );
        r.register("probes", "SWIM probe rounds by outcome", m.probes.clone());
        r.register(
            "membership_changes",
            "Membership state changes applied, by new state",
            m.membership_changes.clone(),
        );
        r.register(
            "rpc_requests",
            "RPC requests by service and direction",
            m.rpc_requests.clone(),
        );
        r.register(
            "refutations",
            "Times this node refuted a suspicion about itself",
            m.refutations.clone(),
        );
        r.register(
            "gossip_validation",
            "Verdicts on received gossip messages (timeout: never judged)",
            m.gossip_validation.clone(),
        );
        r.register(
            "membership_refused",
            "Membership updates refused, by the rule they broke",
            m.membership_refused.clone(),
        );
        r.register(
            "swim_requests_dropped",
            "Inbound SWIM requests dropped unanswered, by reason",
            m.swim_dropped.clone(),
        );
        r.register(
            "peers_refused",
            "Connections closed because the peer speaks an incompatible protocol version",
            m.peers_refused.clone(),
        );
        m
    }
}
