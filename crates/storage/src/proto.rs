//! Messages of the storage RPC service (`store`), carried over the mesh.

use serde::{Deserialize, Serialize};
use xnode_store::{ChunkId, ObjectMeta, ObjectPath};
use xnode_types::PublicKeyBytes;
use xnode_wire::{Versioned, kinds};

/// Largest storage message accepted (a chunk plus framing).
pub const MAX_STORE_MESSAGE: usize = 20 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreRequest {
    /// Store a chunk durably; answered only after fsync.
    PutChunk {
        id: ChunkId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Copies the chunk should have (its bucket's replication factor), for repair.
        rf: u8,
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
}

// Messages live only while they cross the wire; boxing the large variant would buy
// nothing but an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreResponse {
    Stored,
    Chunk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Has(Vec<bool>),
    MetaStored { changed: bool },
    Meta(Option<ObjectMeta>),
    MetaList(Vec<ObjectMeta>),
    Error(String),
}

impl Versioned for StoreRequest {
    const KIND_TAG: u8 = kinds::STORE_REQUEST;
    const KIND_NAME: &'static str = "store request";
    // Version 2 added `rf` to `PutChunk`.
    const VERSION: u8 = 2;
}

impl Versioned for StoreResponse {
    const KIND_TAG: u8 = kinds::STORE_RESPONSE;
    const KIND_NAME: &'static str = "store response";
    const VERSION: u8 = 1;
}
