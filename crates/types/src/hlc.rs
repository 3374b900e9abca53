//! Hybrid logical clocks: timestamps that follow wall time but never go backwards.
//!
//! The registry orders concurrent writes by HLC, with the writer's key as the final tie
//! breaker, so every node picks the same winner whatever order updates arrive in.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A hybrid logical clock timestamp: wall-clock milliseconds plus a logical counter.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc {
    pub wall_ms: u64,
    pub logical: u32,
}

impl Hlc {
    pub const ZERO: Hlc = Hlc {
        wall_ms: 0,
        logical: 0,
    };

    pub fn new(wall_ms: u64, logical: u32) -> Self {
        Self { wall_ms, logical }
    }
}

/// A clock that issues strictly increasing [`Hlc`] timestamps and absorbs remote ones.
#[derive(Debug, Default)]
pub struct HlcClock {
    last: Mutex<Hlc>,
    /// Remote timestamps further than this ahead of local wall time are not absorbed, so a
    /// peer with a broken clock cannot drag everyone's clocks into the future.
    max_drift_ms: u64,
    /// Milliseconds added to the wall clock: a skewed clock for tests and drills only
    /// (set through the fault-injection API), zero otherwise.
    test_offset_ms: AtomicI64,
}

impl HlcClock {
    /// Remote clocks more than this far ahead are not absorbed.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    pub fn new() -> Self {
        Self {
            last: Mutex::new(Hlc::ZERO),
            max_drift_ms: Self::DEFAULT_MAX_DRIFT_MS,
            test_offset_ms: AtomicI64::new(0),
        }
    }

    /// Skews this clock's wall time by `offset_ms` (negative: behind), to test what
    /// nodes with wrong clocks do. Tests and drills only.
    pub fn set_test_offset_ms(&self, offset_ms: i64) {
        self.test_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn test_offset_ms(&self) -> i64 {
        self.test_offset_ms.load(Ordering::Relaxed)
    }

    fn wall_now(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        wall.saturating_add_signed(self.test_offset_ms())
    }

    /// Issues a timestamp greater than every one issued or observed before.
    pub fn now(&self) -> Hlc {
        self.tick(self.wall_now())
    }

    /// [`HlcClock::now`] with an explicit wall time, for deterministic tests.
    pub fn tick(&self, wall_ms: u64) -> Hlc {
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = if wall_ms > last.wall_ms {
            Hlc::new(wall_ms, 0)
        } else {
            Hlc::new(last.wall_ms, last.logical.saturating_add(1))
        };
        *last = next;
        next
    }

    /// Absorbs a remote timestamp so later local timestamps order after it.
    pub fn observe(&self, remote: Hlc) {
        self.observe_at(remote, self.wall_now());
    }

    /// [`HlcClock::observe`] with an explicit wall time.
    pub fn observe_at(&self, remote: Hlc, wall_ms: u64) {
        if remote.wall_ms > wall_ms.saturating_add(self.max_drift_ms) {
            return;
        }
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if remote > *last {
            *last = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_offset_skews_the_wall_time() {
        let clock = HlcClock::new();
        let before = clock.now();
        clock.set_test_offset_ms(3_600_000);
        let ahead = clock.now();
        assert!(ahead.wall_ms >= before.wall_ms + 3_600_000);
        clock.set_test_offset_ms(-3_600_000);
        // Behind: the clock never goes backwards, it counts logically instead.
        let behind = clock.now();
        assert_eq!(behind.wall_ms, ahead.wall_ms);
        assert!(behind > ahead);
    }

    #[test]
    fn strictly_increasing_even_when_wall_clock_stalls() {
        let clock = HlcClock::new();
        let a = clock.tick(100);
        let b = clock.tick(100);
        let c = clock.tick(99);
        assert!(a < b && b < c);
        let d = clock.tick(200);
        assert_eq!(d, Hlc::new(200, 0));
    }

    #[test]
    fn observing_a_remote_clock_orders_later_events_after_it() {
        let clock = HlcClock::new();
        clock.tick(100);
        clock.observe_at(Hlc::new(150, 7), 100);
        let next = clock.tick(120);
        assert!(next > Hlc::new(150, 7));
    }

    #[test]
    fn absurd_future_clocks_are_ignored() {
        let clock = HlcClock::new();
        clock.observe_at(Hlc::new(10_000_000, 0), 100);
        assert_eq!(clock.tick(100), Hlc::new(100, 0));
    }
}
