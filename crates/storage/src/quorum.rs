//! Quorum writes with bounded background copies.
//!
//! A write goes to every replica at once and returns once `W` of them took it; the calls
//! still running then finish in the background, so the remaining replicas get their copy
//! without the client waiting. Those background copies hold the data (a chunk, up to
//! several MiB each) until the slow replica answers or the call times out, so a replica
//! that answers late on purpose could make an edge pile them up without bound (security
//! review, finding 10). They are therefore bounded per edge by a byte budget
//! (`StorageConfig::background_copy_bytes`): when it is spent, the extra copy is dropped,
//! counted in `store_background_copies_skipped_total`, and left to repair, which restores
//! every missing replica anyway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use xnode_mesh::QuorumError;
use xnode_types::NodeId;

use crate::proto::{StoreRequest, StoreResponse};
use crate::{Storage, StorageError};

/// The budget of bytes this edge's background copies may hold at once.
#[derive(Debug)]
pub(crate) struct BackgroundBudget {
    permits: Arc<Semaphore>,
    /// The budget in bytes (and permits), also the most one copy may count for.
    bytes: u32,
}

impl BackgroundBudget {
    pub(crate) fn new(bytes: u64) -> Self {
        let bytes = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            permits: Arc::new(Semaphore::new(bytes as usize)),
            bytes,
        }
    }

    /// Bytes currently held by background copies.
    pub(crate) fn in_use(&self) -> u64 {
        u64::from(self.bytes).saturating_sub(self.permits.available_permits() as u64)
    }
}

/// How a quorum write reaches its replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Mesh,
    /// A data chunk: by the bulk link where one can be used (see `bulk`), else the mesh.
    BulkLink,
}

/// How a quorum write's calls go out: how long each may take, and by which route.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallsGo {
    pub(crate) timeout: Duration,
    pub(crate) route: Route,
}

/// See [`Storage::quorums`].
fn quorums_for(write_quorum: usize, read_quorum: usize, n: usize) -> (usize, usize) {
    let n = n.max(1);
    let w = write_quorum.max(n / 2 + 1).min(n);
    let r = read_quorum.max(n + 1 - w).min(n);
    (w, r)
}

impl Storage {
    /// Calls one node as [`Storage::call`] does, a data chunk by the bulk link if one can
    /// be used.
    async fn call_routed(
        self: &Arc<Self>,
        node: NodeId,
        request: StoreRequest,
        timeout: Duration,
        route: Route,
    ) -> Result<StoreResponse, StorageError> {
        if route == Route::BulkLink
            && let crate::bulk::Sent::Answered(result) =
                self.put_chunk_bulk(node, &request, timeout).await
        {
            return result;
        }
        self.call(node, request, timeout).await
    }

    /// The write and read quorums for `n` replicas (a bucket's replication factor, or
    /// fewer when the storage set is smaller): the configured ones, raised as needed so that
    /// a write reaches a majority and `W + R > n`, so every read quorum meets every write
    /// quorum whatever the bucket's factor. The defaults (`W = R = 2` of 3) are unchanged.
    pub(crate) fn quorums(&self, n: usize) -> (usize, usize) {
        quorums_for(self.config.write_quorum, self.config.read_quorum, n)
    }

    /// Sends `request` (of about `weight` bytes) to every target and returns once `needed`
    /// of them gave an answer `accept` takes; never with fewer. Calls still running then
    /// go on in the background within the budget, or are dropped (see the module docs).
    pub(crate) async fn write_quorum<T, F>(
        self: &Arc<Self>,
        targets: &[NodeId],
        needed: usize,
        request: StoreRequest,
        weight: usize,
        calls_go: CallsGo,
        mut accept: F,
    ) -> Result<Vec<(NodeId, T)>, QuorumError>
    where
        F: FnMut(NodeId, StoreResponse) -> Result<T, String>,
    {
        let needed = needed.max(1);
        let (tx, mut rx) = mpsc::channel(targets.len().max(1));
        let mut calls: HashMap<NodeId, JoinHandle<()>> = HashMap::new();
        for &peer in targets {
            let this = self.clone();
            let request = request.clone();
            let tx = tx.clone();
            calls.insert(
                peer,
                tokio::spawn(async move {
                    let result = this
                        .call_routed(peer, request, calls_go.timeout, calls_go.route)
                        .await;
                    let _ = tx.send((peer, result)).await;
                }),
            );
        }
        drop(tx);
        drop(request);
        let mut accepted = Vec::new();
        let mut errors = Vec::new();
        while let Some((peer, result)) = rx.recv().await {
            calls.remove(&peer);
            match result
                .map_err(|e: StorageError| e.to_string())
                .and_then(|r| accept(peer, r))
            {
                Ok(value) => accepted.push((peer, value)),
                Err(reason) => errors.push(format!("{peer}: {reason}")),
            }
            if accepted.len() >= needed {
                self.continue_in_background(calls, weight);
                return Ok(accepted);
            }
        }
        Err(QuorumError {
            got: accepted.len(),
            needed,
            errors,
        })
    }

    /// Lets the calls still running finish while the budget allows, and drops the rest.
    fn continue_in_background(&self, calls: HashMap<NodeId, JoinHandle<()>>, weight: usize) {
        let budget = &self.background;
        let weight = u32::try_from(weight)
            .unwrap_or(u32::MAX)
            .clamp(1, budget.bytes.max(1));
        for (peer, call) in calls {
            if call.is_finished() {
                continue;
            }
            match budget.permits.clone().try_acquire_many_owned(weight) {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let _ = call.await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    call.abort();
                    self.metrics.background_copies_skipped.inc();
                    tracing::debug!(%peer, "background copy dropped: the budget is spent; repair will make it");
                }
            }
        }
    }

    /// Bytes this edge's background copies hold now.
    pub fn background_copy_bytes(&self) -> u64 {
        self.background.in_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_intersect_for_every_replication_factor() {
        let quorums = |n| quorums_for(2, 2, n);
        assert_eq!(quorums(3), (2, 2), "the defaults are unchanged");
        assert_eq!(quorums(1), (1, 1));
        assert_eq!(quorums(2), (2, 2));
        assert_eq!(quorums(5), (3, 3));
        assert_eq!(quorums(16), (9, 8));
        for n in 1..=16 {
            let (w, r) = quorums(n);
            assert!(w + r > n && w <= n && r <= n && w > n / 2, "{n}: {w} {r}");
        }
        // Stricter settings are kept.
        assert_eq!(quorums_for(3, 1, 3), (3, 1));
    }

    #[test]
    fn the_budget_counts_what_is_held() {
        let budget = BackgroundBudget::new(1000);
        assert_eq!(budget.in_use(), 0);
        let permit = budget.permits.clone().try_acquire_many_owned(600).ok();
        assert!(permit.is_some());
        assert_eq!(budget.in_use(), 600);
        assert!(budget.permits.clone().try_acquire_many_owned(600).is_err());
        drop(permit);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(
            BackgroundBudget::new(u64::MAX).bytes,
            u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX)
        );
    }
}
