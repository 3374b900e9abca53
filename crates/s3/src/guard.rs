//! Requests the gateway cannot honour are refused before any work is done, never served
//! as if the part they ask for did not exist.
//!
//! s3s parses every header of an operation into its input and routes every sub-resource
//! (`?acl`, `?cors`, `?versioning`, ...) to its own operation. Operations the gateway does
//! not implement already answer `501 NotImplemented` (the `S3` trait's default), but a
//! header or query parameter of an operation that *is* implemented would be dropped
//! silently: `If-None-Match: *` on PUT would overwrite, SSE-C objects would be readable
//! without their key, an object-lock retention would not hold. Clients rely on
//! those to make a request fail, so [`check`] answers `NotImplemented` (or the error AWS
//! gives) for each one until the gateway honours it. Body checksums (`Content-MD5`,
//! `x-amz-checksum-*`) are not refused here: the gateway verifies them.

use hyper::HeaderMap;
use s3s::{S3Result, s3_error};

/// Headers whose features the gateway does not have, refused on every operation.
const UNSUPPORTED_HEADERS: &[(&str, &str)] = &[
    ("x-amz-website-redirect-location", "website redirects"),
    ("x-amz-write-offset-bytes", "appends"),
    ("x-amz-mfa", "MFA delete"),
    (
        "x-amz-optional-object-attributes",
        "optional object attributes in listings",
    ),
];

/// The headers that set a new version's object lock (see `gateway::object_lock`).
const OBJECT_LOCK_HEADERS: &[&str] = &[
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
];

/// The operations that honour the object-lock headers: the writes that make a version.
const OBJECT_LOCK_OPERATIONS: &[&str] = &["PutObject", "CopyObject", "CreateMultipartUpload"];

/// The operations that act on one version named by `versionId`.
const VERSION_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "PutObjectRetention",
    "GetObjectRetention",
    "PutObjectLegalHold",
    "GetObjectLegalHold",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectAttributes",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
];

/// The server-side encryption a request asks for, refused as S3 refuses it when it cannot
/// be honoured. Objects are always encrypted at rest, so SSE-S3 (`AES256`) is honoured;
/// SSE-C (`gateway::sse`) and SSE-KMS (`gateway::kms`) are built: the writes resolve the KMS
/// key (an unknown one is `400 KMS.NotFoundException` there), and parts and completions use
/// their upload's key, as S3 does. An encryption context and dual-layer SSE-KMS are not
/// built, so they are refused rather than ignored.
fn check_encryption(op: &str, headers: &HeaderMap) -> S3Result<()> {
    let sse = header(headers, "x-amz-server-side-encryption");
    let kms_key = header(headers, "x-amz-server-side-encryption-aws-kms-key-id");
    let kms_context = headers.contains_key("x-amz-server-side-encryption-context");
    if sse.is_some() && matches!(op, "GetObject" | "HeadObject") {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption header is not supported for this operation."
        ));
    }
    if sse.is_some() && headers.contains_key("x-amz-server-side-encryption-customer-algorithm") {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    match sse {
        Some("aws:kms") if kms_context => Err(not_implemented("An SSE-KMS encryption context")),
        Some("aws:kms") => Ok(()),
        Some("aws:kms:dsse") => Err(s3_error!(
            InvalidArgument,
            "Dual-layer SSE-KMS (aws:kms:dsse) is not supported; use aws:kms"
        )),
        Some("AES256") | None if kms_key.is_some() || kms_context => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
        )),
        Some("AES256") | None => Ok(()),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified is not supported: {other:?}"
        )),
    }
}

/// The headers that grant access to others.
const ACL_GRANT_HEADERS: &[&str] = &[
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
];

/// The operations that honour `x-amz-acl` and the grant headers.
const ACL_OPERATIONS: &[&str] = &[
    "PutObject",
    "PostObject",
    "CopyObject",
    "CreateMultipartUpload",
    "CreateBucket",
    "PutBucketAcl",
    "PutObjectAcl",
];

fn not_implemented(what: &str) -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "{what} is not supported by this gateway; the request was not carried out"
    )
}

