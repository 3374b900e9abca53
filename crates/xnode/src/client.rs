//! Client commands: they talk to a node's HTTP API and print tables or JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;

use crate::cli::{ClientArgs, KeyArgs};

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")
}

pub async fn get_json(api: &str, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{}", api.trim_end_matches('/'), path);
    let response = http()?.get(&url).send().await;
    read_json(api, &url, response).await
}

/// POSTs `body` as JSON, unsigned (for values that carry their own signatures).
pub async fn post_json(api: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let url = format!("{}{}", api.trim_end_matches('/'), path);
    let response = http()?.post(&url).json(body).send().await;
    read_json(api, &url, response).await
}

/// The JSON body of a node's answer, or its error message as the error.
async fn read_json(
    api: &str,
    url: &str,
    response: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<Value> {
    let response = response.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the node at {api}: {} (is it running? pass --api URL)",
            root_cause(&e)
        )
    })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not return JSON"))?;
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("request failed");
        anyhow::bail!("{url}: {status}: {message}");
    }
    Ok(body)
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn ago(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "never".into() };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let d = now.saturating_sub(ms);
    if d < 1000 {
        "just now".into()
    } else if d < 60_000 {
        format!("{:.1}s ago", d as f64 / 1000.0)
    } else {
        format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(d / 1000))
        )
    }
}

fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".into() };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub async fn nodes(args: ClientArgs) -> anyhow::Result<()> {
    let nodes = get_json(&args.api, "/v1/nodes").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let list = nodes.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let mut id = n["id"].as_str().unwrap_or("?").to_string();
            if n["is_self"].as_bool() == Some(true) {
                id.push_str(" *");
            }
            let cap = &n["capacity"];
            // A refused peer shows as `refused`; a draining or departed node says so
            // beside its liveness.
            let state = match (n["refused"].as_str(), n["status"].as_str()) {
                (Some(_), _) => "refused".to_owned(),
                (None, Some(status @ ("draining" | "left"))) if n["state"] != status => {
                    format!("{} ({status})", n["state"].as_str().unwrap_or("?"))
                }
                _ => n["state"].as_str().unwrap_or("?").to_owned(),
            };
            let protocol = match (n["negotiated_protocol"].as_str(), n["protocol"].as_str()) {
                (Some(negotiated), _) => negotiated.to_owned(),
                (None, Some(advertised)) => advertised.to_owned(),
                _ => "-".to_owned(),
            };
            vec![
                id,
                state,
                protocol,
                n["zone"].as_str().unwrap_or("-").into(),
                n["api_url"].as_str().unwrap_or("-").into(),
                ago(n["last_seen_ms"].as_u64()),
                cap["cpu_cores"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                bytes(cap["memory_free_bytes"].as_u64()),
                bytes(cap["disk_free_bytes"].as_u64()),
                n["incarnation"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "STATE",
            "PROTOCOL",
            "ZONE",
            "API",
            "LAST SEEN",
            "CPUS",
            "MEM FREE",
            "DISK FREE",
            "INC",
        ],
        &rows,
    );
    println!(
        "\n{} nodes (* = the node answering, {})",
        list.len(),
        args.api
    );
    for n in &list {
        if let Some(reason) = n["refused"].as_str() {
            println!("refused {}: {reason}", n["id"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}

/// `xnode ledger receipts`: the countersigned receipts a node holds for an epoch.
pub async fn receipts(
    args: ClientArgs,
    epoch: Option<u64>,
    tenant: Option<String>,
    provider: Option<String>,
) -> anyhow::Result<()> {
    let path = format!(
        "/v1/ledger/receipts{}",
        receipts_query(epoch, tenant, provider)?
    );
    let listing = get_json(&args.api, &path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    println!(
        "epoch {} ({} s)",
        listing["epoch"].as_u64().unwrap_or(0),
        listing["epoch_seconds"].as_u64().unwrap_or(0)
    );
    let rows: Vec<Vec<String>> = listing["receipts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let text = |field: &str| r[field].as_str().unwrap_or("?").to_owned();
            vec![
                text("tenant"),
                text("provider"),
                text("resource"),
                r["cumulative"].as_u64().unwrap_or(0).to_string(),
                text("countersigned_by"),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "PROVIDER",
            "RESOURCE",
            "CUMULATIVE",
            "COUNTERSIGNED BY",
        ],
        &rows,
    );
    Ok(())
}

/// The query of `GET /v1/ledger/receipts`: its filters, each given only when set.
pub fn receipts_query(
    epoch: Option<u64>,
    tenant: Option<String>,
    provider: Option<String>,
) -> anyhow::Result<String> {
    let mut pairs = Vec::new();
    if let Some(epoch) = epoch {
        pairs.push(format!("epoch={epoch}"));
    }
    // Tenant ids are hex and node ids base58, so anything else is a typo (and would need
    // escaping in a URL): refused rather than sent.
    let checked = |name: &str, text: &str| -> anyhow::Result<String> {
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!("--{name} {text:?} is not an id");
        }
        Ok(format!("{name}={text}"))
    };
    if let Some(tenant) = tenant {
        pairs.push(checked("tenant", tenant.trim_start_matches("0x"))?);
    }
    if let Some(provider) = provider {
        pairs.push(checked("provider", &provider)?);
    }
    Ok(if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    })
}

/// `xnode workers`: the background workers of the node answering, and their state.
pub async fn workers(args: ClientArgs) -> anyhow::Result<()> {
    let workers = get_json(&args.api, "/v1/node/workers").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&workers)?);
        return Ok(());
    }
    let list = workers.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let progress = &w["progress"];
            let mut detail = progress["detail"].as_str().unwrap_or("").to_string();
            if let Some(queued) = progress["queued"].as_u64() {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                detail.push_str(&format!("{queued} queued"));
            }
            if let Some(error) = w["last_error"].as_str() {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                detail.push_str(&format!(
                    "last error {}: {error}",
                    ago(w["last_error_ms"].as_u64())
                ));
            }
            vec![
                w["name"].as_str().unwrap_or("?").into(),
                w["state"].as_str().unwrap_or("?").into(),
                ago(w["last_run_ms"].as_u64()),
                w["steps"].as_u64().unwrap_or(0).to_string(),
                progress["items_done"].as_u64().unwrap_or(0).to_string(),
                w["errors"].as_u64().unwrap_or(0).to_string(),
                detail,
            ]
        })
        .collect();
    print_table(
        &[
            "WORKER", "STATE", "LAST RUN", "STEPS", "ITEMS", "ERRORS", "DETAIL",
        ],
        &rows,
    );
    println!("\n{} workers on {}", list.len(), args.api);
    Ok(())
}

