//! Routes of the control API and their documented request and response shapes.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};
use xnode_mesh::{FaultRules, LinkFault};
use xnode_node::{Node, NodeSummary};

use crate::error::{ApiError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Xnode control API",
        description = "The control API every Xnode node serves."
    ),
    paths(
        healthz,
        crate::ledger_routes::list_receipts,
        crate::ledger_routes::put_grant,
        crate::ledger_routes::ledger_status,
        crate::ledger_routes::ledger_epoch,
        crate::ledger_routes::ledger_claim,
        crate::ledger_routes::exit_clearance,
        get_node,
        list_workers,
        list_nodes,
        get_one_node,
        metrics,
        get_faults,
        put_faults,
        crate::node_routes::start_drain,
        crate::node_routes::drain_status,
        crate::node_routes::leave,
        crate::storage_routes::health,
        crate::storage_routes::reputation,
        crate::storage_routes::list_buckets,
        crate::storage_routes::get_bucket,
        crate::storage_routes::create_bucket,
        crate::storage_routes::delete_bucket,
        crate::storage_routes::list_objects,
        crate::storage_routes::put_object,
        crate::storage_routes::get_object,
        crate::storage_routes::head_object,
        crate::storage_routes::delete_object,
        crate::observe_routes::network,
        crate::coordinate_routes::coordinates,
        crate::observe_routes::one_node,
        crate::studio_routes::events,
        crate::studio_routes::series,
        crate::studio_routes::object_details,
        crate::s3_routes::create_key,
        crate::s3_routes::list_keys,
        crate::s3_routes::delete_key,
        crate::revocation_routes::revoke,
        crate::payout_routes::bind,
        crate::kms_routes::put_key,
        crate::kms_routes::list_keys,
    ),
    components(schemas(
        Health,
        NodeView,
        WorkerView,
        WorkerProgressView,
        NodeListItem,
        CapacityView,
        FaultsView,
        LinkView,
        ErrorBody,
        crate::node_routes::DrainView,
        crate::storage_routes::HealthView,
        crate::storage_routes::ReputationView,
        crate::storage_routes::BucketView,
        crate::storage_routes::SignedBucketChange,
        crate::storage_routes::ObjectView,
        crate::studio_routes::ObjectDetailsView,
        crate::studio_routes::ChunkView,
        crate::s3_routes::CreateS3Key,
        crate::s3_routes::S3KeyView,
        crate::revocation_routes::SignedRevocation,
        crate::revocation_routes::RevocationView,
        crate::payout_routes::SignedPayoutBinding,
        crate::payout_routes::PayoutBindingView,
        crate::kms_routes::SignedKmsKey,
        crate::kms_routes::KmsKeyView,
        crate::ledger_routes::ReceiptView,
        crate::ledger_routes::ReceiptsView,
        crate::ledger_routes::GrantView,
        crate::ledger_routes::LedgerStatusView,
        crate::ledger_routes::EpochView,
        crate::ledger_routes::VoteView,
        crate::ledger_routes::PayoutView,
        crate::ledger_routes::ChargeView,
        crate::ledger_routes::ClaimView,
        crate::ledger_routes::OperatorView,
        crate::ledger_routes::PenaltyView,
        crate::ledger_routes::SlashView,
        crate::ledger_routes::ContextView,
        crate::ledger_routes::ExitClearanceRequest,
        crate::ledger_routes::ExitClearanceView,
        crate::coordinate_routes::CoordinatesView,
        crate::coordinate_routes::PeerCoordinateView,
        crate::coordinate_routes::CoordinateView
    ))
)]
pub struct ApiDoc;

