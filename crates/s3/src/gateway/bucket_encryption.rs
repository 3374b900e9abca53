//! Bucket default encryption: `PutBucketEncryption`, `GetBucketEncryption`,
//! `DeleteBucketEncryption`.
//!
//! Every object is encrypted at its edge whatever a bucket says, so an SSE-S3 (`AES256`)
//! default changes nothing about how objects are stored: the setting is kept so that
//! clients that set it read it back, as S3 keeps it. An SSE-KMS default (`aws:kms` with a
//! `KMSMasterKeyID` naming one of the owner's KMS keys, see `gateway::kms`) makes every
//! write that asks for no encryption of its own an SSE-KMS write under that key.
//! Like every bucket setting (`gateway::settings`), it is an entry of the replicated
//! registry signed by the bucket's owner (`tenant/<owner>/bucket-encryption/<bucket>`),
//! bound to the bucket claim it was made for, so every node answers the same and a
//! setting left from a deleted bucket of the same name does not apply to its successor.
//! An SSE-KMS default naming a key the owner does not have (or a disabled one) is refused
//! as AWS refuses it.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::{Entry, Registry};
use xnode_storage::bucket_settings::{decode_setting, setting_key};
use xnode_storage::buckets::{BucketRecord, owner_of};
use xnode_types::PublicKeyBytes;

use super::Gateway;
use super::kms::AWS_KMS;
use super::settings::decode_document;
use super::sse::AES256;

/// The bucket-setting kind of the default encryption (`tenant/<T>/bucket-encryption/<N>`).
const KIND: &str = "encryption";
/// Format of [`LegacyEncryptionRecord`].
const LEGACY_RECORD_VERSION: u32 = 1;

/// The document of the setting (`settings.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EncryptionDocument {
    /// The default algorithm: `AES256` or `aws:kms`.
    algorithm: String,
    /// With `aws:kms`: the KMS key, as the owner named it (a key id or `alias/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_master_key_id: Option<String>,
}

impl EncryptionDocument {
    /// Whether this is a default the gateway writes: `AES256` alone, or `aws:kms` with a key.
    fn is_valid(&self) -> bool {
        match self.algorithm.as_str() {
            AES256 => self.kms_master_key_id.is_none(),
            AWS_KMS => self.kms_master_key_id.is_some(),
            _ => false,
        }
    }
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

/// The default configured for `bucket`, if its owner set one for this claim.
fn configured(registry: &Registry, bucket: &str) -> Option<EncryptionDocument> {
    let (owner, claim) = owner_of(registry, bucket)?;
    let entry = registry.get(&setting_key(KIND, &owner, bucket))?;
    decode(&entry, &owner, &claim)
}

/// The KMS key `bucket`'s default encryption names, if it is SSE-KMS.
pub(super) fn default_kms_key(registry: &Registry, bucket: &str) -> Option<String> {
    configured(registry, bucket)
        .filter(|d| d.algorithm == AWS_KMS)
        .and_then(|d| d.kms_master_key_id)
}

/// The algorithm an encryption entry sets, if it is the owner's, well formed and made for
/// this claim of the bucket (not a deleted predecessor of the same name): a bucket
/// setting, or else an entry in the legacy format.
fn decode(
    entry: &Entry,
    owner: &PublicKeyBytes,
    claim: &BucketRecord,
) -> Option<EncryptionDocument> {
    let document = match decode_setting(entry, KIND, claim) {
        Some(document) => decode_document::<EncryptionDocument>(document, KIND)?,
        None => {
            let record: LegacyEncryptionRecord =
                serde_json::from_slice(entry.value.as_deref()?).ok()?;
            (record.v == LEGACY_RECORD_VERSION
                && entry.owner == *owner
                && entry.key == setting_key(KIND, owner, &claim.name)
                && record.bucket == claim.name
                && record.bucket_created_ms == claim.created_ms)
                .then_some(EncryptionDocument {
                    algorithm: record.algorithm,
                    kms_master_key_id: None,
                })?
        }
    };
    document.is_valid().then_some(document)
}

/// The one default rule a configuration may hold, checked: `AES256` without a key, or
/// `aws:kms` with one (whether the key exists is checked by the caller); anything else is
/// malformed.
fn requested_default(config: &ServerSideEncryptionConfiguration) -> S3Result<EncryptionDocument> {
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
    let key = default
        .kms_master_key_id
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match (default.sse_algorithm.as_str(), key) {
        (AES256, None) => Ok(EncryptionDocument {
            algorithm: AES256.to_owned(),
            kms_master_key_id: None,
        }),
        (AES256, Some(_)) => Err(s3_error!(
            InvalidArgument,
            "a KMSMasterKeyID is not applicable with the AES256 algorithm"
        )),
        (AWS_KMS, Some(key)) => Ok(EncryptionDocument {
            algorithm: AWS_KMS.to_owned(),
            kms_master_key_id: Some(key.to_owned()),
        }),
        // The tenant's implicit default key is not built (see gateway::kms).
        (AWS_KMS, None) => Err(super::kms::not_found("aws/s3")),
        ("aws:kms:dsse", _) => Err(s3_error!(
            InvalidArgument,
            "Dual-layer SSE-KMS (aws:kms:dsse) is not supported; use aws:kms"
        )),
        (other, _) => Err(s3_error!(
            MalformedXML,
            "Unknown SSEAlgorithm {other:?}; the valid values are AES256 and aws:kms"
        )),
    }
}

impl Gateway {
    /// Signs, applies and spreads the bucket's encryption setting (`None` removes it).
    async fn write_encryption(
        &self,
        key: &crate::keys::AccessKey,
        bucket: &str,
        document: Option<&EncryptionDocument>,
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
        if document.is_none() && previous.as_ref().is_none_or(|e| e.value.is_none()) {
            return Ok(());
        }
        self.store_bucket_setting(key, bucket, KIND, document).await
    }

