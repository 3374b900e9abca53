//! The mesh driver: the one task that owns the libp2p swarm and the SWIM membership.
//!
//! Everything that touches the swarm happens here, in a single `select!` loop over swarm
//! events, commands from [`crate::Mesh`] handles and a 50 ms tick that drives probe
//! deadlines, suspicion timeouts and periodic work. Nothing in the loop blocks: replies to
//! RPCs are produced by the serving subsystem on its own task and sent back as commands.
//!
//! The driver's code is split by concern into child modules (`gossip`, `swim_io`) that
//! add methods to the same `Driver`: there is still one owner of the swarm.

mod gossip;
mod swim_io;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, Swarm, gossipsub, identify, kad, mdns, multiaddr::Protocol};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use xnode_types::{NodeId, SecretKey};

use crate::behaviour::{Behaviour, BehaviourEvent, RPC_REQUEST_TIMEOUT, protocol_version};
use crate::metrics::{MeshMetrics, ReasonLabel, ResultLabel, ServiceLabel, StateLabel, TopicLabel};
use crate::proto::{MAX_RPC_BYTES, RpcErrorCode, RpcRequest, RpcResponse};
use crate::protocol::PeerProtocol;
use crate::ratelimit::SwimInboundLimits;
use crate::swim::engine::Engine;
use crate::swim::{MemberState, Membership};
use crate::validation::{self, PendingValidations};
use crate::{
    Command, FaultRules, InboundRequest, MemberInfo, Mesh, MeshConfig, MeshError, MeshEvent, Shared,
};

