//! The reconciler: every node compares the replicas placed on it with those it runs,
//! warms and drops http replicas, starts, restarts (with backoff) and stops workers, runs
//! the jobs placed on it, and publishes what it runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xnode_compute::{CommandSpec, ExitReason, Mount, OutputCapture, Usage};
use xnode_types::{NodeId, PublicKeyBytes};

use super::health::HealthBook;
use super::proto::LogLine;
use super::spec::{
    JOB_RECORD_VERSION, JobRun, JobSpec, Kind, REPLICA_SET_VERSION, ReplicaReport, ReplicaSet,
    RunState, decode_job, replicas_key, run_key,
};
use super::usage::{DeploymentLabels, ForwardLabels, KindLabels, OutcomeLabels};
use super::{Candidate, Compute, Deployment, place, unix_ms};

/// How often the usage book is flushed to disk.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Attempts, and the pause between them, to get a job's data key (see `execute_job`).
const GRANT_ATTEMPTS: u32 = 10;
const GRANT_RETRY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct LocalState {
    pub http: HashMap<String, HttpReplica>,
    pub workers: HashMap<String, WorkerHandle>,
    pub jobs: HashMap<String, CancellationToken>,
    pub http_modules: HashMap<[u8; 32], xnode_compute::HttpModule>,
    pub health: HealthBook,
    last_report: Option<ReplicaSet>,
}

pub struct HttpReplica {
    pub owner: PublicKeyBytes,
    pub module: String,
    pub since_ms: u64,
    pub state: String,
}

pub struct WorkerHandle {
    pub owner: PublicKeyBytes,
    pub module: String,
    pub since_ms: u64,
    pub cancel: CancellationToken,
    pub restarts: Arc<AtomicU32>,
    pub state: Arc<std::sync::Mutex<String>>,
}

/// The node that runs a job: rendezvous over the nodes its deployment may use. When that
/// node dies, the next one takes over (at-least-once).
pub fn job_runners(job: &JobSpec, candidates: &[Candidate]) -> Vec<NodeId> {
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
    place(
        &format!("job:{}/{}", job.owner, job.id),
        &spec,
        candidates,
        1,
    )
}

