//! Multipart uploads: an upload is a hidden record object plus one hidden object per
//! part; completing one composes the parts' chunks into the object without copying data.

use std::collections::BTreeMap;

use md5::Digest as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_storage::StorageError;
use xnode_store::{ObjectInfo, internal_key};
use xnode_types::PublicKeyBytes;

use super::integrity::{self, Expected, Verifier, stored_checksums};
use super::sse::{self, CustomerKey};
use super::system_meta::{self, SystemMeta, stored_encoding};
use super::{
    DEFAULT_CONTENT_TYPE, Gateway, MAX_KEYS, MAX_PART_NUMBER, MIN_PART_SIZE, empty_body, etag_of,
    s3_err, unix_ms, user_meta, write_preconditions,
};

/// Upload records keep the target key and content type in their user metadata under these
/// names, and the upload's own user metadata under `META_PREFIX` + name.
const UPLOAD_KEY: &str = "key";
const UPLOAD_CONTENT_TYPE: &str = "content-type";
const UPLOAD_INITIATED: &str = "initiated-ms";
/// The checksum algorithm the upload was created with (lower case), if any.
const UPLOAD_CHECKSUM: &str = "checksum-algorithm";
/// Present (`FULL_OBJECT`) when the upload's checksum is of the whole object, a CRC
/// combined from the parts' CRCs; absent for S3's default, a composite checksum.
const UPLOAD_CHECKSUM_TYPE: &str = "checksum-type";
const META_PREFIX: &str = "meta:";