/// The value of query parameter `name`, if present (values compared here are plain ASCII,
/// so they are not percent-decoded).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("\u{FFFD}").trim())
}

/// Refuses a request that carries a header or query parameter the gateway cannot honour
/// for operation `op` (an s3s operation name such as `PutObject`).
pub fn check(op: &str, headers: &HeaderMap, query: Option<&str>) -> S3Result<()> {
    for (name, feature) in UNSUPPORTED_HEADERS {
        if headers.contains_key(*name) {
            return Err(not_implemented(&format!("{feature} (header {name})")));
        }
    }
    if !OBJECT_LOCK_OPERATIONS.contains(&op)
        && let Some(name) = OBJECT_LOCK_HEADERS
            .iter()
            .find(|h| headers.contains_key(**h))
    {
        return Err(not_implemented(&format!(
            "object lock header {name} on {op}"
        )));
    }
    check_encryption(op, headers)?;
    if header(headers, "x-amz-server-side-encryption-bucket-key-enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(not_implemented("S3 bucket keys"));
    }
    if let Some(class) = header(headers, "x-amz-storage-class")
        && class != "STANDARD"
    {
        return Err(not_implemented(&format!("storage class {class:?}")));
    }
    // ACL headers are honoured by the operations that store an ACL (see `gateway::acl`);
    // on any other (a part upload, say) they are refused rather than dropped, except the
    // canned ACLs that ask for what an object is by default (private to its owner, or
    // with the bucket owner's full control), which tools such as rclone send on every
    // request. A multipart upload keeps its ACL in its record for the completed object.
    let asks_acl = header(headers, "x-amz-acl")
        .is_some_and(|acl| !matches!(acl, "private" | "bucket-owner-full-control"))
        || ACL_GRANT_HEADERS.iter().any(|h| headers.contains_key(*h));
    if asks_acl && !ACL_OPERATIONS.contains(&op) {
        return Err(not_implemented(&format!("ACL headers on {op}")));
    }
    if op != "CreateBucket"
        && header(headers, "x-amz-bucket-object-lock-enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(not_implemented(&format!("object lock on {op}")));
    }
    // GET, HEAD and DELETE of one version are built (see `gateway::versioning`), and the
    // retention, legal hold, ACL, tags and attributes of one version
    // (`gateway::object_lock`, `gateway::acl`, `gateway::tagging`, `gateway::parts`); any
    // other operation given a `versionId` refuses it rather than ignore it.
    if let Some(version) = query_param(query, "versionId")
        && version != "null"
        && !VERSION_OPERATIONS.contains(&op)
    {
        return Err(not_implemented(&format!(
            "{op} of a version other than the current one"
        )));
    }
    // Conditional writes (`If-Match`, `If-None-Match` on PutObject, CompleteMultipartUpload
    // and CopyObject, and `If-Match` with its size and time variants on DeleteObject) are
    // honoured. DeleteObject has no `If-None-Match` in S3: refused, not ignored.
    if op == "DeleteObject" && headers.contains_key("if-none-match") {
        return Err(not_implemented(
            "If-None-Match on DeleteObject (S3 deletes honour If-Match only)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, hyper::header::HeaderValue::from_static(v));
        }
        map
    }

    fn code(r: S3Result<()>) -> Option<String> {
        r.err().map(|e| e.code().as_str().to_owned())
    }

    #[test]
    fn plain_requests_pass() {
        let h = headers(&[
            ("content-type", "text/plain"),
            ("x-amz-meta-a", "b"),
            ("content-md5", "x"),
            ("x-amz-checksum-crc32", "x"),
            ("x-amz-acl", "private"),
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-storage-class", "STANDARD"),
        ]);
        assert_eq!(code(check("PutObject", &h, None)), None);
        assert_eq!(
            code(check(
                "GetObject",
                &HeaderMap::new(),
                Some("versionId=null")
            )),
            None
        );
        for op in [
            "GetObject",
            "HeadObject",
            "DeleteObject",
            "GetObjectAcl",
            "PutObjectAcl",
            "GetObjectAttributes",
        ] {
            assert_eq!(
                code(check(op, &HeaderMap::new(), Some("versionId=abc"))),
                None
            );
        }
        // GET's own conditions are honoured, and so are conditional writes.
        let h = headers(&[("if-match", "\"x\""), ("if-none-match", "*")]);
        for op in [
            "GetObject",
            "PutObject",
            "CompleteMultipartUpload",
            "CopyObject",
        ] {
            assert_eq!(code(check(op, &h, None)), None, "{op}");
        }
        let h = headers(&[
            ("if-match", "\"x\""),
            ("x-amz-if-match-size", "3"),
            (
                "x-amz-if-match-last-modified-time",
                "Wed, 01 Jan 2025 00:00:00 GMT",
            ),
        ]);
        assert_eq!(code(check("DeleteObject", &h, None)), None);
    }

    #[test]
    fn encryption_is_refused_as_aws_refuses_it() {
        for (op, pairs, expected) in [
            (
                "PutObject",
                vec![("x-amz-server-side-encryption", "aws:kms:dsse")],
                "InvalidArgument",
            ),
            (
                "PutObject",
                vec![("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1")],
                "InvalidArgument",
            ),
            (
                "PutObject",
                vec![
                    ("x-amz-server-side-encryption", "AES256"),
                    ("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1"),
                ],
                "InvalidArgument",
            ),
            (
                "PutObject",
                vec![
                    ("x-amz-server-side-encryption", "aws:kms"),
                    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
                ],
                "InvalidArgument",
            ),
            (
                "PutObject",
                vec![("x-amz-server-side-encryption", "aes:kms")],
                "InvalidArgument",
            ),
            (
                "HeadObject",
                vec![("x-amz-server-side-encryption", "AES256")],
                "InvalidArgument",
            ),
            (
                "GetObject",
                vec![("x-amz-server-side-encryption", "AES256")],
                "InvalidArgument",
            ),
        ] {
            let h = headers(&pairs);
            let e = check(op, &h, None).unwrap_err();
            assert_eq!(e.code().as_str(), expected, "{op} {pairs:?}");
            assert_eq!(
                e.status_code(),
                Some(hyper::StatusCode::BAD_REQUEST),
                "{op} {pairs:?}"
            );
        }
        // SSE-C is handled by the gateway, not refused here.
        let h = headers(&[("x-amz-server-side-encryption-customer-algorithm", "AES256")]);
        assert!(check("GetObject", &h, None).is_ok());
        // SSE-KMS too: the writes resolve the key, parts use their upload's.
        let h = headers(&[
            ("x-amz-server-side-encryption", "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1"),
        ]);
        for op in [
            "PutObject",
            "CreateMultipartUpload",
            "UploadPart",
            "CopyObject",
        ] {
            assert!(check(op, &h, None).is_ok(), "{op}");
        }
    }

    #[test]
    fn what_is_not_honoured_is_refused() {
        let ni = Some("NotImplemented".to_owned());
        for (op, pairs, query) in [
            ("DeleteObject", vec![("if-none-match", "*")], None),
            (
                "UploadPart",
                vec![("x-amz-object-lock-mode", "GOVERNANCE")],
                None,
            ),
            ("UploadPart", vec![("x-amz-acl", "public-read")], None),
            ("UploadPart", vec![("x-amz-grant-read", "id=x")], None),
            ("PutObject", vec![("x-amz-storage-class", "GLACIER")], None),
            (
                "PutObject",
                vec![("x-amz-bucket-object-lock-enabled", "true")],
                None,
            ),
            (
                "PutObject",
                vec![
                    ("x-amz-server-side-encryption", "aws:kms"),
                    ("x-amz-server-side-encryption-context", "e30="),
                ],
                None,
            ),
            ("PutObject", vec![], Some("versionId=abc")),
        ] {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k, hyper::header::HeaderValue::from_static(v));
            }
            assert_eq!(code(check(op, &h, query)), ni, "{op} {h:?} {query:?}");
        }
    }
}
