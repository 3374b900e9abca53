//! Metering of jobs and workers (`JobFuel`, `WorkerFuel`; see `docs/design/metering.md`
//! and the decision `2026-11-27-job-and-worker-fuel-is-observed-from-signed-reports.md`).
//!
//! - **Provider**: the node that runs a job meters the fuel the run burnt and publishes it
//!   in its run record; the node that runs a worker publishes each worker's cumulative
//!   fuel in its replica report and meters the increase each time it publishes. Both are
//!   proposed to the tenant's edge: the node that handed this node the work's keys (it
//!   accepted the job or deployment from the tenant), or, failing that, the node the
//!   tenant's traffic last came through.
//! - **Edge**: a node holding a tenant's countersigning grant observes those reports, and
//!   only those it has reason to believe: a job run whose runner is the job's runner in
//!   its view of placement (or was, see [`runner::run_counts`]), up to the job's fuel
//!   limit per runner; a worker replica on a node the deployment is placed on, at most
//!   [`MAX_WORKER_FUEL_PER_SECOND`] for the time since the previous observation.

use std::collections::HashMap;
use std::time::Duration;

use xnode_ledger::Resource;
use xnode_metering::RunReport;
use xnode_types::{NodeId, PublicKeyBytes};

use crate::grants::JOB_KEY_HOLDERS;
use crate::spec::{DeploymentSpec, JobRun, JobSpec, Kind, decode_run};
use crate::{Compute, ComputeConfig, runner};

/// The most fuel a tenant's edge believes one worker burns in a second. A worker is one
/// WebAssembly thread, and fuel counts about one unit per instruction executed, so this is
/// a few times what one core executes: an honest worker never reaches it, and a provider
/// cannot bill a worker for more than this rate for as long as the worker is placed on it.
pub const MAX_WORKER_FUEL_PER_SECOND: u64 = 4_000_000_000;

/// How often a node republishes its replica report when nothing but its workers' fuel
/// changed: the report is a registry entry gossiped to every node.
pub(crate) const FUEL_REPORT_INTERVAL: Duration = Duration::from_secs(5);

impl Compute {
    /// Provider: `from` handed this node the keys of `owner`'s work `purpose` (a push, or
    /// the answer to this node's request). Keys come only from nodes the tenant gave its
    /// data key or from nodes the work is placed on; the former is the tenant's edge for
    /// this work, so its fuel is proposed there. A job's runner (which passes the keys to
    /// its standby) and a deployment's replicas are not taken as the edge; a job's standby
    /// is, since the edge that accepted a job may rank second for it (and a runner asks
    /// the nodes the work is not placed on first, see [`Compute::grant`]).
    pub(crate) fn note_key_source(&self, from: NodeId, owner: &PublicKeyBytes, purpose: &str) {
        if from == self.node_id {
            return;
        }
        let runs_the_work = match purpose.strip_prefix("job:") {
            Some(id) => self
                .job(owner, id)
                .is_none_or(|job| runner::job_runners(&job, &self.candidates()).contains(&from)),
            None => self.holds_the_work(from, owner, purpose),
        };
        if !runs_the_work {
            self.metering.note_edge(*owner, from);
        }
    }

    /// Whether `node` is one of the nodes `owner`'s work `purpose` is placed on (a job's
    /// runner or standby, a deployment's replica) in this node's view, or the work is
    /// unknown here.
    pub(crate) fn holds_the_work(
        &self,
        node: NodeId,
        owner: &PublicKeyBytes,
        purpose: &str,
    ) -> bool {
        match purpose.strip_prefix("job:") {
            Some(id) => self.job(owner, id).is_none_or(|job| {
                runner::job_ranking(&job, &self.candidates(), JOB_KEY_HOLDERS).contains(&node)
            }),
            None => self
                .deployment(purpose)
                .is_none_or(|d| self.place(&d.spec).contains(&node)),
        }
    }

