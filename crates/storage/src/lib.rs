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

mod attest;
pub mod audit;
pub mod bucket_settings;
pub mod buckets;
pub mod bulk;
pub mod conditional;
pub mod details;
pub mod drain;
mod entropy;
mod forward;
pub mod gc;
mod hedge;
mod listing;
pub mod metered;
mod objects;
mod placement;
pub mod proto;
mod quorum;
pub mod quota;
pub(crate) mod range;
pub mod repair;
mod replicas;
mod rpc;
mod seals;
pub mod tombstones;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_mesh::{Endpoint, MemberState, Mesh};
use xnode_registry::Registry;
use xnode_registry::admission::Admission;
use xnode_store::{Candidate, ChunkId, ChunkStore, MetaStore, StoreError, StoreMetrics};
use xnode_types::{HlcClock, NodeId, NodeStatus, PublicKeyBytes, SecretKey, lock, unix_ms};

pub use hedge::{MAX_HEDGE_DELAY, MIN_HEDGE_DELAY};
pub use objects::{ObjectRead, OpenedObject};
pub use placement::{MAX_REPLICATION_FACTOR, PLACEMENT_SLACK};
pub use quota::{TenantQuota, Usage};
pub use range::common_prefix;
pub use rpc::StoreService;
pub use seals::ComputeAuthority;