const MEMBERSHIP_TOPIC: &str = "membership";
const TICK: Duration = Duration::from_millis(50);
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(2);
/// How many connected strangers one join retry pushes to.
const JOIN_RETRY_FANOUT: usize = 3;
const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);
/// How often hearsay members that died unverified are forgotten and idle rate-limit
/// buckets dropped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);
/// How stale the shared view of the members may grow when nothing changes in the table.
/// Every change (a state, a round trip, a merge, a connection) refreshes it at once; the
/// periodic refresh only moves `last_seen` on, so it need not run at every tick.
const SHARED_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn start(
    config: MeshConfig,
    key: &SecretKey,
    incarnation: u64,
    metrics: MeshMetrics,
) -> Result<(Mesh, tokio::task::JoinHandle<()>), MeshError> {
    if config.network.is_empty()
        || !config
            .network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(MeshError::Config(format!(
            "network name {:?} must be non-empty ASCII letters, digits, '-' or '_'",
            config.network
        )));
    }
    if config.listen.is_empty() {
        return Err(MeshError::Config("no listen address given".into()));
    }
    let behaviour = Behaviour::new(&config, key)?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.to_libp2p_keypair())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| MeshError::Config(format!("tcp transport: {e}")))?
        .with_quic_config(|mut c| {
            // A dead peer's QUIC port answers nothing; do not let a dial hang for long.
            c.handshake_timeout = Duration::from_secs(2);
            c
        })
        .with_behaviour(|_| behaviour)
        .map_err(|e| MeshError::Config(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();

    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| MeshError::Listen {
                addr: addr.to_string(),
                reason: listen_reason(&e),
            })?;
    }
    let topic =
        gossipsub::IdentTopic::new(format!("xnode/{}/{}", config.network, MEMBERSHIP_TOPIC));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| MeshError::Config(format!("gossipsub subscribe: {e}")))?;
    swarm
        .behaviour_mut()
        .gossipsub
        .set_topic_params(topic.clone(), validation::topic_score_params())
        .map_err(|e| MeshError::Config(format!("gossipsub scoring: {e}")))?;

    // Create the membership topic's series up front so dashboards see them from zero.
    let label = TopicLabel {
        topic: topic.to_string(),
    };
    let _ = metrics.gossip_in.get_or_create(&label);
    let _ = metrics.gossip_out.get_or_create(&label);
    let _ = metrics.gossip_bytes_in.get_or_create(&label);
    let _ = metrics.gossip_bytes_out.get_or_create(&label);
    for result in ["accept", "reject", "ignore", "timeout"] {
        let _ = metrics
            .gossip_validation
            .get_or_create(&ResultLabel { result });
    }
    for reason in swim_io::refusal_reasons() {
        let _ = metrics
            .membership_refused
            .get_or_create(&ReasonLabel { reason });
    }
    let _ = metrics.peers_refused.get_or_create(&ReasonLabel {
        reason: "incompatible_protocol",
    });
    for reason in [
        "rate_limited",
        "malformed",
        "oversized",
        "not_a_member",
        "bad_introduction",
        "forged",
    ] {
        let _ = metrics.swim_dropped.get_or_create(&ReasonLabel { reason });
    }
    for reason in [
        "fault_injected",
        "unsigned",
        "forged_subject",
        "malformed",
        "subscriber_full",
        "no_subscriber",
        "publish_failed",
    ] {
        let _ = metrics
            .gossip_dropped
            .get_or_create(&crate::metrics::ReasonLabel { reason });
    }
    let local = key.node_id();
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        members: Default::default(),
        listen_addrs: Default::default(),
        local_incarnation: incarnation.into(),
        services: Default::default(),
        topics: Default::default(),
        faults: Default::default(),
        events,
        network: config.network.clone(),
        peer_protocols: Default::default(),
        protocol: config.protocol,
        coordinates: Default::default(),
    });
    let (tx, rx) = mpsc::channel(4096);
    let (deferred_tx, deferred_rx) = mpsc::unbounded_channel();
    let topic_name = topic.to_string();
    let mut driver = Driver {
        swarm,
        swim: Engine::new(
            Membership::new(
                key.clone(),
                &config.network,
                incarnation,
                config.swim.clone(),
            ),
            config.push_pull_interval,
            Instant::now(),
        ),
        config,
        shared: shared.clone(),
        metrics,
        commands_tx: tx.clone(),
        deferred_tx,
        membership_topic: topic,
        subscribed_topics: HashSet::from([topic_name]),
        pending_validations: PendingValidations::default(),
        swim_limits: SwimInboundLimits::default(),
        last_housekeeping: Instant::now(),
        last_shared_refresh: Instant::now(),
        swim_pending: HashMap::new(),
        rpc_pending: HashMap::new(),
        connected: HashSet::new(),
        rtt_us: HashMap::new(),
        vivaldi: crate::vivaldi::VivaldiClient::new(seed_of(&local)),
        peer_coordinates: HashMap::new(),
        clock_base: (Instant::now(), unix_ms()),
        last_bootstrap_dial: None,
        last_join_retry: Instant::now(),
        last_kad_bootstrap: Instant::now(),
        leaving: None,
        refused: HashSet::new(),
    };
    // Wait for the listeners to report their addresses, so the first announcement and the
    // node's record carry them. Listening on loopback or a port is immediate.
    driver.await_listen_addrs().await;
    driver.dial_bootstrap();
    let handle = tokio::spawn(async move { driver.run(rx, deferred_rx).await });
    Ok((Mesh::from_parts(local, tx, shared), handle))
}

