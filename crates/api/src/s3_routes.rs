//! S3 access-key routes: a tenant registers, lists and removes the S3 keys of **this
//! node** (`/v1/s3/keys`). Keys never leave the node they were created on.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_s3::{KeysError, S3Keys};

use xnode_registry::revocation::RevokedScope;

use crate::auth::data_key;
use crate::error::ApiError;
use crate::revocation_routes::{SignedRevocation, publish, revocation_entry};
use crate::storage_routes::{AppState, json_body, signed_request_of, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/s3/keys", get(list_keys).post(create_key))
        .route("/v1/s3/keys/{id}", delete(delete_key))
}

fn keys(state: &AppState) -> S3Keys {
    S3Keys::new(state.node.db().clone())
}

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        match e {
            KeysError::NotFound(_) => ApiError::NotFound(e.to_string()),
            KeysError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A request to create an S3 access key on this node.
#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct CreateS3Key {
    /// The tenant key's 32-byte seed (hex), which lets the gateway sign bucket claims and
    /// deletions for the tenant (S3 CreateBucket and DeleteBucket). Absent: the key can use
    /// existing buckets only.
    #[serde(default)]
    pub tenant_seed: Option<String>,
    /// The access key id to register (so one key works on several nodes); generated if
    /// absent, together with the secret.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

/// An S3 access key as listings show it (never the secret).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct S3KeyView {
    pub access_key_id: String,
    /// The tenant's public key (hex).
    pub tenant: String,
    pub created_ms: u64,
    /// Whether the key may create and delete buckets.
    pub bucket_admin: bool,
    /// The id of the tenant's signed registration of this key on this node (32 hex
    /// digits), which a revocation of this one registration names; absent for keys
    /// registered before registrations were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// The secret access key: only in the answer to the creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

fn view(key: &xnode_s3::AccessKey, with_secret: bool) -> S3KeyView {
    S3KeyView {
        access_key_id: key.id.clone(),
        tenant: key.tenant.to_hex(),
        created_ms: key.created_ms,
        bucket_admin: key.bucket_admin(),
        registration_id: key.registration.as_ref().map(|r| r.registration_id()),
        secret_access_key: with_secret.then(|| key.secret.clone()),
    }
}

#[utoipa::path(post, path = "/v1/s3/keys", request_body = CreateS3Key,
    responses((status = 201, body = S3KeyView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<S3KeyView>), ApiError> {
    let (tenant, registration) = signed_request_of(&state, req.method(), req.uri(), req.headers())?;
    let data_key = data_key(req.headers())?;
    let body: CreateS3Key = json_body(req).await?;
    let seed = match body.tenant_seed {
        Some(hex_seed) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(hex_seed.trim(), &mut seed)
                .map_err(|_| ApiError::BadRequest("tenant_seed must be 64 hex digits".into()))?;
            Some(seed)
        }
        None => None,
    };
    let pair = match (body.access_key_id, body.secret_access_key) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "give both access_key_id and secret_access_key, or neither".into(),
            ));
        }
    };
    let key = keys(&state).create_registered(tenant, data_key, seed, pair, Some(registration))?;
    tracing::info!(access_key_id = %key.id, tenant = %tenant.to_hex(), bucket_admin = key.bucket_admin(), "S3 access key created");
    Ok((StatusCode::CREATED, Json(view(&key, true))))
}

#[utoipa::path(get, path = "/v1/s3/keys", responses((status = 200, body = [S3KeyView]), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Vec<S3KeyView>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    Ok(Json(
        keys(&state)
            .list(&tenant)?
            .iter()
            .map(|k| view(k, false))
            .collect(),
    ))
}

/// Deletes a key. With a body, the tenant's signed revocation of the key's registration on
/// this node (scope `s3-<registration id>`, or `all`) is published first, so the replicas
/// stop taking entries this node seals with it (`xnode key s3 rm` sends one); without a
/// body the key only stops being served here.
#[utoipa::path(delete, path = "/v1/s3/keys/{id}", params(("id" = String, Path)), request_body(content = Option<SignedRevocation>),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    crate::auth::check_body_hash(&parts.headers, &bytes)?;
    let key = keys(&state)
        .get(&id)?
        .filter(|k| k.tenant == tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no S3 access key {id} of this tenant")))?;
    let registration_id = key.registration.as_ref().map(|r| r.registration_id());
    if !bytes.is_empty() {
        let signed: SignedRevocation = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
        let (entry, node, scope, _) = revocation_entry(tenant, signed)?;
        let names_this_key = match &scope {
            RevokedScope::All => true,
            RevokedScope::S3Registration(rid) => registration_id.as_deref() == Some(rid.as_str()),
        };
        if node != state.node.id() || !names_this_key {
            return Err(ApiError::BadRequest(
                "the revocation must name this node and this key's registration id".into(),
            ));
        }
        publish(&state, entry).await?;
    }
    keys(&state).delete(&tenant, &id)?;
    if let Some(rid) = registration_id {
        state.node.storage().forget_s3_key(&tenant, &rid);
    }
    Ok(StatusCode::NO_CONTENT)
}
