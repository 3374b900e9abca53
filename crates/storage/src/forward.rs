//! Forwarded reads: an object read through an edge far from its bucket's metadata, in
//! about one round trip instead of four.
//!
//! Without them, a read through an edge pays its metadata read quorum, then the manifest,
//! then the chunks, one after another, each across the distance to the replicas. With
//! them, the edge sends, in parallel with its own quorum read, one `ForwardedRead` to the
//! metadata replica nearest to it (by the network coordinates hedged chunk reads use).
//! That replica answers with its own current entry of the key, the manifest it names and
//! the first chunks (at most [`MAX_FORWARDED_BYTES`] of them), which it fetches from
//! holders near itself.
//!
//! The near replica is not trusted. The edge uses its answer only if the quorum read
//! agrees on the version, writer and manifest id, and only the bytes that hash to the
//! manifest id the quorum named and to the chunk ids that manifest lists; the manifest is
//! then authenticated with the tenant's keys as on every read. A stale, forged, missing or
//! slow answer costs a fallback to the ordinary path, never a wrong or stale byte.
//!
//! Metering: the near replica meters the bytes it sends as the tenant's egress to the
//! edge, as `GetTenantChunk` does, and the edge observes the bytes it verified and used.
//! The near replica fetches the chunks it does not hold with plain `GetChunk`, a transfer
//! between nodes that no tenant pays for, like repair traffic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;
use xnode_store::{Candidate, ChunkId, Manifest, ObjectInfo, ObjectMeta, ObjectPath};
use xnode_types::{NodeId, lock, unix_ms};

use crate::attest::AttestedQuorum;
use crate::proto::{
    ForwardedAnswer, ForwardedChunk, MAX_FORWARDED_BYTES, StoreRequest, StoreResponse,
};
use crate::{Storage, StorageError};

fn join_failed(e: tokio::task::JoinError) -> StorageError {
    StorageError::Internal(format!("a metadata read task failed: {e}"))
}

/// The longest an edge waits for a forwarded answer once its own quorum read is done.
/// Past it the edge falls back to the ordinary path.
const MAX_FORWARD_WAIT: Duration = Duration::from_secs(1);
/// The shortest such wait: a near answer comes back shortly after the quorum (the near
/// replica reads its chunks after its entry).
const MIN_FORWARD_WAIT: Duration = Duration::from_millis(50);
/// Sealing adds a few bytes per chunk to its plaintext; an answer's sealed chunks may pass
/// the byte budget by this much, and never more (a manifest whose chunks are larger than
/// it says gets fewer of them forwarded).
const SEALED_SLACK: u64 = 64 * 1024;

/// What an edge took from a forwarded answer after checking it: the manifest and chunks,
/// each matching its id, and the node that served them (for metering).
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    pub(crate) manifest: Option<Vec<u8>>,
    chunks: std::sync::Mutex<HashMap<ChunkId, Vec<u8>>>,
    /// The near replica that served them.
    served_by: Option<NodeId>,
}

impl Prefetched {
    /// Takes a prefetched chunk (each is used once: a range reads a chunk once), with the
    /// node that served it. The edge observes a chunk's egress when it uses it, so bytes
    /// that hash to their own id but are not the object's are never paid for.
    pub(crate) fn take_chunk(&self, id: &ChunkId) -> Option<(NodeId, Vec<u8>)> {
        let node = self.served_by?;
        lock(&self.chunks).remove(id).map(|data| (node, data))
    }
}

/// A forwarded read in flight, started with the edge's quorum read.
pub(crate) struct ForwardedRead {
    node: NodeId,
    /// The fresh nonce the near replica's relayed quorum answers must be signed with;
    /// `None` when the near replica was asked for no quorum (see `attest`).
    nonce: Option<[u8; 16]>,
    started: Instant,
    answer: tokio::task::JoinHandle<Result<StoreResponse, StorageError>>,
}

impl Drop for ForwardedRead {
    fn drop(&mut self) {
        // An answer nobody will look at need not be waited for.
        self.answer.abort();
    }
}

/// How long after a version was dated a read that missed it still counts as concurrent
/// with the write, not as a relayed quorum hiding it (clocks differ a little).
const CONCURRENT_WRITE_SLACK_MS: u64 = 2_000;

