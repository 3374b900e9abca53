//! API errors: every failure maps to an HTTP status and a stable, documented error code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the node's state (draining a node that has left).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    StaleRequest(String),
    #[error("{0}")]
    ReplayedRequest(String),
    /// A request without the headers of request signing v2.
    #[error("{0}")]
    SigningV2Required(String),
    /// A signed request that names another node: a replay, or a misdirected client.
    #[error("{0}")]
    WrongNode(String),
    /// A body whose hash differs from the one the request signed.
    #[error("{0}")]
    BodyHashMismatch(String),
    /// A `Host` header that is not one of this node's names (DNS rebinding).
    #[error("{0}")]
    MisdirectedHost(String),
    /// A tenant over its request allowance on this node (`http.requests_per_second_per_tenant`).
    #[error("too many requests from this tenant; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: std::time::Duration },
    /// An account with no row in an epoch's payout table.
    #[error("{0}")]
    NoClaim(String),
    /// An epoch whose root this node has not computed yet.
    #[error("{0}")]
    EpochNotComputed(String),
    /// A storage failure with its own status and code.
    #[error("{message}")]
    Compute {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("{message}")]
    Storage {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unauthenticated(_)
            | ApiError::BadSignature(_)
            | ApiError::StaleRequest(_)
            | ApiError::ReplayedRequest(_)
            | ApiError::SigningV2Required(_) => StatusCode::UNAUTHORIZED,
            ApiError::WrongNode(_) => StatusCode::FORBIDDEN,
            ApiError::BodyHashMismatch(_) => StatusCode::BAD_REQUEST,
            ApiError::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NoClaim(_) => StatusCode::NOT_FOUND,
            ApiError::EpochNotComputed(_) => StatusCode::CONFLICT,
            ApiError::Storage { status, .. } => *status,
            ApiError::Compute { status, .. } => *status,
        }
    }

    /// The stable machine-readable code clients can match on.
    pub fn code(&self) -> &str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::StaleRequest(_) => "stale_request",
            ApiError::ReplayedRequest(_) => "replayed_request",
            ApiError::SigningV2Required(_) => "signing_v2_required",
            ApiError::WrongNode(_) => "wrong_node",
            ApiError::BodyHashMismatch(_) => "body_hash_mismatch",
            ApiError::MisdirectedHost(_) => "misdirected_host",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NoClaim(_) => "no_claim",
            ApiError::EpochNotComputed(_) => "epoch_not_computed",
            ApiError::Storage { code, .. } => code,
            ApiError::Compute { code, .. } => code,
        }
    }
}

/// The JSON body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, for example `not_found`, `bad_request`, `bad_signature`,
    /// `no_such_bucket`, `quorum_unavailable` (see docs/http-api.md for the full table).
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
            },
        };
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<xnode_node::NodeError> for ApiError {
    fn from(e: xnode_node::NodeError) -> Self {
        match e {
            xnode_node::NodeError::FaultInjectionDisabled => ApiError::Forbidden(e.to_string()),
            xnode_node::NodeError::Mesh(xnode_mesh::MeshError::Closed) => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<xnode_storage::StorageError> for ApiError {
    fn from(e: xnode_storage::StorageError) -> Self {
        use xnode_storage::StorageError as E;
        let (status, code) = match &e {
            E::NoSuchBucket(_) => (StatusCode::NOT_FOUND, "no_such_bucket"),
            E::BucketTaken(_) => (StatusCode::CONFLICT, "bucket_taken"),
            E::BucketNotEmpty(_) => (StatusCode::CONFLICT, "bucket_not_empty"),
            E::AccessDenied(_) => (StatusCode::FORBIDDEN, "access_denied"),
            E::EdgeRevoked(_) => (StatusCode::FORBIDDEN, "edge_revoked"),
            E::NoSuchKey(_) => (StatusCode::NOT_FOUND, "no_such_key"),
            E::InvalidRange(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "invalid_range"),
            E::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            E::Interrupted(_) => (StatusCode::BAD_REQUEST, "incomplete_body"),
            // 403, not 507: clients retry 5xx answers, and a retry cannot fit a quota.
            E::QuotaExceeded(_) | E::TooManyBuckets { .. } => {
                (StatusCode::FORBIDDEN, "quota_exceeded")
            }
            E::Quorum(_) => (StatusCode::SERVICE_UNAVAILABLE, "quorum_unavailable"),
            E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            E::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            E::ConditionalConflict(_) => (StatusCode::CONFLICT, "conditional_conflict"),
            E::Integrity(_) => (StatusCode::BAD_GATEWAY, "integrity_error"),
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::Storage {
            status,
            code,
            message: e.to_string(),
        }
    }
}
