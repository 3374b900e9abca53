//! Replicas: writing chunks and metadata to their placement with a write quorum, and
//! reading them back (chunks from any replica whose bytes match their id, metadata from a
//! read quorum with read repair).

use std::sync::Arc;

use bytes::Bytes;
use xnode_store::{Candidate, ChunkId, ObjectMeta, ObjectPath};
use xnode_types::NodeId;

use crate::proto::{StoreRequest, StoreResponse};
use crate::{CHUNK_TIMEOUT, META_TIMEOUT, Storage, StorageError, bucket_placement_key};

/// A write counts when the replica answered anything but an error.
fn accept_success(_: NodeId, response: StoreResponse) -> Result<(), String> {
    match response {
        StoreResponse::Error(message) => Err(message),
        _ => Ok(()),
    }
}

impl Storage {
    // ----- chunks -----------------------------------------------------------------------

    /// Stores a chunk on its placement; succeeds once `W` replicas hold it durably. The
    /// remaining replicas are written in the background (repair covers any that fail).
    pub async fn put_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        data: Bytes,
        set: &[Candidate],
        rf: usize,
    ) -> Result<(), StorageError> {
        let targets = self.placement(&id.0, set, rf);
        let needed = self.config.write_quorum.min(targets.len()).max(1);
        let request = StoreRequest::PutChunk {
            id,
            data: data.to_vec(),
            rf: u8::try_from(rf).unwrap_or(u8::MAX),
        };
        self.endpoint
            .try_call_quorum(&targets, needed, request, CHUNK_TIMEOUT, accept_success)
            .await
            .map(|_| ())
            .map_err(|e| {
                self.metrics.quorum_failures.inc();
                StorageError::Quorum(format!(
                    "chunk {id} reached {} of {} required replicas ({})",
                    e.got,
                    e.needed,
                    e.errors.join("; ")
                ))
            })
    }

    /// Reads a chunk from any replica whose bytes match its id. A replica that sends wrong
    /// bytes is counted and skipped.
    pub async fn get_chunk(&self, id: ChunkId, set: &[Candidate]) -> Result<Vec<u8>, StorageError> {
        let mut targets = self.placement(&id.0, set, self.config.replication_factor);
        // Try this node first (no network), then live replicas, then the rest.
        let live = self.live_nodes();
        targets.sort_by_key(|n| (*n != self.node_id, !live.contains(n)));
        // Nodes outside the placement may still hold it (older placements, repairs).
        for c in set {
            if !targets.contains(&c.id) && live.contains(&c.id) {
                targets.push(c.id);
            }
        }
        let mut errors = Vec::new();
        for node in targets {
            match self
                .call(node, StoreRequest::GetChunk { id }, CHUNK_TIMEOUT)
                .await
            {
                Ok(StoreResponse::Chunk(Some(data))) => {
                    if ChunkId::of(&data) == id {
                        self.metrics.chunk_read_bytes.inc_by(data.len() as u64);
                        return Ok(data);
                    }
                    self.metrics.bad_replica_reads.inc();
                    tracing::warn!(%node, chunk = %id, "a replica sent bytes that do not match the chunk id; trying another");
                    errors.push(format!("{node}: wrong bytes"));
                }
                Ok(_) => errors.push(format!("{node}: missing")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(StorageError::Quorum(format!(
            "no replica could serve chunk {id} ({})",
            errors.join("; ")
        )))
    }

    // ----- metadata ---------------------------------------------------------------------

    /// Writes an object's metadata to its bucket's placement; succeeds once `W` replicas
    /// merged it. The remaining replicas are written in the background.
    pub(crate) async fn put_meta(
        self: &Arc<Self>,
        meta: ObjectMeta,
        set: &[Candidate],
    ) -> Result<(), StorageError> {
        let rf = self.bucket_rf(&meta.path.tenant, &meta.path.bucket);
        let targets = self.placement(
            &bucket_placement_key(&meta.path.tenant, &meta.path.bucket),
            set,
            rf,
        );
        let needed = self.config.write_quorum.min(targets.len()).max(1);
        self.endpoint
            .try_call_quorum(
                &targets,
                needed,
                StoreRequest::PutMeta { meta },
                META_TIMEOUT,
                accept_success,
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                self.metrics.quorum_failures.inc();
                StorageError::Quorum(format!(
                    "metadata write reached {} of {} required replicas ({})",
                    e.got,
                    e.needed,
                    e.errors.join("; ")
                ))
            })
    }

    /// Reads an object's metadata from `R` replicas: with `W + R > rf`, they include the
    /// latest acknowledged write. The newest version wins and stale replicas are repaired
    /// in the background.
    pub(crate) async fn get_meta(
        self: &Arc<Self>,
        path: &ObjectPath,
        set: &[Candidate],
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let rf = self.bucket_rf(&path.tenant, &path.bucket);
        let targets = self.placement(&bucket_placement_key(&path.tenant, &path.bucket), set, rf);
        let needed = self.config.read_quorum.min(targets.len()).max(1);
        let answers = self
            .endpoint
            .try_call_quorum(
                &targets,
                needed,
                StoreRequest::GetMeta { path: path.clone() },
                META_TIMEOUT,
                |_, response| match response {
                    StoreResponse::Meta(meta) => Ok(meta),
                    StoreResponse::Error(message) => Err(message),
                    _ => Err("unexpected answer".into()),
                },
            )
            .await
            .map_err(|e| {
                self.metrics.quorum_failures.inc();
                StorageError::Quorum(format!(
                    "only {} of {} metadata replicas answered ({})",
                    e.got,
                    e.needed,
                    e.errors.join("; ")
                ))
            })?;
        let newest = answers
            .iter()
            .filter_map(|(_, m)| m.clone())
            .reduce(|a, b| if b.supersedes(&a) { b } else { a });
        if let Some(newest) = &newest {
            self.clock.observe(newest.version);
            for (node, m) in &answers {
                if m.as_ref().is_none_or(|m| newest.supersedes(m)) {
                    let (this, node, meta) = (self.clone(), *node, newest.clone());
                    tokio::spawn(async move {
                        let _ = this
                            .call(node, StoreRequest::PutMeta { meta }, META_TIMEOUT)
                            .await;
                    });
                }
            }
        }
        Ok(newest)
    }
}
