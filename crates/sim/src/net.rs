//! The simulated network: regions with a one-way latency matrix, jitter, loss, and the
//! framing bytes each message costs on the wire beyond its encoded payload. Every class of
//! traffic (SWIM probes and push-pulls, gossip, summary aggregation) goes over the same
//! links.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

/// The regions simulated nodes are spread over, round-robin.
pub const REGIONS: [&str; 5] = ["us-east", "us-west", "eu-west", "ap-southeast", "sa-east"];

/// One-way latency between regions in milliseconds, roughly half the public cloud round
/// trips between those areas (the diagonal is a link inside one region).
const ONE_WAY_MS: [[f64; 5]; 5] = [
    [1.0, 32.0, 38.0, 105.0, 58.0],
    [32.0, 1.0, 68.0, 85.0, 90.0],
    [38.0, 68.0, 1.0, 80.0, 95.0],
    [105.0, 85.0, 80.0, 1.0, 160.0],
    [58.0, 90.0, 95.0, 160.0, 1.0],
];

/// Bytes a SWIM request costs beyond its encoded payload: libp2p's request-response opens
/// a yamux stream per request, negotiates the protocol name with multistream-select, and
/// frames the payload (yamux and noise headers, a length prefix). An estimate, not a
/// capture.
pub const REQUEST_FRAMING_BYTES: usize = 120;
/// Bytes a SWIM response costs beyond its payload (frame headers, length prefix, close).
pub const RESPONSE_FRAMING_BYTES: usize = 60;
/// Bytes a gossipsub message costs beyond its payload: the author's peer id, sequence
/// number, topic and signature that gossipsub adds in signed mode, and the frame headers.
pub const GOSSIP_FRAMING_BYTES: usize = 150;

/// Latency and loss of the simulated links.
#[derive(Clone, Debug)]
pub struct Links {
    /// Probability that any one message is lost.
    pub loss: f64,
    /// Each message's latency is the region latency times `1 + U(0, jitter)`.
    pub jitter: f64,
}

impl Links {
    /// The latency of one message from a node in `from` to a node in `to`, or `None` if
    /// the message is lost.
    pub fn delay(&self, from: usize, to: usize, rng: &mut StdRng) -> Option<Duration> {
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return None;
        }
        let base = ONE_WAY_MS
            .get(from % REGIONS.len())
            .and_then(|row| row.get(to % REGIONS.len()))
            .copied()
            .unwrap_or(1.0);
        let factor = 1.0 + rng.gen_range(0.0..=self.jitter.max(0.0));
        Some(Duration::from_secs_f64(base * factor / 1000.0))
    }
}

/// The kind of traffic a message belongs to, so the report can say where the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Direct and indirect probes and their answers.
    Probe,
    /// Push-pull exchanges of whole membership views.
    PushPull,
    /// Membership updates spread by gossipsub.
    Gossip,
    /// Summary aggregation: subtree reports to a parent and the parent's answers with the
    /// network totals (requests and responses, like SWIM's).
    Observe,
}

/// How many classes of traffic there are.
pub const CLASSES: usize = 4;

impl Class {
    pub const ALL: [Class; CLASSES] =
        [Class::Probe, Class::PushPull, Class::Gossip, Class::Observe];

    /// The classes that belong to membership (everything but aggregation).
    pub const MEMBERSHIP: [Class; 3] = [Class::Probe, Class::PushPull, Class::Gossip];

    pub fn index(self) -> usize {
        match self {
            Class::Probe => 0,
            Class::PushPull => 1,
            Class::Gossip => 2,
            Class::Observe => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Probe => "probe",
            Class::PushPull => "push-pull",
            Class::Gossip => "gossip",
            Class::Observe => "aggregation",
        }
    }
}

/// Bytes one node sent and received, by class, with framing.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub sent: [u64; CLASSES],
    pub received: [u64; CLASSES],
}

impl Traffic {
    pub fn add_sent(&mut self, class: Class, bytes: usize) {
        if let Some(slot) = self.sent.get_mut(class.index()) {
            *slot = slot.saturating_add(bytes as u64);
        }
    }

    pub fn add_received(&mut self, class: Class, bytes: usize) {
        if let Some(slot) = self.received.get_mut(class.index()) {
            *slot = slot.saturating_add(bytes as u64);
        }
    }

    /// Bytes sent in the given classes.
    pub fn sent_in(&self, classes: &[Class]) -> u64 {
        classes
            .iter()
            .filter_map(|c| self.sent.get(c.index()))
            .fold(0, |sum, bytes| sum.saturating_add(*bytes))
    }

    /// Bytes received in the given classes.
    pub fn received_in(&self, classes: &[Class]) -> u64 {
        classes
            .iter()
            .filter_map(|c| self.received.get(c.index()))
            .fold(0, |sum, bytes| sum.saturating_add(*bytes))
    }
}
