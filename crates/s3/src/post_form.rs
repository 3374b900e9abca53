//! Browser-form uploads (S3's POST object), checked and completed before s3s sees them.
//!
//! s3s parses the form, verifies its signature and maps some fields onto a PutObject, but
//! it answers policy failures with other statuses than S3, ignores the `acl` and
//! `tagging` fields, never expands `${filename}` in the key, and hands the gateway fields
//! (`x-amz-acl`, the grants, `Content-MD5`, checksums) that the gateway reads from
//! headers, so they were dropped. This module reads the form's fields (everything before
//! the file, at most [`MAX_FORM_HEAD`] bytes, as in S3), then:
//!
//! - refuses a field it does not honour (`501 NotImplemented`), a duplicate field, and a
//!   policy without a signature or a signature without a policy (`400`, as S3 answers);
//! - evaluates the policy as S3 does ([`crate::post_policy`]);
//! - expands `${filename}` in the key, and gives the fields the gateway reads from
//!   headers as headers (`acl` as `x-amz-acl`, `tagging` as `x-amz-tagging`), so that the
//!   guard, the access check and bucket policy conditions see them as for a PUT;
//! - rewrites the form s3s reads accordingly (the checksum fields, exempt from the policy
//!   here as in RGW but not in s3s, leave the form for headers, where the gateway
//!   verifies them against the file).
//!
//! The signature itself is still verified by s3s, after this; a request that fails both
//! gets the policy's refusal (also a `403`).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use s3s::{S3Result, s3_error};

use crate::post_policy::PostPolicy;

/// The most bytes of a form read before its file part. S3 refuses larger ones with
/// `MaxPostPreDataLengthExceededError`; the bound also caps what a hostile form can make
/// a node hold.
pub(crate) const MAX_FORM_HEAD: usize = 20 * 1024;

/// The key a form upload writes, left in the request's extensions for the access check
/// (the path names only the bucket, which the check takes from s3s's parse).
#[derive(Clone, Debug)]
pub(crate) struct FormObject {
    pub(crate) key: String,
}

/// What the response of a form upload needs from its form.
#[derive(Debug)]
pub(crate) struct FormUpload {
    bucket: String,
    key: String,
    redirect: Option<String>,
}

/// The fields s3s maps onto the upload and the gateway honours from there.
const PASSED_TO_UPLOAD: &[&str] = &[
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "if-match",
    "if-none-match",
    "x-amz-tagging",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// The fields of the form itself: what to store, where to go after, and the signature.
const FORM_CONTROL: &[&str] = &[
    "key",
    "bucket",
    "policy",
    "signature",
    "awsaccesskeyid",
    "x-amz-signature",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "success_action_status",
    "success_action_redirect",
    "redirect",
];

/// The fields the gateway, the guard and the access check read from headers: each is
/// also given as the header it stands for (so an unsupported value is refused as on a PUT).
const AS_HEADERS: &[&str] = &[
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "content-md5",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-expected-bucket-owner",
    // The access check asks a granted writer for the lock permissions when these are set.
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
];

/// The checksum fields: given as headers only (see the module comment).
const CHECKSUM_FIELDS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// One field of the form, as sent.
#[derive(Debug)]
struct Field {
    name: String,
    value: String,
}

/// The form's fields and where its file part begins.
#[derive(Debug)]
struct FormHead {
    fields: Vec<Field>,
    /// The file part's `filename`, if it has one.
    file_name: Option<String>,
    /// Where, in the bytes read, the file part's delimiter line starts.
    file_part_start: usize,
}

fn malformed() -> s3s::S3Error {
    s3_error!(
        MalformedPOSTRequest,
        "The body of your POST request is not well-formed multipart/form-data."
    )
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i.saturating_add(from))
}

/// The value of parameter `param` (`name`, `filename`) of a Content-Disposition header.
fn disposition_param<'a>(header: &'a str, param: &str) -> Option<&'a str> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(param) {
            return None;
        }
        let v = v.trim();
        Some(v.strip_prefix('"')?.strip_suffix('"').unwrap_or(v))
    })
}

