//! Fault injection for tests and drills: drop, delay and partition this node's traffic.
//!
//! Faults apply at the mesh's message layer (SWIM probes, RPCs and gossip) and, for
//! partitions, at the connection layer: a blocked peer's connections are closed and new
//! ones refused, exactly as if the network between the two nodes were cut.
//!
//! A per-peer [`LinkFault`] models the link to one peer as a wide-area network would: a
//! one-way delay with jitter on every frame this node sends to that peer (SWIM probes and
//! their answers, RPC requests and their answers), the same delay on gossip this node
//! receives from it, a loss probability, and a cut. When every node of a testbed carries
//! the same matrix, a round trip between two nodes sees both one-way delays, so measured
//! probe round trips are what a real link of that latency would give.
//!
//! Every mesh message rides on a TCP connection, so a lost packet on a real link is
//! retransmitted, not lost: the frame arrives late, after TCP's retransmission timeout
//! (at least 200 ms on Linux, doubling with each loss in a row). A link's `loss` is
//! modelled that way. Only a frame lost [`MAX_RETRANSMISSIONS`] times in a row, when TCP
//! would give up on the connection, is lost for good. The node-wide `drop_rate` is
//! different on purpose: it loses whole messages, a harsher fault than a real network
//! gives, for tests of the timeouts themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

/// The faults currently in force on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRules {
    /// Probability in `[0, 1]` that any one message this node sends or receives is lost.
    pub drop_rate: f64,
    /// Extra latency added to every request this node sends.
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    /// Peers this node cannot reach nor be reached by.
    pub blocked: BTreeSet<NodeId>,
    /// The modelled link to each listed peer; peers not listed have a perfect link.
    #[serde(default)]
    pub links: BTreeMap<NodeId, LinkFault>,
}

/// The modelled network link from this node to one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkFault {
    /// One-way delay added to every frame sent to the peer.
    #[serde(with = "duration_ms", rename = "delay_ms")]
    pub delay: Duration,
    /// Up to this much more delay, drawn uniformly for each frame.
    #[serde(with = "duration_ms", rename = "jitter_ms")]
    pub jitter: Duration,
    /// Probability in `[0, 1]` that one transmission of a frame to the peer (or of gossip
    /// from it) is lost. A lost transmission is retransmitted after TCP's retransmission
    /// timeout, as a real link would; see the module documentation.
    pub loss: f64,
    /// The link is cut in both directions, as [`FaultRules::blocked`] does.
    pub cut: bool,
}

impl LinkFault {
    /// Whether the numbers make sense: a probability in `[0, 1]` and delays a test can
    /// wait for (at most a minute each).
    pub fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.loss)
            && self.delay <= MAX_LINK_DELAY
            && self.jitter <= MAX_LINK_DELAY
    }

    /// The delay of one frame: the base delay plus a uniform draw of the jitter, plus a
    /// retransmission timeout for each transmission lost on the way.
    fn sample_delay(&self) -> Duration {
        let mut delay = self.delay;
        if !self.jitter.is_zero() {
            let jitter_us = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
            let extra = rand::random::<u64>() % jitter_us.saturating_add(1);
            delay = delay.saturating_add(Duration::from_micros(extra));
        }
        if self.loss > 0.0 {
            // Linux's timeout is about the smoothed round trip plus four deviations, never
            // under 200 ms, and it doubles with each loss in a row.
            let mut timeout = MIN_RETRANSMIT_TIMEOUT.max(self.delay.saturating_mul(4));
            for _ in 0..MAX_RETRANSMISSIONS {
                if rand::random::<f64>() >= self.loss {
                    break;
                }
                delay = delay.saturating_add(timeout);
                timeout = timeout.saturating_mul(2);
            }
        }
        delay
    }

    /// Whether a frame is lost for good: every one of its transmissions was lost.
    fn loses_for_good(&self) -> bool {
        self.loss > 0.0 && (0..MAX_RETRANSMISSIONS).all(|_| rand::random::<f64>() < self.loss)
    }
}

/// TCP's smallest retransmission timeout on Linux (`TCP_RTO_MIN`).
pub const MIN_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(200);

/// After this many lost transmissions of one frame in a row, TCP would give up on the
/// connection; the model counts the frame as lost.
pub const MAX_RETRANSMISSIONS: u32 = 6;

/// The longest one-way delay or jitter a link may be given.
pub const MAX_LINK_DELAY: Duration = Duration::from_secs(60);

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl FaultRules {
    /// Every peer this node is cut from: the blocked set and the cut links.
    pub fn cut_peers(&self) -> BTreeSet<NodeId> {
        let mut cut = self.blocked.clone();
        cut.extend(
            self.links
                .iter()
                .filter(|(_, link)| link.cut)
                .map(|(peer, _)| *peer),
        );
        cut
    }
}

/// Shared, thread-safe fault rules. The mesh driver consults them on every message.
#[derive(Debug, Default)]
pub struct Faults {
    rules: RwLock<FaultRules>,
}

