//! Versioned binary encodings for everything Xnode sends over the network or writes to disk.
//!
//! Every encoded value starts with a one-byte *kind* tag and a one-byte *format version*,
//! followed by a postcard body. Decoders check both before reading the body and refuse
//! anything longer than the caller's limit, so a peer can never make us allocate without
//! bound or misread an old or foreign format as a current one.
//!
//! Subsystems define their message types next to their logic and implement [`Versioned`]
//! for them; this crate owns the framing, the limits and the errors.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors from decoding bytes that came from a peer or a file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message is empty or shorter than its 2-byte header")]
    Truncated,
    #[error("expected a {expected} message (kind {expected_tag}) but got kind {found}")]
    WrongKind {
        expected: &'static str,
        expected_tag: u8,
        found: u8,
    },
    #[error(
        "unsupported {kind} format version {found} (this node reads versions up to {supported})"
    )]
    UnsupportedVersion {
        kind: &'static str,
        found: u8,
        supported: u8,
    },
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed {kind} message: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("could not encode {kind}: {reason}")]
    Encode { kind: &'static str, reason: String },
}

/// A type with a stable, versioned binary encoding.
pub trait Versioned: Serialize + DeserializeOwned {
    /// A tag unique among all versioned kinds (see the table in this crate's docs).
    const KIND_TAG: u8;
    /// A human-readable name, used in errors.
    const KIND_NAME: &'static str;
    /// The format version this build writes. Readers accept it and, through
    /// [`Versioned::upgrade`], any older version they still know.
    const VERSION: u8;

    /// Decodes a body written in an older format version. The default knows no older
    /// versions; a type that changes its layout overrides this to migrate.
    fn upgrade(version: u8, _body: &[u8]) -> Result<Self, WireError> {
        Err(unsupported::<Self>(version))
    }
}

/// The error for a format version of `T` this build does not read: for
/// [`Versioned::upgrade`] implementations, on versions they do not know.
pub fn unsupported<T: Versioned>(version: u8) -> WireError {
    WireError::UnsupportedVersion {
        kind: T::KIND_NAME,
        found: version,
        supported: T::VERSION,
    }
}

/// Decodes the postcard body of a `T` message into `Layout`, which is `T` itself or the
/// struct of one of its older format versions; errors name `T`'s kind. For
/// [`Versioned::upgrade`] implementations.
pub fn decode_body<T: Versioned, Layout: DeserializeOwned>(
    body: &[u8],
) -> Result<Layout, WireError> {
    postcard::from_bytes(body).map_err(|e| WireError::Malformed {
        kind: T::KIND_NAME,
        reason: e.to_string(),
    })
}

/// Encodes a value with its kind and version header.
pub fn encode<T: Versioned>(value: &T) -> Result<Vec<u8>, WireError> {
    let failed = |e: postcard::Error| WireError::Encode {
        kind: T::KIND_NAME,
        reason: e.to_string(),
    };
    // Sizing the body first (a walk that copies nothing) lets it be written once, straight
    // behind the header, into a buffer of the right size: a chunk of a megabyte is copied
    // once instead of into a growing vector and then again behind the header.
    let body_len = postcard::experimental::serialized_size(value).map_err(failed)?;
    let mut out = Vec::with_capacity(body_len.saturating_add(2));
    out.push(T::KIND_TAG);
    out.push(T::VERSION);
    postcard::to_io(value, out).map_err(failed)
}

/// Decodes a value, checking its header and refusing inputs longer than `limit` bytes.
pub fn decode<T: Versioned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    let (version, body) = split_header::<T>(bytes, limit)?;
    if version == T::VERSION {
        decode_body::<T, T>(body)
    } else if version < T::VERSION {
        T::upgrade(version, body)
    } else {
        Err(unsupported::<T>(version))
    }
}

/// Checks a `T` message's size and kind, and splits it into its format version and body,
/// for a decoder that reads the body its own way.
pub fn split_header<T: Versioned>(bytes: &[u8], limit: usize) -> Result<(u8, &[u8]), WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let [tag, version, body @ ..] = bytes else {
        return Err(WireError::Truncated);
    };
    if *tag != T::KIND_TAG {
        return Err(WireError::WrongKind {
            expected: T::KIND_NAME,
            expected_tag: T::KIND_TAG,
            found: *tag,
        });
    }
    Ok((*version, body))
}

