//! The cold table of retired tombstones (see [`RETIRED`]): what tombstone collection moves
//! a confirmed tombstone to, and the lookups merges and point reads make in it.

use std::sync::Mutex;

use xnode_types::PublicKeyBytes;

use super::{
    BucketDigests, BucketName, MAX_META_BYTES, MetaStore, ObjectMeta, ObjectPath, PAGE, RETIRED,
    StoreError, TABLE, WriteOp, decode_at, decode_entry, entry_hash, lock_digests,
};
use crate::entropy::SetDigest;
use crate::successor;

impl MetaStore {
    /// Retires the tombstone `expected` if, and only if, it is exactly the entry held for
    /// its path: the second phase of tombstone collection ("delete if still equal"). The
    /// tombstone moves from the hot table to the cold one ([`RETIRED`]) in one
    /// transaction: out of listings, scans and digests, but still consulted by merges and
    /// point reads, so an older version offered again later (by a holder that confirmed
    /// the tombstone and kept that version) still loses to it. An entry that changed
    /// since the collector confirmed it (a newer write, or another tombstone) stays, so a
    /// delete decided on a stale view can never remove a newer write. Live entries are
    /// never retired. Returns whether the entry was retired.
    pub fn retire_tombstone_if_equal(&self, expected: &ObjectMeta) -> Result<bool, StoreError> {
        if !expected.is_tombstone() {
            return Ok(false);
        }
        expected.path.validate()?;
        let key = expected.path.storage_key();
        let _guard = self
            .merge_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(current) = self.db.get(TABLE, &key)? else {
            return Ok(false);
        };
        match decode_entry(&key, &current) {
            Some(held) if held == *expected => {}
            _ => return Ok(false),
        }
        self.db.write(vec![
            WriteOp::Delete {
                table: TABLE,
                key: key.clone(),
            },
            WriteOp::Put {
                table: RETIRED,
                key,
                value: current,
            },
        ])?;
        // Anti-entropy compares the generation to tell whether anything changed since its
        // last clean round; a removal changes this replica's digests, so it counts.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Still under the merge lock, so the digest moves in the same order as the table.
        let mut guard = lock_digests(&self.digests);
        if let Some(digests) = guard.as_mut() {
            let bucket = (expected.path.tenant, expected.path.bucket.clone());
            match entry_hash(expected) {
                Ok(hash) => {
                    let now_empty = digests.get_mut(&bucket).is_some_and(|digest| {
                        digest.toggle(&hash);
                        digest.is_empty()
                    });
                    // A rebuild lists only buckets with entries; a bucket whose last entry
                    // went must vanish here too, or this replica would keep offering an
                    // all-zero digest for it and its peers would keep answering.
                    if now_empty {
                        digests.remove(&bucket);
                    }
                }
                // As in a merge: a digest that cannot be updated is rebuilt from the table.
                Err(_) => *guard = None,
            }
        }
        drop(guard);
        toggle_digest(&self.retired_digests, expected);
        Ok(true)
    }

    /// Stores a retired tombstone a peer holds for a bucket this replica also holds,
    /// **as retired**: the cold record goes into the cold table only if no entry held for
    /// its key (hot or retired) is as new or newer, exactly as merging the tombstone hot
    /// would decide; a hot entry it supersedes is removed with it (one transaction), so
    /// the key reads deleted and stays out of listings and hot digests. Anything but a
    /// tombstone is refused (`Ok(false)`): a cold record never carries data, so a peer can
    /// do no more with this than with a `PutMeta` of the same tombstone. Checking the seal
    /// and the kind of key is the caller's part, as for any entry from a peer. Returns
    /// whether anything changed.
    pub fn merge_retired(&self, tombstone: ObjectMeta) -> Result<bool, StoreError> {
        if !tombstone.is_tombstone() {
            return Ok(false);
        }
        tombstone.path.validate()?;
        let key = tombstone.path.storage_key();
        let encoded = xnode_wire::encode(&tombstone)?;
        if encoded.len() > MAX_META_BYTES {
            return Err(StoreError::TooLarge {
                what: "object metadata",
                len: encoded.len(),
                limit: MAX_META_BYTES,
            });
        }
        let _guard = self
            .merge_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let hot_bytes = self.db.get(TABLE, &key)?;
        let hot = hot_bytes
            .as_ref()
            .and_then(|bytes| decode_entry(&key, bytes));
        let retired = self.retired_entry(&key)?;
        for current in hot.iter().chain(retired.iter()) {
            if *current == tombstone
                || !tombstone.supersedes(current)
                || tombstone.breaks_lock_of(current)
            {
                return Ok(false);
            }
        }
        // An unreadable hot entry is replaced, as a merge would replace it; it never
        // counted in a digest.
        let mut writes = Vec::new();
        if hot_bytes.is_some() {
            writes.push(WriteOp::Delete {
                table: TABLE,
                key: key.clone(),
            });
        }
        writes.push(WriteOp::Put {
            table: RETIRED,
            key,
            value: encoded,
        });
        // One transaction: a crash cannot leave the key both live and retired.
        self.db.write(writes)?;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Still under the merge lock, so the digests move in the same order as the tables.
        if let Some(old) = hot.as_ref() {
            toggle_digest(&self.digests, old);
        }
        if let Some(old) = retired.as_ref() {
            toggle_digest(&self.retired_digests, old);
        }
        toggle_digest(&self.retired_digests, &tombstone);
        Ok(true)
    }

