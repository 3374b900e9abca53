//! The `store` RPC service: what one node asks another to store, read or list, and the
//! handler that answers peers from this node's local engine.

use std::sync::{Arc, Weak};
use std::time::Duration;

use xnode_mesh::{Handler, MeshError, RpcError, RpcErrorCode, Server, Service};
use xnode_types::NodeId;

use crate::proto::{MAX_STORE_MESSAGE, StoreRequest, StoreResponse};
use crate::{CHUNK_RF, Storage, StorageError, blocking};

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
    async fn handle(
        &self,
        _from: NodeId,
        request: StoreRequest,
    ) -> Result<StoreResponse, RpcError> {
        let Some(storage) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "storage is stopping",
            ));
        };
        Ok(match storage.handle(request).await {
            Ok(response) => storage.maybe_corrupt(response),
            Err(e) => StoreResponse::Error(e.to_string()),
        })
    }
}

impl Storage {
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
            StoreRequest::PutChunk { id, data, rf } => {
                let chunks = self.chunks.clone();
                blocking(move || chunks.put(&id, &data)).await?;
                if rf as usize != self.config.replication_factor && rf > 0 {
                    // Remember a non-default rf so repair keeps that many copies.
                    self.db
                        .put(CHUNK_RF, &id.0, &[rf])
                        .map_err(|e| StorageError::Internal(e.to_string()))?;
                }
                Ok(StoreResponse::Stored)
            }
            StoreRequest::GetChunk { id } => {
                let chunks = self.chunks.clone();
                // A corrupt local copy is reported as absent: the reader tries another
                // replica and the scrubber or repair restores this one.
                match blocking(move || chunks.get(&id)).await {
                    Ok(data) => Ok(StoreResponse::Chunk(data)),
                    Err(StorageError::Internal(_)) => Ok(StoreResponse::Chunk(None)),
                    Err(e) => Err(e),
                }
            }
            StoreRequest::HasChunks { ids } => {
                let chunks = self.chunks.clone();
                let has =
                    blocking(move || ids.iter().map(|id| chunks.contains(id)).collect()).await?;
                Ok(StoreResponse::Has(has))
            }
            StoreRequest::PutMeta { meta } => {
                let store = self.meta.clone();
                let changed = blocking(move || store.merge(meta)).await?;
                Ok(StoreResponse::MetaStored { changed })
            }
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
                let limit = (limit as usize).min(10_000);
                let list = blocking(move || {
                    store.list(&tenant, &bucket, &prefix, start_after.as_deref(), limit)
                })
                .await?;
                Ok(StoreResponse::MetaList(list))
            }
            StoreRequest::ScanMeta { after, limit } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(10_000);
                let after = (!after.is_empty()).then_some(after);
                let list = blocking(move || store.scan(after.as_deref(), limit)).await?;
                Ok(StoreResponse::MetaList(list))
            }
        }
    }

    fn maybe_corrupt(&self, response: StoreResponse) -> StoreResponse {
        match response {
            StoreResponse::Chunk(Some(mut data))
                if self.corrupt_served_chunks() && !data.is_empty() =>
            {
                data[0] ^= 0xff;
                StoreResponse::Chunk(Some(data))
            }
            other => other,
        }
    }
}
