//! The function gateway: serves `/fn/<name>/...` from a local replica when this node has
//! one, otherwise forwards over the mesh to a replica, retrying another replica when one
//! is unreachable (any method if the request never reached a guest, idempotent methods
//! otherwise). Every call carries a W3C trace id from the edge to the replica.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xnode_ledger::Resource;

use bytes::Bytes;
use xnode_compute::{ComputeError, FnRequest, HttpInvocation, NoStorage, Outbound};
use xnode_mesh::MeshError;
use xnode_types::NodeId;

use super::outbound::StoreOutbound;
use super::proto::{ComputeRequest, ComputeResponse, LogLine, LogsAuth};
use super::spec::Kind;
use super::{Compute, ComputeOpError, Deployment, unix_ms};

/// Largest request body a function accepts.
pub const MAX_REQUEST_BODY: usize = 16 << 20;

/// A W3C trace context: the trace id that follows a request everywhere, and the span id
/// of the hop that sent it.
#[derive(Clone, Debug)]
pub struct TraceContext {
    pub trace_id: String,
    pub parent_span: String,
}

impl TraceContext {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), or starts a new trace.
    pub fn from_header(value: Option<&str>) -> TraceContext {
        if let Some(v) = value {
            let parts: Vec<&str> = v.trim().split('-').collect();
            if parts.len() == 4
                && parts[1].len() == 32
                && parts[2].len() == 16
                && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
                && parts[2].bytes().all(|b| b.is_ascii_hexdigit())
                && parts[1] != "00000000000000000000000000000000"
            {
                return TraceContext {
                    trace_id: parts[1].to_ascii_lowercase(),
                    parent_span: parts[2].to_ascii_lowercase(),
                };
            }
        }
        TraceContext {
            trace_id: hex::encode(rand::random::<[u8; 16]>()),
            parent_span: String::new(),
        }
    }

    /// A new span id for a hop of this trace.
    pub fn new_span() -> String {
        hex::encode(rand::random::<[u8; 8]>())
    }

    pub fn header(&self, span: &str) -> String {
        format!("00-{}-{span}-01", self.trace_id)
    }
}

/// What one forward to a replica came to.
enum Attempt {
    /// An answer to give the client.
    Answer(FnAnswer),
    /// A failure that ends the call: the guest saw the request, or may have and the
    /// method may not be repeated.
    Final(ComputeOpError),
    /// A failure after which another replica may be tried.
    Retry(String),
}

/// A function call as the gateway received it.
#[derive(Debug)]
pub struct FnCall {
    pub method: http::Method,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trace: TraceContext,
}

/// A function's answer, and who served it.
#[derive(Debug)]
pub struct FnAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub fuel: u64,
    pub served_by: NodeId,
    /// Replicas tried before the one that answered.
    pub retries: u32,
}

