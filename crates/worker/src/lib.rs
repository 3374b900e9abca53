//! Background work as named workers with a status, run by one runner that can list them.
//!
//! Every loop a node runs in the background (repair scans, scrubbing, garbage collection,
//! gossip intake, anti-entropy, reconciling deployments, publishing summaries, serving an
//! RPC service) is a [`Worker`]: it says its name, does one step of work at a time, and
//! waits for more when it has none. The [`Runner`] drives every worker with the node's
//! shared shutdown signal and keeps what an operator needs to see: whether each worker is
//! idle, busy or failing, when it last ran, how many steps it did and its last error.
//! `GET /v1/node/workers` and `xnode workers` show exactly this.
//!
//! The shape follows Garage's `util/background`: `work` is one bounded step, so a long
//! scan keeps a cursor in the worker and yields between steps; `wait_for_work` is where a
//! worker sleeps (a timer, a channel), so the runner can tell idle from busy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xnode_types::{lock, unix_ms};

mod inbox;
mod interval;

pub use inbox::{Inbox, Source, inbox};
pub use interval::{Interval, Periodic, periodic};

/// What a worker's step left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is more work now: call `work` again at once.
    Busy,
    /// Nothing to do until `wait_for_work` returns.
    Idle,
    /// The worker has finished for good (its input closed).
    Done,
}

/// A step that failed. The runner records it, waits a moment and carries on: a failed
/// repair pass or an unreachable peer is a reason to try again later, not to stop.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WorkerError {
    message: String,
}

impl WorkerError {
    /// An error worth showing an operator (it should say what failed and why).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Wraps any error, keeping its text and its chain of causes.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message }
    }
}

/// What a worker says about its own progress, beyond what the runner measures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Items handled since start (chunks scrubbed, entries merged, requests served…).
    pub items_done: u64,
    /// Items waiting, where the worker knows (a queue length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// One line about where the worker stands ("cursor at 3f…", "last pass 120 entries").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A background worker.
#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    /// A stable name, unique on the node (`storage-repair`, `rpc:store`, …).
    fn name(&self) -> String;

    /// The worker's own account of its progress.
    fn progress(&self) -> Progress {
        Progress::default()
    }

    /// Does one bounded step of work. `shutdown` is cancelled when the node stops; a step
    /// that may take long should give up when it is.
    async fn work(&mut self, shutdown: &CancellationToken) -> Result<Step, WorkerError>;

    /// Waits until there is work again, and says what to do next (usually `Busy`; `Done`
    /// if the worker's input has closed).
    async fn wait_for_work(&mut self) -> Step;
}

#[async_trait::async_trait]
impl Worker for Box<dyn Worker> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn progress(&self) -> Progress {
        (**self).progress()
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        (**self).work(shutdown).await
    }

    async fn wait_for_work(&mut self) -> Step {
        (**self).wait_for_work().await
    }
}

/// The state of a worker as the runner last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// In a step of work.
    Busy,
    /// Waiting for work.
    Idle,
    /// The last step failed; the worker waits before it tries again.
    Error,
    /// Finished (its input closed, or the node is stopping).
    Done,
}

/// Everything the runner knows about one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub state: WorkerState,
    /// Steps of work done since start.
    pub steps: u64,
    /// Steps that failed since start.
    pub errors: u64,
    /// Failures in a row (0 once a step succeeds).
    pub consecutive_errors: u64,
    /// When the last step ended (Unix ms).
    pub last_run_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub progress: Progress,
}

impl WorkerInfo {
    fn new(name: String) -> Self {
        Self {
            name,
            state: WorkerState::Idle,
            steps: 0,
            errors: 0,
            consecutive_errors: 0,
            last_run_ms: None,
            last_error: None,
            last_error_ms: None,
            progress: Progress::default(),
        }
    }
}

/// How long a worker waits after a failed step: 1 s, doubling with each failure in a row,
/// at most 30 s. A worker that fails forever still tries twice a minute, so it recovers by
/// itself once the cause goes away.
fn backoff(consecutive_errors: u64) -> Duration {
    let exp = consecutive_errors.saturating_sub(1).min(5) as u32;
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(30))
}

