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
    /// Recent log lines of `owner`'s deployment, with a request the tenant signed under
    /// request signing v1. v1 signatures do not bind the node, so one could be replayed
    /// to any node: kept so that older nodes' requests decode, always answered with no
    /// lines (see [`ComputeRequest::SignedLogsV2`]).
    SignedLogs {
        owner: String,
        deployment: String,
        auth: LogsAuthV1,
    },
    /// Recent log lines of `owner`'s deployment on this node, with the tenant's signed
    /// request for them (request signing v2), which its edge relays; answered only when
    /// it verifies as a request to the node that relayed it.
    SignedLogsV2 {
        owner: String,
        deployment: String,
        auth: LogsAuth,
    },
}

/// A tenant's v1 signature over its logs request; no longer accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsAuthV1 {
    pub query: String,
    pub timestamp_ms: u64,
    pub nonce: String,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A tenant's signature over its `GET /v1/deployments/<deployment>/logs` request (see
/// `xnode_types::request_auth`), relayed by the edge it sent the request to. The request
/// names that edge as its node, so a peer checks it against the node the RPC came from:
/// an edge can ask peers for logs with it, but a peer that receives it cannot replay it
/// to others (it does not name them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsAuth {
    /// The request's query string, as signed.
    pub query: String,
    pub timestamp_ms: u64,
    pub nonce: String,
    /// The body hash the request signed (hex): the empty body's, for a GET.
    pub content_blake3: String,
    /// The hash of the data key header the request carried (hex), or empty; never the key.
    pub data_key_blake3: String,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl LogsAuth {
    /// The path a tenant's request for the logs of `deployment` has.
    pub fn path(deployment: &str) -> String {
        format!("/v1/deployments/{deployment}/logs")
    }

    /// Signs a request for the logs of `deployment` sent to the node `edge`, as `tenant`
    /// would (for tests and clients that call a node's compute directly).
    pub fn sign(
        tenant: &xnode_types::SecretKey,
        deployment: &str,
        edge: &xnode_types::NodeId,
    ) -> LogsAuth {
        use xnode_types::request_auth::{CanonicalRequest, EMPTY_BODY_BLAKE3, canonical_request};
        let timestamp_ms = xnode_types::unix_ms();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let edge = edge.to_string();
        let signature = tenant.sign(&canonical_request(&CanonicalRequest {
            method: "GET",
            path: &Self::path(deployment),
            query: "",
            timestamp_ms,
            nonce: &nonce,
            tenant: &tenant.public(),
            node: &edge,
            content_blake3: EMPTY_BODY_BLAKE3,
            data_key_blake3: "",
        }));
        LogsAuth {
            query: String::new(),
            timestamp_ms,
            nonce,
            content_blake3: EMPTY_BODY_BLAKE3.to_owned(),
            data_key_blake3: String::new(),
            signature: signature.0.to_vec(),
        }
    }

    /// Whether `owner` signed this request for the logs of `deployment`, sent to the node
    /// `forwarded_by` (the peer that relays it), within the clock window of signed
    /// requests.
    pub fn verifies(
        &self,
        owner: &xnode_types::PublicKeyBytes,
        deployment: &str,
        forwarded_by: &xnode_types::NodeId,
    ) -> bool {
        use xnode_types::request_auth::{
            CanonicalRequest, MAX_CLOCK_SKEW_MS, canonical_request, is_hash_hex,
        };
        let Ok(signature) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        self.timestamp_ms.abs_diff(xnode_types::unix_ms()) <= MAX_CLOCK_SKEW_MS
            && self.nonce.len() <= 128
            && self.query.len() <= 2048
            && is_hash_hex(&self.content_blake3)
            && (self.data_key_blake3.is_empty() || is_hash_hex(&self.data_key_blake3))
            && owner.verify(
                &canonical_request(&CanonicalRequest {
                    method: "GET",
                    path: &Self::path(deployment),
                    query: &self.query,
                    timestamp_ms: self.timestamp_ms,
                    nonce: &self.nonce,
                    tenant: owner,
                    node: &forwarded_by.to_string(),
                    content_blake3: &self.content_blake3,
                    data_key_blake3: &self.data_key_blake3,
                }),
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