impl Storage {
    /// Starts a forwarded read of `path` from byte `from`: when this node holds no replica
    /// of the bucket's metadata, to the nearest live metadata replica, which also collects
    /// a signed read quorum for this edge unless it once relayed one that the edge's own
    /// quorum contradicted; when it holds one, a prefetch from its own entry.
    pub(crate) fn start_forwarded_read(
        self: &Arc<Self>,
        path: &ObjectPath,
        from: u64,
    ) -> Option<ForwardedRead> {
        let set = self.storage_set();
        let mut targets = self.meta_placement(&path.tenant, &path.bucket, &set);
        if targets.contains(&self.node_id) {
            // A metadata replica knows its own entry at once: it fetches the manifest and
            // first chunks that entry names while its quorum read runs, from the holders
            // nearest to it, and keeps them if the quorum agrees (the checks are those of
            // a near replica's answer).
            let (this, path, me) = (self.clone(), path.clone(), self.node_id);
            let answer = tokio::spawn(async move {
                this.answer_forwarded_read(path, from, MAX_FORWARDED_BYTES, me, true)
                    .await
                    .map(StoreResponse::Forwarded)
            });
            return Some(ForwardedRead {
                node: me,
                nonce: None,
                started: Instant::now(),
                answer,
            });
        }
        let live = self.live_nodes();
        targets.retain(|n| live.contains(n));
        self.mesh.sort_by_distance(&mut targets);
        let node = *targets.first()?;
        let nonce = (!self.distrusted_relays.contains(&node)).then(rand::random::<[u8; 16]>);
        let request = match nonce {
            Some(nonce) => StoreRequest::QuorumForwardedRead {
                path: path.clone(),
                from,
                max_bytes: MAX_FORWARDED_BYTES,
                nonce,
            },
            None => StoreRequest::ForwardedRead {
                path: path.clone(),
                from,
                max_bytes: MAX_FORWARDED_BYTES,
            },
        };
        let this = self.clone();
        let answer =
            tokio::spawn(async move { this.call(node, request, crate::CHUNK_TIMEOUT).await });
        Some(ForwardedRead {
            node,
            nonce,
            started: Instant::now(),
            answer,
        })
    }

