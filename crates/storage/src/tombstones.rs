//! Tombstone collection: retires the tombstones deletes leave in the object metadata
//! table to a cold table once no replica can hold anything they must still outrank, so
//! the table, the anti-entropy digests and the garbage-collection scan grow with what is
//! stored, not with every key ever deleted.
//!
//! A tombstone exists so that an older version of its key, still on some replica or in
//! flight, loses to it. Removing it too early brings that version back. So a round works
//! in two phases, as Garage's table GC does, on positive proof only:
//!
//! 1. **Confirm.** This node picks tombstones from its own table that are older than
//!    `tombstone_grace` (by their version's clock) and that collection may remove at all
//!    (below), and merges them into every metadata holder ([`Storage::metadata_holders`],
//!    this node included) with `PutMetaMany`. A holder's answer counts only from its own
//!    authenticated reply, and confirms a tombstone only if the holder now holds it, or a
//!    strictly newer entry of the key. A holder that does not answer, answers wrongly, or
//!    refuses an entry confirms nothing, and those tombstones stay. After this phase no
//!    honest holder holds an older version of the key, and none can take one any more:
//!    the tombstone outranks it wherever it lands.
//! 2. **Retire if equal.** Only the confirmed tombstones are sent to every holder in
//!    `DropTombstones`. Each holder retires a tombstone only if it is exactly the entry it
//!    holds, and only if it is old enough by the holder's own clock and of a kind it would
//!    collect itself. A key written again meanwhile keeps its new entry.
//!
//! Retiring moves the tombstone to the cold table (`MetaStore::retire_tombstone_if_equal`):
//! listings, ranges, digests and scans no longer see it, but every merge and point read
//! still does. So a holder that confirmed a tombstone while keeping an older version of
//! its key cannot bring that version back once every honest holder retired it: pushed to
//! them, it is refused as before; offered as a read answer, it meets the newer tombstone
//! from the honest replicas; listed in a range, the listing confirms the key by a quorum
//! read (see `listing.rs`). A drop a peer asks for without the confirmation round only
//! retires too. The cold table grows by one small record per collected key, on disk only.
//!
//! A drop that reaches only some holders heals: a holder that still has the tombstone
//! pushes it back by anti-entropy, which is harmless, and a later round collects it again.
//! Retired tombstones travel with the bucket: anti-entropy compares each bucket's cold
//! digest too and passes differing records on (`entropy/retired.rs`), and the receiver
//! merges them as retired (`Storage::retired_record_acceptable`, then
//! `MetaStore::merge_retired`: only over older entries), so a replica placed on the
//! bucket after the collection refuses an older version as the others do, once a round
//! reached it. The grace keeps young tombstones hot, where writes in flight meet them
//! (Cassandra's `gc_grace_seconds` has the same meaning).
//!
//! Collection is on by default (`storage.collect_tombstones`); a node with it off keeps
//! its tombstones hot and refuses every drop a peer asks for.
//!
//! Only tombstones of client keys in buckets that are not versioned are collected. In a
//! versioned bucket, versions and delete markers are internal objects the user lists
//! (`ListObjectVersions`), and every internal object (multipart state, versions) is left
//! alone: collecting those is not worth the risk of getting a gateway's invariants wrong.

use std::sync::Arc;
use std::time::Duration;

use xnode_store::{MergeOutcome, ObjectMeta};
use xnode_types::{NodeId, lock, unix_ms};

use crate::buckets::{Versioning, versioning_of};
use crate::proto::{MAX_DROP_TOMBSTONES, MAX_PUT_META_MANY, StoreRequest, StoreResponse};
use crate::{Storage, StorageError, blocking};

/// Most tombstones one round tries to collect: it bounds the round's messages (every
/// holder is asked about each one twice) and memory.
pub const TOMBSTONES_PER_ROUND: usize = 1024;
/// Most local entries one round reads looking for tombstones to collect. A table of
/// mostly live entries is then walked over several rounds, resuming where the last one
/// stopped, instead of in one long pass.
const ENTRIES_READ_PER_ROUND: usize = 64 * 1024;
/// Entries read from the local table per step of the walk.
const WALK_PAGE: usize = 1024;
/// Tombstones per request: both phases' requests carry whole entries.
const BATCH: usize = if MAX_PUT_META_MANY < MAX_DROP_TOMBSTONES {
    MAX_PUT_META_MANY
} else {
    MAX_DROP_TOMBSTONES
};
const TIMEOUT: Duration = Duration::from_secs(30);

/// What one tombstone-collection round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TombstoneRound {
    /// Tombstones old enough and of a kind collection may remove that this node found.
    pub candidates: u64,
    /// Of those, the ones every metadata holder confirmed holding (or outranking).
    pub confirmed: u64,
    /// Of those, the ones every holder answered the drop for: gone from every holder that
    /// still held exactly them.
    pub collected: u64,
}

