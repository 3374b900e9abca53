//! The most common worker: a job that runs every so often. [`periodic`] turns an async
//! closure into a [`Worker`] that runs it, then sleeps until the next tick.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Progress, Step, Worker, WorkerError};

/// How a periodic worker paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// Run at once, then every period.
    Immediately(Duration),
    /// Wait one period before the first run.
    AfterFirstPeriod(Duration),
}

impl Interval {
    fn period(self) -> Duration {
        match self {
            Interval::Immediately(p) | Interval::AfterFirstPeriod(p) => p,
        }
    }
}

/// A worker that runs `job` on an interval. The job returns how many items it handled
/// (they add up in the worker's progress) or an error the runner records.
pub struct Periodic<F> {
    name: String,
    interval: Interval,
    ticker: Option<tokio::time::Interval>,
    job: F,
    progress: Progress,
}

/// Builds a [`Periodic`] worker.
pub fn periodic<F, Fut>(name: impl Into<String>, interval: Interval, job: F) -> Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, WorkerError>> + Send,
{
    Periodic {
        name: name.into(),
        interval,
        ticker: None,
        job,
        progress: Progress::default(),
    }
}

impl<F> Periodic<F> {
    fn ticker(&mut self) -> &mut tokio::time::Interval {
        let interval = self.interval;
        self.ticker.get_or_insert_with(|| {
            let period = interval.period().max(Duration::from_millis(1));
            let start = match interval {
                Interval::Immediately(_) => tokio::time::Instant::now(),
                Interval::AfterFirstPeriod(_) => tokio::time::Instant::now() + period,
            };
            let mut ticker = tokio::time::interval_at(start, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        })
    }
}

#[async_trait::async_trait]
impl<F, Fut> Worker for Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, WorkerError>> + Send,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        let items = (self.job)().await?;
        self.progress.items_done = self.progress.items_done.saturating_add(items);
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        self.ticker().tick().await;
        Step::Busy
    }
}

impl<F> std::fmt::Debug for Periodic<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}
