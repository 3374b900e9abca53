//! Integrity headers of uploads: `Content-MD5` and `x-amz-checksum-*` (CRC32, CRC32C,
//! CRC64NVME, SHA-1, SHA-256), in the headers or in an aws-chunked trailer.
//!
//! s3s verifies the SigV4 payload hash but passes these through. A client sends them so
//! that a corrupted upload is refused, so the gateway checks them: [`Verifier`] wraps the
//! request body, hashes it on its way to the storage layer, and at its end fails the
//! stream on a mismatch. The storage layer then stores nothing (an interrupted upload
//! leaves no object), and [`Verdict::error`] turns the failure into `BadDigest`.
//! Checksums given in headers are stored with the object (see `system_meta`) and
//! returned when asked for (`x-amz-checksum-mode: ENABLED`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, ChecksumType};
use s3s::{S3Error, S3Result, s3_error};

use super::system_meta::CHECKSUM_PREFIX;

/// The algorithms S3 knows, by their lower-case names.
pub(super) const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

pub(super) fn is_algorithm(name: &str) -> bool {
    ALGORITHMS.contains(&name)
}

fn digest(algorithm: &str, data: &[u8]) -> Option<Vec<u8>> {
    use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
    Some(match algorithm {
        "crc32" => Crc32::checksum(data).as_ref().to_vec(),
        "crc32c" => Crc32c::checksum(data).as_ref().to_vec(),
        "crc64nvme" => Crc64Nvme::checksum(data).as_ref().to_vec(),
        "sha1" => Sha1::checksum(data).as_ref().to_vec(),
        "sha256" => Sha256::checksum(data).as_ref().to_vec(),
        _ => return None,
    })
}

/// The composite checksum of a multipart object, as S3 makes it: the checksum of the
/// parts' binary checksums, base64, then `-N`. `algorithm` is the one the upload was
/// created with; `whole` holds what the client sent on Complete, which must match
/// (`BadDigest` otherwise). Returns the algorithm and value to store, if any.
pub(super) fn composite(
    algorithm: Option<&str>,
    whole: &Checksum,
    parts: &[Checksum],
) -> S3Result<Option<(&'static str, String)>> {
    let sent: Vec<(&'static str, &str)> = ALGORITHMS
        .iter()
        .filter_map(|a| value_of(whole, a).map(|v| (*a, v)))
        .collect();
    let chosen = match (algorithm, sent.first()) {
        (Some(a), _) => ALGORITHMS.iter().copied().find(|x| *x == a),
        (None, Some((a, _))) => Some(*a),
        (None, None) => None,
    };
    let Some(chosen) = chosen else {
        return Ok(None);
    };
    let bad = || {
        s3_error!(
            BadDigest,
            "The {} you specified did not match the calculated checksum.",
            chosen.to_ascii_uppercase()
        )
    };
    let mut raw = Vec::new();
    for part in parts {
        let decoded = value_of(part, chosen)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
        match decoded {
            Some(d) => raw.extend(d),
            // A part uploaded without the checksum: none can be made for the object.
            None if sent.is_empty() => return Ok(None),
            None => return Err(bad()),
        }
    }
    let sum = digest(chosen, &raw).ok_or_else(bad)?;
    let value = format!(
        "{}-{}",
        base64::engine::general_purpose::STANDARD.encode(sum),
        parts.len()
    );
    for (a, v) in &sent {
        let bare = value.rsplit_once('-').map_or(value.as_str(), |(b, _)| b);
        if *a != chosen || (*v != value && *v != bare) {
            return Err(bad());
        }
    }
    Ok(Some((chosen, value)))
}

/// What an upload promised about its body.
#[derive(Clone, Debug, Default)]
pub(super) struct Expected {
    /// `Content-MD5`, decoded.
    pub md5: Option<[u8; 16]>,
    /// `x-amz-checksum-*` values (base64) by algorithm.
    pub checksums: BTreeMap<&'static str, String>,
    /// An algorithm whose value comes in the aws-chunked trailer (`x-amz-trailer`).
    pub trailer: Option<&'static str>,
}

fn algorithm(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_start_matches("x-amz-checksum-");
    ALGORITHMS.iter().copied().find(|a| *a == lower)
}

impl Expected {
    /// Reads the integrity headers of a request.
    pub(super) fn from_headers(headers: &hyper::HeaderMap) -> S3Result<Self> {
        let mut out = Self::default();
        if let Some(value) = headers.get("content-md5") {
            let decoded = value
                .to_str()
                .ok()
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .ok()
                })
                .and_then(|d| <[u8; 16]>::try_from(d).ok())
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                })?;
            out.md5 = Some(decoded);
        }
        for a in ALGORITHMS {
            if let Some(value) = headers.get(format!("x-amz-checksum-{a}").as_str()) {
                let value = value.to_str().map_err(|_| bad_header(a))?.trim().to_owned();
                out.checksums.insert(a, value);
            }
        }
        if let Some(trailer) = headers.get("x-amz-trailer") {
            let name = trailer.to_str().unwrap_or("");
            if name.to_ascii_lowercase().starts_with("x-amz-checksum-") {
                out.trailer = Some(algorithm(name).ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "Unsupported checksum in x-amz-trailer: {name}"
                    )
                })?);
            }
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.md5.is_none() && self.checksums.is_empty() && self.trailer.is_none()
    }

    /// The checksums to store with the object (those known before the body is read).
    pub(super) fn stored(&self) -> BTreeMap<String, String> {
        self.checksums
            .iter()
            .map(|(a, v)| (format!("{CHECKSUM_PREFIX}{a}"), v.clone()))
            .collect()
    }
}

