//! Storage quotas per tenant, enforced at the edge on every write (uploads, multipart
//! parts, completions and copies).
//!
//! A tenant's usage is counted from the replicated metadata, not from what this edge wrote:
//! the edge lists the live objects of every bucket the tenant owns from a read quorum of
//! each bucket's metadata replicas, so writes made through any other node count too. The
//! count is kept for `usage_refresh`; what this edge writes meanwhile is added to it, so a
//! tenant writing through one edge meets its quota exactly (to one object). A tenant
//! writing through `k` edges at once can go over by what each of the other edges accepts
//! before its own count is refreshed: at most `k - 1` times the room left at the last
//! count, once, after which every edge's recount refuses further writes. Deletes and
//! overwrites free quota at the next recount.
//!
//! Stored bytes are each live object's size times its bucket's replication factor, so a
//! bucket with 16 copies uses the quota 16 times as fast as the bytes it holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xnode_store::{INTERNAL_KEY_PREFIX, ObjectMeta};
use xnode_types::{PublicKeyBytes, lock};

use crate::listing::ListQuestion;
use crate::proto::MAX_LIST_LIMIT;
use crate::{Storage, StorageError};

/// Tenants whose counts an edge keeps at once; beyond it the oldest count is dropped (and
/// made again when needed).
const MAX_COUNTED_TENANTS: usize = 16_384;
/// Counts running at once on one edge: a count lists metadata from peers, so many tenants
/// writing at once must not turn into a listing storm.
const COUNTS_AT_ONCE: usize = 4;
/// Most metadata entries one count reads when no object quota bounds it.
const MAX_COUNTED_ENTRIES: u64 = 10_000_000;

/// The operator's quotas for every tenant (`[storage.quota]`). Off by default: counting
/// costs metadata listings, and a devnet or a private cluster has no strangers to bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuota {
    /// Bytes one tenant may store: the sum over its live objects (multipart parts
    /// included) of size times the bucket's replication factor. `None`: no limit.
    pub max_stored_bytes: Option<u64>,
    /// Live objects one tenant may have (multipart parts included). `None`: no limit.
    pub max_objects: Option<u64>,
    /// Buckets one tenant may own, counted from this node's copy of the registry when
    /// the tenant creates one through this node. `None`: no limit.
    pub max_buckets: Option<u64>,
    /// Bytes of registry entries (keys and values of bucket claims, deployments, jobs)
    /// one tenant may hold, counted from this node's copy of the registry when the tenant
    /// adds one through this node. Every node holds the whole registry, so this bounds
    /// what one tenant makes every node keep. `None`: no limit.
    pub max_registry_bytes: Option<u64>,
    /// How long an edge trusts a count of a tenant's usage before counting again.
    #[serde(with = "xnode_types::duration_text")]
    pub usage_refresh: Duration,
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self {
            max_stored_bytes: None,
            max_objects: None,
            max_buckets: None,
            max_registry_bytes: None,
            usage_refresh: Duration::from_secs(30),
        }
    }
}

/// What a tenant stores, or is about to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Object bytes times replication factor.
    pub stored_bytes: u64,
    pub objects: u64,
}

impl Usage {
    fn plus(self, other: Usage) -> Usage {
        Usage {
            stored_bytes: self.stored_bytes.saturating_add(other.stored_bytes),
            objects: self.objects.saturating_add(other.objects),
        }
    }

    fn minus(self, other: Usage) -> Usage {
        Usage {
            stored_bytes: self.stored_bytes.saturating_sub(other.stored_bytes),
            objects: self.objects.saturating_sub(other.objects),
        }
    }
}

impl TenantQuota {
    /// Whether any quota is set (otherwise nothing is counted).
    pub fn enabled(&self) -> bool {
        self.max_stored_bytes.is_some() || self.max_objects.is_some()
    }

