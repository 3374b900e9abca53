//! Network totals along the observability tree ([`xnode_observe::aggregate`]): the
//! `observe-tree` service that takes children's reports and answers with the totals they
//! lack, and the worker that reports to this node's parent every `observe_interval`.
//!
//! The tree is laid over the members this node holds alive or suspect that have a signed
//! record in the registry (the same rule that gives a node a series in the gossiped view),
//! plus this node.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry as MetricsRegistry;
use serde::Serialize;
use xnode_mesh::{Endpoint, Handler, Mesh, RpcError, RpcErrorCode, Server, Service};
use xnode_observe::aggregate::{
    Aggregator, MAX_AGGREGATE_BYTES, NetworkTotals, SubtreeReport, Tree, epochs_at,
};
use xnode_observe::{NodeSummary, ScopeStats, WindowTotals};
use xnode_types::{NodeId, lock};

/// The `observe-tree` RPC service: a child's report up, its parent's totals down.
pub struct ObserveTreeService;

impl Service for ObserveTreeService {
    const NAME: &'static str = "observe-tree";
    const MAX_MESSAGE: usize = MAX_AGGREGATE_BYTES;
    /// A child reports once a round: a few at once is already a misbehaving peer.
    const MAX_IN_FLIGHT_PER_PEER: usize = 4;
    type Request = SubtreeReport;
    type Response = NetworkTotals;
}

/// Every this many rounds a node checks its final totals against a random member, so a
/// parent that misstates them to its subtree is found and outvoted.
const AUDIT_EVERY: u64 = 5;

/// Where this node stands in the tree and how its rounds went, for `/v1/observe/network`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TreeStatus {
    /// Members the tree is laid over (this node included).
    pub members: usize,
    /// Levels below the root.
    pub depth: usize,
    /// This node's parent; `None` at the root.
    pub parent: Option<NodeId>,
    pub children: usize,
    /// Children whose reports this node holds.
    pub reporting_children: usize,
    pub rounds: u64,
    /// Rounds whose report did not reach the parent or whose answer did not come back.
    pub failed_rounds: u64,
    /// Reports taken from children, and reports with a slot refused.
    pub reports_taken: u64,
    pub reports_refused: u64,
    /// Audits of this node's final totals against a random member, the final slots on
    /// which the member disagreed with the parent's totals, and the slots corrected because
    /// a second member agreed with the first.
    pub audits: u64,
    pub audit_disagreements: u64,
    pub audit_corrections: u64,
}

/// The tree's counters, registered under the `observe_tree_` prefix; [`TreeStatus`] reads
/// them too.
#[derive(Clone, Debug, Default)]
struct TreeMetrics {
    rounds: Counter,
    failed_rounds: Counter,
    reports_taken: Counter,
    reports_refused: Counter,
    audits: Counter,
    audit_disagreements: Counter,
    audit_corrections: Counter,
}

impl TreeMetrics {
    fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("observe_tree");
        let counters = [
            (
                "rounds",
                "Rounds of this node in the observability tree",
                &m.rounds,
            ),
            (
                "failed_rounds",
                "Rounds whose report or answer was lost",
                &m.failed_rounds,
            ),
            (
                "reports_taken",
                "Reports children (or auditors) sent this node",
                &m.reports_taken,
            ),
            (
                "reports_refused",
                "Reports with a slot this node refused",
                &m.reports_refused,
            ),
            (
                "audits",
                "Audits of this node's final totals that were answered",
                &m.audits,
            ),
            (
                "audit_disagreements",
                "Final slots on which an audited member disagreed with this node",
                &m.audit_disagreements,
            ),
            (
                "audit_corrections",
                "Final slots corrected because two members agreed against the parent",
                &m.audit_corrections,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        m
    }
}

struct State {
    aggregator: Aggregator,
    /// Sorted: the members the trees were built over.
    members: Vec<NodeId>,
    trees: Vec<Tree>,
}

impl State {
    /// Rebuilds the trees if the members or the epochs the round at `now_ms` needs changed.
    fn refresh(&mut self, members: Option<Vec<NodeId>>, now_ms: u64) {
        let epochs = epochs_at(now_ms);
        let same_epochs = self
            .trees
            .iter()
            .map(Tree::epoch)
            .eq(epochs.iter().copied());
        let members = match members {
            Some(mut members) => {
                members.sort();
                members.dedup();
                members
            }
            None => self.members.clone(),
        };
        if same_epochs && members == self.members {
            return;
        }
        self.trees = epochs
            .into_iter()
            .map(|epoch| Tree::new(epoch, members.iter().copied()))
            .collect();
        self.members = members;
    }
}

/// This node's part in the observability tree.
pub struct ObserveTree {
    me: NodeId,
    endpoint: Endpoint<ObserveTreeService>,
    state: Mutex<State>,
    metrics: TreeMetrics,
}

impl ObserveTree {
    pub fn new(mesh: &Mesh, metrics: &mut MetricsRegistry) -> Arc<Self> {
        let me = mesh.local_id();
        Arc::new(Self {
            me,
            endpoint: Endpoint::new(mesh),
            state: Mutex::new(State {
                aggregator: Aggregator::new(me),
                members: vec![me],
                trees: Vec::new(),
            }),
            metrics: TreeMetrics::register(metrics),
        })
    }

    /// The server of the `observe-tree` service.
    pub fn serve(self: &Arc<Self>) -> Server<ObserveTreeService> {
        self.endpoint
            .serve(Arc::new(TreeHandler(Arc::downgrade(self))))
    }

    /// Folds in this node's latest summary.
    pub fn record_own(&self, summary: &NodeSummary) {
        lock(&self.state).aggregator.record_own(summary);
    }

