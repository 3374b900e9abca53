//! `xnode drain` and `xnode leave`: retire a node, signed with its operator's key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::cli::RetireArgs;
use crate::tenant::{Payload, SignedClient};

/// How often `xnode drain` asks for progress.
const POLL: Duration = Duration::from_secs(1);

fn operator_client(args: &RetireArgs) -> anyhow::Result<SignedClient> {
    let path: PathBuf = args
        .operator_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join(xnode_node::identity::OPERATOR_KEY_FILE));
    // The path must exist: a retired node must never be asked for by a key made up now.
    let (key, _) = xnode_node::identity::load_operator_key(&args.data_dir, Some(&path))
        .with_context(|| {
            format!(
                "the operator key signs drains and leaves; pass --operator-key, or --data-dir \
                 for {}",
                xnode_node::identity::OPERATOR_KEY_FILE
            )
        })?;
    SignedClient::new(&args.api, key)
}

/// Starts a drain, prints its progress until it is done, and (unless `--no-stop`) waits
/// for the node to stop.
pub async fn drain(args: RetireArgs) -> anyhow::Result<()> {
    let client = operator_client(&args)?;
    let query = if args.no_stop { "no_stop=true" } else { "" };
    let request = client
        .request(
            reqwest::Method::POST,
            "/v1/node/drain",
            query,
            Payload::Empty,
            false,
        )
        .await?;
    let started: Value = crate::storage_cmd::send(request, &args.api)
        .await?
        .json()
        .await
        .context("the node's answer to the drain")?;
    if args.json {
        println!("{started}");
    }
    let mut last = String::new();
    let status = loop {
        let status = crate::client::get_json(&args.api, "/v1/node/drain").await?;
        let line = progress_line(&status);
        if line != last && !args.json {
            println!("{line}");
            last = line;
        }
        if status["state"] == "drained" {
            break status;
        }
        tokio::time::sleep(POLL).await;
    };
    if args.json {
        println!("{status}");
    } else {
        println!("drained: nothing this node held is under-replicated without it");
    }
    if !args.no_stop {
        wait_until_stopped(&args.api).await;
    }
    Ok(())
}

fn progress_line(status: &Value) -> String {
    let mut line = format!(
        "{}: round {}, {} copies made, {} chunks held here, under-replicated without this node: {} chunks, {} objects; {} workloads still here",
        status["state"].as_str().unwrap_or("?"),
        status["rounds"],
        status["copies"],
        status["chunks_held"],
        status["under_replicated_chunks"],
        status["under_replicated_objects"],
        status["workloads_here"],
    );
    if let Some(blocked) = status["blocked"].as_str() {
        line.push_str(&format!(" (waiting: {blocked})"));
    }
    if let Some(error) = status["last_error"].as_str() {
        line.push_str(&format!(" (last round failed: {error})"));
    }
    line
}

/// Waits (at most 30 s) until the node's API stops answering.
async fn wait_until_stopped(api: &str) {
    for _ in 0..60 {
        if crate::client::get_json(api, "/healthz").await.is_err() {
            println!("the node has stopped");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("the node still answers 30 s after its drain; check its log");
}

/// Makes the node leave at once, without draining first.
pub async fn leave(args: RetireArgs) -> anyhow::Result<()> {
    let client = operator_client(&args)?;
    let request = client
        .request(
            reqwest::Method::POST,
            "/v1/node/leave",
            "",
            Payload::Empty,
            false,
        )
        .await?;
    crate::storage_cmd::send(request, &args.api).await?;
    println!("the node has left the network; repair copies what it held from the other copies");
    wait_until_stopped(&args.api).await;
    Ok(())
}
