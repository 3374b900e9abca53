//! Garbage collection: moves local chunks that no live object references any more
//! (chunks of interrupted uploads, of overwritten and of deleted objects) to the trash, and
//! deletes what has been in the trash longer than `gc_trash_retention`.
//!
//! Safety comes first. A chunk is removed only with **positive proof** that nothing
//! references it: every node that may hold object metadata answered the whole scan in this
//! round. Those are the nodes whose own signed registry record says they are active
//! (whether the membership view calls them alive, suspect or dead: peers can forge that
//! view, but not a node's record), plus the storage set. A node that does not answer, or
//! answers wrongly, stops the round before anything is removed. A chunk younger than
//! `gc_grace` is never removed, because it may belong to an upload whose metadata is not
//! written yet. And what is removed goes to the trash first, for days, so a mistaken round
//! can be undone: a read that misses a trashed chunk restores it.
//!
//! Cost follows change, not size: a round asks each holder for its bucket digests and
//! rereads only the buckets whose digest moved since the last round, and reads each
//! manifest once (see `gc/view.rs`). A holder of an older version, which cannot list its
//! bucket digests, is scanned whole (`ScanMeta`).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use xnode_store::{ChunkId, Manifest};
use xnode_types::{NodeId, NodeStatus};

use super::proto::{StoreRequest, StoreResponse};
use super::{Storage, StorageError};

mod view;

use view::Budget;
pub use view::GcRound;
pub(crate) use view::ReferenceView;

const PAGE: u32 = 1000;
const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one round's metadata scan may take; a round that takes longer stops and
/// removes nothing.
const SCAN_TIME_LIMIT: Duration = Duration::from_secs(300);

impl Storage {
    /// Every node that may hold object metadata: each node whose own registry record says
    /// it is active or draining (the record is signed by that node, so no peer can remove a node from
    /// this list) and that re-signed it within `gc_silent_holder_after`, and the storage
    /// set. A node silent that long (a crash without leaving, a lost host) would otherwise
    /// stop garbage collection everywhere for good; its record's age is its own doing, as
    /// no peer can sign a record for it, old or new.
    pub(crate) fn metadata_holders(&self) -> Vec<NodeId> {
        let now_ms = xnode_types::unix_ms();
        let silence_ms =
            u64::try_from(self.config.gc_silent_holder_after.as_millis()).unwrap_or(u64::MAX);
        let mut holders: BTreeSet<NodeId> = self
            .registry
            .node_records_signed_at()
            .into_iter()
            .filter(|(r, signed_at_ms)| {
                // A draining node still holds metadata until its drain ends in `Left`.
                matches!(r.status, NodeStatus::Active | NodeStatus::Draining)
                    && now_ms.saturating_sub(*signed_at_ms) <= silence_ms
            })
            .map(|(r, _)| r.node_id)
            .collect();
        holders.extend(self.storage_set().into_iter().map(|c| c.id));
        holders.insert(self.node_id);
        holders.into_iter().collect()
    }

    /// One garbage-collection round. Returns the number of chunks moved to the trash.
    pub async fn collect_garbage(self: &Arc<Self>) -> Result<u64, StorageError> {
        Ok(self.collect_garbage_round().await?.removed)
    }

