//! The digest of a range of a bucket's entries. A listing edge that holds the bucket's
//! metadata reads a page from its own table and asks its fellow replicas only whether
//! they hold exactly the same entries in that range: agreement costs each replica a scan
//! and a hash, and the edge no decoding, seal checks or merging of their entries. Only a
//! replica that differs is asked for its entries (see `xnode_storage::listing`).
//!
//! The digest hashes the entries' current encodings in key order, each after its length,
//! then their count, so two replicas agree only when they hold the same entries in the
//! range, byte for byte; an entry stored in the current format is hashed as stored,
//! without decoding it.

use serde::{Deserialize, Serialize};
use xnode_types::PublicKeyBytes;
use xnode_wire::Versioned;

use super::{
    MAX_META_BYTES, MetaStore, ObjectMeta, PAGE, StoreError, TABLE, bucket_prefix, range_bounds,
    validate_bucket_name,
};
use crate::successor;

/// The BLAKE3 key-derivation context of a range digest: names what the digest is for.
/// Version 2 hashes the entries' encodings themselves (version 1 hashed a hash of each);
/// a replica of version 1 differs from an edge of version 2 in every range, which sends
/// the round to the full merge, as with any replica that differs.
const RANGE_DIGEST_CONTEXT: &str = "xnode 2026-11 object-metadata range digest v2";

/// What a replica holds in a range of a bucket's table, in 37 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// Entries in the range, tombstones included (at most the limit asked for).
    pub entries: u32,
    /// The hash of the entries' encodings in key order, and of their count.
    pub digest: [u8; 32],
    /// `false`: the range holds more entries than the limit asked for (or more bytes than
    /// the bound the replica keeps to), and the digest covers only the first ones.
    pub complete: bool,
}

impl RangeDigest {
    /// The digest a replica holding exactly `entries` (their encodings, in key order)
    /// answers for their range; an entry in an older format is hashed as its current
    /// encoding, as a replica does. An edge that holds no replica of the bucket reads the
    /// encodings from one replica ([`MetaStore::range_encoded`]) and compares this with the
    /// digests the others send. `complete`: nothing follows the entries in the range (the
    /// answer was not cut).
    pub fn of_encoded<E: AsRef<[u8]>>(entries: &[E], complete: bool) -> RangeDigest {
        let mut hasher = RangeHasher::new();
        for encoded in entries {
            hasher.add(encoded.as_ref());
        }
        hasher.finish(complete)
    }
}

/// One page of a bucket's entries in their encodings, read by
/// [`MetaStore::range_encoded`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedRange {
    /// The entries' encodings in key order, tombstones included: each the current
    /// encoding, except an entry whose stored bytes do not decode (sent as stored).
    pub entries: Vec<Vec<u8>>,
    /// The page was cut at the limit or the byte bound: keys after the last entry were not
    /// read. `false` means it holds every entry of the range.
    pub truncated: bool,
}

/// Builds a [`RangeDigest`] from stored entries given in key order.
///
/// The entries' current encodings, each after its length, are gathered and hashed in
/// batches of about [`HASH_BATCH`]: BLAKE3 hashes a long input several 1 KiB chunks at a
/// time with SIMD, where a hash per entry (a few hundred bytes) compresses one block after
/// another. Hashing was about 40 % of a replica's range read before.
pub(crate) struct RangeHasher {
    hasher: blake3::Hasher,
    batch: Vec<u8>,
    entries: u32,
}

/// Bytes of entries gathered before they are hashed.
const HASH_BATCH: usize = 256 * 1024;

impl RangeHasher {
    pub(crate) fn new() -> RangeHasher {
        RangeHasher {
            hasher: blake3::Hasher::new_derive_key(RANGE_DIGEST_CONTEXT),
            batch: Vec::new(),
            entries: 0,
        }
    }

