//! The node's own background workers, and the registry's transport over the mesh.
//!
//! - `registry-gossip-in`: merges registry entries gossiped by peers;
//! - `registry-events`: gossips local registry writes and tells the mesh about node
//!   records learned from the registry;
//! - `rpc:registry-sync`: answers anti-entropy requests;
//! - `registry-anti-entropy`: reconciles with a random live peer every few seconds, and
//!   at once with every newly connected peer;
//! - `mesh-events`: persists incarnation bumps and republishes this node's record;
//! - `record-refresh`: re-measures free resources and republishes this node's record.
//!
//! [`MeshSpread`] is how the registry pushes an entry written through the API to every
//! live member at once (see [`xnode_registry::Spread`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use xnode_mesh::{
    Endpoint, Handler, MemberState, Mesh, MeshEvent, RpcError, RpcErrorCode, Service,
};
use xnode_registry::sync::{MAX_SYNC_MESSAGE_BYTES, SyncRequest, SyncResponse};
use xnode_registry::{Entry, Registry, Spread};
use xnode_types::{NodeId, NodeStatus};
use xnode_worker::{Interval, Progress, Step, Worker, WorkerError, inbox, periodic};

use crate::{Node, NodeError, REGISTRY_TOPIC};

const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an API write waits for live members to acknowledge its registry entry.
pub const DIRECT_PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The registry's anti-entropy service on the mesh.
#[derive(Debug)]
pub struct RegistrySyncService;

impl Service for RegistrySyncService {
    const NAME: &'static str = "registry-sync";
    const MAX_MESSAGE: usize = MAX_SYNC_MESSAGE_BYTES;
    type Request = SyncRequest;
    type Response = SyncResponse;
}

/// Answers peers' anti-entropy requests. It holds the registry weakly: the registry's
/// spread hook owns the endpoint that owns this handler, and a strong reference would be
/// a cycle that keeps a stopped node's database open.
struct SyncHandler(Weak<Registry>);

#[async_trait::async_trait]
impl Handler<RegistrySyncService> for SyncHandler {
    async fn handle(&self, _from: NodeId, request: SyncRequest) -> Result<SyncResponse, RpcError> {
        let Some(registry) = self.0.upgrade() else {
            return Err(RpcError::new(
                RpcErrorCode::Unavailable,
                "the registry is closing",
            ));
        };
        // Digest computation walks the registry; keep it off the async workers.
        tokio::task::spawn_blocking(move || registry.handle_sync(request))
            .await
            .map_err(|e| RpcError::new(RpcErrorCode::Internal, e.to_string()))
    }
}

/// Spreads an entry written here: gossips it, and pushes it straight to every live member,
/// waiting (up to [`DIRECT_PUSH_TIMEOUT`]) for their answers. A tenant who creates or
/// deletes a bucket through one node and then asks another therefore sees the change at
/// once, instead of whenever gossip gets there; a member that misses the push still gets
/// the entry from gossip or anti-entropy.
pub(crate) struct MeshSpread {
    pub(crate) mesh: Mesh,
    pub(crate) sync: Endpoint<RegistrySyncService>,
}

#[async_trait::async_trait]
impl Spread for MeshSpread {
    async fn spread(&self, entry: &Entry) {
        match xnode_wire::encode(entry) {
            Ok(bytes) => {
                if let Err(e) = self.mesh.publish(REGISTRY_TOPIC, bytes).await {
                    tracing::debug!(error = %e, "could not gossip a registry entry");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode registry entry");
                return;
            }
        }
        let me = self.mesh.local_id();
        let peers: Vec<NodeId> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| m.id != me && m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        let push = SyncRequest::Push {
            entries: vec![entry.clone()],
        };
        for (peer, result) in self.sync.call_many(&peers, push, DIRECT_PUSH_TIMEOUT).await {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "direct registry push failed; gossip will carry the entry");
            }
        }
    }
}

/// Anti-entropy: a round with a random live peer every interval, and one with every peer
/// that just connected.
struct AntiEntropy {
    node: Node,
    ticker: tokio::time::Interval,
    events: broadcast::Receiver<MeshEvent>,
    next_peer: Option<NodeId>,
    rounds: u64,
    repaired: u64,
}

