//! Keys scoped to their purpose: a tenant's per-bucket keys, the checks that let anyone
//! verify a bucket key against a tenant-signed record, and the keyrings storage operations
//! take.
//!
//! A tenant's [`DataKey`] never leaves its edge. Every new object's key is wrapped under the
//! [`BucketKey`] of its bucket, derived one-way from the data key and the bucket's name, so
//! a compute node given the keys of the buckets its work uses can read and write those
//! buckets and no other. A [`KeyCheck`] is a one-way hash of a bucket key: tenants sign it
//! into their deployment and job records, and a node accepts a bucket key only if its check
//! equals the signed one, so nobody but the tenant can substitute a key.
//!
//! The kind of key that wrapped an object key is bound into the wrap's associated data
//! (`BUCKET_WRAP_AAD_PREFIX`): a key wrapped under a bucket key never unwraps as one wrapped
//! under the tenant key, and the reverse. Objects written before bucket keys existed stay
//! wrapped under the tenant key; only an edge (which holds the data key) can read them.

use std::collections::BTreeMap;
use std::fmt;

use crate::StoreError;
use crate::crypto::{DataKey, ObjectKey, WrappedKey, unwrap_with, wrap_with};
use crate::manifest::wrap_aad;

/// blake3 key-derivation context of bucket keys; changing it changes every bucket key.
const BUCKET_KEY_CONTEXT: &str = "xnode 2026-11 bucket key v1";
/// blake3 key-derivation context of key checks; clients (the CLI, the Studio) use it too.
pub const KEY_CHECK_CONTEXT: &str = "xnode 2026-11 bucket key check v1";
/// Prefix of the associated data of object keys wrapped under a bucket key.
const BUCKET_WRAP_AAD_PREFIX: &[u8] = b"xnode bucket-key wrap v1\0";

/// The key that wraps the object keys of one bucket of one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketKey([u8; 32]);

impl BucketKey {
    /// Derives the key of `bucket` from the tenant's data key. Bucket names are at most 63
    /// bytes and the data key always 32, so `data key || name` is unambiguous.
    pub fn derive(data_key: &DataKey, bucket: &str) -> Self {
        let mut material = Vec::with_capacity(32 + bucket.len());
        material.extend_from_slice(&data_key.0);
        material.extend_from_slice(bucket.as_bytes());
        Self(blake3::derive_key(BUCKET_KEY_CONTEXT, &material))
    }

    /// The one-way check of this key that tenants sign into their records.
    pub fn check(&self) -> KeyCheck {
        KeyCheck(blake3::derive_key(KEY_CHECK_CONTEXT, &self.0))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|e| {
            // Never echo the input: it is meant to be a secret.
            StoreError::Crypto(format!(
                "a bucket key must be 64 hex digits ({} characters given): {e}",
                s.len()
            ))
        })?;
        Ok(Self(out))
    }

    /// Whether this key is the bucket key the tenant signed `check` for. Compares hashes
    /// of a secret, so timing reveals nothing about the key.
    pub fn matches(&self, check: &KeyCheck) -> bool {
        blake3::Hash::from(self.check().0) == blake3::Hash::from(check.0)
    }
}

impl fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BucketKey(<redacted>)")
    }
}

/// A one-way check of a bucket key (`blake3::derive_key(KEY_CHECK_CONTEXT, key)`), public.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyCheck(pub [u8; 32]);

impl KeyCheck {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| StoreError::Crypto(format!("a key check must be 64 hex digits: {e}")))?;
        Ok(Self(out))
    }
}

impl fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCheck({})", self.to_hex())
    }
}

/// The keys a storage operation wraps and unwraps object keys with. An edge uses the
/// tenant's [`DataKey`] (it derives bucket keys itself and still reads objects wrapped
/// under the tenant key); a compute node uses [`ScopedKeys`], which hold only the keys of
/// the buckets its work was granted.
pub trait Keyring: Send + Sync {
    /// Wraps the object key of a new object at `storage_key` in `bucket`, for an
    /// authenticated manifest. Fails with [`StoreError::KeyNotHeld`] for a bucket outside
    /// the keyring.
    fn wrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        key: &ObjectKey,
    ) -> Result<WrappedKey, StoreError>;

    /// Unwraps the object key of the object at `storage_key` in `bucket`.
    /// `authenticated` says whether its manifest carries a MAC (see [`wrap_aad`]). Fails
    /// with [`StoreError::KeyNotHeld`] when the keyring has no key that could open it.
    fn unwrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        authenticated: bool,
        wrapped: &WrappedKey,
    ) -> Result<ObjectKey, StoreError>;
}

/// The associated data of an object key wrapped under a bucket key.
fn bucket_wrap_aad(storage_key: &[u8], authenticated: bool) -> Vec<u8> {
    let mut aad = BUCKET_WRAP_AAD_PREFIX.to_vec();
    aad.extend_from_slice(&wrap_aad(storage_key, authenticated));
    aad
}

