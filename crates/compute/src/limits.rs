//! Per-invocation limits, the memory limiter that enforces them, and usage accounting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ComputeError;

/// Epoch ticks a function may run before it counts as long-running and must take turns
/// on the engine's CPU lanes (see [`Lane`]).
pub(crate) const LONG_RUNNING_AFTER_TICKS: u32 = 2;

/// A function's place in the queue for the engine's CPU lanes.
///
/// Short calls never touch the lanes. A call still running after
/// [`LONG_RUNNING_AFTER_TICKS`] epoch ticks runs only while it holds one of the engine's
/// few lane permits (by default one less than the cores), and gives it back at every tick
/// to queue again (the semaphore is first-come first-served), so long-running guests take
/// turns on at most that many cores and at least one core always stays free for short
/// calls: one tenant's CPU-bound function cannot starve everyone else's.
///
/// While short calls are being served (one finished within the last
/// [`SHORT_ACTIVITY_WINDOW`]), a long-running one also pauses for [`Lane::PAUSE_TICKS`]
/// ticks after each tick it computes: on a small machine one lane is a whole core, and
/// short calls need more than what is left beside the network and the node's own work.
/// With no short calls about, long-running calls run at full speed.
pub(crate) struct Lane {
    lanes: Arc<Semaphore>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// When short calls last finished (shared by the engine).
    short_activity: Arc<ShortActivity>,
    long_running: bool,
    tick: Duration,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if !self.long_running {
            self.short_activity.short_call_done();
        }
    }
}

/// How recently a short call must have finished for long-running ones to pause.
pub(crate) const SHORT_ACTIVITY_WINDOW: Duration = Duration::from_millis(20);

/// When the engine last finished a short call.
pub(crate) struct ShortActivity {
    base: Instant,
    last_done_us: AtomicU64,
}

impl Default for ShortActivity {
    fn default() -> Self {
        ShortActivity {
            base: Instant::now(),
            last_done_us: AtomicU64::new(0),
        }
    }
}

impl ShortActivity {
    fn now_us(&self) -> u64 {
        // Offset by the window so that "never" (0) is never recent.
        self.base.elapsed().as_micros() as u64 + SHORT_ACTIVITY_WINDOW.as_micros() as u64
    }

    fn short_call_done(&self) {
        self.last_done_us.store(self.now_us(), Ordering::Release);
    }

    fn recent(&self) -> bool {
        self.now_us()
            .saturating_sub(self.last_done_us.load(Ordering::Acquire))
            < SHORT_ACTIVITY_WINDOW.as_micros() as u64
    }
}

impl Lane {
    /// Epoch ticks a long-running call pauses after each tick it ran, while short calls
    /// are being served: such a call gets about a sixth of a lane.
    pub const PAUSE_TICKS: u32 = 5;

    /// A new call's place (short until it has run long).
    pub fn new(lanes: Arc<Semaphore>, short_activity: Arc<ShortActivity>, tick: Duration) -> Lane {
        Lane {
            lanes,
            held: Arc::new(Mutex::new(None)),
            short_activity,
            long_running: false,
            tick,
        }
    }

    fn mark_long_running(&mut self) {
        self.long_running = true;
    }

    /// A handle that gives the lane back, for host calls that wait (outbound requests):
    /// a guest waiting on the network has no use for a core.
    pub fn releaser(&self) -> LaneReleaser {
        LaneReleaser(self.held.clone())
    }

    /// Gives back the lane held (if any) and returns a future that queues for a lane
    /// again, for at most `wait` (past it the guest's deadline stops it anyway).
    fn requeue(
        &mut self,
        wait: Option<Duration>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        release(&self.held);
        let lanes = self.lanes.clone();
        let held = self.held.clone();
        let pause = self
            .short_activity
            .recent()
            .then(|| self.tick * Self::PAUSE_TICKS);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            let wait = wait.map(|w| w.saturating_sub(started.elapsed()));
            let acquire = lanes.acquire_owned();
            let permit = match wait {
                Some(wait) => tokio::time::timeout(wait, acquire).await.ok(),
                None => Some(acquire.await),
            };
            if let Some(Ok(permit)) = permit {
                *lock(&held) = Some(permit);
            }
        })
    }
}

