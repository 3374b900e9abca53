//! Storage routes: buckets and objects, signed by tenants, with streaming bodies.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_node::Node;
use xnode_registry::Entry;
use xnode_storage::buckets::{BucketRecord, bucket_key};
use xnode_store::ObjectMeta;
use xnode_types::{Hlc, PublicKeyBytes, SignatureBytes};

use crate::auth::{HashCheckedStream, ReplayGuard, check_body_hash, data_key};
use crate::error::ApiError;

/// Shared state of the API: the node, and the replay guard for signed requests.
#[derive(Clone)]
pub struct AppState {
    pub node: Node,
    pub guard: Arc<ReplayGuard>,
}

impl axum::extract::FromRef<AppState> for Node {
    fn from_ref(state: &AppState) -> Node {
        state.node.clone()
    }
}

/// Prefix of headers carrying user metadata.
const META_PREFIX: &str = "x-xnode-meta-";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/storage/health", get(health))
        .route("/v1/storage/reputation", get(reputation))
        .route("/v1/buckets", get(list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            get(get_bucket).put(create_bucket).delete(delete_bucket),
        )
        .route("/v1/buckets/{bucket}/objects", get(list_objects))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            get(get_object)
                .head(head_object)
                .put(put_object)
                .delete(delete_object),
        )
}

pub(crate) fn tenant_of(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<PublicKeyBytes, ApiError> {
    signed_request_of(state, method, uri, headers).map(|(tenant, _)| tenant)
}

/// [`tenant_of`], also returning the proof of the tenant's signed request.
pub(crate) fn signed_request_of(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(PublicKeyBytes, xnode_store::TenantRequestProof), ApiError> {
    let (tenant, proof) = state.guard.verify_with_proof(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        headers,
        &state.node.id().to_string(),
    )?;
    // Every signed request renews this node's authority to write the tenant's object
    // metadata (the entries it seals carry the request, see `xnode_store::seal`).
    state
        .node
        .storage()
        .authorise_request(tenant, proof.clone());
    Ok((tenant, proof))
}

/// Storage health as this node sees it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub chunks_stored: u64,
    pub bytes_stored: u64,
    pub under_replicated_chunks: u64,
    pub under_replicated_objects: u64,
    pub repairs_in_progress: u64,
    pub repairs_done: u64,
    /// Unreferenced chunks removed by garbage collection on this node.
    pub gc_removed_chunks: u64,
    /// Delete tombstones tombstone collection retired from this node's metadata table to
    /// its cold table (`storage.collect_tombstones`; always 0 where it is off).
    pub gc_removed_tombstones: u64,
    pub last_repair_scan_ms: Option<u64>,
    /// Anti-entropy rounds run, and checks that skipped one because nothing changed.
    pub anti_entropy_rounds: u64,
    pub anti_entropy_skipped: u64,
    pub storage_nodes: usize,
    pub replication_factor: usize,
    /// Storage audits this node issued that passed, and that failed.
    pub audits_passed: u64,
    pub audits_failed: u64,
    /// Audit challenges this node answered for peers.
    pub audits_answered: u64,
    /// Nodes whose audit reputation is below the threshold: placement leaves them out.
    pub low_reputation_nodes: Vec<String>,
}

#[utoipa::path(get, path = "/v1/storage/health", responses((status = 200, body = HealthView)))]
pub(crate) async fn health(State(node): State<Node>) -> Json<HealthView> {
    let h = node.storage().health();
    Json(HealthView {
        chunks_stored: h.chunks_stored,
        bytes_stored: h.bytes_stored,
        under_replicated_chunks: h.under_replicated_chunks,
        under_replicated_objects: h.under_replicated_objects,
        repairs_in_progress: h.repairs_in_progress,
        repairs_done: h.repairs_done,
        gc_removed_chunks: h.gc_removed_chunks,
        gc_removed_tombstones: h.gc_removed_tombstones,
        last_repair_scan_ms: h.last_repair_scan_ms,
        anti_entropy_rounds: h.anti_entropy_rounds,
        anti_entropy_skipped: h.anti_entropy_skipped,
        storage_nodes: h.storage_nodes,
        replication_factor: h.replication_factor,
        audits_passed: h.audits.passed,
        audits_failed: h.audits.failed,
        audits_answered: h.audits.answered,
        low_reputation_nodes: h
            .low_reputation_nodes
            .iter()
            .map(|n| n.to_string())
            .collect(),
    })
}

/// One storage node's audit reputation, as this node computes it from the signed audit
/// results of the last closed epochs, with the ledger's rules.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReputationView {
    pub node: String,
    /// The score, in parts per million (1000000 for a node that never failed).
    pub score_ppm: u64,
    /// Audits that counted over the window (after the ledger's caps and trimming).
    pub counted_passes: u64,
    pub counted_failures: u64,
    /// The most distinct auditors one epoch of the window had on this node.
    pub max_auditors: u32,
    /// Whether placement leaves the node out.
    pub excluded: bool,
}

