//! Anti-entropy of retired tombstones: the cold records tombstone collection leaves
//! follow a bucket's placement, as its hot entries do.
//!
//! For every bucket this node holds retired tombstones of, it sends each live replica of
//! the bucket its cold digest (`RetiredDigests`, kept current by every change to the cold
//! table, so an idle node rescans nothing). Where a replica's differs, the two compare
//! the bucket's leaf digests over the cold table and this node pushes the records of the
//! leaves that differ (`PutRetiredMany`), which the receiver merges **as retired**: only
//! over older entries, and only a sealed tombstone of a kind collection retires. So a node
//! placed on a bucket after a collection (a membership change) learns the collected
//! deletes, and an older version a liar kept loses there too.
//!
//! A peer that answers these requests with an error (an older version) is left out of
//! this half; the hot half carries on with it as before.

use std::collections::BTreeMap;
use std::sync::Arc;

use xnode_store::entropy::{LEAVES, SetDigest};
use xnode_types::NodeId;

use super::{CALL_TIMEOUT, RoundReport};
use crate::proto::{
    BucketRef, MAX_DIGEST_BUCKETS, MAX_PUT_RETIRED_MANY, StoreRequest, StoreResponse,
};
use crate::{Storage, StorageError, blocking};

impl Storage {
    /// Compares this node's retired tombstones with every live replica of their buckets
    /// and pushes what differs. Counts the records replicas stored as repairs.
    pub(crate) async fn retired_round(
        self: &Arc<Self>,
        set: &[xnode_store::Candidate],
        live: &std::collections::HashSet<NodeId>,
    ) -> Result<RoundReport, StorageError> {
        let meta = self.meta.clone();
        let digests = blocking(move || meta.retired_bucket_digests()).await?;
        let mut report = RoundReport {
            clean: true,
            ..RoundReport::default()
        };
        let mut per_peer: BTreeMap<NodeId, Vec<(BucketRef, SetDigest)>> = BTreeMap::new();
        for ((tenant, name), digest) in digests {
            let rf = self.bucket_rf(&tenant, &name);
            let key = crate::bucket_placement_key(&tenant, &name);
            let pinned = self.pinned_set(&tenant, &name, set);
            let bucket = BucketRef { tenant, name };
            // Also from a node placement no longer puts on the bucket: it hands its cold
            // records to the replicas that took over, as it hands over hot entries.
            for node in self.placement(&key, &pinned, rf) {
                if node != self.node_id && live.contains(&node) {
                    per_peer
                        .entry(node)
                        .or_default()
                        .push((bucket.clone(), digest));
                }
            }
        }
        for (peer, buckets) in per_peer {
            for batch in buckets.chunks(MAX_DIGEST_BUCKETS) {
                let request = StoreRequest::RetiredDigests {
                    buckets: batch.to_vec(),
                };
                let theirs = match self.call(peer, request, CALL_TIMEOUT).await {
                    Ok(StoreResponse::Digests(d)) if d.len() == batch.len() => d,
                    other => {
                        // An older peer refuses the request (it cannot decode it): it can
                        // hold no cold records, and no later round would go differently,
                        // so this does not hold the round unclean, or a mixed network
                        // would run a round every tick. A peer that is merely unreachable
                        // fails the hot part's digests too, which holds the round unclean.
                        tracing::debug!(%peer, answer = ?other.err(), "a replica did not compare retired tombstones");
                        break;
                    }
                };
                for ((bucket, ours), theirs) in batch.iter().zip(&theirs) {
                    if ours == theirs {
                        continue;
                    }
                    report.clean = false;
                    match self.sync_retired_bucket(peer, bucket).await {
                        Ok(stored) => report.repaired = report.repaired.saturating_add(stored),
                        Err(e) => {
                            tracing::debug!(%peer, bucket = %bucket.name, error = %e, "anti-entropy could not pass retired tombstones on");
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Pushes to `peer` this node's retired tombstones of the leaves of `bucket` whose
    /// cold digests differ (every leaf if the peer does not answer leaf digests). Returns
    /// how many the peer stored.
    async fn sync_retired_bucket(
        self: &Arc<Self>,
        peer: NodeId,
        bucket: &BucketRef,
    ) -> Result<u64, StorageError> {
        let ours = {
            let meta = self.meta.clone();
            let (tenant, name) = (bucket.tenant, bucket.name.clone());
            blocking(move || meta.retired_leaf_digests(&tenant, &name)).await?
        };
        let request = StoreRequest::RetiredLeafDigests {
            bucket: bucket.clone(),
        };
        let theirs = match self.call(peer, request, CALL_TIMEOUT).await {
            Ok(StoreResponse::Digests(d)) if d.len() == LEAVES => Some(d),
            _ => None,
        };
        let leaves: Vec<usize> = (0..LEAVES)
            .filter(|&leaf| {
                theirs
                    .as_ref()
                    .is_none_or(|t| t.get(leaf) != ours.get(leaf))
            })
            .collect();
        let mut stored = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = {
                let meta = self.meta.clone();
                let (tenant, name) = (bucket.tenant, bucket.name.clone());
                let leaves = leaves.clone();
                let from = after.clone();
                blocking(move || {
                    meta.retired_leaf_entries(
                        &tenant,
                        &name,
                        &leaves,
                        from.as_deref(),
                        MAX_PUT_RETIRED_MANY,
                    )
                })
                .await?
            };
            let Some(last) = page.last() else { break };
            after = Some(last.path.storage_key());
            let full = page.len() == MAX_PUT_RETIRED_MANY;
            let asked = page.len();
            let request = StoreRequest::PutRetiredMany { tombstones: page };
            match self.call(peer, request, CALL_TIMEOUT).await? {
                StoreResponse::RetiredMerged(merged) if merged.len() == asked => {
                    let now = merged.iter().filter(|m| **m).count() as u64;
                    self.metrics.repairs.inc_by(now);
                    stored = stored.saturating_add(now);
                }
                _ => {
                    return Err(StorageError::Internal(
                        "unexpected answer to PutRetiredMany".into(),
                    ));
                }
            }
            if !full {
                break;
            }
        }
        Ok(stored)
    }

    /// The cold digests a peer asked for, per bucket; marks this node for a round when
    /// they differ from the peer's (it may hold records the peer lacks).
    pub(crate) fn answer_retired_digests(
        &self,
        asked: &[(BucketRef, SetDigest)],
    ) -> Result<Vec<SetDigest>, StorageError> {
        let mut answer = Vec::with_capacity(asked.len());
        for (bucket, _) in asked {
            answer.push(
                self.meta
                    .retired_bucket_digest(&bucket.tenant, &bucket.name)?,
            );
        }
        if asked
            .iter()
            .zip(&answer)
            .any(|((_, theirs), ours)| theirs != ours)
        {
            self.mark_entropy_dirty();
        }
        Ok(answer)
    }
}
