//! Buckets: owner-signed registry records under the owning tenant's namespace.
//!
//! A bucket named `N` created by tenant `T` is the registry entry
//! `tenant/<T>/bucket/<N>`, signed by `T`, whose value is a [`BucketRecord`] (JSON with a
//! format version, so any client can build it). Bucket names are global: when two tenants
//! claim the same name, the claim with the smallest `(hlc, owner)` wins. That rule depends
//! only on the set of claims, never on the order they arrived in, so every node agrees.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xnode_registry::claims::{check_claim_clock, claim_key};
use xnode_registry::{Entry, Registry};
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::bucket_settings::{decode_setting, setting_key};
use crate::{Storage, StorageError};

/// The claim kind of buckets in the registry (see `xnode_registry::claims`).
pub const BUCKET_CLAIM: &str = "bucket";

/// The value of a bucket claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Format version of this record.
    pub v: u32,
    pub name: String,
    /// The owning tenant's public key, hex.
    pub owner: String,
    pub created_ms: u64,
    /// Copies of every chunk and metadata entry of this bucket; the node default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u8>,
    /// The regions (node zones) this bucket's chunks and metadata may live in (data
    /// residency); empty means anywhere. Only a record of [`BUCKET_RECORD_PINNED_VERSION`]
    /// carries it, so a node that predates pins refuses a pinned bucket instead of
    /// placing its data anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

/// The format version of an unpinned [`BucketRecord`].
pub const BUCKET_RECORD_VERSION: u32 = 1;
/// The format version of a [`BucketRecord`] pinned to regions.
pub const BUCKET_RECORD_PINNED_VERSION: u32 = 2;

impl BucketRecord {
    /// The format version a record with these `regions` must carry.
    pub fn version_for(regions: &[String]) -> u32 {
        if regions.is_empty() {
            BUCKET_RECORD_VERSION
        } else {
            BUCKET_RECORD_PINNED_VERSION
        }
    }
}

/// The registry key of tenant `owner`'s claim on bucket `name`.
pub fn bucket_key(owner: &PublicKeyBytes, name: &str) -> String {
    claim_key(BUCKET_CLAIM, owner, name)
}

/// Decodes and checks a bucket claim: the record must name the bucket and owner its key
/// says, and the entry must be signed by that owner.
pub fn decode_claim(entry: &Entry) -> Option<BucketRecord> {
    let value = entry.value.as_deref()?;
    let record: BucketRecord = serde_json::from_slice(value).ok()?;
    (record.v == BucketRecord::version_for(&record.regions)
        && xnode_store::validate_regions(&record.regions).is_ok()
        && record.owner == entry.owner.to_hex()
        && entry.key == bucket_key(&entry.owner, &record.name))
    .then_some(record)
}

/// The bucket named `name` and its owner, if any tenant holds a live claim on it: the
/// first well-formed claim in the registry's claim order.
pub fn owner_of(registry: &Registry, name: &str) -> Option<(PublicKeyBytes, BucketRecord)> {
    registry
        .claims(BUCKET_CLAIM, name)
        .into_iter()
        .find_map(|e| decode_claim(&e).map(|r| (e.owner, r)))
}

/// The buckets `tenant` owns (claims it won).
pub fn owned_by(registry: &Registry, tenant: &PublicKeyBytes) -> Vec<BucketRecord> {
    let prefix = format!("tenant/{}/bucket/", tenant.to_hex());
    registry
        .list(&prefix)
        .into_iter()
        .filter_map(|e| decode_claim(&e))
        .filter(|r| owner_of(registry, &r.name).is_some_and(|(o, _)| o == *tenant))
        .collect()
}

