//! Gossip validation and peer scoring: a gossip message is forwarded only after this node
//! accepted it, and peers that send invalid messages are scored down until gossipsub
//! stops listening to them.
//!
//! Every message a subscriber receives carries a [`GossipId`]; the subscriber reports its
//! verdict with [`crate::Mesh::report_validation`]. Membership gossip is judged by the mesh
//! itself. A message whose verdict never comes is ignored after [`VALIDATION_TIMEOUT`]
//! (not forwarded, no penalty), and at most [`MAX_PENDING_VALIDATIONS`] wait at once, so a
//! subscriber that never reports cannot make verdicts pile up.
//!
//! Scoring follows the gossipsub v1.1 design used by Ethereum's consensus clients: every
//! topic counts invalid messages (P4) with a heavy, squared weight that decays over
//! minutes, while the rewards for good behaviour are capped low, so a few invalid messages
//! outweigh any history of good ones: a peer goes below the gossip threshold (no more
//! gossip to or from it) after two and is graylisted (everything from it ignored) after
//! three.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::gossipsub::{
    self, MessageAcceptance, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
};
use tokio::time::Instant;

/// How long a subscriber has to judge a message. Gossipsub keeps a message for forwarding
/// for a few heartbeats only (5 × 500 ms), so a later verdict could not forward it anyway.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages waiting for a verdict at once; beyond this the oldest is ignored.
pub const MAX_PENDING_VALIDATIONS: usize = 8192;

/// A subscriber's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver it here and forward it to other peers.
    Accept,
    /// Invalid (a bad signature, a malformed body, a forgery): drop it and penalise the
    /// peers that sent it.
    Reject,
    /// Not invalid but not worth forwarding (old news, a version this node cannot read):
    /// drop it without penalty.
    Ignore,
}

impl Validation {
    pub(crate) fn acceptance(self) -> MessageAcceptance {
        match self {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Validation::Accept => "accept",
            Validation::Reject => "reject",
            Validation::Ignore => "ignore",
        }
    }
}

/// Identifies one received gossip message, for [`crate::Mesh::report_validation`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GossipId {
    pub(crate) message: MessageId,
    pub(crate) propagation_source: PeerId,
}

/// Messages delivered to subscribers whose verdict has not come yet.
#[derive(Debug, Default)]
pub(crate) struct PendingValidations {
    waiting: HashMap<MessageId, (PeerId, Instant)>,
    order: VecDeque<(MessageId, Instant)>,
}

impl PendingValidations {
    /// Starts waiting for a verdict on `id`. Returns what had to make room (the oldest
    /// messages, beyond [`MAX_PENDING_VALIDATIONS`]), which the caller must ignore.
    pub(crate) fn insert(&mut self, id: &GossipId, now: Instant) -> Vec<GossipId> {
        self.waiting
            .insert(id.message.clone(), (id.propagation_source, now));
        self.order.push_back((id.message.clone(), now));
        let mut evicted = Vec::new();
        while self.waiting.len() > MAX_PENDING_VALIDATIONS
            || self.order.len() > 2 * MAX_PENDING_VALIDATIONS
        {
            let Some((oldest, at)) = self.order.pop_front() else {
                break;
            };
            if let Some(source) = self.remove_if_current(&oldest, at) {
                evicted.push(GossipId {
                    message: oldest,
                    propagation_source: source,
                });
            }
        }
        evicted
    }

    /// Removes `id` if the queue entry stamped `at` is its current one (not an entry left
    /// behind by a verdict that already came).
    fn remove_if_current(&mut self, id: &MessageId, at: Instant) -> Option<PeerId> {
        match self.waiting.get(id) {
            Some((source, since)) if *since == at => {
                let source = *source;
                self.waiting.remove(id);
                Some(source)
            }
            _ => None,
        }
    }

    /// The verdict on `id` arrived: stop waiting. False if it was not waited for (already
    /// judged, or timed out).
    pub(crate) fn take(&mut self, id: &GossipId) -> bool {
        self.waiting.remove(&id.message).is_some()
    }

    /// Messages whose verdict did not come in time; the caller ignores them.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<GossipId> {
        let mut out = Vec::new();
        // Looked at in place: this runs at every tick of the driver, and a message id is
        // an allocation.
        while let Some((id, at)) = self.order.front() {
            let current = self.waiting.get(id).is_some_and(|(_, since)| since == at);
            if current && now.duration_since(*at) < VALIDATION_TIMEOUT {
                break;
            }
            let Some((id, at)) = self.order.pop_front() else {
                break;
            };
            if let Some(source) = self.remove_if_current(&id, at) {
                out.push(GossipId {
                    message: id,
                    propagation_source: source,
                });
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// Scoring of one topic: see the module documentation.
pub(crate) fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // A small reward for staying in the mesh (at most +1)...
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        // ...and for delivering messages first (at most +5).
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(60)),
        first_message_deliveries_cap: 50.0,
        // Xnode topics are quiet and bursty: an honest peer may deliver nothing for
        // minutes, so under-delivery is not penalised.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // Invalid messages: -12 × count², remembered for minutes.
        invalid_message_deliveries_weight: -12.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            600,
        )),
        ..TopicScoreParams::default()
    }
}

/// Peer scoring for the whole node, with the topics known at start.
pub(crate) fn peer_score_params(topics: &[gossipsub::TopicHash]) -> PeerScoreParams {
    PeerScoreParams {
        topics: topics
            .iter()
            .map(|t| (t.clone(), topic_score_params()))
            .collect(),
        // Good behaviour earns little, so it cannot buy room for invalid messages.
        topic_score_cap: 10.0,
        // Several nodes of one operator behind one address are normal (and a devnet runs
        // every node on loopback); Sybil resistance belongs to the admission policy, not
        // to gossip scoring.
        ip_colocation_factor_weight: 0.0,
        // A disconnected peer keeps its score for an hour: reconnecting does not clear it.
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

pub(crate) fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn id(n: u32) -> GossipId {
        GossipId {
            message: MessageId(n.to_be_bytes().to_vec()),
            propagation_source: PeerId::random(),
        }
    }

    #[test]
    fn verdicts_that_never_come_time_out_and_the_queue_stays_bounded() {
        let mut pending = PendingValidations::default();
        let start = Instant::now();
        let first = id(0);
        assert!(pending.insert(&first, start).is_empty());
        assert!(pending.take(&first));
        assert!(!pending.take(&first), "a verdict counts once");

        let mut evicted = 0;
        for n in 1..=(MAX_PENDING_VALIDATIONS as u32 + 10) {
            evicted += pending.insert(&id(n), start).len();
        }
        assert_eq!(evicted, 10);
        assert_eq!(pending.len(), MAX_PENDING_VALIDATIONS);
        assert!(
            pending
                .expired(start + Duration::from_millis(100))
                .is_empty()
        );
        let expired = pending.expired(start + VALIDATION_TIMEOUT);
        assert_eq!(expired.len(), MAX_PENDING_VALIDATIONS);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn scoring_parameters_are_valid_and_three_invalid_messages_graylist() {
        let params = peer_score_params(&[gossipsub::TopicHash::from_raw("t")]);
        params.validate().unwrap();
        let thresholds = peer_score_thresholds();
        thresholds.validate().unwrap();
        let topic = topic_score_params();
        let best_reward = params.topic_score_cap;
        let after = |invalid: f64| {
            best_reward
                + topic.topic_weight * topic.invalid_message_deliveries_weight * invalid * invalid
        };
        assert!(after(2.0) < thresholds.gossip_threshold);
        assert!(after(3.0) < thresholds.graylist_threshold);
    }
}
