//! DSMP, the Xnode mesh: libp2p transport, membership and failure detection, gossip and RPC.
//!
//! A [`Mesh`] owns one libp2p swarm (TCP and QUIC, Noise, Yamux, Identify, Kademlia,
//! Gossipsub, mDNS and two request-response protocols) running on a background task, the
//! *driver*. Callers talk to it through this cheap, cloneable handle:
//!
//! - membership: [`Mesh::members`] and [`Mesh::events`] (SWIM failure detection, see
//!   [`swim`]);
//! - gossip: [`Mesh::subscribe`] and [`Mesh::publish`] on named topics; a message is
//!   forwarded to other peers only once its subscriber accepted it
//!   ([`Mesh::report_validation`], see [`validation`]);
//! - RPC: [`Mesh::serve`] registers a named service, [`Mesh::request`] calls one on a peer;
//! - fault injection for tests and drills: [`Mesh::set_faults`];
//! - with the `rogue` cargo feature (for tests and drills; it lets this node send arbitrary
//!   protocol messages), raw SWIM requests: `Mesh::send_swim_raw`.
//!
//! Liveness is signed: only a node can say it is alive or has left ([`liveness`]).
//!
//! The mesh knows nothing of storage, compute or HTTP. Nodes on different *networks*
//! (see [`MeshConfig::network`]) use different protocol names and never talk to each other.

mod behaviour;
mod codec;
mod driver;
pub mod faults;
mod legacy;
pub mod liveness;
mod metrics;
pub mod proto;
pub mod protocol;
mod ratelimit;
pub mod rpc;
pub mod swim;
pub mod validation;
pub mod vivaldi;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use libp2p::{Multiaddr, multiaddr};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use xnode_types::{NodeId, SecretKey};

pub use faults::{FaultRules, Faults, LinkFault, MAX_LINK_DELAY};
pub use liveness::{LivenessError, LivenessRecord, SelfStatus};
pub use metrics::MeshMetrics;
pub use proto::{RpcErrorCode, RpcResponse};
pub use protocol::{PeerProtocol, ProtocolRange, ProtocolVersion};
pub use rpc::{Endpoint, Handler, QuorumError, RpcError, Server, Service};
pub use swim::{MemberState, MembershipUpdate, SwimConfig};
pub use validation::{GossipId, Validation};

/// Configuration of the mesh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshConfig {
    /// Multiaddrs to listen on (TCP and/or QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers to contact at start and whenever this node has no connection at all.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// The network name. Nodes only talk to nodes of the same network.
    pub network: String,
    /// Failure detector timing.
    pub swim: SwimConfig,
    /// How often a random peer is asked for its whole membership view, while the table
    /// holds at most 32 members; beyond that, one interval more each time the table
    /// doubles ([`swim::scaled_push_pull_interval`]).
    #[serde(with = "secs")]
    pub push_pull_interval: Duration,
    /// The node-to-node protocol versions this node advertises and accepts (see
    /// [`protocol`]); this release's own unless a drill or test overrides it.
    #[serde(default)]
    pub protocol: ProtocolRange,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            network: "xnode".into(),
            swim: SwimConfig::default(),
            push_pull_interval: Duration::from_secs(10),
            protocol: ProtocolRange::default(),
        }
    }
}

/// Errors from the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("invalid mesh configuration: {0}")]
    Config(String),
    #[error("the mesh has shut down")]
    Closed,
    /// The request never left this node (the peer could not be dialled, or speaks none of
    /// our protocols): it certainly did not run there.
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable { peer: NodeId, reason: String },
    /// The connection carrying the request closed before the answer came (the peer's
    /// process died, or the link broke): the request may or may not have run there.
    #[error(
        "the connection to {peer} closed before it answered (the request may or may not have run): {reason}"
    )]
    ConnectionLost { peer: NodeId, reason: String },
    #[error("request to {peer} timed out after {timeout:?}")]
    Timeout { peer: NodeId, timeout: Duration },
    #[error("peer {peer} answered {code:?}: {message}")]
    Remote {
        peer: NodeId,
        code: RpcErrorCode,
        message: String,
    },
    #[error("malformed message from {peer}: {reason}")]
    Malformed { peer: NodeId, reason: String },
    #[error("could not publish on {topic}: {reason}")]
    Publish { topic: String, reason: String },
    #[error("cannot encode a {what} message: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: xnode_wire::WireError,
    },
}

