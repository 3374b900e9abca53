//! The storage API over HTTP: signed requests, streaming bodies, ranges and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::NodeId;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// The node at `base`, which signed requests name.
    node: NodeId,
}

impl Client {
    fn signed(
        &self,
        tenant: &Tenant,
        method: Method,
        path: &str,
        query: &str,
    ) -> reqwest::RequestBuilder {
        self.signed_at(tenant, method, path, query, now_ms(), &nonce())
    }

    /// A signed request carrying `body` (whose hash it signs).
    fn signed_with(
        &self,
        tenant: &Tenant,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        self.build(tenant, method, path, "", &body, now_ms(), &nonce())
            .body(body)
    }

    /// A signed request carrying `value` as JSON.
    fn signed_json(
        &self,
        tenant: &Tenant,
        method: Method,
        path: &str,
        value: &Value,
    ) -> reqwest::RequestBuilder {
        self.signed_with(tenant, method, path, serde_json::to_vec(value).unwrap())
            .header("content-type", "application/json")
    }

    fn signed_at(
        &self,
        tenant: &Tenant,
        method: Method,
        path: &str,
        query: &str,
        ts: u64,
        nonce: &str,
    ) -> reqwest::RequestBuilder {
        self.build(tenant, method, path, query, b"", ts, nonce)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        tenant: &Tenant,
        method: Method,
        path: &str,
        query: &str,
        body: &[u8],
        ts: u64,
        nonce: &str,
    ) -> reqwest::RequestBuilder {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut b = self.http.request(method.clone(), url);
        for (k, v) in tenant.signed_headers_at(
            &self.node,
            method.as_str(),
            path,
            query,
            body,
            true,
            ts,
            nonce,
        ) {
            b = b.header(k, v);
        }
        b
    }
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn create_bucket(c: &Client, tenant: &Tenant, name: &str) -> reqwest::Response {
    let claim = tenant.bucket_claim(name);
    let body = serde_json::json!({
        "record": String::from_utf8(claim.value.clone().unwrap()).unwrap(),
        "hlc_wall_ms": claim.hlc.wall_ms,
        "hlc_logical": claim.hlc.logical,
        "signature": hex_sig(&claim.signature.0),
    });
    c.signed_json(tenant, Method::PUT, &format!("/v1/buckets/{name}"), &body)
        .send()
        .await
        .unwrap()
}

fn hex_sig(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_api_round_trip_and_errors() {
    let cluster = Cluster::start_with(3, |c| c.storage.chunk_size = 64 * 1024).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: cluster.api_url(0).to_owned(),
        node: cluster.id(0),
    };
    let other = Client {
        http: reqwest::Client::new(),
        base: cluster.api_url(2).to_owned(),
        node: cluster.id(2),
    };
    let tenant = Tenant::new();

    // Create a bucket; list it; it reaches the other nodes.
    assert_eq!(
        create_bucket(&c, &tenant, "docs").await.status(),
        StatusCode::OK
    );
    let list: Value = c
        .signed(&tenant, Method::GET, "/v1/buckets", "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "docs");
    cluster
        .wait_until(
            "the bucket to spread",
            std::time::Duration::from_secs(5),
            |cl| xnode_storage::buckets::owner_of(cl.node(2).registry(), "docs").is_some(),
        )
        .await;

    // Put with metadata, read back through another node, in full and by range.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .signed_with(
            &tenant,
            Method::PUT,
            "/v1/buckets/docs/objects/a/b%20c.bin",
            body.clone(),
        )
        .header("content-type", "application/x-test")
        .header("x-xnode-meta-color", "blue")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["key"], "a/b c.bin");
    assert_eq!(stored["size"], 200_000);
    let r = other
        .signed(
            &tenant,
            Method::GET,
            "/v1/buckets/docs/objects/a/b%20c.bin",
            "",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert_eq!(r.headers()["x-xnode-meta-color"], "blue");
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", stored["etag"].as_str().unwrap())
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let r = other
        .signed(
            &tenant,
            Method::GET,
            "/v1/buckets/docs/objects/a/b%20c.bin",
            "",
        )
        .header("range", "bytes=70000-70009")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 70000-70009/200000");
    assert_eq!(r.bytes().await.unwrap().to_vec(), &body[70_000..70_010]);
    let r = other
        .signed(
            &tenant,
            Method::GET,
            "/v1/buckets/docs/objects/a/b%20c.bin",
            "",
        )
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), &body[199_995..]);
    let r = c
        .signed(
            &tenant,
            Method::HEAD,
            "/v1/buckets/docs/objects/a/b%20c.bin",
            "",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-length"], "200000");

    // Listing with prefix and start_after.
    for k in ["a/x", "a/y", "b/z"] {
        let r = c
            .signed_with(
                &tenant,
                Method::PUT,
                &format!("/v1/buckets/docs/objects/{k}"),
                b"x".to_vec(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let list: Value = c
        .signed(
            &tenant,
            Method::GET,
            "/v1/buckets/docs/objects",
            "prefix=a/&start_after=a/x",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a/y"]);

    // Errors, each with a clear status and code.
    let bad_range = c
        .signed(&tenant, Method::GET, "/v1/buckets/docs/objects/a/x", "")
        .header("range", "bytes=9-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(bad_range).await,
        (StatusCode::RANGE_NOT_SATISFIABLE, "invalid_range".into())
    );
    let past_end = c
        .signed(&tenant, Method::GET, "/v1/buckets/docs/objects/a/x", "")
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(past_end).await,
        (StatusCode::RANGE_NOT_SATISFIABLE, "invalid_range".into())
    );
    let unknown = c
        .signed(&tenant, Method::GET, "/v1/buckets/nope/objects/x", "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(unknown).await,
        (StatusCode::NOT_FOUND, "no_such_bucket".into())
    );
    let missing = c
        .signed(&tenant, Method::GET, "/v1/buckets/docs/objects/missing", "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(missing).await,
        (StatusCode::NOT_FOUND, "no_such_key".into())
    );
    let unsigned = c
        .http
        .get(format!("{}/v1/buckets", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(unsigned).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
    // A signature for another path does not verify.
    let mut forged = c
        .http
        .get(format!("{}/v1/buckets/docs/objects/a/x", c.base));
    for (k, v) in tenant.signed_headers(
        &c.node,
        "GET",
        "/v1/buckets/docs/objects/a/y",
        "",
        b"",
        true,
    ) {
        forged = forged.header(k, v);
    }
    assert_eq!(
        code(forged.send().await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "bad_signature".into())
    );
    // Stale and replayed requests are refused.
    let stale = c
        .signed_at(
            &tenant,
            Method::GET,
            "/v1/buckets",
            "",
            now_ms() - 3_600_000,
            &nonce(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(stale).await,
        (StatusCode::UNAUTHORIZED, "stale_request".into())
    );
    let n = nonce();
    let ts = now_ms();
    assert_eq!(
        c.signed_at(&tenant, Method::GET, "/v1/buckets", "", ts, &n)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let replay = c
        .signed_at(&tenant, Method::GET, "/v1/buckets", "", ts, &n)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(replay).await,
        (StatusCode::UNAUTHORIZED, "replayed_request".into())
    );
    // Another tenant is refused with 403.
    let mallory = Tenant::new();
    let denied = c
        .signed(&mallory, Method::GET, "/v1/buckets/docs/objects/a/x", "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(denied).await,
        (StatusCode::FORBIDDEN, "access_denied".into())
    );
    assert_eq!(
        code(create_bucket(&c, &mallory, "docs").await).await,
        (StatusCode::CONFLICT, "bucket_taken".into())
    );
    // No data key: a clear 400.
    let mut no_key = c
        .http
        .get(format!("{}/v1/buckets/docs/objects/a/x", c.base));
    for (k, v) in tenant.signed_headers(
        &c.node,
        "GET",
        "/v1/buckets/docs/objects/a/x",
        "",
        b"",
        false,
    ) {
        no_key = no_key.header(k, v);
    }
    assert_eq!(
        code(no_key.send().await.unwrap()).await.0,
        StatusCode::BAD_REQUEST
    );

    // A truncated upload (the client declares more than it sends, then hangs up).
    let addr = c.base.trim_start_matches("http://").to_owned();
    let path = "/v1/buckets/docs/objects/truncated";
    let mut raw = format!("PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 100000\r\n");
    // The body that is signed is the full one, so only the truncation is wrong.
    for (k, v) in tenant.signed_headers(&c.node, "PUT", path, "", &[7u8; 100_000], true) {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        s.write_all(&[7u8; 30_000]).await.unwrap();
        s.shutdown().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let gone = c
        .signed(&tenant, Method::HEAD, path, "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.status(),
        StatusCode::NOT_FOUND,
        "a truncated upload leaves no object"
    );

    // Deleting: objects, then the bucket; a non-empty bucket is refused.
    let del = c
        .signed(&tenant, Method::DELETE, "/v1/buckets/docs/objects/a/x", "")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let tomb = xnode_registry::Entry::sign(
        &tenant.key,
        xnode_storage::buckets::bucket_key(&tenant.id(), "docs"),
        None,
        xnode_types::Hlc::new(now_ms(), 1),
    )
    .unwrap();
    let body = serde_json::json!({"hlc_wall_ms": tomb.hlc.wall_ms, "hlc_logical": tomb.hlc.logical, "signature": hex_sig(&tomb.signature.0)});
    let r = c
        .signed_json(&tenant, Method::DELETE, "/v1/buckets/docs", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::CONFLICT, "bucket_not_empty".into())
    );

    // Health is public.
    let h: Value = c
        .http
        .get(format!("{}/v1/storage/health", c.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(h["chunks_stored"].as_u64().unwrap() > 0);
    assert_eq!(h["replication_factor"], 3);
    cluster.shutdown().await;
}
