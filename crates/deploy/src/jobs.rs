//! Jobs: accepting a tenant-signed job, and what the network knows of its runs.

use std::sync::Arc;

use xnode_registry::Entry;
use xnode_store::DataKey;
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::catalog::check_entry_clock;
use crate::grants::JOB_KEY_HOLDERS;
use crate::spec::{self, Kind, decode_job};
use crate::{Compute, ComputeOpError, runner};

impl Compute {
    /// Accepts a tenant-signed job. The node that runs it is chosen by placement; the keys
    /// of the job's buckets are kept here and pushed to that node.
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
        // The same checks as every other path (`decode_job`), with the reason spelled out.
        let job: spec::JobSpec = serde_json::from_slice(entry.value.as_deref().unwrap_or_default())
            .map_err(|e| ComputeOpError::BadRequest(format!("the job record is not valid: {e}")))?;
        job.validate().map_err(ComputeOpError::BadRequest)?;
        check_entry_clock(&entry)?;
        let job = decode_job(&entry).ok_or_else(|| {
            ComputeOpError::BadRequest(
                "the job record does not match its key and owner, or is dated in the future".into(),
            )
        })?;
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
        // Fail now, not on a remote node later, when an input or the output bucket is wrong.
        for input in &job.inputs {
            self.storage
                .head_object(tenant, &input.bucket, &input.key)
                .await?;
        }
        self.storage
            .list_objects(tenant, &job.output_bucket, "", None, 1)
            .await?;
        // The runner gets the keys of the job's buckets only, derived here at the
        // tenant's edge and checked against the checks the tenant signed.
        let scope = job.signed_scope().ok_or_else(|| {
            ComputeOpError::BadRequest(
                "a job must sign the key checks of its input and output buckets (key_checks); update the client".into(),
            )
        })?;
        let keys = Self::derive_grant(&data_key, &scope)?;
        self.registry
            .apply_tenant_entry(entry.clone())
            .map_err(|e| ComputeOpError::from_registry("job", e))?;
        let purpose = format!("job:{}", job.id);
        self.accept_grant(tenant, &purpose, &keys)
            .map_err(|e| ComputeOpError::Internal(e.to_string()))?;
        let holders = runner::job_ranking(&job, &self.candidates(), JOB_KEY_HOLDERS);
        self.push_grant(tenant, &purpose, &keys, &holders).await;
        self.control.wake.notify_one();
        Ok(entry)
    }

    /// Every run of a job reported by a node that may report on it: its runner in this
    /// node's view of placement, or a node ranked above it (an earlier runner, not live
    /// now), and admitted. Reports from any other node are ignored (see
    /// [`runner::run_counts`]).
    pub fn job_runs(&self, owner: &PublicKeyBytes, id: &str) -> Vec<spec::JobRun> {
        let Some(job) = self.job(owner, id) else {
            return Vec::new();
        };
        let candidates = self.candidates();
        let runner = runner::job_runners(&job, &candidates).first().copied();
        let suffix = format!("/job/{}/{id}", owner.to_hex());
        self.registry
            .list("run/")
            .iter()
            .filter(|e| e.key.ends_with(&suffix))
            .filter_map(spec::decode_run)
            .filter(|(node, _)| runner::run_counts(&job, node, runner.as_ref()))
            .filter(|(node, _)| self.admitted(node))
            .map(|(_, run)| run)
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
