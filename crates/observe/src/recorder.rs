//! Accumulates this node's measurements, per scope, for its next summary.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use xnode_types::PublicKeyBytes;

use crate::ScopeStats;

/// At most this many scopes are tracked per node (beyond them, activity is counted under
/// `other`), which bounds summary size whatever the number of buckets or deployments.
pub const MAX_SCOPES: usize = 64;

/// The scope that collects what does not fit.
pub(crate) const OTHER: &str = "other";
/// Longest scope name kept as its own scope (`deployment:` plus a 64-character name fits);
/// longer ones are counted under `other`, so no request can make a summary huge.
pub const MAX_SCOPE_NAME: usize = 96;
/// A tenant counts as active for this long after its last request.
const ACTIVE_WINDOW_MS: u64 = 60_000;

/// The outcome of one request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub status: u16,
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub fuel: u64,
}

#[derive(Default)]
struct State {
    scopes: BTreeMap<String, ScopeStats>,
    tenants: HashMap<PublicKeyBytes, u64>,
}

/// Thread-safe accumulator of cumulative per-scope statistics.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records one request in every scope of `scopes` (for example `["storage",
    /// "bucket:photos"]`), at time `now_ms`, on behalf of `tenant` if known.
    pub fn record(
        &self,
        scopes: &[&str],
        outcome: Outcome,
        tenant: Option<PublicKeyBytes>,
        now_ms: u64,
    ) {
        let mut state = self.lock();
        for scope in scopes {
            let fits = scope.len() <= MAX_SCOPE_NAME;
            let name: &str = if fits
                && (state.scopes.contains_key(*scope) || state.scopes.len() < MAX_SCOPES - 1)
            {
                scope
            } else {
                OTHER
            };
            // A scope's name is copied only the first time it is seen: this runs for
            // every API request and function call.
            if !state.scopes.contains_key(name) {
                state.scopes.insert(name.to_owned(), ScopeStats::default());
            }
            let Some(stats) = state.scopes.get_mut(name) else {
                continue;
            };
            stats.requests = stats.requests.saturating_add(1);
            match outcome.status {
                400..=499 => stats.client_errors = stats.client_errors.saturating_add(1),
                500..=599 => stats.server_errors = stats.server_errors.saturating_add(1),
                _ => {}
            }
            stats.bytes_in = stats.bytes_in.saturating_add(outcome.bytes_in);
            stats.bytes_out = stats.bytes_out.saturating_add(outcome.bytes_out);
            stats.fuel = stats.fuel.saturating_add(outcome.fuel);
            stats.latency.record_us(outcome.latency_us);
        }
        if let Some(tenant) = tenant {
            state.tenants.insert(tenant, now_ms);
        }
    }

    /// The cumulative statistics so far, and the number of tenants active in the last
    /// minute before `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> (BTreeMap<String, ScopeStats>, u32) {
        let mut state = self.lock();
        state
            .tenants
            .retain(|_, last| now_ms.saturating_sub(*last) <= ACTIVE_WINDOW_MS);
        (state.scopes.clone(), state.tenants.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_by_class_and_bounds_scopes() {
        let r = Recorder::new();
        let ok = Outcome {
            status: 200,
            latency_us: 1000,
            bytes_in: 10,
            bytes_out: 20,
            fuel: 0,
        };
        r.record(&["storage", "bucket:a"], ok, None, 0);
        r.record(&["storage"], Outcome { status: 404, ..ok }, None, 0);
        r.record(&["storage"], Outcome { status: 503, ..ok }, None, 0);
        for i in 0..200 {
            r.record(&[&format!("bucket:b{i}")], ok, None, 0);
        }
        let (scopes, _) = r.snapshot(0);
        let s = &scopes["storage"];
        assert_eq!(
            (s.requests, s.client_errors, s.server_errors, s.bytes_in),
            (3, 1, 1, 30)
        );
        assert!(scopes.len() <= MAX_SCOPES);
        let total: u64 = scopes
            .iter()
            .filter(|(k, _)| k.starts_with("bucket:") || *k == "other")
            .map(|(_, v)| v.requests)
            .sum();
        assert_eq!(
            total, 201,
            "nothing is lost when scopes overflow into `other`"
        );
    }

    #[test]
    fn a_huge_scope_name_is_counted_under_other() {
        let r = Recorder::new();
        let long = format!("bucket:{}", "a".repeat(60_000));
        r.record(&["api", &long], Outcome::default(), None, 0);
        let (scopes, _) = r.snapshot(0);
        assert!(scopes.keys().all(|k| k.len() <= MAX_SCOPE_NAME));
        assert_eq!(scopes["other"].requests, 1);
    }

    #[test]
    fn active_tenants_expire_after_a_minute() {
        let r = Recorder::new();
        let a = PublicKeyBytes([1; 32]);
        let b = PublicKeyBytes([2; 32]);
        r.record(&["storage"], Outcome::default(), Some(a), 0);
        r.record(&["storage"], Outcome::default(), Some(b), 50_000);
        r.record(&["storage"], Outcome::default(), Some(a), 55_000);
        assert_eq!(r.snapshot(60_000).1, 2);
        assert_eq!(r.snapshot(111_000).1, 1);
        assert_eq!(r.snapshot(200_000).1, 0);
    }
}
