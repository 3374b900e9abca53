//! Small helpers every crate needs, kept once here so that no crate grows its own copy:
//! wall-clock milliseconds, poison-tolerant locking, and durations written as text.

use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this machine's clock (0 if the clock is before
/// 1970, which only a broken machine reports; callers treat 0 as "unknown").
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (for trace spans).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Locks a mutex, recovering the data if a thread panicked while holding it. The data a
/// node guards with mutexes (caches, counters, views) stays usable after such a panic, and
/// one failed request must not take every later request down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Reads a clone of what an `RwLock` guards, recovering from poisoning as [`lock`] does.
pub fn read_clone<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Serde helpers for a `Duration` written as humantime text ("90s", "5m", "1h") in
/// configuration files: `#[serde(with = "xnode_types::duration_text")]`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 5);
    }

    #[test]
    fn durations_round_trip_as_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            #[serde(with = "duration_text")]
            d: std::time::Duration,
        }
        let text = serde_json::to_string(&C {
            d: std::time::Duration::from_secs(90),
        })
        .unwrap();
        assert_eq!(text, r#"{"d":"1m 30s"}"#);
        let back: C = serde_json::from_str(r#"{"d":"5m"}"#).unwrap();
        assert_eq!(back.d, std::time::Duration::from_secs(300));
        assert!(serde_json::from_str::<C>(r#"{"d":"five"}"#).is_err());
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(unix_ms() > 1_577_836_800_000);
        assert!(unix_nanos() / 1_000_000 >= unix_ms() - 1000);
    }
}
