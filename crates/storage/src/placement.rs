//! Where chunks belong: a chunk's replication factor, and whether this node takes a chunk a
//! peer sends.
//!
//! A chunk's replication factor never comes from the peer that sends it (finding 9 of the
//! security review: a peer could make every node keep 255 copies of junk, or one copy of
//! a real chunk). A `PutChunk` may name the bucket the chunk belongs to; the receiver looks
//! the bucket up in its own registry (a claim the tenant signed) and uses its replication
//! factor, bounded to `1..=MAX_REPLICATION_FACTOR`. For repair, it remembers the bucket
//! (not a number) when that factor is not the default, and looks the bucket up again at
//! every scan.
//!
//! A node takes a chunk only if placement, for that factor, puts the chunk on it: junk
//! cannot be sprayed to every node, and repair (which copies to placement nodes only)
//! cannot be made to copy it everywhere. Views of the storage set differ a little between
//! nodes while membership changes, so the check allows `PLACEMENT_SLACK` extra ranks.

use std::borrow::Cow;

use bytes::Bytes;
use xnode_store::{Candidate, ChunkId};
use xnode_types::PublicKeyBytes;

use crate::buckets::BucketRecord;
use crate::proto::BucketRef;
use crate::{Storage, StorageError};

/// Chunks whose bucket has a replication factor other than the default or is pinned to
/// regions (or a bucket this node did not know yet): chunk id -> [`encode_bucket`].
pub(crate) const CHUNK_BUCKET: xnode_db::Table = xnode_db::Table("chunk_bucket");
/// Layout version of a [`CHUNK_BUCKET`] value.
const CHUNK_BUCKET_VERSION: u8 = 1;
/// The largest replication factor a bucket may have.
pub const MAX_REPLICATION_FACTOR: usize = 16;
/// Extra placement ranks a node accepts a chunk at, for views of the storage set that
/// differ while nodes join or leave.
pub const PLACEMENT_SLACK: usize = 2;

/// `[version, tenant (32 bytes), bucket name]`.
fn encode_bucket(bucket: &BucketRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 32 + bucket.name.len());
    out.push(CHUNK_BUCKET_VERSION);
    out.extend_from_slice(&bucket.tenant.0);
    out.extend_from_slice(bucket.name.as_bytes());
    out
}

fn decode_bucket(bytes: &[u8]) -> Option<BucketRef> {
    let (&version, rest) = bytes.split_first()?;
    if version != CHUNK_BUCKET_VERSION || rest.len() < 32 {
        return None;
    }
    let (tenant, name) = rest.split_at(32);
    let tenant: [u8; 32] = tenant.try_into().ok()?;
    let name = std::str::from_utf8(name).ok()?;
    xnode_store::validate_bucket_name(name).ok()?;
    Some(BucketRef {
        tenant: PublicKeyBytes(tenant),
        name: name.to_owned(),
    })
}

impl Storage {
    /// The replication factor of `tenant`'s bucket `name`, if this node knows the bucket
    /// and it belongs to `tenant`; a factor outside `1..=MAX_REPLICATION_FACTOR` (which no
    /// honest claim has) counts as the default.
    pub(crate) fn known_bucket_rf(&self, tenant: &PublicKeyBytes, name: &str) -> Option<usize> {
        let (owner, record) = crate::buckets::owner_of(&self.registry, name)?;
        if owner != *tenant {
            return None;
        }
        Some(
            record
                .replication_factor
                .map(usize::from)
                .filter(|rf| (1..=MAX_REPLICATION_FACTOR).contains(rf))
                .unwrap_or(self.config.replication_factor),
        )
    }

    /// The regions `tenant`'s bucket `name` is pinned to, by the bucket's claim as this
    /// node knows it (the tenant signed it, so no peer can change it); empty when the
    /// bucket is not pinned or not known here.
    pub fn bucket_regions(&self, tenant: &PublicKeyBytes, name: &str) -> Vec<String> {
        match crate::buckets::owner_of(&self.registry, name) {
            Some((owner, record)) if owner == *tenant => record.regions,
            _ => Vec::new(),
        }
    }

