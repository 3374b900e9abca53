//! Bucket default encryption: `PutBucketEncryption`, `GetBucketEncryption`,
//! `DeleteBucketEncryption`.
//!
//! Every object is encrypted at its edge whatever a bucket says, so the only default a
//! bucket can have is SSE-S3 (`AES256`), which changes nothing about how objects are
//! stored: the setting is kept so that clients that set it read it back, as S3 keeps it.
//! Like the versioning setting (`gateway::versioning`), it is an entry of the replicated
//! registry signed by the bucket's owner (`tenant/<owner>/bucket-encryption/<bucket>`),
//! bound to the bucket claim it was made for, so every node answers the same and a
//! setting left from a deleted bucket of the same name does not apply to its successor.
//! An SSE-KMS default is refused as AWS refuses a KMS key it does not know: there is no
//! key service behind the gateway.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::{Entry, Registry};
use xnode_storage::buckets::{BucketRecord, owner_of};
use xnode_types::{Hlc, PublicKeyBytes};

use super::sse::AES256;
use super::{Gateway, unix_ms};

/// The registry kind of the setting.
const KIND: &str = "bucket-encryption";
/// Format of [`EncryptionRecord`].
const RECORD_VERSION: u32 = 1;

/// The value of a bucket's encryption entry, signed by the bucket's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EncryptionRecord {
    /// Format version of this record.
    v: u32,
    bucket: String,
    /// The `created_ms` of the bucket claim this setting belongs to.
    bucket_created_ms: u64,
    /// The default algorithm; only `AES256` is accepted.
    algorithm: String,
}

fn encryption_key(owner: &PublicKeyBytes, bucket: &str) -> String {
    xnode_registry::claims::claim_key(KIND, owner, bucket)
}

/// The default algorithm configured for `bucket`, if its owner set one for this claim.
fn configured(registry: &Registry, bucket: &str) -> Option<String> {
    let (owner, claim) = owner_of(registry, bucket)?;
    let entry = registry.get(&encryption_key(&owner, bucket))?;
    decode(&entry, &owner, &claim)
}

/// The algorithm an encryption entry sets, if it is the owner's, well formed and made for
/// this claim of the bucket (not a deleted predecessor of the same name).
fn decode(entry: &Entry, owner: &PublicKeyBytes, claim: &BucketRecord) -> Option<String> {
    let record: EncryptionRecord = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (record.v == RECORD_VERSION
        && entry.owner == *owner
        && entry.key == encryption_key(owner, &claim.name)
        && record.bucket == claim.name
        && record.bucket_created_ms == claim.created_ms
        && record.algorithm == AES256)
        .then_some(record.algorithm)
}

/// The one default rule a configuration may hold, checked: `AES256` is accepted; a KMS
/// algorithm is refused as an unknown key; anything else is malformed.
fn accepted_algorithm(config: &ServerSideEncryptionConfiguration) -> S3Result<()> {
    let [rule] = config.rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "The configuration must hold exactly one rule"
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "The rule must say ApplyServerSideEncryptionByDefault"
        ));
    };
    match default.sse_algorithm.as_str() {
        AES256 if default.kms_master_key_id.is_none() => Ok(()),
        AES256 => Err(s3_error!(
            InvalidArgument,
            "a KMSMasterKeyID is not applicable with the AES256 algorithm"
        )),
        "aws:kms" | "aws:kms:dsse" => {
            let mut e = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("KMS.NotFoundException".into()),
                format!(
                    "Invalid keyId {:?}: this gateway has no key management service; every object is encrypted at rest (AES256)",
                    default.kms_master_key_id.as_deref().unwrap_or("aws/s3")
                ),
            );
            e.set_status_code(hyper::StatusCode::BAD_REQUEST);
            Err(e)
        }
        other => Err(s3_error!(
            MalformedXML,
            "Unknown SSEAlgorithm {other:?}; the valid value is AES256"
        )),
    }
}

