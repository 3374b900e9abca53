//! The network-wide view: every node's summaries folded into 10-second slots, queried over
//! sliding windows.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

use crate::{NodeSummary, PeerCounts, PeerRtt, ScopeStats, SystemStats};

/// Granularity of the time series.
pub const SLOT_MS: u64 = 10_000;
/// The windows the API reports, in milliseconds, with their names.
pub const WINDOWS: [(&str, u64); 3] = [("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)];
const RETAIN_MS: u64 = 3_600_000 + SLOT_MS;
/// How far a summary's time may be from this node's clock and still count. Summaries are
/// published every few seconds; one dated far from now is a broken clock or a lie, and
/// would land in a slot no window reads or push real slots out.
pub const MAX_SUMMARY_SKEW_MS: u64 = 5 * 60 * 1000;
/// At most this many nodes' series are kept: the node drops summaries of nodes it has no
/// record of, and this bounds memory whatever a peer sends.
pub const MAX_SERIES: usize = 20_000;

/// What became of a summary offered to the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Folded in.
    Accepted,
    /// Not newer than what the view holds of that node.
    Stale,
    /// Dated too far from this node's clock.
    BadClock,
    /// The view holds as many nodes as it may.
    Full,
}

/// The latest figures of one node, for live views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLive {
    pub node: NodeId,
    pub at_ms: u64,
    pub started_ms: u64,
    pub system: SystemStats,
    pub peers: PeerCounts,
    pub active_tenants: u32,
    /// Its measured round trips to peers.
    pub peer_rtts: Vec<PeerRtt>,
}

#[derive(Debug, Default)]
struct Series {
    last: Option<NodeSummary>,
    /// (slot start, per-scope deltas), oldest first.
    slots: VecDeque<(u64, BTreeMap<String, ScopeStats>)>,
}

/// Totals over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTotals {
    pub window_ms: u64,
    pub scopes: BTreeMap<String, ScopeStats>,
}

/// Every node's measurements, as this node has received them.
#[derive(Debug, Default)]
pub struct NetworkView {
    series: HashMap<NodeId, Series>,
}

impl NetworkView {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds a summary in, if it is dated within [`MAX_SUMMARY_SKEW_MS`] of `now_ms`.
    pub fn ingest(&mut self, summary: NodeSummary, now_ms: u64) -> Ingested {
        if summary.at_ms.abs_diff(now_ms) > MAX_SUMMARY_SKEW_MS {
            return Ingested::BadClock;
        }
        if !self.series.contains_key(&summary.node) && self.series.len() >= MAX_SERIES {
            return Ingested::Full;
        }
        if self.fold(summary) {
            Ingested::Accepted
        } else {
            Ingested::Stale
        }
    }

    /// Forgets every node `keep` rejects (nodes the network no longer has a record of).
    pub fn retain_nodes(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.series.retain(|id, _| keep(id));
    }

    /// How many nodes the view holds.
    pub fn node_count(&self) -> usize {
        self.series.len()
    }

    /// Folds a summary in. Returns false for a stale or duplicate summary.
    fn fold(&mut self, summary: NodeSummary) -> bool {
        let series = self.series.entry(summary.node).or_default();
        let Some(delta) = summary.scopes_since(series.last.as_ref()) else {
            return false;
        };
        let slot = summary.at_ms - summary.at_ms % SLOT_MS;
        if !delta.is_empty() {
            match series
                .slots
                .iter_mut()
                .rev()
                .find(|(start, _)| *start == slot)
            {
                Some((_, scopes)) => merge_into(scopes, &delta),
                None => {
                    // Keep the deque ordered even if a summary arrives late.
                    let at = series
                        .slots
                        .iter()
                        .position(|(start, _)| *start > slot)
                        .unwrap_or(series.slots.len());
                    series.slots.insert(at, (slot, delta));
                }
            }
        }
        while series
            .slots
            .front()
            .is_some_and(|(start, _)| summary.at_ms.saturating_sub(*start) > RETAIN_MS)
        {
            series.slots.pop_front();
        }
        // Peer round trips ride on every few summaries only (they grow with the network):
        // keep the last ones heard from this run of the node until new ones arrive.
        let mut summary = summary;
        if summary.peer_rtts.is_empty()
            && let Some(previous) = &series.last
            && previous.started_ms == summary.started_ms
        {
            summary.peer_rtts = previous.peer_rtts.clone();
        }
        series.last = Some(summary);
        true
    }

