//! Format version 1 of the SWIM messages and membership updates, read for compatibility.
//!
//! Version 1 carried `alive` and `left` as bare claims that anyone could make. A node of
//! version 2 still reads version-1 messages, but keeps from them only what needs no
//! signature: probes, suspicions and deaths (which are hearsay in both versions) and acks
//! without a record. Unsigned `alive` and `left` claims are dropped.

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;
use xnode_wire::{Versioned, WireError, decode_body, unsupported};

use crate::proto::{SwimRequest, SwimResponse};
use crate::swim::{MemberState, MembershipUpdate};

#[derive(Serialize, Deserialize)]
enum MembershipUpdateV1 {
    Alive {
        node: NodeId,
        incarnation: u64,
        addresses: Vec<String>,
    },
    Suspect {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    Dead {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    Left {
        node: NodeId,
        incarnation: u64,
    },
}

#[derive(Serialize, Deserialize)]
enum SwimRequestV1 {
    Ping {
        about_you: Option<(MemberState, u64)>,
    },
    PingReq {
        target: NodeId,
        addresses: Vec<String>,
    },
    Sync {
        updates: Vec<MembershipUpdateV1>,
    },
}

#[derive(Serialize, Deserialize)]
enum SwimResponseV1 {
    Ack { incarnation: u64 },
    Nack,
    Sync { updates: Vec<MembershipUpdateV1> },
}

impl MembershipUpdateV1 {
    /// The part of a version-1 update that version 2 still believes.
    fn into_current(self) -> Option<MembershipUpdate> {
        match self {
            MembershipUpdateV1::Suspect {
                node,
                incarnation,
                from,
            } => Some(MembershipUpdate::Suspect {
                node,
                incarnation,
                from,
            }),
            MembershipUpdateV1::Dead {
                node,
                incarnation,
                from,
            } => Some(MembershipUpdate::Dead {
                node,
                incarnation,
                from,
            }),
            MembershipUpdateV1::Alive { .. } | MembershipUpdateV1::Left { .. } => None,
        }
    }
}

pub(crate) fn membership_update(version: u8, bytes: &[u8]) -> Result<MembershipUpdate, WireError> {
    if version != 1 {
        return Err(unsupported::<MembershipUpdate>(version));
    }
    decode_body::<MembershipUpdate, MembershipUpdateV1>(bytes)?
        .into_current()
        .ok_or_else(|| WireError::Malformed {
            kind: MembershipUpdate::KIND_NAME,
            reason: "an unsigned alive or left claim (format 1) is no longer accepted".into(),
        })
}

pub(crate) fn swim_request(version: u8, bytes: &[u8]) -> Result<SwimRequest, WireError> {
    if version != 1 {
        return Err(unsupported::<SwimRequest>(version));
    }
    Ok(match decode_body::<SwimRequest, SwimRequestV1>(bytes)? {
        SwimRequestV1::Ping { about_you } => SwimRequest::Ping { about_you },
        SwimRequestV1::PingReq { target, .. } => SwimRequest::PingReq {
            target,
            record: None,
        },
        SwimRequestV1::Sync { updates } => SwimRequest::Sync {
            updates: updates
                .into_iter()
                .filter_map(MembershipUpdateV1::into_current)
                .collect(),
        },
    })
}

pub(crate) fn swim_response(version: u8, bytes: &[u8]) -> Result<SwimResponse, WireError> {
    if version != 1 {
        return Err(unsupported::<SwimResponse>(version));
    }
    Ok(match decode_body::<SwimResponse, SwimResponseV1>(bytes)? {
        // The bare incarnation is unauthenticated: keep only the fact of the answer.
        SwimResponseV1::Ack { .. } => SwimResponse::Ack { record: None },
        SwimResponseV1::Nack => SwimResponse::Nack,
        SwimResponseV1::Sync { updates } => SwimResponse::Sync {
            updates: updates
                .into_iter()
                .filter_map(MembershipUpdateV1::into_current)
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use xnode_types::SecretKey;
    use xnode_wire::kinds;

    use super::*;
    use crate::proto::MAX_SWIM_BYTES;

    fn v1<T: Serialize>(kind: u8, value: &T) -> Vec<u8> {
        let mut out = vec![kind, 1];
        out.extend(postcard::to_stdvec(value).unwrap());
        out
    }

    #[test]
    fn version_1_keeps_hearsay_and_drops_unsigned_alive_and_left() {
        let x = SecretKey::generate().node_id();
        let w = SecretKey::generate().node_id();
        let dead = v1(
            kinds::MEMBERSHIP_UPDATE,
            &MembershipUpdateV1::Dead {
                node: x,
                incarnation: 3,
                from: w,
            },
        );
        assert_eq!(
            xnode_wire::decode::<MembershipUpdate>(&dead, MAX_SWIM_BYTES).unwrap(),
            MembershipUpdate::Dead {
                node: x,
                incarnation: 3,
                from: w
            }
        );
        let left = v1(
            kinds::MEMBERSHIP_UPDATE,
            &MembershipUpdateV1::Left {
                node: x,
                incarnation: u64::MAX,
            },
        );
        assert!(xnode_wire::decode::<MembershipUpdate>(&left, MAX_SWIM_BYTES).is_err());

        let sync = v1(
            kinds::SWIM_REQUEST,
            &SwimRequestV1::Sync {
                updates: vec![
                    MembershipUpdateV1::Left {
                        node: x,
                        incarnation: u64::MAX,
                    },
                    MembershipUpdateV1::Alive {
                        node: x,
                        incarnation: 9,
                        addresses: vec!["/ip4/198.51.100.1/tcp/1".into()],
                    },
                    MembershipUpdateV1::Suspect {
                        node: x,
                        incarnation: 2,
                        from: w,
                    },
                ],
            },
        );
        match xnode_wire::decode::<SwimRequest>(&sync, MAX_SWIM_BYTES).unwrap() {
            SwimRequest::Sync { updates } => assert_eq!(updates.len(), 1),
            other => panic!("{other:?}"),
        }
        let ack = v1(
            kinds::SWIM_RESPONSE,
            &SwimResponseV1::Ack {
                incarnation: u64::MAX,
            },
        );
        assert!(matches!(
            xnode_wire::decode::<SwimResponse>(&ack, MAX_SWIM_BYTES).unwrap(),
            SwimResponse::Ack { record: None }
        ));
    }
}