impl Storage {
    pub(crate) fn require_bucket(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<(), StorageError> {
        match owner_of(&self.registry, bucket) {
            Some((owner, _)) if owner == *tenant => Ok(()),
            Some(_) => Err(StorageError::AccessDenied(format!(
                "bucket {bucket:?} belongs to another tenant"
            ))),
            None => Err(StorageError::NoSuchBucket(bucket.to_owned())),
        }
    }

    /// Creates a bucket from a claim the tenant signed. Returns the applied entry (for gossip).
    pub fn create_bucket(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        claim: Entry,
    ) -> Result<Entry, StorageError> {
        xnode_store::validate_bucket_name(name)?;
        if claim.owner != *tenant || claim.key != bucket_key(tenant, name) {
            return Err(StorageError::BadRequest(
                "the signed claim does not match the bucket and tenant".into(),
            ));
        }
        check_claim_clock(&claim, unix_ms())
            .map_err(|e| StorageError::BadRequest(format!("the signed bucket change: {e}")))?;
        let Some(record) = decode_claim(&claim) else {
            return Err(StorageError::BadRequest(
                "the signed claim's record is malformed".into(),
            ));
        };
        if let Some(rf) = record.replication_factor
            && !(1..=16).contains(&rf)
        {
            return Err(StorageError::BadRequest(format!(
                "replication factor {rf} must be between 1 and 16"
            )));
        }
        self.check_pin_satisfiable(&record)?;
        match owner_of(&self.registry, name) {
            Some((owner, _)) if owner != *tenant => {
                return Err(StorageError::BucketTaken(name.to_owned()));
            }
            Some(_) => {}
            // A new bucket: within the tenant's quota on this node, if one is set.
            None => {
                if let Some(max) = self.config.quota.max_buckets {
                    let have = self.list_buckets(tenant).len() as u64;
                    if have >= max {
                        return Err(StorageError::TooManyBuckets { have, max });
                    }
                }
            }
        }
        self.registry
            .apply_tenant_entry(claim.clone())
            .map_err(|e| match e {
                xnode_registry::RegistryError::OwnerQuota { .. } => {
                    StorageError::QuotaExceeded(e.to_string())
                }
                e => StorageError::BadRequest(format!("bucket claim refused: {e}")),
            })?;
        Ok(claim)
    }

    /// Deletes an empty bucket with a tombstone the tenant signed.
    pub async fn delete_bucket(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        name: &str,
        tombstone: Entry,
    ) -> Result<Entry, StorageError> {
        self.require_bucket(tenant, name)?;
        check_claim_clock(&tombstone, unix_ms())
            .map_err(|e| StorageError::BadRequest(format!("the signed bucket change: {e}")))?;
        if tombstone.owner != *tenant
            || tombstone.key != bucket_key(tenant, name)
            || !tombstone.is_tombstone()
        {
            return Err(StorageError::BadRequest(
                "the signed deletion does not match the bucket and tenant".into(),
            ));
        }
        let objects = self.list_objects(tenant, name, "", None, 1).await?;
        if !objects.is_empty() {
            return Err(StorageError::BucketNotEmpty(name.to_owned()));
        }
        self.registry
            .apply_remote(tombstone.clone())
            .map_err(|e| StorageError::BadRequest(format!("bucket deletion refused: {e}")))?;
        if owner_of(&self.registry, name).is_some_and(|(owner, _)| owner == *tenant) {
            return Err(StorageError::BadRequest(
                "the deletion is older than the bucket's claim; sign it with the current time"
                    .into(),
            ));
        }
        Ok(tombstone)
    }

    pub fn list_buckets(&self, tenant: &PublicKeyBytes) -> Vec<BucketRecord> {
        owned_by(&self.registry, tenant)
    }
}

/// The setting kind (`crate::bucket_settings`) of a bucket's versioning state: the entry
/// `tenant/<T>/bucket-versioning/<N>`, separate from the bucket's claim, so changing the
/// setting never re-dates the claim (claims are ordered by their clock).
pub const VERSIONING_KIND: &str = "versioning";

/// The versioning state of a bucket. A bucket starts unversioned and, once versioning was
/// enabled, can only be `Enabled` or `Suspended` (as in S3). As a bucket setting's
/// document it is the JSON string of the variant's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

/// The value a versioning entry had before versioning became a bucket setting like the
/// others (format 1 of that entry, under the same registry key). Still read, so buckets
/// versioned before keep their state; never written any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyVersioningRecord {
    /// Format version of this record.
    pub v: u32,
    pub bucket: String,
    /// The `created_ms` of the bucket claim this setting belongs to: a setting left over
    /// from a deleted bucket of the same name does not apply to its successor.
    pub bucket_created_ms: u64,
    pub status: Versioning,
}

/// The format version of [`LegacyVersioningRecord`].
pub const LEGACY_VERSIONING_RECORD_VERSION: u32 = 1;

/// The registry key of tenant `owner`'s versioning setting for bucket `name`.
pub fn versioning_key(owner: &PublicKeyBytes, name: &str) -> String {
    setting_key(VERSIONING_KIND, owner, name)
}

/// Decodes a versioning entry, in the bucket-setting format or the legacy one, and checks
/// it against the bucket it must belong to.
pub fn decode_versioning(entry: &Entry, bucket: &BucketRecord) -> Option<Versioning> {
    if let Some(document) = decode_setting(entry, VERSIONING_KIND, bucket) {
        return serde_json::from_value(document).ok();
    }
    let value = entry.value.as_deref()?;
    let record: LegacyVersioningRecord = serde_json::from_slice(value).ok()?;
    (record.v == LEGACY_VERSIONING_RECORD_VERSION
        && record.bucket == bucket.name
        && record.bucket_created_ms == bucket.created_ms
        && entry.owner.to_hex() == bucket.owner
        && entry.key == versioning_key(&entry.owner, &bucket.name))
    .then_some(record.status)
}

/// The versioning state of bucket `name` (unversioned if the bucket has no valid setting).
pub fn versioning_of(registry: &Registry, name: &str) -> Versioning {
    owner_of(registry, name)
        .and_then(|(owner, record)| {
            let entry = registry.get(&versioning_key(&owner, name))?;
            decode_versioning(&entry, &record)
        })
        .unwrap_or(Versioning::Unversioned)
}

