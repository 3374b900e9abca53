//! The driver's side of SWIM: probes, indirect probes, push-pull, and carrying out what
//! the membership state machine ([`crate::swim`]) decides.
//!
//! Inbound requests are rate-limited per peer before they are decoded
//! ([`crate::ratelimit`]); push-pull is served only to members, or to a peer that
//! introduces itself with its own signed record, and only within
//! [`crate::proto::MAX_SYNC_UPDATES`].

use libp2p::Multiaddr;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::time::Instant;
use xnode_types::NodeId;

use super::{Driver, Phase, Purpose, Round, dial_addresses};
use crate::liveness::{LivenessRecord, SelfStatus};
use crate::metrics::{ReasonLabel, ResultLabel, StateLabel};
use crate::proto::{MAX_SWIM_BYTES, MAX_SYNC_UPDATES, SwimRequest, SwimResponse};
use crate::swim::{Applied, MemberState, MembershipUpdate};
use crate::{MeshEvent, swim};

/// Room left in a snapshot for the message framing around it.
const SNAPSHOT_BUDGET: usize = MAX_SWIM_BYTES - 64 * 1024;

impl Driver {
    /// Applies an update delivered by `sender` (this node for its own findings) and carries
    /// out what changed.
    pub(super) fn apply(&mut self, update: &MembershipUpdate, sender: NodeId) -> Applied {
        let applied = self.membership.apply(update, sender, Instant::now());
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
            // A suspicion raised elsewhere: check for ourselves at once, so we either
            // confirm it (speeding up detection) or hear from the member and clear it.
            self.start_probe(update.node());
        }
        applied
    }

    /// Reports a change the membership made: events, metrics, announcements.
    pub(super) fn on_applied(&mut self, applied: &Applied) {
        match *applied {
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
            }
            Applied::Refuted { incarnation } => self.announce_refutation(incarnation),
            Applied::Refused(refusal) => {
                self.metrics
                    .membership_refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.as_str(),
                    })
                    .inc();
            }
            Applied::Ignored => {}
        }
    }

    /// This node raised its incarnation: the node persists it (and republishes its record)
    /// on the event, and every member hears the new signed record.
    pub(super) fn announce_refutation(&mut self, incarnation: u64) {
        tracing::warn!(incarnation, "refuting a rumour about this node");
        self.metrics.refutations.inc();
        let _ = self
            .shared
            .events
            .send(MeshEvent::LocalIncarnation(incarnation));
        self.refresh_shared();
        if self.leaving.is_none() {
            self.broadcast(self.membership.local_announcement());
        }
    }

    pub(super) fn addresses_of(&self, node: &NodeId) -> Vec<Multiaddr> {
        let all: Vec<Multiaddr> = self
            .membership
            .member(node)
            .map(|m| m.addresses.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        dial_addresses(all)
    }

    pub(super) fn send_swim(&mut self, peer: NodeId, request: &SwimRequest, purpose: Purpose) {
        if self.shared.faults.link_drops(&peer) {
            // The message is lost on the way; the purpose's deadline handles it. Relays
            // must still be answered, so answer them with a failure right away.
            if let Purpose::Relay {
                requester, channel, ..
            } = purpose
            {
                self.respond_swim(requester, channel, &SwimResponse::Nack);
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
        self.send_swim_bytes(peer, bytes, purpose);
    }

    /// Sends a SWIM request, after the injected delay of the link to `peer` if any.
    pub(super) fn send_swim_bytes(&mut self, peer: NodeId, bytes: Vec<u8>, purpose: Purpose) {
        let delay = self.shared.faults.link_delay(&peer);
        if delay.is_zero() {
            self.transmit_swim_bytes(peer, bytes, purpose);
        } else {
            self.defer(
                delay,
                super::Deferred::SwimRequest {
                    peer,
                    bytes,
                    purpose,
                },
            );
        }
    }

    pub(super) fn transmit_swim_bytes(&mut self, peer: NodeId, bytes: Vec<u8>, purpose: Purpose) {
        let addresses = self.addresses_of(&peer);
        let id = self.swarm.behaviour_mut().swim.send_request_with_addresses(
            &peer.peer_id(),
            bytes,
            addresses,
        );
        self.swim_pending.insert(id, purpose);
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

    pub(super) fn about(&self, node: &NodeId) -> Option<(MemberState, u64)> {
        self.membership
            .member(node)
            .map(|m| (m.state, m.incarnation))
    }

    /// This node's ack to `to`: with its network coordinate when `to` speaks a protocol
    /// that has it (older nodes cannot decode that form).
    fn own_ack(&self, to: NodeId) -> SwimResponse {
        let record = Some(Box::new(self.membership.local_record().clone()));
        let negotiated = match self.shared.peer_protocols.read() {
            Ok(table) => table.get(&to).and_then(|p| p.negotiated),
            Err(poisoned) => poisoned.into_inner().get(&to).and_then(|p| p.negotiated),
        };
        if negotiated.is_some_and(|v| v >= crate::protocol::COORDINATES) {
            SwimResponse::CoordinatedAck {
                record,
                coordinate: self.vivaldi.coordinate().clone(),
            }
        } else {
            SwimResponse::Ack { record }
        }
    }

    pub(super) fn start_probe(&mut self, target: NodeId) {
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

    pub(super) fn go_indirect(&mut self, target: NodeId) {
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

    pub(super) fn probe_failed(&mut self, target: NodeId) {
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
        self.membership.heard_from(&from, now);
        match request {
            SwimRequest::Ping { about_you } => {
                if let Some((state, incarnation)) = about_you
                    && matches!(state, MemberState::Suspect | MemberState::Dead)
                {
                    // The prober thinks we are failing: refute (if its news is current;
                    // at most once per refutation interval).
                    let rumour = MembershipUpdate::Suspect {
                        node: self.membership.local(),
                        incarnation,
                        from,
                    };
                    self.apply(&rumour, from);
                }
                let ack = self.own_ack(from);
                self.respond_swim(from, channel, &ack);
            }
            SwimRequest::PingReq { target, record } => {
                if target == self.membership.local() {
                    let ack = self.own_ack(from);
                    self.respond_swim(from, channel, &ack);
                    return;
                }
                // The target's own record is how a helper may learn its addresses; hearsay
                // addresses are never taken.
                if let Some(record) = record.filter(|r| r.node == target) {
                    self.apply(&MembershipUpdate::Signed(*record), from);
                }
                let deadline = now + self.config.swim.probe_timeout;
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                self.send_swim(
                    target,
                    &ping,
                    Purpose::Relay {
                        requester: from,
                        channel,
                        deadline,
                    },
                );
            }
            SwimRequest::Sync { updates } => {
                if !self.swim_limits.allow_sync(from, now) {
                    return self.drop_swim_request("rate_limited");
                }
                if !self.merge_sync(from, &updates) {
                    return;
                }
                let response = SwimResponse::Sync {
                    updates: self.membership.snapshot(SNAPSHOT_BUDGET),
                };
                self.respond_swim(from, channel, &response);
            }
        }
    }

    /// Merges a peer's push-pull view. Returns false (and merges nothing) if the view is
    /// too long or the peer is neither a member nor introducing itself with its own record.
    fn merge_sync(&mut self, peer: NodeId, updates: &[MembershipUpdate]) -> bool {
        if updates.len() > MAX_SYNC_UPDATES {
            self.drop_swim_request("oversized");
            return false;
        }
        let now = Instant::now();
        let own_record: Option<&LivenessRecord> = updates.iter().find_map(|u| match u {
            MembershipUpdate::Signed(r) if r.node == peer => Some(r),
            _ => None,
        });
        match own_record {
            Some(record) => {
                let applied = self.membership.introduce(record, now);
                self.on_applied(&applied);
                if matches!(applied, Applied::Refused(_)) {
                    self.drop_swim_request("bad_introduction");
                    return false;
                }
            }
            None if self.membership.member(&peer).is_none() => {
                self.drop_swim_request("not_a_member");
                return false;
            }
            None => {}
        }
        self.membership.heard_from(&peer, now);
        for update in updates {
            if matches!(update, MembershipUpdate::Signed(r) if r.node == peer) {
                continue;
            }
            if let Applied::Refused(refusal) = self.apply(update, peer)
                && refusal.is_misbehaviour()
            {
                // A view with a forgery in it is a liar's view: take nothing more from it.
                tracing::warn!(%peer, reason = refusal.as_str(), "dropping the rest of a forged push-pull view");
                self.drop_swim_request("forged");
                break;
            }
        }
        self.refresh_shared();
        true
    }

    fn on_swim_response(
        &mut self,
        peer: NodeId,
        request_id: OutboundRequestId,
        response: Result<Vec<u8>, String>,
    ) {
        let Some(purpose) = self.swim_pending.remove(&request_id) else {
            return;
        };
        #[cfg(feature = "rogue")]
        let purpose = match purpose {
            Purpose::Raw { reply } => {
                let _ = reply.send(
                    response.map_err(|reason| crate::MeshError::Unreachable { peer, reason }),
                );
                return;
            }
            other => other,
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
                Some(ack @ (SwimResponse::Ack { .. } | SwimResponse::CoordinatedAck { .. })) => {
                    let coordinate = match &ack {
                        SwimResponse::CoordinatedAck { coordinate, .. } => Some(coordinate),
                        _ => None,
                    };
                    self.note_round_trip(target, sent, coordinate);
                    let record = ack.ack_record().flatten();
                    let applied = self.membership.acked_by(target, record, Instant::now());
                    self.on_applied(&applied);
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
                let acked = decoded.as_ref().is_some_and(|d| d.ack_record().is_some());
                if let Some(record) = decoded.as_ref().and_then(|d| d.ack_record().flatten())
                    && record.node == target
                    && record.status == SelfStatus::Alive
                {
                    // Relayed, so only the target's signature can make it news.
                    self.apply(&MembershipUpdate::Signed(record.clone()), peer);
                }
                self.indirect_answer(target, acked);
            }
            Purpose::Relay {
                requester, channel, ..
            } => {
                // Relayed as a plain ack: the target's coordinate says nothing of the
                // requester's round trip, and the requester may be an older node.
                let answer = match decoded {
                    Some(
                        SwimResponse::Ack { record } | SwimResponse::CoordinatedAck { record, .. },
                    ) => SwimResponse::Ack { record },
                    _ => SwimResponse::Nack,
                };
                self.respond_swim(requester, channel, &answer);
            }
            Purpose::DeadProbe { target } => {
                if let Some(record) = decoded.as_ref().and_then(SwimResponse::ack_record) {
                    tracing::info!(node = %target, "a member thought dead answered");
                    let applied = self.membership.acked_by(target, record, Instant::now());
                    self.on_applied(&applied);
                }
            }
            Purpose::Sync => {
                if let Some(SwimResponse::Sync { updates }) = decoded {
                    self.merge_sync(peer, &updates);
                }
            }
            #[cfg(feature = "rogue")]
            Purpose::Raw { .. } => {}
        }
    }

    /// Folds one direct probe's round trip into the member's smoothed round trip and,
    /// when the ack carried the member's coordinate, into this node's coordinate.
    fn note_round_trip(
        &mut self,
        target: NodeId,
        sent: Instant,
        coordinate: Option<&crate::vivaldi::Coordinate>,
    ) {
        let rtt = sent.elapsed();
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
        self.refresh_shared();
    }

    pub(super) fn push_pull(&mut self, peer: NodeId) {
        let request = SwimRequest::Sync {
            updates: self.membership.snapshot(SNAPSHOT_BUDGET),
        };
        self.send_swim(peer, &request, Purpose::Sync);
    }

    /// A deferred refutation that is now due, announced like any other.
    pub(super) fn poll_refutation(&mut self) {
        if let Some(incarnation) = self.membership.poll_refutation(Instant::now()) {
            self.announce_refutation(incarnation);
        }
    }
}

/// Pre-creates the series of the membership refusal counter, so dashboards see zeros.
pub(super) fn refusal_reasons() -> impl Iterator<Item = &'static str> {
    swim::Refusal::ALL.into_iter().map(swim::Refusal::as_str)
}
