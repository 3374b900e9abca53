//! Per-peer rate limits on inbound SWIM requests.
//!
//! SWIM requests are served on the driver's single task, so a peer that sends them as
//! fast as it can would slow failure detection for everyone. Each peer gets token buckets
//! for requests, for bytes and, separately, for push-pull exchanges (which are the
//! expensive ones). The limits are far above what an honest peer sends: it probes each
//! member about once per pass and pushes-pulls every few seconds at most.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use xnode_types::NodeId;

use crate::proto::MAX_SWIM_BYTES;

/// Requests per second one peer may send, sustained, and in a burst.
const REQUESTS_PER_SEC: f64 = 100.0;
const REQUEST_BURST: f64 = 200.0;
/// Bytes per second one peer may send, sustained; a burst allows one largest message.
const BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
/// Push-pull exchanges one peer may start per second, sustained, and in a burst.
const SYNCS_PER_SEC: f64 = 0.5;
const SYNC_BURST: f64 = 4.0;
/// A peer not heard from for this long is forgotten (its buckets would be full anyway).
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            capacity,
            per_sec,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
    }

    fn has(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= cost
    }

    fn spend(&mut self, cost: f64) {
        self.tokens -= cost;
    }
}

#[derive(Debug)]
struct PeerBudget {
    requests: TokenBucket,
    bytes: TokenBucket,
    syncs: TokenBucket,
    last_used: Instant,
}

/// The inbound SWIM budgets of every peer that sent something recently.
#[derive(Debug, Default)]
pub(crate) struct SwimInboundLimits {
    peers: HashMap<NodeId, PeerBudget>,
}

impl SwimInboundLimits {
    fn budget(&mut self, peer: NodeId, now: Instant) -> &mut PeerBudget {
        let budget = self.peers.entry(peer).or_insert_with(|| PeerBudget {
            requests: TokenBucket::full(REQUEST_BURST, REQUESTS_PER_SEC, now),
            bytes: TokenBucket::full(MAX_SWIM_BYTES as f64, BYTES_PER_SEC, now),
            syncs: TokenBucket::full(SYNC_BURST, SYNCS_PER_SEC, now),
            last_used: now,
        });
        budget.last_used = now;
        budget
    }

    /// Whether a request of `len` bytes from `peer` may be served (checked before it is
    /// decoded). Spends from the peer's budget when it may.
    pub(crate) fn allow_request(&mut self, peer: NodeId, len: usize, now: Instant) -> bool {
        let budget = self.budget(peer, now);
        let bytes = len as f64;
        if !budget.requests.has(1.0, now) || !budget.bytes.has(bytes, now) {
            return false;
        }
        budget.requests.spend(1.0);
        budget.bytes.spend(bytes);
        true
    }

    /// Whether `peer` may start a push-pull exchange now. Spends from its budget when it may.
    pub(crate) fn allow_sync(&mut self, peer: NodeId, now: Instant) -> bool {
        let budget = self.budget(peer, now);
        if !budget.syncs.has(1.0, now) {
            return false;
        }
        budget.syncs.spend(1.0);
        true
    }

    /// Forgets peers idle for a while.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.peers
            .retain(|_, b| now.saturating_duration_since(b.last_used) < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use xnode_types::SecretKey;

    use super::*;

    #[test]
    fn a_flooding_peer_is_held_to_its_budget_and_others_are_not_affected() {
        let mut limits = SwimInboundLimits::default();
        let now = Instant::now();
        let flooder = SecretKey::generate().node_id();
        let honest = SecretKey::generate().node_id();
        let served = (0..10_000)
            .filter(|_| limits.allow_request(flooder, 100, now))
            .count();
        assert_eq!(served, REQUEST_BURST as usize);
        assert!(limits.allow_request(honest, 100, now));
        // A second later, about one second's worth more.
        let later = now + Duration::from_secs(1);
        let more = (0..10_000)
            .filter(|_| limits.allow_request(flooder, 100, later))
            .count();
        assert_eq!(more, REQUESTS_PER_SEC as usize);

        let syncs = (0..100).filter(|_| limits.allow_sync(flooder, now)).count();
        assert_eq!(syncs, SYNC_BURST as usize);
        // Big messages spend the byte budget.
        let big = SecretKey::generate().node_id();
        assert!(limits.allow_request(big, MAX_SWIM_BYTES, now));
        assert!(!limits.allow_request(big, MAX_SWIM_BYTES, now));

        limits.prune(now + IDLE);
        assert!(limits.peers.is_empty());
    }
}
