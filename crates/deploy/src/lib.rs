//! Compute: deployments of WebAssembly functions, jobs and workers, placed on live nodes
//! by rendezvous hashing, reconciled by every node, served through every node's gateway.
//!
//! Desired state lives in the registry: deployments and jobs are tenant-signed records,
//! and each node publishes what it actually runs (`run/<node>/replicas`) and how its job
//! runs went (`run/<node>/job/<id>`). Every node computes the same placement from the same
//! membership, so no coordinator is needed: a node starts what is placed on it and stops
//! what is not, every few seconds and at once when membership changes.

mod catalog;
pub mod gateway;
pub mod grants;
pub mod health;
pub mod hedge;
mod job_run;
mod jobs;
pub mod logs;
mod metered;
pub mod outbound;
mod placement;
pub mod proto;
mod rpc;
pub mod runner;
mod scratch;
pub mod spec;
pub mod tracing_export;
pub mod usage;
mod worker_run;

pub use metered::MAX_WORKER_FUEL_PER_SECOND;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use xnode_compute::{Engine, EngineConfig};
use xnode_db::Db;
use xnode_mesh::{Endpoint, Mesh};
use xnode_registry::Registry;
use xnode_storage::Storage;
use xnode_store::ChunkId;
use xnode_types::{NodeId, PublicKeyBytes, SecretKey};

use crate::catalog::Catalog;
use crate::logs::Logs;
pub use crate::placement::{Candidate, place, score};
pub use crate::rpc::ComputeService;
use crate::spec::DeploymentSpec;
use crate::tracing_export::SpanExporter;
use crate::usage::{ComputeMetrics, UsageBook};

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
    #[serde(with = "xnode_types::duration_text")]
    pub reconcile_interval: Duration,
    /// Labels deployments can require in their placement constraints.
    pub labels: BTreeMap<String, String>,
    /// The longest a function call may run, whatever its manifest says (manifests asking
    /// for more are clamped to it on the node that runs them).
    #[serde(with = "xnode_types::duration_text")]
    pub max_function_timeout: Duration,
    /// The longest a job (or a worker whose manifest sets a timeout) may run.
    #[serde(with = "xnode_types::duration_text")]
    pub max_job_timeout: Duration,
    /// The most fuel one function call or job may burn. Workers without a fuel limit in
    /// their manifest run unmetered: `max_workers` bounds them instead.
    pub max_fuel: u64,
    /// The most output one run may produce: a function's response body, or a job's or
    /// worker's stdout plus stderr (MiB).
    pub max_output_mb: u64,
    /// Workers this node runs at once; more placed here are not started.
    pub max_workers: u32,
    /// Jobs this node runs at once; more wait for a later pass.
    pub max_jobs: u32,
    /// The largest object a function reads, or body it writes, through `store.xnode`
    /// (MiB); the node buffers it.
    pub max_store_object_mb: u64,
    /// The most input bytes one job may have, all inputs together (MiB).
    pub max_job_input_mb: u64,
    /// The disk one run's `/out` may fill (MiB); a run past it is stopped.
    pub max_out_mb: u64,
    /// Networks guests may reach over outbound HTTP although they are loopback, private,
    /// link-local or otherwise special (all refused by default), in CIDR notation.
    pub outbound_allow: Vec<String>,
    /// Deployments one tenant may have, counted from this node's copy of the registry
    /// when a tenant creates one through this node (updates of an existing deployment
    /// always pass). `None`: no limit.
    pub max_deployments_per_tenant: Option<u32>,
    /// Module bytes one tenant may upload through this node per hour (MiB), a token
    /// bucket that holds an hour's worth. Every module is stored on `replication_factor`
    /// nodes until garbage collection finds it unused, so uploads cost the network disk.
    pub module_upload_mb_per_hour: u64,
    /// Whether the gateway hedges idempotent calls (GET, HEAD, OPTIONS): sends the call to
    /// a second replica too when the first has not answered within the hedge delay.
    pub hedging: bool,
    /// The shortest hedge delay; the delay is the p95 of the deployment's recent forwards.
    #[serde(with = "xnode_types::duration_text")]
    pub hedge_min_delay: Duration,
    /// The longest hedge delay, also used until a deployment has enough samples.
    #[serde(with = "xnode_types::duration_text")]
    pub hedge_max_delay: Duration,
    /// How long a replica whose connection just dropped (or could not be dialled) is
    /// skipped by this gateway, while healthy replicas exist, before the failure detector
    /// has decided.
    #[serde(with = "xnode_types::duration_text")]
    pub suspect_for: Duration,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            max_instances: 128,
            max_memory_mb: 512,
            stack_kb: 1024,
            reconcile_interval: Duration::from_secs(2),
            labels: BTreeMap::new(),
            max_function_timeout: Duration::from_secs(60),
            max_job_timeout: Duration::from_secs(3600),
            max_fuel: 1_000_000_000_000,
            max_output_mb: 64,
            max_workers: 32,
            max_jobs: 16,
            max_store_object_mb: 64,
            max_job_input_mb: 1024,
            max_out_mb: 1024,
            outbound_allow: Vec::new(),
            max_deployments_per_tenant: None,
            module_upload_mb_per_hour: 512,
            hedging: true,
            hedge_min_delay: Duration::from_millis(50),
            hedge_max_delay: Duration::from_millis(500),
            suspect_for: Duration::from_secs(5),
        }
    }
}

