//! Object operations: PUT, GET and HEAD (with S3's conditional headers and ranges),
//! DELETE and the batch `DeleteObjects`.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use xnode_store::ObjectInfo;

use super::{DEFAULT_CONTENT_TYPE, Gateway, empty_body, etag_of, s3_err, timestamp, user_meta};
use crate::keys::AccessKey;

fn unix_secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

fn metadata_of(info: &ObjectInfo) -> Option<Metadata> {
    (!info.user_meta.is_empty()).then(|| {
        info.user_meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
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
    let modified = (info.created_ms / 1000) as i64;
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
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    } else if let Some(since) = if_modified_since
        && modified <= unix_secs(since)
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
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
    /// Reads an object for GET and HEAD: conditions first, then the range.
    async fn read(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        range: Option<Range>,
        conditions: (
            Option<&ETagCondition>,
            Option<&ETagCondition>,
            Option<&Timestamp>,
            Option<&Timestamp>,
        ),
    ) -> S3Result<(ObjectInfo, Option<(u64, u64)>)> {
        let (_, info) = self
            .storage()
            .head_object(&key.tenant, bucket, object)
            .await
            .map_err(s3_err)?;
        check_conditions(
            &info,
            conditions.0,
            conditions.1,
            conditions.2,
            conditions.3,
        )?;
        let range = match range {
            None => None,
            Some(r) => {
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
        Ok((info, range))
    }

    pub(super) async fn put_object_impl(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let expected = input.content_length.and_then(|l| u64::try_from(l).ok());
        let content_type = input
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        let meta = match input.body {
            Some(body) => {
                self.storage()
                    .put_object(
                        &key.tenant,
                        &input.bucket,
                        &input.key,
                        &key.data_key(),
                        content_type,
                        user_meta(input.metadata),
                        expected,
                        body,
                    )
                    .await
            }
            None => {
                self.storage()
                    .put_object(
                        &key.tenant,
                        &input.bucket,
                        &input.key,
                        &key.data_key(),
                        content_type,
                        user_meta(input.metadata),
                        Some(0),
                        empty_body(),
                    )
                    .await
            }
        }
        .map_err(s3_err)?;
        let info = meta
            .info
            .ok_or_else(|| s3_error!(InternalError, "the stored object has no metadata"))?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag_of(&info)),
            size: i64::try_from(info.size).ok(),
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
        let (_, range) = self
            .read(
                &key,
                &input.bucket,
                &input.key,
                input.range,
                (
                    input.if_match.as_ref(),
                    input.if_none_match.as_ref(),
                    input.if_modified_since.as_ref(),
                    input.if_unmodified_since.as_ref(),
                ),
            )
            .await?;
        let read = self
            .storage()
            .get_object(
                &key.tenant,
                &input.bucket,
                &input.key,
                &key.data_key(),
                range.map(|(start, end)| (start, Some(end.saturating_sub(1)))),
            )
            .await
            .map_err(s3_err)?;
        // The object may have changed between the two reads; describe what is sent.
        let info = read.info.clone();
        let (start, end) = read.range;
        let body = SyncStream(std::sync::Mutex::new(read.body));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: i64::try_from(end - start).ok(),
            content_range: range
                .map(|_| format!("bytes {start}-{}/{}", end.saturating_sub(1), info.size)),
            accept_ranges: Some("bytes".into()),
            content_type: Some(info.content_type.clone()),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(timestamp(info.created_ms)),
            metadata: metadata_of(&info),
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
        let (info, range) = self
            .read(
                &key,
                &input.bucket,
                &input.key,
                input.range,
                (
                    input.if_match.as_ref(),
                    input.if_none_match.as_ref(),
                    input.if_modified_since.as_ref(),
                    input.if_unmodified_since.as_ref(),
                ),
            )
            .await?;
        let length = range.map(|(s, e)| e - s).unwrap_or(info.size);
        Ok(S3Response::new(HeadObjectOutput {
            content_length: i64::try_from(length).ok(),
            content_range: range
                .map(|(s, e)| format!("bytes {s}-{}/{}", e.saturating_sub(1), info.size)),
            accept_ranges: Some("bytes".into()),
            content_type: Some(info.content_type.clone()),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(timestamp(info.created_ms)),
            metadata: metadata_of(&info),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_object_impl(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.storage()
            .delete_object(&key.tenant, &input.bucket, &input.key)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
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
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            match self
                .storage()
                .delete_object(&key.tenant, &input.bucket, &object.key)
                .await
            {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => {
                    let err = s3_err(e);
                    errors.push(Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: Some(object.key),
                        message: err.message().map(str::to_owned),
                        version_id: None,
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
        let at = |s: u64| timestamp(s * 1000);
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
