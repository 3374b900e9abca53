//! Listings: a bucket's live objects in key order, merged from a read quorum of its
//! metadata replicas.
//!
//! **Range listings** (store protocol version 5): every metadata replica of the bucket is
//! asked for a range of its table, tombstones included (`MetaRange`), and the first `R`
//! answers that pass their checks are merged (see [`crate::range`]): per key the newest
//! version wins and a tombstone hides its key, so a page of 1,000 keys costs one call per
//! replica, not a quorum read per key. What the merge finds a replica lacking is pushed to
//! it in the background (read repair).
//!
//! **Rounds agreed by digests** (store requests format 13; the encoded read of an edge
//! without a replica, 14): while the replicas hold the
//! same range, the merge is skipped. An edge that is a replica reads the page from its own
//! table and asks the others only for a digest of that range ([`Storage::agreed_round`]);
//! an edge that is not asks one replica for the entries and the others for the digest
//! ([`Storage::vouched_round`]). A differing digest sends the round to the full merge.
//!
//! **Listings by key reads** (before version 5, still used when replicas cannot answer
//! ranges): replicas list their live entries, the answers are merged, and every listed
//! key is confirmed by a quorum read, which sees tombstones the live-only answers cannot.
//! A replica's answer covers the key range up to its last entry when it says it was cut
//! (`truncated`); keys past the smallest such point could be missing from one answer and
//! present in another, so a round keeps only the keys up to it, and the next round goes on
//! from there. Without that cut, a replica that holds many keys (or junk a peer planted)
//! would make an acknowledged key fall between two pages and never be listed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use xnode_store::{
    Candidate, MAX_META_BYTES, ObjectMeta, ObjectPath, RangeDigest, is_internal_key,
};
use xnode_types::{NodeId, PublicKeyBytes, unix_ms};

use crate::proto::{BucketRef, MAX_LIST_LIMIT, MAX_PUT_META_MANY, StoreRequest, StoreResponse};
use crate::range::{
    CheckedRange, MergedRange, Next, RangeQuestion, absorb, check_range, classify, merge_ranges,
};
use crate::{MAX_VERSION_AHEAD_MS, META_TIMEOUT, Storage, StorageError};

/// Entries each replica is asked for per round at least: a small page (one key, to see
/// whether a bucket is empty) still reads past a run of tombstones in one round.
const MIN_RANGE_ENTRIES: usize = 256;

/// Rounds one listing may take before it gives up (each round moves the cursor forward).
const MAX_LIST_ROUNDS: usize = 16;
/// Listed keys confirmed by quorum reads at once.
const CONFIRMATIONS_IN_FLIGHT: usize = 16;

/// What was asked of every replica in one round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListQuestion<'a> {
    pub tenant: &'a PublicKeyBytes,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub after: Option<&'a str>,
    pub limit: usize,
}

/// One replica's answer, checked against the question.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CheckedAnswer {
    /// Entries that answer the question, in key order, at most `limit`.
    pub entries: Vec<ObjectMeta>,
    /// The answer may hold only part of the range: it covers keys up to its last entry.
    pub truncated: bool,
    /// Entries that did not answer the question (another tenant, bucket or prefix, before
    /// the cursor, tombstones, internal keys, malformed paths, beyond the limit).
    pub dropped: usize,
}

