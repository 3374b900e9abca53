//! Listings: `ListObjects` (v1 and v2) over pages of the object index with delimiters,
//! markers and opaque continuation tokens, and the listings of multipart uploads and
//! of an upload's parts.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_types::PublicKeyBytes;

use super::multipart::Upload;
use super::ownership::{acls_disabled, object_owner};
use super::{Gateway, MAX_KEYS, etag_of, last_modified, s3_err, tenant_owner, timestamp};

/// Percent-encodes a key for `encoding-type=url` listings (everything but unreserved
/// characters and `/`), which the AWS CLI and boto3 ask for and decode.
pub(super) fn url_encode(s: &str) -> String {
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

impl Gateway {
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
                // Storage lists the keys live after merging its replicas' answers, so a
                // common prefix is made only of keys that exist.
                let common = delimiter
                    .and_then(|d| xnode_storage::common_prefix(&key, prefix, d))
                    .map(str::to_owned);
                let entry = match common {
                    Some(common) => {
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

    pub(super) async fn list_objects_v2_impl(
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
        // The owner is sent only when asked for (fetch-owner), as S3 does.
        let with_owner = input.fetch_owner.unwrap_or(false);
        let owners = Owners::of(self, &input.bucket, &key.tenant);
        let (contents, prefixes) = split_entries(page.entries, &enc, &owners, with_owner);
        let key_count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            // An empty delimiter is no delimiter, and S3 does not echo it.
            delimiter: input
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(enc),
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

    pub(super) async fn list_objects_impl(
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
        // ListObjects (v1) always names each object's owner.
        let owners = Owners::of(self, &input.bucket, &key.tenant);
        let (contents, prefixes) = split_entries(page.entries, &enc, &owners, true);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            // v1 encodes keys, markers and the delimiter for encoding-type=url, but not the
            // prefix (clients do not decode it).
            prefix: Some(prefix.clone()),
            delimiter: input
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(enc),
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

    pub(super) async fn list_parts_impl(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let upload = self
            .read_upload(&key.tenant, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let owner = object_owner(&upload.user_meta, &key.tenant);
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
                last_modified: Some(last_modified(info)),
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
            owner: Some(tenant_owner(&owner)),
            initiator: Some(initiator(&owner)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_impl(
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
                owner: Some(tenant_owner(&object_owner(&u.user_meta, &key.tenant))),
                initiator: Some(initiator(&object_owner(&u.user_meta, &key.tenant))),
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

/// The initiator of an upload: the tenant that will own its object, named as owners are
/// (the upload's record does not keep a separate initiator; they differ only for a
/// `bucket-owner-full-control` upload in a `BucketOwnerPreferred` bucket).
fn initiator(owner: &PublicKeyBytes) -> Initiator {
    let owner = tenant_owner(owner);
    Initiator {
        id: owner.id,
        display_name: owner.display_name,
    }
}

/// Who a listing (of objects or of versions) names as its objects' owners.
pub(super) enum Owners<'a> {
    /// The bucket's owner, for every object: its ACLs are disabled (BucketOwnerEnforced).
    Bucket(&'a PublicKeyBytes),
    /// The owner each object's metadata records, or else the bucket's owner.
    Recorded(&'a PublicKeyBytes),
}

impl<'a> Owners<'a> {
    pub(super) fn of(gateway: &Gateway, bucket: &str, bucket_owner: &'a PublicKeyBytes) -> Self {
        if acls_disabled(gateway.storage.registry(), bucket) {
            Owners::Bucket(bucket_owner)
        } else {
            Owners::Recorded(bucket_owner)
        }
    }

    /// The owner named for an object (or a version) whose metadata is `meta`.
    pub(super) fn name(&self, meta: &BTreeMap<String, String>) -> Owner {
        match self {
            Owners::Bucket(owner) => tenant_owner(owner),
            Owners::Recorded(owner) => tenant_owner(&object_owner(meta, owner)),
        }
    }
}

/// The objects and common prefixes of a listing page; each object names its owner when
/// `with_owner`.
fn split_entries(
    entries: Vec<Listed>,
    enc: &dyn Fn(&str) -> String,
    bucket_owner: &Owners<'_>,
    with_owner: bool,
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
                    last_modified: Some(last_modified(info)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    owner: with_owner.then(|| bucket_owner.name(&info.user_meta)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_and_tokens() {
        assert_eq!(url_encode("a b/c+d%"), "a%20b/c%2Bd%25");
        assert_eq!(url_encode("é"), "%C3%A9");
        assert_eq!(decode_token(&encode_token("x/y é")).unwrap(), "x/y é");
        assert!(decode_token("zz").is_err());
    }
}
