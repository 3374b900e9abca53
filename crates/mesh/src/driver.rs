//! The mesh driver: the one task that owns the libp2p swarm and the SWIM membership.
//!
//! Everything that touches the swarm happens here, in a single `select!` loop over swarm
//! events, commands from [`crate::Mesh`] handles and a 50 ms tick that drives probe
//! deadlines, suspicion timeouts and periodic work. Nothing in the loop blocks: replies to
//! RPCs are produced by the serving subsystem on its own task and sent back as commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, multiaddr::Protocol};
use rand::seq::SliceRandom;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use xnode_types::{NodeId, SecretKey};

use crate::behaviour::{Behaviour, BehaviourEvent, protocol_version};
use crate::metrics::{MeshMetrics, ReasonLabel, ResultLabel, ServiceLabel, StateLabel, TopicLabel};
use crate::proto::{
    MAX_RPC_BYTES, MAX_SWIM_BYTES, RpcErrorCode, RpcRequest, RpcResponse, SwimRequest, SwimResponse,
};
use crate::swim::{Applied, MemberState, Membership, MembershipUpdate};
use crate::{
    Command, FaultRules, GossipMessage, InboundRequest, MemberInfo, Mesh, MeshConfig, MeshError,
    MeshEvent, Shared,
};

const MEMBERSHIP_TOPIC: &str = "membership";
const TICK: Duration = Duration::from_millis(50);
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(2);
const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);

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

    // Create the membership topic's series up front so dashboards see them from zero.
    let label = TopicLabel {
        topic: topic.to_string(),
    };
    let _ = metrics.gossip_in.get_or_create(&label);
    let _ = metrics.gossip_out.get_or_create(&label);
    let _ = metrics.gossip_bytes_in.get_or_create(&label);
    let _ = metrics.gossip_bytes_out.get_or_create(&label);
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
    });
    let (tx, rx) = mpsc::channel(4096);
    let mut driver = Driver {
        swarm,
        membership: Membership::new(local, incarnation, config.swim.clone()),
        config,
        shared: shared.clone(),
        metrics,
        commands_tx: tx.clone(),
        membership_topic: topic,
        subscribed_topics: HashSet::new(),
        rounds: HashMap::new(),
        swim_pending: HashMap::new(),
        rpc_pending: HashMap::new(),
        connected: HashSet::new(),
        rtt_us: HashMap::new(),
        clock_base: (Instant::now(), unix_ms()),
        last_bootstrap_dial: None,
        last_probe: Instant::now(),
        last_dead_probe: Instant::now(),
        last_push_pull: Instant::now(),
        last_kad_bootstrap: Instant::now(),
        leaving: None,
    };
    // Wait for the listeners to report their addresses, so the first announcement and the
    // node's record carry them. Listening on loopback or a port is immediate.
    driver.await_listen_addrs().await;
    driver.dial_bootstrap();
    let handle = tokio::spawn(async move { driver.run(rx).await });
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

/// An ongoing probe of one member.
struct Round {
    started: Instant,
    phase: Phase,
}

enum Phase {
    Direct {
        deadline: Instant,
    },
    Indirect {
        deadline: Instant,
        outstanding: usize,
    },
}

