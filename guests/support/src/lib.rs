//! Tiny `no_std` helpers shared by the Xnode `wasi:http/proxy` guests.
//!
//! The guests are `#![no_std]` + `alloc` on purpose: without Rust std (and
//! thus wasi-libc) a component imports only the `wasi:http/proxy` interfaces
//! it actually uses, so it runs under `wasmtime serve` without `-S cli` and
//! under a host that links nothing but the proxy world.
//!
//! On wasm32 this crate also provides the global allocator (dlmalloc, the
//! one Rust std uses on wasm) and a panic handler that writes the message to
//! `wasi:cli/stderr` and then traps (`unreachable`).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub use wasi;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

// Without std nothing provides memcpy/memset/memcmp/... on wasm32-wasip2
// (compiler-builtins leaves them to libc).  Link wasi-libc's self-contained
// `libc.a` for exactly those archive members: they import nothing, and since
// crt/environ/stdio objects are never referenced, they are not linked in.
#[cfg(all(target_arch = "wasm32", target_env = "p2", not(test)))]
#[link(name = "c")]
unsafe extern "C" {}

#[cfg(all(target_arch = "wasm32", not(test)))]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Format into a stack buffer: the panic may be an allocation failure.
    let mut buf = StackBuf { buf: [0; 512], len: 0 };
    let _ = fmt::write(&mut buf, format_args!("guest panicked: {info}\n"));
    eprint_bytes(&buf.buf[..buf.len]);
    core::arch::wasm32::unreachable()
}

/// A `fmt::Write` sink over a fixed buffer that silently truncates.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct StackBuf {
    buf: [u8; 512],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes bytes to `wasi:cli/stderr` (best effort, never allocates on the
/// guest side).
pub fn eprint_bytes(bytes: &[u8]) {
    link_cabi_realloc();
    let stderr = wasi::cli::stderr::get_stderr();
    for chunk in bytes.chunks(MAX_BLOCKING_WRITE) {
        if stderr.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
}

/// Components must export `cabi_realloc` (the canonical ABI uses it to pass
/// strings/lists into the guest).  On `wasm32-wasip2` wit-bindgen expects
/// wasi-libc to provide it; these guests do not link wasi-libc, so provide it
/// here on top of the global allocator (same semantics as wit-bindgen's).
///
/// # Safety
/// Only to be called by the component runtime, per the canonical ABI.
#[cfg(all(target_arch = "wasm32", target_env = "p2", not(test)))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, handle_alloc_error, realloc};
    if new_len == 0 {
        // Zero-sized: any aligned non-null pointer will do.
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI guarantees `align` is a power of two and
    // that (old_ptr, old_len, align) describe a previous allocation.
    unsafe {
        let layout;
        let ptr = if old_len == 0 {
            layout = Layout::from_size_align_unchecked(new_len, align);
            alloc(layout)
        } else {
            layout = Layout::from_size_align_unchecked(old_len, align);
            realloc(old_ptr, layout, new_len)
        };
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        ptr
    }
}

#[inline(always)]
fn link_cabi_realloc() {
    // Covers other targets (wasip1 + adapter); a no-op on wasm32-wasip2.
    wit_bindgen::rt::maybe_link_cabi_realloc();
}

/// Largest single `blocking-write-and-flush` allowed by wasi:io.
pub const MAX_BLOCKING_WRITE: usize = 4096;

/// Splits `path_with_query` into `(path, query)`.
pub fn split_path(path_with_query: &str) -> (&str, Option<&str>) {
    match path_with_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_with_query, None),
    }
}

/// Strips an optional `/fn/<name>` routing prefix, so a guest works whether
/// the host hands it the full public path or just the suffix.
pub fn strip_fn_prefix<'a>(path: &'a str, name: &str) -> &'a str {
    let rest = path
        .strip_prefix("/fn/")
        .and_then(|p| p.strip_prefix(name))
        .filter(|r| r.is_empty() || r.starts_with('/'));
    match rest {
        Some("") => "/",
        Some(r) => r,
        None => path,
    }
}

/// Upper-case name of a wasi:http method.
pub fn method_str(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(s) => s.as_str(),
    }
}

/// Writes all of `data` to a wasi:io output stream (respecting
/// `check-write`), then flushes and waits for the flush.
pub fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), StreamError> {
    while !data.is_empty() {
        let permit = stream.check_write()?;
        if permit == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = data.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
        stream.write(&data[..n])?;
        data = &data[n..];
    }
    stream.blocking_flush()
}

/// Reads an input stream to its end, failing if more than `limit` bytes arrive.
pub fn read_stream(stream: &InputStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if buf.len() + chunk.len() > limit {
                    return Err(format!("body larger than {limit} bytes"));
                }
                buf.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(buf),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading body: {}", e.to_debug_string()));
            }
        }
    }
}

/// Reads a whole incoming body (request or response) up to `limit` bytes.
pub fn read_body(body: IncomingBody, limit: usize) -> Result<Vec<u8>, String> {
    let stream = body
        .stream()
        .map_err(|()| "body stream already taken".to_string())?;
    let data = read_stream(&stream, limit);
    drop(stream);
    drop(IncomingBody::finish(body));
    data
}

