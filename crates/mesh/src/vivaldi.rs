//! Network coordinates: Vivaldi with a height vector, as Serf computes them.
//!
//! Every node keeps a point in an 8-dimensional Euclidean space plus a non-negative
//! *height* (the part of a round trip that no direction explains: the node's own access
//! link), an *adjustment* (a small per-node correction learnt from recent residuals) and an
//! *error* estimate (how much it trusts its own point). The estimated round trip between
//! two nodes is the distance between their points plus both heights plus both
//! adjustments. Each measured round trip to a peer whose coordinate is known moves this
//! node's point along the line between the two, like a spring, by an amount weighted by
//! how sure each side is. A weak gravity towards the origin keeps the whole system from
//! drifting away.
//!
//! The algorithm and its constants follow hashicorp/serf `coordinate/` (Dabek et al.,
//! "Vivaldi", SIGCOMM 2004; Ledlie et al., "Network Coordinates in the Wild", NSDI 2007,
//! for the height, adjustment and latency filter). Units are seconds, as in Serf.
//!
//! Differences from Serf, because a stranger may run a modified node:
//!
//! - A peer's coordinate is validated before use ([`Coordinate::validate`]): the right
//!   number of dimensions, every value finite and inside a bound far beyond any real
//!   network ([`MAX_COORDINATE_SECONDS`]), an error inside `0..=ERROR_MAX`.
//! - A peer's claimed error is floored at [`MIN_PEER_ERROR`], so a peer cannot claim
//!   perfect confidence to take all the weight of an update.
//! - One update moves this node's point by at most the round trip this node measured
//!   itself (not a value the peer sends): a hostile peer pulls at most one round trip per
//!   probe, and the median filter means it must lie consistently to pull at all.
//! - This node's own coordinate is clamped inside the valid box after every update, so it
//!   never becomes a coordinate its peers would refuse.
//! - Round trips that are not finite, not positive or longer than [`MAX_RTT_SECONDS`] are
//!   refused.
//!
//! This module is sans-I/O: it never reads a clock or the network.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

/// Dimensions of the Euclidean part (Serf's default).
pub const DIMENSIONS: usize = 8;
/// Largest error estimate (Serf's `VivaldiErrorMax`); a fresh coordinate starts here.
pub const ERROR_MAX: f64 = 1.5;
/// Weight of one sample in the error estimate (Serf's `VivaldiCE`).
const CE: f64 = 0.25;
/// Weight of one sample in the coordinate (Serf's `VivaldiCC`).
const CC: f64 = 0.25;
/// Residuals averaged into the adjustment (Serf's `AdjustmentWindowSize`).
const ADJUSTMENT_WINDOW: usize = 20;
/// Smallest height, seconds (Serf's `HeightMin`): 10 µs.
const HEIGHT_MIN: f64 = 10.0e-6;
/// Samples per peer whose median is used (Serf's `LatencyFilterSize`).
const LATENCY_FILTER: usize = 3;
/// Gravity's scale, seconds (Serf's `GravityRho`): a node 150 s from the origin would be
/// pulled back by about one second per update, one 1.5 s away by 100 µs.
const GRAVITY_RHO: f64 = 150.0;
/// Below this a vector is treated as zero.
const ZERO_THRESHOLD: f64 = 1.0e-6;
/// Longest round trip used, seconds (Serf refuses above 10 s as well).
pub const MAX_RTT_SECONDS: f64 = 10.0;
/// Bound on every component, height and adjustment a coordinate may carry, seconds. A
/// real network fits well inside (antipodes are about 0.3 s apart); the bound only keeps
/// hostile values from overflowing sums or dragging anyone into nonsense.
pub const MAX_COORDINATE_SECONDS: f64 = 10.0;
/// The least error a peer's coordinate is credited with, whatever it claims.
pub const MIN_PEER_ERROR: f64 = 0.05;
/// Peers whose filter state is kept; beyond it the oldest entries are forgotten.
const MAX_TRACKED_PEERS: usize = 4096;