#[utoipa::path(get, path = "/v1/storage/reputation", responses((status = 200, body = [ReputationView])))]
pub(crate) async fn reputation(State(node): State<Node>) -> Json<Vec<ReputationView>> {
    Json(
        node.storage()
            .reputation()
            .into_iter()
            .map(|r| ReputationView {
                node: r.node.to_string(),
                score_ppm: r.score_ppm,
                counted_passes: r.counted_passes,
                counted_failures: r.counted_failures,
                max_auditors: r.max_auditors,
                excluded: r.excluded,
            })
            .collect(),
    )
}

/// A bucket.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    pub name: String,
    /// The owning tenant's public key (hex).
    pub owner: String,
    pub created_ms: u64,
    /// Copies of every chunk and metadata entry.
    pub replication_factor: usize,
    /// The regions (node zones) the bucket's data is pinned to; absent when not pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

fn bucket_view(r: BucketRecord, default_rf: usize) -> BucketView {
    BucketView {
        name: r.name,
        owner: r.owner,
        created_ms: r.created_ms,
        replication_factor: r.replication_factor.map(usize::from).unwrap_or(default_rf),
        regions: r.regions,
    }
}

#[utoipa::path(get, path = "/v1/buckets", responses((status = 200, body = [BucketView]), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_buckets(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Vec<BucketView>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    Ok(Json(
        state
            .node
            .storage()
            .list_buckets(&tenant)
            .into_iter()
            .map(|r| bucket_view(r, state.node.storage().config().replication_factor))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/buckets/{bucket}", params(("bucket" = String, Path)), responses((status = 200, body = BucketView), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_bucket(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    req: Request,
) -> Result<Json<BucketView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    match xnode_storage::buckets::owner_of(state.node.registry(), &bucket) {
        Some((owner, record)) if owner == tenant => Ok(Json(bucket_view(
            record,
            state.node.storage().config().replication_factor,
        ))),
        Some(_) => Err(xnode_storage::StorageError::AccessDenied(format!(
            "bucket {bucket:?} belongs to another tenant"
        ))
        .into()),
        None => Err(xnode_storage::StorageError::NoSuchBucket(bucket).into()),
    }
}

/// A tenant-signed bucket claim or deletion (see docs/http-api.md: signed requests and bucket changes).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignedBucketChange {
    /// The exact JSON text of the bucket record (absent for a deletion).
    #[serde(default)]
    pub record: Option<String>,
    pub hlc_wall_ms: u64,
    #[serde(default)]
    pub hlc_logical: u32,
    /// Hex ed25519 signature of the registry entry by the tenant.
    pub signature: String,
}

pub(crate) fn signed_entry(
    tenant: PublicKeyBytes,
    bucket: &str,
    change: SignedBucketChange,
) -> Result<Entry, ApiError> {
    let signature = xnode_types::request_auth::parse_signature(&change.signature)
        .ok_or_else(|| ApiError::BadRequest("signature must be 64 bytes of hex".into()))?;
    Ok(Entry {
        key: bucket_key(&tenant, bucket),
        value: change.record.map(String::into_bytes),
        hlc: Hlc::new(change.hlc_wall_ms, change.hlc_logical),
        owner: tenant,
        signature: SignatureBytes(signature.0),
    })
}

