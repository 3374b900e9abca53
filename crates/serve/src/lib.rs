//! HTTP servers fit for the public internet, shared by the API and the S3 gateway.
//!
//! Anyone may open connections to a node's HTTP ports, so a server must not let one client
//! hold what every client needs. [`serve`] accepts connections under two limits (in total
//! and per client address) and refuses the excess at once with `503` and `Connection:
//! close`, so a flood of idle connections cannot use up file descriptors or memory. It
//! gives a client a bounded time to send a request's headers (a slowloris attack sends
//! them a byte at a time) and a bounded idle time between body bytes ([`TimedBody`]), and
//! on shutdown stops accepting and lets open requests finish within a grace period. It
//! limits the request rate of each client address ([`RateLimiter`], a token bucket per
//! address) and answers the excess with `429`, `Retry-After` and the code `rate_limited`
//! (JSON on the API port, S3's XML error shape on the S3 port).
//!
//! With `[http.tls]` configured, a port speaks TLS only ([`tls`]): the handshake must end
//! within the header timeout, and a plain HTTP request is answered `400 tls_required`.
//!
//! What a request means is the handler's business: this crate knows nothing of Xnode.

mod body;
mod gate;
mod rate;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

pub use body::{BodyError, TimedBody};
pub use gate::{Admission, ConnectionGate, GateStats, Refusal};
pub use rate::{KeyedRateLimiter, MAX_TRACKED_ADDRESSES, RateLimited, RateLimiter};
pub use tls::{ServerTls, TlsError, TlsSettings};

/// A boxed error, as hyper takes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits of one HTTP server (the `[http]` section of the node's configuration; the API
/// and the S3 gateway each apply them to their own port).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Connections open at once on one port; beyond it new connections get `503`.
    pub max_connections: usize,
    /// Connections open at once from one client IP address on one port.
    pub max_connections_per_ip: usize,
    /// How long a client may take to send a request's headers, from the connection's
    /// start or the end of its previous request. Idle keep-alive connections are closed
    /// after it too.
    #[serde(with = "xnode_types::duration_text")]
    pub header_timeout: Duration,
    /// How long a request body may go without a byte while the handler waits for it.
    #[serde(with = "xnode_types::duration_text")]
    pub body_idle_timeout: Duration,
    /// Requests per second one client address (an IPv6 /64) may send on one port, on
    /// average; beyond it requests get `429 rate_limited`.
    pub requests_per_second_per_ip: u32,
    /// Requests one client address may send at once before the average applies.
    pub burst: u32,
    /// Signed requests per second one tenant may send to this node, on average, over the
    /// API and S3 ports together; beyond it the API answers `429 rate_limited` and S3
    /// `503 SlowDown`. Counted only after the signature verified, so no one can spend
    /// another tenant's allowance. It bounds what one tenant takes of a node from any
    /// number of addresses; it is per node, so a tenant using several nodes gets each
    /// node's allowance.
    pub requests_per_second_per_tenant: u32,
    /// Signed requests one tenant may send at once before the average applies.
    pub tenant_burst: u32,
    /// Host names (with or without `:port`) the API port answers to besides its own
    /// addresses and `localhost`; `*` answers to any. Requests naming another host get
    /// `421 misdirected_host`, which defeats DNS rebinding. The S3 port does not check
    /// hosts (virtual-host buckets are subdomains, and SigV4 signs the host).
    pub allowed_hosts: Vec<String>,
    /// TLS for the API and S3 ports (`[http.tls]`); plain HTTP when absent.
    pub tls: Option<TlsSettings>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            // High enough that a benchmark from one address (about 9,000 function calls
            // a second on a 2-core machine), the S3 conformance suite and the tests never
            // reach them; an operator of a public node may lower them.
            requests_per_second_per_ip: 20_000,
            burst: 40_000,
            requests_per_second_per_tenant: 10_000,
            tenant_burst: 20_000,
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }
}

/// A limit that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("http.{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("http.max_connections_per_ip ({per_ip}) cannot exceed http.max_connections ({total})")]
    PerIpAboveTotal { per_ip: usize, total: usize },
    #[error("http.{field} must be between 100ms and 1h, not {value:?}")]
    Timeout {
        field: &'static str,
        value: Duration,
    },
    #[error(
        "http.allowed_hosts: {host:?} is not a host name or address with an optional :port (or \"*\")"
    )]
    BadHost { host: String },
}

