//! Storage audits and the reputation they feed.
//!
//! **Challenges.** Every node challenges its peers over chunks placement says they must
//! hold. It picks a chunk it holds itself whose placement (for the chunk's replication
//! factor, over the storage set) includes the peer, a random slice of 1 to 16 KiB inside
//! it and a nonce, and asks the peer for the slice's Bao proof
//! ([`xnode_store::prove_slice`]). A proof that verifies against the chunk id passes; an
//! answer "not held", a wrong or oversized proof, an error or no answer within
//! `audit_timeout` fails. Each verdict is signed by the auditor as the ledger's
//! [`AuditResult`] (domain-separated, versioned signing text) and kept in this node's log
//! for the epoch it was reached in. Chunks younger than `audit_settle`, chunks already
//! audited on that peer this epoch, and every chunk while the storage set changed more
//! recently than `audit_settle`, are skipped: repair may not have placed them yet.
//!
//! **Given before challenged.** Repair can take far longer than `audit_settle` (a node
//! that joined or inherited a departed node's share receives it at the bounded background
//! copy rate), so time alone does not say that a peer was given a chunk. An auditor only
//! challenges chunks it holds, and it is itself one of their repairers: its anti-entropy
//! round compares digests with each live peer and copies it the chunks placement gives it
//! and it lacks. The auditor notes, per peer, the start of the last chunk round that
//! completed with it (every question answered, every copy arrived) and the storage set of
//! that round ([`PeerSync`]). It challenges a peer on a chunk only if such a round ran
//! with the current set and began after the chunk was written here ([`may_challenge`]):
//! the peer then holds the chunk, or said it did. This rests on the auditor's own record,
//! not on the peer's word, so a peer cannot dodge audits by never acknowledging: one that
//! makes the rounds fail (refuses digests, questions or copies) is challenged anyway once
//! the set and the chunk are `audit_unsynced_after` old (24 h).
//!
//! **Rate.** A node that silently lost a share `p` of its chunks fails a challenge on a
//! uniformly chosen chunk with probability `p`, so `n` challenges miss it with probability
//! `(1 - p)^n`. Catching it with confidence `c` within `audit_window` needs
//! `n = ceil(ln(1 - c) / ln(1 - p))` challenges per node per window
//! ([`challenges_per_window`]; 688 for 1 % and 99.9 %). With `A` peers in the storage set,
//! each node challenges each peer `ceil(n / A)` times per window, in round robin, so each
//! node issues `A · ceil(n / A)` challenges per window, one every
//! [`audit_interval`], and every node is challenged at least `n` times by `A` distinct
//! auditors. The derivation is in `docs/decisions/2026-11-26-storage-audits-by-slice-proofs.md`.
//!
//! **Reputation.** Every `audit_collect_interval`, each node asks every storage node for
//! the results it signed in each of the last `audit_reputation_epochs` closed epochs
//! (once per node and epoch), keeps those whose signature verifies and whose auditor is
//! the node that served them, and computes every node's score with the ledger's rules
//! ([`tally_audits`] then [`ReputationState::advance`], epoch by epoch, from the initial
//! state), so one hostile auditor is trimmed and a node needs three distinct auditors to
//! be scored at all. Nodes below `audit_min_score_ppm` leave the storage set that
//! placement uses, unless that would leave fewer nodes than the replication factor. A
//! node's exclusion ends when its failed audits leave the window.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};
use xnode_ledger::{
    AUDIT_VERSION, AuditBody, AuditResult, Epoch, ReputationParams, ReputationState, VerifiedAudit,
    tally_audits,
};
use xnode_store::{ChunkId, ChunkStore, MAX_AUDIT_SLICE, MIN_AUDIT_SLICE, verify_slice};
use xnode_types::{NodeId, SecretKey, lock, unix_ms};
use xnode_worker::{Interval, Worker, WorkerError, periodic};

use crate::proto::{MAX_AUDIT_LOG, StoreRequest, StoreResponse};
use crate::{Storage, StorageConfig, StorageError};

