//! SSE-KMS (`x-amz-server-side-encryption: aws:kms`) with tenant-scoped KMS keys.
//!
//! A KMS key is a tenant-signed registry entry (`xnode_registry::kms`) naming a key id and
//! its state; it holds no key material. The data key that wraps the keys of an object
//! written under KMS key `K` is derived at the tenant's edge from the tenant's data key and
//! `K`'s id ([`KmsKey::data_key`]), so per-bucket keys are then derived from it as for any
//! object: neither the key id nor a compute node's bucket key opens such an object. The
//! object's signed metadata records the key id ([`SSE_KMS`]), so reads, copies and
//! completions derive the same key and check that the key still exists and is enabled.
//!
//! A key the tenant never made, or another tenant's, is `400 KMS.NotFoundException` (as
//! AWS answers), so a typo cannot encrypt under a key nobody made; a disabled key is `400
//! KMS.DisabledException` for writes and for reads of its objects. Disabling is a policy
//! check every edge makes, not crypto-shredding: the material can always be derived again
//! by whoever holds the tenant's data key (see SECURITY.md).

use std::collections::BTreeMap;

use s3s::dto::ServerSideEncryption;
use s3s::{S3Result, s3_error};
use xnode_registry::kms::KmsKeyState;
use xnode_store::DataKey;

use super::Gateway;
use super::sse::{self, AES256, CustomerKey};
use crate::keys::AccessKey;

/// The metadata entry that makes an object (or an upload record) SSE-KMS:
/// `1:<key id>` (format 1).
pub(super) const SSE_KMS: &str = ":sse-kms";
/// The `x-amz-server-side-encryption` value of SSE-KMS.
pub(super) const AWS_KMS: &str = "aws:kms";
/// Format of the [`SSE_KMS`] entry.
const ENTRY_FORMAT: &str = "1";
/// blake3 key-derivation context of the data key of an SSE-KMS object; changing it makes
/// every SSE-KMS object unreadable.
const DATA_KEY_CONTEXT: &str = "xnode 2026-11 sse-kms data key v1";

/// An existing, enabled KMS key of the requesting tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KmsKey {
    id: String,
}

impl KmsKey {
    /// The key id (what the object's metadata and the response headers carry).
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The data key that wraps the keys of objects under this KMS key, for the tenant whose
    /// data key is `tenant`. The data key is 32 bytes, so `data key || id` is unambiguous;
    /// the derivation is one-way, so it reveals neither the tenant's key nor another KMS
    /// key's.
    pub(super) fn data_key(&self, tenant: &DataKey) -> DataKey {
        let mut material = Vec::with_capacity(32 + self.id.len());
        material.extend_from_slice(&tenant.0);
        material.extend_from_slice(self.id.as_bytes());
        DataKey(blake3::derive_key(DATA_KEY_CONTEXT, &material))
    }
}

fn kms_error(code: &str, message: String) -> s3s::S3Error {
    let mut e =
        s3s::S3Error::with_message(s3s::S3ErrorCode::Custom(code.to_owned().into()), message);
    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
    e
}

/// AWS's answer for a key it does not know.
pub(super) fn not_found(name: &str) -> s3s::S3Error {
    kms_error(
        "KMS.NotFoundException",
        format!(
            "Invalid keyId {name:?}: this tenant has no such KMS key (create one with `xnode kms create-key`)"
        ),
    )
}

/// AWS's answer for a disabled key.
fn disabled(id: &str) -> s3s::S3Error {
    kms_error(
        "KMS.DisabledException",
        format!("The KMS key {id} is disabled"),
    )
}

/// The KMS key id an object's (or upload record's) metadata names, if it is SSE-KMS. A
/// malformed entry names the empty id, which no key has, so it is refused, never read
/// as a plain object.
pub(super) fn stored_key_id(meta: &BTreeMap<String, String>) -> Option<&str> {
    meta.get(SSE_KMS).map(|v| {
        v.split_once(':')
            .filter(|(format, _)| *format == ENTRY_FORMAT)
            .map_or("", |(_, id)| id)
    })
}

