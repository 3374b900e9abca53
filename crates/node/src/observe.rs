//! Wires the Open Observability Protocol into the node: records this node's activity,
//! gossips its summary every few seconds and keeps the network-wide view.

use serde::Serialize;
use xnode_mesh::MemberState;
use xnode_observe::{
    Histogram, MAX_PEER_RTTS, NodeSummary, PeerCounts, PeerRtt, SLOT_MS, ScopeStats, SystemStats,
    WINDOWS,
};
use xnode_types::NodeId;

use std::sync::Arc;

use crate::Node;

/// Gossip topic of node summaries.
const OBSERVE_TOPIC: &str = "observe";

/// A scope's figures over a window, ready for JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeReport {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Server errors over requests.
    pub error_rate: f64,
    pub requests_per_sec: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub fuel: u64,
    pub latency_ms: LatencyReport,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

fn latency(h: &Histogram) -> LatencyReport {
    let ms = |us: f64| (us / 10.0).round() / 100.0;
    LatencyReport {
        p50: ms(h.quantile_us(0.5)),
        p90: ms(h.quantile_us(0.9)),
        p99: ms(h.quantile_us(0.99)),
        mean: ms(h.mean_us()),
        max: ms(h.max_us() as f64),
    }
}

pub(crate) fn report(s: &ScopeStats, window_ms: u64) -> ScopeReport {
    ScopeReport {
        requests: s.requests,
        client_errors: s.client_errors,
        server_errors: s.server_errors,
        error_rate: if s.requests == 0 {
            0.0
        } else {
            s.server_errors as f64 / s.requests as f64
        },
        requests_per_sec: s.requests as f64 / (window_ms as f64 / 1000.0),
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        fuel: s.fuel,
        latency_ms: latency(&s.latency),
    }
}

/// Per window name ("1m", "5m", "1h"), per scope: the figures over that window.
pub type WindowReports =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, ScopeReport>>;

/// One node in the network view.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub id: NodeId,
    /// The failure detector's verdict from this node's point of view.
    pub state: MemberState,
    /// Unix ms of the node's latest summary.
    pub reported_at_ms: u64,
    pub system: SystemStats,
    pub peers: PeerCounts,
    pub active_tenants: u32,
    /// What this node served over the last minute (scope `api`).
    pub last_minute: Option<ScopeReport>,
    /// Its measured round trips to peers (smoothed SWIM probe acks).
    pub peer_rtts: Vec<PeerRttReport>,
}

/// A measured round trip from one node to a peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRttReport {
    pub node: NodeId,
    pub rtt_ms: f64,
}

/// One slot of a scope's time series (`GET /v1/observe/series`).
#[derive(Clone, Debug, Serialize)]
pub struct SeriesPoint {
    /// Unix ms at which the slot starts.
    pub at_ms: u64,
    #[serde(flatten)]
    pub figures: ScopeReport,
}

/// A scope's time series over every node.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesReport {
    pub scope: String,
    pub slot_ms: u64,
    pub at_ms: u64,
    /// Slots with activity, oldest first; a missing slot had no requests.
    pub points: Vec<SeriesPoint>,
}

/// `GET /v1/observe/network`.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeObservation {
    pub scope: String,
    pub at_ms: u64,
    /// Per window ("1m", "5m", "1h") totals over every node.
    pub windows: std::collections::BTreeMap<String, ScopeReport>,
    /// The last minute, per node that served this scope (as gateway); beyond
    /// `observe_summaries_up_to` live nodes, this node only.
    pub nodes: Vec<ScopeByNode>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScopeByNode {
    pub node: NodeId,
    pub state: MemberState,
    pub last_minute: ScopeReport,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    pub at_ms: u64,
    /// Live nodes (alive or suspect) with their latest figures.
    pub nodes: Vec<NodeReport>,
    /// Per window ("1m", "5m", "1h"): per scope totals over every node, including nodes
    /// that have since died.
    pub windows:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, ScopeReport>>,
    pub active_tenants: u32,
    /// Where the network totals (`windows`) come from.
    pub totals: TotalsSource,
    /// Whose figures `nodes` holds: `gossiped`, every live node's; `on_demand`, beyond
    /// `observe_summaries_up_to` live nodes, where summaries are no longer gossiped, this
    /// node's only (`GET /v1/observe/nodes/{id}` asks another node for its own).
    pub node_figures: &'static str,
}

