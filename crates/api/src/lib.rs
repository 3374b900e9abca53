//! The HTTP face of a node: the control API (`/v1/...`, `/healthz`, `/metrics`) with its
//! OpenAPI document, and the Studio (the web UI, from `xnode-studio`) at `/`. Later: the
//! function gateway and the S3 gateway.
//!
//! Handlers are thin: they call the [`Node`] and translate its answers into documented
//! JSON shapes and its errors into an HTTP status plus a stable error code.

mod auth;
mod compute_routes;
mod error;
mod observe_routes;
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

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a streamed response (headers, then body chunks) waits on
    // Nagle's algorithm for the client's delayed ACK: about 40 ms per small object.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an API connection");
        }
    });
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}