impl Faults {
    pub fn get(&self) -> FaultRules {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&FaultRules) -> T) -> T {
        match self.rules.read() {
            Ok(r) => f(&r),
            Err(p) => f(&p.into_inner()),
        }
    }

    pub(crate) fn set(&self, rules: FaultRules) {
        match self.rules.write() {
            Ok(mut r) => *r = rules,
            Err(p) => *p.into_inner() = rules,
        }
    }

    /// Decides whether to lose one message.
    pub(crate) fn should_drop(&self) -> bool {
        let rate = self.with(|r| r.drop_rate);
        rate > 0.0 && rand::random::<f64>() < rate
    }

    /// Decides whether to lose one message on the link to (or from) `peer`: the node-wide
    /// drop rate applies, and the link loses a frame for good only when every
    /// retransmission of it is lost too (its other losses delay it: [`Self::link_delay`]).
    pub(crate) fn link_drops(&self, peer: &NodeId) -> bool {
        let (rate, link) = self.with(|r| (r.drop_rate, r.links.get(peer).copied()));
        (rate > 0.0 && rand::random::<f64>() < rate) || link.is_some_and(|l| l.loses_for_good())
    }

    pub(crate) fn delay(&self) -> Duration {
        self.with(|r| r.delay)
    }

    /// The one-way delay of the next frame on the link to `peer` (zero if unmodelled),
    /// retransmissions of lost transmissions included.
    pub(crate) fn link_delay(&self, peer: &NodeId) -> Duration {
        self.with(|r| {
            r.links
                .get(peer)
                .map(LinkFault::sample_delay)
                .unwrap_or_default()
        })
    }

    pub(crate) fn is_blocked(&self, peer: &NodeId) -> bool {
        self.with(|r| r.blocked.contains(peer) || r.links.get(peer).is_some_and(|l| l.cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    fn peer() -> NodeId {
        SecretKey::generate().node_id()
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let link = LinkFault {
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            ..LinkFault::default()
        };
        let mut seen_above_base = false;
        for _ in 0..1000 {
            let d = link.sample_delay();
            assert!(d >= Duration::from_millis(30) && d <= Duration::from_millis(35));
            seen_above_base |= d > Duration::from_millis(30);
        }
        assert!(seen_above_base, "jitter never added anything");
    }

    #[test]
    fn a_cut_link_blocks_and_is_listed_as_cut() {
        let (a, b) = (peer(), peer());
        let faults = Faults::default();
        let mut rules = FaultRules::default();
        rules.links.insert(
            a,
            LinkFault {
                cut: true,
                ..LinkFault::default()
            },
        );
        rules.links.insert(b, LinkFault::default());
        faults.set(rules.clone());
        assert!(faults.is_blocked(&a));
        assert!(!faults.is_blocked(&b));
        assert_eq!(rules.cut_peers(), BTreeSet::from([a]));
    }

    #[test]
    fn link_loss_delays_frames_by_retransmissions_and_is_per_peer() {
        let (lossy, clean) = (peer(), peer());
        let faults = Faults::default();
        let mut rules = FaultRules::default();
        rules.links.insert(
            lossy,
            LinkFault {
                delay: Duration::from_millis(10),
                loss: 0.5,
                ..LinkFault::default()
            },
        );
        faults.set(rules);
        let delays: Vec<Duration> = (0..2000).map(|_| faults.link_delay(&lossy)).collect();
        let retransmitted = delays
            .iter()
            .filter(|d| **d >= Duration::from_millis(10) + MIN_RETRANSMIT_TIMEOUT)
            .count();
        assert!(
            (800..1200).contains(&retransmitted),
            "{retransmitted} of 2000 frames retransmitted at p = 0.5"
        );
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(10)));
        // Lost for good only when all six transmissions are: p = 1/64.
        let lost = (0..4000).filter(|_| faults.link_drops(&lossy)).count();
        assert!((20..140).contains(&lost), "lost {lost} of 4000 at p = 1/64");
        assert!(!(0..2000).any(|_| faults.link_drops(&clean)));
        assert!(
            (0..2000).all(|_| faults.link_delay(&clean).is_zero()),
            "an unmodelled link has no delay"
        );
    }

    #[test]
    fn a_link_that_loses_everything_loses_every_frame() {
        let link = LinkFault {
            loss: 1.0,
            ..LinkFault::default()
        };
        assert!((0..100).all(|_| link.loses_for_good()));
    }

    #[test]
    fn validity_bounds() {
        assert!(LinkFault::default().is_valid());
        let bad_loss = LinkFault {
            loss: 1.5,
            ..LinkFault::default()
        };
        assert!(!bad_loss.is_valid());
        let too_slow = LinkFault {
            delay: Duration::from_secs(3600),
            ..LinkFault::default()
        };
        assert!(!too_slow.is_valid());
    }

    #[test]
    fn rules_without_links_still_decode() {
        let rules: FaultRules =
            serde_json::from_str(r#"{"drop_rate":0.0,"delay":0,"blocked":[]}"#).unwrap();
        assert!(rules.links.is_empty());
    }
}