/// What this node knows about one member of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub state: MemberState,
    pub incarnation: u64,
    pub addresses: Vec<String>,
    /// Unix milliseconds of the last time this node heard from the member directly.
    pub last_seen_ms: Option<u64>,
    /// Unix milliseconds since which the member has been in its current state.
    pub state_since_ms: u64,
    /// Whether this node has an open connection to the member.
    pub connected: bool,
    /// Smoothed round trip of this node's direct probes to the member, in microseconds.
    pub rtt_us: Option<u64>,
    /// The round trip to the member estimated from both network coordinates, in
    /// microseconds; `None` until the member's coordinate is known.
    #[serde(default)]
    pub estimated_rtt_us: Option<u64>,
}

/// This node's network coordinate and the last known coordinate of each live peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoordinateTable {
    pub own: vivaldi::Coordinate,
    pub peers: HashMap<NodeId, vivaldi::Coordinate>,
}

/// Changes the mesh reports to the rest of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshEvent {
    /// A member changed state or incarnation.
    MemberChanged {
        node: NodeId,
        state: MemberState,
        incarnation: u64,
    },
    /// This node raised its own incarnation to refute a rumour; persist it.
    LocalIncarnation(u64),
    /// A connection to a peer of this network was opened.
    PeerConnected(NodeId),
}

/// A gossip message delivered to a subscriber.
#[derive(Clone, Debug)]
pub struct GossipMessage {
    /// The node that published it (authenticated by its signature).
    pub source: NodeId,
    pub data: Vec<u8>,
    /// Identifies the message for [`Mesh::report_validation`]: it is forwarded to other
    /// peers only if the subscriber accepts it.
    pub id: GossipId,
}

/// An RPC request delivered to the service that registered for it.
#[derive(Debug)]
pub struct InboundRequest {
    pub from: NodeId,
    /// Shares the memory of the frame it arrived in.
    pub body: bytes::Bytes,
    pub reply: oneshot::Sender<Result<Vec<u8>, (RpcErrorCode, String)>>,
}

pub(crate) enum Command {
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    Request {
        peer: NodeId,
        service: String,
        /// The encoded [`proto::RpcRequest`], made by the caller (not on the driver's task).
        envelope: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, MeshError>>,
        delayed: bool,
    },
    Subscribe {
        topic: String,
    },
    RespondRpc {
        /// The peer that asked, whose link the answer travels.
        peer: NodeId,
        channel: libp2p::request_response::ResponseChannel<Vec<u8>>,
        bytes: Vec<u8>,
    },
    ObserveNode {
        node: NodeId,
        addresses: Vec<String>,
        incarnation: u64,
        left: bool,
    },
    ApplyFaults {
        rules: FaultRules,
        reply: oneshot::Sender<()>,
    },
    ReportValidation {
        id: GossipId,
        verdict: Validation,
    },
    PeerScore {
        peer: NodeId,
        reply: oneshot::Sender<Option<f64>>,
    },
    #[cfg(feature = "rogue")]
    SwimRaw {
        peer: NodeId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, MeshError>>,
    },
    Dial(Multiaddr),
    Leave {
        linger: Duration,
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct Shared {
    pub members: RwLock<Vec<MemberInfo>>,
    pub listen_addrs: RwLock<Vec<Multiaddr>>,
    pub local_incarnation: AtomicU64,
    pub services: RwLock<HashMap<String, mpsc::Sender<InboundRequest>>>,
    pub topics: RwLock<HashMap<String, mpsc::Sender<GossipMessage>>>,
    pub faults: Faults,
    pub events: broadcast::Sender<MeshEvent>,
    pub network: String,
    /// What each peer advertised in its last Identify, and whether it was refused.
    pub peer_protocols: RwLock<HashMap<NodeId, PeerProtocol>>,
    pub protocol: ProtocolRange,
    pub coordinates: RwLock<CoordinateTable>,
}

/// A handle to the running mesh. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    local: NodeId,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

impl Mesh {
    /// Starts the mesh: binds every listen address (failing fast with a clear error if one
    /// is taken or invalid), dials the bootstrap peers and runs the driver until
    /// [`Mesh::leave`] completes or the returned task is aborted (a crash, for tests).
    pub async fn start(
        config: MeshConfig,
        key: &SecretKey,
        incarnation: u64,
        metrics: MeshMetrics,
    ) -> Result<(Mesh, tokio::task::JoinHandle<()>), MeshError> {
        driver::start(config, key, incarnation, metrics).await
    }

    pub(crate) fn from_parts(
        local: NodeId,
        commands: mpsc::Sender<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            local,
            commands,
            shared,
        }
    }

    pub fn local_id(&self) -> NodeId {
        self.local
    }

    pub fn network(&self) -> &str {
        &self.shared.network
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.shared.local_incarnation.load(Ordering::Relaxed)
    }

    /// The addresses this node listens on (with unspecified IPs expanded).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        read(&self.shared.listen_addrs)
    }