impl HttpLimits {
    /// Checks that the limits can be applied.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.max_connections == 0 {
            return Err(LimitsError::Zero {
                field: "max_connections",
            });
        }
        if self.max_connections_per_ip == 0 {
            return Err(LimitsError::Zero {
                field: "max_connections_per_ip",
            });
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(LimitsError::PerIpAboveTotal {
                per_ip: self.max_connections_per_ip,
                total: self.max_connections,
            });
        }
        for (field, value) in [
            (
                "requests_per_second_per_ip",
                self.requests_per_second_per_ip,
            ),
            ("burst", self.burst),
            (
                "requests_per_second_per_tenant",
                self.requests_per_second_per_tenant,
            ),
            ("tenant_burst", self.tenant_burst),
        ] {
            if value == 0 {
                return Err(LimitsError::Zero { field });
            }
        }
        for host in &self.allowed_hosts {
            if !valid_host_entry(host) {
                return Err(LimitsError::BadHost { host: host.clone() });
            }
        }
        let sane = Duration::from_millis(100)..=Duration::from_secs(3600);
        for (field, value) in [
            ("header_timeout", self.header_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
        ] {
            if !sane.contains(&value) {
                return Err(LimitsError::Timeout { field, value });
            }
        }
        Ok(())
    }
}