    /// Totals over the last `window_ms` before `now_ms`, over the nodes `include` accepts.
    /// Nodes that died still count for what they did while alive.
    pub fn window(
        &self,
        window_ms: u64,
        now_ms: u64,
        include: impl Fn(&NodeId) -> bool,
    ) -> WindowTotals {
        let from = now_ms.saturating_sub(window_ms);
        let mut scopes = BTreeMap::new();
        for (node, series) in &self.series {
            if !include(node) {
                continue;
            }
            for (start, slot) in &series.slots {
                if start.saturating_add(SLOT_MS) > from {
                    merge_into(&mut scopes, slot);
                }
            }
        }
        WindowTotals { window_ms, scopes }
    }

    /// The latest figures of every node this view has heard from.
    pub fn live(&self) -> Vec<NodeLive> {
        let mut out: Vec<NodeLive> = self
            .series
            .values()
            .filter_map(|s| s.last.as_ref())
            .map(|s| NodeLive {
                node: s.node,
                at_ms: s.at_ms,
                started_ms: s.started_ms,
                system: s.system,
                peers: s.peers,
                active_tenants: s.active_tenants,
                peer_rtts: s.peer_rtts.clone(),
            })
            .collect();
        out.sort_by_key(|l| l.node);
        out
    }

    /// One scope over time: per slot of [`SLOT_MS`] that started within the last
    /// `window_ms` before `now_ms`, the figures summed over every node, oldest first.
    /// Slots in which nothing happened are absent.
    pub fn series(&self, scope: &str, window_ms: u64, now_ms: u64) -> Vec<(u64, ScopeStats)> {
        let from = now_ms.saturating_sub(window_ms);
        let mut slots: BTreeMap<u64, ScopeStats> = BTreeMap::new();
        for series in self.series.values() {
            for (start, scopes) in &series.slots {
                if start.saturating_add(SLOT_MS) > from
                    && let Some(stats) = scopes.get(scope)
                {
                    slots.entry(*start).or_default().merge(stats);
                }
            }
        }
        slots.into_iter().collect()
    }

    pub fn knows(&self, node: &NodeId) -> bool {
        self.series.contains_key(node)
    }
}