/// Where network totals come from: every node's gossiped summary while the network is
/// small, the observability tree beyond `observe_summaries_up_to` live nodes.
#[derive(Clone, Debug, Serialize)]
pub struct TotalsSource {
    /// `summaries` or `tree`.
    pub source: &'static str,
    /// Where the windows end: now for summaries; the end of the newest settled slot for
    /// the tree, 10 to 20 s before now.
    pub as_of_ms: u64,
    pub tree: crate::observe_tree::TreeStatus,
}

use xnode_types::unix_ms;

fn peer_rtt_reports(rtts: &[PeerRtt]) -> Vec<PeerRttReport> {
    rtts.iter()
        .map(|p| PeerRttReport {
            node: p.node,
            rtt_ms: (p.rtt_us as f64 / 10.0).round() / 100.0,
        })
        .collect()
}

impl Node {
    pub fn recorder(&self) -> &xnode_observe::Recorder {
        &self.inner.recorder
    }

    fn state_of(&self, id: &NodeId) -> MemberState {
        if *id == self.inner.id {
            return MemberState::Alive;
        }
        self.inner
            .mesh
            .members()
            .into_iter()
            .find(|m| m.id == *id)
            .map(|m| m.state)
            .unwrap_or(MemberState::Alive)
    }

    /// The members the observability tree is laid over: this node and the members it
    /// holds alive or suspect that have a signed record in the registry, once they have
    /// run for [`xnode_observe::aggregate::JOIN_SETTLE_MS`] (by their record).
    pub(crate) fn tree_members(&self) -> Vec<NodeId> {
        let settled_since = unix_ms().saturating_sub(xnode_observe::aggregate::JOIN_SETTLE_MS);
        let settled: std::collections::HashSet<NodeId> = self
            .records()
            .into_iter()
            .filter(|r| r.started_at_ms <= settled_since)
            .map(|r| r.node_id)
            .collect();
        let mut members: Vec<NodeId> = self
            .inner
            .mesh
            .members()
            .into_iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .filter(|m| settled.contains(&m.id))
            .map(|m| m.id)
            .collect();
        if self.inner.started_at_ms <= settled_since {
            members.push(self.inner.id);
        }
        members
    }

    /// Whether network totals come from the tree: once this node holds more live nodes
    /// (itself included) than `observe_summaries_up_to`.
    pub fn totals_from_tree(&self) -> bool {
        let live = self
            .inner
            .mesh
            .members()
            .iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .count();
        live.saturating_add(1) > self.config().observe_summaries_up_to
    }

    /// Network totals over `window_ms`, from the source [`Node::totals_from_tree`] picks.
    fn network_window(
        &self,
        view: &xnode_observe::NetworkView,
        from_tree: bool,
        window_ms: u64,
        now: u64,
    ) -> xnode_observe::WindowTotals {
        if from_tree {
            self.inner.observe_tree.window(window_ms, now)
        } else {
            view.window(window_ms, now, |_| true)
        }
    }

    /// The network-wide view: live nodes and per-window totals.
    pub fn observe_network(&self) -> NetworkReport {
        let now = unix_ms();
        let from_tree = self.totals_from_tree();
        let view = xnode_types::lock(&self.inner.view);
        // Beyond the limit the view holds other nodes' summaries from when the network was
        // smaller, if any: old figures are not shown as current.
        let nodes: Vec<NodeReport> = view
            .live()
            .into_iter()
            .filter(|l| !from_tree || l.node == self.inner.id)
            .map(|l| self.node_report(&view, &l, now))
            .filter(|n| matches!(n.state, MemberState::Alive | MemberState::Suspect))
            .collect();
        let windows = WINDOWS
            .iter()
            .map(|(name, ms)| {
                let totals = self.network_window(&view, from_tree, *ms, now);
                (
                    (*name).to_owned(),
                    totals
                        .scopes
                        .iter()
                        .map(|(k, v)| (k.clone(), report(v, *ms)))
                        .collect(),
                )
            })
            .collect();
        let active_tenants = nodes.iter().map(|n| n.active_tenants).max().unwrap_or(0);
        NetworkReport {
            at_ms: now,
            nodes,
            windows,
            active_tenants,
            totals: TotalsSource {
                source: if from_tree { "tree" } else { "summaries" },
                as_of_ms: if from_tree {
                    self.inner.observe_tree.settled_until(now)
                } else {
                    now
                },
                tree: self.inner.observe_tree.status(),
            },
            node_figures: if from_tree { "on_demand" } else { "gossiped" },
        }
    }

