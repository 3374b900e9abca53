//! The reconciler: every node compares the replicas placed on it with those it runs,
//! warms and drops http replicas, starts, restarts (with backoff) and stops workers, runs
//! the jobs placed on it, and publishes what it runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xnode_compute::Usage;
use xnode_types::{NodeId, NodeRecord, PublicKeyBytes};

use super::health::HealthBook;
use super::proto::LogLine;
use super::spec::{
    JobRun, JobSpec, Kind, REPLICA_SET_VERSION, ReplicaReport, ReplicaSet, ReplicaState, RunState,
    decode_job, decode_run, replicas_key,
};
use super::usage::{DeploymentLabels, KindLabels, OutcomeLabels};
use super::{Candidate, Compute, Deployment, place, unix_ms};

/// How often the usage book is flushed to disk.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Attempts, and the pause between them, to get a job's data key (see `execute_job`).
pub(crate) const GRANT_ATTEMPTS: u32 = 10;
pub(crate) const GRANT_RETRY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct LocalState {
    pub http: HashMap<String, HttpReplica>,
    pub workers: HashMap<String, WorkerHandle>,
    pub jobs: HashMap<String, CancellationToken>,
    pub http_modules: HashMap<[u8; 32], xnode_compute::HttpModule>,
    pub health: HealthBook,
    /// Recent forward latencies by deployment, for the hedge delay.
    pub latency: HashMap<String, crate::hedge::LatencyWindow>,
    /// Replicas whose connection just failed, skipped for a while.
    pub suspects: crate::hedge::SuspectBook,
    last_report: Option<ReplicaSet>,
    /// When `last_report` was published (reports that differ only in fuel wait for
    /// [`crate::metered::FUEL_REPORT_INTERVAL`]).
    last_report_ms: u64,
    /// Workers placed here but not started because the node runs `max_workers` (their
    /// owners were told once).
    refused_workers: std::collections::HashSet<String>,
    /// Jobs whose keys this node, as their standby runner, is fetching now.
    standby_fetches: std::collections::HashSet<String>,
}

pub struct HttpReplica {
    pub owner: PublicKeyBytes,
    pub module: String,
    pub since_ms: u64,
    pub state: ReplicaState,
}

pub struct WorkerHandle {
    pub owner: PublicKeyBytes,
    pub module: String,
    pub since_ms: u64,
    pub cancel: CancellationToken,
    pub restarts: Arc<AtomicU32>,
    pub state: Arc<std::sync::Mutex<ReplicaState>>,
    /// The fuel the worker burnt here since `since_ms`, over all its runs.
    pub fuel: Arc<AtomicU64>,
    /// How much of `fuel` is metered already.
    pub metered: u64,
}

/// The node that runs a job: rendezvous over the nodes its deployment may use. When that
/// node dies, the next one takes over (at-least-once).
pub fn job_runners(job: &JobSpec, candidates: &[Candidate]) -> Vec<NodeId> {
    job_ranking(job, candidates, 1)
}

/// The item jobs are placed by.
fn job_item(job: &JobSpec) -> String {
    format!("job:{}/{}", job.owner, job.id)
}

/// Whether `node`'s report of a run of `job` counts: `node` is the job's runner in this
/// node's view of placement, or ranks above it (it was the runner while it was alive:
/// placement skips only nodes that are not live now). A peer ranking below the runner
/// never ran the job, so what it publishes about it is ignored. (A node that could place
/// itself first would be the runner anyway: placement grinding is a separate problem.)
pub fn run_counts(job: &JobSpec, node: &NodeId, runner: Option<&NodeId>) -> bool {
    match runner {
        Some(runner) => {
            let item = job_item(job);
            node == runner || super::score(&item, node) > super::score(&item, runner)
        }
        None => false,
    }
}

/// The first `n` nodes of a job's ranking among the live candidates.
pub fn job_ranking(job: &JobSpec, candidates: &[Candidate], n: usize) -> Vec<NodeId> {
    // Placement constraints come from the job's deployment; without it, any node.
    let spec = super::spec::DeploymentSpec {
        v: 1,
        name: job.deployment.clone(),
        kind: Kind::Job,
        module: String::new(),
        replicas: 1,
        limits: Default::default(),
        env: Default::default(),
        args: vec![],
        allowed_hosts: vec![],
        placement: Default::default(),
        storage: None,
        memory_reserve_mb: Some(0),
        owner: job.owner.clone(),
        created_ms: 0,
    };
    place(&job_item(job), &spec, candidates, n)
}