/// Random starting points tried when looking for a chunk to audit on a peer.
const PICK_TRIES: usize = 8;
/// Chunk index entries read at each starting point.
const PICK_PAGE: usize = 32;
/// Most challenges one tick of the audit worker issues when it fell behind.
const MAX_CHALLENGES_PER_TICK: u32 = 4;
/// Audit logs fetched at once while collecting.
const COLLECT_CONCURRENCY: usize = 8;

/// Challenges per audited node per window that catch a node which lost `loss_ppm` of its
/// chunks with probability `confidence_ppm`: `ceil(ln(1 - c) / ln(1 - p))`, at least one.
///
/// Floating point is fine here: the rate is a local choice of each auditor, not a value
/// nodes must agree on bit for bit.
pub fn challenges_per_window(loss_ppm: u32, confidence_ppm: u32) -> u64 {
    let loss = f64::from(loss_ppm.clamp(1, 999_999)) / 1e6;
    let miss = 1.0 - f64::from(confidence_ppm.min(999_999)) / 1e6;
    let needed = (miss.ln() / (1.0 - loss).ln()).ceil();
    if needed.is_finite() && needed >= 1.0 {
        // Bounded above by ln(1e-6) / ln(1 - 1e-6), about 1.4e7.
        needed as u64
    } else {
        1
    }
}

/// How often an auditor with `auditees` peers issues one challenge so that each peer gets
/// `ceil(per_node / auditees)` challenges per window from it; `None` without peers.
pub fn audit_interval(window: Duration, per_node: u64, auditees: u64) -> Option<Duration> {
    if auditees == 0 {
        return None;
    }
    let per_pair = per_node.max(1).div_ceil(auditees);
    let per_auditor = per_pair.saturating_mul(auditees);
    let nanos = window.as_nanos() / u128::from(per_auditor);
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1),
    ))
}

/// The epoch a time falls in.
pub(crate) fn epoch_of(at_ms: u64, epoch: Duration) -> u64 {
    let len = u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX).max(1);
    at_ms / len
}

/// One collected log: (epoch, auditor), and its results if the epoch was closed.
type CollectedLog = ((u64, NodeId), Option<Vec<AuditResult>>);

/// One node's reputation as this node computes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReputation {
    pub node: NodeId,
    /// The ledger's score, in ppm (1,000,000 for a node never failed).
    pub score_ppm: u64,
    /// Audits of the node that counted over the window (after the ledger's caps and
    /// trimming), passed and failed.
    pub counted_passes: u64,
    pub counted_failures: u64,
    /// The most distinct auditors whose results on the node one epoch of the window had.
    pub max_auditors: u32,
    /// Whether placement leaves the node out (score below `audit_min_score_ppm`).
    pub excluded: bool,
}

/// Audit figures of this node, for the storage health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Challenges this node issued that passed, and that failed.
    pub passed: u64,
    pub failed: u64,
    /// Challenges this node answered for peers.
    pub answered: u64,
    /// Ticks that found no chunk to audit on the chosen peer.
    pub nothing_to_audit: u64,
}

/// The auditor's state: its key, its log and what it collected.
pub(crate) struct Auditor {
    key: SecretKey,
    network: String,
    state: std::sync::Mutex<AuditState>,
    view: std::sync::Mutex<ReputationView>,
}

#[derive(Default)]
struct AuditState {
    /// This node's signed results, by epoch.
    log: BTreeMap<u64, Vec<AuditResult>>,
    /// (peer, chunk) pairs already audited in `audited_epoch`.
    audited: HashSet<(NodeId, ChunkId)>,
    audited_epoch: u64,
    /// Round-robin position over the peers.
    cursor: usize,
    /// When the next challenge is due (ms).
    next_due_ms: u64,
    /// The storage set last seen, and when it last changed.
    set: Vec<NodeId>,
    set_changed_ms: u64,
    /// Per peer, the last repair round of this node that completed with it.
    synced: BTreeMap<NodeId, PeerSync>,
    counts: AuditCounts,
}

/// The last anti-entropy chunk round of this node that completed with one peer: every
/// digest and `HasChunks` question answered, every copy of a chunk it lacked arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerSync {
    /// When the round began (before it walked this node's chunks), unix ms.
    pub(crate) round_started_ms: u64,
    /// The storage set the round placed chunks over.
    pub(crate) set: Vec<NodeId>,
}

