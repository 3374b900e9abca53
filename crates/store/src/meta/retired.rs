//! The cold table of retired tombstones (see [`RETIRED`]): what tombstone collection moves
//! a confirmed tombstone to, and the lookups merges and point reads make in it.

use super::{
    MetaStore, ObjectMeta, ObjectPath, RETIRED, StoreError, TABLE, WriteOp, decode_at,
    decode_entry, entry_hash, lock_digests,
};

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
        Ok(true)
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
