//! One simulated node: the product's [`Membership`] state machine, driven the way the mesh
//! driver drives it (`crates/mesh/src/driver/swim_io.rs` and the driver's tick): a probe
//! every probe interval with direct and indirect phases, relays for other nodes' indirect
//! probes, an immediate own probe of a member suspected by someone else, push-pull of
//! whole views, and membership updates published to gossip. Only the transport is
//! replaced: messages are the real encoded requests, handed to the simulated network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use tokio::time::Instant;
use xnode_mesh::proto::{MAX_SWIM_BYTES, MAX_SYNC_UPDATES, SwimRequest, SwimResponse};
use xnode_mesh::swim::{Applied, MemberState, Membership, MembershipUpdate};
use xnode_mesh::vivaldi::Coordinate;
use xnode_mesh::{LivenessRecord, SelfStatus};
use xnode_types::NodeId;

use crate::net::{Class, GOSSIP_FRAMING_BYTES, REQUEST_FRAMING_BYTES, RESPONSE_FRAMING_BYTES};

/// The driver's snapshot budget: the SWIM message limit less room for framing.
const SNAPSHOT_BUDGET: usize = MAX_SWIM_BYTES - 64 * 1024;
/// How long a request may wait for its answer before the driver forgets it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A membership update published to gossip, encoded once by its author.
#[derive(Debug)]
pub struct GossipMessage {
    pub id: u64,
    pub author: NodeId,
    pub update: MembershipUpdate,
    pub bytes: usize,
}

/// What travels between simulated nodes.
#[derive(Debug)]
pub enum Payload {
    Request { id: u64, request: SwimRequest },
    Response { id: u64, response: SwimResponse },
    Gossip(Arc<GossipMessage>),
}

/// A message a node hands to the network.
#[derive(Debug)]
pub struct Outgoing {
    pub to: NodeId,
    pub payload: Payload,
    /// Encoded payload plus framing.
    pub bytes: usize,
    pub class: Class,
}

#[derive(Debug)]
enum Purpose {
    Probe {
        target: NodeId,
    },
    Indirect {
        target: NodeId,
    },
    Relay {
        requester: NodeId,
        request: u64,
        deadline: Instant,
    },
    DeadProbe {
        target: NodeId,
    },
    Sync,
}

#[derive(Debug)]
enum Phase {
    Direct {
        deadline: Instant,
    },
    Indirect {
        deadline: Instant,
        outstanding: usize,
    },
}

#[derive(Debug)]
struct Round {
    started: Instant,
    phase: Phase,
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub membership: Membership,
    pub index: usize,
    /// Peers in this node's gossipsub mesh.
    pub mesh: Vec<NodeId>,
    pub push_pull_interval: Duration,
    rounds: HashMap<NodeId, Round>,
    pending: HashMap<u64, (Purpose, Instant)>,
    seen: HashMap<u64, Instant>,
    next_request: u64,
    last_probe: Instant,
    last_dead_probe: Instant,
    last_push_pull: Instant,
    last_housekeeping: Instant,
    /// Changes this node's view made since the simulation last looked: (subject, state).
    pub changes: Vec<(NodeId, MemberState)>,
    /// Members this node holds as suspect. `expire_suspicions` scans the whole table, so
    /// the tick calls it only while there is a suspicion to expire (a call without one
    /// does nothing), which keeps large simulations fast.
    suspects: HashSet<NodeId>,
    /// Gossip messages this node authored, waiting for the simulation to number them.
    pub outbox: Vec<Outgoing>,
    published: Vec<MembershipUpdate>,
}