/// Kind tags in use. Keeping them in one place prevents two subsystems picking the same.
pub mod kinds {
    pub const REGISTRY_ENTRY: u8 = 1;
    pub const REGISTRY_SYNC_REQUEST: u8 = 2;
    pub const REGISTRY_SYNC_RESPONSE: u8 = 3;
    pub const NODE_RECORD: u8 = 4;
    pub const SWIM_REQUEST: u8 = 5;
    pub const SWIM_RESPONSE: u8 = 6;
    pub const MEMBERSHIP_UPDATE: u8 = 7;
    pub const RPC_REQUEST: u8 = 8;
    pub const RPC_RESPONSE: u8 = 9;
    pub const KEY_FILE: u8 = 10;
    pub const NODE_STATE: u8 = 11;
    pub const MANIFEST: u8 = 12;
    pub const OBJECT_META: u8 = 13;
    pub const STORE_REQUEST: u8 = 14;
    pub const STORE_RESPONSE: u8 = 15;
    /// An S3 access key kept in a gateway node's local database (`xnode-s3`).
    pub const S3_ACCESS_KEY: u8 = 16;
    pub const TENANT_KEY_FILE: u8 = 17;
    pub const NODE_SUMMARY: u8 = 18;
    /// A node's figures and its subtree's, sent up the observability tree.
    pub const SUBTREE_REPORT: u8 = 19;
    /// A parent's answer to a subtree report: network totals coming down the tree.
    pub const NETWORK_TOTALS: u8 = 21;
    /// A request for a node's own figures, asked of it on demand beyond the size at which
    /// every summary is gossiped.
    pub const FIGURES_REQUEST: u8 = 22;
    /// A node's answer: its latest summary and its totals per window.
    pub const NODE_FIGURES: u8 = 23;
    /// The storage scrubber's progress, in a node's local database (`xnode-storage`).
    pub const SCRUB_STATE: u8 = 24;
    /// Garbage collection's view of the metadata holders, in a node's local database
    /// (`xnode-storage`).
    pub const GC_VIEW: u8 = 25;
    /// A node's drain or departure, kept across restarts.
    pub const NODE_RETIREMENT: u8 = 20;
    /// A network authority's list of admitted nodes and operators (`xnode-registry`).
    pub const ADMISSION_LIST: u8 = 40;
    /// An admission list with its authority's signature, as a file and a registry value.
    pub const SIGNED_ADMISSION_LIST: u8 = 41;
    /// An operator's payout binding (`xnode_registry::payout`).
    pub const PAYOUT_BINDING: u8 = 42;
    /// A usage counter in a node's local database (`xnode-metering`).
    pub const METER_COUNTER: u8 = 60;
    /// A countersigned receipt in a node's local database (`xnode-metering`).
    pub const STORED_RECEIPT: u8 = 61;
    /// A receipt exchange request between a provider and a tenant's edge.
    pub const RECEIPT_REQUEST: u8 = 62;
    /// A receipt exchange response.
    pub const RECEIPT_RESPONSE: u8 = 63;
    /// A tenant's countersigning grant kept by its edge node.
    pub const STORED_GRANT: u8 = 64;
    /// A tenant's chunk as storage metering knows it, in a node's local database
    /// (`xnode-storage`: the chunks a replica holds and an edge placed, for byte-hours).
    pub const CHUNK_USAGE: u8 = 65;
    /// What a tenant's edge last observed of one run's reported usage (a job's run or a
    /// worker's replica on one provider), in its local database (`xnode-metering`).
    pub const RUN_USAGE_SEEN: u8 = 66;
    /// An epoch-close request between nodes (`xnode-settle`).
    pub const SETTLE_REQUEST: u8 = 70;
    /// An epoch-close response.
    pub const SETTLE_RESPONSE: u8 = 71;
    /// A closed epoch's outcome in a node's local database (`xnode-settle`).
    pub const SETTLE_EPOCH_RECORD: u8 = 72;
    /// A settled epoch's output reputation with the committee's votes on it
    /// (`xnode-settle`), kept in the database and served to members that lack it.
    pub const SETTLE_CARRIED_REPUTATION: u8 = 73;
    /// The slashes a node's committee took (or tried to take) on chain for one settled
    /// epoch, in its local database (`xnode-settle`).
    pub const SETTLE_SLASHES: u8 = 74;
    pub const COMPUTE_REQUEST: u8 = 30;
    pub const COMPUTE_RESPONSE: u8 = 31;
}

impl Versioned for xnode_types::NodeRecord {
    const KIND_TAG: u8 = kinds::NODE_RECORD;
    const KIND_NAME: &'static str = "node record";
    // Version 2 added labels; version 3 the operator certificate; version 4 the `draining`
    // status (a new last variant of `NodeStatus`, so a version 3 body reads unchanged).
    const VERSION: u8 = 4;

    /// A version 3 record has the current layout without the `draining` status. A version 2
    /// record (before operators) decodes with no operator, which keeps it out of placement:
    /// nothing vouches for who runs it.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, WireError> {
        if version == 3 {
            return decode_body::<Self, _>(body);
        }
        if version != 2 {
            return Err(unsupported::<Self>(version));
        }
        let v2: NodeRecordV2 = decode_body::<Self, _>(body)?;
        Ok(xnode_types::NodeRecord {
            node_id: v2.node_id,
            addresses: v2.addresses,
            api_url: v2.api_url,
            zone: v2.zone,
            capacity: v2.capacity,
            version: v2.version,
            incarnation: v2.incarnation,
            status: v2.status,
            started_at_ms: v2.started_at_ms,
            labels: v2.labels,
            operator: None,
        })
    }
}

