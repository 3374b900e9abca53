//! The `compute` RPC service: forwarded function calls, key grants and logs.

use std::sync::{Arc, Weak};
use std::time::Duration;

use xnode_mesh::{Handler, RpcError, RpcErrorCode, Server, Service};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::grants::GrantKeys;
use crate::proto::{ComputeRequest, ComputeResponse, MAX_COMPUTE_MESSAGE};
use crate::{Compute, ComputeOpError};

/// The compute service on the mesh.
#[derive(Debug)]
pub struct ComputeService;

impl Service for ComputeService {
    const NAME: &'static str = "compute";
    const MAX_MESSAGE: usize = MAX_COMPUTE_MESSAGE;
    type Request = ComputeRequest;
    type Response = ComputeResponse;
}

/// Answers peers. Holds the orchestrator weakly (it owns the endpoint that owns this).
struct ComputeHandler(Weak<Compute>);

#[async_trait::async_trait]
impl Handler<ComputeService> for ComputeHandler {
    async fn handle(
        &self,
        from: NodeId,
        request: ComputeRequest,
    ) -> Result<ComputeResponse, RpcError> {
        let Some(compute) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "compute is stopping",
            ));
        };
        Ok(compute.answer(from, request).await)
    }
}

impl Compute {
    /// The worker that serves the `compute` service to peers.
    pub fn serve(self: &Arc<Self>) -> Server<ComputeService> {
        self.endpoint
            .serve(Arc::new(ComputeHandler(Arc::downgrade(self))))
    }

    pub(crate) async fn call(
        &self,
        node: NodeId,
        request: ComputeRequest,
        timeout: Duration,
    ) -> Result<ComputeResponse, ComputeOpError> {
        self.endpoint
            .call(node, request, timeout)
            .await
            .map_err(|e| ComputeOpError::Unavailable(e.to_string()))
    }

    async fn answer(self: &Arc<Self>, from: NodeId, message: ComputeRequest) -> ComputeResponse {
        match message {
            ComputeRequest::Invoke {
                deployment,
                owner,
                method,
                path_and_query,
                headers,
                body,
                trace_id,
                parent_span,
            } => {
                self.answer_invoke(
                    from,
                    deployment,
                    owner,
                    method,
                    path_and_query,
                    headers,
                    body,
                    trace_id,
                    parent_span,
                )
                .await
            }
            ComputeRequest::Grant { owner, purpose } => {
                let Ok(owner) = PublicKeyBytes::from_hex(&owner) else {
                    return ComputeResponse::Grant(None);
                };
                if !self.may_receive_grant(from, &owner, &purpose) {
                    tracing::info!(%from, %purpose, "refused keys to a node the work is not placed on");
                    return ComputeResponse::Grant(None);
                }
                // Only this purpose's bucket keys, and only while they match its signed
                // scope; never a tenant's data key (no node holds one).
                ComputeResponse::Grant(
                    self.local_grant(&owner, &purpose)
                        .map(|keys| GrantKeys::encode(&keys)),
                )
            }
            ComputeRequest::PushGrant {
                owner,
                purpose,
                keys,
            } => {
                // Keys are kept only for work placed here, and only if they are exactly
                // the bucket keys the tenant signed checks of: a peer can push nothing it
                // did not get from the tenant.
                let Ok(owner) = PublicKeyBytes::from_hex(&owner) else {
                    return ComputeResponse::Ok;
                };
                let Some(keys) = GrantKeys::decode(&keys) else {
                    tracing::info!(%from, %purpose, "refused a malformed key grant");
                    return ComputeResponse::Ok;
                };
                if !self.may_receive_grant(self.node_id, &owner, &purpose) {
                    tracing::info!(%from, %purpose, "refused keys for work not placed here");
                    return ComputeResponse::Ok;
                }
                match self.accept_grant(&owner, &purpose, &keys) {
                    Ok(()) => self.note_key_source(from, &owner, &purpose),
                    Err(e) => {
                        tracing::warn!(%from, %purpose, error = %e, "refused pushed keys");
                    }
                }
                ComputeResponse::Ok
            }
            // Logs go only to their tenant: a bare request from a peer gets nothing.
            ComputeRequest::Logs { .. } => ComputeResponse::Logs(Vec::new()),
            // A v1 signature names no node, so any node that saw it could replay it here.
            ComputeRequest::SignedLogs { .. } => ComputeResponse::Logs(Vec::new()),
            ComputeRequest::SignedLogsV2 {
                owner,
                deployment,
                auth,
            } => match PublicKeyBytes::from_hex(&owner) {
                // The tenant signed its request for its edge, which relays it: the request
                // must name the node it came from, not this one.
                Ok(tenant) if auth.verifies(&tenant, &deployment, &from) => {
                    ComputeResponse::Logs(self.telemetry.logs.get(&owner, &deployment))
                }
                _ => {
                    tracing::debug!(%from, %deployment, "refused logs to a request the tenant did not sign");
                    ComputeResponse::Logs(Vec::new())
                }
            },
        }
    }
}
