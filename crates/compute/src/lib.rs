//! Sandboxed WebAssembly execution: one wasmtime engine per node, HTTP components and
//! WASI commands run under per-invocation limits, with usage measured for each run.
//!
//! This crate knows nothing about the mesh, the registry or storage: the node hands it
//! compiled code, limits and an [`Outbound`] implementation, and gets back responses,
//! exit statuses and [`Usage`].

mod command;
mod egress;
mod engine;
mod http;
mod limits;
mod output;

pub use command::{CommandOutcome, CommandSpec, ExitReason, Mount};
pub use egress::{Cidr, EgressPolicy, is_special};
pub use engine::{CommandModule, Engine, EngineConfig, HttpModule, ModuleId};
pub use http::{FnRequest, FnResponse, HttpInvocation};
pub use limits::{Limits, Usage};
pub use output::OutputCapture;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// The virtual host guests call to reach their owner's object storage.
pub const STORE_HOST: &str = "store.xnode";

/// What the host offers a guest beyond its sandbox: the object store of the deployment's
/// owner, reached through outbound HTTP to [`STORE_HOST`].
pub trait Outbound: Send + Sync + 'static {
    /// Serves `method path` (`/<bucket>/<key>`) against the owner's storage and returns a
    /// status and body. Called only for requests to [`STORE_HOST`].
    fn store(
        &self,
        method: ::http::Method,
        path: String,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = (u16, Bytes)> + Send + 'static>>;
}

/// An [`Outbound`] for guests that have no storage: every call gets 403.
#[derive(Debug, Default)]
pub struct NoStorage;

impl Outbound for NoStorage {
    fn store(
        &self,
        _method: ::http::Method,
        _path: String,
        _body: Bytes,
    ) -> Pin<Box<dyn Future<Output = (u16, Bytes)> + Send + 'static>> {
        Box::pin(async {
            (
                403,
                Bytes::from_static(b"this deployment has no storage access\n"),
            )
        })
    }
}

/// Why an invocation failed. Every variant carries a reason a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("the module is not valid WebAssembly of the expected kind: {0}")]
    InvalidModule(String),
    #[error("the function ran out of fuel (limit {0})")]
    OutOfFuel(u64),
    #[error("the function exceeded its time limit of {0} ms")]
    Timeout(u64),
    #[error("the function exceeded its memory limit of {0} MiB")]
    OutOfMemory(u64),
    #[error("the function overflowed its stack")]
    StackOverflow,
    #[error("the function's output exceeded its limit of {0} bytes")]
    OutputTooLarge(u64),
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function did not produce a response: {0}")]
    NoResponse(String),
    #[error("the node is at its limit of concurrent instances, try again")]
    Busy,
    #[error("could not set up the sandbox: {0}")]
    Setup(String),
}

impl ComputeError {
    /// A short stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ComputeError::InvalidModule(_) => "invalid_module",
            ComputeError::OutOfFuel(_) => "out_of_fuel",
            ComputeError::Timeout(_) => "timeout",
            ComputeError::OutOfMemory(_) => "out_of_memory",
            ComputeError::StackOverflow => "stack_overflow",
            ComputeError::OutputTooLarge(_) => "output_too_large",
            ComputeError::Trap(_) => "trap",
            ComputeError::NoResponse(_) => "no_response",
            ComputeError::Busy => "busy",
            ComputeError::Setup(_) => "setup",
        }
    }
}
