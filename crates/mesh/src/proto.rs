//! Messages of the mesh's own protocols: SWIM probing and the generic RPC envelope.

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;
use xnode_wire::{Versioned, kinds};

use crate::swim::{MemberState, MembershipUpdate};

/// Largest SWIM message accepted (membership snapshots are the big ones).
pub const MAX_SWIM_BYTES: usize = 4 * 1024 * 1024;
/// Largest RPC message accepted (chunk transfers are the big ones).
pub const MAX_RPC_BYTES: usize = 24 * 1024 * 1024;

/// Requests of the SWIM protocol (`/xnode/<network>/swim/1`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SwimRequest {
    /// A direct probe. `about_you` tells the target how the prober sees it, so a node that
    /// is suspected can refute at once even if it missed the gossip.
    Ping {
        about_you: Option<(MemberState, u64)>,
    },
    /// Ask the receiver to probe `target` on our behalf.
    PingReq {
        target: NodeId,
        addresses: Vec<String>,
    },
    /// Push-pull exchange of whole membership views, done when two nodes connect.
    Sync { updates: Vec<MembershipUpdate> },
}

/// Responses of the SWIM protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SwimResponse {
    Ack { incarnation: u64 },
    Nack,
    Sync { updates: Vec<MembershipUpdate> },
}

impl Versioned for SwimRequest {
    const KIND_TAG: u8 = kinds::SWIM_REQUEST;
    const KIND_NAME: &'static str = "swim request";
    const VERSION: u8 = 1;
}

impl Versioned for SwimResponse {
    const KIND_TAG: u8 = kinds::SWIM_RESPONSE;
    const KIND_NAME: &'static str = "swim response";
    const VERSION: u8 = 1;
}

/// The envelope of the generic RPC protocol (`/xnode/<network>/rpc/1`): a service name
/// routes the body to the subsystem that registered it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RpcRequest {
    pub service: String,
    // Encoded as one byte string, not a sequence of numbers: chunks pass through here.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Why an RPC failed on the serving side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcErrorCode {
    UnknownService,
    Overloaded,
    BadRequest,
    Internal,
    Unavailable,
}

/// The RPC response envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    Err { code: RpcErrorCode, message: String },
}

impl Versioned for RpcRequest {
    const KIND_TAG: u8 = kinds::RPC_REQUEST;
    const KIND_NAME: &'static str = "rpc request";
    const VERSION: u8 = 1;
}

impl Versioned for RpcResponse {
    const KIND_TAG: u8 = kinds::RPC_RESPONSE;
    const KIND_NAME: &'static str = "rpc response";
    const VERSION: u8 = 1;
}
