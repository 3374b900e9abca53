//! Draining: the rounds a node runs while it moves everything it holds to the nodes that
//! hold it once it is gone (`xnode drain`).
//!
//! A draining node's record says `draining`, so every node (this one included) leaves it
//! out of the storage set. Each chunk this node holds is then a hand-off, offered to its
//! placement nodes, and each bucket's entries are pushed to the bucket's new replicas: the
//! same anti-entropy round as repair, run at once rather than when something changed. A
//! round reports what is still short of its copies *without this node*, so the drain is
//! complete exactly when nothing it holds would be under-replicated once it is gone.

use std::sync::Arc;

use crate::{Storage, StorageError};

/// What one drain round found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainRound {
    /// Chunks this node still holds (they stay until it stops).
    pub chunks_held: u64,
    /// Copies made in this round (chunks and metadata entries).
    pub copies: u64,
    /// Chunks held here that fewer than their replication factor of other nodes hold.
    pub under_replicated_chunks: u64,
    /// Objects whose bucket fewer than its replication factor of other nodes hold in sync.
    pub under_replicated_objects: u64,
    /// Nodes in the storage set, this one no longer among them.
    pub storage_nodes: usize,
    /// Why the drain cannot complete whatever it copies, if it cannot.
    pub blocked: Option<String>,
}

impl DrainRound {
    /// Whether everything this node holds has its copies on other nodes.
    pub fn complete(&self) -> bool {
        self.blocked.is_none()
            && self.under_replicated_chunks == 0
            && self.under_replicated_objects == 0
    }
}

impl Storage {
    /// Runs one drain round now: copies every chunk and metadata entry this node holds to
    /// the nodes that should hold it without this node, and counts what is still short.
    pub async fn drain_round(self: &Arc<Self>) -> Result<DrainRound, StorageError> {
        let set = self.storage_set();
        let live = self.live_nodes();
        let chunks = self.chunk_round(&set, &live).await?;
        let meta = self.meta_round(&set, &live).await?;
        let others = set.iter().filter(|c| c.id != self.node_id).count();
        let rf = self.config.replication_factor;
        let blocked = if set.iter().any(|c| c.id == self.node_id) {
            // Its own record does not say `draining` yet: placement still counts it.
            Some("this node is still in its own storage set".to_owned())
        } else if others < rf {
            Some(format!(
                "only {others} other storage nodes, and the replication factor is {rf}: \
                 add a node before draining this one"
            ))
        } else {
            None
        };
        Ok(DrainRound {
            chunks_held: self.chunks.stats().chunks,
            copies: chunks.repaired.saturating_add(meta.repaired),
            under_replicated_chunks: chunks.under_chunks,
            under_replicated_objects: meta.under_objects,
            storage_nodes: set.len(),
            blocked,
        })
    }
}
