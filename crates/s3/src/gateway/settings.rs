//! Bucket settings the gateway keeps as owner-signed registry entries
//! (`xnode_storage::bucket_settings`, `tenant/<T>/bucket-<kind>/<bucket>`): access
//! settings (ACL, policy, public access block), CORS rules, lifecycle rules, versioning,
//! default encryption, bucket tags and the object-lock configuration. One entry per
//! setting, so changing one never overwrites another and never re-dates the bucket's
//! claim; each names its kind, its bucket and the `created_ms` of the bucket claim it was
//! made for, so it can be neither replayed as another setting nor applied to a successor
//! of a deleted bucket. Like every bucket change, setting one needs a bucket admin key
//! (one that holds the tenant's signing key).

use s3s::{S3Result, s3_error};
use serde::Serialize;
use serde::de::DeserializeOwned;
use xnode_registry::Registry;
use xnode_storage::bucket_settings::{
    BUCKET_SETTING_RECORD_VERSION, BucketSettingRecord, setting_key, setting_of,
};
use xnode_storage::buckets::owner_of;
use xnode_types::{Hlc, PublicKeyBytes};

use super::{Gateway, s3_err, unix_ms};
use crate::keys::AccessKey;

/// The setting kind of a bucket's ACL.
pub(crate) const ACL_KIND: &str = "acl";
/// The setting kind of a bucket's policy.
pub(crate) const POLICY_KIND: &str = "policy";
/// The setting kind of a bucket's public access block.
pub(crate) const PUBLIC_ACCESS_BLOCK_KIND: &str = "public-access-block";

/// The setting of `kind` for bucket `name`, whoever asks (access checks read the settings
/// of buckets the requester does not own), if its owner set one for the bucket's current
/// claim.
pub(crate) fn bucket_setting<T: DeserializeOwned>(
    registry: &Registry,
    kind: &str,
    name: &str,
) -> Option<T> {
    setting_of(registry, name, kind).and_then(|document| decode_document(document, kind))
}

impl Gateway {
    /// Sets (or with `None` removes) an access setting of bucket `name`; only its owner may.
    pub(super) async fn put_bucket_setting<T: Serialize>(
        &self,
        key: &AccessKey,
        kind: &str,
        name: &str,
        setting: Option<&T>,
    ) -> S3Result<()> {
        let Some((owner, _)) = owner_of(self.storage.registry(), name) else {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        };
        if owner != key.tenant {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        self.store_bucket_setting(key, name, kind, setting).await
    }

    /// Signs and applies setting `kind` of `bucket` (`None` removes it), then spreads it.
    pub(super) async fn store_bucket_setting<T: Serialize>(
        &self,
        key: &AccessKey,
        bucket: &str,
        kind: &str,
        document: Option<&T>,
    ) -> S3Result<()> {
        let entry = self.sign_bucket_setting(key, bucket, kind, document)?;
        let applied = self
            .storage()
            .set_bucket_setting(&key.tenant, bucket, kind, entry)
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        Ok(())
    }

    /// The owner-signed entry that sets `kind` of `bucket` to `document` (`None`: a
    /// tombstone), dated later than the entry it replaces; not yet applied.
    pub(super) fn sign_bucket_setting<T: Serialize>(
        &self,
        key: &AccessKey,
        bucket: &str,
        kind: &str,
        document: Option<&T>,
    ) -> S3Result<xnode_registry::Entry> {
        self.require_bucket(&key.tenant, bucket)?;
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not change bucket settings (it was created with --no-bucket-admin)"
            ));
        };
        let Some((_, record)) = owner_of(self.storage.registry(), bucket) else {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        };
        let value = match document {
            Some(document) => {
                let document = serde_json::to_value(document).map_err(|e| {
                    s3_error!(
                        InternalError,
                        "cannot encode the bucket's {kind} setting: {e}"
                    )
                })?;
                let record = BucketSettingRecord {
                    v: BUCKET_SETTING_RECORD_VERSION,
                    kind: kind.to_owned(),
                    bucket: bucket.to_owned(),
                    bucket_created_ms: record.created_ms,
                    document,
                };
                Some(serde_json::to_vec(&record).map_err(|e| {
                    s3_error!(
                        InternalError,
                        "cannot encode the bucket's {kind} setting: {e}"
                    )
                })?)
            }
            None => None,
        };
        let entry_key = setting_key(kind, &key.tenant, bucket);
        // Later than the setting it replaces, whatever this node's clock says.
        let previous = self
            .storage
            .registry()
            .get(&entry_key)
            .map(|e| e.hlc)
            .unwrap_or(Hlc::new(0, 0));
        let now = unix_ms();
        let hlc = if now > previous.wall_ms {
            Hlc::new(now, 0)
        } else {
            Hlc::new(previous.wall_ms, previous.logical.saturating_add(1))
        };
        xnode_registry::Entry::sign(&signer, entry_key, value, hlc).map_err(|e| {
            s3_error!(
                InternalError,
                "cannot sign the bucket's {kind} setting: {e}"
            )
        })
    }

    /// Setting `kind` of a bucket the tenant owns, if it has a readable one.
    pub(super) fn load_bucket_setting<T: DeserializeOwned>(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        kind: &str,
    ) -> S3Result<Option<T>> {
        self.require_bucket(tenant, bucket)?;
        let document = self
            .storage()
            .bucket_setting(tenant, bucket, kind)
            .map_err(s3_err)?;
        Ok(document.and_then(|d| decode_document(d, kind)))
    }
}

/// A stored setting document as the gateway's type. One that does not decode (written by
/// a newer gateway, say) is treated as absent and logged, never half-applied.
pub(crate) fn decode_document<T: DeserializeOwned>(
    document: serde_json::Value,
    kind: &str,
) -> Option<T> {
    match serde_json::from_value(document) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(kind, error = %e, "a bucket setting does not decode; ignored");
            None
        }
    }
}
