//! This node's network coordinates (Vivaldi, see `xnode_mesh::vivaldi`): its own, the last
//! valid one each live peer acked with, and the round trip the two imply next to the one
//! measured. The Studio's latency map draws them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_mesh::vivaldi::Coordinate;

use crate::storage_routes::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/network/coordinates", get(coordinates))
}

/// A network coordinate: estimated round trip between two nodes, in seconds, is the
/// distance between their vectors plus both heights plus both adjustments.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CoordinateView {
    /// The Euclidean part, seconds (8 dimensions).
    pub vec: Vec<f64>,
    /// The node's own estimate of its relative error, 0 to 1.5.
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

/// One peer on the latency map.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PeerCoordinateView {
    pub id: String,
    pub coordinate: CoordinateView,
    /// The round trip the two coordinates imply, milliseconds.
    pub estimated_rtt_ms: Option<f64>,
    /// The smoothed round trip this node's probes measure, milliseconds.
    pub measured_rtt_ms: Option<f64>,
}

/// This node's coordinate and its live peers'.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CoordinatesView {
    pub id: String,
    pub coordinate: CoordinateView,
    pub peers: Vec<PeerCoordinateView>,
}

fn view(c: &Coordinate) -> CoordinateView {
    CoordinateView {
        vec: c.vec.clone(),
        error: c.error,
        adjustment: c.adjustment,
        height: c.height,
    }
}

fn millis(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

#[utoipa::path(
    get,
    path = "/v1/network/coordinates",
    responses((status = 200, body = CoordinatesView))
)]
pub(crate) async fn coordinates(State(state): State<AppState>) -> Json<CoordinatesView> {
    let mesh = state.node.mesh();
    let table = mesh.coordinates();
    let members = mesh.members();
    let mut peers: Vec<PeerCoordinateView> = table
        .peers
        .iter()
        .map(|(id, c)| {
            let member = members.iter().find(|m| m.id == *id);
            PeerCoordinateView {
                id: id.to_string(),
                coordinate: view(c),
                estimated_rtt_ms: table
                    .own
                    .estimate_rtt(c)
                    .map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0),
                measured_rtt_ms: member.and_then(|m| m.rtt_us).map(millis),
            }
        })
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    Json(CoordinatesView {
        id: state.node.local().id.to_string(),
        coordinate: view(&table.own),
        peers,
    })
}