    /// Checks that `usage` plus `adding` stays within the quotas.
    pub fn check(&self, usage: Usage, adding: Usage) -> Result<(), StorageError> {
        let after = usage.plus(adding);
        if let Some(max) = self.max_objects
            && adding.objects > 0
            && after.objects > max
        {
            return Err(StorageError::QuotaExceeded(format!(
                "the tenant has {} objects; the quota is {max}",
                usage.objects
            )));
        }
        if let Some(max) = self.max_stored_bytes
            && after.stored_bytes > max
        {
            return Err(StorageError::QuotaExceeded(format!(
                "the tenant stores {} bytes (with replicas) and this write adds {}; the quota is {max}",
                usage.stored_bytes, adding.stored_bytes
            )));
        }
        Ok(())
    }

    /// Plaintext bytes a write to a bucket with `rf` copies may still add on top of
    /// `usage` (`u64::MAX` without a byte quota).
    pub fn room_in_bytes(&self, usage: Usage, rf: usize) -> u64 {
        match self.max_stored_bytes {
            None => u64::MAX,
            Some(max) => max.saturating_sub(usage.stored_bytes) / (rf.max(1) as u64),
        }
    }
}

/// What this edge knows of tenants' usage.
#[derive(Debug, Default)]
pub(crate) struct UsageBook {
    known: std::sync::Mutex<HashMap<PublicKeyBytes, Known>>,
    counting: CountPermits,
}

#[derive(Debug)]
struct CountPermits(tokio::sync::Semaphore);

impl Default for CountPermits {
    fn default() -> Self {
        Self(tokio::sync::Semaphore::new(COUNTS_AT_ONCE))
    }
}

#[derive(Clone, Copy, Debug)]
struct Known {
    /// The last count from the replicas, and when it started.
    counted: Usage,
    counted_at: Instant,
    /// What this edge wrote since (all of it, including writes the count may already
    /// include: erring on the side of the quota).
    since: Usage,
}

impl UsageBook {
    /// The tenant's usage as of the last count younger than `refresh`, plus this edge's
    /// writes since; `None` if there is no such count.
    pub(crate) fn current(
        &self,
        tenant: &PublicKeyBytes,
        now: Instant,
        refresh: Duration,
    ) -> Option<Usage> {
        let known = lock(&self.known);
        let k = known.get(tenant)?;
        (now.saturating_duration_since(k.counted_at) < refresh).then(|| k.counted.plus(k.since))
    }

    /// What this edge has written for `tenant` since its last count (to subtract when a
    /// new count that started now replaces it).
    pub(crate) fn written_since_count(&self, tenant: &PublicKeyBytes) -> Usage {
        lock(&self.known)
            .get(tenant)
            .map(|k| k.since)
            .unwrap_or_default()
    }

    /// Records a count that started at `started`. Writes recorded before it started
    /// (`before`) are in it; the ones recorded during it are kept on top, whether or not
    /// the count saw them.
    pub(crate) fn record_count(
        &self,
        tenant: PublicKeyBytes,
        counted: Usage,
        started: Instant,
        before: Usage,
    ) {
        let mut known = lock(&self.known);
        if !known.contains_key(&tenant)
            && known.len() >= MAX_COUNTED_TENANTS
            && let Some(oldest) = known
                .iter()
                .min_by_key(|(_, k)| k.counted_at)
                .map(|(t, _)| *t)
        {
            known.remove(&oldest);
        }
        let since = known
            .get(&tenant)
            .map(|k| k.since.minus(before))
            .unwrap_or_default();
        known.insert(
            tenant,
            Known {
                counted,
                counted_at: started,
                since,
            },
        );
    }

    /// Adds a write this edge acknowledged.
    pub(crate) fn add(&self, tenant: &PublicKeyBytes, written: Usage) {
        if let Some(k) = lock(&self.known).get_mut(tenant) {
            k.since = k.since.plus(written);
        }
    }
}

