//! What garbage collection reads of a metadata holder: the digest of every bucket it
//! holds entries of, page by page, and a whole bucket's entries (internal keys and
//! tombstones included). A collector that remembers what it saw per bucket then rereads
//! only the buckets whose digest moved, so a round costs what changed, not what is stored.

use xnode_types::PublicKeyBytes;

use super::{
    BucketName, MetaStore, ObjectMeta, StoreError, bucket_prefix, lock_digests,
    validate_bucket_name,
};
use crate::entropy::SetDigest;
use crate::successor;

impl MetaStore {
    /// The digests of the buckets this replica holds entries of, in bucket order, after
    /// `after` (exclusive), at most `limit`. A bucket whose entries all left the table
    /// (tombstones collected) may still be listed, with an empty digest.
    pub fn bucket_digests_after(
        &self,
        after: Option<&BucketName>,
        limit: usize,
    ) -> Result<Vec<(BucketName, SetDigest)>, StoreError> {
        self.ensure_digests()?;
        let guard = lock_digests(&self.digests);
        let Some(digests) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        let range = match after {
            Some(after) => digests.range::<BucketName, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            )),
            None => digests.range::<BucketName, _>(..),
        };
        Ok(range
            .take(limit)
            .map(|(bucket, digest)| (bucket.clone(), *digest))
            .collect())
    }

    /// Every entry of a bucket, internal keys and tombstones included, in key order after
    /// `after` (exclusive), at most `limit` entries and about `max_bytes` of encoded
    /// entries (at least one entry whatever its size): what garbage collection rereads of
    /// a bucket whose digest moved. A short page does not mean the bucket ended; an empty
    /// one does.
    pub fn scan_bucket(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_bucket_name(bucket)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = bucket_prefix(tenant, bucket);
        let start = match after {
            Some(after) => {
                let mut past = prefix.clone();
                past.extend_from_slice(after.as_bytes());
                successor(&past)
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        self.scan_pages(&prefix, start, |meta, stored| {
            bytes = bytes.saturating_add(stored.len());
            if bytes > max_bytes && !out.is_empty() {
                return false;
            }
            out.push(meta);
            out.len() < limit
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::internal_key;
    use super::super::tests::{db, info, meta, node, tenant};
    use super::*;
    use crate::meta::ObjectPath;

    #[test]
    fn bucket_digests_come_in_pages_in_bucket_order() {
        let (_dir, db) = db();
        let store = MetaStore::new(db);
        let writer = node();
        for bucket in ["bbb", "aaa", "ccc"] {
            let path = ObjectPath::new(tenant(1), bucket, "k").unwrap();
            store
                .merge(meta(&path, 1, writer, Some(info(bucket))))
                .unwrap();
        }
        let all = store.bucket_digests_after(None, 10).unwrap();
        let names: Vec<&str> = all.iter().map(|((_, b), _)| b.as_str()).collect();
        assert_eq!(names, ["aaa", "bbb", "ccc"]);
        let first = store.bucket_digests_after(None, 2).unwrap();
        assert_eq!(first, all[..2]);
        let rest = store.bucket_digests_after(Some(&first[1].0), 2).unwrap();
        assert_eq!(rest, all[2..]);
        for (bucket, digest) in &all {
            assert_eq!(*digest, store.bucket_digest(&bucket.0, &bucket.1).unwrap());
        }
        // A write moves its bucket's digest and only that one.
        let path = ObjectPath::new(tenant(1), "bbb", "k2").unwrap();
        store.merge(meta(&path, 2, writer, None)).unwrap();
        let after = store.bucket_digests_after(None, 10).unwrap();
        assert_eq!(after[0], all[0]);
        assert_ne!(after[1].1, all[1].1);
        assert_eq!(after[2], all[2]);
    }

    #[test]
    fn a_bucket_scan_holds_every_entry_of_the_bucket_and_nothing_else() {
        let (_dir, db) = db();
        let store = MetaStore::new(db);
        let writer = node();
        let put = |bucket: &str, key: &str, live: bool| {
            let path = ObjectPath::new(tenant(1), bucket, key).unwrap();
            store
                .merge(meta(&path, 1, writer, live.then(|| info(key))))
                .unwrap();
        };
        put("abb", "x", true);
        put("abcd", "b", true);
        put("abc", "a", true);
        put("abc", &internal_key("upload"), true);
        put("abc", "gone", false);
        put("abc", "z", true);
        put("abd", "a", true);
        put("abc0", "c", true);
        let keys = |after: Option<&str>, limit| -> Vec<String> {
            store
                .scan_bucket(&tenant(1), "abc", after, limit, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|m| m.path.key)
                .collect()
        };
        let all = keys(None, 100);
        assert_eq!(
            all,
            [
                internal_key("upload"),
                "a".into(),
                "gone".into(),
                "z".into()
            ]
        );
        assert_eq!(keys(None, 2), all[..2]);
        assert_eq!(keys(Some(&all[1]), 100), all[2..]);
        assert!(keys(Some("z"), 100).is_empty());
        // The byte bound cuts a page short, but never to nothing.
        let one = store.scan_bucket(&tenant(1), "abc", None, 100, 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].path.key, all[0]);
        assert!(
            store
                .scan_bucket(&tenant(2), "abc", None, 100, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .scan_bucket(&tenant(1), "a/b", None, 100, usize::MAX)
                .is_err()
        );
    }
}
