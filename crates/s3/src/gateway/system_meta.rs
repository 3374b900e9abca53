//! System metadata: the standard HTTP headers S3 stores with an object and returns on GET
//! and HEAD (`Cache-Control`, `Content-Disposition`, `Content-Encoding`,
//! `Content-Language`, `Expires`), and the gateway's own facts about an object (the
//! multipart upload that made it, its checksums, the Last-Modified a rewrite of its
//! metadata keeps).
//!
//! They live in the object's metadata map beside the user's `x-amz-meta-*` entries, under
//! names starting with `:`. User metadata names are HTTP header names, which cannot hold
//! `:`, so the two never collide; [`split`] separates them again. The storage layer keeps
//! them as it keeps any metadata: replicated with the object, changed only by a new write.

use std::collections::BTreeMap;

use s3s::dto::{Metadata, Timestamp};
use xnode_storage::conditional::Preconditions;
use xnode_store::ObjectInfo;

const PREFIX: char = ':';
const CACHE_CONTROL: &str = ":cache-control";
const CONTENT_DISPOSITION: &str = ":content-disposition";
const CONTENT_ENCODING: &str = ":content-encoding";
const CONTENT_LANGUAGE: &str = ":content-language";
/// Milliseconds since the epoch.
const EXPIRES: &str = ":expires-ms";
/// The multipart upload an object was completed from (CompleteMultipartUpload repeated
/// for the same upload then answers as the first time did).
pub(super) const UPLOAD_ID: &str = ":upload-id";
/// Checksums of the object's content, as the client sent and the gateway verified them:
/// `:checksum-crc32` and so on, base64 as S3 shows them.
pub(super) const CHECKSUM_PREFIX: &str = ":checksum-";
/// The object's Last-Modified (milliseconds since the epoch), kept by a write that gives
/// an object new metadata without making it a new object: an ACL, tags, a retention or
/// legal hold, the key's copy of its current version. Such a write is a new metadata
/// entry, dated by its own clock so that it wins replication, but S3 keeps the object's
/// Last-Modified, and so do listings, `ListObjectVersions`, conditional requests and
/// lifecycle rules here. It is display data: versions are still ordered by the entry's
/// version, and [`last_modified_ms`] never lets it date an object after its entry.
pub(super) const LAST_MODIFIED: &str = ":mtime";

/// The standard headers S3 keeps with an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SystemMeta {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires_ms: Option<i64>,
}

/// `Content-Encoding` without the `aws-chunked` tokens: those describe how the request body
/// was framed (s3s has already decoded it), not the object, and S3 does not keep them.
pub(super) fn stored_encoding(value: Option<String>) -> Option<String> {
    let value = value?;
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// When the object was last written as S3 counts it: the write that made it, not a later
/// change of its ACL, tags or lock. A `:mtime` later than the entry itself (which no
/// gateway writes) is not believed: the entry's own date is the latest an object may show.
pub(super) fn last_modified_ms(info: &ObjectInfo) -> u64 {
    info.user_meta
        .get(LAST_MODIFIED)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(info.created_ms, |kept| kept.min(info.created_ms))
}

/// Stamps the metadata of a rewrite of `source` (same content, new entry) with
/// `source`'s Last-Modified, so the rewrite does not re-date the object.
pub(super) fn keep_last_modified(meta: &mut BTreeMap<String, String>, source: &ObjectInfo) {
    meta.insert(
        LAST_MODIFIED.to_owned(),
        last_modified_ms(source).to_string(),
    );
}

/// A delete's `x-amz-if-match-last-modified-time`, decided against `current` (the object
/// as read, `None` if there is none). The client names the Last-Modified it saw, which
/// [`LAST_MODIFIED`] may hold, while the storage's coordinator compares the condition with
/// the date of the metadata entry itself. So the condition is decided here, and the one
/// handed on names the entry's own date instead: the delete still applies only if the
/// entry read is still the current one (to the second, as S3 compares). `None` when the
/// condition does not hold.
pub(super) fn pin_last_modified(
    mut pre: Preconditions,
    current: Option<&ObjectInfo>,
) -> Option<Preconditions> {
    let (Some(seen), Some(info)) = (pre.if_match_last_modified_s, current) else {
        return Some(pre);
    };
    let second = |ms: u64| i64::try_from(ms / 1000).ok();
    if second(last_modified_ms(info)) != Some(seen) {
        return None;
    }
    pre.if_match_last_modified_s = second(info.created_ms);
    Some(pre)
}

pub(super) fn unix_ms(ts: &Timestamp) -> i64 {
    let t = time::OffsetDateTime::from(ts.clone());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn from_unix_ms(ms: i64) -> Option<Timestamp> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(Timestamp::from(t))
}

impl SystemMeta {
    /// Adds these headers to an object's metadata map.
    pub(super) fn store_into(&self, meta: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                meta.insert(k.to_owned(), v.clone());
            }
        };
        put(CACHE_CONTROL, &self.cache_control);
        put(CONTENT_DISPOSITION, &self.content_disposition);
        put(CONTENT_ENCODING, &self.content_encoding);
        put(CONTENT_LANGUAGE, &self.content_language);
        if let Some(ms) = self.expires_ms {
            meta.insert(EXPIRES.to_owned(), ms.to_string());
        }
    }

    /// The headers kept in an object's metadata map.
    pub(super) fn from_map(meta: &BTreeMap<String, String>) -> Self {
        Self {
            cache_control: meta.get(CACHE_CONTROL).cloned(),
            content_disposition: meta.get(CONTENT_DISPOSITION).cloned(),
            content_encoding: meta.get(CONTENT_ENCODING).cloned(),
            content_language: meta.get(CONTENT_LANGUAGE).cloned(),
            expires_ms: meta.get(EXPIRES).and_then(|v| v.parse().ok()),
        }
    }

    pub(super) fn expires(&self) -> Option<Timestamp> {
        self.expires_ms.and_then(from_unix_ms)
    }
}

