//! Storage commands: buckets, put, get, ls, rm and storage health.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::cli::{BucketAction, StorageClientArgs};
use crate::client::print_table;
use crate::tenant::{Payload, SignedClient};

/// Files larger than this get a progress bar.
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

pub(crate) fn client(args: &StorageClientArgs) -> anyhow::Result<SignedClient> {
    let path = args
        .tenant_key
        .clone()
        .unwrap_or_else(crate::tenant::default_key_path);
    let key = crate::tenant::load(&path)?;
    SignedClient::new(&args.api, key)
}

/// Percent-encodes a path segment or key (keeping `/` when `keep_slash`).
pub fn encode_path(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'~')
            || (b == b'.')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_path(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let code = v["error"]["code"].as_str()?.to_owned();
            let message = v["error"]["message"].as_str()?.to_owned();
            Some(format!("{message} ({code}, HTTP {})", status.as_u16()))
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    anyhow::bail!("{message}")
}

pub async fn send(
    builder: reqwest::RequestBuilder,
    api: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = builder.send().await.map_err(|e| {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        anyhow::anyhow!("cannot reach the node at {api}: {cause} (is it running? pass --api URL)")
    })?;
    check(response).await
}

/// A tenant-signed request of `method` to `path` with `body` as JSON, whose answer is
/// JSON (the tenant's data key is not sent).
pub async fn send_signed_json(
    c: &SignedClient,
    method: Method,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = send(
        c.request(method, path, "", Payload::json(body)?, false)
            .await?,
        &c.api,
    )
    .await?;
    Ok(response.json().await?)
}

/// A tenant-signed GET of `path?query` whose answer is JSON.
pub async fn get_signed_json(c: &SignedClient, path: &str, query: &str) -> anyhow::Result<Value> {
    let response = send(
        c.request(Method::GET, path, query, Payload::Empty, false)
            .await?,
        &c.api,
    )
    .await?;
    Ok(response.json().await?)
}

fn split_target(target: &str) -> anyhow::Result<(String, String)> {
    let (bucket, key) = target
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("expected BUCKET/KEY, got {target:?}"))?;
    if bucket.is_empty() || key.is_empty() {
        anyhow::bail!("expected BUCKET/KEY, got {target:?}");
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A signed bucket claim or deletion: the registry entry the tenant signs.
fn signed_change(
    c: &SignedClient,
    bucket: &str,
    create: bool,
    rf: Option<u8>,
    regions: &[String],
) -> anyhow::Result<Value> {
    let hlc = xnode_types::Hlc::new(now_ms(), 0);
    let key = xnode_storage::buckets::bucket_key(&c.key.public(), bucket);
    let record = create.then(|| {
        let mut record = serde_json::json!({
            "v": xnode_storage::buckets::BucketRecord::version_for(regions),
            "name": bucket,
            "owner": c.key.public().to_hex(),
            "created_ms": hlc.wall_ms,
        });
        if let Some(rf) = rf {
            record["replication_factor"] = serde_json::json!(rf);
        }
        if !regions.is_empty() {
            record["regions"] = serde_json::json!(regions);
        }
        record.to_string()
    });
    let entry =
        xnode_registry::Entry::sign(&c.key, key, record.clone().map(String::into_bytes), hlc)?;
    Ok(serde_json::json!({
        "record": record,
        "hlc_wall_ms": hlc.wall_ms,
        "hlc_logical": hlc.logical,
        "signature": hex::encode(entry.signature.0),
    }))
}

pub async fn bucket(action: BucketAction) -> anyhow::Result<()> {
    match action {
        BucketAction::Create {
            name,
            replication_factor,
            regions,
            args,
        } => {
            xnode_store::validate_regions(&regions)?;
            let c = client(&args)?;
            let path = format!("/v1/buckets/{}", encode_path(&name, false));
            let body = signed_change(&c, &name, true, replication_factor, &regions)?;
            let v = send_signed_json(&c, Method::PUT, &path, &body).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if regions.is_empty() {
                println!("created bucket {name}");
            } else {
                println!("created bucket {name}, pinned to {}", regions.join(", "));
            }
        }
        BucketAction::Rm { name, args } => {
            let c = client(&args)?;
            let path = format!("/v1/buckets/{}", encode_path(&name, false));
            let body = signed_change(&c, &name, false, None, &[])?;
            send(
                c.request(Method::DELETE, &path, "", Payload::json(&body)?, false)
                    .await?,
                &c.api,
            )
            .await?;
            if args.json {
                println!("{}", serde_json::json!({"deleted": name}));
            } else {
                println!("deleted bucket {name}");
            }
        }
        BucketAction::Ls { args } => {
            let c = client(&args)?;
            let v: Value = get_signed_json(&c, "/v1/buckets", "").await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|b| {
                    vec![
                        b["name"].as_str().unwrap_or("?").to_owned(),
                        created(&b["created_ms"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no buckets yet (create one with `xnode bucket create NAME`)");
            } else {
                print_table(&["BUCKET", "CREATED"], &rows);
            }
        }
    }
    Ok(())
}

pub(crate) fn created(v: &Value) -> String {
    v.as_u64()
        .map(|ms| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        })
        .unwrap_or_else(|| "-".into())
}

fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if len < PROGRESS_THRESHOLD {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    Some(bar)
}

pub async fn put(
    file: &Path,
    target: &str,
    content_type: Option<String>,
    args: StorageClientArgs,
) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let c = client(&args)?;
    let handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let len = handle.metadata().await?.len();
    let bar = if args.json {
        None
    } else {
        progress(len, "uploading")
    };
    let bar2 = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(handle, 256 * 1024).inspect(move |chunk| {
            if let (Some(bar), Ok(bytes)) = (&bar2, chunk) {
                bar.inc(bytes.len() as u64);
            }
        });
    let path = format!(
        "/v1/buckets/{}/objects/{}",
        encode_path(&bucket, false),
        encode_path(&key, true)
    );
    let content_type = content_type.unwrap_or_else(|| guess_type(file));
    let payload = Payload::Stream {
        blake3: crate::tenant::file_blake3(file).await?,
        body: reqwest::Body::wrap_stream(stream),
    };
    let builder = c
        .request(Method::PUT, &path, "", payload, true)
        .await?
        .header(reqwest::header::CONTENT_LENGTH, len)
        .header(reqwest::header::CONTENT_TYPE, content_type);
    let result = send(builder, &c.api).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let v: Value = result?.json().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "stored {bucket}/{key}: {} bytes, etag {}",
            v["size"],
            v["etag"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

fn guess_type(file: &Path) -> String {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
    .to_owned()
}

pub async fn get(target: &str, out: Option<&Path>, args: StorageClientArgs) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let c = client(&args)?;
    let path = format!(
        "/v1/buckets/{}/objects/{}",
        encode_path(&bucket, false),
        encode_path(&key, true)
    );
    let response = send(
        c.request(Method::GET, &path, "", Payload::Empty, true)
            .await?,
        &c.api,
    )
    .await?;
    let expected = response.content_length();
    let len = expected.unwrap_or(0);
    let mut stream = response.bytes_stream();
    match out {
        Some(file) => {
            // Write to a temporary file and rename, so a failed download never leaves a
            // truncated file under the requested name.
            let tmp = file.with_extension("xnode-partial");
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let bar = if args.json {
                None
            } else {
                progress(len, "downloading")
            };
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    anyhow::anyhow!("download interrupted after {written} bytes: {e}")
                })?;
                f.write_all(&chunk).await?;
                written += chunk.len() as u64;
                if let Some(bar) = &bar {
                    bar.inc(chunk.len() as u64);
                }
            }
            f.sync_all().await?;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            if written != len {
                let _ = tokio::fs::remove_file(&tmp).await;
                anyhow::bail!("download incomplete: {written} of {len} bytes");
            }
            tokio::fs::rename(&tmp, file).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bucket": bucket, "key": key, "size": written, "file": file.display().to_string()})
                );
            } else {
                println!(
                    "saved {bucket}/{key} to {} ({written} bytes)",
                    file.display()
                );
            }
        }
        None => {
            let mut stdout = tokio::io::stdout();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    anyhow::anyhow!("download interrupted after {written} bytes: {e}")
                })?;
                stdout.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            stdout.flush().await?;
            // What was written cannot be taken back, but a short download must still end
            // in an error and a non-zero exit, so a pipeline does not take it as whole.
            if let Some(expected) = expected
                && written != expected
            {
                anyhow::bail!("download incomplete: {written} of {expected} bytes");
            }
        }
    }
    Ok(())
}

