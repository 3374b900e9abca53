//! Compute RPCs between nodes: forwarded function calls, tenant data-key grants, logs.

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
    /// Ask for the data key `owner` granted for `purpose` (a deployment name or
    /// `job:<id>`); answered only to a node the purpose is placed on.
    Grant { owner: String, purpose: String },
    /// A data key pushed by the node that accepted a deployment or job.
    PushGrant {
        owner: String,
        purpose: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Recent log lines of a deployment on this node.
    Logs { owner: String, deployment: String },
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
