//! Messages of the mesh's own protocols: SWIM probing and the generic RPC envelope.

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;
use xnode_wire::{Versioned, WireError, kinds};

use crate::liveness::LivenessRecord;
use crate::swim::{MemberState, MembershipUpdate};

/// Largest SWIM message accepted (membership snapshots are the big ones).
pub const MAX_SWIM_BYTES: usize = 4 * 1024 * 1024;
/// Most updates one push-pull message may carry: two per member (its record and this
/// node's finding) for the largest table, plus the sender's own record. A longer one is
/// refused whole: no honest node sends it.
pub const MAX_SYNC_UPDATES: usize = 2 * crate::swim::admission::MAX_MEMBERS + 1;
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
    /// Ask the receiver to probe `target` on our behalf. `record` is the target's own
    /// signed record, so a receiver that does not know the target yet can dial it.
    PingReq {
        target: NodeId,
        record: Option<Box<LivenessRecord>>,
    },
    /// Push-pull exchange of whole membership views, with peers older than protocol 1.3
    /// (and on a new connection, before the peer's version is known).
    Sync { updates: Vec<MembershipUpdate> },
    /// A push-pull by digest (protocol 1.3, `crate::protocol::DIGEST_SYNC`): the sender's
    /// own signed record (which introduces it) and the digest of its view. The answer is
    /// a [`SwimResponse::SyncDiff`]. Appended after the others (postcard encodes the
    /// variant index), so older nodes are never sent it.
    SyncDigest {
        record: Box<LivenessRecord>,
        digest: crate::swim::digest::ViewDigest,
    },
    /// The last step of a push-pull by digest: the requester's entries in the buckets the
    /// answer named. Answered with [`SwimResponse::Merged`].
    SyncEntries { updates: Vec<MembershipUpdate> },
}

/// Responses of the SWIM protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SwimResponse {
    /// The target is up. `record` is its own signed record (relayed unchanged by an
    /// indirect prober), which carries its incarnation: nobody else can raise it.
    Ack {
        record: Option<Box<LivenessRecord>>,
    },
    Nack,
    Sync {
        updates: Vec<MembershipUpdate>,
    },
    /// An ack that also carries the target's network coordinate, so the prober can feed
    /// the round trip it just measured to its Vivaldi coordinate. Appended last (postcard
    /// encodes the variant index) and sent only to peers that negotiated protocol 1.2 or
    /// later: older nodes cannot decode it.
    CoordinatedAck {
        record: Option<Box<LivenessRecord>>,
        coordinate: crate::vivaldi::Coordinate,
    },
    /// The answer to a [`SwimRequest::SyncDigest`]: the answering node's own record, the
    /// buckets in which the two digests differ, and its own entries in those buckets.
    SyncDiff {
        record: Box<LivenessRecord>,
        differing: Vec<u16>,
        updates: Vec<MembershipUpdate>,
    },
    /// The answer to a [`SwimRequest::SyncEntries`] that was merged.
    Merged,
}

impl SwimResponse {
    /// Whether this is an ack of either form, and the record it carries.
    pub fn ack_record(&self) -> Option<Option<&LivenessRecord>> {
        match self {
            SwimResponse::Ack { record } | SwimResponse::CoordinatedAck { record, .. } => {
                Some(record.as_deref())
            }
            _ => None,
        }
    }
}

impl Versioned for SwimRequest {
    const KIND_TAG: u8 = kinds::SWIM_REQUEST;
    const KIND_NAME: &'static str = "swim request";
    // Version 2: signed liveness records instead of bare incarnations and addresses.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, WireError> {
        crate::legacy::swim_request(version, body)
    }
}

impl Versioned for SwimResponse {
    const KIND_TAG: u8 = kinds::SWIM_RESPONSE;
    const KIND_NAME: &'static str = "swim response";
    // Version 2: an ack carries the target's signed record.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, WireError> {
        crate::legacy::swim_response(version, body)
    }
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
