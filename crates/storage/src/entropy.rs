//! Anti-entropy by difference: replicas compare digests and exchange only what differs.
//!
//! A round has three parts.
//!
//! - **Metadata.** For every bucket this node holds entries of, it sends each live replica
//!   of the bucket its bucket digest ([`xnode_store::entropy::SetDigest`], kept current by
//!   every merge) in one `MetaDigests` request per peer. Where a peer's digest differs, the
//!   two compare the bucket's [`LEAVES`] leaf digests, and this node pushes the entries of
//!   the leaves that differ (`PutMetaMany`). A bucket in sync costs 64 bytes on the wire.
//! - **Chunks.** For every live peer, this node digests, per partition of the chunk id
//!   space (the id's first byte), the chunks it holds that placement puts on both of them,
//!   and the peer digests the same set from its side (`ChunkDigests`). Only the chunks of
//!   partitions that differ are asked about one by one (`HasChunks`) and copied. Chunks
//!   held here that placement does not put here (a hand-off after the storage set changed)
//!   are offered to their placement nodes one by one, as before.
//! - **Retired tombstones.** The same comparison over each bucket's cold table (the
//!   tombstones collection retired), so they follow the bucket's placement
//!   ([`retired`]).
//!
//! A round runs when something could have changed: this node's chunks or entries, the
//! storage set or the live members, a peer that saw a difference (a peer that receives
//! digests unlike its own marks itself to run a round), or the periodic full round
//! (`storage.anti_entropy_full_interval`) that catches silent losses. An idle network
//! with nothing to repair exchanges no storage messages at all.
//!
//! A peer that answers the new requests with an error (an older version) gets the old
//! treatment: every entry of the bucket pushed, every chunk asked about.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use xnode_store::entropy::{LEAVES, SetDigest};
use xnode_store::{Candidate, ChunkId, MergeOutcome, ObjectMeta};
use xnode_types::{NodeId, unix_ms};

use crate::proto::{
    BucketRef, MAX_CHUNK_PARTITIONS, MAX_DIGEST_BUCKETS, MAX_PUT_META_MANY, StoreRequest,
    StoreResponse,
};
use crate::{Storage, StorageError};

mod retired;

/// Partitions of the chunk id space: one per value of the id's first byte.
const PARTITIONS: usize = 256;
/// Chunk ids read from the local index per step of a walk.
const WALK_PAGE: usize = 1024;
/// Most chunk ids one `HasChunks` request names.
const HAS_BATCH: usize = 1024;
/// Chunk copies a round runs at once towards one node.
const COPY_PARALLELISM: usize = 8;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What decides whether a round is needed: if none of it changed since a round that found
/// nothing to do, the next one would find nothing either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoundInputs {
    chunks_generation: u64,
    meta_generation: u64,
    /// A hash of the storage set and of the live members.
    membership: [u8; 32],
}

/// The anti-entropy state of one node.
#[derive(Debug, Default)]
pub(crate) struct EntropyState {
    /// The inputs of the last round that found every live replica in sync.
    last_clean: Option<RoundInputs>,
    /// When the last round (of any outcome) finished, unix ms.
    last_round_ms: u64,
    /// A peer saw digests unlike its own, or a round could not finish: run one soon.
    dirty: bool,
    /// Per peer, the chunk digests it gave at this node's last clean round (hashed) and
    /// this node's chunk generation then: the same digests from that peer again, with
    /// nothing changed here, would make a round that finds nothing to do (the difference
    /// is on the peer's side, for example garbage it holds that this node collected), so
    /// they do not mark this node dirty. Without this, two such peers would wake each
    /// other for a round at every check until the difference went away.
    settled_chunk_digests: BTreeMap<NodeId, (u64, [u8; 32])>,
    /// Rounds skipped because nothing changed, and rounds run.
    pub(crate) skipped: u64,
    pub(crate) rounds: u64,
}

/// What one round did.
#[derive(Debug, Default)]
pub(crate) struct RoundReport {
    pub(crate) repaired: u64,
    pub(crate) under_chunks: u64,
    pub(crate) under_objects: u64,
    /// Every live replica answered and nothing differed.
    pub(crate) clean: bool,
    /// The chunk digests each peer gave in this round, hashed ([`partitions_hash`]).
    pub(crate) compared_chunk_digests: Vec<(NodeId, [u8; 32])>,
}

