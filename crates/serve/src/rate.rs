//! Request rate limits: a token bucket per client address ([`RateLimiter`]), and per
//! any other key, such as the tenant that signed a request ([`KeyedRateLimiter`]).
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; every request takes
//! one, and a request that finds none is refused (the server answers `429` with the time
//! until a token is back). IPv6 clients are counted per /64 network, the block a single
//! host or home usually gets, so one machine cannot give itself fresh allowances by
//! changing the low bits of its address.
//!
//! The map of buckets is bounded: a bucket that has refilled completely is the same as no
//! bucket, so such idle entries are dropped whenever the map is full. If it is still full
//! of keys that are all mid-burst (a distributed flood), a new key is refused until
//! entries go idle, rather than letting memory grow without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Addresses (or IPv6 /64 networks), or other keys, tracked at once.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// A refusal: how long until the address may send again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

/// Token buckets per client address.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: KeyedRateLimiter<IpAddr>,
}

/// Token buckets per key: the tenant that signed a request, for instance. Only keys that
/// were authenticated should be counted, or a client could spend another's allowance.
#[derive(Debug)]
pub struct KeyedRateLimiter<K> {
    per_second: f64,
    burst: f64,
    max_tracked: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
    refused: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// The tokens at `now`, refilled since the last update and capped at `burst`.
    fn refilled(&self, now: Instant, per_second: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * per_second).min(burst)
    }
}

impl RateLimiter {
    /// Allows `per_second` requests per address on average, `burst` at once. Both are
    /// at least 1 (the configuration is validated before).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_capacity(per_second, burst, MAX_TRACKED_ADDRESSES)
    }

    fn with_capacity(per_second: u32, burst: u32, max_tracked: usize) -> Self {
        Self {
            buckets: KeyedRateLimiter::with_capacity(per_second, burst, max_tracked),
        }
    }

    /// Takes a token for a request from `address` at `now`, or says how long to wait.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), RateLimited> {
        self.buckets.check(rate_key(address), now)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.buckets.refused()
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.tracked()
    }
}

