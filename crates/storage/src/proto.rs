//! Messages of the storage RPC service (`store`), carried over the mesh.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xnode_store::entropy::SetDigest;
use xnode_store::{
    ChunkId, ConditionalMerge, MergeOutcome, ObjectInfo, ObjectMeta, ObjectPath, RangeDigest,
};
use xnode_types::{Hlc, NodeId, PublicKeyBytes, SignatureBytes};

use crate::conditional::Preconditions;
use xnode_wire::{Versioned, kinds};

/// Largest storage message accepted (a chunk plus framing).
pub const MAX_STORE_MESSAGE: usize = 20 * 1024 * 1024;
/// Most entries a `ListMeta` answer holds, whatever the request asks.
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Most bytes of entries a `ListMeta` answer holds; a replica cuts its answer there and
/// marks it truncated.
pub const MAX_LIST_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Most buckets one `MetaDigests` request names.
pub const MAX_DIGEST_BUCKETS: usize = 4096;
/// Most entries one `PutMetaMany` request carries.
pub const MAX_PUT_META_MANY: usize = 256;
/// Most tombstones one `DropTombstones` request names.
pub const MAX_DROP_TOMBSTONES: usize = 256;
/// Most retired tombstones one `PutRetiredMany` request carries.
pub const MAX_PUT_RETIRED_MANY: usize = 256;
/// Most partitions one `ChunkDigests` request names.
pub const MAX_CHUNK_PARTITIONS: usize = 256;
/// Most audit results a node keeps, and serves, per epoch (about 300 bytes each).
pub const MAX_AUDIT_LOG: usize = 8192;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreRequest {
    /// Store a chunk durably; answered only after fsync. The receiver takes it only if
    /// placement puts it there (or holds it already).
    PutChunk {
        id: ChunkId,
        /// Shared, not copied: an edge sends one chunk to every replica (and itself), and
        /// the encoding is the same as a byte vector's.
        data: Bytes,
        /// The bucket the chunk belongs to, if any. The receiver derives the chunk's
        /// replication factor from the bucket's signed claim in its own registry, never
        /// from the sender (version 3; version 2 carried the sender's `rf`).
        bucket: Option<BucketRef>,
    },
    GetChunk {
        id: ChunkId,
    },
    /// Which of these chunks does the receiver hold?
    HasChunks {
        ids: Vec<ChunkId>,
    },
    /// Merge an object metadata entry (last writer wins).
    PutMeta {
        meta: ObjectMeta,
    },
    GetMeta {
        path: ObjectPath,
    },
    ListMeta {
        tenant: PublicKeyBytes,
        bucket: String,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    },
    /// Every metadata entry the receiver holds (tombstones included), by storage key,
    /// after `after`: garbage collection uses it to learn which chunks are referenced.
    ScanMeta {
        #[serde(with = "serde_bytes")]
        after: Vec<u8>,
        limit: u32,
    },
    /// Anti-entropy, first level (version 4): the digest of the receiver's entries of each
    /// bucket, in the order asked (all zeroes for a bucket it holds nothing of). The sender
    /// gives its own digests, so a receiver that sees a difference runs a round of its own
    /// (it may hold entries the sender lacks).
    MetaDigests {
        buckets: Vec<(BucketRef, SetDigest)>,
    },
    /// Anti-entropy, second level (version 4): the digests of one bucket's leaves
    /// ([`xnode_store::entropy::LEAVES`] of them).
    MetaLeafDigests {
        bucket: BucketRef,
    },
    /// Merge several entries, each as `PutMeta` would (version 4): what anti-entropy sends
    /// for the leaves where two replicas differ.
    PutMetaMany {
        metas: Vec<ObjectMeta>,
    },
    /// Chunk anti-entropy (version 4): for each partition (first byte of the chunk id)
    /// given with the sender's digest, the digest of the chunk ids the receiver holds that
    /// placement puts on both the sender and the receiver, in the order asked.
    ChunkDigests {
        partitions: Vec<(u8, SetDigest)>,
    },
    /// Storage audit (version 5): prove holding chunk `id` by answering with the Bao slice
    /// of `len` bytes at `offset` ([`xnode_store::prove_slice`]). `len` is at most
    /// [`xnode_store::MAX_AUDIT_SLICE`]; `nonce` is echoed so an answer matches its
    /// challenge.
    AuditChunk {
        id: ChunkId,
        offset: u64,
        len: u32,
        nonce: [u8; 16],
    },
    /// The signed audit results the receiver issued in `epoch` (version 5): what every
    /// node collects to compute reputation.
    AuditLog {
        epoch: u64,
    },
    /// A range of one bucket's metadata table, **tombstones included** (version 5): keys
    /// that start with `prefix` and sort after `after`, in key order, at most `limit`
    /// entries (capped at [`MAX_LIST_LIMIT`]) and about [`MAX_LIST_ANSWER_BYTES`]. An edge
    /// merges the answers of a read quorum to list the bucket, so a page costs a few calls
    /// instead of a quorum read per key.
    MetaRange {
        bucket: BucketRef,
        prefix: String,
        after: Option<String>,
        limit: u32,
    },
    /// A conditional write (version 5), sent by an edge to the key's coordinator (the
    /// first live replica of the bucket's metadata): write `info` at `path` (delete, when
    /// `None`) only if `preconditions` hold for the current version, decided under the
    /// coordinator's lock for the key. Answered by `Committed`.
    CommitMeta {
        path: ObjectPath,
        info: Option<ObjectInfo>,
        preconditions: Preconditions,
    },
    /// Merge an entry only if the one held is not newer than `expected` (version 5): the
    /// compare-and-set a coordinator's write makes on each replica (`None` expects no
    /// entry). Answered by `MetaMergedIf`.
    PutMetaIf {
        meta: ObjectMeta,
        expected: Option<(Hlc, NodeId)>,
    },
    /// A conditional write (version 6) whose entry the edge has sealed: the coordinator
    /// decides `preconditions` against the current version under its lock for the key,
    /// and writes `meta` with compare-and-set if they hold and `meta` is newer than the
    /// current version. The edge seals because only it holds the tenant's authority; the
    /// coordinator could not sign for it. Answered by `Committed`.
    CommitSealedMeta {
        meta: ObjectMeta,
        preconditions: Preconditions,
    },
    /// `GetChunk` for an object read of `tenant` (version 7): answered the same, and the
    /// replica meters the bytes it sends as the tenant's egress, to be countersigned by
    /// the edge that asked (see `docs/design/metering.md`). The replica cannot check that
    /// the chunk is `tenant`'s; the edge countersigns only what it verified and observed
    /// under the tenant it named.
    GetTenantChunk {
        id: ChunkId,
        tenant: PublicKeyBytes,
    },
    /// A forwarded read (version 8), sent by an edge far from a bucket's metadata to the
    /// metadata replica nearest to it, in parallel with the edge's own quorum read: the
    /// receiver's own current entry of `path`, and if it names an object, the manifest and
    /// the chunks that cover the plaintext from byte `from`, at most `max_bytes` of sealed
    /// chunks (capped at [`MAX_FORWARDED_BYTES`]), fetched from holders near the receiver.
    /// Answered by `Forwarded`. The edge uses the answer only if its quorum read agrees on
    /// the version and manifest, and checks every byte against its id (see `forward`).
    ForwardedRead {
        path: ObjectPath,
        from: u64,
        max_bytes: u32,
    },
    /// Tombstone collection, second phase (version 9): remove each of these tombstones
    /// from the receiver's metadata table if it is exactly the entry held there ("delete
    /// if equal"), is older than the receiver's own `tombstone_grace` by its clock, and is
    /// a tombstone garbage collection may remove at all (see `tombstones`). At most
    /// [`MAX_DROP_TOMBSTONES`]. Answered by `TombstonesDropped`. The sender first made
    /// every metadata holder hold them (`PutMetaMany`); the receiver does not check that,
    /// only what it can see for itself.
    DropTombstones {
        tombstones: Vec<ObjectMeta>,
    },
    /// The receiver's own entry of `path`, signed by the receiver together with `nonce`
    /// (version 10): one vote of a metadata read quorum that a far edge can check although
    /// another node collected it (see `attest`). Answered by `Attested`.
    AttestMeta {
        path: ObjectPath,
        nonce: [u8; 16],
    },
    /// A forwarded read that also carries a read quorum (version 10): answered as
    /// `ForwardedRead` is, plus the signed answers of a lingering read quorum of the
    /// bucket's metadata replicas that the receiver collects with `AttestMeta` for the
    /// edge's `nonce`. The edge may decide the version from those answers without waiting
    /// for its own quorum read, which still runs (see `forward`). Answered by
    /// `QuorumForwarded`.
    QuorumForwardedRead {
        path: ObjectPath,
        from: u64,
        max_bytes: u32,
        nonce: [u8; 16],
    },
    /// Anti-entropy of retired tombstones, first level (version 11): as `MetaDigests`,
    /// over each bucket's cold table (the tombstones collection retired). Answered by
    /// `Digests`. A receiver whose digests differ runs a round of its own.
    RetiredDigests {
        buckets: Vec<(BucketRef, SetDigest)>,
    },
    /// Second level (version 11): the digests of one bucket's cold table by leaf, as
    /// `MetaLeafDigests`. Answered by `Digests`.
    RetiredLeafDigests {
        bucket: BucketRef,
    },
    /// Merge these retired tombstones **as retired** (version 11; at most
    /// [`MAX_PUT_RETIRED_MANY`]): each goes to the receiver's cold table only if it is a
    /// sealed tombstone that verifies, of a kind collection retires, and newer than any
    /// entry the receiver holds for its key, whose hot entry it then replaces. So retired
    /// tombstones follow a bucket's placement. Answered by `RetiredMerged`.
    PutRetiredMany {
        tombstones: Vec<ObjectMeta>,
    },
    /// Garbage collection's first look at a metadata holder (version 12): the digest of
    /// every bucket the receiver holds entries of, in bucket order after `after`, at most
    /// `limit` (capped at [`MAX_BUCKET_DIGESTS`]). Answered by `BucketDigests`. The
    /// collector rereads (`ScanBucketMeta`) only the buckets whose digest moved since its
    /// last round.
    MetaBucketDigests {
        after: Option<BucketRef>,
        limit: u32,
    },
    /// Every entry of one bucket the receiver holds, internal keys and tombstones
    /// included, in key order after `after`, at most `limit` (capped at
    /// [`MAX_SCAN_ENTRIES`]) and about [`MAX_LIST_ANSWER_BYTES`] (version 12). Answered by
    /// `MetaList`; a short page may be cut by the byte bound, an empty one ends the
    /// bucket.
    ScanBucketMeta {
        bucket: BucketRef,
        after: Option<String>,
        limit: u32,
    },
    /// The digest of the range of one bucket's metadata table that `MetaRange` would read
    /// (keys that start with `prefix`, after `after`), tombstones included, up to `until`
    /// (to the end when `None`), counting at most `limit` entries (capped at
    /// [`MAX_LIST_LIMIT`]) and hashing at most twice [`MAX_LIST_ANSWER_BYTES`] (version 13).
    /// A listing edge that holds the bucket reads the
    /// range from its own table and asks the other replicas only this; the ones whose
    /// digest differs are asked for their entries. Answered by `RangeDigest`.
    MetaRangeDigest {
        bucket: BucketRef,
        prefix: String,
        after: Option<String>,
        until: Option<String>,
        limit: u32,
    },
    /// The range `MetaRange` reads, as the entries' encodings (version 14): what a listing
    /// edge that holds no replica of the bucket reads from one replica while the others
    /// send `MetaRangeDigest`. The replica sends its stored bytes without decoding them,
    /// and the edge hashes what it received as the others hash what they hold, then
    /// decodes and checks each entry. Answered by `MetaRangeEncoded`.
    MetaRangeEncoded {
        bucket: BucketRef,
        prefix: String,
        after: Option<String>,
        limit: u32,
    },
    /// Asks the receiver for a bulk link (version 15): a one-time token and a session key
    /// for a TCP connection to its bulk port, over which the sender's data chunks then go
    /// (see `bulk`). Refused by a node that offers none.
    OpenBulk,
}