    /// One round: lays the trees over `members`, sends this node's report to its parent
    /// (waiting at most `timeout`) and takes the answer. Returns the slots reported.
    pub async fn round(&self, members: Vec<NodeId>, now_ms: u64, timeout: Duration) -> usize {
        let outgoing = {
            let mut state = lock(&self.state);
            state.refresh(Some(members), now_ms);
            let State {
                aggregator, trees, ..
            } = &mut *state;
            aggregator.round(now_ms, trees)
        };
        let parents: Vec<NodeId> = outgoing.iter().map(|o| o.parent).collect();
        let mut reported = 0;
        let mut failed = false;
        for out in outgoing {
            let slots = out.report.slots.len();
            match self.endpoint.call(out.parent, out.report, timeout).await {
                Ok(answer) => {
                    reported += slots;
                    lock(&self.state)
                        .aggregator
                        .accept_answer(out.parent, answer, now_ms);
                }
                Err(e) => {
                    failed = true;
                    tracing::debug!(parent = %out.parent, error = %e, "the observe report did not reach the parent");
                }
            }
        }
        let auditors = {
            let state = lock(&self.state);
            let rounds = self.metrics.rounds.inc().saturating_add(1);
            if failed {
                self.metrics.failed_rounds.inc();
            }
            if rounds.is_multiple_of(AUDIT_EVERY) {
                let others: Vec<NodeId> = state
                    .members
                    .iter()
                    .filter(|m| **m != self.me && !parents.contains(m))
                    .copied()
                    .collect();
                let mut rng = rand::thread_rng();
                rand::seq::SliceRandom::choose_multiple(others.as_slice(), &mut rng, 2)
                    .copied()
                    .collect()
            } else {
                Vec::new()
            }
        };
        if let [first, second] = auditors[..] {
            // An audit is not bound to the round's pace: give a busy peer time to answer.
            let timeout = timeout.max(Duration::from_secs(2));
            self.audit(first, second, now_ms, timeout).await;
        }
        reported
    }

    /// Asks `first` for its final totals where they differ from this node's; where they
    /// do, asks `second`, and takes the figures both agree on. One liar among the two
    /// changes nothing; a parent that misstated a total to its subtree is outvoted.
    async fn audit(&self, first: NodeId, second: NodeId, now_ms: u64, timeout: Duration) {
        let request = lock(&self.state).aggregator.audit_request(now_ms);
        if request.holds.is_empty() {
            return;
        }
        let Ok(answer) = self.endpoint.call(first, request.clone(), timeout).await else {
            return;
        };
        self.metrics.audits.inc();
        let found = lock(&self.state).aggregator.disagreements(&answer, now_ms);
        self.metrics.audit_disagreements.inc_by(found.len() as u64);
        if found.is_empty() {
            return;
        }
        let Ok(second_answer) = self.endpoint.call(second, request, timeout).await else {
            return;
        };
        let mut state = lock(&self.state);
        for figures in found {
            if second_answer.slots.contains(&figures) && state.aggregator.correct(figures, now_ms) {
                self.metrics.audit_corrections.inc();
                tracing::warn!(%first, %second, "two members agreed on a final network total that differs from the one this node's parent sent: corrected");
            }
        }
    }

    /// Network totals over the last `window_ms`.
    pub fn window(&self, window_ms: u64, now_ms: u64) -> WindowTotals {
        lock(&self.state).aggregator.window(window_ms, now_ms)
    }

    /// One scope's network totals per slot.
    pub fn series(&self, scope: &str, window_ms: u64, now_ms: u64) -> Vec<(u64, ScopeStats)> {
        lock(&self.state)
            .aggregator
            .series(scope, window_ms, now_ms)
    }

    /// Where settled tree totals end (windows and series describe the time up to there).
    pub fn settled_until(&self, now_ms: u64) -> u64 {
        lock(&self.state).aggregator.settled_until(now_ms)
    }

    pub fn status(&self) -> TreeStatus {
        let state = lock(&self.state);
        let tree = state.trees.last();
        TreeStatus {
            members: state.members.len(),
            depth: tree.map_or(0, Tree::depth),
            parent: tree.and_then(|t| t.parent(&self.me)),
            children: tree.map_or(0, |t| t.children(&self.me).len()),
            reporting_children: state.aggregator.reporting_children(),
            rounds: self.metrics.rounds.get(),
            failed_rounds: self.metrics.failed_rounds.get(),
            reports_taken: self.metrics.reports_taken.get(),
            reports_refused: self.metrics.reports_refused.get(),
            audits: self.metrics.audits.get(),
            audit_disagreements: self.metrics.audit_disagreements.get(),
            audit_corrections: self.metrics.audit_corrections.get(),
        }
    }
}

/// Takes children's reports. Holds the tree weakly: the tree owns the endpoint that owns
/// this handler.
struct TreeHandler(Weak<ObserveTree>);

#[async_trait::async_trait]
impl Handler<ObserveTreeService> for TreeHandler {
    async fn handle(&self, from: NodeId, report: SubtreeReport) -> Result<NetworkTotals, RpcError> {
        let Some(tree) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "the node is closing",
            ));
        };
        let now_ms = xnode_types::unix_ms();
        let mut state = lock(&tree.state);
        // The worker lays the trees over the members every round; only a new epoch
        // between two rounds needs them rebuilt here.
        state.refresh(None, now_ms);
        let State {
            aggregator, trees, ..
        } = &mut *state;
        let (accepted, answer) = aggregator.accept_report(from, report, now_ms, trees);
        tree.metrics.reports_taken.inc();
        if let Some(why) = accepted.refused {
            tree.metrics.reports_refused.inc();
            tracing::debug!(%from, reason = %why, "refused part of an observe report");
        }
        Ok(answer)
    }
}
