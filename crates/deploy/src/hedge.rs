//! Failover without waiting, as each gateway decides it (sans I/O, so it is unit-tested
//! here and the gateway only wires it up):
//!
//! - [`LatencyWindow`] keeps a deployment's recent forward latencies; its p95, clamped to
//!   the configured range, is the hedge delay: an idempotent call that has no answer from
//!   its first replica by then is sent to the next replica too, and the first answer wins.
//! - [`SuspectBook`] remembers replicas whose connection just dropped or could not be
//!   dialled, for a short time, so the next calls go elsewhere at once instead of waiting
//!   for the failure detector to declare the node dead.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use xnode_types::NodeId;

/// Latencies kept per deployment: enough for a stable p95, few enough to follow change.
const WINDOW: usize = 64;
/// Samples needed before the p95 is trusted; until then the hedge waits the maximum.
const MIN_SAMPLES: usize = 8;

/// Recent forward latencies of one deployment, newest last.
#[derive(Clone, Debug, Default)]
pub struct LatencyWindow {
    samples: VecDeque<Duration>,
}

impl LatencyWindow {
    /// Records the latency of a forward that got an answer.
    pub fn record(&mut self, latency: Duration) {
        if self.samples.len() >= WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
    }

    /// The 95th percentile of the window, if it holds enough samples.
    pub fn p95(&self) -> Option<Duration> {
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        // Nearest-rank percentile: the smallest sample at or above 95 % of the samples.
        let rank = (sorted.len() * 95).div_ceil(100).max(1);
        sorted.get(rank - 1).copied()
    }

    /// How long to wait for the first replica before hedging: the p95 clamped to
    /// `[min, max]`, or `max` while too few samples exist (a cold deployment must not
    /// double its load on guesses).
    pub fn hedge_delay(&self, min: Duration, max: Duration) -> Duration {
        self.p95().map_or(max, |p| p.clamp(min, max.max(min)))
    }
}

/// Replicas this gateway saw fail at the connection level, each until its mark expires.
#[derive(Debug, Default)]
pub struct SuspectBook {
    until: HashMap<NodeId, Instant>,
}

impl SuspectBook {
    /// Marks `node` suspect for `duration` from `now`.
    pub fn mark(&mut self, node: NodeId, now: Instant, duration: Duration) {
        let until = now.checked_add(duration).unwrap_or(now);
        self.until.insert(node, until);
        // Expired marks are dropped here so the map stays as small as the set of
        // recently failed nodes.
        self.until.retain(|_, t| *t > now);
    }

    /// Clears `node`'s mark: it just answered.
    pub fn clear(&mut self, node: &NodeId) {
        self.until.remove(node);
    }

    pub fn is_suspect(&self, node: &NodeId, now: Instant) -> bool {
        self.until.get(node).is_some_and(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_millis(500);

    fn window(ms: impl IntoIterator<Item = u64>) -> LatencyWindow {
        let mut w = LatencyWindow::default();
        for m in ms {
            w.record(Duration::from_millis(m));
        }
        w
    }

    #[test]
    fn a_cold_deployment_waits_the_maximum_before_hedging() {
        assert_eq!(window([]).hedge_delay(MIN, MAX), MAX);
        assert_eq!(window([10; 7]).hedge_delay(MIN, MAX), MAX);
    }

    #[test]
    fn the_delay_is_the_p95_of_recent_latencies_within_the_clamp() {
        // 59 calls at 100 ms and 5 at 300 ms: rank 61 of 64 falls among the slow ones.
        let w = window(std::iter::repeat_n(100, 59).chain(std::iter::repeat_n(300, 5)));
        assert_eq!(w.p95(), Some(Duration::from_millis(300)));
        let w = window((1..=64).map(|i| i * 5));
        // Nearest rank 61 of 64: 305 ms.
        assert_eq!(w.hedge_delay(MIN, MAX), Duration::from_millis(305));
    }

    #[test]
    fn fast_and_slow_deployments_are_clamped() {
        assert_eq!(window([1; 20]).hedge_delay(MIN, MAX), MIN);
        assert_eq!(window([5_000; 20]).hedge_delay(MIN, MAX), MAX);
    }

    #[test]
    fn the_window_forgets_old_latencies() {
        let mut w = window([2_000; 64]);
        for _ in 0..64 {
            w.record(Duration::from_millis(80));
        }
        assert_eq!(w.hedge_delay(MIN, MAX), Duration::from_millis(80));
    }

    #[test]
    fn a_suspect_mark_expires_and_an_answer_clears_it() {
        let node = xnode_types::SecretKey::generate().node_id();
        let other = xnode_types::SecretKey::generate().node_id();
        let now = Instant::now();
        let mut book = SuspectBook::default();
        book.mark(node, now, Duration::from_secs(2));
        assert!(book.is_suspect(&node, now));
        assert!(!book.is_suspect(&other, now));
        assert!(!book.is_suspect(&node, now + Duration::from_secs(3)));
        book.clear(&node);
        assert!(!book.is_suspect(&node, now));
    }
}
