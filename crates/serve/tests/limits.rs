//! The server against clients that hold connections: slowloris headers, stalled bodies
//! and floods of connections from one address, on a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xnode_serve::{HttpLimits, TimedBody};

/// Starts a server whose handler reads the whole body and answers its length, or `400`
/// with the error if the body could not be read.
async fn start(limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = |req: Request<TimedBody<hyper::body::Incoming>>| async move {
        let answer = match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(Bytes::from(body.to_bytes().len().to_string()))),
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        };
        Ok::<_, Infallible>(answer)
    };
    tokio::spawn(xnode_serve::serve(
        listener,
        limits,
        "test",
        xnode_serve::ErrorStyle::Json,
        handler,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    (addr, stop)
}

/// Reads until the server closes the connection or `within` passes; returns what came.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s, Duration::from_secs(30))
        .await
        .expect("a plain request is answered")
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (addr, _stop) = start(HttpLimits {
        header_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n")
        .await
        .unwrap();
    // Without a header timeout the server would wait for the rest forever. The margin is
    // wide because a loaded machine may be slow to run the timer.
    let closed = read_until_closed(&mut slow, Duration::from_secs(20)).await;
    assert!(
        closed.is_some(),
        "the server still holds a half-sent request"
    );
    assert!(get(addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_that_stops_arriving_ends_the_request() {
    let (addr, _stop) = start(HttpLimits {
        body_idle_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(20))
        .await
        .expect("the handler gave up on the body");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("no request body bytes"), "{answer}");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let (addr, _stop) = start(HttpLimits {
        max_connections_per_ip: 3,
        ..HttpLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Every held connection has been admitted once the server answers on one of them.
    held[0]
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = held[0].read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let mut extra = TcpStream::connect(addr).await.unwrap();
    let refused = read_until_closed(&mut extra, Duration::from_secs(20))
        .await
        .expect("the extra connection is closed at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");

    // Places come back when connections close.
    held.clear();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed connections never freed their places: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A self-signed certificate for `localhost` written to `dir`, and the TLS settings that
/// name it.
fn self_signed(dir: &std::path::Path) -> (xnode_serve::TlsSettings, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let chain = dir.join("node.crt");
    let key = dir.join("node.key");
    std::fs::write(&chain, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let settings = xnode_serve::TlsSettings {
        certificate_chain: chain,
        private_key: key,
        allow_plain_http: false,
        reload_interval: Duration::from_secs(60),
    };
    (settings, made.cert.der().to_vec())
}

/// `GET /` over TLS, trusting only `certificate`; the whole answer.
async fn https_get(addr: SocketAddr, certificate: &[u8]) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            certificate.to_vec(),
        ))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(
        b"PUT / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    // The server closes after answering; a TLS close may end in an error rather than a
    // clean EOF, so keep what arrived either way.
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_tls_port_serves_https_and_answers_plain_http_with_tls_required() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, certificate) = self_signed(dir.path());
    let (addr, _stop) = start(HttpLimits {
        tls: Some(settings),
        ..HttpLimits::default()
    })
    .await;
    let answer = https_get(addr, &certificate).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n5"),
        "the handler read the body: {answer}"
    );

    let plain = get(addr).await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("tls_required"), "{plain}");
}

#[tokio::test]
async fn a_tls_port_can_also_allow_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, certificate) = self_signed(dir.path());
    settings.allow_plain_http = true;
    let (addr, _stop) = start(HttpLimits {
        tls: Some(settings),
        ..HttpLimits::default()
    })
    .await;
    assert!(get(addr).await.starts_with("HTTP/1.1 200"));
    assert!(
        https_get(addr, &certificate)
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_loses_its_connection_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, certificate) = self_signed(dir.path());
    let (addr, _stop) = start(HttpLimits {
        tls: Some(settings),
        max_connections_per_ip: 2,
        header_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    // One client opens TCP and sends nothing; the other starts a handshake record and
    // stops: both hold a slot until the handshake deadline.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    for stalled in [&mut silent, &mut half] {
        let closed = read_until_closed(stalled, Duration::from_secs(20)).await;
        assert!(
            closed.is_some(),
            "the server still holds a connection that never finished its handshake"
        );
    }
    // Their slots came back (the gate releases as the connection task ends, just after
    // the close, so allow a moment).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = https_get(addr, &certificate).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled handshakes never freed their slots: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