    /// The part of `set` that may hold `tenant`'s bucket `name`'s chunks and metadata: the
    /// nodes in its pinned regions, or all of `set` when it is not pinned.
    pub(crate) fn pinned_set<'a>(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        set: &'a [Candidate],
    ) -> Cow<'a, [Candidate]> {
        xnode_store::in_regions(set, &self.bucket_regions(tenant, name))
    }

    /// Where `tenant`'s bucket `name`'s metadata lives: placement over the bucket's pinned
    /// regions for its replication factor.
    pub(crate) fn meta_placement(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        set: &[Candidate],
    ) -> Vec<xnode_types::NodeId> {
        self.placement(
            &crate::bucket_placement_key(tenant, name),
            &self.pinned_set(tenant, name, set),
            self.bucket_rf(tenant, name),
        )
    }

    /// Where a chunk this node holds belongs: placement over its bucket's pinned regions
    /// for its bucket's replication factor (both from the bucket recorded for the chunk).
    pub(crate) fn chunk_placement(
        &self,
        id: &ChunkId,
        set: &[Candidate],
    ) -> Vec<xnode_types::NodeId> {
        match self.chunk_bucket(id) {
            Some(bucket) => {
                let rf = self
                    .known_bucket_rf(&bucket.tenant, &bucket.name)
                    .unwrap_or(self.config.replication_factor);
                let pinned = self.pinned_set(&bucket.tenant, &bucket.name, set);
                self.placement(&id.0, &pinned, rf)
            }
            None => self.placement(&id.0, set, self.config.replication_factor),
        }
    }

    /// Refuses a write to a pinned bucket whose regions hold no admitted storage node now
    /// (they left, or were never there): residency never falls back to other regions, and
    /// the error says why instead of a bare quorum failure. Counted, for alerts.
    pub(crate) fn require_placeable(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        set: &[Candidate],
    ) -> Result<(), StorageError> {
        let regions = self.bucket_regions(tenant, name);
        if regions.is_empty() || !xnode_store::in_regions(set, &regions).is_empty() {
            return Ok(());
        }
        self.metrics.pinned_writes_unplaceable.inc();
        Err(StorageError::Quorum(format!(
            "bucket {name:?} is pinned to regions {regions:?} and no admitted storage node is in them now"
        )))
    }

    /// Refuses a bucket claim whose pin the admitted storage nodes cannot satisfy now.
    pub(crate) fn check_pin_satisfiable(&self, record: &BucketRecord) -> Result<(), StorageError> {
        self.check_pin(&record.regions, record.replication_factor)
    }

    /// Checks that a pin to `regions` can be satisfied now: its regions must hold at least
    /// as many admitted storage nodes as the bucket keeps copies (`rf`, or the node
    /// default), so a pinned bucket never starts with fewer copies than it asked for, and
    /// a pin nobody can satisfy is refused when the bucket is created, not discovered at
    /// the first write.
    pub fn check_pin(&self, regions: &[String], rf: Option<u8>) -> Result<(), StorageError> {
        if regions.is_empty() {
            return Ok(());
        }
        xnode_store::validate_regions(regions)
            .map_err(|e| StorageError::BadRequest(format!("the bucket's regions: {e}")))?;
        let rf = rf
            .map(usize::from)
            .unwrap_or(self.config.replication_factor);
        let set = self.admitted_storage_set();
        let have = xnode_store::in_regions(&set, regions).len();
        if have < rf {
            let mut known: Vec<&str> = set.iter().map(|c| c.zone.as_str()).collect();
            known.sort_unstable();
            known.dedup();
            return Err(StorageError::BadRequest(format!(
                "the bucket is pinned to regions {:?}, which hold {have} admitted storage nodes; \
                 it keeps {rf} copies (regions with admitted storage nodes: {known:?})",
                regions
            )));
        }
        Ok(())
    }

    /// The bucket recorded for a chunk this node holds, if its factor is not the default
    /// or it is pinned.
    pub(crate) fn chunk_bucket(&self, id: &ChunkId) -> Option<BucketRef> {
        match self.db.get(CHUNK_BUCKET, &id.0) {
            Ok(Some(bytes)) => decode_bucket(&bytes),
            _ => None,
        }
    }

    /// The replication factor of a chunk this node holds: its bucket's, or the default.
    pub(crate) fn chunk_rf(&self, id: &ChunkId) -> usize {
        self.chunk_bucket(id)
            .and_then(|b| self.known_bucket_rf(&b.tenant, &b.name))
            .unwrap_or(self.config.replication_factor)
    }

    /// Whether this node takes chunk `id` of `bucket` from a peer: placement (for the
    /// bucket's factor as this node knows it, or the default) must put it here.
    pub(crate) fn placed_here(&self, id: &ChunkId, bucket: Option<&BucketRef>) -> bool {
        let rf = bucket
            .and_then(|b| self.known_bucket_rf(&b.tenant, &b.name))
            .unwrap_or(self.config.replication_factor);
        let set = self.storage_set();
        let set = match bucket {
            Some(b) => self.pinned_set(&b.tenant, &b.name, &set).into_owned(),
            None => set,
        };
        let ranks = rf.saturating_add(PLACEMENT_SLACK).min(set.len());
        self.placement(&id.0, &set, ranks).contains(&self.node_id)
    }

    /// Stores a chunk a peer (or this node, as an edge) sent, if it belongs here.
    pub(crate) async fn accept_chunk(
        &self,
        id: ChunkId,
        data: Bytes,
        bucket: Option<BucketRef>,
    ) -> Result<(), StorageError> {
        // Placement is decided in memory; only a chunk placed elsewhere needs the index
        // (one trip to a blocking thread fewer per chunk on the upload path).
        let chunks = self.chunks.clone();
        let outcome = if self.placed_here(&id, bucket.as_ref()) {
            crate::blocking(move || chunks.put(&id, &data)).await?
        } else {
            crate::blocking(move || {
                if !chunks.contains(&id)? {
                    return Ok(None);
                }
                chunks.put(&id, &data).map(Some)
            })
            .await?
            .ok_or_else(|| {
                self.metrics.chunks_refused.inc();
                StorageError::BadRequest(format!("chunk {id} is not placed on this node"))
            })?
        };
        // Remember the bucket of a newly stored chunk when repair must look it up (a
        // factor other than the default, a pin to regions, or a bucket not known here
        // yet). A chunk held already keeps what it had: a peer cannot relabel it.
        if let Some(bucket) = bucket
            && outcome == xnode_store::PutOutcome::Stored
            && (self.known_bucket_rf(&bucket.tenant, &bucket.name)
                != Some(self.config.replication_factor)
                || !self.bucket_regions(&bucket.tenant, &bucket.name).is_empty())
        {
            self.db
                .put(CHUNK_BUCKET, &id.0, &encode_bucket(&bucket))
                .map_err(|e| StorageError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bucket_records_round_trip_and_garbage_is_refused() {
        let bucket = BucketRef {
            tenant: PublicKeyBytes([7; 32]),
            name: "photos".into(),
        };
        assert_eq!(decode_bucket(&encode_bucket(&bucket)), Some(bucket.clone()));
        let mut bad = encode_bucket(&bucket);
        bad[0] = 9;
        assert_eq!(decode_bucket(&bad), None);
        assert_eq!(decode_bucket(&[]), None);
        assert_eq!(decode_bucket(&[1, 2, 3]), None);
        let mut bad_name = encode_bucket(&bucket);
        bad_name.extend_from_slice(b"/../x");
        assert_eq!(decode_bucket(&bad_name), None);
    }
}