fn log_line(node: NodeId, stream: &str, message: String) -> LogLine {
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

    pub fn degraded_nodes(&self, deployment: &str) -> Vec<NodeId> {
        xnode_types::lock(&self.local).health.degraded(deployment)
    }

    pub(crate) async fn reconcile_once(self: &Arc<Self>) {
        self.refresh_deployments();
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
                Ok(_) => "running".to_owned(),
                Err(e) => {
                    self.telemetry.logs.push(
                        &d.owner.to_hex(),
                        name,
                        log_line(me, "event", format!("cannot start a replica: {e}")),
                    );
                    format!("failed: {e}")
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
        for (name, d) in want_workers {
            let running = xnode_types::lock(&self.local).workers.contains_key(&name);
            if running {
                continue;
            }
            let handle = WorkerHandle {
                owner: d.owner,
                module: d.spec.module.clone(),
                since_ms: unix_ms(),
                cancel: self.control.shutdown.child_token(),
                restarts: Arc::new(AtomicU32::new(0)),
                state: Arc::new(std::sync::Mutex::new("starting".into())),
            };
            let (cancel, restarts, state) = (
                handle.cancel.clone(),
                handle.restarts.clone(),
                handle.state.clone(),
            );
            xnode_types::lock(&self.local)
                .workers
                .insert(name.clone(), handle);
            let this = self.clone();
            tokio::spawn(async move { this.run_worker(d, cancel, restarts, state).await });
        }

        // jobs
        let mut finished: HashMap<String, bool> = HashMap::new();
        for entry in self.registry.list("run/") {
            if !entry.key.contains("/job/") {
                continue;
            }
            if let Some(run) = entry
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<JobRun>(v).ok())
                && run.state != RunState::Running
            {
                finished.insert(format!("{}/{}", run.owner, run.job), true);
            }
        }
        for entry in self.registry.list("tenant/") {
            if !entry.key.contains("/job/") {
                continue;
            }
            let Some(job) = decode_job(&entry) else {
                continue;
            };
            let id = format!("{}/{}", job.owner, job.id);
            if finished.contains_key(&id) || xnode_types::lock(&self.local).jobs.contains_key(&id) {
                continue;
            }
            if job_runners(&job, &candidates).first() != Some(&me) {
                continue;
            }
            let Some(d) = job_deployments.get(&job.deployment).cloned() else {
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

        self.publish_replicas().await;
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
                })
                .collect();
            replicas.extend(local.workers.iter().map(|(name, w)| ReplicaReport {
                deployment: name.clone(),
                owner: w.owner.to_hex(),
                state: xnode_types::lock(&w.state).clone(),
                since_ms: w.since_ms,
                restarts: w.restarts.load(Ordering::Relaxed),
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
        let changed = xnode_types::lock(&self.local).last_report.as_ref() != Some(&report);
        if !changed {
            return;
        }
        match serde_json::to_vec(&report) {
            Ok(bytes) => match self
                .registry
                .put(&self.key, &replicas_key(&self.node_id), bytes)
            {
                Ok(_) => xnode_types::lock(&self.local).last_report = Some(report),
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

    // ----- workers ----------------------------------------------------------------------

    async fn run_worker(
        self: Arc<Self>,
        d: Deployment,
        cancel: CancellationToken,
        restarts: Arc<AtomicU32>,
        state: Arc<std::sync::Mutex<String>>,
    ) {
        let me = self.node_id;
        let owner = d.owner.to_hex();
        let name = d.spec.name.clone();
        let out_dir = self.work_dir.join("workers").join(&name).join("out");
        let mut backoff = Duration::from_secs(1);
        loop {
            if let Err(e) = std::fs::create_dir_all(&out_dir) {
                *xnode_types::lock(&state) = format!("failed: {e}");
                return;
            }
            let module = match self.module_bytes(&d.spec).await {
                Ok(bytes) => self
                    .engine
                    .command_module(bytes)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let module = match module {
                Ok(m) => m,
                Err(e) => {
                    *xnode_types::lock(&state) = format!("failed: {e}");
                    self.telemetry.logs.push(
                        &owner,
                        &name,
                        log_line(me, "event", format!("cannot start: {e}")),
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let limits = d.spec.limits(self.config.max_memory_mb << 20);
            let stdout = OutputCapture::new(u64::MAX, 64 << 10);
            let stderr = OutputCapture::new(u64::MAX, 64 << 10);
            let mut args = vec![name.clone()];
            args.extend(d.spec.args.iter().cloned());
            let spec = CommandSpec {
                args,
                env: d
                    .spec
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                stdin: Bytes::new(),
                mounts: vec![Mount {
                    host_path: out_dir.clone(),
                    guest_path: "/out".into(),
                    writable: true,
                }],
                limits,
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            };
            *xnode_types::lock(&state) = "running".into();
            self.telemetry.logs.push(
                &owner,
                &name,
                log_line(me, "event", format!("worker started on {me}")),
            );
            let started = Instant::now();
            let run = self.engine.run_command(&module, spec, cancel.clone());
            tokio::pin!(run);
            let mut published: HashMap<PathBuf, (u64, std::time::SystemTime)> = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let outcome = loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    _ = tick.tick() => {
                        self.telemetry.logs.push_output(&owner, &name, log_line(me, "stdout", String::new()), &stdout.take());
                        self.telemetry.logs.push_output(&owner, &name, log_line(me, "stderr", String::new()), &stderr.take());
                        self.publish_outputs(&d, &out_dir, &mut published).await;
                    }
                }
            };
            self.telemetry.logs.push_output(
                &owner,
                &name,
                log_line(me, "stdout", String::new()),
                &stdout.take(),
            );
            self.telemetry.logs.push_output(
                &owner,
                &name,
                log_line(me, "stderr", String::new()),
                &stderr.take(),
            );
            self.publish_outputs(&d, &out_dir, &mut published).await;
            let failed = !matches!(outcome.exit, ExitReason::Exited(0) | ExitReason::Cancelled);
            let code = match &outcome.exit {
                ExitReason::Exited(0) => "ok".to_owned(),
                ExitReason::Exited(c) => format!("exit_{c}"),
                ExitReason::Failed(e) => e.code().to_owned(),
                ExitReason::Cancelled => "cancelled".to_owned(),
            };
            self.account(&owner, &name, &outcome.usage, &code, failed);
            self.record_run(&d.owner, &name, &outcome.usage, failed);
            match outcome.exit {
                ExitReason::Cancelled => {
                    self.telemetry.logs.push(
                        &owner,
                        &name,
                        log_line(me, "event", format!("worker stopped on {me}")),
                    );
                    return;
                }
                ExitReason::Exited(0) => {
                    *xnode_types::lock(&state) = "exited".into();
                    self.telemetry.logs.push(
                        &owner,
                        &name,
                        log_line(me, "event", "worker exited normally".into()),
                    );
                    return;
                }
                other => {
                    let reason = match other {
                        ExitReason::Exited(c) => format!("exited with code {c}"),
                        ExitReason::Failed(e) => e.to_string(),
                        ExitReason::Cancelled => String::new(),
                    };
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    restarts.fetch_add(1, Ordering::Relaxed);
                    self.telemetry
                        .metrics
                        .worker_restarts
                        .get_or_create(&DeploymentLabels {
                            deployment: name.clone(),
                        })
                        .inc();
                    *xnode_types::lock(&state) = format!("restarting: {reason}");
                    self.telemetry.logs.push(
                        &owner,
                        &name,
                        log_line(
                            me,
                            "event",
                            format!("worker {reason}; restarting in {} s", backoff.as_secs()),
                        ),
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Uploads files of a worker's `/out` that changed since the last upload to
    /// `<bucket>/workers/<name>/<path>`.
    async fn publish_outputs(
        &self,
        d: &Deployment,
        dir: &Path,
        published: &mut HashMap<PathBuf, (u64, std::time::SystemTime)>,
    ) {
        let Some(storage) = &d.spec.storage else {
            return;
        };
        let files = walk(dir);
        if files.is_empty() {
            return;
        }
        let Some(data_key) = self.grant(&d.owner, &d.spec.name).await else {
            tracing::debug!(deployment = %d.spec.name, "no data key for this worker's outputs yet");
            return;
        };
        for (path, rel) in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if published.get(&path) == Some(&stamp) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let key = format!("workers/{}/{rel}", d.spec.name);
            if self
                .put_bytes(&d.owner, &storage.bucket, &key, &data_key, bytes)
                .await
                .is_ok()
            {
                published.insert(path, stamp);
            }
        }
    }

    async fn put_bytes(
        &self,
        owner: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        data_key: &xnode_store::DataKey,
        bytes: Vec<u8>,
    ) -> Result<(), String> {
        let len = bytes.len() as u64;
        let stream =
            futures::stream::iter([Ok::<Bytes, std::convert::Infallible>(Bytes::from(bytes))]);
        self.storage
            .put_object(
                owner,
                bucket,
                key,
                data_key,
                "application/octet-stream".into(),
                Default::default(),
                Some(len),
                stream,
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(bucket, key, error = %e, "cannot store a compute output");
                e.to_string()
            })
    }

    // ----- jobs -------------------------------------------------------------------------

    fn publish_run(&self, owner: &PublicKeyBytes, run: &JobRun) {
        match serde_json::to_vec(run) {
            Ok(bytes) => {
                if let Err(e) =
                    self.registry
                        .put(&self.key, &run_key(&self.node_id, owner, &run.job), bytes)
                {
                    tracing::warn!(error = %e, job = %run.job, "cannot publish a job run");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a job run"),
        }
    }

    async fn run_job(self: Arc<Self>, job: JobSpec, d: Deployment, cancel: CancellationToken) {
        let me = self.node_id;
        let owner = d.owner;
        let mut run = JobRun {
            v: JOB_RECORD_VERSION,
            job: job.id.clone(),
            owner: owner.to_hex(),
            node: me.to_string(),
            state: RunState::Running,
            exit_code: None,
            reason: None,
            outputs: vec![],
            started_ms: unix_ms(),
            finished_ms: None,
            fuel: 0,
            wall_ms: 0,
        };
        self.publish_run(&owner, &run);
        self.telemetry.logs.push(
            &owner.to_hex(),
            &d.spec.name,
            log_line(me, "event", format!("job {} started on {me}", job.id)),
        );
        let result = self.execute_job(&job, &d, &mut run, cancel.clone()).await;
        if cancel.is_cancelled() {
            // Shutting down or moved: leave the run as running; another node takes over.
            return;
        }
        run.finished_ms = Some(unix_ms());
        match result {
            Ok(0) => {
                run.state = RunState::Succeeded;
                run.exit_code = Some(0);
            }
            Ok(code) => {
                run.state = RunState::Failed;
                run.exit_code = Some(code);
                run.reason = Some(format!("the program exited with code {code}"));
            }
            Err(reason) => {
                run.state = RunState::Failed;
                run.reason = Some(reason);
            }
        }
        let outcome = if run.state == RunState::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        self.telemetry
            .metrics
            .job_runs
            .get_or_create(&ForwardLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.telemetry.logs.push(
            &owner.to_hex(),
            &d.spec.name,
            log_line(
                me,
                "event",
                format!(
                    "job {} {outcome}{}",
                    job.id,
                    run.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            ),
        );
        self.publish_run(&owner, &run);
    }

    /// Runs a job: inputs in, command, outputs out. Returns the exit code, or why it
    /// could not run or was stopped.
    async fn execute_job(
        &self,
        job: &JobSpec,
        d: &Deployment,
        run: &mut JobRun,
        cancel: CancellationToken,
    ) -> Result<i32, String> {
        let owner = d.owner;
        // A job rerun after its runner died asks the surviving nodes for the key at once;
        // a node that has not yet seen the death still places the job on the dead runner
        // and refuses. Views converge within seconds, so ask again for a while.
        let purpose = format!("job:{}", job.id);
        let mut data_key = None;
        for attempt in 0..GRANT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(GRANT_RETRY).await;
            }
            data_key = self.grant(&owner, &purpose).await;
            if data_key.is_some() {
                break;
            }
        }
        let data_key =
            data_key.ok_or("no node holds the tenant's data key for this job; submit it again")?;
        let dir = self.work_dir.join("jobs").join(format!(
            "{}-{}",
            job.id,
            hex::encode(rand::random::<[u8; 4]>())
        ));
        let (in_dir, out_dir) = (dir.join("in"), dir.join("out"));
        let _cleanup = RemoveOnDrop(dir.clone());
        std::fs::create_dir_all(&in_dir).map_err(|e| format!("scratch space: {e}"))?;
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("scratch space: {e}"))?;
        for input in &job.inputs {
            let read = self
                .storage
                .get_object(&owner, &input.bucket, &input.key, &data_key, None)
                .await
                .map_err(|e| {
                    format!(
                        "input {:?} ({}/{}): {e}",
                        input.name, input.bucket, input.key
                    )
                })?;
            let mut bytes = Vec::new();
            let mut body = read.body;
            use futures::StreamExt;
            while let Some(chunk) = body.next().await {
                bytes
                    .extend_from_slice(&chunk.map_err(|e| format!("input {:?}: {e}", input.name))?);
            }
            std::fs::write(in_dir.join(&input.name), bytes)
                .map_err(|e| format!("input {:?}: {e}", input.name))?;
        }
        let bytes = self
            .module_bytes(&d.spec)
            .await
            .map_err(|e| e.to_string())?;
        let module = self
            .engine
            .command_module(bytes)
            .await
            .map_err(|e| e.to_string())?;
        let limits = d.spec.limits(self.config.max_memory_mb << 20);
        let stdout = OutputCapture::new(limits.max_output_bytes, limits.max_output_bytes as usize);
        let stderr = OutputCapture::new(limits.max_output_bytes, limits.max_output_bytes as usize);
        let stdin = base64::engine::general_purpose::STANDARD
            .decode(job.stdin_b64.as_bytes())
            .map_err(|e| format!("stdin is not base64: {e}"))?;
        let mut args = vec![d.spec.name.clone()];
        args.extend(d.spec.args.iter().cloned());
        args.extend(job.args.iter().cloned());
        let spec = CommandSpec {
            args,
            env: d
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stdin: Bytes::from(stdin),
            mounts: vec![
                Mount {
                    host_path: in_dir,
                    guest_path: "/in".into(),
                    writable: false,
                },
                Mount {
                    host_path: out_dir.clone(),
                    guest_path: "/out".into(),
                    writable: true,
                },
            ],
            limits,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        let outcome = self.engine.run_command(&module, spec, cancel).await;
        run.fuel = outcome.usage.fuel;
        run.wall_ms = outcome.usage.wall.as_millis() as u64;
        let owner_hex = owner.to_hex();
        let me = self.node_id;
        self.telemetry.logs.push_output(
            &owner_hex,
            &d.spec.name,
            log_line(me, "stdout", String::new()),
            &tail(&stdout.contents(), 4096),
        );
        self.telemetry.logs.push_output(
            &owner_hex,
            &d.spec.name,
            log_line(me, "stderr", String::new()),
            &tail(&stderr.contents(), 4096),
        );
        let code = match &outcome.exit {
            ExitReason::Exited(0) => "ok".to_owned(),
            ExitReason::Exited(c) => format!("exit_{c}"),
            ExitReason::Failed(e) => e.code().to_owned(),
            ExitReason::Cancelled => "cancelled".to_owned(),
        };
        let failed = !matches!(outcome.exit, ExitReason::Exited(0));
        self.account(&owner_hex, &d.spec.name, &outcome.usage, &code, failed);
        self.record_run(&owner, &d.spec.name, &outcome.usage, failed);
        if matches!(outcome.exit, ExitReason::Cancelled) {
            return Err("cancelled".into());
        }
        // Outputs are kept whatever the exit: a failed job's stderr explains it.
        let prefix = format!("jobs/{}", job.id);
        for (name, bytes) in [("stdout", stdout.contents()), ("stderr", stderr.contents())] {
            let key = format!("{prefix}/{name}");
            if self
                .put_bytes(&owner, &job.output_bucket, &key, &data_key, bytes)
                .await
                .is_ok()
            {
                run.outputs.push(key);
            }
        }
        for (path, rel) in walk(&out_dir) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let key = format!("{prefix}/out/{rel}");
            if self
                .put_bytes(&owner, &job.output_bucket, &key, &data_key, bytes)
                .await
                .is_ok()
            {
                run.outputs.push(key);
            }
        }
        match outcome.exit {
            ExitReason::Exited(c) => Ok(c),
            ExitReason::Failed(e) => Err(e.to_string()),
            ExitReason::Cancelled => Err("cancelled".into()),
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tail(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(n)..].to_vec()
}

/// Regular files under `dir` (at most 1,000), with their paths relative to it.
fn walk(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(rel) = path.strip_prefix(dir)
            {
                out.push((path.clone(), rel.to_string_lossy().replace('\\', "/")));
                if out.len() >= 1000 {
                    return out;
                }
            }
        }
    }
    out.sort();
    out
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
