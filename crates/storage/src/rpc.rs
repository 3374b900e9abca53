//! The `store` RPC service: what one node asks another to store, read or list, and the
//! handler that answers peers from this node's local engine.

use std::sync::{Arc, Weak};
use std::time::Duration;

use xnode_mesh::{Handler, MeshError, RpcError, RpcErrorCode, Server, Service};
use xnode_types::{NodeId, unix_ms};

use crate::proto::{
    BucketRef, MAX_CHUNK_PARTITIONS, MAX_DIGEST_BUCKETS, MAX_DROP_TOMBSTONES,
    MAX_LIST_ANSWER_BYTES, MAX_LIST_LIMIT, MAX_PUT_META_MANY, MAX_PUT_RETIRED_MANY,
    MAX_STORE_MESSAGE, StoreRequest, StoreResponse,
};
use crate::{MAX_VERSION_AHEAD_MS, ServeFault, Storage, StorageError, blocking};

/// The storage service on the mesh.
#[derive(Debug)]
pub struct StoreService;

impl Service for StoreService {
    const NAME: &'static str = "store";
    const MAX_MESSAGE: usize = MAX_STORE_MESSAGE;
    type Request = StoreRequest;
    type Response = StoreResponse;
}

/// Answers peers' storage requests. It holds the storage weakly: the storage owns the
/// endpoint that owns this handler, and a strong reference would keep a stopped node's
/// storage alive.
struct StoreHandler(Weak<Storage>);

#[async_trait::async_trait]
impl Handler<StoreService> for StoreHandler {
    async fn handle(&self, from: NodeId, request: StoreRequest) -> Result<StoreResponse, RpcError> {
        let Some(storage) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "storage is stopping",
            ));
        };
        Ok(storage.answer_peer(from, request).await)
    }
}