pub async fn ls(target: &str, args: StorageClientArgs) -> anyhow::Result<()> {
    let (bucket, prefix) = match target.split_once('/') {
        Some((b, p)) => (b.to_owned(), p.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let c = client(&args)?;
    let path = format!("/v1/buckets/{}/objects", encode_path(&bucket, false));
    let mut all: Vec<Value> = Vec::new();
    let mut start_after = String::new();
    loop {
        let query = encode_query(&[
            ("prefix", &prefix),
            ("start_after", &start_after),
            ("limit", "1000"),
        ]);
        let page: Value = get_signed_json(&c, &path, &query).await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let done = page.len() < 1000;
        if let Some(last) = page.last() {
            start_after = last["key"].as_str().unwrap_or("").to_owned();
        }
        all.extend(page);
        if done {
            break;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|o| {
            vec![
                o["key"].as_str().unwrap_or("?").to_owned(),
                o["size"].to_string(),
                o["etag"].as_str().unwrap_or("?").to_owned(),
                created(&o["created_ms"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!(
            "no objects in {bucket}{}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under {prefix:?}")
            }
        );
    } else {
        print_table(&["KEY", "SIZE", "ETAG", "CREATED"], &rows);
    }
    Ok(())
}

pub async fn rm(target: &str, args: StorageClientArgs) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let c = client(&args)?;
    let path = format!(
        "/v1/buckets/{}/objects/{}",
        encode_path(&bucket, false),
        encode_path(&key, true)
    );
    send(
        c.request(Method::DELETE, &path, "", Payload::Empty, false)
            .await?,
        &c.api,
    )
    .await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"deleted": format!("{bucket}/{key}")})
        );
    } else {
        println!("deleted {bucket}/{key}");
    }
    Ok(())
}

pub async fn health(api: &str, json: bool) -> anyhow::Result<()> {
    let v = crate::client::get_json(api, "/v1/storage/health").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for key in [
        "storage_nodes",
        "replication_factor",
        "chunks_stored",
        "bytes_stored",
        "under_replicated_chunks",
        "under_replicated_objects",
        "repairs_in_progress",
        "repairs_done",
        "gc_removed_chunks",
        "gc_removed_tombstones",
        "audits_passed",
        "audits_failed",
        "audits_answered",
        "low_reputation_nodes",
    ] {
        println!("{key:<26}{}", v[key]);
    }
    Ok(())
}
