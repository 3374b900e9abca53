//! Compute metrics and usage records: every invocation's tenant, deployment, fuel, wall
//! time, peak memory and bytes, exported to Prometheus and aggregated per hour on disk for
//! the incentives work (payment for verified contribution) to read later.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use serde::{Deserialize, Serialize};
use xnode_compute::Usage;
use xnode_db::{Db, Table};

/// Per-hour usage per tenant and deployment, keyed `<owner>/<deployment>/<hour>`.
pub const USAGE: Table = Table("compute_usage");
pub const USAGE_RECORD_VERSION: u32 = 1;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub deployment: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    pub outcome: String,
}

#[derive(Clone, Default)]
pub struct ComputeMetrics {
    pub invocations: Family<OutcomeLabels, Counter>,
    pub fuel: Family<DeploymentLabels, Counter>,
    pub wall_seconds: Family<DeploymentLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub bytes_in: Family<DeploymentLabels, Counter>,
    pub bytes_out: Family<DeploymentLabels, Counter>,
    pub peak_memory: Family<DeploymentLabels, Gauge>,
    pub replicas: Family<KindLabels, Gauge>,
    pub forwarded: Family<ForwardLabels, Counter>,
    pub hedges: Family<ForwardLabels, Counter>,
    pub job_runs: Family<ForwardLabels, Counter>,
    pub worker_restarts: Family<DeploymentLabels, Counter>,
}

impl ComputeMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        registry.register(
            "compute_invocations",
            "Function, job and worker runs by deployment and outcome (ok or an error code)",
            m.invocations.clone(),
        );
        registry.register(
            "compute_fuel_consumed",
            "Fuel (about one unit per WebAssembly instruction) burnt, by deployment",
            m.fuel.clone(),
        );
        registry.register(
            "compute_wall_seconds",
            "Wall-clock seconds spent in guests, by deployment",
            m.wall_seconds.clone(),
        );
        registry.register(
            "compute_received_bytes",
            "Request and stdin bytes given to guests, by deployment",
            m.bytes_in.clone(),
        );
        registry.register(
            "compute_sent_bytes",
            "Response and output bytes guests produced, by deployment",
            m.bytes_out.clone(),
        );
        registry.register(
            "compute_peak_memory_bytes",
            "Largest linear memory of the last run, by deployment",
            m.peak_memory.clone(),
        );
        registry.register(
            "compute_replicas_running",
            "Replicas this node runs, by kind",
            m.replicas.clone(),
        );
        registry.register(
            "compute_forwarded_requests",
            "Function requests this gateway forwarded to another node, by outcome",
            m.forwarded.clone(),
        );
        registry.register(
            "compute_hedged_requests",
            "Second sends of idempotent function calls whose first replica was slow to answer, by outcome (sent; won when the second answer was used)",
            m.hedges.clone(),
        );
        registry.register(
            "compute_job_runs",
            "Job runs on this node, by outcome",
            m.job_runs.clone(),
        );
        registry.register(
            "compute_worker_restarts",
            "Worker restarts after an abnormal exit, by deployment",
            m.worker_restarts.clone(),
        );
        m
    }
}

/// One hour of usage of one deployment on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub v: u32,
    pub invocations: u64,
    pub errors: u64,
    pub fuel: u64,
    pub wall_us: u64,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Accumulates usage in memory; a worker flushes it to the database every few seconds,
/// so the request path never waits for a disk write.
#[derive(Default)]
pub struct UsageBook {
    pending: Mutex<BTreeMap<String, UsageRecord>>,
}

impl UsageBook {
    pub fn add(&self, owner: &str, deployment: &str, usage: &Usage, failed: bool, now_ms: u64) {
        let hour = now_ms / 3_600_000;
        let key = format!("{owner}/{deployment}/{hour}");
        let mut pending = xnode_types::lock(&self.pending);
        let r = pending.entry(key).or_default();
        r.v = USAGE_RECORD_VERSION;
        r.invocations += 1;
        r.errors += u64::from(failed);
        r.fuel += usage.fuel;
        r.wall_us += usage.wall.as_micros() as u64;
        r.peak_memory_bytes = r.peak_memory_bytes.max(usage.peak_memory_bytes);
        r.bytes_in += usage.bytes_in;
        r.bytes_out += usage.bytes_out;
    }

    /// Merges what accumulated into the on-disk records.
    pub fn flush(&self, db: &Db) -> Result<(), xnode_db::DbError> {
        let pending = std::mem::take(&mut *xnode_types::lock(&self.pending));
        for (key, add) in pending {
            let mut record: UsageRecord = db
                .get(USAGE, key.as_bytes())?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            record.v = USAGE_RECORD_VERSION;
            record.invocations += add.invocations;
            record.errors += add.errors;
            record.fuel += add.fuel;
            record.wall_us += add.wall_us;
            record.peak_memory_bytes = record.peak_memory_bytes.max(add.peak_memory_bytes);
            record.bytes_in += add.bytes_in;
            record.bytes_out += add.bytes_out;
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            db.put(USAGE, key.as_bytes(), &bytes)?;
        }
        Ok(())
    }
}