impl Keyring for DataKey {
    fn wrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        key: &ObjectKey,
    ) -> Result<WrappedKey, StoreError> {
        BucketKey::derive(self, bucket).wrap_object_key(bucket, storage_key, key)
    }

    fn unwrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        authenticated: bool,
        wrapped: &WrappedKey,
    ) -> Result<ObjectKey, StoreError> {
        // New objects are wrapped under the bucket key; objects written before bucket keys
        // existed under the tenant key itself. The associated data tells the two apart, so
        // at most one of these can succeed.
        BucketKey::derive(self, bucket)
            .unwrap_object_key(bucket, storage_key, authenticated, wrapped)
            .or_else(|_| unwrap_with(&self.0, wrapped, &wrap_aad(storage_key, authenticated)))
    }
}

impl Keyring for BucketKey {
    fn wrap_object_key(
        &self,
        _bucket: &str,
        storage_key: &[u8],
        key: &ObjectKey,
    ) -> Result<WrappedKey, StoreError> {
        wrap_with(&self.0, key, &bucket_wrap_aad(storage_key, true))
    }

    fn unwrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        authenticated: bool,
        wrapped: &WrappedKey,
    ) -> Result<ObjectKey, StoreError> {
        unwrap_with(
            &self.0,
            wrapped,
            &bucket_wrap_aad(storage_key, authenticated),
        )
        .map_err(|_| StoreError::KeyNotHeld {
            bucket: bucket.to_owned(),
            reason: "the bucket key does not open this object: it is server-side encrypted with SSE-KMS or SSE-C (whose keys only the tenant's edge derives, so a scoped grant cannot read it), it was written under the tenant key before per-bucket keys, or it is not this bucket's object; read it through the tenant's edge, or rewrite it there without SSE-KMS/SSE-C".into(),
        })
    }
}

/// The bucket keys granted to a compute node for one purpose (a deployment or a job), by
/// bucket name. Holds no tenant key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScopedKeys(BTreeMap<String, BucketKey>);