/// Most bucket digests one `MetaBucketDigests` answer holds (about 100 bytes each).
pub const MAX_BUCKET_DIGESTS: u32 = 1024;
/// Most entries one `ScanMeta` or `ScanBucketMeta` answer holds.
pub const MAX_SCAN_ENTRIES: u32 = 10_000;

/// Most bytes of sealed chunks one forwarded read answer carries, whatever was asked.
pub const MAX_FORWARDED_BYTES: u32 = 4 * 1024 * 1024;

/// The answer to a forwarded read: the receiver's own entry (not a quorum's), and what it
/// could fetch of the object it names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ForwardedAnswer {
    pub meta: Option<ObjectMeta>,
    /// The encoded manifest the entry names, when it was found.
    #[serde(with = "serde_bytes")]
    pub manifest: Option<Vec<u8>>,
    /// Sealed chunks, in the order of the object's bytes from the offset asked.
    pub chunks: Vec<ForwardedChunk>,
}

/// One metadata replica's signed answer for a read quorum collected by another node: its
/// entry of a key (`None` when it holds none), bound to the reader's nonce (see `attest`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetaAttestation {
    /// The replica's node key; its node id must be one of the key's metadata replicas.
    pub node_key: PublicKeyBytes,
    pub meta: Option<ObjectMeta>,
    pub signature: SignatureBytes,
}

