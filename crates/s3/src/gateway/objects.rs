//! Object operations: PUT (with its integrity headers and system metadata), GET and HEAD
//! (with S3's conditional headers, ranges and response-header overrides), DELETE and the
//! batch `DeleteObjects`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_storage::{OpenedObject, StorageError};
use xnode_store::ObjectInfo;

use super::integrity::{self, Expected, Verifier, stored_checksums};
use super::kms::KmsKey;
use super::object_lock::{LockHeaders, lock_fields};
use super::parts::parts_count;
use super::sse::{self, CustomerKey};
use super::system_meta::{self, SystemMeta, stored_encoding, user_part};
use super::tagging;
use super::versioning::{VERSION_ID, public_id};
use super::{
    DEFAULT_CONTENT_TYPE, Gateway, delete_preconditions, empty_body, etag_of, last_modified,
    not_modified, s3_err, user_meta, write_preconditions,
};
use crate::keys::AccessKey;

fn unix_secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// What GET and HEAD say about an object beside its bytes: system and user metadata, as
/// stored or as the request's `response-*` parameters override them.
struct Described {
    content_type: String,
    system: SystemMeta,
    metadata: Option<Metadata>,
    checksum: Checksum,
}

#[allow(clippy::too_many_arguments)]
fn describe(
    info: &ObjectInfo,
    checksum_mode: Option<&ChecksumMode>,
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<&Timestamp>,
) -> Described {
    let mut system = SystemMeta::from_map(&info.user_meta);
    // `response-*` query parameters override what is stored, for this response only.
    system.cache_control = cache_control.or(system.cache_control);
    system.content_disposition = content_disposition.or(system.content_disposition);
    system.content_encoding = content_encoding.or(system.content_encoding);
    system.content_language = content_language.or(system.content_language);
    if let Some(e) = expires {
        system.expires_ms = Some(system_meta::unix_ms(e));
    }
    let enabled = checksum_mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    Described {
        content_type: content_type.unwrap_or_else(|| info.content_type.clone()),
        system,
        metadata: user_part(&info.user_meta),
        checksum: if enabled {
            stored_checksums(&info.user_meta)
        } else {
            Checksum::default()
        },
    }
}

/// The answer to a delete whose `x-amz-if-match-last-modified-time` does not hold.
pub(super) fn last_modified_changed() -> s3s::S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

/// Checks `If-Match`, `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since`
/// against an object, as S3 does for GET and HEAD.
fn check_conditions(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = (system_meta::last_modified_ms(info) / 1000) as i64;
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == info.etag,
    };
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if let Some(since) = if_unmodified_since
        && modified > unix_secs(since)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(not_modified(info));
        }
    } else if let Some(since) = if_modified_since
        && modified <= unix_secs(since)
    {
        return Err(not_modified(info));
    }
    Ok(())
}

/// A stream that is `Sync` because only its owner ever polls it (s3s wants `Sync` bodies;
/// the storage's object stream is only `Send`).
struct SyncStream<S>(std::sync::Mutex<S>);

impl<S> futures::Stream for SyncStream<S>
where
    S: futures::Stream + Unpin,
{
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let inner = match self.get_mut().0.get_mut() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        std::pin::Pin::new(inner).poll_next(cx)
    }
}