fn bad_header(algorithm: &str) -> S3Error {
    s3_error!(
        InvalidRequest,
        "Value for x-amz-checksum-{algorithm} header is invalid."
    )
}

/// How a verified upload ended.
#[derive(Clone, Debug, Default)]
pub(super) struct Verdict(Arc<Mutex<Option<S3Error>>>);

impl Verdict {
    /// The error to answer if the body did not match what was promised (whatever the
    /// storage layer made of the failed stream).
    pub(super) fn error(&self) -> Option<S3Error> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn set(&self, e: S3Error) {
        match self.0.lock() {
            Ok(mut g) => *g = Some(e),
            Err(p) => *p.into_inner() = Some(e),
        }
    }
}

/// Why a verified body stream ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("{0}")]
    Stream(String),
    #[error("the body does not match its {0}")]
    Mismatch(&'static str),
}

/// A request body that is hashed on its way through and fails at its end if it does not
/// match what its headers (or trailer) promised.
pub(super) struct Verifier<S> {
    inner: S,
    expected: Expected,
    md5: Option<md5::Md5>,
    hasher: Option<ChecksumHasher>,
    trailers: Option<s3s::TrailingHeaders>,
    verdict: Verdict,
    done: bool,
}

impl<S> Verifier<S> {
    pub(super) fn new(
        inner: S,
        expected: Expected,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> (Self, Verdict) {
        let verdict = Verdict::default();
        let mut hasher = ChecksumHasher::default();
        let wanted: Vec<&str> = expected
            .checksums
            .keys()
            .copied()
            .chain(expected.trailer)
            .collect();
        for a in &wanted {
            match *a {
                "crc32" => hasher.crc32 = Some(s3s::crypto::Crc32::new()),
                "crc32c" => hasher.crc32c = Some(s3s::crypto::Crc32c::new()),
                "crc64nvme" => hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
                "sha1" => hasher.sha1 = Some(s3s::crypto::Sha1::new()),
                "sha256" => hasher.sha256 = Some(s3s::crypto::Sha256::new()),
                _ => {}
            }
        }
        let verifier = Self {
            inner,
            md5: expected.md5.map(|_| md5::Md5::new()),
            hasher: (!wanted.is_empty()).then_some(hasher),
            expected,
            trailers,
            verdict: verdict.clone(),
            done: false,
        };
        (verifier, verdict)
    }

    /// Compares what was received with what was promised, once the body has ended.
    fn check(&mut self) -> Result<(), BodyError> {
        if self.expected.is_empty() {
            return Ok(());
        }
        if let (Some(md5), Some(want)) = (self.md5.take(), self.expected.md5)
            && md5.finalize().as_slice() != want
        {
            self.verdict.set(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
            return Err(BodyError::Mismatch("Content-MD5"));
        }
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let got = hasher.finalize();
        let mut promised = self.expected.checksums.clone();
        if let Some(a) = self.expected.trailer {
            let name = format!("x-amz-checksum-{a}");
            let value = self
                .trailers
                .as_ref()
                .and_then(|t| {
                    t.read(|h| h.get(name.as_str()).map(|v| v.to_str().map(str::to_owned)))
                })
                .flatten()
                .and_then(Result::ok);
            match value {
                Some(v) => {
                    promised.insert(a, v.trim().to_owned());
                }
                None => {
                    self.verdict.set(s3_error!(
                        InvalidRequest,
                        "The trailer x-amz-checksum-{a} announced by x-amz-trailer was not sent."
                    ));
                    return Err(BodyError::Mismatch("trailer"));
                }
            }
        }
        for (a, want) in &promised {
            if value_of(&got, a) != Some(want.as_str()) {
                self.verdict.set(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    a.to_ascii_uppercase()
                ));
                return Err(BodyError::Mismatch("checksum"));
            }
        }
        Ok(())
    }
}

/// One algorithm's value in an s3s checksum set.
pub(super) fn value_of<'a>(c: &'a Checksum, algorithm: &str) -> Option<&'a str> {
    match algorithm {
        "crc32" => c.checksum_crc32.as_deref(),
        "crc32c" => c.checksum_crc32c.as_deref(),
        "crc64nvme" => c.checksum_crc64nvme.as_deref(),
        "sha1" => c.checksum_sha1.as_deref(),
        "sha256" => c.checksum_sha256.as_deref(),
        _ => None,
    }
}