    /// Adds the entry stored as `stored` (its encoding, in any format version).
    pub(crate) fn add(&mut self, stored: &[u8]) {
        match reencoded(stored) {
            Some(current) => self.add_current(&current),
            None => self.add_current(stored),
        }
    }

    /// Adds an entry given in its current encoding (or bytes that do not decode: no
    /// honest replica holds those, so the range differs).
    fn add_current(&mut self, encoded: &[u8]) {
        // Entries are bounded far below 4 GiB (`MAX_META_BYTES`); the length only makes
        // the concatenation unambiguous.
        let length = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        self.batch.extend_from_slice(&length.to_le_bytes());
        self.batch.extend_from_slice(encoded);
        if self.batch.len() >= HASH_BATCH {
            self.hasher.update(&self.batch);
            self.batch.clear();
        }
        self.entries = self.entries.saturating_add(1);
    }

    pub(crate) fn finish(mut self, complete: bool) -> RangeDigest {
        self.hasher.update(&self.batch);
        self.hasher.update(&u64::from(self.entries).to_le_bytes());
        RangeDigest {
            entries: self.entries,
            digest: *self.hasher.finalize().as_bytes(),
            complete,
        }
    }
}

/// The current encoding of an entry stored in an older format version; `None` when the
/// stored bytes are the current encoding already (or do not decode, and are hashed as
/// they are).
fn reencoded(stored: &[u8]) -> Option<Vec<u8>> {
    let current = stored.first() == Some(&ObjectMeta::KIND_TAG)
        && stored.get(1) == Some(&ObjectMeta::VERSION);
    if current {
        return None;
    }
    let meta = xnode_wire::decode::<ObjectMeta>(stored, MAX_META_BYTES).ok()?;
    xnode_wire::encode(&meta).ok()
}

/// The range of a bucket's table a [`RangeDigest`] covers: keys that start with `prefix`,
/// are greater than `after` and at most `until` (to the end of the range when `None`).
#[derive(Clone, Copy, Debug)]
pub struct DigestRange<'a> {
    pub tenant: &'a PublicKeyBytes,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub after: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl MetaStore {
    /// The digest of a bucket's entries in `range`, tombstones included, counting at most
    /// `limit` of them and hashing at most about `max_bytes` of stored entries: the range
    /// [`MetaStore::range`] reads, so a replica can tell an edge whether it holds what the
    /// edge read. Past either bound the digest says it is not complete (and differs from
    /// any edge's).
    pub fn range_digest(
        &self,
        range: &DigestRange<'_>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<RangeDigest, StoreError> {
        let DigestRange {
            tenant,
            bucket,
            prefix,
            after,
            until,
        } = *range;
        validate_bucket_name(bucket)?;
        let (scan_prefix, mut start) = range_bounds(tenant, bucket, prefix, after);
        let until = until.map(|until| {
            let mut key = bucket_prefix(tenant, bucket);
            key.extend_from_slice(until.as_bytes());
            key
        });
        let mut hasher = RangeHasher::new();
        let mut bytes = 0usize;
        loop {
            let page = self.db.scan_from(TABLE, &scan_prefix, &start, PAGE)?;
            for (key, value) in &page {
                if until.as_ref().is_some_and(|until| key > until) {
                    return Ok(hasher.finish(true));
                }
                bytes = bytes.saturating_add(value.len());
                if hasher.entries as usize >= limit || bytes > max_bytes {
                    return Ok(hasher.finish(false));
                }
                hasher.add(value);
            }
            match page.last() {
                Some((key, _)) if page.len() == PAGE => start = successor(key),
                _ => return Ok(hasher.finish(true)),
            }
        }
    }
}

