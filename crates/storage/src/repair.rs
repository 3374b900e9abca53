//! Background workers that keep storage healthy: repair restores `rf` copies of every
//! chunk and metadata entry this node holds; scrub re-hashes local chunks at a bounded
//! rate and replaces rotted ones from peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use xnode_store::ChunkId;
use xnode_types::NodeId;

use tokio_util::sync::CancellationToken;
use xnode_types::unix_ms;
use xnode_worker::{Interval, Progress, Step, Worker, WorkerError, periodic};

use crate::proto::{StoreRequest, StoreResponse};
use crate::{Storage, StorageError};

const BATCH: usize = 256;
/// Chunk copies one repair scan runs at once towards one node.
const REPAIR_PARALLELISM: usize = 8;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Storage {
    /// One repair scan over everything this node stores. Returns the number of copies made.
    pub(crate) async fn repair_scan(self: &Arc<Self>) -> Result<u64, StorageError> {
        let set = self.storage_set();
        let live = self.live_nodes();
        let mut repaired = 0u64;
        let mut under_chunks = 0u64;
        let mut under_objects = 0u64;

        // Chunks.
        let mut cursor: Option<ChunkId> = None;
        loop {
            let chunks = self.chunks.clone();
            let after = cursor;
            let batch = tokio::task::spawn_blocking(move || chunks.list(after.as_ref(), BATCH))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))??;
            let Some((last, _)) = batch.last() else { break };
            cursor = Some(*last);
            // Which live placement nodes should hold which chunks.
            let mut ask: BTreeMap<NodeId, Vec<ChunkId>> = BTreeMap::new();
            let mut holders: BTreeMap<ChunkId, usize> = BTreeMap::new();
            let rfs: BTreeMap<ChunkId, usize> = batch
                .iter()
                .map(|(id, _)| (*id, self.chunk_rf(id)))
                .collect();
            for (id, _) in &batch {
                let rf = rfs
                    .get(id)
                    .copied()
                    .unwrap_or(self.config.replication_factor);
                for node in self.placement(&id.0, &set, rf) {
                    if node == self.node_id {
                        *holders.entry(*id).or_default() += 1;
                    } else if live.contains(&node) {
                        ask.entry(node).or_default().push(*id);
                    }
                }
                holders.entry(*id).or_default();
            }
            for (node, ids) in ask {
                let has = match self
                    .call(
                        node,
                        StoreRequest::HasChunks { ids: ids.clone() },
                        CALL_TIMEOUT,
                    )
                    .await
                {
                    Ok(StoreResponse::Has(has)) if has.len() == ids.len() => has,
                    _ => continue,
                };
                let mut missing = Vec::new();
                for (id, present) in ids.into_iter().zip(has) {
                    if present {
                        *holders.entry(id).or_default() += 1;
                    } else {
                        missing.push(id);
                    }
                }
                // Copy several chunks at once: one at a time leaves the link idle
                // between round trips.
                let copies: Vec<(ChunkId, bool)> = futures::stream::iter(missing)
                    .map(|id| async move { (id, self.copy_chunk_to(id, node).await) })
                    .buffer_unordered(REPAIR_PARALLELISM)
                    .collect()
                    .await;
                for (id, copied) in copies {
                    if copied {
                        repaired += 1;
                        *holders.entry(id).or_default() += 1;
                    }
                }
            }
            under_chunks += holders
                .iter()
                .filter(|(id, n)| {
                    let rf = rfs
                        .get(*id)
                        .copied()
                        .unwrap_or(self.config.replication_factor);
                    **n < rf.min(set.len())
                })
                .count() as u64;
        }

        // Metadata: offer every entry to its live placement nodes (merging is idempotent).
        let mut after: Option<Vec<u8>> = None;
        loop {
            let meta = self.meta.clone();
            let from = after.clone();
            let batch = tokio::task::spawn_blocking(move || meta.scan(from.as_deref(), BATCH))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))??;
            let Some(last) = batch.last() else { break };
            after = Some(last.path.storage_key());
            for entry in batch {
                let key = super::bucket_placement_key(&entry.path.tenant, &entry.path.bucket);
                let mut reached = 0usize;
                let rf = self.bucket_rf(&entry.path.tenant, &entry.path.bucket);
                for node in self.placement(&key, &set, rf) {
                    if node == self.node_id {
                        reached += 1;
                        continue;
                    }
                    if !live.contains(&node) {
                        continue;
                    }
                    let request = StoreRequest::PutMeta {
                        meta: entry.clone(),
                    };
                    // A replica that holds a newer version holds the key too.
                    let changed = match self.call(node, request, CALL_TIMEOUT).await {
                        Ok(StoreResponse::MetaMerged { outcome }) => {
                            Some(outcome == xnode_store::MergeOutcome::Stored)
                        }
                        Ok(StoreResponse::MetaStored { changed }) => Some(changed),
                        _ => None,
                    };
                    if let Some(changed) = changed {
                        reached += 1;
                        if changed {
                            repaired += 1;
                            self.metrics.repairs.inc();
                        }
                    }
                }
                if reached < rf.min(set.len()) {
                    under_objects += 1;
                }
            }
        }

        if let Ok(mut health) = self.health.lock() {
            health.under_replicated_chunks = under_chunks;
            health.under_replicated_objects = under_objects;
            health.repairs_done += repaired;
            health.last_repair_scan_ms = Some(unix_ms());
        }
        Ok(repaired)
    }

    async fn copy_chunk_to(self: &Arc<Self>, id: ChunkId, node: NodeId) -> bool {
        self.repairs_in_progress.fetch_add(1, Ordering::Relaxed);
        let chunks = self.chunks.clone();
        let result = async {
            let data = tokio::task::spawn_blocking(move || chunks.get(&id))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))??
                .ok_or_else(|| StorageError::Internal(format!("chunk {id} vanished")))?;
            let bucket = self.chunk_bucket(&id);
            self.call(
                node,
                StoreRequest::PutChunk { id, data, bucket },
                CALL_TIMEOUT,
            )
            .await
        }
        .await;
        self.repairs_in_progress.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                self.metrics.repairs.inc();
                tracing::debug!(chunk = %id, %node, "repaired a missing replica");
                true
            }
            Err(e) => {
                tracing::debug!(chunk = %id, %node, error = %e, "repair copy failed");
                false
            }
        }
    }

    /// Scrubs up to `max_bytes` of local chunks after `cursor`, replacing rotted ones from
    /// peers. Returns the cursor to continue from.
    pub(crate) async fn scrub_step(
        self: &Arc<Self>,
        cursor: Option<ChunkId>,
        max_bytes: u64,
    ) -> Option<ChunkId> {
        let chunks = self.chunks.clone();
        let batch = match tokio::task::spawn_blocking(move || {
            chunks.scrub_batch(cursor.as_ref(), max_bytes)
        })
        .await
        {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "scrub failed");
                return None;
            }
            Err(_) => return None,
        };
        for id in batch.corrupt {
            tracing::warn!(chunk = %id, "scrub found a rotted chunk; fetching a good copy from a peer");
            let set = self.storage_set();
            match self.get_chunk(id, &set).await {
                Ok(data) => {
                    let chunks = self.chunks.clone();
                    let stored = tokio::task::spawn_blocking(move || chunks.put(&id, &data)).await;
                    if matches!(stored, Ok(Ok(_))) {
                        self.metrics.repairs.inc();
                        tracing::info!(chunk = %id, "rotted chunk replaced");
                    }
                }
                Err(e) => {
                    tracing::error!(chunk = %id, error = %e, "no peer could replace a rotted chunk")
                }
            }
        }
        batch.next_cursor
    }
}

