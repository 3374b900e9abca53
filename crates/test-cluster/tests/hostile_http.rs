//! A node's API port against clients that hold connections (security review finding 17):
//! the limits of `[http]` apply to the real API, and `/fn/` refuses an unknown function
//! before it reads a body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xnode_test_cluster::Cluster;

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
        b"POST /fn/no-such-function/x HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n",
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