/// An upload record's contents.
pub(super) struct Upload {
    pub(super) key: String,
    pub(super) content_type: String,
    /// The object's metadata: the user's, and the system headers (`system_meta`).
    pub(super) user_meta: BTreeMap<String, String>,
    pub(super) initiated_ms: u64,
    pub(super) checksum: Option<String>,
    /// Whether `checksum` is a full-object CRC (`x-amz-checksum-type: FULL_OBJECT`)
    /// rather than a composite checksum.
    pub(super) full_object: bool,
    /// The SSE-C verifier of the customer key the upload was created with, if any.
    pub(super) sse_c: Option<String>,
    /// The id of the KMS key the upload was created with (SSE-KMS), if any.
    pub(super) sse_kms: Option<String>,
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
        // Who will own the object (see `ownership`), and the ACL it asks for, kept in the
        // upload's record with its metadata and given to the object at completion.
        let (owner, acl) = self.owner_and_acl_of_write(&req, &key.tenant, &req.input.bucket)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_lowercase());
        if let Some(a) = &algorithm
            && !integrity::is_algorithm(a)
        {
            return Err(s3_error!(
                InvalidRequest,
                "Unknown checksum algorithm {a:?}"
            ));
        }
        let full_object = integrity::upload_checksum_type(
            algorithm.as_deref(),
            input.checksum_type.as_ref().map(ChecksumType::as_str),
        )?;
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let kms = self.write_kms_key(
            &key,
            &input.bucket,
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id.as_deref(),
            customer.as_ref(),
        )?;
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
        // Only this gateway says who owns the object, never a metadata entry of the
        // request's.
        record.remove(&format!("{META_PREFIX}{}", super::ownership::OBJECT_OWNER));
        let mut ownership = BTreeMap::new();
        if let Some(acl) = acl {
            ownership.insert(super::acl::OBJECT_ACL.to_owned(), acl);
        }
        super::ownership::record_owner(&mut ownership, &owner, &key.tenant);
        record.extend(
            ownership
                .into_iter()
                .map(|(k, v)| (format!("{META_PREFIX}{k}"), v)),
        );
        record.insert(UPLOAD_KEY.into(), input.key.clone());
        record.insert(
            UPLOAD_CONTENT_TYPE.into(),
            input
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        );
        record.insert(UPLOAD_INITIATED.into(), unix_ms().to_string());
        if let Some(a) = &algorithm {
            record.insert(UPLOAD_CHECKSUM.into(), a.clone());
        }
        if full_object {
            record.insert(
                UPLOAD_CHECKSUM_TYPE.into(),
                ChecksumType::FULL_OBJECT.to_owned(),
            );
        }
        SystemMeta {
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_encoding: stored_encoding(input.content_encoding),
            content_language: input.content_language,
            expires_ms: input.expires.as_ref().map(system_meta::unix_ms),
        }
        .store_into(&mut record);
        if let Some(header) = &input.tagging {
            super::tagging::store_into(&mut record, &super::tagging::parse_header(header)?);
        }
        // The lock the upload asks for, decided (and refused) now, as S3 does; the
        // bucket's default retention is applied at completion instead.
        self.apply_write_lock(
            &input.bucket,
            &super::object_lock::LockHeaders {
                mode: input.object_lock_mode.as_ref(),
                until: input.object_lock_retain_until_date.as_ref(),
                legal_hold: input.object_lock_legal_hold_status.as_ref(),
            },
            super::object_lock::DefaultRetentionAt::Completion,
            &mut record,
        )?;
        // The record keeps only a verifier of the customer key, which parts and the
        // completion must match, or the KMS key's id; the record itself holds no data.
        sse::writing_key(
            &key.data_key(),
            &mut record,
            customer.as_ref(),
            kms.as_ref(),
        );
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
        let encryption =
            sse::response_headers(customer.as_ref(), kms.as_ref().map(super::kms::KmsKey::id));
        Ok(S3Response::new(CreateMultipartUploadOutput {
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            checksum_type: algorithm.is_some().then(|| {
                ChecksumType::from_static(if full_object {
                    ChecksumType::FULL_OBJECT
                } else {
                    ChecksumType::COMPOSITE
                })
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_impl(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let key = self.key_of(&req)?;
        let sums = Expected::from_headers(&req.headers)?;
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let upload = self
            .read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        // An upload created with a checksum algorithm wants that checksum on every part.
        if let Some(a) = &upload.checksum
            && !sums.checksums.contains_key(a.as_str())
            && sums.trailer != Some(a.as_str())
        {
            return Err(s3_error!(
                InvalidRequest,
                "The upload was created using a {} checksum; every part must carry it",
                a.to_ascii_uppercase()
            ));
        }
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let data_key = self.upload_key(
            &key,
            upload.sse_c.as_deref(),
            upload.sse_kms.as_deref(),
            customer.as_ref(),
        )?;
        let expected = input.content_length.and_then(|l| u64::try_from(l).ok());
        let part = part_key(&input.upload_id, input.part_number);
        let (body, expected) = match input.body {
            Some(body) => (body, expected),
            None => (StreamingBlob::wrap(empty_body()), Some(0)),
        };
        let checksum = stored_checksums(&sums.stored());
        let (body, verdict) = Verifier::new(body, sums.clone(), trailers);
        let result = self
            .storage()
            .put_object(
                &key.tenant,
                &input.bucket,
                &part,
                &data_key,
                DEFAULT_CONTENT_TYPE.into(),
                sums.stored(),
                expected,
                body,
            )
            .await;
        if let Some(e) = verdict.error() {
            return Err(e);
        }
        let meta = result.map_err(s3_err)?;
        let info = meta
            .info
            .ok_or_else(|| s3_error!(InternalError, "the stored part has no metadata"))?;
        let encryption = sse::response_headers(customer.as_ref(), upload.sse_kms.as_deref());
        Ok(S3Response::new(UploadPartOutput {
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            sse_customer_algorithm: encryption.sse_customer_algorithm,
            sse_customer_key_md5: encryption.sse_customer_key_md5,
            e_tag: Some(etag_of(&info)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
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
        let upload = match self
            .read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await
        {
            Ok(upload) => upload,
            Err(e) => return self.completed_before(&key.tenant, &input, e).await,
        };
        let customer = CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        self.upload_key(
            &key,
            upload.sse_c.as_deref(),
            upload.sse_kms.as_deref(),
            customer.as_ref(),
        )?;
        let kms = upload
            .sse_kms
            .as_deref()
            .map(|id| self.kms_key(&key, id))
            .transpose()?;
        let requested = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema: it lists no parts"
            ));
        }
        // Part numbers must ascend. One listed twice in a row (a part uploaded again while
        // its first upload was still running) counts once, as its last entry: the part
        // stored is the one whose upload finished last.
        let mut parts: Vec<CompletedPart> = Vec::with_capacity(requested.len());
        for part in requested {
            let number = part.part_number.unwrap_or(0);
            match parts.last().and_then(|p| p.part_number) {
                Some(previous) if number < previous => {
                    return Err(s3_error!(
                        InvalidPartOrder,
                        "The list of parts was not in ascending order. Parts must be ordered by part number."
                    ));
                }
                Some(previous) if number == previous => {
                    parts.pop();
                }
                _ => {}
            }
            parts.push(part);
        }
        let stored = self
            .parts_of(&key.tenant, &input.bucket, &input.upload_id)
            .await?;
        let mut sources = Vec::with_capacity(parts.len());
        let mut etags = Vec::with_capacity(parts.len());
        let mut part_sums = Vec::with_capacity(parts.len());
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
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
            // Each checksum the client lists for a part must be the one it was uploaded with.
            let kept = stored_checksums(&info.user_meta);
            let listed = Checksum {
                checksum_crc32: part.checksum_crc32.clone(),
                checksum_crc32c: part.checksum_crc32c.clone(),
                checksum_crc64nvme: part.checksum_crc64nvme.clone(),
                checksum_sha1: part.checksum_sha1.clone(),
                checksum_sha256: part.checksum_sha256.clone(),
                ..Default::default()
            };
            for a in integrity::ALGORITHMS {
                if let Some(v) = integrity::value_of(&listed, a)
                    && integrity::value_of(&kept, a) != Some(v)
                {
                    return Err(invalid());
                }
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
            part_sums.push((kept, info.size));
        }
        let total: u64 = parts
            .iter()
            .filter_map(|p| stored.get(&p.part_number.unwrap_or(0)))
            .filter_map(|m| m.info.as_ref())
            .map(|i| i.size)
            .sum();
        if let Some(size) = input.mpu_object_size
            && u64::try_from(size).ok() != Some(total)
        {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-mp-object-size ({size}) is not the size of the parts ({total})"
            ));
        }
        let whole = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            ..Default::default()
        };
        let composite = if upload.full_object {
            integrity::full_object(upload.checksum.as_deref(), &whole, &part_sums)?
        } else {
            let sums: Vec<Checksum> = part_sums.iter().map(|(c, _)| c.clone()).collect();
            integrity::composite(upload.checksum.as_deref(), &whole, &sums)?
        };
        let etag = multipart_etag(&etags)
            .ok_or_else(|| s3_error!(InternalError, "a part has a malformed ETag"))?;
        let mut meta = upload.user_meta;
        meta.insert(system_meta::UPLOAD_ID.into(), input.upload_id.clone());
        self.apply_default_retention_at_completion(&input.bucket, &mut meta);
        if let Some((algorithm, value)) = &composite {
            meta.insert(
                format!("{}{algorithm}", system_meta::CHECKSUM_PREFIX),
                value.clone(),
            );
            integrity::store_part_checksums(&mut meta, algorithm, &part_sums);
        }
        // The parts' chunks become the object's segments: no data is copied.
        // A condition that fails leaves the upload and its parts as they are.
        let data_key =
            sse::writing_key(&key.data_key(), &mut meta, customer.as_ref(), kms.as_ref());
        let pre = write_preconditions(input.if_match.as_ref(), input.if_none_match.as_ref());
        let version = self
            .begin_version(&key, &input.bucket, &input.key, &mut meta)
            .await?;
        let (target, compose_pre) = match &version {
            Some(v) => (v.stored_key.clone(), Default::default()),
            None => (input.key.clone(), pre.clone()),
        };
        let done = self
            .storage()
            .compose_object_if(
                &key.tenant,
                &input.bucket,
                &target,
                &data_key,
                &sources,
                upload.content_type,
                meta,
                etag.clone(),
                compose_pre,
            )
            .await
            .map_err(s3_err)?;
        if let (Some(v), Some(info)) = (&version, &done.info) {
            self.finish_version(&key, &data_key, &input.bucket, &input.key, v, info, pre)
                .await?;
        }
        self.remove_upload(&key.tenant, &input.bucket, &input.upload_id)
            .await;
        let checksum = done
            .info
            .as_ref()
            .map(|i| stored_checksums(&i.user_meta))
            .unwrap_or_default();
        let encryption =
            sse::response_headers(customer.as_ref(), kms.as_ref().map(super::kms::KmsKey::id));
        let mut response = S3Response::new(CompleteMultipartUploadOutput {
            server_side_encryption: encryption.server_side_encryption,
            ssekms_key_id: encryption.ssekms_key_id,
            version_id: version.and_then(super::versioning::NewVersion::response_id),
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_type: checksum.checksum_type,
            ..Default::default()
        });
        // CompleteMultipartUploadOutput has no fields for them, but S3 sends the SSE-C
        // headers here too.
        sse::add_customer_headers(&mut response.headers, customer.as_ref());
        Ok(response)
    }

    /// CompleteMultipartUpload for an upload that is gone: if the object was completed
    /// from it (a client retrying after a lost answer), S3 answers as the first time did;
    /// otherwise `NoSuchUpload` (`gone`).
    async fn completed_before(
        &self,
        tenant: &PublicKeyBytes,
        input: &CompleteMultipartUploadInput,
        gone: s3s::S3Error,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        if gone.code() != &s3s::S3ErrorCode::NoSuchUpload || !valid_upload_id(&input.upload_id) {
            return Err(gone);
        }
        let info = match self
            .storage()
            .head_object(tenant, &input.bucket, &input.key)
            .await
        {
            Ok((_, info)) => info,
            Err(_) => return Err(gone),
        };
        if info.user_meta.get(system_meta::UPLOAD_ID) != Some(&input.upload_id) {
            return Err(gone);
        }
        let checksum = stored_checksums(&info.user_meta);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag_of(&info)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_type: checksum.checksum_type,
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
    let mut user_meta: BTreeMap<String, String> = meta
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(META_PREFIX)
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    SystemMeta::from_map(meta).store_into(&mut user_meta);
    if let Some(tags) = meta.get(super::tagging::TAGS) {
        user_meta.insert(super::tagging::TAGS.to_owned(), tags.clone());
    }
    super::object_lock::copy_entries(meta, &mut user_meta);
    Upload {
        key: meta.get(UPLOAD_KEY).cloned().unwrap_or_default(),
        content_type: meta
            .get(UPLOAD_CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        user_meta,
        checksum: meta.get(UPLOAD_CHECKSUM).cloned(),
        full_object: meta.get(UPLOAD_CHECKSUM_TYPE).map(String::as_str)
            == Some(ChecksumType::FULL_OBJECT),
        sse_c: sse::stored_verifier(meta).map(str::to_owned),
        sse_kms: super::kms::stored_key_id(meta).map(str::to_owned),
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
