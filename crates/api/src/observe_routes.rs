//! Observability routes (`/v1/observe/...`) and the middleware that measures every API
//! request for the network-wide view.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::HttpBody as _;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use xnode_node::Node;
use xnode_node::observe::{NetworkReport, NodeReport, WindowReports};
use xnode_observe::Outcome;
use xnode_types::PublicKeyBytes;
use xnode_types::request_auth::HEADER_TENANT;

use crate::error::ApiError;

/// The scopes a request is counted in, or none for monitoring traffic (health checks,
/// metrics scrapes and views of the network), which would otherwise drown what it watches.
fn scopes_of(path: &str) -> Vec<String> {
    if path == "/healthz"
        || path == "/metrics"
        || path == "/v1/events"
        || xnode_studio::is_studio_path(path)
        || path.starts_with("/v1/observe")
        || path.starts_with("/v1/nodes")
        || path == "/v1/node"
    {
        return Vec::new();
    }
    let mut scopes = vec!["api".to_owned()];
    if let Some(rest) = path.strip_prefix("/v1/buckets") {
        scopes.push("storage".to_owned());
        if let Some(bucket) = rest
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|b| !b.is_empty())
        {
            scopes.push(format!("bucket:{bucket}"));
        }
    } else if path.starts_with("/v1/storage") {
        scopes.push("storage".to_owned());
    } else if let Some(rest) = path.strip_prefix("/fn/") {
        // Function calls are their own traffic, not API calls.
        scopes.clear();
        scopes.push("functions".to_owned());
        if let Some(name) = rest.split('/').next().filter(|n| !n.is_empty()) {
            scopes.push(format!("deployment:{name}"));
        }
    }
    scopes
}

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `control`, `storage` (later `functions`, `s3`).
    group: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: &'static str,
}

/// Prometheus metrics of the HTTP API, registered under the `api_` prefix.
#[derive(Clone)]
pub(crate) struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<GroupLabel, PromHistogram>,
}

impl ApiMetrics {
    pub(crate) fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                PromHistogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
        };
        // Create every series up front, so dashboards and alerts see zeros, not gaps.
        for group in ["control", "storage"] {
            for class in ["2xx", "3xx", "4xx", "5xx"] {
                let _ = m.requests.get_or_create(&RequestLabels { group, class });
            }
            let _ = m.duration.get_or_create(&GroupLabel { group });
        }
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "requests",
            "HTTP API requests by route group and status class",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "HTTP API request latency by route group",
            prometheus_client::registry::Unit::Seconds,
            m.duration.clone(),
        );
        m
    }
}

/// Records every request's outcome, latency and size in this node's recorder (for the
/// network-wide view) and in the `api_` Prometheus metrics.
pub(crate) async fn measure(
    State((node, metrics)): State<(Node, ApiMetrics)>,
    request: Request,
    next: Next,
) -> Response {
    let scopes = scopes_of(request.uri().path());
    if scopes.is_empty() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let bytes_in = content_length(request.headers());
    let tenant = request
        .headers()
        .get(HEADER_TENANT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| PublicKeyBytes::from_hex(v).ok());
    let response = next.run(request).await;
    // A scope per bucket or deployment only for names that exist (checked after the
    // request, so a bucket created by it counts): names from anonymous URLs must not fill
    // the node's scopes and push real buckets into `other`.
    let scopes: Vec<String> = scopes
        .into_iter()
        .filter(|scope| {
            if let Some(bucket) = scope.strip_prefix("bucket:") {
                !node.registry().claims("bucket", bucket).is_empty()
            } else if let Some(name) = scope.strip_prefix("deployment:") {
                node.compute().with_deployment(name, |d| d.is_some())
            } else {
                true
            }
        })
        .collect();
    let status = response.status().as_u16();
    let group = if scopes.iter().any(|s| s == "storage") {
        "storage"
    } else if scopes.iter().any(|s| s == "functions") {
        "functions"
    } else {
        "control"
    };
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics
        .requests
        .get_or_create(&RequestLabels { group, class })
        .inc();
    metrics
        .duration
        .get_or_create(&GroupLabel { group })
        .observe(started.elapsed().as_secs_f64());
    let outcome = Outcome {
        status,
        latency_us: started.elapsed().as_micros() as u64,
        bytes_in,
        bytes_out: response
            .body()
            .size_hint()
            .exact()
            .unwrap_or_else(|| content_length(response.headers())),
        fuel: response
            .extensions()
            .get::<crate::compute_routes::FunctionFuel>()
            .map(|f| f.0)
            .unwrap_or(0),
    };
    // Requests that failed authentication do not make their claimed tenant active.
    let tenant = tenant.filter(|_| status != 401);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    node.recorder().record(&scopes, outcome, tenant, now);
    response
}

#[utoipa::path(get, path = "/v1/observe/network", responses((status = 200, description = "live nodes and per-window totals per scope")))]
pub(crate) async fn network(State(node): State<Node>) -> Json<NetworkReport> {
    Json(node.observe_network())
}

#[utoipa::path(get, path = "/v1/observe/deployments/{name}", params(("name" = String, Path)), responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn one_deployment(
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Result<Json<xnode_node::observe::ScopeObservation>, ApiError> {
    let observation = node.observe_scope(&format!("deployment:{name}"));
    if observation.windows.is_empty() && node.compute().deployment(&name).is_none() {
        return Err(ApiError::NotFound(format!(
            "no deployment {name:?} and no recent activity under that name"
        )));
    }
    Ok(Json(observation))
}

#[derive(serde::Serialize)]
pub(crate) struct NodeObservation {
    #[serde(flatten)]
    node: NodeReport,
    windows: WindowReports,
}

/// `GET /v1/observe/nodes/{id}`: one node's figures. Beyond `observe_summaries_up_to` live
/// nodes they are asked of that node (summaries are no longer gossiped); 503 if it does not
/// answer and this node holds nothing of it.
#[utoipa::path(get, path = "/v1/observe/nodes/{id}", params(("id" = String, Path)), responses((status = 200), (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn one_node(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> Result<Json<NodeObservation>, ApiError> {
    let parsed = id
        .parse()
        .map_err(|e: xnode_types::KeyError| ApiError::BadRequest(e.to_string()))?;
    let (report, windows) = node
        .observe_node(&parsed)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "node {id} is not a live member this node knows, and none of its figures has reached this node"
            ))
        })?;
    Ok(Json(NodeObservation {
        node: report,
        windows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_is_not_counted_and_buckets_get_their_scope() {
        assert!(scopes_of("/metrics").is_empty());
        assert!(scopes_of("/v1/observe/network").is_empty());
        assert!(scopes_of("/v1/events").is_empty());
        assert!(scopes_of("/").is_empty());
        assert!(scopes_of("/assets/app.js").is_empty());
        assert!(scopes_of("/storage/photos").is_empty());
        assert_eq!(
            scopes_of("/v1/buckets/photos/objects/a/b"),
            ["api", "storage", "bucket:photos"]
        );
        assert_eq!(scopes_of("/v1/buckets"), ["api", "storage"]);
        assert_eq!(scopes_of("/v1/admin/faults"), ["api"]);
    }
}