pub(crate) fn router(node: Node) -> Router {
    let api_metrics = node.with_metrics_registry(crate::observe_routes::ApiMetrics::register);
    let allowed_hosts = std::sync::Arc::new(crate::host_check::AllowedHosts::new(
        node.config().api,
        &node.local().api_url,
        &node.config().http.allowed_hosts,
    ));
    let state = crate::storage_routes::AppState {
        guard: std::sync::Arc::new(crate::auth::ReplayGuard::new(
            node.tenant_rate_limit().clone(),
        )),
        node,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/node", get(get_node))
        .route("/v1/node/workers", get(list_workers))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", get(get_one_node))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/admin/faults", get(get_faults).put(put_faults))
        .route("/v1/observe/network", get(crate::observe_routes::network))
        .route("/v1/observe/nodes/{id}", get(crate::observe_routes::one_node))
        .route("/v1/observe/deployments/{name}", get(crate::observe_routes::one_deployment))
        .route("/v1/observe/series", get(crate::studio_routes::series))
        .route("/v1/events", get(crate::studio_routes::events))
        .route(
            "/v1/buckets/{bucket}/details/{*key}",
            get(crate::studio_routes::object_details),
        )
        .merge(crate::storage_routes::routes())
        .merge(crate::node_routes::routes())
        .merge(crate::coordinate_routes::routes())
        .merge(crate::compute_routes::routes())
        .merge(xnode_studio::router())
        .merge(crate::s3_routes::routes())
        .merge(crate::revocation_routes::routes())
        .merge(crate::payout_routes::routes())
        .merge(crate::kms_routes::routes())
        .merge(crate::ledger_routes::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            (state.node.clone(), api_metrics),
            crate::observe_routes::measure,
        ))
        // Outside the measurement, so a refused host costs nothing more than the check.
        .layer(axum::middleware::from_fn_with_state(
            allowed_hosts,
            crate::host_check::check_host,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Liveness of this node's API.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the node answers.
    pub status: String,
    pub id: String,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(node): State<Node>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        id: node.id().to_string(),
    })
}

/// This node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// The node id (libp2p peer id).
    pub id: String,
    /// libp2p multiaddrs the node listens on.
    pub addresses: Vec<String>,
    pub api_url: String,
    pub zone: String,
    pub version: String,
    pub network: String,
    /// Raised on every restart and refutation.
    pub incarnation: u64,
    /// RFC 3339 start time of this incarnation.
    pub started_at: String,
}

#[utoipa::path(get, path = "/v1/node", responses((status = 200, body = NodeView)))]
async fn get_node(State(node): State<Node>) -> Json<NodeView> {
    let me = node.local();
    Json(NodeView {
        id: me.id.to_string(),
        addresses: me.addresses,
        api_url: me.api_url,
        zone: me.zone,
        version: me.version,
        network: me.network,
        incarnation: me.incarnation,
        started_at: rfc3339(me.started_at_ms),
    })
}

/// What a background worker says of its own progress.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WorkerProgressView {
    /// Items handled since start (chunks scrubbed, entries merged, requests served…).
    pub items_done: u64,
    /// Items waiting, where the worker knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// One line about where the worker stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One background worker of this node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub name: String,
    /// `idle`, `busy`, `error` (the last step failed; it retries) or `done`.
    pub state: String,
    /// Steps of work done since start.
    pub steps: u64,
    /// Steps that failed since start.
    pub errors: u64,
    pub consecutive_errors: u64,
    /// Unix ms when the last step ended.
    pub last_run_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub progress: WorkerProgressView,
}

/// Every background worker of this node (repair, scrub, GC, gossip intake, anti-entropy,
/// reconciliation, RPC servers, …) and its state.
#[utoipa::path(get, path = "/v1/node/workers", responses((status = 200, body = [WorkerView])))]
async fn list_workers(State(node): State<Node>) -> Json<Vec<WorkerView>> {
    Json(
        node.workers()
            .into_iter()
            .map(|w| WorkerView {
                name: w.name,
                state: match w.state {
                    xnode_worker::WorkerState::Busy => "busy",
                    xnode_worker::WorkerState::Idle => "idle",
                    xnode_worker::WorkerState::Error => "error",
                    xnode_worker::WorkerState::Done => "done",
                }
                .into(),
                steps: w.steps,
                errors: w.errors,
                consecutive_errors: w.consecutive_errors,
                last_run_ms: w.last_run_ms,
                last_error: w.last_error,
                last_error_ms: w.last_error_ms,
                progress: WorkerProgressView {
                    items_done: w.progress.items_done,
                    queued: w.progress.queued,
                    detail: w.progress.detail,
                },
            })
            .collect(),
    )
}

