//! Messages of the mesh's own protocols: SWIM probing and the generic RPC envelope.

use bytes::Bytes;
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

/// The layout of [`RpcRequest`], borrowed from the frame it arrived in, so that the body
/// can be handed on without copying it.
#[derive(Deserialize)]
struct RpcRequestRef<'a> {
    service: &'a str,
    #[serde(borrow)]
    body: &'a [u8],
}

impl RpcRequest {
    /// Encodes the envelope of a request to `service` whose body is `body` encoded: the
    /// same bytes as encoding `RpcRequest { service, body: encode(body) }`, written in one
    /// pass. A body is often a chunk of a megabyte, and this way it is copied once, into
    /// the frame, instead of encoded and then copied into the envelope.
    pub fn encode_with<T: Versioned>(service: &str, body: &T) -> Result<Vec<u8>, WireError> {
        let failed = |e: postcard::Error| WireError::Encode {
            kind: Self::KIND_NAME,
            reason: e.to_string(),
        };
        let body_len = postcard::experimental::serialized_size(body)
            .map_err(failed)?
            .saturating_add(2);
        // Header, service (length and bytes), the body's length (at most 10 bytes), body.
        let capacity = body_len.saturating_add(service.len()).saturating_add(24);
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(&[Self::KIND_TAG, Self::VERSION]);
        let mut out = postcard::to_io(service, out).map_err(failed)?;
        // A byte string is its length (a varint, as a `usize` is) followed by its bytes.
        out = postcard::to_io(&body_len, out).map_err(failed)?;
        out.extend_from_slice(&[T::KIND_TAG, T::VERSION]);
        postcard::to_io(body, out).map_err(failed)
    }

    /// Decodes an envelope of at most `limit` bytes into its service and body, the body
    /// sharing the frame's memory instead of being copied out of it.
    pub fn decode_shared(frame: Vec<u8>, limit: usize) -> Result<(String, Bytes), WireError> {
        let malformed = |reason: String| WireError::Malformed {
            kind: Self::KIND_NAME,
            reason,
        };
        let (version, payload) = xnode_wire::split_header::<Self>(&frame, limit)?;
        if version != Self::VERSION {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        let (request, rest) = postcard::take_from_bytes::<RpcRequestRef<'_>>(payload)
            .map_err(|e| malformed(e.to_string()))?;
        // The body ends where the rest (bytes after the envelope, which decoding the owned
        // layout ignores too) begins.
        let end = frame.len().saturating_sub(rest.len());
        let start = end
            .checked_sub(request.body.len())
            .ok_or_else(|| malformed("the body lies outside the frame".into()))?;
        let service = request.service.to_owned();
        Ok((service, Bytes::from(frame).slice(start..end)))
    }
}

impl Versioned for RpcResponse {
    const KIND_TAG: u8 = kinds::RPC_RESPONSE;
    const KIND_NAME: &'static str = "rpc response";
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_body() -> RpcResponse {
        RpcResponse::Ok((0..=255u8).cycle().take(200_000).collect())
    }

    #[test]
    fn an_envelope_encoded_in_one_pass_is_the_envelope_of_the_encoded_body() {
        let body = sample_body();
        let two_steps = xnode_wire::encode(&RpcRequest {
            service: "store".into(),
            body: xnode_wire::encode(&body).unwrap(),
        })
        .unwrap();
        assert_eq!(RpcRequest::encode_with("store", &body).unwrap(), two_steps);
    }

    #[test]
    fn a_shared_decode_gives_the_service_and_the_body_without_the_trailing_bytes() {
        let encoded_body = xnode_wire::encode(&sample_body()).unwrap();
        let mut frame = RpcRequest::encode_with("store", &sample_body()).unwrap();
        frame.extend_from_slice(b"trailing");
        let (service, body) = RpcRequest::decode_shared(frame.clone(), MAX_RPC_BYTES).unwrap();
        assert_eq!(service, "store");
        assert_eq!(body.as_ref(), encoded_body.as_slice());
        let owned: RpcRequest = xnode_wire::decode(&frame, MAX_RPC_BYTES).unwrap();
        assert_eq!(owned.body, encoded_body);
    }

    #[test]
    fn a_shared_decode_refuses_what_the_owned_decode_refuses() {
        let frame = RpcRequest::encode_with("store", &sample_body()).unwrap();
        for cut in [0, 1, 2, 5, frame.len() / 2, frame.len() - 1] {
            let short = frame[..cut].to_vec();
            assert!(RpcRequest::decode_shared(short.clone(), MAX_RPC_BYTES).is_err());
            assert!(xnode_wire::decode::<RpcRequest>(&short, MAX_RPC_BYTES).is_err());
        }
        let mut wrong_kind = frame.clone();
        wrong_kind[0] = kinds::RPC_RESPONSE;
        assert!(RpcRequest::decode_shared(wrong_kind, MAX_RPC_BYTES).is_err());
        let mut newer = frame.clone();
        newer[1] = RpcRequest::VERSION + 1;
        assert!(RpcRequest::decode_shared(newer, MAX_RPC_BYTES).is_err());
        assert!(matches!(
            RpcRequest::decode_shared(frame, 100),
            Err(WireError::TooLarge { .. })
        ));
    }
}