/// Per live peer, the digests of the chunks this node holds that placement puts on both.
struct ChunkWalk {
    shared: BTreeMap<NodeId, Vec<SetDigest>>,
    /// Chunks held here that placement does not put here, with their placement.
    handoff: Vec<(ChunkId, Vec<NodeId>)>,
}

impl Storage {
    /// Runs an anti-entropy round if anything changed since the last clean one, or the
    /// full interval passed. Returns the number of copies made.
    pub(crate) async fn anti_entropy(self: &Arc<Self>) -> Result<u64, StorageError> {
        let set = self.storage_set();
        let live = self.live_nodes();
        let inputs = RoundInputs {
            chunks_generation: self.chunks.generation(),
            meta_generation: self.meta.generation(),
            membership: membership_hash(&set, &live),
        };
        let now = unix_ms();
        let full_ms =
            u64::try_from(self.config.anti_entropy_full_interval.as_millis()).unwrap_or(u64::MAX);
        {
            let mut state = self.entropy_state();
            let quiet = !state.dirty
                && state.last_clean.as_ref() == Some(&inputs)
                && now.saturating_sub(state.last_round_ms) < full_ms;
            if quiet {
                state.skipped = state.skipped.saturating_add(1);
                return Ok(0);
            }
            // A peer that marks this node dirty during the round makes the next one run.
            state.dirty = false;
        }
        let chunks = self.chunk_round(&set, &live).await?;
        let meta = self.meta_round(&set, &live).await?;
        let retired = self.retired_round(&set, &live).await?;
        let report = RoundReport {
            repaired: chunks
                .repaired
                .saturating_add(meta.repaired)
                .saturating_add(retired.repaired),
            under_chunks: chunks.under_chunks,
            under_objects: meta.under_objects,
            clean: chunks.clean && meta.clean && retired.clean,
            compared_chunk_digests: Vec::new(),
        };
        {
            let mut state = self.entropy_state();
            state.settled_chunk_digests = if chunks.clean {
                chunks
                    .compared_chunk_digests
                    .iter()
                    .map(|(peer, hash)| (*peer, (inputs.chunks_generation, *hash)))
                    .collect()
            } else {
                BTreeMap::new()
            };
            state.rounds = state.rounds.saturating_add(1);
            state.last_round_ms = unix_ms();
            state.last_clean = report.clean.then_some(inputs);
        }
        if let Ok(mut health) = self.health.lock() {
            health.under_replicated_chunks = report.under_chunks;
            health.under_replicated_objects = report.under_objects;
            health.repairs_done = health.repairs_done.saturating_add(report.repaired);
            health.last_repair_scan_ms = Some(unix_ms());
        }
        Ok(report.repaired)
    }

