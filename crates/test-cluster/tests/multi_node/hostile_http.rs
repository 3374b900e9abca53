//! A node's API port against hostile clients: connections held open (security review
//! finding 17), the limits of `[http]` on the real API, `/fn/` refusing an unknown function
//! before it reads a body, signed requests replayed to another node or with another body
//! (finding 18), foreign `Host` names (L3, DNS rebinding), request floods from one
//! address, and TLS on the API and S3 ports (a plain request to a TLS port is refused).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xnode_test_cluster::{Cluster, Tenant};

fn host_port(api_url: &str) -> String {
    api_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Reads until the server closes the connection or `within` passes.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                // A complete error answer is enough; the server may keep the connection.
                let text = String::from_utf8_lossy(&got);
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    return Some(text.into_owned());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_refuses_connections_over_the_per_address_limit_and_cuts_slow_headers() {
    let cluster = Cluster::start_with(1, |c| {
        c.http.max_connections_per_ip = 8;
        c.http.header_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = host_port(cluster.api_url(0));
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // Half a request: the slowloris way of holding a connection.
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let refused = read_until_closed(&mut extra, Duration::from_secs(20))
        .await
        .expect("the ninth connection is answered at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");

    // The half-sent requests are cut after the header timeout, and their places return.
    for s in &mut held {
        assert!(
            read_until_closed(s, Duration::from_secs(30))
                .await
                .is_some(),
            "a half-sent request is still held"
        );
    }
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .get(format!("{}/healthz", cluster.api_url(0)))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the API did not serve again: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_function_is_refused_before_its_body_is_read() {
    let cluster = Cluster::start(1).await;
    let addr = host_port(cluster.api_url(0));
    let mut s = TcpStream::connect(&addr).await.unwrap();
    // Announces 10 MB and sends none of it: the node must not wait for (or buffer) a
    // body for a function that does not exist.
    s.write_all(
        format!(
            "POST /fn/no-such-function/x HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 10000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(20))
        .await
        .expect("an answer without the body");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("no_such_deployment"), "{answer}");
    cluster.shutdown().await;
}

/// Sends `body` with exactly `headers` (a captured request, or a forged one) to `base`.
async fn send_with(
    base: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// The access key ids `tenant` has on node `i`, asked with a fresh signed request.
async fn s3_keys_on(cluster: &Cluster, i: usize, tenant: &Tenant) -> Vec<String> {
    let headers = tenant.signed_headers(&cluster.id(i), "GET", "/v1/s3/keys", "", b"", false);
    let mut request = reqwest::Client::new().get(format!("{}/v1/s3/keys", cluster.api_url(i)));
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let keys: Vec<Value> = response.json().await.unwrap();
    keys.iter()
        .map(|k| k["access_key_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_captured_signed_request_cannot_be_replayed_to_another_node_or_with_another_body() {
    let cluster = Cluster::start(2).await;
    let victim = Tenant::new();
    let (a, b) = (cluster.api_url(0).to_owned(), cluster.api_url(1).to_owned());

    // The victim registers an S3 key on its edge, node A; the attacker captures it.
    let genuine = serde_json::to_vec(&json!({
        "access_key_id": "AKIAVICTIM0000000001",
        "secret_access_key": "victim-secret-victim-secret-0001",
    }))
    .unwrap();
    let captured = victim.signed_headers(&cluster.id(0), "POST", "/v1/s3/keys", "", &genuine, true);
    assert_eq!(
        send_with(&a, reqwest::Method::POST, "/v1/s3/keys", &captured, genuine).await,
        (StatusCode::CREATED, String::new())
    );

    // Finding 18: the same headers to node B, with a body naming the attacker's key and
    // secret. B must refuse (the request names A), and hold no credential afterwards.
    let attacker = serde_json::to_vec(&json!({
        "access_key_id": "AKIAATTACKER00000001",
        "secret_access_key": "attacker-chosen-secret-000000001",
    }))
    .unwrap();
    assert_eq!(
        send_with(
            &b,
            reqwest::Method::POST,
            "/v1/s3/keys",
            &captured,
            attacker.clone()
        )
        .await,
        (StatusCode::FORBIDDEN, "wrong_node".to_owned())
    );
    assert!(s3_keys_on(&cluster, 1, &victim).await.is_empty());

    // A request signed for A with one body, sent to A with another, is refused before it
    // acts; so is the captured one replayed to A (its nonce is spent).
    let signed_for_other_body =
        victim.signed_headers(&cluster.id(0), "POST", "/v1/s3/keys", "", b"{}", true);
    assert_eq!(
        send_with(
            &a,
            reqwest::Method::POST,
            "/v1/s3/keys",
            &signed_for_other_body,
            attacker.clone()
        )
        .await,
        (StatusCode::BAD_REQUEST, "body_hash_mismatch".to_owned())
    );
    assert_eq!(
        send_with(
            &a,
            reqwest::Method::POST,
            "/v1/s3/keys",
            &captured,
            attacker
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s3_keys_on(&cluster, 0, &victim).await,
        vec!["AKIAVICTIM0000000001".to_owned()]
    );

    // The data key is bound too: the captured headers with another data key do not verify.
    let mut swapped_key =
        victim.signed_headers(&cluster.id(0), "GET", "/v1/s3/keys", "", b"", true);
    for (name, value) in &mut swapped_key {
        if *name == "x-xnode-data-key" {
            *value = "00".repeat(32);
        }
    }
    assert_eq!(
        send_with(
            &a,
            reqwest::Method::GET,
            "/v1/s3/keys",
            &swapped_key,
            Vec::new()
        )
        .await,
        (StatusCode::UNAUTHORIZED, "bad_signature".to_owned())
    );

    // A client still signing v1 (no node, no body hash) is told to upgrade.
    let v1: Vec<_> = victim
        .signed_headers(&cluster.id(0), "GET", "/v1/s3/keys", "", b"", false)
        .into_iter()
        .filter(|(name, _)| *name != "x-xnode-node" && *name != "x-xnode-content-blake3")
        .collect();
    assert_eq!(
        send_with(&a, reqwest::Method::GET, "/v1/s3/keys", &v1, Vec::new()).await,
        (StatusCode::UNAUTHORIZED, "signing_v2_required".to_owned())
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_upload_whose_body_differs_from_its_signature_is_not_committed() {
    let cluster = Cluster::start_with(3, |c| c.storage.chunk_size = 64 * 1024).await;
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "docs").await;
    let base = cluster.api_url(0).to_owned();
    let node = cluster.id(0);
    let put = |path: &str, signed_body: &[u8], sent_body: Vec<u8>| {
        let headers = tenant.signed_headers(&node, "PUT", path, "", signed_body, true);
        let base = base.clone();
        let path = path.to_owned();
        async move { send_with(&base, reqwest::Method::PUT, &path, &headers, sent_body).await }
    };
    let get = |path: &str| {
        let headers = tenant.signed_headers(&node, "GET", path, "", b"", true);
        let url = format!("{base}{path}");
        async move {
            let mut request = reqwest::Client::new().get(url);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let response = request.send().await.unwrap();
            (response.status(), response.bytes().await.unwrap().to_vec())
        }
    };

    // A first version, stored as signed.
    let first: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let path = "/v1/buckets/docs/objects/report.bin";
    assert_eq!(put(path, &first, first.clone()).await.0, StatusCode::OK);

    // A replacement whose bytes differ from the signed ones in its last chunk (several
    // chunks are stored before the difference shows): refused, and not committed.
    let signed: Vec<u8> = first.iter().map(|b| b.wrapping_add(1)).collect();
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    assert_eq!(
        put(path, &signed, tampered.clone()).await,
        (StatusCode::BAD_REQUEST, "body_hash_mismatch".to_owned())
    );
    assert_eq!(get(path).await, (StatusCode::OK, first.clone()));

    // A new object whose body differs from its signature does not exist afterwards.
    let fresh = "/v1/buckets/docs/objects/fresh.bin";
    assert_eq!(
        put(fresh, &signed, tampered).await,
        (StatusCode::BAD_REQUEST, "body_hash_mismatch".to_owned())
    );
    assert_eq!(get(fresh).await.0, StatusCode::NOT_FOUND);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_naming_a_foreign_host_is_refused() {
    let cluster = Cluster::start(1).await;
    let addr = host_port(cluster.api_url(0));
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let ask = |host: String| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(
                format!("GET /v1/node HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    // A DNS-rebinding page's requests carry its own host name.
    let rebound = ask(format!("rebind.attacker.example:{port}")).await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("misdirected_host"), "{rebound}");
    for own in [addr.clone(), format!("localhost:{port}")] {
        let answer = ask(own.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{own}: {answer}");
    }
    cluster.shutdown().await;
}

/// Sends requests until one is refused `429 rate_limited`, each before it answered `200`
/// (30 at most: far more than the bursts the tests allow), checks the refusal's code and
/// `Retry-After`, and returns the seconds it says to wait.
async fn first_rate_limit<F, Fut>(mut send: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    for _ in 0..30 {
        let r = send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=5).contains(&retry_after), "{retry_after}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            return retry_after;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    panic!("30 requests in a row were not rate limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_the_rate_limit_is_refused_with_retry_after_then_served_again() {
    // One request a second with a burst of 3: a loop of 30 requests outruns it however
    // slowly a loaded machine sends them (it would need 27 s).
    let cluster = Cluster::start_with(1, |c| {
        c.http.requests_per_second_per_ip = 1;
        c.http.burst = 3;
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/healthz", cluster.api_url(0));
    let retry_after = first_rate_limit(|| client.get(&url).send()).await;
    // After the wait it says, the address is served again.
    tokio::time::sleep(Duration::from_secs(retry_after + 1)).await;
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_allowance_is_refused_while_others_are_served() {
    // Per address the limits are as loose as the defaults; per tenant, one request a
    // second with a burst of 3. 30 signed requests outrun it however slowly they are sent.
    let cluster = Cluster::start_with(1, |c| {
        c.http.requests_per_second_per_tenant = 1;
        c.http.tenant_burst = 3;
    })
    .await;
    let client = reqwest::Client::new();
    let node = cluster.id(0);
    let url = format!("{}/v1/s3/keys", cluster.api_url(0));
    let send = |tenant: &Tenant| {
        let mut request = client.get(&url);
        for (name, value) in tenant.signed_headers(&node, "GET", "/v1/s3/keys", "", b"", false) {
            request = request.header(name, value);
        }
        request.send()
    };
    let greedy = Tenant::new();
    let retry_after = first_rate_limit(|| send(&greedy)).await;

    // Another tenant, from the same address, is served at once.
    let other = Tenant::new();
    assert_eq!(send(&other).await.unwrap().status(), StatusCode::OK);

    // Requests whose signature does not verify take nothing from the tenant they name:
    // with the greedy tenant's allowance refilled, a flood of forgeries in its name leaves
    // its next real request served.
    tokio::time::sleep(Duration::from_secs(retry_after + 3)).await;
    let victim_headers = greedy.signed_headers(&node, "GET", "/v1/s3/keys", "", b"", false);
    for _ in 0..10 {
        let mut forged = client.get(&url);
        for (name, value) in other.signed_headers(&node, "GET", "/v1/s3/keys", "", b"", false) {
            // The victim's tenant header, another tenant's signature.
            let value = if name == xnode_types::request_auth::HEADER_TENANT {
                greedy.id().to_hex()
            } else {
                value
            };
            forged = forged.header(name, value);
        }
        let r = forged.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let mut genuine = client.get(&url);
    for (name, value) in victim_headers {
        genuine = genuine.header(name, value);
    }
    assert_eq!(genuine.send().await.unwrap().status(), StatusCode::OK);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_and_s3_ports_speak_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let certificate_pem = made.cert.pem();
    let settings = xnode_serve::TlsSettings {
        certificate_chain: dir.path().join("node.crt"),
        private_key: dir.path().join("node.key"),
        allow_plain_http: false,
        reload_interval: Duration::from_secs(60),
    };
    std::fs::write(&settings.certificate_chain, &certificate_pem).unwrap();
    std::fs::write(&settings.private_key, made.key_pair.serialize_pem()).unwrap();
    let cluster = Cluster::start_with(1, move |c| c.http.tls = Some(settings.clone())).await;
    let node = cluster.node(0).clone();

    // The S3 gateway on its own port, as `xnode start --s3` runs it.
    let s3_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s3_url = format!("https://{}", s3_listener.local_addr().unwrap());
    let gateway = node.with_metrics_registry(|metrics| {
        xnode_s3::S3Gateway::new(
            node.storage().clone(),
            node.db().clone(),
            node.tenant_rate_limit().clone(),
            metrics,
        )
    });
    let token = node.shutdown_token();
    let s3 = tokio::spawn(xnode_s3::serve(
        s3_listener,
        gateway,
        node.config().http.clone(),
        async move { token.cancelled().await },
    ));

    let api_url = cluster.api_url(0).to_owned();
    assert!(api_url.starts_with("https://"), "{api_url}");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = trusting
        .get(format!("{api_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // An unsigned S3 request reaches the gateway through TLS and is refused by it, in
    // S3's error shape (nobody granted anonymous access to this object).
    let read = trusting
        .get(format!("{s3_url}/no-such-bucket/key"))
        .send()
        .await
        .unwrap();
    assert!(read.status().is_client_error(), "{}", read.status());
    assert!(read.text().await.unwrap().contains("<Code>"));

    // A client that does not trust the certificate gets no answer at all.
    let stranger = reqwest::Client::new();
    assert!(
        stranger
            .get(format!("{api_url}/healthz"))
            .send()
            .await
            .is_err()
    );

    // Plain HTTP to either TLS port is told to use TLS.
    for url in [&api_url, &s3_url] {
        let plain = url.replacen("https://", "http://", 1);
        let refused = reqwest::get(format!("{plain}/healthz")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{plain}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "tls_required", "{plain}");
    }

    cluster.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), s3).await;
}