pub async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let me = get_json(&args.api, "/v1/node").await?;
    let nodes = get_json(&args.api, "/v1/nodes").await?;
    let list = nodes.as_array().cloned().unwrap_or_default();
    let count = |state: &str| list.iter().filter(|n| n["state"] == state).count();
    if args.json {
        let summary = serde_json::json!({
            "node": me,
            "network": {
                "nodes": list.len(),
                "alive": count("alive"),
                "suspect": count("suspect"),
                "dead": count("dead"),
                "left": count("left"),
            }
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("node        {}", me["id"].as_str().unwrap_or("?"));
    println!("api         {}", me["api_url"].as_str().unwrap_or("?"));
    println!("zone        {}", me["zone"].as_str().unwrap_or("?"));
    println!("version     {}", me["version"].as_str().unwrap_or("?"));
    println!("network     {}", me["network"].as_str().unwrap_or("?"));
    println!("incarnation {}", me["incarnation"]);
    println!("started     {}", me["started_at"].as_str().unwrap_or("?"));
    for a in me["addresses"].as_array().cloned().unwrap_or_default() {
        println!("listening   {}", a.as_str().unwrap_or("?"));
    }
    println!(
        "peers       {} nodes: {} alive, {} suspect, {} dead, {} left",
        list.len(),
        count("alive"),
        count("suspect"),
        count("dead"),
        count("left")
    );
    Ok(())
}

pub fn key(args: KeyArgs) -> anyhow::Result<()> {
    match args.action {
        Some(crate::cli::KeyAction::New { file, force, json }) => {
            let path = file.unwrap_or_else(crate::tenant::default_key_path);
            let key = crate::tenant::create(&path, force)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": key.public().to_hex(), "file": path.display().to_string()})
                );
            } else {
                println!("created a tenant key in {}", path.display());
                println!("tenant      {}", key.public().to_hex());
                println!(
                    "Keep this file safe: it is the only way to reach your buckets and decrypt your objects."
                );
            }
            return Ok(());
        }
        Some(crate::cli::KeyAction::Tenant { file, json }) => {
            let path = file.unwrap_or_else(crate::tenant::default_key_path);
            let key = crate::tenant::load(&path)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": key.public().to_hex(), "file": path.display().to_string()})
                );
            } else {
                println!("tenant      {}", key.public().to_hex());
                println!("key file    {}", path.display());
            }
            return Ok(());
        }
        Some(crate::cli::KeyAction::S3 { .. }) => {
            anyhow::bail!("`xnode key s3` runs asynchronously (see main)")
        }
        None => {}
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (key, created) = xnode_node::identity::load_or_create_key(&args.data_dir)?;
    let path = args.data_dir.join(xnode_node::identity::KEY_FILE);
    if args.json {
        let v = serde_json::json!({
            "node_id": key.node_id().to_string(),
            "public_key": key.public().to_hex(),
            "key_file": path.display().to_string(),
            "created": created,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if created {
        println!("created a new node key in {}", path.display());
    }
    println!("node id     {}", key.node_id());
    println!("public key  {}", key.public().to_hex());
    println!("key file    {}", path.display());
    Ok(())
}

/// A Unix-millisecond time as RFC 3339 with milliseconds (UTC).
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