/// The user's metadata (`x-amz-meta-*`) of a metadata map, without the system entries.
pub(super) fn user_part(meta: &BTreeMap<String, String>) -> Option<Metadata> {
    let user: Metadata = meta
        .iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!user.is_empty()).then_some(user)
}

/// Only the system entries of a metadata map (kept by a copy that replaces user metadata
/// but not, say, the checksums).
pub(super) fn system_part(meta: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    meta.iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Removes the standard headers (not the gateway's own entries) from a metadata map.
pub(super) fn without_headers(meta: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    meta.iter()
        .filter(|(k, _)| {
            ![
                CACHE_CONTROL,
                CONTENT_DISPOSITION,
                CONTENT_ENCODING,
                CONTENT_LANGUAGE,
                EXPIRES,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_at(created_ms: u64, meta: &[(&str, &str)]) -> ObjectInfo {
        ObjectInfo {
            manifest: xnode_store::ChunkId::of(b"m"),
            size: 1,
            etag: "e".into(),
            content_type: "t".into(),
            user_meta: meta
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            created_ms,
        }
    }

    #[test]
    fn a_rewrite_keeps_the_objects_last_modified_and_never_dates_it_later() {
        let original = written_at(10_000, &[]);
        assert_eq!(last_modified_ms(&original), 10_000);
        // An ACL put 40 s later: a new entry, the same Last-Modified; and again on a
        // rewrite of the rewrite.
        let mut meta = original.user_meta.clone();
        keep_last_modified(&mut meta, &original);
        let mut rewritten = written_at(50_000, &[]);
        rewritten.user_meta = meta.clone();
        assert_eq!(last_modified_ms(&rewritten), 10_000);
        keep_last_modified(&mut meta, &rewritten);
        rewritten.created_ms = 90_000;
        rewritten.user_meta = meta;
        assert_eq!(last_modified_ms(&rewritten), 10_000);
        // A kept date after the entry's own (no gateway writes one) or one that is not a
        // number is not believed.
        assert_eq!(
            last_modified_ms(&written_at(50_000, &[(LAST_MODIFIED, "99000")])),
            50_000
        );
        assert_eq!(
            last_modified_ms(&written_at(50_000, &[(LAST_MODIFIED, "-1")])),
            50_000
        );
        // It is system metadata: never shown as the user's.
        assert!(user_part(&written_at(1, &[(LAST_MODIFIED, "1")]).user_meta).is_none());
    }

    #[test]
    fn a_deletes_last_modified_condition_is_decided_on_the_date_the_client_saw() {
        let rewritten = written_at(50_000, &[(LAST_MODIFIED, "10000")]);
        let pre = |s: i64| Preconditions {
            if_match_last_modified_s: Some(s),
            ..Default::default()
        };
        // The date shown holds, and the coordinator is asked about the entry read.
        assert_eq!(pin_last_modified(pre(10), Some(&rewritten)), Some(pre(50)));
        // The rewrite's own date is not the object's.
        assert_eq!(pin_last_modified(pre(50), Some(&rewritten)), None);
        // Nothing to read: the coordinator decides (a delete of nothing succeeds).
        assert_eq!(pin_last_modified(pre(10), None), Some(pre(10)));
        let unconditional = Preconditions::default();
        assert_eq!(
            pin_last_modified(unconditional.clone(), Some(&rewritten)),
            Some(unconditional)
        );
    }

    #[test]
    fn system_and_user_metadata_stay_apart() {
        let sys = SystemMeta {
            cache_control: Some("no-cache".into()),
            content_encoding: stored_encoding(Some("aws-chunked, gzip".into())),
            expires_ms: Some(1_700_000_000_000),
            ..Default::default()
        };
        let mut meta = BTreeMap::from([("colour".to_owned(), "blue".to_owned())]);
        sys.store_into(&mut meta);
        assert_eq!(SystemMeta::from_map(&meta), sys);
        assert_eq!(sys.content_encoding.as_deref(), Some("gzip"));
        let user = user_part(&meta).unwrap();
        assert_eq!(user.len(), 1);
        assert_eq!(user.get("colour").map(String::as_str), Some("blue"));
        assert_eq!(system_part(&meta).len(), 3);
        assert_eq!(without_headers(&meta).len(), 1);
        assert_eq!(stored_encoding(Some("aws-chunked".into())), None);
        assert_eq!(
            unix_ms(&sys.expires().unwrap()),
            1_700_000_000_000,
            "Expires round-trips"
        );
    }
}