/// The checksums stored with an object, as S3 returns them, with their type: a
/// composite checksum of a multipart object ends in `-N` (base64 has no `-`), every other
/// one is of the whole object.
pub(super) fn stored_checksums(meta: &BTreeMap<String, String>) -> Checksum {
    let get = |a: &str| meta.get(&format!("{CHECKSUM_PREFIX}{a}")).cloned();
    let mut checksum = Checksum {
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        ..Default::default()
    };
    checksum.checksum_type = checksum_type_of(&checksum);
    checksum
}

fn checksum_type_of(checksum: &Checksum) -> Option<ChecksumType> {
    let value = ALGORITHMS.iter().find_map(|a| value_of(checksum, a))?;
    Some(ChecksumType::from_static(if value.contains('-') {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    }))
}

/// The checksum type of a new multipart upload (`true` for `FULL_OBJECT`), from its
/// algorithm and `x-amz-checksum-type`, refused where S3 refuses it: a type without an
/// algorithm, a full-object SHA (hashes cannot be combined across parts), a composite
/// CRC64NVME. Without a type, CRC64NVME is full-object and the others composite, as in S3.
pub(super) fn upload_checksum_type(
    algorithm: Option<&str>,
    requested: Option<&str>,
) -> S3Result<bool> {
    let Some(algorithm) = algorithm else {
        return match requested {
            None => Ok(false),
            Some(t) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header ({t}) can only be used with the x-amz-checksum-algorithm header."
            )),
        };
    };
    let full = match requested {
        None => algorithm == "crc64nvme",
        Some(ChecksumType::FULL_OBJECT) => true,
        Some(ChecksumType::COMPOSITE) => false,
        Some(other) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid: {other}"
            ));
        }
    };
    if full && !super::crc_combine::supports_full_object(algorithm) {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            algorithm.to_ascii_uppercase()
        ));
    }
    if !full && algorithm == "crc64nvme" {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."
        ));
    }
    Ok(full)
}

