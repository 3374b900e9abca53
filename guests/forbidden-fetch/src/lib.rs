//! HOSTILE `forbidden-fetch`: makes an outbound `GET http://example.com/`,
//! a host its manifest does NOT list in `allowed_hosts`.
//!
//! Expected: the host refuses (typically `ErrorCode::HttpRequestDenied`) and
//! the guest answers `502` with the error in the body.  If the fetch somehow
//! succeeds the guest answers `200` with a body starting `UNEXPECTED`, so a
//! test can assert on status alone.
#![no_std]

extern crate alloc;

use alloc::format;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam, Scheme};

const TARGET_HOST: &str = "example.com";

struct ForbiddenFetch;

wasi::http::proxy::export!(ForbiddenFetch);

impl Guest for ForbiddenFetch {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        match xnode_guest::fetch(Method::Get, Scheme::Http, TARGET_HOST, "/", None, 64 * 1024) {
            Err(e) => {
                let body = format!("forbidden-fetch: GET http://{TARGET_HOST}/ failed: {e}\n");
                xnode_guest::respond(out, 502, "text/plain; charset=utf-8", body.as_bytes());
            }
            Ok(r) => {
                let body = format!(
                    "UNEXPECTED: GET http://{TARGET_HOST}/ was allowed (status {}, {} bytes)\n",
                    r.status,
                    r.body.len()
                );
                xnode_guest::respond(out, 200, "text/plain; charset=utf-8", body.as_bytes());
            }
        }
    }
}