/// Capacity a node advertises.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CapacityView {
    pub cpu_cores: u32,
    /// Idle CPU in thousandths of a core.
    pub cpu_free_millis: u32,
    pub memory_bytes: u64,
    pub memory_free_bytes: u64,
    pub disk_bytes: u64,
    pub disk_free_bytes: u64,
}

/// One node of the network as this node sees it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NodeListItem {
    pub id: String,
    pub addresses: Vec<String>,
    pub api_url: Option<String>,
    pub zone: Option<String>,
    /// One of `alive`, `suspect`, `dead`, `left`.
    pub state: String,
    pub incarnation: u64,
    /// RFC 3339 time this node last heard from it directly, if ever.
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<u64>,
    pub capacity: Option<CapacityView>,
    pub version: Option<String>,
    /// True for the node answering the request.
    pub is_self: bool,
    /// Smoothed round trip of the answering node's probes to this node, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// What the node's own signed record says: `active`, `draining` or `left`.
    pub status: Option<String>,
    /// The node-to-node protocol it advertises, e.g. `1.1 (oldest 1.0)`.
    pub protocol: Option<String>,
    /// The protocol version the answering node talks to it at.
    pub negotiated_protocol: Option<String>,
    /// Why the answering node refuses it (an incompatible protocol version), if it does.
    pub refused: Option<String>,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub(crate) fn to_item(s: NodeSummary) -> NodeListItem {
    NodeListItem {
        id: s.id.to_string(),
        addresses: s.addresses,
        api_url: s.api_url,
        zone: s.zone,
        state: s.state.as_str().into(),
        incarnation: s.incarnation,
        last_seen: s.last_seen_ms.map(rfc3339),
        last_seen_ms: s.last_seen_ms,
        capacity: s.capacity.map(|c| CapacityView {
            cpu_cores: c.cpu_cores,
            cpu_free_millis: c.cpu_free_millis,
            memory_bytes: c.memory_bytes,
            memory_free_bytes: c.memory_free_bytes,
            disk_bytes: c.disk_bytes,
            disk_free_bytes: c.disk_free_bytes,
        }),
        version: s.version,
        is_self: s.is_self,
        rtt_ms: s.rtt_us.map(|us| (us as f64 / 10.0).round() / 100.0),
        status: s.status.map(|status| status.as_str().to_owned()),
        protocol: s.protocol,
        negotiated_protocol: s.negotiated_protocol,
        refused: s.refused,
    }
}

#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = [NodeListItem])))]
async fn list_nodes(State(node): State<Node>) -> Json<Vec<NodeListItem>> {
    Json(node.nodes().into_iter().map(to_item).collect())
}