impl<K: Hash + Eq> KeyedRateLimiter<K> {
    /// Allows `per_second` requests per key on average, `burst` at once. Both are at
    /// least 1 (the configuration is validated before).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_capacity(per_second, burst, MAX_TRACKED_ADDRESSES)
    }

    fn with_capacity(per_second: u32, burst: u32, max_tracked: usize) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            max_tracked: max_tracked.max(1),
            buckets: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// A bucket that refills at `per_second` and holds up to `burst`, both in any unit
    /// (bytes, for instance), for [`Self::take`]. Both are at least 1.
    pub fn per_unit(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: if per_second.is_finite() {
                per_second.max(1.0)
            } else {
                1.0
            },
            burst: if burst.is_finite() {
                burst.max(1.0)
            } else {
                1.0
            },
            max_tracked: MAX_TRACKED_ADDRESSES,
            buckets: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a token for a request counted under `key` at `now`, or says how long to
    /// wait.
    pub fn check(&self, key: K, now: Instant) -> Result<(), RateLimited> {
        self.take(key, 1.0, now)
    }

    /// Takes `cost` tokens under `key` at `now`, or says how long until there are
    /// enough. A cost above the burst can never be paid and is refused with the time a
    /// full bucket takes to refill.
    pub fn take(&self, key: K, cost: f64, now: Instant) -> Result<(), RateLimited> {
        let cost = if cost.is_finite() {
            cost.max(0.0)
        } else {
            f64::MAX
        };
        let mut buckets = xnode_types::lock(&self.buckets);
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.refilled(now, per_second, burst) < burst);
            if buckets.len() >= self.max_tracked {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(RateLimited {
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let tokens = bucket.refilled(now, self.per_second, self.burst);
        bucket.updated = now;
        if tokens >= cost {
            bucket.tokens = tokens - cost;
            Ok(())
        } else {
            bucket.tokens = tokens;
            self.refused.fetch_add(1, Ordering::Relaxed);
            // Whole seconds, rounded up, as Retry-After carries them.
            let wait = ((cost.min(self.burst) - tokens) / self.per_second)
                .ceil()
                .max(1.0);
            Err(RateLimited {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        xnode_types::lock(&self.buckets).len()
    }
}

/// The key an address is counted under: IPv4 addresses (also when mapped into IPv6) as
/// they are, IPv6 addresses by their /64 network.
fn rate_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        let limiter = RateLimiter::new(10, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(a, t0), Ok(()));
        }
        let refused = limiter.check(a, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // Another address has its own allowance.
        assert_eq!(limiter.check("192.0.2.2".parse().unwrap(), t0), Ok(()));
        // 10 per second: after 300 ms, three more.
        let later = t0 + Duration::from_millis(300);
        for _ in 0..3 {
            assert_eq!(limiter.check(a, later), Ok(()));
        }
        assert!(limiter.check(a, later).is_err());
        assert_eq!(limiter.refused(), 2);
    }

    #[test]
    fn the_wait_is_whole_seconds_rounded_up() {
        let limiter = RateLimiter::new(1, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        limiter.check(a, t0).unwrap();
        assert_eq!(
            limiter.check(a, t0 + Duration::from_millis(100)),
            Err(RateLimited {
                retry_after: Duration::from_secs(1)
            })
        );
        assert_eq!(limiter.check(a, t0 + Duration::from_millis(1100)), Ok(()));
    }

    #[test]
    fn ipv6_hosts_in_one_64_share_a_bucket_and_mapped_ipv4_counts_as_ipv4() {
        let limiter = RateLimiter::new(1, 2);
        let t0 = Instant::now();
        limiter.check("2001:db8::1".parse().unwrap(), t0).unwrap();
        limiter
            .check("2001:db8::ffff:2".parse().unwrap(), t0)
            .unwrap();
        assert!(limiter.check("2001:db8::3".parse().unwrap(), t0).is_err());
        assert!(
            limiter
                .check("2001:db8:0:1::1".parse().unwrap(), t0)
                .is_ok()
        );
        limiter.check("192.0.2.9".parse().unwrap(), t0).unwrap();
        limiter
            .check("::ffff:192.0.2.9".parse().unwrap(), t0)
            .unwrap();
        assert!(limiter.check("192.0.2.9".parse().unwrap(), t0).is_err());
    }

    #[test]
    fn the_map_stays_bounded_and_idle_entries_make_room() {
        let limiter = RateLimiter::with_capacity(100, 2, 4);
        let t0 = Instant::now();
        for i in 0..4u8 {
            limiter.check(IpAddr::from([10, 0, 0, i]), t0).unwrap();
        }
        // Full of addresses mid-burst: a new one waits, memory does not grow.
        assert!(limiter.check(IpAddr::from([10, 0, 0, 9]), t0).is_err());
        assert_eq!(limiter.tracked(), 4);
        // Once they refilled they are dropped to make room.
        let later = t0 + Duration::from_secs(1);
        limiter.check(IpAddr::from([10, 0, 0, 9]), later).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn keys_other_than_addresses_have_their_own_allowances() {
        let limiter = KeyedRateLimiter::new(1, 2);
        let t0 = Instant::now();
        limiter.check("tenant-a", t0).unwrap();
        limiter.check("tenant-a", t0).unwrap();
        assert!(limiter.check("tenant-a", t0).is_err());
        // Another tenant is not slowed down by the first one's burst.
        limiter.check("tenant-b", t0).unwrap();
        assert_eq!(
            limiter.check("tenant-a", t0 + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(limiter.refused(), 1);
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn costs_in_other_units_drain_and_refill_the_bucket() {
        // 1 MiB per second, 8 MiB at once: bytes of uploads, for instance.
        let limiter = KeyedRateLimiter::per_unit(1_048_576.0, 8.0 * 1_048_576.0);
        let t0 = Instant::now();
        limiter.take("tenant", 6.0 * 1_048_576.0, t0).unwrap();
        let refused = limiter.take("tenant", 4.0 * 1_048_576.0, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        // What was refused was not taken: after 2 s the 4 MiB fit.
        limiter
            .take("tenant", 4.0 * 1_048_576.0, t0 + Duration::from_secs(2))
            .unwrap();
        // Nonsense costs are never free.
        assert!(
            limiter
                .take("tenant", f64::NAN, t0 + Duration::from_secs(2))
                .is_err()
        );
        assert!(limiter.take("other", f64::INFINITY, t0).is_err());
    }
}
