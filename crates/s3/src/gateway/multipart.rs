//! Multipart uploads: an upload is a hidden record object plus one hidden object per
//! part; completing one composes the parts' chunks into the object without copying data.

use std::collections::BTreeMap;

use md5::Digest as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_storage::StorageError;
use xnode_store::{ObjectInfo, internal_key};
use xnode_types::PublicKeyBytes;

use super::{
    DEFAULT_CONTENT_TYPE, Gateway, MAX_KEYS, MAX_PART_NUMBER, MIN_PART_SIZE, empty_body, etag_of,
    s3_err, unix_ms, user_meta,
};

/// Upload records keep the target key and content type in their user metadata under these
/// names, and the upload's own user metadata under `META_PREFIX` + name.
const UPLOAD_KEY: &str = "key";
const UPLOAD_CONTENT_TYPE: &str = "content-type";
const UPLOAD_INITIATED: &str = "initiated-ms";
const META_PREFIX: &str = "meta:";

/// An upload record's contents.
pub(super) struct Upload {
    pub(super) key: String,
    pub(super) content_type: String,
    pub(super) user_meta: BTreeMap<String, String>,
    pub(super) initiated_ms: u64,
}

fn upload_record_key(upload_id: &str) -> String {
    internal_key(&format!("mpu/{upload_id}"))
}

fn parts_prefix(upload_id: &str) -> String {
    internal_key(&format!("part/{upload_id}/"))
}