impl Storage {
    /// Serves one request from a peer, whether it came by the mesh or by the bulk link:
    /// the same checks, fault injection and metering either way.
    pub(crate) async fn answer_peer(
        self: &Arc<Self>,
        from: NodeId,
        request: StoreRequest,
    ) -> StoreResponse {
        let storage = self;
        let tamper = storage.serve_tamper();
        let asked = tamper.as_ref().map(|_| request.clone());
        // A tenant's chunk read is metered on the bytes actually sent (below).
        let egress_tenant = match &request {
            StoreRequest::GetTenantChunk { tenant, .. } => Some(*tenant),
            StoreRequest::ForwardedRead { path, .. }
            | StoreRequest::QuorumForwardedRead { path, .. } => Some(path.tenant),
            _ => None,
        };
        let result = match request {
            // A peer placing a chunk of a tenant's bucket here: the replica keeps what it
            // needs to meter the chunk's byte-hours to that tenant.
            StoreRequest::PutChunk { id, data, bucket } => {
                let placed = bucket.as_ref().map(|b| (b.tenant, data.len() as u64));
                match storage.accept_chunk(id, data, bucket).await {
                    Ok(()) => {
                        // A durable database write: off the async workers, like the chunk's.
                        if let Some((tenant, bytes)) = placed {
                            let s = storage.clone();
                            let recorded = tokio::task::spawn_blocking(move || {
                                s.record_held_chunk(&id, tenant, bytes, from)
                            })
                            .await
                            .map_err(|e| StorageError::Internal(e.to_string()))
                            .and_then(|r| r);
                            if let Err(e) = recorded {
                                tracing::warn!(chunk = %id, "could not record a held chunk for metering: {e}");
                            }
                        }
                        Ok(StoreResponse::Stored)
                    }
                    Err(e) => Err(e),
                }
            }
            // The one request whose answer depends on who asks.
            StoreRequest::ChunkDigests { partitions } => {
                if partitions.len() > MAX_CHUNK_PARTITIONS {
                    Err(StorageError::BadRequest(format!(
                        "at most {MAX_CHUNK_PARTITIONS} partitions per request"
                    )))
                } else {
                    let s = storage.clone();
                    tokio::task::spawn_blocking(move || s.answer_chunk_digests(from, &partitions))
                        .await
                        .map_err(|e| StorageError::Internal(e.to_string()))
                        .and_then(|r| r.map(StoreResponse::Digests))
                }
            }
            StoreRequest::ForwardedRead {
                path,
                from: offset,
                max_bytes,
            } => {
                storage.metrics.forwarded_reads_served.inc();
                storage
                    .answer_forwarded_read(path, offset, max_bytes, from, false)
                    .await
                    .map(StoreResponse::Forwarded)
            }
            // The entry, manifest and first chunks, and the signed read quorum, gathered
            // at the same time: the edge waits for the slower of the two.
            StoreRequest::QuorumForwardedRead {
                path,
                from: offset,
                max_bytes,
                nonce,
            } => {
                storage.metrics.forwarded_reads_served.inc();
                let (answer, attestations) = tokio::join!(
                    storage.answer_forwarded_read(path.clone(), offset, max_bytes, from, false),
                    storage.collect_attestations(&path, nonce)
                );
                answer.map(|answer| StoreResponse::QuorumForwarded {
                    answer,
                    attestations,
                })
            }
            StoreRequest::CommitMeta { .. } => Err(StorageError::BadRequest(
                "conditional writes must be sealed by the edge (CommitSealedMeta); update the node that sent this"
                    .into(),
            )),
            StoreRequest::CommitSealedMeta {
                meta,
                preconditions,
            } => storage.answer_commit(meta, preconditions).await,
            StoreRequest::OpenBulk => storage.answer_open_bulk(from),
            request => storage.handle(request).await,
        };
        let response = match result {
            Ok(response) => storage.maybe_corrupt(response),
            Err(e) => StoreResponse::Error(e.to_string()),
        };
        let response = match (tamper, asked) {
            (Some(tamper), Some(asked)) => match tamper(&asked, response) {
                ServeFault::Answer(response) => response,
                ServeFault::Delay(delay, response) => {
                    tokio::time::sleep(delay).await;
                    response
                }
            },
            _ => response,
        };
        match (egress_tenant, &response) {
            (Some(tenant), StoreResponse::Chunk(Some(data))) => {
                storage.meter_egress_served(tenant, from, data.len() as u64);
            }
            // A forwarded read serves the manifest and chunks as the tenant's egress to the
            // edge that asked, as `GetTenantChunk` does (see `forward`).
            (Some(tenant), StoreResponse::Forwarded(answer))
            | (Some(tenant), StoreResponse::QuorumForwarded { answer, .. }) => {
                storage.meter_egress_served(tenant, from, crate::forward::answer_bytes(answer));
            }
            _ => {}
        }
        response
    }

    /// The worker that serves the `store` service to peers.
    pub fn serve(self: &Arc<Self>) -> Server<StoreService> {
        self.endpoint
            .serve(Arc::new(StoreHandler(Arc::downgrade(self))))
    }

    /// Calls one node. A call to this node itself is answered by [`Storage::handle`]
    /// directly, without the fault injection that applies to what peers are served.
    pub(crate) async fn call(
        &self,
        node: NodeId,
        request: StoreRequest,
        timeout: Duration,
    ) -> Result<StoreResponse, StorageError> {
        if node == self.node_id {
            return self.handle(request).await;
        }
        let response = self
            .endpoint
            .call(node, request, timeout)
            .await
            .map_err(|e| match e {
                MeshError::Malformed { .. } | MeshError::Encode { .. } => {
                    StorageError::Internal(format!("node {node}: {e}"))
                }
                e => StorageError::Quorum(format!("node {node}: {e}")),
            })?;
        if let StoreResponse::Error(message) = response {
            return Err(StorageError::Internal(format!("node {node}: {message}")));
        }
        Ok(response)
    }

