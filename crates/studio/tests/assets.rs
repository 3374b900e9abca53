//! The Studio's embedded assets: served with the right headers, compressed, cached, small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

async fn get(path: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    xnode_studio::router::<()>()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[test]
fn first_load_is_well_under_300_kb_compressed() {
    // Every asset counts, as if a first visit fetched all of them (it fetches fewer: pages
    // load their module on demand).
    let total: usize = xnode_studio::assets().iter().map(|a| a.gzip.len()).sum();
    let raw: usize = xnode_studio::assets().iter().map(|a| a.raw.len()).sum();
    println!(
        "{} assets: {raw} bytes, {total} bytes gzip-compressed",
        xnode_studio::assets().len()
    );
    assert!(
        total < 300 * 1024,
        "the Studio weighs {total} bytes compressed"
    );
    assert!(
        total < 100 * 1024,
        "keep the Studio light: {total} bytes compressed"
    );
    for a in xnode_studio::assets() {
        assert!(
            a.etag.starts_with('"') && a.etag.ends_with('"'),
            "{}",
            a.path
        );
    }
}

#[tokio::test]
async fn pages_serve_the_shell_compressed_and_revalidate() {
    for path in [
        "/",
        "/network",
        "/storage",
        "/storage/photos",
        "/observe/api",
        "/tenant",
        "/deployments",
        "/earnings",
    ] {
        let r = get(path, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
    let index = xnode_studio::index().unwrap();
    let r = get("/", &[("if-none-match", index.etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get("/", &[]).await;
    assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    assert_eq!(&body[..], index.raw);
    let r = get("/", &[("accept-encoding", "gzip;q=0")]).await;
    assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
}

#[tokio::test]
async fn assets_have_their_types_and_unknown_ones_are_404() {
    let r = get("/assets/js/app.js", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = get("/assets/app.css", &[]).await;
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        get("/assets/nope.js", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn studio_paths_are_told_apart_from_the_api() {
    for p in [
        "/",
        "/assets/app.css",
        "/network",
        "/storage/b/k",
        "/tenant",
    ] {
        assert!(xnode_studio::is_studio_path(p), "{p}");
    }
    for p in ["/v1/nodes", "/metrics", "/networks", "/storagex", "/fn/x"] {
        assert!(!xnode_studio::is_studio_path(p), "{p}");
    }
}

#[test]
fn every_module_the_app_imports_is_embedded() {
    // Relative imports between the ES modules must all resolve to embedded files.
    for a in xnode_studio::assets()
        .iter()
        .filter(|a| a.path.ends_with(".js"))
    {
        let text = std::str::from_utf8(a.raw).unwrap();
        let dir = &a.path[..a.path.rfind('/').unwrap()];
        for part in text
            .split("from '")
            .skip(1)
            .chain(text.split("import('").skip(1))
        {
            let target = &part[..part.find('\'').unwrap()];
            let mut segments: Vec<&str> = dir.split('/').collect();
            for seg in target.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        segments.pop();
                    }
                    s => segments.push(s),
                }
            }
            let resolved = segments.join("/");
            assert!(
                xnode_studio::asset(&resolved).is_some(),
                "{} imports {target} ({resolved}), which is not embedded",
                a.path
            );
        }
    }
}

#[test]
fn no_script_parses_markup() {
    // Node ids, zone names, bucket and object names come from the network or from tenants:
    // the Studio must only ever place them as text nodes and attribute values. Any API that
    // parses a string as HTML would let one of them inject markup.
    for a in xnode_studio::assets()
        .iter()
        .filter(|a| a.path.ends_with(".js"))
    {
        let text = std::str::from_utf8(a.raw).unwrap();
        for parser in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            "DOMParser",
            "srcdoc",
        ] {
            assert!(
                !text.contains(parser),
                "{} uses {parser}: build elements with h() and s() instead",
                a.path
            );
        }
    }
}