    /// Provider: meters `fuel` more of a job's run for `owner`. Returns whether it was
    /// metered (there is an edge to propose it to).
    pub(crate) fn meter_job_fuel(&self, owner: &PublicKeyBytes, fuel: u64) -> bool {
        fuel > 0
            && self
                .metering
                .provided_via_edge(*owner, Resource::JobFuel, fuel)
    }

    /// Provider: meters `fuel` more of a worker's run for `owner`. Returns whether the
    /// increase is accounted for (metered, or nothing to meter); if not, the caller keeps
    /// it and meters it once an edge is known, which the edge observed already.
    pub(crate) fn meter_worker_fuel(&self, owner: &PublicKeyBytes, fuel: u64) -> bool {
        fuel == 0
            || self
                .metering
                .provided_via_edge(*owner, Resource::WorkerFuel, fuel)
    }

    /// Edge: observes the fuel other nodes report for the jobs and workers of every
    /// tenant whose countersigning grant this node holds. Runs at each reconcile pass.
    pub(crate) fn observe_compute_usage(&self) {
        let me = self.node_id;
        let mut granted: HashMap<PublicKeyBytes, bool> = HashMap::new();
        let mut holds = |owner: &PublicKeyBytes| {
            *granted
                .entry(*owner)
                .or_insert_with(|| self.metering.holds_grant(owner))
        };
        for d in self.deployments() {
            if d.spec.kind != Kind::Worker || !holds(&d.owner) {
                continue;
            }
            let placed = self.place(&d.spec);
            let work = format!("worker:{}", d.spec.name);
            for (node, replica) in self.replicas_of(&d.spec.name) {
                if node == me || !placed.contains(&node) || replica.owner != d.owner.to_hex() {
                    continue;
                }
                let report = RunReport {
                    tenant: d.owner,
                    provider: node,
                    resource: Resource::WorkerFuel,
                    work: &work,
                    instance: replica.since_ms,
                    reported: replica.fuel,
                    // Not before the tenant signed the deployment.
                    started_ms: replica.since_ms.max(d.spec.created_ms),
                    signed_ms: d.spec.created_ms,
                };
                if let Err(e) = self
                    .metering
                    .observe_run(&report, Some(MAX_WORKER_FUEL_PER_SECOND))
                {
                    tracing::warn!(error = %e, "cannot observe a worker's fuel");
                }
            }
        }
        let candidates = self.candidates();
        for entry in self.registry.list("run/") {
            let Some((node, run)) = decode_run(&entry) else {
                continue;
            };
            if node == me || run.fuel == 0 {
                continue;
            }
            let Ok(owner) = PublicKeyBytes::from_hex(&run.owner) else {
                continue;
            };
            if !holds(&owner) {
                continue;
            }
            let Some(job) = self.job(&owner, &run.job) else {
                continue;
            };
            let Some(d) = self
                .deployment(&job.deployment)
                .filter(|d| d.owner == owner && d.spec.kind == Kind::Job)
            else {
                continue;
            };
            let runner = runner::job_runners(&job, &candidates).first().copied();
            if !runner::run_counts(&job, &node, runner.as_ref()) || !self.admitted(&node) {
                continue;
            }
            let work = format!("job:{}", job.id);
            let report = job_run_report(owner, node, &work, &run, &job, &d.spec, &self.config);
            if let Err(e) = self.metering.observe_run(&report, None) {
                tracing::warn!(error = %e, "cannot observe a job's fuel");
            }
        }
    }
}