    /// The digest of every bucket this replica holds retired tombstones of: what
    /// anti-entropy compares with each replica of the bucket, as it does the hot digests.
    /// The first call walks the cold table (holding merges back meanwhile); later ones are
    /// a copy, so an idle node never rescans it.
    pub fn retired_bucket_digests(&self) -> Result<Vec<(BucketName, SetDigest)>, StoreError> {
        self.ensure_retired_digests()?;
        Ok(lock_digests(&self.retired_digests)
            .as_ref()
            .map(|d| d.iter().map(|(b, d)| (b.clone(), *d)).collect())
            .unwrap_or_default())
    }

    /// The digest of one bucket's retired tombstones (all zeroes when none is held).
    pub fn retired_bucket_digest(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<SetDigest, StoreError> {
        self.ensure_retired_digests()?;
        Ok(lock_digests(&self.retired_digests)
            .as_ref()
            .and_then(|d| d.get(&(*tenant, bucket.to_owned())).copied())
            .unwrap_or_default())
    }

    fn ensure_retired_digests(&self) -> Result<(), StoreError> {
        if lock_digests(&self.retired_digests).is_some() {
            return Ok(());
        }
        let _guard = self
            .merge_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock_digests(&self.retired_digests).is_some() {
            return Ok(());
        }
        let mut built = BucketDigests::new();
        let mut start = Vec::new();
        loop {
            let page = self.db.scan_from(RETIRED, &[], &start, PAGE)?;
            for (key, value) in &page {
                // Unreadable records are skipped (and logged), as a hot rebuild skips them.
                if let Some(meta) = decode_entry(key, value) {
                    let hash = entry_hash(&meta)?;
                    built
                        .entry((meta.path.tenant, meta.path.bucket))
                        .or_default()
                        .toggle(&hash);
                }
            }
            match page.last() {
                Some((key, _)) if page.len() == PAGE => start = successor(key),
                _ => break,
            }
        }
        *lock_digests(&self.retired_digests) = Some(built);
        Ok(())
    }

    /// The retired tombstone of `path` in the cold table, if collection retired one and
    /// no later write brought the key back.
    pub fn get_retired(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        decode_at(&self.db, RETIRED, &path.storage_key())
    }

    /// How many retired tombstones the cold table holds (one small record per collected
    /// key; nothing but point lookups reads them).
    pub fn retired_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(RETIRED)?)
    }

    /// The retired tombstone under `key` for a merge to compare against; an unreadable
    /// record counts as none (and is logged), as an unreadable hot entry does.
    pub(super) fn retired_entry(&self, key: &[u8]) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self
            .db
            .get(RETIRED, key)?
            .and_then(|bytes| decode_entry(key, &bytes)))
    }
}

/// Toggles `meta` in its bucket's digest in `digests`, if they are built, dropping a
/// bucket whose digest becomes empty (a rebuild lists only buckets with entries). A digest
/// that cannot be updated is dropped whole, and the next use rebuilds it from the table.
/// Callers hold the merge lock, so digests move in the same order as the tables.
pub(super) fn toggle_digest(digests: &Mutex<Option<BucketDigests>>, meta: &ObjectMeta) {
    let mut guard = lock_digests(digests);
    let Some(built) = guard.as_mut() else {
        return;
    };
    match entry_hash(meta) {
        Ok(hash) => {
            let bucket = (meta.path.tenant, meta.path.bucket.clone());
            let digest = built.entry(bucket.clone()).or_default();
            digest.toggle(&hash);
            if digest.is_empty() {
                built.remove(&bucket);
            }
        }
        Err(_) => *guard = None,
    }
}