impl SimNode {
    /// A node whose timers start at `start` (staggered by the caller).
    pub fn new(
        membership: Membership,
        index: usize,
        push_pull_interval: Duration,
        start: Instant,
        push_pull_phase: Duration,
    ) -> Self {
        Self {
            membership,
            index,
            mesh: Vec::new(),
            push_pull_interval,
            rounds: HashMap::new(),
            pending: HashMap::new(),
            seen: HashMap::new(),
            next_request: 0,
            last_probe: start,
            last_dead_probe: start,
            last_push_pull: start.checked_sub(push_pull_phase).unwrap_or(start),
            last_housekeeping: start,
            changes: Vec::new(),
            suspects: HashSet::new(),
            outbox: Vec::new(),
            published: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.membership.local()
    }

    /// Gossip this node published since the simulation last looked.
    pub fn take_published(&mut self) -> Vec<MembershipUpdate> {
        std::mem::take(&mut self.published)
    }

    /// Marks a gossip message as seen; false if it was seen already.
    pub fn first_sight(&mut self, id: u64, now: Instant) -> bool {
        self.seen.insert(id, now).is_none()
    }

    pub fn broadcast(&mut self, update: MembershipUpdate) {
        self.published.push(update);
    }

    fn request(&mut self, to: NodeId, request: SwimRequest, purpose: Purpose, now: Instant) {
        let class = match request {
            SwimRequest::Sync { .. } => Class::PushPull,
            _ => Class::Probe,
        };
        let Ok(encoded) = xnode_wire::encode(&request) else {
            return;
        };
        self.next_request = self.next_request.wrapping_add(1);
        let id = ((self.index as u64) << 40) | (self.next_request & ((1 << 40) - 1));
        self.pending.insert(id, (purpose, now));
        self.outbox.push(Outgoing {
            to,
            payload: Payload::Request { id, request },
            bytes: encoded.len() + REQUEST_FRAMING_BYTES,
            class,
        });
    }

    fn respond(&mut self, to: NodeId, id: u64, response: SwimResponse) {
        let class = match response {
            SwimResponse::Sync { .. } => Class::PushPull,
            _ => Class::Probe,
        };
        let Ok(encoded) = xnode_wire::encode(&response) else {
            return;
        };
        self.outbox.push(Outgoing {
            to,
            payload: Payload::Response { id, response },
            bytes: encoded.len() + RESPONSE_FRAMING_BYTES,
            class,
        });
    }

    /// Forwards a gossip message to this node's mesh peers other than `except`.
    pub fn forward(&mut self, message: &Arc<GossipMessage>, except: Option<NodeId>) {
        for peer in self.mesh.clone() {
            if Some(peer) == except || peer == message.author {
                continue;
            }
            self.outbox.push(Outgoing {
                to: peer,
                payload: Payload::Gossip(Arc::clone(message)),
                bytes: message.bytes + GOSSIP_FRAMING_BYTES,
                class: Class::Gossip,
            });
        }
    }

    fn own_ack(&self) -> SwimResponse {
        SwimResponse::CoordinatedAck {
            record: Some(Box::new(self.membership.local_record().clone())),
            coordinate: Coordinate::origin(),
        }
    }

    fn about(&self, node: &NodeId) -> Option<(MemberState, u64)> {
        self.membership
            .member(node)
            .map(|m| (m.state, m.incarnation))
    }

    /// As the driver's `apply`: applies an update, then probes at once a member someone
    /// else suspects.
    pub fn apply(&mut self, update: &MembershipUpdate, sender: NodeId, now: Instant) -> Applied {
        let applied = self.membership.apply(update, sender, now);
        self.on_applied(&applied);
        let hearsay_suspicion = matches!(
            update,
            MembershipUpdate::Suspect { .. } | MembershipUpdate::Dead { .. }
        ) && sender != self.membership.local();
        if hearsay_suspicion
            && !matches!(applied, Applied::Refused(_))
            && self
                .membership
                .member(&update.node())
                .is_some_and(|m| m.state == MemberState::Suspect)
        {
            self.start_probe(update.node(), now);
        }
        applied
    }

    fn on_applied(&mut self, applied: &Applied) {
        match *applied {
            Applied::Changed { node, state, .. } => {
                if state != MemberState::Suspect && state != MemberState::Alive {
                    self.rounds.remove(&node);
                }
                self.note_change(node, state);
            }
            Applied::Refuted { .. } => {
                let announcement = self.membership.local_announcement();
                self.broadcast(announcement);
            }
            Applied::Refused(_) | Applied::Ignored => {}
        }
    }

    fn note_change(&mut self, node: NodeId, state: MemberState) {
        if state == MemberState::Suspect {
            self.suspects.insert(node);
        } else {
            self.suspects.remove(&node);
        }
        self.changes.push((node, state));
    }

    fn start_probe(&mut self, target: NodeId, now: Instant) {
        if self.rounds.contains_key(&target) {
            return;
        }
        if !self
            .membership
            .member(&target)
            .is_some_and(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        {
            return;
        }
        let deadline = now + self.membership.config().probe_timeout;
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
        self.request(target, request, Purpose::Probe { target }, now);
    }

    fn go_indirect(&mut self, target: NodeId, now: Instant) {
        let config = self.membership.config().clone();
        let helpers = self
            .membership
            .indirect_helpers(&target, config.indirect_probes);
        if helpers.is_empty() {
            self.probe_failed(target, now);
            return;
        }
        if let Some(round) = self.rounds.get_mut(&target) {
            round.phase = Phase::Indirect {
                deadline: now + config.indirect_timeout,
                outstanding: helpers.len(),
            };
        }
        let record = self
            .membership
            .member(&target)
            .and_then(|m| m.record().cloned())
            .map(Box::new);
        for helper in helpers {
            let request = SwimRequest::PingReq {
                target,
                record: record.clone(),
            };
            self.request(helper, request, Purpose::Indirect { target }, now);
        }
    }

    fn probe_succeeded(&mut self, target: NodeId, now: Instant) {
        self.rounds.remove(&target);
        self.membership.heard_from(&target, now);
    }

    fn probe_failed(&mut self, target: NodeId, now: Instant) {
        if self.rounds.remove(&target).is_none() {
            return;
        }
        let was_alive = self
            .membership
            .member(&target)
            .is_some_and(|m| m.state == MemberState::Alive);
        if let Some(update) = self.membership.probe_failed(&target, now) {
            if was_alive {
                self.note_change(target, MemberState::Suspect);
            }
            self.broadcast(update);
        }
    }

    fn indirect_answer(&mut self, target: NodeId, acked: bool, now: Instant) {
        if acked {
            self.probe_succeeded(target, now);
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
            self.probe_failed(target, now);
        }
    }

    /// A SWIM request from `from`, as the driver's `on_swim_request`.
    pub fn on_request(&mut self, from: NodeId, id: u64, request: SwimRequest, now: Instant) {
        self.membership.heard_from(&from, now);
        match request {
            SwimRequest::Ping { about_you } => {
                if let Some((state, incarnation)) = about_you
                    && matches!(state, MemberState::Suspect | MemberState::Dead)
                {
                    let rumour = MembershipUpdate::Suspect {
                        node: self.membership.local(),
                        incarnation,
                        from,
                    };
                    self.apply(&rumour, from, now);
                }
                let ack = self.own_ack();
                self.respond(from, id, ack);
            }
            SwimRequest::PingReq { target, record } => {
                if target == self.membership.local() {
                    let ack = self.own_ack();
                    self.respond(from, id, ack);
                    return;
                }
                if let Some(record) = record.filter(|r| r.node == target) {
                    self.apply(&MembershipUpdate::Signed(*record), from, now);
                }
                let deadline = now + self.membership.config().probe_timeout;
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                let purpose = Purpose::Relay {
                    requester: from,
                    request: id,
                    deadline,
                };
                self.request(target, ping, purpose, now);
            }
            SwimRequest::Sync { updates } => {
                if !self.merge_sync(from, &updates, now) {
                    return;
                }
                let response = SwimResponse::Sync {
                    updates: self.membership.snapshot(SNAPSHOT_BUDGET),
                };
                self.respond(from, id, response);
            }
        }
    }

    fn merge_sync(&mut self, peer: NodeId, updates: &[MembershipUpdate], now: Instant) -> bool {
        if updates.len() > MAX_SYNC_UPDATES {
            return false;
        }
        let own_record: Option<&LivenessRecord> = updates.iter().find_map(|u| match u {
            MembershipUpdate::Signed(r) if r.node == peer => Some(r),
            _ => None,
        });
        match own_record {
            Some(record) => {
                let applied = self.membership.introduce(record, now);
                self.on_applied(&applied);
                if matches!(applied, Applied::Refused(_)) {
                    return false;
                }
            }
            None if self.membership.member(&peer).is_none() => return false,
            None => {}
        }
        self.membership.heard_from(&peer, now);
        for update in updates {
            if matches!(update, MembershipUpdate::Signed(r) if r.node == peer) {
                continue;
            }
            if let Applied::Refused(refusal) = self.apply(update, peer, now)
                && refusal.is_misbehaviour()
            {
                break;
            }
        }
        true
    }

    /// The answer to a request this node sent, as the driver's `on_swim_response`.
    pub fn on_response(&mut self, from: NodeId, id: u64, response: SwimResponse, now: Instant) {
        let Some((purpose, _)) = self.pending.remove(&id) else {
            return;
        };
        match purpose {
            Purpose::Probe { target } => match response {
                SwimResponse::Ack { record } | SwimResponse::CoordinatedAck { record, .. } => {
                    let applied = self.membership.acked_by(target, record.as_deref(), now);
                    self.on_applied(&applied);
                    self.probe_succeeded(target, now);
                }
                _ => {
                    if let Some(Round {
                        phase: Phase::Direct { .. },
                        ..
                    }) = self.rounds.get(&target)
                    {
                        self.go_indirect(target, now);
                    }
                }
            },
            Purpose::Indirect { target } => {
                let acked = response.ack_record().is_some();
                if let Some(record) = response.ack_record().flatten()
                    && record.node == target
                    && record.status == SelfStatus::Alive
                {
                    let update = MembershipUpdate::Signed(record.clone());
                    self.apply(&update, from, now);
                }
                self.indirect_answer(target, acked, now);
            }
            Purpose::Relay {
                requester, request, ..
            } => {
                let answer = match response {
                    SwimResponse::Ack { record } | SwimResponse::CoordinatedAck { record, .. } => {
                        SwimResponse::Ack { record }
                    }
                    _ => SwimResponse::Nack,
                };
                self.respond(requester, request, answer);
            }
            Purpose::DeadProbe { target } => {
                if let Some(record) = response.ack_record() {
                    let applied = self.membership.acked_by(target, record, now);
                    self.on_applied(&applied);
                }
            }
            Purpose::Sync => {
                if let SwimResponse::Sync { updates } = response {
                    self.merge_sync(from, &updates, now);
                }
            }
        }
    }

    /// Pushes this node's view to `peer`, as on a new connection or the periodic exchange.
    pub fn push_pull(&mut self, peer: NodeId, now: Instant) {
        let request = SwimRequest::Sync {
            updates: self.membership.snapshot(SNAPSHOT_BUDGET),
        };
        self.request(peer, request, Purpose::Sync, now);
    }

    /// The driver's tick: deadlines, refutations, suspicions, and the scheduled probes.
    pub fn tick(&mut self, now: Instant, rng: &mut StdRng) {
        let mut to_indirect = Vec::new();
        let mut to_fail = Vec::new();
        for (target, round) in &self.rounds {
            match round.phase {
                Phase::Direct { deadline } if now >= deadline => to_indirect.push(*target),
                Phase::Indirect { deadline, .. } if now >= deadline => to_fail.push(*target),
                _ => {}
            }
            if now.duration_since(round.started) > REQUEST_TIMEOUT {
                to_fail.push(*target);
            }
        }
        for target in to_indirect {
            self.go_indirect(target, now);
        }
        for target in to_fail {
            self.probe_failed(target, now);
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (purpose, sent))| match purpose {
                Purpose::Relay { deadline, .. } => now >= *deadline,
                _ => now.duration_since(*sent) > REQUEST_TIMEOUT,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((
                Purpose::Relay {
                    requester, request, ..
                },
                _,
            )) = self.pending.remove(&id)
            {
                self.respond(requester, request, SwimResponse::Nack);
            }
        }
        if let Some(_incarnation) = self.membership.poll_refutation(now) {
            let announcement = self.membership.local_announcement();
            self.broadcast(announcement);
        }
        if now.duration_since(self.last_housekeeping) >= Duration::from_secs(5) {
            self.last_housekeeping = now;
            self.membership.reap(now);
            // Gossipsub's seen cache keeps message ids for two minutes.
            self.seen
                .retain(|_, at| now.duration_since(*at) < Duration::from_secs(120));
        }
        let expired = if self.suspects.is_empty() {
            Vec::new()
        } else {
            self.membership.expire_suspicions(now)
        };
        for update in expired {
            self.note_change(update.node(), MemberState::Dead);
            self.rounds.remove(&update.node());
            self.broadcast(update);
        }
        let config = self.membership.config().clone();
        if now.duration_since(self.last_probe) >= config.probe_interval {
            self.last_probe = now;
            if let Some(target) = self.membership.next_probe_target() {
                self.start_probe(target, now);
            }
        }
        if now.duration_since(self.last_dead_probe) >= config.dead_probe_interval {
            self.last_dead_probe = now;
            if let Some(target) = self.membership.next_dead_target() {
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                self.request(target, ping, Purpose::DeadProbe { target }, now);
            }
        }
        let push_pull_interval = xnode_mesh::swim::scaled_push_pull_interval(
            self.push_pull_interval,
            self.membership.member_count(),
        );
        if now.duration_since(self.last_push_pull) >= push_pull_interval {
            self.last_push_pull = now;
            let peer = self
                .membership
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.id)
                .choose(rng);
            if let Some(peer) = peer {
                self.push_pull(peer, now);
            }
        }
    }
}
