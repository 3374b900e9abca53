//! Jobs placed on this node: fetch the inputs, run the guest to completion in a scratch
//! directory, store its outputs in the tenant's bucket and publish the run's result.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xnode_compute::{CommandSpec, ExitReason, Mount, OutputCapture};
use xnode_types::PublicKeyBytes;

use crate::grants::JOB_KEY_HOLDERS;
use crate::runner::{self, GRANT_ATTEMPTS, GRANT_RETRY, log_line};
use crate::scratch;
use crate::spec::{JOB_RECORD_VERSION, JobInput, JobRun, JobSpec, RunState, run_key};
use crate::usage::ForwardLabels;
use crate::worker_run::{MAX_OUT_ENTRIES, MAX_OUT_FILES};
use crate::{Compute, Deployment, unix_ms};

impl Compute {
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

    pub(crate) async fn run_job(
        self: Arc<Self>,
        job: JobSpec,
        d: Deployment,
        cancel: CancellationToken,
    ) {
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
        // Each runner is paid for what it ran: metered here, published in the run record
        // for the tenant's edge to observe (see `metered.rs`).
        let metered = self.meter_job_fuel(&owner, run.fuel);
        if cancel.is_cancelled() {
            // Shutting down or moved: leave the run as running; another node takes over.
            // The record still says what this run burnt, so that it can be paid.
            if metered {
                self.publish_run(&owner, &run);
            }
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
        // The result is recorded: the job's keys are no longer needed here, and no other
        // node may have them any more.
        self.drop_grant(&owner, &format!("job:{}", job.id));
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
        let mut keys = None;
        for attempt in 0..GRANT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(GRANT_RETRY).await;
            }
            keys = self.grant(&owner, &purpose).await;
            if keys.is_some() {
                break;
            }
        }
        let keys = keys.ok_or(
            "no node holds the keys of this job's buckets (or the job was signed without key checks); submit it again",
        )?;
        // The standby (the node that takes over if this one dies) keeps the keys too: the
        // edge's push may have reached it before the job did, and the edge may be this
        // node. It checks them against the job's signed scope like any push.
        let standby: Vec<_> = runner::job_ranking(job, &self.candidates(), JOB_KEY_HOLDERS)
            .into_iter()
            .filter(|n| *n != self.node_id)
            .collect();
        self.push_grant(&owner, &purpose, &keys, &standby).await;
        // The scratch directory is named by the node, never by the tenant: a hash of the
        // job's owner and id, and a random suffix.
        let tag = blake3::hash(format!("{}/{}", job.owner, job.id).as_bytes());
        let dir = self.work_dir.join("jobs").join(format!(
            "{}-{}",
            hex::encode(&tag.as_bytes()[..8]),
            hex::encode(rand::random::<[u8; 4]>())
        ));
        let (in_dir, out_dir) = (dir.join("in"), dir.join("out"));
        let _cleanup = RemoveOnDrop(dir.clone());
        std::fs::create_dir_all(&in_dir).map_err(|e| format!("scratch space: {e}"))?;
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("scratch space: {e}"))?;
        // Inputs are streamed to disk, within the node's budget for one job's inputs.
        let mut budget = self.config.max_job_input_mb.saturating_mul(1 << 20);
        for input in &job.inputs {
            self.fetch_input(&owner, input, &keys, &in_dir, &mut budget)
                .await?;
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
        let limits = d.spec.limits(&self.config);
        let gauge = Arc::new(std::sync::atomic::AtomicU64::new(0));
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
            fuel_gauge: Some(gauge.clone()),
        };
        // `/out` is watched against the node's disk quota for one run.
        let run_cancel = cancel.child_token();
        let quota = scratch::QuotaWatch::start(
            out_dir.clone(),
            self.config.max_out_mb.saturating_mul(1 << 20),
            run_cancel.clone(),
        );
        let outcome = self.engine.run_command(&module, spec, run_cancel).await;
        let over_quota = quota.breached();
        drop(quota);
        // A cancelled run's usage says nothing of its fuel; the gauge has what it burnt up
        // to its last epoch tick.
        run.fuel = outcome
            .usage
            .fuel
            .max(gauge.load(std::sync::atomic::Ordering::Relaxed));
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
        if over_quota {
            return Err(format!(
                "the job's /out went past this node's quota of {} MiB",
                self.config.max_out_mb
            ));
        }
        if matches!(outcome.exit, ExitReason::Cancelled) {
            return Err("cancelled".into());
        }
        // Outputs are kept whatever the exit: a failed job's stderr explains it.
        let prefix = format!("jobs/{}", job.id);
        for (name, bytes) in [("stdout", stdout.contents()), ("stderr", stderr.contents())] {
            let key = format!("{prefix}/{name}");
            if self
                .put_bytes(&owner, &job.output_bucket, &key, &keys, bytes)
                .await
                .is_ok()
            {
                run.outputs.push(key);
            }
        }
        for file in scratch::walk(&out_dir, MAX_OUT_FILES, MAX_OUT_ENTRIES).files {
            let key = format!("{prefix}/out/{}", file.rel);
            if self
                .put_file(&owner, &job.output_bucket, &key, &keys, &out_dir, &file)
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

impl Compute {
    /// Streams one input object into a new file of the job's `/in`, named by the input's
    /// checked name and created without following links.
    async fn fetch_input(
        &self,
        owner: &PublicKeyBytes,
        input: &JobInput,
        keys: &xnode_store::ScopedKeys,
        in_dir: &Path,
        budget: &mut u64,
    ) -> Result<(), String> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let what = || format!("input {:?} ({}/{})", input.name, input.bucket, input.key);
        let file =
            scratch::create_new(in_dir, &input.name).map_err(|e| format!("{}: {e}", what()))?;
        let read = self
            .storage
            .get_object(owner, &input.bucket, &input.key, keys, None)
            .await
            .map_err(|e| format!("{}: {e}", what()))?;
        let too_large = || {
            format!(
                "{}: the job's inputs are larger than this node allows ({} MiB in all)",
                what(),
                self.config.max_job_input_mb
            )
        };
        let (start, end) = read.range;
        if end.saturating_sub(start) > *budget {
            return Err(too_large());
        }
        let mut file = tokio::fs::File::from_std(file);
        let mut body = read.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("{}: {e}", what()))?;
            *budget = budget
                .checked_sub(chunk.len() as u64)
                .ok_or_else(too_large)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", what()))?;
        }
        file.flush().await.map_err(|e| format!("{}: {e}", what()))
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
