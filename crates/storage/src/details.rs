//! Where an object lives: its chunks, the nodes placement assigns them to, which nodes
//! actually hold a copy, and the resulting replication health (for the Studio and
//! operators; it reads no object data and needs no data key).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use xnode_store::{ChunkId, ObjectInfo, ObjectMeta};
use xnode_types::{NodeId, PublicKeyBytes};

use super::proto::{StoreRequest, StoreResponse};
use super::{Storage, StorageError};

/// Most chunks whose holders are checked one by one; bigger objects report the first ones.
pub const MAX_DETAILED_CHUNKS: usize = 1024;
const HAS_TIMEOUT: Duration = Duration::from_secs(5);

/// One chunk of an object (the manifest counts as one too).
#[derive(Clone, Debug, Serialize)]
pub struct ChunkDetails {
    pub id: String,
    /// Plaintext bytes in the chunk (the manifest's encoded size for the manifest).
    pub size: u64,
    /// Where placement puts the chunk today.
    pub placed_on: Vec<NodeId>,
    /// Live nodes that answered that they hold it.
    pub held_by: Vec<NodeId>,
}

/// `Storage::object_details`.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectDetails {
    pub meta: ObjectMeta,
    pub info: ObjectInfo,
    pub chunk_size: u32,
    pub replication_factor: usize,
    pub manifest: ChunkDetails,
    /// The object's data chunks (at most [`MAX_DETAILED_CHUNKS`]).
    pub chunks: Vec<ChunkDetails>,
    pub total_chunks: usize,
    /// The nodes holding the bucket's metadata.
    pub metadata_nodes: Vec<NodeId>,
    /// Nodes that did not answer whether they hold the chunks.
    pub unreachable: Vec<NodeId>,
    /// `healthy` (every chunk has `rf` copies), `degraded` (fewer, but at least one
    /// copy of each) or `at_risk` (some chunk has no reachable copy).
    pub health: &'static str,
    /// The fewest reachable copies of any chunk.
    pub min_copies: usize,
}

impl Storage {
    /// Describes where an object's chunks are and how well they are replicated.
    pub async fn object_details(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectDetails, StorageError> {
        let (meta, info) = self.head_object(tenant, bucket, key).await?;
        let manifest_bytes = self.get_chunk(info.manifest, &self.storage_set()).await?;
        let manifest = xnode_store::Manifest::decode(&manifest_bytes)?;
        let rf = self.bucket_rf(tenant, bucket);
        let set = self.storage_set();
        let pinned = self.pinned_set(tenant, bucket, &set).into_owned();
        let total_chunks = manifest.chunks.len();
        let mut wanted: Vec<(ChunkId, u64)> = vec![(info.manifest, manifest_bytes.len() as u64)];
        wanted.extend(
            manifest
                .chunks
                .iter()
                .take(MAX_DETAILED_CHUNKS)
                .map(|c| (c.id, u64::from(c.plain_len))),
        );
        let ids: Vec<ChunkId> = wanted.iter().map(|(id, _)| *id).collect();
        // Ask every live storage node once which of the chunks it holds.
        let live = self.live_nodes();
        let asks = set.iter().filter(|c| live.contains(&c.id)).map(|c| {
            let ids = ids.clone();
            let node = c.id;
            async move {
                let answer = self
                    .call(node, StoreRequest::HasChunks { ids }, HAS_TIMEOUT)
                    .await;
                (node, answer)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut holders: BTreeMap<ChunkId, BTreeSet<NodeId>> = BTreeMap::new();
        let mut unreachable: Vec<NodeId> = set
            .iter()
            .filter(|c| !live.contains(&c.id))
            .map(|c| c.id)
            .collect();
        for (node, answer) in answers {
            match answer {
                Ok(StoreResponse::Has(has)) if has.len() == ids.len() => {
                    for (id, held) in ids.iter().zip(has) {
                        if held {
                            holders.entry(*id).or_default().insert(node);
                        }
                    }
                }
                _ => unreachable.push(node),
            }
        }
        let details = |(id, size): (ChunkId, u64)| ChunkDetails {
            id: id.to_string(),
            size,
            placed_on: self.placement(&id.0, &pinned, rf),
            held_by: holders
                .get(&id)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default(),
        };
        let mut all = wanted.into_iter().map(details);
        let manifest_details = all
            .next()
            .ok_or_else(|| StorageError::Internal("the chunk list lost its manifest".into()))?;
        let chunks: Vec<ChunkDetails> = all.collect();
        let min_copies = std::iter::once(&manifest_details)
            .chain(&chunks)
            .map(|c| c.held_by.len())
            .min()
            .unwrap_or(0);
        let health = if min_copies == 0 {
            "at_risk"
        } else if min_copies < rf.min(pinned.len()) {
            "degraded"
        } else {
            "healthy"
        };
        unreachable.sort();
        Ok(ObjectDetails {
            metadata_nodes: self.meta_placement(tenant, bucket, &set),
            meta,
            info,
            chunk_size: manifest.chunk_size,
            replication_factor: rf,
            manifest: manifest_details,
            chunks,
            total_chunks,
            unreachable,
            health,
            min_copies,
        })
    }
}