impl ComputeConfig {
    /// Checks the settings, for `Config::validate`: one sentence per mistake.
    pub fn validate(&self) -> Result<(), String> {
        if self.hedge_min_delay.is_zero()
            || self.hedge_min_delay > self.hedge_max_delay
            || self.hedge_max_delay > Duration::from_secs(10)
        {
            return Err("compute.hedge_min_delay must be positive and at most compute.hedge_max_delay, which must be at most 10s".into());
        }
        if self.suspect_for > Duration::from_secs(60) {
            return Err("compute.suspect_for must be at most 60s (the failure detector decides long before)".into());
        }
        if self.max_instances == 0 || self.max_memory_mb == 0 || self.stack_kb < 64 {
            return Err("compute.max_instances and compute.max_memory_mb must be positive and compute.stack_kb at least 64".into());
        }
        if self.max_function_timeout.is_zero() || self.max_job_timeout.is_zero() {
            return Err(
                "compute.max_function_timeout and compute.max_job_timeout must be positive".into(),
            );
        }
        if self.max_fuel == 0
            || self.max_output_mb == 0
            || self.max_store_object_mb == 0
            || self.max_job_input_mb == 0
            || self.max_out_mb == 0
        {
            return Err("compute.max_fuel, max_output_mb, max_store_object_mb, max_job_input_mb and max_out_mb must be positive".into());
        }
        for (name, mb) in [
            ("max_output_mb", self.max_output_mb),
            ("max_store_object_mb", self.max_store_object_mb),
        ] {
            if mb > 4096 {
                return Err(format!(
                    "compute.{name} must be at most 4096 (it is held in memory)"
                ));
            }
        }
        let largest_module_mb = u64::try_from(spec::MAX_MODULE_BYTES >> 20).unwrap_or(u64::MAX);
        if self.module_upload_mb_per_hour < largest_module_mb
            || self.module_upload_mb_per_hour > 1 << 20
        {
            return Err(format!(
                "compute.module_upload_mb_per_hour must be from {largest_module_mb} (the largest module) to {}",
                1u64 << 20
            ));
        }
        // Functions always keep instance slots of their own: long-running commands may
        // hold fewer than all of them.
        if self.max_workers.saturating_add(self.max_jobs) >= self.max_instances {
            return Err(format!(
                "compute.max_workers + compute.max_jobs must be less than compute.max_instances ({}), so that functions always find an instance slot",
                self.max_instances
            ));
        }
        self.egress_policy()?;
        Ok(())
    }

