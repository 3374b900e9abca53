//! Conditional writes: S3's `If-Match` and `If-None-Match` on writes and deletes, decided
//! atomically for each key however many edges write it at once.
//!
//! A read at the edge followed by a write is not atomic: two edges can both read "absent"
//! and both write. So an edge carries a conditional write, once its chunks and manifest
//! are stored, to the key's **coordinator**: the first live replica, in placement order,
//! of the bucket's metadata. The coordinator serialises the conditional writes of each
//! key with a lock, reads the current version from a read quorum, decides the condition
//! ([`decide`]) and writes the new version to a write quorum. Each replica merges that
//! write only if its entry has not moved past the version the coordinator read (a
//! compare-and-set, [`xnode_store::MetaStore::merge_if`]), so even two coordinators (edges
//! that disagree on who is live, during a membership change) cannot both have a write
//! acknowledged on the same version: their write quorums intersect. See
//! `docs/decisions/2026-11-26-conditional-writes-by-a-key-coordinator.md`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xnode_store::{Candidate, ObjectInfo, ObjectMeta, ObjectPath};
use xnode_types::lock;

use crate::proto::{CommitOutcome, StoreRequest, StoreResponse};
use crate::{META_TIMEOUT, Storage, StorageError};

/// The longest a conditional write waits for its coordinator: the coordinator may wait
/// for the writes ahead of it on the same key, then reads and writes with quorum.
const COMMIT_TIMEOUT: std::time::Duration = META_TIMEOUT.saturating_mul(3);

/// An entity-tag condition: `*` (any object) or one ETag (S3 ETags, without quotes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ETagMatch {
    Any,
    ETag(String),
}

impl ETagMatch {
    fn matches(&self, info: &ObjectInfo) -> bool {
        match self {
            ETagMatch::Any => true,
            ETagMatch::ETag(e) => e.trim_matches('"') == info.etag.trim_matches('"'),
        }
    }
}

/// The conditions of one write or delete, as S3 headers state them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preconditions {
    /// `If-Match`: the object exists (and has this ETag).
    pub if_match: Option<ETagMatch>,
    /// `If-None-Match`: no object exists (`*`), or it has not this ETag.
    pub if_none_match: Option<ETagMatch>,
    /// `x-amz-if-match-last-modified-time` (deletes): the object was last modified in
    /// this second (Unix seconds; S3 dates have second precision).
    pub if_match_last_modified_s: Option<i64>,
    /// `x-amz-if-match-size` (deletes): the object has this many bytes.
    pub if_match_size: Option<u64>,
}

impl Preconditions {
    /// Whether there is no condition at all (the write is unconditional).
    pub fn is_empty(&self) -> bool {
        *self == Preconditions::default()
    }
}

/// What a condition decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The conditions hold: write.
    Apply,
    /// A conditional delete of an object that does not exist: S3 answers it as a
    /// successful delete, and nothing is written.
    NothingToDo,
    /// A condition does not hold: `412 PreconditionFailed`.
    Failed,
    /// `If-Match` on a write of an object that does not exist: `404 NoSuchKey`, as S3.
    NoSuchKey,
}

/// Decides a write (`deleting` false) or delete against the object's current state
/// (`None` when it does not exist or was deleted). Pure, so the rules are unit-tested
/// here and applied identically by every coordinator.
pub fn decide(pre: &Preconditions, deleting: bool, current: Option<&ObjectInfo>) -> Decision {
    let Some(info) = current else {
        // Every condition but `If-None-Match` asks about an existing object.
        let asks_existing = pre.if_match.is_some()
            || pre.if_match_last_modified_s.is_some()
            || pre.if_match_size.is_some();
        return match (asks_existing, deleting) {
            (false, _) => Decision::Apply,
            (true, true) => Decision::NothingToDo,
            (true, false) => Decision::NoSuchKey,
        };
    };
    let holds = pre.if_match.as_ref().is_none_or(|m| m.matches(info))
        && pre.if_none_match.as_ref().is_none_or(|m| !m.matches(info))
        && pre
            .if_match_last_modified_s
            .is_none_or(|s| i64::try_from(info.created_ms / 1000).ok() == Some(s))
        && pre.if_match_size.is_none_or(|size| size == info.size);
    if holds {
        Decision::Apply
    } else {
        Decision::Failed
    }
}