    pub(crate) fn entropy_state(&self) -> std::sync::MutexGuard<'_, EntropyState> {
        self.entropy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the next round run whatever changed (a peer's digests differ from ours).
    pub(crate) fn mark_entropy_dirty(&self) {
        self.entropy_state().dirty = true;
    }

    // ---------------------------------------------------------------- chunks

    pub(crate) async fn chunk_round(
        self: &Arc<Self>,
        set: &[Candidate],
        live: &std::collections::HashSet<NodeId>,
    ) -> Result<RoundReport, StorageError> {
        // Before the walk: a chunk written here by then is in it, which is what the
        // auditor's "given before challenged" rule relies on (`audit::may_challenge`).
        let round_started_ms = unix_ms();
        // Peers this round could not complete with: a question unanswered or a copy that
        // did not arrive.
        let mut unsynced: BTreeSet<NodeId> = BTreeSet::new();
        let walk = {
            let s = self.clone();
            let set = set.to_vec();
            let live = live.clone();
            tokio::task::spawn_blocking(move || s.walk_chunks(&set, &live))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))??
        };
        let mut report = RoundReport {
            clean: true,
            ..RoundReport::default()
        };
        // Which partitions each live peer holds differently (all of them for a peer that
        // cannot compare digests).
        let mut differing: BTreeMap<NodeId, BTreeSet<u8>> = BTreeMap::new();
        for (peer, ours) in &walk.shared {
            let partitions: Vec<(u8, SetDigest)> = ours
                .iter()
                .enumerate()
                .filter_map(|(p, d)| Some((u8::try_from(p).ok()?, *d)))
                .collect();
            let mut theirs = Vec::with_capacity(PARTITIONS);
            let mut compared = true;
            for part in partitions.chunks(MAX_CHUNK_PARTITIONS) {
                match self
                    .call(
                        *peer,
                        StoreRequest::ChunkDigests {
                            partitions: part.to_vec(),
                        },
                        CALL_TIMEOUT,
                    )
                    .await
                {
                    Ok(StoreResponse::Digests(d)) if d.len() == part.len() => theirs.extend(d),
                    _ => {
                        compared = false;
                        break;
                    }
                }
            }
            if compared {
                let given: Vec<(u8, SetDigest)> = partitions
                    .iter()
                    .map(|(p, _)| *p)
                    .zip(theirs.iter().copied())
                    .collect();
                report
                    .compared_chunk_digests
                    .push((*peer, partitions_hash(&given)));
            }
            let diff: BTreeSet<u8> = if compared {
                partitions
                    .iter()
                    .zip(&theirs)
                    .filter(|((_, ours), theirs)| ours != *theirs)
                    .map(|((p, _), _)| *p)
                    .collect()
            } else {
                // A peer that cannot compare (an older version, or one that did not answer)
                // is asked about everything, and the round is not clean.
                report.clean = false;
                (0..=u8::MAX).collect()
            };
            // A difference alone does not make the round unclean: what this side must do
            // about it shows below (chunks the peer lacks); what the peer holds beyond this
            // node's set is its side's to push (it marked itself for a round on seeing
            // our digests).
            if !diff.is_empty() {
                differing.insert(*peer, diff);
            }
        }

