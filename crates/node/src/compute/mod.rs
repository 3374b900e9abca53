//! Compute: deployments of WebAssembly functions, jobs and workers, placed on live nodes
//! by rendezvous hashing, reconciled by every node, served through every node's gateway.
//!
//! Desired state lives in the registry: deployments and jobs are tenant-signed records,
//! and each node publishes what it actually runs (`run/<node>/replicas`) and how its job
//! runs went (`run/<node>/job/<id>`). Every node computes the same placement from the same
//! membership, so no coordinator is needed: a node starts what is placed on it and stops
//! what is not, every few seconds and at once when membership changes.

pub mod gateway;
pub mod health;
pub mod logs;
pub mod outbound;
pub mod proto;
pub mod runner;
pub mod spec;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use xnode_compute::{Engine, EngineConfig};
use xnode_db::{Db, Table};
use xnode_mesh::{MemberState, Mesh};
use xnode_registry::{Entry, Registry};
use xnode_store::{ChunkId, DataKey};
use xnode_types::{NodeId, NodeRecord, PublicKeyBytes, SecretKey};

use self::logs::Logs;
use self::proto::{ComputeRequest, ComputeResponse, MAX_COMPUTE_MESSAGE};
use self::spec::{DeploymentSpec, JobSpec, Kind, MAX_MODULE_BYTES, decode_deployment, decode_job};
use self::usage::{ComputeMetrics, UsageBook};
use crate::storage::Storage;

pub const COMPUTE_SERVICE: &str = "compute";
/// Data keys tenants granted to this node, keyed by owner hex.
const GRANTS: Table = Table("compute_grants");

/// Compute settings of a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Instances that may run at once.
    pub max_instances: u32,
    /// The most memory one instance may have, in MiB.
    pub max_memory_mb: u64,
    /// WebAssembly stack per instance, in KiB (fixed per engine by wasmtime).
    pub stack_kb: u64,
    /// How often desired and running replicas are reconciled (also at once on any
    /// membership or deployment change).
    #[serde(with = "crate::config::duration_text")]
    pub reconcile_interval: Duration,
    /// Labels deployments can require in their placement constraints.
    pub labels: BTreeMap<String, String>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            max_instances: 128,
            max_memory_mb: 512,
            stack_kb: 1024,
            reconcile_interval: Duration::from_secs(2),
            labels: BTreeMap::new(),
        }
    }
}

/// Errors of compute operations, each mapped to an HTTP status by the API.
#[derive(Debug, thiserror::Error)]
pub enum ComputeOpError {
    #[error("no deployment named {0:?}")]
    NoSuchDeployment(String),
    #[error("no job {0:?}")]
    NoSuchJob(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("deployment name {0:?} belongs to another tenant")]
    NameTaken(String),
    #[error("{0}")]
    Unavailable(String),
    /// The guest failed: `code` is stable, `message` explains, `status` is 502/503/504.
    #[error("{message}")]
    Guest {
        status: u16,
        code: String,
        message: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

/// A live deployment and its owner.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub owner: PublicKeyBytes,
    pub spec: DeploymentSpec,
    pub entry_hlc: xnode_types::Hlc,
}

/// A node placement can use.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: NodeId,
    pub zone: String,
    pub labels: BTreeMap<String, String>,
    pub memory_free_bytes: u64,
}

pub struct Compute {
    pub(crate) node_id: NodeId,
    /// `node_id` as text, formatted once (it is base58: costly to do on every call).
    node_name: Arc<str>,
    key: SecretKey,
    pub(crate) engine: Engine,
    pub(crate) registry: Arc<Registry>,
    pub(crate) mesh: Mesh,
    pub(crate) storage: Arc<Storage>,
    db: Db,
    pub(crate) config: ComputeConfig,
    pub(crate) work_dir: PathBuf,
    pub(crate) logs: Logs,
    pub(crate) usage: UsageBook,
    pub(crate) metrics: ComputeMetrics,
    pub(crate) recorder: Arc<xnode_observe::Recorder>,
    /// Deployments by name (the winning claim of each name).
    deployments: RwLock<HashMap<String, Deployment>>,
    pub(crate) local: Mutex<runner::LocalState>,
    /// Spreads forwarded requests over replicas.
    pub(crate) round_robin: AtomicU64,
    /// Wakes the reconciler early.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) shutdown: CancellationToken,
    /// Fault injection: (extra delay, failure probability) of function calls run here.
    handling_faults: Mutex<(Duration, f64)>,
    /// Spans of function calls, for OTLP export.
    pub(crate) spans: Arc<crate::tracing_export::SpanExporter>,
    /// Placement candidates as the gateway last computed them (see
    /// [`Compute::place_for_call`]).
    call_candidates: Mutex<Option<(std::time::Instant, Arc<Vec<Candidate>>)>>,
}

