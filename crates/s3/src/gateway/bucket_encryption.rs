//! Bucket default encryption: `PutBucketEncryption`, `GetBucketEncryption`,
//! `DeleteBucketEncryption`.
//!
//! Every object is encrypted at its edge whatever a bucket says, so the only default a
//! bucket can have is SSE-S3 (`AES256`), which changes nothing about how objects are
//! stored: the setting is kept so that clients that set it read it back, as S3 keeps it.
//! Like every bucket setting (`gateway::settings`), it is an entry of the replicated
//! registry signed by the bucket's owner (`tenant/<owner>/bucket-encryption/<bucket>`),
//! bound to the bucket claim it was made for, so every node answers the same and a
//! setting left from a deleted bucket of the same name does not apply to its successor.
//! An SSE-KMS default is refused as AWS refuses a KMS key it does not know: there is no
//! key service behind the gateway.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::{Entry, Registry};
use xnode_storage::bucket_settings::{decode_setting, setting_key};
use xnode_storage::buckets::{BucketRecord, owner_of};
use xnode_types::PublicKeyBytes;

use super::Gateway;
use super::settings::decode_document;
use super::sse::AES256;

/// The bucket-setting kind of the default encryption (`tenant/<T>/bucket-encryption/<N>`).
const KIND: &str = "encryption";
/// Format of [`LegacyEncryptionRecord`].
const LEGACY_RECORD_VERSION: u32 = 1;

/// The document of the setting (`settings.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EncryptionDocument {
    /// The default algorithm; only `AES256` is accepted.
    algorithm: String,
}

/// The value the encryption entry had before it became a bucket setting like the others,
/// under the same registry key. Still read (so a default set before keeps answering),
/// never written any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyEncryptionRecord {
    /// Format version of this record.
    v: u32,
    bucket: String,
    /// The `created_ms` of the bucket claim this setting belongs to.
    bucket_created_ms: u64,
    algorithm: String,
}

/// The default algorithm configured for `bucket`, if its owner set one for this claim.
fn configured(registry: &Registry, bucket: &str) -> Option<String> {
    let (owner, claim) = owner_of(registry, bucket)?;
    let entry = registry.get(&setting_key(KIND, &owner, bucket))?;
    decode(&entry, &owner, &claim)
}

/// The algorithm an encryption entry sets, if it is the owner's, well formed and made for
/// this claim of the bucket (not a deleted predecessor of the same name): a bucket
/// setting, or else an entry in the legacy format.
fn decode(entry: &Entry, owner: &PublicKeyBytes, claim: &BucketRecord) -> Option<String> {
    let algorithm = match decode_setting(entry, KIND, claim) {
        Some(document) => decode_document::<EncryptionDocument>(document, KIND)?.algorithm,
        None => {
            let record: LegacyEncryptionRecord =
                serde_json::from_slice(entry.value.as_deref()?).ok()?;
            (record.v == LEGACY_RECORD_VERSION
                && entry.owner == *owner
                && entry.key == setting_key(KIND, owner, &claim.name)
                && record.bucket == claim.name
                && record.bucket_created_ms == claim.created_ms)
                .then_some(record.algorithm)?
        }
    };
    (algorithm == AES256).then_some(algorithm)
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
    /// Signs, applies and spreads the bucket's encryption setting (`None` removes it).
    async fn write_encryption(
        &self,
        key: &crate::keys::AccessKey,
        bucket: &str,
        algorithm: Option<&str>,
    ) -> S3Result<()> {
        let Some((owner, _)) = owner_of(self.storage.registry(), bucket) else {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        };
        // Removing a setting that is not there writes nothing.
        let previous = self
            .storage
            .registry()
            .get(&setting_key(KIND, &owner, bucket));
        if algorithm.is_none() && previous.as_ref().is_none_or(|e| e.value.is_none()) {
            return Ok(());
        }
        let document = algorithm.map(|a| EncryptionDocument {
            algorithm: a.to_owned(),
        });
        self.store_bucket_setting(key, bucket, KIND, document.as_ref())
            .await
    }

    pub(super) async fn put_bucket_encryption_impl(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        accepted_algorithm(&input.server_side_encryption_configuration)?;
        self.write_encryption(&key, &input.bucket, Some(AES256))
            .await?;
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
        self.write_encryption(&key, &input.bucket, None).await?;
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
            regions: Vec::new(),
        };
        let setting =
            |signer: &xnode_types::SecretKey, bucket: &str, created_ms: u64, algorithm: &str| {
                let record = LegacyEncryptionRecord {
                    v: LEGACY_RECORD_VERSION,
                    bucket: bucket.into(),
                    bucket_created_ms: created_ms,
                    algorithm: algorithm.into(),
                };
                Entry::sign(
                    signer,
                    setting_key(KIND, &signer.public(), bucket),
                    Some(serde_json::to_vec(&record).unwrap()),
                    xnode_types::Hlc::new(2_000, 0),
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
            setting_key(KIND, &o, "photos"),
            None,
            xnode_types::Hlc::new(3_000, 0),
        )
        .unwrap();
        assert_eq!(decode(&removed, &o, &claim), None);
        // The current format: a bucket setting under the same registry key.
        let record = xnode_storage::bucket_settings::BucketSettingRecord {
            v: xnode_storage::bucket_settings::BUCKET_SETTING_RECORD_VERSION,
            kind: KIND.into(),
            bucket: "photos".into(),
            bucket_created_ms: 1_000,
            document: serde_json::json!({"algorithm": AES256}),
        };
        let current = Entry::sign(
            &owner,
            setting_key(KIND, &o, "photos"),
            Some(serde_json::to_vec(&record).unwrap()),
            xnode_types::Hlc::new(4_000, 0),
        )
        .unwrap();
        assert_eq!(decode(&current, &o, &claim).as_deref(), Some(AES256));
        assert_eq!(
            setting_key(KIND, &o, "photos"),
            xnode_registry::claims::claim_key("bucket-encryption", &o, "photos")
        );
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