impl Storage {
    /// The tenant's usage as this edge knows it, counting it again from the replicas if
    /// the last count is older than `usage_refresh`.
    pub(crate) async fn tenant_usage(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
    ) -> Result<Usage, StorageError> {
        let quota = &self.config.quota;
        if let Some(usage) = self
            .usage
            .current(tenant, Instant::now(), quota.usage_refresh)
        {
            return Ok(usage);
        }
        let _permit = self
            .usage
            .counting
            .0
            .acquire()
            .await
            .map_err(|_| StorageError::Internal("the usage counter is shutting down".into()))?;
        // Another request may have counted while this one waited.
        if let Some(usage) = self
            .usage
            .current(tenant, Instant::now(), quota.usage_refresh)
        {
            return Ok(usage);
        }
        let started = Instant::now();
        let before = self.usage.written_since_count(tenant);
        let counted = self.count_usage(tenant).await?;
        self.usage.record_count(*tenant, counted, started, before);
        Ok(self
            .usage
            .current(tenant, Instant::now(), quota.usage_refresh)
            .unwrap_or(counted))
    }

    /// Counts a tenant's live objects and their stored bytes over all its buckets, from
    /// a read quorum of each bucket's metadata replicas. Stops early once a quota is
    /// already exceeded (the exact figure beyond it does not matter).
    async fn count_usage(self: &Arc<Self>, tenant: &PublicKeyBytes) -> Result<Usage, StorageError> {
        let quota = &self.config.quota;
        let entry_cap = quota
            .max_objects
            .map_or(MAX_COUNTED_ENTRIES, |max| max.saturating_add(1))
            .min(MAX_COUNTED_ENTRIES);
        let over = |usage: &Usage| {
            usage.objects >= entry_cap
                || quota
                    .max_stored_bytes
                    .is_some_and(|max| usage.stored_bytes > max)
        };
        let mut usage = Usage::default();
        let set = self.storage_set();
        for bucket in self.list_buckets(tenant) {
            let rf = self.bucket_rf(tenant, &bucket.name);
            let targets = self.meta_placement(tenant, &bucket.name, &set);
            let (_, needed) = self.quorums(targets.len());
            // Client keys and internal ones (multipart parts) are listed apart: a listing
            // of client keys leaves internal ones out.
            let internal_prefix = INTERNAL_KEY_PREFIX.to_string();
            for prefix in ["", internal_prefix.as_str()] {
                let mut cursor: Option<String> = None;
                loop {
                    let question = ListQuestion {
                        tenant,
                        bucket: &bucket.name,
                        prefix,
                        after: cursor.as_deref(),
                        limit: MAX_LIST_LIMIT,
                    };
                    let round = self.list_round(&question, &targets, needed).await?;
                    for meta in round.merged.values() {
                        usage = usage.plus(stored(meta, rf));
                    }
                    if over(&usage) {
                        return Ok(usage);
                    }
                    match round.cut {
                        Some(cut) => cursor = Some(cut),
                        None => break,
                    }
                }
            }
        }
        Ok(usage)
    }

    /// Checks a write of `adding_plain` plaintext bytes (0 if not known yet) and one new
    /// object in `bucket` against the tenant's quota, and returns how many plaintext
    /// bytes the write may have at most (`u64::MAX` without quotas).
    pub(crate) async fn admit_write(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        adding_plain: u64,
    ) -> Result<u64, StorageError> {
        let quota = &self.config.quota;
        if !quota.enabled() {
            return Ok(u64::MAX);
        }
        let rf = self.bucket_rf(tenant, bucket);
        let usage = self.tenant_usage(tenant).await?;
        quota.check(usage, written(adding_plain, rf))?;
        Ok(quota.room_in_bytes(usage, rf))
    }

    /// Records an acknowledged write of `plain` bytes in `bucket` against the quota.
    pub(crate) fn record_write(&self, tenant: &PublicKeyBytes, bucket: &str, plain: u64) {
        if self.config.quota.enabled() {
            let rf = self.bucket_rf(tenant, bucket);
            self.usage.add(tenant, written(plain, rf));
        }
    }
}

/// One new object of `plain` bytes in a bucket with `rf` copies.
fn written(plain: u64, rf: usize) -> Usage {
    Usage {
        stored_bytes: plain.saturating_mul(rf as u64),
        objects: 1,
    }
}