/// Reads a (size-limited) JSON body and checks it against the hash its request signed
/// before anything acts on it.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    check_body_hash(&parts.headers, &bytes)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))
}

#[utoipa::path(put, path = "/v1/buckets/{bucket}", params(("bucket" = String, Path)), request_body = SignedBucketChange,
    responses((status = 200, body = BucketView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_bucket(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    req: Request,
) -> Result<Json<BucketView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let change: SignedBucketChange = json_body(req).await?;
    if change.record.is_none() {
        return Err(ApiError::BadRequest(
            "a bucket creation needs its record".into(),
        ));
    }
    let entry = signed_entry(tenant, &bucket, change)?;
    let applied = state
        .node
        .storage()
        .create_bucket(&tenant, &bucket, entry)?;
    state.node.gossip_entry(&applied).await;
    let record = xnode_storage::buckets::decode_claim(&applied)
        .ok_or_else(|| ApiError::Internal("applied bucket claim no longer decodes".into()))?;
    Ok(Json(bucket_view(
        record,
        state.node.storage().config().replication_factor,
    )))
}

#[utoipa::path(delete, path = "/v1/buckets/{bucket}", params(("bucket" = String, Path)), request_body = SignedBucketChange, responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_bucket(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let change: SignedBucketChange = json_body(req).await?;
    let mut entry = signed_entry(tenant, &bucket, change)?;
    entry.value = None;
    let applied = state
        .node
        .storage()
        .delete_bucket(&tenant, &bucket, entry)
        .await?;
    state.node.gossip_entry(&applied).await;
    Ok(StatusCode::NO_CONTENT)
}

/// An object as listings and HEAD describe it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ObjectView {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub created_ms: u64,
    pub user_meta: BTreeMap<String, String>,
}

fn object_view(meta: &ObjectMeta) -> Option<ObjectView> {
    let info = meta.info.as_ref()?;
    Some(ObjectView {
        key: meta.path.key.clone(),
        size: info.size,
        etag: info.etag.clone(),
        content_type: info.content_type.clone(),
        created_ms: info.created_ms,
        user_meta: info.user_meta.clone(),
    })
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    prefix: String,
    start_after: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects",
    params(("bucket" = String, Path), ("prefix" = Option<String>, Query), ("start_after" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = [ObjectView]), (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn list_objects(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    Query(q): Query<ListQuery>,
    req: Request,
) -> Result<Json<Vec<ObjectView>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let list = state
        .node
        .storage()
        .list_objects(&tenant, &bucket, &q.prefix, q.start_after.as_deref(), limit)
        .await?;
    Ok(Json(list.iter().filter_map(object_view).collect()))
}

#[utoipa::path(put, path = "/v1/buckets/{bucket}/objects/{key}",
    params(("bucket" = String, Path), ("key" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ObjectView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn put_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Result<Json<ObjectView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let data_key = data_key(req.headers())?;
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let expected_len = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest("bad Content-Length".into()))?,
        ),
        None => None,
    };
    let mut user_meta = BTreeMap::new();
    for (name, value) in headers {
        if let Some(meta_key) = name.as_str().strip_prefix(META_PREFIX) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("header {name} is not valid text")))?;
            user_meta.insert(meta_key.to_owned(), value.to_owned());
        }
    }
    // The body is hashed while it is stored. When its hash differs from the signed one the
    // stream ends with an error instead of ending cleanly, and storage commits an object
    // (writes its metadata) only after a clean end, so the mismatched write never becomes
    // visible and the object's earlier version stays current.
    let (parts, body) = req.into_parts();
    let (body, mismatched) = HashCheckedStream::new(body.into_data_stream(), &parts.headers)?;
    let stored = state
        .node
        .storage()
        .put_object(
            &tenant,
            &bucket,
            &key,
            &data_key,
            content_type,
            user_meta,
            expected_len,
            body,
        )
        .await;
    if mismatched.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::BodyHashMismatch(
            "the uploaded body's BLAKE3 hash differs from the signed x-xnode-content-blake3; \
             the object was not stored"
                .into(),
        ));
    }
    let meta = stored?;
    object_view(&meta)
        .map(Json)
        .ok_or_else(|| ApiError::Internal("stored object has no info".into()))
}

