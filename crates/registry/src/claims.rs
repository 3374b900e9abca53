//! Named claims: global names (buckets, deployments) that tenants claim in their own
//! namespace, and the one rule that decides who holds a name.
//!
//! Tenant `T` claims name `N` of kind `K` by writing the entry `tenant/<T>/<K>/<N>`,
//! signed by `T`. Several tenants may claim one name; **the claim with the smallest
//! `(hlc, owner)` wins**. That rule depends only on the set of claims, never on the order
//! in which they arrived, so every node agrees on the holder once it has the same entries.
//!
//! The registry keeps an index from `(kind, name)` to its live claims, ordered by that
//! rule, so finding a name's holder costs a map lookup instead of a scan of every tenant's
//! namespace.

use std::collections::{BTreeMap, BTreeSet};

use xnode_types::{Hlc, PublicKeyBytes};

use crate::Entry;

/// How far a claim's clock may be from the receiving node's clock, either way. A claim
/// dated far in the past would outrank the honest holder of a name; one dated far in the
/// future would make the namespace's clock jump.
pub const MAX_CLAIM_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// The registry key of `owner`'s claim on `name` of `kind` (`bucket`, `deployment`).
pub fn claim_key(kind: &str, owner: &PublicKeyBytes, name: &str) -> String {
    format!("tenant/{}/{kind}/{name}", owner.to_hex())
}

/// Splits a claim key into its owner (hex), kind and name.
pub fn parse_claim_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix("tenant/")?;
    let (owner, rest) = rest.split_once('/')?;
    let (kind, name) = rest.split_once('/')?;
    (owner.len() == 64 && !kind.is_empty() && !name.is_empty()).then_some((owner, kind, name))
}

/// Why a claim's clock is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimClockError {
    #[error(
        "the claim is dated {skew_ms} ms before this node's clock (at most {limit_ms} ms allowed)"
    )]
    TooOld { skew_ms: u64, limit_ms: u64 },
    #[error(
        "the claim is dated {skew_ms} ms after this node's clock (at most {limit_ms} ms allowed)"
    )]
    InTheFuture { skew_ms: u64, limit_ms: u64 },
}

/// Checks that a claim is dated within [`MAX_CLAIM_CLOCK_SKEW_MS`] of `now_ms`.
pub fn check_claim_clock(entry: &Entry, now_ms: u64) -> Result<(), ClaimClockError> {
    let at = entry.hlc.wall_ms;
    let limit_ms = MAX_CLAIM_CLOCK_SKEW_MS;
    if at.saturating_add(limit_ms) < now_ms {
        return Err(ClaimClockError::TooOld {
            skew_ms: now_ms - at,
            limit_ms,
        });
    }
    if at > now_ms.saturating_add(limit_ms) {
        return Err(ClaimClockError::InTheFuture {
            skew_ms: at - now_ms,
            limit_ms,
        });
    }
    Ok(())
}

/// The order of claims on one name: winner first.
pub(crate) type ClaimRank = (Hlc, PublicKeyBytes, String);

/// `(kind, name)` → the live claims on it, in rank order.
#[derive(Default, Debug)]
pub(crate) struct ClaimIndex {
    by_name: BTreeMap<(String, String), BTreeSet<ClaimRank>>,
}

impl ClaimIndex {
    fn rank(entry: &Entry) -> Option<((String, String), ClaimRank)> {
        let (_, kind, name) = parse_claim_key(&entry.key)?;
        entry.value.as_ref()?;
        Some((
            (kind.to_owned(), name.to_owned()),
            (entry.hlc, entry.owner, entry.key.clone()),
        ))
    }

    /// Records that `new` replaced `old` (either may be absent or a tombstone).
    pub(crate) fn replace(&mut self, old: Option<&Entry>, new: &Entry) {
        if let Some((name, rank)) = old.and_then(Self::rank)
            && let Some(set) = self.by_name.get_mut(&name)
        {
            set.remove(&rank);
            if set.is_empty() {
                self.by_name.remove(&name);
            }
        }
        if let Some((name, rank)) = Self::rank(new) {
            self.by_name.entry(name).or_default().insert(rank);
        }
    }

    /// Every name of `kind` with at least one live claim, in order.
    pub(crate) fn names(&self, kind: &str) -> Vec<String> {
        self.by_name
            .range((kind.to_owned(), String::new())..)
            .take_while(|((k, _), _)| k == kind)
            .map(|((_, name), _)| name.clone())
            .collect()
    }

    /// The keys of the live claims on `name`, winner first.
    pub(crate) fn claims(&self, kind: &str, name: &str) -> Vec<String> {
        self.by_name
            .get(&(kind.to_owned(), name.to_owned()))
            .map(|set| set.iter().map(|(_, _, key)| key.clone()).collect())
            .unwrap_or_default()
    }
}