impl Storage {
    /// Whether this node would remove `meta` from its table when asked: a tombstone of a
    /// client key, in a bucket its registry does not know as versioned, dated at least
    /// `tombstone_grace` before `now_ms`. Both the collector and every receiver of a drop
    /// decide by it, each with its own clock and registry.
    pub(crate) fn tombstone_collectable(&self, meta: &ObjectMeta, now_ms: u64) -> bool {
        let grace_ms = u64::try_from(self.config.tombstone_grace.as_millis()).unwrap_or(u64::MAX);
        self.config.collect_tombstones
            && meta.is_tombstone()
            && !meta.path.is_internal()
            && now_ms.saturating_sub(meta.version.wall_ms) >= grace_ms
            // A version dated ahead of this clock is not old, whatever the grace.
            && meta.version.wall_ms <= now_ms
            && versioning_of(&self.registry, &meta.path.bucket) == Versioning::Unversioned
    }

    /// Whether a retired tombstone a peer sends (`PutRetiredMany`) may enter this node's
    /// cold table: a sealed tombstone whose seal verifies (`check_peer_entry`), of a kind
    /// collection retires (a client key in a bucket this node's registry does not know as
    /// versioned), not dated ahead of this node's clock. Neither `collect_tombstones` nor
    /// the grace is asked for: a cold record only outranks older entries, as the same
    /// tombstone merged hot would, so taking it protects this replica and weakens nothing.
    pub(crate) fn retired_record_acceptable(&self, meta: &ObjectMeta) -> bool {
        meta.is_tombstone()
            && !meta.path.is_internal()
            && meta.version.wall_ms <= unix_ms()
            && versioning_of(&self.registry, &meta.path.bucket) == Versioning::Unversioned
            && self.check_peer_entry(meta).is_ok()
    }

    /// Serves `PutRetiredMany`: merges each acceptable record as retired
    /// (`MetaStore::merge_retired`). Returns, in the order given, whether each was stored
    /// now; a refused one is `false` and does not refuse the rest.
    pub(crate) async fn merge_retired_from_peer(
        &self,
        tombstones: Vec<ObjectMeta>,
    ) -> Result<Vec<bool>, StorageError> {
        let checked: Vec<Option<ObjectMeta>> = tombstones
            .into_iter()
            .map(|meta| self.retired_record_acceptable(&meta).then_some(meta))
            .collect();
        let store = self.meta.clone();
        // Each record on its own, as `PutMetaMany` does: one that fails (a bad path, a
        // record too large) does not refuse the rest.
        blocking(move || {
            Ok(checked
                .into_iter()
                .map(|meta| meta.is_some_and(|m| store.merge_retired(m).unwrap_or(false)))
                .collect())
        })
        .await
    }

    /// One tombstone-collection round (see the module documentation). Returns what it
    /// did; an error only for a failure of this node's own table.
    pub async fn collect_tombstones(self: &Arc<Self>) -> Result<TombstoneRound, StorageError> {
        if !self.config.collect_tombstones {
            return Ok(TombstoneRound::default());
        }
        let candidates = self.tombstone_candidates().await?;
        let mut round = TombstoneRound {
            candidates: u64::try_from(candidates.len()).unwrap_or(u64::MAX),
            ..TombstoneRound::default()
        };
        if candidates.is_empty() {
            return Ok(round);
        }
        let holders = self.metadata_holders();
        for batch in candidates.chunks(BATCH) {
            let confirmed = self.confirm_tombstones(&holders, batch).await;
            if confirmed.is_empty() {
                continue;
            }
            round.confirmed = round
                .confirmed
                .saturating_add(u64::try_from(confirmed.len()).unwrap_or(u64::MAX));
            round.collected = round
                .collected
                .saturating_add(self.drop_everywhere(&holders, confirmed).await);
        }
        Ok(round)
    }

    /// Reads the local table from where the last round stopped, and returns the
    /// tombstones this node would collect (at most [`TOMBSTONES_PER_ROUND`], reading at
    /// most [`ENTRIES_READ_PER_ROUND`] entries). The walk starts again from the top once
    /// it reaches the end.
    async fn tombstone_candidates(self: &Arc<Self>) -> Result<Vec<ObjectMeta>, StorageError> {
        let store = self.meta.clone();
        let mut cursor = lock(&self.tombstone_cursor).clone();
        let now_ms = unix_ms();
        let mut found = Vec::new();
        let mut read = 0usize;
        while found.len() < TOMBSTONES_PER_ROUND && read < ENTRIES_READ_PER_ROUND {
            let page = {
                let store = store.clone();
                let after = cursor.clone();
                blocking(move || {
                    store.scan((!after.is_empty()).then_some(after.as_slice()), WALK_PAGE)
                })
                .await?
            };
            read = read.saturating_add(page.len());
            let complete = page.len() == WALK_PAGE;
            for meta in page {
                cursor = meta.path.storage_key();
                if self.tombstone_collectable(&meta, now_ms) {
                    found.push(meta);
                    if found.len() >= TOMBSTONES_PER_ROUND {
                        break;
                    }
                }
            }
            if !complete {
                // The end of the table: the next round starts from the top.
                cursor.clear();
                break;
            }
        }
        *lock(&self.tombstone_cursor) = cursor;
        Ok(found)
    }