/// Most signed answers a `QuorumForwarded` answer carries (a bucket's metadata replicas
/// are at most this many).
pub const MAX_ATTESTATIONS: usize = 16;

/// One sealed chunk of a forwarded read answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardedChunk {
    pub id: ChunkId,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

// Messages live only while they cross the wire; boxing the large variant would buy
// nothing but an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreResponse {
    Stored,
    Chunk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Has(Vec<bool>),
    /// The answer of version-1 replicas to `PutMeta`; `changed: false` cannot tell a write
    /// that lost from one held already, so writers count it as lost.
    MetaStored {
        changed: bool,
    },
    Meta(Option<ObjectMeta>),
    MetaList(Vec<ObjectMeta>),
    Error(String),
    /// The answer to `PutMeta` (version 2): whether the entry is held now or lost to a
    /// newer one.
    MetaMerged {
        outcome: MergeOutcome,
    },
    /// The answer to `ListMeta` (version 3): live entries in key order; `truncated` says
    /// there may be more after the last one (the limit or the byte bound was reached).
    MetaPage {
        entries: Vec<ObjectMeta>,
        truncated: bool,
    },
    /// The answer to `MetaDigests`, `MetaLeafDigests` and `ChunkDigests` (version 4).
    Digests(Vec<SetDigest>),
    /// The answer to `PutMetaMany` (version 4): per entry, what merging it did, or `None`
    /// where the entry was refused (a version dated into the future, an invalid path).
    MetaMergedMany(Vec<Option<MergeOutcome>>),
    /// The answer to `AuditChunk` (version 5): the slice with its proof.
    AuditProof {
        nonce: [u8; 16],
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// The answer to `AuditChunk` (version 5) of a node that does not hold the chunk.
    AuditNotHeld {
        nonce: [u8; 16],
    },
    /// The answer to `AuditLog` (version 5): the results the receiver signed in the epoch
    /// (at most [`MAX_AUDIT_LOG`]), and whether the epoch is over on its clock (results of
    /// an open epoch may still grow, so collectors ask again later).
    AuditLog {
        closed: bool,
        results: Vec<xnode_ledger::AuditResult>,
    },
    /// The answer to `MetaRange` (version 5): entries in key order, tombstones included;
    /// `truncated` says the replica stopped at the limit or the byte bound, so the answer
    /// covers keys only up to its last entry.
    MetaRange {
        entries: Vec<ObjectMeta>,
        truncated: bool,
    },
    /// The answer to `CommitMeta` (version 5).
    Committed(CommitOutcome),
    /// The answer to `PutMetaIf` (version 5).
    MetaMergedIf(ConditionalMerge),
    /// The answer to `ForwardedRead` (version 7).
    Forwarded(ForwardedAnswer),
    /// The answer to `DropTombstones` (version 8): per tombstone, in the order asked,
    /// whether the receiver removed it now.
    TombstonesDropped(Vec<bool>),
    /// The answer to `AttestMeta` (version 9).
    Attested(MetaAttestation),
    /// The answer to `QuorumForwardedRead` (version 9): the forwarded read's answer, and
    /// the signed answers of the read quorum the receiver collected (at most
    /// [`MAX_ATTESTATIONS`]; fewer than a quorum when too few replicas answered).
    QuorumForwarded {
        answer: ForwardedAnswer,
        attestations: Vec<MetaAttestation>,
    },
    /// The answer to `PutRetiredMany` (version 10): per tombstone, in the order asked,
    /// whether the receiver stored it now (`false`: held already, outranked, or refused).
    RetiredMerged(Vec<bool>),
    /// The answer to `MetaBucketDigests` (version 11): buckets in order, with the digest
    /// of the receiver's entries of each.
    BucketDigests(Vec<(BucketRef, SetDigest)>),
    /// The answer to `MetaRangeDigest` (version 12).
    RangeDigest(RangeDigest),
    /// The answer to `MetaRangeEncoded` (version 13): the entries' encodings in key
    /// order, tombstones included; `truncated` as in `MetaRange`.
    MetaRangeEncoded {
        entries: Vec<serde_bytes::ByteBuf>,
        truncated: bool,
    },
    /// The answer to `OpenBulk` (version 14): the bulk listener's port on the receiver's
    /// TCP address, a 16-byte one-time token that binds a connection to the asker, and
    /// the 32-byte session key of its frames.
    BulkOffered {
        port: u16,
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// What a coordinator did with a conditional write.
// The written entry is what the edge checks against its request; boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// The condition held and this entry was written with quorum.
    Written(ObjectMeta),
    /// A conditional delete of an object that does not exist: nothing was written.
    NothingToDo,
    /// The condition did not hold; nothing was written.
    PreconditionFailed,
    /// `If-Match` on a write of an object that does not exist; nothing was written.
    NoSuchKey,
    /// The replicas moved past the version the condition was decided on (a concurrent
    /// write): the write was not acknowledged.
    Conflict(String),
    /// Too few replicas answered to decide or to write.
    Unavailable(String),
}

/// A bucket named in a request: its owner and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketRef {
    pub tenant: PublicKeyBytes,
    pub name: String,
}