pub(crate) const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const META_TIMEOUT: Duration = Duration::from_secs(5);
/// How far ahead of a replica's clock an object metadata version may be. Replicas refuse
/// `PutMeta` beyond it and readers ignore such entries, so no one can date a write (or a
/// tombstone) into the future and pin a key. It equals the bound up to which an edge's
/// hybrid logical clock absorbs the versions it reads: every entry a reader accepts is
/// absorbed, so the edge's next version is above it (see `Storage::write_meta`).
pub const MAX_VERSION_AHEAD_MS: u64 = xnode_types::HlcClock::DEFAULT_MAX_DRIFT_MS;

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
    /// How long a metadata read keeps listening to the replicas beyond its quorum (at
    /// least as long as the quorum took): a lying replica and one that missed a write
    /// cannot then hide the latest write from a reader while the replica that holds it
    /// answers in time. A silent replica costs a read at most this much; zero turns it off.
    #[serde(with = "xnode_types::duration_text")]
    pub read_linger: Duration,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// How long a dead node stays in the storage set before its data is re-replicated.
    #[serde(with = "xnode_types::duration_text")]
    pub repair_grace: Duration,
    /// How often the repair worker checks whether an anti-entropy round is needed (it
    /// runs one only when this node's data, the storage set or the live members changed,
    /// or a peer saw a difference).
    #[serde(with = "xnode_types::duration_text")]
    pub repair_interval: Duration,
    /// The longest time between two anti-entropy rounds even when nothing seems to have
    /// changed: the bound on how long a silently lost replica (a chunk deleted on a peer's
    /// disk) can go unnoticed.
    #[serde(with = "xnode_types::duration_text")]
    pub anti_entropy_full_interval: Duration,
    /// Bytes per second the scrub worker may re-hash at most (a throttle).
    pub scrub_bytes_per_sec: u64,
    /// How often every local chunk is re-hashed: the scrubber paces each pass over this
    /// period and rests between passes.
    #[serde(with = "xnode_types::duration_text")]
    pub scrub_period: Duration,
    /// How often garbage collection looks for chunks no object references.
    #[serde(with = "xnode_types::duration_text")]
    pub gc_interval: Duration,
    /// Unreferenced chunks younger than this are kept: they may belong to an upload in
    /// progress. It must exceed the longest upload.
    #[serde(with = "xnode_types::duration_text")]
    pub gc_grace: Duration,
    /// How long chunks garbage collection removed stay in the trash (where a read that
    /// misses them restores them) before they are deleted for good.
    #[serde(with = "xnode_types::duration_text")]
    pub gc_trash_retention: Duration,
    /// A node whose own record has not been re-signed for this long (it crashed or went
    /// away without leaving) no longer counts as a metadata holder whose answer garbage
    /// collection waits for. Shorter than `gc_trash_retention`, so that what a round
    /// removes meanwhile is still in the trash, and restored by the first read, if the node
    /// comes back with metadata that refers to it.
    #[serde(with = "xnode_types::duration_text")]
    pub gc_silent_holder_after: Duration,
    /// Most metadata entries (and buckets) one garbage-collection round reads from all
    /// nodes together, or remembers from its last round; a round that would go past it (a
    /// peer answering with endless pages) stops and removes nothing. It bounds the round's
    /// memory (about 50 bytes per entry).
    pub gc_max_scan_entries: u64,
    /// How old a delete's tombstone (by its version's clock) must be before garbage
    /// collection may retire it from the metadata table to the cold table, once every
    /// metadata holder confirmed holding it (see [`tombstones`]). A retired tombstone
    /// still outranks older versions on the nodes that retired it; the grace bounds how
    /// long a write may be in flight, or a replica out of reach, and still meet the
    /// tombstone in the hot table (and travel with it by anti-entropy).
    #[serde(with = "xnode_types::duration_text")]
    pub tombstone_grace: Duration,
    /// Whether this node collects tombstones and retires them when a peer asks (on by
    /// default). A collected tombstone moves to the cold table, out of listings, digests
    /// and scans but still consulted by merges and point reads, so a holder that confirmed
    /// it while keeping an older version of the key cannot bring that version back while
    /// a replica that retired it answers. Retired tombstones follow a bucket's placement
    /// by anti-entropy, so replicas placed on the bucket after a collection hold them too
    /// (see SECURITY.md). Off, tombstones stay in the hot table for ever and every drop a
    /// peer asks for is refused; retired tombstones peers pass on are still taken.
    pub collect_tombstones: bool,
    /// Bytes the replica writes that go on after a write's quorum acknowledged it may hold
    /// on this node at once; beyond it, the extra copies are left to repair.
    pub background_copy_bytes: u64,
    /// Storage audits (see [`audit`]): whether this node challenges its peers and keeps
    /// low-reputation nodes out of placement.
    pub audit_enabled: bool,
    /// The detection target: a node that silently lost this share of its chunks (ppm) ...
    pub audit_detect_loss_ppm: u32,
    /// ... is caught with this probability (ppm) ...
    pub audit_confidence_ppm: u32,
    /// ... within this window. Together they set the audit rate
    /// ([`audit::challenges_per_window`]).
    #[serde(with = "xnode_types::duration_text")]
    pub audit_window: Duration,
    /// The length of a settlement epoch: audit results are signed into epochs, and only
    /// closed epochs count towards reputation.
    #[serde(with = "xnode_types::duration_text")]
    pub audit_epoch: Duration,
    /// How many closed epochs of audits reputation is computed over.
    pub audit_reputation_epochs: u32,
    /// Nodes whose reputation is below this (ppm) get no data placed on them.
    pub audit_min_score_ppm: u64,
    /// How long a challenged peer has to answer before the challenge counts as failed.
    #[serde(with = "xnode_types::duration_text")]
    pub audit_timeout: Duration,
    /// Chunks younger than this, and any chunk while the storage set changed more recently
    /// than this, are not audited: repair may not have placed them yet.
    #[serde(with = "xnode_types::duration_text")]
    pub audit_settle: Duration,
    /// An auditor challenges a peer on a chunk only once its own repair round, begun after
    /// the storage set last changed and after it got the chunk, compared with the peer and
    /// copied it everything it lacked (so an honest peer is never failed for a chunk repair
    /// has not given it yet). A peer that round never completes with (it refuses digests
    /// or copies) is challenged anyway once the set and the chunk are this old.
    #[serde(with = "xnode_types::duration_text")]
    pub audit_unsynced_after: Duration,
    /// How often the node collects its peers' audit results and recomputes reputation.
    #[serde(with = "xnode_types::duration_text")]
    pub audit_collect_interval: Duration,
    /// Storage quotas per tenant (`[storage.quota]`), enforced at the edge; off by default.
    pub quota: TenantQuota,
    /// Whether this node sends its uploads' data chunks to replicas, and takes them from
    /// edges, over the bulk link (a TCP connection beside the mesh; the chunks are sealed
    /// already, and the request is sealed per frame), instead of through the mesh's
    /// encrypted transport. Off, or where a link cannot be opened, chunks go by the mesh.
    pub bulk_link: bool,
    /// The bulk link's TCP port, on the host of the node's first TCP listen address; 0
    /// picks a free port (edges learn it over the mesh when they open a link).
    pub bulk_port: u16,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            write_quorum: 2,
            read_quorum: 2,
            read_linger: Duration::from_millis(100),
            chunk_size: xnode_store::DEFAULT_CHUNK_SIZE,
            repair_grace: Duration::from_secs(60),
            repair_interval: Duration::from_secs(5),
            anti_entropy_full_interval: Duration::from_secs(3600),
            scrub_bytes_per_sec: 32 * 1024 * 1024,
            scrub_period: Duration::from_secs(7 * 24 * 3600),
            gc_interval: Duration::from_secs(600),
            gc_grace: Duration::from_secs(3600),
            gc_trash_retention: Duration::from_secs(7 * 24 * 3600),
            gc_silent_holder_after: Duration::from_secs(2 * 24 * 3600),
            gc_max_scan_entries: 2_000_000,
            tombstone_grace: Duration::from_secs(24 * 3600),
            collect_tombstones: true,
            background_copy_bytes: 64 * 1024 * 1024,
            audit_enabled: true,
            audit_detect_loss_ppm: 10_000,
            audit_confidence_ppm: 999_000,
            audit_window: Duration::from_secs(24 * 3600),
            audit_epoch: Duration::from_secs(3600),
            audit_reputation_epochs: 24,
            audit_min_score_ppm: 960_000,
            audit_timeout: Duration::from_secs(10),
            audit_settle: Duration::from_secs(600),
            audit_unsynced_after: Duration::from_secs(24 * 3600),
            audit_collect_interval: Duration::from_secs(60),
            quota: TenantQuota::default(),
            bulk_link: true,
            bulk_port: 0,
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
    /// The tenant revoked this node's authority to write for it (a signed revocation in
    /// the registry): the node refuses before sealing, since no replica would take it.
    #[error("edge revoked: {0}")]
    EdgeRevoked(String),
    #[error("object {0:?} does not exist")]
    NoSuchKey(String),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("quorum not reached: {0}")]
    Quorum(String),
    /// A write lost to a newer version on enough replicas that it cannot be acknowledged:
    /// another write of the same key came in concurrently (or an edge's clock is far
    /// ahead). Retrying reads the newer version first and can then win.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// A condition of a conditional write or delete (`If-Match`, `If-None-Match`) did not
    /// hold; nothing was written.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A conditional write raced another write of the same key and was not acknowledged;
    /// retrying decides the condition again against the newer version.
    #[error("conditional write conflict: {0}")]
    ConditionalConflict(String),
    /// Data from peers that failed authentication after it was decoded (a manifest whose
    /// MAC does not match): a peer altered the object, and it is not served.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    /// The write would take the tenant over the operator's storage quota.
    #[error("storage quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The tenant owns as many buckets as `storage.quota.max_buckets` allows.
    #[error("bucket quota exceeded: the tenant owns {have} buckets; the quota is {max}")]
    TooManyBuckets { have: u64, max: u64 },
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidName(m) => StorageError::BadRequest(m),
            StoreError::Integrity(m) => StorageError::Integrity(m),
            e @ StoreError::KeyNotHeld { .. } => StorageError::AccessDenied(e.to_string()),
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
    /// Delete tombstones garbage collection removed from this node's metadata table.
    pub gc_removed_tombstones: u64,
    /// Unix ms of the last completed repair scan (anti-entropy round).
    pub last_repair_scan_ms: Option<u64>,
    /// Anti-entropy rounds run, and checks that found nothing changed and skipped one.
    pub anti_entropy_rounds: u64,
    pub anti_entropy_skipped: u64,
    pub storage_nodes: usize,
    pub replication_factor: usize,
    /// Storage audits this node issued and answered (see [`audit`]).
    pub audits: audit::AuditCounts,
    /// Nodes placement leaves out for a reputation below `audit_min_score_ppm`.
    pub low_reputation_nodes: Vec<NodeId>,
}

