//! Garbage collection: removes local chunks that no live object references any more
//! (chunks of interrupted uploads, of overwritten and of deleted objects).
//!
//! Safety comes first. A round runs only when every node of the storage set is alive and
//! answers, so the set of referenced chunks it builds is complete; and a chunk younger than
//! `gc_grace` is never removed, because it may belong to an upload whose metadata is not
//! written yet.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use xnode_mesh::MemberState;
use xnode_store::{ChunkId, Manifest};

use super::proto::{StoreRequest, StoreResponse};
use super::{Storage, StorageError};

const PAGE: u32 = 1000;
const TIMEOUT: Duration = Duration::from_secs(30);

impl Storage {
    /// One garbage-collection round. Returns the number of chunks removed.
    pub async fn collect_garbage(self: &Arc<Self>) -> Result<u64, StorageError> {
        let set = self.storage_set();
        let members = self.mesh.members();
        for candidate in &set {
            if candidate.id == self.node_id {
                continue;
            }
            let alive = members
                .iter()
                .any(|m| m.id == candidate.id && m.state == MemberState::Alive);
            if !alive {
                return Err(StorageError::Quorum(format!(
                    "storage node {} is not alive, so the set of referenced chunks could be incomplete",
                    candidate.id
                )));
            }
        }

        // Every chunk a live object references, cluster-wide.
        let mut referenced: HashSet<ChunkId> = HashSet::new();
        let mut manifests: HashSet<ChunkId> = HashSet::new();
        for candidate in &set {
            let mut after: Vec<u8> = Vec::new();
            loop {
                let request = StoreRequest::ScanMeta {
                    after: after.clone(),
                    limit: PAGE,
                };
                let page = match self.call(candidate.id, request, TIMEOUT).await? {
                    StoreResponse::MetaList(page) => page,
                    _ => {
                        return Err(StorageError::Internal(
                            "unexpected answer to a metadata scan".into(),
                        ));
                    }
                };
                for meta in &page {
                    if let Some(info) = &meta.info {
                        manifests.insert(info.manifest);
                    }
                }
                match page.last() {
                    Some(last) if page.len() == PAGE as usize => after = last.path.storage_key(),
                    _ => break,
                }
            }
        }
        referenced.extend(self.gc_roots());
        for manifest_id in manifests {
            let bytes = self.get_chunk(manifest_id, &set).await?;
            let manifest = Manifest::decode(&bytes)?;
            referenced.insert(manifest_id);
            referenced.extend(manifest.all_chunk_ids());
        }

        // Local chunks that nothing references and that are old enough.
        let grace = self.config.gc_grace;
        let chunks = self.chunks.clone();
        let removed =
            tokio::task::spawn_blocking(move || -> Result<u64, xnode_store::StoreError> {
                let mut removed = 0;
                let mut cursor: Option<ChunkId> = None;
                loop {
                    let batch = chunks.list(cursor.as_ref(), 1000)?;
                    let Some((last, _)) = batch.last() else { break };
                    cursor = Some(*last);
                    for (id, _) in batch {
                        if referenced.contains(&id) {
                            continue;
                        }
                        let hex = id.to_hex();
                        let path = chunks.dir().join(&hex[..2]).join(&hex);
                        let old_enough = std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| SystemTime::now().duration_since(t).ok())
                            .is_some_and(|age| age >= grace);
                        if old_enough && chunks.remove(&id)? {
                            removed += 1;
                        }
                    }
                }
                Ok(removed)
            })
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))??;
        if let Ok(mut health) = self.health.lock() {
            health.gc_removed_chunks += removed;
        }
        Ok(removed)
    }
}