    /// One node's figures and per-window totals. Beyond `observe_summaries_up_to` live
    /// nodes summaries are not gossiped, so another node's figures are asked of it
    /// (`observe-figures`); below, they are asked only if none has arrived. `Ok(None)`:
    /// this node knows nothing of `id`.
    pub async fn observe_node(
        &self,
        id: &NodeId,
    ) -> Result<Option<(NodeReport, WindowReports)>, crate::observe_pull::PullError> {
        let held = self.held_node(id);
        let ask = *id != self.inner.id
            && (held.is_none() || self.totals_from_tree())
            && self.pullable(id);
        if !ask {
            return Ok(held);
        }
        match self
            .inner
            .observe_pull
            .pull(
                *id,
                self.config().observe_interval,
                std::time::Duration::from_secs(2),
            )
            .await
        {
            Ok(figures) => Ok(Some(self.pulled_node(figures))),
            // What is held, however old, is still worth showing.
            Err(e) if held.is_some() => {
                tracing::debug!(node = %id, error = %e, "could not ask a node for its figures");
                Ok(held)
            }
            Err(e) => Err(e),
        }
    }

    /// A node's report from the figures it sent.
    fn pulled_node(&self, figures: xnode_observe::NodeFigures) -> (NodeReport, WindowReports) {
        let summary = figures.summary;
        let windows: WindowReports = figures
            .windows
            .iter()
            .filter_map(|(ms, scopes)| {
                let (name, _) = WINDOWS.iter().find(|(_, known)| known == ms)?;
                let scopes = scopes
                    .iter()
                    .map(|(k, v)| (k.clone(), report(v, *ms)))
                    .collect();
                Some(((*name).to_owned(), scopes))
            })
            .collect();
        let last_minute = windows.get("1m").and_then(|w| w.get("api")).cloned();
        let node = NodeReport {
            id: summary.node,
            state: self.state_of(&summary.node),
            reported_at_ms: summary.at_ms,
            system: summary.system,
            peers: summary.peers,
            active_tenants: summary.active_tenants,
            last_minute,
            peer_rtts: peer_rtt_reports(&summary.peer_rtts),
        };
        (node, windows)
    }

    /// Whether `id` may be asked for its figures: a member held alive or suspect with a
    /// signed record in the registry (the rule that gives a gossiped summary a series), so
    /// a client naming made-up ids cannot make this node dial them.
    fn pullable(&self, id: &NodeId) -> bool {
        let live =
            self.inner.mesh.members().iter().any(|m| {
                m.id == *id && matches!(m.state, MemberState::Alive | MemberState::Suspect)
            });
        live && self
            .registry()
            .get(&xnode_types::NodeRecord::registry_key(id))
            .is_some()
    }

    fn held_node(&self, id: &NodeId) -> Option<(NodeReport, WindowReports)> {
        let now = unix_ms();
        let view = xnode_types::lock(&self.inner.view);
        let live = view.live().into_iter().find(|l| l.node == *id)?;
        let windows = WINDOWS
            .iter()
            .map(|(name, ms)| {
                let totals = view.window(*ms, now, |n| n == id);
                (
                    (*name).to_owned(),
                    totals
                        .scopes
                        .iter()
                        .map(|(k, v)| (k.clone(), report(v, *ms)))
                        .collect(),
                )
            })
            .collect();
        Some((self.node_report(&view, &live, now), windows))
    }

