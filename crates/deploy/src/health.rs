//! Replica health as each gateway sees it: a replica whose latency or error rate is far
//! outside its peers' for the same deployment is marked degraded for a while, and the
//! gateway sends it nothing while healthy replicas exist. When the mark expires the
//! replica gets traffic again and is re-marked at once if it is still slow.
//!
//! A hedged call hides how slow its first replica was: when the hedge's answer wins, the
//! first call is dropped and its latency is only known to exceed the time waited. So a
//! lost race is a signal of its own: a replica that keeps losing to peers asked after it
//! is slower than they are, whatever the lower bounds of its latency say.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use xnode_types::NodeId;

/// How long a degraded mark lasts before the replica is given another chance.
const DEGRADED_FOR: Duration = Duration::from_secs(15);
/// Samples needed before a replica can be judged.
const MIN_SAMPLES: u32 = 3;
/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.3;
/// Share of recent calls a replica may lose to a later-asked peer before it is judged
/// slow: three lost races in a row cross it, and so does losing most of them for long.
const LOST_RACES_LIMIT: f64 = 0.6;

#[derive(Clone, Debug, Default)]
struct ReplicaHealth {
    latency_ms: f64,
    errors: f64,
    lost_races: f64,
    samples: u32,
    degraded_until: Option<Instant>,
}

#[derive(Default)]
pub struct HealthBook {
    replicas: HashMap<(String, NodeId), ReplicaHealth>,
}

impl HealthBook {
    /// Notes a call `node` answered (`ok`) or failed, after `latency`.
    pub fn note(&mut self, deployment: &str, node: NodeId, latency: Duration, ok: bool) {
        self.sample(deployment, node, latency, if ok { 0.0 } else { 1.0 }, 0.0);
    }

    /// Notes a hedged call `node` lost: a peer asked later answered first, so `node`
    /// had not answered after `at_least`.
    pub fn note_lost_race(&mut self, deployment: &str, node: NodeId, at_least: Duration) {
        self.sample(deployment, node, at_least, 0.0, 1.0);
    }

    fn sample(&mut self, deployment: &str, node: NodeId, latency: Duration, error: f64, lost: f64) {
        let h = self
            .replicas
            .entry((deployment.to_owned(), node))
            .or_default();
        let ms = latency.as_secs_f64() * 1000.0;
        if h.samples == 0 {
            h.latency_ms = ms;
            h.errors = error;
            h.lost_races = lost;
        } else {
            h.latency_ms = ALPHA * ms + (1.0 - ALPHA) * h.latency_ms;
            h.errors = ALPHA * error + (1.0 - ALPHA) * h.errors;
            h.lost_races = ALPHA * lost + (1.0 - ALPHA) * h.lost_races;
        }
        h.samples = h.samples.saturating_add(1);
        let (latency_ms, errors, lost_races, samples) =
            (h.latency_ms, h.errors, h.lost_races, h.samples);
        if samples < MIN_SAMPLES {
            return;
        }
        // The best peer for the same deployment is the yardstick.
        let best_peer = self
            .replicas
            .iter()
            .filter(|((d, n), p)| {
                d == deployment
                    && *n != node
                    && p.samples >= MIN_SAMPLES
                    && p.degraded_until.is_none()
            })
            .map(|(_, p)| p.latency_ms)
            .fold(f64::INFINITY, f64::min);
        let slow = (best_peer.is_finite() && latency_ms > 3.0 * best_peer + 100.0)
            || lost_races > LOST_RACES_LIMIT;
        let failing = errors > 0.5;
        if (slow || failing)
            && let Some(h) = self.replicas.get_mut(&(deployment.to_owned(), node))
            && h.degraded_until.is_none_or(|t| t <= Instant::now())
        {
            tracing::warn!(%node, deployment, latency_ms, errors, lost_races, best_peer, "replica marked degraded");
            h.degraded_until = Some(Instant::now() + DEGRADED_FOR);
        }
    }

    pub fn degraded(&mut self, deployment: &str) -> Vec<NodeId> {
        let now = Instant::now();
        let mut out = Vec::new();
        for ((d, n), h) in self.replicas.iter_mut() {
            if d != deployment {
                continue;
            }
            match h.degraded_until {
                Some(t) if t > now => out.push(*n),
                Some(_) => {
                    // Expired: judge afresh from new samples.
                    h.degraded_until = None;
                    h.samples = 0;
                }
                None => {}
            }
        }
        out
    }

    /// Every (deployment, node) currently marked degraded.
    pub fn all_degraded(&self) -> Vec<(String, NodeId)> {
        let now = Instant::now();
        self.replicas
            .iter()
            .filter(|(_, h)| h.degraded_until.is_some_and(|t| t > now))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_replica_is_marked_and_a_fast_one_is_not() {
        let mut book = HealthBook::default();
        let fast = xnode_types::SecretKey::generate().node_id();
        let slow = xnode_types::SecretKey::generate().node_id();
        for _ in 0..5 {
            book.note("f", fast, Duration::from_millis(3), true);
            book.note("f", slow, Duration::from_millis(503), true);
        }
        assert_eq!(book.degraded("f"), vec![slow]);
    }

    #[test]
    fn a_replica_that_keeps_losing_hedged_races_is_marked_and_one_lost_race_is_forgiven() {
        let mut book = HealthBook::default();
        let fast = xnode_types::SecretKey::generate().node_id();
        let slow = xnode_types::SecretKey::generate().node_id();
        // Under load every replica takes a few hundred milliseconds, and the hedge delay
        // (the deployment's p95) is about that too: the lower bounds a lost race gives
        // are not far enough above the best peer's latency to judge by latency alone.
        for _ in 0..5 {
            book.note("f", fast, Duration::from_millis(300), true);
            book.note("f", slow, Duration::from_millis(300), true);
        }
        book.note_lost_race("f", slow, Duration::from_millis(350));
        book.note("f", slow, Duration::from_millis(300), true);
        book.note_lost_race("f", slow, Duration::from_millis(350));
        assert!(book.degraded("f").is_empty(), "two races lost among wins");
        book.note_lost_race("f", slow, Duration::from_millis(350));
        book.note_lost_race("f", slow, Duration::from_millis(350));
        assert_eq!(book.degraded("f"), vec![slow]);
    }
}