    pub(super) async fn put_bucket_encryption_impl(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let document = requested_default(&input.server_side_encryption_configuration)?;
        // A default under a key the owner does not have (or has disabled) would make every
        // later write fail: refused now, as AWS does.
        if let Some(name) = &document.kms_master_key_id {
            self.kms_key(&key, name)?;
        }
        self.write_encryption(&key, &input.bucket, Some(&document))
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
        let Some(document) = configured(self.storage.registry(), &input.bucket) else {
            return Err(s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found"
            ));
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        kms_master_key_id: document.kms_master_key_id,
                        sse_algorithm: ServerSideEncryption::from(document.algorithm),
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
            decode(&setting(&owner, "photos", 1_000, AES256), &o, &claim)
                .map(|d| d.algorithm)
                .as_deref(),
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
        assert_eq!(
            decode(&current, &o, &claim).map(|d| d.algorithm).as_deref(),
            Some(AES256)
        );
        // An SSE-KMS default keeps its key; one without a key is not a default.
        let kms = |document: serde_json::Value, wall_ms: u64| {
            let record = xnode_storage::bucket_settings::BucketSettingRecord {
                v: xnode_storage::bucket_settings::BUCKET_SETTING_RECORD_VERSION,
                kind: KIND.into(),
                bucket: "photos".into(),
                bucket_created_ms: 1_000,
                document,
            };
            Entry::sign(
                &owner,
                setting_key(KIND, &o, "photos"),
                Some(serde_json::to_vec(&record).unwrap()),
                xnode_types::Hlc::new(wall_ms, 0),
            )
            .unwrap()
        };
        let with_key = kms(
            serde_json::json!({"algorithm": "aws:kms", "kms_master_key_id": "alias/photos"}),
            5_000,
        );
        assert_eq!(
            decode(&with_key, &o, &claim).and_then(|d| d.kms_master_key_id),
            Some("alias/photos".to_owned())
        );
        let without = kms(serde_json::json!({"algorithm": "aws:kms"}), 6_000);
        assert_eq!(decode(&without, &o, &claim), None);
        assert_eq!(
            setting_key(KIND, &o, "photos"),
            xnode_registry::claims::claim_key("bucket-encryption", &o, "photos")
        );
    }

    #[test]
    fn defaults_are_aes256_or_kms_with_a_key() {
        let code = |c| match requested_default(&c) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().as_str().to_owned(),
        };
        assert_eq!(code(config(AES256, None, 1)), "ok");
        assert_eq!(code(config("aws:kms", Some("testkey-1"), 1)), "ok");
        assert_eq!(code(config("aws:kms", None, 1)), "KMS.NotFoundException");
        assert_eq!(
            code(config("aws:kms:dsse", Some("k"), 1)),
            "InvalidArgument"
        );
        assert_eq!(code(config(AES256, Some("k"), 1)), "InvalidArgument");
        assert_eq!(code(config("AES128", None, 1)), "MalformedXML");
        assert_eq!(code(config(AES256, None, 0)), "MalformedXML");
        assert_eq!(code(config(AES256, None, 2)), "MalformedXML");
    }
}