#[utoipa::path(
    get,
    path = "/v1/nodes/{id}",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, body = NodeListItem), (status = 404, body = ErrorBody))
)]
async fn get_one_node(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> Result<Json<NodeListItem>, ApiError> {
    node.nodes()
        .into_iter()
        .find(|n| n.id.to_string() == id)
        .map(|n| Json(to_item(n)))
        .ok_or_else(|| ApiError::NotFound(format!("no node {id} is known to this node")))
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String)))]
async fn metrics(State(node): State<Node>) -> Response {
    let mut response = node.metrics_text().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Fault-injection rules (only on nodes started with `--enable-fault-injection`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FaultsView {
    /// Probability in [0, 1] that a message is lost.
    #[serde(default)]
    pub drop_rate: f64,
    /// Extra delay in milliseconds added to requests this node sends.
    #[serde(default)]
    pub delay_ms: u64,
    /// Node ids this node is partitioned from.
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Serve corrupted chunk bytes to peers, as a lying node would.
    #[serde(default)]
    pub corrupt_chunks: bool,
    /// Extra milliseconds this node spends on every function call it runs.
    #[serde(default)]
    pub handling_delay_ms: u64,
    /// Probability in [0, 1] that this node fails a function call it was asked to run
    /// (before the guest sees it, so gateways retry elsewhere).
    #[serde(default)]
    pub handling_error_rate: f64,
    /// The modelled link to each listed peer (by node id): delay, jitter, loss and cut,
    /// applied to every mesh frame on that link.
    #[serde(default)]
    pub links: std::collections::BTreeMap<String, LinkView>,
    /// Milliseconds added to this node's object-version clock (negative: behind), to
    /// test writes through an edge with a wrong clock. At most one day either way.
    #[serde(default)]
    pub clock_offset_ms: i64,
}

/// The modelled network link from this node to one peer.
#[derive(Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinkView {
    /// One-way delay in milliseconds added to every frame sent to the peer.
    pub delay_ms: u64,
    /// Up to this many more milliseconds, drawn uniformly for each frame.
    pub jitter_ms: u64,
    /// Probability in [0, 1] that a request to the peer, or gossip from it, is lost.
    pub loss: f64,
    /// The link is cut in both directions.
    pub cut: bool,
}

impl From<LinkFault> for LinkView {
    fn from(link: LinkFault) -> Self {
        LinkView {
            delay_ms: u64::try_from(link.delay.as_millis()).unwrap_or(u64::MAX),
            jitter_ms: u64::try_from(link.jitter.as_millis()).unwrap_or(u64::MAX),
            loss: link.loss,
            cut: link.cut,
        }
    }
}

impl From<LinkView> for LinkFault {
    fn from(view: LinkView) -> Self {
        LinkFault {
            delay: Duration::from_millis(view.delay_ms),
            jitter: Duration::from_millis(view.jitter_ms),
            loss: view.loss,
            cut: view.cut,
        }
    }
}

#[utoipa::path(get, path = "/v1/admin/faults", responses((status = 200, body = FaultsView)))]
async fn get_faults(State(node): State<Node>) -> Json<FaultsView> {
    let rules = node.faults();
    Json(FaultsView {
        drop_rate: rules.drop_rate,
        delay_ms: rules.delay.as_millis() as u64,
        blocked: rules.blocked.iter().map(|b| b.to_string()).collect(),
        corrupt_chunks: node.storage().corrupt_served_chunks(),
        handling_delay_ms: node.compute().handling_faults().0.as_millis() as u64,
        handling_error_rate: node.compute().handling_faults().1,
        links: rules
            .links
            .iter()
            .map(|(peer, link)| (peer.to_string(), LinkView::from(*link)))
            .collect(),
        clock_offset_ms: node.storage().clock_offset_ms(),
    })
}

#[utoipa::path(
    put,
    path = "/v1/admin/faults",
    request_body = FaultsView,
    responses((status = 200, body = FaultsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody))
)]
async fn put_faults(
    State(node): State<Node>,
    body: Result<Json<FaultsView>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<FaultsView>, ApiError> {
    let Json(view) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if !(0.0..=1.0).contains(&view.drop_rate) || !(0.0..=1.0).contains(&view.handling_error_rate) {
        return Err(ApiError::BadRequest(
            "drop_rate and handling_error_rate must be between 0 and 1".into(),
        ));
    }
    let mut blocked = std::collections::BTreeSet::new();
    for id in &view.blocked {
        blocked.insert(
            id.parse()
                .map_err(|e: xnode_types::KeyError| ApiError::BadRequest(e.to_string()))?,
        );
    }
    if view.clock_offset_ms.unsigned_abs() > 86_400_000 {
        return Err(ApiError::BadRequest(
            "clock_offset_ms must be within one day either way".into(),
        ));
    }
    let mut links = std::collections::BTreeMap::new();
    for (peer, link) in &view.links {
        let peer = peer
            .parse()
            .map_err(|e: xnode_types::KeyError| ApiError::BadRequest(e.to_string()))?;
        let link = LinkFault::from(*link);
        if !link.is_valid() {
            return Err(ApiError::BadRequest(format!(
                "link to {peer}: loss must be between 0 and 1, delay and jitter at most {} ms",
                xnode_mesh::MAX_LINK_DELAY.as_millis()
            )));
        }
        links.insert(peer, link);
    }
    let rules = FaultRules {
        drop_rate: view.drop_rate,
        delay: Duration::from_millis(view.delay_ms),
        blocked,
        links,
    };
    node.set_faults(rules).await?;
    node.set_corrupt_served_chunks(view.corrupt_chunks)?;
    node.set_clock_offset_ms(view.clock_offset_ms)?;
    node.set_handling_faults(
        Duration::from_millis(view.handling_delay_ms),
        view.handling_error_rate,
    )?;
    Ok(Json(view))
}
