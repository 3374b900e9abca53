//! HOSTILE `bigout`: answers 200 and then streams 1 GiB of body in 64 KiB
//! writes.  Proves: `limits.max_output_kb` / timeouts cut off a response that
//! is too large, without buffering it all in the host.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::vec;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

const CHUNK: usize = 64 * 1024;
const TOTAL: u64 = 1024 * 1024 * 1024;

struct BigOut;

wasi::http::proxy::export!(BigOut);

impl Guest for BigOut {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::new();
        let _ = headers.append("content-type", b"application/octet-stream");
        let resp = OutgoingResponse::new(headers);
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(out, Ok(resp));
        let Ok(stream) = body.write() else { return };

        let mut chunk = vec![b'x'; CHUNK];
        chunk[CHUNK - 1] = b'\n';
        let mut sent: u64 = 0;
        while sent < TOTAL {
            // write_all honours check-write back-pressure and flushes.
            if let Err(e) = xnode_guest::write_all(&stream, &chunk) {
                // The host closed the stream (limit hit / client gone): stop.
                xnode_guest::eprint_bytes(format!("bigout: stopped after {sent} bytes: {e:?}\n").as_bytes());
                return;
            }
            sent += CHUNK as u64;
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}