    /// The outbound policy guests run under.
    pub fn egress_policy(&self) -> Result<xnode_compute::EgressPolicy, String> {
        let allow = self
            .outbound_allow
            .iter()
            .map(|n| {
                n.parse::<xnode_compute::Cidr>()
                    .map_err(|e| format!("compute.outbound_allow: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(xnode_compute::EgressPolicy { allow })
    }

    /// Node caps in bytes, saturating.
    pub(crate) fn max_output_bytes(&self) -> u64 {
        self.max_output_mb.saturating_mul(1 << 20)
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
    /// The tenant has as many deployments as `compute.max_deployments_per_tenant` allows.
    #[error("deployment quota exceeded: the tenant has {have} deployments; the quota is {max}")]
    QuotaExceeded { have: usize, max: u32 },
    /// The tenant's registry entries would pass `storage.quota.max_registry_bytes`.
    #[error(transparent)]
    RegistryQuota(xnode_registry::RegistryError),
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
    Storage(#[from] xnode_storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

impl ComputeOpError {
    /// A refusal of the registry to take a tenant's `what` (a deployment, a job).
    pub(crate) fn from_registry(what: &str, e: xnode_registry::RegistryError) -> Self {
        match e {
            e @ xnode_registry::RegistryError::OwnerQuota { .. } => Self::RegistryQuota(e),
            e => Self::BadRequest(format!("{what} refused: {e}")),
        }
    }
}

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("compute engine: {0}")]
    Engine(String),
    #[error("{0}")]
    Config(String),
    #[error("cannot create {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A live deployment and its owner.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub owner: PublicKeyBytes,
    pub spec: DeploymentSpec,
    pub entry_hlc: xnode_types::Hlc,
}

/// What a node measures and keeps about the work it runs.
pub(crate) struct Telemetry {
    pub(crate) logs: Logs,
    pub(crate) usage: UsageBook,
    pub(crate) metrics: ComputeMetrics,
    pub(crate) recorder: Arc<xnode_observe::Recorder>,
    /// Spans of function calls, for OTLP export.
    pub(crate) spans: Arc<SpanExporter>,
}

/// Signals that steer the orchestrator's loops and the gateway's choices.
pub(crate) struct Control {
    /// Wakes the reconciler early.
    pub(crate) wake: tokio::sync::Notify,
    /// Cancelled when the node stops; running workers and jobs hold child tokens.
    pub(crate) shutdown: CancellationToken,
    /// Spreads forwarded requests over replicas.
    pub(crate) round_robin: AtomicU64,
    /// Fault injection: (extra delay, failure probability) of function calls run here.
    pub(crate) handling_faults: Mutex<(Duration, f64)>,
}

/// The compute orchestration of one node: the deployments the registry holds, where they
/// are placed, what runs here, and the gateway that serves `/fn/` calls from anywhere.
pub struct Compute {
    pub(crate) node_id: NodeId,
    /// `node_id` as text, formatted once (it is base58: costly to do on every call).
    node_name: Arc<str>,
    /// This node's key, which signs its run reports.
    key: SecretKey,
    pub(crate) engine: Engine,
    pub(crate) registry: Arc<Registry>,
    pub(crate) mesh: Mesh,
    pub(crate) endpoint: Endpoint<ComputeService>,
    pub(crate) storage: Arc<Storage>,
    /// Meters of function usage, as provider and as the caller's edge (`xnode-metering`).
    pub(crate) metering: Arc<xnode_metering::Metering>,
    /// Usage records and granted bucket keys.
    db: Db,
    pub(crate) config: ComputeConfig,
    pub(crate) work_dir: PathBuf,
    /// Deployments by name, and the placement candidates the gateway reuses.
    pub(crate) catalog: Catalog,
    /// What runs on this node.
    pub(crate) local: Mutex<runner::LocalState>,
    pub(crate) telemetry: Telemetry,
    pub(crate) control: Control,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("node", &self.node_id)
            .finish_non_exhaustive()
    }
}

pub(crate) use xnode_types::unix_ms;

impl Compute {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
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
        metering: Arc<xnode_metering::Metering>,
    ) -> Result<Arc<Compute>, StartError> {
        config.validate().map_err(StartError::Config)?;
        let egress = config.egress_policy().map_err(StartError::Config)?;
        let engine = Engine::new(EngineConfig {
            max_instances: config.max_instances,
            max_memory_bytes: config.max_memory_mb.saturating_mul(1 << 20),
            max_stack_bytes: usize::try_from(config.stack_kb.saturating_mul(1 << 10))
                .unwrap_or(usize::MAX),
            max_commands: config.max_workers.saturating_add(config.max_jobs),
            max_outbound_body_bytes: config.max_store_object_mb.saturating_mul(1 << 20),
            egress,
            ..EngineConfig::default()
        })
        .map_err(|e| StartError::Engine(e.to_string()))?;
        let work_dir = data_dir.join("compute");
        // Scratch space of runs that died with the last process is garbage now.
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).map_err(|source| StartError::WorkDir {
            path: work_dir.clone(),
            source,
        })?;
        let compute = Arc::new(Compute {
            node_id,
            node_name: node_id.to_string().into(),
            key,
            engine,
            registry,
            endpoint: Endpoint::new(&mesh),
            mesh,
            storage: storage.clone(),
            metering,
            db,
            config,
            work_dir,
            catalog: Catalog::default(),
            local: Mutex::new(runner::LocalState::default()),
            telemetry: Telemetry {
                logs: Logs::default(),
                usage: UsageBook::default(),
                metrics,
                recorder,
                spans: Arc::new(SpanExporter::new(otlp_endpoint)),
            },
            control: Control {
                wake: tokio::sync::Notify::new(),
                shutdown,
                round_robin: AtomicU64::new(0),
                handling_faults: Mutex::new((Duration::ZERO, 0.0)),
            },
        });
        compute.refresh_deployments();
        compute.forget_legacy_grants();
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
        *xnode_types::lock(&self.control.handling_faults) = (delay, error_rate.clamp(0.0, 1.0));
    }

    pub fn handling_faults(&self) -> (Duration, f64) {
        *xnode_types::lock(&self.control.handling_faults)
    }

    pub fn spans(&self) -> &Arc<SpanExporter> {
        &self.telemetry.spans
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