    /// Serves one storage request (from a peer, or from this node itself).
    pub(crate) async fn handle(
        &self,
        request: StoreRequest,
    ) -> Result<StoreResponse, StorageError> {
        match request {
            StoreRequest::PutChunk { id, data, bucket } => {
                self.accept_chunk(id, data, bucket).await?;
                Ok(StoreResponse::Stored)
            }
            StoreRequest::GetChunk { id } | StoreRequest::GetTenantChunk { id, .. } => {
                let chunks = self.chunks.clone();
                let trash = self.trash.clone();
                // A corrupt local copy is reported as absent: the reader tries another
                // replica and the scrubber or repair restores this one. A chunk that
                // garbage collection trashed is wanted after all: it is restored.
                let read = blocking(move || match chunks.get(&id)? {
                    Some(data) => Ok(Some(data)),
                    None => {
                        let restored = trash.restore(&chunks, &id)?;
                        if restored.is_some() {
                            tracing::warn!(chunk = %id, "a chunk garbage collection removed was read; restored from the trash");
                        }
                        Ok(restored)
                    }
                })
                .await;
                match read {
                    Ok(data) => Ok(StoreResponse::Chunk(data)),
                    Err(StorageError::Internal(_)) => Ok(StoreResponse::Chunk(None)),
                    Err(e) => Err(e),
                }
            }
            StoreRequest::HasChunks { ids } => {
                let chunks = self.chunks.clone();
                let trash = self.trash.clone();
                // A chunk this node's garbage collection trashed counts as held: the round
                // had positive proof that nothing referenced it, a read restores it, and a
                // later round restores it should it be referenced again. Answered as
                // missing, the replicas that have not collected it yet would copy the
                // garbage back (anti-entropy asks this), and it would bounce between
                // them for as long as their rounds do not fall in the same moment.
                let has = blocking(move || {
                    ids.iter()
                        .map(|id| Ok::<_, xnode_store::StoreError>(chunks.contains(id)? || trash.contains(id)))
                        .collect()
                })
                .await?;
                Ok(StoreResponse::Has(has))
            }
            StoreRequest::PutMeta { meta } => {
                // A node the admission policy does not admit holds no data by placement;
                // it takes none from a peer either (chunks are refused by placement).
                self.check_admitted_here()?;
                self.check_version_not_ahead(&meta)?;
                self.check_peer_entry(&meta)?;
                let store = self.meta.clone();
                let outcome = blocking(move || store.merge_outcome(meta)).await?;
                Ok(StoreResponse::MetaMerged { outcome })
            }
            StoreRequest::PutMetaIf { meta, expected } => {
                self.check_admitted_here()?;
                self.check_version_not_ahead(&meta)?;
                self.check_peer_entry(&meta)?;
                let store = self.meta.clone();
                let merged = blocking(move || store.merge_if(meta, expected)).await?;
                Ok(StoreResponse::MetaMergedIf(merged))
            }
            StoreRequest::OpenBulk => Err(StorageError::BadRequest(
                "a bulk link is opened to a peer, never to this node itself".into(),
            )),
            StoreRequest::CommitMeta { .. } | StoreRequest::CommitSealedMeta { .. } => {
                Err(StorageError::BadRequest(
                    "a conditional write is coordinated for a peer; an edge coordinates its own directly"
                        .into(),
                ))
            }
            StoreRequest::PutMetaMany { metas } => {
                self.check_admitted_here()?;
                if metas.len() > MAX_PUT_META_MANY {
                    return Err(StorageError::BadRequest(format!(
                        "at most {MAX_PUT_META_MANY} entries per request"
                    )));
                }
                // Each entry on its own, as `PutMeta`: one bad entry does not refuse the rest.
                let checked: Vec<Option<xnode_store::ObjectMeta>> = metas
                    .into_iter()
                    .map(|meta| {
                        self.check_version_not_ahead(&meta)
                            .and_then(|()| self.check_peer_entry(&meta))
                            .ok()
                            .map(|()| meta)
                    })
                    .collect();
                let store = self.meta.clone();
                let outcomes = blocking(move || {
                    Ok(checked
                        .into_iter()
                        .map(|meta| meta.and_then(|m| store.merge_outcome(m).ok()))
                        .collect())
                })
                .await?;
                Ok(StoreResponse::MetaMergedMany(outcomes))
            }
            StoreRequest::MetaDigests { buckets } => {
                if buckets.len() > MAX_DIGEST_BUCKETS {
                    return Err(StorageError::BadRequest(format!(
                        "at most {MAX_DIGEST_BUCKETS} buckets per request"
                    )));
                }
                Ok(StoreResponse::Digests(self.answer_meta_digests(&buckets)?))
            }
            StoreRequest::MetaLeafDigests { bucket } => {
                let store = self.meta.clone();
                let leaves =
                    blocking(move || store.leaf_digests(&bucket.tenant, &bucket.name)).await?;
                Ok(StoreResponse::Digests(leaves))
            }
            StoreRequest::ChunkDigests { .. } => Err(StorageError::BadRequest(
                "chunk digests are compared between two nodes, not asked of oneself".into(),
            )),
            StoreRequest::AuditChunk {
                id,
                offset,
                len,
                nonce,
            } => {
                if len > xnode_store::MAX_AUDIT_SLICE {
                    return Err(StorageError::BadRequest(format!(
                        "audit slices are at most {} bytes",
                        xnode_store::MAX_AUDIT_SLICE
                    )));
                }
                self.answer_audit(id, offset, len, nonce).await
            }
            StoreRequest::AuditLog { epoch } => Ok(self.answer_audit_log(epoch)),
            StoreRequest::AttestMeta { path, nonce } => {
                Ok(StoreResponse::Attested(self.attest_meta(path, nonce).await?))
            }
            StoreRequest::ForwardedRead { .. } | StoreRequest::QuorumForwardedRead { .. } => Err(StorageError::BadRequest(
                "a forwarded read is answered for a peer; an edge reads its own replica directly"
                    .into(),
            )),
            StoreRequest::GetMeta { path } => {
                let store = self.meta.clone();
                Ok(StoreResponse::Meta(
                    blocking(move || store.get(&path)).await?,
                ))
            }
            StoreRequest::ListMeta {
                tenant,
                bucket,
                prefix,
                start_after,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(MAX_LIST_LIMIT);
                let list = blocking(move || {
                    store.list(&tenant, &bucket, &prefix, start_after.as_deref(), limit)
                })
                .await?;
                // Keep the answer well inside the message limit whatever the entries hold
                // (user metadata makes some large): cut it and say so.
                let mut truncated = list.len() >= limit;
                let mut bytes = 0usize;
                let mut entries = Vec::with_capacity(list.len());
                for meta in list {
                    let len = xnode_wire::encode(&meta).map(|e| e.len()).unwrap_or(0);
                    bytes = bytes.saturating_add(len);
                    if bytes > MAX_LIST_ANSWER_BYTES && !entries.is_empty() {
                        truncated = true;
                        break;
                    }
                    entries.push(meta);
                }
                Ok(StoreResponse::MetaPage { entries, truncated })
            }
            StoreRequest::MetaRange {
                bucket,
                prefix,
                after,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(MAX_LIST_LIMIT);
                // The stored length of each entry bounds the answer well inside the message
                // limit whatever the entries hold (user metadata makes some large).
                let page = blocking(move || {
                    store.range(
                        &bucket.tenant,
                        &bucket.name,
                        &prefix,
                        after.as_deref(),
                        limit,
                        MAX_LIST_ANSWER_BYTES,
                    )
                })
                .await?;
                Ok(StoreResponse::MetaRange {
                    entries: page.entries,
                    truncated: page.truncated,
                })
            }
            StoreRequest::MetaRangeEncoded {
                bucket,
                prefix,
                after,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(MAX_LIST_LIMIT);
                let page = blocking(move || {
                    store.range_encoded(
                        &bucket.tenant,
                        &bucket.name,
                        &prefix,
                        after.as_deref(),
                        limit,
                        MAX_LIST_ANSWER_BYTES,
                    )
                })
                .await?;
                Ok(StoreResponse::MetaRangeEncoded {
                    entries: page
                        .entries
                        .into_iter()
                        .map(serde_bytes::ByteBuf::from)
                        .collect(),
                    truncated: page.truncated,
                })
            }
            StoreRequest::MetaRangeDigest {
                bucket,
                prefix,
                after,
                until,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(MAX_LIST_LIMIT);
                // An honest edge's range holds about `MAX_LIST_ANSWER_BYTES` at most (its own
                // read is cut there); twice that bounds what a peer can make this node hash.
                let digest = blocking(move || {
                    let range = xnode_store::DigestRange {
                        tenant: &bucket.tenant,
                        bucket: &bucket.name,
                        prefix: &prefix,
                        after: after.as_deref(),
                        until: until.as_deref(),
                    };
                    store.range_digest(&range, limit, MAX_LIST_ANSWER_BYTES.saturating_mul(2))
                })
                .await?;
                Ok(StoreResponse::RangeDigest(digest))
            }
            StoreRequest::DropTombstones { tombstones } => {
                if tombstones.len() > MAX_DROP_TOMBSTONES {
                    return Err(StorageError::BadRequest(format!(
                        "at most {MAX_DROP_TOMBSTONES} tombstones per request"
                    )));
                }
                Ok(StoreResponse::TombstonesDropped(
                    self.drop_tombstones(tombstones).await?,
                ))
            }
            StoreRequest::RetiredDigests { buckets } => {
                if buckets.len() > MAX_DIGEST_BUCKETS {
                    return Err(StorageError::BadRequest(format!(
                        "at most {MAX_DIGEST_BUCKETS} buckets per request"
                    )));
                }
                Ok(StoreResponse::Digests(
                    self.answer_retired_digests(&buckets)?,
                ))
            }
            StoreRequest::RetiredLeafDigests { bucket } => {
                let store = self.meta.clone();
                let leaves =
                    blocking(move || store.retired_leaf_digests(&bucket.tenant, &bucket.name))
                        .await?;
                Ok(StoreResponse::Digests(leaves))
            }
            StoreRequest::PutRetiredMany { tombstones } => {
                self.check_admitted_here()?;
                if tombstones.len() > MAX_PUT_RETIRED_MANY {
                    return Err(StorageError::BadRequest(format!(
                        "at most {MAX_PUT_RETIRED_MANY} retired tombstones per request"
                    )));
                }
                Ok(StoreResponse::RetiredMerged(
                    self.merge_retired_from_peer(tombstones).await?,
                ))
            }
            StoreRequest::MetaBucketDigests { after, limit } => {
                let store = self.meta.clone();
                let limit = limit.min(crate::proto::MAX_BUCKET_DIGESTS) as usize;
                let after = after.map(|b| (b.tenant, b.name));
                let digests =
                    blocking(move || store.bucket_digests_after(after.as_ref(), limit)).await?;
                Ok(StoreResponse::BucketDigests(
                    digests
                        .into_iter()
                        .map(|((tenant, name), digest)| (BucketRef { tenant, name }, digest))
                        .collect(),
                ))
            }
            StoreRequest::ScanBucketMeta {
                bucket,
                after,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = limit.min(crate::proto::MAX_SCAN_ENTRIES) as usize;
                let list = blocking(move || {
                    store.scan_bucket(
                        &bucket.tenant,
                        &bucket.name,
                        after.as_deref(),
                        limit,
                        MAX_LIST_ANSWER_BYTES,
                    )
                })
                .await?;
                Ok(StoreResponse::MetaList(list))
            }
            StoreRequest::ScanMeta { after, limit } => {
                let store = self.meta.clone();
                let limit = limit.min(crate::proto::MAX_SCAN_ENTRIES) as usize;
                let after = (!after.is_empty()).then_some(after);
                let list = blocking(move || store.scan(after.as_deref(), limit)).await?;
                Ok(StoreResponse::MetaList(list))
            }
        }
    }

