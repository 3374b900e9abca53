//! Replicated, verified, encrypted object storage: the distributed half of the store.
//!
//! `xnode-store` provides the local engine (chunk files, the metadata table, encryption,
//! manifests, placement). This module makes it a distributed system over the mesh:
//!
//! - **placement**: chunks go to `rf` nodes chosen by rendezvous hashing on the chunk id;
//!   a bucket's metadata goes to `rf` nodes chosen on the bucket, so listing a bucket is a
//!   quorum read of those nodes only (as in Garage). Both use the *stable storage set*:
//!   active nodes, including dead ones for a grace period so a short outage moves no data;
//! - **writes** are acknowledged once `W` replicas hold the data durably (fsync);
//! - **reads** take metadata from `R` replicas (the newest wins, stale replicas are
//!   repaired) and chunk bytes from any replica whose bytes hash to the chunk id;
//! - **encryption** happens here, at the edge: object data is sealed with a per-object key
//!   wrapped by the tenant's data key before any chunk leaves this node;
//! - **repair** and **scrub** run as background workers (see [`repair`]).

pub mod buckets;
pub mod details;
pub mod gc;
pub mod proto;
pub mod repair;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use xnode_mesh::{MemberState, Mesh, RpcErrorCode};
use xnode_registry::{Entry, Registry};
use xnode_store::{
    Candidate, ChunkId, ChunkRef, ChunkStore, DataKey, Manifest, MetaStore, ObjectInfo, ObjectKey,
    ObjectMeta, ObjectPath, StoreError, StoreMetrics,
};
use xnode_types::{HlcClock, NodeId, NodeRecord, NodeStatus, PublicKeyBytes};

use self::proto::{MAX_STORE_MESSAGE, StoreRequest, StoreResponse};

/// The RPC service name of storage.
pub const STORE_SERVICE: &str = "store";
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
const META_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunks stored with a replication factor other than the default, for repair.
const CHUNK_RF: xnode_db::Table = xnode_db::Table("chunk_rf");

/// Storage settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Copies of every chunk and metadata entry.
    pub replication_factor: usize,
    /// Replicas that must hold a write before it is acknowledged.
    pub write_quorum: usize,
    /// Metadata replicas that must answer a read.
    pub read_quorum: usize,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// How long a dead node stays in the storage set before its data is re-replicated.
    #[serde(with = "crate::config::duration_text")]
    pub repair_grace: Duration,
    /// How often the repair worker scans this node's data.
    #[serde(with = "crate::config::duration_text")]
    pub repair_interval: Duration,
    /// Bytes per second the scrub worker may re-hash.
    pub scrub_bytes_per_sec: u64,
    /// How often garbage collection looks for chunks no object references.
    #[serde(with = "crate::config::duration_text")]
    pub gc_interval: Duration,
    /// Unreferenced chunks younger than this are kept: they may belong to an upload in
    /// progress. It must exceed the longest upload.
    #[serde(with = "crate::config::duration_text")]
    pub gc_grace: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            write_quorum: 2,
            read_quorum: 2,
            chunk_size: xnode_store::DEFAULT_CHUNK_SIZE,
            repair_grace: Duration::from_secs(60),
            repair_interval: Duration::from_secs(5),
            scrub_bytes_per_sec: 32 * 1024 * 1024,
            gc_interval: Duration::from_secs(600),
            gc_grace: Duration::from_secs(3600),
        }
    }
}

/// Why a storage operation failed; the API maps each to a status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0:?} already exists and belongs to another tenant")]
    BucketTaken(String),
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("object {0:?} does not exist")]
    NoSuchKey(String),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("quorum not reached: {0}")]
    Quorum(String),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidName(m) => StorageError::BadRequest(m),
            other => StorageError::Internal(other.to_string()),
        }
    }
}

/// What `GET /v1/storage/health` reports, from this node's point of view.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageHealth {
    pub chunks_stored: u64,
    pub bytes_stored: u64,
    /// Chunks held here that fewer than `rf` nodes of their placement hold.
    pub under_replicated_chunks: u64,
    /// Metadata entries held here that fewer than `rf` nodes of their placement hold.
    pub under_replicated_objects: u64,
    pub repairs_in_progress: u64,
    pub repairs_done: u64,
    /// Unreferenced chunks removed by garbage collection.
    pub gc_removed_chunks: u64,
    /// Unix ms of the last completed repair scan.
    pub last_repair_scan_ms: Option<u64>,
    pub storage_nodes: usize,
    pub replication_factor: usize,
}

/// An object's metadata and the byte range a read returns.
pub struct ObjectRead {
    pub meta: ObjectMeta,
    pub info: ObjectInfo,
    /// `[start, end)` of the plaintext being returned.
    pub range: (u64, u64),
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A chunk upload in flight.
type Upload<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + Send + 'a>>;

/// Up to this many chunks of one upload are replicated while the next one is read, which
/// bounds memory to a few chunks whatever the object size.
const UPLOADS_IN_FLIGHT: usize = 4;

/// The encrypt-and-replicate pipeline of one object upload.
struct ObjectWriter<'a> {
    storage: &'a Arc<Storage>,
    set: &'a [Candidate],
    object_key: ObjectKey,
    nonce_prefix: [u8; 16],
    rf: usize,
    refs: Vec<ChunkRef>,
    md5: md5::Md5,
    hasher: blake3::Hasher,
    total: u64,
    uploads: FuturesUnordered<Upload<'a>>,
}

