//! Edge revocations (`POST /v1/tenant/revocations`): a tenant withdraws the authority it
//! gave a node to write its objects (see `xnode_registry::revocation`). The tenant signs
//! the registry entry itself, so any node may take it: typically not the revoked one.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_registry::revocation::{RevokedScope, record_target, revocation_key};
use xnode_registry::{Entry, RegistryError};
use xnode_types::{Hlc, PublicKeyBytes, SignatureBytes};

use crate::error::ApiError;
use crate::storage_routes::{AppState, json_body, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenant/revocations", post(revoke))
}

/// A tenant-signed revocation: the registry entry
/// `tenant/<tenant>/revoke/<node>/<scope>` whose value is `record` (see docs/http-api.md).
#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct SignedRevocation {
    /// The exact JSON text of the revocation record:
    /// `{"v":1,"kind":"edge-revocation","node":...,"scope":"all"|"s3-<id>","after_ms":...}`.
    pub record: String,
    pub hlc_wall_ms: u64,
    #[serde(default)]
    pub hlc_logical: u32,
    /// Hex ed25519 signature of the registry entry by the tenant.
    pub signature: String,
}

/// A revocation as this node now holds it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    /// The revoked node's id.
    pub node: String,
    /// `all`, or `s3-<registration id>`.
    pub scope: String,
    /// Entries the node dates after this (Unix ms) are refused.
    pub after_ms: u64,
    /// False when this node already held the same or a newer record for that node and
    /// scope.
    pub applied: bool,
}

/// The registry entry of a signed revocation, and what it names.
pub(crate) fn revocation_entry(
    tenant: PublicKeyBytes,
    signed: SignedRevocation,
) -> Result<(Entry, xnode_types::NodeId, RevokedScope, u64), ApiError> {
    let (node, scope, after_ms) = record_target(signed.record.as_bytes()).ok_or_else(|| {
        ApiError::BadRequest(
            "the revocation record does not decode (see docs/http-api.md, edge revocations)".into(),
        )
    })?;
    let signature = xnode_types::request_auth::parse_signature(&signed.signature)
        .ok_or_else(|| ApiError::BadRequest("signature must be 64 bytes of hex".into()))?;
    let entry = Entry {
        key: revocation_key(&tenant, &node, &scope),
        value: Some(signed.record.into_bytes()),
        hlc: Hlc::new(signed.hlc_wall_ms, signed.hlc_logical),
        owner: tenant,
        signature: SignatureBytes(signature.0),
    };
    Ok((entry, node, scope, after_ms))
}

/// Merges a signed revocation into this node's registry and pushes it to peers.
pub(crate) async fn publish(state: &AppState, entry: Entry) -> Result<bool, ApiError> {
    let applied = state
        .node
        .registry()
        .apply_tenant_entry(entry.clone())
        .map_err(|e| match e {
            RegistryError::BadSignature { .. } => ApiError::BadSignature(e.to_string()),
            RegistryError::TooManyRevocations { .. } => ApiError::Storage {
                status: StatusCode::CONFLICT,
                code: "too_many_revocations",
                message: e.to_string(),
            },
            RegistryError::OwnerQuota { .. } => ApiError::Storage {
                status: StatusCode::FORBIDDEN,
                code: "quota_exceeded",
                message: e.to_string(),
            },
            RegistryError::BadRevocation { .. }
            | RegistryError::BadKmsKey { .. }
            | RegistryError::BadPayoutBinding { .. }
            | RegistryError::Forbidden { .. }
            | RegistryError::BadKey { .. }
            | RegistryError::TooLarge { .. } => ApiError::BadRequest(e.to_string()),
            RegistryError::Wire(_) | RegistryError::Db(_) | RegistryError::BatchWrite { .. } => {
                ApiError::Internal(e.to_string())
            }
        })?;
    let applied = applied == xnode_registry::Applied::Updated;
    if applied {
        state.node.gossip_entry(&entry).await;
    }
    Ok(applied)
}

#[utoipa::path(post, path = "/v1/tenant/revocations", request_body = SignedRevocation,
    responses((status = 200, body = RevocationView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<RevocationView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let signed: SignedRevocation = json_body(req).await?;
    let (entry, node, scope, after_ms) = revocation_entry(tenant, signed)?;
    let applied = publish(&state, entry).await?;
    tracing::info!(tenant = %tenant.to_hex(), %node, scope = %scope.segment(), after_ms, applied, "edge revocation");
    Ok(Json(RevocationView {
        node: node.to_string(),
        scope: scope.segment(),
        after_ms,
        applied,
    }))
}