pub(crate) fn log_line(node: NodeId, stream: &str, message: String) -> LogLine {
    LogLine {
        ts_ms: unix_ms(),
        node: node.to_string(),
        stream: stream.into(),
        trace_id: String::new(),
        message,
    }
}

impl Compute {
    /// Counts one run in metrics, the usage book and the observability recorder.
    pub(crate) fn account(
        &self,
        owner: &str,
        deployment: &str,
        usage: &Usage,
        outcome: &str,
        failed: bool,
    ) {
        let labels = DeploymentLabels {
            deployment: deployment.to_owned(),
        };
        self.telemetry
            .metrics
            .invocations
            .get_or_create(&OutcomeLabels {
                deployment: deployment.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.telemetry
            .metrics
            .fuel
            .get_or_create(&labels)
            .inc_by(usage.fuel);
        self.telemetry
            .metrics
            .wall_seconds
            .get_or_create(&labels)
            .inc_by(usage.wall.as_secs_f64());
        self.telemetry
            .metrics
            .bytes_in
            .get_or_create(&labels)
            .inc_by(usage.bytes_in);
        self.telemetry
            .metrics
            .bytes_out
            .get_or_create(&labels)
            .inc_by(usage.bytes_out);
        self.telemetry
            .metrics
            .peak_memory
            .get_or_create(&labels)
            .set(usage.peak_memory_bytes as i64);
        self.telemetry
            .usage
            .add(owner, deployment, usage, failed, unix_ms());
    }

    pub(crate) fn note_forward(&self, deployment: &str, node: NodeId, latency: Duration, ok: bool) {
        xnode_types::lock(&self.local)
            .health
            .note(deployment, node, latency, ok);
    }

    pub(crate) fn note_lost_race(&self, deployment: &str, node: NodeId, at_least: Duration) {
        xnode_types::lock(&self.local)
            .health
            .note_lost_race(deployment, node, at_least);
    }

    pub fn degraded_nodes(&self, deployment: &str) -> Vec<NodeId> {
        xnode_types::lock(&self.local).health.degraded(deployment)
    }

    pub(crate) async fn reconcile_once(self: &Arc<Self>) {
        self.refresh_deployments();
        self.sweep_grants();
        let candidates = self.candidates();
        let me = self.node_id;
        let mut want_http: BTreeMap<String, Deployment> = BTreeMap::new();
        let mut want_workers: BTreeMap<String, Deployment> = BTreeMap::new();
        let mut job_deployments: HashMap<String, Deployment> = HashMap::new();
        for d in self.deployments() {
            match d.spec.kind {
                Kind::Job => {
                    job_deployments.insert(d.spec.name.clone(), d);
                }
                Kind::Http | Kind::Worker => {
                    let placed =
                        place(&d.spec.name, &d.spec, &candidates, d.spec.replicas as usize);
                    if placed.contains(&me) {
                        if d.spec.kind == Kind::Http {
                            want_http.insert(d.spec.name.clone(), d);
                        } else {
                            want_workers.insert(d.spec.name.clone(), d);
                        }
                    }
                }
            }
        }

        // http replicas: a replica is a compiled, pre-instantiated module kept warm.
        for (name, d) in &want_http {
            let current = xnode_types::lock(&self.local)
                .http
                .get(name)
                .map(|r| r.module.clone());
            if current.as_deref() == Some(d.spec.module.as_str()) {
                continue;
            }
            let state = match self.http_module(d).await {
                Ok(_) => ReplicaState::Running,
                Err(e) => {
                    self.telemetry.logs.push(
                        &d.owner.to_hex(),
                        name,
                        log_line(me, "event", format!("cannot start a replica: {e}")),
                    );
                    ReplicaState::Failed(e.to_string())
                }
            };
            self.telemetry.logs.push(
                &d.owner.to_hex(),
                name,
                log_line(me, "event", format!("replica {state} on {me}")),
            );
            xnode_types::lock(&self.local).http.insert(
                name.clone(),
                HttpReplica {
                    owner: d.owner,
                    module: d.spec.module.clone(),
                    since_ms: unix_ms(),
                    state,
                },
            );
        }
        {
            let mut local = xnode_types::lock(&self.local);
            local.http.retain(|name, _| want_http.contains_key(name));
            let modules: Vec<[u8; 32]> = want_http
                .values()
                .filter_map(|d| d.spec.module_id())
                .collect();
            local.http_modules.retain(|id, _| modules.contains(id));
        }

        // workers
        {
            let mut local = xnode_types::lock(&self.local);
            local.workers.retain(|name, w| {
                let keep = want_workers
                    .get(name)
                    .is_some_and(|d| d.spec.module == w.module && d.owner == w.owner);
                if !keep {
                    w.cancel.cancel();
                }
                keep
            });
        }
        xnode_types::lock(&self.local)
            .refused_workers
            .retain(|name| want_workers.contains_key(name));
        for (name, d) in want_workers {
            let (running, count) = {
                let local = xnode_types::lock(&self.local);
                (local.workers.contains_key(&name), local.workers.len())
            };
            if running {
                continue;
            }
            // Workers hold an instance slot and a core for as long as they run: beyond
            // the node's limit they wait until one ends or moves.
            if count >= self.config.max_workers as usize {
                if xnode_types::lock(&self.local)
                    .refused_workers
                    .insert(name.clone())
                {
                    self.telemetry.logs.push(
                        &d.owner.to_hex(),
                        &name,
                        log_line(
                            me,
                            "event",
                            format!(
                                "not started on {me}: the node runs its limit of {} workers",
                                self.config.max_workers
                            ),
                        ),
                    );
                }
                continue;
            }
            xnode_types::lock(&self.local).refused_workers.remove(&name);
            let handle = WorkerHandle {
                owner: d.owner,
                module: d.spec.module.clone(),
                since_ms: unix_ms(),
                cancel: self.control.shutdown.child_token(),
                restarts: Arc::new(AtomicU32::new(0)),
                state: Arc::new(std::sync::Mutex::new(ReplicaState::Starting)),
                fuel: Arc::new(AtomicU64::new(0)),
                metered: 0,
            };
            let (cancel, restarts, state, fuel) = (
                handle.cancel.clone(),
                handle.restarts.clone(),
                handle.state.clone(),
                handle.fuel.clone(),
            );
            xnode_types::lock(&self.local)
                .workers
                .insert(name.clone(), handle);
            let this = self.clone();
            tokio::spawn(async move { this.run_worker(d, cancel, restarts, state, fuel).await });
        }

        // jobs: a draining (or departed) node is no longer any job's runner, so the next
        // node of each ranking has started its jobs already; the runs here stop at once,
        // left `running` (a cancelled run publishes nothing more), as after a crash.
        // Waiting for them would hold the drain up for as long as a job may run and
        // write every output twice.
        if self.retiring() {
            let local = xnode_types::lock(&self.local);
            for (id, cancel) in &local.jobs {
                if !cancel.is_cancelled() {
                    tracing::info!(job = %id, "this node is draining: its job moves to the next node");
                    cancel.cancel();
                }
            }
        }

        // jobs: finished when a node that may report on the job says so (see
        // `run_counts`); what other nodes publish about it is ignored.
        let mut reports: HashMap<String, Vec<(NodeId, JobRun)>> = HashMap::new();
        for (node, run) in self.registry.list("run/").iter().filter_map(decode_run) {
            if run.state != RunState::Running {
                reports
                    .entry(format!("{}/{}", run.owner, run.job))
                    .or_default()
                    .push((node, run));
            }
        }
        // Every pass: copy the jobs only, not every tenant entry (bucket claims, keys).
        for entry in self
            .registry
            .list_where("tenant/", |key| key.contains("/job/"))
        {
            let Some(job) = decode_job(&entry) else {
                continue;
            };
            let id = format!("{}/{}", job.owner, job.id);
            let runner = job_runners(&job, &candidates).first().copied();
            let finished = reports.get(&id).is_some_and(|runs| {
                runs.iter()
                    .any(|(n, _)| run_counts(&job, n, runner.as_ref()) && self.admitted(n))
            });
            if finished || xnode_types::lock(&self.local).jobs.contains_key(&id) {
                continue;
            }
            if runner != Some(me) {
                self.fetch_standby_keys(&job, &candidates, &id);
                continue;
            }
            // At most `max_jobs` at once; the others wait for a later pass.
            if xnode_types::lock(&self.local).jobs.len() >= self.config.max_jobs as usize {
                continue;
            }
            // A job runs only its own owner's deployment: one that names another tenant's
            // would run that tenant's code with its key (a confused deputy).
            let Some(d) = job_deployments
                .get(&job.deployment)
                .filter(|d| d.owner.to_hex() == job.owner)
                .cloned()
            else {
                continue;
            };
            let cancel = self.control.shutdown.child_token();
            xnode_types::lock(&self.local)
                .jobs
                .insert(id.clone(), cancel.clone());
            let this = self.clone();
            tokio::spawn(async move {
                this.clone().run_job(job, d, cancel).await;
                xnode_types::lock(&this.local).jobs.remove(&id);
            });
        }

        self.observe_compute_usage();
        self.publish_replicas().await;
    }

    /// Whether this node's own record says it is draining or has left.
    fn retiring(&self) -> bool {
        self.registry
            .get(&NodeRecord::registry_key(&self.node_id))
            .and_then(|e| xnode_registry::node_record(&e))
            .is_some_and(|r| r.status != xnode_types::NodeStatus::Active)
    }

    /// As a pending job's standby (the next node of its ranking, which takes over if the
    /// runner dies), fetches the job's keys from the runner or the edge once, so that a
    /// rerun finds them even if the runner was the only other holder. Whatever a peer
    /// answers is checked against the job's signed scope (`grant`).
    fn fetch_standby_keys(self: &Arc<Self>, job: &JobSpec, candidates: &[Candidate], id: &str) {
        let me = self.node_id;
        let owner = match PublicKeyBytes::from_hex(&job.owner) {
            Ok(owner) => owner,
            Err(_) => return,
        };
        let purpose = format!("job:{}", job.id);
        let is_standby = job_ranking(job, candidates, crate::grants::JOB_KEY_HOLDERS)
            .get(1)
            .is_some_and(|n| *n == me);
        if !is_standby
            || self.holds_grant(&owner, &purpose)
            || !xnode_types::lock(&self.local)
                .standby_fetches
                .insert(id.to_owned())
        {
            return;
        }
        let this = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if this.grant(&owner, &purpose).await.is_none() {
                tracing::debug!(%purpose, "no keys for a job this node stands by for yet");
            }
            xnode_types::lock(&this.local).standby_fetches.remove(&id);
        });
    }