/// Keeps the entries of an answer that answer `q`, in key order, at most `q.limit` (the
/// newest of duplicates).
pub(crate) fn check_answer(
    q: &ListQuestion<'_>,
    entries: Vec<ObjectMeta>,
    truncated: bool,
) -> CheckedAnswer {
    let total = entries.len();
    let mut kept: BTreeMap<String, ObjectMeta> = BTreeMap::new();
    let internal_wanted = is_internal_key(q.prefix);
    for meta in entries {
        let p = &meta.path;
        let fits = p.tenant == *q.tenant
            && p.bucket == q.bucket
            && p.key.starts_with(q.prefix)
            && q.after.is_none_or(|after| p.key.as_str() > after)
            && (internal_wanted || !is_internal_key(&p.key))
            && meta.info.is_some()
            && p.validate().is_ok();
        if !fits {
            continue;
        }
        match kept.get(&p.key) {
            Some(existing) if !meta.supersedes(existing) => {}
            _ => {
                kept.insert(p.key.clone(), meta);
            }
        }
    }
    let mut truncated = truncated;
    if kept.len() > q.limit {
        truncated = true;
    }
    let entries: Vec<ObjectMeta> = kept.into_values().take(q.limit).collect();
    CheckedAnswer {
        dropped: total.saturating_sub(entries.len()),
        entries,
        truncated,
    }
}

/// The entries of one round, merged, and where the next round must start if any answer was
/// cut (`None`: every answer was complete).
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub(crate) merged: BTreeMap<String, ObjectMeta>,
    pub(crate) cut: Option<String>,
}

/// The requests a range question makes of the bucket's replicas.
impl RangeQuestion<'_> {
    fn bucket_ref(&self) -> BucketRef {
        BucketRef {
            tenant: *self.tenant,
            name: self.bucket.to_owned(),
        }
    }

    /// The question's limit as the requests carry it.
    fn wire_limit(&self) -> u32 {
        u32::try_from(self.limit).unwrap_or(u32::MAX)
    }

    /// The range's entries (`MetaRange`), for a full merge.
    fn entries_request(&self) -> StoreRequest {
        StoreRequest::MetaRange {
            bucket: self.bucket_ref(),
            prefix: self.prefix.to_owned(),
            after: self.after.map(str::to_owned),
            limit: self.wire_limit(),
        }
    }

    /// The range's entries as their encodings (`MetaRangeEncoded`), for an edge that
    /// hashes them as received.
    fn encoded_request(&self) -> StoreRequest {
        StoreRequest::MetaRangeEncoded {
            bucket: self.bucket_ref(),
            prefix: self.prefix.to_owned(),
            after: self.after.map(str::to_owned),
            limit: self.wire_limit(),
        }
    }

    /// The digest of the range up to `until` (to its end when `None`), counting at most
    /// `limit` entries (`MetaRangeDigest`).
    fn digest_request(&self, until: Option<String>, limit: u32) -> StoreRequest {
        StoreRequest::MetaRangeDigest {
            bucket: self.bucket_ref(),
            prefix: self.prefix.to_owned(),
            after: self.after.map(str::to_owned),
            until,
            limit,
        }
    }
}

/// Decodes the entries a replica sent as encodings; `None` if any does not decode (no
/// honest replica sends such bytes, so the round is not agreed).
fn decode_entries(encoded: &[serde_bytes::ByteBuf]) -> Option<Vec<ObjectMeta>> {
    encoded
        .iter()
        .map(|bytes| xnode_wire::decode::<ObjectMeta>(bytes, MAX_META_BYTES).ok())
        .collect()
}

/// Hears the answers of `calls` as a quorum read does: until `needed` count, then for
/// the linger (`linger`, or as long as the quorum took if that is longer), so that a
/// replica that hides entries and one that missed them cannot make a round alone. `hear`
/// takes each answer and says how many count so far (`counted` before any), or breaks to
/// end the wait at once. The calls still running after that are left to the caller to
/// drop. Returns how many counted, or `None` if `hear` broke.
async fn hear_quorum<T>(
    calls: &mut FuturesUnordered<impl Future<Output = T>>,
    needed: usize,
    mut counted: usize,
    linger: Duration,
    mut hear: impl FnMut(T) -> ControlFlow<(), usize>,
) -> Option<usize> {
    let started = tokio::time::Instant::now();
    let mut deadline = None;
    loop {
        if deadline.is_none() && counted >= needed {
            if linger.is_zero() {
                return Some(counted);
            }
            let now = tokio::time::Instant::now();
            deadline = Some(now + linger.max(now.saturating_duration_since(started)));
        }
        let next = match deadline {
            None => calls.next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, calls.next()).await {
                Ok(next) => next,
                Err(_) => return Some(counted),
            },
        };
        let Some(answer) = next else {
            return Some(counted);
        };
        match hear(answer) {
            ControlFlow::Continue(now_counted) => counted = now_counted,
            ControlFlow::Break(()) => return None,
        }
    }
}

