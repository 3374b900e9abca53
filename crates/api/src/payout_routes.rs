//! Payout bindings (`POST /v1/operator/payout-binding`): an operator publishes the EVM
//! address it is paid to, with the address's consent (see `xnode_registry::payout`). The
//! operator key signs the registry entry itself and the address signs the binding inside,
//! so any node may take it, and it needs no request signature of its own.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_registry::Entry;
use xnode_registry::payout::{MAX_PAYOUT_BINDING_BYTES, PayoutBinding, binding_key};
use xnode_types::{Hlc, SignatureBytes};

use crate::error::ApiError;
use crate::storage_routes::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/operator/payout-binding", post(bind))
}

/// An operator-signed payout binding: the registry entry `payout/<operator>/<serial>`
/// whose value is `binding` (see docs/http-api.md).
#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct SignedPayoutBinding {
    /// Hex of the encoded binding (`xnode_registry::payout::PayoutBinding`, wire kind 42).
    pub binding: String,
    pub hlc_wall_ms: u64,
    #[serde(default)]
    pub hlc_logical: u32,
    /// Hex ed25519 signature of the registry entry by the operator key.
    pub signature: String,
}

/// A binding as this node now holds it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PayoutBindingView {
    /// The operator's public key, in hex.
    pub operator: String,
    /// The bound address.
    pub address: String,
    pub serial: u64,
    /// False when this node already held the same binding.
    pub applied: bool,
}

#[utoipa::path(post, path = "/v1/operator/payout-binding", request_body = SignedPayoutBinding,
    responses((status = 200, body = PayoutBindingView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn bind(
    State(state): State<AppState>,
    Json(signed): Json<SignedPayoutBinding>,
) -> Result<Json<PayoutBindingView>, ApiError> {
    let bytes = hex::decode(&signed.binding)
        .ok()
        .filter(|b| b.len() <= MAX_PAYOUT_BINDING_BYTES)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "binding must be hex of at most {MAX_PAYOUT_BINDING_BYTES} bytes"
            ))
        })?;
    // Decoded here only to name the entry's key; the registry checks it in full, as it
    // does a binding from a peer.
    let binding = PayoutBinding::decode(&bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let signature = xnode_types::request_auth::parse_signature(&signed.signature)
        .ok_or_else(|| ApiError::BadRequest("signature must be 64 bytes of hex".into()))?;
    let entry = Entry {
        key: binding_key(&binding.operator, binding.serial),
        value: Some(bytes),
        hlc: Hlc::new(signed.hlc_wall_ms, signed.hlc_logical),
        owner: binding.operator,
        signature: SignatureBytes(signature.0),
    };
    let applied = crate::revocation_routes::publish(&state, entry).await?;
    tracing::info!(operator = %binding.operator.to_hex(), address = %binding.address(), serial = binding.serial, applied, "payout binding");
    Ok(Json(PayoutBindingView {
        operator: binding.operator.to_hex(),
        address: binding.address().to_checksum(None),
        serial: binding.serial,
        applied,
    }))
}
