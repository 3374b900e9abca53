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
mod grants;
pub mod health;
mod job_run;
mod jobs;
pub mod logs;
pub mod outbound;
mod placement;
pub mod proto;
mod rpc;
pub mod runner;
pub mod spec;
pub mod tracing_export;
pub mod usage;
mod worker_run;

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
pub use crate::placement::{Candidate, place};
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
    Storage(#[from] xnode_storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("compute engine: {0}")]
    Engine(String),
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
    /// Usage records and granted data keys.
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
    ) -> Result<Arc<Compute>, StartError> {
        let engine = Engine::new(EngineConfig {
            max_instances: config.max_instances,
            max_memory_bytes: config.max_memory_mb << 20,
            max_stack_bytes: (config.stack_kb << 10) as usize,
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