/// Reads the whole body of an incoming request up to `limit` bytes.
pub fn read_request_body(req: &IncomingRequest, limit: usize) -> Result<Vec<u8>, String> {
    let body = req
        .consume()
        .map_err(|()| "request body already consumed".to_string())?;
    read_body(body, limit)
}

/// Sends a complete response: status, `content-type`, `content-length`, body.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::new();
    // Cannot fail for valid header names and ASCII values.
    let _ = headers.append("content-type", content_type.as_bytes());
    let _ = headers.append("content-length", body.len().to_string().as_bytes());
    respond_with(out, status, headers, body);
}

/// Sends a complete response with caller-provided headers.
pub fn respond_with(out: ResponseOutparam, status: u16, headers: Fields, body: &[u8]) {
    link_cabi_realloc();
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let Ok(out_body) = resp.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(resp));
    if !body.is_empty()
        && let Ok(stream) = out_body.write()
    {
        if body.len() <= MAX_BLOCKING_WRITE {
            let _ = stream.blocking_write_and_flush(body);
        } else {
            let _ = write_all(&stream, body);
        }
    }
    let _ = OutgoingBody::finish(out_body, None);
}

/// A JSON error body `{"error": msg}` with the given status.
pub fn respond_json_error(out: ResponseOutparam, status: u16, msg: &str) {
    let body = format!("{{\"error\":{}}}\n", json_string(msg));
    respond(out, status, "application/json", body.as_bytes());
}

/// Minimal JSON string escaping (for guests without serde_json).
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Result of an outbound request.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why an outbound request failed.
#[derive(Debug)]
pub enum FetchError {
    /// `outgoing-handler.handle` refused the request up front (e.g. host not allowed).
    Rejected(ErrorCode),
    /// The request was accepted but the response future resolved to an error.
    Failed(ErrorCode),
    /// Anything else (body I/O, invalid request fields, ...).
    Other(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Rejected(e) => write!(f, "request rejected by host: {e:?}"),
            FetchError::Failed(e) => write!(f, "request failed: {e:?}"),
            FetchError::Other(s) => f.write_str(s),
        }
    }
}

/// Performs a blocking outbound `wasi:http` request.
///
/// `path_with_query` must start with `/`.  At most `limit` response bytes are read.
pub fn fetch(
    method: Method,
    scheme: Scheme,
    authority: &str,
    path_with_query: &str,
    body: Option<&[u8]>,
    limit: usize,
) -> Result<Fetched, FetchError> {
    let headers = Fields::new();
    if let Some(b) = body {
        let _ = headers.append("content-length", b.len().to_string().as_bytes());
    }
    let req = OutgoingRequest::new(headers);
    req.set_method(&method)
        .map_err(|()| FetchError::Other("invalid method".into()))?;
    req.set_scheme(Some(&scheme))
        .map_err(|()| FetchError::Other("invalid scheme".into()))?;
    req.set_authority(Some(authority))
        .map_err(|()| FetchError::Other(format!("invalid authority {authority:?}")))?;
    req.set_path_with_query(Some(path_with_query))
        .map_err(|()| FetchError::Other(format!("invalid path {path_with_query:?}")))?;
    let out_body = req
        .body()
        .map_err(|()| FetchError::Other("request body already taken".into()))?;

    // Hand the request to the host first, then stream the body: the host only
    // starts draining the body pipe once it owns the request.
    let future = outgoing_handler::handle(req, None).map_err(FetchError::Rejected)?;

    if let Some(b) = body {
        let stream = out_body
            .write()
            .map_err(|()| FetchError::Other("request body stream already taken".into()))?;
        write_all(&stream, b)
            .map_err(|e| FetchError::Other(format!("writing request body: {e:?}")))?;
        drop(stream);
    }
    OutgoingBody::finish(out_body, None).map_err(FetchError::Failed)?;

    let resp = loop {
        match future.get() {
            Some(Ok(Ok(resp))) => break resp,
            Some(Ok(Err(code))) => return Err(FetchError::Failed(code)),
            Some(Err(())) => return Err(FetchError::Other("response already taken".into())),
            None => future.subscribe().block(),
        }
    };
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let body = resp
        .consume()
        .map_err(|()| FetchError::Other("response body already consumed".into()))?;
    let body = read_body(body, limit).map_err(FetchError::Other)?;
    Ok(Fetched { status, content_type, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix() {
        assert_eq!(strip_fn_prefix("/fn/object-rw/a/b", "object-rw"), "/a/b");
        assert_eq!(strip_fn_prefix("/fn/object-rw", "object-rw"), "/");
        assert_eq!(strip_fn_prefix("/fn/object-rwx/a", "object-rw"), "/fn/object-rwx/a");
        assert_eq!(strip_fn_prefix("/a/b", "object-rw"), "/a/b");
    }

    #[test]
    fn split() {
        assert_eq!(split_path("/a?b=c"), ("/a", Some("b=c")));
        assert_eq!(split_path("/a"), ("/a", None));
    }

    #[test]
    fn json() {
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