/// Parses the fields before the file part from `buf`; `Ok(None)` if more bytes are needed.
fn parse_head(buf: &[u8], boundary: &str) -> S3Result<Option<FormHead>> {
    let delimiter = format!("--{boundary}");
    let next_part = format!("\r\n--{boundary}");
    // A preamble before the first delimiter is allowed by multipart and ignored by S3.
    let Some(mut pos) = find(buf, delimiter.as_bytes(), 0) else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    loop {
        let part_start = pos;
        let after_delimiter = pos.saturating_add(delimiter.len());
        match buf.get(after_delimiter..after_delimiter.saturating_add(2)) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            // The closing delimiter before any file part.
            Some(_) => {
                return Err(s3_error!(
                    IncorrectNumberOfFilesInPostRequest,
                    "POST requires exactly one file upload per request."
                ));
            }
        }
        let headers_start = after_delimiter.saturating_add(2);
        let Some(headers_end) = find(buf, b"\r\n\r\n", headers_start) else {
            return Ok(None);
        };
        let headers = buf.get(headers_start..headers_end).ok_or_else(malformed)?;
        let headers = std::str::from_utf8(headers).map_err(|_| malformed())?;
        let disposition = headers
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(value.trim())
            })
            .ok_or_else(malformed)?;
        let name = disposition_param(disposition, "name").ok_or_else(malformed)?;
        let content_start = headers_end.saturating_add(4);
        if name.eq_ignore_ascii_case("file") {
            return Ok(Some(FormHead {
                fields,
                file_name: disposition_param(disposition, "filename").map(str::to_owned),
                file_part_start: part_start,
            }));
        }
        let Some(value_end) = find(buf, next_part.as_bytes(), content_start) else {
            return Ok(None);
        };
        let value = buf.get(content_start..value_end).ok_or_else(malformed)?;
        let value = std::str::from_utf8(value).map_err(|_| malformed())?;
        fields.push(Field {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        pos = value_end.saturating_add(2);
    }
}

/// The bucket and multipart boundary of a form upload: `None` for a request that is not
/// one, an error for one s3s would take as a form upload (any `POST` with a
/// `multipart/form-data` body, whatever its query) but whose path names no bucket alone,
/// so that no form reaches s3s without these checks.
fn form_target<B>(req: &hyper::Request<B>) -> Option<S3Result<(String, String)>> {
    if req.method() != hyper::Method::POST {
        return None;
    }
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let mut parts = content_type.split(';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    let boundary = parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    });
    let Some(boundary) = boundary.filter(|b| !b.is_empty()) else {
        return Some(Err(malformed()));
    };
    let path = req.uri().path();
    let bucket = path.strip_prefix('/').unwrap_or(path);
    let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
    if bucket.is_empty() || bucket.contains('/') {
        return Some(Err(s3_error!(
            MethodNotAllowed,
            "A form upload is posted to its bucket (POST /bucket)"
        )));
    }
    // Bucket names are lowercase letters, digits, dots and hyphens: a percent-encoded
    // name is no bucket's, and is refused rather than decoded differently from s3s.
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some(Err(s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid."
        )));
    }
    Some(Ok((bucket.to_owned(), boundary)))
}