/// Whether `entry` can be an `allowed_hosts` entry: `*`, or a DNS name, an IPv4 address or
/// a bracketed IPv6 address, with an optional `:port`.
fn valid_host_entry(entry: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let valid_port = |port: &str| port.parse::<u16>().is_ok();
    if let Some(rest) = entry.strip_prefix('[') {
        let Some((v6, tail)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = tail.is_empty() || tail.strip_prefix(':').is_some_and(valid_port);
        return port_ok && v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let (host, port_ok) = match entry.split_once(':') {
        Some((host, port)) => (host, valid_port(port)),
        None => (entry, true),
    };
    port_ok
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// How a server shapes the errors it answers by itself (without its handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error":{"code":...,"message":...}}`, as the API answers.
    Json,
    /// `<Error><Code>...</Code><Message>...</Message></Error>`, as S3 clients expect.
    S3Xml,
}

impl ErrorStyle {
    /// The response to a request over its address's rate limit.
    fn rate_limited(self, retry_after: Duration) -> Response<Full<Bytes>> {
        let message = "too many requests from this address; retry later";
        let (content_type, body) = match self {
            ErrorStyle::Json => (
                "application/json",
                format!("{{\"error\":{{\"code\":\"rate_limited\",\"message\":\"{message}\"}}}}"),
            ),
            ErrorStyle::S3Xml => (
                "application/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>rate_limited</Code><Message>{message}</Message></Error>"
                ),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        headers.insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from(retry_after.as_secs().max(1)),
        );
        response
    }
}

/// The answer to a connection over the limits, written before closing it. A client that
/// reads it knows to retry later rather than seeing a bare reset.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 80\r\nretry-after: 1\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections\"}}\n";

/// Serves `handler` on `listener` under `limits` until `shutdown` resolves, then lets open
/// requests finish for up to `grace`. `name` labels log lines ("api", "s3").
///
/// The handler sees every request body wrapped in a [`TimedBody`], and the client's
/// address as a [`SocketAddr`] request extension. Requests over their address's rate
/// limit are answered here, in `style`, without reaching the handler.
pub async fn serve<H, Fut, B, E>(
    listener: TcpListener,
    limits: HttpLimits,
    name: &'static str,
    style: ErrorStyle,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()>
where
    H: Fn(Request<TimedBody<Incoming>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    let tls = match &limits.tls {
        Some(settings) => Some(ServerTls::load(settings).map_err(std::io::Error::other)?),
        None => None,
    };
    let reloader = tls.as_ref().map(|tls| tls.spawn_reloader(name));
    let gate = Arc::new(ConnectionGate::new(
        limits.max_connections,
        limits.max_connections_per_ip,
    ));
    let rate = Arc::new(RateLimiter::new(
        limits.requests_per_second_per_ip,
        limits.burst,
    ));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off rather than spin.
                        tracing::warn!(server = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let admission = match gate.admit(peer.ip()) {
                    Ok(admission) => admission,
                    Err(refusal) => {
                        tracing::debug!(server = name, %peer, ?refusal, "connection refused");
                        refuse(stream);
                        continue;
                    }
                };
                // Without TCP_NODELAY a streamed response (headers, then body chunks)
                // waits on Nagle's algorithm for the client's delayed ACK.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(server = name, error = %e, "cannot set TCP_NODELAY");
                }
                let handler = handler.clone();
                let rate = Arc::clone(&rate);
                let body_idle = limits.body_idle_timeout;
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let limited = rate.check(peer.ip(), std::time::Instant::now());
                    let mut req = req.map(|body| TimedBody::new(body, body_idle));
                    req.extensions_mut().insert(peer);
                    let handled = limited.map(|()| handler(req));
                    async move {
                        match handled {
                            Ok(handled) => handled.await.map(|r| r.map(Either::Left)),
                            Err(refusal) => {
                                tracing::debug!(server = name, %peer, "request over the rate limit");
                                Ok(style.rate_limited(refusal.retry_after).map(Either::Right))
                            }
                        }
                    }
                });
                let builder = Arc::clone(&builder);
                let watcher = graceful.watcher();
                let tls = tls.clone();
                let handshake_within = limits.header_timeout;
                tokio::spawn(async move {
                    // The connection's slot is held from the accept, through the TLS
                    // handshake (bounded by the header timeout), to the connection's end.
                    let _admission = admission;
                    let served = match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(tls) => match tls.accept(stream, handshake_within).await {
                            tls::Accepted::Tls(stream) => {
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(conn.into_owned()).await
                            }
                            tls::Accepted::Plain(stream) => {
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                watcher.watch(conn.into_owned()).await
                            }
                            tls::Accepted::Closed => Ok(()),
                        },
                    };
                    if let Err(e) = served {
                        tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            server = name,
            "requests still open after the shutdown grace period were cut"
        );
    }
    Ok(())
}

/// Answers an over-limit connection with `503` without reading from it, then closes it.
/// The write is best effort: a fresh socket's send buffer takes it without waiting, and a
/// client that is gone simply misses it.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY_RESPONSE);
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(HttpLimits::default().validate(), Ok(()));
    }

    #[test]
    fn nonsense_limits_are_refused_with_the_field_named() {
        let zero = HttpLimits {
            max_connections_per_ip: 0,
            ..HttpLimits::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("max_connections_per_ip")
        );
        let above = HttpLimits {
            max_connections: 10,
            max_connections_per_ip: 11,
            ..HttpLimits::default()
        };
        assert!(matches!(
            above.validate(),
            Err(LimitsError::PerIpAboveTotal { .. })
        ));
        let slow = HttpLimits {
            header_timeout: Duration::from_secs(7200),
            ..HttpLimits::default()
        };
        assert!(
            slow.validate()
                .unwrap_err()
                .to_string()
                .contains("header_timeout")
        );
    }

    #[test]
    fn rate_limits_and_allowed_hosts_are_validated() {
        let zero = HttpLimits {
            burst: 0,
            ..HttpLimits::default()
        };
        assert_eq!(zero.validate(), Err(LimitsError::Zero { field: "burst" }));
        let no_tenant_allowance = HttpLimits {
            requests_per_second_per_tenant: 0,
            ..HttpLimits::default()
        };
        assert_eq!(
            no_tenant_allowance.validate(),
            Err(LimitsError::Zero {
                field: "requests_per_second_per_tenant"
            })
        );
        for good in [
            "*",
            "xnode.example.org",
            "xnode.example.org:8080",
            "10.0.0.7:80",
            "[::1]:8080",
            "[2001:db8::1]",
        ] {
            let limits = HttpLimits {
                allowed_hosts: vec![good.into()],
                ..HttpLimits::default()
            };
            assert_eq!(limits.validate(), Ok(()), "{good}");
        }
        for bad in [
            "",
            "http://x.org",
            "x.org/path",
            "x.org:99999",
            "a..b",
            "[::1",
            "[zz]:80",
            "x y",
            "x.org:",
        ] {
            let limits = HttpLimits {
                allowed_hosts: vec![bad.into()],
                ..HttpLimits::default()
            };
            assert!(
                matches!(limits.validate(), Err(LimitsError::BadHost { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_rate_limited_answers_carry_the_code_and_retry_after() {
        for style in [ErrorStyle::Json, ErrorStyle::S3Xml] {
            let r = style.rate_limited(Duration::from_secs(3));
            assert_eq!(r.status(), hyper::StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(r.headers()[hyper::header::RETRY_AFTER], "3");
        }
    }

    /// Panics unless a canned response's `content-length` is its body's exact length: a
    /// wrong one makes clients hang for bytes that never come, or read into the next answer.
    pub(crate) fn assert_declares_its_exact_length(response: &[u8]) {
        let text = std::str::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
    }

    #[test]
    fn the_busy_response_declares_its_exact_length() {
        assert_declares_its_exact_length(BUSY_RESPONSE);
    }

    #[test]
    fn limits_read_from_toml_with_durations_as_text() {
        let limits: HttpLimits =
            toml::from_str("max_connections_per_ip = 8\nheader_timeout = \"5s\"").unwrap();
        assert_eq!(limits.max_connections_per_ip, 8);
        assert_eq!(limits.header_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_connections, 4096);
        assert!(toml::from_str::<HttpLimits>("max_conections = 1").is_err());
    }
}
