//! HOSTILE `recurse`: unbounded, non-tail recursion until the wasm call stack
//! (or the shadow stack in linear memory) is exhausted and the instance traps.
//! Proves: `limits.stack_kb` (wasmtime `max_wasm_stack`) is enforced and a
//! stack overflow in a guest never takes the host down.
#![no_std]

extern crate alloc;

use core::hint::black_box;
use alloc::format;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Recurse;

wasi::http::proxy::export!(Recurse);

/// Each frame keeps a small array alive across the recursive call, and the
/// result is combined after the call, so this is not a tail call.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    let pad = black_box([depth; 2]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = dive(black_box(depth + 1));
    black_box(below.wrapping_add(pad[(depth % 2) as usize]))
}

impl Guest for Recurse {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let r = dive(black_box(0));
        xnode_guest::respond(out, 200, "text/plain", format!("recursion returned {r}?!\n").as_bytes());
    }
}
