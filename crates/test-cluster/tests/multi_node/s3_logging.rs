//! S3 server access logging end to end: requests served over HTTP by one node's gateway
//! become records in a log object of the target bucket, written as the owner's object.

use std::time::Duration;

use s3s::S3;
use s3s::dto::*;
use xnode_test_cluster::{Cluster, Tenant};

const KEY_ID: &str = "XNODELOGGING00001";

fn request<T>(input: T) -> s3s::S3Request<T> {
    s3s::S3Request {
        input,
        method: hyper::Method::PUT,
        uri: hyper::Uri::from_static("/"),
        headers: hyper::HeaderMap::new(),
        extensions: Default::default(),
        credentials: Some(s3s::auth::Credentials {
            access_key: KEY_ID.into(),
            secret_key: "s".repeat(40).into(),
        }),
        region: None,
        service: None,
        trailing_headers: None,
    }
}

fn logging(bucket: &str, target: &str) -> PutBucketLoggingInput {
    PutBucketLoggingInput::builder()
        .bucket(bucket.into())
        .bucket_logging_status(BucketLoggingStatus {
            logging_enabled: Some(LoggingEnabled {
                target_bucket: target.into(),
                target_grants: None,
                target_object_key_format: None,
                target_prefix: "access/".into(),
            }),
        })
        .build()
        .unwrap()
}

/// A bucket logging into another bucket of its owner gets one log object holding a
/// record, in S3's format, of each request the edge served (an anonymous PUT and GET
/// of a public-read-write bucket); a target bucket of another tenant is refused, as is
/// one whose policy does not let the logging service write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logged_bucket_gets_records_of_its_requests_and_a_strangers_target_is_refused() {
    let c = Cluster::start(3).await;
    let owner = Tenant::new();
    let stranger = Tenant::new();
    c.create_bucket(0, &owner, "site").await;
    c.create_bucket(0, &owner, "site-logs").await;
    c.create_bucket(0, &stranger, "foreign-logs").await;
    let keys = xnode_s3::S3Keys::new(c.node(0).db().clone());
    keys.create_registered(
        owner.id(),
        owner.data_key(),
        Some(owner.key.seed()),
        Some((KEY_ID.into(), "s".repeat(40))),
        Some(owner.request_proof(&c.id(0), "POST", "/v1/s3/keys")),
    )
    .unwrap();
    let edge = xnode_s3::Gateway::new(c.node(0).storage().clone(), keys);

    // A target bucket of another tenant is refused whatever its policy says.
    let refused = edge
        .put_bucket_logging(request(logging("site", "foreign-logs")))
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_str(), "InvalidTargetBucketForLogging");
    // The owner's own bucket, until its policy lets the logging service write.
    let refused = edge
        .put_bucket_logging(request(logging("site", "site-logs")))
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_str(), "AccessDenied");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::site-logs/access/*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::site"},
                "StringEquals": {"aws:SourceAccount": owner.id().to_hex()}
            }
        }]
    });
    edge.put_bucket_policy(request(
        PutBucketPolicyInput::builder()
            .bucket("site-logs".into())
            .policy(policy.to_string())
            .build()
            .unwrap(),
    ))
    .await
    .unwrap();
    edge.put_bucket_logging(request(logging("site", "site-logs")))
        .await
        .unwrap();
    let configured = edge
        .get_bucket_logging(request(
            GetBucketLoggingInput::builder()
                .bucket("site".into())
                .build()
                .unwrap(),
        ))
        .await
        .unwrap()
        .output
        .logging_enabled
        .unwrap();
    assert_eq!(
        (
            configured.target_bucket.as_str(),
            configured.target_prefix.as_str()
        ),
        ("site-logs", "access/")
    );
    let mut acl = request(
        PutBucketAclInput::builder()
            .bucket("site".into())
            .build()
            .unwrap(),
    );
    acl.headers.insert(
        "x-amz-acl",
        hyper::header::HeaderValue::from_static("public-read-write"),
    );
    edge.put_bucket_acl(acl).await.unwrap();

    // Unsigned requests through node 0's HTTP front, which takes the records.
    let node = c.node(0);
    let gateway = node.with_metrics_registry(|metrics| {
        xnode_s3::S3Gateway::new(
            node.storage().clone(),
            node.db().clone(),
            node.tenant_rate_limit().clone(),
            metrics,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(xnode_s3::serve(
        listener,
        gateway.clone(),
        xnode_serve::HttpLimits::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{url}/site/photo.jpg"))
        .header("x-amz-acl", "public-read")
        .body("pixels")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200, "{:?}", put.text().await);
    let got = http
        .get(format!("{url}/site/photo.jpg"))
        .header("user-agent", "logging-test [1]")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    let get_request_id = got
        .headers()
        .get("x-amz-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "pixels");
    assert_eq!(gateway.flush_access_log().await, 1, "one log object");

    let listed = edge
        .list_objects_v2(request(
            ListObjectsV2Input::builder()
                .bucket("site-logs".into())
                .build()
                .unwrap(),
        ))
        .await
        .unwrap()
        .output
        .contents
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let name = listed[0].key.clone().unwrap();
    // access/YYYY-mm-DD-HH-MM-SS-UniqueString
    let stamp = name.strip_prefix("access/").unwrap();
    assert_eq!(stamp.len(), 19 + 1 + 16, "{name}");
    assert!(
        stamp[..19].bytes().all(|b| b.is_ascii_digit() || b == b'-'),
        "{name}"
    );
    let object = edge
        .get_object(request(
            GetObjectInput::builder()
                .bucket("site-logs".into())
                .key(name.clone())
                .build()
                .unwrap(),
        ))
        .await
        .unwrap();
    let mut body = Vec::new();
    let mut stream = object.output.body.unwrap();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let owner_hex = owner.id().to_hex();
    let put_line = lines[0];
    assert!(
        put_line.starts_with(&format!("{owner_hex} site [")),
        "{put_line}"
    );
    assert!(
        put_line.contains(" REST.PUT.OBJECT photo.jpg \"PUT /site/photo.jpg HTTP/1.1\" 200 - "),
        "{put_line}"
    );
    let get_line = lines[1];
    assert!(
        get_line.contains(&format!(
            " {get_request_id} REST.GET.OBJECT photo.jpg \"GET /site/photo.jpg HTTP/1.1\" 200 - 6 6 "
        )),
        "{get_line}"
    );
    // The client's user agent is kept, its brackets escaped so fields stay apart;
    // unsigned requests have no signature version and auth type.
    assert!(
        get_line.contains("\"logging-test %5B1%5D\" - - - - -"),
        "{get_line}"
    );
    // Granted by the objects' and bucket's ACLs, not by a policy.
    assert!(
        put_line.ends_with(" Yes") && get_line.ends_with(" Yes"),
        "{text}"
    );
    // The delivery itself is not logged: nothing is left to deliver.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gateway.flush_access_log().await, 0);
}
