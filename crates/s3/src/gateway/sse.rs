//! Server-side encryption as S3 clients ask for it.
//!
//! Every object is encrypted at its edge whatever the request says (see
//! `docs/decisions/2026-11-21-encryption-at-the-edge-with-a-client-data-key.md`), so SSE-S3
//! (`x-amz-server-side-encryption: AES256`) is what every object already has and is
//! answered as such.
//!
//! SSE-C (`x-amz-server-side-encryption-customer-*`) is real: the object's keys are
//! wrapped under a data key derived from the tenant's data key *and* the customer's key
//! ([`CustomerKey::data_key`]), so neither alone opens the object: not the tenant's edge
//! without the customer key, not a compute node holding the bucket's key, not a storage
//! node. The customer key itself is never stored; the object's sealed metadata keeps a
//! salted verifier keyed by the tenant's data key ([`CustomerKey::verifier`]), so a
//! request with a wrong key or without one is refused before anything is decrypted, and
//! nobody without the tenant's data key can test guesses against it.
//!
//! SSE-KMS is built on tenant-scoped KMS keys in `gateway::kms`; this module marks and
//! answers for it alongside SSE-C.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::Digest as _;
use s3s::{S3Result, s3_error};
use xnode_store::{DataKey, Keyring, ObjectKey, StoreError, WrappedKey};

use super::kms::{AWS_KMS, KmsKey};

/// The metadata entry that makes an object SSE-C: `1:<salt hex>:<verifier hex>` (format 1).
pub(super) const SSE_C: &str = ":sse-c";
/// The only algorithm S3 offers for SSE-C and SSE-S3.
pub(super) const AES256: &str = "AES256";

/// blake3 key-derivation context of the data key of an SSE-C object; changing it makes
/// every SSE-C object unreadable.
const DATA_KEY_CONTEXT: &str = "xnode 2026-11 sse-c data key v1";
/// blake3 key-derivation context of the key that makes customer-key verifiers.
const VERIFIER_CONTEXT: &str = "xnode 2026-11 sse-c key verifier v1";
/// Format of the verifier entry.
const VERIFIER_FORMAT: &str = "1";

/// A customer-provided key (SSE-C) from a request, validated as S3 validates it.
pub(super) struct CustomerKey {
    key: [u8; 32],
    /// The key's MD5, base64, as the client sent it (S3 echoes it back).
    md5: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerKey")
            .field("md5", &self.md5)
            .finish_non_exhaustive()
    }
}

fn invalid(message: &str) -> s3s::S3Error {
    s3_error!(InvalidArgument, "{message}")
}

impl CustomerKey {
    /// The customer key named by a request's three SSE-C values (headers, or form fields of
    /// a POST upload), `None` if it names none. Any inconsistency is S3's `400`.
    pub(super) fn parse(
        algorithm: Option<&str>,
        key: Option<&str>,
        md5: Option<&str>,
    ) -> S3Result<Option<Self>> {
        let Some(algorithm) = algorithm else {
            if key.is_some() || md5.is_some() {
                return Err(invalid(
                    "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
                ));
            }
            return Ok(None);
        };
        if algorithm.trim() != AES256 {
            return Err(s3_error!(
                InvalidEncryptionAlgorithmError,
                "The encryption request you specified is not valid. The valid value is AES256."
            ));
        }
        let Some(key) = key else {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            ));
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let raw: [u8; 32] = engine
            .decode(key.trim())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| {
                invalid("The secret key was invalid for the specified algorithm (it must be 32 bytes, base64).")
            })?;
        let Some(md5) = md5 else {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            ));
        };
        let computed = engine.encode(md5::Md5::digest(raw));
        if md5.trim() != computed {
            return Err(invalid(
                "The calculated MD5 hash of the key did not match the hash that was provided.",
            ));
        }
        Ok(Some(Self {
            key: raw,
            md5: computed,
        }))
    }

    /// The key's MD5 (base64), which S3 returns in `x-amz-server-side-encryption-customer-key-md5`.
    pub(super) fn md5(&self) -> &str {
        &self.md5
    }

    /// The data key that wraps the keys of an object encrypted with this customer key for
    /// the tenant whose data key is `tenant`. Both are 32 bytes, so the concatenation is
    /// unambiguous; the derivation is one-way, so holding it reveals neither input.
    pub(super) fn data_key(&self, tenant: &DataKey) -> DataKey {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(&tenant.0);
        material[32..].copy_from_slice(&self.key);
        DataKey(blake3::derive_key(DATA_KEY_CONTEXT, &material))
    }

    fn tag(&self, tenant: &DataKey, salt: &[u8]) -> blake3::Hash {
        let mac_key = blake3::derive_key(VERIFIER_CONTEXT, &tenant.0);
        let mut hasher = blake3::Hasher::new_keyed(&mac_key);
        hasher.update(salt);
        hasher.update(&self.key);
        hasher.finalize()
    }

    /// A fresh verifier of this key for an object's metadata: a random salt and a MAC of
    /// the key under a key derived from the tenant's data key. The salt keeps two objects
    /// under the same customer key from showing it.
    pub(super) fn verifier(&self, tenant: &DataKey) -> String {
        let salt: [u8; 16] = rand::random();
        format!(
            "{VERIFIER_FORMAT}:{}:{}",
            hex::encode(salt),
            self.tag(tenant, &salt).to_hex()
        )
    }

    /// Whether `verifier` (an object's [`SSE_C`] entry) was made from this key. Compares
    /// `blake3::Hash`es, which compare in constant time.
    pub(super) fn matches(&self, tenant: &DataKey, verifier: &str) -> bool {
        let mut fields = verifier.split(':');
        let (Some(VERIFIER_FORMAT), Some(salt), Some(tag), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let (Ok(salt), Ok(tag)) = (hex::decode(salt), blake3::Hash::from_hex(tag)) else {
            return false;
        };
        self.tag(tenant, &salt) == tag
    }
}

