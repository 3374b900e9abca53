//! The driver's side of SWIM: the I/O of the protocol engine ([`crate::swim::engine`]),
//! which decides what to probe, relay and push-pull. The driver decodes what arrives,
//! hands it to the engine, and carries out the engine's actions: it sends and answers
//! over libp2p and turns changes into metrics, logs and events.
//!
//! Inbound requests are rate-limited per peer before they are decoded
//! ([`crate::ratelimit`]); push-pull is served only to members, or to a peer that
//! introduces itself with its own signed record, and only within
//! [`crate::proto::MAX_SYNC_UPDATES`].

use libp2p::Multiaddr;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::time::Instant;
use xnode_types::NodeId;

use super::{Driver, SwimPending, dial_addresses};
use crate::metrics::{ReasonLabel, ResultLabel, StateLabel};
use crate::proto::{MAX_SWIM_BYTES, SwimRequest, SwimResponse};
use crate::swim::engine::Action;
use crate::swim::{Applied, MemberState, MembershipUpdate};
use crate::{MeshEvent, Shared, swim};

impl Driver {
    /// Applies an update delivered by `sender` (this node for its own findings) and carries
    /// out what changed.
    pub(super) fn apply(&mut self, update: &MembershipUpdate, sender: NodeId) -> Applied {
        let applied = self.swim.apply(update, sender, Instant::now());
        self.run_swim_actions();
        applied
    }

    /// Carries out what the engine decided, until it has nothing more to do.
    pub(super) fn run_swim_actions(&mut self) {
        let mut table_changed = false;
        while let Some(action) = self.swim.next_action() {
            match action {
                Action::Send { token, to, request } => {
                    self.send_swim(to, &request, token);
                }
                Action::Respond {
                    to,
                    reply,
                    response,
                } => self.respond_swim(to, reply, &response),
                Action::Broadcast(update) => self.broadcast(update),
                Action::Changed {
                    node,
                    state,
                    incarnation,
                } => {
                    self.report_change(node, state, incarnation);
                    table_changed = true;
                }
                Action::Refuted { incarnation } => {
                    tracing::warn!(incarnation, "refuting a rumour about this node");
                    self.metrics.refutations.inc();
                    // The node persists the bump (and republishes its record) on the event.
                    let _ = self
                        .shared
                        .events
                        .send(MeshEvent::LocalIncarnation(incarnation));
                    table_changed = true;
                }
                Action::Refused(refusal) => {
                    self.metrics
                        .membership_refused
                        .get_or_create(&ReasonLabel {
                            reason: refusal.as_str(),
                        })
                        .inc();
                }
                Action::Dropped(reason) => self.drop_swim_request(reason),
                Action::Probed { target, result } => {
                    tracing::trace!(%target, result, "probe round over");
                    self.metrics
                        .probes
                        .get_or_create(&ResultLabel { result })
                        .inc();
                }
                Action::RoundTrip {
                    target,
                    rtt,
                    coordinate,
                } => {
                    self.note_round_trip(target, rtt, coordinate.as_ref());
                    table_changed = true;
                }
                Action::Merged => table_changed = true,
            }
        }
        if table_changed {
            self.refresh_shared();
        }
    }

    /// Reports a member's change of state: log, metric, event.
    fn report_change(&mut self, node: NodeId, state: MemberState, incarnation: u64) {
        match state {
            MemberState::Dead => tracing::warn!(%node, incarnation, "member declared dead"),
            _ => {
                tracing::info!(%node, state = state.as_str(), incarnation, "member state changed")
            }
        }
        self.metrics
            .membership_changes
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .inc();
        let _ = self.shared.events.send(MeshEvent::MemberChanged {
            node,
            state,
            incarnation,
        });
    }

    pub(super) fn addresses_of(&self, node: &NodeId) -> Vec<Multiaddr> {
        let all: Vec<Multiaddr> = self
            .swim
            .membership()
            .member(node)
            .map(|m| {
                m.addresses()
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        dial_addresses(all)
    }

    /// Sends the engine's request `token`, unless fault injection loses it on the way.
    fn send_swim(&mut self, peer: NodeId, request: &SwimRequest, token: u64) {
        if self.shared.faults.link_drops(&peer) {
            // The message is lost on the way; the engine's deadlines handle it, and a relay
            // is answered with a failure right away.
            self.swim.lost(token);
            return;
        }
        let bytes = match xnode_wire::encode(request) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode swim request");
                self.swim.lost(token);
                return;
            }
        };
        self.send_swim_bytes(peer, bytes, SwimPending::Engine(token));
    }

    /// Sends a SWIM request, after the injected delay of the link to `peer` if any.
    pub(super) fn send_swim_bytes(&mut self, peer: NodeId, bytes: Vec<u8>, pending: SwimPending) {
        let delay = self.shared.faults.link_delay(&peer);
        if delay.is_zero() {
            self.transmit_swim_bytes(peer, bytes, pending);
        } else {
            self.defer(
                delay,
                super::Deferred::SwimRequest {
                    peer,
                    bytes,
                    pending,
                },
            );
        }
    }

    pub(super) fn transmit_swim_bytes(
        &mut self,
        peer: NodeId,
        bytes: Vec<u8>,
        pending: SwimPending,
    ) {
        let addresses = self.addresses_of(&peer);
        let id = self.swarm.behaviour_mut().swim.send_request_with_addresses(
            &peer.peer_id(),
            bytes,
            addresses,
        );
        self.swim_pending.insert(id, pending);
    }