/// What a live metadata entry uses (tombstones nothing).
fn stored(meta: &ObjectMeta, rf: usize) -> Usage {
    match &meta.info {
        Some(info) => written(info.size, rf),
        None => Usage::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn quota(bytes: Option<u64>, objects: Option<u64>) -> TenantQuota {
        TenantQuota {
            max_stored_bytes: bytes,
            max_objects: objects,
            ..TenantQuota::default()
        }
    }

    #[test]
    fn the_default_quota_is_off_and_allows_anything() {
        let q = TenantQuota::default();
        assert!(!q.enabled());
        let huge = Usage {
            stored_bytes: u64::MAX,
            objects: u64::MAX,
        };
        assert!(q.check(huge, written(u64::MAX, 16)).is_ok());
        assert_eq!(q.room_in_bytes(huge, 3), u64::MAX);
    }

    #[test]
    fn bytes_count_every_replica_and_the_limit_is_inclusive() {
        let q = quota(Some(300), None);
        let empty = Usage::default();
        assert!(q.check(empty, written(100, 3)).is_ok(), "exactly the quota");
        assert!(matches!(
            q.check(empty, written(101, 3)),
            Err(StorageError::QuotaExceeded(_))
        ));
        // A bucket with 16 copies uses the quota 16 times as fast.
        assert!(q.check(empty, written(19, 16)).is_err());
        assert_eq!(q.room_in_bytes(empty, 3), 100);
        assert_eq!(q.room_in_bytes(written(50, 3), 3), 50);
        assert_eq!(q.room_in_bytes(written(200, 3), 3), 0, "over: no room");
    }

    #[test]
    fn objects_are_limited_and_the_message_says_which_quota() {
        let q = quota(None, Some(2));
        let one = written(0, 3);
        assert!(q.check(one, written(0, 3)).is_ok());
        let err = q.check(one.plus(one), written(0, 3)).unwrap_err();
        assert!(err.to_string().contains("objects"), "{err}");
        let q = quota(Some(10), None);
        let err = q.check(Usage::default(), written(11, 1)).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
    }

    #[test]
    fn a_count_is_trusted_for_the_refresh_time_with_this_edges_writes_on_top() {
        let book = UsageBook::default();
        let tenant = PublicKeyBytes([7; 32]);
        let t0 = Instant::now();
        let refresh = Duration::from_secs(30);
        assert_eq!(book.current(&tenant, t0, refresh), None, "never counted");
        book.record_count(tenant, written(100, 1), t0, Usage::default());
        book.add(&tenant, written(5, 1));
        assert_eq!(
            book.current(&tenant, t0 + Duration::from_secs(1), refresh),
            Some(Usage {
                stored_bytes: 105,
                objects: 2
            })
        );
        assert_eq!(
            book.current(&tenant, t0 + refresh, refresh),
            None,
            "stale: count again"
        );
    }

    #[test]
    fn writes_during_a_count_are_kept_and_writes_before_it_are_not_counted_twice() {
        let book = UsageBook::default();
        let tenant = PublicKeyBytes([7; 32]);
        let t0 = Instant::now();
        let refresh = Duration::from_secs(30);
        book.record_count(tenant, Usage::default(), t0, Usage::default());
        book.add(&tenant, written(10, 1)); // before the next count: in it
        let before = book.written_since_count(&tenant);
        book.add(&tenant, written(20, 1)); // during the count: maybe not in it
        let recount_start = t0 + Duration::from_secs(31);
        book.record_count(tenant, written(10, 1), recount_start, before);
        assert_eq!(
            book.current(&tenant, recount_start, refresh),
            Some(Usage {
                stored_bytes: 30,
                objects: 2
            })
        );
    }

    #[test]
    fn the_book_stays_bounded() {
        let book = UsageBook::default();
        let t0 = Instant::now();
        for i in 0..(MAX_COUNTED_TENANTS + 10) {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            book.record_count(
                PublicKeyBytes(bytes),
                Usage::default(),
                t0 + Duration::from_millis(i as u64),
                Usage::default(),
            );
        }
        assert_eq!(lock(&book.known).len(), MAX_COUNTED_TENANTS);
    }
}