/// A worker's task and its name.
type NamedTask = (String, JoinHandle<()>);

/// Runs workers until the shared shutdown signal, and reports their state.
#[derive(Clone)]
pub struct Runner {
    shutdown: CancellationToken,
    infos: Arc<Mutex<BTreeMap<String, WorkerInfo>>>,
    tasks: Arc<Mutex<Vec<NamedTask>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("workers", &lock(&self.infos).len())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner whose workers stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            infos: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// The shutdown signal every worker shares.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Starts a worker on its own task. A second worker with a name already running gets
    /// a numbered name (`name#2`), so no worker hides another in the listing.
    pub fn spawn(&self, worker: impl Worker) {
        let mut name = worker.name();
        {
            let mut infos = lock(&self.infos);
            if infos.contains_key(&name) {
                let mut n = 2;
                while infos.contains_key(&format!("{name}#{n}")) {
                    n += 1;
                }
                name = format!("{name}#{n}");
            }
            infos.insert(name.clone(), WorkerInfo::new(name.clone()));
        }
        let infos = self.infos.clone();
        let shutdown = self.shutdown.clone();
        let task_name = name.clone();
        let handle = tokio::spawn(async move {
            run(worker, &task_name, &infos, &shutdown).await;
            if let Some(info) = lock(&infos).get_mut(&task_name) {
                info.state = WorkerState::Done;
            }
            tracing::debug!(worker = %task_name, "worker stopped");
        });
        lock(&self.tasks).push((name, handle));
    }

    /// Every worker and its state, by name.
    pub fn list(&self) -> Vec<WorkerInfo> {
        lock(&self.infos).values().cloned().collect()
    }

    /// Signals shutdown and waits (up to `grace` each) for every worker to finish.
    pub async fn stop(&self, grace: Duration) {
        self.shutdown.cancel();
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for (name, task) in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!(worker = %name, "worker did not stop within {grace:?}; aborting it");
                abort.abort();
            }
        }
    }
}

async fn run(
    mut worker: impl Worker,
    name: &str,
    infos: &Mutex<BTreeMap<String, WorkerInfo>>,
    shutdown: &CancellationToken,
) {
    let set_state = |state: WorkerState| {
        if let Some(info) = lock(infos).get_mut(name) {
            info.state = state;
        }
    };
    // Every worker starts by waiting for its first occasion (a timer's first tick, the
    // first message), so a periodic worker can ask to wait a period before it first runs.
    let mut next = Step::Idle;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match next {
            Step::Done => return,
            Step::Idle => {
                set_state(WorkerState::Idle);
                next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    step = worker.wait_for_work() => step,
                };
            }
            Step::Busy => {
                set_state(WorkerState::Busy);
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = worker.work(shutdown) => result,
                };
                let progress = worker.progress();
                let now = unix_ms();
                let mut pause = None;
                if let Some(info) = lock(infos).get_mut(name) {
                    info.steps = info.steps.saturating_add(1);
                    info.last_run_ms = Some(now);
                    info.progress = progress;
                    match &result {
                        Ok(_) => info.consecutive_errors = 0,
                        Err(e) => {
                            info.errors = info.errors.saturating_add(1);
                            info.consecutive_errors = info.consecutive_errors.saturating_add(1);
                            info.last_error = Some(e.to_string());
                            info.last_error_ms = Some(now);
                            info.state = WorkerState::Error;
                            pause = Some(backoff(info.consecutive_errors));
                        }
                    }
                }
                next = match result {
                    Ok(step) => step,
                    Err(e) => {
                        tracing::warn!(worker = %name, error = %e, "worker step failed");
                        if let Some(pause) = pause {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(pause) => {}
                            }
                        }
                        // After an error, wait for the worker's next occasion (its timer
                        // or its input) rather than hammering the same failure.
                        Step::Idle
                    }
                };
                // A worker that is always busy still lets the rest of the runtime run.
                if next == Step::Busy {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
