//! Server-side copies: `CopyObject` (a new manifest over the source's chunks) and
//! `UploadPartCopy` (a range of an object stored again as a part), with the parsing of
//! copy sources and their `x-amz-copy-source-if-*` conditions.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::multipart::part_key;
use super::sse::{self, CustomerKey};
use super::system_meta::{self, SystemMeta, stored_encoding};
use super::tagging;
use super::{
    DEFAULT_CONTENT_TYPE, Gateway, MAX_PART_NUMBER, etag_of, last_modified, s3_err, user_meta,
    write_preconditions,
};
use xnode_store::ObjectInfo;

use crate::keys::AccessKey;

/// The `x-amz-copy-source-if-*` headers of a copy.
struct CopyConditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// An `If-Match` or `If-None-Match` header of a request, parsed as S3 parses them.
fn header_condition(headers: &hyper::HeaderMap, name: &str) -> S3Result<Option<ETagCondition>> {
    headers
        .get(name)
        .map(|v| {
            ETagCondition::parse_http_header(v.as_bytes()).map_err(|_| {
                s3_error!(
                    InvalidArgument,
                    "The {name} header is not a valid ETag or *"
                )
            })
        })
        .transpose()
}

/// The key a copy reads its source with: the source owner's when the access check found
/// the source in another owner's bucket and granted the requester its read (see
/// `authorize::copy_source_as`), else the request's own.
fn source_key<T>(req: &S3Request<T>, key: &AccessKey) -> AccessKey {
    req.extensions
        .get::<crate::authorize::CopySourceAs>()
        .map_or_else(|| key.clone(), |source| source.0.clone())
}

impl Gateway {
    /// The stored key a copy reads: the source object, or the version named.
    async fn source_version(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
    ) -> S3Result<String> {
        match version_id {
            Some(id) => self.readable_version(&key.tenant, bucket, object, id).await,
            None => Ok(object.to_owned()),
        }
    }

