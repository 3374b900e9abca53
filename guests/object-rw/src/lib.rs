//! `object-rw`: reads and writes objects in the deployment owner's storage.
//!
//! Routes (an optional `/fn/object-rw` prefix is stripped first):
//!
//! | request               | store call (outbound wasi:http)             | reply            |
//! |-----------------------|---------------------------------------------|------------------|
//! | `GET /<key>`          | `GET http://store.xnode/<bucket>/<key>`     | 200 object / 404 |
//! | `PUT /<key>` (body)   | `PUT http://store.xnode/<bucket>/<key>`     | 201 JSON         |
//! | `DELETE /<key>`       | `DELETE http://store.xnode/<bucket>/<key>`  | 204 / 404        |
//!
//! `<bucket>` comes from the env var `BUCKET` (default `data`).  Store
//! failures are reported as `502 {"error": ...}`.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam, Scheme};
use xnode_guest::{FetchError, json_string, respond, respond_json_error};

const NAME: &str = "object-rw";
const STORE_AUTHORITY: &str = "store.xnode";
const MAX_OBJECT: usize = 16 * 1024 * 1024;

struct ObjectRw;

wasi::http::proxy::export!(ObjectRw);

fn bucket() -> String {
    // Direct wasi:cli/environment call (the only non-proxy-world import).
    wasi::cli::environment::get_environment()
        .into_iter()
        .find(|(k, v)| k == "BUCKET" && !v.is_empty())
        .map_or_else(|| "data".to_string(), |(_, v)| v)
}

fn store_error(out: ResponseOutparam, what: &str, e: &FetchError) {
    respond_json_error(out, 502, &format!("{what}: {e}"));
}

impl Guest for ObjectRw {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let pwq = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = xnode_guest::strip_fn_prefix(xnode_guest::split_path(&pwq).0, NAME);
        let key = path.trim_start_matches('/');
        if key.is_empty() {
            return respond_json_error(out, 400, "missing object key: use /fn/object-rw/<key>");
        }
        let bucket = bucket();
        let store_path = format!("/{bucket}/{key}");
        let method = request.method();

        match method {
            Method::Get | Method::Head => {
                match xnode_guest::fetch(Method::Get, Scheme::Http, STORE_AUTHORITY, &store_path, None, MAX_OBJECT) {
                    Ok(r) if r.status == 200 => {
                        let ct = r.content_type.as_deref().unwrap_or("application/octet-stream");
                        respond(out, 200, ct, &r.body);
                    }
                    Ok(r) if r.status == 404 => {
                        respond_json_error(out, 404, &format!("object {bucket}/{key} not found"));
                    }
                    Ok(r) => respond_json_error(out, 502, &format!("store replied {} to GET {store_path}", r.status)),
                    Err(e) => store_error(out, "store GET", &e),
                }
            }
            Method::Put | Method::Post => {
                let body = match xnode_guest::read_request_body(&request, MAX_OBJECT) {
                    Ok(b) => b,
                    Err(e) => return respond_json_error(out, 413, &e),
                };
                match xnode_guest::fetch(Method::Put, Scheme::Http, STORE_AUTHORITY, &store_path, Some(&body), 64 * 1024) {
                    Ok(r) if (200..300).contains(&r.status) => {
                        let reply = format!(
                            "{{\"bucket\":{},\"key\":{},\"bytes\":{}}}\n",
                            json_string(&bucket),
                            json_string(key),
                            body.len()
                        );
                        respond(out, 201, "application/json", reply.as_bytes());
                    }
                    Ok(r) => respond_json_error(out, 502, &format!("store replied {} to PUT {store_path}", r.status)),
                    Err(e) => store_error(out, "store PUT", &e),
                }
            }
            Method::Delete => {
                match xnode_guest::fetch(Method::Delete, Scheme::Http, STORE_AUTHORITY, &store_path, None, 64 * 1024) {
                    Ok(r) if (200..300).contains(&r.status) => respond(out, 204, "text/plain", b""),
                    Ok(r) if r.status == 404 => {
                        respond_json_error(out, 404, &format!("object {bucket}/{key} not found"));
                    }
                    Ok(r) => respond_json_error(out, 502, &format!("store replied {} to DELETE {store_path}", r.status)),
                    Err(e) => store_error(out, "store DELETE", &e),
                }
            }
            other => respond_json_error(
                out,
                405,
                &format!("method {} not allowed: use GET, PUT or DELETE", xnode_guest::method_str(&other)),
            ),
        }
    }
}
