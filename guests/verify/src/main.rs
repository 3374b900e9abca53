//! `guest-verify [DIST_DIR]` — checks every committed guest artifact.
//!
//! For each guest it (1) fully validates the binary with `wasmparser` (the
//! parser/validator wasmtime itself uses), (2) checks it is a component
//! (`wasm32-wasip2` HTTP guests) or a core module (`wasm32-wasip1` commands),
//! (3) checks the exports (`wasi:http/incoming-handler@0.2.x`, resp. `_start`)
//! and (4) that imports stay inside what the host is expected to link.
//! It prints every guest's imports; exit status 1 on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// wasi:http/proxy component.
    Http,
    /// WASI preview 1 command module.
    Command,
}

/// (guest, kind, extra imports allowed beyond the baseline).
const GUESTS: &[(&str, Kind, &[&str])] = &[
    ("hello", Kind::Http, &[]),
    ("echo-json", Kind::Http, &[]),
    // Reads env var BUCKET.
    ("object-rw", Kind::Http, &["wasi:cli/environment"]),
    ("spin", Kind::Http, &[]),
    ("membomb", Kind::Http, &[]),
    ("recurse", Kind::Http, &[]),
    ("bigout", Kind::Http, &[]),
    // Reads env vars TARGET and TARGET_PATH.
    ("forbidden-fetch", Kind::Http, &["wasi:cli/environment"]),
    ("html-page", Kind::Http, &[]),
    ("transform", Kind::Command, &[]),
    ("heartbeat", Kind::Command, &[]),
    ("job-spin", Kind::Command, &[]),
    ("job-bigout", Kind::Command, &[]),
];

/// Interfaces of the `wasi:http/proxy` world (versions stripped).
const PROXY_WORLD: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

struct Info {
    encoding: Encoding,
    imports: Vec<String>,
    exports: Vec<String>,
}

fn inspect(bytes: &[u8]) -> Result<Info, String> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| format!("invalid: {e}"))?;
    let mut info = Info { encoding: Encoding::Module, imports: vec![], exports: vec![] };
    // Depth 0 = the outermost module/component; nested ones are skipped.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    info.encoding = encoding;
                }
                depth += 1;
            }
            Payload::End(_) => depth -= 1,
            Payload::ImportSection(r) if depth == 1 => {
                for imp in r.into_imports() {
                    let imp = imp.map_err(|e| e.to_string())?;
                    info.imports.push(format!("{}::{}", imp.module, imp.name));
                }
            }
            Payload::ExportSection(r) if depth == 1 => {
                for exp in r {
                    info.exports.push(exp.map_err(|e| e.to_string())?.name.to_string());
                }
            }
            Payload::ComponentImportSection(r) if depth == 1 => {
                for imp in r {
                    info.imports.push(imp.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for exp in r {
                    info.exports.push(exp.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn check(dist: &Path, name: &str, kind: Kind, extra: &[&str]) -> Result<Info, String> {
    let path = dist.join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = inspect(&bytes)?;
    match kind {
        Kind::Http => {
            if info.encoding != Encoding::Component || bytes.get(4..8) != Some(&[0x0d, 0, 0x01, 0]) {
                return Err("expected a component (wasm32-wasip2)".into());
            }
            if !info.exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")) {
                return Err(format!("does not export wasi:http/incoming-handler@0.2.x: {:?}", info.exports));
            }
            for imp in &info.imports {
                let base = unversioned(imp);
                if !PROXY_WORLD.contains(&base) && !extra.contains(&base) {
                    return Err(format!("unexpected import {imp} (outside wasi:http/proxy)"));
                }
            }
        }
        Kind::Command => {
            if info.encoding != Encoding::Module || bytes.get(4..8) != Some(&[1, 0, 0, 0]) {
                return Err("expected a core module (wasm32-wasip1)".into());
            }
            if !info.exports.iter().any(|e| e == "_start") {
                return Err(format!("does not export _start: {:?}", info.exports));
            }
            if let Some(bad) = info.imports.iter().find(|i| !i.starts_with("wasi_snapshot_preview1::")) {
                return Err(format!("unexpected import {bad}"));
            }
        }
    }
    Ok(info)
}

fn main() -> ExitCode {
    let dist = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"));
    let mut failed = false;
    for &(name, kind, extra) in GUESTS {
        match check(&dist, name, kind, extra) {
            Ok(info) => {
                let what = if kind == Kind::Http { "component" } else { "module" };
                println!("ok   {name} ({what})");
                println!("     exports: {}", info.exports.join(", "));
                println!("     imports: {}", info.imports.join(", "));
            }
            Err(e) => {
                failed = true;
                println!("FAIL {name}: {e}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