/// The scrub worker: re-hashes local chunks from a cursor at a bounded rate, one second's
/// budget per step.
struct Scrubber {
    storage: Arc<Storage>,
    cursor: Option<ChunkId>,
    ticker: tokio::time::Interval,
    passes: u64,
    steps: u64,
}

#[async_trait::async_trait]
impl Worker for Scrubber {
    fn name(&self) -> String {
        "storage-scrub".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.steps,
            queued: None,
            detail: Some(match &self.cursor {
                Some(id) => format!("pass {} at chunk {id}", self.passes + 1),
                None => format!("{} full passes", self.passes),
            }),
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        let next = self
            .storage
            .scrub_step(self.cursor, self.storage.config.scrub_bytes_per_sec)
            .await;
        if self.cursor.is_some() && next.is_none() {
            self.passes += 1;
        }
        self.cursor = next;
        self.steps += 1;
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        self.ticker.tick().await;
        Step::Busy
    }
}

impl Storage {
    /// The storage workers: `storage-repair` (a repair scan every `repair_interval`),
    /// `storage-gc` (garbage collection every `gc_interval`, first after one interval) and
    /// `storage-scrub`. The `rpc:store` server comes from [`Storage::serve`].
    pub fn workers(self: &Arc<Self>) -> Vec<Box<dyn Worker>> {
        let s = self.clone();
        let repair = periodic(
            "storage-repair",
            Interval::Immediately(self.config.repair_interval),
            move || {
                let s = s.clone();
                async move {
                    let n = s
                        .repair_scan()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))?;
                    if n > 0 {
                        tracing::info!(copies = n, "repair restored missing replicas");
                    }
                    Ok(n)
                }
            },
        );
        let s = self.clone();
        let gc = periodic(
            "storage-gc",
            Interval::AfterFirstPeriod(self.config.gc_interval),
            move || {
                let s = s.clone();
                async move {
                    // A skipped round is the safe outcome of an incomplete view (a storage
                    // node is down), not a failure.
                    match s.collect_garbage().await {
                        Ok(0) => Ok(0),
                        Ok(n) => {
                            tracing::info!(
                                removed = n,
                                "garbage collection removed unreferenced chunks"
                            );
                            Ok(n)
                        }
                        Err(e) => {
                            tracing::info!(reason = %e, "garbage collection skipped");
                            Ok(0)
                        }
                    }
                }
            },
        );
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let scrub = Scrubber {
            storage: self.clone(),
            cursor: None,
            ticker,
            passes: 0,
            steps: 0,
        };
        vec![Box::new(repair), Box::new(gc), Box::new(scrub)]
    }
}