impl Storage {
    /// Lists a bucket's live objects whose key starts with `prefix`, after `start_after`,
    /// in key order, at most `limit`, by merging ranges of `R` replicas' tables (see the
    /// module docs). Fewer than `limit` entries means the listing is complete.
    pub async fn list_objects(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let limit = limit.min(MAX_LIST_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (set, targets, needed) = self.listing_replicas(tenant, bucket);
        let ask = limit.clamp(MIN_RANGE_ENTRIES, MAX_LIST_LIMIT);
        let mut page: Vec<ObjectMeta> = Vec::new();
        let mut cursor: Option<String> = start_after.map(str::to_owned);
        // Every round moves the cursor strictly forward (a cut answer holds at least one
        // key after it), so the loop ends; how many rounds it takes grows only with the
        // tombstones in the range, since a cut answer must fill its limit or byte bound.
        loop {
            let question = RangeQuestion {
                tenant,
                bucket,
                prefix,
                after: cursor.as_deref(),
                limit: ask,
            };
            let agreed = if targets.contains(&self.node_id) {
                self.agreed_round(&question, &targets, needed).await
            } else {
                self.vouched_round(&question, &targets, needed).await
            };
            let merged = match agreed {
                Some(agreed) => Ok(agreed),
                None => self.range_round(&question, &set, &targets, needed).await,
            };
            let merged = match merged {
                Ok(merged) => merged,
                Err(e) => {
                    // Replicas of an older version cannot answer ranges: list the rest the
                    // way they can. If replicas are simply missing, this fails as well.
                    tracing::debug!(error = %e, "a range listing found no quorum; listing by key reads");
                    let rest = self
                        .list_objects_by_key_reads(
                            tenant,
                            bucket,
                            prefix,
                            cursor.as_deref(),
                            limit.saturating_sub(page.len()),
                        )
                        .await?;
                    page.extend(rest);
                    return Ok(page);
                }
            };
            match absorb(merged, &mut page, limit) {
                Next::Done => return Ok(page),
                Next::After(next) => cursor = Some(next),
            }
        }
    }

    /// A round served from this node's own table, when it is one of the bucket's metadata
    /// replicas: it reads the range, and asks the other replicas only for the digest of
    /// the same range (`MetaRangeDigest`: its keys up to the last one read, as many
    /// entries as were read). When a read quorum, this node included, holds exactly what
    /// it read, and no replica that answers within the linger differs, the page is its own
    /// entries: every answer holds each of them identically, so a merge could make nothing
    /// else of them, and nothing is sent, decoded, checked or merged per entry. Their seals
    /// were checked when they were stored; a revocation of the writer since then is
    /// checked here.
    ///
    /// `None` leaves the round to [`Self::range_round`], which merges the replicas'
    /// entries: this node holds no replica of the bucket, a replica differs or cannot
    /// answer, or an entry needs the full round's judgement (dated too far ahead, or after
    /// a revocation of its writer).
    async fn agreed_round(
        self: &Arc<Self>,
        q: &RangeQuestion<'_>,
        targets: &[NodeId],
        needed: usize,
    ) -> Option<MergedRange> {
        if !targets.contains(&self.node_id) {
            return None;
        }
        let read = self
            .local_range(q.tenant, q.bucket, q.prefix, q.after, q.limit, true)
            .await
            .ok()?;
        let digest = read.digest?;
        let latest_ms = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        let checked = check_range(q, read.entries, read.truncated, latest_ms).ok()?;
        // Every entry is the tenant's (`check_range`): one probe says whether any could be
        // revoked.
        let revoked = self.tenant_revoked_anything(q.tenant)
            && checked
                .entries
                .iter()
                .any(|m| self.dated_after_revocation(m));
        if checked.future > 0 || revoked {
            return None;
        }
        let request = q.digest_request(checked.until.clone(), digest.entries);
        let mut calls: FuturesUnordered<_> = targets
            .iter()
            .filter(|&&node| node != self.node_id)
            .map(|&node| {
                let request = request.clone();
                async move { self.call(node, request, META_TIMEOUT).await }
            })
            .collect();
        // As in `range_round`: once a quorum agrees, the others get the linger to answer,
        // and one that differs in that time sends the round to the full merge.
        let mut agreed = 1usize;
        let agreeing = hear_quorum(
            &mut calls,
            needed,
            agreed,
            self.config.read_linger,
            |answer| match answer {
                Ok(StoreResponse::RangeDigest(theirs)) if theirs == digest => {
                    agreed += 1;
                    ControlFlow::Continue(agreed)
                }
                // A replica that differs: its entries are needed.
                Ok(_) => ControlFlow::Break(()),
                // One that cannot answer (down, or of a version before range digests)
                // does not count, as in a full round.
                Err(e) => {
                    tracing::debug!(error = %e, "a metadata replica did not answer a range digest");
                    ControlFlow::Continue(agreed)
                }
            },
        )
        .await?;
        (agreeing >= needed).then(|| self.agreed_page(checked))
    }

    /// A round for an edge that holds no replica of the bucket: the first replica of the
    /// placement sends its entries (`MetaRange`), the others at the same time only the
    /// digest of the same range (`MetaRangeDigest`, as many entries as asked). When the
    /// entries hash to the digest every other replica heard within the linger answers,
    /// and those replicas and the reader make a read quorum, every answer would hold each
    /// entry identically, so the page is the reader's entries, with nothing to merge or
    /// repair. The reader's entries are checked as in a full round (question, seals,
    /// revocations): a reader cannot make the edge take an entry no writer sealed, and
    /// one that hides or rolls back entries differs from an honest replica's digest.
    ///
    /// `None` leaves the round to [`Self::range_round`]: a replica differs, the reader
    /// does not answer by the time the others and the linger are heard, or an entry needs
    /// the full round's judgement (dated too far ahead, revoked, or not sealed).
    async fn vouched_round(
        self: &Arc<Self>,
        q: &RangeQuestion<'_>,
        targets: &[NodeId],
        needed: usize,
    ) -> Option<MergedRange> {
        let (&reader, _) = targets.split_first()?;
        let read = q.encoded_request();
        // As many entries as asked, to the end of the range: what the reader sends.
        let vouch = q.digest_request(None, q.wire_limit());
        let latest_ms = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        let trust = self.tenant_trust(q.tenant);
        let mut calls: FuturesUnordered<_> = targets
            .iter()
            .map(|&node| {
                let request = if node == reader {
                    read.clone()
                } else {
                    vouch.clone()
                };
                async move { (node, self.call(node, request, META_TIMEOUT).await) }
            })
            .collect();
        // The reader's checked entries and their digest, once they are in.
        let mut entries: Option<(CheckedRange, RangeDigest)> = None;
        let mut digests: Vec<RangeDigest> = Vec::new();
        // Each answer counts, the reader's included, so a reader slower than the others
        // and the linger sends the round to the full merge instead of holding it.
        let counted = hear_quorum(
            &mut calls,
            needed,
            0,
            self.config.read_linger,
            |(node, result)| {
                if node == reader {
                    let Ok(StoreResponse::MetaRangeEncoded {
                        entries: encoded,
                        truncated,
                    }) = result
                    else {
                        return ControlFlow::Break(());
                    };
                    // Hashed as received, as the others hash what they hold; then decoded
                    // once, and checked as any replica's entries are.
                    let mine = RangeDigest::of_encoded(&encoded, !truncated);
                    let Some(read) = decode_entries(&encoded) else {
                        return ControlFlow::Break(());
                    };
                    drop(encoded);
                    let Ok(checked) = check_range(q, read, truncated, latest_ms)
                        .and_then(|checked| classify(checked, &trust))
                    else {
                        return ControlFlow::Break(());
                    };
                    let judged = checked.future == 0
                        && checked.revoked == 0
                        && checked.verified.iter().all(|&v| v);
                    if !judged || digests.iter().any(|theirs| *theirs != mine) {
                        return ControlFlow::Break(());
                    }
                    entries = Some((checked, mine));
                } else {
                    match result {
                        Ok(StoreResponse::RangeDigest(theirs)) => {
                            if entries.as_ref().is_some_and(|(_, mine)| *mine != theirs) {
                                return ControlFlow::Break(());
                            }
                            digests.push(theirs);
                        }
                        Ok(_) => return ControlFlow::Break(()),
                        Err(e) => {
                            tracing::debug!(%node, error = %e, "a metadata replica did not answer a range digest");
                        }
                    }
                }
                ControlFlow::Continue(digests.len() + usize::from(entries.is_some()))
            },
        )
        .await?;
        drop(calls);
        let (checked, _) = entries?;
        (counted >= needed).then(|| self.agreed_page(checked))
    }

    /// The page of a round whose replicas agreed: the entries read, nothing to repair.
    fn agreed_page(&self, checked: CheckedRange) -> MergedRange {
        self.metrics.listing_rounds_agreed.inc();
        MergedRange {
            newest: checked.entries,
            until: checked.until,
            behind: Vec::new(),
        }
    }

    /// Asks every metadata replica for the range `q`, merges the first `needed` answers
    /// that pass their checks, confirms the live keys some answer lacks, and sends each
    /// replica what it lacks (read repair).
    async fn range_round(
        self: &Arc<Self>,
        q: &RangeQuestion<'_>,
        set: &[Candidate],
        targets: &[NodeId],
        needed: usize,
    ) -> Result<MergedRange, StorageError> {
        let request = q.entries_request();
        // Entries dated further ahead than replicas accept are left out, as quorum reads
        // leave them out (see MAX_VERSION_AHEAD_MS).
        let latest_ms = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        let trust = self.tenant_trust(q.tenant);
        let mut calls: FuturesUnordered<_> = targets
            .iter()
            .map(|&node| {
                let request = request.clone();
                async move { (node, self.call(node, request, META_TIMEOUT).await) }
            })
            .collect();
        let mut answered = Vec::with_capacity(targets.len());
        let mut answers = Vec::with_capacity(targets.len());
        let mut errors = Vec::new();
        // Once `needed` answers are in, the listing waits for the other replicas as a
        // quorum read does (see `hear_quorum`); the calls still running after that are
        // dropped.
        hear_quorum(
            &mut calls,
            needed,
            0,
            self.config.read_linger,
            |(node, result)| {
                let (entries, truncated) = match result {
                    Ok(StoreResponse::MetaRange { entries, truncated }) => (entries, truncated),
                    Ok(_) => {
                        errors.push(format!("{node}: unexpected answer"));
                        return ControlFlow::Continue(answers.len());
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        return ControlFlow::Continue(answers.len());
                    }
                };
                match check_range(q, entries, truncated, latest_ms)
                    .and_then(|checked| classify(checked, &trust))
                {
                    Ok(checked) => {
                        if checked.future > 0 {
                            tracing::warn!(%node, entries = checked.future, "a metadata replica listed versions dated too far ahead; left out");
                        }
                        answered.push(node);
                        answers.push(checked);
                    }
                    Err(bad) => {
                        self.metrics.bad_replica_reads.inc();
                        tracing::warn!(%node, error = %bad, "a metadata replica's range answer does not answer the question; refused");
                        errors.push(format!("{node}: {bad}"));
                    }
                }
                ControlFlow::Continue(answers.len())
            },
        )
        .await;
        drop(calls);
        if answers.len() < needed {
            self.metrics.quorum_failures.inc();
            return Err(StorageError::Quorum(format!(
                "only {} of {needed} metadata replicas answered the range ({})",
                answers.len(),
                errors.join("; ")
            )));
        }
        let mut merged = merge_ranges(&answers);
        self.metrics.listing_rounds_merged.inc();
        let overturned = self
            .confirm_lacking_keys(&mut merged, &answers, set)
            .await?;
        for (node, mut behind) in answered.into_iter().zip(std::mem::take(&mut merged.behind)) {
            behind.retain(|m| !overturned.contains(&m.path.key));
            if !behind.is_empty() {
                self.read_repair(node, behind);
            }
        }
        Ok(merged)
    }

    /// Confirms by a quorum read every live key of `merged` that some answer does not
    /// hold at all, and puts what the read finds in its place (a tombstone hides the key
    /// from the page). Returns the keys whose entry the read changed.
    ///
    /// A range answer holds only the hot table, so a replica whose tombstone of a key was
    /// collected (retired to its cold table, see `tombstones.rs`) shows nothing for it. A
    /// replica that confirmed the tombstone but kept an older version, and lists that
    /// version now, would otherwise put the deleted key back in the listing: the point
    /// reads of a quorum read see the retired tombstone and outrank it.
    ///
    /// Only versions older than half of `tombstone_grace` are confirmed: a tombstone is
    /// retired only once older than the grace (by its holder's clock and grace), and the
    /// version it deleted is older still, so a younger version cannot be one a retired
    /// tombstone outranks (the half absorbs clock skew and holders configured with a
    /// somewhat shorter grace). A replica that merely missed recent writes then costs
    /// nothing extra; one that missed older ones costs one read per key, once: the read
    /// repair below gives it the keys.
    async fn confirm_lacking_keys(
        self: &Arc<Self>,
        merged: &mut MergedRange,
        answers: &[CheckedRange],
        set: &[Candidate],
    ) -> Result<BTreeSet<String>, StorageError> {
        let lacked_somewhere = |meta: &ObjectMeta| {
            answers.iter().any(|a| {
                a.entries
                    .binary_search_by(|m| m.path.key.as_str().cmp(&meta.path.key))
                    .is_err()
            })
        };
        let half_grace_ms =
            u64::try_from(self.config.tombstone_grace.as_millis() / 2).unwrap_or(u64::MAX);
        let retirable_before_ms = unix_ms().saturating_sub(half_grace_ms);
        let lacking: Vec<(usize, ObjectPath)> = merged
            .newest
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.info.is_some() && m.version.wall_ms <= retirable_before_ms && lacked_somewhere(m)
            })
            .map(|(i, m)| (i, m.path.clone()))
            .collect();
        let mut overturned = BTreeSet::new();
        if lacking.is_empty() {
            return Ok(overturned);
        }
        let mut reads = futures::stream::iter(lacking)
            .map(|(i, path)| async move { (i, self.get_meta(&path, set).await) })
            .buffered(CONFIRMATIONS_IN_FLIGHT);
        let mut found = Vec::new();
        while let Some((i, current)) = reads.next().await {
            found.push((i, current?));
        }
        drop(reads);
        let mut gone = BTreeSet::new();
        for (i, current) in found {
            let Some(listed) = merged.newest.get_mut(i) else {
                continue;
            };
            if current.as_ref() == Some(&*listed) {
                continue;
            }
            overturned.insert(listed.path.key.clone());
            match current {
                // The quorum read checked the path; the entry keeps its place in key order.
                Some(current) => *listed = current,
                None => {
                    gone.insert(i);
                }
            }
        }
        if !gone.is_empty() {
            let mut index = 0usize;
            merged.newest.retain(|_| {
                let keep = !gone.contains(&index);
                index = index.saturating_add(1);
                keep
            });
        }
        Ok(overturned)
    }

    /// Sends `node` the newest entries a listing found it lacking, in the background.
    /// Best effort: anti-entropy restores whatever this misses.
    fn read_repair(self: &Arc<Self>, node: NodeId, entries: Vec<ObjectMeta>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut entries = entries;
            while !entries.is_empty() {
                let rest = entries.split_off(entries.len().min(MAX_PUT_META_MANY));
                let batch = std::mem::replace(&mut entries, rest);
                if let Err(e) = this
                    .call(
                        node,
                        StoreRequest::PutMetaMany { metas: batch },
                        META_TIMEOUT,
                    )
                    .await
                {
                    tracing::debug!(%node, error = %e, "listing read repair failed; anti-entropy will repair");
                    return;
                }
            }
        });
    }

    /// The storage set, the bucket's metadata replicas in it, and how many of them a
    /// listing must hear from.
    fn listing_replicas(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> (Vec<Candidate>, Vec<NodeId>, usize) {
        let set = self.storage_set();
        let targets = self.meta_placement(tenant, bucket, &set);
        let (_, needed) = self.quorums(targets.len());
        (set, targets, needed)
    }

    /// Lists a bucket the way replicas before store protocol version 5 can answer: their
    /// live entries merged, and every listed key confirmed by a quorum read (see the
    /// module docs). Kept for those replicas, and as the baseline the listing benchmark
    /// measures range listings against. Fewer than `limit` entries means the listing is
    /// complete.
    pub async fn list_objects_by_key_reads(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let limit = limit.min(MAX_LIST_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (set, targets, needed) = self.listing_replicas(tenant, bucket);
        let mut out: Vec<ObjectMeta> = Vec::new();
        let mut cursor: Option<String> = start_after.map(str::to_owned);
        for _ in 0..MAX_LIST_ROUNDS {
            let question = ListQuestion {
                tenant,
                bucket,
                prefix,
                after: cursor.as_deref(),
                limit,
            };
            let round = self.list_round(&question, &targets, needed).await?;
            // Replicas answer live entries only, so a key deleted on one replica but not
            // yet on another could show here; each listed key is therefore confirmed by a
            // quorum read, which sees the tombstone.
            let set = &set;
            let mut confirmed = futures::stream::iter(round.merged.into_values())
                .map(|meta| async move { self.get_meta(&meta.path, set).await })
                .buffered(CONFIRMATIONS_IN_FLIGHT);
            while let Some(current) = confirmed.next().await {
                if let Some(current) = current?
                    && current.info.is_some()
                {
                    out.push(current);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match round.cut {
                None => return Ok(out),
                Some(cut) => cursor = Some(cut),
            }
        }
        self.metrics.quorum_failures.inc();
        Err(StorageError::Quorum(format!(
            "the listing did not finish in {MAX_LIST_ROUNDS} rounds (a metadata replica keeps cutting its answers short)"
        )))
    }

    /// Asks every metadata replica once and merges the answers that answer the question.
    pub(crate) async fn list_round(
        self: &Arc<Self>,
        q: &ListQuestion<'_>,
        targets: &[NodeId],
        needed: usize,
    ) -> Result<Round, StorageError> {
        let results = futures::future::join_all(targets.iter().map(|&node| {
            let request = StoreRequest::ListMeta {
                tenant: *q.tenant,
                bucket: q.bucket.to_owned(),
                prefix: q.prefix.to_owned(),
                start_after: q.after.map(str::to_owned),
                limit: u32::try_from(q.limit).unwrap_or(u32::MAX),
            };
            async move { (node, self.call(node, request, META_TIMEOUT).await) }
        }))
        .await;
        let mut round = Round::default();
        let mut answered = 0;
        let mut errors = Vec::new();
        for (node, result) in results {
            let (entries, truncated) = match result {
                Ok(StoreResponse::MetaPage { entries, truncated }) => (entries, truncated),
                // A version-2 replica: a full page may have more after it.
                Ok(StoreResponse::MetaList(entries)) => {
                    let full = entries.len() >= q.limit;
                    (entries, full)
                }
                Ok(_) => {
                    errors.push(format!("{node}: unexpected answer"));
                    continue;
                }
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let checked = check_answer(q, entries, truncated);
            if checked.dropped > 0 {
                self.metrics.bad_replica_reads.inc();
                tracing::warn!(%node, dropped = checked.dropped, "a metadata replica listed entries that do not answer the question; dropped");
            }
            if checked.truncated {
                // A cut answer covers keys up to its last entry; one with nothing usable
                // in it covers nothing and does not count.
                let Some(last) = checked.entries.last() else {
                    errors.push(format!("{node}: a cut answer with no usable entry"));
                    continue;
                };
                let last = last.path.key.clone();
                if round.cut.as_ref().is_none_or(|cut| last < *cut) {
                    round.cut = Some(last);
                }
            }
            answered += 1;
            for meta in checked.entries {
                match round.merged.get(&meta.path.key) {
                    Some(existing) if !meta.supersedes(existing) => {}
                    _ => {
                        round.merged.insert(meta.path.key.clone(), meta);
                    }
                }
            }
        }
        if answered < needed {
            self.metrics.quorum_failures.inc();
            return Err(StorageError::Quorum(format!(
                "only {answered} of {needed} metadata replicas answered ({})",
                errors.join("; ")
            )));
        }
        if let Some(cut) = &round.cut {
            round.merged.retain(|key, _| key <= cut);
        }
        Ok(round)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use xnode_store::{ChunkId, ObjectInfo, ObjectPath, internal_key};
    use xnode_types::{Hlc, SecretKey};

    use super::*;

    fn entry(tenant: PublicKeyBytes, bucket: &str, key: &str, live: bool) -> ObjectMeta {
        ObjectMeta {
            path: ObjectPath {
                tenant,
                bucket: bucket.into(),
                key: key.into(),
            },
            version: Hlc::new(1, 0),
            writer: SecretKey::generate().node_id(),
            info: live.then(|| ObjectInfo {
                manifest: ChunkId::of(key.as_bytes()),
                size: 1,
                etag: String::new(),
                content_type: String::new(),
                user_meta: Default::default(),
                created_ms: 1,
            }),
            seal: None,
        }
    }

    #[test]
    fn answers_are_filtered_to_the_question_and_bounded() {
        let me = PublicKeyBytes([1; 32]);
        let other = PublicKeyBytes([2; 32]);
        let q = ListQuestion {
            tenant: &me,
            bucket: "photos",
            prefix: "a/",
            after: Some("a/1"),
            limit: 2,
        };
        let answer = vec![
            entry(other, "photos", "a/5", true),    // another tenant
            entry(me, "other-bucket", "a/5", true), // another bucket
            entry(me, "photos", "b/5", true),       // outside the prefix
            entry(me, "photos", "a/0", true),       // before the cursor
            entry(me, "photos", "a/1", true),       // the cursor itself
            entry(me, "photos", "a/6", false),      // a tombstone
            entry(me, "photos", &internal_key("a/7"), true),
            entry(me, "photos", "a/\u{1}", true), // malformed key
            entry(me, "photos", "a/4", true),
            entry(me, "photos", "a/3", true),
            entry(me, "photos", "a/9", true), // beyond the limit
        ];
        let checked = check_answer(&q, answer, false);
        let keys: Vec<&str> = checked
            .entries
            .iter()
            .map(|m| m.path.key.as_str())
            .collect();
        assert_eq!(keys, ["a/3", "a/4"]);
        assert!(
            checked.truncated,
            "more entries than the limit means the answer was cut"
        );
        assert_eq!(checked.dropped, 9);

        let honest = vec![entry(me, "photos", "a/2", true)];
        let checked = check_answer(&q, honest, false);
        assert_eq!(checked.entries.len(), 1);
        assert!(!checked.truncated);
        assert_eq!(checked.dropped, 0);
    }
}
