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
//!
//! The table is pruned: a run not observed to grow for the horizon
//! (`metering.runs_seen_horizon`) is forgotten ([`RunsSeen::prune`]). Forgetting must not
//! let the run's total be counted again, so a run the edge has no record of is counted
//! only if the tenant signed its work (the job or the deployment) within the horizon; an
//! older one is recorded at its reported total and counts only its later increases. Every
//! pruned run was first observed, so signed, before its last increase, which is older
//! than the horizon: its replay falls under that rule.

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
    /// When the tenant signed the work (the job's or the deployment's record, which the
    /// deployment layer takes only if not in the future): the run is no older. A run the
    /// edge has no record of counts from zero only if this is within the horizon.
    pub signed_ms: u64,
}

/// How many entries one pruning step reads and deletes at a time.
const PRUNE_BATCH: usize = 1024;

/// The edge's table of what it last observed of each run's report.
#[derive(Debug)]
pub(crate) struct RunsSeen {
    db: Db,
    table: Table,
    /// How long a run is remembered after its last observed increase.
    horizon_ms: u64,
}

impl RunsSeen {
    pub(crate) fn new(db: Db, table: Table, horizon_ms: u64) -> Self {
        Self {
            db,
            table,
            horizon_ms,
        }
    }

    /// Deletes the runs whose last observed increase (or first sighting) is more than the
    /// horizon before `now_ms`, and entries that do not decode. Returns how many went.
    pub(crate) fn prune(&self, now_ms: u64) -> Result<usize, MeteringError> {
        let oldest_kept = now_ms.saturating_sub(self.horizon_ms);
        let mut start: Vec<u8> = Vec::new();
        let mut removed = 0;
        loop {
            let batch = self.db.scan_from(self.table, &[], &start, PRUNE_BATCH)?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            // The next batch starts just after this one's last key.
            start = last.clone();
            start.push(0);
            let full = batch.len() == PRUNE_BATCH;
            let stale: Vec<WriteOp> = batch
                .into_iter()
                .filter(|(_, value)| {
                    xnode_wire::decode::<SeenRecord>(value, MAX_SEEN_RECORD)
                        .map_or(true, |seen| seen.seen_ms < oldest_kept)
                })
                .map(|(key, _)| WriteOp::Delete {
                    table: self.table,
                    key,
                })
                .collect();
            removed += stale.len();
            self.db.write(stale)?;
            if !full {
                break;
            }
        }
        Ok(removed)
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
        if stored.is_none() {
            // Work signed in the future (beyond the clock skew the deployment layer
            // allows) is not observed yet: a record now could be pruned before the
            // signature falls out of the horizon, and the run counted again.
            if report.signed_ms > now_ms {
                return Ok(0);
            }
            // A run of work signed before the horizon may have been observed and pruned:
            // it counts only what it adds from now on.
            if report.signed_ms < now_ms.saturating_sub(self.horizon_ms) {
                self.store(
                    key,
                    SeenRecord {
                        instance: report.instance,
                        observed: report.reported,
                        seen_ms: now_ms,
                    },
                )?;
                return Ok(0);
            }
        }
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
        self.store(key, record)?;
        Ok(increase)
    }