/// How long the gateway reuses its placement candidates. Gathering them reads every
/// node record in the registry, too much to do on every call; a replica that died within
/// this window is skipped by the gateway's retries anyway.
const CALL_CANDIDATES_TTL: Duration = Duration::from_millis(250);

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("node", &self.node_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Compute {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: NodeId,
        key: SecretKey,
        registry: Arc<Registry>,
        mesh: Mesh,
        storage: Arc<Storage>,
        db: Db,
        config: ComputeConfig,
        data_dir: PathBuf,
        metrics: ComputeMetrics,
        recorder: Arc<xnode_observe::Recorder>,
        shutdown: CancellationToken,
        otlp_endpoint: Option<String>,
    ) -> Result<Arc<Compute>, crate::NodeError> {
        let engine = Engine::new(EngineConfig {
            max_instances: config.max_instances,
            max_memory_bytes: config.max_memory_mb << 20,
            max_stack_bytes: (config.stack_kb << 10) as usize,
            ..EngineConfig::default()
        })
        .map_err(|e| crate::NodeError::State(format!("compute engine: {e}")))?;
        let work_dir = data_dir.join("compute");
        // Scratch space of runs that died with the last process is garbage now.
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).map_err(|e| {
            crate::NodeError::State(format!("cannot create {}: {e}", work_dir.display()))
        })?;
        let compute = Arc::new(Compute {
            node_id,
            node_name: node_id.to_string().into(),
            key,
            engine,
            registry,
            mesh,
            storage: storage.clone(),
            db,
            config,
            work_dir,
            logs: Logs::default(),
            usage: UsageBook::default(),
            metrics,
            recorder,
            deployments: RwLock::new(HashMap::new()),
            local: Mutex::new(runner::LocalState::default()),
            round_robin: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            shutdown,
            handling_faults: Mutex::new((Duration::ZERO, 0.0)),
            call_candidates: Mutex::new(None),
            spans: Arc::new(crate::tracing_export::SpanExporter::new(otlp_endpoint)),
        });
        compute.refresh_deployments();
        // Deployed modules are chunks outside any object: keep them from garbage collection.
        let weak = Arc::downgrade(&compute);
        storage.add_gc_roots(Arc::new(move || {
            weak.upgrade()
                .map(|c| {
                    c.deployments()
                        .iter()
                        .filter_map(|d| d.spec.module_id().map(ChunkId))
                        .collect()
                })
                .unwrap_or_default()
        }));
        Ok(compute)
    }

    pub fn set_handling_faults(&self, delay: Duration, error_rate: f64) {
        *crate::lock(&self.handling_faults) = (delay, error_rate.clamp(0.0, 1.0));
    }

    pub fn handling_faults(&self) -> (Duration, f64) {
        *crate::lock(&self.handling_faults)
    }

    pub fn spans(&self) -> &Arc<crate::tracing_export::SpanExporter> {
        &self.spans
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    // ----- deployments ------------------------------------------------------------------

    /// Rebuilds the name -> deployment map from the registry. When two tenants claim one
    /// name, the smallest `(hlc, owner)` wins, as for buckets, so every node agrees.
    pub(crate) fn refresh_deployments(&self) {
        let mut winners: HashMap<String, Deployment> = HashMap::new();
        for entry in self.registry.list("tenant/") {
            if !entry.key.contains("/deployment/") {
                continue;
            }
            let Some(spec) = decode_deployment(&entry) else {
                continue;
            };
            let candidate = Deployment {
                owner: entry.owner,
                spec,
                entry_hlc: entry.hlc,
            };
            match winners.get(&candidate.spec.name) {
                Some(existing)
                    if (existing.entry_hlc, existing.owner)
                        <= (candidate.entry_hlc, candidate.owner) => {}
                _ => {
                    winners.insert(candidate.spec.name.clone(), candidate);
                }
            }
        }
        match self.deployments.write() {
            Ok(mut d) => *d = winners,
            Err(p) => *p.into_inner() = winners,
        }
    }

    /// This node's id as text.
    pub fn node_name(&self) -> &Arc<str> {
        &self.node_name
    }

    pub fn deployment(&self, name: &str) -> Option<Deployment> {
        match self.deployments.read() {
            Ok(d) => d.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }

    pub fn deployments(&self) -> Vec<Deployment> {
        let mut all: Vec<Deployment> = match self.deployments.read() {
            Ok(d) => d.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        all
    }

    /// Accepts a tenant-signed deployment entry (create or update).
    pub async fn deploy(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        entry: Entry,
        data_key: Option<DataKey>,
    ) -> Result<(Entry, DeploymentSpec), ComputeOpError> {
        if entry.owner != *tenant {
            return Err(ComputeOpError::BadRequest(
                "the deployment must be signed by the requesting tenant".into(),
            ));
        }
        let value = entry.value.as_deref().ok_or_else(|| {
            ComputeOpError::BadRequest(
                "a deployment entry needs a value; use DELETE to remove one".into(),
            )
        })?;
        let spec: DeploymentSpec = serde_json::from_slice(value).map_err(|e| {
            ComputeOpError::BadRequest(format!("the deployment record is not valid: {e}"))
        })?;
        spec.validate().map_err(ComputeOpError::BadRequest)?;
        if spec.owner != tenant.to_hex() || entry.key != spec::deployment_key(tenant, &spec.name) {
            return Err(ComputeOpError::BadRequest(
                "the signed entry does not match the deployment's name and owner".into(),
            ));
        }
        if let Some(stack) = spec.limits.stack_kb
            && stack > self.config.stack_kb
        {
            return Err(ComputeOpError::BadRequest(format!(
                "stack_kb {stack} exceeds this network's engine stack of {} KiB",
                self.config.stack_kb
            )));
        }
        if spec.storage.is_some() && data_key.is_none() {
            return Err(ComputeOpError::BadRequest(
                "a deployment with [storage] needs the tenant's data key (x-xnode-data-key)".into(),
            ));
        }
        if let Some(existing) = self.deployment(&spec.name)
            && existing.owner != *tenant
        {
            return Err(ComputeOpError::NameTaken(spec.name.clone()));
        }
        // Refuse modules that cannot run as the declared kind now, not at the first call.
        let bytes = self.module_bytes(&spec).await?;
        match spec.kind {
            Kind::Http => {
                self.engine
                    .http_module(bytes)
                    .await
                    .map_err(|e| ComputeOpError::BadRequest(e.to_string()))?;
            }
            Kind::Job | Kind::Worker => {
                self.engine
                    .command_module(bytes)
                    .await
                    .map_err(|e| ComputeOpError::BadRequest(e.to_string()))?;
            }
        }
        check_entry_clock(&entry)?;
        self.registry
            .apply_remote(entry.clone())
            .map_err(|e| ComputeOpError::BadRequest(format!("deployment refused: {e}")))?;
        self.refresh_deployments();
        match self.deployment(&spec.name) {
            Some(d) if d.owner == *tenant && d.spec == spec => {}
            _ => {
                return Err(ComputeOpError::BadRequest(
                    "the deployment is older than the one the network has; sign it with the current time".into(),
                ));
            }
        }
        if let Some(key) = data_key {
            self.store_grant(tenant, &key)?;
            // Replicas usually get the key now rather than asking for it on first use.
            let targets = self.place(&spec);
            self.push_grant(tenant, &spec.name, &key, &targets).await;
        }
        self.wake.notify_one();
        Ok((entry, spec))
    }

    /// Removes a deployment with a tenant-signed tombstone.
    pub fn undeploy(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        tombstone: Entry,
    ) -> Result<Entry, ComputeOpError> {
        let existing = self
            .deployment(name)
            .ok_or_else(|| ComputeOpError::NoSuchDeployment(name.to_owned()))?;
        if existing.owner != *tenant {
            return Err(ComputeOpError::AccessDenied(format!(
                "deployment {name:?} belongs to another tenant"
            )));
        }
        if tombstone.owner != *tenant
            || tombstone.key != spec::deployment_key(tenant, name)
            || !tombstone.is_tombstone()
        {
            return Err(ComputeOpError::BadRequest(
                "the signed deletion does not match the deployment and tenant".into(),
            ));
        }
        check_entry_clock(&tombstone)?;
        self.registry
            .apply_remote(tombstone.clone())
            .map_err(|e| ComputeOpError::BadRequest(format!("deletion refused: {e}")))?;
        self.refresh_deployments();
        if self.deployment(name).is_some_and(|d| d.owner == *tenant) {
            return Err(ComputeOpError::BadRequest(
                "the deletion is older than the deployment; sign it with the current time".into(),
            ));
        }
        self.wake.notify_one();
        Ok(tombstone)
    }

    // ----- placement --------------------------------------------------------------------

    /// Live nodes (this one included) with what placement needs to know about them.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut alive: Vec<NodeId> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        alive.push(self.node_id);
        alive
            .into_iter()
            .filter_map(|id| {
                let entry = self.registry.get(&NodeRecord::registry_key(&id))?;
                let record = crate::node_record(&entry)?;
                Some(Candidate {
                    id,
                    zone: record.zone,
                    labels: record.labels,
                    memory_free_bytes: record.capacity.memory_free_bytes,
                })
            })
            .collect()
    }

    /// The nodes that should run `spec`'s replicas, best first.
    pub fn place(&self, spec: &DeploymentSpec) -> Vec<NodeId> {
        place(&spec.name, spec, &self.candidates(), spec.replicas as usize)
    }

    /// [`Compute::place`] for the gateway's hot path, over candidates at most
    /// [`CALL_CANDIDATES_TTL`] old.
    pub(crate) fn place_for_call(&self, spec: &DeploymentSpec) -> Vec<NodeId> {
        let now = std::time::Instant::now();
        let cached = crate::lock(&self.call_candidates)
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at) < CALL_CANDIDATES_TTL)
            .map(|(_, c)| c.clone());
        let candidates = match cached {
            Some(c) => c,
            None => {
                let fresh = Arc::new(self.candidates());
                *crate::lock(&self.call_candidates) = Some((now, fresh.clone()));
                fresh
            }
        };
        place(&spec.name, spec, &candidates, spec.replicas as usize)
    }

    // ----- modules ----------------------------------------------------------------------

    /// Stores a module as one content-addressed chunk, replicated like object data.
    /// Modules are code, not tenant data: they are stored unencrypted so that any node a
    /// deployment is placed on can run it.
    pub async fn put_module(&self, bytes: Bytes) -> Result<String, ComputeOpError> {
        if bytes.is_empty() || bytes.len() > MAX_MODULE_BYTES {
            return Err(ComputeOpError::BadRequest(format!(
                "a module must be 1 byte to {} MiB, this one has {} bytes",
                MAX_MODULE_BYTES >> 20,
                bytes.len()
            )));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ComputeOpError::BadRequest(
                "this is not WebAssembly (it does not start with \\0asm)".into(),
            ));
        }
        let id = ChunkId::of(&bytes);
        let set = self.storage.storage_set();
        let rf = self.storage.config().replication_factor;
        self.storage.put_chunk(id, bytes, &set, rf).await?;
        Ok(hex::encode(id.0))
    }

    pub(crate) async fn module_bytes(
        &self,
        spec: &DeploymentSpec,
    ) -> Result<Bytes, ComputeOpError> {
        let id = spec
            .module_id()
            .ok_or_else(|| ComputeOpError::BadRequest("module is not a content id".into()))?;
        let set = self.storage.storage_set();
        match self.storage.get_chunk(ChunkId(id), &set).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) => Err(ComputeOpError::BadRequest(format!(
                "module {} is not in the network's storage (upload it first): {e}",
                spec.module
            ))),
        }
    }

    // ----- data-key grants --------------------------------------------------------------

    pub(crate) fn store_grant(
        &self,
        owner: &PublicKeyBytes,
        key: &DataKey,
    ) -> Result<(), ComputeOpError> {
        self.db
            .put(GRANTS, owner.to_hex().as_bytes(), key.to_hex().as_bytes())
            .map_err(|e| ComputeOpError::Internal(format!("cannot keep the data key: {e}")))
    }

    pub(crate) fn local_grant(&self, owner: &PublicKeyBytes) -> Option<DataKey> {
        let bytes = self.db.get(GRANTS, owner.to_hex().as_bytes()).ok()??;
        DataKey::from_hex(std::str::from_utf8(&bytes).ok()?).ok()
    }

    async fn push_grant(
        &self,
        owner: &PublicKeyBytes,
        purpose: &str,
        key: &DataKey,
        targets: &[NodeId],
    ) {
        for node in targets {
            if *node == self.node_id {
                continue;
            }
            let request = ComputeRequest::PushGrant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
                key: key.to_hex().into_bytes(),
            };
            if let Err(e) = self.call(*node, &request, Duration::from_secs(3)).await {
                tracing::debug!(%node, error = %e, "could not push a data key; the node will ask for it");
            }
        }
    }

    /// The data key `owner` granted for `purpose`, from this node or from a peer that
    /// holds it (peers answer only nodes the purpose is placed on).
    pub(crate) async fn grant(&self, owner: &PublicKeyBytes, purpose: &str) -> Option<DataKey> {
        if let Some(key) = self.local_grant(owner) {
            return Some(key);
        }
        for candidate in self.candidates() {
            if candidate.id == self.node_id {
                continue;
            }
            let request = ComputeRequest::Grant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
            };
            if let Ok(ComputeResponse::Grant(Some(bytes))) = self
                .call(candidate.id, &request, Duration::from_secs(3))
                .await
                && let Ok(text) = std::str::from_utf8(&bytes)
                && let Ok(key) = DataKey::from_hex(text)
            {
                let _ = self.store_grant(owner, &key);
                return Some(key);
            }
        }
        None
    }

    /// Whether `node` may receive `owner`'s data key for `purpose`: it must be a node the
    /// deployment or job is placed on, as this node sees placement.
    fn may_receive_grant(&self, node: NodeId, owner: &PublicKeyBytes, purpose: &str) -> bool {
        if let Some(job_id) = purpose.strip_prefix("job:") {
            return self.job(owner, job_id).is_some_and(|job| {
                runner::job_runners(&job, &self.candidates()).first() == Some(&node)
            });
        }
        self.deployment(purpose)
            .is_some_and(|d| d.owner == *owner && self.place(&d.spec).contains(&node))
    }

    pub fn job(&self, owner: &PublicKeyBytes, id: &str) -> Option<JobSpec> {
        let entry = self.registry.get(&spec::job_key(owner, id))?;
        decode_job(&entry)
    }

    // ----- RPC --------------------------------------------------------------------------

    pub(crate) async fn call(
        &self,
        node: NodeId,
        request: &ComputeRequest,
        timeout: Duration,
    ) -> Result<ComputeResponse, ComputeOpError> {
        let body =
            xnode_wire::encode(request).map_err(|e| ComputeOpError::Internal(e.to_string()))?;
        let bytes = self
            .mesh
            .request(node, COMPUTE_SERVICE, body, timeout)
            .await
            .map_err(|e| ComputeOpError::Unavailable(e.to_string()))?;
        xnode_wire::decode(&bytes, MAX_COMPUTE_MESSAGE)
            .map_err(|e| ComputeOpError::Unavailable(format!("malformed answer from {node}: {e}")))
    }

    /// Serves compute RPCs from other nodes.
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut inbound: tokio::sync::mpsc::Receiver<xnode_mesh::InboundRequest>,
    ) {
        while let Some(request) = inbound.recv().await {
            let this = self.clone();
            tokio::spawn(async move {
                let from = request.from;
                let answer = match xnode_wire::decode::<ComputeRequest>(
                    &request.body,
                    MAX_COMPUTE_MESSAGE,
                ) {
                    Ok(message) => this.answer(from, message).await,
                    Err(e) => ComputeResponse::Failed {
                        status: 400,
                        code: "bad_request".into(),
                        message: format!("malformed compute request: {e}"),
                        reached_guest: false,
                    },
                };
                let reply = xnode_wire::encode(&answer)
                    .map_err(|e| (xnode_mesh::RpcErrorCode::Internal, e.to_string()));
                let _ = request.reply.send(reply);
            });
        }
    }

    async fn answer(self: &Arc<Self>, from: NodeId, message: ComputeRequest) -> ComputeResponse {
        match message {
            ComputeRequest::Invoke {
                deployment,
                owner,
                method,
                path_and_query,
                headers,
                body,
                trace_id,
                parent_span,
            } => {
                self.answer_invoke(
                    from,
                    deployment,
                    owner,
                    method,
                    path_and_query,
                    headers,
                    body,
                    trace_id,
                    parent_span,
                )
                .await
            }
            ComputeRequest::Grant { owner, purpose } => {
                let Ok(owner) = PublicKeyBytes::from_hex(&owner) else {
                    return ComputeResponse::Grant(None);
                };
                if !self.may_receive_grant(from, &owner, &purpose) {
                    tracing::info!(%from, %purpose, "refused a data key to a node the work is not placed on");
                    return ComputeResponse::Grant(None);
                }
                ComputeResponse::Grant(self.local_grant(&owner).map(|k| k.to_hex().into_bytes()))
            }
            ComputeRequest::PushGrant {
                owner,
                purpose,
                key,
            } => {
                // Accept a key only for work that is placed here, from any node: a node
                // can push nothing it does not have, and we never serve it to others
                // outside placement.
                if let (Ok(owner), Ok(text)) =
                    (PublicKeyBytes::from_hex(&owner), std::str::from_utf8(&key))
                    && let Ok(key) = DataKey::from_hex(text)
                    && self.may_receive_grant(self.node_id, &owner, &purpose)
                {
                    let _ = self.store_grant(&owner, &key);
                }
                ComputeResponse::Ok
            }
            ComputeRequest::Logs { owner, deployment } => {
                ComputeResponse::Logs(self.logs.get(&owner, &deployment))
            }
        }
    }
}