pub(super) fn part_key(upload_id: &str, part: i32) -> String {
    internal_key(&format!("part/{upload_id}/{part:05}"))
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Gateway {
    pub(super) async fn read_upload(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<Upload> {
        let no_such = || {
            s3_error!(
                NoSuchUpload,
                "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
            )
        };
        if !valid_upload_id(upload_id) {
            return Err(no_such());
        }
        let (_, info) = match self
            .storage()
            .head_object(tenant, bucket, &upload_record_key(upload_id))
            .await
        {
            Ok(found) => found,
            Err(StorageError::NoSuchKey(_)) => return Err(no_such()),
            Err(e) => return Err(s3_err(e)),
        };
        let upload = upload_from(&info);
        if upload.key != key {
            return Err(no_such());
        }
        Ok(upload)
    }

    /// Every stored part of an upload: part number → metadata.
    pub(super) async fn parts_of(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        upload_id: &str,
    ) -> S3Result<BTreeMap<i32, xnode_store::ObjectMeta>> {
        let prefix = parts_prefix(upload_id);
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .storage()
                .list_objects(tenant, bucket, &prefix, after.as_deref(), MAX_KEYS)
                .await
                .map_err(s3_err)?;
            let full = page.len() >= MAX_KEYS;
            for meta in page {
                after = Some(meta.path.key.clone());
                if let Some(n) = meta
                    .path
                    .key
                    .get(prefix.len()..)
                    .and_then(|n| n.parse::<i32>().ok())
                {
                    out.insert(n, meta);
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Removes an upload's record and parts (their chunks go at the next garbage
    /// collection). Failures are logged: leftovers are invisible and removed by a retry.
    pub(super) async fn remove_upload(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        upload_id: &str,
    ) {
        let storage = self.storage();
        if let Err(e) = storage
            .delete_object(tenant, bucket, &upload_record_key(upload_id))
            .await
        {
            tracing::warn!(error = %e, upload_id, "could not remove a multipart upload record");
        }
        match self.parts_of(tenant, bucket, upload_id).await {
            Ok(parts) => {
                for meta in parts.values() {
                    if let Err(e) = storage.delete_object(tenant, bucket, &meta.path.key).await {
                        tracing::warn!(error = %e, upload_id, "could not remove a multipart part");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, upload_id, "could not list multipart parts"),
        }
    }

    /// Every pending upload of a bucket.
    pub(super) async fn uploads_of(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> S3Result<Vec<(String, Upload)>> {
        let prefix = internal_key("mpu/");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .storage()
                .list_objects(tenant, bucket, &prefix, after.as_deref(), MAX_KEYS)
                .await
                .map_err(s3_err)?;
            let full = page.len() >= MAX_KEYS;
            for meta in page {
                after = Some(meta.path.key.clone());
                let Some(id) = meta.path.key.get(prefix.len()..) else {
                    continue;
                };
                if let Some(info) = &meta.info {
                    out.push((id.to_owned(), upload_from(info)));
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        xnode_store::validate_object_key(&input.key)
            .map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
        let upload_id = {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        let mut record: BTreeMap<String, String> = user_meta(input.metadata)
            .into_iter()
            .map(|(k, v)| (format!("{META_PREFIX}{k}"), v))
            .collect();
        record.insert(UPLOAD_KEY.into(), input.key.clone());
        record.insert(
            UPLOAD_CONTENT_TYPE.into(),
            input
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        );
        record.insert(UPLOAD_INITIATED.into(), unix_ms().to_string());
        self.storage()
            .put_object(
                &key.tenant,
                &input.bucket,
                &upload_record_key(&upload_id),
                &key.data_key(),
                "application/x-xnode-multipart-upload".into(),
                record,
                Some(0),
                empty_body(),
            )
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_impl(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let expected = input.content_length.and_then(|l| u64::try_from(l).ok());
        let part = part_key(&input.upload_id, input.part_number);
        let result = match input.body {
            Some(body) => {
                self.storage()
                    .put_object(
                        &key.tenant,
                        &input.bucket,
                        &part,
                        &key.data_key(),
                        DEFAULT_CONTENT_TYPE.into(),
                        BTreeMap::new(),
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
                        &part,
                        &key.data_key(),
                        DEFAULT_CONTENT_TYPE.into(),
                        BTreeMap::new(),
                        Some(0),
                        empty_body(),
                    )
                    .await
            }
        };
        let meta = result.map_err(s3_err)?;
        let info = meta
            .info
            .ok_or_else(|| s3_error!(InternalError, "the stored part has no metadata"))?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag_of(&info)),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let upload = self
            .read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema: it lists no parts"
            ));
        }
        let stored = self
            .parts_of(&key.tenant, &input.bucket, &input.upload_id)
            .await?;
        let mut previous = 0;
        for part in &requested {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            previous = number;
        }
        let mut sources = Vec::with_capacity(requested.len());
        let mut etags = Vec::with_capacity(requested.len());
        let last = requested.len() - 1;
        for (i, part) in requested.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            let invalid = || {
                s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {number})"
                )
            };
            let Some(info) = stored.get(&number).and_then(|m| m.info.as_ref()) else {
                return Err(invalid());
            };
            if let Some(etag) = &part.e_tag
                && etag.value().trim_matches('"') != info.etag
            {
                return Err(invalid());
            }
            if i < last && info.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size (part {number} has {} bytes; every part but the last needs at least 5 MiB)",
                    info.size
                ));
            }
            sources.push((input.bucket.clone(), part_key(&input.upload_id, number)));
            etags.push(info.etag.clone());
        }
        let etag = multipart_etag(&etags)
            .ok_or_else(|| s3_error!(InternalError, "a part has a malformed ETag"))?;
        // The parts' chunks become the object's segments: no data is copied.
        let meta = self
            .storage()
            .compose_object(
                &key.tenant,
                &input.bucket,
                &input.key,
                &key.data_key(),
                &sources,
                upload.content_type,
                upload.user_meta,
                etag.clone(),
            )
            .await
            .map_err(s3_err)?;
        debug_assert!(meta.info.is_some());
        self.remove_upload(&key.tenant, &input.bucket, &input.upload_id)
            .await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        self.remove_upload(&key.tenant, &input.bucket, &input.upload_id)
            .await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

fn upload_from(info: &ObjectInfo) -> Upload {
    let meta = &info.user_meta;
    Upload {
        key: meta.get(UPLOAD_KEY).cloned().unwrap_or_default(),
        content_type: meta
            .get(UPLOAD_CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        user_meta: meta
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(META_PREFIX)
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect(),
        initiated_ms: meta
            .get(UPLOAD_INITIATED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(info.created_ms),
    }
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' binary MD5s, then `-N`.
pub fn multipart_etag(part_etags: &[String]) -> Option<String> {
    let mut md5 = md5::Md5::new();
    for etag in part_etags {
        let mut raw = [0u8; 16];
        hex::decode_to_slice(etag, &mut raw).ok()?;
        md5.update(raw);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5.finalize()),
        part_etags.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_follow_s3() {
        // Two parts whose MD5s are those of "a" and "b".
        let a = hex::encode(md5::Md5::digest(b"a"));
        let b = hex::encode(md5::Md5::digest(b"b"));
        let mut both = Vec::new();
        both.extend(md5::Md5::digest(b"a"));
        both.extend(md5::Md5::digest(b"b"));
        let expected = format!("{}-2", hex::encode(md5::Md5::digest(&both)));
        assert_eq!(multipart_etag(&[a, b]).unwrap(), expected);
        assert!(multipart_etag(&["zz".into()]).is_none());
    }
}
