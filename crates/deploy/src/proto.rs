//! Compute RPCs between nodes: forwarded function calls, scoped key grants, logs.

use serde::{Deserialize, Serialize};

/// Largest compute message: a forwarded request or response body plus headers.
pub const MAX_COMPUTE_MESSAGE: usize = 20 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub enum ComputeRequest {
    /// Run a request through a local replica of `deployment`.
    Invoke {
        deployment: String,
        owner: String,
        method: String,
        path_and_query: String,
        headers: Vec<(String, Vec<u8>)>,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        /// W3C trace id (32 hex) and the caller's span id (16 hex).
        trace_id: String,
        parent_span: String,
    },
    /// Ask for the bucket keys `owner` granted for `purpose` (a deployment name or
    /// `job:<id>`); answered only to a node the purpose is placed on, with a
    /// `grants::GrantKeys` the asker checks against the tenant-signed scope.
    Grant { owner: String, purpose: String },
    /// The bucket keys of `purpose` (a `grants::GrantKeys` in JSON), pushed by the tenant's
    /// edge that accepted a deployment or job; kept only if they match the signed scope.
    PushGrant {
        owner: String,
        purpose: String,
        #[serde(with = "serde_bytes")]
        keys: Vec<u8>,
    },
    /// Recent log lines of a deployment on this node, asked without the tenant's
    /// signature. Kept so that older nodes' requests decode; always answered with no
    /// lines (see [`ComputeRequest::SignedLogs`]).
    Logs { owner: String, deployment: String },
    /// Recent log lines of `owner`'s deployment on this node, with the tenant's signed
    /// request for them, which its edge relays; answered only when it verifies.
    SignedLogs {
        owner: String,
        deployment: String,
        auth: LogsAuth,
    },
}

/// A tenant's signature over its `GET /v1/deployments/<deployment>/logs` request (see
/// `xnode_types::request_auth`), relayed by the edge it sent the request to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsAuth {
    /// The request's query string, as signed.
    pub query: String,
    pub timestamp_ms: u64,
    pub nonce: String,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl LogsAuth {
    /// The path a tenant's request for the logs of `deployment` has.
    pub fn path(deployment: &str) -> String {
        format!("/v1/deployments/{deployment}/logs")
    }

    /// Signs a request for the logs of `deployment` as `tenant` would (for tests and
    /// clients that call a node's compute directly).
    pub fn sign(tenant: &xnode_types::SecretKey, deployment: &str) -> LogsAuth {
        let timestamp_ms = xnode_types::unix_ms();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let signature = tenant.sign(&xnode_types::request_auth::canonical_request(
            "GET",
            &Self::path(deployment),
            "",
            timestamp_ms,
            &nonce,
            &tenant.public(),
        ));
        LogsAuth {
            query: String::new(),
            timestamp_ms,
            nonce,
            signature: signature.0.to_vec(),
        }
    }

    /// Whether `owner` signed this request for the logs of `deployment`, within the
    /// clock window of signed requests. A node that received it could replay it to others
    /// within that window, but only for these same logs.
    pub fn verifies(&self, owner: &xnode_types::PublicKeyBytes, deployment: &str) -> bool {
        use xnode_types::request_auth::{MAX_CLOCK_SKEW_MS, canonical_request};
        let Ok(signature) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        self.timestamp_ms.abs_diff(xnode_types::unix_ms()) <= MAX_CLOCK_SKEW_MS
            && self.nonce.len() <= 128
            && self.query.len() <= 2048
            && owner.verify(
                &canonical_request(
                    "GET",
                    &Self::path(deployment),
                    &self.query,
                    self.timestamp_ms,
                    &self.nonce,
                    owner,
                ),
                &xnode_types::SignatureBytes(signature),
            )
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ComputeResponse {
    Invoked {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        /// Fuel the guest burnt, so the gateway can count it with the request.
        fuel: u64,
    },
    /// The call failed. `reached_guest` says whether the guest may have seen the request,
    /// which decides whether the gateway may retry a non-idempotent method elsewhere.
    Failed {
        status: u16,
        code: String,
        message: String,
        reached_guest: bool,
    },
    Grant(Option<Vec<u8>>),
    Ok,
    Logs(Vec<LogLine>),
}

/// One line of a deployment's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub ts_ms: u64,
    pub node: String,
    /// `request`, `stdout`, `stderr` or `event`.
    pub stream: String,
    pub trace_id: String,
    pub message: String,
}

impl xnode_wire::Versioned for ComputeRequest {
    const KIND_TAG: u8 = xnode_wire::kinds::COMPUTE_REQUEST;
    const KIND_NAME: &'static str = "compute request";
    const VERSION: u8 = 1;
}

impl xnode_wire::Versioned for ComputeResponse {
    const KIND_TAG: u8 = xnode_wire::kinds::COMPUTE_RESPONSE;
    const KIND_NAME: &'static str = "compute response";
    const VERSION: u8 = 1;
}