    async fn publish_replicas(&self) {
        let report = {
            let local = xnode_types::lock(&self.local);
            let mut replicas: Vec<ReplicaReport> = local
                .http
                .iter()
                .map(|(name, r)| ReplicaReport {
                    deployment: name.clone(),
                    owner: r.owner.to_hex(),
                    state: r.state.clone(),
                    since_ms: r.since_ms,
                    restarts: 0,
                    fuel: 0,
                })
                .collect();
            replicas.extend(local.workers.iter().map(|(name, w)| ReplicaReport {
                deployment: name.clone(),
                owner: w.owner.to_hex(),
                state: xnode_types::lock(&w.state).clone(),
                since_ms: w.since_ms,
                restarts: w.restarts.load(Ordering::Relaxed),
                fuel: w.fuel.load(Ordering::Relaxed),
            }));
            replicas.sort_by(|a, b| a.deployment.cmp(&b.deployment));
            self.telemetry
                .metrics
                .replicas
                .get_or_create(&KindLabels {
                    kind: "http".into(),
                })
                .set(local.http.len() as i64);
            self.telemetry
                .metrics
                .replicas
                .get_or_create(&KindLabels {
                    kind: "worker".into(),
                })
                .set(local.workers.len() as i64);
            self.telemetry
                .metrics
                .replicas
                .get_or_create(&KindLabels { kind: "job".into() })
                .set(local.jobs.len() as i64);
            ReplicaSet {
                v: REPLICA_SET_VERSION,
                replicas,
            }
        };
        let now = unix_ms();
        {
            let local = xnode_types::lock(&self.local);
            let without_fuel = |set: &ReplicaSet| {
                let mut set = set.clone();
                set.replicas.iter_mut().for_each(|r| r.fuel = 0);
                set
            };
            let changed = match &local.last_report {
                None => true,
                Some(last) if last == &report => false,
                Some(last) => {
                    without_fuel(last) != without_fuel(&report)
                        || now.saturating_sub(local.last_report_ms)
                            >= crate::metered::FUEL_REPORT_INTERVAL.as_millis() as u64
                }
            };
            if !changed {
                return;
            }
        }
        match serde_json::to_vec(&report) {
            Ok(bytes) => match self
                .registry
                .put(&self.key, &replicas_key(&self.node_id), bytes)
            {
                Ok(_) => {
                    // The fuel just published is what the tenant's edge will observe:
                    // meter the same increase, to be proposed to that edge.
                    let mut local = xnode_types::lock(&self.local);
                    for published in &report.replicas {
                        if let Some(w) = local.workers.get_mut(&published.deployment)
                            && published.fuel > w.metered
                            && self.meter_worker_fuel(&w.owner, published.fuel - w.metered)
                        {
                            w.metered = published.fuel;
                        }
                    }
                    local.last_report = Some(report);
                    local.last_report_ms = now;
                }
                Err(e) => tracing::warn!(error = %e, "cannot publish this node's replicas"),
            },
            Err(e) => tracing::error!(error = %e, "cannot encode replicas"),
        }
    }