/// Refuses a redirect that could not be sent back as a `Location` header, before the
/// upload is stored rather than after.
fn check_redirect(redirect: Option<&String>) -> S3Result<()> {
    match redirect {
        Some(r) if r.chars().any(|c| c.is_control() || c.is_whitespace()) || !r.contains("://") => {
            Err(s3_error!(
                InvalidArgument,
                "success_action_redirect must be an absolute URL without spaces or control characters"
            ))
        }
        _ => Ok(()),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `tagging` field (a `<Tagging>` document) as an `x-amz-tagging` value.
fn tagging_header(xml: &str) -> S3Result<String> {
    use s3s::xml::Deserialize;
    let mut de = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging = s3s::dto::Tagging::deserialize(&mut de)
        .and_then(|t| de.expect_eof().map(|()| t))
        .map_err(|_| {
            s3_error!(
                MalformedXML,
                "The tagging form field is not a valid Tagging document"
            )
        })?;
    let mut pairs = Vec::with_capacity(tagging.tag_set.len());
    for tag in &tagging.tag_set {
        let key = tag
            .key
            .as_deref()
            .ok_or_else(|| s3_error!(InvalidTag, "A tag in the tagging form field has no key"))?;
        let value = tag.value.as_deref().unwrap_or_default();
        pairs.push(format!("{}={}", percent_encode(key), percent_encode(value)));
    }
    Ok(pairs.join("&"))
}

/// A form that passed [`check_form`].
struct CheckedForm {
    /// The fields s3s reads, by their names as sent.
    passed: Vec<(String, String)>,
    /// Every field by lowercase name, the key with `${filename}` expanded.
    fields: BTreeMap<String, String>,
}

/// Decides what to do with each field, evaluates the policy and fills `headers` with the
/// fields given as headers.
fn check_form(
    head: &FormHead,
    bucket: &str,
    headers: &mut hyper::HeaderMap,
    now: time::OffsetDateTime,
) -> S3Result<CheckedForm> {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for field in &head.fields {
        let lower = field.name.to_ascii_lowercase();
        if by_name.insert(lower.clone(), field.value.clone()).is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "The form field {lower:?} appears more than once"
            ));
        }
    }
    if let Some(key) = by_name.get_mut("key")
        && key.contains("${filename}")
    {
        let file_name = head.file_name.as_deref().ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The key uses ${{filename}} but the file part has no filename"
            )
        })?;
        *key = key.replace("${filename}", file_name);
    }
    let signed_v2 = by_name.contains_key("signature") || by_name.contains_key("awsaccesskeyid");
    let signed_v4 = [
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-algorithm",
        "x-amz-date",
    ]
    .iter()
    .any(|f| by_name.contains_key(*f));
    let policy = by_name.get("policy");
    if policy.is_some() || signed_v2 || signed_v4 {
        let required: &[(&str, &str)] = if signed_v4 {
            &[
                ("x-amz-signature", "X-Amz-Signature"),
                ("x-amz-credential", "X-Amz-Credential"),
                ("x-amz-algorithm", "X-Amz-Algorithm"),
                ("x-amz-date", "X-Amz-Date"),
                ("policy", "Policy"),
            ]
        } else {
            &[
                ("awsaccesskeyid", "AWSAccessKeyId"),
                ("signature", "Signature"),
                ("policy", "Policy"),
            ]
        };
        if let Some((_, missing)) = required.iter().find(|(f, _)| !by_name.contains_key(*f)) {
            return Err(s3_error!(
                InvalidArgument,
                "Bucket POST must contain a field named '{missing}'. If it is specified, please check the order of the fields."
            ));
        }
    }
    let tagging = match (by_name.get("tagging"), by_name.get("x-amz-tagging")) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                InvalidArgument,
                "The form gives both tagging and x-amz-tagging"
            ));
        }
        (Some(xml), None) => Some(tagging_header(xml)?),
        _ => None,
    };
    let acl = match (by_name.get("acl"), by_name.get("x-amz-acl")) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                InvalidArgument,
                "The form gives both acl and x-amz-acl"
            ));
        }
        (a, b) => a.or(b).cloned(),
    };
    let mut lifted: Vec<(&str, String)> = Vec::new();
    let mut passed = Vec::new();
    for field in &head.fields {
        let lower = field.name.to_ascii_lowercase();
        let name = lower.as_str();
        // A metadata field becomes an `x-amz-meta-*` header on GET, so its name must be a
        // header name. Anything else is refused: a name with `:` would otherwise reach the
        // object's metadata as one of the gateway's own entries (`:acl`, `:tags`, the
        // object lock's, ...; see `gateway::system_meta`), which no header can name.
        if name.starts_with("x-amz-meta-")
            && hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(s3_error!(
                InvalidArgument,
                "The form field {name:?} is not a valid metadata name (metadata names are HTTP header names)"
            ));
        }
        let value = by_name.get(name).cloned().unwrap_or_default();
        if let Some(header) = CHECKSUM_FIELDS.iter().find(|h| **h == name) {
            lifted.push((header, value));
            continue;
        }
        if name == "acl" || name == "x-amz-acl" {
            if let Some(acl) = &acl {
                lifted.push(("x-amz-acl", acl.clone()));
            }
        } else if name == "tagging" {
            if let Some(tags) = &tagging {
                lifted.push(("x-amz-tagging", tags.clone()));
            }
        } else if let Some(header) = AS_HEADERS.iter().find(|h| **h == name) {
            lifted.push((header, value.clone()));
        } else if !(FORM_CONTROL.contains(&name)
            || PASSED_TO_UPLOAD.contains(&name)
            || name.starts_with("x-amz-meta-")
            || name.starts_with("x-ignore-"))
        {
            return Err(s3_error!(
                NotImplemented,
                "The form field {name:?} is not supported by this gateway; the upload was not carried out"
            ));
        }
        passed.push((field.name.clone(), value));
    }
    check_redirect(
        by_name
            .get("success_action_redirect")
            .or_else(|| by_name.get("redirect")),
    )?;
    if let Some(policy) = policy {
        let policy = PostPolicy::from_base64(policy).map_err(|e| e.to_s3())?;
        policy.check(now, bucket, &by_name).map_err(|e| e.to_s3())?;
    }
    for (name, value) in lifted {
        if headers.contains_key(name) {
            return Err(s3_error!(
                InvalidArgument,
                "{name} is given both as a header and as a form field"
            ));
        }
        let value = hyper::header::HeaderValue::from_str(value.trim()).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "The form field {name} has a value no header can carry"
            )
        })?;
        headers.insert(name, value);
    }
    Ok(CheckedForm {
        passed,
        fields: by_name,
    })
}