    /// The current entry of `path` for a read through this far edge, with what `read`
    /// prefetched that the entry vouches for. The edge's own quorum read runs in
    /// parallel; when the near replica's signed quorum arrives first and checks out, the
    /// version is decided from it, and the edge's own read finishes in the background to
    /// repair replicas and to catch a near replica that hid a newer version (see
    /// `attest`). Otherwise the edge waits for its own read as before.
    pub(crate) async fn read_meta_far(
        self: &Arc<Self>,
        path: &ObjectPath,
        set: &[Candidate],
        mut read: ForwardedRead,
    ) -> Result<(Option<ObjectMeta>, Option<Prefetched>), StorageError> {
        let started_ms = unix_ms();
        let (this, own_path, own_set) = (self.clone(), path.clone(), set.to_vec());
        let mut own = tokio::spawn(async move { this.get_meta(&own_path, &own_set).await });
        let first = tokio::select! {
            biased;
            own_read = &mut own => Err(own_read),
            answer = &mut read.answer => Ok(answer),
        };
        let answer = match first {
            // The edge's own quorum came first: the ordinary forwarded read.
            Err(own_read) => {
                let current = own_read.map_err(join_failed)??;
                let prefetched = match current
                    .as_ref()
                    .and_then(|m| m.info.as_ref().map(|i| (m, i)))
                {
                    Some((meta, info)) => self.finish_forwarded_read(read, meta, info).await,
                    None => None,
                };
                return Ok((current, prefetched));
            }
            Ok(answer) => answer.ok().and_then(Result::ok),
        };
        let (answer, attestations) = match answer {
            Some(StoreResponse::QuorumForwarded {
                answer,
                attestations,
            }) => (Some(answer), attestations),
            Some(StoreResponse::Forwarded(answer)) => (Some(answer), Vec::new()),
            _ => (None, Vec::new()),
        };
        let node = read.node;
        let relayed = read
            .nonce
            .and_then(|nonce| self.check_attestations(path, &nonce, &attestations));
        let current = match relayed {
            Some(quorum) => {
                self.metrics.relayed_quorums_used.inc();
                if let Some(newest) = &quorum.newest {
                    self.clock.observe(newest.version);
                }
                let newest = quorum.newest.clone();
                let this = self.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(own)) = own.await {
                        this.compare_relayed_quorum(node, &quorum, own.as_ref(), started_ms);
                    }
                });
                newest
            }
            None => own.await.map_err(join_failed)??,
        };
        let prefetched = match (
            answer,
            current
                .as_ref()
                .and_then(|m| m.info.as_ref().map(|i| (m, i))),
        ) {
            (Some(answer), Some((meta, info))) => {
                let prefetched = self.check_forwarded(node, answer, meta, info);
                self.count_forwarded(node, prefetched.is_some());
                prefetched
            }
            (None, _) => {
                self.count_forwarded(node, false);
                None
            }
            (Some(_), None) => None,
        };
        Ok((current, prefetched))
    }

    /// Checks a relayed quorum against the edge's own, once that finished: an own version
    /// newer than the relayed one, dated well before the read began, was hidden by the
    /// near replica, or by the replicas whose signed answers missed it with the near
    /// replica leaving out the rest. For a while the edge then takes no relayed quorum
    /// from that near replica, nor one that any of those signers takes part in.
    fn compare_relayed_quorum(
        &self,
        near: NodeId,
        relayed: &AttestedQuorum,
        own: Option<&ObjectMeta>,
        read_started_ms: u64,
    ) {
        let Some(own) = own else { return };
        let missed = |entry: &Option<ObjectMeta>| entry.as_ref().is_none_or(|e| own.supersedes(e));
        if !missed(&relayed.newest) {
            return;
        }
        if own
            .version
            .wall_ms
            .saturating_add(CONCURRENT_WRITE_SLACK_MS)
            >= read_started_ms
        {
            // Written about when the read began: the relayed quorum may simply have
            // answered first.
            return;
        }
        self.metrics.relayed_quorums_contradicted.inc();
        self.distrusted_relays.insert(near);
        for (signer, _) in relayed.votes.iter().filter(|(_, entry)| missed(entry)) {
            self.distrusted_relays.insert(*signer);
        }
        tracing::warn!(%near, path = ?own.path, "a relayed read quorum missed a version written before the read; not taking relayed quorums from this node for a while");
    }

    /// Waits briefly for a forwarded answer once the quorum read found `meta`, and keeps
    /// what it can verify against it; `None` (counted as refused) when the answer is
    /// stale, forged, missing, failed or too slow.
    pub(crate) async fn finish_forwarded_read(
        &self,
        mut read: ForwardedRead,
        meta: &ObjectMeta,
        info: &ObjectInfo,
    ) -> Option<Prefetched> {
        // As long again as the quorum took, within bounds: a near answer that takes longer
        // than that is no faster than the ordinary path.
        let wait = read
            .started
            .elapsed()
            .clamp(MIN_FORWARD_WAIT, MAX_FORWARD_WAIT);
        let node = read.node;
        let answer = match tokio::time::timeout(wait, &mut read.answer).await {
            Ok(Ok(Ok(StoreResponse::Forwarded(answer))))
            | Ok(Ok(Ok(StoreResponse::QuorumForwarded { answer, .. }))) => Some(answer),
            _ => None,
        };
        let prefetched = answer.and_then(|a| self.check_forwarded(node, a, meta, info));
        self.count_forwarded(node, prefetched.is_some());
        if prefetched.is_none() {
            tracing::debug!(%node, path = ?meta.path, "a forwarded read was not used; reading the ordinary way");
        }
        prefetched
    }

    /// Counts a forwarded read the edge used or not; a metadata replica's prefetch from its
    /// own entry counts apart (it is no near replica's answer).
    fn count_forwarded(&self, node: NodeId, used: bool) {
        match (node == self.node_id, used) {
            (true, true) => {
                self.metrics.local_prefetches_used.inc();
            }
            (true, false) => {}
            (false, true) => {
                self.metrics.forwarded_reads_used.inc();
            }
            (false, false) => {
                self.metrics.forwarded_reads_refused.inc();
            }
        }
    }

    /// Keeps the parts of `answer` that the quorum's `meta` vouches for.
    fn check_forwarded(
        &self,
        node: NodeId,
        answer: ForwardedAnswer,
        meta: &ObjectMeta,
        info: &ObjectInfo,
    ) -> Option<Prefetched> {
        let near = answer.meta?;
        let agrees = near.path == meta.path
            && near.version == meta.version
            && near.writer == meta.writer
            && near.info.as_ref().map(|i| i.manifest) == Some(info.manifest);
        if !agrees {
            tracing::debug!(%node, "a forwarded read answered another version than the quorum's");
            return None;
        }
        // The near replica leaves out what placement puts on this edge (it reads it
        // locally); an answer with nothing else is of no use.
        if answer.manifest.is_none() && answer.chunks.is_empty() {
            return None;
        }
        if let Some(manifest) = &answer.manifest
            && Manifest::id_of(manifest) != info.manifest
        {
            self.metrics.bad_replica_reads.inc();
            tracing::warn!(%node, "a forwarded read sent a manifest that does not match its id");
            return None;
        }
        let mut chunks = HashMap::new();
        for ForwardedChunk { id, data } in answer.chunks {
            if ChunkId::of(&data) != id {
                // Bytes that do not match: the answer is not used at all, so a replica that
                // sends garbage gains nothing by mixing it with good bytes.
                self.metrics.bad_replica_reads.inc();
                tracing::warn!(%node, chunk = %id, "a forwarded read sent bytes that do not match their chunk id");
                return None;
            }
            chunks.insert(id, data);
        }
        if let Some(manifest) = &answer.manifest {
            self.metrics.chunk_read_bytes.inc_by(manifest.len() as u64);
            self.observe_egress(meta.path.tenant, node, manifest.len() as u64);
        }
        Some(Prefetched {
            manifest: answer.manifest,
            chunks: std::sync::Mutex::new(chunks),
            served_by: Some(node),
        })
    }

    /// Near side: answers `edge`'s forwarded read from this node's own entry of `path`,
    /// with the manifest and the chunks covering the plaintext from `from`, at most
    /// `max_bytes` (capped) of sealed chunks, read from the nearest holders. What placement
    /// puts on `edge` itself is left out: the edge reads it locally, with no network.
    ///
    /// `for_tenant` reads the chunks with `GetTenantChunk`, metered to the tenant: what a
    /// metadata replica prefetches for its own read (see [`Storage::start_forwarded_read`]);
    /// a near replica answering a peer fetches with plain `GetChunk` and meters what it
    /// sends instead.
    pub(crate) async fn answer_forwarded_read(
        &self,
        path: ObjectPath,
        from: u64,
        max_bytes: u32,
        edge: NodeId,
        for_tenant: bool,
    ) -> Result<ForwardedAnswer, StorageError> {
        path.validate()?;
        let metered = for_tenant.then_some(path.tenant);
        let store = self.meta.clone();
        let lookup = path.clone();
        let meta = crate::blocking(move || store.get(&lookup)).await?;
        let Some(info) = meta.as_ref().and_then(|m| m.info.clone()) else {
            return Ok(ForwardedAnswer {
                meta,
                ..Default::default()
            });
        };
        let set = self.storage_set();
        let pinned = self.pinned_set(&path.tenant, &path.bucket, &set);
        let rf = self.bucket_rf(&path.tenant, &path.bucket);
        let held_by_edge = |id: &ChunkId| self.placement(&id.0, &pinned, rf).contains(&edge);
        let read_chunk = |id: ChunkId| {
            let set = &set;
            let path = &path;
            async move {
                self.get_object_chunk(id, set, metered, &path.tenant, &path.bucket)
                    .await
            }
        };
        let Ok(manifest_bytes) = read_chunk(info.manifest).await else {
            return Ok(ForwardedAnswer {
                meta,
                ..Default::default()
            });
        };
        let budget = u64::from(max_bytes.min(MAX_FORWARDED_BYTES));
        let wanted: Vec<ChunkId> = match Manifest::decode(&manifest_bytes) {
            Ok(manifest) => {
                let mut ids: Vec<ChunkId> = Vec::new();
                let mut bytes: u64 = 0;
                // Plaintext and sealed sizes differ by a tag per chunk; the budget counts
                // plaintext here and sealed bytes below, which keeps both bounded.
                for piece in manifest.pieces_for_range(from, from.saturating_add(budget)) {
                    let Some(chunk) = manifest
                        .segment(piece.segment)
                        .and_then(|s| s.chunks.get(piece.chunk).cloned())
                    else {
                        break;
                    };
                    bytes = bytes.saturating_add(u64::from(chunk.plain_len));
                    if bytes > budget && !ids.is_empty() {
                        break;
                    }
                    if !ids.contains(&chunk.id) && !held_by_edge(&chunk.id) {
                        ids.push(chunk.id);
                    }
                }
                ids
            }
            Err(_) => Vec::new(),
        };
        let fetched = join_all(wanted.into_iter().map(|id| async move {
            read_chunk(id)
                .await
                .ok()
                .map(|data| ForwardedChunk { id, data })
        }))
        .await;
        // Stop at the first chunk that could not be read: the edge reads it and the rest
        // the ordinary way, and the sealed bytes stay within the budget plus one chunk.
        let mut chunks = Vec::new();
        let mut sealed: u64 = 0;
        for chunk in fetched {
            let Some(chunk) = chunk else { break };
            sealed = sealed.saturating_add(chunk.data.len() as u64);
            if sealed > budget.saturating_add(SEALED_SLACK) {
                break;
            }
            chunks.push(chunk);
        }
        let manifest = (!held_by_edge(&info.manifest)).then_some(manifest_bytes);
        Ok(ForwardedAnswer {
            meta,
            manifest,
            chunks,
        })
    }
}

/// Bytes an answer carries (what the near replica meters as egress).
pub(crate) fn answer_bytes(answer: &ForwardedAnswer) -> u64 {
    answer.chunks.iter().fold(
        answer.manifest.as_ref().map_or(0, |m| m.len() as u64),
        |sum, c| sum.saturating_add(c.data.len() as u64),
    )
}