/// The times [`may_challenge`] weighs, in unix ms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChallengeClock {
    pub(crate) now: u64,
    /// `audit_settle`.
    pub(crate) settle_ms: u64,
    /// `audit_unsynced_after`.
    pub(crate) unsynced_after_ms: u64,
    /// When the storage set last changed in this node's view.
    pub(crate) set_changed_ms: u64,
}

/// Whether an auditor may challenge a peer on a chunk written here at `written_ms`: the
/// chunk is older than `audit_settle`, and either this node's repair completed a round
/// with the peer over the current `set` that began after the chunk was written (so the
/// peer was given it, or said it held it), or the set and the chunk are both older than
/// `audit_unsynced_after` (a peer that makes every round fail is still audited).
pub(crate) fn may_challenge(
    written_ms: u64,
    clock: ChallengeClock,
    synced: Option<&PeerSync>,
    set: &[NodeId],
) -> bool {
    let age = clock.now.saturating_sub(written_ms);
    if age < clock.settle_ms {
        return false;
    }
    let given = synced.is_some_and(|s| s.set == set && written_ms <= s.round_started_ms);
    let overdue = age >= clock.unsynced_after_ms
        && clock.now.saturating_sub(clock.set_changed_ms) >= clock.unsynced_after_ms;
    given || overdue
}