fn object_headers(view: &ObjectView, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", view.etag)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&view.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    for (k, v) in &view.user_meta {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(format!("{META_PREFIX}{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
}

#[utoipa::path(head, path = "/v1/buckets/{bucket}/objects/{key}", params(("bucket" = String, Path), ("key" = String, Path)), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn head_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let (meta, info) = state
        .node
        .storage()
        .head_object(&tenant, &bucket, &key)
        .await?;
    let view = object_view(&meta).ok_or_else(|| ApiError::Internal("object has no info".into()))?;
    let mut response = StatusCode::OK.into_response();
    object_headers(&view, response.headers_mut());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    Ok(response)
}

/// Parses a `Range` header: `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`.
/// Returns `(start, Some(end_inclusive))`, or a suffix as `(u64::MAX - n, None)` resolved by
/// the caller once the size is known.
fn parse_range(value: &str) -> Result<RangeSpec, ApiError> {
    let bad = || ApiError::Storage {
        status: StatusCode::RANGE_NOT_SATISFIABLE,
        code: "invalid_range",
        message: format!(
            "unsupported Range header {value:?} (use bytes=START-END, bytes=START- or bytes=-N; one range)"
        ),
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (false, true) => Ok(RangeSpec::From(a.parse().map_err(|_| bad())?)),
        (false, false) => {
            let start: u64 = a.parse().map_err(|_| bad())?;
            let end: u64 = b.parse().map_err(|_| bad())?;
            if end < start {
                return Err(bad());
            }
            Ok(RangeSpec::Between(start, end))
        }
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(RangeSpec::Suffix(n))
        }
        (true, true) => Err(bad()),
    }
}

enum RangeSpec {
    From(u64),
    Between(u64, u64),
    Suffix(u64),
}

#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{key}", params(("bucket" = String, Path), ("key" = String, Path), ("range" = Option<String>, Header, description = "bytes=START-END, bytes=START- or bytes=-N")), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, body = Vec<u8>), (status = 404, body = crate::error::ErrorBody), (status = 416, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn get_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let data_key = data_key(req.headers())?;
    let range = match req.headers().get(header::RANGE) {
        Some(v) => {
            Some(parse_range(v.to_str().map_err(|_| {
                ApiError::BadRequest("Range is not valid text".into())
            })?)?)
        }
        None => None,
    };
    let storage = state.node.storage().clone();
    let range = match range {
        None => None,
        Some(RangeSpec::From(s)) => Some((s, None)),
        Some(RangeSpec::Between(s, e)) => Some((s, Some(e))),
        Some(RangeSpec::Suffix(n)) => {
            let (_, info) = storage.head_object(&tenant, &bucket, &key).await?;
            if info.size == 0 {
                return Err(xnode_storage::StorageError::InvalidRange(
                    "the object is empty".into(),
                )
                .into());
            }
            Some((info.size.saturating_sub(n), None))
        }
    };
    let read = storage
        .get_object(&tenant, &bucket, &key, &data_key, range)
        .await?;
    let view =
        object_view(&read.meta).ok_or_else(|| ApiError::Internal("object has no info".into()))?;
    let (start, end) = read.range;
    let body = Body::from_stream(read.body.map(|r| r.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    object_headers(&view, response.headers_mut());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {start}-{}/{}",
            end.saturating_sub(1),
            view.size
        )) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[utoipa::path(delete, path = "/v1/buckets/{bucket}/objects/{key}", params(("bucket" = String, Path), ("key" = String, Path)), responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    state
        .node
        .storage()
        .delete_object(&tenant, &bucket, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_or_fail_clearly() {
        assert!(matches!(
            parse_range("bytes=0-9"),
            Ok(RangeSpec::Between(0, 9))
        ));
        assert!(matches!(parse_range("bytes=5-"), Ok(RangeSpec::From(5))));
        assert!(matches!(parse_range("bytes=-3"), Ok(RangeSpec::Suffix(3))));
        for bad in [
            "bytes=9-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=-0",
            "0-1",
        ] {
            let err = parse_range(bad).err().unwrap();
            assert_eq!(err.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        }
    }
}