/// Marks `meta` for KMS key `kms` (or for none: a copy must not inherit its source's).
pub(super) fn mark(meta: &mut BTreeMap<String, String>, kms: Option<&KmsKey>) {
    match kms {
        Some(k) => {
            meta.insert(SSE_KMS.to_owned(), format!("{ENTRY_FORMAT}:{}", k.id));
        }
        None => {
            meta.remove(SSE_KMS);
        }
    }
}

impl Gateway {
    /// The requesting tenant's usable KMS key named `name` (a key id or `alias/NAME`).
    pub(super) fn kms_key(&self, key: &AccessKey, name: &str) -> S3Result<KmsKey> {
        let record = self
            .storage
            .registry()
            .kms_key(&key.tenant, name.trim())
            .ok_or_else(|| not_found(name))?;
        match record.state {
            KmsKeyState::Enabled => Ok(KmsKey { id: record.id }),
            KmsKeyState::Disabled => Err(disabled(&record.id)),
        }
    }

    /// The KMS key a new object of `bucket` is written under: the one the request names
    /// (`x-amz-server-side-encryption: aws:kms` and the key id, as headers or form fields),
    /// else the bucket's default if it is SSE-KMS and the request asks for no other
    /// encryption. Refuses what S3 refuses: a key id without `aws:kms`, an unknown
    /// algorithm, an unknown or disabled key. `aws:kms` without a key id names the
    /// tenant's default key `aws/s3`, which does not exist until AWS-style implicit keys
    /// are decided on (see docs/decisions/2026-11-27-sse-kms-with-tenant-derived-keys.md).
    pub(super) fn write_kms_key(
        &self,
        key: &AccessKey,
        bucket: &str,
        sse: Option<&ServerSideEncryption>,
        kms_key_id: Option<&str>,
        customer: Option<&CustomerKey>,
    ) -> S3Result<Option<KmsKey>> {
        sse::check_write(customer, sse)?;
        match sse.map(ServerSideEncryption::as_str) {
            Some(AWS_KMS) => match kms_key_id {
                Some(name) => self.kms_key(key, name).map(Some),
                None => Err(not_found("aws/s3")),
            },
            Some("aws:kms:dsse") => Err(s3_error!(
                InvalidArgument,
                "Dual-layer SSE-KMS (aws:kms:dsse) is not supported; use aws:kms"
            )),
            Some(AES256) | None if kms_key_id.is_some() => Err(s3_error!(
                InvalidArgument,
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
            )),
            Some(AES256) => Ok(None),
            None if customer.is_some() => Ok(None),
            None => {
                match super::bucket_encryption::default_kms_key(self.storage.registry(), bucket) {
                    Some(name) => self.kms_key(key, &name).map(Some),
                    None => Ok(None),
                }
            }
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported: {other:?}"
            )),
        }
    }

    /// The data key that opens an object whose metadata is `meta`, for a request that
    /// carried customer key `given` (or none): an SSE-KMS object's key if its KMS key is
    /// still usable (a customer key is not applicable to it), else as for SSE-C and plain
    /// objects ([`sse::opening_key`]).
    pub(super) fn opening_key(
        &self,
        key: &AccessKey,
        meta: &BTreeMap<String, String>,
        given: Option<&CustomerKey>,
    ) -> S3Result<DataKey> {
        match stored_key_id(meta) {
            Some(_) if given.is_some() => Err(s3_error!(
                InvalidRequest,
                "The encryption parameters are not applicable to this object."
            )),
            Some(id) => Ok(self.kms_key(key, id)?.data_key(&key.data_key())),
            None => sse::opening_key(&key.data_key(), meta, given),
        }
    }

    /// The data key that re-wraps an object's keys when only its metadata changes (tags,
    /// ACL, lock, version bookkeeping): its KMS key's, checked like a read, for an SSE-KMS
    /// object, so the rewritten object stays under its KMS key; otherwise the tenant's
    /// (an SSE-C object then fails to open, as it needs the customer key).
    pub(super) fn rewrap_key(
        &self,
        key: &AccessKey,
        meta: &BTreeMap<String, String>,
    ) -> S3Result<DataKey> {
        match stored_key_id(meta) {
            Some(id) => Ok(self.kms_key(key, id)?.data_key(&key.data_key())),
            None => Ok(key.data_key()),
        }
    }

    /// The data key for more data of a multipart upload: the upload's KMS key if it was
    /// created with one (parts bring no key of their own), else as for SSE-C and plain
    /// uploads ([`sse::upload_key`]).
    pub(super) fn upload_key(
        &self,
        key: &AccessKey,
        upload_sse_c: Option<&str>,
        upload_kms: Option<&str>,
        given: Option<&CustomerKey>,
    ) -> S3Result<DataKey> {
        match upload_kms {
            Some(_) if given.is_some() => Err(s3_error!(
                InvalidRequest,
                "The multipart upload was initiated with SSE-KMS; its parts cannot use a customer-provided key."
            )),
            Some(id) => Ok(self.kms_key(key, id)?.data_key(&key.data_key())),
            None => sse::upload_key(&key.data_key(), upload_sse_c, given),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_data_keys_are_per_key_and_per_tenant() {
        let tenant = DataKey([7; 32]);
        let a = KmsKey {
            id: "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0".into(),
        };
        let b = KmsKey {
            id: "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f1".into(),
        };
        assert_eq!(a.data_key(&tenant).0, a.data_key(&tenant).0);
        assert_ne!(a.data_key(&tenant).0, tenant.0);
        assert_ne!(a.data_key(&tenant).0, b.data_key(&tenant).0);
        assert_ne!(a.data_key(&tenant).0, a.data_key(&DataKey([8; 32])).0);
        // Pinned: changing the derivation makes every SSE-KMS object unreadable.
        let mut material = vec![7u8; 32];
        material.extend_from_slice(a.id.as_bytes());
        assert_eq!(
            a.data_key(&tenant).0,
            blake3::derive_key("xnode 2026-11 sse-kms data key v1", &material)
        );
    }

    #[test]
    fn the_metadata_entry_names_the_key_or_nothing_usable() {
        let a = KmsKey {
            id: "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0".into(),
        };
        let mut meta = BTreeMap::new();
        assert_eq!(stored_key_id(&meta), None);
        mark(&mut meta, Some(&a));
        assert_eq!(stored_key_id(&meta), Some(a.id()));
        mark(&mut meta, None);
        assert_eq!(stored_key_id(&meta), None);
        for bad in ["", "2:x", "x"] {
            meta.insert(SSE_KMS.to_owned(), bad.to_owned());
            assert_eq!(stored_key_id(&meta), Some(""), "{bad:?}");
        }
    }

    #[test]
    fn a_scoped_grant_gets_a_clear_refusal_for_a_kms_object() {
        use xnode_store::{Keyring, ObjectKey, ScopedKeys, StoreError};
        let tenant = DataKey([5; 32]);
        let kms = KmsKey {
            id: "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0".into(),
        };
        let object = ObjectKey::generate();
        let wrapped = kms
            .data_key(&tenant)
            .wrap_object_key("photos", b"t/photos/k", &object)
            .unwrap();
        // The edge, deriving the KMS key's data key, opens it.
        assert!(
            kms.data_key(&tenant)
                .unwrap_object_key("photos", b"t/photos/k", true, &wrapped)
                .is_ok()
        );
        // A compute node's scoped grant of the bucket (never the tenant's data key) cannot,
        // and says why.
        let grant = ScopedKeys::derive(&tenant, ["photos"]);
        match grant.unwrap_object_key("photos", b"t/photos/k", true, &wrapped) {
            Err(StoreError::KeyNotHeld { reason, .. }) => {
                assert!(reason.contains("SSE-KMS"), "{reason}");
            }
            other => panic!("expected KeyNotHeld, got {:?}", other.map(|_| ())),
        }
        // Nor does the tenant's data key alone open it.
        assert!(
            tenant
                .unwrap_object_key("photos", b"t/photos/k", true, &wrapped)
                .is_err()
        );
    }
}
