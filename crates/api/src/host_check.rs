//! The `Host` check of the API port: requests must name one of this node's names.
//!
//! DNS rebinding lets a web page on an attacker's domain make the victim's browser send
//! requests to a node it can reach (its own machine, its LAN) under the attacker's host
//! name, and read the answers as same-origin. A request whose `Host` is not a name this
//! node answers to is refused with `421 misdirected_host`, so such a page reads nothing.
//! The names are: the address the API listens on, the host of its advertised API URL,
//! `localhost`, `127.0.0.1` and `[::1]` on the API port, and the operator's
//! `[http] allowed_hosts` (with or without a port; `*` turns the check off).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The names a node's API answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    any: bool,
    /// `host:port`, lowercase.
    with_port: HashSet<String>,
    /// Hosts allowed on any port (operator entries without a port), lowercase.
    any_port: HashSet<String>,
}

impl AllowedHosts {
    /// The names for an API listening on `listen` and advertised as `api_url`, plus the
    /// operator's `allowed_hosts` entries (validated with the configuration).
    pub fn new(listen: std::net::SocketAddr, api_url: &str, allowed: &[String]) -> Self {
        let mut with_port = HashSet::new();
        let mut any_port = HashSet::new();
        let advertised = api_url
            .split_once("://")
            .map_or(api_url, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let port = split_host(&advertised)
            .map(|(_, port)| port)
            .unwrap_or(listen.port());
        if !advertised.is_empty() {
            with_port.insert(with_default_port(&advertised));
        }
        with_port.insert(listen.to_string());
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            with_port.insert(format!("{local}:{port}"));
            with_port.insert(format!("{local}:{}", listen.port()));
        }
        let mut any = false;
        for entry in allowed {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                any = true;
            } else if split_host(&entry).is_some() {
                with_port.insert(entry);
            } else {
                any_port.insert(entry);
            }
        }
        Self {
            any,
            with_port,
            any_port,
        }
    }

    /// Whether a request naming `host` (a `Host` header or a URI authority) may be served.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host.to_ascii_lowercase();
        let full = with_default_port(&host);
        if self.with_port.contains(&full) {
            return true;
        }
        let name = split_host(&full).map_or(full.as_str(), |(name, _)| name);
        self.any_port.contains(name)
    }
}

/// Splits `host:port` (also `[v6]:port`) into the host and the port, if there is a port.
fn split_host(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.starts_with('[') && !host.ends_with(']') {
        // A bare IPv6 address in brackets has colons inside: no port.
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// `host` with `:80` added when it has no port (a browser leaves out HTTP's default).
fn with_default_port(host: &str) -> String {
    if split_host(host).is_some() {
        host.to_owned()
    } else {
        format!("{host}:80")
    }
}

/// Middleware: refuses requests whose host is not one of `allowed`.
pub(crate) async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    // HTTP/2 carries the host as the URI's authority; HTTP/1.1 in the Host header.
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    match host {
        Some(host) if allowed.allows(&host) => next.run(req).await,
        Some(host) => ApiError::MisdirectedHost(format!(
            "this node does not answer to the host {host:?}; add it to [http] allowed_hosts \
             if it is one of the node's names"
        ))
        .into_response(),
        None => ApiError::MisdirectedHost("the request names no host".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_own_names_and_the_operators_are_allowed_and_nothing_else() {
        let hosts = AllowedHosts::new(
            "0.0.0.0:8080".parse().unwrap(),
            "http://node1.example.org:8080",
            &["xnode.lan".into(), "proxy.example.org:443".into()],
        );
        for ok in [
            "node1.example.org:8080",
            "NODE1.example.org:8080",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "0.0.0.0:8080",
            "xnode.lan",
            "xnode.lan:8080",
            "proxy.example.org:443",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "attacker.example:8080",
            "node1.example.org:9090",
            "localhost:9090",
            "proxy.example.org",
            "localhost",
            "",
            "127.0.0.1.attacker.example:8080",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let open = AllowedHosts::new("127.0.0.1:1".parse().unwrap(), "", &["*".into()]);
        assert!(open.allows("anything.example"));
    }

    #[test]
    fn a_node_on_port_80_answers_to_its_name_without_a_port() {
        let hosts = AllowedHosts::new(
            "0.0.0.0:80".parse().unwrap(),
            "http://node.example.org",
            &[],
        );
        assert!(hosts.allows("node.example.org"));
        assert!(hosts.allows("node.example.org:80"));
        assert!(hosts.allows("localhost"));
        assert!(!hosts.allows("other.example.org"));
    }
}