    /// The protocol range this node advertises.
    pub fn protocol(&self) -> ProtocolRange {
        self.shared.protocol
    }

    /// What each peer this node has identified advertised, with the version the two talk
    /// at, or why this node refuses it. A refused peer's messages are dropped and its
    /// connections closed.
    pub fn peer_protocols(&self) -> HashMap<NodeId, PeerProtocol> {
        read(&self.shared.peer_protocols)
    }

    /// The protocol version this node and `peer` talk at, once the peer has identified
    /// itself; `None` before that, or when it is refused.
    pub fn negotiated_protocol(&self, peer: &NodeId) -> Option<ProtocolVersion> {
        let table = match self.shared.peer_protocols.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        table.get(peer).and_then(|p| p.negotiated)
    }

    /// Every member this node knows of, except itself.
    pub fn members(&self) -> Vec<MemberInfo> {
        read(&self.shared.members)
    }

    /// This node's network coordinate and its live peers' ones.
    pub fn coordinates(&self) -> CoordinateTable {
        read(&self.shared.coordinates)
    }

    /// The round trip to `peer` estimated from network coordinates: zero for this node,
    /// `None` when the peer's coordinate is not known.
    pub fn estimated_rtt(&self, peer: &NodeId) -> Option<Duration> {
        if *peer == self.local {
            return Some(Duration::ZERO);
        }
        let table = match self.shared.coordinates.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        table.own.estimate_rtt(table.peers.get(peer)?)
    }

