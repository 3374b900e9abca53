//! The collector's memory between rounds: what each metadata holder held per bucket (the
//! bucket's digest and the manifests its entries name) and the chunks each manifest names.
//!
//! A round asks every holder for its bucket digests (a few calls) and rereads only the
//! buckets whose digest moved since the last round; manifests are content addressed, so
//! one read once is good for as long as an entry names it. A round in a network where
//! nothing changed therefore costs a few calls per holder and a walk of the local chunk
//! index, whatever is stored. The view is memory only: after a restart the first round
//! reads everything again, as every round did before the view existed.
//!
//! Nothing here weakens the positive-proof rule of [`super`]: a bucket whose digest
//! matches holds exactly the entries read when it was cached (digests change with every
//! entry written or removed), and a holder that fails to answer any part of a round still
//! stops the round.

use std::collections::{HashMap, HashSet};

use xnode_store::entropy::SetDigest;
use xnode_store::meta::BucketName;
use xnode_store::{ChunkId, ObjectMeta};
use xnode_types::NodeId;

use crate::proto::{BucketRef, MAX_BUCKET_DIGESTS, StoreRequest, StoreResponse};
use crate::{Storage, StorageError};

use super::{PAGE, TIMEOUT};

/// What the collector last saw of each holder, and the chunks of each manifest it read.
#[derive(Default)]
pub(crate) struct ReferenceView {
    holders: HashMap<NodeId, HashMap<BucketName, SeenBucket>>,
    /// Each manifest's chunk ids (itself not included), for manifests named by an entry at
    /// the last round.
    manifests: HashMap<ChunkId, Box<[ChunkId]>>,
}

/// One holder's entries of one bucket, as of a digest.
struct SeenBucket {
    digest: SetDigest,
    entries: u64,
    manifests: Vec<ChunkId>,
}

/// What one garbage-collection round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcRound {
    /// Metadata holders asked.
    pub holders: usize,
    /// Buckets the holders listed, all together.
    pub buckets: u64,
    /// Of those, buckets reread because their digest moved (or were not known).
    pub buckets_rescanned: u64,
    /// Metadata entries read from holders in this round.
    pub entries_read: u64,
    /// Manifests fetched in this round (the others were known).
    pub manifests_read: u64,
    /// Chunks moved to the trash.
    pub removed: u64,
    /// Trashed chunks put back because something references them again.
    pub restored: u64,
}

/// The round's allowance of entries (and buckets) read or remembered; see
/// `gc_max_scan_entries`.
pub(super) struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Self {
        Self { left: limit, limit }
    }

    pub(super) fn charge(&mut self, node: NodeId, n: u64) -> Result<(), StorageError> {
        self.left = self.left.checked_sub(n).ok_or_else(|| {
            StorageError::Quorum(format!(
                "the metadata scan of node {node} went past the round's budget of {} entries",
                self.limit
            ))
        })?;
        Ok(())
    }
}

impl ReferenceView {
    /// Forgets holders that are no longer metadata holders.
    pub(super) fn keep_holders(&mut self, holders: &[NodeId]) {
        self.holders.retain(|node, _| holders.contains(node));
    }

    /// The chunks `manifest` names, if it was read before.
    pub(super) fn manifest_chunks(&self, manifest: &ChunkId) -> Option<&[ChunkId]> {
        self.manifests.get(manifest).map(|c| &c[..])
    }

    pub(super) fn remember_manifest(&mut self, manifest: ChunkId, chunks: Vec<ChunkId>) {
        self.manifests.insert(manifest, chunks.into_boxed_slice());
    }

    /// Forgets manifests no entry named in this round.
    pub(super) fn keep_manifests(&mut self, named: &HashSet<ChunkId>) {
        self.manifests.retain(|id, _| named.contains(id));
    }
}

