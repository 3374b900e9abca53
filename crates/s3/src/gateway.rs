//! The `s3s::S3` implementation: S3 operations translated into calls on the node's
//! distributed storage, acting for the tenant an access key belongs to.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::Digest as _;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use xnode_storage::buckets::{BUCKET_RECORD_VERSION, bucket_key, owner_of};
use xnode_storage::{Storage, StorageError};
use xnode_store::{ObjectInfo, internal_key};
use xnode_types::{Hlc, PublicKeyBytes};

use crate::keys::{AccessKey, S3Keys};

/// S3's smallest part, except the last one of an upload.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part number.
const MAX_PART_NUMBER: i32 = 10_000;
/// The most keys one listing page returns.
const MAX_KEYS: usize = 1000;
/// Content type of objects uploaded without one, as S3 does.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// Upload records keep the target key and content type in their user metadata under these
/// names, and the upload's own user metadata under `META_PREFIX` + name.
const UPLOAD_KEY: &str = "key";
const UPLOAD_CONTENT_TYPE: &str = "content-type";
const UPLOAD_INITIATED: &str = "initiated-ms";
const META_PREFIX: &str = "meta:";

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

/// A storage failure as the S3 error a client expects.
pub(crate) fn s3_err(e: StorageError) -> S3Error {
    match e {
        StorageError::NoSuchBucket(b) => {
            s3_error!(NoSuchBucket, "The specified bucket {b:?} does not exist")
        }
        StorageError::BucketTaken(b) => s3_error!(
            BucketAlreadyExists,
            "The bucket name {b:?} is taken by another tenant"
        ),
        StorageError::BucketNotEmpty(b) => {
            s3_error!(
                BucketNotEmpty,
                "The bucket {b:?} you tried to delete is not empty"
            )
        }
        StorageError::AccessDenied(m) => s3_error!(AccessDenied, "Access Denied: {m}"),
        StorageError::NoSuchKey(k) => {
            s3_error!(NoSuchKey, "The specified key {k:?} does not exist")
        }
        StorageError::InvalidRange(m) => s3_error!(InvalidRange, "{m}"),
        StorageError::BadRequest(m) => s3_error!(InvalidArgument, "{m}"),
        StorageError::Quorum(m) => {
            s3_error!(ServiceUnavailable, "Not enough storage nodes answered: {m}")
        }
        StorageError::Interrupted(m) => s3_error!(IncompleteBody, "{m}"),
        StorageError::Internal(m) => s3_error!(InternalError, "{m}"),
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

fn unix_secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// Percent-encodes a key for `encoding-type=url` listings (everything but unreserved
/// characters and `/`), which the AWS CLI and boto3 ask for and decode.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn etag_of(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

fn metadata_of(info: &ObjectInfo) -> Option<Metadata> {
    (!info.user_meta.is_empty()).then(|| {
        info.user_meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn user_meta(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn tenant_owner(tenant: &PublicKeyBytes) -> Owner {
    Owner {
        display_name: Some(format!("xnode-tenant-{}", &tenant.to_hex()[..16])),
        id: Some(tenant.to_hex()),
    }
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

/// One entry of a listing page: an object or a common prefix.
enum Listed {
    Object(Box<xnode_store::ObjectMeta>),
    Prefix(String),
}

struct ListPage {
    entries: Vec<Listed>,
    truncated: bool,
    /// The last entry returned (key or common prefix), to continue after.
    last: Option<String>,
}

/// An upload record's contents.
struct Upload {
    key: String,
    content_type: String,
    user_meta: BTreeMap<String, String>,
    initiated_ms: u64,
}

fn upload_record_key(upload_id: &str) -> String {
    internal_key(&format!("mpu/{upload_id}"))
}

fn parts_prefix(upload_id: &str) -> String {
    internal_key(&format!("part/{upload_id}/"))
}

fn part_key(upload_id: &str, part: i32) -> String {
    internal_key(&format!("part/{upload_id}/{part:05}"))
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Gateway {
    pub fn new(storage: std::sync::Arc<Storage>, keys: S3Keys) -> Self {
        Self { storage, keys }
    }

    fn storage(&self) -> &std::sync::Arc<Storage> {
        &self.storage
    }

    /// The access key a request was signed with (s3s has already checked the signature).
    fn key_of<T>(&self, req: &S3Request<T>) -> S3Result<AccessKey> {
        let Some(credentials) = &req.credentials else {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous requests are not allowed"
            ));
        };
        match self.keys.get(&credentials.access_key) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records"
            )),
            Err(e) => Err(s3_error!(InternalError, "{e}")),
        }
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

    /// Lists `prefix` with `delimiter` from after `marker`, up to `max` entries.
    async fn list_page(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max: usize,
    ) -> S3Result<ListPage> {
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut entries = Vec::new();
        let mut last: Option<String> = None;
        // A marker that is a common prefix skips every key under it.
        let mut after = marker.map(|m| match delimiter {
            Some(d) if m.ends_with(d) && m.len() > prefix.len() => format!("{m}\u{10FFFF}"),
            _ => m,
        });
        if max == 0 {
            return Ok(ListPage {
                entries,
                truncated: false,
                last: None,
            });
        }
        loop {
            let page = self
                .storage()
                .list_objects(tenant, bucket, prefix, after.as_deref(), MAX_KEYS)
                .await
                .map_err(s3_err)?;
            let full = page.len() >= MAX_KEYS;
            for meta in page {
                let key = meta.path.key.clone();
                after = Some(key.clone());
                let rest = key.get(prefix.len()..).unwrap_or("");
                let entry = match delimiter.and_then(|d| rest.find(d).map(|i| (d, i))) {
                    Some((d, i)) => {
                        let common = format!("{prefix}{}", &rest[..i + d.len()]);
                        if last.as_deref() == Some(common.as_str()) {
                            continue;
                        }
                        Listed::Prefix(common)
                    }
                    None => Listed::Object(Box::new(meta)),
                };
                if entries.len() == max {
                    return Ok(ListPage {
                        entries,
                        truncated: true,
                        last,
                    });
                }
                last = Some(match &entry {
                    Listed::Object(m) => m.path.key.clone(),
                    Listed::Prefix(p) => p.clone(),
                });
                entries.push(entry);
            }
            if !full {
                break;
            }
        }
        Ok(ListPage {
            entries,
            truncated: false,
            last,
        })
    }

    async fn read_upload(
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
    async fn parts_of(
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
    async fn remove_upload(&self, tenant: &PublicKeyBytes, bucket: &str, upload_id: &str) {
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
    async fn uploads_of(
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

fn empty_body() -> futures::stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>> {
    futures::stream::iter(Vec::new())
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let key = self.key_of(&req)?;
        let buckets = self
            .storage()
            .list_buckets(&key.tenant)
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(tenant_owner(&key.tenant)),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let key = self.key_of(&req)?;
        let name = req.input.bucket.clone();
        xnode_store::validate_bucket_name(&name)
            .map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
        match owner_of(self.storage.registry(), &name) {
            Some((owner, _)) if owner == key.tenant => {
                return Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it"
                ));
            }
            Some(_) => {
                return Err(s3_error!(
                    BucketAlreadyExists,
                    "The requested bucket name is not available"
                ));
            }
            None => {}
        }
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not create buckets (it was created with --no-bucket-admin); use `xnode bucket create`"
            ));
        };
        let hlc = Hlc::new(unix_ms(), 0);
        let record = serde_json::json!({
            "v": BUCKET_RECORD_VERSION,
            "name": name,
            "owner": key.tenant.to_hex(),
            "created_ms": hlc.wall_ms,
        })
        .to_string();
        let entry = xnode_registry::Entry::sign(
            &signer,
            bucket_key(&key.tenant, &name),
            Some(record.into_bytes()),
            hlc,
        )
        .map_err(|e| s3_error!(InternalError, "cannot sign the bucket claim: {e}"))?;
        let applied = self
            .storage()
            .create_bucket(&key.tenant, &name, entry)
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let key = self.key_of(&req)?;
        let name = req.input.bucket.clone();
        self.require_bucket(&key.tenant, &name)?;
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not delete buckets (it was created with --no-bucket-admin); use `xnode bucket rm`"
            ));
        };
        let objects = self
            .storage()
            .list_objects(&key.tenant, &name, "", None, 1)
            .await
            .map_err(s3_err)?;
        if !objects.is_empty() {
            return Err(s3_err(StorageError::BucketNotEmpty(name)));
        }
        // Pending multipart uploads go with the bucket.
        for (id, _) in self.uploads_of(&key.tenant, &name).await? {
            self.remove_upload(&key.tenant, &name, &id).await;
        }
        let claim_hlc = self
            .storage
            .registry()
            .get(&bucket_key(&key.tenant, &name))
            .map(|e| e.hlc)
            .unwrap_or(Hlc::new(0, 0));
        let now = unix_ms();
        let hlc = if now > claim_hlc.wall_ms {
            Hlc::new(now, 0)
        } else {
            Hlc::new(claim_hlc.wall_ms, claim_hlc.logical.saturating_add(1))
        };
        let tombstone =
            xnode_registry::Entry::sign(&signer, bucket_key(&key.tenant, &name), None, hlc)
                .map_err(|e| s3_error!(InternalError, "cannot sign the bucket deletion: {e}"))?;
        let applied = self
            .storage()
            .delete_bucket(&key.tenant, &name, tombstone)
            .await
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
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

    async fn get_object(
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

    async fn head_object(
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

    async fn delete_object(
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

    async fn delete_objects(
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

    async fn copy_object(
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

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input
            .max_keys
            .map(|m| usize::try_from(m.max(0)).unwrap_or(0).min(MAX_KEYS))
            .unwrap_or(MAX_KEYS);
        let marker = match (&input.continuation_token, &input.start_after) {
            (Some(token), _) => Some(decode_token(token)?),
            (None, Some(after)) if !after.is_empty() => Some(after.clone()),
            _ => None,
        };
        let page = self
            .list_page(
                &key.tenant,
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                marker,
                max,
            )
            .await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
        let (contents, prefixes) = split_entries(page.entries, &enc);
        let key_count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            delimiter: input.delimiter.as_deref().map(enc),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after.as_deref().map(enc),
            is_truncated: Some(page.truncated),
            next_continuation_token: page
                .truncated
                .then(|| page.last.as_deref().map(encode_token))
                .flatten(),
            contents: Some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input
            .max_keys
            .map(|m| usize::try_from(m.max(0)).unwrap_or(0).min(MAX_KEYS))
            .unwrap_or(MAX_KEYS);
        let marker = input.marker.clone().filter(|m| !m.is_empty());
        let page = self
            .list_page(
                &key.tenant,
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                marker,
                max,
            )
            .await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
        let (contents, prefixes) = split_entries(page.entries, &enc);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            delimiter: input.delimiter.as_deref().map(enc),
            marker: Some(input.marker.as_deref().map(enc).unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page
                .truncated
                .then(|| page.last.as_deref().map(enc))
                .flatten(),
            contents: Some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
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

    async fn upload_part(
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

    /// A part copied from (a range of) an existing object: `aws s3 cp` between buckets uses
    /// it for objects above its multipart threshold. The range is read and stored again
    /// as the part (encrypted and replicated like any part).
    async fn upload_part_copy(
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

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = input
            .max_parts
            .map(|m| usize::try_from(m.max(0)).unwrap_or(0).min(MAX_KEYS))
            .unwrap_or(MAX_KEYS);
        let marker = input.part_number_marker.unwrap_or(0).max(0);
        let all = self
            .parts_of(&key.tenant, &input.bucket, &input.upload_id)
            .await?;
        let mut parts = Vec::new();
        let mut truncated = false;
        for (n, meta) in all.range(marker.saturating_add(1)..) {
            if parts.len() == max {
                truncated = true;
                break;
            }
            let Some(info) = &meta.info else { continue };
            parts.push(Part {
                part_number: Some(*n),
                e_tag: Some(etag_of(info)),
                size: i64::try_from(info.size).ok(),
                last_modified: Some(timestamp(info.created_ms)),
                ..Default::default()
            });
        }
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: truncated.then_some(next).flatten(),
            owner: Some(tenant_owner(&key.tenant)),
            initiator: Some(Initiator {
                id: Some(key.tenant.to_hex()),
                display_name: None,
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
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

    async fn abort_multipart_upload(
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

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input
            .max_uploads
            .map(|m| usize::try_from(m.max(0)).unwrap_or(0).min(MAX_KEYS))
            .unwrap_or(MAX_KEYS);
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let mut uploads: Vec<(String, Upload)> = self
            .uploads_of(&key.tenant, &input.bucket)
            .await?
            .into_iter()
            .filter(|(_, u)| u.key.starts_with(&prefix))
            .filter(|(id, u)| {
                key_marker.is_empty()
                    || u.key.as_str() > key_marker.as_str()
                    || (u.key == key_marker && !id_marker.is_empty() && *id > id_marker)
            })
            .collect();
        uploads.sort_by(|a, b| {
            (&a.1.key, a.1.initiated_ms, &a.0).cmp(&(&b.1.key, b.1.initiated_ms, &b.0))
        });
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let next = uploads.last().map(|(id, u)| (u.key.clone(), id.clone()));
        let list = uploads
            .into_iter()
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(id),
                initiated: Some(timestamp(u.initiated_ms)),
                owner: Some(tenant_owner(&key.tenant)),
                initiator: Some(Initiator {
                    id: Some(key.tenant.to_hex()),
                    display_name: None,
                }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: truncated.then(|| next.clone().map(|n| n.0)).flatten(),
            next_upload_id_marker: truncated.then(|| next.map(|n| n.1)).flatten(),
            uploads: Some(list),
            ..Default::default()
        }))
    }
}

fn split_entries(
    entries: Vec<Listed>,
    enc: &dyn Fn(&str) -> String,
) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    for entry in entries {
        match entry {
            Listed::Object(meta) => {
                let Some(info) = &meta.info else { continue };
                contents.push(Object {
                    key: Some(enc(&meta.path.key)),
                    size: i64::try_from(info.size).ok(),
                    e_tag: Some(etag_of(info)),
                    last_modified: Some(timestamp(info.created_ms)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    ..Default::default()
                });
            }
            Listed::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(enc(&p)),
            }),
        }
    }
    (contents, prefixes)
}

/// Continuation tokens are the hex of the last key returned (opaque to clients, and safe
/// in XML whatever the key holds).
fn encode_token(last: &str) -> String {
    hex::encode(last.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
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

    #[test]
    fn url_encoding_and_tokens() {
        assert_eq!(url_encode("a b/c+d%"), "a%20b/c%2Bd%25");
        assert_eq!(url_encode("é"), "%C3%A9");
        assert_eq!(decode_token(&encode_token("x/y é")).unwrap(), "x/y é");
        assert!(decode_token("zz").is_err());
    }

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