    /// One garbage-collection round, saying what it read. Rounds run one at a time (a
    /// round started meanwhile waits), as each continues from what the last one saw.
    pub async fn collect_garbage_round(self: &Arc<Self>) -> Result<GcRound, StorageError> {
        let mut view = self.gc_view.lock().await;
        // A chunk is old enough to remove if it was older than `gc_grace` when the survey
        // began, not merely when the sweep reaches it: a chunk written during a long
        // survey may belong to an object whose entry the survey read before it existed.
        let survey_started = SystemTime::now();
        let trash = self.trash.clone();
        let retention = self.config.gc_trash_retention;
        let purged = tokio::task::spawn_blocking(move || trash.purge(retention))
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))??;
        if purged > 0 {
            tracing::info!(
                purged,
                "deleted chunks kept in the trash longer than the retention period"
            );
        }
        let set = self.storage_set();
        let holders = self.metadata_holders();
        let size_before = view.size();
        view.keep_holders(&holders);
        let mut round = GcRound {
            holders: holders.len(),
            ..GcRound::default()
        };

        // Every manifest a live entry names, cluster-wide. Peers answer the survey, so it
        // is bounded: entries in total, and time; and every page must move forward.
        let mut manifests: HashSet<ChunkId> = HashSet::new();
        let mut budget = Budget::new(self.config.gc_max_scan_entries);
        let scan = async {
            for &node in &holders {
                let surveyed = self
                    .survey_holder(node, &mut view, &mut budget, &mut round, &mut manifests)
                    .await;
                let scanned = match surveyed {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        self.scan_references(node, &mut budget, &mut round, &mut manifests)
                            .await
                    }
                    Err(e) => Err(e),
                };
                scanned.map_err(|e| {
                    StorageError::Quorum(format!(
                        "metadata holder {node} did not answer the whole scan, so the set of referenced chunks could be incomplete: {e}"
                    ))
                })?;
            }
            Ok::<(), StorageError>(())
        };
        tokio::time::timeout(SCAN_TIME_LIMIT, scan)
            .await
            .map_err(|_| {
                StorageError::Quorum(format!(
                    "the metadata scan took longer than {SCAN_TIME_LIMIT:?}"
                ))
            })??;

        // Every chunk those manifests name: read once, then remembered (a manifest's id
        // is the hash of its bytes, so what it names never changes).
        let mut referenced: HashSet<ChunkId> = self.gc_roots().into_iter().collect();
        for &manifest_id in &manifests {
            referenced.insert(manifest_id);
            if let Some(chunks) = view.manifest_chunks(&manifest_id) {
                referenced.extend(chunks.iter().copied());
                continue;
            }
            let bytes = self.get_chunk(manifest_id, &set).await?;
            let chunks: Vec<ChunkId> = Manifest::decode(&bytes)?.all_chunk_ids().collect();
            round.manifests_read += 1;
            referenced.extend(chunks.iter().copied());
            view.remember_manifest(manifest_id, chunks);
        }
        view.keep_manifests(&manifests);
        // Kept for the next start when the round changed it: a round in a network at
        // rest writes nothing.
        let changed =
            round.buckets_rescanned > 0 || round.manifests_read > 0 || view.size() != size_before;
        if changed && let Err(e) = view.save(&self.db).await {
            tracing::warn!(error = %e, "could not keep garbage collection's view for the next start");
        }
        drop(view);

        // The chunks this edge placed that nothing references any more stop counting as
        // its tenants' stored bytes: the replicas' collection removes them now too.
        match self.forget_unreferenced_placements(&referenced) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(forgotten = n, "placed chunks no longer metered"),
            Err(e) => tracing::warn!("could not update the metered placements: {e}"),
        }

        // Local chunks that nothing references and that are old enough go to the trash.
        let cutoff = survey_started.checked_sub(self.config.gc_grace);
        let chunks = self.chunks.clone();
        let trash = self.trash.clone();
        let (removed, restored) =
            tokio::task::spawn_blocking(move || -> Result<(u64, u64), xnode_store::StoreError> {
                // Trashed chunks that are referenced again (a mistaken round, or an
                // object written since with the same bytes) come back first.
                let mut restored = 0u64;
                for id in trash.ids()? {
                    if referenced.contains(&id) && trash.restore(&chunks, &id)?.is_some() {
                        restored += 1;
                    }
                }
                let mut removed = 0;
                let mut cursor: Option<ChunkId> = None;
                loop {
                    let batch = chunks.list(cursor.as_ref(), 1000)?;
                    let Some((last, _)) = batch.last() else { break };
                    cursor = Some(*last);
                    for (id, _) in batch {
                        if referenced.contains(&id) {
                            continue;
                        }
                        let hex = id.to_hex();
                        let path = chunks.dir().join(&hex[..2]).join(&hex);
                        let old_enough = std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .zip(cutoff)
                            .is_some_and(|(written, cutoff)| written <= cutoff);
                        if old_enough && trash.put(&chunks, &id)? {
                            removed += 1;
                        }
                    }
                }
                Ok((removed, restored))
            })
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))??;
        if let Ok(mut health) = self.health.lock() {
            health.gc_removed_chunks += removed;
        }
        round.removed = removed;
        round.restored = restored;
        if restored > 0 {
            tracing::warn!(
                restored,
                "garbage collection restored trashed chunks that are referenced again"
            );
        }
        tracing::debug!(?round, "garbage collection round done");
        Ok(round)
    }

    /// Reads every metadata entry `node` holds, page by page, and notes the manifests live
    /// entries name. Fails (so the round removes nothing) if the node does not answer, if
    /// a page does not move past the previous one, or if the round's entry budget runs out.
    async fn scan_references(
        &self,
        node: NodeId,
        budget: &mut Budget,
        round: &mut GcRound,
        manifests: &mut HashSet<ChunkId>,
    ) -> Result<(), StorageError> {
        let mut after: Vec<u8> = Vec::new();
        loop {
            let request = StoreRequest::ScanMeta {
                after: after.clone(),
                limit: PAGE,
            };
            let page = match self.call(node, request, TIMEOUT).await? {
                StoreResponse::MetaList(page) => page,
                _ => {
                    return Err(StorageError::Internal(
                        "unexpected answer to a metadata scan".into(),
                    ));
                }
            };
            let len = u64::try_from(page.len()).unwrap_or(u64::MAX);
            if len > u64::from(PAGE) {
                return Err(StorageError::Internal(format!(
                    "node {node} answered the metadata scan with more entries than asked"
                )));
            }
            budget.charge(node, len)?;
            round.entries_read += len;
            let mut last: Option<Vec<u8>> = (!after.is_empty()).then(|| after.clone());
            for meta in &page {
                let key = meta.path.storage_key();
                if last.as_ref().is_some_and(|last| key <= *last) {
                    return Err(StorageError::Internal(format!(
                        "node {node} answered the metadata scan out of order"
                    )));
                }
                last = Some(key);
                if let Some(info) = &meta.info {
                    manifests.insert(info.manifest);
                }
            }
            match last {
                Some(last) if page.len() == PAGE as usize => after = last,
                _ => return Ok(()),
            }
        }
    }
}
