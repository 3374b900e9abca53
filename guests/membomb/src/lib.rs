//! HOSTILE `membomb`: allocates 1 MiB blocks forever, touching every page,
//! until `memory.grow` is refused and the allocator aborts (trap).
//! Proves: `limits.memory_mb` is enforced and the failure is contained.
#![no_std]

extern crate alloc;

use core::hint::black_box;
use alloc::vec;
use alloc::vec::Vec;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

const BLOCK: usize = 1024 * 1024;

struct MemBomb;

wasi::http::proxy::export!(MemBomb);

impl Guest for MemBomb {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        while black_box(hoard.len()) != usize::MAX {
            let mut block = vec![0u8; BLOCK];
            // Touch every 4 KiB page so the memory is really committed.
            let tag = (hoard.len() as u8) | 1;
            for i in (0..BLOCK).step_by(4096) {
                block[i] = tag;
            }
            hoard.push(black_box(block));
        }
        xnode_guest::respond(out, 200, "text/plain", b"membomb finished?!\n");
    }
}
