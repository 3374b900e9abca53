//! Bucket settings: owner-signed registry entries, one per kind
//! (`tenant/<T>/bucket-<kind>/<N>`), whose value is a [`BucketSettingRecord`] holding a
//! JSON document the layer above defines (the S3 gateway keeps access settings, CORS,
//! lifecycle, default encryption and object-lock configuration this way). Versioning is
//! one too (`crate::buckets::VERSIONING_KIND`), with the one rule storage itself enforces
//! on its document: no way back to unversioned.
//!
//! Storage checks what makes a setting the owner's setting for this bucket: the entry is
//! signed by the bucket's owner, sits under the owner's key for that kind and bucket, and
//! names the bucket claim it belongs to (`bucket_created_ms`), so a setting left from a
//! deleted bucket never applies to a new bucket of the same name. What the document says
//! is checked by the layer that reads it. Removing a setting is a signed tombstone.

use serde::{Deserialize, Serialize};
use xnode_registry::claims::{check_claim_clock, claim_key};
use xnode_registry::{Entry, Registry};
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::buckets::{BucketRecord, owner_of};
use crate::{Storage, StorageError};

/// Format version of [`BucketSettingRecord`].
pub const BUCKET_SETTING_RECORD_VERSION: u32 = 1;

/// The longest setting kind name.
const MAX_KIND_LEN: usize = 32;

/// The value of a bucket setting entry, signed by the bucket's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketSettingRecord {
    /// Format version of this record.
    pub v: u32,
    /// The setting's kind (`cors`, `lifecycle`, ...), repeated so a record moved under
    /// another kind's key does not decode.
    pub kind: String,
    pub bucket: String,
    /// The `created_ms` of the bucket claim this setting belongs to.
    pub bucket_created_ms: u64,
    /// The setting itself, in the format of the layer that owns the kind.
    pub document: serde_json::Value,
}

fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The registry key of tenant `owner`'s setting `kind` for bucket `name`.
pub fn setting_key(kind: &str, owner: &PublicKeyBytes, name: &str) -> String {
    claim_key(&format!("bucket-{kind}"), owner, name)
}

/// Decodes a setting entry and checks it against the bucket it must belong to; `None`
/// for a tombstone or anything that is not the owner's setting of this kind and bucket.
pub fn decode_setting(
    entry: &Entry,
    kind: &str,
    bucket: &BucketRecord,
) -> Option<serde_json::Value> {
    let value = entry.value.as_deref()?;
    let record: BucketSettingRecord = serde_json::from_slice(value).ok()?;
    (record.v == BUCKET_SETTING_RECORD_VERSION
        && record.kind == kind
        && record.bucket == bucket.name
        && record.bucket_created_ms == bucket.created_ms
        && entry.owner.to_hex() == bucket.owner
        && entry.key == setting_key(kind, &entry.owner, &bucket.name))
    .then_some(record.document)
}

/// Setting `kind` of bucket `name`, if the bucket exists and its owner set one.
pub fn setting_of(registry: &Registry, name: &str, kind: &str) -> Option<serde_json::Value> {
    let (owner, record) = owner_of(registry, name)?;
    let entry = registry.get(&setting_key(kind, &owner, name))?;
    decode_setting(&entry, kind, &record)
}

impl Storage {
    /// Sets (or, with a signed tombstone, removes) setting `kind` of a bucket the tenant
    /// owns. Returns the applied entry, for gossip.
    pub fn set_bucket_setting(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        kind: &str,
        entry: Entry,
    ) -> Result<Entry, StorageError> {
        if !valid_kind(kind) {
            return Err(StorageError::BadRequest(format!(
                "{kind:?} is not a bucket setting kind"
            )));
        }
        self.require_bucket(tenant, name)?;
        let Some((_, bucket)) = owner_of(&self.registry, name) else {
            return Err(StorageError::NoSuchBucket(name.to_owned()));
        };
        if entry.owner != *tenant || entry.key != setting_key(kind, tenant, name) {
            return Err(StorageError::BadRequest(
                "the signed bucket setting does not match the bucket and tenant".into(),
            ));
        }
        check_claim_clock(&entry, unix_ms())
            .map_err(|e| StorageError::BadRequest(format!("the signed bucket change: {e}")))?;
        if !entry.is_tombstone() && decode_setting(&entry, kind, &bucket).is_none() {
            return Err(StorageError::BadRequest(
                "the signed bucket setting is malformed or names another bucket".into(),
            ));
        }
        self.registry
            .apply_tenant_entry(entry.clone())
            .map_err(|e| match e {
                xnode_registry::RegistryError::OwnerQuota { .. } => {
                    StorageError::QuotaExceeded(e.to_string())
                }
                e => StorageError::BadRequest(format!("bucket setting refused: {e}")),
            })?;
        Ok(entry)
    }

    /// Setting `kind` of a bucket the tenant owns, if it has one.
    pub fn bucket_setting(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        kind: &str,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        self.require_bucket(tenant, name)?;
        Ok(setting_of(&self.registry, name, kind))
    }
}

#[cfg(test)]
mod tests {
    use xnode_types::{Hlc, SecretKey};

    use super::*;
    use crate::buckets::BUCKET_RECORD_VERSION;

    fn setting(signer: &SecretKey, kind: &str, bucket: &str, created_ms: u64) -> Entry {
        let record = BucketSettingRecord {
            v: BUCKET_SETTING_RECORD_VERSION,
            kind: kind.into(),
            bucket: bucket.into(),
            bucket_created_ms: created_ms,
            document: serde_json::json!({"rules": []}),
        };
        Entry::sign(
            signer,
            setting_key("cors", &signer.public(), "photos"),
            Some(serde_json::to_vec(&record).unwrap()),
            Hlc::new(unix_ms(), 0),
        )
        .unwrap()
    }

    #[test]
    fn a_setting_binds_its_owner_kind_bucket_and_claim() {
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
        let good = setting(&owner, "cors", "photos", 1_000);
        assert!(decode_setting(&good, "cors", &bucket).is_some());
        // Read as another kind, it does not apply.
        assert!(decode_setting(&good, "lifecycle", &bucket).is_none());
        // Left from an earlier bucket of the same name, or naming another bucket.
        assert!(decode_setting(&setting(&owner, "cors", "photos", 999), "cors", &bucket).is_none());
        assert!(
            decode_setting(&setting(&owner, "cors", "other", 1_000), "cors", &bucket).is_none()
        );
        // A record of another kind stored under this kind's key.
        assert!(
            decode_setting(
                &setting(&owner, "lifecycle", "photos", 1_000),
                "cors",
                &bucket
            )
            .is_none()
        );
        // A stranger's entry, even under its own key for the same bucket name.
        assert!(
            decode_setting(
                &setting(&stranger, "cors", "photos", 1_000),
                "cors",
                &bucket
            )
            .is_none()
        );
    }

    #[test]
    fn kinds_are_plain_names() {
        assert!(valid_kind("cors"));
        assert!(valid_kind("object-lock"));
        assert!(!valid_kind(""));
        assert!(!valid_kind("a/b"));
        assert!(!valid_kind("CORS"));
    }
}