impl Versioned for StoreRequest {
    const KIND_TAG: u8 = kinds::STORE_REQUEST;
    const KIND_NAME: &'static str = "store request";
    // Version 2 added `rf` to `PutChunk`; version 3 replaced it by `bucket`; version 4
    // appended the anti-entropy requests, version 5 the audit requests, `MetaRange` and the
    // conditional writes; version 6 sealed object metadata (entries carry a seal) and
    // appended `CommitSealedMeta`; version 7 appended `GetTenantChunk`, version 8
    // `ForwardedRead`, version 9 `DropTombstones`, version 10 `AttestMeta` and
    // `QuorumForwardedRead`, version 11 the retired-tombstone anti-entropy requests,
    // version 12 garbage collection's `MetaBucketDigests` and `ScanBucketMeta`, version 13
    // the listing's `MetaRangeDigest`, version 14 `MetaRangeEncoded`, version 15
    // `OpenBulk`.
    const VERSION: u8 = 15;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        if (6..=14).contains(&version) {
            // Versions 7 to 15 only appended variants: a version-6 to 14 body decodes as it
            // is.
            return xnode_wire::decode_body::<Self, _>(body);
        }
        if (3..=5).contains(&version) {
            // Versions 4 and 5 only appended variants; version 6 added the seal to every
            // nested entry, so older bodies decode with entries in the unsealed layout.
            return xnode_store::decode_unsealed_layout(|| {
                xnode_wire::decode_body::<Self, _>(body)
            });
        }
        if version != 2 {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        let old: v2::StoreRequest =
            xnode_store::decode_unsealed_layout(|| xnode_wire::decode_body::<Self, _>(body))?;
        Ok(old.into())
    }
}

