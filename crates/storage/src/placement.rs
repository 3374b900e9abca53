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

use xnode_store::ChunkId;
use xnode_types::PublicKeyBytes;

use crate::proto::BucketRef;
use crate::{Storage, StorageError};

/// Chunks whose bucket has a replication factor other than the default (or a bucket this
/// node did not know yet): chunk id -> [`encode_bucket`].
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

    /// The bucket recorded for a chunk this node holds, if its factor is not the default.
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
        let ranks = rf.saturating_add(PLACEMENT_SLACK).min(set.len());
        self.placement(&id.0, &set, ranks).contains(&self.node_id)
    }

    /// Stores a chunk a peer (or this node, as an edge) sent, if it belongs here.
    pub(crate) async fn accept_chunk(
        &self,
        id: ChunkId,
        data: Vec<u8>,
        bucket: Option<BucketRef>,
    ) -> Result<(), StorageError> {
        let chunks = self.chunks.clone();
        let held = crate::blocking(move || chunks.contains(&id)).await?;
        if !held && !self.placed_here(&id, bucket.as_ref()) {
            self.metrics.chunks_refused.inc();
            return Err(StorageError::BadRequest(format!(
                "chunk {id} is not placed on this node"
            )));
        }
        let chunks = self.chunks.clone();
        let outcome = crate::blocking(move || chunks.put(&id, &data)).await?;
        // Remember the bucket of a newly stored chunk when repair must look it up (a
        // factor other than the default, or a bucket not known here yet). A chunk held
        // already keeps what it had: a peer cannot relabel it.
        if let Some(bucket) = bucket
            && outcome == xnode_store::PutOutcome::Stored
            && self.known_bucket_rf(&bucket.tenant, &bucket.name)
                != Some(self.config.replication_factor)
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