fn guest_error(e: &ComputeError) -> ComputeOpError {
    let status = match e {
        ComputeError::Timeout(_) => 504,
        ComputeError::Busy => 503,
        _ => 502,
    };
    ComputeOpError::Guest {
        status,
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}

fn headers_to_wire(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn headers_from_wire(list: Vec<(String, Vec<u8>)>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in list {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(&v),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Hop-by-hop and gateway-owned headers a guest never sees.
fn strip_request_headers(headers: &mut http::HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "x-xnode-data-key",
    ] {
        headers.remove(name);
    }
}

/// The deployment if it is an HTTP function, else why not.
fn http_only<'a>(
    name: &str,
    deployment: Option<&'a Deployment>,
) -> Result<&'a Deployment, ComputeOpError> {
    let deployment = deployment.ok_or_else(|| ComputeOpError::NoSuchDeployment(name.to_owned()))?;
    if deployment.spec.kind != Kind::Http {
        return Err(ComputeOpError::BadRequest(format!(
            "deployment {name:?} is a {}, not an http function",
            deployment.spec.kind.as_str()
        )));
    }
    Ok(deployment)
}

impl Compute {
    /// Serves one function call through the best replica.
    /// Checks that `name` is an HTTP function this node knows, before anyone reads the
    /// request body for it: a client must not make a node buffer megabytes for nothing.
    pub fn http_function(&self, name: &str) -> Result<Deployment, ComputeOpError> {
        self.with_deployment(name, |d| http_only(name, d).cloned())
    }

    /// The same check without copying the deployment (the API checks before it reads a body).
    pub fn check_http(&self, name: &str) -> Result<(), ComputeOpError> {
        self.with_deployment(name, |d| http_only(name, d).map(|_| ()))
    }

    pub async fn handle_http(
        self: &Arc<Self>,
        name: &str,
        mut call: FnCall,
    ) -> Result<FnAnswer, ComputeOpError> {
        let deployment = self.http_function(name)?;
        strip_request_headers(&mut call.headers);
        let mut targets = self.place_for_call(&deployment.spec);
        if targets.is_empty() {
            return Err(ComputeOpError::Unavailable(format!(
                "no live node can run {name:?} (check its placement constraints)"
            )));
        }
        self.order_candidates(name, &mut targets);

        let gateway_span = TraceContext::new_span();
        let started_nanos = crate::tracing_export::unix_nanos();
        let result = self
            .route(name, &deployment, &targets, &call, &gateway_span)
            .await;
        if self.telemetry.spans.enabled() {
            self.record_gateway_span(name, &call, gateway_span, started_nanos, &result);
        }
        result
    }

    /// The order in which replicas are tried: this node first when it is a replica, then
    /// replicas whose connection just failed last, healthy replicas before degraded ones,
    /// nearest first by network coordinates
    /// (replicas within about 10 % of each other are one band, spread round robin), and
    /// replicas whose distance is not known yet last.
    fn order_candidates(&self, name: &str, targets: &mut [NodeId]) {
        if !targets.is_empty() && !targets.contains(&self.node_id) {
            let k =
                self.control.round_robin.fetch_add(1, Ordering::Relaxed) as usize % targets.len();
            targets.rotate_left(k);
        }
        let degraded = self.degraded_nodes(name);
        // Suspect replicas (their connection just failed) go last, after degraded ones:
        // they are tried only when nothing better is left.
        let suspects: Vec<NodeId> = {
            let local = xnode_types::lock(&self.local);
            let now = Instant::now();
            targets
                .iter()
                .copied()
                .filter(|n| local.suspects.is_suspect(n, now))
                .collect()
        };
        targets.sort_by_cached_key(|n| {
            (
                *n != self.node_id,
                suspects.contains(n),
                degraded.contains(n),
                xnode_mesh::vivaldi::distance_band(self.mesh.estimated_rtt(n)),
            )
        });
    }

    fn record_gateway_span(
        &self,
        name: &str,
        call: &FnCall,
        gateway_span: String,
        started_nanos: u64,
        result: &Result<FnAnswer, ComputeOpError>,
    ) {
        self.telemetry
            .spans
            .record(crate::tracing_export::SpanRecord {
                trace_id: call.trace.trace_id.clone(),
                span_id: gateway_span,
                parent_span_id: call.trace.parent_span.clone(),
                name: format!("{} /fn/{name}", call.method),
                kind: 2,
                start_unix_nanos: started_nanos,
                end_unix_nanos: crate::tracing_export::unix_nanos(),
                attributes: vec![
                    ("xnode.deployment".into(), name.to_owned()),
                    ("xnode.node".into(), self.node_id.to_string()),
                    ("xnode.role".into(), "gateway".into()),
                    (
                        "xnode.served_by".into(),
                        result
                            .as_ref()
                            .map(|a| a.served_by.to_string())
                            .unwrap_or_default(),
                    ),
                ],
                error: !matches!(result, Ok(a) if a.status < 500),
            });
    }

    /// Tries the targets in order until one answers (see the module docs for retries).
    async fn route(
        self: &Arc<Self>,
        name: &str,
        deployment: &Deployment,
        targets: &[NodeId],
        call: &FnCall,
        gateway_span: &str,
    ) -> Result<FnAnswer, ComputeOpError> {
        let idempotent = matches!(
            call.method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::PUT
                | http::Method::DELETE
                | http::Method::OPTIONS
        );
        let mut failures = Vec::new();
        let hedgeable = self.config.hedging
            && matches!(
                call.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            );
        let mut next = 0usize;
        while let Some(&node) = targets.get(next) {
            let node = &node;
            let retries = u32::try_from(next).unwrap_or(u32::MAX);
            next += 1;
            if *node == self.node_id {
                let started = Instant::now();
                let result = self
                    .invoke_local(deployment, call, gateway_span, None)
                    .await;
                self.note_forward(
                    name,
                    *node,
                    started.elapsed(),
                    !matches!(result, Err((_, false))),
                );
                match result {
                    Ok(mut answer) => {
                        answer.retries = retries;
                        self.observe_call(deployment, self.node_id, answer.fuel);
                        return Ok(answer);
                    }
                    Err((e, reached_guest)) => {
                        if reached_guest {
                            return Err(e);
                        }
                        failures.push(format!("{node}: {e}"));
                        continue;
                    }
                }
            }
            let first = self.attempt_remote(
                name,
                deployment,
                *node,
                call,
                gateway_span,
                idempotent,
                retries,
            );
            let hedge_to = targets
                .get(next)
                .copied()
                .filter(|n| hedgeable && *n != self.node_id);
            let (outcome, hedge_loser) = match hedge_to {
                None => (first.await, None),
                Some(second_node) => {
                    let first_started = Instant::now();
                    let delay = self.hedge_delay(name);
                    tokio::pin!(first);
                    tokio::select! {
                        outcome = &mut first => (outcome, None),
                        () = tokio::time::sleep(delay) => {
                            // The first replica is slower than this deployment usually is:
                            // send the same call to the next one too (at most one extra in
                            // flight per call), and use whichever answer comes first. The
                            // other call is dropped unanswered, but its replica most likely
                            // serves it and will claim it: it is metered too (below), so
                            // receipts do not fall short of the provider's honest count.
                            next += 1;
                            self.count_hedge("sent");
                            let second = self.attempt_remote(
                                name,
                                deployment,
                                second_node,
                                call,
                                gateway_span,
                                idempotent,
                                retries.saturating_add(1),
                            );
                            tokio::pin!(second);
                            tokio::select! {
                                outcome = &mut first => match outcome {
                                    Attempt::Retry(reason) => {
                                        failures.push(reason);
                                        (self.hedge_outcome(second.await), None)
                                    }
                                    other => (other, Some(second_node)),
                                },
                                outcome = &mut second => match outcome {
                                    Attempt::Retry(reason) => {
                                        failures.push(reason);
                                        (first.await, None)
                                    }
                                    other => {
                                        // The first replica lost the race to a peer
                                        // asked after it: its health learns that, and
                                        // how slow it was at least.
                                        self.note_lost_race(name, *node, first_started.elapsed());
                                        (self.hedge_outcome(other), Some(*node))
                                    }
                                },
                            }
                        }
                    }
                }
            };
            match outcome {
                Attempt::Answer(answer) => {
                    self.observe_call(deployment, answer.served_by, answer.fuel);
                    if let Some(loser) = hedge_loser {
                        // The losing call was sent and not known to have failed: the same
                        // request, so the same fuel is the best estimate (bounded by the
                        // deployment's limit in `observe_call`). The edge's count only
                        // bounds what a provider may claim; it never pays by itself.
                        self.observe_call(deployment, loser, answer.fuel);
                    }
                    return Ok(answer);
                }
                Attempt::Final(e) => return Err(e),
                Attempt::Retry(reason) => failures.push(reason),
            }
        }
        Err(ComputeOpError::Unavailable(format!(
            "no replica of {name:?} could serve the request ({})",
            failures.join("; ")
        )))
    }

    /// Counts the use of a hedged call's second answer.
    fn hedge_outcome(&self, outcome: Attempt) -> Attempt {
        if matches!(outcome, Attempt::Answer(_)) {
            self.count_hedge("won");
        }
        outcome
    }

    fn count_hedge(&self, outcome: &str) {
        self.telemetry
            .metrics
            .hedges
            .get_or_create(&super::usage::ForwardLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// How long an idempotent call waits for its first replica before it is hedged.
    fn hedge_delay(&self, name: &str) -> Duration {
        let (min, max) = (self.config.hedge_min_delay, self.config.hedge_max_delay);
        xnode_types::lock(&self.local)
            .latency
            .get(name)
            .map_or(max, |w| w.hedge_delay(min, max))
    }

    /// Forwards the call to one remote replica and judges the result. Everything but the
    /// metering happens here: the caller meters the answer used, and a hedge's loser.
    #[allow(clippy::too_many_arguments)]
    async fn attempt_remote(
        &self,
        name: &str,
        deployment: &Deployment,
        node: NodeId,
        call: &FnCall,
        gateway_span: &str,
        repeatable: bool,
        retries: u32,
    ) -> Attempt {
        let started = Instant::now();
        match self.forward(node, deployment, call, gateway_span).await {
            Ok(ComputeResponse::Invoked {
                status,
                headers,
                body,
                fuel,
            }) => {
                self.count_forward("ok");
                let latency = started.elapsed();
                self.note_forward(name, node, latency, true);
                {
                    let mut local = xnode_types::lock(&self.local);
                    local.suspects.clear(&node);
                    local
                        .latency
                        .entry(name.to_owned())
                        .or_default()
                        .record(latency);
                }
                Attempt::Answer(FnAnswer {
                    status,
                    headers: headers_from_wire(headers),
                    body: Bytes::from(body),
                    fuel,
                    served_by: node,
                    retries,
                })
            }
            Ok(ComputeResponse::Failed {
                status,
                code,
                message,
                reached_guest,
            }) => {
                self.note_forward(name, node, started.elapsed(), !reached_guest);
                if reached_guest {
                    return Attempt::Final(ComputeOpError::Guest {
                        status,
                        code,
                        message,
                    });
                }
                Attempt::Retry(format!("{node}: {message}"))
            }
            Ok(_) => Attempt::Retry(format!("{node}: unexpected answer")),
            Err(e) => {
                self.count_forward("unreachable");
                self.note_forward(name, node, started.elapsed(), false);
                if matches!(
                    e,
                    MeshError::Unreachable { .. } | MeshError::ConnectionLost { .. }
                ) {
                    // The connection dropped or the dial was refused: the node is most
                    // likely dead. Later calls skip it at once rather than each finding
                    // out again until the failure detector declares it.
                    xnode_types::lock(&self.local).suspects.mark(
                        node,
                        Instant::now(),
                        self.config.suspect_for,
                    );
                }
                let never_sent = matches!(e, MeshError::Unreachable { .. } | MeshError::Closed);
                if !never_sent && !repeatable {
                    return Attempt::Final(ComputeOpError::Unavailable(format!(
                        "replica {node} did not answer and a {} may not be repeated: {e}",
                        call.method
                    )));
                }
                Attempt::Retry(format!("{node}: {e}"))
            }
        }
    }

    fn count_forward(&self, outcome: &str) {
        self.telemetry
            .metrics
            .forwarded
            .get_or_create(&super::usage::ForwardLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    async fn forward(
        &self,
        node: NodeId,
        deployment: &Deployment,
        call: &FnCall,
        parent: &str,
    ) -> Result<ComputeResponse, MeshError> {
        let span = TraceContext::new_span();
        let started_nanos = crate::tracing_export::unix_nanos();
        tracing::debug!(trace_id = %call.trace.trace_id, %span, deployment = %deployment.spec.name, to = %node, "forwarding a function call");
        let request = ComputeRequest::Invoke {
            deployment: deployment.spec.name.clone(),
            owner: deployment.owner.to_hex(),
            method: call.method.to_string(),
            path_and_query: call.path_and_query.clone(),
            headers: headers_to_wire(&call.headers),
            body: call.body.to_vec(),
            trace_id: call.trace.trace_id.clone(),
            parent_span: span.clone(),
        };
        let limits = deployment.spec.limits(&self.config);
        let timeout = limits.timeout.unwrap_or(Duration::from_secs(30)) + Duration::from_secs(3);
        let result = self.endpoint.call(node, request, timeout).await;
        if self.telemetry.spans.enabled() {
            self.telemetry
                .spans
                .record(crate::tracing_export::SpanRecord {
                    trace_id: call.trace.trace_id.clone(),
                    span_id: span,
                    parent_span_id: parent.to_owned(),
                    name: format!("forward {}", deployment.spec.name),
                    kind: 3,
                    start_unix_nanos: started_nanos,
                    end_unix_nanos: crate::tracing_export::unix_nanos(),
                    attributes: vec![
                        ("xnode.deployment".into(), deployment.spec.name.clone()),
                        ("xnode.node".into(), self.node_id.to_string()),
                        ("xnode.peer".into(), node.to_string()),
                    ],
                    error: !matches!(result, Ok(ComputeResponse::Invoked { .. })),
                });
        }
        result
    }

    /// Meters, as the owner's edge, a call `provider` answered with `fuel` burnt. The fuel
    /// is the provider's own report, bounded by the deployment's fuel limit, so an answer
    /// cannot claim more than a call may burn.
    fn observe_call(&self, deployment: &Deployment, provider: NodeId, fuel: u64) {
        let limit = deployment.spec.limits(&self.config).fuel;
        self.metering
            .observed(deployment.owner, provider, Resource::FunctionRequests, 1);
        self.metering.observed(
            deployment.owner,
            provider,
            Resource::FunctionFuel,
            fuel.min(limit),
        );
    }

    /// Runs a forwarded call here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn answer_invoke(
        self: &Arc<Self>,
        from: NodeId,
        name: String,
        owner: String,
        method: String,
        path_and_query: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        trace_id: String,
        parent_span: String,
    ) -> ComputeResponse {
        let Some(deployment) = self
            .deployment(&name)
            .filter(|d| d.owner.to_hex() == owner && d.spec.kind == Kind::Http)
        else {
            return ComputeResponse::Failed {
                status: 404,
                code: "no_such_deployment".into(),
                message: format!("node {} has no http deployment {name:?}", self.node_id),
                reached_guest: false,
            };
        };
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return ComputeResponse::Failed {
                status: 400,
                code: "bad_request".into(),
                message: "invalid method".into(),
                reached_guest: false,
            };
        };
        let call = FnCall {
            method,
            path_and_query,
            headers: headers_from_wire(headers),
            body: Bytes::from(body),
            trace: TraceContext {
                trace_id,
                parent_span: parent_span.clone(),
            },
        };
        match self
            .invoke_local(&deployment, &call, &parent_span, Some(from))
            .await
        {
            Ok(answer) => ComputeResponse::Invoked {
                status: answer.status,
                headers: headers_to_wire(&answer.headers),
                body: answer.body.to_vec(),
                fuel: answer.fuel,
            },
            Err((e, reached_guest)) => {
                let (status, code) = match &e {
                    ComputeOpError::Guest { status, code, .. } => (*status, code.clone()),
                    ComputeOpError::Unavailable(_) => (503, "unavailable".into()),
                    _ => (500, "internal".into()),
                };
                ComputeResponse::Failed {
                    status,
                    code,
                    message: e.to_string(),
                    reached_guest,
                }
            }
        }
    }

    /// Runs a call on this node. The error says whether the guest saw the request.
    async fn invoke_local(
        self: &Arc<Self>,
        deployment: &Deployment,
        call: &FnCall,
        parent: &str,
        forwarded_from: Option<NodeId>,
    ) -> Result<FnAnswer, (ComputeOpError, bool)> {
        let span = TraceContext::new_span();
        let span = span.as_str();
        let started_nanos = crate::tracing_export::unix_nanos();
        let spec = &deployment.spec;
        let (delay, error_rate) = self.handling_faults();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if error_rate > 0.0 && rand::random::<f64>() < error_rate {
            return Err((
                ComputeOpError::Guest {
                    status: 503,
                    code: "injected_fault".into(),
                    message: format!("node {} failed the call (fault injection)", self.node_id),
                },
                false,
            ));
        }
        if forwarded_from.is_some() && !self.metering.may_serve(&deployment.owner) {
            return Err((
                ComputeOpError::Guest {
                    status: 402,
                    code: "receipts_not_countersigned".into(),
                    message: format!(
                        "node {} serves this tenant again once its edge countersigns its receipts",
                        self.node_id
                    ),
                },
                false,
            ));
        }
        let module = self.http_module(deployment).await.map_err(|e| (e, false))?;
        let outbound: Arc<dyn Outbound> = match &spec.storage {
            Some(_) => match self.grant(&deployment.owner, &spec.name).await {
                Some(keys) => Arc::new(StoreOutbound {
                    storage: self.storage.clone(),
                    owner: deployment.owner,
                    keys,
                    max_object_bytes: self.config.max_store_object_mb.saturating_mul(1 << 20),
                }),
                None => Arc::new(NoStorage),
            },
            None => Arc::new(NoStorage),
        };
        let invocation = HttpInvocation {
            limits: spec.limits(&self.config),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allowed_hosts: spec.allowed_hosts.clone(),
            outbound,
        };
        let mut headers = call.headers.clone();
        if let Ok(v) = http::HeaderValue::from_str(&call.trace.header(span)) {
            headers.insert("traceparent", v);
        }
        let request = FnRequest {
            method: call.method.clone(),
            path_and_query: call.path_and_query.clone(),
            headers,
            body: call.body.clone(),
        };
        let outcome = self.engine.invoke_http(&module, &invocation, request).await;
        if outcome.result.is_ok() {
            // Metered as provider: a call that returned an answer, billed to the owner and
            // proposed to the edge that forwarded it (this node for its own calls).
            let edge = forwarded_from.unwrap_or(self.node_id);
            let owner = deployment.owner;
            self.metering
                .provided(owner, edge, Resource::FunctionRequests, 1);
            self.metering
                .provided(owner, edge, Resource::FunctionFuel, outcome.usage.fuel);
        }
        let owner = deployment.owner.to_hex();
        let failed = !matches!(&outcome.result, Ok(r) if r.status < 500);
        self.account(
            &owner,
            &spec.name,
            &outcome.usage,
            match &outcome.result {
                Ok(_) => "ok",
                Err(e) => e.code(),
            },
            failed,
        );
        let via = forwarded_from
            .map(|n| format!(" via {n}"))
            .unwrap_or_default();
        let summary = match &outcome.result {
            Ok(r) => format!(
                "{} {} -> {} in {:.1} ms, fuel {}{via}",
                call.method,
                call.path_and_query,
                r.status,
                outcome.usage.wall.as_secs_f64() * 1000.0,
                outcome.usage.fuel
            ),
            Err(e) => format!(
                "{} {} -> failed: {e}{via}",
                call.method, call.path_and_query
            ),
        };
        let line = LogLine {
            ts_ms: unix_ms(),
            node: self.node_name.to_string(),
            stream: "request".into(),
            trace_id: call.trace.trace_id.clone(),
            message: summary,
        };
        tracing::debug!(trace_id = %call.trace.trace_id, span, parent_span = parent, deployment = %spec.name, "{}", line.message);
        if self.telemetry.spans.enabled() {
            self.telemetry
                .spans
                .record(crate::tracing_export::SpanRecord {
                    trace_id: call.trace.trace_id.clone(),
                    span_id: span.to_owned(),
                    parent_span_id: parent.to_owned(),
                    name: format!("invoke {}", spec.name),
                    kind: 2,
                    start_unix_nanos: started_nanos,
                    end_unix_nanos: crate::tracing_export::unix_nanos(),
                    attributes: vec![
                        ("xnode.deployment".into(), spec.name.clone()),
                        ("xnode.node".into(), self.node_id.to_string()),
                        ("xnode.role".into(), "replica".into()),
                        ("xnode.fuel".into(), outcome.usage.fuel.to_string()),
                    ],
                    error: failed,
                });
        }
        // Most calls print nothing: the request line is then moved into the log, and
        // the templates of output lines are made only for output there is.
        if outcome.stdout.is_empty() && outcome.stderr.is_empty() {
            self.telemetry.logs.push(&owner, &spec.name, line);
        } else {
            self.telemetry.logs.push(&owner, &spec.name, line.clone());
            for (stream, bytes) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
                self.telemetry.logs.push_output(
                    &owner,
                    &spec.name,
                    LogLine {
                        stream: stream.into(),
                        ..line.clone()
                    },
                    bytes,
                );
            }
        }
        match outcome.result {
            Ok(response) => {
                let mut headers = response.headers;
                if let Ok(v) = http::HeaderValue::from_str(&call.trace.header(span)) {
                    headers.insert("traceparent", v);
                }
                Ok(FnAnswer {
                    status: response.status,
                    headers,
                    body: response.body,
                    fuel: outcome.usage.fuel,
                    served_by: self.node_id,
                    retries: 0,
                })
            }
            Err(ComputeError::Busy) => Err((guest_error(&ComputeError::Busy), false)),
            Err(e) => Err((guest_error(&e), true)),
        }
    }

    /// The compiled module of an http deployment, from this node's cache or fetched from
    /// the network and compiled.
    pub(crate) async fn http_module(
        &self,
        deployment: &Deployment,
    ) -> Result<xnode_compute::HttpModule, ComputeOpError> {
        let id = deployment
            .spec
            .module_id()
            .ok_or_else(|| ComputeOpError::BadRequest("module is not a content id".into()))?;
        if let Some(m) = xnode_types::lock(&self.local).http_modules.get(&id) {
            return Ok(m.clone());
        }
        let bytes = self
            .module_bytes(&deployment.spec)
            .await
            .map_err(|e| ComputeOpError::Unavailable(e.to_string()))?;
        let module = self
            .engine
            .http_module(bytes)
            .await
            .map_err(|e| guest_error(&e))?;
        xnode_types::lock(&self.local)
            .http_modules
            .insert(id, module.clone());
        Ok(module)
    }

    /// Gathers a deployment's recent log lines from every live node. Peers answer only
    /// with `auth`, the tenant's signed request for them; this node's own lines are
    /// given to the caller, who checked the tenant's request.
    pub async fn gather_logs(
        &self,
        owner: &xnode_types::PublicKeyBytes,
        name: &str,
        auth: &LogsAuth,
    ) -> Vec<LogLine> {
        let mut lines = self.telemetry.logs.get(&owner.to_hex(), name);
        let calls = self
            .candidates()
            .into_iter()
            .filter(|c| c.id != self.node_id)
            .map(|c| {
                let request = ComputeRequest::SignedLogsV2 {
                    owner: owner.to_hex(),
                    deployment: name.to_owned(),
                    auth: auth.clone(),
                };
                async move { self.call(c.id, request, Duration::from_secs(2)).await }
            });
        for answer in futures::future::join_all(calls).await {
            if let Ok(ComputeResponse::Logs(more)) = answer {
                lines.extend(more);
            }
        }
        lines.sort_by_key(|l| l.ts_ms);
        lines
    }
}
