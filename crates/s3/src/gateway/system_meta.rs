//! System metadata: the standard HTTP headers S3 stores with an object and returns on GET
//! and HEAD (`Cache-Control`, `Content-Disposition`, `Content-Encoding`,
//! `Content-Language`, `Expires`), and the gateway's own facts about an object (the
//! multipart upload that made it, its checksums).
//!
//! They live in the object's metadata map beside the user's `x-amz-meta-*` entries, under
//! names starting with `:`. User metadata names are HTTP header names, which cannot hold
//! `:`, so the two never collide; [`split`] separates them again. The storage layer keeps
//! them as it keeps any metadata: replicated with the object, changed only by a new write.

use std::collections::BTreeMap;

use s3s::dto::{Metadata, Timestamp};

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