fn listen_reason<E: std::error::Error>(e: &libp2p::TransportError<E>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => {
            format!(
                "unsupported address {a} (use /ip4/HOST/tcp/PORT or /ip4/HOST/udp/PORT/quic-v1)"
            )
        }
        libp2p::TransportError::Other(inner) => {
            let mut text = inner.to_string();
            let mut source = inner.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            if text.contains("Address already in use") || text.contains("os error 98") {
                "the address is already in use (is another xnode running?)".into()
            } else {
                text
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the answer to an outbound RPC goes.
type RpcReply = oneshot::Sender<Result<Vec<u8>, MeshError>>;

/// What a SWIM request in flight belongs to, so its answer can be routed.
enum SwimPending {
    /// A request of the protocol engine, with its token.
    Engine(u64),
    /// A raw request sent through `Mesh::send_swim_raw`: the answer goes back as it is.
    #[cfg(feature = "rogue")]
    Raw { reply: RpcReply },
}

/// A frame held back by an injected link delay ([`crate::LinkFault`]); a timer task hands
/// it back to the driver when its delay is over, so one slow link never holds up another.
enum Deferred {
    SwimRequest {
        peer: NodeId,
        bytes: Vec<u8>,
        pending: SwimPending,
    },
    SwimResponse {
        channel: ResponseChannel<Vec<u8>>,
        bytes: Vec<u8>,
    },
    RpcResponse {
        channel: ResponseChannel<Vec<u8>>,
        bytes: Vec<u8>,
    },
    Gossip {
        message: gossipsub::Message,
        propagation_source: libp2p::PeerId,
        message_id: gossipsub::MessageId,
    },
}

struct Driver {
    swarm: Swarm<Behaviour>,
    /// The SWIM protocol (membership table, probes, push-pull), without its I/O.
    swim: Engine<ResponseChannel<Vec<u8>>>,
    config: MeshConfig,
    shared: Arc<Shared>,
    metrics: MeshMetrics,
    commands_tx: mpsc::Sender<Command>,
    /// Where timer tasks return frames delayed by fault injection.
    deferred_tx: mpsc::UnboundedSender<Deferred>,
    membership_topic: gossipsub::IdentTopic,
    subscribed_topics: HashSet<String>,
    /// Gossip delivered to subscribers and waiting for their verdict.
    pending_validations: PendingValidations,
    swim_limits: SwimInboundLimits,
    last_housekeeping: Instant,
    /// When the shared view of the members was last rebuilt.
    last_shared_refresh: Instant,
    swim_pending: HashMap<OutboundRequestId, SwimPending>,
    rpc_pending: HashMap<OutboundRequestId, (NodeId, RpcReply)>,
    connected: HashSet<NodeId>,
    /// Smoothed round trip of direct probes per member, in microseconds.
    rtt_us: HashMap<NodeId, f64>,
    /// This node's network coordinate, fed by direct probes whose acks carry the peer's.
    vivaldi: crate::vivaldi::VivaldiClient,
    /// The last valid coordinate each peer acked with.
    peer_coordinates: HashMap<NodeId, crate::vivaldi::Coordinate>,
    clock_base: (Instant, u64),
    last_bootstrap_dial: Option<Instant>,
    /// When this node last pushed its table again to connected peers it does not know.
    last_join_retry: Instant,
    last_kad_bootstrap: Instant,
    leaving: Option<(Instant, oneshot::Sender<()>)>,
    /// Peers whose protocol range this node refuses: their messages are dropped.
    refused: HashSet<NodeId>,
}

impl Driver {
    async fn await_listen_addrs(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let expected = self.config.listen.len();
        let mut seen = 0usize;
        while seen < expected {
            let event = tokio::select! {
                e = self.swarm.select_next_some() => e,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            if let SwarmEvent::NewListenAddr { .. } = &event {
                seen += 1;
            }
            self.on_swarm_event(event);
        }
        self.publish_listen_addrs();
    }

    fn publish_listen_addrs(&mut self) {
        let addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        let mut expanded: Vec<Multiaddr> = Vec::new();
        // `listeners()` reports the bound addresses; NewListenAddr gave us the expanded
        // ones which we track in `shared.listen_addrs`. Keep whichever is more specific.
        let known = match self.shared.listen_addrs.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for a in known.into_iter().chain(addrs) {
            if !expanded.contains(&a) && !is_unspecified(&a) {
                expanded.push(a);
            }
        }
        // Prefer TCP first: it fails fast when a peer is gone.
        expanded.sort_by_key(|a| !a.iter().any(|p| matches!(p, Protocol::Tcp(_))));
        if let Ok(mut g) = self.shared.listen_addrs.write() {
            *g = expanded.clone();
        }
        self.swim
            .membership_mut()
            .set_local_addresses(expanded.iter().map(|a| a.to_string()).collect());
    }

    fn dial_bootstrap(&mut self) {
        self.last_bootstrap_dial = Some(Instant::now());
        for addr in self.config.bootstrap.clone() {
            let local = self.swim.membership().local().peer_id();
            if let Some(Protocol::P2p(peer)) = addr.iter().last()
                && peer == local
            {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
    }

    /// Pushes this node's table again to a few connected peers that are not members.
    ///
    /// The push-pull sent when a connection opens is what brings a new peer in. When it is
    /// lost (the peer was still starting and timed out, or the connection it went over
    /// closed), nothing else would repair it for a node that knows no other member: the
    /// periodic push-pull picks among known members, and the bootstrap redial waits for no
    /// connection at all. Such a node stayed connected and alone. At most a few peers are
    /// pushed to per retry, and the receiver's sync budget bounds what a peer costs.
    fn retry_joins(&mut self, now: Instant) {
        use rand::seq::SliceRandom;
        let membership = self.swim.membership();
        let strangers: Vec<NodeId> = self
            .connected
            .iter()
            .filter(|n| membership.member(n).is_none() && !self.refused.contains(n))
            .copied()
            .collect();
        if strangers.is_empty() {
            return;
        }
        // A random few, so strangers that never answer cannot keep the others waiting.
        let chosen: Vec<NodeId> = strangers
            .choose_multiple(&mut rand::thread_rng(), JOIN_RETRY_FANOUT)
            .copied()
            .collect();
        for node in chosen {
            tracing::debug!(%node, "connected to a peer that is not a member; pushing again");
            let by_digest = swim_io::speaks_digest(&self.shared, &node);
            self.swim.push_pull(node, now, by_digest);
        }
        self.run_swim_actions();
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut deferred: mpsc::UnboundedReceiver<Deferred>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Announce ourselves (useful after a restart: peers see the higher incarnation).
        self.broadcast(self.swim.membership().local_announcement());
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some(frame) = deferred.recv() => self.on_deferred(frame),
                _ = tick.tick() => {
                    if self.on_tick() {
                        break;
                    }
                }
            }
        }
        tracing::info!("mesh driver stopped");
    }

    // ----- injected link delay ------------------------------------------------------------

    /// Holds `frame` back for `delay` on a timer task of its own (tokio's timer wheel is
    /// the queue), so the driver loop never sleeps.
    fn defer(&self, delay: Duration, frame: Deferred) {
        let deferred = self.deferred_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The driver is gone only when the node stops; the frame dies with it.
            let _ = deferred.send(frame);
        });
    }

    fn on_deferred(&mut self, frame: Deferred) {
        match frame {
            Deferred::SwimRequest {
                peer,
                bytes,
                pending,
            } => self.transmit_swim_bytes(peer, bytes, pending),
            Deferred::SwimResponse { channel, bytes } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .swim
                    .send_response(channel, bytes);
            }
            Deferred::RpcResponse { channel, bytes } => {
                let _ = self.swarm.behaviour_mut().rpc.send_response(channel, bytes);
            }
            Deferred::Gossip {
                message,
                propagation_source,
                message_id,
            } => self.deliver_gossip(message, propagation_source, message_id),
        }
    }

    // ----- membership bookkeeping -------------------------------------------------------

    fn to_unix(&self, at: Instant) -> u64 {
        let (base_instant, base_ms) = self.clock_base;
        if at >= base_instant {
            base_ms + at.duration_since(base_instant).as_millis() as u64
        } else {
            base_ms.saturating_sub(base_instant.duration_since(at).as_millis() as u64)
        }
    }

    fn refresh_shared(&mut self) {
        self.last_shared_refresh = Instant::now();
        let mut infos: Vec<MemberInfo> = self
            .swim
            .membership()
            .members()
            .map(|m| MemberInfo {
                id: m.id,
                state: m.state,
                incarnation: m.incarnation,
                addresses: m.addresses().to_vec(),
                last_seen_ms: m.last_seen.map(|t| self.to_unix(t)),
                state_since_ms: self.to_unix(m.state_since),
                connected: self.connected.contains(&m.id),
                rtt_us: self.rtt_us.get(&m.id).map(|r| r.round() as u64),
                estimated_rtt_us: self
                    .peer_coordinates
                    .get(&m.id)
                    .and_then(|c| self.vivaldi.coordinate().estimate_rtt(c))
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            })
            .collect();
        // Coordinates of members no longer alive are dropped: routing must not prefer a
        // node because it was near once.
        let live: HashSet<NodeId> = infos
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        self.peer_coordinates.retain(|id, _| live.contains(id));
        {
            let mut table = match self.shared.coordinates.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            table.own = self.vivaldi.coordinate().clone();
            table.peers = self.peer_coordinates.clone();
        }
        infos.sort_by_key(|m| m.id);
        for state in MemberState::ALL {
            let n = infos.iter().filter(|m| m.state == state).count();
            self.metrics
                .peers
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(n as i64);
        }
        self.metrics
            .connected_peers
            .set(self.connected.len() as i64);
        self.shared.local_incarnation.store(
            self.swim.membership().local_incarnation(),
            Ordering::Relaxed,
        );
        if let Ok(mut g) = self.shared.members.write() {
            *g = infos;
        }
    }

    // ----- swarm events -----------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if let Ok(mut g) = self.shared.listen_addrs.write()
                    && !g.contains(&address)
                {
                    g.push(address);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                let node = NodeId::from(peer_id);
                if self.shared.faults.is_blocked(&node) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.connected.insert(node);
                self.swim.membership_mut().heard_from(&node, Instant::now());
                if num_established.get() == 1 {
                    let _ = self.shared.events.send(MeshEvent::PeerConnected(node));
                    let by_digest = swim_io::speaks_digest(&self.shared, &node);
                    self.swim.push_pull(node, Instant::now(), by_digest);
                    self.run_swim_actions();
                }
                self.refresh_shared();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let node = NodeId::from(peer_id);
                if num_established == 0 {
                    self.connected.remove(&node);
                    self.refresh_shared();
                    // A connection that broke (rather than idled out) is a strong hint the
                    // peer died: probe it now instead of waiting for its turn.
                    let broke = matches!(cause, Some(libp2p::swarm::ConnectionError::IO(_)));
                    if broke && self.leaving.is_none() {
                        tracing::debug!(%node, "connection broke; probing at once");
                        self.swim.start_probe(node, Instant::now());
                        self.run_swim_actions();
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        // A refused peer's messages are dropped: it may send some before its Identify
        // arrives and its connection is closed, and it may dial again.
        match &event {
            BehaviourEvent::Swim(request_response::Event::Message { peer, .. })
            | BehaviourEvent::Rpc(request_response::Event::Message { peer, .. })
                if self.refused.contains(&NodeId::from(*peer)) =>
            {
                return;
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source, ..
            }) if self.refused.contains(&NodeId::from(*propagation_source)) => return,
            _ => {}
        }
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != protocol_version(&self.config.network) {
                    tracing::debug!(%peer_id, version = %info.protocol_version, "peer of another network; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if !self.judge_protocol(NodeId::from(peer_id), &info.agent_version) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let addrs = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !is_unspecified(a))
                    .collect();
                for addr in dial_addresses(addrs) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let node = NodeId::from(peer);
                if self.swim.membership().member(&node).is_none()
                    && node != self.swim.membership().local()
                {
                    // A peer we did not know: connect, and the push-pull on connect
                    // brings it into the membership.
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addresses.into_vec())
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer)
                        && peer != self.swim.membership().local().peer_id()
                    {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            }) => {
                self.on_gossip(message, propagation_source, message_id);
            }
            BehaviourEvent::Swim(event) => self.on_swim_event(event),
            BehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            _ => {}
        }
    }

    // ----- RPC --------------------------------------------------------------------------

    /// Judges a peer's advertised protocol range against this node's, records the
    /// verdict for the nodes API, and returns whether the peer is accepted. A refusal is
    /// logged as a warning when it is new or its reason changed, and counted every time.
    fn judge_protocol(&mut self, node: NodeId, agent: &str) -> bool {
        let judged = PeerProtocol::judge(&self.config.protocol, agent, xnode_types::unix_ms());
        // A refusal is counted before the verdict is published in the table the nodes API
        // reads, so whoever sees a peer listed as refused also sees it counted.
        if judged.refused.is_some() {
            self.metrics
                .peers_refused
                .get_or_create(&ReasonLabel {
                    reason: "incompatible_protocol",
                })
                .inc();
        }
        let previous = {
            let mut table = match self.shared.peer_protocols.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            table.insert(node, judged.clone())
        };
        match &judged.refused {
            Some(reason) => {
                if previous.and_then(|p| p.refused).as_ref() != Some(reason) {
                    tracing::warn!(%node, agent = %judged.agent, ours = %self.config.protocol, %reason, "refusing a peer of an incompatible protocol version");
                }
                self.refused.insert(node);
                false
            }
            None => {
                if self.refused.remove(&node) {
                    tracing::info!(%node, agent = %judged.agent, "a refused peer now speaks a compatible protocol version");
                }
                true
            }
        }
    }

    fn on_rpc_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_rpc_request(NodeId::from(peer), request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.rpc_pending.remove(&request_id) {
                        let result =
                            match xnode_wire::decode::<RpcResponse>(&response, MAX_RPC_BYTES) {
                                Ok(RpcResponse::Ok(body)) => Ok(body),
                                Ok(RpcResponse::Err { code, message }) => Err(MeshError::Remote {
                                    peer,
                                    code,
                                    message,
                                }),
                                Err(e) => Err(MeshError::Malformed {
                                    peer,
                                    reason: e.to_string(),
                                }),
                            };
                        let _ = reply.send(result);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.rpc_pending.remove(&request_id) {
                    let _ = reply.send(Err(outbound_failure_error(NodeId::from(peer), &error)));
                }
            }
            _ => {}
        }
    }

    fn on_rpc_request(
        &mut self,
        from: NodeId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        if self.shared.faults.should_drop() || self.shared.faults.is_blocked(&from) {
            return;
        }
        let respond_err = |driver: &mut Self, channel, code, message: String| {
            if let Ok(bytes) = xnode_wire::encode(&RpcResponse::Err { code, message }) {
                driver.respond_rpc(from, channel, bytes);
            }
        };
        let (service, body) = match RpcRequest::decode_shared(request, MAX_RPC_BYTES) {
            Ok(r) => r,
            Err(e) => return respond_err(self, channel, RpcErrorCode::BadRequest, e.to_string()),
        };
        self.metrics
            .rpc_requests
            .get_or_create(&ServiceLabel {
                service: service.clone(),
                direction: "in",
            })
            .inc();
        let handler = match self.shared.services.read() {
            Ok(s) => s.get(&service).cloned(),
            Err(p) => p.into_inner().get(&service).cloned(),
        };
        let Some(handler) = handler else {
            let message = format!("no service {service:?} on this node");
            return respond_err(self, channel, RpcErrorCode::UnknownService, message);
        };
        let (reply, answer) = oneshot::channel();
        let inbound = InboundRequest { from, body, reply };
        if handler.try_send(inbound).is_err() {
            return respond_err(
                self,
                channel,
                RpcErrorCode::Overloaded,
                format!("service {service:?} is overloaded"),
            );
        }
        let commands = self.commands_tx.clone();
        tokio::spawn(async move {
            let response = match answer.await {
                Ok(Ok(body)) => RpcResponse::Ok(body),
                Ok(Err((code, message))) => RpcResponse::Err { code, message },
                Err(_) => RpcResponse::Err {
                    code: RpcErrorCode::Internal,
                    message: "the service dropped the request".into(),
                },
            };
            if let Ok(bytes) = xnode_wire::encode(&response) {
                let _ = commands
                    .send(Command::RespondRpc {
                        peer: from,
                        channel,
                        bytes,
                    })
                    .await;
            }
        });
    }

    /// Answers an RPC from `peer`, after the injected delay of the link back to it.
    fn respond_rpc(&mut self, peer: NodeId, channel: ResponseChannel<Vec<u8>>, bytes: Vec<u8>) {
        let delay = self.shared.faults.link_delay(&peer);
        if delay.is_zero() {
            let _ = self.swarm.behaviour_mut().rpc.send_response(channel, bytes);
        } else {
            self.defer(delay, Deferred::RpcResponse { channel, bytes });
        }
    }

    // ----- commands ---------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                self.subscribe_topic(topic.clone());
                let result = self.publish_raw(gossipsub::IdentTopic::new(topic), data);
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                service,
                envelope,
                reply,
                delayed,
            } => {
                if self.shared.faults.is_blocked(&peer) {
                    let _ = reply.send(Err(MeshError::Unreachable {
                        peer,
                        reason: "partitioned by fault injection".into(),
                    }));
                    return;
                }
                let delay = self
                    .shared
                    .faults
                    .delay()
                    .saturating_add(self.shared.faults.link_delay(&peer));
                if !delayed && !delay.is_zero() {
                    let commands = self.commands_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = commands
                            .send(Command::Request {
                                peer,
                                service,
                                envelope,
                                reply,
                                delayed: true,
                            })
                            .await;
                    });
                    return;
                }
                if self.shared.faults.link_drops(&peer) {
                    // Lost: the caller's timeout fires.
                    std::mem::forget(reply);
                    return;
                }
                self.metrics
                    .rpc_requests
                    .get_or_create(&ServiceLabel {
                        service: service.clone(),
                        direction: "out",
                    })
                    .inc();
                let addresses = self.addresses_of(&peer);
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(
                    &peer.peer_id(),
                    envelope,
                    addresses,
                );
                self.rpc_pending.insert(id, (peer, reply));
            }
            Command::Subscribe { topic } => self.subscribe_topic(topic),
            Command::ReportValidation { id, verdict } => self.on_verdict(id, verdict),
            Command::PeerScore { peer, reply } => {
                let score = self.swarm.behaviour().gossipsub.peer_score(&peer.peer_id());
                let _ = reply.send(score);
            }
            #[cfg(feature = "rogue")]
            Command::SwimRaw { peer, bytes, reply } => {
                self.send_swim_bytes(peer, bytes, SwimPending::Raw { reply });
            }
            Command::RespondRpc {
                peer,
                channel,
                bytes,
            } => self.respond_rpc(peer, channel, bytes),
            Command::ObserveNode {
                node,
                addresses,
                incarnation,
                left,
            } => {
                // The registry checked that the node signed this record itself.
                let applied = self.swim.membership_mut().observe_vouched(
                    node,
                    &addresses,
                    incarnation,
                    left,
                    Instant::now(),
                );
                self.swim.note_applied(&applied);
                self.run_swim_actions();
            }
            Command::ApplyFaults { rules, reply } => {
                self.apply_faults(rules);
                let _ = reply.send(());
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::Leave { linger, reply } => {
                let record = self.swim.membership_mut().leave();
                self.swim.set_leaving();
                tracing::info!("announcing departure");
                self.broadcast(crate::swim::MembershipUpdate::Signed(record));
                self.leaving = Some((Instant::now() + linger, reply));
            }
        }
    }

    fn apply_faults(&mut self, rules: FaultRules) {
        let before = self.shared.faults.get().cut_peers();
        let after = rules.cut_peers();
        for peer in after.difference(&before) {
            self.swarm
                .behaviour_mut()
                .blocked
                .block_peer(peer.peer_id());
        }
        for peer in before.difference(&after) {
            self.swarm
                .behaviour_mut()
                .blocked
                .unblock_peer(peer.peer_id());
        }
        tracing::warn!(?rules, "fault injection rules changed");
        self.shared.faults.set(rules);
    }

    // ----- periodic work ----------------------------------------------------------------

    /// Returns true when the driver should stop.
    fn on_tick(&mut self) -> bool {
        let now = Instant::now();
        if let Some((deadline, _)) = &self.leaving
            && now >= *deadline
        {
            if let Some((_, reply)) = self.leaving.take() {
                let _ = reply.send(());
            }
            return true;
        }
        if self.leaving.is_some() {
            return false;
        }

        self.expire_verdicts(now);
        if now.duration_since(self.last_housekeeping) >= HOUSEKEEPING_INTERVAL {
            self.last_housekeeping = now;
            let forgotten = self.swim.membership_mut().reap(now);
            if forgotten > 0 {
                tracing::debug!(forgotten, "forgot hearsay members that died unverified");
                self.refresh_shared();
            }
            self.swim_limits.prune(now);
        }
        // Probe deadlines, relays, refutations, suspicions, the next probes and push-pull.
        let shared = Arc::clone(&self.shared);
        self.swim.tick(now, &mut rand::thread_rng(), |peer| {
            swim_io::speaks_digest(&shared, peer)
        });
        self.run_swim_actions();
        if self.connected.is_empty()
            && !self.config.bootstrap.is_empty()
            && self
                .last_bootstrap_dial
                .is_none_or(|t| now.duration_since(t) >= BOOTSTRAP_RETRY)
        {
            self.dial_bootstrap();
        }
        if now.duration_since(self.last_join_retry) >= BOOTSTRAP_RETRY {
            self.last_join_retry = now;
            self.retry_joins(now);
        }
        if now.duration_since(self.last_kad_bootstrap) >= KAD_BOOTSTRAP_INTERVAL {
            self.last_kad_bootstrap = now;
            if !self.connected.is_empty() {
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
            }
        }
        // Keep last_seen fresh in the shared view at a modest rate.
        if now.duration_since(self.last_shared_refresh) >= SHARED_REFRESH_INTERVAL {
            self.refresh_shared();
        }
        false
    }
}