/// The full-object checksum of a multipart object (a CRC), from its parts' checksums and
/// sizes; `whole` holds what the client sent on Complete, which must match (`BadDigest`
/// otherwise). A part uploaded without the CRC gives no checksum, or `BadDigest` if the
/// client sent one (it cannot be checked).
pub(super) fn full_object(
    algorithm: Option<&str>,
    whole: &Checksum,
    parts: &[(Checksum, u64)],
) -> S3Result<Option<(&'static str, String)>> {
    let Some(chosen) = algorithm.and_then(|a| ALGORITHMS.iter().copied().find(|x| *x == a)) else {
        return Ok(None);
    };
    let bad = || {
        s3_error!(
            BadDigest,
            "The {} you specified did not match the calculated checksum.",
            chosen.to_ascii_uppercase()
        )
    };
    let sent: Vec<(&'static str, &str)> = ALGORITHMS
        .iter()
        .filter_map(|a| value_of(whole, a).map(|v| (*a, v)))
        .collect();
    let mut raw = Vec::with_capacity(parts.len());
    for (part, size) in parts {
        let decoded = value_of(part, chosen)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
        match decoded {
            Some(d) => raw.push((d, *size)),
            None if sent.is_empty() => return Ok(None),
            None => return Err(bad()),
        }
    }
    let sum = super::crc_combine::combine_parts(chosen, &raw).ok_or_else(bad)?;
    let value = base64::engine::general_purpose::STANDARD.encode(sum);
    if sent.iter().any(|(a, v)| *a != chosen || *v != value) {
        return Err(bad());
    }
    Ok(Some((chosen, value)))
}

/// The stored list of a multipart object's part checksums (for `GET ?partNumber=` and
/// `GetObjectAttributes`): the chosen algorithm's values, comma-separated, in part order.
const PART_CHECKSUMS: &str = ":part-checksums";
/// Part checksums are kept for objects of at most this many parts: an object's whole
/// metadata entry is limited to 64 KiB (`xnode_store::MAX_META_BYTES`) and a SHA-256
/// value takes 45 bytes with its comma.
const MAX_PARTS_WITH_CHECKSUMS: usize = 256;

/// Keeps the parts' `algorithm` checksums with a multipart object, if every part has one
/// and there are not too many parts.
pub(super) fn store_part_checksums(
    meta: &mut BTreeMap<String, String>,
    algorithm: &str,
    parts: &[(Checksum, u64)],
) {
    if parts.len() > MAX_PARTS_WITH_CHECKSUMS {
        return;
    }
    let values: Option<Vec<&str>> = parts.iter().map(|(c, _)| value_of(c, algorithm)).collect();
    if let Some(values) = values {
        meta.insert(PART_CHECKSUMS.to_owned(), values.join(","));
    }
}

/// Part `number`'s (from 1) checksum of a multipart object, with the object's checksum
/// type, or nothing if none was kept.
pub(super) fn part_checksum(meta: &BTreeMap<String, String>, number: usize) -> Checksum {
    let whole = stored_checksums(meta);
    let Some(algorithm) = ALGORITHMS.iter().find(|a| value_of(&whole, a).is_some()) else {
        return Checksum::default();
    };
    let value = meta
        .get(PART_CHECKSUMS)
        .and_then(|list| list.split(',').nth(number.checked_sub(1)?))
        .map(str::to_owned);
    let Some(value) = value else {
        return Checksum::default();
    };
    let mut part = Checksum {
        checksum_type: whole.checksum_type,
        ..Default::default()
    };
    match *algorithm {
        "crc32" => part.checksum_crc32 = Some(value),
        "crc32c" => part.checksum_crc32c = Some(value),
        "crc64nvme" => part.checksum_crc64nvme = Some(value),
        "sha1" => part.checksum_sha1 = Some(value),
        _ => part.checksum_sha256 = Some(value),
    }
    part
}

impl<S, E> futures::Stream for Verifier<S>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(md5) = &mut this.md5 {
                    md5.update(&bytes);
                }
                if let Some(h) = &mut this.hasher {
                    h.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(BodyError::Stream(e.to_string()))))
            }
            Poll::Ready(None) => {
                this.done = true;
                match this.check() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl futures::Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn drain<S: futures::Stream<Item = Result<Bytes, BodyError>> + Unpin>(mut s: S) -> bool {
        while let Some(item) = s.next().await {
            if item.is_err() {
                return false;
            }
        }
        true
    }

    #[test]
    fn composite_checksums_follow_s3() {
        // The suite's example: one 1024-byte part of 'A' under SHA-256.
        let part = Checksum {
            checksum_sha256: Some("arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=".into()),
            ..Default::default()
        };
        let whole = Checksum {
            checksum_sha256: Some("Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1".into()),
            ..Default::default()
        };
        let got = composite(Some("sha256"), &whole, std::slice::from_ref(&part)).unwrap();
        assert_eq!(
            got,
            Some((
                "sha256",
                "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1".to_owned()
            ))
        );
        let bad = Checksum {
            checksum_sha256: Some("bad".into()),
            ..Default::default()
        };
        assert_eq!(
            composite(Some("sha256"), &bad, &[part])
                .unwrap_err()
                .code()
                .as_str(),
            "BadDigest"
        );
        assert_eq!(composite(None, &Checksum::default(), &[]).unwrap(), None);
    }

    #[tokio::test]
    async fn matching_bodies_pass_and_others_fail() {
        let md5 = md5::Md5::digest(b"hello world");
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "content-md5",
            base64::engine::general_purpose::STANDARD
                .encode(md5)
                .parse()
                .unwrap(),
        );
        // CRC32 of "hello world".
        headers.insert("x-amz-checksum-crc32", "DUoRhQ==".parse().unwrap());
        let expected = Expected::from_headers(&headers).unwrap();
        assert_eq!(expected.stored().len(), 1);
        let (v, verdict) = Verifier::new(body(&[b"hello ", b"world"]), expected.clone(), None);
        assert!(drain(v).await);
        assert!(verdict.error().is_none());
        let (v, verdict) = Verifier::new(body(&[b"hello ", b"worle"]), expected, None);
        assert!(!drain(v).await);
        assert_eq!(verdict.error().unwrap().code().as_str(), "BadDigest");
        let mut bad = hyper::HeaderMap::new();
        bad.insert("content-md5", "not base64!".parse().unwrap());
        assert_eq!(
            Expected::from_headers(&bad).unwrap_err().code().as_str(),
            "InvalidDigest"
        );
    }
}
