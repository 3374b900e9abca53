//! `html-page` (hostile): `200 text/html` with a script that tries to read the storage of
//! the origin it is served from (localStorage and IndexedDB, where a Studio keeps its
//! tenant key) and writes what it found into the page's title and body.
//!
//! Served on the Studio's origin without a sandbox, it would read the Studio's storage;
//! Xnode answers every function with `Content-Security-Policy: sandbox allow-scripts`
//! (no `allow-same-origin`), so the script runs in an opaque origin and reads nothing.
//! The Studio's end-to-end test opens it in the browser that holds a tenant key.
#![no_std]

extern crate alloc;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct HtmlPage;

wasi::http::proxy::export!(HtmlPage);

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>pending</title></head>
<body><pre id="result">pending</pre>
<script>
(async () => {
  const found = { localStorage: null, indexedDB: null };
  try {
    const all = {};
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      all[k] = localStorage.getItem(k);
    }
    found.localStorage = all;
  } catch (e) { found.localStorage = 'blocked: ' + e.name; }
  try {
    const names = indexedDB.databases ? (await indexedDB.databases()).map((d) => d.name) : [];
    found.indexedDB = names;
  } catch (e) { found.indexedDB = 'blocked: ' + e.name; }
  const text = JSON.stringify(found);
  document.getElementById('result').textContent = text;
  document.title = text;
})();
</script></body></html>
"#;

impl Guest for HtmlPage {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        xnode_guest::respond(
            response_out,
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        );
    }
}
