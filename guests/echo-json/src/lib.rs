//! `echo-json`: echoes a JSON request back, wrapped with request metadata:
//!
//! ```json
//! {"method":"POST","path":"/fn/echo-json/x","query":"a=1","headers":{..},"body":<json or null>}
//! ```
//!
//! An empty body echoes `"body": null`; a body that is not valid JSON gets
//! `400 {"error":"invalid JSON: ..."}`; bodies over 1 MiB get 413.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use serde_json::{Map, Value};
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

const MAX_BODY: usize = 1024 * 1024;

struct EchoJson;

wasi::http::proxy::export!(EchoJson);

impl Guest for EchoJson {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let pwq = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = xnode_guest::split_path(&pwq);

        let mut headers = Map::new();
        for (name, value) in request.headers().entries() {
            let value = String::from_utf8_lossy(&value).into_owned();
            match headers.get_mut(&name) {
                // Repeated headers are joined like HTTP/1.1 would.
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&value);
                }
                _ => {
                    headers.insert(name, Value::String(value));
                }
            }
        }

        let raw = match xnode_guest::read_request_body(&request, MAX_BODY) {
            Ok(b) => b,
            Err(e) => return xnode_guest::respond_json_error(out, 413, &e),
        };
        let body = if raw.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&raw) {
                Ok(v) => v,
                Err(e) => {
                    return xnode_guest::respond_json_error(out, 400, &format!("invalid JSON: {e}"));
                }
            }
        };

        let mut reply = Map::new();
        reply.insert("method".into(), xnode_guest::method_str(&request.method()).into());
        reply.insert("path".into(), path.into());
        reply.insert("query".into(), query.map_or(Value::Null, Into::into));
        reply.insert("headers".into(), Value::Object(headers));
        reply.insert("body".into(), body);
        let mut bytes = match serde_json::to_vec(&Value::Object(reply)) {
            Ok(b) => b,
            Err(e) => return xnode_guest::respond_json_error(out, 500, &e.to_string()),
        };
        bytes.push(b'\n');
        xnode_guest::respond(out, 200, "application/json", &bytes);
    }
}
