//! Tenant KMS keys (`/v1/tenant/kms-keys`): the named keys SSE-KMS objects are encrypted
//! under (see `xnode_registry::kms`). The tenant signs each key's registry entry itself,
//! so a node only checks and spreads it; creating, disabling and enabling a key are all
//! one signed record.

use axum::extract::{Request, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_registry::Entry;
use xnode_registry::claims::check_claim_clock;
use xnode_registry::kms::{KmsKeyRecord, kms_key_key, parse_kms_key};
use xnode_types::{Hlc, SignatureBytes};

use crate::error::ApiError;
use crate::storage_routes::{AppState, json_body, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenant/kms-keys", post(put_key).get(list_keys))
}

/// A tenant-signed KMS key: the registry entry `tenant/<tenant>/kms-key/<id>` whose value
/// is exactly `record` (see docs/http-api.md).
#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct SignedKmsKey {
    /// The exact JSON text of the key record:
    /// `{"v":1,"kind":"kms-key","id":...,"alias":...,"state":"enabled"|"disabled","created_ms":...}`.
    pub record: String,
    pub hlc_wall_ms: u64,
    #[serde(default)]
    pub hlc_logical: u32,
    /// Hex ed25519 signature of the registry entry by the tenant.
    pub signature: String,
}

/// A KMS key as this node holds it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct KmsKeyView {
    /// The key id, which `x-amz-server-side-encryption-aws-kms-key-id` names.
    pub id: String,
    pub alias: Option<String>,
    /// `enabled` or `disabled`.
    pub state: String,
    pub created_ms: u64,
    /// On `POST`: false when this node already held the same or a newer record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
}

fn view(record: KmsKeyRecord, applied: Option<bool>) -> KmsKeyView {
    KmsKeyView {
        id: record.id,
        alias: record.alias,
        state: record.state.as_str().to_owned(),
        created_ms: record.created_ms,
        applied,
    }
}

#[utoipa::path(post, path = "/v1/tenant/kms-keys", request_body = SignedKmsKey,
    responses((status = 200, body = KmsKeyView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn put_key(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<KmsKeyView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let signed: SignedKmsKey = json_body(req).await?;
    let signature = xnode_types::request_auth::parse_signature(&signed.signature)
        .ok_or_else(|| ApiError::BadRequest("signature must be 64 bytes of hex".into()))?;
    // The id is read from the record, then the entry is rebuilt under the signer's key for
    // that id: a record naming another tenant's key cannot be filed under it.
    let id = serde_json::from_str::<KmsKeyRecord>(&signed.record)
        .map_err(|e| ApiError::BadRequest(format!("the KMS key record does not decode: {e}")))?
        .id;
    let entry = Entry {
        key: kms_key_key(&tenant, &id),
        value: Some(signed.record.into_bytes()),
        hlc: Hlc::new(signed.hlc_wall_ms, signed.hlc_logical),
        owner: tenant,
        signature: SignatureBytes(signature.0),
    };
    let record = parse_kms_key(&entry)
        .map_err(|e| ApiError::BadRequest(format!("the KMS key record: {e}")))?;
    check_claim_clock(&entry, xnode_types::unix_ms())
        .map_err(|e| ApiError::BadRequest(format!("the signed KMS key: {e}")))?;
    let applied = crate::revocation_routes::publish(&state, entry).await?;
    tracing::info!(tenant = %tenant.to_hex(), id = %record.id, state = record.state.as_str(), applied, "kms key");
    Ok(Json(view(record, Some(applied))))
}

#[utoipa::path(get, path = "/v1/tenant/kms-keys",
    responses((status = 200, body = Vec<KmsKeyView>), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Vec<KmsKeyView>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let keys = state.node.registry().kms_keys(&tenant);
    Ok(Json(keys.into_iter().map(|k| view(k, None)).collect()))
}
