//! Object tags: `PutObjectTagging`, `GetObjectTagging`, `DeleteObjectTagging`, the
//! `x-amz-tagging` header of PUT, CreateMultipartUpload and CopyObject (with
//! `x-amz-tagging-directive`), and `x-amz-tagging-count` on GET and HEAD.
//!
//! Tags live in the object's metadata (entry `:tags`, see `system_meta`), as the
//! URL-encoded `k=v&k2=v2` S3 uses in headers; they are replicated with the object's
//! metadata. A tag set has no order in S3 (AWS returns its own), so the gateway gives
//! tags back sorted by key, as Ceph RGW does, which is what clients comparing lists expect. Changing an object's tags writes a new version of its
//! metadata over the same chunks (`Storage::compose_object` with the object as its own
//! source): no data is copied.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Gateway, s3_err};

/// Where an object's tags are kept in its metadata.
pub(super) const TAGS: &str = ":tags";
/// S3's limits: tags per object, and the lengths (in characters) of a key and a value.
const MAX_TAGS: usize = 10;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

fn invalid(message: &str) -> s3s::S3Error {
    s3_error!(InvalidTag, "{message}")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a tag set against S3's rules.
pub(super) fn validate(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("Object tags cannot be greater than 10"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_KEY_CHARS {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid("The TagValue you have provided is invalid"));
        }
        if !seen.insert(k.as_str()) {
            return Err(invalid("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// The tags of an `x-amz-tagging` header (`k=v&k2=v2`), checked.
pub(crate) fn parse_header(header: &str) -> S3Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return Err(invalid(
                "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.",
            ));
        };
        tags.push((k, v));
    }
    validate(&tags)?;
    Ok(tags)
}

/// Stores a tag set in an object's metadata map (or removes it, when empty).
pub(super) fn store_into(meta: &mut BTreeMap<String, String>, tags: &[(String, String)]) {
    if tags.is_empty() {
        meta.remove(TAGS);
        return;
    }
    let text: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    meta.insert(TAGS.to_owned(), text.join("&"));
}

/// The tags kept in an object's metadata map, sorted by key (objects written before the
/// gateway sorted them keep the client's order on disk, so they are sorted on reading).
pub(crate) fn stored(meta: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = meta
        .get(TAGS)
        .map(|text| {
            text.split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    tags
}

/// `x-amz-tagging-count`, for objects that have tags.
pub(super) fn count(meta: &BTreeMap<String, String>) -> Option<i32> {
    let n = stored(meta).len();
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

impl Gateway {
    /// Replaces the tags of an object's current version, or of version `version_id`: a
    /// new metadata entry over the same chunks for each stored object that holds them
    /// (the version object and, when it is the current version, the key's copy of it, as
    /// for ACLs), so that a read by version id, a plain read and lifecycle rules that
    /// filter noncurrent versions by tag all see the same tags. Returns the public id of
    /// the version tagged, in a versioned bucket.
    async fn set_tags(
        &self,
        key: &crate::keys::AccessKey,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> S3Result<Option<String>> {
        self.require_bucket(&key.tenant, bucket)?;
        self.check_key(object)?;
        let mut tagged = None;
        for stored in self
            .acl_copies(&key.tenant, bucket, object, version_id)
            .await?
        {
            let (_, info) = self
                .storage()
                .head_object(&key.tenant, bucket, &stored)
                .await
                .map_err(s3_err)?;
            let mut meta = info.user_meta.clone();
            store_into(&mut meta, tags);
            super::system_meta::keep_last_modified(&mut meta, &info);
            self.storage()
                .compose_object(
                    &key.tenant,
                    bucket,
                    &stored,
                    &self.rewrap_key(key, &info.user_meta)?,
                    &[(bucket.to_owned(), stored.clone())],
                    info.content_type.clone(),
                    meta,
                    info.etag.clone(),
                )
                .await
                .map_err(s3_err)?;
            tagged = tagged.or_else(|| version_of(&info));
        }
        Ok(tagged)
    }

    pub(super) async fn put_object_tagging_impl(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        validate(&tags)?;
        let version_id = self
            .set_tags(
                &key,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                &tags,
            )
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    pub(super) async fn delete_object_tagging_impl(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let version_id = self
            .set_tags(
                &key,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                &[],
            )
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }

    pub(super) async fn get_object_tagging_impl(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let target = match input.version_id.as_deref() {
            Some(id) => {
                self.readable_version(&key.tenant, &input.bucket, &input.key, id)
                    .await?
            }
            None => input.key.clone(),
        };
        let (_, info) = self
            .storage()
            .head_object(&key.tenant, &input.bucket, &target)
            .await
            .map_err(s3_err)?;
        let tag_set = stored(&info.user_meta)
            .into_iter()
            .map(|(k, v)| Tag {
                key: Some(k),
                value: Some(v),
            })
            .collect();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: version_of(&info),
        }))
    }
}

/// The public version id S3 names in a tagging answer: none outside versioned buckets.
fn version_of(info: &xnode_store::ObjectInfo) -> Option<String> {
    info.user_meta
        .contains_key(super::versioning::VERSION_ID)
        .then(|| super::versioning::public_id(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_sorted_by_key_and_are_checked() {
        let tags = vec![
            ("b key".to_owned(), "v&=%".to_owned()),
            ("a".to_owned(), "é".to_owned()),
        ];
        let mut meta = BTreeMap::new();
        store_into(&mut meta, &tags);
        assert_eq!(
            stored(&meta),
            vec![tags[1].clone(), tags[0].clone()],
            "tags come back sorted by key, whatever order the client gave"
        );
        assert_eq!(count(&meta), Some(2));
        assert_eq!(
            parse_header("k1=v1&k%202=v+2").unwrap()[1],
            ("k 2".into(), "v 2".into())
        );
        let many: Vec<(String, String)> = (0..11).map(|i| (i.to_string(), String::new())).collect();
        assert_eq!(validate(&many).unwrap_err().code().as_str(), "InvalidTag");
        assert!(validate(&[("k".repeat(129), String::new())]).is_err());
        assert!(validate(&[("k".into(), "v".repeat(257))]).is_err());
        store_into(&mut meta, &[]);
        assert_eq!(count(&meta), None);
    }
}
