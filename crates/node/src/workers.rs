//! The node's background workers, each named and stopped by the node's shutdown token.
//!
//! - `registry-gossip-in`: merges registry entries gossiped by peers;
//! - `registry-events`: gossips local registry writes and tells the mesh about node
//!   records learned from the registry;
//! - `registry-sync-server`: answers anti-entropy requests;
//! - `registry-anti-entropy`: reconciles with a random live peer every few seconds, and
//!   at once with every newly connected peer;
//! - `mesh-events`: persists incarnation bumps and republishes this node's record;
//! - `record-refresh`: re-measures free resources and republishes this node's record.

use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::broadcast::error::RecvError;
use xnode_mesh::{MemberState, MeshEvent, RpcErrorCode};
use xnode_registry::sync::{MAX_SYNC_MESSAGE_BYTES, SyncRequest, SyncResponse};
use xnode_types::{NodeId, NodeRecord, NodeStatus};

use crate::{Node, NodeError, REGISTRY_SYNC_SERVICE, REGISTRY_TOPIC};

const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn spawn_all(node: &Node) -> Result<(), NodeError> {
    let mesh = node.mesh().clone();

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

    let mut gossip = mesh.subscribe(REGISTRY_TOPIC).await?;
    let n = node.clone();
    node.spawn_worker("registry-gossip-in", async move {
        while let Some(message) = gossip.recv().await {
            if let Err(e) = n.registry().apply_remote_bytes(&message.data) {
                tracing::debug!(source = %message.source, error = %e, "dropped a gossiped registry entry");
            }
        }
    });

    let mut changes = node.registry().subscribe();
    let n = node.clone();
    node.spawn_worker("registry-events", async move {
        loop {
            let change = match changes.recv().await {
                Ok(c) => c,
                // Missed some changes: anti-entropy delivers them anyway.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "registry event stream lagged");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
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
            if change.entry.key.starts_with(NodeRecord::KEY_PREFIX)
                && let Some(record) = crate::node_record(&change.entry)
            {
                n.mesh()
                    .observe_node(
                        record.node_id,
                        record.addresses,
                        record.incarnation,
                        record.status == NodeStatus::Left,
                    )
                    .await;
            }
        }
    });

    let mut inbound = mesh.serve(REGISTRY_SYNC_SERVICE);
    let n = node.clone();
    node.spawn_worker("registry-sync-server", async move {
        while let Some(request) = inbound.recv().await {
            let registry = n.registry().clone();
            // Digest computation walks the registry; keep it off the async workers.
            let answer = tokio::task::spawn_blocking(move || {
                let request =
                    xnode_wire::decode::<SyncRequest>(&request.body, MAX_SYNC_MESSAGE_BYTES)
                        .map_err(|e| (RpcErrorCode::BadRequest, e.to_string()))?;
                xnode_wire::encode(&registry.handle_sync(request))
                    .map_err(|e| (RpcErrorCode::Internal, e.to_string()))
            })
            .await
            .unwrap_or_else(|e| Err((RpcErrorCode::Internal, e.to_string())));
            let _ = request.reply.send(answer);
        }
    });

    let mut events = mesh.events();
    let n = node.clone();
    let interval = node.config().anti_entropy_interval;
    node.spawn_worker("registry-anti-entropy", async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let peer = tokio::select! {
                _ = ticker.tick() => random_live_peer(&n),
                event = events.recv() => match event {
                    Ok(MeshEvent::PeerConnected(peer)) => Some(peer),
                    Ok(_) | Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => break,
                },
            };
            if let Some(peer) = peer {
                sync_with(&n, peer).await;
            }
        }
    });

    let mut events = mesh.events();
    let n = node.clone();
    node.spawn_worker("mesh-events", async move {
        loop {
            match events.recv().await {
                Ok(MeshEvent::LocalIncarnation(incarnation)) => {
                    n.persist_incarnation(incarnation);
                    n.update_record(|r| r.incarnation = incarnation);
                    if let Err(e) = n.publish_record().await {
                        tracing::warn!(error = %e, "cannot republish record");
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });

    let n = node.clone();
    let every = node.config().record_refresh_interval;
    node.spawn_worker("record-refresh", async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let probe_node = n.clone();
            let Ok(capacity) =
                tokio::task::spawn_blocking(move || probe_node.sample_capacity()).await
            else {
                continue;
            };
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
            if let Err(e) = n.publish_record().await {
                tracing::warn!(error = %e, "cannot republish record");
            }
        }
    });
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

async fn sync_with(node: &Node, peer: NodeId) {
    let mesh = node.mesh().clone();
    let result = node
        .registry()
        .sync_with(|request: SyncRequest| {
            let mesh = mesh.clone();
            async move {
                let body = xnode_wire::encode(&request).map_err(|e| e.to_string())?;
                let bytes = mesh
                    .request(peer, REGISTRY_SYNC_SERVICE, body, SYNC_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                xnode_wire::decode::<SyncResponse>(&bytes, MAX_SYNC_MESSAGE_BYTES)
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    match result {
        Ok(stats) if stats.pulled + stats.pushed > 0 => {
            tracing::debug!(%peer, pulled = stats.pulled, pushed = stats.pushed, "anti-entropy repaired differences");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(%peer, error = %e, "anti-entropy round failed"),
    }
}
