//! A mergeable latency histogram with bounded relative error (log-scale buckets, as in
//! DDSketch): any node can merge any other node's histogram and read p50/p90/p99 from the
//! result, which is what makes network-wide percentiles possible without raw samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy of quantiles: a reported value is within 2% of the true one.
const ALPHA: f64 = 0.02;
/// Values below this (in microseconds) share bucket 0.
const MIN_VALUE_US: f64 = 1.0;
/// At most this many buckets are kept; the lowest are folded together beyond it, which
/// only loses precision at the fast end.
const MAX_BUCKETS: usize = 512;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// A histogram of durations in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket index -> count. Bucket `i` holds values in `(gamma^(i-1), gamma^i]`.
    buckets: BTreeMap<u16, u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    fn index(value_us: u64) -> u16 {
        let v = (value_us as f64).max(MIN_VALUE_US);
        (v.ln() / gamma().ln()).ceil().clamp(0.0, u16::MAX as f64) as u16
    }

    /// The representative value of bucket `i`: its midpoint in relative terms.
    fn value_of(index: u16) -> f64 {
        2.0 * gamma().powi(index as i32) / (1.0 + gamma())
    }

    pub fn record_us(&mut self, value_us: u64) {
        let bucket = self.buckets.entry(Self::index(value_us)).or_default();
        *bucket = bucket.saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(value_us);
        self.max_us = self.max_us.max(value_us);
        self.compact();
    }

    /// Adds every observation of `other` to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        // `other` may come from a peer: saturate, never overflow.
        for (i, n) in &other.buckets {
            let bucket = self.buckets.entry(*i).or_default();
            *bucket = bucket.saturating_add(*n);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
        self.compact();
    }

    /// The observations in `self` that are not in `earlier`, where `earlier` is an older
    /// cumulative snapshot of the same histogram. The maximum cannot be subtracted and is
    /// kept as an upper bound.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = Histogram::new();
        for (i, n) in &self.buckets {
            let before = earlier.buckets.get(i).copied().unwrap_or(0);
            if *n > before {
                out.buckets.insert(*i, n - before);
            }
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum_us = self.sum_us.saturating_sub(earlier.sum_us);
        out.max_us = if out.count > 0 { self.max_us } else { 0 };
        out
    }

    fn compact(&mut self) {
        while self.buckets.len() > MAX_BUCKETS {
            let mut lowest = self.buckets.iter().take(2).map(|(i, n)| (*i, *n));
            let (Some((a, na)), Some((b, nb))) = (lowest.next(), lowest.next()) else {
                return;
            };
            self.buckets.remove(&a);
            let bucket = self.buckets.entry(b).or_default();
            *bucket = bucket.saturating_add(na);
            let _ = nb;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The value below which a fraction `q` (0 to 1) of observations fall, within 2%.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (i, n) in &self.buckets {
            seen = seen.saturating_add(*n);
            if seen > rank {
                return Self::value_of(*i).min(self.max_us as f64);
            }
        }
        self.max_us as f64
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_quantile(sorted: &[u64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut values: Vec<u64> = (0..20_000).map(|i| 50 + (i * i) % 90_000).collect();
        let mut h = Histogram::new();
        for v in &values {
            h.record_us(*v);
        }
        values.sort();
        for q in [0.5, 0.9, 0.99] {
            let exact = exact_quantile(&values, q);
            let got = h.quantile_us(q);
            assert!(
                (got - exact).abs() / exact <= 0.021,
                "q{q}: exact {exact}, got {got}"
            );
        }
        assert_eq!(h.count(), 20_000);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut all = Histogram::new();
        let mut parts = vec![Histogram::new(), Histogram::new(), Histogram::new()];
        for i in 0..3000u64 {
            let v = 10 + (i * 7919) % 50_000;
            all.record_us(v);
            parts[(i % 3) as usize].record_us(v);
        }
        let mut merged = Histogram::new();
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged, all);
        // Merge order does not matter.
        let mut other = Histogram::new();
        for p in parts.iter().rev() {
            other.merge(p);
        }
        assert_eq!(other, all);
    }

    #[test]
    fn since_recovers_the_interval_between_two_snapshots() {
        let mut h = Histogram::new();
        for v in [100, 200, 300] {
            h.record_us(v);
        }
        let before = h.clone();
        for v in [5000, 6000] {
            h.record_us(v);
        }
        let delta = h.since(&before);
        assert_eq!(delta.count(), 2);
        assert!(delta.quantile_us(0.0) > 4000.0);
        let mut rebuilt = before.clone();
        rebuilt.merge(&delta);
        assert_eq!(rebuilt.count(), h.count());
    }

    #[test]
    fn bucket_count_stays_bounded() {
        let mut h = Histogram::new();
        let mut x: u64 = 1;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record_us(x >> 20);
        }
        assert!(h.buckets.len() <= MAX_BUCKETS);
        assert_eq!(h.count(), 100_000);
    }
}
