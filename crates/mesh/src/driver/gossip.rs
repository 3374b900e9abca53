//! The driver's gossip: publishing, delivering to subscribers, and the verdicts that decide
//! whether gossipsub forwards a message (see [`crate::validation`]).
//!
//! Membership gossip is judged here, by the membership rules themselves; other topics are
//! judged by their subscriber, which reports through a command.

use libp2p::{PeerId, gossipsub};
use tokio::time::Instant;
use xnode_types::NodeId;

use super::Driver;
use crate::metrics::{ReasonLabel, ResultLabel, TopicLabel};
use crate::proto::MAX_SWIM_BYTES;
use crate::swim::{Applied, MembershipUpdate};
use crate::validation::{self, GossipId, Validation};
use crate::{GossipMessage, MeshError};

impl Driver {
    pub(super) fn broadcast(&mut self, update: MembershipUpdate) {
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

    /// Subscribes to a topic (once), with its peer-scoring parameters.
    pub(super) fn subscribe_topic(&mut self, topic: String) {
        if !self.subscribed_topics.insert(topic.clone()) {
            return;
        }
        let ident = gossipsub::IdentTopic::new(topic);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(e) = gossipsub.subscribe(&ident) {
            tracing::error!(error = %e, "gossipsub subscribe failed");
        }
        if let Err(e) = gossipsub.set_topic_params(ident, validation::topic_score_params()) {
            tracing::error!(error = %e, "gossipsub topic scoring failed");
        }
    }

    pub(super) fn publish_raw(
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

    /// Tells gossipsub what this node thinks of a message: forward it, penalise its
    /// senders, or just drop it.
    pub(super) fn report_gossip(
        &mut self,
        id: &GossipId,
        verdict: Validation,
        result: &'static str,
    ) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(
                &id.message,
                &id.propagation_source,
                verdict.acceptance(),
            );
        self.metrics
            .gossip_validation
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A subscriber's verdict arrived (it counts only while the message is waited for).
    pub(super) fn on_verdict(&mut self, id: GossipId, verdict: Validation) {
        if self.pending_validations.take(&id) {
            self.report_gossip(&id, verdict, verdict.as_str());
        }
    }

    /// Ignores the messages whose verdict did not come in time.
    pub(super) fn expire_verdicts(&mut self, now: Instant) {
        for id in self.pending_validations.expired(now) {
            self.report_gossip(&id, Validation::Ignore, "timeout");
        }
    }

    pub(super) fn on_gossip(
        &mut self,
        message: gossipsub::Message,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
    ) {
        let id = GossipId {
            message: message_id,
            propagation_source,
        };
        if message.source.is_none() {
            // Strict validation refuses these before us; never forward one regardless.
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel { reason: "unsigned" })
                .inc();
            return self.report_gossip(&id, Validation::Reject, "reject");
        }
        let from = NodeId::from(propagation_source);
        if self.shared.faults.link_drops(&from) || self.shared.faults.is_blocked(&from) {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel {
                    reason: "fault_injected",
                })
                .inc();
            return self.report_gossip(&id, Validation::Ignore, "ignore");
        }
        let delay = self.shared.faults.link_delay(&from);
        if delay.is_zero() {
            self.deliver_gossip(message, propagation_source, id.message);
        } else {
            // Gossipsub holds the message until the verdict comes, so the delay also holds
            // back its forwarding, as a slow link would.
            self.defer(
                delay,
                super::Deferred::Gossip {
                    message,
                    propagation_source,
                    message_id: id.message,
                },
            );
        }
    }

    /// Hands a gossip message that passed the fault checks to its subscriber.
    pub(super) fn deliver_gossip(
        &mut self,
        message: gossipsub::Message,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
    ) {
        let id = GossipId {
            message: message_id,
            propagation_source,
        };
        let topic = message.topic.as_str().to_owned();
        let Some(source) = message.source.map(NodeId::from) else {
            return self.report_gossip(&id, Validation::Reject, "reject");
        };
        let label = TopicLabel {
            topic: topic.clone(),
        };
        self.metrics.gossip_in.get_or_create(&label).inc();
        self.metrics
            .gossip_bytes_in
            .get_or_create(&label)
            .inc_by(message.data.len() as u64);
        if topic == self.membership_topic.hash().as_str() {
            let verdict = self.on_membership_gossip(&message.data, source);
            return self.report_gossip(&id, verdict, verdict.as_str());
        }
        let sender = match self.shared.topics.read() {
            Ok(t) => t.get(&topic).cloned(),
            Err(p) => p.into_inner().get(&topic).cloned(),
        };
        let Some(tx) = sender else {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel {
                    reason: "no_subscriber",
                })
                .inc();
            return self.report_gossip(&id, Validation::Ignore, "ignore");
        };
        let delivered = GossipMessage {
            source,
            data: message.data,
            id: id.clone(),
        };
        if tx.try_send(delivered).is_err() {
            self.metrics
                .gossip_dropped
                .get_or_create(&ReasonLabel {
                    reason: "subscriber_full",
                })
                .inc();
            return self.report_gossip(&id, Validation::Ignore, "ignore");
        }
        for evicted in self.pending_validations.insert(&id, Instant::now()) {
            self.report_gossip(&evicted, Validation::Ignore, "timeout");
        }
    }

    /// Applies a membership update gossiped by `source` and judges it: forwarded if it is
    /// news or a confirmation, penalised if only a liar sends it.
    fn on_membership_gossip(&mut self, data: &[u8], source: NodeId) -> Validation {
        let update = match xnode_wire::decode::<MembershipUpdate>(data, MAX_SWIM_BYTES) {
            Ok(update) => update,
            Err(e) => {
                self.metrics
                    .gossip_dropped
                    .get_or_create(&ReasonLabel {
                        reason: "malformed",
                    })
                    .inc();
                tracing::debug!(%source, error = %e, "malformed membership update");
                return Validation::Reject;
            }
        };
        match self.apply(&update, source) {
            Applied::Refused(refusal) if refusal.is_misbehaviour() => {
                self.metrics
                    .gossip_dropped
                    .get_or_create(&ReasonLabel {
                        reason: "forged_subject",
                    })
                    .inc();
                tracing::warn!(%source, subject = %update.node(), reason = refusal.as_str(), "dropping a forged membership update");
                Validation::Reject
            }
            Applied::Refused(_) => Validation::Ignore,
            Applied::Changed { .. } | Applied::Refuted { .. } | Applied::Ignored => {
                Validation::Accept
            }
        }
    }
}