    /// Sorts `nodes` nearest first by estimated round trip: this node first, then peers by
    /// estimate, then peers without one, each group keeping its given order (the sort is
    /// stable, so callers' own preference breaks ties).
    pub fn sort_by_distance(&self, nodes: &mut [NodeId]) {
        let table = read(&self.shared.coordinates);
        nodes.sort_by_cached_key(|node| {
            if *node == self.local {
                return (0u8, 0u64);
            }
            match table
                .peers
                .get(node)
                .and_then(|c| table.own.estimate_rtt(c))
            {
                Some(rtt) => (1, u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                None => (2, 0),
            }
        });
    }

    /// Subscribes to membership and connection events.
    pub fn events(&self) -> broadcast::Receiver<MeshEvent> {
        self.shared.events.subscribe()
    }

    fn full_topic(&self, topic: &str) -> String {
        format!("xnode/{}/{}", self.shared.network, topic)
    }

    /// Receives gossip published on `topic` by other nodes. One subscriber per topic.
    ///
    /// The subscriber judges each message and reports it with
    /// [`Mesh::report_validation`]: only accepted messages are forwarded to other peers,
    /// rejected ones count against the peers that sent them, and a message not judged
    /// within [`validation::VALIDATION_TIMEOUT`] is dropped without penalty.
    pub async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<GossipMessage>, MeshError> {
        let (tx, rx) = mpsc::channel(4096);
        let full = self.full_topic(topic);
        match self.shared.topics.write() {
            Ok(mut t) => t.insert(full.clone(), tx),
            Err(p) => p.into_inner().insert(full.clone(), tx),
        };
        self.commands
            .send(Command::Subscribe { topic: full })
            .await
            .map_err(|_| MeshError::Closed)?;
        Ok(rx)
    }

    /// Publishes `data` to every node subscribed to `topic`. Having no peers yet is not an
    /// error: anti-entropy delivers what gossip could not.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish {
                topic: self.full_topic(topic),
                data,
                reply,
            })
            .await
            .map_err(|_| MeshError::Closed)?;
        rx.await.map_err(|_| MeshError::Closed)?
    }

    /// Reports a subscriber's verdict on a gossip message (see [`Mesh::subscribe`]). It never
    /// blocks: if the mesh is too busy to take it, the message times out as ignored.
    pub fn report_validation(&self, id: &GossipId, verdict: Validation) {
        let _ = self.commands.try_send(Command::ReportValidation {
            id: id.clone(),
            verdict,
        });
    }

    /// This node's gossipsub score of `peer`: negative once the peer sent invalid gossip
    /// (see [`validation`]); `None` if this node has no score for it.
    pub async fn peer_score(&self, peer: NodeId) -> Result<Option<f64>, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::PeerScore { peer, reply })
            .await
            .map_err(|_| MeshError::Closed)?;
        rx.await.map_err(|_| MeshError::Closed)
    }

    /// Sends raw bytes as a SWIM request to `peer` and returns the raw answer. For tests
    /// and drills only (the `rogue` feature): it lets this node send what a modified binary
    /// could.
    #[cfg(feature = "rogue")]
    pub async fn send_swim_raw(
        &self,
        peer: NodeId,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SwimRaw { peer, bytes, reply })
            .await
            .map_err(|_| MeshError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MeshError::Closed),
            Err(_) => Err(MeshError::Timeout { peer, timeout }),
        }
    }

    /// Registers an RPC service and returns the stream of its inbound requests.
    pub fn serve(&self, service: &str) -> mpsc::Receiver<InboundRequest> {
        let (tx, rx) = mpsc::channel(1024);
        match self.shared.services.write() {
            Ok(mut s) => s.insert(service.to_owned(), tx),
            Err(p) => p.into_inner().insert(service.to_owned(), tx),
        };
        rx
    }

    /// Calls `service` on `peer` and waits at most `timeout` for its answer.
    pub async fn request(
        &self,
        peer: NodeId,
        service: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MeshError> {
        let envelope = xnode_wire::encode(&proto::RpcRequest {
            service: service.to_owned(),
            body,
        })
        .map_err(|source| MeshError::Encode {
            what: "rpc request",
            source,
        })?;
        self.request_envelope(peer, service, envelope, timeout)
            .await
    }

    /// Sends an encoded [`proto::RpcRequest`] to `service` on `peer` and waits at most
    /// `timeout` for the answer's body.
    pub(crate) async fn request_envelope(
        &self,
        peer: NodeId,
        service: &str,
        envelope: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                service: service.to_owned(),
                envelope,
                reply,
                delayed: false,
            })
            .await
            .map_err(|_| MeshError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MeshError::Closed),
            Err(_) => Err(MeshError::Timeout { peer, timeout }),
        }
    }

    /// Tells the mesh about a node learned elsewhere (the registry): its addresses and
    /// incarnation, and whether it has left.
    pub async fn observe_node(
        &self,
        node: NodeId,
        addresses: Vec<String>,
        incarnation: u64,
        left: bool,
    ) {
        let _ = self
            .commands
            .send(Command::ObserveNode {
                node,
                addresses,
                incarnation,
                left,
            })
            .await;
    }

    /// Dials an address (for example a bootstrap peer added at run time).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), MeshError> {
        self.commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| MeshError::Closed)
    }

    /// Replaces the fault rules in force (tests and drills only). Returns once the driver
    /// applies them, so [`Mesh::faults`] reads them back at once.
    pub async fn set_faults(&self, rules: FaultRules) -> Result<(), MeshError> {
        let (reply, applied) = oneshot::channel();
        self.commands
            .send(Command::ApplyFaults { rules, reply })
            .await
            .map_err(|_| MeshError::Closed)?;
        applied.await.map_err(|_| MeshError::Closed)
    }

    pub fn faults(&self) -> FaultRules {
        self.shared.faults.get()
    }

    /// Announces that this node is leaving, gives the announcement `linger` to spread, then
    /// stops the driver.
    pub async fn leave(&self, linger: Duration) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Leave { linger, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
