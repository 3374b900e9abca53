//! `xnode drain` and `xnode leave`: retire a node, signed with its operator's key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::cli::RetireArgs;
use crate::tenant::{Payload, SignedClient};

/// How often `xnode drain` asks for progress.
const POLL: Duration = Duration::from_secs(1);

/// The node to retire and the key that signs: flags, then the node's configuration file,
/// then the defaults of a node started without one.
struct Target {
    api: String,
    data_dir: PathBuf,
    operator_key: PathBuf,
}

impl Target {
    fn resolve(args: &RetireArgs) -> anyhow::Result<Self> {
        let config = match &args.config {
            Some(path) => Some(crate::start::read_config_file(path)?),
            None => None,
        };
        let api = match (&args.api, &config) {
            (Some(api), _) => api.clone(),
            (None, Some(config)) => api_url_of(config.api),
            (None, None) => "http://127.0.0.1:8080".to_owned(),
        };
        let data_dir = match (&args.data_dir, &config) {
            (Some(dir), _) => dir.clone(),
            (None, Some(config)) => config.data_dir.clone(),
            (None, None) => PathBuf::from("./xnode-data"),
        };
        let operator_key = args
            .operator_key
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.operator_key_file.clone()))
            .unwrap_or_else(|| data_dir.join(xnode_node::identity::OPERATOR_KEY_FILE));
        Ok(Self {
            api,
            data_dir,
            operator_key,
        })
    }
}

/// The URL a client on the node's host reaches its API at: a wildcard listen address is
/// reached through loopback.
fn api_url_of(listen: std::net::SocketAddr) -> String {
    let host = match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}", std::net::SocketAddr::new(host, listen.port()))
}

fn operator_client(target: &Target) -> anyhow::Result<SignedClient> {
    // The path must exist: a retired node must never be asked for by a key made up now.
    let (key, _) =
        xnode_node::identity::load_operator_key(&target.data_dir, Some(&target.operator_key))
            .with_context(|| {
                format!(
                    "the operator key signs drains and leaves; pass --config, --operator-key, \
                     or --data-dir for {}",
                    xnode_node::identity::OPERATOR_KEY_FILE
                )
            })?;
    SignedClient::new(&target.api, key)
}

/// Starts a drain, prints its progress until it is done, and (unless `--no-stop`) waits
/// for the node to stop.
pub async fn drain(args: RetireArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args)?;
    let client = operator_client(&target)?;
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
    let started: Value = crate::storage_cmd::send(request, &target.api)
        .await?
        .json()
        .await
        .context("the node's answer to the drain")?;
    if args.json {
        println!("{started}");
    }
    let mut last = String::new();
    let status = loop {
        let status = crate::client::get_json(&target.api, "/v1/node/drain").await?;
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
        wait_until_stopped(&target.api).await;
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
    let target = Target::resolve(&args)?;
    let client = operator_client(&target)?;
    let request = client
        .request(
            reqwest::Method::POST,
            "/v1/node/leave",
            "",
            Payload::Empty,
            false,
        )
        .await?;
    crate::storage_cmd::send(request, &target.api).await?;
    println!("the node has left the network; repair copies what it held from the other copies");
    wait_until_stopped(&target.api).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>, api: Option<&str>, data_dir: Option<&str>) -> RetireArgs {
        RetireArgs {
            config,
            api: api.map(str::to_owned),
            data_dir: data_dir.map(PathBuf::from),
            operator_key: None,
            no_stop: false,
            json: false,
        }
    }

    #[test]
    fn the_config_file_says_where_the_node_is_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n2.toml");
        std::fs::write(
            &file,
            "data_dir = \"/var/lib/xnode/n2\"\napi = \"0.0.0.0:8082\"\n\
             operator_key_file = \"/etc/xnode/operator.key\"\n",
        )
        .unwrap();
        let target = Target::resolve(&args(Some(file.clone()), None, None)).unwrap();
        assert_eq!(target.api, "http://127.0.0.1:8082");
        assert_eq!(target.data_dir, PathBuf::from("/var/lib/xnode/n2"));
        assert_eq!(
            target.operator_key,
            PathBuf::from("/etc/xnode/operator.key")
        );

        let target = Target::resolve(&args(Some(file), Some("http://h:1"), Some("/d"))).unwrap();
        assert_eq!(target.api, "http://h:1");
        assert_eq!(target.data_dir, PathBuf::from("/d"));
        assert_eq!(
            target.operator_key,
            PathBuf::from("/etc/xnode/operator.key")
        );

        let target = Target::resolve(&args(None, None, None)).unwrap();
        assert_eq!(target.api, "http://127.0.0.1:8080");
        assert_eq!(
            target.operator_key,
            PathBuf::from("./xnode-data/operator.key")
        );

        let missing = dir.path().join("missing.toml");
        assert!(Target::resolve(&args(Some(missing), None, None)).is_err());
    }
}