/// The SSE-C verifier an object's metadata carries, if it is an SSE-C object.
pub(super) fn stored_verifier(meta: &BTreeMap<String, String>) -> Option<&str> {
    meta.get(SSE_C).map(String::as_str)
}

/// The data key that opens an object whose metadata is `meta`, for a request that carried
/// customer key `given` (or none). Refused as S3 refuses: an SSE-C object without its key,
/// or with another, and a customer key for an object that has none, are `400`.
pub(super) fn opening_key(
    tenant: &DataKey,
    meta: &BTreeMap<String, String>,
    given: Option<&CustomerKey>,
) -> S3Result<DataKey> {
    match (stored_verifier(meta), given) {
        (None, None) => Ok(tenant.clone()),
        (Some(_), None) => Err(s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )),
        (None, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        )),
        (Some(verifier), Some(key)) => {
            if key.matches(tenant, verifier) {
                Ok(key.data_key(tenant))
            } else {
                Err(s3_error!(
                    InvalidRequest,
                    "The provided customer key does not match the key the object was encrypted with."
                ))
            }
        }
    }
}

/// The data key a new object is written under, and its metadata marked to match: the KMS
/// key's when the write is SSE-KMS, SSE-C with a fresh verifier when the request carried a
/// customer key, otherwise the tenant's data key and neither entry (a copy must not
/// inherit its source's).
pub(super) fn writing_key(
    tenant: &DataKey,
    meta: &mut BTreeMap<String, String>,
    given: Option<&CustomerKey>,
    kms: Option<&KmsKey>,
) -> DataKey {
    super::kms::mark(meta, kms);
    if let Some(kms) = kms {
        meta.remove(SSE_C);
        return kms.data_key(tenant);
    }
    match given {
        Some(key) => {
            meta.insert(SSE_C.to_owned(), key.verifier(tenant));
            key.data_key(tenant)
        }
        None => {
            meta.remove(SSE_C);
            tenant.clone()
        }
    }
}

/// The data key for more data of a multipart upload whose record carries `upload` (its
/// SSE-C verifier, if any): every part and the completion must bring the upload's key.
pub(super) fn upload_key(
    tenant: &DataKey,
    upload: Option<&str>,
    given: Option<&CustomerKey>,
) -> S3Result<DataKey> {
    match (upload, given) {
        (None, None) => Ok(tenant.clone()),
        (Some(_), None) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload was initiated with a customer-provided encryption key; every part and the completion must provide it."
        )),
        (None, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload was not initiated with a customer-provided encryption key; its parts cannot use one."
        )),
        (Some(verifier), Some(key)) => {
            if key.matches(tenant, verifier) {
                Ok(key.data_key(tenant))
            } else {
                Err(s3_error!(
                    InvalidRequest,
                    "The provided customer key does not match the key the multipart upload was initiated with."
                ))
            }
        }
    }
}

/// The encryption headers of a response about an object: `aws:kms` and the key id for an
/// SSE-KMS object (`kms_key_id`), the SSE-C algorithm and key MD5 for an SSE-C object,
/// otherwise SSE-S3, which every other object has.
pub(super) struct ResponseHeaders {
    pub(super) server_side_encryption: Option<s3s::dto::ServerSideEncryption>,
    pub(super) sse_customer_algorithm: Option<String>,
    pub(super) sse_customer_key_md5: Option<String>,
    pub(super) ssekms_key_id: Option<String>,
}

