//! `wasi:http/proxy` invocations: one fresh instance per request from the pre-instantiated
//! component, with outbound HTTP limited to the manifest's hosts and the storage host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::engine::{Engine, HttpModule};
use crate::limits::{Guard, Lane, LaneReleaser, Limits, Usage};
use crate::output::OutputCapture;
use crate::{ComputeError, Outbound, STORE_HOST};

/// A request for a function, with its body already read (bodies are bounded).
#[derive(Debug, Clone)]
pub struct FnRequest {
    pub method: http::Method,
    /// Path and query, as the guest should see them.
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A function's response, with its body read up to the output limit.
#[derive(Debug, Clone)]
pub struct FnResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Everything about one HTTP invocation except the request.
#[derive(Clone)]
pub struct HttpInvocation {
    pub limits: Limits,
    pub env: Vec<(String, String)>,
    /// Hosts the guest may call (exact names, or `*`); [`STORE_HOST`] is always allowed.
    pub allowed_hosts: Vec<String>,
    pub outbound: Arc<dyn Outbound>,
}

/// What an HTTP invocation produced.
#[derive(Debug)]
pub struct HttpOutcome {
    pub result: Result<FnResponse, ComputeError>,
    pub usage: Usage,
    /// The guest's stdout and stderr, for logs.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub(crate) struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    guard: Guard,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound policy: the storage host goes to [`Outbound`], allowed hosts to the network,
/// everything else is refused with `HTTP-request-denied`.
struct Hooks {
    allowed_hosts: Vec<String>,
    /// Which addresses the network side may reach, checked after resolution.
    egress: crate::EgressPolicy,
    outbound: Arc<dyn Outbound>,
    max_body: u64,
    /// A guest waiting for an outbound answer gives its CPU lane back.
    lane: LaneReleaser,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        self.lane.release();
        let host = request.uri().host().unwrap_or("").to_ascii_lowercase();
        if host == STORE_HOST {
            let outbound = self.outbound.clone();
            let max_body = self.max_body;
            return Box::new(async move {
                let (parts, body) = request.into_parts();
                let body = http_body_util::Limited::new(body, max_body as usize)
                    .collect()
                    .await
                    .map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)))?
                    .to_bytes();
                let path = parts.uri.path().to_owned();
                let (status, body) = outbound.store(parts.method, path, body).await;
                let response = http::Response::builder()
                    .status(status)
                    .body(Full::new(body).map_err(never_fails).boxed_unsync())
                    .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
                let done: Box<
                    dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send,
                > = Box::new(async { Ok(()) });
                Ok((response, done))
            });
        }
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(&host));
        if !allowed {
            tracing::debug!(%host, "outbound request to a host the manifest does not allow");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // Even an allowed name may resolve to the node itself, its LAN or a metadata
        // service: the egress policy checks the resolved address, and the connection
        // goes to the address checked.
        let egress = self.egress.clone();
        Box::new(async move { crate::egress::send(&egress, request, options).await })
    }
}

impl Engine {
    /// Runs one request through a fresh instance of `module`.
    pub async fn invoke_http(
        &self,
        module: &HttpModule,
        invocation: &HttpInvocation,
        request: FnRequest,
    ) -> HttpOutcome {
        let started = Instant::now();
        let bytes_in = request.body.len() as u64;
        let stdout = OutputCapture::new(1 << 20, 16 << 10);
        let stderr = OutputCapture::new(1 << 20, 16 << 10);
        let mut usage = Usage {
            bytes_in,
            ..Usage::default()
        };
        let result = self
            .run_http(module, invocation, request, &stdout, &stderr, &mut usage)
            .await;
        usage.wall = started.elapsed();
        if let Ok(response) = &result {
            usage.bytes_out = response.body.len() as u64;
        }
        HttpOutcome {
            result,
            usage,
            stdout: stdout.contents(),
            stderr: stderr.contents(),
        }
    }

