//! The edge's observation of jobs and workers, which it does not see run.
//!
//! For a function call the edge sees the answer; a job or a worker runs on its provider
//! with no answer passing through the edge. The provider instead reports, in the
//! registry, the cumulative usage of each run (a job's run record, a worker's replica
//! report), and the tenant's edge observes the *increase* of each report since the last
//! one it saw, bounded by what the tenant signed: the deployment layer passes the report
//! only if the work is the tenant's and placed on that provider, caps a job's total at the
//! job's fuel limit, and caps a worker's increase at a fuel rate times the time since the
//! previous observation. What the edge last saw of each run is kept in its database, so
//! a restart neither forgets nor counts a report twice (see `docs/design/metering.md`).

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table, WriteOp};
use xnode_ledger::Resource;
use xnode_types::{NodeId, PublicKeyBytes};
use xnode_wire::Versioned;

use crate::MeteringError;

/// What the edge last observed of one run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SeenRecord {
    /// The run instance the report was about (a worker replica's start time; zero for a
    /// job, whose run on one provider is one instance).
    instance: u64,
    /// The cumulative units observed of that instance.
    observed: u64,
    /// When the edge last observed an increase, or first saw the run.
    seen_ms: u64,
}

impl Versioned for SeenRecord {
    const KIND_TAG: u8 = xnode_wire::kinds::RUN_USAGE_SEEN;
    const KIND_NAME: &'static str = "run usage seen";
    const VERSION: u8 = 1;
}

const MAX_SEEN_RECORD: usize = 64;

/// One provider's report of one run's cumulative usage, as the deployment layer read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunReport<'a> {
    /// The tenant the run is for.
    pub tenant: PublicKeyBytes,
    /// The node that reported it (the runner).
    pub provider: NodeId,
    /// `JobFuel` or `WorkerFuel`.
    pub resource: Resource,
    /// The run's name within the tenant (`job:<id>`, `worker:<deployment>`).
    pub work: &'a str,
    /// Which run instance the total counts from: a new instance starts from zero.
    pub instance: u64,
    /// The cumulative units reported, already capped at any total the tenant signed.
    pub reported: u64,
    /// When the run started, as far as the edge can bound it (the first observation's
    /// rate cap counts from here).
    pub started_ms: u64,
}

/// The edge's table of what it last observed of each run's report.
#[derive(Debug)]
pub(crate) struct RunsSeen {
    db: Db,
    table: Table,
}

impl RunsSeen {
    pub(crate) fn new(db: Db, table: Table) -> Self {
        Self { db, table }
    }

    /// Records `report` at `now_ms` and returns the units newly observed: the increase of
    /// the reported total since the last observation of the same instance, at most
    /// `per_second` units per second since the last increase (`None`: no rate cap). A
    /// new instance starts from zero, but its rate cap still counts from the previous
    /// instance's last increase, so a provider cannot restart a run to be observed twice.
    pub(crate) fn observe(
        &self,
        report: &RunReport<'_>,
        per_second: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, MeteringError> {
        let key = seen_key(report);
        let stored = match self.db.get(self.table, &key)? {
            Some(bytes) => Some(xnode_wire::decode::<SeenRecord>(&bytes, MAX_SEEN_RECORD)?),
            None => None,
        };
        let (before, since_ms) = match stored {
            Some(seen) if seen.instance == report.instance => (seen.observed, seen.seen_ms),
            Some(seen) => (0, seen.seen_ms),
            None => (0, report.started_ms.min(now_ms)),
        };
        let mut increase = report.reported.saturating_sub(before);
        if let Some(per_second) = per_second {
            let elapsed_ms = now_ms.saturating_sub(since_ms);
            let allowed = u128::from(per_second) * u128::from(elapsed_ms) / 1000;
            increase = increase.min(u64::try_from(allowed).unwrap_or(u64::MAX));
        }
        if increase == 0 && stored.is_some_and(|seen| seen.instance == report.instance) {
            return Ok(0);
        }
        let record = SeenRecord {
            instance: report.instance,
            observed: before.saturating_add(increase),
            seen_ms: if increase > 0 || stored.is_none() {
                now_ms
            } else {
                since_ms
            },
        };
        self.db.write(vec![WriteOp::Put {
            table: self.table,
            key,
            value: xnode_wire::encode(&record)?,
        }])?;
        Ok(increase)
    }
}

/// `tenant (32) | resource code (1) | provider length (1) | provider | work`.
fn seen_key(report: &RunReport<'_>) -> Vec<u8> {
    let provider = report.provider.to_bytes();
    let mut out = Vec::with_capacity(34 + provider.len() + report.work.len());
    out.extend_from_slice(&report.tenant.0);
    out.push(report.resource.code());
    out.push(u8::try_from(provider.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&provider);
    out.extend_from_slice(report.work.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    const TABLE: Table = Table("test_runs_seen");

    fn report(work: &str, instance: u64, reported: u64) -> RunReport<'_> {
        RunReport {
            tenant: SecretKey::from_seed(&[9; 32]).unwrap().public(),
            provider: SecretKey::from_seed(&[8; 32]).unwrap().node_id(),
            resource: Resource::WorkerFuel,
            work,
            instance,
            reported,
            started_ms: 1_000,
        }
    }

    #[test]
    fn a_report_is_observed_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let seen = RunsSeen::new(Db::open(&path).unwrap(), TABLE);
            assert_eq!(
                seen.observe(&report("job:a", 0, 500), None, 2_000).unwrap(),
                500
            );
            assert_eq!(
                seen.observe(&report("job:a", 0, 500), None, 3_000).unwrap(),
                0
            );
            assert_eq!(
                seen.observe(&report("job:a", 0, 700), None, 4_000).unwrap(),
                200
            );
            // A report going backwards observes nothing.
            assert_eq!(
                seen.observe(&report("job:a", 0, 100), None, 5_000).unwrap(),
                0
            );
        }
        let seen = RunsSeen::new(Db::open(&path).unwrap(), TABLE);
        assert_eq!(
            seen.observe(&report("job:a", 0, 700), None, 6_000).unwrap(),
            0
        );
        assert_eq!(
            seen.observe(&report("job:b", 0, 50), None, 6_000).unwrap(),
            50
        );
    }

    #[test]
    fn the_rate_cap_bounds_an_inflated_report_and_restarts_do_not_reset_it() {
        let dir = tempfile::tempdir().unwrap();
        let seen = RunsSeen::new(Db::open(&dir.path().join("db.redb")).unwrap(), TABLE);
        // Started at 1 s, first seen at 3 s: at most 2 s of 100 units a second.
        assert_eq!(
            seen.observe(&report("worker:w", 7, u64::MAX), Some(100), 3_000)
                .unwrap(),
            200
        );
        // Half a second later, 50 more.
        assert_eq!(
            seen.observe(&report("worker:w", 7, u64::MAX), Some(100), 3_500)
                .unwrap(),
            50
        );
        // A "restarted" replica starts from zero, but its cap counts from the last
        // increase, not from its claimed start.
        let restarted = RunReport {
            started_ms: 0,
            ..report("worker:w", 8, u64::MAX)
        };
        assert_eq!(seen.observe(&restarted, Some(100), 4_000).unwrap(), 50);
        // An honest report under the cap is observed whole.
        assert_eq!(
            seen.observe(&report("worker:w", 8, 80), Some(100), 10_000)
                .unwrap(),
            30
        );
    }
}
