//! Server-side copies: `CopyObject` (a new manifest over the source's chunks) and
//! `UploadPartCopy` (a range of an object stored again as a part), with the parsing of
//! copy sources and their `x-amz-copy-source-if-*` conditions.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::multipart::part_key;
use super::{
    DEFAULT_CONTENT_TYPE, Gateway, MAX_PART_NUMBER, etag_of, s3_err, timestamp, user_meta,
};

impl Gateway {
    pub(super) async fn copy_object_impl(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        self.require_bucket(&key.tenant, src_bucket)?;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let (_, src) = self
            .storage()
            .head_object(&key.tenant, src_bucket, src_key)
            .await
            .map_err(s3_err)?;
        check_copy_conditions(&src.etag, input.copy_source_if_match.as_ref(), None)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == input.bucket.as_str() && src_key == input.key.as_str() {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let (content_type, meta) = if replace {
            (
                input
                    .content_type
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
                user_meta(input.metadata),
            )
        } else {
            (src.content_type.clone(), src.user_meta.clone())
        };
        // No data moves: the copy's manifest reuses the source's chunks.
        let copied = self
            .storage()
            .compose_object(
                &key.tenant,
                &input.bucket,
                &input.key,
                &key.data_key(),
                &[(src_bucket.to_string(), src_key.to_string())],
                content_type,
                meta,
                src.etag.clone(),
            )
            .await
            .map_err(s3_err)?;
        let info = copied
            .info
            .ok_or_else(|| s3_error!(InternalError, "the copy has no metadata"))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag_of(&info)),
                last_modified: Some(timestamp(info.created_ms)),
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
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        self.require_bucket(&key.tenant, src_bucket)?;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let (_, src) = self
            .storage()
            .head_object(&key.tenant, src_bucket, src_key)
            .await
            .map_err(s3_err)?;
        check_copy_conditions(
            &src.etag,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
        )?;
        let range = match &input.copy_source_range {
            None => None,
            Some(text) => {
                let parsed = Range::parse(text).map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
                    )
                })?;
                let checked = parsed.check(src.size).map_err(|_| {
                    s3_error!(
                        InvalidRange,
                        "The requested range is not satisfiable (the source object has {} bytes)",
                        src.size
                    )
                })?;
                Some((checked.start, Some(checked.end.saturating_sub(1))))
            }
        };
        let read = self
            .storage()
            .get_object(&key.tenant, src_bucket, src_key, &key.data_key(), range)
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
                &key.data_key(),
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
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag_of(&info)),
                last_modified: Some(timestamp(info.created_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// The bucket and key of a copy source (access points are not supported).
fn copy_source(source: &CopySource) -> S3Result<(&str, &str)> {
    match source {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket, key)),
        _ => Err(s3_error!(
            NotImplemented,
            "Only bucket/key copy sources are supported"
        )),
    }
}

/// `x-amz-copy-source-if-match` / `-if-none-match` against the source's ETag.
fn check_copy_conditions(
    etag: &str,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let holds = |c: &ETagCondition| {
        matches!(c, ETagCondition::Any) || c.as_etag().map(ETag::value) == Some(etag)
    };
    if if_match.is_some_and(|c| !holds(c)) || if_none_match.is_some_and(holds) {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    Ok(())
}
