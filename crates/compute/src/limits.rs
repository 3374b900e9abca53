//! Per-invocation limits, the memory limiter that enforces them, and usage accounting.

use std::time::{Duration, Instant};

use crate::ComputeError;

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
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            started: Instant::now(),
            peak_memory: 0,
            memory_refused: false,
            timed_out: false,
        }
    }

    /// Called on every epoch tick while the guest runs: yields to the executor so one
    /// busy guest cannot hold a runtime thread, and stops the guest past its deadline.
    pub fn on_epoch(&mut self) -> wasmtime::UpdateDeadline {
        if let Some(timeout) = self.limits.timeout
            && self.started.elapsed() >= timeout
        {
            self.timed_out = true;
            return wasmtime::UpdateDeadline::Interrupt;
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
