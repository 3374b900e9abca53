//! Ledger routes: the countersigned usage receipts this node holds
//! (`GET /v1/ledger/receipts`) and a tenant's countersigning grant to this node
//! (`PUT /v1/ledger/grant`), which makes it the tenant's edge for receipts.

use axum::extract::{Query, Request, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use xnode_ledger::{CountersignGrant, Epoch, Receipt};
use xnode_metering::{GrantAcceptError, MeteringError};

use crate::error::ApiError;
use crate::storage_routes::{AppState, json_body, tenant_of};

/// The most receipts one listing returns.
const MAX_RECEIPTS: usize = 10_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/receipts", get(list_receipts))
        .route("/v1/ledger/grant", put(put_grant))
}

impl From<MeteringError> for ApiError {
    fn from(e: MeteringError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<GrantAcceptError> for ApiError {
    fn from(e: GrantAcceptError) -> Self {
        match e {
            GrantAcceptError::Grant(e) => ApiError::BadRequest(e.to_string()),
            GrantAcceptError::Metering(e) => e.into(),
        }
    }
}

/// Which epoch to list.
#[derive(Deserialize, IntoParams)]
pub struct ReceiptsQuery {
    /// The epoch number; the current epoch when absent.
    pub epoch: Option<u64>,
}

/// One countersigned receipt.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// The paying tenant (hex public key).
    pub tenant: String,
    /// The node that served.
    pub provider: String,
    /// `StorageByteHours`, `EgressBytes`, `FunctionFuel`, `FunctionRequests`, `JobFuel`
    /// or `WorkerFuel`.
    pub resource: String,
    pub epoch: u64,
    /// Units used in the epoch so far (cumulative).
    pub cumulative: u64,
    pub seq: u64,
    /// The node that countersigned under the tenant's grant, or the tenant's key (hex)
    /// when the tenant countersigned itself.
    pub countersigned_by: String,
    /// The whole signed receipt, as the ledger takes it.
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
}

/// The receipts of one epoch held by this node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReceiptsView {
    pub epoch: u64,
    /// The epoch length in seconds.
    pub epoch_seconds: u64,
    pub receipts: Vec<ReceiptView>,
}

fn view(receipt: Receipt) -> ReceiptView {
    let body = &receipt.body;
    let countersigned_by = match &receipt.grant {
        Some(grant) => grant.body.delegate.to_string(),
        None => body.tenant.to_hex(),
    };
    ReceiptView {
        tenant: body.tenant.to_hex(),
        provider: body.provider.to_string(),
        resource: serde_json::to_value(body.resource)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        epoch: body.epoch.0,
        cumulative: body.cumulative,
        seq: body.seq,
        countersigned_by,
        receipt: serde_json::to_value(&receipt).unwrap_or_default(),
    }
}

#[utoipa::path(get, path = "/v1/ledger/receipts", params(ReceiptsQuery),
    responses((status = 200, body = ReceiptsView), (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn list_receipts(
    State(state): State<AppState>,
    Query(query): Query<ReceiptsQuery>,
) -> Result<Json<ReceiptsView>, ApiError> {
    let metering = state.node.metering();
    let epoch = query.epoch.map_or_else(|| metering.current_epoch(), Epoch);
    let receipts = metering.receipts(epoch, MAX_RECEIPTS)?;
    Ok(Json(ReceiptsView {
        epoch: epoch.0,
        epoch_seconds: metering.config().epoch.as_secs(),
        receipts: receipts.into_iter().map(view).collect(),
    }))
}

/// A tenant's grant letting this node countersign its receipts (see
/// `xnode_ledger::CountersignGrant`); the request must be signed by the same tenant.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    /// The grant, as the ledger verifies it.
    #[schema(value_type = Object)]
    pub grant: serde_json::Value,
}

#[utoipa::path(put, path = "/v1/ledger/grant", request_body = GrantView,
    responses((status = 200, body = GrantView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn put_grant(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<GrantView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let body: GrantView = json_body(req).await?;
    let grant: CountersignGrant = serde_json::from_value(body.grant.clone())
        .map_err(|e| ApiError::BadRequest(format!("malformed grant: {e}")))?;
    if grant.body.tenant != tenant {
        return Err(ApiError::Forbidden(
            "a grant may only be given by the tenant that signs the request".into(),
        ));
    }
    state.node.metering().accept_grant(&grant)?;
    tracing::info!(tenant = %tenant.to_hex(), from = grant.body.from_epoch.0, until = grant.body.until_epoch.0, "countersigning grant accepted");
    Ok(Json(body))
}
