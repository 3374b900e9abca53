//! Xnode Studio: the web UI every node serves at `/` on its API port.
//!
//! The Studio is hand-written, dependency-free ES modules and CSS under `assets/`, with no
//! front-end build step. `build.rs` gzip-compresses every file at build time and this crate
//! embeds both forms in the binary, so a node serves the Studio with nothing on disk. It
//! talks to the node only through the public HTTP API; tenant keys stay in the browser.
//!
//! The crate knows nothing of the node or the API: `xnode-api` merges [`router`] into its
//! own router.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL path it is served at, `/assets/...`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub raw: &'static [u8],
    /// The same bytes, gzip-compressed at build time.
    pub gzip: &'static [u8],
    /// A strong ETag (quoted) derived from the content.
    pub etag: &'static str,
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The client-side routes: each serves `index.html`, and the app shows the page.
pub const PAGES: [&str; 6] = [
    "network",
    "deployments",
    "storage",
    "observe",
    "earnings",
    "tenant",
];

/// Every embedded asset.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// The asset served at `path` (`/assets/...`), if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The page shell, `index.html`.
pub fn index() -> Option<&'static Asset> {
    asset("/assets/index.html")
}

/// Whether a request path belongs to the Studio (its pages and assets) rather than the API,
/// so that monitoring does not count the UI's own files as API traffic.
pub fn is_studio_path(path: &str) -> bool {
    path == "/"
        || path.starts_with("/assets/")
        || PAGES.iter().any(|p| {
            path.strip_prefix('/')
                .and_then(|rest| rest.strip_prefix(p))
                .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
        })
}

/// The Studio's routes: `/`, the client-side pages and `/assets/*`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/", get(page))
        .route("/assets/{*path}", get(file));
    for p in PAGES {
        router = router
            .route(&format!("/{p}"), get(page))
            .route(&format!("/{p}/{{*rest}}"), get(page));
    }
    router
}

async fn page(headers: HeaderMap) -> Response {
    match index() {
        Some(a) => respond(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            "the Studio was built without its assets",
        )
            .into_response(),
    }
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match asset(&format!("/assets/{path}")) {
        Some(a) => respond(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the Studio has no asset {path:?}"),
        )
            .into_response(),
    }
}

/// Whether the client accepts gzip (a `gzip` coding not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// The response for an asset: 304 when the client's copy is current, else the bytes,
/// gzip-compressed when the client accepts it.
pub fn respond(asset: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let gzip = accepts_gzip(headers);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = Response::new(Body::from(asset.gzip));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Body::from(asset.raw))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    // File names carry no content hash, so every use revalidates (a 304 costs one round
    // trip and no body).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        // Tenant keys live in this origin's storage: allow no foreign script, frame or
        // connection at all.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
            ),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}