    /// Coordinates a peer's conditional write. Only a replica of the bucket's metadata
    /// coordinates its keys, and only for a bucket its registry knows: anything else is a
    /// peer's mistake or a probe, and is refused before any lock is taken.
    async fn answer_commit(
        self: &Arc<Self>,
        meta: xnode_store::ObjectMeta,
        preconditions: crate::conditional::Preconditions,
    ) -> Result<StoreResponse, StorageError> {
        self.check_admitted_here()?;
        let path = meta.path.clone();
        path.validate()?;
        self.require_bucket(&path.tenant, &path.bucket)?;
        let set = self.storage_set();
        let placement = self.meta_placement(&path.tenant, &path.bucket, &set);
        if !placement.contains(&self.node_id) {
            return Err(StorageError::BadRequest(
                "this node holds no replica of the bucket's metadata".into(),
            ));
        }
        let size = xnode_wire::encode(&meta)
            .map(|e| e.len())
            .unwrap_or(usize::MAX);
        if size > xnode_store::MAX_META_BYTES {
            return Err(StorageError::BadRequest(format!(
                "object metadata of {size} bytes is over the {} byte limit",
                xnode_store::MAX_META_BYTES
            )));
        }
        self.check_version_not_ahead(&meta)?;
        // Checked before the lock is taken: a forged write costs the coordinator nothing.
        self.check_peer_entry(&meta)?;
        Ok(StoreResponse::Committed(
            self.coordinate_commit(meta, preconditions).await,
        ))
    }

