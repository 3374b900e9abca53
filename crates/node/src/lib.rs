//! The Xnode node: wires the mesh, the registry, storage and compute orchestration into one
//! running `Node`, in a fixed start and shutdown order, and runs their background workers.
//!
//! The node owns no protocol of its own. It decides *what* to do (publish this node's
//! record, reconcile the registry with a peer, tell the mesh about a node learned from the
//! registry) and the subsystems decide *how*. Everything the HTTP API shows comes from
//! here, so the API crate never reaches into subsystems directly.

pub mod bonded;
pub mod capacity;
pub mod config;
pub mod drain;
pub mod identity;
pub mod observe;
pub mod observe_pull;
pub mod observe_tree;
mod settlement;
mod workers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry as MetricsRegistry;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xnode_db::{Db, Table};
use xnode_deploy::Compute;
use xnode_mesh::{Endpoint, FaultRules, MemberState, Mesh, MeshMetrics};
use xnode_registry::{DefaultPolicy, Registry, RegistryMetrics};
use xnode_storage::Storage;
use xnode_types::{
    Capacity, HlcClock, NodeId, NodeRecord, NodeStatus, PublicKeyBytes, SecretKey, lock, unix_ms,
};
use xnode_worker::{Runner, WorkerInfo};

pub use config::{Config, ConfigError};
pub use workers::{DIRECT_PUSH_TIMEOUT, RegistrySyncService};
pub use xnode_mesh::MemberState as State;

/// Gossip topic carrying registry entries.
pub(crate) const REGISTRY_TOPIC: &str = "registry";
/// How long a stopping node waits for each worker to finish.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(5);

pub(crate) const NODE_STATE: Table = Table("node_state");
const INCARNATION_KEY: &[u8] = b"incarnation";