    pub(super) async fn copy_object_impl(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let key = self.key_of(&req)?;
        let source = source_key(&req, &key);
        // The copy is a new object, owned as any write by its requester is (see
        // `ownership`), whoever owned the source.
        let (owner, acl) = self.owner_and_acl_of_write(&req, &key.tenant, &req.input.bucket)?;
        // s3s has no fields for the destination's conditions: they are read here.
        let pre = write_preconditions(
            header_condition(&req.headers, "if-match")?.as_ref(),
            header_condition(&req.headers, "if-none-match")?.as_ref(),
        );
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        self.require_bucket(&source.tenant, src_bucket)?;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(src_key)?;
        self.check_key(&input.key)?;
        let (src_customer, dest_customer) = copy_customer_keys(
            &input.copy_source_sse_customer_algorithm,
            &input.copy_source_sse_customer_key,
            &input.copy_source_sse_customer_key_md5,
            &input.sse_customer_algorithm,
            &input.sse_customer_key,
            &input.sse_customer_key_md5,
        )?;
        let dest_kms = self.write_kms_key(
            &key,
            &input.bucket,
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id.as_deref(),
            dest_customer.as_ref(),
        )?;
        let src_stored = self
            .source_version(&source, src_bucket, src_key, src_version)
            .await?;
        let (_, src) = self
            .storage()
            .head_object(&source.tenant, src_bucket, &src_stored)
            .await
            .map_err(s3_err)?;
        check_copy_conditions(
            &src,
            &CopyConditions {
                if_match: input.copy_source_if_match.as_ref(),
                if_none_match: input.copy_source_if_none_match.as_ref(),
                if_modified_since: input.copy_source_if_modified_since.as_ref(),
                if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            },
        )?;
        let open = self.opening_key(&source, &src.user_meta, src_customer.as_ref())?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        // Asking for encryption (SSE-S3, SSE-KMS or a customer key) or leaving an SSE-C or
        // SSE-KMS source changes the object's encryption attributes, which S3 accepts as a
        // reason to copy an object onto itself.
        let changes_encryption = dest_customer.is_some()
            || input.server_side_encryption.is_some()
            || sse::stored_verifier(&src.user_meta).is_some()
            || super::kms::stored_key_id(&src.user_meta).is_some();
        if !replace
            && !changes_encryption
            && src_version.is_none()
            && src_bucket == input.bucket.as_str()
            && src_key == input.key.as_str()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        // The source's checksums stay true of the copy's content, whatever the directive;
        // the upload that made the source did not make the copy.
        let mut kept = system_meta::without_headers(&system_meta::system_part(&src.user_meta));
        kept.remove(system_meta::UPLOAD_ID);
        kept.remove(tagging::TAGS);
        // Tags are copied unless the directive says REPLACE (then the request's, if any).
        let tags = if input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE)
        {
            input
                .tagging
                .as_deref()
                .map(tagging::parse_header)
                .transpose()?
                .unwrap_or_default()
        } else {
            tagging::stored(&src.user_meta)
        };
        let (content_type, meta) = if replace {
            let mut meta = user_meta(input.metadata);
            SystemMeta {
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: stored_encoding(input.content_encoding),
                content_language: input.content_language,
                expires_ms: input.expires.as_ref().map(system_meta::unix_ms),
            }
            .store_into(&mut meta);
            meta.extend(kept);
            tagging::store_into(&mut meta, &tags);
            (
                input
                    .content_type
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
                meta,
            )
        } else {
            let mut meta = src.user_meta.clone();
            meta.remove(system_meta::UPLOAD_ID);
            tagging::store_into(&mut meta, &tags);
            (src.content_type.clone(), meta)
        };
        let mut meta = meta;
        // A copy is a new object, written now, whatever its source's Last-Modified.
        meta.remove(system_meta::LAST_MODIFIED);
        // A source's ACL names the source's owner; a copy owned by someone else starts
        // from its own (the requested one, or private to its owner) instead, so the
        // source's owner keeps no hold on the copy.
        let source_owner = super::ownership::object_owner(&src.user_meta, &source.tenant);
        if source_owner != owner {
            meta.remove(super::acl::OBJECT_ACL);
        }
        if let Some(acl) = acl {
            meta.insert(super::acl::OBJECT_ACL.to_owned(), acl);
        }
        super::ownership::record_owner(&mut meta, &owner, &key.tenant);
        // The copy carries the lock its request asks for (or the bucket's default), never
        // its source's.
        self.apply_write_lock(
            &input.bucket,
            &super::object_lock::LockHeaders {
                mode: input.object_lock_mode.as_ref(),
                until: input.object_lock_retain_until_date.as_ref(),
                legal_hold: input.object_lock_legal_hold_status.as_ref(),
            },
            super::object_lock::DefaultRetentionAt::Write,
            &mut meta,
        )?;
        let wrap = sse::writing_key(
            &key.data_key(),
            &mut meta,
            dest_customer.as_ref(),
            dest_kms.as_ref(),
        );
        let version = self
            .begin_version(&key, &input.bucket, &input.key, &mut meta)
            .await?;
        let (target, compose_pre) = match &version {
            Some(v) => (v.stored_key.clone(), Default::default()),
            None => (input.key.clone(), pre.clone()),
        };
        let copied = if source.tenant == key.tenant {
            // No data moves: the copy's manifest reuses the source's chunks.
            self.storage()
                .compose_object_if(
                    &key.tenant,
                    &input.bucket,
                    &target,
                    &sse::Rekey {
                        open: &open,
                        wrap: &wrap,
                    },
                    &[(src_bucket.to_string(), src_stored.clone())],
                    content_type,
                    meta,
                    src.etag.clone(),
                    compose_pre,
                )
                .await
        } else {
            // Another owner's chunks are that owner's (its quota, its bucket's placement,
            // its garbage collection): the content is read under its key and stored again
            // under the requester's, as a part copy is.
            let read = self
                .storage()
                .get_object(&source.tenant, src_bucket, &src_stored, &open, None)
                .await
                .map_err(s3_err)?;
            let length = read.range.1.saturating_sub(read.range.0);
            self.storage()
                .put_object_if(
                    &key.tenant,
                    &input.bucket,
                    &target,
                    &wrap,
                    content_type,
                    meta,
                    Some(length),
                    read.body,
                    compose_pre,
                )
                .await
        }
        .map_err(s3_err)?;
        let info = copied
            .info
            .ok_or_else(|| s3_error!(InternalError, "the copy has no metadata"))?;
        if let Some(v) = &version {
            self.finish_version(&key, &wrap, &input.bucket, &input.key, v, &info, pre)
                .await?;
        }
        let encryption = sse::response_headers(
            dest_customer.as_ref(),
            dest_kms.as_ref().map(super::kms::KmsKey::id),
        );
        Ok(S3Response::new(CopyObjectOutput {
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            version_id: version.and_then(super::versioning::NewVersion::response_id),
            copy_source_version_id: src_version.map(str::to_owned),
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag_of(&info)),
                last_modified: Some(last_modified(&info)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// A part copied from (a range of) an existing object: `aws s3 cp` between buckets uses
    /// it for objects above its multipart threshold. The range is read and stored again
    /// as the part (encrypted and replicated like any part).
    pub(super) async fn upload_part_copy_impl(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let key = self.key_of(&req)?;
        let source = source_key(&req, &key);
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        self.require_bucket(&source.tenant, src_bucket)?;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(src_key)?;
        self.check_key(&input.key)?;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let (src_customer, dest_customer) = copy_customer_keys(
            &input.copy_source_sse_customer_algorithm,
            &input.copy_source_sse_customer_key,
            &input.copy_source_sse_customer_key_md5,
            &input.sse_customer_algorithm,
            &input.sse_customer_key,
            &input.sse_customer_key_md5,
        )?;
        let upload = self
            .read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let data_key = self.upload_key(
            &key,
            upload.sse_c.as_deref(),
            upload.sse_kms.as_deref(),
            dest_customer.as_ref(),
        )?;
        let src_stored = self
            .source_version(&source, src_bucket, src_key, src_version)
            .await?;
        let (_, src) = self
            .storage()
            .head_object(&source.tenant, src_bucket, &src_stored)
            .await
            .map_err(s3_err)?;
        check_copy_conditions(
            &src,
            &CopyConditions {
                if_match: input.copy_source_if_match.as_ref(),
                if_none_match: input.copy_source_if_none_match.as_ref(),
                if_modified_since: input.copy_source_if_modified_since.as_ref(),
                if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            },
        )?;
        let open = self.opening_key(&source, &src.user_meta, src_customer.as_ref())?;
        let range = match &input.copy_source_range {
            None => None,
            Some(text) => Some(copy_range(text, src.size)?),
        };
        let read = self
            .storage()
            .get_object(&source.tenant, src_bucket, &src_stored, &open, range)
            .await
            .map_err(s3_err)?;
        let length = read.range.1.saturating_sub(read.range.0);
        let part = part_key(&input.upload_id, input.part_number);
        let meta = self
            .storage()
            .put_object(
                &key.tenant,
                &input.bucket,
                &part,
                &data_key,
                DEFAULT_CONTENT_TYPE.into(),
                BTreeMap::new(),
                Some(length),
                read.body,
            )
            .await
            .map_err(s3_err)?;
        let info = meta
            .info
            .ok_or_else(|| s3_error!(InternalError, "the stored part has no metadata"))?;
        let encryption = sse::response_headers(dest_customer.as_ref(), upload.sse_kms.as_deref());
        Ok(S3Response::new(UploadPartCopyOutput {
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag_of(&info)),
                last_modified: Some(last_modified(&info)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// The customer keys of a copy: the source's (`x-amz-copy-source-server-side-encryption-customer-*`)
/// and the destination's (`x-amz-server-side-encryption-customer-*`).
fn copy_customer_keys(
    src_algorithm: &Option<String>,
    src_key: &Option<String>,
    src_md5: &Option<String>,
    algorithm: &Option<String>,
    key: &Option<String>,
    md5: &Option<String>,
) -> S3Result<(Option<CustomerKey>, Option<CustomerKey>)> {
    Ok((
        CustomerKey::parse(
            src_algorithm.as_deref(),
            src_key.as_deref(),
            src_md5.as_deref(),
        )?,
        CustomerKey::parse(algorithm.as_deref(), key.as_deref(), md5.as_deref())?,
    ))
}

/// `x-amz-copy-source-range`: unlike a GET's `Range`, it must be `bytes=first-last` and lie
/// wholly inside the source (S3 does not clip it). Returns `(first, Some(last))`.
fn copy_range(text: &str, size: u64) -> S3Result<(u64, Option<u64>)> {
    let parsed = text
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let Some((first, last)) = parsed else {
        return Err(s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        ));
    };
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable (the source object has {size} bytes)"
        ));
    }
    Ok((first, Some(last)))
}

/// The bucket, key and version id (if one is named) of a copy source (access points are
/// not supported).
fn copy_source(source: &CopySource) -> S3Result<(&str, &str, Option<&str>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((bucket, key, version_id.as_deref())),
        _ => Err(s3_error!(
            NotImplemented,
            "Only bucket/key copy sources are supported"
        )),
    }
}

/// The `x-amz-copy-source-if-*` conditions against the source, as S3 evaluates them: like
/// a GET's, except that every failure is `412` (a copy has nothing to answer `304` with).
/// A true `if-match` overrides a false `if-unmodified-since`, and a true `if-none-match`
/// a false `if-modified-since`.
fn check_copy_conditions(src: &ObjectInfo, c: &CopyConditions<'_>) -> S3Result<()> {
    let holds = |c: &ETagCondition| {
        matches!(c, ETagCondition::Any) || c.as_etag().map(ETag::value) == Some(src.etag.as_str())
    };
    let modified = (system_meta::last_modified_ms(src) / 1000) as i64;
    let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
    let failed = match (c.if_match, c.if_unmodified_since) {
        (Some(m), _) => !holds(m),
        (None, Some(since)) => modified > secs(since),
        (None, None) => false,
    } || match (c.if_none_match, c.if_modified_since) {
        (Some(m), _) => holds(m),
        (None, Some(since)) => modified <= secs(since),
        (None, None) => false,
    };
    if failed {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_must_lie_inside_the_source() {
        assert_eq!(copy_range("bytes=0-4", 5).unwrap(), (0, Some(4)));
        let code = |r: S3Result<(u64, Option<u64>)>| r.unwrap_err().code().as_str().to_owned();
        assert_eq!(code(copy_range("bytes=0-21", 5)), "InvalidRange");
        assert_eq!(code(copy_range("bytes=3-2", 5)), "InvalidRange");
        assert_eq!(code(copy_range("bytes=-2", 5)), "InvalidArgument");
        assert_eq!(code(copy_range("0-2", 5)), "InvalidArgument");
    }
}
