//! The storage engine: content-addressed chunks on local disk, object manifests, per-object
//! encryption, one replica's share of the object metadata table, and replica placement.
//!
//! This crate does no networking and no HTTP. The node wires it to the mesh (replication,
//! quorum, repair) and the API wires it to clients; everything here is local and
//! synchronous, so callers run it on blocking threads (`spawn_blocking`).
//!
//! Layout on disk, under the directory given to [`ChunkStore::open`]:
//!
//! ```text
//! <dir>/<first 2 hex digits>/<64 hex digits>        one file per chunk
//! <dir>/<first 2 hex digits>/<hex>.<random>.tmp     a write in progress (removed at open)
//! <dir>/quarantine/<hex>.<ms>.<random>              chunks that failed verification
//! ```
//!
//! Indexes live in the node's database: table `chunks` (chunk id -> size) and table
//! `objects` (object path -> encoded [`ObjectMeta`]).

pub mod chunker;
pub mod chunks;
pub mod crypto;
pub mod entropy;
pub mod keyring;
pub mod manifest;
pub mod meta;
pub mod metrics;
pub mod placement;
pub mod proof;
pub mod seal;
pub mod trash;

use std::path::Path;

pub use chunker::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
pub use chunks::{ChunkId, ChunkStats, ChunkStore, PutOutcome, ScrubBatch};
pub use crypto::{
    DataKey, ObjectKey, TAG_LEN, WrappedKey, open_chunk, random_nonce_prefix, seal_chunk,
    unwrap_key, wrap_key,
};
pub use keyring::{BucketKey, KEY_CHECK_CONTEXT, KeyCheck, Keyring, ScopedKeys};
pub use manifest::{ChunkRef, MAX_MANIFEST_BYTES, Manifest, Piece, Segment, SegmentView, wrap_aad};
pub use meta::{
    BucketName, COMPLIANCE_MODE, ConditionalMerge, DigestRange, EncodedRange, INTERNAL_KEY_PREFIX,
    LOCK_MODE_ENTRY, LOCK_UNTIL_ENTRY, MAX_META_BYTES, MergeOutcome, MetaRange, MetaStore,
    ObjectInfo, ObjectMeta, ObjectPath, RangeDigest, VERSIONS_DIRECTORY, decode_unsealed_layout,
    internal_key, is_internal_key, validate_bucket_name, validate_object_key,
};
pub use metrics::StoreMetrics;
pub use placement::{Candidate, RegionError, in_regions, place, validate_regions};
pub use proof::{
    MAX_AUDIT_SLICE, MIN_AUDIT_SLICE, ProofError, check_slice, max_proof_len, prove_slice,
    verify_slice,
};
pub use seal::{
    ComputeCheck, MetaSeal, NoCompute, NoRevocations, RevocationCheck, RevocationStatus, SealError,
    TenantRequestProof, VerifiedSeals, WriteAuthority,
};
pub use trash::Trash;

/// Errors from the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk {id} is corrupt on disk and was quarantined")]
    Corrupt { id: ChunkId },
    #[error("chunk bytes hash to {actual}, not to the expected {expected}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error(transparent)]
    Db(#[from] xnode_db::DbError),
    #[error(transparent)]
    Wire(#[from] xnode_wire::WireError),
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// A keyring was asked for a key it does not hold: a bucket outside a compute node's
    /// granted scope, or an object wrapped under a key the keyring lacks.
    #[error("no key for bucket {bucket:?}: {reason}")]
    KeyNotHeld { bucket: String, reason: String },
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("invalid chunk id: {0}")]
    InvalidId(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// Data that decrypted or decoded but does not match its authentication (a manifest
    /// whose MAC fails): a peer altered it.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("malformed chunk index entry: {0}")]
    Index(String),
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

/// Builds the `map_err` closure for an I/O error on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The smallest byte string greater than `key`: scans that must exclude a cursor start here.
pub(crate) fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// Shortens untrusted text before it goes into an error message, so a peer cannot make us
/// build (and log) arbitrarily large strings.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX).collect();
    out.push('…');
    out
}
