//! The leaves of a bucket's digest: the second level of anti-entropy, over the hot table
//! or the cold one, asked for only when two replicas' bucket digests differ.

use xnode_db::Table;
use xnode_types::PublicKeyBytes;

use super::{
    MetaStore, ObjectMeta, RETIRED, StoreError, TABLE, bucket_prefix, entry_hash,
    validate_bucket_name,
};
use crate::entropy::{LEAVES, SetDigest, leaf_of};
use crate::successor;

impl MetaStore {
    /// The digests of a bucket's [`LEAVES`] leaves (entries by [`leaf_of`] their key):
    /// the second level, asked for only when two replicas' bucket digests differ.
    pub fn leaf_digests(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<Vec<SetDigest>, StoreError> {
        self.leaf_digests_in(TABLE, tenant, bucket)
    }

    /// [`MetaStore::leaf_digests`] over the bucket's retired tombstones (the cold table).
    pub fn retired_leaf_digests(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<Vec<SetDigest>, StoreError> {
        self.leaf_digests_in(RETIRED, tenant, bucket)
    }

    fn leaf_digests_in(
        &self,
        table: Table,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<Vec<SetDigest>, StoreError> {
        validate_bucket_name(bucket)?;
        let prefix = bucket_prefix(tenant, bucket);
        let mut leaves = vec![SetDigest::default(); LEAVES];
        let mut failed = None;
        self.scan_table(table, &prefix, prefix.clone(), |meta, _| {
            let leaf = leaf_of(&meta.path.storage_key());
            match entry_hash(&meta) {
                Ok(hash) => {
                    if let Some(digest) = leaves.get_mut(leaf) {
                        digest.toggle(&hash);
                    }
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(leaves),
        }
    }

    /// A bucket's entries (tombstones included) whose keys fall in `leaves`, at most
    /// `limit`, in key order after `after` (exclusive): what one replica sends another for
    /// the leaves where their digests differ.
    pub fn leaf_entries(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        leaves: &[usize],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.leaf_entries_in(TABLE, (tenant, bucket), leaves, after, limit)
    }

    /// [`MetaStore::leaf_entries`] over the bucket's retired tombstones: the cold records
    /// one replica sends another for the leaves where their cold digests differ.
    pub fn retired_leaf_entries(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        leaves: &[usize],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.leaf_entries_in(RETIRED, (tenant, bucket), leaves, after, limit)
    }

    fn leaf_entries_in(
        &self,
        table: Table,
        (tenant, bucket): (&PublicKeyBytes, &str),
        leaves: &[usize],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_bucket_name(bucket)?;
        let prefix = bucket_prefix(tenant, bucket);
        let start = match after {
            Some(after) if after > prefix.as_slice() => successor(after),
            _ => prefix.clone(),
        };
        let mut wanted = [false; LEAVES];
        for &leaf in leaves {
            if let Some(w) = wanted.get_mut(leaf) {
                *w = true;
            }
        }
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_table(table, &prefix, start, |meta, _| {
            if wanted
                .get(leaf_of(&meta.path.storage_key()))
                .copied()
                .unwrap_or(false)
            {
                out.push(meta);
            }
            out.len() < limit
        })?;
        Ok(out)
    }
}