    /// One scope (such as `deployment:hello`) over the whole network: per-window totals,
    /// and the same per node that reported it (dead nodes' past included).
    pub fn observe_scope(&self, scope: &str) -> ScopeObservation {
        let now = unix_ms();
        let from_tree = self.totals_from_tree();
        let view = xnode_types::lock(&self.inner.view);
        let windows = WINDOWS
            .iter()
            .filter_map(|(name, ms)| {
                let totals = self.network_window(&view, from_tree, *ms, now);
                totals
                    .scopes
                    .get(scope)
                    .map(|s| ((*name).to_owned(), report(s, *ms)))
            })
            .collect();
        let mut nodes = Vec::new();
        for live in view.live() {
            if from_tree && live.node != self.inner.id {
                continue;
            }
            let minute = view.window(60_000, now, |n| *n == live.node);
            if let Some(s) = minute.scopes.get(scope) {
                nodes.push(ScopeByNode {
                    node: live.node,
                    state: self.state_of(&live.node),
                    last_minute: report(s, 60_000),
                });
            }
        }
        ScopeObservation {
            scope: scope.to_owned(),
            at_ms: now,
            windows,
            nodes,
        }
    }

    fn node_report(
        &self,
        view: &xnode_observe::NetworkView,
        live: &xnode_observe::NodeLive,
        now: u64,
    ) -> NodeReport {
        NodeReport {
            id: live.node,
            state: self.state_of(&live.node),
            reported_at_ms: live.at_ms,
            system: live.system,
            peers: live.peers,
            active_tenants: live.active_tenants,
            last_minute: view
                .window(60_000, now, |n| *n == live.node)
                .scopes
                .get("api")
                .map(|s| report(s, 60_000)),
            peer_rtts: peer_rtt_reports(&live.peer_rtts),
        }
    }

    /// One scope over the last `window_ms`, in slots, summed over every node.
    pub fn observe_series(&self, scope: &str, window_ms: u64) -> SeriesReport {
        let now = unix_ms();
        let points = if self.totals_from_tree() {
            self.inner.observe_tree.series(scope, window_ms, now)
        } else {
            xnode_types::lock(&self.inner.view).series(scope, window_ms, now)
        };
        SeriesReport {
            scope: scope.to_owned(),
            slot_ms: SLOT_MS,
            at_ms: now,
            points: points
                .into_iter()
                .map(|(at_ms, stats)| SeriesPoint {
                    at_ms,
                    figures: report(&stats, SLOT_MS),
                })
                .collect(),
        }
    }

    fn build_summary(&self, seq: u64) -> NodeSummary {
        /// Summaries per one that carries peer round trips (the first one always does).
        const PEER_RTTS_EVERY: u64 = 5;
        let now = unix_ms();
        let (scopes, active_tenants) = self.inner.recorder.snapshot(now);
        let capacity = self.sample_capacity();
        let (net_rx_bytes, net_tx_bytes) = crate::capacity::network_totals();
        let mut peers = PeerCounts::default();
        let members = self.inner.mesh.members();
        let mut peer_rtts: Vec<PeerRtt> = members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .filter_map(|m| {
                m.rtt_us.map(|rtt| PeerRtt {
                    node: m.id,
                    rtt_us: u32::try_from(rtt).unwrap_or(u32::MAX),
                })
            })
            .take(MAX_PEER_RTTS)
            .collect();
        if !peer_rtts.is_empty() {
            peers.probe_rtt_us =
                peer_rtts.iter().map(|p| u64::from(p.rtt_us)).sum::<u64>() / peer_rtts.len() as u64;
        }
        // The round trips to every peer grow with the network (the rest of a summary does
        // not): they ride on every PEER_RTTS_EVERY-th summary only, and views keep the last
        // ones they heard.
        if seq % PEER_RTTS_EVERY != 1 {
            peer_rtts.clear();
        }
        for m in members {
            match m.state {
                MemberState::Alive => peers.alive += 1,
                MemberState::Suspect => peers.suspect += 1,
                MemberState::Dead => peers.dead += 1,
                MemberState::Left => peers.left += 1,
            }
        }
        NodeSummary {
            node: self.inner.id,
            started_ms: self.inner.started_at_ms,
            seq,
            at_ms: now,
            system: SystemStats {
                cpu_cores: capacity.cpu_cores,
                cpu_busy_millis: (capacity.cpu_cores * 1000)
                    .saturating_sub(capacity.cpu_free_millis),
                memory_used_bytes: capacity
                    .memory_bytes
                    .saturating_sub(capacity.memory_free_bytes),
                memory_total_bytes: capacity.memory_bytes,
                disk_used_bytes: capacity.disk_bytes.saturating_sub(capacity.disk_free_bytes),
                disk_total_bytes: capacity.disk_bytes,
                net_rx_bytes,
                net_tx_bytes,
            },
            peers,
            active_tenants,
            scopes,
            peer_rtts,
        }
    }
}

