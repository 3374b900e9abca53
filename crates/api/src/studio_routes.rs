//! Routes the Studio needs beyond the rest of the API: a live event stream of the network
//! (server-sent events), a scope's time series, and where an object's chunks live. The
//! Studio's own files are served by `xnode-studio`, merged into the router in `routes.rs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_node::Node;
use xnode_node::observe::SeriesReport;

use crate::error::ApiError;
use crate::routes::{NodeListItem, to_item};
use crate::storage_routes::AppState;

/// How often `/v1/events` sends a snapshot.
const EVENT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Snapshot {
    at_ms: u64,
    /// The node answering.
    node: String,
    nodes: Vec<NodeListItem>,
    network: xnode_node::observe::NetworkReport,
}

fn snapshot(node: &Node) -> Snapshot {
    let network = node.observe_network();
    Snapshot {
        at_ms: network.at_ms,
        node: node.id().to_string(),
        nodes: node.nodes().into_iter().map(to_item).collect(),
        network,
    }
}

/// `GET /v1/events`: a server-sent event `snapshot` every second with the node list (as
/// `GET /v1/nodes`) and the network view (as `GET /v1/observe/network`). The stream ends
/// when the node shuts down, so it never holds up a graceful stop.
#[utoipa::path(get, path = "/v1/events", responses((status = 200, content_type = "text/event-stream", description = "a `snapshot` event every second: {at_ms, node, nodes, network}")))]
pub(crate) async fn events(
    State(node): State<Node>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let token = node.shutdown_token();
    let stream = futures::stream::unfold((node, token, true), |(node, token, first)| async move {
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(EVENT_INTERVAL) => {}
                _ = token.cancelled() => return None,
            }
        }
        if token.is_cancelled() {
            return None;
        }
        let event = match Event::default()
            .event("snapshot")
            .json_data(snapshot(&node))
        {
            Ok(e) => e,
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Some((Ok(event), (node, token, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
pub(crate) struct SeriesQuery {
    /// The scope, `api` unless given.
    scope: Option<String>,
    /// How far back, in minutes (1 to 60, 15 unless given).
    minutes: Option<u64>,
}

/// `GET /v1/observe/series`: one scope over time in 10-second slots, summed over every
/// node.
#[utoipa::path(get, path = "/v1/observe/series", params(("scope" = Option<String>, Query), ("minutes" = Option<u64>, Query)), responses((status = 200, description = "slots with activity, oldest first: {scope, slot_ms, at_ms, points: [{at_ms, requests, server_errors, latency_ms, ...}]}")))]
pub(crate) async fn series(
    State(node): State<Node>,
    Query(q): Query<SeriesQuery>,
) -> Json<SeriesReport> {
    let minutes = q.minutes.unwrap_or(15).clamp(1, 60);
    let scope = q.scope.unwrap_or_else(|| "api".to_owned());
    Json(node.observe_series(&scope, minutes * 60_000))
}

/// One chunk and its replicas.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChunkView {
    pub id: String,
    pub size: u64,
    /// Node ids placement assigns the chunk to.
    pub placed_on: Vec<String>,
    /// Node ids that answered that they hold a copy.
    pub held_by: Vec<String>,
}

/// Where an object lives and how well it is replicated.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ObjectDetailsView {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub created_ms: u64,
    /// The node that wrote the current version.
    pub writer: String,
    pub chunk_size: u32,
    pub replication_factor: usize,
    pub manifest: ChunkView,
    /// Data chunks (the first 1024 of bigger objects).
    pub chunks: Vec<ChunkView>,
    pub total_chunks: usize,
    pub metadata_nodes: Vec<String>,
    pub unreachable: Vec<String>,
    /// `healthy`, `degraded` or `at_risk`.
    pub health: String,
    pub min_copies: usize,
}

fn chunk_view(c: xnode_storage::details::ChunkDetails) -> ChunkView {
    ChunkView {
        id: c.id,
        size: c.size,
        placed_on: c.placed_on.iter().map(ToString::to_string).collect(),
        held_by: c.held_by.iter().map(ToString::to_string).collect(),
    }
}

/// `GET /v1/buckets/{bucket}/details/{key}` (signed): an object's chunks, the nodes
/// holding their replicas and its replication health. Needs no data key.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/details/{key}", params(("bucket" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = ObjectDetailsView), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn object_details(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    req: Request,
) -> Result<Json<ObjectDetailsView>, ApiError> {
    let tenant = crate::storage_routes::tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let d = state
        .node
        .storage()
        .object_details(&tenant, &bucket, &key)
        .await?;
    Ok(Json(ObjectDetailsView {
        key: d.meta.path.key.clone(),
        size: d.info.size,
        etag: d.info.etag.clone(),
        content_type: d.info.content_type.clone(),
        created_ms: d.info.created_ms,
        writer: d.meta.writer.to_string(),
        chunk_size: d.chunk_size,
        replication_factor: d.replication_factor,
        manifest: chunk_view(d.manifest),
        chunks: d.chunks.into_iter().map(chunk_view).collect(),
        total_chunks: d.total_chunks,
        metadata_nodes: d.metadata_nodes.iter().map(ToString::to_string).collect(),
        unreachable: d.unreachable.iter().map(ToString::to_string).collect(),
        health: d.health.to_owned(),
        min_copies: d.min_copies,
    }))
}
