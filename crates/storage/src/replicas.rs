//! Replicas: writing chunks and metadata to their placement with a write quorum, and
//! reading them back (chunks from any replica whose bytes match their id, metadata from a
//! read quorum with read repair).

use std::sync::Arc;

use bytes::Bytes;
use xnode_store::{
    Candidate, ChunkId, ConditionalMerge, MergeOutcome, ObjectInfo, ObjectMeta, ObjectPath,
};
use xnode_types::{Hlc, NodeId, PublicKeyBytes, unix_ms};

use crate::proto::{BucketRef, StoreRequest, StoreResponse};
use crate::quorum::{CallsGo, Route};
use crate::seals::{Trust, newest_trusted};
use crate::{CHUNK_TIMEOUT, MAX_VERSION_AHEAD_MS, META_TIMEOUT, Storage, StorageError};

/// A write counts when the replica answered anything but an error.
fn accept_success(_: NodeId, response: StoreResponse) -> Result<(), String> {
    match response {
        StoreResponse::Error(message) => Err(message),
        _ => Ok(()),
    }
}

impl Storage {
    // ----- chunks -----------------------------------------------------------------------

    /// Stores a chunk that belongs to no bucket (a deployed module) on its placement for
    /// the node's default replication factor; see [`Storage::put_bucket_chunk`].
    pub async fn put_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        data: Bytes,
        set: &[Candidate],
    ) -> Result<(), StorageError> {
        let rf = self.config.replication_factor;
        self.put_chunk_to(id, data, set, rf, None, Route::Mesh)
            .await
    }

    /// Stores a chunk of `bucket` on its placement for the bucket's replication factor.
    /// `route` is [`Route::BulkLink`] only for an object's data chunks, whose bytes are
    /// sealed with the object's key (a manifest's are not all).
    pub(crate) async fn put_bucket_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        data: Bytes,
        set: &[Candidate],
        bucket: &BucketRef,
        route: Route,
    ) -> Result<(), StorageError> {
        let rf = self.bucket_rf(&bucket.tenant, &bucket.name);
        self.require_placeable(&bucket.tenant, &bucket.name, set)?;
        let pinned = self.pinned_set(&bucket.tenant, &bucket.name, set);
        let bytes = data.len() as u64;
        self.put_chunk_to(id, data, &pinned, rf, Some(bucket.clone()), route)
            .await?;
        // The edge observes the byte-hours of what it placed on each replica; repair keeps
        // the chunk on its placement, so the placement is what the edge expects to pay.
        let targets = self.placement(&id.0, &pinned, rf);
        // A durable database write: off the async workers, like the chunk's.
        let storage = Arc::clone(self);
        let tenant = bucket.tenant;
        let recorded = tokio::task::spawn_blocking(move || {
            storage.record_placed_chunk(&id, tenant, bytes, &targets)
        })
        .await
        .map_err(|e| StorageError::Internal(e.to_string()))
        .and_then(|r| r);
        if let Err(e) = recorded {
            tracing::warn!(chunk = %id, "could not record a placed chunk for metering: {e}");
        }
        Ok(())
    }

    /// Stores a chunk on its placement; succeeds once `W` replicas hold it durably. The
    /// remaining replicas are written in the background (repair covers any that fail).
    async fn put_chunk_to(
        self: &Arc<Self>,
        id: ChunkId,
        data: Bytes,
        set: &[Candidate],
        rf: usize,
        bucket: Option<BucketRef>,
        route: Route,
    ) -> Result<(), StorageError> {
        let targets = self.placement(&id.0, set, rf);
        let (needed, _) = self.quorums(targets.len());
        let request = StoreRequest::PutChunk {
            id,
            data: data.clone(),
            bucket,
        };
        self.write_quorum(
            &targets,
            needed,
            request,
            data.len(),
            CallsGo {
                timeout: CHUNK_TIMEOUT,
                route,
            },
            accept_success,
        )
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

    /// Reads a chunk from any replica whose bytes match its id, hedging slow replicas (see
    /// `hedge`). A replica that sends wrong bytes is counted and skipped.
    pub async fn get_chunk(&self, id: ChunkId, set: &[Candidate]) -> Result<Vec<u8>, StorageError> {
        self.get_chunk_for(id, set, None).await
    }

    /// A chunk of `owner`'s bucket `bucket`, read from the bucket's own placement first
    /// (its pinned regions and replication factor), so a pinned bucket's chunk is not asked
    /// of nodes outside its regions, one round trip each, before its holders. `tenant`
    /// asks with `GetTenantChunk`: the replica that serves it
    /// meters its egress and this edge observes the bytes that match (see `metered`).
    pub(crate) async fn get_object_chunk(
        &self,
        id: ChunkId,
        set: &[Candidate],
        tenant: Option<PublicKeyBytes>,
        owner: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<Vec<u8>, StorageError> {
        let pinned = self.pinned_set(owner, bucket, set);
        let targets = self.placement(&id.0, &pinned, self.bucket_rf(owner, bucket));
        self.read_chunk_from(id, targets, set, tenant).await
    }

    async fn get_chunk_for(
        &self,
        id: ChunkId,
        set: &[Candidate],
        tenant: Option<PublicKeyBytes>,
    ) -> Result<Vec<u8>, StorageError> {
        let targets = self.placement(&id.0, set, self.config.replication_factor);
        self.read_chunk_from(id, targets, set, tenant).await
    }

    async fn read_chunk_from(
        &self,
        id: ChunkId,
        mut targets: Vec<xnode_types::NodeId>,
        set: &[Candidate],
        tenant: Option<PublicKeyBytes>,
    ) -> Result<Vec<u8>, StorageError> {
        // Try this node first (no network), then live replicas nearest first by network
        // coordinates, then the rest; the hedge asks the next one if the first is slow.
        let live = self.live_nodes();
        self.mesh.sort_by_distance(&mut targets);
        targets.sort_by_key(|n| (*n != self.node_id, !live.contains(n)));
        // Nodes outside the placement may still hold it (older placements, repairs).
        for c in set {
            if !targets.contains(&c.id) && live.contains(&c.id) {
                targets.push(c.id);
            }
        }
        self.read_chunk_hedged(id, targets, tenant).await
    }

    // ----- metadata ---------------------------------------------------------------------

    /// Writes an object's metadata to its bucket's placement; succeeds once `W` replicas
    /// hold it. A replica that holds a newer version answers so, and does not count: a
    /// write is acknowledged only if it won on a write quorum, and fails with
    /// [`StorageError::Conflict`] if newer versions kept it from one. The remaining
    /// replicas are written in the background.
    ///
    /// With `expected`, it is the compare-and-set of a conditional write (`PutMetaIf`): a
    /// replica whose entry moved past `expected` refuses, and a write that refusals keep
    /// from its quorum fails with [`StorageError::ConditionalConflict`].
    pub(crate) async fn put_meta(
        self: &Arc<Self>,
        meta: ObjectMeta,
        expected: Option<Option<(Hlc, NodeId)>>,
        set: &[Candidate],
    ) -> Result<(), StorageError> {
        self.require_placeable(&meta.path.tenant, &meta.path.bucket, set)?;
        let targets = self.meta_placement(&meta.path.tenant, &meta.path.bucket, set);
        let (needed, _) = self.quorums(targets.len());
        let mut superseded: Option<(Hlc, NodeId)> = None;
        let mut moved: Option<(Hlc, NodeId)> = None;
        let weight = xnode_wire::encode(&meta).map(|e| e.len()).unwrap_or(1);
        let request = match expected {
            None => StoreRequest::PutMeta { meta },
            Some(expected) => StoreRequest::PutMetaIf { meta, expected },
        };
        let conditional = expected.is_some();
        let result = self
            .write_quorum(
                &targets,
                needed,
                request,
                weight,
                CallsGo {
                    timeout: META_TIMEOUT,
                    route: Route::Mesh,
                },
                |_, response| match response {
                    StoreResponse::MetaMerged { outcome } if outcome.is_held() => Ok(()),
                    StoreResponse::MetaMergedIf(ConditionalMerge::Merged(outcome))
                        if conditional && outcome.is_held() =>
                    {
                        Ok(())
                    }
                    StoreResponse::MetaMergedIf(ConditionalMerge::Moved { version, writer })
                        if conditional =>
                    {
                        if moved.is_none_or(|m| m < (version, writer)) {
                            moved = Some((version, writer));
                        }
                        Err(format!(
                            "moved on to version {version:?} of node {writer} since the condition was decided"
                        ))
                    }
                    StoreResponse::MetaMergedIf(ConditionalMerge::Merged(
                        MergeOutcome::Superseded { version, writer },
                    )) if conditional => {
                        if moved.is_none_or(|m| m < (version, writer)) {
                            moved = Some((version, writer));
                        }
                        Err(format!(
                            "superseded by version {version:?} of node {writer}"
                        ))
                    }
                    StoreResponse::MetaMerged {
                        outcome: MergeOutcome::Superseded { version, writer },
                    } => {
                        if superseded.is_none_or(|s| s < (version, writer)) {
                            superseded = Some((version, writer));
                        }
                        Err(format!(
                            "superseded by version {version:?} of node {writer}"
                        ))
                    }
                    StoreResponse::MetaStored { changed: true } => Ok(()),
                    StoreResponse::MetaStored { changed: false } => {
                        Err("not stored (a replica of an older version cannot say why)".into())
                    }
                    StoreResponse::Error(message) => Err(message),
                    _ => Err("unexpected answer".into()),
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let detail = format!(
                    "metadata write reached {} of {} required replicas ({})",
                    e.got,
                    e.needed,
                    e.errors.join("; ")
                );
                if let Some((version, writer)) = moved {
                    self.metrics.write_conflicts.inc();
                    Err(StorageError::ConditionalConflict(format!(
                        "a concurrent write ({version:?} of node {writer}) reached the replicas while the condition was decided: {detail}"
                    )))
                } else if let Some((version, writer)) = superseded {
                    self.metrics.write_conflicts.inc();
                    Err(StorageError::Conflict(format!(
                        "a newer version ({version:?} of node {writer}) is held by the replicas: {detail}"
                    )))
                } else {
                    self.metrics.quorum_failures.inc();
                    Err(StorageError::Quorum(detail))
                }
            }
        }
    }

    /// Writes a new version of `path`'s metadata (`info`, or a tombstone when `None`),
    /// ordered after `current`, the newest version a quorum read found just before. That
    /// read made this edge's clock absorb `current`'s version, so the new one is above it
    /// (and above every acknowledged write, since `W + R > rf`) even when another edge's
    /// clock runs ahead of ours: sequential writes through different edges keep their order.
    pub(crate) async fn write_meta(
        self: &Arc<Self>,
        path: ObjectPath,
        info: Option<ObjectInfo>,
        current: Option<&ObjectMeta>,
        set: &[Candidate],
    ) -> Result<ObjectMeta, StorageError> {
        self.write_meta_checked(path, info, current, set, false)
            .await
    }

    async fn write_meta_checked(
        self: &Arc<Self>,
        path: ObjectPath,
        info: Option<ObjectInfo>,
        current: Option<&ObjectMeta>,
        set: &[Candidate],
        compare_and_set: bool,
    ) -> Result<ObjectMeta, StorageError> {
        let version = self.clock.now();
        if let Some(current) = current
            && version <= current.version
        {
            // get_meta only returns versions the clock absorbs; this guards that promise.
            self.metrics.write_conflicts.inc();
            return Err(StorageError::Conflict(format!(
                "the current version {:?} is ahead of this node's clock",
                current.version
            )));
        }
        let meta = self.seal(ObjectMeta {
            path,
            version,
            writer: self.node_id,
            info,
            seal: None,
        })?;
        let expected = compare_and_set.then(|| current.map(|c| (c.version, c.writer)));
        self.put_meta(meta.clone(), expected, set).await?;
        Ok(meta)
    }

    /// Reads an object's metadata from `R` replicas: with `W + R > rf`, they include the
    /// latest acknowledged write when every replica is honest. The read then listens to
    /// the other replicas for `read_linger` more (see
    /// [`xnode_mesh::Endpoint::try_call_quorum_lingering`]), so that one replica
    /// withholding the latest entry cannot roll the object back. The newest version wins
    /// and stale replicas are repaired in the background.
    pub(crate) async fn get_meta(
        self: &Arc<Self>,
        path: &ObjectPath,
        set: &[Candidate],
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let targets = self.meta_placement(&path.tenant, &path.bucket, set);
        let (_, needed) = self.quorums(targets.len());
        // Entries dated further ahead than replicas accept are ignored (see
        // MAX_VERSION_AHEAD_MS); what is left, the clock can absorb.
        let limit = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        let answers = self
            .endpoint
            .try_call_quorum_lingering(
                &targets,
                needed,
                self.config.read_linger,
                StoreRequest::GetMeta { path: path.clone() },
                META_TIMEOUT,
                |node, response| match response {
                    // An answer about another object (of this tenant or any other) would
                    // let a replica substitute one object for another: drop it.
                    StoreResponse::Meta(Some(meta)) if meta.path != *path => {
                        self.metrics.bad_replica_reads.inc();
                        tracing::warn!(%node, "a metadata replica answered for another path; ignored");
                        Err("answered for another path".into())
                    }
                    StoreResponse::Meta(Some(meta)) if meta.version.wall_ms > limit => Ok(None),
                    // A replica that answers with a forged entry is lying: its answer does
                    // not count towards the quorum.
                    StoreResponse::Meta(Some(meta)) => match self.trust(&meta) {
                        Trust::Forged => {
                            self.metrics.bad_replica_reads.inc();
                            Err("answered with an entry whose seal fails".into())
                        }
                        // The tenant revoked its writer before its date: the replica may
                        // have taken it before it learnt of that, and holds nothing else
                        // for the key.
                        Trust::Revoked => Ok(None),
                        Trust::Verified | Trust::Unverifiable => Ok(Some(meta)),
                    },
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
        let entries: Vec<Option<ObjectMeta>> = answers.iter().map(|(_, m)| m.clone()).collect();
        let newest = newest_trusted(&entries, |m| self.trust(m));
        if let Some(newest) = &newest {
            self.clock.observe(newest.version);
            // Only a verified entry is repaired onto replicas: they refuse the rest.
            let repairable = newest.is_sealed() && self.trust(newest) == Trust::Verified;
            for (node, m) in answers.iter().filter(|_| repairable) {
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