pub(crate) async fn spawn_workers(node: &Node) -> Result<(), crate::NodeError> {
    let gossip = node.mesh().subscribe(OBSERVE_TOPIC).await?;
    let n = node.clone();
    node.runner().spawn(xnode_worker::inbox(
        "observe-gossip-in",
        gossip,
        move |message: xnode_mesh::GossipMessage| {
            let n = n.clone();
            async move {
                match xnode_wire::decode::<NodeSummary>(
                    &message.data,
                    xnode_observe::MAX_SUMMARY_BYTES,
                ) {
                    // A summary counts only from the node it describes (the gossip source
                    // is authenticated by its signature).
                    Ok(summary) if summary.node == message.source => {
                        // Only nodes with a signed record in the registry get a series:
                        // fresh keys cannot grow every node's view.
                        if n.registry()
                            .get(&xnode_types::NodeRecord::registry_key(&summary.node))
                            .is_none()
                        {
                            tracing::debug!(source = %message.source, "dropping a summary of a node without a record");
                            return Ok(());
                        }
                        let outcome = xnode_types::lock(&n.inner.view).ingest(summary, unix_ms());
                        if outcome == xnode_observe::Ingested::BadClock {
                            tracing::debug!(source = %message.source, "dropping a summary dated far from this node's clock");
                        }
                    }
                    Ok(_) => tracing::warn!(source = %message.source, "dropping a summary published for another node"),
                    Err(e) => tracing::debug!(source = %message.source, error = %e, "malformed node summary"),
                }
                Ok(())
            }
        },
    ));
    let n = node.clone();
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    node.runner().spawn(xnode_worker::periodic(
        "observe-publish",
        xnode_worker::Interval::Immediately(node.config().observe_interval),
        move || {
            let (n, seq) = (n.clone(), seq.clone());
            async move {
                let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let builder = n.clone();
                let summary = tokio::task::spawn_blocking(move || builder.build_summary(seq))
                    .await
                    .map_err(|e| xnode_worker::WorkerError::new(format!("summary failed: {e}")))?;
                n.inner.observe_tree.record_own(&summary);
                {
                    let known: std::collections::HashSet<xnode_types::NodeId> =
                        n.records().into_iter().map(|r| r.node_id).collect();
                    let mut view = xnode_types::lock(&n.inner.view);
                    let now = unix_ms();
                    view.ingest(summary.clone(), now);
                    // Forget the series of nodes the registry no longer knows.
                    view.retain_nodes(|id| *id == n.id() || known.contains(id));
                    let me = n.id();
                    let windows = WINDOWS
                        .iter()
                        .map(|(_, ms)| (*ms, view.window(*ms, now, |id| *id == me).scopes))
                        .collect();
                    n.inner.observe_pull.set_latest(xnode_observe::NodeFigures {
                        summary: summary.clone(),
                        windows,
                    });
                }
                // Beyond `observe_summaries_up_to` live nodes nobody gossips a summary: what
                // each node received would grow with the network. Totals come down the tree
                // then, and one node's figures are asked of it (`observe_pull`).
                if n.totals_from_tree() {
                    return Ok(0);
                }
                let bytes = xnode_wire::encode(&summary)
                    .map_err(|e| xnode_worker::WorkerError::from_error(&e))?;
                if let Err(e) = n.mesh().publish(OBSERVE_TOPIC, bytes).await {
                    tracing::debug!(error = %e, "could not gossip the node summary");
                }
                Ok(1)
            }
        },
    ));
    node.runner().spawn(node.inner.observe_tree.serve());
    node.runner().spawn(node.inner.observe_pull.serve());
    let n = node.clone();
    node.runner().spawn(xnode_worker::periodic(
        "observe-tree",
        xnode_worker::Interval::AfterFirstPeriod(node.config().observe_interval),
        move || {
            let n = n.clone();
            async move {
                let members = n.tree_members();
                let reported = n
                    .inner
                    .observe_tree
                    .round(members, unix_ms(), n.config().observe_interval)
                    .await;
                Ok(reported as u64)
            }
        },
    ));
    Ok(())
}