        // Chunks of differing partitions (and hand-offs), asked about one by one.
        let mut ask: BTreeMap<NodeId, Vec<ChunkId>> = BTreeMap::new();
        let mut holders: BTreeMap<ChunkId, usize> = BTreeMap::new();
        let mut needed: BTreeMap<ChunkId, usize> = BTreeMap::new();
        if !differing.is_empty() {
            let s = self.clone();
            let set = set.to_vec();
            let live = live.clone();
            let differing = differing.clone();
            let listed =
                tokio::task::spawn_blocking(move || s.chunks_to_check(&set, &live, &differing))
                    .await
                    .map_err(|e| StorageError::Internal(e.to_string()))??;
            for (id, want, peers) in listed {
                needed.insert(id, want);
                // This node holds it; peers in sync with it on this partition hold it too.
                holders.insert(id, 1 + (peers.in_sync));
                for peer in peers.to_ask {
                    ask.entry(peer).or_default().push(id);
                }
            }
        }
        for (id, place) in &walk.handoff {
            let rf = place.len();
            needed.insert(*id, rf.min(set.len()));
            holders.entry(*id).or_insert(0);
            for node in place {
                if live.contains(node) {
                    ask.entry(*node).or_default().push(*id);
                }
            }
        }
        for (node, ids) in ask {
            for batch in ids.chunks(HAS_BATCH) {
                let has = match self
                    .call(
                        node,
                        StoreRequest::HasChunks {
                            ids: batch.to_vec(),
                        },
                        CALL_TIMEOUT,
                    )
                    .await
                {
                    Ok(StoreResponse::Has(has)) if has.len() == batch.len() => has,
                    _ => {
                        report.clean = false;
                        unsynced.insert(node);
                        continue;
                    }
                };
                let mut missing = Vec::new();
                for (id, present) in batch.iter().zip(has) {
                    if present {
                        *holders.entry(*id).or_default() += 1;
                    } else {
                        missing.push(*id);
                    }
                }
                if !missing.is_empty() {
                    // Copies made now are checked by the next round.
                    report.clean = false;
                }
                // Several copies at once: one at a time leaves the link idle between round
                // trips.
                let copies: Vec<(ChunkId, bool)> = futures::stream::iter(missing)
                    .map(|id| async move { (id, self.copy_chunk_to(id, node).await) })
                    .buffer_unordered(COPY_PARALLELISM)
                    .collect()
                    .await;
                for (id, copied) in copies {
                    if copied {
                        report.repaired += 1;
                        *holders.entry(id).or_default() += 1;
                    } else {
                        unsynced.insert(node);
                    }
                }
            }
        }
        let ids: Vec<NodeId> = set.iter().map(|c| c.id).collect();
        let synced: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| *id != self.node_id && live.contains(id) && !unsynced.contains(id))
            .collect();
        self.auditor.note_synced(&synced, &ids, round_started_ms);
        report.under_chunks = holders
            .iter()
            .filter(|(id, n)| needed.get(*id).is_some_and(|want| **n < *want))
            .count() as u64;
        Ok(report)
    }

    /// Walks the local chunk index once: per live peer and partition, the digest of the
    /// chunks placed on both this node and the peer; and the hand-offs.
    fn walk_chunks(
        &self,
        set: &[Candidate],
        live: &std::collections::HashSet<NodeId>,
    ) -> Result<ChunkWalk, StorageError> {
        let mut walk = ChunkWalk {
            shared: BTreeMap::new(),
            handoff: Vec::new(),
        };
        for node in set {
            if node.id != self.node_id && live.contains(&node.id) {
                walk.shared
                    .insert(node.id, vec![SetDigest::default(); PARTITIONS]);
            }
        }
        self.for_each_local_chunk(|id| {
            let place = self.chunk_placement(&id, set);
            if !place.contains(&self.node_id) {
                walk.handoff.push((id, place));
                return;
            }
            for node in &place {
                if let Some(digests) = walk.shared.get_mut(node)
                    && let Some(d) = digests.get_mut(usize::from(id.0[0]))
                {
                    d.toggle(&id.0);
                }
            }
        })?;
        Ok(walk)
    }

    /// The digests a peer asked for: per partition, the chunks this node holds that
    /// placement puts on both this node and `peer`. Marks this node for a round when they
    /// differ from the peer's.
    pub(crate) fn answer_chunk_digests(
        &self,
        peer: NodeId,
        asked: &[(u8, SetDigest)],
    ) -> Result<Vec<SetDigest>, StorageError> {
        let set = self.storage_set();
        let mut digests = vec![SetDigest::default(); PARTITIONS];
        self.for_each_local_chunk(|id| {
            let place = self.chunk_placement(&id, &set);
            if place.contains(&self.node_id)
                && place.contains(&peer)
                && let Some(d) = digests.get_mut(usize::from(id.0[0]))
            {
                d.toggle(&id.0);
            }
        })?;
        let answer: Vec<SetDigest> = asked
            .iter()
            .map(|(p, _)| digests.get(usize::from(*p)).copied().unwrap_or_default())
            .collect();
        if asked
            .iter()
            .zip(&answer)
            .any(|((_, theirs), ours)| theirs != ours)
        {
            let mut state = self.entropy_state();
            let settled = state.settled_chunk_digests.get(&peer)
                == Some(&(self.chunks.generation(), partitions_hash(asked)));
            if !settled {
                state.dirty = true;
            }
        }
        Ok(answer)
    }

    /// The chunks of the differing partitions: for each, how many copies it needs, and
    /// which live placement peers are in sync with this node (hold it) or must be asked.
    fn chunks_to_check(
        &self,
        set: &[Candidate],
        live: &std::collections::HashSet<NodeId>,
        differing: &BTreeMap<NodeId, BTreeSet<u8>>,
    ) -> Result<Vec<(ChunkId, usize, PeersOfChunk)>, StorageError> {
        let mut out = Vec::new();
        self.for_each_local_chunk(|id| {
            let rf = self.chunk_rf(&id);
            let place = self.chunk_placement(&id, set);
            if !place.contains(&self.node_id) {
                return;
            }
            let mut peers = PeersOfChunk::default();
            let mut any_differs = false;
            for node in place.iter().filter(|n| **n != self.node_id) {
                if !live.contains(node) {
                    continue;
                }
                match differing.get(node) {
                    Some(parts) if parts.contains(&id.0[0]) => {
                        any_differs = true;
                        peers.to_ask.push(*node);
                    }
                    _ => peers.in_sync += 1,
                }
            }
            if any_differs {
                out.push((id, rf.min(set.len()), peers));
            }
        })?;
        Ok(out)
    }

    /// Calls `visit` with every chunk id in the local index, page by page.
    fn for_each_local_chunk(&self, mut visit: impl FnMut(ChunkId)) -> Result<(), StorageError> {
        let mut cursor: Option<ChunkId> = None;
        loop {
            let page = self.chunks.list(cursor.as_ref(), WALK_PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Some(*last);
            let full = page.len() == WALK_PAGE;
            for (id, _) in page {
                visit(id);
            }
            if !full {
                return Ok(());
            }
        }
    }

    // ---------------------------------------------------------------- metadata

    pub(crate) async fn meta_round(
        self: &Arc<Self>,
        set: &[Candidate],
        live: &std::collections::HashSet<NodeId>,
    ) -> Result<RoundReport, StorageError> {
        let meta = self.meta.clone();
        let digests = crate::blocking(move || meta.bucket_digests()).await?;
        let mut report = RoundReport {
            clean: true,
            ..RoundReport::default()
        };
        // Per live replica, the buckets it should hold with this node's digest of each.
        let mut per_peer: BTreeMap<NodeId, Vec<(BucketRef, SetDigest)>> = BTreeMap::new();
        let mut reach: BTreeMap<BucketRef, (usize, usize)> = BTreeMap::new();
        for ((tenant, name), digest) in digests {
            let rf = self.bucket_rf(&tenant, &name);
            let key = crate::bucket_placement_key(&tenant, &name);
            let bucket = BucketRef { tenant, name };
            let pinned = self.pinned_set(&bucket.tenant, &bucket.name, set);
            let place = self.placement(&key, &pinned, rf);
            let here = usize::from(place.contains(&self.node_id));
            reach.insert(bucket.clone(), (here, rf.min(pinned.len())));
            for node in place {
                if node != self.node_id && live.contains(&node) {
                    per_peer
                        .entry(node)
                        .or_default()
                        .push((bucket.clone(), digest));
                }
            }
        }
        for (peer, buckets) in per_peer {
            for batch in buckets.chunks(MAX_DIGEST_BUCKETS) {
                let theirs = match self
                    .call(
                        peer,
                        StoreRequest::MetaDigests {
                            buckets: batch.to_vec(),
                        },
                        CALL_TIMEOUT,
                    )
                    .await
                {
                    Ok(StoreResponse::Digests(d)) if d.len() == batch.len() => Some(d),
                    _ => None,
                };
                for (i, (bucket, ours)) in batch.iter().enumerate() {
                    let same = theirs
                        .as_ref()
                        .and_then(|t| t.get(i))
                        .is_some_and(|t| t == ours);
                    let in_sync = if same {
                        true
                    } else {
                        report.clean = false;
                        match self.sync_bucket(peer, bucket, theirs.is_some()).await {
                            Ok(stored) => {
                                report.repaired = report.repaired.saturating_add(stored);
                                true
                            }
                            Err(e) => {
                                tracing::debug!(%peer, bucket = %bucket.name, error = %e, "anti-entropy could not bring a replica up to date");
                                false
                            }
                        }
                    };
                    if in_sync && let Some((reached, _)) = reach.get_mut(bucket) {
                        *reached += 1;
                    }
                }
            }
        }
        for (bucket, (reached, needed)) in reach {
            if reached < needed {
                let meta = self.meta.clone();
                let count = crate::blocking(move || {
                    meta.count_live_in_bucket(&bucket.tenant, &bucket.name)
                })
                .await
                .unwrap_or(0);
                report.under_objects = report.under_objects.saturating_add(count);
            }
        }
        Ok(report)
    }

    /// Brings `peer`'s copy of a bucket up to date with this node's: compares leaf digests
    /// (or, with a peer that cannot, takes every leaf) and pushes the entries of the leaves
    /// that differ. Returns how many entries the peer stored.
    async fn sync_bucket(
        self: &Arc<Self>,
        peer: NodeId,
        bucket: &BucketRef,
        peer_compares: bool,
    ) -> Result<u64, StorageError> {
        let ours = {
            let meta = self.meta.clone();
            let (tenant, name) = (bucket.tenant, bucket.name.clone());
            crate::blocking(move || meta.leaf_digests(&tenant, &name)).await?
        };
        let theirs = if peer_compares {
            match self
                .call(
                    peer,
                    StoreRequest::MetaLeafDigests {
                        bucket: bucket.clone(),
                    },
                    CALL_TIMEOUT,
                )
                .await
            {
                Ok(StoreResponse::Digests(d)) if d.len() == LEAVES => Some(d),
                _ => None,
            }
        } else {
            None
        };
        let leaves: Vec<usize> = (0..LEAVES)
            .filter(|&leaf| match &theirs {
                Some(theirs) => theirs.get(leaf) != ours.get(leaf),
                None => true,
            })
            .collect();
        let mut stored = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = {
                let meta = self.meta.clone();
                let (tenant, name) = (bucket.tenant, bucket.name.clone());
                let leaves = leaves.clone();
                let from = after.clone();
                crate::blocking(move || {
                    meta.leaf_entries(&tenant, &name, &leaves, from.as_deref(), MAX_PUT_META_MANY)
                })
                .await?
            };
            let Some(last) = page.last() else { break };
            after = Some(last.path.storage_key());
            let full = page.len() == MAX_PUT_META_MANY;
            stored = stored.saturating_add(self.push_entries(peer, page, peer_compares).await?);
            if !full {
                break;
            }
        }
        Ok(stored)
    }

    /// Sends entries to a peer, in one request if it understands `PutMetaMany`, else one
    /// by one. Returns how many it stored.
    async fn push_entries(
        &self,
        peer: NodeId,
        entries: Vec<ObjectMeta>,
        batched: bool,
    ) -> Result<u64, StorageError> {
        let count_stored = |outcomes: &[Option<MergeOutcome>]| {
            outcomes
                .iter()
                .filter(|o| **o == Some(MergeOutcome::Stored))
                .count() as u64
        };
        if batched {
            let asked = entries.len();
            match self
                .call(
                    peer,
                    StoreRequest::PutMetaMany { metas: entries },
                    CALL_TIMEOUT,
                )
                .await?
            {
                StoreResponse::MetaMergedMany(outcomes) if outcomes.len() == asked => {
                    let stored = count_stored(&outcomes);
                    for _ in 0..stored {
                        self.metrics.repairs.inc();
                    }
                    return Ok(stored);
                }
                other => {
                    return Err(StorageError::Internal(format!(
                        "unexpected answer to PutMetaMany: {}",
                        answer_name(&other)
                    )));
                }
            }
        }
        let mut stored = 0u64;
        for meta in entries {
            match self
                .call(peer, StoreRequest::PutMeta { meta }, CALL_TIMEOUT)
                .await?
            {
                StoreResponse::MetaMerged {
                    outcome: MergeOutcome::Stored,
                }
                | StoreResponse::MetaStored { changed: true } => {
                    stored += 1;
                    self.metrics.repairs.inc();
                }
                _ => {}
            }
        }
        Ok(stored)
    }

    /// The digests a peer asked for, per bucket; marks this node for a round when they
    /// differ from the peer's (it may hold entries the peer lacks).
    pub(crate) fn answer_meta_digests(
        &self,
        asked: &[(BucketRef, SetDigest)],
    ) -> Result<Vec<SetDigest>, StorageError> {
        let mut answer = Vec::with_capacity(asked.len());
        for (bucket, _) in asked {
            answer.push(self.meta.bucket_digest(&bucket.tenant, &bucket.name)?);
        }
        if asked
            .iter()
            .zip(&answer)
            .any(|((_, theirs), ours)| theirs != ours)
        {
            self.mark_entropy_dirty();
        }
        Ok(answer)
    }
}

/// Peers of one chunk in a round: how many are known to hold it, which must be asked.
#[derive(Debug, Default)]
struct PeersOfChunk {
    in_sync: usize,
    to_ask: Vec<NodeId>,
}

/// A hash of a peer's chunk digests, partition by partition.
fn partitions_hash(digests: &[(u8, SetDigest)]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for (partition, digest) in digests {
        hasher.update(&[*partition]);
        hasher.update(&digest.0);
    }
    *hasher.finalize().as_bytes()
}

fn membership_hash(set: &[Candidate], live: &std::collections::HashSet<NodeId>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"xnode anti-entropy membership v1\n");
    for candidate in set {
        hasher.update(&candidate.id.to_bytes());
    }
    hasher.update(b"\nlive\n");
    let mut live: Vec<&NodeId> = live.iter().collect();
    live.sort();
    for node in live {
        hasher.update(&node.to_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn answer_name(response: &StoreResponse) -> &'static str {
    match response {
        StoreResponse::Error(_) => "an error",
        StoreResponse::MetaMergedMany(_) => "a wrong number of outcomes",
        _ => "another kind of answer",
    }
}