/// Rendezvous placement: every candidate that satisfies the constraints gets a score from
/// hashing the item with its id, and the `n` highest win. Removing a node moves only the
/// items it held; every node computes the same answer from the same membership.
pub fn place(item: &str, spec: &DeploymentSpec, candidates: &[Candidate], n: usize) -> Vec<NodeId> {
    let reserve = spec.memory_reserve_bytes();
    let mut scored: Vec<([u8; 32], NodeId)> = candidates
        .iter()
        .filter(|c| spec.placement.zones.is_empty() || spec.placement.zones.contains(&c.zone))
        .filter(|c| {
            spec.placement
                .labels
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
        })
        .filter(|c| c.memory_free_bytes >= reserve)
        .map(|c| {
            let mut h = blake3::Hasher::new();
            h.update(b"xnode/compute-placement/v1\n");
            h.update(item.as_bytes());
            h.update(b"\n");
            h.update(&c.id.to_bytes());
            (*h.finalize().as_bytes(), c.id)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

fn check_entry_clock(entry: &Entry) -> Result<(), ComputeOpError> {
    let now = unix_ms();
    let wall = entry.hlc.wall_ms;
    if wall > now + 5 * 60_000 {
        return Err(ComputeOpError::BadRequest(
            "the entry is dated more than 5 minutes in the future; check the client's clock".into(),
        ));
    }
    Ok(())
}

impl Compute {
    /// Accepts a tenant-signed job. The node that runs it is chosen by placement; the
    /// data key is kept here and pushed to that node.
    pub async fn submit_job(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        entry: Entry,
        data_key: DataKey,
    ) -> Result<Entry, ComputeOpError> {
        if entry.owner != *tenant {
            return Err(ComputeOpError::BadRequest(
                "the job must be signed by the requesting tenant".into(),
            ));
        }
        let job = decode_job(&entry).ok_or_else(|| {
            ComputeOpError::BadRequest(
                "the job record is malformed or does not match its key and owner".into(),
            )
        })?;
        spec::validate_job_id(&job.id).map_err(ComputeOpError::BadRequest)?;
        if self.job(tenant, &job.id).is_some() {
            return Err(ComputeOpError::BadRequest(format!(
                "job {:?} exists already; jobs are not rerun under the same id",
                job.id
            )));
        }
        let deployment = self
            .deployment(&job.deployment)
            .ok_or_else(|| ComputeOpError::NoSuchDeployment(job.deployment.clone()))?;
        if deployment.owner != *tenant {
            return Err(ComputeOpError::AccessDenied(format!(
                "deployment {:?} belongs to another tenant",
                job.deployment
            )));
        }
        if deployment.spec.kind != Kind::Job {
            return Err(ComputeOpError::BadRequest(format!(
                "deployment {:?} is a {}, not a job",
                job.deployment,
                deployment.spec.kind.as_str()
            )));
        }
        if job.stdin_b64.len() > spec::MAX_JOB_STDIN_BYTES * 4 / 3 + 4 {
            return Err(ComputeOpError::BadRequest(format!(
                "stdin may have at most {} KiB; pass larger inputs as objects",
                spec::MAX_JOB_STDIN_BYTES >> 10
            )));
        }
        for input in &job.inputs {
            if input.name.is_empty()
                || input.name.contains('/')
                || input.name == "."
                || input.name == ".."
            {
                return Err(ComputeOpError::BadRequest(format!(
                    "input name {:?} must be a plain file name",
                    input.name
                )));
            }
        }
        // Fail now, not on a remote node later, when an input or the output bucket is wrong.
        for input in &job.inputs {
            self.storage
                .head_object(tenant, &input.bucket, &input.key)
                .await?;
        }
        self.storage
            .list_objects(tenant, &job.output_bucket, "", None, 1)
            .await?;
        check_entry_clock(&entry)?;
        self.store_grant(tenant, &data_key)?;
        self.registry
            .apply_remote(entry.clone())
            .map_err(|e| ComputeOpError::BadRequest(format!("job refused: {e}")))?;
        let runners = runner::job_runners(&job, &self.candidates());
        self.push_grant(tenant, &format!("job:{}", job.id), &data_key, &runners)
            .await;
        self.wake.notify_one();
        Ok(entry)
    }

    /// Every run of a job that any node reported.
    pub fn job_runs(&self, owner: &PublicKeyBytes, id: &str) -> Vec<spec::JobRun> {
        let suffix = format!("/job/{}/{id}", owner.to_hex());
        self.registry
            .list("run/")
            .into_iter()
            .filter(|e| e.key.ends_with(&suffix))
            .filter_map(|e| serde_json::from_slice(e.value.as_deref()?).ok())
            .collect()
    }

    /// Counts a job or worker run in the network-wide view, like a request.
    pub(crate) fn record_run(
        &self,
        owner: &PublicKeyBytes,
        deployment: &str,
        usage: &xnode_compute::Usage,
        failed: bool,
    ) {
        let outcome = xnode_observe::Outcome {
            status: if failed { 500 } else { 200 },
            latency_us: usage.wall.as_micros() as u64,
            bytes_in: usage.bytes_in,
            bytes_out: usage.bytes_out,
            fuel: usage.fuel,
        };
        let scope = format!("deployment:{deployment}");
        self.recorder
            .record(&["compute", &scope], outcome, Some(*owner), unix_ms());
    }
}