/// Why a SWIM request was sent, so its answer can be routed.
enum Purpose {
    Probe {
        target: NodeId,
        sent: Instant,
    },
    Indirect {
        target: NodeId,
    },
    Relay {
        channel: ResponseChannel<Vec<u8>>,
        deadline: Instant,
    },
    DeadProbe {
        target: NodeId,
    },
    Sync,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    membership: Membership,
    config: MeshConfig,
    shared: Arc<Shared>,
    metrics: MeshMetrics,
    commands_tx: mpsc::Sender<Command>,
    membership_topic: gossipsub::IdentTopic,
    subscribed_topics: HashSet<String>,
    rounds: HashMap<NodeId, Round>,
    swim_pending: HashMap<OutboundRequestId, Purpose>,
    rpc_pending: HashMap<OutboundRequestId, (NodeId, RpcReply)>,
    connected: HashSet<NodeId>,
    /// Smoothed round trip of direct probes per member, in microseconds.
    rtt_us: HashMap<NodeId, f64>,
    clock_base: (Instant, u64),
    last_bootstrap_dial: Option<Instant>,
    last_probe: Instant,
    last_dead_probe: Instant,
    last_push_pull: Instant,
    last_kad_bootstrap: Instant,
    leaving: Option<(Instant, oneshot::Sender<()>)>,
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
        self.membership
            .set_local_addresses(expanded.iter().map(|a| a.to_string()).collect());
    }

    fn dial_bootstrap(&mut self) {
        self.last_bootstrap_dial = Some(Instant::now());
        for addr in self.config.bootstrap.clone() {
            let local = self.membership.local().peer_id();
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

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Announce ourselves (useful after a restart: peers see the higher incarnation).
        self.broadcast(self.membership.local_alive());
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = tick.tick() => {
                    if self.on_tick() {
                        break;
                    }
                }
            }
        }
        tracing::info!("mesh driver stopped");
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
        let mut infos: Vec<MemberInfo> = self
            .membership
            .members()
            .map(|m| MemberInfo {
                id: m.id,
                state: m.state,
                incarnation: m.incarnation,
                addresses: m.addresses.clone(),
                last_seen_ms: m.last_seen.map(|t| self.to_unix(t)),
                state_since_ms: self.to_unix(m.state_since),
                connected: self.connected.contains(&m.id),
                rtt_us: self.rtt_us.get(&m.id).map(|r| r.round() as u64),
            })
            .collect();
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
        self.shared
            .local_incarnation
            .store(self.membership.local_incarnation(), Ordering::Relaxed);
        if let Ok(mut g) = self.shared.members.write() {
            *g = infos;
        }
    }

    /// Applies an update and reports what changed. Returns true if it changed anything.
    fn apply(&mut self, update: &MembershipUpdate) -> bool {
        let now = Instant::now();
        match self.membership.apply(update, now) {
            Applied::Changed {
                node,
                state,
                incarnation,
            } => {
                tracing::info!(%node, state = state.as_str(), incarnation, "member state changed");
                self.metrics
                    .membership_changes
                    .get_or_create(&StateLabel {
                        state: state.as_str(),
                    })
                    .inc();
                if state != MemberState::Suspect && state != MemberState::Alive {
                    self.rounds.remove(&node);
                }
                let _ = self.shared.events.send(MeshEvent::MemberChanged {
                    node,
                    state,
                    incarnation,
                });
                self.refresh_shared();
                true
            }
            Applied::Refuted { incarnation } => {
                tracing::warn!(incarnation, "refuting a rumour about this node");
                self.metrics.refutations.inc();
                let _ = self
                    .shared
                    .events
                    .send(MeshEvent::LocalIncarnation(incarnation));
                self.refresh_shared();
                if self.leaving.is_none() {
                    self.broadcast(self.membership.local_alive());
                }
                false
            }
            Applied::Ignored => false,
        }
    }

    fn broadcast(&mut self, update: MembershipUpdate) {
        let bytes = match xnode_wire::encode(&update) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode membership update");
                return;
            }
        };
        let topic = self.membership_topic.clone();
        if let Err(e) = self.publish_raw(topic, bytes) {
            tracing::warn!(error = %e, "could not gossip a membership update");
        }
    }

    fn publish_raw(
        &mut self,
        topic: gossipsub::IdentTopic,
        data: Vec<u8>,
    ) -> Result<(), MeshError> {
        let label = TopicLabel {
            topic: topic.to_string(),
        };
        if self.shared.faults.should_drop() {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel {
                    reason: "fault_injected",
                })
                .inc();
            return Ok(());
        }
        let size = data.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), data)
        {
            Ok(_) => {
                self.metrics.gossip_out.get_or_create(&label).inc();
                self.metrics
                    .gossip_bytes_out
                    .get_or_create(&label)
                    .inc_by(size);
                Ok(())
            }
            // Alone in the network, or nobody subscribed yet: anti-entropy will catch up.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
            Err(gossipsub::PublishError::Duplicate) => Ok(()),
            Err(e) => {
                self.metrics
                    .gossip_dropped
                    .get_or_create(&ReasonLabel {
                        reason: "publish_failed",
                    })
                    .inc();
                Err(MeshError::Publish {
                    topic: topic.to_string(),
                    reason: e.to_string(),
                })
            }
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
                self.membership.heard_from(&node, Instant::now());
                if num_established.get() == 1 {
                    let _ = self.shared.events.send(MeshEvent::PeerConnected(node));
                    self.push_pull(node);
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
                        self.start_probe(node);
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != protocol_version(&self.config.network) {
                    tracing::debug!(%peer_id, version = %info.protocol_version, "peer of another network; disconnecting");
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
                if self.membership.member(&node).is_none() && node != self.membership.local() {
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
                    if !self.swarm.is_connected(&peer) && peer != self.membership.local().peer_id()
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
                ..
            }) => {
                self.on_gossip(message, propagation_source);
            }
            BehaviourEvent::Swim(event) => self.on_swim_event(event),
            BehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            _ => {}
        }
    }

    fn on_gossip(&mut self, message: gossipsub::Message, propagation_source: PeerId) {
        let topic = message.topic.as_str().to_owned();
        let Some(source) = message.source.map(NodeId::from) else {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel { reason: "unsigned" })
                .inc();
            return;
        };
        if self.shared.faults.should_drop()
            || self
                .shared
                .faults
                .is_blocked(&NodeId::from(propagation_source))
        {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel {
                    reason: "fault_injected",
                })
                .inc();
            return;
        }
        let label = TopicLabel {
            topic: topic.clone(),
        };
        self.metrics.gossip_in.get_or_create(&label).inc();
        self.metrics
            .gossip_bytes_in
            .get_or_create(&label)
            .inc_by(message.data.len() as u64);
        if topic == self.membership_topic.hash().as_str() {
            match xnode_wire::decode::<MembershipUpdate>(&message.data, MAX_SWIM_BYTES) {
                Ok(update) => {
                    if update.must_come_from_subject() && update.node() != source {
                        self.metrics
                            .gossip_dropped
                            .get_or_create(&ReasonLabel {
                                reason: "forged_subject",
                            })
                            .inc();
                        tracing::warn!(%source, subject = %update.node(), "dropping alive/left claim made on another node's behalf");
                        return;
                    }
                    self.apply(&update);
                    // A suspicion raised elsewhere: check for ourselves at once, so we
                    // either confirm it (speeding up detection) or our ack helps refute it.
                    if let MembershipUpdate::Suspect { node, .. } = update
                        && node != self.membership.local()
                    {
                        self.start_probe(node);
                    }
                }
                Err(e) => {
                    self.metrics
                        .gossip_dropped
                        .get_or_create(&ReasonLabel {
                            reason: "malformed",
                        })
                        .inc();
                    tracing::debug!(%source, error = %e, "malformed membership update");
                }
            }
            return;
        }
        let sender = match self.shared.topics.read() {
            Ok(t) => t.get(&topic).cloned(),
            Err(p) => p.into_inner().get(&topic).cloned(),
        };
        match sender {
            Some(tx) => {
                if tx
                    .try_send(GossipMessage {
                        source,
                        data: message.data,
                    })
                    .is_err()
                {
                    self.metrics
                        .gossip_dropped
                        .get_or_create(&ReasonLabel {
                            reason: "subscriber_full",
                        })
                        .inc();
                }
            }
            None => {
                self.metrics
                    .gossip_dropped
                    .get_or_create(&ReasonLabel {
                        reason: "no_subscriber",
                    })
                    .inc();
            }
        }
    }

    // ----- SWIM -------------------------------------------------------------------------

    fn addresses_of(&self, node: &NodeId) -> Vec<Multiaddr> {
        let all: Vec<Multiaddr> = self
            .membership
            .member(node)
            .map(|m| m.addresses.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        dial_addresses(all)
    }

    fn send_swim(&mut self, peer: NodeId, request: &SwimRequest, purpose: Purpose) {
        if self.shared.faults.should_drop() {
            // The message is lost on the way; the purpose's deadline handles it. Relays
            // must still be answered, so answer them with a failure right away.
            if let Purpose::Relay { channel, .. } = purpose {
                self.respond_swim(channel, &SwimResponse::Nack);
            }
            return;
        }
        let bytes = match xnode_wire::encode(request) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode swim request");
                return;
            }
        };
        let addresses = self.addresses_of(&peer);
        let id = self.swarm.behaviour_mut().swim.send_request_with_addresses(
            &peer.peer_id(),
            bytes,
            addresses,
        );
        self.swim_pending.insert(id, purpose);
    }

    fn respond_swim(&mut self, channel: ResponseChannel<Vec<u8>>, response: &SwimResponse) {
        if let Ok(bytes) = xnode_wire::encode(response) {
            let _ = self
                .swarm
                .behaviour_mut()
                .swim
                .send_response(channel, bytes);
        }
    }

    fn about(&self, node: &NodeId) -> Option<(MemberState, u64)> {
        self.membership
            .member(node)
            .map(|m| (m.state, m.incarnation))
    }

    fn start_probe(&mut self, target: NodeId) {
        if self.rounds.contains_key(&target) {
            return;
        }
        let Some(member) = self.membership.member(&target) else {
            return;
        };
        if !matches!(member.state, MemberState::Alive | MemberState::Suspect) {
            return;
        }
        let now = Instant::now();
        let deadline = now + self.config.swim.probe_timeout;
        self.rounds.insert(
            target,
            Round {
                started: now,
                phase: Phase::Direct { deadline },
            },
        );
        let request = SwimRequest::Ping {
            about_you: self.about(&target),
        };
        self.send_swim(target, &request, Purpose::Probe { target, sent: now });
    }

    fn go_indirect(&mut self, target: NodeId) {
        let helpers = self
            .membership
            .indirect_helpers(&target, self.config.swim.indirect_probes);
        if helpers.is_empty() {
            self.probe_failed(target);
            return;
        }
        let deadline = Instant::now() + self.config.swim.indirect_timeout;
        if let Some(round) = self.rounds.get_mut(&target) {
            round.phase = Phase::Indirect {
                deadline,
                outstanding: helpers.len(),
            };
        }
        let addresses = self
            .membership
            .member(&target)
            .map(|m| m.addresses.clone())
            .unwrap_or_default();
        for helper in helpers {
            let request = SwimRequest::PingReq {
                target,
                addresses: addresses.clone(),
            };
            self.send_swim(helper, &request, Purpose::Indirect { target });
        }
    }

    fn probe_succeeded(&mut self, target: NodeId, result: &'static str) {
        if self.rounds.remove(&target).is_some() {
            self.metrics
                .probes
                .get_or_create(&ResultLabel { result })
                .inc();
        }
        self.membership.heard_from(&target, Instant::now());
    }

    fn probe_failed(&mut self, target: NodeId) {
        if self.rounds.remove(&target).is_none() {
            return;
        }
        self.metrics
            .probes
            .get_or_create(&ResultLabel { result: "failed" })
            .inc();
        let was_alive = self
            .membership
            .member(&target)
            .is_some_and(|m| m.state == MemberState::Alive);
        if let Some(update) = self.membership.probe_failed(&target, Instant::now()) {
            if was_alive {
                tracing::info!(node = %target, "suspecting member: direct and indirect probes failed");
                self.metrics
                    .membership_changes
                    .get_or_create(&StateLabel { state: "suspect" })
                    .inc();
                let _ = self.shared.events.send(MeshEvent::MemberChanged {
                    node: target,
                    state: MemberState::Suspect,
                    incarnation: update.incarnation(),
                });
                self.refresh_shared();
            } else {
                tracing::debug!(node = %target, "confirming suspicion");
            }
            self.broadcast(update);
        }
    }

    fn indirect_answer(&mut self, target: NodeId, acked: bool) {
        if acked {
            self.probe_succeeded(target, "indirect_ack");
            return;
        }
        let exhausted = match self.rounds.get_mut(&target) {
            Some(Round {
                phase: Phase::Indirect { outstanding, .. },
                ..
            }) => {
                *outstanding = outstanding.saturating_sub(1);
                *outstanding == 0
            }
            _ => false,
        };
        if exhausted {
            self.probe_failed(target);
        }
    }

    fn on_swim_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_swim_request(NodeId::from(peer), request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_swim_response(NodeId::from(peer), request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::trace!(%peer, %error, "swim request failed");
                self.on_swim_response(NodeId::from(peer), request_id, Err(()))
            }
            _ => {}
        }
    }

    fn on_swim_request(
        &mut self,
        from: NodeId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        if self.shared.faults.should_drop() || self.shared.faults.is_blocked(&from) {
            return;
        }
        let request = match xnode_wire::decode::<SwimRequest>(&request, MAX_SWIM_BYTES) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%from, error = %e, "malformed swim request");
                return;
            }
        };
        self.membership.heard_from(&from, Instant::now());
        match request {
            SwimRequest::Ping { about_you } => {
                if let Some((state, incarnation)) = about_you
                    && matches!(state, MemberState::Suspect | MemberState::Dead)
                {
                    // The prober thinks we are failing: refute (if its news is current).
                    let rumour = MembershipUpdate::Suspect {
                        node: self.membership.local(),
                        incarnation,
                        from,
                    };
                    self.apply(&rumour);
                }
                let ack = SwimResponse::Ack {
                    incarnation: self.membership.local_incarnation(),
                };
                self.respond_swim(channel, &ack);
            }
            SwimRequest::PingReq { target, addresses } => {
                if target == self.membership.local() {
                    let ack = SwimResponse::Ack {
                        incarnation: self.membership.local_incarnation(),
                    };
                    self.respond_swim(channel, &ack);
                    return;
                }
                if !addresses.is_empty() && self.membership.member(&target).is_some() {
                    self.membership.add_addresses(&target, &addresses);
                }
                let deadline = Instant::now() + self.config.swim.probe_timeout;
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                self.send_swim(target, &ping, Purpose::Relay { channel, deadline });
            }
            SwimRequest::Sync { updates } => {
                for update in updates.iter().take(10_000) {
                    self.apply_from_sync(update, from);
                }
                self.membership.heard_from(&from, Instant::now());
                let response = SwimResponse::Sync {
                    updates: self.membership.snapshot(),
                };
                self.respond_swim(channel, &response);
            }
        }
    }

    fn apply_from_sync(&mut self, update: &MembershipUpdate, from: NodeId) {
        // A peer's view of third parties is hearsay. A death it reports is taken as a
        // suspicion (as memberlist does), so a member that is in fact alive, for example on
        // the other side of a healed partition, gets the chance to refute before anyone
        // declares it dead. Other claims follow the usual precedence rules.
        if let MembershipUpdate::Dead {
            node, incarnation, ..
        } = update
            && *node != from
            && self.membership.member(node).is_some()
        {
            let suspicion = MembershipUpdate::Suspect {
                node: *node,
                incarnation: *incarnation,
                from,
            };
            if self.apply(&suspicion) {
                self.start_probe(*node);
            }
            return;
        }
        self.apply(update);
    }

    fn on_swim_response(
        &mut self,
        peer: NodeId,
        request_id: OutboundRequestId,
        response: Result<Vec<u8>, ()>,
    ) {
        let Some(purpose) = self.swim_pending.remove(&request_id) else {
            return;
        };
        let decoded = response
            .ok()
            .and_then(|bytes| xnode_wire::decode::<SwimResponse>(&bytes, MAX_SWIM_BYTES).ok());
        if self.shared.faults.should_drop() {
            // Lost on the way back: the round's deadline will take it from here.
            return;
        }
        match purpose {
            Purpose::Probe { target, sent } => match decoded {
                Some(SwimResponse::Ack { incarnation }) => {
                    let rtt = sent.elapsed();
                    self.metrics.probe_rtt_seconds.observe(rtt.as_secs_f64());
                    // An exponentially weighted mean: recent probes count most, one slow
                    // probe does not dominate.
                    let sample = rtt.as_micros() as f64;
                    let smoothed = match self.rtt_us.get(&target) {
                        Some(old) => old * 0.8 + sample * 0.2,
                        None => sample,
                    };
                    self.rtt_us.insert(target, smoothed);
                    self.refresh_shared();
                    self.note_incarnation(target, incarnation);
                    self.probe_succeeded(target, "ack");
                }
                _ => {
                    if let Some(Round {
                        phase: Phase::Direct { .. },
                        ..
                    }) = self.rounds.get(&target)
                    {
                        self.go_indirect(target);
                    }
                }
            },
            Purpose::Indirect { target } => {
                let acked = matches!(decoded, Some(SwimResponse::Ack { .. }));
                if let Some(SwimResponse::Ack { incarnation }) = decoded {
                    self.note_incarnation(target, incarnation);
                }
                self.indirect_answer(target, acked);
            }
            Purpose::Relay { channel, .. } => {
                let answer = match decoded {
                    Some(SwimResponse::Ack { incarnation }) => SwimResponse::Ack { incarnation },
                    _ => SwimResponse::Nack,
                };
                self.respond_swim(channel, &answer);
            }
            Purpose::DeadProbe { target } => {
                if let Some(SwimResponse::Ack { incarnation }) = decoded {
                    tracing::info!(node = %target, incarnation, "a member thought dead answered");
                    self.note_incarnation(target, incarnation);
                }
            }
            Purpose::Sync => {
                if let Some(SwimResponse::Sync { updates }) = decoded {
                    for update in updates.iter().take(10_000) {
                        self.apply_from_sync(update, peer);
                    }
                    self.membership.heard_from(&peer, Instant::now());
                    self.refresh_shared();
                }
            }
        }
    }

    /// A member answered with its incarnation: if it is newer than what we hold, the member
    /// has refuted whatever we believed, so treat it as an `alive` announcement.
    fn note_incarnation(&mut self, node: NodeId, incarnation: u64) {
        if let Some(m) = self.membership.member(&node)
            && incarnation > m.incarnation
        {
            let update = MembershipUpdate::Alive {
                node,
                incarnation,
                addresses: Vec::new(),
            };
            self.apply(&update);
        }
    }

    fn push_pull(&mut self, peer: NodeId) {
        let request = SwimRequest::Sync {
            updates: self.membership.snapshot(),
        };
        self.send_swim(peer, &request, Purpose::Sync);
    }

    // ----- RPC --------------------------------------------------------------------------

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
                    let _ = reply.send(Err(MeshError::Unreachable {
                        peer: NodeId::from(peer),
                        reason: error.to_string(),
                    }));
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
                let _ = driver
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, bytes);
            }
        };
        let request = match xnode_wire::decode::<RpcRequest>(&request, MAX_RPC_BYTES) {
            Ok(r) => r,
            Err(e) => return respond_err(self, channel, RpcErrorCode::BadRequest, e.to_string()),
        };
        self.metrics
            .rpc_requests
            .get_or_create(&ServiceLabel {
                service: request.service.clone(),
                direction: "in",
            })
            .inc();
        let handler = match self.shared.services.read() {
            Ok(s) => s.get(&request.service).cloned(),
            Err(p) => p.into_inner().get(&request.service).cloned(),
        };
        let Some(handler) = handler else {
            let message = format!("no service {:?} on this node", request.service);
            return respond_err(self, channel, RpcErrorCode::UnknownService, message);
        };
        let (reply, answer) = oneshot::channel();
        let inbound = InboundRequest {
            from,
            body: request.body,
            reply,
        };
        if handler.try_send(inbound).is_err() {
            return respond_err(
                self,
                channel,
                RpcErrorCode::Overloaded,
                format!("service {:?} is overloaded", request.service),
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
                let _ = commands.send(Command::RespondRpc { channel, bytes }).await;
            }
        });
    }

    // ----- commands ---------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                if self.subscribed_topics.insert(topic.clone()) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .subscribe(&gossipsub::IdentTopic::new(topic.clone()));
                }
                let result = self.publish_raw(gossipsub::IdentTopic::new(topic), data);
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                service,
                body,
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
                let delay = self.shared.faults.delay();
                if !delayed && !delay.is_zero() {
                    let commands = self.commands_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = commands
                            .send(Command::Request {
                                peer,
                                service,
                                body,
                                reply,
                                delayed: true,
                            })
                            .await;
                    });
                    return;
                }
                if self.shared.faults.should_drop() {
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
                let bytes = match xnode_wire::encode(&RpcRequest { service, body }) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = reply.send(Err(MeshError::Malformed {
                            peer,
                            reason: e.to_string(),
                        }));
                        return;
                    }
                };
                let addresses = self.addresses_of(&peer);
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(
                    &peer.peer_id(),
                    bytes,
                    addresses,
                );
                self.rpc_pending.insert(id, (peer, reply));
            }
            Command::Subscribe { topic } => {
                if self.subscribed_topics.insert(topic.clone())
                    && let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .subscribe(&gossipsub::IdentTopic::new(topic))
                {
                    tracing::error!(error = %e, "gossipsub subscribe failed");
                }
            }
            Command::RespondRpc { channel, bytes } => {
                let _ = self.swarm.behaviour_mut().rpc.send_response(channel, bytes);
            }
            Command::ObserveNode {
                node,
                addresses,
                incarnation,
                left,
            } => {
                if node == self.membership.local() {
                    return;
                }
                let update = if left {
                    MembershipUpdate::Left { node, incarnation }
                } else {
                    MembershipUpdate::Alive {
                        node,
                        incarnation,
                        addresses: addresses.clone(),
                    }
                };
                if !self.apply(&update) {
                    self.membership.add_addresses(&node, &addresses);
                }
            }
            Command::ApplyFaults(rules) => self.apply_faults(rules),
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::Leave { linger, reply } => {
                let update = MembershipUpdate::Left {
                    node: self.membership.local(),
                    incarnation: self.membership.local_incarnation(),
                };
                tracing::info!("announcing departure");
                self.broadcast(update);
                self.leaving = Some((Instant::now() + linger, reply));
            }
        }
    }

    fn apply_faults(&mut self, rules: FaultRules) {
        let before = self.shared.faults.get();
        for peer in rules.blocked.difference(&before.blocked) {
            self.swarm
                .behaviour_mut()
                .blocked
                .block_peer(peer.peer_id());
        }
        for peer in before.blocked.difference(&rules.blocked) {
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

        // Probe deadlines.
        let mut to_indirect = Vec::new();
        let mut to_fail = Vec::new();
        for (target, round) in &self.rounds {
            match round.phase {
                Phase::Direct { deadline } if now >= deadline => to_indirect.push(*target),
                Phase::Indirect { deadline, .. } if now >= deadline => to_fail.push(*target),
                _ => {}
            }
            // Rounds cannot outlive both phases by much; this is a safety net.
            if now.duration_since(round.started) > Duration::from_secs(10) {
                to_fail.push(*target);
            }
        }
        for target in to_indirect {
            self.go_indirect(target);
        }
        for target in to_fail {
            self.probe_failed(target);
        }
        let expired: Vec<OutboundRequestId> = self
            .swim_pending
            .iter()
            .filter(|(_, p)| matches!(p, Purpose::Relay { deadline, .. } if now >= *deadline))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(Purpose::Relay { channel, .. }) = self.swim_pending.remove(&id) {
                self.respond_swim(channel, &SwimResponse::Nack);
            }
        }

        // Suspicions that ran out.
        for update in self.membership.expire_suspicions(now) {
            if let MembershipUpdate::Dead {
                node, incarnation, ..
            } = &update
            {
                tracing::warn!(%node, incarnation, "member declared dead");
                self.metrics
                    .membership_changes
                    .get_or_create(&StateLabel { state: "dead" })
                    .inc();
                let _ = self.shared.events.send(MeshEvent::MemberChanged {
                    node: *node,
                    state: MemberState::Dead,
                    incarnation: *incarnation,
                });
                self.rounds.remove(node);
            }
            self.refresh_shared();
            self.broadcast(update);
        }

        // The next scheduled probe.
        if now.duration_since(self.last_probe) >= self.config.swim.probe_interval {
            self.last_probe = now;
            if let Some(target) = self.membership.next_probe_target() {
                self.start_probe(target);
            }
        }
        if now.duration_since(self.last_dead_probe) >= self.config.swim.dead_probe_interval {
            self.last_dead_probe = now;
            if let Some(target) = self.membership.next_dead_target() {
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                self.send_swim(target, &ping, Purpose::DeadProbe { target });
            }
        }
        if now.duration_since(self.last_push_pull) >= self.config.push_pull_interval {
            self.last_push_pull = now;
            let mut alive: Vec<NodeId> = self
                .membership
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.id)
                .collect();
            alive.shuffle(&mut rand::thread_rng());
            if let Some(peer) = alive.first() {
                self.push_pull(*peer);
            }
        }
        if self.connected.is_empty()
            && !self.config.bootstrap.is_empty()
            && self
                .last_bootstrap_dial
                .is_none_or(|t| now.duration_since(t) >= BOOTSTRAP_RETRY)
        {
            self.dial_bootstrap();
        }
        if now.duration_since(self.last_kad_bootstrap) >= KAD_BOOTSTRAP_INTERVAL {
            self.last_kad_bootstrap = now;
            if !self.connected.is_empty() {
                let _ = self.swarm.behaviour_mut().kad.bootstrap();
            }
        }
        // Keep last_seen fresh in the shared view at a modest rate.
        self.refresh_shared();
        false
    }
}

/// The addresses to dial a peer on: its TCP addresses when it has any, else all of them.
///
/// A TCP dial to a dead process fails at once (the port refuses), while a QUIC dial waits
/// for its handshake timeout. Preferring TCP lets the failure detector tell "gone" from
/// "slow" quickly; QUIC-only peers are still reachable.
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
