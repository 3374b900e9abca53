//! HOSTILE `forbidden-fetch`: makes an outbound `GET http://example.com/`,
//! a host its manifest does NOT list in `allowed_hosts`.  The environment
//! variables `TARGET` (an authority, `host[:port]`) and `TARGET_PATH` point it
//! elsewhere, e.g. at the node's own API on loopback, which the node's egress
//! policy must refuse even when `allowed_hosts = ["*"]`.
//!
//! Expected: the host refuses (typically `ErrorCode::HttpRequestDenied`) and
//! the guest answers `502` with the error in the body.  If the fetch somehow
//! succeeds the guest answers `200` with a body starting `UNEXPECTED`, so a
//! test can assert on status alone.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam, Scheme};

const TARGET_HOST: &str = "example.com";

fn env(name: &str, default: &str) -> String {
    wasi::cli::environment::get_environment()
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map_or_else(|| default.to_string(), |(_, v)| v)
}

struct ForbiddenFetch;

wasi::http::proxy::export!(ForbiddenFetch);

impl Guest for ForbiddenFetch {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let host = env("TARGET", TARGET_HOST);
        let path = env("TARGET_PATH", "/");
        match xnode_guest::fetch(Method::Get, Scheme::Http, &host, &path, None, 64 * 1024) {
            Err(e) => {
                let body = format!("forbidden-fetch: GET http://{host}{path} failed: {e}\n");
                xnode_guest::respond(out, 502, "text/plain; charset=utf-8", body.as_bytes());
            }
            Ok(r) => {
                let body = format!(
                    "UNEXPECTED: GET http://{host}{path} was allowed (status {}, {} bytes)\n",
                    r.status,
                    r.body.len()
                );
                xnode_guest::respond(out, 200, "text/plain; charset=utf-8", body.as_bytes());
            }
        }
    }
}