    /// What every node reports running for `name`, with the nodes' ids.
    pub fn replicas_of(&self, name: &str) -> Vec<(NodeId, ReplicaReport)> {
        let live: Vec<NodeId> = self.candidates().into_iter().map(|c| c.id).collect();
        let mut out = Vec::new();
        for entry in self.registry.list("run/") {
            let Some(node) = entry
                .key
                .strip_prefix("run/")
                .and_then(|r| r.strip_suffix("/replicas"))
            else {
                continue;
            };
            let Ok(node) = node.parse::<NodeId>() else {
                continue;
            };
            if !live.contains(&node) {
                continue;
            }
            let Some(set) = entry
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<ReplicaSet>(v).ok())
            else {
                continue;
            };
            out.extend(
                set.replicas
                    .into_iter()
                    .filter(|r| r.deployment == name)
                    .map(|r| (node, r)),
            );
        }
        out
    }
}

/// The reconciler as a worker: a pass every `reconcile_interval`, and at once when
/// membership changes, a deployment or job changes in the registry, or a local change
/// asks for one (`wake`).
struct Reconciler {
    compute: Arc<Compute>,
    events: tokio::sync::broadcast::Receiver<xnode_mesh::MeshEvent>,
    changes: tokio::sync::broadcast::Receiver<xnode_registry::Change>,
    passes: u64,
}