    /// Answers a SWIM request from `to`, after the injected delay of the link back to it.
    pub(super) fn respond_swim(
        &mut self,
        to: NodeId,
        channel: ResponseChannel<Vec<u8>>,
        response: &SwimResponse,
    ) {
        let Ok(bytes) = xnode_wire::encode(response) else {
            return;
        };
        let delay = self.shared.faults.link_delay(&to);
        if delay.is_zero() {
            let _ = self
                .swarm
                .behaviour_mut()
                .swim
                .send_response(channel, bytes);
        } else {
            self.defer(delay, super::Deferred::SwimResponse { channel, bytes });
        }
    }

    pub(super) fn on_swim_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
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
                self.on_swim_response(NodeId::from(peer), request_id, Err(error.to_string()))
            }
            _ => {}
        }
    }

    fn drop_swim_request(&mut self, reason: &'static str) {
        self.metrics
            .swim_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    fn on_swim_request(&mut self, from: NodeId, bytes: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        if self.shared.faults.should_drop() || self.shared.faults.is_blocked(&from) {
            return;
        }
        let now = Instant::now();
        // Dropping the channel closes the stream: the sender's request fails at once.
        if !self.swim_limits.allow_request(from, bytes.len(), now) {
            return self.drop_swim_request("rate_limited");
        }
        let request = match xnode_wire::decode::<SwimRequest>(&bytes, MAX_SWIM_BYTES) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%from, error = %e, "malformed swim request");
                return self.drop_swim_request("malformed");
            }
        };
        let is_sync = matches!(
            request,
            SwimRequest::Sync { .. }
                | SwimRequest::SyncDigest { .. }
                | SwimRequest::SyncEntries { .. }
        );
        if is_sync && !self.swim_limits.allow_sync(from, now) {
            self.swim.membership_mut().heard_from(&from, now);
            return self.drop_swim_request("rate_limited");
        }
        // This node's ack to `from`: with its network coordinate when `from` speaks a
        // protocol that has it (older nodes cannot decode that form).
        let coordinated =
            negotiated(&self.shared, &from).is_some_and(|v| v >= crate::protocol::COORDINATES);
        let vivaldi = &self.vivaldi;
        self.swim
            .on_request(from, channel, request, now, |membership| {
                let record = Some(Box::new(membership.local_record().clone()));
                if coordinated {
                    SwimResponse::CoordinatedAck {
                        record,
                        coordinate: vivaldi.coordinate().clone(),
                    }
                } else {
                    SwimResponse::Ack { record }
                }
            });
        self.run_swim_actions();
    }

    fn on_swim_response(
        &mut self,
        peer: NodeId,
        request_id: OutboundRequestId,
        response: Result<Vec<u8>, String>,
    ) {
        let Some(pending) = self.swim_pending.remove(&request_id) else {
            return;
        };
        // Without the rogue feature the engine's requests are the only kind.
        #[cfg_attr(not(feature = "rogue"), allow(clippy::infallible_destructuring_match))]
        let token = match pending {
            SwimPending::Engine(token) => token,
            #[cfg(feature = "rogue")]
            SwimPending::Raw { reply } => {
                let _ = reply.send(
                    response.map_err(|reason| crate::MeshError::Unreachable { peer, reason }),
                );
                return;
            }
        };
        let decoded = response
            .ok()
            .and_then(|bytes| xnode_wire::decode::<SwimResponse>(&bytes, MAX_SWIM_BYTES).ok());
        if self.shared.faults.should_drop() {
            // Lost on the way back: the round's deadline will take it from here.
            self.swim.forget(token);
            return;
        }
        self.swim.on_response(token, peer, decoded, Instant::now());
        self.run_swim_actions();
    }

    /// Folds one direct probe's round trip into the member's smoothed round trip and,
    /// when the ack carried the member's coordinate, into this node's coordinate.
    fn note_round_trip(
        &mut self,
        target: NodeId,
        rtt: std::time::Duration,
        coordinate: Option<&crate::vivaldi::Coordinate>,
    ) {
        if let Some(theirs) = coordinate {
            match self.vivaldi.observe(target, theirs, rtt) {
                crate::vivaldi::Observed::Updated => {
                    self.peer_coordinates.insert(target, theirs.clone());
                }
                crate::vivaldi::Observed::BadCoordinate => {
                    tracing::debug!(%target, "refusing a peer's invalid network coordinate");
                    self.peer_coordinates.remove(&target);
                }
                crate::vivaldi::Observed::BadRoundTrip => {}
            }
        }
        self.metrics.probe_rtt_seconds.observe(rtt.as_secs_f64());
        // An exponentially weighted mean: recent probes count most, one slow probe does
        // not dominate.
        let sample = rtt.as_micros() as f64;
        let smoothed = match self.rtt_us.get(&target) {
            Some(old) => old * 0.8 + sample * 0.2,
            None => sample,
        };
        self.rtt_us.insert(target, smoothed);
    }
}

/// The protocol version `peer` negotiated with this node, once it identified itself.
fn negotiated(shared: &Shared, peer: &NodeId) -> Option<crate::ProtocolVersion> {
    match shared.peer_protocols.read() {
        Ok(table) => table.get(peer).and_then(|p| p.negotiated),
        Err(poisoned) => poisoned.into_inner().get(peer).and_then(|p| p.negotiated),
    }
}

/// Whether `peer` negotiated a protocol that has push-pull by digest. A peer not
/// identified yet (a connection to it just opened for the first time) is sent the whole
/// view, which every version understands.
pub(super) fn speaks_digest(shared: &Shared, peer: &NodeId) -> bool {
    negotiated(shared, peer).is_some_and(|v| v >= crate::protocol::DIGEST_SYNC)
}

/// Pre-creates the series of the membership refusal counter, so dashboards see zeros.
pub(super) fn refusal_reasons() -> impl Iterator<Item = &'static str> {
    swim::Refusal::ALL.into_iter().map(swim::Refusal::as_str)
}
