//! Every test that runs the `xnode` binary as real processes (devnets, the S3 clients and
//! conformance suite, the Studio in Chromium, the soak), plus the layering check, in one
//! test binary: one link of the node instead of nine. nextest still runs each test in its
//! own process; select a module with a filter such as `-E 'test(/^s3_compat::/)'`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_failure_detection;
mod chaos;
mod devnet;
mod ledger_cli;
mod package;
mod processes;
mod rolling_upgrade;
mod s3_compat;
mod s3_conformance;
mod soak;
mod storage_cli;
mod studio;
mod support;
mod tidy;