#[async_trait::async_trait]
impl xnode_worker::Worker for Reconciler {
    fn name(&self) -> String {
        "compute-reconcile".into()
    }

    fn progress(&self) -> xnode_worker::Progress {
        let local = xnode_types::lock(&self.compute.local);
        xnode_worker::Progress {
            items_done: self.passes,
            queued: None,
            detail: Some(format!(
                "{} http replicas, {} workers, {} jobs running here",
                local.http.len(),
                local.workers.len(),
                local.jobs.len()
            )),
        }
    }

    async fn work(
        &mut self,
        _shutdown: &CancellationToken,
    ) -> Result<xnode_worker::Step, xnode_worker::WorkerError> {
        self.compute.reconcile_once().await;
        self.passes += 1;
        Ok(xnode_worker::Step::Idle)
    }

    async fn wait_for_work(&mut self) -> xnode_worker::Step {
        use tokio::sync::broadcast::error::RecvError;
        if self.passes == 0 {
            return xnode_worker::Step::Busy;
        }
        let sleep = tokio::time::sleep(self.compute.config.reconcile_interval);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return xnode_worker::Step::Busy,
                _ = self.compute.control.wake.notified() => return xnode_worker::Step::Busy,
                event = self.events.recv() => match event {
                    Ok(xnode_mesh::MeshEvent::MemberChanged { .. }) => return xnode_worker::Step::Busy,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => return xnode_worker::Step::Busy,
                    Err(RecvError::Closed) => return xnode_worker::Step::Done,
                },
                change = self.changes.recv() => match change {
                    Ok(c) if c.entry.key.starts_with("tenant/")
                        && (c.entry.key.contains("/deployment/") || c.entry.key.contains("/job/")) => return xnode_worker::Step::Busy,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => return xnode_worker::Step::Busy,
                    Err(RecvError::Closed) => return xnode_worker::Step::Done,
                },
            }
        }
    }
}

impl Compute {
    /// The orchestrator's workers: `compute-reconcile`, `compute-usage` (flushes the usage
    /// book) and, when spans are exported, `otlp-export`. The `rpc:compute` server comes
    /// from [`Compute::serve`].
    pub fn workers(self: &Arc<Self>) -> Vec<Box<dyn xnode_worker::Worker>> {
        let mut workers: Vec<Box<dyn xnode_worker::Worker>> = vec![Box::new(Reconciler {
            compute: self.clone(),
            events: self.mesh.events(),
            changes: self.registry.subscribe(),
            passes: 0,
        })];
        let this = self.clone();
        workers.push(Box::new(xnode_worker::periodic(
            "compute-usage",
            xnode_worker::Interval::AfterFirstPeriod(USAGE_FLUSH_INTERVAL),
            move || {
                let this = this.clone();
                async move {
                    this.telemetry.usage.flush(&this.db).map_err(|e| {
                        xnode_worker::WorkerError::new(format!("cannot record compute usage: {e}"))
                    })?;
                    Ok(0)
                }
            },
        )));
        if let Some(export) = self
            .telemetry
            .spans
            .clone()
            .export_worker(self.node_id.to_string())
        {
            workers.push(Box::new(export));
        }
        workers
    }
}