    /// Phase 1: merges `batch` into every holder, and returns the tombstones every holder
    /// confirmed holding (or outranking with a newer entry). Any holder that fails
    /// confirms nothing, so then nothing of the batch is returned.
    async fn confirm_tombstones(
        &self,
        holders: &[NodeId],
        batch: &[ObjectMeta],
    ) -> Vec<ObjectMeta> {
        let mut confirmed = vec![true; batch.len()];
        for &holder in holders {
            let request = StoreRequest::PutMetaMany {
                metas: batch.to_vec(),
            };
            match self.call(holder, request, TIMEOUT).await {
                Ok(StoreResponse::MetaMergedMany(outcomes)) if outcomes.len() == batch.len() => {
                    for ((ok, tombstone), outcome) in confirmed.iter_mut().zip(batch).zip(outcomes)
                    {
                        *ok = *ok && confirms(tombstone, outcome);
                    }
                }
                Ok(_) => {
                    tracing::info!(%holder, "a metadata holder answered tombstone confirmation wrongly; no tombstone of the batch is collected");
                    return Vec::new();
                }
                Err(e) => {
                    tracing::info!(%holder, error = %e, "a metadata holder did not confirm tombstones; no tombstone of the batch is collected");
                    return Vec::new();
                }
            }
        }
        batch
            .iter()
            .zip(confirmed)
            .filter(|(_, ok)| *ok)
            .map(|(tombstone, _)| tombstone.clone())
            .collect()
    }

    /// Phase 2: asks every holder to remove the confirmed tombstones if they are still
    /// exactly what it holds. Returns how many every holder answered for. A holder that
    /// fails keeps its copies; anti-entropy brings them back to the others, harmlessly.
    async fn drop_everywhere(&self, holders: &[NodeId], confirmed: Vec<ObjectMeta>) -> u64 {
        let count = u64::try_from(confirmed.len()).unwrap_or(u64::MAX);
        let mut everywhere = true;
        for &holder in holders {
            let request = StoreRequest::DropTombstones {
                tombstones: confirmed.clone(),
            };
            match self.call(holder, request, TIMEOUT).await {
                Ok(StoreResponse::TombstonesDropped(dropped))
                    if dropped.len() == confirmed.len() => {}
                Ok(_) => {
                    everywhere = false;
                    tracing::info!(%holder, "a metadata holder answered a tombstone drop wrongly; it keeps its copies until a later round");
                }
                Err(e) => {
                    everywhere = false;
                    tracing::info!(%holder, error = %e, "a metadata holder did not drop tombstones; it keeps its copies until a later round");
                }
            }
        }
        if everywhere { count } else { 0 }
    }

    /// Serves a drop (from a peer or this node): removes each tombstone this node would
    /// collect itself that is exactly the entry it holds. Nothing else about the sender
    /// is believed: not that the holders confirmed, nor its clock.
    pub(crate) async fn drop_tombstones(
        &self,
        tombstones: Vec<ObjectMeta>,
    ) -> Result<Vec<bool>, StorageError> {
        let now_ms = unix_ms();
        let allowed: Vec<bool> = tombstones
            .iter()
            .map(|t| self.tombstone_collectable(t, now_ms))
            .collect();
        let store = self.meta.clone();
        let dropped = blocking(move || {
            tombstones
                .iter()
                .zip(allowed)
                .map(|(tombstone, allowed)| {
                    if allowed {
                        store.retire_tombstone_if_equal(tombstone)
                    } else {
                        Ok(false)
                    }
                })
                .collect::<Result<Vec<bool>, _>>()
        })
        .await?;
        let removed = u64::try_from(dropped.iter().filter(|d| **d).count()).unwrap_or(u64::MAX);
        if removed > 0 {
            self.metrics.tombstones_collected.inc_by(removed);
            let mut health = lock(&self.health);
            health.gc_removed_tombstones = health.gc_removed_tombstones.saturating_add(removed);
        }
        Ok(dropped)
    }
}

/// Whether a holder's merge outcome confirms it holds `tombstone` or something that
/// outranks it: the tombstone itself, or a strictly newer entry of the key. An entry the
/// holder refused (`None`) or an older one that won by other rules confirms nothing.
fn confirms(tombstone: &ObjectMeta, outcome: Option<MergeOutcome>) -> bool {
    match outcome {
        Some(MergeOutcome::Stored | MergeOutcome::Held) => true,
        Some(MergeOutcome::Superseded { version, writer }) => {
            (version, writer) > (tombstone.version, tombstone.writer)
        }
        None => false,
    }
}