/// The report an edge observes of one job run: the runner's cumulative fuel, capped at the
/// fuel limit of the job's deployment (the limit the tenant signed, itself capped by this
/// node's `max_fuel`), so a runner that reports more than the job could burn is billed
/// for the limit at most. One run per runner, so the instance is always zero. The job's
/// signing time, not the runner's claimed start, says how old the run can be.
fn job_run_report<'a>(
    tenant: PublicKeyBytes,
    provider: NodeId,
    work: &'a str,
    run: &JobRun,
    job: &JobSpec,
    spec: &DeploymentSpec,
    config: &ComputeConfig,
) -> RunReport<'a> {
    RunReport {
        tenant,
        provider,
        resource: Resource::JobFuel,
        work,
        instance: 0,
        reported: run.fuel.min(spec.limits(config).fuel),
        started_ms: run.started_ms,
        signed_ms: job.created_ms,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::{LimitsSpec, RunState};
    use xnode_types::SecretKey;

    fn job_spec(fuel: Option<u64>) -> DeploymentSpec {
        DeploymentSpec {
            v: 1,
            name: "transform".into(),
            kind: Kind::Job,
            module: "00".repeat(32),
            replicas: 1,
            limits: LimitsSpec {
                fuel,
                ..LimitsSpec::default()
            },
            env: Default::default(),
            args: vec![],
            allowed_hosts: vec![],
            placement: Default::default(),
            storage: None,
            memory_reserve_mb: None,
            owner: String::new(),
            created_ms: 1_000,
        }
    }

    fn job() -> JobSpec {
        JobSpec {
            v: 1,
            id: "j1".into(),
            deployment: "transform".into(),
            args: vec![],
            stdin_b64: String::new(),
            inputs: vec![],
            output_bucket: "out".into(),
            key_checks: Default::default(),
            owner: String::new(),
            created_ms: 1_500,
        }
    }

    fn run(fuel: u64) -> JobRun {
        JobRun {
            v: 1,
            job: "j1".into(),
            owner: String::new(),
            node: String::new(),
            state: RunState::Succeeded,
            exit_code: Some(0),
            reason: None,
            outputs: vec![],
            started_ms: 2_000,
            finished_ms: Some(3_000),
            fuel,
            wall_ms: 1_000,
        }
    }

    #[test]
    fn a_job_run_is_billed_at_most_the_fuel_limit_the_tenant_signed() {
        let tenant = SecretKey::from_seed(&[9; 32]).unwrap().public();
        let runner = SecretKey::from_seed(&[8; 32]).unwrap().node_id();
        let config = ComputeConfig::default();
        let limited = job_spec(Some(1_000_000));
        let job = job();
        assert!(
            config.max_fuel > 1_000_000,
            "the node's cap must not hide the job's"
        );

        // A runner reporting far more than the job's limit is observed at the limit.
        let inflated = job_run_report(
            tenant,
            runner,
            "job:j1",
            &run(u64::MAX),
            &job,
            &limited,
            &config,
        );
        assert_eq!(inflated.reported, 1_000_000);
        assert_eq!(inflated.resource, Resource::JobFuel);
        assert_eq!(inflated.instance, 0);
        // How old the run can be comes from the tenant's signature, not the runner.
        assert_eq!(
            (inflated.signed_ms, inflated.started_ms),
            (job.created_ms, 2_000)
        );
        let over = job_run_report(
            tenant,
            runner,
            "job:j1",
            &run(1_000_001),
            &job,
            &limited,
            &config,
        );
        assert_eq!(over.reported, 1_000_000);
        // An honest report under the limit is observed as it is.
        let honest = job_run_report(
            tenant,
            runner,
            "job:j1",
            &run(999_999),
            &job,
            &limited,
            &config,
        );
        assert_eq!(honest.reported, 999_999);

        // Without a limit in the spec the job's default limit applies, never the report.
        let unlimited = job_spec(None);
        let default_limit = unlimited.limits(&config).fuel;
        assert!(default_limit < u64::MAX);
        let capped = job_run_report(
            tenant,
            runner,
            "job:j1",
            &run(u64::MAX),
            &job,
            &unlimited,
            &config,
        );
        assert_eq!(capped.reported, default_limit);

        // A node whose `max_fuel` is below the signed limit caps at its own.
        let strict = ComputeConfig {
            max_fuel: 500,
            ..ComputeConfig::default()
        };
        let capped = job_run_report(
            tenant,
            runner,
            "job:j1",
            &run(1_000_000),
            &job,
            &limited,
            &strict,
        );
        assert_eq!(capped.reported, 500);
    }
}