    fn store(&self, key: Vec<u8>, record: SeenRecord) -> Result<(), MeteringError> {
        self.db.write(vec![WriteOp::Put {
            table: self.table,
            key,
            value: xnode_wire::encode(&record)?,
        }])?;
        Ok(())
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
            signed_ms: 500,
        }
    }

    /// Long enough that the tests' clocks (a few seconds) never reach it.
    const HORIZON_MS: u64 = 1_000_000;

    #[test]
    fn a_report_is_observed_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let seen = RunsSeen::new(Db::open(&path).unwrap(), TABLE, HORIZON_MS);
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
        let seen = RunsSeen::new(Db::open(&path).unwrap(), TABLE, HORIZON_MS);
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
        let seen = RunsSeen::new(
            Db::open(&dir.path().join("db.redb")).unwrap(),
            TABLE,
            HORIZON_MS,
        );
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

    #[test]
    fn pruning_forgets_idle_runs_keeps_recent_ones_and_never_counts_a_run_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        let seen = RunsSeen::new(db.clone(), TABLE, HORIZON_MS);
        // An old job observed at 2 s, a worker still growing at 1,500 s.
        assert_eq!(
            seen.observe(&report("job:old", 0, 500), None, 2_000)
                .unwrap(),
            500
        );
        assert_eq!(
            seen.observe(&report("worker:w", 3, 40), None, 2_000)
                .unwrap(),
            40
        );
        assert_eq!(
            seen.observe(&report("worker:w", 3, 90), None, 1_500_000)
                .unwrap(),
            50
        );
        // At 1,100 s the horizon (1,000 s) reaches back to 100 s: the job goes, the
        // worker (last grown at 1,500 s... in the future of this clock) stays.
        assert_eq!(seen.prune(1_100_000).unwrap(), 1);
        assert_eq!(db.len(TABLE).unwrap(), 1);
        // The worker's record was kept: a replay of its total counts nothing.
        assert_eq!(
            seen.observe(&report("worker:w", 3, 90), None, 1_600_000)
                .unwrap(),
            0
        );
        // The job's record is gone, but its replay is not counted again: its work was
        // signed (at 0.5 s) before the horizon, so the edge records it at its total...
        assert_eq!(
            seen.observe(&report("job:old", 0, 500), None, 1_600_000)
                .unwrap(),
            0
        );
        // ... and counts only what it adds later.
        assert_eq!(
            seen.observe(&report("job:old", 0, 520), None, 1_700_000)
                .unwrap(),
            20
        );
        // A run of work signed within the horizon counts from zero.
        let recent = RunReport {
            signed_ms: 1_650_000,
            started_ms: 1_650_000,
            ..report("job:new", 0, 70)
        };
        assert_eq!(seen.observe(&recent, None, 1_700_000).unwrap(), 70);
        // Nothing idle for the horizon is left after a prune far later, and a run seen
        // again then is still counted once.
        assert_eq!(seen.prune(10_000_000).unwrap(), 3);
        assert_eq!(db.len(TABLE).unwrap(), 0);
        assert_eq!(seen.observe(&recent, None, 10_000_000).unwrap(), 0);
    }

    #[test]
    fn work_signed_in_the_future_is_not_observed_yet_and_garbage_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        let seen = RunsSeen::new(db.clone(), TABLE, HORIZON_MS);
        let early = RunReport {
            signed_ms: 5_000,
            ..report("job:early", 0, 300)
        };
        assert_eq!(seen.observe(&early, None, 4_000).unwrap(), 0);
        assert_eq!(db.len(TABLE).unwrap(), 0);
        assert_eq!(seen.observe(&early, None, 6_000).unwrap(), 300);
        // An entry that does not decode is pruned whatever its age.
        db.put(TABLE, b"garbage", &[0xff; 3]).unwrap();
        assert_eq!(seen.prune(6_000).unwrap(), 1);
        assert_eq!(db.len(TABLE).unwrap(), 1);
    }

    #[test]
    fn pruning_walks_past_a_full_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        let seen = RunsSeen::new(db.clone(), TABLE, HORIZON_MS);
        let names: Vec<String> = (0..PRUNE_BATCH + 10)
            .map(|i| format!("job:{i:05}"))
            .collect();
        for name in &names {
            seen.observe(&report(name, 0, 1), None, 2_000).unwrap();
        }
        // One recent run sorts after all of them.
        seen.observe(&report("job:zz", 0, 1), None, 5_000_000)
            .unwrap();
        assert_eq!(seen.prune(4_000_000).unwrap(), PRUNE_BATCH + 10);
        assert_eq!(db.len(TABLE).unwrap(), 1);
    }
}