impl Storage {
    /// Adds to `manifests` every manifest a live entry held by `node` names, rereading
    /// only the buckets whose digest moved since `view` last saw them. Fails (so the
    /// round removes nothing) if the node does not answer, answers out of order or out of
    /// the bucket asked, or the round's budget runs out. `Ok(false)`: the node does not
    /// know the digest listing (an older version); the caller scans it whole.
    pub(super) async fn survey_holder(
        &self,
        node: NodeId,
        view: &mut ReferenceView,
        budget: &mut Budget,
        round: &mut GcRound,
        manifests: &mut HashSet<ChunkId>,
    ) -> Result<bool, StorageError> {
        // Taken out while the holder is surveyed: a failure leaves it forgotten, and the
        // next round rereads it whole.
        let mut before = view.holders.remove(&node).unwrap_or_default();
        let mut now: HashMap<BucketName, SeenBucket> = HashMap::new();
        let mut after: Option<BucketRef> = None;
        let mut first = true;
        loop {
            let request = StoreRequest::MetaBucketDigests {
                after: after.clone(),
                limit: MAX_BUCKET_DIGESTS,
            };
            let page = match self.call(node, request, TIMEOUT).await {
                Ok(StoreResponse::BucketDigests(page)) => page,
                Ok(_) => {
                    return Err(StorageError::Internal(
                        "unexpected answer to a bucket digest listing".into(),
                    ));
                }
                Err(e) if first => {
                    tracing::debug!(%node, error = %e, "no bucket digest listing; scanning the holder whole");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            first = false;
            if page.len() > MAX_BUCKET_DIGESTS as usize {
                return Err(StorageError::Internal(format!(
                    "node {node} listed more bucket digests than asked"
                )));
            }
            let full = page.len() == MAX_BUCKET_DIGESTS as usize;
            for (bucket, digest) in page {
                if after.as_ref().is_some_and(|a| bucket <= *a) {
                    return Err(StorageError::Internal(format!(
                        "node {node} listed bucket digests out of order"
                    )));
                }
                after = Some(bucket.clone());
                budget.charge(node, 1)?;
                round.buckets += 1;
                let name: BucketName = (bucket.tenant, bucket.name.clone());
                let seen = match before.remove(&name) {
                    // Remembered entries count against the budget as read ones do: it
                    // bounds what a round holds, not only what it reads.
                    Some(seen) if seen.digest == digest => {
                        budget.charge(node, seen.entries)?;
                        seen
                    }
                    _ => {
                        round.buckets_rescanned += 1;
                        self.scan_bucket_of(node, &bucket, digest, budget, round)
                            .await?
                    }
                };
                manifests.extend(seen.manifests.iter().copied());
                now.insert(name, seen);
            }
            if !full {
                break;
            }
        }
        view.holders.insert(node, now);
        Ok(true)
    }

    /// Reads every entry `node` holds of `bucket`, page by page.
    async fn scan_bucket_of(
        &self,
        node: NodeId,
        bucket: &BucketRef,
        digest: SetDigest,
        budget: &mut Budget,
        round: &mut GcRound,
    ) -> Result<SeenBucket, StorageError> {
        let mut seen = SeenBucket {
            digest,
            entries: 0,
            manifests: Vec::new(),
        };
        let mut after: Option<String> = None;
        loop {
            let request = StoreRequest::ScanBucketMeta {
                bucket: bucket.clone(),
                after: after.clone(),
                limit: PAGE,
            };
            let page: Vec<ObjectMeta> = match self.call(node, request, TIMEOUT).await? {
                StoreResponse::MetaList(page) => page,
                _ => {
                    return Err(StorageError::Internal(
                        "unexpected answer to a bucket scan".into(),
                    ));
                }
            };
            let len = u64::try_from(page.len()).unwrap_or(u64::MAX);
            if len > u64::from(PAGE) {
                return Err(StorageError::Internal(format!(
                    "node {node} answered a bucket scan with more entries than asked"
                )));
            }
            budget.charge(node, len)?;
            round.entries_read += len;
            for meta in &page {
                if meta.path.tenant != bucket.tenant || meta.path.bucket != bucket.name {
                    return Err(StorageError::Internal(format!(
                        "node {node} answered a bucket scan with another bucket's entries"
                    )));
                }
                if after.as_ref().is_some_and(|a| meta.path.key <= *a) {
                    return Err(StorageError::Internal(format!(
                        "node {node} answered a bucket scan out of order"
                    )));
                }
                after = Some(meta.path.key.clone());
                if let Some(info) = &meta.info {
                    seen.manifests.push(info.manifest);
                }
            }
            seen.entries += len;
            // A page may be cut short by the holder's byte bound: only an empty one says
            // the bucket ended.
            if len == 0 {
                return Ok(seen);
            }
        }
    }
}