/// The storage subsystem of a node.
pub struct Storage {
    pub(crate) node_id: NodeId,
    pub(crate) db: xnode_db::Db,
    pub(crate) chunks: Arc<ChunkStore>,
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) mesh: Mesh,
    pub(crate) registry: Arc<Registry>,
    /// Which nodes may hold data (see [`Storage::storage_set`]).
    pub(crate) admission: Arc<Admission>,
    pub(crate) endpoint: Endpoint<StoreService>,
    pub(crate) config: StorageConfig,
    pub(crate) metrics: StoreMetrics,
    pub(crate) clock: HlcClock,
    pub(crate) repairs_in_progress: AtomicU64,
    /// Recent chunk read latencies, for the hedge delay.
    pub(crate) read_latency: hedge::ReadLatency,
    /// What copies continuing after a write's quorum may hold.
    pub(crate) background: quorum::BackgroundBudget,
    /// Where garbage collection puts the chunks it removes.
    pub(crate) trash: xnode_store::Trash,
    pub(crate) health: std::sync::Mutex<StorageHealth>,
    /// When anti-entropy last found everything in sync, and whether a peer asked for a
    /// round.
    pub(crate) entropy: std::sync::Mutex<entropy::EntropyState>,
    /// Fault injection: serve chunks with a flipped byte, as a lying peer would.
    corrupt_served_chunks: std::sync::atomic::AtomicBool,
    /// Fault injection: rewrite or delay what peers are served, as a modified node would.
    serve_tamper: std::sync::Mutex<Option<ServeTamper>>,
    /// Chunks that higher layers keep alive outside any object (deployed modules), asked
    /// for at every garbage-collection round.
    gc_roots: std::sync::Mutex<Vec<GcRoots>>,
    /// What garbage collection saw at its last round (see `gc/view.rs`); locked for a
    /// whole round, so rounds run one at a time.
    pub(crate) gc_view: tokio::sync::Mutex<gc::ReferenceView>,
    /// The bulk link's listener, offers and links (see `bulk`).
    pub(crate) bulk: bulk::Bulk,
    /// Storage audits: this node's key and log, and the reputation it computed.
    pub(crate) auditor: audit::Auditor,
    /// The keys whose conditional writes this node is coordinating (see `conditional`).
    pub(crate) commit_locks: conditional::KeyLocks,
    /// Tenants' usage as this edge knows it, for quotas.
    pub(crate) usage: quota::UsageBook,
    /// This node's key: it signs the object metadata this node writes.
    pub(crate) signer: SecretKey,
    /// The authorities tenants gave this node to write their metadata (see `seals`).
    pub(crate) authorities: seals::Authorities,
    /// Seals whose signatures this node has checked: a listing or a repair that sees the
    /// same entry again verifies it by a hash (see `xnode_store::seal`).
    pub(crate) verified_seals: xnode_store::VerifiedSeals,
    /// Near replicas whose relayed read quorums this edge does not take for a while.
    pub(crate) distrusted_relays: attest::Distrusted,
    /// Usage meters for receipts: egress and stored byte-hours (see `metered`).
    pub(crate) metering: Arc<xnode_metering::Metering>,
    /// When stored byte-hours were last sampled.
    pub(crate) sample_clock: metered::SampleClock,
    /// The last sampling round's sums, reused while nothing they depend on changed.
    pub(crate) sample_cache: metered::SampleCache,
    /// Where the next tombstone-collection round resumes its walk of the local metadata
    /// table (the last storage key read; empty: from the start).
    pub(crate) tombstone_cursor: std::sync::Mutex<Vec<u8>>,
}