/// Gives a lane back (see [`Lane::releaser`]).
#[derive(Clone)]
pub(crate) struct LaneReleaser(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl LaneReleaser {
    pub fn release(&self) {
        release(&self.0);
    }
}

fn release(held: &Mutex<Option<OwnedSemaphorePermit>>) {
    drop(lock(held).take());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Limits on one invocation. A deployment's manifest sets them; the node caps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, WebAssembly instructions) one invocation may burn.
    pub fuel: u64,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time one invocation may take; `None` for long-running workers.
    pub timeout: Option<Duration>,
    /// Bytes of response body (functions) or of stdout plus stderr (commands).
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 2_000_000_000,
            memory_bytes: 64 << 20,
            timeout: Some(Duration::from_secs(10)),
            max_output_bytes: 10 << 20,
        }
    }
}

/// What one invocation used, for metrics and, later, payment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub fuel: u64,
    pub wall: Duration,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// State every store carries to enforce [`Limits`] and to explain why a run stopped.
pub(crate) struct Guard {
    pub limits: Limits,
    pub started: Instant,
    pub peak_memory: u64,
    pub memory_refused: bool,
    pub timed_out: bool,
    /// Epoch ticks seen while running.
    ticks: u32,
    /// Functions take turns on the engine's CPU lanes once long-running; commands (jobs
    /// and workers, long-running by nature) do not.
    lane: Option<Lane>,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            started: Instant::now(),
            peak_memory: 0,
            memory_refused: false,
            timed_out: false,
            ticks: 0,
            lane: None,
        }
    }

    /// Makes this run take turns on the CPU lanes once it is long-running.
    pub fn with_lane(mut self, lane: Lane) -> Guard {
        self.lane = Some(lane);
        self
    }

    /// Called on every epoch tick while the guest runs: yields to the executor so one
    /// busy guest cannot hold a runtime thread, makes a long-running function queue for
    /// a CPU lane, and stops the guest past its deadline.
    pub fn on_epoch(&mut self) -> wasmtime::UpdateDeadline {
        let elapsed = self.started.elapsed();
        if let Some(timeout) = self.limits.timeout
            && elapsed >= timeout
        {
            self.timed_out = true;
            return wasmtime::UpdateDeadline::Interrupt;
        }
        self.ticks = self.ticks.saturating_add(1);
        if let Some(lane) = &mut self.lane
            && self.ticks >= LONG_RUNNING_AFTER_TICKS
        {
            lane.mark_long_running();
            let wait = self.limits.timeout.map(|t| t.saturating_sub(elapsed));
            return wasmtime::UpdateDeadline::YieldCustom(1, lane.requeue(wait));
        }
        wasmtime::UpdateDeadline::Yield(1)
    }

    /// Turns the error a run ended with into the reason a user should see.
    pub fn explain(&self, error: &wasmtime::Error) -> ComputeError {
        if self.timed_out {
            return ComputeError::Timeout(
                self.limits
                    .timeout
                    .map(|t| t.as_millis() as u64)
                    .unwrap_or(0),
            );
        }
        if self.memory_refused {
            return ComputeError::OutOfMemory(self.limits.memory_bytes >> 20);
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => ComputeError::OutOfFuel(self.limits.fuel),
            Some(wasmtime::Trap::StackOverflow) => ComputeError::StackOverflow,
            Some(wasmtime::Trap::Interrupt) => ComputeError::Timeout(
                self.limits
                    .timeout
                    .map(|t| t.as_millis() as u64)
                    .unwrap_or(0),
            ),
            Some(trap) => ComputeError::Trap(trap.to_string()),
            None => ComputeError::Trap(format!("{error:#}")),
        }
    }
}

impl wasmtime::ResourceLimiter for Guard {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }
}
