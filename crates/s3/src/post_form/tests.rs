//! Tests of the form reader: partial, malformed and hostile forms, the fields it
//! honours, lifts or refuses, the policy with the expanded key, the rewritten body.

use super::*;

const B: &str = "XyZ";

fn form(fields: &[(&str, &str)], file: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
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
    let no_file =
        format!("--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\na\r\n--{B}--\r\n");
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
            ("x-amz-object-lock-legal-hold", "ON"),
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
    // Lock fields reach the access check as headers, which asks a granted writer for the
    // lock permissions.
    assert_eq!(headers["x-amz-object-lock-legal-hold"], "ON");
    let names: Vec<&str> = checked.passed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "key",
            "ACL",
            "x-amz-meta-a",
            "x-ignore-b",
            "tagging",
            "x-amz-object-lock-legal-hold"
        ]
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
    // A metadata name must be a header name: `:acl`, `:tags`, `:mtime` and the like are
    // the gateway's own entries, which a form must not be able to write.
    for forged in ["x-amz-meta-:acl", "x-amz-meta-:mtime", "x-amz-meta-a b"] {
        assert_eq!(
            refused(&[("key", "a"), (forged, "x")], &mut none),
            "InvalidArgument",
            "{forged}"
        );
    }
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
    for redirect in ["/relative", "http://a b", "http://x\u{7}"] {
        assert_eq!(
            refused(
                &[("key", "a"), ("success_action_redirect", redirect)],
                &mut none
            ),
            "InvalidArgument",
            "{redirect}"
        );
    }
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
    // A form s3s would take as an upload is never passed on unchecked.
    for (path, expected) in [
        ("/bkt/key", "MethodNotAllowed"),
        ("/", "MethodNotAllowed"),
        ("//bkt", "MethodNotAllowed"),
        ("/b%6bt", "InvalidBucketName"),
    ] {
        let req = hyper::Request::post(path)
            .header("content-type", format!("multipart/form-data; boundary={B}"))
            .body(s3s::Body::from(form(&[("key", "a")], "f")))
            .unwrap();
        assert_eq!(code(prepare(req).await.err().unwrap()), expected, "{path}");
    }
    let req = hyper::Request::post("/bkt?x=y")
        .header("content-type", "multipart/form-data")
        .body(s3s::Body::from(form(&[("key", "a")], "f")))
        .unwrap();
    assert_eq!(
        code(prepare(req).await.err().unwrap()),
        "MalformedPOSTRequest"
    );
    let req = hyper::Request::post("/bkt?x=y")
        .header("content-type", format!("multipart/form-data; boundary={B}"))
        .body(s3s::Body::from(form(
            &[("key", "a"), ("submit", "go")],
            "f",
        )))
        .unwrap();
    assert_eq!(code(prepare(req).await.err().unwrap()), "NotImplemented");

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