/// The form s3s reads: the kept fields, then the file part as it came.
fn rebuilt_head(fields: &[(String, String)], boundary: &str, file_part: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(file_part.len().saturating_add(1024));
    for (name, value) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(file_part);
    out
}

/// Checks and completes a form upload (see the module comment); any other request is
/// returned as it came, with `None`.
pub(crate) async fn prepare(
    req: hyper::Request<s3s::Body>,
) -> S3Result<(hyper::Request<s3s::Body>, Option<FormUpload>)> {
    let (bucket, boundary) = match form_target(&req) {
        None => return Ok((req, None)),
        Some(target) => target?,
    };
    let (mut parts, mut body) = req.into_parts();
    let mut buf: Vec<u8> = Vec::new();
    let head = loop {
        if let Some(head) = parse_head(&buf, &boundary)? {
            break head;
        }
        if buf.len() > MAX_FORM_HEAD {
            return Err(s3_error!(
                MaxPostPreDataLengthExceededError,
                "Your POST request fields preceding the upload file were too large."
            ));
        }
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(_)) => {
                return Err(s3_error!(
                    IncompleteBody,
                    "The request body could not be read"
                ));
            }
            None => return Err(malformed()),
        }
    };
    if head.file_part_start > MAX_FORM_HEAD {
        return Err(s3_error!(
            MaxPostPreDataLengthExceededError,
            "Your POST request fields preceding the upload file were too large."
        ));
    }
    let CheckedForm {
        passed,
        fields: by_name,
    } = check_form(
        &head,
        &bucket,
        &mut parts.headers,
        time::OffsetDateTime::now_utc(),
    )?;
    let file_part = buf.get(head.file_part_start..).ok_or_else(malformed)?;
    let new_head = rebuilt_head(&passed, &boundary, file_part);
    // The body's length changes by what the rewrite changed in its head.
    if let Some(length) = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        let length = length
            .checked_sub(u64::try_from(buf.len()).unwrap_or(u64::MAX))
            .and_then(|rest| rest.checked_add(u64::try_from(new_head.len()).ok()?))
            .ok_or_else(malformed)?;
        parts.headers.insert(
            hyper::header::CONTENT_LENGTH,
            hyper::header::HeaderValue::from(length),
        );
    }
    if let Some(key) = by_name.get("key") {
        parts.extensions.insert(FormObject { key: key.clone() });
    }
    let upload = FormUpload {
        bucket,
        key: by_name.get("key").cloned().unwrap_or_default(),
        redirect: by_name
            .get("success_action_redirect")
            .or_else(|| by_name.get("redirect"))
            .cloned(),
    };
    let first = futures::stream::once(async move { Ok::<_, s3s::StdError>(Bytes::from(new_head)) });
    let stream = first
        .chain(body)
        .map(|chunk| chunk.map(hyper::body::Frame::data));
    let body = s3s::Body::http_body_unsync(http_body_util::StreamBody::new(stream));
    Ok((hyper::Request::from_parts(parts, body), Some(upload)))
}

impl FormUpload {
    /// Completes the response s3s gave a form upload: the redirect of
    /// `success_action_redirect` carries the ETag in quotes, as S3 sends it
    /// (`?bucket=b&key=k&etag=%22...%22`), where s3s sends it bare.
    pub(crate) fn finish(&self, mut response: s3s::HttpResponse) -> s3s::HttpResponse {
        let (Some(redirect), hyper::StatusCode::SEE_OTHER) = (&self.redirect, response.status())
        else {
            return response;
        };
        let etag = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| {
                l.rsplit_once("etag=")
                    .map(|(_, e)| e.split('&').next().unwrap_or(e).to_owned())
            })
            .unwrap_or_default();
        let separator = if redirect.contains('?') { '&' } else { '?' };
        let location = format!(
            "{redirect}{separator}bucket={}&key={}&etag={}",
            percent_encode(&self.bucket),
            percent_encode(&self.key),
            percent_encode(&format!("\"{etag}\""))
        );
        if let Ok(value) = hyper::header::HeaderValue::from_str(&location) {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, value);
        }
        response
    }
}

#[cfg(test)]
mod tests;
