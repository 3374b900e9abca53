//! One node's figures asked of it on demand: the `observe-figures` service.
//!
//! Up to `observe_summaries_up_to` live nodes every node gossips its summary, so every node
//! holds every other's figures. Beyond, gossiping them would make what a node receives grow
//! with the network (about 2 MB/s per node at 10,000 nodes), so nobody gossips them:
//! network totals come down the observability tree, and one node's figures are asked of
//! that node when someone looks at them (`GET /v1/observe/nodes/{id}`). The node answers
//! with its latest summary and its own totals per window, which it alone holds slot by slot.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry as MetricsRegistry;
use xnode_mesh::{Endpoint, Handler, Mesh, MeshError, RpcError, RpcErrorCode, Server, Service};
use xnode_observe::{FiguresRequest, MAX_SUMMARY_BYTES, NodeFigures};
use xnode_types::{NodeId, lock};

/// The `observe-figures` RPC service: a node's own figures, to whoever asks.
pub struct ObserveFiguresService;

impl Service for ObserveFiguresService {
    const NAME: &'static str = "observe-figures";
    /// A summary and three windows of at most as many scopes.
    const MAX_MESSAGE: usize = 4 * MAX_SUMMARY_BYTES;
    /// Someone looking at this node asks once in a while; more at once is a flood.
    const MAX_IN_FLIGHT_PER_PEER: usize = 2;
    type Request = FiguresRequest;
    type Response = NodeFigures;
}

/// Pulls this node makes at once: HTTP clients asking for many nodes cannot make it open
/// a request to every node of the network together.
const MAX_PULLS_IN_FLIGHT: usize = 8;

/// Nodes whose last figures are kept, so clients asking again within the freshness window
/// cost their node nothing.
const MAX_CACHED: usize = 256;

/// Why a node's figures could not be pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(
        "this node is already asking {MAX_PULLS_IN_FLIGHT} nodes for their figures; retry in a moment"
    )]
    Busy,
    #[error("node {node} did not send its figures: {source}")]
    Call {
        node: NodeId,
        #[source]
        source: MeshError,
    },
    #[error("node {asked} answered with the figures of node {described}")]
    WrongNode { asked: NodeId, described: NodeId },
    #[error("node {node} answered with windows this node does not know")]
    Malformed { node: NodeId },
}

/// This node's side of the service: the figures it serves and the pulls it makes.
pub struct FiguresPull {
    endpoint: Endpoint<ObserveFiguresService>,
    /// This node's figures as of its latest summary (every `observe_interval`).
    latest: Mutex<Option<NodeFigures>>,
    pulls_in_flight: tokio::sync::Semaphore,
    /// Figures pulled lately, with when they came: a node is asked at most once per
    /// freshness window however often clients look at it.
    recent: Mutex<std::collections::HashMap<NodeId, (std::time::Instant, NodeFigures)>>,
    metrics: PullMetrics,
}

#[derive(Clone, Debug, Default)]
struct PullMetrics {
    pulls: Counter,
    failed_pulls: Counter,
    served: Counter,
}

impl FiguresPull {
    pub fn new(mesh: &Mesh, metrics: &mut MetricsRegistry) -> Arc<Self> {
        let m = PullMetrics::default();
        let r = metrics.sub_registry_with_prefix("observe_figures");
        r.register(
            "pulls",
            "Figures this node asked of other nodes",
            m.pulls.clone(),
        );
        r.register(
            "failed_pulls",
            "Figures asked of other nodes that did not come",
            m.failed_pulls.clone(),
        );
        r.register(
            "served",
            "Figures of this node sent to nodes that asked",
            m.served.clone(),
        );
        Arc::new(Self {
            endpoint: Endpoint::new(mesh),
            latest: Mutex::new(None),
            pulls_in_flight: tokio::sync::Semaphore::new(MAX_PULLS_IN_FLIGHT),
            recent: Mutex::new(std::collections::HashMap::new()),
            metrics: m,
        })
    }

    /// The server of the `observe-figures` service.
    pub fn serve(self: &Arc<Self>) -> Server<ObserveFiguresService> {
        self.endpoint
            .serve(Arc::new(FiguresHandler(Arc::downgrade(self))))
    }

    /// Keeps this node's latest figures to serve. Peer round trips ride on every few
    /// summaries only: the last ones measured are kept until new ones come.
    pub fn set_latest(&self, mut figures: NodeFigures) {
        let mut latest = lock(&self.latest);
        if figures.summary.peer_rtts.is_empty()
            && let Some(previous) = latest.as_ref()
        {
            figures.summary.peer_rtts = previous.summary.peer_rtts.clone();
        }
        *latest = Some(figures);
    }

    /// `node`'s figures: those pulled within `fresh_for`, or asked of it, waiting at most
    /// `timeout`.
    pub async fn pull(
        &self,
        node: NodeId,
        fresh_for: Duration,
        timeout: Duration,
    ) -> Result<NodeFigures, PullError> {
        if let Some((at, figures)) = lock(&self.recent).get(&node)
            && at.elapsed() < fresh_for
        {
            return Ok(figures.clone());
        }
        let _permit = self
            .pulls_in_flight
            .try_acquire()
            .map_err(|_| PullError::Busy)?;
        self.metrics.pulls.inc();
        let figures = self
            .endpoint
            .call(node, FiguresRequest {}, timeout)
            .await
            .map_err(|source| {
                self.metrics.failed_pulls.inc();
                PullError::Call { node, source }
            })?;
        // The connection is authenticated, so the answer comes from `node`; a node may
        // only speak for itself.
        if figures.summary.node != node {
            self.metrics.failed_pulls.inc();
            return Err(PullError::WrongNode {
                asked: node,
                described: figures.summary.node,
            });
        }
        if !figures.is_well_formed() {
            self.metrics.failed_pulls.inc();
            return Err(PullError::Malformed { node });
        }
        let mut recent = lock(&self.recent);
        recent.retain(|_, (at, _)| at.elapsed() < fresh_for);
        if recent.len() < MAX_CACHED {
            recent.insert(node, (std::time::Instant::now(), figures.clone()));
        }
        Ok(figures)
    }
}

/// Serves this node's latest figures. Holds the puller weakly: it owns the endpoint that
/// owns this handler.
struct FiguresHandler(Weak<FiguresPull>);

#[async_trait::async_trait]
impl Handler<ObserveFiguresService> for FiguresHandler {
    async fn handle(
        &self,
        _from: NodeId,
        _request: FiguresRequest,
    ) -> Result<NodeFigures, RpcError> {
        let Some(pull) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "the node is closing",
            ));
        };
        let latest = lock(&pull.latest).clone();
        let figures = latest.ok_or_else(|| {
            RpcError::new(
                RpcErrorCode::Unavailable,
                "this node has not built its first summary yet",
            )
        })?;
        pull.metrics.served.inc();
        Ok(figures)
    }
}
