//! The `s3s::S3` implementation: S3 operations translated into calls on the node's
//! distributed storage, acting for the tenant an access key belongs to.
//!
//! This module holds the `Gateway` itself, the helpers its operations share and the
//! `S3` trait impl, which only delegates: the operations live in submodules by topic
//! (`buckets`, `objects`, `parts`, `tagging`, `listing`, `multipart`, `copy`,
//! `versioning`, `object_lock`, `bucket_encryption`, `bucket_tagging`, `acl`, `policy`,
//! `cors`, `lifecycle`, `logging`, `ownership`; server-side encryption in `sse`), bucket
//! settings in `settings`, the mapping of storage failures onto S3 errors in `errors`, the
//! metadata S3 keeps beside the user's in `system_meta` and the checking of upload
//! checksums in `integrity`.

mod acl;
mod bucket_encryption;
mod bucket_tagging;
mod buckets;
mod copy;
pub(crate) mod cors;
mod crc_combine;
mod errors;
mod integrity;
mod kms;
pub(crate) mod lifecycle;
mod listing;
pub(crate) mod logging;
mod multipart;
mod object_lock;
mod objects;
mod ownership;
mod parts;
mod policy;
mod settings;
mod sse;
mod system_meta;
mod tagging;
mod versioning;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use xnode_storage::Storage;
use xnode_storage::buckets::owner_of;
use xnode_storage::conditional::{ETagMatch, Preconditions};
use xnode_store::ObjectInfo;
use xnode_types::PublicKeyBytes;

use crate::keys::{AccessKey, S3Keys};

pub(crate) use errors::s3_err;

/// What `crate::authorize` needs of the ACL and policy models.
pub(crate) mod access {
    pub(crate) use super::acl::{Permission, bucket_acl, object_acl, public_access_block};
    pub(crate) use super::ownership::acls_disabled;
    pub(crate) use super::policy::{
        Context as PolicyContext, EXISTING_TAG_PREFIX, Policy, REQUEST_TAG_KEYS,
        REQUEST_TAG_PREFIX, REQUEST_TAGS_UNSEEN, Request as PolicyRequest, Verdict, bucket_policy,
    };
    pub(crate) use super::tagging::{parse_header as parse_tagging_header, stored as stored_tags};
    pub(crate) use super::versioning::version_key;
}
pub use multipart::multipart_etag;

/// S3's smallest part, except the last one of an upload.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part number.
const MAX_PART_NUMBER: i32 = 10_000;
/// The most keys one listing page returns.
const MAX_KEYS: usize = 1000;
/// Content type of objects uploaded without one, as S3 does.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The S3 gateway of one node.
#[derive(Clone)]
pub struct Gateway {
    storage: std::sync::Arc<Storage>,
    keys: S3Keys,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("node", &self.storage.node_id())
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The Last-Modified S3 shows for an object (see `system_meta::LAST_MODIFIED`).
fn last_modified(info: &ObjectInfo) -> Timestamp {
    timestamp(system_meta::last_modified_ms(info))
}

fn etag_of(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

/// `304 Not Modified`, with the object's ETag and Last-Modified as S3 sends them (caches
/// refresh their copy's validators from it).
fn not_modified(info: &ObjectInfo) -> s3s::S3Error {
    let mut e = s3s::S3Error::new(s3s::S3ErrorCode::NotModified);
    let mut headers = hyper::HeaderMap::new();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(hyper::header::ETAG, v);
    }
    let mut text = Vec::new();
    if last_modified(info)
        .format(TimestampFormat::HttpDate, &mut text)
        .is_ok()
        && let Ok(v) = hyper::header::HeaderValue::from_bytes(&text)
    {
        headers.insert(hyper::header::LAST_MODIFIED, v);
    }
    e.set_headers(headers);
    e
}

fn etag_match(condition: &ETagCondition) -> ETagMatch {
    match condition {
        ETagCondition::Any => ETagMatch::Any,
        ETagCondition::ETag(e) => ETagMatch::ETag(e.value().to_owned()),
    }
}

/// The conditions of a write (`If-Match`, `If-None-Match`), decided by the storage at
/// commit, atomically against writes through other nodes.
fn write_preconditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Preconditions {
    Preconditions {
        if_match: if_match.map(etag_match),
        if_none_match: if_none_match.map(etag_match),
        ..Default::default()
    }
}

/// The conditions of a delete: `If-Match`, and S3's `x-amz-if-match-last-modified-time`
/// and `x-amz-if-match-size`.
fn delete_preconditions(
    if_match: Option<&ETagCondition>,
    last_modified: Option<&Timestamp>,
    size: Option<i64>,
) -> S3Result<Preconditions> {
    let if_match_size = size
        .map(|s| {
            u64::try_from(s)
                .map_err(|_| s3_error!(InvalidArgument, "x-amz-if-match-size must not be negative"))
        })
        .transpose()?;
    Ok(Preconditions {
        if_match: if_match.map(etag_match),
        if_match_last_modified_s: last_modified
            .map(|t| time::OffsetDateTime::from(t.clone()).unix_timestamp()),
        if_match_size,
        ..Default::default()
    })
}

/// The user's metadata of a request. Names starting with `:` are the gateway's own
/// entries (`system_meta`): no header can carry one and browser forms refuse them, and
/// they are dropped here too, so that no request path can write the gateway's entries.
fn user_meta(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| !k.starts_with(':'))
        .collect()
}