    fn check_admitted_here(&self) -> Result<(), StorageError> {
        if self.admitted_here() {
            Ok(())
        } else {
            Err(StorageError::BadRequest(
                "this node is not admitted to hold data".into(),
            ))
        }
    }

    /// A version dated into the future would win every later write until the clocks
    /// catch up (or forever, at u64::MAX): refuse it.
    fn check_version_not_ahead(&self, meta: &xnode_store::ObjectMeta) -> Result<(), StorageError> {
        let limit = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        if meta.version.wall_ms > limit {
            self.metrics.future_versions_refused.inc();
            return Err(StorageError::BadRequest(format!(
                "metadata version {} ms is more than {MAX_VERSION_AHEAD_MS} ms ahead of this replica's clock",
                meta.version.wall_ms
            )));
        }
        Ok(())
    }

    fn maybe_corrupt(&self, response: StoreResponse) -> StoreResponse {
        match response {
            StoreResponse::Chunk(Some(mut data))
                if self.corrupt_served_chunks() && !data.is_empty() =>
            {
                data[0] ^= 0xff;
                StoreResponse::Chunk(Some(data))
            }
            // The chunks of a forwarded read are served chunks too.
            StoreResponse::Forwarded(mut answer) if self.corrupt_served_chunks() => {
                for chunk in &mut answer.chunks {
                    if let Some(byte) = chunk.data.first_mut() {
                        *byte ^= 0xff;
                    }
                }
                StoreResponse::Forwarded(answer)
            }
            StoreResponse::QuorumForwarded {
                answer,
                attestations,
            } if self.corrupt_served_chunks() => {
                let StoreResponse::Forwarded(answer) =
                    self.maybe_corrupt(StoreResponse::Forwarded(answer))
                else {
                    return StoreResponse::Error("a forwarded answer was lost".into());
                };
                StoreResponse::QuorumForwarded {
                    answer,
                    attestations,
                }
            }
            other => other,
        }
    }
}