    async fn run_http(
        &self,
        module: &HttpModule,
        invocation: &HttpInvocation,
        request: FnRequest,
        stdout: &OutputCapture,
        stderr: &OutputCapture,
        usage: &mut Usage,
    ) -> Result<FnResponse, ComputeError> {
        let limits = invocation.limits;
        let permit = self.slot(Duration::from_secs(2)).await?;
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&invocation.env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let lane = Lane::new(
            self.inner.lanes.clone(),
            self.inner.short_activity.clone(),
            self.inner.config.epoch_tick,
        );
        let state = HttpState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                allowed_hosts: invocation.allowed_hosts.clone(),
                egress: self.inner.config.egress.clone(),
                outbound: invocation.outbound.clone(),
                max_body: self.inner.config.max_outbound_body_bytes,
                lane: lane.releaser(),
            },
            guard: Guard::new(limits).with_lane(lane),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.guard);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| ComputeError::Setup(format!("fuel: {e:#}")))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().guard.on_epoch()));

        // The request's header map is moved in whole: it was parsed and checked once when
        // the request arrived, and inserting each header again into a builder would parse
        // every name and value a second time and allocate a new map, on every call.
        let uri: http::Uri = format!("http://localhost{}", request.path_and_query)
            .parse()
            .map_err(|e| ComputeError::Setup(format!("request: {e}")))?;
        let mut hyper_request = http::Request::new(Full::new(request.body).map_err(never_fails));
        *hyper_request.method_mut() = request.method;
        *hyper_request.uri_mut() = uri;
        *hyper_request.headers_mut() = request.headers;

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, hyper_request)
            .map_err(|e| ComputeError::Setup(format!("incoming request: {e:#}")))?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| ComputeError::Setup(format!("response outparam: {e:#}")))?;
        let proxy = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| ComputeError::Trap(format!("instantiation failed: {e:#}")))?;

        // The guest and the reader of its response run side by side in this task (a task
        // of their own per call would cost a spawn and a cross-thread wake-up each): the
        // guest streams its body while we read it.
        let guest = async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            let fuel_left = store.get_fuel().unwrap_or(0);
            let guard = &store.data().guard;
            let explained = result.as_ref().err().map(|e| guard.explain(e));
            drop(permit);
            (
                explained,
                limits.fuel.saturating_sub(fuel_left),
                guard.peak_memory,
            )
        };
        let read = async {
            match receiver.await {
                Ok(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    match http_body_util::Limited::new(body, limits.max_output_bytes as usize)
                        .collect()
                        .await
                    {
                        Ok(collected) => Ok(FnResponse {
                            status: parts.status.as_u16(),
                            headers: parts.headers,
                            body: collected.to_bytes(),
                        }),
                        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                            Err(ComputeError::OutputTooLarge(limits.max_output_bytes))
                        }
                        Err(e) => Err(ComputeError::NoResponse(format!(
                            "the response body failed: {e}"
                        ))),
                    }
                }
                Ok(Err(code)) => Err(ComputeError::NoResponse(format!(
                    "the function answered with an error: {code:?}"
                ))),
                Err(_) => Err(ComputeError::NoResponse(
                    "the function ended without sending a response".into(),
                )),
            }
        };
        // The guard stops a running guest at its deadline; this outer bound also covers a
        // guest parked in a host call, where epochs cannot interrupt it.
        let backstop = limits.timeout.map(|t| t + Duration::from_secs(1));
        let timed_out =
            || ComputeError::Timeout(limits.timeout.map(|t| t.as_millis() as u64).unwrap_or(0));
        let both = async {
            tokio::pin!(guest);
            tokio::pin!(read);
            let mut finished = None;
            let read_result = loop {
                tokio::select! {
                    done = &mut guest, if finished.is_none() => finished = Some(done),
                    r = &mut read => break r,
                }
            };
            // A guest still writing a body nobody will read is stopped (dropped) here;
            // one that answered goes on to its end (within the backstop).
            let finished = match (finished, &read_result) {
                (Some(done), _) => Some(done),
                (None, Ok(_)) => Some(guest.await),
                (None, Err(_)) => None,
            };
            (read_result, finished)
        };
        let (read_result, finished) = match backstop {
            Some(limit) => match tokio::time::timeout(limit, both).await {
                Ok(r) => r,
                Err(_) => return Err(timed_out()),
            },
            None => both.await,
        };
        match finished {
            Some((explained, fuel, peak)) => {
                usage.fuel = fuel;
                usage.peak_memory_bytes = peak;
                match (read_result, explained) {
                    (Ok(response), _) => Ok(response),
                    (Err(ComputeError::OutputTooLarge(n)), _) => {
                        Err(ComputeError::OutputTooLarge(n))
                    }
                    // The guest's own failure explains a missing response best.
                    (Err(_), Some(reason)) => Err(reason),
                    (Err(e), None) => Err(e),
                }
            }
            None => read_result,
        }
    }
}

fn never_fails(never: std::convert::Infallible) -> wasmtime_wasi_http::Error {
    match never {}
}