impl Gateway {
    /// Signs and applies the bucket's encryption entry (`None` removes the setting).
    fn write_encryption(
        &self,
        key: &crate::keys::AccessKey,
        bucket: &str,
        algorithm: Option<&str>,
    ) -> S3Result<()> {
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not change bucket settings (it was created with --no-bucket-admin)"
            ));
        };
        let Some((_, claim)) = owner_of(self.storage.registry(), bucket) else {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        };
        let entry_key = encryption_key(&key.tenant, bucket);
        let previous = self.storage.registry().get(&entry_key);
        if algorithm.is_none() && previous.as_ref().is_none_or(|e| e.value.is_none()) {
            return Ok(());
        }
        let value = algorithm
            .map(|a| {
                serde_json::to_vec(&EncryptionRecord {
                    v: RECORD_VERSION,
                    bucket: bucket.to_owned(),
                    bucket_created_ms: claim.created_ms,
                    algorithm: a.to_owned(),
                })
            })
            .transpose()
            .map_err(|e| s3_error!(InternalError, "cannot encode the encryption setting: {e}"))?;
        // Later than the setting it replaces, whatever this node's clock says.
        let previous = previous.map(|e| e.hlc).unwrap_or(Hlc::new(0, 0));
        let now = unix_ms();
        let hlc = if now > previous.wall_ms {
            Hlc::new(now, 0)
        } else {
            Hlc::new(previous.wall_ms, previous.logical.saturating_add(1))
        };
        let entry = xnode_registry::Entry::sign(&signer, entry_key, value, hlc)
            .map_err(|e| s3_error!(InternalError, "cannot sign the encryption setting: {e}"))?;
        self.storage
            .registry()
            .apply_tenant_entry(entry)
            .map_err(|e| match e {
                xnode_registry::RegistryError::OwnerQuota { .. } => {
                    super::s3_err(xnode_storage::StorageError::QuotaExceeded(e.to_string()))
                }
                e => s3_error!(InternalError, "the encryption setting was refused: {e}"),
            })?;
        Ok(())
    }

    pub(super) async fn put_bucket_encryption_impl(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        accepted_algorithm(&input.server_side_encryption_configuration)?;
        self.write_encryption(&key, &input.bucket, Some(AES256))?;
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    pub(super) async fn get_bucket_encryption_impl(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let Some(algorithm) = configured(self.storage.registry(), &input.bucket) else {
            return Err(s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found"
            ));
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        kms_master_key_id: None,
                        sse_algorithm: ServerSideEncryption::from(algorithm),
                    }),
                    bucket_key_enabled: Some(false),
                }],
            }),
        }))
    }

    pub(super) async fn delete_bucket_encryption_impl(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.write_encryption(&key, &input.bucket, None)?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        algorithm: &str,
        kms: Option<&str>,
        rules: usize,
    ) -> ServerSideEncryptionConfiguration {
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                kms_master_key_id: kms.map(str::to_owned),
                sse_algorithm: ServerSideEncryption::from(algorithm.to_owned()),
            }),
            ..Default::default()
        };
        ServerSideEncryptionConfiguration {
            rules: vec![rule; rules],
        }
    }

    #[test]
    fn a_setting_binds_its_owner_bucket_and_claim() {
        let owner = xnode_types::SecretKey::generate();
        let stranger = xnode_types::SecretKey::generate();
        let claim = BucketRecord {
            v: xnode_storage::buckets::BUCKET_RECORD_VERSION,
            name: "photos".into(),
            owner: owner.public().to_hex(),
            created_ms: 1_000,
            replication_factor: None,
        };
        let setting =
            |signer: &xnode_types::SecretKey, bucket: &str, created_ms: u64, algorithm: &str| {
                let record = EncryptionRecord {
                    v: RECORD_VERSION,
                    bucket: bucket.into(),
                    bucket_created_ms: created_ms,
                    algorithm: algorithm.into(),
                };
                Entry::sign(
                    signer,
                    encryption_key(&signer.public(), bucket),
                    Some(serde_json::to_vec(&record).unwrap()),
                    Hlc::new(2_000, 0),
                )
                .unwrap()
            };
        let o = owner.public();
        assert_eq!(
            decode(&setting(&owner, "photos", 1_000, AES256), &o, &claim).as_deref(),
            Some(AES256)
        );
        // Another tenant's entry, another bucket's, a deleted predecessor's, or an
        // algorithm the gateway never writes: none applies.
        assert_eq!(
            decode(&setting(&stranger, "photos", 1_000, AES256), &o, &claim),
            None
        );
        assert_eq!(
            decode(&setting(&owner, "videos", 1_000, AES256), &o, &claim),
            None
        );
        assert_eq!(
            decode(&setting(&owner, "photos", 999, AES256), &o, &claim),
            None
        );
        assert_eq!(
            decode(&setting(&owner, "photos", 1_000, "aws:kms"), &o, &claim),
            None
        );
        let removed = Entry::sign(
            &owner,
            encryption_key(&o, "photos"),
            None,
            Hlc::new(3_000, 0),
        )
        .unwrap();
        assert_eq!(decode(&removed, &o, &claim), None);
    }

    #[test]
    fn only_aes256_is_a_default() {
        let code = |c| match accepted_algorithm(&c) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.code().as_str().to_owned(),
        };
        assert_eq!(code(config(AES256, None, 1)), "ok");
        assert_eq!(
            code(config("aws:kms", Some("testkey-1"), 1)),
            "KMS.NotFoundException"
        );
        assert_eq!(code(config(AES256, Some("k"), 1)), "InvalidArgument");
        assert_eq!(code(config("AES128", None, 1)), "MalformedXML");
        assert_eq!(code(config(AES256, None, 0)), "MalformedXML");
        assert_eq!(code(config(AES256, None, 2)), "MalformedXML");
    }
}