/// Decides a delete whose key's current version is a **delete marker** (versioned
/// buckets). The key still exists in S3's sense, so `If-Match: *` holds and the delete
/// goes ahead (another marker); but a marker has no ETag, size or modification time a
/// client could have read (HEAD answers 404), so every other condition fails with `412`,
/// as RGW answers. Deleting with no condition at all is unconditional.
pub fn decide_on_delete_marker(pre: &Preconditions) -> Decision {
    let only_any = matches!(pre.if_match, None | Some(ETagMatch::Any))
        && pre.if_match_last_modified_s.is_none()
        && pre.if_match_size.is_none();
    if only_any {
        Decision::Apply
    } else {
        Decision::Failed
    }
}

/// One lock per key being written conditionally on this coordinator; an entry lives only
/// while someone holds or waits for it.
#[derive(Default)]
pub(crate) struct KeyLocks(std::sync::Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>);

/// A held key lock; dropping it releases the key and forgets it if no one else waits.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Vec<u8>,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&self, key: Vec<u8>) -> KeyGuard<'_> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            mutex,
            guard: Some(guard),
        }
    }

    /// Keys with a lock held or awaited (for tests: entries must not pile up).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = lock(&self.locks.0);
        // The map's reference and ours: no one else holds or awaits this key (clones are
        // only made under the map's lock, which is held here).
        if Arc::strong_count(&self.mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

impl Storage {
    /// The coordinator of conditional writes for `path`: the first live node of the
    /// bucket's metadata placement (this node's view of liveness).
    fn commit_coordinator(
        &self,
        path: &ObjectPath,
        set: &[Candidate],
    ) -> Option<xnode_types::NodeId> {
        let targets = self.meta_placement(&path.tenant, &path.bucket, set);
        let live = self.live_nodes();
        targets.into_iter().find(|n| live.contains(n))
    }

    /// Writes `info` (or deletes, with `None`) at `path` only if `pre` holds, decided
    /// atomically by the key's coordinator. `Ok(None)` is a conditional delete of an
    /// object that did not exist (nothing was written).
    ///
    /// This edge seals the entry before the coordinator decides: only the edge holds the
    /// tenant's authority. It reads the current version first, so its clock dates the
    /// entry after it (as unconditional writes do); the coordinator refuses an entry that
    /// is not newer than what it finds under its lock.
    pub(crate) async fn commit_conditional(
        self: &Arc<Self>,
        path: ObjectPath,
        info: Option<ObjectInfo>,
        pre: Preconditions,
        set: &[Candidate],
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let Some(coordinator) = self.commit_coordinator(&path, set) else {
            return Err(StorageError::Quorum(
                "no replica of the bucket's metadata is live to coordinate a conditional write"
                    .into(),
            ));
        };
        // Absorbs the current version into this node's clock.
        self.get_meta(&path, set).await?;
        let meta = self.seal(ObjectMeta {
            path: path.clone(),
            version: self.clock.now(),
            writer: self.node_id,
            info: info.clone(),
            seal: None,
        })?;
        let outcome = if coordinator == self.node_id {
            self.coordinate_commit(meta.clone(), pre).await
        } else {
            let request = StoreRequest::CommitSealedMeta {
                meta: meta.clone(),
                preconditions: pre,
            };
            match self.call(coordinator, request, COMMIT_TIMEOUT).await? {
                StoreResponse::Committed(outcome) => outcome,
                _ => {
                    return Err(StorageError::Internal(format!(
                        "node {coordinator} answered a conditional write with something else"
                    )));
                }
            }
        };
        match outcome {
            // The coordinator must have written what was asked: a coordinator that
            // answers for another write is not believed.
            CommitOutcome::Written(written) if written == meta => Ok(Some(meta)),
            CommitOutcome::Written(_) => Err(StorageError::Integrity(format!(
                "coordinator {coordinator} reported a write other than the one asked for"
            ))),
            CommitOutcome::NothingToDo if info.is_none() => Ok(None),
            CommitOutcome::NothingToDo => Err(StorageError::Integrity(format!(
                "coordinator {coordinator} skipped a write"
            ))),
            CommitOutcome::PreconditionFailed => Err(StorageError::PreconditionFailed(
                "at least one of the pre-conditions you specified did not hold".into(),
            )),
            CommitOutcome::NoSuchKey => Err(StorageError::NoSuchKey(path.key)),
            CommitOutcome::Conflict(m) => Err(StorageError::ConditionalConflict(m)),
            CommitOutcome::Unavailable(m) => Err(StorageError::Quorum(m)),
        }
    }

    /// The coordinator's side of a conditional write: under the key's lock, read the
    /// current version with quorum, decide, and write the edge's sealed entry with quorum
    /// and compare-and-set.
    pub(crate) async fn coordinate_commit(
        self: &Arc<Self>,
        meta: ObjectMeta,
        pre: Preconditions,
    ) -> CommitOutcome {
        let _key = self.commit_locks.lock(meta.path.storage_key()).await;
        let set = self.storage_set();
        let current = match self.get_meta(&meta.path, &set).await {
            Ok(current) => current,
            Err(e) => return CommitOutcome::Unavailable(e.to_string()),
        };
        let live = current.as_ref().and_then(|m| m.info.as_ref());
        match decide(&pre, meta.info.is_none(), live) {
            Decision::Apply => {}
            Decision::NothingToDo => return CommitOutcome::NothingToDo,
            Decision::Failed => {
                self.metrics.conditional_writes_refused.inc();
                return CommitOutcome::PreconditionFailed;
            }
            Decision::NoSuchKey => return CommitOutcome::NoSuchKey,
        }
        if let Some(current) = &current
            && !meta.supersedes(current)
        {
            self.metrics.write_conflicts.inc();
            return CommitOutcome::Conflict(format!(
                "the current version {:?} is not older than the write's {:?}",
                current.version, meta.version
            ));
        }
        let expected = Some(current.as_ref().map(|c| (c.version, c.writer)));
        match self.put_meta(meta.clone(), expected, &set).await {
            Ok(()) => CommitOutcome::Written(meta),
            Err(StorageError::ConditionalConflict(m) | StorageError::Conflict(m)) => {
                CommitOutcome::Conflict(m)
            }
            Err(e) => CommitOutcome::Unavailable(e.to_string()),
        }
    }
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use xnode_store::ChunkId;

    use super::*;

    fn object(etag: &str, size: u64, created_ms: u64) -> ObjectInfo {
        ObjectInfo {
            manifest: ChunkId::of(etag.as_bytes()),
            size,
            etag: etag.into(),
            content_type: "text/plain".into(),
            user_meta: BTreeMap::new(),
            created_ms,
        }
    }

    fn etag(e: &str) -> Option<ETagMatch> {
        Some(ETagMatch::ETag(e.into()))
    }

    #[test]
    fn if_none_match_creates_only_what_is_absent() {
        let pre = Preconditions {
            if_none_match: Some(ETagMatch::Any),
            ..Default::default()
        };
        let existing = object("abc", 3, 1000);
        assert_eq!(decide(&pre, false, None), Decision::Apply);
        assert_eq!(decide(&pre, false, Some(&existing)), Decision::Failed);
        // An ETag refuses only that version; quotes do not matter.
        let pre = Preconditions {
            if_none_match: etag("\"abc\""),
            ..Default::default()
        };
        assert_eq!(decide(&pre, false, Some(&existing)), Decision::Failed);
        assert_eq!(
            decide(&pre, false, Some(&object("other", 3, 1000))),
            Decision::Apply
        );
        assert_eq!(decide(&pre, false, None), Decision::Apply);
    }

    #[test]
    fn if_match_replaces_only_the_version_seen() {
        let existing = object("abc", 3, 1000);
        for (cond, current, want) in [
            (etag("abc"), Some(&existing), Decision::Apply),
            (etag("\"abc\""), Some(&existing), Decision::Apply),
            (etag("stale"), Some(&existing), Decision::Failed),
            (Some(ETagMatch::Any), Some(&existing), Decision::Apply),
            // S3 answers a write that expects an object which is not there with 404.
            (etag("abc"), None, Decision::NoSuchKey),
            (Some(ETagMatch::Any), None, Decision::NoSuchKey),
        ] {
            let pre = Preconditions {
                if_match: cond.clone(),
                ..Default::default()
            };
            assert_eq!(decide(&pre, false, current), want, "{cond:?} {current:?}");
        }
    }

    #[test]
    fn conditional_deletes_of_absent_objects_do_nothing() {
        let existing = object("abc", 7, 5_999);
        let pre = |f: fn(&mut Preconditions)| {
            let mut p = Preconditions::default();
            f(&mut p);
            p
        };
        let if_match = pre(|p| p.if_match = etag("abc"));
        let wrong = pre(|p| p.if_match = etag("nope"));
        let time = pre(|p| p.if_match_last_modified_s = Some(5));
        let bad_time = pre(|p| p.if_match_last_modified_s = Some(6));
        let size = pre(|p| p.if_match_size = Some(7));
        let bad_size = pre(|p| p.if_match_size = Some(9999));
        assert_eq!(decide(&if_match, true, Some(&existing)), Decision::Apply);
        assert_eq!(decide(&wrong, true, Some(&existing)), Decision::Failed);
        assert_eq!(decide(&time, true, Some(&existing)), Decision::Apply);
        assert_eq!(decide(&bad_time, true, Some(&existing)), Decision::Failed);
        assert_eq!(decide(&size, true, Some(&existing)), Decision::Apply);
        assert_eq!(decide(&bad_size, true, Some(&existing)), Decision::Failed);
        for p in [&if_match, &wrong, &time, &bad_time, &size, &bad_size] {
            assert_eq!(decide(p, true, None), Decision::NothingToDo, "{p:?}");
        }
        assert!(Preconditions::default().is_empty());
        assert!(!if_match.is_empty());
    }

    #[test]
    fn a_delete_marker_matches_only_if_match_any() {
        let any = Preconditions {
            if_match: Some(ETagMatch::Any),
            ..Default::default()
        };
        assert_eq!(decide_on_delete_marker(&any), Decision::Apply);
        assert_eq!(
            decide_on_delete_marker(&Preconditions::default()),
            Decision::Apply
        );
        for failing in [
            Preconditions {
                if_match: etag("d41d8cd98f00b204e9800998ecf8427e"),
                ..Default::default()
            },
            Preconditions {
                if_match_last_modified_s: Some(5),
                ..Default::default()
            },
            Preconditions {
                if_match_size: Some(0),
                ..Default::default()
            },
            Preconditions {
                if_match: Some(ETagMatch::Any),
                if_match_size: Some(0),
                ..Default::default()
            },
        ] {
            assert_eq!(
                decide_on_delete_marker(&failing),
                Decision::Failed,
                "{failing:?}"
            );
        }
    }

    #[test]
    fn both_conditions_must_hold() {
        let existing = object("abc", 3, 1000);
        let pre = Preconditions {
            if_match: Some(ETagMatch::Any),
            if_none_match: etag("abc"),
            ..Default::default()
        };
        assert_eq!(decide(&pre, false, Some(&existing)), Decision::Failed);
    }

    #[tokio::test]
    async fn key_locks_serialise_one_key_and_forget_it_afterwards() {
        let locks = Arc::new(KeyLocks::default());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _guard = locks.lock(b"key".to_vec()).await;
                let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        // Another key is not held up by the first.
        drop(locks.lock(b"other".to_vec()).await);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(locks.len(), 0);
    }
}