fn tenant_owner(tenant: &PublicKeyBytes) -> Owner {
    Owner {
        display_name: Some(format!("xnode-tenant-{}", &tenant.to_hex()[..16])),
        id: Some(tenant.to_hex()),
    }
}

fn empty_body() -> futures::stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>> {
    futures::stream::iter(Vec::new())
}

impl Gateway {
    pub fn new(storage: std::sync::Arc<Storage>, keys: S3Keys) -> Self {
        Self { storage, keys }
    }

    fn storage(&self) -> &std::sync::Arc<Storage> {
        &self.storage
    }

    /// The access key a request was signed with (s3s has already checked the signature).
    /// A request another tenant or anyone was granted (see `crate::authorize`) acts with
    /// the bucket owner's key.
    fn key_of<T>(&self, req: &S3Request<T>) -> S3Result<AccessKey> {
        if let Some(crate::authorize::ActingFor { key, .. }) = req.extensions.get() {
            if let Some(registration) = &key.registration {
                self.storage
                    .authorise_s3_key(key.tenant, registration.clone());
            }
            return Ok(key.clone());
        }
        let Some(credentials) = &req.credentials else {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous requests are not allowed"
            ));
        };
        match self.keys.get(&credentials.access_key) {
            Ok(Some(key)) => {
                // The key's registration is this node's authority to write the tenant's
                // object metadata for S3 requests.
                if let Some(registration) = &key.registration {
                    self.storage
                        .authorise_s3_key(key.tenant, registration.clone());
                }
                Ok(key)
            }
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records"
            )),
            Err(e) => Err(s3_error!(InternalError, "{e}")),
        }
    }

    /// Object keys the store refuses (control characters) are answered as S3 answers a
    /// key it cannot parse; every other failure as `InvalidArgument`.
    fn check_key(&self, key: &str) -> S3Result<()> {
        xnode_store::validate_object_key(key).map_err(|e| {
            if key.chars().any(char::is_control) {
                s3_error!(InvalidURI, "Couldn't parse the specified URI.")
            } else {
                s3_error!(InvalidArgument, "{e}")
            }
        })
    }

    fn require_bucket(&self, tenant: &PublicKeyBytes, bucket: &str) -> S3Result<()> {
        match owner_of(self.storage.registry(), bucket) {
            Some((owner, _)) if owner == *tenant => Ok(()),
            Some(_) => Err(s3_error!(AccessDenied, "Access Denied")),
            None => Err(s3_error!(
                NoSuchBucket,
                "The specified bucket {bucket:?} does not exist"
            )),
        }
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_impl(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket_impl(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket_impl(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_impl(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_impl(req).await
    }

    async fn put_bucket_logging(
        &self,
        req: S3Request<PutBucketLoggingInput>,
    ) -> S3Result<S3Response<PutBucketLoggingOutput>> {
        self.put_bucket_logging_impl(req).await
    }

    async fn get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        self.get_bucket_logging_impl(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.put_object_impl(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_impl(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_impl(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object_impl(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects_impl(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_impl(req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.get_object_attributes_impl(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_object_tagging_impl(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_object_tagging_impl(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_object_tagging_impl(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_impl(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_impl(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_impl(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_impl(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy_impl(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_impl(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_impl(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_impl(req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning_impl(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_bucket_versioning_impl(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_impl(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_impl(req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.put_object_lock_configuration_impl(req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.get_object_lock_configuration_impl(req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.put_object_retention_impl(req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.get_object_retention_impl(req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.put_object_legal_hold_impl(req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.get_object_legal_hold_impl(req).await
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        self.put_bucket_encryption_impl(req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.get_bucket_encryption_impl(req).await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.delete_bucket_encryption_impl(req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.get_bucket_acl_impl(req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.put_bucket_acl_impl(req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.get_object_acl_impl(req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.put_object_acl_impl(req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.get_bucket_policy_impl(req).await
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.put_bucket_policy_impl(req).await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.delete_bucket_policy_impl(req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.get_bucket_policy_status_impl(req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        self.get_public_access_block_impl(req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        self.put_public_access_block_impl(req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.delete_public_access_block_impl(req).await
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        self.put_bucket_ownership_controls_impl(req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.get_bucket_ownership_controls_impl(req).await
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        self.delete_bucket_ownership_controls_impl(req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.put_bucket_cors_impl(req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.get_bucket_cors_impl(req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.delete_bucket_cors_impl(req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.put_bucket_tagging_impl(req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.get_bucket_tagging_impl(req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.delete_bucket_tagging_impl(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_bucket_lifecycle_configuration_impl(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_bucket_lifecycle_configuration_impl(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_bucket_lifecycle_impl(req).await
    }
}