pub(super) fn response_headers(
    given: Option<&CustomerKey>,
    kms_key_id: Option<&str>,
) -> ResponseHeaders {
    match (given, kms_key_id) {
        (_, Some(id)) => ResponseHeaders {
            server_side_encryption: Some(s3s::dto::ServerSideEncryption::from_static(AWS_KMS)),
            sse_customer_algorithm: None,
            sse_customer_key_md5: None,
            ssekms_key_id: Some(id.to_owned()),
        },
        (Some(key), None) => ResponseHeaders {
            server_side_encryption: None,
            sse_customer_algorithm: Some(AES256.to_owned()),
            sse_customer_key_md5: Some(key.md5().to_owned()),
            ssekms_key_id: None,
        },
        (None, None) => ResponseHeaders {
            server_side_encryption: Some(s3s::dto::ServerSideEncryption::from_static(
                s3s::dto::ServerSideEncryption::AES256,
            )),
            sse_customer_algorithm: None,
            sse_customer_key_md5: None,
            ssekms_key_id: None,
        },
    }
}

/// Adds the SSE-C response headers to a response whose output has no fields for them.
pub(super) fn add_customer_headers(headers: &mut hyper::HeaderMap, given: Option<&CustomerKey>) {
    let Some(key) = given else {
        return;
    };
    headers.insert(
        "x-amz-server-side-encryption-customer-algorithm",
        hyper::header::HeaderValue::from_static(AES256),
    );
    if let Ok(md5) = hyper::header::HeaderValue::from_str(key.md5()) {
        headers.insert("x-amz-server-side-encryption-customer-key-md5", md5);
    }
}

/// Refuses a write that asks for SSE-C and another kind of server-side encryption at once.
pub(super) fn check_write(
    given: Option<&CustomerKey>,
    sse: Option<&s3s::dto::ServerSideEncryption>,
) -> S3Result<()> {
    if given.is_some() && sse.is_some() {
        return Err(invalid(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
        ));
    }
    Ok(())
}

/// Opens object keys with one data key and wraps them under another: a copy between
/// objects encrypted differently (SSE-C to plain, plain to SSE-C, one customer key to
/// another) shares its source's chunks and only re-wraps their keys.
pub(super) struct Rekey<'a> {
    pub(super) open: &'a DataKey,
    pub(super) wrap: &'a DataKey,
}