/// The layout of a node record in format version 2, kept to read old records.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeRecordV2 {
    node_id: xnode_types::NodeId,
    addresses: Vec<String>,
    api_url: Option<String>,
    zone: String,
    capacity: xnode_types::Capacity,
    version: String,
    incarnation: u64,
    status: xnode_types::NodeStatus,
    started_at_ms: u64,
    labels: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u32,
        b: String,
    }

    impl Versioned for Sample {
        const KIND_TAG: u8 = 200;
        const KIND_NAME: &'static str = "sample";
        const VERSION: u8 = 2;
        fn upgrade(version: u8, body: &[u8]) -> Result<Self, WireError> {
            // Version 1 had only `a`.
            if version == 1 {
                let a: u32 = postcard::from_bytes(body).map_err(|e| WireError::Malformed {
                    kind: "sample",
                    reason: e.to_string(),
                })?;
                return Ok(Sample {
                    a,
                    b: String::new(),
                });
            }
            Err(WireError::UnsupportedVersion {
                kind: "sample",
                found: version,
                supported: 2,
            })
        }
    }

    #[test]
    fn a_version_2_node_record_reads_with_no_operator() {
        let key = xnode_types::SecretKey::generate();
        let v2 = NodeRecordV2 {
            node_id: key.node_id(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
            api_url: None,
            zone: "z".into(),
            capacity: xnode_types::Capacity::default(),
            version: "0.1.0".into(),
            incarnation: 4,
            status: xnode_types::NodeStatus::Active,
            started_at_ms: 9,
            labels: Default::default(),
        };
        let mut bytes = vec![kinds::NODE_RECORD, 2];
        bytes.extend(postcard::to_stdvec(&v2).unwrap());
        let record: xnode_types::NodeRecord = decode(&bytes, 4096).unwrap();
        assert_eq!(record.node_id, key.node_id());
        assert_eq!(record.incarnation, 4);
        assert_eq!(record.operator, None);
        // Version 1 (before labels) is refused, not misread.
        bytes[1] = 1;
        assert!(matches!(
            decode::<xnode_types::NodeRecord>(&bytes, 4096),
            Err(WireError::UnsupportedVersion { found: 1, .. })
        ));
        // The current version round-trips with its certificate.
        let mut current = record.clone();
        current.operator = Some(xnode_types::OperatorCert::issue(
            &key,
            "net",
            &key.node_id(),
        ));
        let again: xnode_types::NodeRecord = decode(&encode(&current).unwrap(), 4096).unwrap();
        assert_eq!(again, current);
        // A version 3 body (no draining status yet) reads as it was written.
        let mut v3 = vec![kinds::NODE_RECORD, 3];
        v3.extend(postcard::to_stdvec(&current).unwrap());
        let from_v3: xnode_types::NodeRecord = decode(&v3, 4096).unwrap();
        assert_eq!(from_v3, current);
        // The draining status round-trips in the current version.
        let mut draining = current;
        draining.status = xnode_types::NodeStatus::Draining;
        let again: xnode_types::NodeRecord = decode(&encode(&draining).unwrap(), 4096).unwrap();
        assert_eq!(again.status, xnode_types::NodeStatus::Draining);
    }

    #[test]
    fn round_trip() {
        let v = Sample {
            a: 7,
            b: "x".into(),
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(&bytes[..2], &[200, 2]);
        assert_eq!(decode::<Sample>(&bytes, 1024).unwrap(), v);
    }

    #[test]
    fn rejects_bad_headers_and_sizes() {
        assert_eq!(decode::<Sample>(&[], 10), Err(WireError::Truncated));
        assert_eq!(decode::<Sample>(&[200], 10), Err(WireError::Truncated));
        assert!(matches!(
            decode::<Sample>(&[1, 2, 0], 10),
            Err(WireError::WrongKind { .. })
        ));
        assert!(matches!(
            decode::<Sample>(&[200, 9, 0], 10),
            Err(WireError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(matches!(
            decode::<Sample>(&[200, 2, 0, 0, 0], 3),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Sample>(&[200, 2, 0xff], 10),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn older_versions_are_upgraded() {
        let mut bytes = vec![200, 1];
        bytes.extend(postcard::to_stdvec(&5u32).unwrap());
        assert_eq!(
            decode::<Sample>(&bytes, 100).unwrap(),
            Sample {
                a: 5,
                b: String::new()
            }
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        // A cheap deterministic fuzz: every short byte string must decode or error, never panic.
        let mut seed = 0x1234_5678_u64;
        for len in 0..64 {
            for _ in 0..64 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed & 0xff) as u8
                    })
                    .collect();
                let mut framed = vec![200, 2];
                framed.extend(&bytes);
                let _ = decode::<Sample>(&framed, 1024);
            }
        }
    }
}