/// The addresses to dial a peer on: its TCP addresses when it has any, else all of them.
///
/// A TCP dial to a dead process fails at once (the port refuses), while a QUIC dial waits
/// for its handshake timeout. Preferring TCP lets the failure detector tell "gone" from
/// "slow" quickly; QUIC-only peers are still reachable.
/// The error a caller sees for a request that failed on its way out. libp2p fails every
/// request pending on a connection the moment that connection closes, so a peer killed
/// mid-call is noticed at once; the caller must know whether the request may have run,
/// because only then is repeating it elsewhere unsafe for a non-idempotent call.
fn outbound_failure_error(peer: NodeId, error: &request_response::OutboundFailure) -> MeshError {
    use request_response::OutboundFailure as F;
    match error {
        F::DialFailure | F::UnsupportedProtocols => MeshError::Unreachable {
            peer,
            reason: error.to_string(),
        },
        F::ConnectionClosed | F::Io(_) => MeshError::ConnectionLost {
            peer,
            reason: error.to_string(),
        },
        F::Timeout => MeshError::Timeout {
            peer,
            timeout: RPC_REQUEST_TIMEOUT,
        },
    }
}

fn dial_addresses(addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let is_tcp = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::Tcp(_)));
    if addrs.iter().any(is_tcp) {
        addrs.into_iter().filter(is_tcp).collect()
    } else {
        addrs
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// A seed for the Vivaldi client's tie-breaking directions, from the node's identity, so
/// nodes that start together at the origin push apart in different directions.
fn seed_of(node: &NodeId) -> u64 {
    let bytes = node.to_string().into_bytes();
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod outbound_failure_tests {
    use super::*;

    #[test]
    fn a_closed_connection_says_the_request_may_have_run_and_a_failed_dial_says_it_did_not() {
        let peer = NodeId::from(libp2p::PeerId::random());
        let closed =
            outbound_failure_error(peer, &request_response::OutboundFailure::ConnectionClosed);
        assert!(
            matches!(closed, MeshError::ConnectionLost { .. }),
            "{closed:?}"
        );
        assert!(closed.to_string().contains("may or may not have run"));
        let reset = outbound_failure_error(
            peer,
            &request_response::OutboundFailure::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )),
        );
        assert!(
            matches!(reset, MeshError::ConnectionLost { .. }),
            "{reset:?}"
        );
        let dial = outbound_failure_error(peer, &request_response::OutboundFailure::DialFailure);
        assert!(matches!(dial, MeshError::Unreachable { .. }), "{dial:?}");
    }
}