impl Keyring for Rekey<'_> {
    fn wrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        key: &ObjectKey,
    ) -> Result<WrappedKey, StoreError> {
        self.wrap.wrap_object_key(bucket, storage_key, key)
    }

    fn unwrap_object_key(
        &self,
        bucket: &str,
        storage_key: &[u8],
        authenticated: bool,
        wrapped: &WrappedKey,
    ) -> Result<ObjectKey, StoreError> {
        self.open
            .unwrap_object_key(bucket, storage_key, authenticated, wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and MD5 the conformance suite uses.
    const KEY_A: &str = "pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=";
    const MD5_A: &str = "DWygnHRtgiJ77HCm+1rvHw==";
    const KEY_B: &str = "6b+WOZ1T3cqZMxgThRcXAQBrS5mXKdDUphvpxptl9/4=";
    const MD5_B: &str = "arxBvwY2V4SiOne6yppVPQ==";

    fn code<T>(r: S3Result<T>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.code().as_str().to_owned(),
        }
    }

    fn key(k: &str, m: &str) -> CustomerKey {
        CustomerKey::parse(Some(AES256), Some(k), Some(m))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn customer_keys_are_validated_as_s3_does() {
        assert!(CustomerKey::parse(None, None, None).unwrap().is_none());
        assert_eq!(key(KEY_A, MD5_A).md5(), MD5_A);
        for (a, k, m, expected) in [
            (None, Some(KEY_A), Some(MD5_A), "InvalidArgument"),
            (
                Some("AES128"),
                Some(KEY_A),
                Some(MD5_A),
                "InvalidEncryptionAlgorithmError",
            ),
            (Some(AES256), None, Some(MD5_A), "InvalidArgument"),
            (Some(AES256), Some(KEY_A), None, "InvalidArgument"),
            (
                Some(AES256),
                Some(KEY_A),
                Some("AAAAAAAAAAAAAAAAAAAAAA=="),
                "InvalidArgument",
            ),
            (Some(AES256), Some(KEY_A), Some(MD5_B), "InvalidArgument"),
            (
                Some(AES256),
                Some("c2hvcnQ="),
                Some(MD5_A),
                "InvalidArgument",
            ),
            (
                Some(AES256),
                Some("not base64!"),
                Some(MD5_A),
                "InvalidArgument",
            ),
        ] {
            assert_eq!(
                code(CustomerKey::parse(a, k, m)),
                expected,
                "{a:?} {k:?} {m:?}"
            );
        }
    }

    #[test]
    fn only_the_right_customer_key_opens_an_object() {
        let tenant = DataKey([7; 32]);
        let a = key(KEY_A, MD5_A);
        let b = key(KEY_B, MD5_B);
        let mut meta = BTreeMap::new();
        let written = writing_key(&tenant, &mut meta, Some(&a), None);
        // The object's data key is neither the tenant's nor derivable without the customer key.
        assert_ne!(written.0, tenant.0);
        assert_ne!(written.0, b.data_key(&tenant).0);
        assert_ne!(written.0, a.data_key(&DataKey([8; 32])).0);
        assert_eq!(opening_key(&tenant, &meta, Some(&a)).unwrap().0, written.0);
        assert_eq!(code(opening_key(&tenant, &meta, None)), "InvalidRequest");
        assert_eq!(
            code(opening_key(&tenant, &meta, Some(&b))),
            "InvalidRequest"
        );
        // Another tenant's data key does not verify the key either.
        assert_eq!(
            code(opening_key(&DataKey([8; 32]), &meta, Some(&a))),
            "InvalidRequest"
        );
        // The verifier never holds the key or its MD5, and is salted per object.
        let stored = stored_verifier(&meta).unwrap().to_owned();
        assert!(!stored.contains(KEY_A) && !stored.contains(MD5_A));
        assert!(!stored.contains(&hex::encode(a.key)));
        let mut again = BTreeMap::new();
        writing_key(&tenant, &mut again, Some(&a), None);
        assert_ne!(stored_verifier(&again), Some(stored.as_str()));
        // A plain object refuses a customer key; a plain write drops a copied verifier.
        let mut plain = meta.clone();
        assert_eq!(writing_key(&tenant, &mut plain, None, None).0, tenant.0);
        assert!(stored_verifier(&plain).is_none());
        assert_eq!(opening_key(&tenant, &plain, None).unwrap().0, tenant.0);
        assert_eq!(
            code(opening_key(&tenant, &plain, Some(&a))),
            "InvalidRequest"
        );
        // Malformed verifiers match nothing.
        for bad in ["", "1", "2:00:00", "1:zz:00", &format!("{stored}:x")] {
            assert!(!a.matches(&tenant, bad), "{bad:?}");
        }
    }

    #[test]
    fn parts_must_bring_the_uploads_key() {
        let tenant = DataKey([1; 32]);
        let a = key(KEY_A, MD5_A);
        let b = key(KEY_B, MD5_B);
        let verifier = a.verifier(&tenant);
        assert_eq!(
            upload_key(&tenant, Some(&verifier), Some(&a)).unwrap().0,
            a.data_key(&tenant).0
        );
        assert_eq!(
            code(upload_key(&tenant, Some(&verifier), None)),
            "InvalidRequest"
        );
        assert_eq!(
            code(upload_key(&tenant, Some(&verifier), Some(&b))),
            "InvalidRequest"
        );
        assert_eq!(code(upload_key(&tenant, None, Some(&a))), "InvalidRequest");
        assert_eq!(upload_key(&tenant, None, None).unwrap().0, tenant.0);
    }

    #[test]
    fn a_rekey_opens_with_one_key_and_wraps_with_the_other() {
        let tenant = DataKey([3; 32]);
        let customer = key(KEY_A, MD5_A).data_key(&tenant);
        let object_key = ObjectKey::generate();
        let wrapped = customer.wrap_object_key("b", b"path", &object_key).unwrap();
        // The tenant's data key and the bucket's key alone cannot open it.
        assert!(
            tenant
                .unwrap_object_key("b", b"path", true, &wrapped)
                .is_err()
        );
        assert!(
            xnode_store::BucketKey::derive(&tenant, "b")
                .unwrap_object_key("b", b"path", true, &wrapped)
                .is_err()
        );
        let rekey = Rekey {
            open: &customer,
            wrap: &tenant,
        };
        let opened = rekey
            .unwrap_object_key("b", b"path", true, &wrapped)
            .unwrap();
        let rewrapped = rekey.wrap_object_key("b", b"copy", &opened).unwrap();
        assert!(
            tenant
                .unwrap_object_key("b", b"copy", true, &rewrapped)
                .is_ok()
        );
        assert!(
            customer
                .unwrap_object_key("b", b"copy", true, &rewrapped)
                .is_err()
        );
    }

    #[test]
    fn sse_c_and_another_encryption_conflict() {
        let a = key(KEY_A, MD5_A);
        let s3 =
            s3s::dto::ServerSideEncryption::from_static(s3s::dto::ServerSideEncryption::AES256);
        assert_eq!(code(check_write(Some(&a), Some(&s3))), "InvalidArgument");
        assert_eq!(code(check_write(Some(&a), None)), "ok");
        assert_eq!(code(check_write(None, Some(&s3))), "ok");
    }
}