impl<'a> ObjectWriter<'a> {
    /// Seals one plaintext chunk and starts replicating it, waiting first if too many
    /// chunks are already in flight.
    async fn push(&mut self, plain: Vec<u8>) -> Result<(), StorageError> {
        self.md5.update(&plain);
        self.hasher.update(&plain);
        self.total += plain.len() as u64;
        let index = self.refs.len() as u64;
        let plain_len = plain.len() as u32;
        let (key, prefix) = (self.object_key.clone(), self.nonce_prefix);
        // Encryption is CPU work: keep it off the async workers.
        let sealed =
            blocking(move || xnode_store::seal_chunk(&key, &prefix, index, &plain)).await?;
        let id = ChunkId::of(&sealed);
        self.refs.push(ChunkRef { id, plain_len });
        self.storage
            .metrics
            .chunk_write_bytes
            .inc_by(sealed.len() as u64);
        self.uploads.push(Box::pin(self.storage.put_chunk(
            id,
            Bytes::from(sealed),
            self.set,
            self.rf,
        )));
        while self.uploads.len() >= UPLOADS_IN_FLIGHT {
            if let Some(result) = self.uploads.next().await {
                result?;
            }
        }
        Ok(())
    }

    /// Waits for every chunk to reach its write quorum.
    async fn finish(
        mut self,
    ) -> Result<(Vec<ChunkRef>, md5::Md5, blake3::Hasher, u64), StorageError> {
        while let Some(result) = self.uploads.next().await {
            result?;
        }
        Ok((self.refs, self.md5, self.hasher, self.total))
    }
}

/// The storage subsystem of a node.
pub struct Storage {
    pub(crate) node_id: NodeId,
    db: xnode_db::Db,
    pub(crate) chunks: Arc<ChunkStore>,
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) mesh: Mesh,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: StorageConfig,
    pub(crate) metrics: StoreMetrics,
    clock: HlcClock,
    pub(crate) repairs_in_progress: AtomicU64,
    pub(crate) health: std::sync::Mutex<StorageHealth>,
    /// Fault injection: serve chunks with a flipped byte, as a lying peer would.
    corrupt_served_chunks: std::sync::atomic::AtomicBool,
    /// Chunks that higher layers keep alive outside any object (deployed modules), asked
    /// for at every garbage-collection round.
    gc_roots: std::sync::Mutex<Vec<GcRoots>>,
}

/// A source of chunk ids garbage collection must keep.
pub type GcRoots = Arc<dyn Fn() -> Vec<ChunkId> + Send + Sync>;

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("node", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Bucket claims and deletions are signed with the tenant's clock. Bounding it to the
/// same window as request timestamps stops a claim dated in the past from winning every
/// name race, and a deletion dated in the future from blocking the name forever.
fn check_claim_clock(entry: &Entry) -> Result<(), StorageError> {
    let skew = entry.hlc.wall_ms.abs_diff(unix_ms());
    if skew > xnode_types::request_auth::MAX_CLOCK_SKEW_MS {
        return Err(StorageError::BadRequest(format!(
            "the signed bucket change is dated {} s away from this node's clock (at most {} s allowed)",
            skew / 1000,
            xnode_types::request_auth::MAX_CLOCK_SKEW_MS / 1000
        )));
    }
    Ok(())
}

/// The key a bucket's metadata is placed by.
fn bucket_placement_key(tenant: &PublicKeyBytes, bucket: &str) -> Vec<u8> {
    format!("meta/{}/{bucket}", tenant.to_hex()).into_bytes()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Internal(format!("storage task failed: {e}")))?
        .map_err(StorageError::from)
}

