//! HOSTILE `spin`: never returns from the handler.  A counter is passed
//! through `black_box` every iteration so the loop cannot be optimised away.
//! Proves: fuel / epoch deadline (`limits.fuel`, `limits.timeout_ms`) stop it.
#![no_std]

extern crate alloc;

use core::hint::black_box;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Spin;

wasi::http::proxy::export!(Spin);

impl Guest for Spin {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut n: u64 = 0;
        while black_box(n) != u64::MAX {
            n = black_box(n.wrapping_add(1));
        }
        // Unreachable in practice (2^64 iterations).
        xnode_guest::respond(out, 200, "text/plain", b"spin finished?!\n");
    }
}
