//! The synthetic workload every simulated node serves, and the ground truth of it that
//! the simulator keeps: what every node served in each slot, and what deaths and joins
//! take from or add to a slot's total by design.

use rand::Rng;
use xnode_observe::aggregate::{OPEN_MS, SlotFigures};
use xnode_observe::{SLOT_MS, ScopeStats};

use super::{Observer, slot_of};

/// The scopes a node serves in, with the median latency of their requests (µs). Few, as
/// every node holds every slot's network total for an hour (`RETAIN_MS`), and each scope
/// of a total costs a node about a kilobyte of memory: the simulator holds that 10,000
/// times over.
pub const SCOPES: [(&str, f64); 4] = [
    ("api", 4_000.0),
    ("storage", 25_000.0),
    ("bucket:b0", 12_000.0),
    ("bucket:b1", 15_000.0),
];
/// A node serves from none to one less than this many requests per round.
pub const MAX_REQUESTS_PER_ROUND: u64 = 10;
/// A request's latency is its scope's median times `2^U(-SPREAD, SPREAD)`: from 0.6 to 1.7
/// times the median, which fills about 26 of the histogram's logarithmic buckets (2 %
/// wide) per scope in a network total.
pub const LATENCY_SPREAD_LOG2: f64 = 0.75;

/// What a slot's total should be: everything every node served in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Truth {
    pub(super) requests: u64,
    /// Nodes that ran a round in the slot.
    pub(super) nodes: u32,
}

impl Truth {
    pub(super) fn matches(&self, figures: &SlotFigures) -> bool {
        figures.nodes == self.nodes && requests_of(figures) == self.requests
    }
}

/// How deaths and joins may move a slot's total away from the truth by design. A node
/// that dies while the slot is open takes its own figures with it (its parent forgets it,
/// and nobody else has them) unless the root had already closed the slot as complete; a
/// node that takes its place in the tree while the slot is open reports it as one node
/// with no figures, unless the root had closed it. Which of those happened depends on
/// when the root closed the slot, so a total is as designed if some of the deaths and
/// some of the joins explain it.
#[derive(Clone, Debug, Default)]
pub(super) struct ByDesign {
    /// The requests each node that died while the slot was open served in it.
    pub(super) deaths: Vec<u64>,
    /// Nodes that took their place while the slot was open without having served in it.
    pub(super) joins: u32,
}

/// More deaths in one slot than this are not searched for an explanation (2^N subsets).
const MAX_DEATHS_SEARCHED: usize = 12;

impl ByDesign {
    /// Whether `figures` is the truth less the own figures of some of the deaths and
    /// plus some of the joins.
    pub(super) fn explains(&self, truth: &Truth, figures: &SlotFigures) -> bool {
        let held_requests = requests_of(figures);
        let deaths = &self.deaths[..self.deaths.len().min(MAX_DEATHS_SEARCHED)];
        (0u32..(1u32 << deaths.len())).any(|subset| {
            let (mut requests, mut nodes) = (truth.requests, truth.nodes);
            for (i, dead) in deaths.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    requests = requests.saturating_sub(*dead);
                    nodes = nodes.saturating_sub(1);
                }
            }
            requests == held_requests
                && figures.nodes >= nodes
                && figures.nodes - nodes <= self.joins
        })
    }

    /// The most requests and nodes deaths may take, and the most nodes joins may add.
    pub(super) fn bounds(&self) -> (u64, u32, u32) {
        let requests = self
            .deaths
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(*r));
        let nodes = u32::try_from(self.deaths.len()).unwrap_or(u32::MAX);
        (requests, nodes, self.joins)
    }
}

/// Whether `slot` is still open (reported, and its total still changing at the root) at
/// `now_ms`, as the aggregator decides it.
pub(super) fn is_open(slot: u64, now_ms: u64) -> bool {
    slot >= slot_of(now_ms.saturating_sub(OPEN_MS.saturating_sub(SLOT_MS)))
}

pub(super) fn requests_of(figures: &SlotFigures) -> u64 {
    figures
        .scopes
        .values()
        .fold(0, |sum, s| sum.saturating_add(s.requests))
}

impl Observer {
    /// Serves a random number of requests in one random scope, and folds the node's new
    /// cumulative summary into its aggregator, as the node does with what it gossips.
    pub(super) fn serve(&mut self, index: usize, now_ms: u64) {
        let Some(participant) = self.participants.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let rng = &mut self.rng;
        let (scope, median_us) = SCOPES[rng.gen_range(0..SCOPES.len())];
        let requests = rng.gen_range(0..MAX_REQUESTS_PER_ROUND);
        let mut served = ScopeStats::default();
        for _ in 0..requests {
            served.requests = served.requests.saturating_add(1);
            let factor = rng
                .gen_range(-LATENCY_SPREAD_LOG2..LATENCY_SPREAD_LOG2)
                .exp2();
            served.latency.record_us((median_us * factor) as u64);
            if rng.gen_bool(0.02) {
                served.client_errors = served.client_errors.saturating_add(1);
            } else if rng.gen_bool(0.005) {
                served.server_errors = served.server_errors.saturating_add(1);
            }
            served.bytes_in = served.bytes_in.saturating_add(rng.gen_range(100..2_000));
            served.bytes_out = served.bytes_out.saturating_add(rng.gen_range(200..20_000));
        }
        let summary = &mut participant.summary;
        summary
            .scopes
            .entry(scope.to_owned())
            .or_default()
            .merge(&served);
        summary.seq = summary.seq.saturating_add(1);
        summary.at_ms = now_ms;
        participant.aggregator.record_own(summary);

        let slot = slot_of(now_ms);
        let truth = self.truth.entry(slot).or_default();
        truth.requests = truth.requests.saturating_add(requests);
        if participant.last_served_slot != Some(slot) {
            participant.last_served_slot = Some(slot);
            truth.nodes = truth.nodes.saturating_add(1);
        }
        let served = participant.served.entry(slot).or_default();
        *served = served.saturating_add(requests);
        while let Some((&oldest, _)) = participant.served.first_key_value()
            && !is_open(oldest, now_ms)
        {
            participant.served.pop_first();
        }
    }
}