impl Storage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: NodeId,
        db: xnode_db::Db,
        chunks: Arc<ChunkStore>,
        meta: Arc<MetaStore>,
        mesh: Mesh,
        registry: Arc<Registry>,
        config: StorageConfig,
        metrics: StoreMetrics,
    ) -> Self {
        Self {
            node_id,
            db,
            chunks,
            meta,
            mesh,
            registry,
            config,
            metrics,
            clock: HlcClock::new(),
            repairs_in_progress: AtomicU64::new(0),
            health: Default::default(),
            corrupt_served_chunks: Default::default(),
            gc_roots: Default::default(),
        }
    }

    /// Registers chunks that garbage collection must never remove.
    pub fn add_gc_roots(&self, roots: GcRoots) {
        crate::lock(&self.gc_roots).push(roots);
    }

    pub(crate) fn gc_roots(&self) -> Vec<ChunkId> {
        let sources = crate::lock(&self.gc_roots).clone();
        sources.iter().flat_map(|f| f()).collect()
    }

    /// Makes this node serve corrupted chunk bytes to peers (fault injection for tests and
    /// drills: readers must detect it and use another replica).
    pub fn set_corrupt_served_chunks(&self, on: bool) {
        self.corrupt_served_chunks.store(on, Ordering::Relaxed);
    }

    pub fn corrupt_served_chunks(&self) -> bool {
        self.corrupt_served_chunks.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    // ----- membership -------------------------------------------------------------------

    /// The stable storage set: active nodes, with dead ones kept for the repair grace
    /// period so a short outage does not move data.
    pub fn storage_set(&self) -> Vec<Candidate> {
        let members: BTreeMap<NodeId, (MemberState, u64)> = self
            .mesh
            .members()
            .into_iter()
            .map(|m| (m.id, (m.state, m.state_since_ms)))
            .collect();
        let now = unix_ms();
        let grace = self.config.repair_grace.as_millis() as u64;
        let mut out: Vec<Candidate> = self
            .registry
            .list(NodeRecord::KEY_PREFIX)
            .iter()
            .filter_map(crate::node_record)
            .filter(|r| r.status == NodeStatus::Active)
            .filter(|r| {
                if r.node_id == self.node_id {
                    return true;
                }
                match members.get(&r.node_id) {
                    None => true,
                    Some((MemberState::Alive | MemberState::Suspect, _)) => true,
                    Some((MemberState::Dead, since)) => now.saturating_sub(*since) < grace,
                    Some((MemberState::Left, _)) => false,
                }
            })
            .map(|r| Candidate {
                id: r.node_id,
                zone: r.zone,
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// Nodes currently believed reachable (alive or suspect), including this one.
    pub(crate) fn live_nodes(&self) -> std::collections::HashSet<NodeId> {
        let mut live: std::collections::HashSet<NodeId> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| m.id)
            .collect();
        live.insert(self.node_id);
        live
    }

    pub(crate) fn placement(&self, item: &[u8], set: &[Candidate], rf: usize) -> Vec<NodeId> {
        xnode_store::place(item, set, rf)
    }

    /// The replication factor of a bucket: its own, or the node default.
    pub fn bucket_rf(&self, tenant: &PublicKeyBytes, bucket: &str) -> usize {
        buckets::owner_of(&self.registry, bucket)
            .filter(|(owner, _)| owner == tenant)
            .and_then(|(_, record)| record.replication_factor)
            .map(usize::from)
            .unwrap_or(self.config.replication_factor)
    }

    /// The replication factor recorded for a chunk this node holds.
    pub(crate) fn chunk_rf(&self, id: &ChunkId) -> usize {
        match self.db.get(CHUNK_RF, &id.0) {
            Ok(Some(v)) if v.len() == 1 && v[0] > 0 => v[0] as usize,
            _ => self.config.replication_factor,
        }
    }

    // ----- RPC to one node (local calls short-circuit) ----------------------------------

    pub(crate) async fn call(
        &self,
        node: NodeId,
        request: StoreRequest,
        timeout: Duration,
    ) -> Result<StoreResponse, StorageError> {
        if node == self.node_id {
            return self.handle(request).await;
        }
        let body =
            xnode_wire::encode(&request).map_err(|e| StorageError::Internal(e.to_string()))?;
        let bytes = self
            .mesh
            .request(node, STORE_SERVICE, body, timeout)
            .await
            .map_err(|e| StorageError::Quorum(format!("node {node}: {e}")))?;
        let response = xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE)
            .map_err(|e| StorageError::Internal(format!("node {node} answered garbage: {e}")))?;
        if let StoreResponse::Error(message) = response {
            return Err(StorageError::Internal(format!("node {node}: {message}")));
        }
        Ok(response)
    }

    /// Serves one storage request (from a peer, or from this node itself).
    pub(crate) async fn handle(
        &self,
        request: StoreRequest,
    ) -> Result<StoreResponse, StorageError> {
        match request {
            StoreRequest::PutChunk { id, data, rf } => {
                let chunks = self.chunks.clone();
                blocking(move || chunks.put(&id, &data)).await?;
                if rf as usize != self.config.replication_factor && rf > 0 {
                    // Remember a non-default rf so repair keeps that many copies.
                    self.db
                        .put(CHUNK_RF, &id.0, &[rf])
                        .map_err(|e| StorageError::Internal(e.to_string()))?;
                }
                Ok(StoreResponse::Stored)
            }
            StoreRequest::GetChunk { id } => {
                let chunks = self.chunks.clone();
                // A corrupt local copy is reported as absent: the reader tries another
                // replica and the scrubber or repair restores this one.
                match blocking(move || chunks.get(&id)).await {
                    Ok(data) => Ok(StoreResponse::Chunk(data)),
                    Err(StorageError::Internal(_)) => Ok(StoreResponse::Chunk(None)),
                    Err(e) => Err(e),
                }
            }
            StoreRequest::HasChunks { ids } => {
                let chunks = self.chunks.clone();
                let has =
                    blocking(move || ids.iter().map(|id| chunks.contains(id)).collect()).await?;
                Ok(StoreResponse::Has(has))
            }
            StoreRequest::PutMeta { meta } => {
                let store = self.meta.clone();
                let changed = blocking(move || store.merge(meta)).await?;
                Ok(StoreResponse::MetaStored { changed })
            }
            StoreRequest::GetMeta { path } => {
                let store = self.meta.clone();
                Ok(StoreResponse::Meta(
                    blocking(move || store.get(&path)).await?,
                ))
            }
            StoreRequest::ListMeta {
                tenant,
                bucket,
                prefix,
                start_after,
                limit,
            } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(10_000);
                let list = blocking(move || {
                    store.list(&tenant, &bucket, &prefix, start_after.as_deref(), limit)
                })
                .await?;
                Ok(StoreResponse::MetaList(list))
            }
            StoreRequest::ScanMeta { after, limit } => {
                let store = self.meta.clone();
                let limit = (limit as usize).min(10_000);
                let after = (!after.is_empty()).then_some(after);
                let list = blocking(move || store.scan(after.as_deref(), limit)).await?;
                Ok(StoreResponse::MetaList(list))
            }
        }
    }

    /// Serves the `store` RPC service until the mesh closes.
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut inbound: tokio::sync::mpsc::Receiver<xnode_mesh::InboundRequest>,
    ) {
        while let Some(request) = inbound.recv().await {
            let this = self.clone();
            tokio::spawn(async move {
                let answer =
                    match xnode_wire::decode::<StoreRequest>(&request.body, MAX_STORE_MESSAGE) {
                        Ok(req) => {
                            match this.handle(req).await.map(|resp| this.maybe_corrupt(resp)) {
                                Ok(resp) => xnode_wire::encode(&resp)
                                    .map_err(|e| (RpcErrorCode::Internal, e.to_string())),
                                Err(e) => xnode_wire::encode(&StoreResponse::Error(e.to_string()))
                                    .map_err(|e| (RpcErrorCode::Internal, e.to_string())),
                            }
                        }
                        Err(e) => Err((RpcErrorCode::BadRequest, e.to_string())),
                    };
                let _ = request.reply.send(answer);
            });
        }
    }

    fn maybe_corrupt(&self, response: StoreResponse) -> StoreResponse {
        match response {
            StoreResponse::Chunk(Some(mut data))
                if self.corrupt_served_chunks() && !data.is_empty() =>
            {
                data[0] ^= 0xff;
                StoreResponse::Chunk(Some(data))
            }
            other => other,
        }
    }

    // ----- chunks -----------------------------------------------------------------------

    /// Stores a chunk on its placement; succeeds once `W` replicas hold it durably. The
    /// remaining replicas are written in the background (repair covers any that fail).
    pub(crate) async fn put_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        data: Bytes,
        set: &[Candidate],
        rf: usize,
    ) -> Result<(), StorageError> {
        let targets = self.placement(&id.0, set, rf);
        let needed = self.config.write_quorum.min(targets.len()).max(1);
        let (tx, mut rx) = tokio::sync::mpsc::channel(targets.len().max(1));
        for node in targets {
            let this = self.clone();
            let data = data.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let request = StoreRequest::PutChunk {
                    id,
                    data: data.to_vec(),
                    rf: rf as u8,
                };
                let result = this.call(node, request, CHUNK_TIMEOUT).await;
                let _ = tx.send((node, result)).await;
            });
        }
        drop(tx);
        let mut ok = 0;
        let mut errors = Vec::new();
        while let Some((node, result)) = rx.recv().await {
            match result {
                Ok(_) => {
                    ok += 1;
                    if ok >= needed {
                        return Ok(());
                    }
                }
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        self.metrics.quorum_failures.inc();
        Err(StorageError::Quorum(format!(
            "chunk {id} reached {ok} of {needed} required replicas ({})",
            errors.join("; ")
        )))
    }

    /// Reads a chunk from any replica whose bytes match its id. A replica that sends wrong
    /// bytes is counted and skipped.
    pub(crate) async fn get_chunk(
        &self,
        id: ChunkId,
        set: &[Candidate],
    ) -> Result<Vec<u8>, StorageError> {
        let mut targets = self.placement(&id.0, set, self.config.replication_factor);
        // Try this node first (no network), then live replicas, then the rest.
        let live = self.live_nodes();
        targets.sort_by_key(|n| (*n != self.node_id, !live.contains(n)));
        // Nodes outside the placement may still hold it (older placements, repairs).
        for c in set {
            if !targets.contains(&c.id) && live.contains(&c.id) {
                targets.push(c.id);
            }
        }
        let mut errors = Vec::new();
        for node in targets {
            match self
                .call(node, StoreRequest::GetChunk { id }, CHUNK_TIMEOUT)
                .await
            {
                Ok(StoreResponse::Chunk(Some(data))) => {
                    if ChunkId::of(&data) == id {
                        self.metrics.chunk_read_bytes.inc_by(data.len() as u64);
                        return Ok(data);
                    }
                    self.metrics.bad_replica_reads.inc();
                    tracing::warn!(%node, chunk = %id, "a replica sent bytes that do not match the chunk id; trying another");
                    errors.push(format!("{node}: wrong bytes"));
                }
                Ok(_) => errors.push(format!("{node}: missing")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(StorageError::Quorum(format!(
            "no replica could serve chunk {id} ({})",
            errors.join("; ")
        )))
    }

    // ----- metadata ---------------------------------------------------------------------

    /// Sends one request per target concurrently and returns as soon as `needed` of them
    /// succeeded (or all finished). The calls still running go on in the background, so a
    /// write keeps reaching the remaining replicas after the quorum acknowledged it.
    async fn quorum_call(
        self: &Arc<Self>,
        targets: &[NodeId],
        request: StoreRequest,
        needed: usize,
    ) -> (Vec<(NodeId, StoreResponse)>, Vec<String>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(targets.len().max(1));
        for &node in targets {
            let this = self.clone();
            let request = request.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = this.call(node, request, META_TIMEOUT).await;
                let _ = tx.send((node, result)).await;
            });
        }
        drop(tx);
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        while let Some((node, result)) = rx.recv().await {
            match result {
                Ok(response) => answers.push((node, response)),
                Err(e) => errors.push(e.to_string()),
            }
            if answers.len() >= needed {
                break;
            }
        }
        (answers, errors)
    }

    async fn put_meta(
        self: &Arc<Self>,
        meta: ObjectMeta,
        set: &[Candidate],
    ) -> Result<(), StorageError> {
        let rf = self.bucket_rf(&meta.path.tenant, &meta.path.bucket);
        let targets = self.placement(
            &bucket_placement_key(&meta.path.tenant, &meta.path.bucket),
            set,
            rf,
        );
        let needed = self.config.write_quorum.min(targets.len()).max(1);
        let (answers, errors) = self
            .quorum_call(&targets, StoreRequest::PutMeta { meta }, needed)
            .await;
        if answers.len() >= needed {
            return Ok(());
        }
        self.metrics.quorum_failures.inc();
        Err(StorageError::Quorum(format!(
            "metadata write reached {} of {needed} required replicas ({})",
            answers.len(),
            errors.join("; ")
        )))
    }

    /// Reads an object's metadata from `R` replicas: with `W + R > rf`, they include the
    /// latest acknowledged write. The newest version wins and stale replicas are repaired
    /// in the background.
    async fn get_meta(
        self: &Arc<Self>,
        path: &ObjectPath,
        set: &[Candidate],
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let rf = self.bucket_rf(&path.tenant, &path.bucket);
        let targets = self.placement(&bucket_placement_key(&path.tenant, &path.bucket), set, rf);
        let needed = self.config.read_quorum.min(targets.len()).max(1);
        let (answers, errors) = self
            .quorum_call(
                &targets,
                StoreRequest::GetMeta { path: path.clone() },
                needed,
            )
            .await;
        let answers: Vec<(NodeId, Option<ObjectMeta>)> = answers
            .into_iter()
            .filter_map(|(node, r)| match r {
                StoreResponse::Meta(m) => Some((node, m)),
                _ => None,
            })
            .collect();
        if answers.len() < needed {
            self.metrics.quorum_failures.inc();
            return Err(StorageError::Quorum(format!(
                "only {} of {needed} metadata replicas answered ({})",
                answers.len(),
                errors.join("; ")
            )));
        }
        let newest = answers
            .iter()
            .filter_map(|(_, m)| m.clone())
            .reduce(|a, b| if b.supersedes(&a) { b } else { a });
        if let Some(newest) = &newest {
            self.clock.observe(newest.version);
            for (node, m) in &answers {
                if m.as_ref().is_none_or(|m| newest.supersedes(m)) {
                    let (this, node, meta) = (self.clone(), *node, newest.clone());
                    tokio::spawn(async move {
                        let _ = this
                            .call(node, StoreRequest::PutMeta { meta }, META_TIMEOUT)
                            .await;
                    });
                }
            }
        }
        Ok(newest)
    }

    // ----- buckets ----------------------------------------------------------------------

    fn require_bucket(&self, tenant: &PublicKeyBytes, bucket: &str) -> Result<(), StorageError> {
        match buckets::owner_of(&self.registry, bucket) {
            Some((owner, _)) if owner == *tenant => Ok(()),
            Some(_) => Err(StorageError::AccessDenied(format!(
                "bucket {bucket:?} belongs to another tenant"
            ))),
            None => Err(StorageError::NoSuchBucket(bucket.to_owned())),
        }
    }

    /// Creates a bucket from a claim the tenant signed. Returns the applied entry (for gossip).
    pub fn create_bucket(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        claim: Entry,
    ) -> Result<Entry, StorageError> {
        xnode_store::validate_bucket_name(name)?;
        if claim.owner != *tenant || claim.key != buckets::bucket_key(tenant, name) {
            return Err(StorageError::BadRequest(
                "the signed claim does not match the bucket and tenant".into(),
            ));
        }
        check_claim_clock(&claim)?;
        let Some(record) = buckets::decode_claim(&claim) else {
            return Err(StorageError::BadRequest(
                "the signed claim's record is malformed".into(),
            ));
        };
        if let Some(rf) = record.replication_factor
            && !(1..=16).contains(&rf)
        {
            return Err(StorageError::BadRequest(format!(
                "replication factor {rf} must be between 1 and 16"
            )));
        }
        if let Some((owner, _)) = buckets::owner_of(&self.registry, name)
            && owner != *tenant
        {
            return Err(StorageError::BucketTaken(name.to_owned()));
        }
        self.registry
            .apply_remote(claim.clone())
            .map_err(|e| StorageError::BadRequest(format!("bucket claim refused: {e}")))?;
        Ok(claim)
    }

    /// Deletes an empty bucket with a tombstone the tenant signed.
    pub async fn delete_bucket(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        name: &str,
        tombstone: Entry,
    ) -> Result<Entry, StorageError> {
        self.require_bucket(tenant, name)?;
        check_claim_clock(&tombstone)?;
        if tombstone.owner != *tenant
            || tombstone.key != buckets::bucket_key(tenant, name)
            || !tombstone.is_tombstone()
        {
            return Err(StorageError::BadRequest(
                "the signed deletion does not match the bucket and tenant".into(),
            ));
        }
        let objects = self.list_objects(tenant, name, "", None, 1).await?;
        if !objects.is_empty() {
            return Err(StorageError::BucketNotEmpty(name.to_owned()));
        }
        self.registry
            .apply_remote(tombstone.clone())
            .map_err(|e| StorageError::BadRequest(format!("bucket deletion refused: {e}")))?;
        if buckets::owner_of(&self.registry, name).is_some_and(|(owner, _)| owner == *tenant) {
            return Err(StorageError::BadRequest(
                "the deletion is older than the bucket's claim; sign it with the current time"
                    .into(),
            ));
        }
        Ok(tombstone)
    }

    pub fn list_buckets(&self, tenant: &PublicKeyBytes) -> Vec<buckets::BucketRecord> {
        buckets::owned_by(&self.registry, tenant)
    }

    // ----- objects ----------------------------------------------------------------------

    /// Stores an object streamed from `body`, encrypting it at this edge. Nothing is visible
    /// until every chunk and the manifest reached their write quorum and the metadata was
    /// written: an interrupted upload leaves no object (only unreferenced chunks, which
    /// garbage collection removes).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_object<S, E>(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        data_key: &DataKey,
        content_type: String,
        user_meta: BTreeMap<String, String>,
        expected_len: Option<u64>,
        mut body: S,
    ) -> Result<ObjectMeta, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let set = self.storage_set();
        let rf = self.bucket_rf(tenant, bucket);
        if set.len() < self.config.write_quorum.min(rf) {
            return Err(StorageError::Quorum(format!(
                "only {} storage nodes are available, {} are needed",
                set.len(),
                self.config.write_quorum
            )));
        }
        let object_key = ObjectKey::generate();
        let nonce_prefix = xnode_store::random_nonce_prefix();
        let aad = path.storage_key();
        let wrapped_key = xnode_store::wrap_key(data_key, &object_key, &aad)?;
        let chunk_size = self.config.chunk_size as usize;

        let mut writer = ObjectWriter {
            storage: self,
            set: &set,
            object_key,
            nonce_prefix,
            rf,
            refs: Vec::new(),
            md5: md5::Md5::new(),
            hasher: blake3::Hasher::new(),
            total: 0,
            uploads: FuturesUnordered::new(),
        };
        let mut buffer: Vec<u8> = Vec::with_capacity(chunk_size);
        loop {
            match body.next().await {
                Some(Ok(bytes)) => {
                    let mut bytes = &bytes[..];
                    while !bytes.is_empty() {
                        let take = (chunk_size - buffer.len()).min(bytes.len());
                        buffer.extend_from_slice(&bytes[..take]);
                        bytes = &bytes[take..];
                        if buffer.len() == chunk_size {
                            let plain =
                                std::mem::replace(&mut buffer, Vec::with_capacity(chunk_size));
                            writer.push(plain).await?;
                        }
                    }
                }
                Some(Err(e)) => return Err(StorageError::Interrupted(e.to_string())),
                None => break,
            }
        }
        if !buffer.is_empty() {
            writer.push(buffer).await?;
        }
        let (refs, md5, hasher, total) = writer.finish().await?;
        if let Some(expected) = expected_len
            && expected != total
        {
            return Err(StorageError::Interrupted(format!(
                "received {total} of {expected} bytes"
            )));
        }

        let manifest = Manifest {
            object_size: total,
            chunk_size: self.config.chunk_size,
            chunks: refs,
            nonce_prefix,
            wrapped_key,
            plaintext_blake3: *hasher.finalize().as_bytes(),
            segments: Vec::new(),
        };
        let encoded = manifest.encode()?;
        let manifest_id = Manifest::id_of(&encoded);
        self.put_chunk(manifest_id, Bytes::from(encoded), &set, rf)
            .await?;

        let meta = ObjectMeta {
            path,
            version: self.clock.now(),
            writer: self.node_id,
            info: Some(ObjectInfo {
                manifest: manifest_id,
                size: total,
                etag: hex::encode(md5.finalize()),
                content_type,
                user_meta,
                created_ms: unix_ms(),
            }),
        };
        self.put_meta(meta.clone(), &set).await?;
        Ok(meta)
    }

    /// An object's current metadata (never a tombstone).
    pub async fn head_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectMeta, ObjectInfo), StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let set = self.storage_set();
        match self.get_meta(&path, &set).await? {
            Some(meta) => match meta.info.clone() {
                Some(info) => Ok((meta, info)),
                None => Err(StorageError::NoSuchKey(key.to_owned())),
            },
            None => Err(StorageError::NoSuchKey(key.to_owned())),
        }
    }

    /// The manifest of an object, fetched and verified.
    pub async fn manifest(&self, info: &ObjectInfo) -> Result<Manifest, StorageError> {
        let set = self.storage_set();
        let bytes = self.get_chunk(info.manifest, &set).await?;
        Ok(Manifest::decode(&bytes)?)
    }

    /// Reads an object, or the byte range `[start, end)` of it, decrypting at this edge.
    pub async fn get_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        data_key: &DataKey,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, StorageError> {
        let (meta, info) = self.head_object(tenant, bucket, key).await?;
        let manifest = self.manifest(&info).await?;
        let size = manifest.object_size;
        let (start, end) = match range {
            None => (0, size),
            Some((start, end)) => {
                let end = end.map(|e| e.saturating_add(1).min(size)).unwrap_or(size);
                if start >= size || start >= end {
                    return Err(StorageError::InvalidRange(format!(
                        "range starts at {start} but the object has {size} bytes"
                    )));
                }
                (start, end)
            }
        };
        // One object key per segment (a single-segment object has one).
        let aad = meta.path.storage_key();
        let mut keys = Vec::with_capacity(manifest.segment_count());
        for i in 0..manifest.segment_count() {
            let Some(segment) = manifest.segment(i) else {
                break;
            };
            let key =
                xnode_store::unwrap_key(data_key, segment.wrapped_key, &aad).map_err(|_| {
                    StorageError::AccessDenied(
                        "the data key does not open this object (wrong tenant key?)".into(),
                    )
                })?;
            keys.push((key, segment.nonce_prefix, segment.chunks.to_vec()));
        }
        let pieces = if start == end {
            Vec::new()
        } else {
            manifest.pieces_for_range(start, end)
        };
        let set = self.storage_set();
        let this = self.clone();
        let keys = Arc::new(keys);
        // Fetch up to 4 chunks ahead while the client reads; memory stays bounded.
        let body = futures::stream::iter(pieces)
            .map(move |piece| {
                let this = this.clone();
                let set = set.clone();
                let keys = keys.clone();
                async move {
                    let Some((object_key, nonce_prefix, chunks)) = keys.get(piece.segment) else {
                        return Err(StorageError::Internal(format!(
                            "segment {} is missing from the manifest",
                            piece.segment
                        )));
                    };
                    let Some(chunk) = chunks.get(piece.chunk) else {
                        return Err(StorageError::Internal(format!(
                            "chunk {} is missing from the manifest",
                            piece.chunk
                        )));
                    };
                    let sealed = this.get_chunk(chunk.id, &set).await?;
                    let plain = xnode_store::open_chunk(
                        object_key,
                        nonce_prefix,
                        piece.chunk as u64,
                        &sealed,
                    )?;
                    let from = piece.offset as usize;
                    let to = from + piece.len as usize;
                    if to > plain.len() {
                        return Err(StorageError::Internal(format!(
                            "chunk {} is shorter than its manifest says",
                            piece.chunk
                        )));
                    }
                    Ok(Bytes::copy_from_slice(&plain[from..to]))
                }
            })
            .buffered(4);
        Ok(ObjectRead {
            meta,
            info,
            range: (start, end),
            body: Box::pin(body),
        })
    }

    /// Deletes an object by writing a tombstone with quorum.
    pub async fn delete_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> Result<(), StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let set = self.storage_set();
        let meta = ObjectMeta {
            path,
            version: self.clock.now(),
            writer: self.node_id,
            info: None,
        };
        self.put_meta(meta, &set).await
    }

    /// Makes one object out of existing objects of this tenant, given as `(bucket, key)`
    /// (for example the parts of a multipart upload, kept as internal objects, or the source
    /// of a copy), in order, **without copying their data**: the new manifest lists each source's chunks as a segment, with the source's
    /// object key re-wrapped for the new path. The sources stay as they are (the caller
    /// deletes them); their chunks are then referenced by the new object. The ETag is the
    /// caller's (S3 computes multipart ETags its own way). Like `put_object`, nothing is
    /// visible until the metadata write succeeds.
    #[allow(clippy::too_many_arguments)]
    pub async fn compose_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        data_key: &DataKey,
        sources: &[(String, String)],
        content_type: String,
        user_meta: BTreeMap<String, String>,
        etag: String,
    ) -> Result<ObjectMeta, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let aad = path.storage_key();
        let mut segments: Vec<xnode_store::Segment> = Vec::with_capacity(sources.len());
        for (source_bucket, source_key) in sources {
            let (source_meta, info) = self.head_object(tenant, source_bucket, source_key).await?;
            let manifest = self.manifest(&info).await?;
            let source_aad = source_meta.path.storage_key();
            for i in 0..manifest.segment_count() {
                let Some(segment) = manifest.segment(i) else {
                    break;
                };
                let object_key =
                    xnode_store::unwrap_key(data_key, segment.wrapped_key, &source_aad).map_err(
                        |_| {
                            StorageError::AccessDenied(
                                "the data key does not open a source object (wrong tenant key?)"
                                    .into(),
                            )
                        },
                    )?;
                let size = segment.chunks.iter().map(|c| u64::from(c.plain_len)).sum();
                if size == 0 {
                    continue;
                }
                segments.push(xnode_store::Segment {
                    size,
                    chunk_size: segment.chunk_size,
                    chunks: segment.chunks.to_vec(),
                    nonce_prefix: segment.nonce_prefix,
                    wrapped_key: xnode_store::wrap_key(data_key, &object_key, &aad)?,
                    plaintext_blake3: if i == 0 && manifest.segments.is_empty() {
                        manifest.plaintext_blake3
                    } else {
                        [0u8; 32]
                    },
                });
            }
        }
        let object_size = segments.iter().map(|s| s.size).sum();
        let manifest = if segments.is_empty() {
            // An empty object: one empty segment under a fresh key.
            Manifest {
                object_size: 0,
                chunk_size: self.config.chunk_size,
                chunks: Vec::new(),
                nonce_prefix: xnode_store::random_nonce_prefix(),
                wrapped_key: xnode_store::wrap_key(data_key, &ObjectKey::generate(), &aad)?,
                plaintext_blake3: *blake3::hash(&[]).as_bytes(),
                segments: Vec::new(),
            }
        } else {
            let first = segments.remove(0);
            Manifest {
                object_size,
                chunk_size: first.chunk_size,
                chunks: first.chunks,
                nonce_prefix: first.nonce_prefix,
                wrapped_key: first.wrapped_key,
                plaintext_blake3: first.plaintext_blake3,
                segments,
            }
        };
        manifest.validate()?;
        let set = self.storage_set();
        let rf = self.bucket_rf(tenant, bucket);
        let encoded = manifest.encode()?;
        let manifest_id = Manifest::id_of(&encoded);
        self.put_chunk(manifest_id, Bytes::from(encoded), &set, rf)
            .await?;
        let meta = ObjectMeta {
            path,
            version: self.clock.now(),
            writer: self.node_id,
            info: Some(ObjectInfo {
                manifest: manifest_id,
                size: object_size,
                etag,
                content_type,
                user_meta,
                created_ms: unix_ms(),
            }),
        };
        self.put_meta(meta.clone(), &set).await?;
        Ok(meta)
    }

    /// Lists a bucket's live objects in key order, merging `R` replicas' answers.
    pub async fn list_objects(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let set = self.storage_set();
        let rf = self.bucket_rf(tenant, bucket);
        let targets = self.placement(&bucket_placement_key(tenant, bucket), &set, rf);
        let needed = self.config.read_quorum.min(targets.len()).max(1);
        // Replicas answer live entries only, so a key deleted on one replica but not yet
        // on another could show here; each listed key is therefore confirmed below by a
        // quorum read, which sees the tombstone.
        let results = futures::future::join_all(targets.iter().map(|&node| {
            let request = StoreRequest::ListMeta {
                tenant: *tenant,
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                start_after: start_after.map(str::to_owned),
                limit: limit as u32,
            };
            async move { (node, self.call(node, request, META_TIMEOUT).await) }
        }))
        .await;
        let mut merged: BTreeMap<String, ObjectMeta> = BTreeMap::new();
        let mut answered = 0;
        let mut errors = Vec::new();
        for (node, result) in results {
            match result {
                Ok(StoreResponse::MetaList(list)) => {
                    answered += 1;
                    for meta in list {
                        match merged.get(&meta.path.key) {
                            Some(existing) if !meta.supersedes(existing) => {}
                            _ => {
                                merged.insert(meta.path.key.clone(), meta);
                            }
                        }
                    }
                }
                Ok(_) => errors.push(format!("{node}: unexpected answer")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if answered < needed {
            self.metrics.quorum_failures.inc();
            return Err(StorageError::Quorum(format!(
                "only {answered} of {needed} metadata replicas answered ({})",
                errors.join("; ")
            )));
        }
        // Confirm each listed key against a quorum read, so a key deleted on the quorum
        // does not show from a stale replica.
        let mut out = Vec::new();
        for (_, meta) in merged.into_iter() {
            if out.len() >= limit {
                break;
            }
            match self.get_meta(&meta.path, &set).await? {
                Some(current) if current.info.is_some() => out.push(current),
                _ => {}
            }
        }
        Ok(out)
    }

    /// This node's storage health.
    pub fn health(&self) -> StorageHealth {
        let mut health = match self.health.lock() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let stats = self.chunks.stats();
        health.chunks_stored = stats.chunks;
        health.bytes_stored = stats.bytes;
        health.repairs_in_progress = self.repairs_in_progress.load(Ordering::Relaxed);
        health.storage_nodes = self.storage_set().len();
        health.replication_factor = self.config.replication_factor;
        health
    }
}