impl MetaStore {
    /// The range [`MetaStore::range`] reads, as the entries' encodings: exactly the entries
    /// [`MetaStore::range_digest`] hashes for the same range and bounds, so an honest
    /// replica's digest matches what an edge hashes of this answer
    /// ([`RangeDigest::of_encoded`]). Entries stored in the current format (nearly all)
    /// are neither decoded nor encoded again here: the edge decodes them once, where it
    /// checks them anyway. Nothing is checked either: an entry that does not decode, or
    /// sits under the wrong key, reaches the edge, which refuses the answer.
    pub fn range_encoded(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<EncodedRange, StoreError> {
        validate_bucket_name(bucket)?;
        let mut page = EncodedRange::default();
        if limit == 0 {
            page.truncated = true;
            return Ok(page);
        }
        let (scan_prefix, mut start) = range_bounds(tenant, bucket, prefix, after);
        let mut bytes = 0usize;
        loop {
            let scanned = self.db.scan_from(TABLE, &scan_prefix, &start, PAGE)?;
            let next = match scanned.last() {
                Some((key, _)) if scanned.len() == PAGE => Some(successor(key)),
                _ => None,
            };
            for (_, value) in scanned {
                let total = bytes.saturating_add(value.len());
                // As `MetaStore::range` cuts: one entry past either bound is seen first, so
                // an answer that ends exactly at the end of the range is not reported cut.
                if page.entries.len() >= limit || (total > max_bytes && !page.entries.is_empty()) {
                    page.truncated = true;
                    return Ok(page);
                }
                bytes = total;
                page.entries.push(reencoded(&value).unwrap_or(value));
            }
            match next {
                Some(next) => start = next,
                None => return Ok(page),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::tests::{db, info, meta, node, tenant};
    use super::*;
    use crate::meta::ObjectPath;

    fn store_with(entries: &[(&str, u64, bool)]) -> (tempfile::TempDir, MetaStore) {
        let (dir, db) = db();
        let store = MetaStore::new(db);
        let writer = node();
        for &(key, ms, live) in entries {
            let path = ObjectPath::new(tenant(1), "bucket", key).unwrap();
            store
                .merge(meta(&path, ms, writer, live.then(|| info(key))))
                .unwrap();
        }
        (dir, store)
    }

    /// The same writer for every store, so equal entries are equal bytes.
    fn stores(a: &[(&str, u64, bool)], b: &[(&str, u64, bool)]) -> (MetaStore, MetaStore) {
        let (dir_a, db_a) = db();
        let (dir_b, db_b) = db();
        let (one, other) = (MetaStore::new(db_a), MetaStore::new(db_b));
        let writer = node();
        for (store, entries) in [(&one, a), (&other, b)] {
            for &(key, ms, live) in entries {
                let path = ObjectPath::new(tenant(1), "bucket", key).unwrap();
                store
                    .merge(meta(&path, ms, writer, live.then(|| info(key))))
                    .unwrap();
            }
        }
        // The stores keep their databases open; the directories may go.
        drop((dir_a, dir_b));
        (one, other)
    }

    /// The keys under `a/` of the test bucket, after `after` and up to `until`.
    fn in_a<'a>(
        tenant: &'a PublicKeyBytes,
        after: Option<&'a str>,
        until: Option<&'a str>,
    ) -> DigestRange<'a> {
        DigestRange {
            tenant,
            bucket: "bucket",
            prefix: "a/",
            after,
            until,
        }
    }

    const HELD: &[(&str, u64, bool)] = &[("a/1", 1, true), ("a/2", 2, false), ("a/3", 3, true)];

    #[test]
    fn replicas_holding_the_same_range_agree_and_any_difference_shows() {
        let t = tenant(1);
        let (edge, same) = stores(HELD, HELD);
        let read = edge
            .range_digested(&t, "bucket", "a/", None, 10, usize::MAX)
            .unwrap();
        assert_eq!(read.digest.unwrap().entries, 3);
        let asked = |store: &MetaStore| {
            store
                .range_digest(&in_a(&t, None, None), 10, usize::MAX)
                .unwrap()
        };
        assert_eq!(asked(&same), read.digest.unwrap());

        let lacking = [("a/1", 1, true), ("a/3", 3, true)];
        let newer = [("a/1", 1, true), ("a/2", 2, false), ("a/3", 4, true)];
        let more = [
            ("a/1", 1, true),
            ("a/2", 2, false),
            ("a/3", 3, true),
            ("a/4", 1, true),
        ];
        let undeleted = [("a/1", 1, true), ("a/2", 2, true), ("a/3", 3, true)];
        for other in [&lacking[..], &newer, &more, &undeleted] {
            let (edge, replica) = stores(HELD, other);
            let read = edge
                .range_digested(&t, "bucket", "a/", None, 10, usize::MAX)
                .unwrap();
            assert_ne!(asked(&replica), read.digest.unwrap(), "{other:?}");
        }
    }

    #[test]
    fn entries_received_from_one_replica_hash_to_what_the_others_answer() {
        let t = tenant(1);
        let more = [
            ("a/1", 1, true),
            ("a/2", 2, false),
            ("a/3", 3, true),
            ("a/4", 1, true),
        ];
        let (reader, same) = stores(&more, &more);
        // The whole range, and a read cut at its limit: the encodings one replica sends
        // give the digest a replica holding the same entries answers for the same range
        // and limit, completeness included, and decode to the entries `range` reads.
        for limit in [10, 2] {
            let read = reader
                .range_encoded(&t, "bucket", "a/", None, limit, usize::MAX)
                .unwrap();
            let received = RangeDigest::of_encoded(&read.entries, !read.truncated);
            let answered = same
                .range_digest(&in_a(&t, None, None), limit, usize::MAX)
                .unwrap();
            assert_eq!(received, answered, "limit {limit}");
            assert_eq!(received.complete, limit == 10);
            let decoded: Vec<ObjectMeta> = read
                .entries
                .iter()
                .map(|e| xnode_wire::decode(e, MAX_META_BYTES).unwrap())
                .collect();
            let plain = reader
                .range(&t, "bucket", "a/", None, limit, usize::MAX)
                .unwrap();
            assert_eq!(decoded, plain.entries);
            assert_eq!(read.truncated, plain.truncated);
        }
        // A reader that leaves an entry out, or claims the range ends early, is caught.
        let read = reader
            .range_encoded(&t, "bucket", "a/", None, 10, usize::MAX)
            .unwrap();
        let answered = same
            .range_digest(&in_a(&t, None, None), 10, usize::MAX)
            .unwrap();
        let mut hidden = read.entries.clone();
        hidden.remove(1);
        assert_ne!(RangeDigest::of_encoded(&hidden, true), answered);
        let cut = reader
            .range_encoded(&t, "bucket", "a/", None, 2, usize::MAX)
            .unwrap();
        let cut_short = same
            .range_digest(&in_a(&t, None, None), 2, usize::MAX)
            .unwrap();
        assert_ne!(RangeDigest::of_encoded(&cut.entries, true), cut_short);
        // The byte bound cuts as `range` does: one entry at least, then within the bound.
        let one = reader
            .range_encoded(&t, "bucket", "a/", None, 10, 1)
            .unwrap();
        assert_eq!((one.entries.len(), one.truncated), (1, true));
    }

    #[test]
    fn a_cut_read_is_compared_up_to_its_last_key_and_within_the_limit() {
        let t = tenant(1);
        let edge_held = [
            ("a/1", 1, true),
            ("a/2", 2, true),
            ("a/3", 3, true),
            ("b/1", 1, true),
        ];
        // The replica holds a key past the edge's cut, and one outside the prefix.
        let replica_held = [
            ("a/1", 1, true),
            ("a/2", 2, true),
            ("a/3", 3, true),
            ("a/5", 5, true),
            ("b/1", 1, true),
        ];
        let (edge, replica) = stores(&edge_held, &replica_held);
        let read = edge
            .range_digested(&t, "bucket", "a/", Some("a/1"), 1, usize::MAX)
            .unwrap();
        assert!(read.truncated);
        assert_eq!(read.entries.len(), 1);
        let until = read.entries.last().map(|m| m.path.key.clone());
        let answer = replica
            .range_digest(&in_a(&t, Some("a/1"), until.as_deref()), 1, usize::MAX)
            .unwrap();
        assert_eq!(answer, read.digest.unwrap(), "a/3 and a/5 lie past the cut");

        // Without the cut the replica counts past the limit, and says so.
        let answer = replica
            .range_digest(&in_a(&t, Some("a/1"), None), 1, usize::MAX)
            .unwrap();
        assert!(!answer.complete);
        assert_ne!(answer, read.digest.unwrap());

        // A whole-range read agrees with a replica that holds the same range, whatever
        // other prefixes hold.
        let whole = edge
            .range_digested(&t, "bucket", "a/", None, 10, usize::MAX)
            .unwrap();
        let (_, same) = store_with(&edge_held);
        let answer = same
            .range_digest(&in_a(&t, None, None), 10, usize::MAX)
            .unwrap();
        assert_eq!(answer.entries, whole.digest.unwrap().entries);
        assert!(answer.complete);
        // A byte bound below what the range holds: not complete, so it agrees with nobody.
        let bounded = same.range_digest(&in_a(&t, None, None), 10, 100).unwrap();
        assert!(!bounded.complete);
    }

    #[test]
    fn entries_hashed_in_batches_hash_as_one_input() {
        // Over two batches of entries (a flush inside the range), the digest is the hash
        // of all the framed entries at once, wherever the batches end.
        let entries: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| {
                let mut entry = vec![ObjectMeta::KIND_TAG, ObjectMeta::VERSION];
                entry.extend(std::iter::repeat_n(
                    (i % 251) as u8,
                    150 + (i % 97) as usize,
                ));
                entry
            })
            .collect();
        let mut batched = RangeHasher::new();
        let mut whole = blake3::Hasher::new_derive_key(RANGE_DIGEST_CONTEXT);
        for entry in &entries {
            batched.add(entry);
            whole.update(&(entry.len() as u32).to_le_bytes());
            whole.update(entry);
        }
        assert!(entries.iter().map(Vec::len).sum::<usize>() > 2 * HASH_BATCH);
        whole.update(&3000u64.to_le_bytes());
        let digest = batched.finish(true);
        assert_eq!(digest.entries, 3000);
        assert_eq!(digest.digest, *whole.finalize().as_bytes());
    }

    #[test]
    fn an_entry_in_an_older_format_is_hashed_as_its_current_encoding() {
        let (_dir, store) = store_with(HELD);
        let path = ObjectPath::new(tenant(1), "bucket", "a/1").unwrap();
        let entry = store.get(&path).unwrap().unwrap();
        let current = xnode_wire::encode(&entry).unwrap();
        assert_eq!(
            reencoded(&current),
            None,
            "the current format is hashed as stored"
        );
        // Format 1 is format 2 without the seal, which postcard writes last: one byte
        // for `None`.
        assert_eq!(current.last(), Some(&0));
        let mut older = current[..current.len() - 1].to_vec();
        older[1] = 1;
        assert_eq!(reencoded(&older), Some(current.clone()));
        let digest_of = |stored: &[&[u8]]| {
            let mut hasher = RangeHasher::new();
            for entry in stored {
                hasher.add(entry);
            }
            hasher.finish(true)
        };
        assert_eq!(digest_of(&[&older]), digest_of(&[&current]));
        assert_eq!(reencoded(b"junk"), None);
        assert_ne!(digest_of(&[b"junk"]), digest_of(&[&current]));
        // The length before each entry keeps entries from running into each other.
        let (first, second) = current.split_at(10);
        assert_ne!(digest_of(&[first, second]), digest_of(&[&current]));
    }
}
