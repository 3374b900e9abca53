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

/// The object a form upload writes, left in the request's extensions for the access
/// check (the path names only the bucket).
#[derive(Clone, Debug)]
pub(crate) struct FormObject {
    pub(crate) bucket: String,
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
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
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

/// The bucket and multipart boundary of a form upload (`POST /bucket` with a
/// `multipart/form-data` body), or `None` for any other request.
fn form_target<B>(req: &hyper::Request<B>) -> Option<(String, String)> {
    if req.method() != hyper::Method::POST || req.uri().query().is_some_and(|q| !q.is_empty()) {
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
    })?;
    let path = req.uri().path().strip_prefix('/')?;
    let bucket = path.strip_suffix('/').unwrap_or(path);
    if bucket.is_empty() || bucket.contains('/') || boundary.is_empty() {
        return None;
    }
    Some((bucket.to_owned(), boundary))
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
    let Some((bucket, boundary)) = form_target(&req) else {
        return Ok((req, None));
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
        parts.extensions.insert(FormObject {
            bucket: bucket.clone(),
            key: key.clone(),
        });
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
mod tests {
    use super::*;

    const B: &str = "XyZ";

    fn form(fields: &[(&str, &str)], file: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.extend_from_slice(
                format!(
                    "--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n{file}\r\n--{B}--\r\n"
            )
            .as_bytes(),
        );
        out
    }

    fn head(fields: &[(&str, &str)]) -> FormHead {
        parse_head(&form(fields, "data"), B).unwrap().unwrap()
    }

    fn code(e: s3s::S3Error) -> String {
        e.code().as_str().to_owned()
    }

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    #[test]
    fn the_fields_before_the_file_are_read_and_partial_forms_wait_for_more() {
        let body = form(&[("key", "a"), ("Content-Type", "text/plain")], "data");
        let parsed = parse_head(&body, B).unwrap().unwrap();
        assert_eq!(parsed.fields.len(), 2);
        assert_eq!(parsed.fields[1].name, "Content-Type");
        assert_eq!(parsed.file_name.as_deref(), Some("cat.jpg"));
        assert!(body[parsed.file_part_start..].starts_with(format!("--{B}\r\n").as_bytes()));
        // Every prefix that stops before the file part's headers end needs more bytes.
        let file_headers_end = find(&body, b"image/jpeg\r\n\r\n", 0).unwrap();
        for cut in 0..file_headers_end {
            assert!(
                parse_head(&body[..cut], B).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn hostile_forms_are_refused_without_panic() {
        let no_file = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\na\r\n--{B}--\r\n"
        );
        assert_eq!(
            code(parse_head(no_file.as_bytes(), B).unwrap_err()),
            "IncorrectNumberOfFilesInPostRequest"
        );
        let no_disposition = format!("--{B}\r\nContent-Type: text/plain\r\n\r\na\r\n--{B}\r\n");
        assert_eq!(
            code(parse_head(no_disposition.as_bytes(), B).unwrap_err()),
            "MalformedPOSTRequest"
        );
        let no_name = format!("--{B}\r\nContent-Disposition: form-data\r\n\r\na\r\n--{B}\r\n");
        assert_eq!(
            code(parse_head(no_name.as_bytes(), B).unwrap_err()),
            "MalformedPOSTRequest"
        );
        let mut binary =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n").into_bytes();
        binary.extend_from_slice(&[0xff, 0xfe]);
        binary.extend_from_slice(format!("\r\n--{B}\r\n").as_bytes());
        assert_eq!(
            code(parse_head(&binary, B).unwrap_err()),
            "MalformedPOSTRequest"
        );
        for garbage in [&b""[..], b"\r\n\r\n", b"--", b"--XyZ", b"--XyZ\r\n\r\n\r\n"] {
            let _ = parse_head(garbage, B);
        }
    }

    #[test]
    fn fields_are_honoured_lifted_or_refused() {
        let mut headers = hyper::HeaderMap::new();
        let checked = check_form(
            &head(&[
                ("key", "up/${filename}"),
                ("ACL", "public-read"),
                ("x-amz-checksum-sha256", "abc="),
                ("x-amz-meta-a", "1"),
                ("x-ignore-b", "2"),
                ("tagging", "<Tagging><TagSet><Tag><Key>a b</Key><Value>c&amp;d</Value></Tag></TagSet></Tagging>"),
            ]),
            "bkt",
            &mut headers,
            now(),
        )
        .unwrap();
        assert_eq!(checked.fields["key"], "up/cat.jpg");
        assert_eq!(headers["x-amz-acl"], "public-read");
        assert_eq!(headers["x-amz-checksum-sha256"], "abc=");
        assert_eq!(headers["x-amz-tagging"], "a%20b=c%26d");
        let names: Vec<&str> = checked.passed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["key", "ACL", "x-amz-meta-a", "x-ignore-b", "tagging"]
        );
        assert_eq!(checked.passed[0].1, "up/cat.jpg");

        let refused = |fields: &[(&str, &str)], headers: &mut hyper::HeaderMap| {
            code(
                check_form(&head(fields), "bkt", headers, now())
                    .err()
                    .unwrap(),
            )
        };
        let mut none = hyper::HeaderMap::new();
        assert_eq!(
            refused(&[("key", "a"), ("submit", "Upload")], &mut none),
            "NotImplemented"
        );
        assert_eq!(
            refused(&[("key", "a"), ("x-amz-security-token", "t")], &mut none),
            "NotImplemented"
        );
        assert_eq!(
            refused(&[("key", "a"), ("KEY", "b")], &mut none),
            "InvalidArgument"
        );
        assert_eq!(
            refused(
                &[("key", "a"), ("acl", "private"), ("x-amz-acl", "private")],
                &mut none
            ),
            "InvalidArgument"
        );
        assert_eq!(
            refused(&[("key", "a"), ("tagging", "<Tagging>")], &mut none),
            "MalformedXML"
        );
        assert_eq!(
            refused(
                &[("key", "a"), ("AWSAccessKeyId", "k"), ("signature", "s")],
                &mut none
            ),
            "InvalidArgument"
        );
        assert_eq!(
            refused(&[("key", "a"), ("x-amz-credential", "c")], &mut none),
            "InvalidArgument"
        );
        assert_eq!(
            refused(&[("key", "a"), ("policy", "e30=")], &mut none),
            "InvalidArgument"
        );
        let mut sent = hyper::HeaderMap::new();
        sent.insert(
            "x-amz-acl",
            hyper::header::HeaderValue::from_static("private"),
        );
        assert_eq!(
            refused(&[("key", "a"), ("acl", "public-read")], &mut sent),
            "InvalidArgument"
        );
    }

    #[test]
    fn the_policy_is_evaluated_with_the_expanded_key() {
        use base64::Engine;
        let policy = base64::engine::general_purpose::STANDARD.encode(
            r#"{"expiration": "2099-01-01T00:00:00Z", "conditions": [{"bucket": "bkt"}, ["starts-with", "$key", "cat"], {"acl": "private"}]}"#,
        );
        let fields = |key: &'static str| {
            head(&[
                ("key", key),
                ("acl", "private"),
                ("AWSAccessKeyId", "k"),
                ("signature", "s"),
                ("policy", Box::leak(policy.clone().into_boxed_str())),
            ])
        };
        let mut headers = hyper::HeaderMap::new();
        assert!(check_form(&fields("${filename}"), "bkt", &mut headers, now()).is_ok());
        let e = check_form(&fields("dog"), "bkt", &mut hyper::HeaderMap::new(), now())
            .err()
            .unwrap();
        assert_eq!(
            (e.status_code(), code(e)),
            (Some(hyper::StatusCode::FORBIDDEN), "AccessDenied".into())
        );
        let e = check_form(&fields("cat"), "other", &mut hyper::HeaderMap::new(), now())
            .err()
            .unwrap();
        assert_eq!(code(e), "AccessDenied");
    }

    #[tokio::test]
    async fn the_rewritten_form_keeps_the_file_and_its_length() {
        let body = form(
            &[("key", "${filename}"), ("x-amz-checksum-crc32", "AAAAAA==")],
            "the file",
        );
        let req = hyper::Request::post("/bkt")
            .header("content-type", format!("multipart/form-data; boundary={B}"))
            .header("content-length", body.len())
            .body(s3s::Body::from(body))
            .unwrap();
        let (req, upload) = prepare(req).await.unwrap();
        let upload = upload.unwrap();
        assert_eq!(upload.key, "cat.jpg");
        assert_eq!(req.extensions().get::<FormObject>().unwrap().key, "cat.jpg");
        assert_eq!(req.headers()["x-amz-checksum-crc32"], "AAAAAA==");
        let length: usize = req.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(bytes.len(), length);
        assert_eq!(bytes, form(&[("key", "cat.jpg")], "the file"));

        // Not a form upload: untouched.
        let req = hyper::Request::post("/bkt?delete")
            .body(s3s::Body::from("x".to_owned()))
            .unwrap();
        assert!(prepare(req).await.unwrap().1.is_none());

        // Fields before the file beyond S3's limit.
        let big = "v".repeat(MAX_FORM_HEAD);
        let body = form(&[("x-amz-meta-big", &big)], "f");
        let req = hyper::Request::post("/bkt/")
            .header(
                "content-type",
                format!("multipart/form-data; boundary=\"{B}\""),
            )
            .body(s3s::Body::from(body))
            .unwrap();
        assert_eq!(
            code(prepare(req).await.err().unwrap()),
            "MaxPostPreDataLengthExceededError"
        );
    }

    #[test]
    fn the_redirect_carries_the_quoted_etag() {
        let upload = FormUpload {
            bucket: "bkt".into(),
            key: "a b.txt".into(),
            redirect: Some("http://example.com/done".into()),
        };
        let mut response = s3s::HttpResponse::new(s3s::Body::empty());
        *response.status_mut() = hyper::StatusCode::SEE_OTHER;
        response.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_static(
                "http://example.com/done?bucket=bkt&key=a+b.txt&etag=0123abcd",
            ),
        );
        let response = upload.finish(response);
        assert_eq!(
            response.headers()[hyper::header::LOCATION],
            "http://example.com/done?bucket=bkt&key=a%20b.txt&etag=%220123abcd%22"
        );
    }
}