#[derive(Default)]
struct ReputationView {
    /// Verified results by epoch.
    collected: BTreeMap<u64, Vec<VerifiedAudit>>,
    /// (epoch, auditor) logs already collected.
    collected_from: BTreeSet<(u64, NodeId)>,
    scores: BTreeMap<NodeId, NodeReputation>,
    low: BTreeSet<NodeId>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Auditor {
    pub(crate) fn new(key: SecretKey, network: String) -> Self {
        Self {
            key,
            network,
            state: Default::default(),
            view: Default::default(),
        }
    }

    /// Nodes placement leaves out for their low reputation.
    pub(crate) fn low_nodes(&self) -> BTreeSet<NodeId> {
        lock(&self.view).low.clone()
    }

    /// Notes that a chunk round begun at `round_started_ms` over `set` completed with
    /// each of `peers` (see [`PeerSync`]). Peers that left the set are forgotten.
    pub(crate) fn note_synced(&self, peers: &[NodeId], set: &[NodeId], round_started_ms: u64) {
        let mut state = lock(&self.state);
        state.synced.retain(|peer, _| set.contains(peer));
        for peer in peers {
            let newer = state
                .synced
                .get(peer)
                .is_none_or(|s| s.round_started_ms <= round_started_ms);
            if newer {
                state.synced.insert(
                    *peer,
                    PeerSync {
                        round_started_ms,
                        set: set.to_vec(),
                    },
                );
            }
        }
    }

    /// Signs a verdict and keeps it in the log of the epoch it was reached in.
    fn record(
        &self,
        config: &StorageConfig,
        metrics: &xnode_store::StoreMetrics,
        auditor: NodeId,
        peer: NodeId,
        chunk: ChunkId,
        passed: bool,
    ) {
        let at_ms = unix_ms();
        let epoch = epoch_of(at_ms, config.audit_epoch);
        let result = AuditBody {
            v: AUDIT_VERSION,
            network: self.network.clone(),
            epoch: Epoch(epoch),
            auditor,
            auditor_key: self.key.public(),
            audited: peer,
            chunk: chunk.0,
            passed,
            at_ms,
        }
        .sign(&self.key);
        let mut state = lock(&self.state);
        if passed {
            state.counts.passed += 1;
            metrics.audits_passed.inc();
        } else {
            state.counts.failed += 1;
            metrics.audits_failed.inc();
        }
        let entries = state.log.entry(epoch).or_default();
        if entries.len() < MAX_AUDIT_LOG {
            entries.push(result);
        }
        // Keep the epochs collectors may still ask for.
        let keep_from = epoch.saturating_sub(u64::from(config.audit_reputation_epochs) + 1);
        state.log = state.log.split_off(&keep_from);
    }
}

/// Picks a chunk this store holds that `wanted` accepts, starting at random ids (ids are
/// uniform hashes, so the first match after a random point is close to a uniform pick).
fn pick_chunk(
    chunks: &ChunkStore,
    wanted: impl Fn(&ChunkId, u64) -> bool,
) -> Result<Option<(ChunkId, u64)>, xnode_store::StoreError> {
    for _ in 0..PICK_TRIES {
        let start = ChunkId(rand::thread_rng().r#gen());
        let mut page = chunks.list(Some(&start), PICK_PAGE)?;
        if page.is_empty() {
            page = chunks.list(None, PICK_PAGE)?;
        }
        if let Some(found) = page.into_iter().find(|(id, size)| wanted(id, *size)) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// A random slice of a `size`-byte chunk that [`xnode_store::check_slice`] accepts.
fn random_slice(size: u64) -> (u64, u32) {
    let mut rng = rand::thread_rng();
    let max = u64::from(MAX_AUDIT_SLICE).min(size).max(1);
    let min = u64::from(MIN_AUDIT_SLICE).min(max);
    let len = rng.gen_range(min..=max);
    let offset = rng.gen_range(0..=size.saturating_sub(len));
    (offset, u32::try_from(len).unwrap_or(MAX_AUDIT_SLICE))
}

impl Storage {
    /// This node's audit figures.
    pub fn audit_counts(&self) -> AuditCounts {
        lock(&self.auditor.state).counts.clone()
    }

    /// Every node's reputation as this node last computed it, by node id.
    pub fn reputation(&self) -> Vec<NodeReputation> {
        lock(&self.auditor.view).scores.values().cloned().collect()
    }

    /// Answers a challenge: the Bao proof of the slice, or "not held". A chunk garbage
    /// collection trashed is restored, as for a read: the bytes are still here.
    pub(crate) async fn answer_audit(
        &self,
        id: ChunkId,
        offset: u64,
        len: u32,
        nonce: [u8; 16],
    ) -> Result<StoreResponse, StorageError> {
        let chunks = self.chunks.clone();
        let trash = self.trash.clone();
        let read = crate::blocking(move || match chunks.get(&id) {
            Ok(Some(data)) => Ok(Some(data)),
            Ok(None) => trash.restore(&chunks, &id),
            // A corrupt copy is not held.
            Err(xnode_store::StoreError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        lock(&self.auditor.state).counts.answered += 1;
        self.metrics.audits_answered.inc();
        let Some(data) = read else {
            return Ok(StoreResponse::AuditNotHeld { nonce });
        };
        let proof =
            tokio::task::spawn_blocking(move || xnode_store::prove_slice(&data, offset, len))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))?
                .map_err(|e| StorageError::BadRequest(e.to_string()))?;
        Ok(StoreResponse::AuditProof { nonce, proof })
    }

    /// The audit verdicts this node signed in `epoch` (of `storage.audit_epoch`), for its
    /// settlement evidence bundle. The log keeps the epochs collectors may still ask for.
    pub fn audit_log(&self, epoch: u64) -> Vec<AuditResult> {
        lock(&self.auditor.state)
            .log
            .get(&epoch)
            .cloned()
            .unwrap_or_default()
    }

    /// Answers a collector: the results this node signed in `epoch`.
    pub(crate) fn answer_audit_log(&self, epoch: u64) -> StoreResponse {
        let current = epoch_of(unix_ms(), self.config.audit_epoch);
        let results = lock(&self.auditor.state)
            .log
            .get(&epoch)
            .cloned()
            .unwrap_or_default();
        StoreResponse::AuditLog {
            closed: epoch < current,
            results,
        }
    }

    /// One tick of the audit worker: issues the challenges that are due. Returns how many.
    pub(crate) async fn audit_tick(self: &Arc<Self>) -> Result<u64, StorageError> {
        let now = unix_ms();
        let set = self.storage_set();
        let ids: Vec<NodeId> = set.iter().map(|c| c.id).collect();
        let live = self.live_nodes();
        let peers: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| *id != self.node_id && live.contains(id))
            .collect();
        let per_node = challenges_per_window(
            self.config.audit_detect_loss_ppm,
            self.config.audit_confidence_ppm,
        );
        let auditees = u64::try_from(ids.len().saturating_sub(1)).unwrap_or(u64::MAX);
        let Some(interval) = audit_interval(self.config.audit_window, per_node, auditees) else {
            return Ok(0);
        };
        let interval_ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let settle_ms = u64::try_from(self.config.audit_settle.as_millis()).unwrap_or(u64::MAX);
        let unsynced_after_ms =
            u64::try_from(self.config.audit_unsynced_after.as_millis()).unwrap_or(u64::MAX);
        let epoch = epoch_of(now, self.config.audit_epoch);
        let due = {
            let mut state = lock(&self.auditor.state);
            if state.set != ids {
                state.set = ids.clone();
                state.set_changed_ms = now;
            }
            if state.audited_epoch != epoch {
                state.audited.clear();
                state.audited_epoch = epoch;
            }
            if state.next_due_ms == 0
                || now.saturating_sub(state.next_due_ms) > interval_ms.saturating_mul(4)
            {
                // First tick, or far behind (the node was busy or asleep): start afresh
                // rather than firing a burst.
                state.next_due_ms = now;
            }
            let mut due = 0u32;
            while state.next_due_ms <= now && due < MAX_CHALLENGES_PER_TICK {
                state.next_due_ms = state.next_due_ms.saturating_add(interval_ms);
                due += 1;
            }
            let clock = ChallengeClock {
                now,
                settle_ms,
                unsynced_after_ms,
                set_changed_ms: state.set_changed_ms,
            };
            if peers.is_empty() || now.saturating_sub(state.set_changed_ms) < settle_ms {
                (0, clock)
            } else {
                (due, clock)
            }
        };
        let (due, clock) = due;
        let mut issued = 0;
        for _ in 0..due {
            let peer = {
                let mut state = lock(&self.auditor.state);
                state.cursor = state.cursor.wrapping_add(1);
                peers[state.cursor % peers.len()]
            };
            if self.challenge_peer(peer, &set, epoch, clock).await? {
                issued += 1;
            }
        }
        Ok(issued)
    }

    /// Challenges `peer` on one chunk it must hold; returns whether a challenge was issued.
    async fn challenge_peer(
        self: &Arc<Self>,
        peer: NodeId,
        set: &[xnode_store::Candidate],
        epoch: u64,
        clock: ChallengeClock,
    ) -> Result<bool, StorageError> {
        let (already, synced): (HashSet<ChunkId>, Option<PeerSync>) = {
            let state = lock(&self.auditor.state);
            let already = state
                .audited
                .iter()
                .filter(|(node, _)| *node == peer)
                .map(|(_, chunk)| *chunk)
                .collect();
            (already, state.synced.get(&peer).cloned())
        };
        let ids: Vec<NodeId> = set.iter().map(|c| c.id).collect();
        let chunks = self.chunks.clone();
        let storage = self.clone();
        let set = set.to_vec();
        let picked = crate::blocking(move || {
            pick_chunk(&chunks, |id, size| {
                size > 0
                    && !already.contains(id)
                    && storage.chunk_placement(id, &set).contains(&peer)
                    && chunks
                        .written_ms(id)
                        .is_some_and(|written| may_challenge(written, clock, synced.as_ref(), &ids))
            })
        })
        .await?;
        let Some((id, size)) = picked else {
            lock(&self.auditor.state).counts.nothing_to_audit += 1;
            return Ok(false);
        };
        lock(&self.auditor.state).audited.insert((peer, id));
        let (offset, len) = random_slice(size);
        let nonce: [u8; 16] = rand::thread_rng().r#gen();
        let request = StoreRequest::AuditChunk {
            id,
            offset,
            len,
            nonce,
        };
        let timeout = self.config.audit_timeout;
        let answer = tokio::time::timeout(timeout, self.call(peer, request, timeout)).await;
        let passed = match answer {
            Ok(Ok(StoreResponse::AuditProof {
                nonce: echoed,
                proof,
            })) if echoed == nonce => verify_slice(&id, offset, len, &proof).is_ok(),
            _ => false,
        };
        if !passed {
            tracing::info!(%peer, chunk = %id, epoch, "storage audit failed");
        }
        self.auditor
            .record(&self.config, &self.metrics, self.node_id, peer, id, passed);
        Ok(true)
    }

    /// Collects the closed epochs' audit logs not collected yet from every admitted
    /// storage node and recomputes reputation. Returns the logs collected.
    pub(crate) async fn collect_audits(self: &Arc<Self>) -> Result<u64, StorageError> {
        let current = epoch_of(unix_ms(), self.config.audit_epoch);
        let first = current.saturating_sub(u64::from(self.config.audit_reputation_epochs));
        let nodes: Vec<NodeId> = self.admitted_storage_set().iter().map(|c| c.id).collect();
        let wanted: Vec<(u64, NodeId)> = {
            let mut view = lock(&self.auditor.view);
            view.collected = view.collected.split_off(&first);
            view.collected_from.retain(|(epoch, _)| *epoch >= first);
            (first..current)
                .flat_map(|epoch| nodes.iter().map(move |node| (epoch, *node)))
                .filter(|key| !view.collected_from.contains(key))
                .collect()
        };
        let timeout = self.config.audit_timeout;
        let answers: Vec<CollectedLog> = futures::stream::iter(wanted)
            .map(|(epoch, node)| async move {
                let answer = self
                    .call(node, StoreRequest::AuditLog { epoch }, timeout)
                    .await;
                let results = match answer {
                    Ok(StoreResponse::AuditLog {
                        closed: true,
                        results,
                    }) => Some(results),
                    _ => None,
                };
                ((epoch, node), results)
            })
            .buffer_unordered(COLLECT_CONCURRENCY)
            .collect()
            .await;
        let mut collected = 0;
        {
            let mut view = lock(&self.auditor.view);
            for ((epoch, node), results) in answers {
                let Some(results) = results else { continue };
                // Only the node's own results, signed, for the epoch asked: a node cannot
                // relay (or invent) another auditor's verdicts.
                let verified: Vec<VerifiedAudit> = results
                    .iter()
                    .take(MAX_AUDIT_LOG)
                    .filter(|r| r.body.auditor == node && r.body.epoch == Epoch(epoch))
                    .filter_map(|r| r.verify(&self.auditor.network).ok())
                    .collect();
                view.collected.entry(epoch).or_default().extend(verified);
                view.collected_from.insert((epoch, node));
                collected += 1;
            }
        }
        self.recompute_reputation(&nodes, first, current);
        Ok(collected)
    }

    /// Every node's score from the initial state over the closed epochs `first..current`.
    fn recompute_reputation(&self, nodes: &[NodeId], first: u64, current: u64) {
        let params = ReputationParams::default();
        let mut view = lock(&self.auditor.view);
        let mut state = ReputationState::default();
        let mut counted: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
        let mut max_auditors: BTreeMap<NodeId, u32> = BTreeMap::new();
        for epoch in first..current {
            let audits = view.collected.get(&epoch).map(Vec::as_slice).unwrap_or(&[]);
            let (tallies, _) = tally_audits(audits, Epoch(epoch), &self.auditor.network, &params);
            for (node, tally) in &tallies {
                let entry = counted.entry(*node).or_default();
                entry.0 = entry.0.saturating_add(tally.counted_passes);
                entry.1 = entry.1.saturating_add(tally.counted_failures);
            }
            for (node, tally) in &tallies {
                let most = max_auditors.entry(*node).or_default();
                *most = (*most).max(tally.distinct_auditors);
            }
            state = state.advance(&tallies, &params);
        }
        let min = self.config.audit_min_score_ppm;
        let scores: BTreeMap<NodeId, NodeReputation> = nodes
            .iter()
            .map(|node| {
                let score_ppm = state.get(node, &params).score_ppm();
                let (counted_passes, counted_failures) =
                    counted.get(node).copied().unwrap_or_default();
                let reputation = NodeReputation {
                    node: *node,
                    score_ppm,
                    counted_passes,
                    counted_failures,
                    max_auditors: max_auditors.get(node).copied().unwrap_or(0),
                    excluded: self.config.audit_enabled && score_ppm < min,
                };
                (*node, reputation)
            })
            .collect();
        let low: BTreeSet<NodeId> = scores
            .values()
            .filter(|r| r.excluded)
            .map(|r| r.node)
            .collect();
        if low != view.low {
            tracing::warn!(
                nodes = ?low,
                "nodes below the reputation threshold are left out of placement"
            );
        }
        view.scores = scores;
        view.low = low;
    }

    /// The audit workers: `storage-audit` issues challenges, `storage-reputation` collects
    /// results and recomputes reputation. None when audits are disabled.
    pub(crate) fn audit_workers(self: &Arc<Self>) -> Vec<Box<dyn Worker>> {
        if !self.config.audit_enabled {
            return Vec::new();
        }
        let per_node = challenges_per_window(
            self.config.audit_detect_loss_ppm,
            self.config.audit_confidence_ppm,
        );
        // The tick only checks whether a challenge is due; with many peers the interval is
        // shorter than a second, so the tick follows it down.
        let tick = audit_interval(self.config.audit_window, per_node, 1)
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let s = self.clone();
        let audit = periodic(
            "storage-audit",
            Interval::AfterFirstPeriod(tick),
            move || {
                let s = s.clone();
                async move {
                    s.audit_tick()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))
                }
            },
        );
        let s = self.clone();
        let collect = periodic(
            "storage-reputation",
            Interval::AfterFirstPeriod(self.config.audit_collect_interval),
            move || {
                let s = s.clone();
                async move {
                    s.collect_audits()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))
                }
            },
        );
        vec![Box::new(audit), Box::new(collect)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(seed: u8) -> NodeId {
        SecretKey::from_seed(&[seed; 32]).unwrap().node_id()
    }

    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;

    /// Default settings: `audit_settle` 10 min, `audit_unsynced_after` 24 h.
    fn clock(now: u64, set_changed_ms: u64) -> ChallengeClock {
        ChallengeClock {
            now,
            settle_ms: 10 * MIN,
            unsynced_after_ms: 24 * HOUR,
            set_changed_ms,
        }
    }

    #[test]
    fn an_honest_new_replica_is_not_challenged_before_repair_gave_it_the_chunk() {
        let (a, p, q) = (node(1), node(2), node(3));
        let before = vec![a, q];
        let after = vec![a, p, q];
        let auditor = Auditor::new(SecretKey::from_seed(&[1; 32]).unwrap(), "n".into());
        // The chunk was written here at 0; P joined at 1 h and became one of its replicas.
        // A round over the old set completed with Q, not with P (P was not in it).
        auditor.note_synced(&[q], &before, 30 * MIN);
        let synced = |peer| lock(&auditor.state).synced.get(&peer).cloned();
        // Three hours later repair is still copying to P: the storage set and the chunk
        // are well past `audit_settle` (the old rule challenged P here and failed it),
        // but no round over the new set completed with P, so P is not challenged.
        let now = 4 * HOUR;
        assert!(!may_challenge(
            0,
            clock(now, HOUR),
            synced(p).as_ref(),
            &after
        ));
        // Q's round ran over the old set: under the new one Q's chunks may have moved.
        assert!(!may_challenge(
            0,
            clock(now, HOUR),
            synced(q).as_ref(),
            &after
        ));
        // A round begun at 5 h over the new set completed with P (every copy arrived):
        // P is challenged on the chunk from then on...
        auditor.note_synced(&[p], &after, 5 * HOUR);
        let now = 5 * HOUR + MIN;
        assert!(may_challenge(
            0,
            clock(now, HOUR),
            synced(p).as_ref(),
            &after
        ));
        // ... but not on a chunk written here after that round began, until another
        // round covers it.
        let late = 5 * HOUR + 10;
        assert!(!may_challenge(
            late,
            clock(6 * HOUR, HOUR),
            synced(p).as_ref(),
            &after
        ));
        auditor.note_synced(&[p], &after, 6 * HOUR);
        assert!(may_challenge(
            late,
            clock(6 * HOUR + MIN, HOUR),
            synced(p).as_ref(),
            &after
        ));
        // An older round never overwrites a newer one; a peer that left is forgotten.
        auditor.note_synced(&[p], &after, 2 * HOUR);
        assert_eq!(synced(p).unwrap().round_started_ms, 6 * HOUR);
        auditor.note_synced(&[], &before, 7 * HOUR);
        assert!(synced(p).is_none());
    }

    #[test]
    fn a_peer_that_never_completes_a_round_is_still_challenged_after_the_bound() {
        let (a, p) = (node(1), node(2));
        let set = vec![a, p];
        // P refuses every digest, question or copy: no round ever completes with it.
        // It is not challenged within a day of the set change or of the chunk's write...
        assert!(!may_challenge(0, clock(23 * HOUR, 0), None, &set));
        assert!(!may_challenge(2 * HOUR, clock(25 * HOUR, 0), None, &set));
        assert!(!may_challenge(0, clock(25 * HOUR, 2 * HOUR), None, &set));
        // ... and is from then on, on every chunk at least that old.
        assert!(may_challenge(0, clock(24 * HOUR, 0), None, &set));
        assert!(may_challenge(HOUR, clock(30 * HOUR, 2 * HOUR), None, &set));
        // A round over another set does not count as one over this set.
        let stale = PeerSync {
            round_started_ms: 20 * HOUR,
            set: vec![p],
        };
        assert!(!may_challenge(0, clock(21 * HOUR, 0), Some(&stale), &set));
        // A fresh chunk is never challenged within `audit_settle`, synced or not.
        let fresh = PeerSync {
            round_started_ms: 30 * HOUR,
            set: set.clone(),
        };
        assert!(!may_challenge(
            30 * HOUR - MIN,
            clock(30 * HOUR + MIN, 0),
            Some(&fresh),
            &set
        ));
    }

    #[test]
    fn the_rate_formula_meets_the_detection_target() {
        // 1 % loss caught at 99.9 % needs 688 challenges: 0.99^688 < 0.001 < 0.99^687.
        let n = challenges_per_window(10_000, 999_000);
        assert_eq!(n, 688);
        assert!(0.99f64.powi(688) < 0.001);
        assert!(0.99f64.powi(687) > 0.001);
        // Coarser targets need fewer; degenerate ones stay finite and positive.
        assert_eq!(challenges_per_window(100_000, 999_000), 66);
        assert_eq!(challenges_per_window(10_000, 0), 1);
        assert!(challenges_per_window(0, 999_999) >= 1);
        assert!(challenges_per_window(1_000_000, 1_000_000) >= 1);
    }

    #[test]
    fn every_peer_gets_its_share_of_the_challenges() {
        let day = Duration::from_secs(24 * 3600);
        // Four peers: 172 each per day, 688 in all, one every 125.58 s.
        let interval = audit_interval(day, 688, 4).unwrap();
        assert_eq!(interval.as_millis(), 125_581);
        // Each peer gets at least its share, however many auditors there are.
        for peers in 1..50u64 {
            let interval = audit_interval(day, 688, peers).unwrap();
            let per_auditor = day.as_nanos() / interval.as_nanos();
            let per_peer = per_auditor / u128::from(peers);
            assert!(per_peer * u128::from(peers) >= 688, "{peers} peers");
        }
        assert_eq!(audit_interval(day, 688, 0), None);
    }

    #[test]
    fn random_slices_are_valid_audit_slices() {
        for size in [1u64, 100, 1024, 1500, 16 * 1024, 1 << 20] {
            for _ in 0..50 {
                let (offset, len) = random_slice(size);
                assert!(
                    xnode_store::check_slice(offset, len, size).is_ok(),
                    "{size}: {offset}+{len}"
                );
            }
        }
    }

    #[test]
    fn epochs_follow_the_clock() {
        let hour = Duration::from_secs(3600);
        assert_eq!(epoch_of(0, hour), 0);
        assert_eq!(epoch_of(3_599_999, hour), 0);
        assert_eq!(epoch_of(3_600_000, hour), 1);
        assert_eq!(epoch_of(5, Duration::ZERO), 5);
    }
}
