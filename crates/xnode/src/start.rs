//! `xnode start`: configuration loading, logging, and the node's lifetime.

use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use xnode_node::{Config, Node};

use crate::cli::StartArgs;

/// Reads a node's configuration file (defaults for what it leaves out).
pub fn read_config_file(path: &std::path::Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str::<Config>(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message().trim()))
}

/// Builds the configuration: defaults, then the file, then environment and flags.
pub fn build_config(args: &StartArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => read_config_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if let Some(a) = args.api {
        config.api = a;
    }
    if let Some(a) = args.s3 {
        config.s3_listen = Some(a);
    }
    if !args.bootstrap.is_empty() {
        config.bootstrap = args.bootstrap.clone();
    }
    if let Some(z) = &args.zone {
        config.zone = z.clone();
    }
    if let Some(n) = &args.network {
        config.network = n.clone();
    }
    if args.no_mdns {
        config.mdns = false;
    }
    if let Some(grace) = args.repair_grace {
        config.storage.repair_grace = grace;
    }
    if let Some(version) = &args.advertised_protocol {
        config.advertised_protocol = Some(version.clone());
    }
    if args.enable_fault_injection {
        config.enable_fault_injection = true;
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        config.otlp_endpoint = Some(endpoint.clone());
    }
    Ok(config)
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("XNODE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,libp2p=warn,libp2p_gossipsub=error,libp2p_mdns=warn,libp2p_kad=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: devnet nodes log to files that people grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    config.validate()?;
    init_logging(&args.log_format);

    // Bind the API first: a taken port is the most common start-up mistake, and failing
    // before joining the mesh leaves no trace on the network.
    let listener = xnode_api::bind(config.api)
        .await
        .map_err(anyhow::Error::msg)?;
    let api_addr = listener.local_addr().context("API listener address")?;
    // With `[http.tls]` both ports speak HTTPS only (or both, if plain HTTP is allowed too:
    // the URLs other nodes and the Studio see are then the HTTPS ones).
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let api_url = format!("{scheme}://{api_addr}");
    let s3_listener = match config.s3_listen {
        Some(addr) => Some(xnode_s3::bind(addr).await.map_err(anyhow::Error::msg)?),
        None => None,
    };
    let s3_url = match &s3_listener {
        Some(l) => Some(format!(
            "{scheme}://{}",
            l.local_addr().context("S3 listener address")?
        )),
        None => None,
    };
    let node = Node::start(config, api_url.clone()).await?;
    let me = node.local();
    tracing::info!(id = %me.id, api = %api_url, addresses = ?me.addresses, incarnation = me.incarnation, "node started");
    let s3_text = s3_url
        .as_ref()
        .map(|u| format!(", S3 {u}"))
        .unwrap_or_default();
    eprintln!(
        "xnode {} ready: API {api_url}{s3_text}, p2p {}",
        me.id,
        me.addresses.join(" ")
    );

    let token = node.shutdown_token();
    let server = tokio::spawn(xnode_api::serve(listener, node.clone(), async move {
        token.cancelled().await
    }));
    let s3_server = s3_listener.map(|l| {
        let token = node.shutdown_token();
        let limits = node.config().http.clone();
        let gateway = node.with_metrics_registry(|metrics| {
            xnode_s3::S3Gateway::new(
                node.storage().clone(),
                node.db().clone(),
                node.tenant_rate_limit().clone(),
                metrics,
            )
        });
        node.spawn_worker(gateway.lifecycle_worker(node.config().s3_lifecycle_day));
        node.spawn_worker(gateway.access_log_worker(node.config().s3_access_log_roll));
        tokio::spawn(xnode_s3::serve(l, gateway, limits, async move {
            token.cancelled().await
        }))
    });

    // Under systemd (`Type=notify`), the service counts as started from here.
    if let Err(e) = crate::sd_notify::notify(&format!("READY=1\nSTATUS=serving, node {}", me.id)) {
        tracing::warn!(error = %e, "could not tell the service manager the node is ready");
    }

    let stop_requested = node.stop_requested();
    tokio::select! {
        _ = wait_for_stop(args.exit_with_parent) => {}
        // A finished drain or a leave: the node has said goodbye and asks to stop. The exit
        // status is 0, so systemd's `Restart=on-failure` does not start it again.
        _ = stop_requested.cancelled() => {
            tracing::info!("stopping: the node has left the network");
            // The API keeps answering a moment, so `xnode drain` (which polls every second)
            // sees the drain end before the node goes.
            tokio::time::sleep(STOP_LINGER).await;
        }
    }
    if let Err(e) = crate::sd_notify::notify("STOPPING=1") {
        tracing::warn!(error = %e, "could not tell the service manager the node is stopping");
    }
    node.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server stopped with an error"),
        Err(_) => tracing::warn!("API server did not stop within 3 s"),
        _ => {}
    }
    if let Some(s3) = s3_server
        && tokio::time::timeout(Duration::from_secs(4), s3)
            .await
            .is_err()
    {
        tracing::warn!("S3 gateway did not stop within 4 s");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long a node that asked to stop (after a drain or a leave) keeps its API up.
const STOP_LINGER: Duration = Duration::from_secs(2);

/// Waits for Ctrl-C, SIGTERM, or (with `exit_with_parent`) the parent's death.
async fn wait_for_stop(exit_with_parent: bool) {
    let parent = nix::unistd::getppid();
    let parent_gone = async move {
        if !exit_with_parent {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if nix::unistd::getppid() != parent {
                tracing::warn!("parent process exited; stopping");
                return;
            }
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term => tracing::info!("terminated"),
        _ = parent_gone => {}
    }
}
