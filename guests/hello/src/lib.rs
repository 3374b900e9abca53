//! `hello`: the smallest useful wasi:http/proxy component.
//!
//! `200 text/plain` with `hello from xnode\n` and the request path on a second
//! line.  Kept deliberately trivial: it is benchmarked against `wasmtime serve`.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

wasi::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = xnode_guest::split_path(&path).0;
        let mut body = Vec::with_capacity(32 + path.len());
        body.extend_from_slice(b"hello from xnode\npath: ");
        body.extend_from_slice(path.as_bytes());
        body.push(b'\n');
        xnode_guest::respond(response_out, 200, "text/plain; charset=utf-8", &body);
    }
}
