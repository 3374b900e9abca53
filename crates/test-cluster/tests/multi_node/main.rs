//! Every test that runs real nodes in process, in one test binary.
//!
//! Each module was once its own file under `tests/`, and so its own binary: cargo linked a
//! whole node (wasmtime, libp2p, the database) eighteen times on every build. One binary
//! links it once. nextest still runs every test in its own process, so tests share no state;
//! select a module with a filter such as `-E 'test(/^hostile_storage::/)'`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod anti_entropy;
mod bench_gossip;
mod bench_idle_storage;
mod bench_storage_latency;
mod bonded;
mod bulk_link;
mod cluster;
mod compute;
mod forwarded_reads;
mod gc;
mod hostile_grants;
mod hostile_http;
mod hostile_mesh;
mod hostile_observe;
mod hostile_storage;
mod hostile_tenants;
mod lifecycle;
mod metering;
mod network;
mod observe;
mod penalties;
mod rogue_fuzz;
mod s3_logging;
mod settlement;
mod storage;
mod storage_http;
mod tombstones;
mod workers;
