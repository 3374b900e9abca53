//! Long-running workers placed on this node: run the guest, restart it with backoff when
//! it ends, and publish what it writes to `/out` into the tenant's bucket.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xnode_compute::{CommandSpec, ExitReason, Mount, OutputCapture};
use xnode_types::PublicKeyBytes;

use crate::runner::log_line;
use crate::scratch;
use crate::spec::ReplicaState;
use crate::usage::DeploymentLabels;
use crate::{Compute, Deployment};

impl Compute {
    pub(crate) async fn run_worker(
        self: Arc<Self>,
        d: Deployment,
        cancel: CancellationToken,
        restarts: Arc<AtomicU32>,
        state: Arc<std::sync::Mutex<ReplicaState>>,
        fuel: Arc<AtomicU64>,
    ) {
        let me = self.node_id;
        let owner = d.owner.to_hex();
        let name = d.spec.name.clone();
        // Deployment names are checked (lowercase letters, digits, '-'), and a name is
        // still only ever one component of the path.
        let out_dir = match scratch::component(&name) {
            Ok(component) => self.work_dir.join("workers").join(component).join("out"),
            Err(e) => {
                *xnode_types::lock(&state) = ReplicaState::Failed(e.to_string());
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        // The fuel of the runs that ended; `fuel` is this plus the current run's gauge.
        let mut ended_runs_fuel = 0u64;
        loop {
            if let Err(e) = std::fs::create_dir_all(&out_dir) {
                *xnode_types::lock(&state) = ReplicaState::Failed(e.to_string());
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
                    *xnode_types::lock(&state) = ReplicaState::Failed(e.to_string());
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
            let limits = d.spec.limits(&self.config);
            // A worker's output goes to its log as it comes, so only the tail is kept;
            // the total is unbounded for a long-running program.
            let stdout = OutputCapture::new(u64::MAX, 64 << 10);
            let stderr = OutputCapture::new(u64::MAX, 64 << 10);
            let mut args = vec![name.clone()];
            args.extend(d.spec.args.iter().cloned());
            let gauge = Arc::new(AtomicU64::new(0));
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
                fuel_gauge: Some(gauge.clone()),
            };
            *xnode_types::lock(&state) = ReplicaState::Running;
            self.telemetry.logs.push(
                &owner,
                &name,
                log_line(me, "event", format!("worker started on {me}")),
            );
            let started = Instant::now();
            let run_cancel = cancel.child_token();
            let quota = scratch::QuotaWatch::start(
                out_dir.clone(),
                self.config.max_out_mb.saturating_mul(1 << 20),
                run_cancel.clone(),
            );
            let run = self.engine.run_command(&module, spec, run_cancel);
            tokio::pin!(run);
            let mut published: HashMap<String, (u64, (i64, i64))> = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let outcome = loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    _ = tick.tick() => {
                        fuel.store(ended_runs_fuel.saturating_add(gauge.load(Ordering::Relaxed)), Ordering::Relaxed);
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
            // A cancelled run's usage says nothing of its fuel; the gauge has what it burnt
            // up to its last epoch tick.
            ended_runs_fuel = ended_runs_fuel
                .saturating_add(gauge.load(Ordering::Relaxed).max(outcome.usage.fuel));
            fuel.store(ended_runs_fuel, Ordering::Relaxed);
            let over_quota = quota.breached();
            drop(quota);
            let outcome = if over_quota && !cancel.is_cancelled() {
                // What filled the quota is not published, and the next run starts empty.
                let _ = std::fs::remove_dir_all(&out_dir);
                xnode_compute::CommandOutcome {
                    exit: ExitReason::Failed(xnode_compute::ComputeError::OutputTooLarge(
                        self.config.max_out_mb.saturating_mul(1 << 20),
                    )),
                    usage: outcome.usage,
                }
            } else {
                self.publish_outputs(&d, &out_dir, &mut published).await;
                outcome
            };
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
                    *xnode_types::lock(&state) = ReplicaState::Exited;
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
                    *xnode_types::lock(&state) = ReplicaState::Restarting(reason.to_string());
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
        published: &mut HashMap<String, (u64, (i64, i64))>,
    ) {
        let Some(storage) = &d.spec.storage else {
            return;
        };
        let files = scratch::walk(dir, MAX_OUT_FILES, MAX_OUT_ENTRIES).files;
        if files.is_empty() {
            return;
        }
        let Some(keys) = self.grant(&d.owner, &d.spec.name).await else {
            tracing::debug!(deployment = %d.spec.name, "no bucket key for this worker's outputs yet");
            return;
        };
        for file in files {
            let stamp = (file.len, file.modified);
            if published.get(&file.rel) == Some(&stamp) {
                continue;
            }
            let key = format!("workers/{}/{}", d.spec.name, file.rel);
            if self
                .put_file(&d.owner, &storage.bucket, &key, &keys, dir, &file)
                .await
                .is_ok()
            {
                published.insert(file.rel.clone(), stamp);
            }
        }
    }

    /// Stores the output file `file` of directory `dir` as `bucket/key`, streamed from
    /// disk (opened without following links; see [`scratch`]).
    pub(crate) async fn put_file(
        &self,
        owner: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &xnode_store::ScopedKeys,
        dir: &Path,
        file: &scratch::OutFile,
    ) -> Result<(), String> {
        let opened = scratch::open_file(dir, &file.rel).map_err(|e| e.to_string())?;
        // The length is the one the file has now: a guest still writing it makes the
        // upload fail on a length mismatch, and the next pass publishes it again.
        let len = opened.metadata().map_err(|e| e.to_string())?.len();
        let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(opened));
        self.storage
            .put_object(
                owner,
                bucket,
                key,
                keys,
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

    pub(crate) async fn put_bytes(
        &self,
        owner: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &xnode_store::ScopedKeys,
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
                keys,
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
}

/// Files of an output directory published per pass, and entries of any kind a walk
/// looks at: a guest cannot make the node walk or upload without bound.
pub(crate) const MAX_OUT_FILES: usize = 1000;
pub(crate) const MAX_OUT_ENTRIES: usize = 100_000;
