//! What every S3 request and response goes through around s3s: a request id on every
//! response and error, S3's limits on presigned URL lifetimes, bodies sent without a
//! length, and the path SigV2 signs for a bucket. Each fills a gap between what s3s does
//! and what S3 clients expect.

use s3s::{S3Result, s3_error};

/// The largest body sent without a length (`Transfer-Encoding: chunked`) that is read
/// into memory to learn it.
const MAX_UNSIZED_BODY: usize = 16 * 1024 * 1024;

/// s3s must know a signed payload's length before it reads it, but HTTP clients may send
/// a body `Transfer-Encoding: chunked` without `Content-Length`, which S3 accepts. Such a
/// body, when small, is read first (then its length is known); a larger one still gets
/// `411 MissingContentLength`. aws-chunked uploads carry their decoded length and pass.
pub(crate) async fn with_known_length(
    req: hyper::Request<xnode_serve::TimedBody<hyper::body::Incoming>>,
) -> S3Result<hyper::Request<s3s::Body>> {
    use http_body_util::BodyExt;
    let headers = req.headers();
    let chunked = headers
        .get(hyper::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked
        || headers.contains_key(hyper::header::CONTENT_LENGTH)
        || headers.contains_key("x-amz-decoded-content-length")
    {
        return Ok(req.map(s3s::Body::http_body_unsync));
    }
    let (parts, body) = req.into_parts();
    let collected = http_body_util::Limited::new(body, MAX_UNSIZED_BODY)
        .collect()
        .await
        .map_err(|_| {
            s3_error!(
                MissingContentLength,
                "a body sent without Content-Length may hold at most {MAX_UNSIZED_BODY} bytes"
            )
        })?;
    Ok(hyper::Request::from_parts(
        parts,
        s3s::Body::from(collected.to_bytes()),
    ))
}

/// SigV2 (`Authorization: AWS id:signature`, or a presigned URL with `AWSAccessKeyId` and
/// `Signature`) signs a path-style request to a bucket with the bucket's name followed by
/// a slash (`/bucket/`), as S3 canonicalizes it and botocore signs it, while clients send
/// the path without the slash (`PUT /bucket?cors`). s3s signs the path as it is sent, so
/// every bucket-level SigV2 request failed with `SignatureDoesNotMatch` while object
/// requests verified. Such a path gets its slash before s3s sees it; s3s routes `/bucket/`
/// to the bucket as it routes `/bucket`, and SigV4 requests, which sign the path as sent,
/// are left as they are.
pub(crate) fn sigv2_bucket_path<B>(req: &mut hyper::Request<B>) {
    let header_v2 = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    let query = req.uri().query().unwrap_or_default();
    let presigned_v2 = query.split('&').any(|p| p.starts_with("AWSAccessKeyId="))
        && query.split('&').any(|p| p.starts_with("Signature="));
    if !header_v2 && !presigned_v2 {
        return;
    }
    let path = req.uri().path();
    let Some(bucket) = path.strip_prefix('/') else {
        return;
    };
    if bucket.is_empty() || bucket.contains('/') {
        return;
    }
    let with_slash = match req.uri().query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    let Ok(path_and_query) = hyper::http::uri::PathAndQuery::try_from(with_slash) else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = hyper::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// The longest a presigned URL may live: S3 refuses `X-Amz-Expires` above 7 days.
const MAX_PRESIGNED_SECS: i64 = 7 * 24 * 3600;

/// S3 answers `403 AccessDenied` to a presigned URL whose lifetime is negative or longer
/// than 7 days (s3s would accept the long one and answer `400` to the negative one).
pub(crate) fn presigned_lifetime(query: Option<&str>) -> S3Result<()> {
    let Some(value) =
        query.and_then(|q| q.split('&').find_map(|p| p.strip_prefix("X-Amz-Expires=")))
    else {
        return Ok(());
    };
    match value.parse::<i64>() {
        Ok(secs) if (0..=MAX_PRESIGNED_SECS).contains(&secs) => Ok(()),
        Ok(secs) if secs > MAX_PRESIGNED_SECS => Err(s3_error!(
            AccessDenied,
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
        )),
        _ => Err(s3_error!(AccessDenied, "Request has expired")),
    }
}

/// A request id as AWS's look (16 upper-case hex digits), unique enough to find a request
/// in the logs, where the `s3` span records it.
pub(crate) fn new_request_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode_upper(bytes)
}

/// Whether the client asked to wait for `100 Continue` before sending its body.
pub(crate) fn expects_continue(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// A request with `Expect: 100-continue` that is refused (any status from 300) may be
/// answered before its body was asked for, so the client may never send that body: botocore
/// does not, and reuses the connection. The server cannot tell which bytes come next, and
/// reading the announced body length from the connection would eat the start of the next
/// request (seen as a `DELETE` arriving as `ELETE` and failing its signature). Closing the
/// connection after such an answer is what RFC 9110 leaves the server (section 10.1.1).
pub(crate) fn close_after_early_answer(mut response: s3s::HttpResponse) -> s3s::HttpResponse {
    if response.status().as_u16() >= 300 {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Every response carries `x-amz-request-id` (and `x-amz-id-2`, which SDKs log beside
/// it), and every error body its `<RequestId>`, the same value: clients report it, and
/// the suite checks they match. s3s serializes errors itself (including its own, such as
/// signature failures), so the id is added to the finished response.
pub(crate) fn with_request_id(mut response: s3s::HttpResponse, id: &str) -> s3s::HttpResponse {
    if let Ok(value) = hyper::header::HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert("x-amz-request-id", value.clone());
        response.headers_mut().insert("x-amz-id-2", value);
    }
    if response.status().as_u16() >= 300
        && let Some(bytes) = response.body().bytes()
        && let Some(patched) = add_request_id(&bytes, id)
    {
        let len = patched.len();
        *response.body_mut() = s3s::Body::from(patched);
        if let Ok(value) = hyper::header::HeaderValue::from_str(&len.to_string()) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, value);
        }
    }
    response
}

/// GetObjectAttributes gives the ETag without quotes (unlike every other S3 answer),
/// which s3s always adds.
pub(crate) fn unquoted_etag(mut response: s3s::HttpResponse) -> s3s::HttpResponse {
    if response.status().is_success()
        && let Some(bytes) = response.body().bytes()
        && let Ok(text) = std::str::from_utf8(&bytes)
        && text.contains("<ETag>\"")
    {
        let fixed = text
            .replace("<ETag>\"", "<ETag>")
            .replace("\"</ETag>", "</ETag>");
        let len = fixed.len();
        *response.body_mut() = s3s::Body::from(fixed);
        if let Ok(value) = hyper::header::HeaderValue::from_str(&len.to_string()) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, value);
        }
    }
    response
}