/// One node's network coordinate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coordinate {
    /// The Euclidean part, seconds; always [`DIMENSIONS`] long when valid.
    pub vec: Vec<f64>,
    /// How unsure the node is of its coordinate, `0..=ERROR_MAX` (relative error).
    pub error: f64,
    /// Correction added to every distance to or from this node, seconds.
    pub adjustment: f64,
    /// The non-Euclidean part of every round trip through this node, seconds.
    pub height: f64,
}

/// Why a coordinate or a round trip was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CoordinateError {
    #[error("a coordinate must have {DIMENSIONS} dimensions, this one has {0}")]
    Dimensions(usize),
    #[error("the coordinate's {0} is not a finite number")]
    NotFinite(&'static str),
    #[error("the coordinate's {0} is out of range")]
    OutOfRange(&'static str),
    #[error("a round trip must be finite, positive and at most {MAX_RTT_SECONDS} s")]
    BadRoundTrip,
}

impl Default for Coordinate {
    fn default() -> Self {
        Self::origin()
    }
}

impl Coordinate {
    /// The starting coordinate: the origin, least sure of itself.
    pub fn origin() -> Self {
        Self {
            vec: vec![0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }

    /// Checks a coordinate that arrived from elsewhere (a peer, a file).
    pub fn validate(&self) -> Result<(), CoordinateError> {
        if self.vec.len() != DIMENSIONS {
            return Err(CoordinateError::Dimensions(self.vec.len()));
        }
        let bounded = |what: &'static str, value: f64, low: f64, high: f64| {
            if !value.is_finite() {
                Err(CoordinateError::NotFinite(what))
            } else if value < low || value > high {
                Err(CoordinateError::OutOfRange(what))
            } else {
                Ok(())
            }
        };
        for &component in &self.vec {
            bounded(
                "vector",
                component,
                -MAX_COORDINATE_SECONDS,
                MAX_COORDINATE_SECONDS,
            )?;
        }
        bounded("error", self.error, 0.0, ERROR_MAX)?;
        bounded("height", self.height, 0.0, MAX_COORDINATE_SECONDS)?;
        bounded(
            "adjustment",
            self.adjustment,
            -MAX_COORDINATE_SECONDS,
            MAX_COORDINATE_SECONDS,
        )?;
        Ok(())
    }

    /// The distance without adjustments: Euclidean part plus both heights, seconds.
    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        magnitude(&difference(&self.vec, &other.vec)) + self.height + other.height
    }

    /// The estimated round trip to `other`, seconds (Serf's `DistanceTo`): the raw
    /// distance plus both adjustments, unless that would not be positive.
    pub fn distance_seconds(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 { adjusted } else { raw }
    }

    /// The estimated round trip to `other`, or `None` if either coordinate is invalid.
    pub fn estimate_rtt(&self, other: &Coordinate) -> Option<Duration> {
        if self.validate().is_err() || other.validate().is_err() {
            return None;
        }
        Duration::try_from_secs_f64(self.distance_seconds(other)).ok()
    }

    /// Pushes this coordinate by `force` seconds away from `other` (towards it when
    /// negative). `fallback_direction` is used when the two coincide.
    fn apply_force(&mut self, force: f64, other: &Coordinate, fallback_direction: &[f64]) {
        let (unit, distance) = unit_vector_at(&self.vec, &other.vec, fallback_direction);
        for (component, direction) in self.vec.iter_mut().zip(&unit) {
            *component += direction * force;
        }
        if distance > ZERO_THRESHOLD {
            self.height = (self.height + other.height) * force / distance + self.height;
        }
        self.height = self.height.max(HEIGHT_MIN);
    }

    /// Keeps the coordinate inside the box every node accepts.
    fn clamp(&mut self) {
        let limit = MAX_COORDINATE_SECONDS;
        for component in &mut self.vec {
            *component = if component.is_finite() {
                component.clamp(-limit, limit)
            } else {
                0.0
            };
        }
        self.height = if self.height.is_finite() {
            self.height.clamp(HEIGHT_MIN, limit)
        } else {
            HEIGHT_MIN
        };
        self.adjustment = if self.adjustment.is_finite() {
            self.adjustment.clamp(-limit, limit)
        } else {
            0.0
        };
        self.error = if self.error.is_finite() {
            self.error.clamp(0.0, ERROR_MAX)
        } else {
            ERROR_MAX
        };
    }
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector pointing from `b` to `a` and the distance between them; when they
/// coincide, `fallback` (normalised) and zero.
fn unit_vector_at(a: &[f64], b: &[f64], fallback: &[f64]) -> (Vec<f64>, f64) {
    let diff = difference(a, b);
    let distance = magnitude(&diff);
    if distance > ZERO_THRESHOLD {
        return (diff.iter().map(|x| x / distance).collect(), distance);
    }
    let length = magnitude(fallback);
    if length > ZERO_THRESHOLD {
        (fallback.iter().map(|x| x / length).collect(), 0.0)
    } else {
        (vec![0.0; a.len()], 0.0)
    }
}

/// The result of feeding one round trip to [`VivaldiClient::observe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The sample moved this node's coordinate.
    Updated,
    /// The peer's coordinate was refused.
    BadCoordinate,
    /// The round trip was refused.
    BadRoundTrip,
}

/// One node's Vivaldi state: its coordinate, the recent residuals behind its adjustment
/// and a latency filter per peer.
#[derive(Clone, Debug)]
pub struct VivaldiClient {
    coordinate: Coordinate,
    adjustment_samples: VecDeque<f64>,
    latency_filters: HashMap<NodeId, VecDeque<f64>>,
    /// State of a small xorshift generator for the direction taken when two coordinates
    /// coincide (at the start everyone is at the origin). Seeded by the caller, so tests
    /// are reproducible and this module needs no entropy source.
    direction_state: u64,
    updates: u64,
}

impl VivaldiClient {
    /// A client at the origin. `seed` only chooses the directions in which coincident
    /// nodes push each other apart; a node's own id makes a good one.
    pub fn new(seed: u64) -> Self {
        Self {
            coordinate: Coordinate::origin(),
            adjustment_samples: VecDeque::with_capacity(ADJUSTMENT_WINDOW),
            latency_filters: HashMap::new(),
            direction_state: seed | 1,
            updates: 0,
        }
    }

    /// This node's current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// How many samples have moved the coordinate.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Forgets a peer's latency filter (it left the network).
    pub fn forget(&mut self, peer: &NodeId) {
        self.latency_filters.remove(peer);
    }

    /// Feeds one measured round trip to `peer`, whose coordinate is `theirs`.
    pub fn observe(&mut self, peer: NodeId, theirs: &Coordinate, rtt: Duration) -> Observed {
        if theirs.validate().is_err() {
            return Observed::BadCoordinate;
        }
        let rtt = rtt.as_secs_f64();
        if !rtt.is_finite() || rtt <= 0.0 || rtt > MAX_RTT_SECONDS {
            return Observed::BadRoundTrip;
        }
        let filtered = self.filter(peer, rtt);
        // The peer may not claim more confidence than any honest node reaches.
        let mut theirs = theirs.clone();
        theirs.error = theirs.error.max(MIN_PEER_ERROR);
        self.update_vivaldi(&theirs, filtered);
        self.update_adjustment(&theirs, filtered);
        self.update_gravity();
        self.coordinate.clamp();
        self.updates = self.updates.saturating_add(1);
        Observed::Updated
    }

    /// The median of the peer's last few round trips (Serf's latency filter): one slow
    /// probe does not move the coordinate.
    fn filter(&mut self, peer: NodeId, rtt: f64) -> f64 {
        if self.latency_filters.len() >= MAX_TRACKED_PEERS
            && !self.latency_filters.contains_key(&peer)
        {
            // Bounded memory against a flood of identities: start over; the filters
            // refill in a few probes.
            self.latency_filters.clear();
        }
        let samples = self.latency_filters.entry(peer).or_default();
        samples.push_back(rtt);
        while samples.len() > LATENCY_FILTER {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(rtt)
    }

    fn update_vivaldi(&mut self, theirs: &Coordinate, rtt: f64) {
        let ours = &self.coordinate;
        let distance = ours.raw_distance_to(theirs);
        let total_error = (ours.error + theirs.error).max(ZERO_THRESHOLD);
        let weight = ours.error / total_error;
        let wrongness = (distance - rtt).abs() / rtt;
        let error = CE * weight * wrongness + ours.error * (1.0 - CE * weight);
        // The step is bounded by the round trip this node measured itself: whatever a peer
        // claims, one probe moves us at most that far.
        let force = (CC * weight * (rtt - distance)).clamp(-rtt, rtt);
        let direction = self.next_direction();
        self.coordinate.error = error.min(ERROR_MAX);
        self.coordinate.apply_force(force, theirs, &direction);
    }

    fn update_adjustment(&mut self, theirs: &Coordinate, rtt: f64) {
        let residual = rtt - self.coordinate.raw_distance_to(theirs);
        self.adjustment_samples.push_back(residual);
        while self.adjustment_samples.len() > ADJUSTMENT_WINDOW {
            self.adjustment_samples.pop_front();
        }
        // Serf divides by twice the window: both ends of a link carry half the correction.
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coordinate.adjustment = sum / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self) {
        let origin = Coordinate {
            vec: vec![0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        };
        let distance = self.coordinate.raw_distance_to(&origin);
        let force = -(distance / GRAVITY_RHO).powi(2);
        let direction = self.next_direction();
        self.coordinate.apply_force(force, &origin, &direction);
    }

    /// A pseudo-random direction (xorshift64), for coincident coordinates.
    fn next_direction(&mut self) -> Vec<f64> {
        (0..DIMENSIONS)
            .map(|_| {
                let mut x = self.direction_state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.direction_state = x;
                // Map to -0.5..0.5.
                (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }
}

/// Groups estimated round trips into bands about 10 % wide (everything under 1 ms is one
/// band; no estimate is the last band). Routing prefers a lower band and spreads load
/// inside one: replicas whose estimates differ by less than the estimates' own error are
/// equally near, and sending everything to the one that happens to look 0.1 ms closer
/// would defeat load spreading for nothing.
pub fn distance_band(estimate: Option<Duration>) -> u32 {
    let Some(estimate) = estimate else {
        return u32::MAX;
    };
    let millis = estimate.as_secs_f64() * 1000.0;
    if !millis.is_finite() || millis <= 1.0 {
        return 0;
    }
    // ln(x) / ln(1.1): the band number of a 10 % geometric scale; `as` saturates.
    let band = (millis.ln() / 1.1f64.ln()).floor() as u32;
    band.saturating_add(1).min(u32::MAX - 1)
}

/// The median of `|estimate - actual| / actual` over every pair with a positive actual
/// round trip, or `None` if there is none. For tests and benchmarks.
pub fn median_relative_error<'a>(
    pairs: impl IntoIterator<Item = (&'a Coordinate, &'a Coordinate, Duration)>,
) -> Option<f64> {
    let mut errors: Vec<f64> = pairs
        .into_iter()
        .filter(|(_, _, actual)| !actual.is_zero())
        .map(|(a, b, actual)| {
            let actual = actual.as_secs_f64();
            (a.distance_seconds(b) - actual).abs() / actual
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    errors.sort_by(f64::total_cmp);
    errors.get(errors.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> NodeId {
        // Stable per index within one test run; the identity itself does not matter.
        thread_local! {
            static IDS: Vec<NodeId> =
                (0..=255).map(|_| NodeId::from_peer_id(libp2p::PeerId::random())).collect();
        }
        IDS.with(|ids| ids[i as usize])
    }

    /// Round trips of a synthetic network: `regions` regions of `per_region` nodes, 1 ms
    /// (plus a per-node access delay) inside a region and the given inter-region delays.
    fn matrix(per_region: usize) -> Vec<Vec<f64>> {
        let between = [
            [0.0, 0.040, 0.120],
            [0.040, 0.0, 0.080],
            [0.120, 0.080, 0.0],
        ];
        let n = 3 * per_region;
        let access = |i: usize| 0.0002 * (i % 4) as f64;
        let mut m = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    m[i][j] =
                        0.001 + between[i / per_region][j / per_region] + access(i) + access(j);
                }
            }
        }
        m
    }

    /// Runs rounds in which every node probes a few peers, returns the clients.
    fn converge(m: &[Vec<f64>], rounds: usize) -> Vec<VivaldiClient> {
        let n = m.len();
        let mut clients: Vec<VivaldiClient> = (0..n)
            .map(|i| VivaldiClient::new(0x9e37_79b9 + i as u64))
            .collect();
        let mut pick: u64 = 12345;
        for _ in 0..rounds {
            for i in 0..n {
                pick = pick
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = ((pick >> 33) as usize) % n;
                if i == j {
                    continue;
                }
                let theirs = clients[j].coordinate().clone();
                let rtt = Duration::from_secs_f64(m[i][j]);
                assert_eq!(
                    clients[i].observe(node(j as u8), &theirs, rtt),
                    Observed::Updated
                );
            }
        }
        clients
    }

    fn error_of(clients: &[VivaldiClient], m: &[Vec<f64>]) -> f64 {
        let mut pairs = Vec::new();
        for i in 0..m.len() {
            for j in 0..m.len() {
                if i != j {
                    pairs.push((
                        clients[i].coordinate(),
                        clients[j].coordinate(),
                        Duration::from_secs_f64(m[i][j]),
                    ));
                }
            }
        }
        median_relative_error(pairs).unwrap_or(f64::INFINITY)
    }

    #[test]
    fn three_regions_converge_within_fifteen_percent() {
        let m = matrix(5);
        let before = error_of(&converge(&m, 0), &m);
        let clients = converge(&m, 400);
        let after = error_of(&clients, &m);
        eprintln!("median relative error: {before:.3} at the origin, {after:.3} after 400 rounds");
        assert!(
            before > 0.5,
            "the origin should be a poor estimate, got {before}"
        );
        assert!(
            after <= 0.15,
            "median relative error {after} after convergence"
        );
        // Nearest by estimate is inside one's own region.
        for i in 0..m.len() {
            let nearest = (0..m.len())
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let da = clients[i]
                        .coordinate()
                        .distance_seconds(clients[a].coordinate());
                    let db = clients[i]
                        .coordinate()
                        .distance_seconds(clients[b].coordinate());
                    da.total_cmp(&db)
                })
                .unwrap();
            assert_eq!(
                nearest / 5,
                i / 5,
                "node {i}'s nearest estimate is in another region"
            );
        }
    }

    #[test]
    fn distance_bands_separate_regions_and_merge_near_equals() {
        let band = |ms: f64| distance_band(Some(Duration::from_secs_f64(ms / 1000.0)));
        assert_eq!(band(0.2), band(0.9));
        assert_eq!(band(40.0), band(41.0));
        assert!(band(1.5) < band(40.0));
        assert!(band(40.0) < band(120.0));
        assert!(band(10_000.0) < distance_band(None));
        assert!(distance_band(Some(Duration::MAX)) < distance_band(None));
    }

    #[test]
    fn absurd_round_trips_are_refused() {
        let mut client = VivaldiClient::new(1);
        let theirs = Coordinate::origin();
        for rtt in [Duration::ZERO, Duration::from_secs(11), Duration::MAX] {
            assert_eq!(
                client.observe(node(2), &theirs, rtt),
                Observed::BadRoundTrip
            );
        }
        assert_eq!(client.coordinate(), &Coordinate::origin());
        assert_eq!(client.updates(), 0);
    }

    #[test]
    fn invalid_coordinates_from_a_peer_are_refused() {
        let mut client = VivaldiClient::new(1);
        let rtt = Duration::from_millis(20);
        let mut bad = Vec::new();
        let mut c = Coordinate::origin();
        c.vec[3] = f64::NAN;
        bad.push(c);
        let mut c = Coordinate::origin();
        c.vec[0] = f64::INFINITY;
        bad.push(c);
        let mut c = Coordinate::origin();
        c.vec[0] = 1.0e9;
        bad.push(c);
        let mut c = Coordinate::origin();
        c.vec.push(0.0);
        bad.push(c);
        let mut c = Coordinate::origin();
        c.height = -1.0;
        bad.push(c);
        let mut c = Coordinate::origin();
        c.error = f64::NAN;
        bad.push(c);
        let mut c = Coordinate::origin();
        c.adjustment = f64::NEG_INFINITY;
        bad.push(c);
        for c in &bad {
            assert!(c.validate().is_err(), "{c:?} should be invalid");
            assert_eq!(client.observe(node(2), c, rtt), Observed::BadCoordinate);
            assert_eq!(Coordinate::origin().estimate_rtt(c), None);
        }
        assert_eq!(client.coordinate(), &Coordinate::origin());
    }

    #[test]
    fn a_lying_peer_cannot_drag_a_coordinate_far() {
        // A converged network, then one peer claims, with perfect confidence, to sit at
        // the far edge of the valid box while it answers in 1 ms.
        let m = matrix(4);
        let mut clients = converge(&m, 400);
        let victim = 0;
        let start = clients[victim].coordinate().clone();
        let liar = Coordinate {
            vec: vec![MAX_COORDINATE_SECONDS; DIMENSIONS],
            error: 0.0,
            adjustment: 0.0,
            height: MAX_COORDINATE_SECONDS,
        };
        assert!(liar.validate().is_ok());
        let rtt = Duration::from_millis(1);
        for _ in 0..10 {
            clients[victim].observe(node(200), &liar, rtt);
        }
        let moved = magnitude(&difference(&clients[victim].coordinate().vec, &start.vec));
        // Ten probes of 1 ms each move it at most 10 ms (plus gravity's microseconds).
        assert!(moved <= 0.0101, "moved {moved} s");
        assert!(clients[victim].coordinate().validate().is_ok());
    }

    #[test]
    fn own_coordinate_stays_valid_under_extreme_inputs() {
        let mut client = VivaldiClient::new(7);
        let mut far = Coordinate::origin();
        far.vec = vec![-MAX_COORDINATE_SECONDS; DIMENSIONS];
        far.height = MAX_COORDINATE_SECONDS;
        far.adjustment = MAX_COORDINATE_SECONDS;
        for i in 0..1000u32 {
            let rtt = if i % 2 == 0 {
                Duration::from_secs_f64(MAX_RTT_SECONDS)
            } else {
                Duration::from_nanos(1)
            };
            client.observe(node((i % 7) as u8), &far, rtt);
            assert!(
                client.coordinate().validate().is_ok(),
                "{:?}",
                client.coordinate()
            );
        }
    }

    #[test]
    fn coordinates_round_trip_through_the_wire_encoding() {
        let m = matrix(2);
        let clients = converge(&m, 50);
        let c = clients[1].coordinate();
        let bytes = postcard::to_allocvec(c).unwrap();
        let back: Coordinate = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, c);
    }
}
