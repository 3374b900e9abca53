//! Operator routes that change this node itself: drain and leave. Each must be signed (as
//! tenant requests are) by the key of the operator whose certificate this node carries, so
//! only the node's operator can retire it; reading a drain's progress needs no signature.

use axum::extract::{Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_node::drain::{DrainState, DrainStatus};

use crate::error::ApiError;
use crate::storage_routes::{AppState, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/node/drain", get(drain_status).post(start_drain))
        .route("/v1/node/leave", post(leave))
}

/// A drain's progress.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DrainView {
    /// `idle` (no drain asked for), `draining` or `drained`.
    pub state: String,
    pub started_at_ms: Option<u64>,
    /// Whether the node stops once drained.
    pub stop_when_drained: bool,
    pub rounds: u64,
    /// Copies (chunks and metadata entries) the drain made so far.
    pub copies: u64,
    pub chunks_held: u64,
    /// From the last round: chunks held here that too few other nodes hold.
    pub under_replicated_chunks: u64,
    /// From the last round: objects whose metadata too few other nodes hold.
    pub under_replicated_objects: u64,
    /// Deployment replicas, workers and jobs still running here.
    pub workloads_here: usize,
    /// Storage nodes other than this one.
    pub storage_nodes: usize,
    /// Why the drain cannot finish as things stand.
    pub blocked: Option<String>,
    pub last_error: Option<String>,
}

fn view(s: DrainStatus) -> DrainView {
    DrainView {
        state: match s.state {
            DrainState::Idle => "idle",
            DrainState::Draining => "draining",
            DrainState::Drained => "drained",
        }
        .into(),
        started_at_ms: s.started_at_ms,
        stop_when_drained: s.stop_when_drained,
        rounds: s.rounds,
        copies: s.copies,
        chunks_held: s.chunks_held,
        under_replicated_chunks: s.under_replicated_chunks,
        under_replicated_objects: s.under_replicated_objects,
        workloads_here: s.workloads_here,
        storage_nodes: s.storage_nodes,
        blocked: s.blocked,
        last_error: s.last_error,
    }
}

/// Checks that the request is signed by this node's operator and carries no body.
async fn operator_request(state: &AppState, req: Request) -> Result<(), ApiError> {
    let signer = tenant_of(state, req.method(), req.uri(), req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1024)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    crate::auth::check_body_hash(&parts.headers, &bytes)?;
    match state.node.operator() {
        Some(operator) if operator == signer => Ok(()),
        Some(operator) => Err(ApiError::Forbidden(format!(
            "only this node's operator ({}) may drain it or make it leave; the request is \
             signed by {}",
            operator.to_hex(),
            signer.to_hex()
        ))),
        None => Err(ApiError::Forbidden(
            "this node has no operator certificate".into(),
        )),
    }
}

#[derive(Deserialize)]
pub(crate) struct DrainQuery {
    #[serde(default)]
    no_stop: bool,
}

/// Starts draining this node (idempotent). With `?no_stop=true` the node keeps running,
/// empty and `left`, once drained.
#[utoipa::path(post, path = "/v1/node/drain",
    params(("no_stop" = Option<bool>, Query, description = "keep running once drained")),
    responses((status = 202, body = DrainView), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn start_drain(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<DrainQuery>,
    req: Request,
) -> Result<(axum::http::StatusCode, Json<DrainView>), ApiError> {
    operator_request(&state, req).await?;
    let status = state
        .node
        .drain(!query.no_stop)
        .await
        .map_err(|e| match e {
            xnode_node::NodeError::State(message) => ApiError::Conflict(message),
            other => other.into(),
        })?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(view(status))))
}

/// The progress of this node's drain.
#[utoipa::path(get, path = "/v1/node/drain", responses((status = 200, body = DrainView)))]
pub(crate) async fn drain_status(State(state): State<AppState>) -> Json<DrainView> {
    Json(view(state.node.drain_status()))
}

/// Makes this node leave the network for good at once, without draining first, and stop.
#[utoipa::path(post, path = "/v1/node/leave",
    responses((status = 202), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    req: Request,
) -> Result<axum::http::StatusCode, ApiError> {
    operator_request(&state, req).await?;
    state.node.leave().await?;
    Ok(axum::http::StatusCode::ACCEPTED)
}