/// Format version 2 of [`StoreRequest`], still read: its `PutChunk` carried the sender's
/// replication factor, which is now ignored.
mod v2 {
    use serde::Deserialize;
    use xnode_store::{ChunkId, ObjectMeta, ObjectPath};
    use xnode_types::PublicKeyBytes;

    #[derive(Deserialize)]
    pub(super) enum StoreRequest {
        PutChunk {
            id: ChunkId,
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
            #[allow(dead_code)]
            rf: u8,
        },
        GetChunk {
            id: ChunkId,
        },
        HasChunks {
            ids: Vec<ChunkId>,
        },
        PutMeta {
            meta: ObjectMeta,
        },
        GetMeta {
            path: ObjectPath,
        },
        ListMeta {
            tenant: PublicKeyBytes,
            bucket: String,
            prefix: String,
            start_after: Option<String>,
            limit: u32,
        },
        ScanMeta {
            #[serde(with = "serde_bytes")]
            after: Vec<u8>,
            limit: u32,
        },
    }

    impl From<StoreRequest> for super::StoreRequest {
        fn from(old: StoreRequest) -> Self {
            use super::StoreRequest as New;
            match old {
                StoreRequest::PutChunk { id, data, .. } => New::PutChunk {
                    id,
                    data: bytes::Bytes::from(data),
                    bucket: None,
                },
                StoreRequest::GetChunk { id } => New::GetChunk { id },
                StoreRequest::HasChunks { ids } => New::HasChunks { ids },
                StoreRequest::PutMeta { meta } => New::PutMeta { meta },
                StoreRequest::GetMeta { path } => New::GetMeta { path },
                StoreRequest::ListMeta {
                    tenant,
                    bucket,
                    prefix,
                    start_after,
                    limit,
                } => New::ListMeta {
                    tenant,
                    bucket,
                    prefix,
                    start_after,
                    limit,
                },
                StoreRequest::ScanMeta { after, limit } => New::ScanMeta { after, limit },
            }
        }
    }
}

