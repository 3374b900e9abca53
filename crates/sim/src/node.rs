//! One simulated node: the product's SWIM protocol engine ([`Engine`], around the
//! [`Membership`] state machine), the same code the mesh driver runs. Only the I/O is
//! replaced: the engine's requests and answers are the real messages, encoded to count
//! their bytes and handed to the simulated network, and its updates go to a simulated
//! gossip mesh. The node's part in summary aggregation lives in [`crate::observe`]; its
//! messages travel as [`Payload::Report`] and [`Payload::Totals`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use tokio::time::Instant;
use xnode_mesh::proto::{SwimRequest, SwimResponse};
use xnode_mesh::swim::engine::{Action, Engine};
use xnode_mesh::swim::{Applied, MemberState, Membership, MembershipUpdate};
use xnode_mesh::vivaldi::Coordinate;
use xnode_observe::aggregate::{NetworkTotals, SubtreeReport};
use xnode_types::NodeId;

use crate::net::{Class, GOSSIP_FRAMING_BYTES, REQUEST_FRAMING_BYTES, RESPONSE_FRAMING_BYTES};

/// A membership update published to gossip, encoded once by its author.
#[derive(Debug)]
pub struct GossipMessage {
    pub id: u64,
    pub author: NodeId,
    pub update: MembershipUpdate,
    pub bytes: usize,
}

/// What travels between simulated nodes. A request's `id` is the sender's engine token;
/// the answer carries it back.
#[derive(Debug)]
pub enum Payload {
    Request {
        id: u64,
        request: SwimRequest,
    },
    Response {
        id: u64,
        response: SwimResponse,
    },
    Gossip(Arc<GossipMessage>),
    /// A child's subtree report to its parent, or an audit request to a random member
    /// (`only_held`): both go to the same RPC service.
    Report(SubtreeReport),
    /// The answer to a report (the network totals the child lacks) or to an audit, which
    /// the requester tells apart as the product does by the call it answers.
    Totals {
        answer: NetworkTotals,
        audit: bool,
    },
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

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    engine: Engine<u64>,
    pub index: usize,
    /// Peers in this node's gossipsub mesh.
    pub mesh: Vec<NodeId>,
    seen: HashMap<u64, Instant>,
    last_housekeeping: Instant,
    /// Changes this node's view made since the simulation last looked: (subject, state).
    pub changes: Vec<(NodeId, MemberState)>,
    /// Messages this node queued, waiting for the simulation to deliver them.
    pub outbox: Vec<Outgoing>,
    published: Vec<MembershipUpdate>,
}

impl SimNode {
    /// A node whose timers start at `start` (staggered by the caller): its first periodic
    /// push-pull comes `push_pull_phase` early.
    pub fn new(
        membership: Membership,
        index: usize,
        push_pull_interval: Duration,
        start: Instant,
        push_pull_phase: Duration,
    ) -> Self {
        let mut engine = Engine::new(membership, push_pull_interval, start);
        engine.set_last_push_pull(start.checked_sub(push_pull_phase).unwrap_or(start));
        Self {
            engine,
            index,
            mesh: Vec::new(),
            seen: HashMap::new(),
            last_housekeeping: start,
            changes: Vec::new(),
            outbox: Vec::new(),
            published: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.engine.membership().local()
    }

    pub fn membership(&self) -> &Membership {
        self.engine.membership()
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

    /// Carries out the engine's actions: messages to the outbox, updates to gossip,
    /// changes to what the simulation watches.
    fn run_actions(&mut self) {
        while let Some(action) = self.engine.next_action() {
            match action {
                Action::Send { token, to, request } => {
                    let class = match request {
                        SwimRequest::Sync { .. }
                        | SwimRequest::SyncDigest { .. }
                        | SwimRequest::SyncEntries { .. } => Class::PushPull,
                        SwimRequest::Ping { .. } | SwimRequest::PingReq { .. } => Class::Probe,
                    };
                    let Ok(encoded) = xnode_wire::encode(&request) else {
                        self.engine.lost(token);
                        continue;
                    };
                    self.outbox.push(Outgoing {
                        to,
                        payload: Payload::Request { id: token, request },
                        bytes: encoded.len() + REQUEST_FRAMING_BYTES,
                        class,
                    });
                }
                Action::Respond {
                    to,
                    reply,
                    response,
                } => {
                    let class = match response {
                        SwimResponse::Sync { .. }
                        | SwimResponse::SyncDiff { .. }
                        | SwimResponse::Merged => Class::PushPull,
                        SwimResponse::Ack { .. }
                        | SwimResponse::CoordinatedAck { .. }
                        | SwimResponse::Nack => Class::Probe,
                    };
                    let Ok(encoded) = xnode_wire::encode(&response) else {
                        continue;
                    };
                    self.outbox.push(Outgoing {
                        to,
                        payload: Payload::Response {
                            id: reply,
                            response,
                        },
                        bytes: encoded.len() + RESPONSE_FRAMING_BYTES,
                        class,
                    });
                }
                Action::Broadcast(update) => self.published.push(update),
                Action::Changed { node, state, .. } => self.changes.push((node, state)),
                Action::Refuted { .. }
                | Action::Refused(_)
                | Action::Dropped(_)
                | Action::Probed { .. }
                | Action::RoundTrip { .. }
                | Action::Merged => {}
            }
        }
    }

    /// Applies a gossiped update, as the driver's gossip validation does.
    pub fn apply(&mut self, update: &MembershipUpdate, sender: NodeId, now: Instant) -> Applied {
        let applied = self.engine.apply(update, sender, now);
        self.run_actions();
        applied
    }

    /// A SWIM request from `from`.
    pub fn on_request(&mut self, from: NodeId, id: u64, request: SwimRequest, now: Instant) {
        self.engine
            .on_request(from, id, request, now, |membership| {
                SwimResponse::CoordinatedAck {
                    record: Some(Box::new(membership.local_record().clone())),
                    coordinate: Coordinate::origin(),
                }
            });
        self.run_actions();
    }

    /// The answer to a request this node sent.
    pub fn on_response(&mut self, from: NodeId, id: u64, response: SwimResponse, now: Instant) {
        self.engine.on_response(id, from, Some(response), now);
        self.run_actions();
    }

    /// Pushes this node's whole view to `peer`, as the driver does on a first connection
    /// (before the peer's protocol version is known).
    pub fn push_pull(&mut self, peer: NodeId, now: Instant) {
        self.engine.push_pull(peer, now, false);
        self.run_actions();
    }

    /// The driver's tick: the engine's periodic work, and the housekeeping. `by_digest`
    /// says whether the periodic push-pull goes by digest (every simulated node speaks
    /// the same protocol).
    pub fn tick(&mut self, now: Instant, rng: &mut StdRng, by_digest: bool) {
        if now.saturating_duration_since(self.last_housekeeping) >= Duration::from_secs(5) {
            self.last_housekeeping = now;
            self.engine.membership_mut().reap(now);
            // Gossipsub's seen cache keeps message ids for two minutes.
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(120));
        }
        self.engine.tick(now, rng, |_| by_digest);
        self.run_actions();
    }
}