impl Storage {
    /// Changes a bucket's versioning state with a bucket-setting entry the tenant signed
    /// (see [`Storage::set_bucket_setting`]). Refuses to go back to unversioned once
    /// versioning was enabled, as S3 does.
    pub fn set_bucket_versioning(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        entry: Entry,
    ) -> Result<Entry, StorageError> {
        self.require_bucket(tenant, name)?;
        let Some((_, bucket)) = owner_of(&self.registry, name) else {
            return Err(StorageError::NoSuchBucket(name.to_owned()));
        };
        match decode_setting(&entry, VERSIONING_KIND, &bucket)
            .and_then(|document| serde_json::from_value::<Versioning>(document).ok())
        {
            None => {
                return Err(StorageError::BadRequest(
                    "the signed versioning setting is malformed or names another bucket".into(),
                ));
            }
            Some(Versioning::Unversioned)
                if versioning_of(&self.registry, name) != Versioning::Unversioned =>
            {
                return Err(StorageError::BadRequest(
                    "a bucket whose versioning was enabled can only be suspended".into(),
                ));
            }
            Some(_) => {}
        }
        self.set_bucket_setting(tenant, name, VERSIONING_KIND, entry)
    }

    /// The versioning state of a bucket the tenant owns.
    pub fn bucket_versioning(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
    ) -> Result<Versioning, StorageError> {
        self.require_bucket(tenant, name)?;
        Ok(versioning_of(&self.registry, name))
    }
}

#[cfg(test)]
mod tests {
    use xnode_types::{Hlc, SecretKey};

    use super::*;

    fn setting(
        signer: &SecretKey,
        key_owner: &PublicKeyBytes,
        bucket: &str,
        created_ms: u64,
        status: Versioning,
    ) -> Entry {
        let record = LegacyVersioningRecord {
            v: LEGACY_VERSIONING_RECORD_VERSION,
            bucket: bucket.into(),
            bucket_created_ms: created_ms,
            status,
        };
        Entry::sign(
            signer,
            versioning_key(key_owner, "photos"),
            Some(serde_json::to_vec(&record).unwrap()),
            Hlc::new(unix_ms(), 0),
        )
        .unwrap()
    }

    #[test]
    fn a_versioning_setting_binds_its_owner_bucket_and_claim() {
        let owner = SecretKey::generate();
        let stranger = SecretKey::generate();
        let bucket = BucketRecord {
            v: BUCKET_RECORD_VERSION,
            name: "photos".into(),
            owner: owner.public().to_hex(),
            created_ms: 1_000,
            replication_factor: None,
            regions: Vec::new(),
        };
        let good = setting(
            &owner,
            &owner.public(),
            "photos",
            1_000,
            Versioning::Enabled,
        );
        assert_eq!(decode_versioning(&good, &bucket), Some(Versioning::Enabled));
        // A setting left from an earlier bucket of the same name does not apply.
        let stale = setting(&owner, &owner.public(), "photos", 999, Versioning::Enabled);
        assert_eq!(decode_versioning(&stale, &bucket), None);
        // Another bucket's setting stored under this key does not apply.
        let other = setting(&owner, &owner.public(), "other", 1_000, Versioning::Enabled);
        assert_eq!(decode_versioning(&other, &bucket), None);
        // A stranger's entry, even under its own key for the same bucket name, does not.
        let forged = setting(
            &stranger,
            &stranger.public(),
            "photos",
            1_000,
            Versioning::Suspended,
        );
        assert_eq!(decode_versioning(&forged, &bucket), None);
    }

    #[test]
    fn versioning_reads_the_setting_format_and_the_legacy_one() {
        use crate::bucket_settings::{BUCKET_SETTING_RECORD_VERSION, BucketSettingRecord};
        let owner = SecretKey::generate();
        let bucket = BucketRecord {
            v: BUCKET_RECORD_VERSION,
            name: "photos".into(),
            owner: owner.public().to_hex(),
            created_ms: 1_000,
            replication_factor: None,
            regions: Vec::new(),
        };
        let record = BucketSettingRecord {
            v: BUCKET_SETTING_RECORD_VERSION,
            kind: VERSIONING_KIND.into(),
            bucket: "photos".into(),
            bucket_created_ms: 1_000,
            document: serde_json::to_value(Versioning::Suspended).unwrap(),
        };
        let current = Entry::sign(
            &owner,
            versioning_key(&owner.public(), "photos"),
            Some(serde_json::to_vec(&record).unwrap()),
            Hlc::new(unix_ms(), 0),
        )
        .unwrap();
        assert_eq!(
            decode_versioning(&current, &bucket),
            Some(Versioning::Suspended)
        );
        // The legacy entry lives under the same registry key, so a new write replaces it.
        assert_eq!(
            versioning_key(&owner.public(), "photos"),
            claim_key("bucket-versioning", &owner.public(), "photos")
        );
        let legacy = setting(
            &owner,
            &owner.public(),
            "photos",
            1_000,
            Versioning::Enabled,
        );
        assert_eq!(
            decode_versioning(&legacy, &bucket),
            Some(Versioning::Enabled)
        );
    }
}