impl ScopedKeys {
    /// The keys of `buckets`, derived from the tenant's data key (at its edge).
    pub fn derive<'a>(data_key: &DataKey, buckets: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            buckets
                .into_iter()
                .map(|b| (b.to_owned(), BucketKey::derive(data_key, b)))
                .collect(),
        )
    }

    pub fn from_keys(keys: BTreeMap<String, BucketKey>) -> Self {
        Self(keys)
    }

    pub fn get(&self, bucket: &str) -> Option<&BucketKey> {
        self.0.get(bucket)
    }

    pub fn buckets(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &BucketKey)> {
        self.0.iter().map(|(b, k)| (b.as_str(), k))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether these are exactly the keys `checks` (bucket to signed check) describe: the
    /// same buckets, and every key matching its bucket's check.
    pub fn verify(&self, checks: &BTreeMap<String, KeyCheck>) -> Result<(), String> {
        if self.0.len() != checks.len() {
            return Err(format!(
                "{} bucket keys for a scope of {} buckets",
                self.0.len(),
                checks.len()
            ));
        }
        for (bucket, check) in checks {
            match self.0.get(bucket) {
                Some(key) if key.matches(check) => {}
                Some(_) => {
                    return Err(format!(
                        "the key of bucket {bucket:?} does not match the tenant's signed check"
                    ));
                }
                None => return Err(format!("no key for bucket {bucket:?} of the scope")),
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ScopedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Keyring for ScopedKeys {
    fn wrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        key: &ObjectKey,
    ) -> Result<WrappedKey, StoreError> {
        self.0
            .get(bucket)
            .ok_or_else(|| not_in_scope(bucket))?
            .wrap_object_key(bucket, storage_key, key)
    }

    fn unwrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        authenticated: bool,
        wrapped: &WrappedKey,
    ) -> Result<ObjectKey, StoreError> {
        self.0
            .get(bucket)
            .ok_or_else(|| not_in_scope(bucket))?
            .unwrap_object_key(bucket, storage_key, authenticated, wrapped)
    }
}

fn not_in_scope(bucket: &str) -> StoreError {
    StoreError::KeyNotHeld {
        bucket: bucket.to_owned(),
        reason: "the bucket is not in the signed storage scope of this work".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::wrap_key;

    const PATH: &[u8] = b"tenant/photos/cat.jpg";

    #[test]
    fn bucket_keys_are_one_way_distinct_and_checkable() {
        let data = DataKey::derive(&[7u8; 32]);
        let photos = BucketKey::derive(&data, "photos");
        assert_eq!(photos, BucketKey::derive(&data, "photos"));
        assert_ne!(photos, BucketKey::derive(&data, "photo"));
        assert_ne!(
            photos,
            BucketKey::derive(&DataKey::derive(&[8u8; 32]), "photos")
        );
        assert_ne!(photos.0, data.0);
        assert_eq!(BucketKey::from_hex(&photos.to_hex()).unwrap(), photos);
        assert!(!format!("{photos:?}").contains(&photos.to_hex()[..8]));

        let check = photos.check();
        assert_ne!(check.0, photos.0);
        assert!(photos.matches(&check));
        assert!(!BucketKey::derive(&data, "other").matches(&check));
        assert_eq!(KeyCheck::from_hex(&check.to_hex()).unwrap(), check);
        assert!(KeyCheck::from_hex("zz").is_err());
    }

    #[test]
    fn derivation_matches_its_definition() {
        // Clients (the Studio's JavaScript, the CLI) compute the same values from the same
        // definition; this pins it.
        let data = DataKey([1u8; 32]);
        let mut material = vec![1u8; 32];
        material.extend_from_slice(b"data");
        let expected = blake3::derive_key("xnode 2026-11 bucket key v1", &material);
        assert_eq!(BucketKey::derive(&data, "data").0, expected);
        assert_eq!(
            BucketKey::derive(&data, "data").check().0,
            blake3::derive_key("xnode 2026-11 bucket key check v1", &expected)
        );
    }

    #[test]
    fn scoped_keys_verify_only_against_their_signed_checks() {
        let data = DataKey::derive(&[1u8; 32]);
        let keys = ScopedKeys::derive(&data, ["in", "out"]);
        let checks: BTreeMap<String, KeyCheck> = ["in", "out"]
            .iter()
            .map(|b| (b.to_string(), BucketKey::derive(&data, b).check()))
            .collect();
        assert!(keys.verify(&checks).is_ok());

        // An attacker's key for a signed bucket.
        let forged = ScopedKeys::derive(&DataKey::derive(&[2u8; 32]), ["in", "out"]);
        assert!(forged.verify(&checks).is_err());
        // A key too many, or too few.
        assert!(
            ScopedKeys::derive(&data, ["in", "out", "x"])
                .verify(&checks)
                .is_err()
        );
        assert!(ScopedKeys::derive(&data, ["in"]).verify(&checks).is_err());
        // The right number of keys, one for a bucket outside the scope.
        assert!(
            ScopedKeys::derive(&data, ["in", "x"])
                .verify(&checks)
                .is_err()
        );
    }

    #[test]
    fn the_edge_reads_both_kinds_and_a_bucket_keyring_only_its_own() {
        let data = DataKey::derive(&[3u8; 32]);
        let object = ObjectKey::generate();

        // A new object, wrapped at the edge: the edge and the bucket's key open it.
        let wrapped = data.wrap_object_key("photos", PATH, &object).unwrap();
        assert_eq!(
            data.unwrap_object_key("photos", PATH, true, &wrapped)
                .unwrap(),
            object
        );
        let scoped = ScopedKeys::derive(&data, ["photos"]);
        assert_eq!(
            scoped
                .unwrap_object_key("photos", PATH, true, &wrapped)
                .unwrap(),
            object
        );
        // Not as an unauthenticated manifest's key, not under the tenant key alone.
        assert!(
            scoped
                .unwrap_object_key("photos", PATH, false, &wrapped)
                .is_err()
        );
        assert!(crate::crypto::unwrap_key(&data, &wrapped, &wrap_aad(PATH, true)).is_err());

        // Written by a compute node with the bucket key: the edge reads it.
        let by_node = scoped.wrap_object_key("photos", PATH, &object).unwrap();
        assert_eq!(
            data.unwrap_object_key("photos", PATH, true, &by_node)
                .unwrap(),
            object
        );

        // A legacy object, wrapped under the tenant key: the edge reads it, the bucket
        // key is refused with a typed error.
        let legacy = wrap_key(&data, &object, &wrap_aad(PATH, true)).unwrap();
        assert_eq!(
            data.unwrap_object_key("photos", PATH, true, &legacy)
                .unwrap(),
            object
        );
        assert!(matches!(
            scoped.unwrap_object_key("photos", PATH, true, &legacy),
            Err(StoreError::KeyNotHeld { .. })
        ));

        // Another bucket: neither wrapping nor unwrapping.
        assert!(matches!(
            scoped.wrap_object_key("secrets", b"tenant/secrets/a", &object),
            Err(StoreError::KeyNotHeld { .. })
        ));
        let other = data
            .wrap_object_key("secrets", b"tenant/secrets/a", &object)
            .unwrap();
        assert!(matches!(
            scoped.unwrap_object_key("secrets", b"tenant/secrets/a", true, &other),
            Err(StoreError::KeyNotHeld { .. })
        ));
        // Even a bucket key presented for the other bucket's name fails: it is not that
        // bucket's key.
        let photos_key = scoped.get("photos").unwrap();
        assert!(
            photos_key
                .unwrap_object_key("secrets", b"tenant/secrets/a", true, &other)
                .is_err()
        );
    }
}