impl Gateway {
    /// Reads an object (or one version of it) for GET and HEAD: conditions first, then
    /// the range. Returns the stored key read beside its metadata.
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
        range: Option<Range>,
        part: Option<i32>,
        conditions: (
            Option<&ETagCondition>,
            Option<&ETagCondition>,
            Option<&Timestamp>,
            Option<&Timestamp>,
        ),
        body: bool,
    ) -> S3Result<(String, OpenedObject, Option<(u64, u64)>)> {
        self.check_key(object)?;
        // A read of the body from a known byte lets storage fetch the object's first bytes
        // with its metadata (a forwarded read); a suffix range or a part starts where only
        // the metadata says.
        let read_from = match (&range, part) {
            _ if !body => None,
            (None, None) => Some(0),
            (Some(Range::Int { first, .. }), None) => Some(*first),
            _ => None,
        };
        let stored = match version_id {
            Some(id) => {
                self.readable_version(&key.tenant, bucket, object, id)
                    .await?
            }
            None => object.to_owned(),
        };
        let opened = match self
            .storage()
            .open_object(&key.tenant, bucket, &stored, read_from)
            .await
        {
            Ok(opened) => opened,
            // A key whose current version is a delete marker answers 404 saying so, with
            // the marker's id, as S3 does.
            Err(StorageError::NoSuchKey(missing)) if version_id.is_none() => {
                let mut e = s3_err(StorageError::NoSuchKey(missing));
                if let Some(id) = self
                    .current_delete_marker(&key.tenant, bucket, object)
                    .await?
                {
                    let mut headers = hyper::HeaderMap::new();
                    headers.insert(
                        "x-amz-delete-marker",
                        hyper::header::HeaderValue::from_static("true"),
                    );
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
                        headers.insert("x-amz-version-id", v);
                    }
                    e.set_headers(headers);
                }
                return Err(e);
            }
            Err(e) => return Err(s3_err(e)),
        };
        let info = &opened.info;
        check_conditions(info, conditions.0, conditions.1, conditions.2, conditions.3)?;
        let range = match (range, part) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            (None, Some(n)) => {
                let (start, end) = self.part_range(info, n).await?;
                (start < end).then_some((start, end))
            }
            (None, None) => None,
            (Some(r), None) => {
                let r = r.check(info.size).map_err(|_| {
                    s3_error!(
                        InvalidRange,
                        "The requested range is not satisfiable (the object has {} bytes)",
                        info.size
                    )
                })?;
                Some((r.start, r.end))
            }
        };
        Ok((stored, opened, range))
    }

    pub(super) async fn put_object_impl(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let key = self.key_of(&req)?;
        let expected_sums = Expected::from_headers(&req.headers)?;
        let trailers = req.trailing_headers.clone();
        // The request is carried out with the bucket owner's key (`key`), but the object
        // may be owned by the tenant that made it (see `ownership`).
        let (owner, acl) = self.owner_and_acl_of_write(&req, &key.tenant, &req.input.bucket)?;
        // A form upload's `tagging` field arrives as this header (see `post_form`); s3s
        // reads the header into the input only for PUT.
        let form_tagging = (req.method == hyper::Method::POST)
            .then(|| req.headers.get("x-amz-tagging"))
            .flatten()
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| s3_error!(InvalidArgument, "x-amz-tagging is not valid text"))?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        // The guard checks headers, but a POST upload brings `x-amz-server-side-encryption`
        // and the KMS key id as form fields, which arrive here as the same input fields.
        let kms = self.write_kms_key(
            &key,
            &input.bucket,
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id.as_deref(),
            customer.as_ref(),
        )?;
        let expected = input.content_length.and_then(|l| u64::try_from(l).ok());
        let content_type = input
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let mut meta = user_meta(input.metadata);
        SystemMeta {
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_encoding: stored_encoding(input.content_encoding),
            content_language: input.content_language,
            expires_ms: input.expires.as_ref().map(system_meta::unix_ms),
        }
        .store_into(&mut meta);
        meta.extend(expected_sums.stored());
        if let Some(header) = input.tagging.as_ref().or(form_tagging.as_ref()) {
            tagging::store_into(&mut meta, &tagging::parse_header(header)?);
        }
        if let Some(acl) = acl {
            meta.insert(super::acl::OBJECT_ACL.to_owned(), acl);
        }
        super::ownership::record_owner(&mut meta, &owner, &key.tenant);
        self.apply_write_lock(
            &input.bucket,
            &LockHeaders {
                mode: input.object_lock_mode.as_ref(),
                until: input.object_lock_retain_until_date.as_ref(),
                legal_hold: input.object_lock_legal_hold_status.as_ref(),
            },
            super::object_lock::DefaultRetentionAt::Write,
            &mut meta,
        )?;
        let checksum = stored_checksums(&meta);
        let data_key =
            sse::writing_key(&key.data_key(), &mut meta, customer.as_ref(), kms.as_ref());
        let (body, expected) = match input.body {
            Some(body) => (body, expected),
            None => (StreamingBlob::wrap(empty_body()), Some(0)),
        };
        let (body, verdict) = Verifier::new(body, expected_sums, trailers);
        let pre = write_preconditions(input.if_match.as_ref(), input.if_none_match.as_ref());
        // In a versioned bucket the bytes go to a new version object first, which then
        // becomes the current version if the conditions hold.
        let version = self
            .begin_version(&key, &input.bucket, &input.key, &mut meta)
            .await?;
        let (target, put_pre) = match &version {
            Some(v) => (v.stored_key.clone(), Default::default()),
            None => (input.key.clone(), pre.clone()),
        };
        let stored = self
            .storage()
            .put_object_if(
                &key.tenant,
                &input.bucket,
                &target,
                &data_key,
                content_type,
                meta,
                expected,
                body,
                put_pre,
            )
            .await;
        if let Some(e) = verdict.error() {
            return Err(e);
        }
        let stored = stored.map_err(s3_err)?;
        let info = stored
            .info
            .ok_or_else(|| s3_error!(InternalError, "the stored object has no metadata"))?;
        if let Some(v) = &version {
            self.finish_version(&key, &data_key, &input.bucket, &input.key, v, &info, pre)
                .await?;
        }
        let encryption = sse::response_headers(customer.as_ref(), kms.as_ref().map(KmsKey::id));
        Ok(S3Response::new(PutObjectOutput {
            expiration: self.expiration_of(&input.bucket, &input.key, &info),
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            version_id: version.and_then(super::versioning::NewVersion::response_id),
            e_tag: Some(etag_of(&info)),
            size: i64::try_from(info.size).ok(),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_type: checksum.checksum_type,
            ..Default::default()
        }))
    }

    pub(super) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let (_, opened, range) = self
            .read(
                &key,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.range,
                input.part_number,
                (
                    input.if_match.as_ref(),
                    input.if_none_match.as_ref(),
                    input.if_modified_since.as_ref(),
                    input.if_unmodified_since.as_ref(),
                ),
                true,
            )
            .await?;
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let head = opened.info.clone();
        let opening = self.opening_key(&key, &head.user_meta, customer.as_ref())?;
        // The version the conditions were checked on is the one read: one metadata read
        // quorum per GET (it used to take a second one here).
        let read = self
            .storage()
            .read_opened(
                opened,
                &opening,
                range.map(|(start, end)| (start, Some(end.saturating_sub(1)))),
            )
            .await
            .map_err(s3_err)?;
        let info = read.info.clone();
        let (start, end) = read.range;
        let body = SyncStream(std::sync::Mutex::new(read.body));
        let d = describe(
            &info,
            input.checksum_mode.as_ref(),
            input.response_content_type,
            input.response_cache_control,
            input.response_content_disposition,
            input.response_content_encoding,
            input.response_content_language,
            input.response_expires.as_ref(),
        );
        // A checksum describes the whole object, so a range is sent without it.
        let parts_count = input
            .part_number
            .and(parts_count(&head.etag))
            .and_then(|n| i32::try_from(n).ok());
        let checksum = match (input.part_number, parts_count) {
            // A part of a multipart object: that part's checksum, as S3 answers.
            (Some(n), Some(_)) if d.checksum != Checksum::default() => {
                integrity::part_checksum(&info.user_meta, usize::try_from(n).unwrap_or(0))
            }
            _ if range.is_some() => Checksum::default(),
            _ => d.checksum,
        };
        let encryption = sse::response_headers(
            customer.as_ref(),
            super::kms::stored_key_id(&info.user_meta),
        );
        let lock = lock_fields(&info);
        let expiration = input
            .version_id
            .is_none()
            .then(|| self.expiration_of(&input.bucket, &input.key, &info))
            .flatten();
        Ok(S3Response::new(GetObjectOutput {
            expiration,
            object_lock_mode: lock.mode,
            object_lock_retain_until_date: lock.until,
            object_lock_legal_hold_status: lock.legal_hold,
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            body: Some(StreamingBlob::wrap(body)),
            content_length: i64::try_from(end - start).ok(),
            parts_count,
            tag_count: tagging::count(&info.user_meta),
            content_range: range
                .map(|_| format!("bytes {start}-{}/{}", end.saturating_sub(1), info.size)),
            accept_ranges: Some("bytes".into()),
            content_type: Some(d.content_type),
            cache_control: d.system.cache_control.clone(),
            content_disposition: d.system.content_disposition.clone(),
            content_encoding: d.system.content_encoding.clone(),
            content_language: d.system.content_language.clone(),
            expires: d.system.expires(),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(last_modified(&info)),
            metadata: d.metadata,
            version_id: version_header(&info, input.version_id.as_deref()),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_type: checksum.checksum_type,
            ..Default::default()
        }))
    }

    pub(super) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let (_, opened, range) = self
            .read(
                &key,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.range,
                input.part_number,
                (
                    input.if_match.as_ref(),
                    input.if_none_match.as_ref(),
                    input.if_modified_since.as_ref(),
                    input.if_unmodified_since.as_ref(),
                ),
                false,
            )
            .await?;
        let info = opened.info;
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        self.opening_key(&key, &info.user_meta, customer.as_ref())?;
        let encryption = sse::response_headers(
            customer.as_ref(),
            super::kms::stored_key_id(&info.user_meta),
        );
        let length = range.map(|(s, e)| e - s).unwrap_or(info.size);
        let parts_count = input
            .part_number
            .and(parts_count(&info.etag))
            .and_then(|n| i32::try_from(n).ok());
        let d = describe(
            &info,
            input.checksum_mode.as_ref(),
            input.response_content_type,
            input.response_cache_control,
            input.response_content_disposition,
            input.response_content_encoding,
            input.response_content_language,
            input.response_expires.as_ref(),
        );
        let lock = lock_fields(&info);
        let expiration = input
            .version_id
            .is_none()
            .then(|| self.expiration_of(&input.bucket, &input.key, &info))
            .flatten();
        let checksum = match (input.part_number, parts_count) {
            // A part of a multipart object: that part's checksum, as S3 answers.
            (Some(n), Some(_)) if d.checksum != Checksum::default() => {
                integrity::part_checksum(&info.user_meta, usize::try_from(n).unwrap_or(0))
            }
            _ => d.checksum,
        };
        let mut response = S3Response::new(HeadObjectOutput {
            expiration,
            object_lock_mode: lock.mode,
            object_lock_retain_until_date: lock.until,
            object_lock_legal_hold_status: lock.legal_hold,
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            content_length: i64::try_from(length).ok(),
            parts_count,
            content_range: range
                .map(|(s, e)| format!("bytes {s}-{}/{}", e.saturating_sub(1), info.size)),
            accept_ranges: Some("bytes".into()),
            content_type: Some(d.content_type),
            cache_control: d.system.cache_control.clone(),
            content_disposition: d.system.content_disposition.clone(),
            content_encoding: d.system.content_encoding.clone(),
            content_language: d.system.content_language.clone(),
            expires: d.system.expires(),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(last_modified(&info)),
            metadata: d.metadata,
            version_id: version_header(&info, input.version_id.as_deref()),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_type: checksum.checksum_type,
            ..Default::default()
        });
        // HeadObjectOutput has no field for it, but S3 sends the header on HEAD too.
        if let Some(n) = tagging::count(&info.user_meta)
            && let Ok(v) = hyper::header::HeaderValue::from_str(&n.to_string())
        {
            response.headers.insert("x-amz-tagging-count", v);
        }
        Ok(response)
    }

    /// A delete's conditions with its last-modified time decided against the current
    /// object (see `system_meta::pin_last_modified`).
    pub(super) async fn pin_current_last_modified(
        &self,
        tenant: &xnode_types::PublicKeyBytes,
        bucket: &str,
        object: &str,
        pre: xnode_storage::conditional::Preconditions,
    ) -> S3Result<xnode_storage::conditional::Preconditions> {
        if pre.if_match_last_modified_s.is_none() {
            return Ok(pre);
        }
        let current = match self.storage().head_object(tenant, bucket, object).await {
            Ok((_, info)) => Some(info),
            Err(StorageError::NoSuchKey(_)) => None,
            Err(e) => return Err(s3_err(e)),
        };
        system_meta::pin_last_modified(pre, current.as_ref()).ok_or_else(last_modified_changed)
    }

    pub(super) async fn delete_object_impl(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let pre = delete_preconditions(
            input.if_match.as_ref(),
            input.if_match_last_modified_time.as_ref(),
            input.if_match_size,
        )?;
        let (version_id, delete_marker) = self
            .delete_versioned(
                &key,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                pre,
                input.bypass_governance_retention.unwrap_or(false),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: delete_marker.then_some(true),
            version_id,
            ..Default::default()
        }))
    }

    pub(super) async fn delete_objects_impl(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "A DeleteObjects request may name at most 1000 keys"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            // Each entry's ETag, time and size are conditions on deleting it.
            let condition = object.e_tag.clone().map(ETagCondition::ETag);
            let result = match delete_preconditions(
                condition.as_ref(),
                object.last_modified_time.as_ref(),
                object.size,
            ) {
                Ok(pre) => {
                    self.delete_versioned(
                        &key,
                        &input.bucket,
                        &object.key,
                        object.version_id.as_deref(),
                        pre,
                        bypass,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok((version_id, marker)) => {
                    if !quiet {
                        // A new delete marker is named by its own id; a deleted version by the one asked for.
                        let new_marker = marker && object.version_id.is_none();
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: new_marker
                                .then(|| version_id.clone())
                                .flatten(),
                            version_id: if new_marker { None } else { version_id },
                        });
                    }
                }
                Err(err) => {
                    errors.push(Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: Some(object.key),
                        message: err.message().map(str::to_owned),
                        version_id: object.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}

/// The `x-amz-version-id` of a read: the version's id when the object has one (it was
/// written in a versioned bucket) or a version was asked for.
fn version_header(info: &ObjectInfo, asked: Option<&str>) -> Option<String> {
    (asked.is_some() || info.user_meta.contains_key(VERSION_ID)).then(|| public_id(info))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn conditions() {
        let info = ObjectInfo {
            manifest: xnode_store::ChunkId::of(b"m"),
            size: 1,
            etag: "abc".into(),
            content_type: "t".into(),
            user_meta: BTreeMap::new(),
            created_ms: 10_000,
        };
        let etag = |s: &str| ETagCondition::ETag(ETag::Strong(s.into()));
        let at = |s: u64| crate::gateway::timestamp(s * 1000);
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_owned());
        assert_eq!(
            code(check_conditions(
                &info,
                Some(&etag("abc")),
                None,
                None,
                None
            )),
            None
        );
        assert_eq!(
            code(check_conditions(&info, Some(&etag("x")), None, None, None)).as_deref(),
            Some("PreconditionFailed")
        );
        assert_eq!(
            code(check_conditions(
                &info,
                None,
                Some(&etag("abc")),
                None,
                None
            ))
            .as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            code(check_conditions(&info, None, Some(&etag("x")), None, None)),
            None
        );
        assert_eq!(
            code(check_conditions(&info, None, None, Some(&at(10)), None)).as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            code(check_conditions(&info, None, None, Some(&at(9)), None)),
            None
        );
        assert_eq!(
            code(check_conditions(&info, None, None, None, Some(&at(9)))).as_deref(),
            Some("PreconditionFailed")
        );
        // A rewrite of the object's ACL, tags or lock keeps its date: conditions compare
        // with the write's, not the rewrite's.
        let mut rewritten = info.clone();
        rewritten.created_ms = 50_000;
        system_meta::keep_last_modified(&mut rewritten.user_meta, &info);
        assert_eq!(
            code(check_conditions(
                &rewritten,
                None,
                None,
                Some(&at(10)),
                None
            ))
            .as_deref(),
            Some("NotModified")
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            code(check_conditions(
                &info,
                None,
                Some(&etag("x")),
                Some(&at(10)),
                None
            )),
            None
        );
    }
}
