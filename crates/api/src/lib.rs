//! The HTTP face of a node: the control API (`/v1/...`, `/healthz`, `/metrics`) with its
//! OpenAPI document, and the Studio (the web UI, from `xnode-studio`) at `/`. Later: the
//! function gateway and the S3 gateway.
//!
//! Handlers are thin: they call the [`Node`] and translate its answers into documented
//! JSON shapes and its errors into an HTTP status plus a stable error code.

mod auth;
mod compute_routes;
mod coordinate_routes;
mod error;
mod host_check;
mod kms_routes;
mod ledger_routes;
mod node_routes;
mod observe_routes;
mod payout_routes;
mod revocation_routes;
mod routes;
mod s3_routes;
mod storage_routes;
mod studio_routes;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use xnode_node::Node;

pub use error::ApiError;
pub use routes::ApiDoc;

/// Builds the router for a node.
pub fn router(node: Node) -> Router {
    routes::router(node)
}

/// Binds the API address, failing with a clear message if it is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("API address {addr} is already in use (is another xnode running? choose another with --api)")
        } else {
            format!("cannot listen on API address {addr}: {e}")
        }
    })
}

/// Serves the API on `listener` until `shutdown` resolves, under the node's `[http]`
/// limits, then lets open requests finish (up to 3 s).
pub async fn serve(
    listener: TcpListener,
    node: Node,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt;
    let limits = node.config().http.clone();
    let router = router(node);
    let handler = move |req: hyper::Request<xnode_serve::TimedBody<hyper::body::Incoming>>| {
        router.clone().oneshot(req.map(axum::body::Body::new))
    };
    xnode_serve::serve(
        listener,
        limits,
        "api",
        xnode_serve::ErrorStyle::Json,
        handler,
        shutdown,
        std::time::Duration::from_secs(3),
    )
    .await
}