fn merge_into(into: &mut BTreeMap<String, ScopeStats>, from: &BTreeMap<String, ScopeStats>) {
    for (k, v) in from {
        into.entry(k.clone()).or_default().merge(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, Recorder};

    fn node(n: u8) -> NodeId {
        xnode_types::SecretKey::from_seed(&[n; 32])
            .unwrap()
            .node_id()
    }

    fn summary(r: &Recorder, id: NodeId, started: u64, seq: u64, at: u64) -> NodeSummary {
        let (scopes, active_tenants) = r.snapshot(at);
        NodeSummary {
            node: id,
            started_ms: started,
            seq,
            at_ms: at,
            system: SystemStats::default(),
            peers: PeerCounts::default(),
            active_tenants,
            scopes,
            peer_rtts: Vec::new(),
        }
    }

    fn ok(ms: u64) -> Outcome {
        Outcome {
            status: 200,
            latency_us: ms * 1000,
            ..Default::default()
        }
    }

    #[test]
    fn cumulative_summaries_survive_loss_and_duplicates() {
        let r = Recorder::new();
        let id = node(1);
        let mut view = NetworkView::new();
        let mut sent = Vec::new();
        for i in 0..10u64 {
            for _ in 0..10 {
                r.record(&["storage"], ok(5), None, i * 2000);
            }
            sent.push(summary(&r, id, 0, i + 1, 1_000_000 + i * 2000));
        }
        // Every other summary is lost, and one arrives twice.
        for s in sent.iter().step_by(2) {
            view.fold(s.clone());
        }
        assert!(!view.fold(sent[0].clone()));
        view.fold(sent[9].clone());
        let totals = view.window(60_000, 1_020_000, |_| true);
        assert_eq!(totals.scopes["storage"].requests, 100);
    }

    #[test]
    fn windows_slide_and_dead_nodes_keep_their_past() {
        let mut view = NetworkView::new();
        let (a, b) = (node(1), node(2));
        let ra = Recorder::new();
        let rb = Recorder::new();
        ra.record(&["storage"], ok(1), None, 0);
        view.fold(summary(&ra, a, 0, 1, 1_000_000));
        for _ in 0..3 {
            rb.record(
                &["storage"],
                Outcome {
                    status: 500,
                    ..ok(100)
                },
                None,
                0,
            );
        }
        view.fold(summary(&rb, b, 0, 1, 1_200_000));
        // 5 minutes later, a's request is out of the 1 m window but in the 5 m one.
        let now = 1_250_000;
        assert_eq!(
            view.window(60_000, now, |_| true).scopes["storage"].requests,
            3
        );
        assert_eq!(
            view.window(300_000, now, |_| true).scopes["storage"].requests,
            4
        );
        // b died: it is gone from a live-only total but its past still counts.
        let live_only = view.window(300_000, now, |n| *n != b);
        assert_eq!(live_only.scopes["storage"].requests, 1);
        let all = view.window(300_000, now, |_| true);
        assert_eq!(all.scopes["storage"].server_errors, 3);
        assert!(all.scopes["storage"].latency.quantile_us(0.99) > 90_000.0);
    }

    #[test]
    fn peer_round_trips_are_kept_until_new_ones_arrive() {
        let mut view = NetworkView::new();
        let (id, peer) = (node(6), node(7));
        let r = Recorder::new();
        let mut first = summary(&r, id, 100, 1, 1_000_000);
        first.peer_rtts = vec![crate::PeerRtt {
            node: peer,
            rtt_us: 250,
        }];
        view.fold(first);
        // Later summaries of the same run carry none: the last ones heard stay.
        view.fold(summary(&r, id, 100, 2, 1_002_000));
        assert_eq!(view.live()[0].peer_rtts.len(), 1);
        assert_eq!(view.live()[0].peer_rtts[0].rtt_us, 250);
        // A restarted node's old round trips are forgotten.
        view.fold(summary(&r, id, 200, 1, 1_004_000));
        assert!(view.live()[0].peer_rtts.is_empty());
    }

    #[test]
    fn a_restarted_node_starts_counting_again() {
        let mut view = NetworkView::new();
        let id = node(3);
        let r1 = Recorder::new();
        for _ in 0..5 {
            r1.record(&["storage"], ok(1), None, 0);
        }
        view.fold(summary(&r1, id, 100, 7, 1_000_000));
        let r2 = Recorder::new();
        r2.record(&["storage"], ok(1), None, 0);
        view.fold(summary(&r2, id, 200, 1, 1_010_000));
        assert_eq!(
            view.window(60_000, 1_020_000, |_| true).scopes["storage"].requests,
            6
        );
        // A late summary from the old run is ignored.
        assert!(!view.fold(summary(&r1, id, 100, 8, 1_015_000)));
    }

    #[test]
    fn series_sums_nodes_per_slot() {
        let mut view = NetworkView::new();
        let (a, b) = (node(4), node(5));
        let (ra, rb) = (Recorder::new(), Recorder::new());
        ra.record(&["api"], ok(1), None, 0);
        view.fold(summary(&ra, a, 1, 1, 1_000_000));
        rb.record(&["api"], ok(1), None, 0);
        view.fold(summary(&rb, b, 1, 1, 1_001_000));
        ra.record(&["api"], ok(1), None, 0);
        view.fold(summary(&ra, a, 1, 2, 1_012_000));
        let series = view.series("api", 60_000, 1_015_000);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0], (1_000_000, series[0].1.clone()));
        assert_eq!(series[0].1.requests, 2);
        assert_eq!(series[1].1.requests, 1);
        assert!(view.series("storage", 60_000, 1_015_000).is_empty());
        assert!(view.series("api", 1_000, 2_000_000).is_empty());
    }

    #[test]
    fn version_1_summaries_still_decode() {
        #[derive(serde::Serialize)]
        struct V1 {
            node: NodeId,
            started_ms: u64,
            seq: u64,
            at_ms: u64,
            system: SystemStats,
            peers: PeerCounts,
            active_tenants: u32,
            scopes: BTreeMap<String, ScopeStats>,
        }
        let mut bytes = vec![xnode_wire::kinds::NODE_SUMMARY, 1];
        bytes.extend(
            postcard::to_stdvec(&V1 {
                node: node(6),
                started_ms: 1,
                seq: 2,
                at_ms: 3,
                system: SystemStats::default(),
                peers: PeerCounts::default(),
                active_tenants: 4,
                scopes: BTreeMap::new(),
            })
            .unwrap(),
        );
        let decoded: NodeSummary = xnode_wire::decode(&bytes, 1024).unwrap();
        assert_eq!((decoded.seq, decoded.active_tenants), (2, 4));
        assert!(decoded.peer_rtts.is_empty());
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use crate::{Outcome, Recorder};

    fn summary_of(r: &Recorder, node: NodeId, seq: u64, at_ms: u64) -> NodeSummary {
        let (scopes, active_tenants) = r.snapshot(at_ms);
        NodeSummary {
            node,
            started_ms: 1,
            seq,
            at_ms,
            scopes,
            system: Default::default(),
            peers: Default::default(),
            active_tenants,
            peer_rtts: Vec::new(),
        }
    }

    #[test]
    fn a_peer_cannot_overflow_or_bloat_the_view() {
        let now = 10_000_000;
        let id = xnode_types::SecretKey::generate().node_id();
        let r = Recorder::new();
        r.record(&["api"], Outcome::default(), None, now);
        let mut view = NetworkView::new();
        assert_eq!(
            view.ingest(summary_of(&r, id, 1, now), now),
            Ingested::Accepted
        );
        let mut huge = summary_of(&r, id, 2, now + 1);
        if let Some(api) = huge.scopes.get_mut("api") {
            api.requests = u64::MAX;
            api.bytes_in = u64::MAX;
        }
        assert_eq!(view.ingest(huge.clone(), now), Ingested::Accepted);
        let mut again = huge.clone();
        again.seq = 3;
        again.node = xnode_types::SecretKey::generate().node_id();
        assert_eq!(view.ingest(again, now), Ingested::Accepted);
        // Summing two saturated figures over a window must not panic.
        let totals = view.window(60_000, now, |_| true);
        assert_eq!(totals.scopes["api"].requests, u64::MAX);
        // Dated far away: refused, whatever the value (no `start + SLOT_MS` overflow).
        let mut far = summary_of(&r, id, 9, u64::MAX - 1);
        far.at_ms = u64::MAX - 1;
        assert_eq!(view.ingest(far, now), Ingested::BadClock);
        let mut past = summary_of(&r, id, 10, 0);
        past.at_ms = 0;
        assert_eq!(view.ingest(past, now), Ingested::BadClock);
        assert!(view.window(u64::MAX, u64::MAX, |_| true).scopes.len() <= 1);
        // Forgetting nodes without a record.
        view.retain_nodes(|n| *n == id);
        assert_eq!(view.node_count(), 1);
    }
}
