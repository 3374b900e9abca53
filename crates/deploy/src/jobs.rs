//! Jobs: accepting a tenant-signed job, and what the network knows of its runs.

use std::sync::Arc;

use xnode_registry::Entry;
use xnode_store::DataKey;
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::catalog::check_entry_clock;
use crate::spec::{self, Kind, decode_job};
use crate::{Compute, ComputeOpError, runner};

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
        self.control.wake.notify_one();
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
        self.telemetry
            .recorder
            .record(&["compute", &scope], outcome, Some(*owner), unix_ms());
    }
}