/// An S3 error document with `<RequestId>` added before `</Error>`, unless it has one.
fn add_request_id(body: &[u8], id: &str) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    if text.contains("<RequestId>") {
        return None;
    }
    let at = text.rfind("</Error>")?;
    Some(bytes::Bytes::from(format!(
        "{}<RequestId>{id}</RequestId>{}",
        &text[..at],
        &text[at..]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_that_awaited_continue_closes_its_connection() {
        let mut headers = hyper::HeaderMap::new();
        assert!(!expects_continue(&headers));
        headers.insert(
            hyper::header::EXPECT,
            hyper::header::HeaderValue::from_static("100-Continue"),
        );
        assert!(expects_continue(&headers));
        let answer = |status: u16| {
            let mut response = s3s::HttpResponse::new(s3s::Body::empty());
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            close_after_early_answer(response)
                .headers()
                .get(hyper::header::CONNECTION)
                .cloned()
        };
        assert_eq!(
            answer(403).as_ref().map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        assert_eq!(
            answer(404).as_ref().map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        assert_eq!(answer(200), None);
    }

    #[test]
    fn presigned_lifetimes_are_capped_at_a_week() {
        assert!(presigned_lifetime(None).is_ok());
        assert!(presigned_lifetime(Some("X-Amz-Expires=3600&X-Amz-Date=x")).is_ok());
        assert!(presigned_lifetime(Some("a=b&X-Amz-Expires=604800")).is_ok());
        for q in [
            "X-Amz-Expires=604801",
            "X-Amz-Expires=-7",
            "X-Amz-Expires=x",
        ] {
            let e = presigned_lifetime(Some(q)).unwrap_err();
            assert_eq!(e.code().as_str(), "AccessDenied", "{q}");
        }
    }

    fn path_after(auth: Option<&str>, uri: &str) -> String {
        let mut builder = hyper::Request::builder().uri(uri);
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        let mut req = builder.body(()).unwrap();
        sigv2_bucket_path(&mut req);
        req.uri().to_string()
    }

    #[test]
    fn sigv2_bucket_requests_get_the_slash_they_were_signed_with() {
        let v2 = Some("AWS XNKEY:c2lnbmF0dXJl");
        assert_eq!(path_after(v2, "/bucket"), "/bucket/");
        assert_eq!(path_after(v2, "/bucket?cors"), "/bucket/?cors");
        assert_eq!(
            path_after(None, "/bucket?AWSAccessKeyId=XN&Expires=1&Signature=x"),
            "/bucket/?AWSAccessKeyId=XN&Expires=1&Signature=x"
        );
        // Objects, the service, bucket paths that have their slash, and SigV4 are left alone.
        assert_eq!(path_after(v2, "/bucket/key"), "/bucket/key");
        assert_eq!(path_after(v2, "/bucket/"), "/bucket/");
        assert_eq!(path_after(v2, "/"), "/");
        let v4 = Some("AWS4-HMAC-SHA256 Credential=XN/20261127/us-east-1/s3/aws4_request");
        assert_eq!(path_after(v4, "/bucket?cors"), "/bucket?cors");
        assert_eq!(
            path_after(None, "/bucket?Signature=x"),
            "/bucket?Signature=x"
        );
    }

    #[test]
    fn error_bodies_get_the_request_id() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let patched = add_request_id(body, "ABC").unwrap();
        assert_eq!(
            &patched[..],
            &b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>ABC</RequestId></Error>"[..]
        );
        assert!(add_request_id(&patched, "DEF").is_none());
        assert!(add_request_id(b"<ListBucketResult/>", "X").is_none());
    }
}