impl Versioned for StoreResponse {
    const KIND_TAG: u8 = kinds::STORE_RESPONSE;
    const KIND_NAME: &'static str = "store response";
    // Version 2 added `MetaMerged`, version 3 `MetaPage`, version 4 `Digests` and
    // `MetaMergedMany`, version 5 the audit answers, `MetaRange`, `Committed` and
    // `MetaMergedIf`; version 6 sealed the entries answers carry; version 7 appended
    // `Forwarded`, version 8 `TombstonesDropped`, version 9 `Attested` and
    // `QuorumForwarded`, version 10 `RetiredMerged`, version 11 `BucketDigests`, version
    // 12 `RangeDigest`, version 13 `MetaRangeEncoded`, version 14 `BulkOffered`.
    const VERSION: u8 = 14;

    /// Versions before 6 only appended variants, so an older body decodes as the current
    /// type, with its entries in the unsealed layout; versions 7 to 14 only appended
    /// variants, so a version-6 to 13 body decodes as it is.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        if version == 0 {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        if (6..=13).contains(&version) {
            return xnode_wire::decode_body::<Self, _>(body);
        }
        xnode_store::decode_unsealed_layout(|| xnode_wire::decode_body::<Self, _>(body))
    }
}

#[cfg(test)]
mod tests;