/// Errors starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("node key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error(transparent)]
    Db(#[from] xnode_db::DbError),
    #[error(transparent)]
    Registry(#[from] xnode_registry::RegistryError),
    #[error(transparent)]
    Mesh(#[from] xnode_mesh::MeshError),
    #[error(transparent)]
    Compute(#[from] xnode_deploy::StartError),
    #[error("{0}")]
    State(String),
    #[error("admission list {path}: {reason}")]
    AdmissionList { path: String, reason: String },
    /// The bulk link's listener could not be bound (`storage.bulk_port` taken, say).
    #[error("storage bulk link: {0}")]
    BulkLink(#[source] xnode_storage::StorageError),
    #[error("fault injection is disabled on this node (start it with --enable-fault-injection)")]
    FaultInjectionDisabled,
    /// The node left the network for good (`xnode leave`, or a finished drain).
    #[error(
        "this node left the network for good (at Unix time {at_ms} ms) and cannot rejoin under \
         the same identity; to join again, start it with a new, empty data dir"
    )]
    Left { at_ms: u64 },
}

/// Where the storage bulk link listens: the host of the first TCP listen address, on
/// `storage.bulk_port`; none when the link is off or the node listens on no TCP address.
fn bulk_link_address(config: &Config) -> Option<std::net::SocketAddr> {
    use xnode_mesh::multiaddr::Protocol;
    if !config.storage.bulk_link {
        return None;
    }
    config.listen.iter().find_map(|addr| {
        let mut host = None;
        let mut tcp = false;
        for part in addr.iter() {
            match part {
                Protocol::Ip4(ip) => host = Some(std::net::IpAddr::V4(ip)),
                Protocol::Ip6(ip) => host = Some(std::net::IpAddr::V6(ip)),
                Protocol::Tcp(_) => tcp = true,
                _ => {}
            }
        }
        host.filter(|_| tcp)
            .map(|ip| std::net::SocketAddr::new(ip, config.storage.bulk_port))
    })
}

/// This node, as the API describes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LocalNode {
    pub id: NodeId,
    pub addresses: Vec<String>,
    pub api_url: String,
    pub zone: String,
    pub version: String,
    pub network: String,
    pub incarnation: u64,
    pub started_at_ms: u64,
}

/// One node of the network as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeSummary {
    pub id: NodeId,
    pub addresses: Vec<String>,
    pub api_url: Option<String>,
    pub zone: Option<String>,
    pub state: MemberState,
    pub incarnation: u64,
    /// Unix milliseconds when this node last heard from it directly.
    pub last_seen_ms: Option<u64>,
    pub capacity: Option<Capacity>,
    pub version: Option<String>,
    pub is_self: bool,
    /// Smoothed round trip of this node's probes to it, in microseconds.
    pub rtt_us: Option<u64>,
    /// What the node's signed record says of its intent: active, draining or left.
    pub status: Option<NodeStatus>,
    /// The node-to-node protocol it advertises (`1.1 (oldest 1.0)`), as its last Identify
    /// said.
    pub protocol: Option<String>,
    /// The version this node talks to it at.
    pub negotiated_protocol: Option<String>,
    /// Why this node refuses it (an incompatible protocol version), if it does.
    pub refused: Option<String>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub key: SecretKey,
    pub id: NodeId,
    pub db: Db,
    pub registry: Arc<Registry>,
    pub mesh: Mesh,
    pub metrics: Mutex<MetricsRegistry>,
    pub api_url: String,
    pub started_at_ms: u64,
    pub record: Mutex<NodeRecord>,
    pub capacity: Mutex<capacity::CapacityProbe>,
    pub shutdown: CancellationToken,
    pub runner: Runner,
    pub registry_sync: Endpoint<RegistrySyncService>,
    pub mesh_task: Mutex<Option<JoinHandle<()>>>,
    pub storage: Arc<Storage>,
    pub compute: Arc<Compute>,
    pub metering: Arc<xnode_metering::Metering>,
    pub settlement: Arc<xnode_settle::Settlement>,
    pub recorder: Arc<xnode_observe::Recorder>,
    pub view: Mutex<xnode_observe::NetworkView>,
    /// Network totals summed along the observability tree.
    pub observe_tree: Arc<observe_tree::ObserveTree>,
    /// One node's figures asked of it, beyond the size at which summaries are gossiped.
    pub observe_pull: Arc<observe_pull::FiguresPull>,
    pub tenant_rate: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>,
    /// Module bytes each tenant may still upload through this node
    /// (`compute.module_upload_mb_per_hour`).
    pub module_uploads: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>,
    pub drain: Mutex<drain::DrainStatus>,
    /// Cancelled when the node asks its process to stop (after a drain or a leave).
    pub stop_requested: CancellationToken,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// What the node keeps about itself between runs.
#[derive(Serialize, Deserialize)]
struct NodeState {
    incarnation: u64,
}

impl xnode_wire::Versioned for NodeState {
    const KIND_TAG: u8 = xnode_wire::kinds::NODE_STATE;
    const KIND_NAME: &'static str = "node state";
    const VERSION: u8 = 1;
}

/// Under `bonded` admission, the worker that reads stakes from the chain each epoch
/// (`bonded`); `None` under the other policies.
fn bond_snapshots(
    config: &Config,
    key: &SecretKey,
    admission: &Arc<xnode_registry::admission::Admission>,
    registry: &Arc<Registry>,
    metrics: &mut MetricsRegistry,
) -> Result<Option<bonded::BondSnapshots<bonded::StakingChain>>, NodeError> {
    if config.admission.policy != config::AdmissionPolicyName::Bonded {
        return Ok(None);
    }
    let bad = |reason: String| NodeError::Config(ConfigError::Admission(reason));
    let requirement = config.admission.bond_requirement()?;
    let (Some(url), Some(staking)) = (&config.chain.rpc_url, config.chain.staking_contract) else {
        return Err(bad(
            "the bonded policy needs chain.rpc_url and chain.staking_contract".into(),
        ));
    };
    // The client only reads; the signer it is given never sends anything here.
    let client = xnode_settle::ChainClient::new(url.clone(), xnode_settle::committee_signer(key))
        .map_err(|e| bad(format!("chain.rpc_url: {e}")))?;
    let rule = bonded::BondRule {
        epoch_ms: u64::try_from(config.metering.epoch.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
        requirement,
    };
    let (bindings_registry, network) = (registry.clone(), config.network.clone());
    let bindings: bonded::BindingSource =
        Arc::new(move |cut_ms| settlement::registry_payouts(&bindings_registry, &network, cut_ms));
    Ok(Some(
        bonded::BondSnapshots::new(
            admission.clone(),
            bonded::StakingChain::new(client, staking),
            rule,
            config.settlement.operators.clone(),
            bonded::BondMetrics::register(metrics),
        )
        .with_bindings(bindings),
    ))
}

/// Reads and verifies the signed admission list in `path`; returns its bytes.
fn load_admission_list(
    admission: &xnode_registry::admission::Admission,
    path: &std::path::Path,
) -> Result<Vec<u8>, NodeError> {
    use xnode_registry::admission::{
        AdmissionPolicy, MAX_ADMISSION_LIST_BYTES, SignedAdmissionList,
    };
    let bad = |reason: String| NodeError::AdmissionList {
        path: path.display().to_string(),
        reason,
    };
    let AdmissionPolicy::Allowlist { authority } = admission.policy() else {
        return Err(bad("an admission list needs the allowlist policy".into()));
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if bytes.len() > MAX_ADMISSION_LIST_BYTES {
        return Err(bad(format!(
            "{} bytes, over the limit of {MAX_ADMISSION_LIST_BYTES}",
            bytes.len()
        )));
    }
    let list = SignedAdmissionList::decode_verified(&bytes, authority, admission.network())
        .map_err(|e| bad(e.to_string()))?;
    tracing::info!(
        serial = list.serial,
        operators = list.operators.len(),
        nodes = list.nodes.len(),
        "loaded the admission list"
    );
    Ok(bytes)
}

fn persist_incarnation(db: &Db, incarnation: u64) -> Result<(), NodeError> {
    let bytes = xnode_wire::encode(&NodeState { incarnation })
        .map_err(|e| NodeError::State(e.to_string()))?;
    Ok(db.put(NODE_STATE, INCARNATION_KEY, &bytes)?)
}

impl Node {
    /// Validates the configuration, loads (or creates) the node's identity, opens its
    /// database, joins the mesh and starts the background workers. `api_url` is the URL
    /// the node's API is reachable at, advertised in its record.
    pub async fn start(config: Config, api_url: String) -> Result<Node, NodeError> {
        config.validate()?;
        let (key, created) = identity::load_or_create_key(&config.data_dir)?;
        let id = key.node_id();
        let db = Db::open(&config.data_dir.join("node.redb"))?;
        let retirement = drain::Retirement::load(&db)?;
        drain::Retirement::check_can_start(retirement)?;

        // Every start is a new incarnation, persisted before we tell anyone about it, so a
        // restarted node always outbids whatever the network remembers of its last run.
        let previous = match db.get(NODE_STATE, INCARNATION_KEY)? {
            Some(bytes) => {
                xnode_wire::decode::<NodeState>(&bytes, 1024)
                    .map_err(|e| {
                        NodeError::State(format!(
                            "node state in {}: {e}",
                            config.data_dir.display()
                        ))
                    })?
                    .incarnation
            }
            None => 0,
        };
        let incarnation = previous + 1;
        persist_incarnation(&db, incarnation)?;
        tracing::info!(%id, incarnation, new_identity = created, "starting node");

        let mut metrics = MetricsRegistry::default();
        let registry_metrics = RegistryMetrics::register(&mut metrics);
        let mesh_metrics = MeshMetrics::register(&mut metrics);
        let registry = Arc::new(Registry::open(
            db.clone(),
            Arc::new(HlcClock::new()),
            Box::new(DefaultPolicy),
            registry_metrics,
        )?);
        registry.set_owner_quota(config.storage.quota.max_registry_bytes);
        // Payout bindings are checked against the network their address signed for.
        registry.set_network(&config.network);

        let store_metrics = xnode_store::StoreMetrics::register(&mut metrics);
        let chunks = Arc::new(
            xnode_store::ChunkStore::open(
                &config.data_dir.join("chunks"),
                db.clone(),
                store_metrics.clone(),
            )
            .map_err(|e| NodeError::State(format!("chunk store: {e}")))?,
        );
        let meta = Arc::new(xnode_store::MetaStore::new(db.clone()));

        // Who runs this node, proven by the operator's certificate in the node's record,
        // and which nodes this node lets hold data (see `xnode_registry::admission`).
        let (operator_key, _) =
            identity::load_operator_key(&config.data_dir, config.operator_key_file.as_deref())?;
        let operator_cert = xnode_types::OperatorCert::issue(&operator_key, &config.network, &id);
        drop(operator_key);
        let admission = Arc::new(xnode_registry::admission::Admission::new(
            config.network.clone(),
            config.admission.policy()?,
        ));
        // A bad list file stops the start here, before the node touches the network.
        let admission_list = match &config.admission.list_file {
            Some(path) => Some(load_admission_list(&admission, path)?),
            None => None,
        };
        let bond_snapshots = bond_snapshots(&config, &key, &admission, &registry, &mut metrics)?;

        let (mesh, mesh_task) = Mesh::start(config.mesh(), &key, incarnation, mesh_metrics).await?;
        // Storage meters egress and stored byte-hours into it, so it comes first.
        let metering = xnode_metering::Metering::new(
            key.clone(),
            &config.network,
            db.clone(),
            &mesh,
            config.metering.clone(),
        );
        let storage = Arc::new(Storage::new(
            id,
            db.clone(),
            chunks,
            meta,
            mesh.clone(),
            registry.clone(),
            admission,
            config.storage.clone(),
            store_metrics,
            key.clone(),
            config.network.clone(),
            metering.clone(),
        ));
        let compute_metrics = xnode_deploy::usage::ComputeMetrics::register(&mut metrics);
        let shutdown = CancellationToken::new();
        let recorder: Arc<xnode_observe::Recorder> = Default::default();
        let settlement = xnode_settle::Settlement::new(
            key.clone(),
            &config.network,
            db.clone(),
            &mesh,
            config.settlement.clone(),
            config.chain.clone(),
            config.metering.epoch,
            Arc::new(settlement::NodeEvidence {
                id,
                metering: metering.clone(),
                storage: storage.clone(),
                mesh: mesh.clone(),
                registry: registry.clone(),
                network: config.network.clone(),
            }),
        )
        .map_err(|e| NodeError::Config(ConfigError::Settlement(e.0)))?;
        settlement.slash_metrics().register(&mut metrics);
        let compute = Compute::new(
            id,
            key.clone(),
            registry.clone(),
            mesh.clone(),
            storage.clone(),
            db.clone(),
            config.compute.clone(),
            config.data_dir.clone(),
            compute_metrics,
            recorder.clone(),
            shutdown.clone(),
            config.otlp_endpoint.clone(),
            metering.clone(),
        )?;
        compute.install_write_authority();
        let mut probe = capacity::CapacityProbe::new();
        let capacity = probe.sample(&config.data_dir);
        let started_at_ms = unix_ms();
        let record = NodeRecord {
            node_id: id,
            addresses: mesh.listen_addrs().iter().map(|a| a.to_string()).collect(),
            api_url: Some(api_url.clone()),
            zone: config.zone.clone(),
            capacity,
            version: xnode_types::SOFTWARE_VERSION.into(),
            incarnation,
            // A node restarted during its drain says so from its first record on.
            status: if retirement.is_some() {
                NodeStatus::Draining
            } else {
                NodeStatus::Active
            },
            started_at_ms,
            labels: config.compute.labels.clone(),
            operator: Some(operator_cert),
        };
        let registry_sync = Endpoint::new(&mesh);
        let observe_tree = observe_tree::ObserveTree::new(&mesh, &mut metrics);
        let observe_pull = observe_pull::FiguresPull::new(&mesh, &mut metrics);
        let http_limits = config.http.clone();
        // Validated to at most 2^20 MiB, which f64 holds exactly.
        let module_upload_bytes_per_hour =
            config.compute.module_upload_mb_per_hour as f64 * 1_048_576.0;
        let node = Node {
            inner: Arc::new(Inner {
                config,
                key,
                id,
                db,
                registry,
                mesh,
                metrics: Mutex::new(metrics),
                api_url,
                started_at_ms,
                record: Mutex::new(record),
                capacity: Mutex::new(probe),
                runner: Runner::new(shutdown.clone()),
                registry_sync,
                shutdown,
                mesh_task: Mutex::new(Some(mesh_task)),
                storage: storage.clone(),
                compute: compute.clone(),
                metering: metering.clone(),
                settlement: settlement.clone(),
                recorder,
                view: Default::default(),
                observe_tree,
                observe_pull,
                tenant_rate: Arc::new(xnode_serve::KeyedRateLimiter::new(
                    http_limits.requests_per_second_per_tenant,
                    http_limits.tenant_burst,
                )),
                module_uploads: Arc::new(xnode_serve::KeyedRateLimiter::per_unit(
                    module_upload_bytes_per_hour / 3600.0,
                    module_upload_bytes_per_hour,
                )),
                drain: Default::default(),
                stop_requested: CancellationToken::new(),
            }),
        };
        node.inner
            .registry
            .set_spread(Arc::new(workers::MeshSpread {
                mesh: node.inner.mesh.clone(),
                sync: node.inner.registry_sync.clone(),
            }));
        let runner = &node.inner.runner;
        observe::spawn_workers(&node).await?;
        runner.spawn(storage.serve());
        if let Some(bind) = bulk_link_address(&node.inner.config) {
            runner.spawn(storage.bulk_listener(bind).map_err(NodeError::BulkLink)?);
        }
        for worker in storage.workers() {
            runner.spawn(worker);
        }
        if let Some(worker) = bond_snapshots {
            runner.spawn(worker);
        }
        runner.spawn(metering.serve());
        runner.spawn(metering.worker());
        if settlement.enabled() {
            runner.spawn(settlement.serve());
            runner.spawn(settlement.worker());
        }
        runner.spawn(compute.serve());
        for worker in compute.workers() {
            runner.spawn(worker);
        }
        workers::spawn_all(&node).await?;
        if let Some(bytes) = admission_list {
            node.publish_admission_list(bytes).await?;
        }
        node.publish_record().await?;
        node.resume_retirement(retirement).await?;
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn mesh(&self) -> &Mesh {
        &self.inner.mesh
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Usage meters, countersigning grants and countersigned receipts.
    pub fn metering(&self) -> &Arc<xnode_metering::Metering> {
        &self.inner.metering
    }

    /// Closing epochs: this node's evidence bundles, the committee's votes, the records.
    pub fn settlement(&self) -> &Arc<xnode_settle::Settlement> {
        &self.inner.settlement
    }

    pub fn compute(&self) -> &Arc<Compute> {
        &self.inner.compute
    }

    /// The node's database, for subsystems above `node` that keep local tables of their
    /// own (each in its own table, with its own versioned encoding).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.inner.storage
    }

    /// The request allowance of each tenant on this node (`http.requests_per_second_per_tenant`),
    /// shared by the API and S3 ports and taken only by requests whose signature verified.
    pub fn tenant_rate_limit(&self) -> &Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>> {
        &self.inner.tenant_rate
    }

    /// The module bytes each tenant may still upload through this node
    /// (`compute.module_upload_mb_per_hour`), taken only by signed uploads.
    pub fn module_upload_budget(&self) -> &Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>> {
        &self.inner.module_uploads
    }

    /// Spreads a registry entry that arrived through the API (already applied locally)
    /// to every live member at once (see [`xnode_registry::Spread`]).
    pub async fn gossip_entry(&self, entry: &xnode_registry::Entry) {
        self.inner.registry.spread(entry).await;
    }

    /// This node's signing key (for records this node owns).
    pub fn key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// The runner of this node's background workers.
    pub(crate) fn runner(&self) -> &Runner {
        &self.inner.runner
    }

    /// Runs a worker of a layer above the node (the S3 gateway's lifecycle worker) with the
    /// node's own, under the same shutdown signal and status list.
    pub fn spawn_worker(&self, worker: impl xnode_worker::Worker) {
        self.inner.runner.spawn(worker);
    }

    /// Every background worker of this node and its state.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.runner.list()
    }

    /// Carries a verified admission list in the registry under `admission/<this node>`,
    /// from where it spreads to every node. An unchanged list is not rewritten.
    async fn publish_admission_list(&self, bytes: Vec<u8>) -> Result<(), NodeError> {
        let key = format!(
            "{}{}",
            xnode_registry::admission::ADMISSION_PREFIX,
            self.inner.id
        );
        let registry = &self.inner.registry;
        if registry
            .get(&key)
            .is_some_and(|e| e.value.as_deref() == Some(&bytes[..]))
        {
            return Ok(());
        }
        let entry = registry.put(&self.inner.key, &key, bytes)?;
        registry.spread(&entry).await;
        Ok(())
    }

    /// Signs this node's current record into the registry; the publisher worker gossips it.
    pub(crate) async fn publish_record(&self) -> Result<(), NodeError> {
        let record = lock(&self.inner.record).clone();
        let bytes = xnode_wire::encode(&record).map_err(xnode_registry::RegistryError::from)?;
        self.inner.registry.put(
            &self.inner.key,
            &NodeRecord::registry_key(&self.inner.id),
            bytes,
        )?;
        Ok(())
    }

    pub(crate) fn update_record(&self, change: impl FnOnce(&mut NodeRecord)) {
        change(&mut lock(&self.inner.record));
    }

    pub(crate) fn persist_incarnation(&self, incarnation: u64) {
        if let Err(e) = persist_incarnation(&self.inner.db, incarnation) {
            tracing::error!(error = %e, "cannot persist incarnation");
        }
    }

    pub(crate) fn sample_capacity(&self) -> Capacity {
        lock(&self.inner.capacity).sample(&self.inner.config.data_dir)
    }

    /// This node's own description.
    pub fn local(&self) -> LocalNode {
        let record = lock(&self.inner.record).clone();
        LocalNode {
            id: self.inner.id,
            addresses: self
                .inner
                .mesh
                .listen_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            api_url: self.inner.api_url.clone(),
            zone: self.inner.config.zone.clone(),
            version: xnode_types::SOFTWARE_VERSION.into(),
            network: self.inner.config.network.clone(),
            incarnation: self.inner.mesh.incarnation().max(record.incarnation),
            started_at_ms: self.inner.started_at_ms,
        }
    }

    /// The operator whose certificate this node carries: the only key that may drain it
    /// or make it leave.
    pub fn operator(&self) -> Option<xnode_types::PublicKeyBytes> {
        lock(&self.inner.record).operator.map(|cert| cert.operator)
    }

    /// The node records held in the registry, by node id.
    pub fn records(&self) -> Vec<NodeRecord> {
        self.inner.registry.node_records()
    }

    /// Every node this node knows of, itself included: registry records joined with the
    /// failure detector's view of their liveness.
    pub fn nodes(&self) -> Vec<NodeSummary> {
        let records: std::collections::HashMap<NodeId, NodeRecord> =
            self.records().into_iter().map(|r| (r.node_id, r)).collect();
        let mut out = Vec::new();
        let me = self.local();
        let my_record = lock(&self.inner.record).clone();
        out.push(NodeSummary {
            id: me.id,
            addresses: me.addresses,
            api_url: Some(me.api_url),
            zone: Some(me.zone),
            state: MemberState::Alive,
            incarnation: me.incarnation,
            last_seen_ms: Some(unix_ms()),
            capacity: Some(my_record.capacity),
            version: Some(me.version),
            is_self: true,
            rtt_us: None,
            status: Some(my_record.status),
            protocol: Some(self.inner.mesh.protocol().to_string()),
            negotiated_protocol: None,
            refused: None,
        });
        let protocols = self.inner.mesh.peer_protocols();
        let protocol_of = |id: &NodeId| {
            let p = protocols.get(id);
            (
                p.and_then(|p| p.range).map(|r| r.to_string()),
                p.and_then(|p| p.negotiated).map(|v| v.to_string()),
                p.and_then(|p| p.refused.clone()),
            )
        };
        let members = self.inner.mesh.members();
        let mut seen = std::collections::HashSet::from([self.inner.id]);
        for m in members {
            seen.insert(m.id);
            let record = records.get(&m.id);
            out.push(NodeSummary {
                id: m.id,
                addresses: if m.addresses.is_empty() {
                    record.map(|r| r.addresses.clone()).unwrap_or_default()
                } else {
                    m.addresses.clone()
                },
                api_url: record.and_then(|r| r.api_url.clone()),
                zone: record.map(|r| r.zone.clone()),
                state: m.state,
                incarnation: m.incarnation,
                last_seen_ms: m.last_seen_ms,
                capacity: record.map(|r| r.capacity),
                version: record.map(|r| r.version.clone()),
                is_self: false,
                rtt_us: m.rtt_us,
                status: record.map(|r| r.status),
                protocol: protocol_of(&m.id).0,
                negotiated_protocol: protocol_of(&m.id).1,
                refused: protocol_of(&m.id).2,
            });
        }
        // Records of nodes the failure detector has not met yet (it learns of them from
        // the registry within moments): report what the record says.
        for (id, r) in records {
            if !seen.insert(id) {
                continue;
            }
            out.push(NodeSummary {
                id,
                addresses: r.addresses.clone(),
                api_url: r.api_url.clone(),
                zone: Some(r.zone.clone()),
                state: if r.status == NodeStatus::Left {
                    MemberState::Left
                } else {
                    MemberState::Alive
                },
                incarnation: r.incarnation,
                last_seen_ms: None,
                capacity: Some(r.capacity),
                version: Some(r.version.clone()),
                is_self: false,
                rtt_us: None,
                status: Some(r.status),
                protocol: protocol_of(&id).0,
                negotiated_protocol: protocol_of(&id).1,
                refused: protocol_of(&id).2,
            });
        }
        // Peers refused for their protocol that are neither members nor in the registry:
        // listed so an operator sees who tried to join and why it was turned away.
        for (id, p) in &protocols {
            if seen.contains(id) || p.refused.is_none() {
                continue;
            }
            seen.insert(*id);
            out.push(NodeSummary {
                id: *id,
                addresses: Vec::new(),
                api_url: None,
                zone: None,
                state: MemberState::Dead,
                incarnation: 0,
                last_seen_ms: Some(p.at_ms),
                capacity: None,
                version: None,
                is_self: false,
                rtt_us: None,
                status: None,
                protocol: p.range.map(|r| r.to_string()),
                negotiated_protocol: None,
                refused: p.refused.clone(),
            });
        }
        out.sort_by(|a, b| b.is_self.cmp(&a.is_self).then(a.id.cmp(&b.id)));
        out
    }

    /// Prometheus text exposition of every subsystem's metrics.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let registry = lock(&self.inner.metrics);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Lets subsystems added later register their metrics.
    pub fn with_metrics_registry<R>(&self, f: impl FnOnce(&mut MetricsRegistry) -> R) -> R {
        f(&mut lock(&self.inner.metrics))
    }

    /// Replaces the fault-injection rules (drills and tests).
    pub async fn set_faults(&self, rules: FaultRules) -> Result<(), NodeError> {
        if !self.inner.config.enable_fault_injection {
            return Err(NodeError::FaultInjectionDisabled);
        }
        Ok(self.inner.mesh.set_faults(rules).await?)
    }

    /// Skews this node's object-version clock (drills and tests only; see
    /// `HlcClock::set_test_offset_ms`).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) -> Result<(), NodeError> {
        if !self.inner.config.enable_fault_injection {
            return Err(NodeError::FaultInjectionDisabled);
        }
        self.inner.storage.set_clock_offset_ms(offset_ms);
        Ok(())
    }

    /// Makes this node serve corrupted chunk bytes to peers (drills and tests only).
    pub fn set_corrupt_served_chunks(&self, on: bool) -> Result<(), NodeError> {
        if !self.inner.config.enable_fault_injection {
            return Err(NodeError::FaultInjectionDisabled);
        }
        self.inner.storage.set_corrupt_served_chunks(on);
        Ok(())
    }

    /// Makes this node slow or failing in its handling of function calls (drills).
    pub fn set_handling_faults(
        &self,
        delay: std::time::Duration,
        error_rate: f64,
    ) -> Result<(), NodeError> {
        if !self.inner.config.enable_fault_injection {
            return Err(NodeError::FaultInjectionDisabled);
        }
        self.inner.compute.set_handling_faults(delay, error_rate);
        Ok(())
    }

    pub fn faults(&self) -> FaultRules {
        self.inner.mesh.faults()
    }

    /// A token cancelled when the node begins to stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Stops gracefully: announces on the mesh that this node is stopping, gives it a
    /// moment to spread, then stops every worker. The registry record keeps its status (a
    /// restart is not a departure: peers keep this node's place in the storage set for
    /// `storage.repair_grace`); only [`Node::drain`] and [`Node::leave`] mark it `left`.
    /// The record is gossiped once more so the latest one (a `left` one, after a drain)
    /// reaches the peers before the node goes.
    pub async fn shutdown(&self) {
        tracing::info!("stopping gracefully");
        if let Some(entry) = self
            .inner
            .registry
            .get(&NodeRecord::registry_key(&self.inner.id))
            && let Ok(bytes) = xnode_wire::encode(&entry)
        {
            let _ = self.inner.mesh.publish(REGISTRY_TOPIC, bytes).await;
        }
        self.inner.mesh.leave(Duration::from_millis(300)).await;
        self.stop_workers().await;
    }

    /// Stops abruptly, as a crash would: no announcement, sockets simply close. For tests.
    pub async fn crash(&self) {
        let mesh_task = lock(&self.inner.mesh_task).take();
        if let Some(task) = mesh_task {
            task.abort();
            let _ = task.await;
        }
        self.stop_workers().await;
    }

    async fn stop_workers(&self) {
        self.inner.runner.stop(WORKER_STOP_GRACE).await;
        if let Some(task) = lock(&self.inner.mesh_task).take() {
            task.abort();
        }
    }
}