/// What a node under fault injection does instead of its honest answer to a peer.
#[derive(Debug)]
pub enum ServeFault {
    /// Send this answer at once.
    Answer(proto::StoreResponse),
    /// Send this answer after a delay (a slow or stalling peer).
    Delay(Duration, proto::StoreResponse),
}

/// Rewrites a node's answers to peers: given the request and the honest answer, what to
/// send instead (see [`Storage::set_serve_tamper`]).
pub type ServeTamper =
    Arc<dyn Fn(&proto::StoreRequest, proto::StoreResponse) -> ServeFault + Send + Sync>;

/// A source of chunk ids garbage collection must keep.
pub type GcRoots = Arc<dyn Fn() -> Vec<ChunkId> + Send + Sync>;

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("node", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The key a bucket's metadata is placed by.
pub(crate) fn bucket_placement_key(tenant: &PublicKeyBytes, bucket: &str) -> Vec<u8> {
    format!("meta/{}/{bucket}", tenant.to_hex()).into_bytes()
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Internal(format!("storage task failed: {e}")))?
        .map_err(StorageError::from)
}

impl Storage {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: NodeId,
        db: xnode_db::Db,
        chunks: Arc<ChunkStore>,
        meta: Arc<MetaStore>,
        mesh: Mesh,
        registry: Arc<Registry>,
        admission: Arc<Admission>,
        config: StorageConfig,
        metrics: StoreMetrics,
        key: SecretKey,
        network: String,
        metering: Arc<xnode_metering::Metering>,
    ) -> Self {
        let background = quorum::BackgroundBudget::new(config.background_copy_bytes);
        let trash = xnode_store::Trash::new(chunks.dir());
        let gc_view = gc::ReferenceView::load(&db);
        Self {
            node_id,
            db,
            chunks,
            meta,
            endpoint: Endpoint::new(&mesh),
            mesh,
            registry,
            admission,
            config,
            metrics,
            clock: HlcClock::new(),
            repairs_in_progress: AtomicU64::new(0),
            read_latency: Default::default(),
            background,
            trash,
            health: Default::default(),
            entropy: Default::default(),
            corrupt_served_chunks: Default::default(),
            serve_tamper: Default::default(),
            gc_roots: Default::default(),
            gc_view: tokio::sync::Mutex::new(gc_view),
            bulk: Default::default(),
            signer: key.clone(),
            authorities: Default::default(),
            verified_seals: Default::default(),
            distrusted_relays: Default::default(),
            auditor: audit::Auditor::new(key, network),
            commit_locks: Default::default(),
            usage: Default::default(),
            metering,
            sample_clock: Default::default(),
            sample_cache: Default::default(),
            tombstone_cursor: Default::default(),
        }
    }

    /// Registers chunks that garbage collection must never remove.
    pub fn add_gc_roots(&self, roots: GcRoots) {
        lock(&self.gc_roots).push(roots);
    }

    pub(crate) fn gc_roots(&self) -> Vec<ChunkId> {
        let sources = lock(&self.gc_roots).clone();
        sources.iter().flat_map(|f| f()).collect()
    }

    /// Makes this node serve corrupted chunk bytes to peers (fault injection for tests and
    /// drills: readers must detect it and use another replica).
    pub fn set_corrupt_served_chunks(&self, on: bool) {
        self.corrupt_served_chunks.store(on, Ordering::Relaxed);
    }

    /// Skews this node's object-version clock by `offset_ms` (fault injection for tests
    /// and drills: what happens to writes through an edge whose clock is wrong).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.clock.set_test_offset_ms(offset_ms);
    }

    pub fn clock_offset_ms(&self) -> i64 {
        self.clock.test_offset_ms()
    }

    pub fn corrupt_served_chunks(&self) -> bool {
        self.corrupt_served_chunks.load(Ordering::Relaxed)
    }

    /// Makes this node answer peers through `tamper` (fault injection for tests: a node
    /// that lies, stalls or floods, as a modified binary could). `None` restores honesty.
    /// Calls this node makes to itself are never tampered with.
    pub fn set_serve_tamper(&self, tamper: Option<ServeTamper>) {
        *lock(&self.serve_tamper) = tamper;
    }

    pub(crate) fn serve_tamper(&self) -> Option<ServeTamper> {
        lock(&self.serve_tamper).clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The registry that holds bucket claims.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    // ----- membership -------------------------------------------------------------------

    /// The stable storage set: active, admitted nodes (see [`Admission`]), with dead ones
    /// kept for the repair grace period so a short outage does not move data. A node
    /// without a valid operator certificate, or one the admission policy does not admit,
    /// is never in it, so placement never puts data on it. Nodes whose audit reputation
    /// is below `audit_min_score_ppm` are left out too (see [`audit`]), unless that would
    /// leave fewer nodes than the replication factor.
    pub fn storage_set(&self) -> Vec<Candidate> {
        let set = self.admitted_storage_set();
        let low = self.auditor.low_nodes();
        if low.is_empty() {
            return set;
        }
        let kept: Vec<Candidate> = set
            .iter()
            .filter(|c| !low.contains(&c.id))
            .cloned()
            .collect();
        if kept.len() >= self.config.replication_factor {
            kept
        } else {
            set
        }
    }

    /// The storage set before reputation is applied: the nodes audits are collected from.
    pub(crate) fn admitted_storage_set(&self) -> Vec<Candidate> {
        let members: BTreeMap<NodeId, (MemberState, u64)> = self
            .mesh
            .members()
            .into_iter()
            .map(|m| (m.id, (m.state, m.state_since_ms)))
            .collect();
        let now = unix_ms();
        let grace = self.config.repair_grace.as_millis() as u64;
        let records: Vec<_> = self
            .registry
            .node_records()
            .into_iter()
            .filter(|r| r.status == NodeStatus::Active)
            .filter(|r| {
                if r.node_id == self.node_id {
                    return true;
                }
                // A member that left the mesh while its record still says `active` is
                // restarting (SIGTERM), not retiring: like a dead one, it keeps its place
                // for `repair_grace`, so a quick restart copies nothing. Only a record
                // marked `left` or `draining` (filtered above) moves its data at once.
                match members.get(&r.node_id) {
                    None => true,
                    Some((MemberState::Alive | MemberState::Suspect, _)) => true,
                    Some((MemberState::Dead | MemberState::Left, since)) => {
                        now.saturating_sub(*since) < grace
                    }
                }
            })
            .collect();
        let mut out: Vec<Candidate> = self
            .admission
            .admitted(&self.registry, records)
            .into_iter()
            .map(|a| Candidate {
                id: a.record.node_id,
                zone: a.record.zone,
                operator: a.operator,
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// Whether this node itself is admitted to hold data, by its own record as the
    /// registry holds it.
    pub fn admitted_here(&self) -> bool {
        self.registry
            .get(&xnode_types::NodeRecord::registry_key(&self.node_id))
            .and_then(|e| xnode_registry::node_record(&e))
            .is_some_and(|r| self.admission.is_admitted(&self.registry, &r))
    }

    /// The admission policy this node applies to placement.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
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

    /// The replication factor of a bucket: its own (if it is within 1..=16, whatever a
    /// claim from a peer says), or the node default.
    pub fn bucket_rf(&self, tenant: &PublicKeyBytes, bucket: &str) -> usize {
        self.known_bucket_rf(tenant, bucket)
            .unwrap_or(self.config.replication_factor)
    }

    /// The metadata entry this node's own hot table holds for `path` (tombstone or not),
    /// without asking any peer: for operators and tests checking what a replica holds.
    /// A tombstone collection retired is not in it (see [`Storage::local_retired_meta`]);
    /// a `GetMeta` answer is the hot entry or, with none, the retired one.
    pub async fn local_meta(
        &self,
        path: &xnode_store::ObjectPath,
    ) -> Result<Option<xnode_store::ObjectMeta>, StorageError> {
        let store = self.meta.clone();
        let path = path.clone();
        blocking(move || store.get_hot(&path)).await
    }

    /// The tombstone of `path` that tombstone collection retired to this node's cold
    /// table, if any: for operators and tests.
    pub async fn local_retired_meta(
        &self,
        path: &xnode_store::ObjectPath,
    ) -> Result<Option<xnode_store::ObjectMeta>, StorageError> {
        let store = self.meta.clone();
        let path = path.clone();
        blocking(move || store.get_retired(&path)).await
    }

    /// The nodes placement puts `tenant`'s bucket `name`'s metadata on, by this node's
    /// view of the storage set: for operators and tests.
    pub fn metadata_replicas(&self, tenant: &PublicKeyBytes, name: &str) -> Vec<NodeId> {
        self.meta_placement(tenant, name, &self.storage_set())
    }

    /// How many retired tombstones this node's cold table holds.
    pub async fn local_retired_count(&self) -> Result<u64, StorageError> {
        let store = self.meta.clone();
        blocking(move || store.retired_count()).await
    }

    /// A range of a bucket's metadata entries as this node's own replica holds them
    /// (tombstones included, see [`xnode_store::MetaStore::range`]), without asking any
    /// peer: for operators and tests, and the local baseline of the listing benchmark.
    pub async fn local_range(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        digested: bool,
    ) -> Result<xnode_store::MetaRange, StorageError> {
        let store = self.meta.clone();
        let (tenant, bucket, prefix) = (*tenant, bucket.to_owned(), prefix.to_owned());
        let after = after.map(str::to_owned);
        blocking(move || {
            let read = if digested {
                xnode_store::MetaStore::range_digested
            } else {
                xnode_store::MetaStore::range
            };
            read(
                &store,
                &tenant,
                &bucket,
                &prefix,
                after.as_deref(),
                limit.min(proto::MAX_LIST_LIMIT),
                proto::MAX_LIST_ANSWER_BYTES,
            )
        })
        .await
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
        {
            let entropy = self.entropy_state();
            health.anti_entropy_rounds = entropy.rounds;
            health.anti_entropy_skipped = entropy.skipped;
        }
        health.storage_nodes = self.storage_set().len();
        health.replication_factor = self.config.replication_factor;
        health.audits = self.audit_counts();
        health.low_reputation_nodes = self.auditor.low_nodes().into_iter().collect();
        health
    }
}
