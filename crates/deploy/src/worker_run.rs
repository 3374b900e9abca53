//! Long-running workers placed on this node: run the guest, restart it with backoff when
//! it ends, and publish what it writes to `/out` into the tenant's bucket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xnode_compute::{CommandSpec, ExitReason, Mount, OutputCapture};
use xnode_types::PublicKeyBytes;

use crate::runner::log_line;
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
    ) {
        let me = self.node_id;
        let owner = d.owner.to_hex();
        let name = d.spec.name.clone();
        let out_dir = self.work_dir.join("workers").join(&name).join("out");
        let mut backoff = Duration::from_secs(1);
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
            *xnode_types::lock(&state) = ReplicaState::Running;
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

    pub(crate) async fn put_bytes(
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
}

/// Regular files under `dir` (at most 1,000), with their paths relative to it.
pub(crate) fn walk(dir: &Path) -> Vec<(PathBuf, String)> {
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