#[async_trait::async_trait]
impl Worker for AntiEntropy {
    fn name(&self) -> String {
        "registry-anti-entropy".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.repaired,
            queued: None,
            detail: Some(format!("{} rounds", self.rounds)),
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        if let Some(peer) = self.next_peer.take() {
            self.rounds += 1;
            self.repaired = self
                .repaired
                .saturating_add(sync_with(&self.node, peer).await);
        }
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        loop {
            tokio::select! {
                _ = self.ticker.tick() => {
                    self.next_peer = random_live_peer(&self.node);
                    return Step::Busy;
                }
                event = self.events.recv() => match event {
                    Ok(MeshEvent::PeerConnected(peer)) => {
                        self.next_peer = Some(peer);
                        return Step::Busy;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Step::Done,
                },
            }
        }
    }
}

pub(crate) async fn spawn_all(node: &Node) -> Result<(), NodeError> {
    let mesh = node.mesh().clone();
    let runner = node.runner();

    // Tell the mesh about every node the registry already knows (from an earlier run).
    for record in node.records() {
        mesh.observe_node(
            record.node_id,
            record.addresses.clone(),
            record.incarnation,
            record.status == NodeStatus::Left,
        )
        .await;
    }

    let gossip = mesh.subscribe(REGISTRY_TOPIC).await?;
    let n = node.clone();
    runner.spawn(inbox("registry-gossip-in", gossip, move |message| {
        let n = n.clone();
        async move {
            if let Err(e) = n.registry().apply_remote_bytes(&message.data) {
                tracing::debug!(source = %message.source, error = %e, "dropped a gossiped registry entry");
            }
            Ok(())
        }
    }));

    let n = node.clone();
    runner.spawn(inbox(
        "registry-events",
        node.registry().subscribe(),
        move |change: xnode_registry::Change| {
            let n = n.clone();
            async move {
                if change.local {
                    match xnode_wire::encode(&change.entry) {
                        Ok(bytes) => {
                            if let Err(e) = n.mesh().publish(REGISTRY_TOPIC, bytes).await {
                                tracing::debug!(error = %e, "could not gossip a registry entry");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode registry entry"),
                    }
                }
                if let Some(record) = xnode_registry::node_record(&change.entry) {
                    n.mesh()
                        .observe_node(
                            record.node_id,
                            record.addresses,
                            record.incarnation,
                            record.status == NodeStatus::Left,
                        )
                        .await;
                }
                Ok(())
            }
        },
    ));

    runner.spawn(
        node.inner
            .registry_sync
            .serve(Arc::new(SyncHandler(Arc::downgrade(node.registry())))),
    );

    let mut ticker = tokio::time::interval(node.config().anti_entropy_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    runner.spawn(AntiEntropy {
        node: node.clone(),
        ticker,
        events: mesh.events(),
        next_peer: None,
        rounds: 0,
        repaired: 0,
    });

    let n = node.clone();
    runner.spawn(inbox("mesh-events", mesh.events(), move |event| {
        let n = n.clone();
        async move {
            if let MeshEvent::LocalIncarnation(incarnation) = event {
                n.persist_incarnation(incarnation);
                n.update_record(|r| r.incarnation = incarnation);
                n.publish_record()
                    .await
                    .map_err(|e| WorkerError::from_error(&e))?;
            }
            Ok(())
        }
    }));

    let n = node.clone();
    runner.spawn(periodic(
        "record-refresh",
        Interval::AfterFirstPeriod(node.config().record_refresh_interval),
        move || {
            let n = n.clone();
            async move {
                let probe_node = n.clone();
                let capacity = tokio::task::spawn_blocking(move || probe_node.sample_capacity())
                    .await
                    .map_err(|e| WorkerError::new(format!("capacity probe failed: {e}")))?;
                let addresses: Vec<String> = n
                    .mesh()
                    .listen_addrs()
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                n.update_record(|r| {
                    r.capacity = capacity;
                    r.addresses = addresses;
                });
                n.publish_record()
                    .await
                    .map_err(|e| WorkerError::from_error(&e))?;
                Ok(1)
            }
        },
    ));
    Ok(())
}

fn random_live_peer(node: &Node) -> Option<NodeId> {
    let mut live: Vec<NodeId> = node
        .mesh()
        .members()
        .into_iter()
        .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .map(|m| m.id)
        .collect();
    live.shuffle(&mut rand::thread_rng());
    live.first().copied()
}

/// One anti-entropy round with `peer`; returns the number of entries exchanged.
async fn sync_with(node: &Node, peer: NodeId) -> u64 {
    let endpoint = node.inner.registry_sync.clone();
    // An older peer does not know the root-first round; it gets the bucket hashes first.
    let root_first = node
        .mesh()
        .negotiated_protocol(&peer)
        .is_some_and(|v| v >= xnode_mesh::protocol::REGISTRY_ROOT);
    let result = node
        .registry()
        .sync_with(root_first, |request: SyncRequest| {
            let endpoint = endpoint.clone();
            async move {
                endpoint
                    .call(peer, request, SYNC_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    match result {
        Ok(stats) if stats.pulled + stats.pushed > 0 => {
            tracing::debug!(%peer, pulled = stats.pulled, pushed = stats.pushed, "anti-entropy repaired differences");
            (stats.pulled + stats.pushed) as u64
        }
        Ok(_) => 0,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "anti-entropy round failed");
            0
        }
    }
}
