//! Embeds the Studio's assets: every file under `assets/` is gzip-compressed here, at build
//! time, and a table of (path, content type, raw bytes, gzip bytes, ETag) is generated for
//! `src/lib.rs` to include. Nothing is fetched and no front-end toolchain runs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let assets = root.join("assets");
    println!("cargo:rerun-if-changed={}", assets.display());
    let mut files = Vec::new();
    collect(&assets, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file
            .strip_prefix(&assets)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => panic!("cannot read {}: {e}", file.display()),
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = encoder
            .write_all(&bytes)
            .and_then(|_| encoder.finish())
            .unwrap_or_else(|e| panic!("cannot compress {}: {e}", file.display()));
        let gz_path = out.join(format!("{}.gz", rel.replace('/', "__")));
        if let Err(e) = std::fs::write(&gz_path, &gzip) {
            panic!("cannot write {}: {e}", gz_path.display());
        }
        let _ = writeln!(
            table,
            "    Asset {{ path: {:?}, content_type: {:?}, raw: include_bytes!({:?}), gzip: include_bytes!({:?}), etag: \"\\\"{:016x}\\\"\" }},",
            format!("/assets/{rel}"),
            content_type(&rel),
            file.display().to_string(),
            gz_path.display().to_string(),
            fnv1a(&bytes),
        );
    }
    table.push(']');
    if let Err(e) = std::fs::write(out.join("assets.rs"), table) {
        panic!("cannot write the asset table: {e}");
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(path);
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A stable 64-bit content hash for ETags (FNV-1a: no dependency needed).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
