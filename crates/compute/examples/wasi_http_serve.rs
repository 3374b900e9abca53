//! A minimal stand-in for `wasmtime serve`, the baseline of the `/fn/` benchmark
//! (`scripts/bench-compute.sh`, part 1) on machines where the `wasmtime` CLI is not installed.
//!
//! ```text
//! cargo build --release -p xnode-compute --example wasi_http_serve
//! target/release/examples/wasi_http_serve 127.0.0.1:PORT guests/dist/hello.wasm
//! ```
//!
//! It follows the request path of `wasmtime serve -Scli` (wasmtime 48, the version the
//! workspace links): one engine with the pooling allocator (the CLI's default on 64-bit
//! Linux), the WASI p2 and `wasi:http` interfaces in the linker, the component
//! pre-instantiated once, and per request a fresh store, a fresh instance (the CLI reuses no
//! instance for p2 components) and a call of `wasi:http/incoming-handler.handle` in its own
//! task, over hyper's HTTP/1.1 with keep-alive. It does less than the CLI in two ways, both
//! in its favour: no per-request environment or log prefixes, and no epoch or fuel
//! interruption. Xnode's gateway additionally routes, meters, limits and observes every
//! call, so the comparison is conservative for Xnode.

use std::error::Error;
use std::sync::Arc;

use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, bail};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What one request's store holds.
struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let usage = "usage: wasi_http_serve ADDR COMPONENT.wasm";
    let addr = std::env::args().nth(1).ok_or(usage)?;
    let path = std::env::args().nth(2).ok_or(usage)?;

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, &path)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = Arc::new(ProxyPre::new(linker.instantiate_pre(&component)?)?);

    let listener = TcpListener::bind(&addr).await?;
    eprintln!("serving {path} on http://{}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        // Like the CLI's server, answers as soon as headers are ready.
        client.set_nodelay(true)?;
        let pre = pre.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let pre = pre.clone();
                handle(pre, request)
            });
            if let Err(error) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(client), service)
                .await
            {
                eprintln!("connection ended: {error}");
            }
        });
    }
}

/// Runs one request in a fresh instance, as `wasmtime serve` does for p2 components.
async fn handle(
    pre: Arc<ProxyPre<RequestState>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = Store::new(
        pre.engine(),
        RequestState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        },
    );
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    // The guest may keep writing the body after it has set the response, so it runs in
    // its own task while the response goes back.
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => bail!("guest answered with error {code:?}"),
        Err(_) => match task.await {
            Ok(Ok(())) => bail!("guest never set a response"),
            Ok(Err(error)) => Err(error),
            Err(error) => bail!("guest task failed: {error}"),
        },
    }
}
