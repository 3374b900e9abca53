//! Bucket access settings (ACL, policy, public access block) as registry entries signed by
//! the bucket's owner: `tenant/<T>/<kind>/<bucket>`, one entry per setting, so changing
//! one never overwrites another and never re-dates the bucket's claim.
//!
//! The registry only accepts entries under `tenant/<T>/` signed by `T`, and every node
//! verifies the signature, so no node can forge or alter a bucket's access setting; an
//! entry carries the `created_ms` of the bucket claim it was made for, so a setting left
//! over from a deleted bucket never applies to a successor of the same name. Removing a
//! setting is a signed tombstone.

use serde::Serialize;
use serde::de::DeserializeOwned;
use xnode_registry::Registry;
use xnode_registry::claims::claim_key;
use xnode_storage::buckets::owner_of;
use xnode_types::Hlc;

use s3s::{S3Result, s3_error};

use super::{Gateway, s3_err, unix_ms};
use crate::keys::AccessKey;

/// The registry kind of a bucket's ACL.
pub(crate) const ACL_KIND: &str = "bucket-acl";
/// The registry kind of a bucket's policy.
pub(crate) const POLICY_KIND: &str = "bucket-policy";
/// The registry kind of a bucket's public access block.
pub(crate) const PUBLIC_ACCESS_BLOCK_KIND: &str = "bucket-public-access-block";

/// Format version of a [`SettingRecord`].
const SETTING_RECORD_VERSION: u32 = 1;

/// The value of a bucket access setting entry.
#[derive(Serialize, serde::Deserialize)]
struct SettingRecord<T> {
    v: u32,
    /// Which setting this is, so an entry cannot be replayed as another kind.
    kind: String,
    bucket: String,
    /// The `created_ms` of the bucket claim this setting belongs to.
    bucket_created_ms: u64,
    setting: T,
}

/// The setting of `kind` for bucket `name`, if its owner set one for the bucket's current
/// claim.
pub(crate) fn bucket_setting<T: DeserializeOwned>(
    registry: &Registry,
    kind: &str,
    name: &str,
) -> Option<T> {
    let (owner, bucket) = owner_of(registry, name)?;
    let entry = registry.get(&claim_key(kind, &owner, name))?;
    if entry.owner != owner {
        return None;
    }
    let record: SettingRecord<T> = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (record.v == SETTING_RECORD_VERSION
        && record.kind == kind
        && record.bucket == name
        && record.bucket_created_ms == bucket.created_ms)
        .then_some(record.setting)
}

impl Gateway {
    /// Sets (or with `None` removes) bucket `name`'s setting of `kind`, signed with the
    /// owner's key, and spreads it to the other nodes.
    pub(super) async fn put_bucket_setting<T: Serialize>(
        &self,
        key: &AccessKey,
        kind: &str,
        name: &str,
        setting: Option<&T>,
    ) -> S3Result<()> {
        let Some((owner, bucket)) = owner_of(self.storage.registry(), name) else {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        };
        if owner != key.tenant {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not change bucket settings (it was created with --no-bucket-admin)"
            ));
        };
        let value = setting
            .map(|s| {
                serde_json::to_vec(&SettingRecord {
                    v: SETTING_RECORD_VERSION,
                    kind: kind.to_owned(),
                    bucket: name.to_owned(),
                    bucket_created_ms: bucket.created_ms,
                    setting: s,
                })
                .map_err(|e| s3_error!(InternalError, "cannot encode the bucket setting: {e}"))
            })
            .transpose()?;
        let entry_key = claim_key(kind, &owner, name);
        let previous = self.storage.registry().get(&entry_key);
        if value.is_none() && previous.as_ref().is_none_or(|e| e.value.is_none()) {
            return Ok(());
        }
        // Later than the setting it replaces, whatever this node's clock says.
        let previous = previous.map(|e| e.hlc).unwrap_or(Hlc::new(0, 0));
        let now = unix_ms();
        let hlc = if now > previous.wall_ms {
            Hlc::new(now, 0)
        } else {
            Hlc::new(previous.wall_ms, previous.logical.saturating_add(1))
        };
        let entry = xnode_registry::Entry::sign(&signer, entry_key, value, hlc)
            .map_err(|e| s3_error!(InternalError, "cannot sign the bucket setting: {e}"))?;
        self.storage
            .registry()
            .apply_tenant_entry(entry.clone())
            .map_err(|e| match e {
                xnode_registry::RegistryError::OwnerQuota { .. } => {
                    s3_err(xnode_storage::StorageError::QuotaExceeded(e.to_string()))
                }
                e => s3_error!(InvalidRequest, "bucket setting refused: {e}"),
            })?;
        self.storage.registry().spread(&entry).await;
        Ok(())
    }
}
