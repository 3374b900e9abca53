//! `xnode devnet`: N real node processes on loopback, joined to each other, with an
//! interactive prompt for fault drills (kill, stop, start) and a clean stop on Ctrl-C.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::DevnetArgs;
use crate::client::{get_json, print_table};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct DevNode {
    index: usize,
    dir: PathBuf,
    api_port: u16,
    s3_port: u16,
    p2p_port: u16,
    zone: String,
    child: Option<Child>,
    /// A configuration file passed to `xnode start` (the chain sections on `--chain`).
    config: Option<PathBuf>,
}

impl DevNode {
    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    fn p2p_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    fn spawn(&mut self, exe: &Path, bootstrap: &[String]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("cannot open {}", self.log_path().display()))?;
        let log_err = log.try_clone().context("log file handle")?;
        let mut command = Command::new(exe);
        command
            .arg("start")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)])
            .args([
                "--listen",
                &format!("/ip4/127.0.0.1/udp/{}/quic-v1", self.p2p_port),
            ])
            .args(["--api", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--s3", &format!("127.0.0.1:{}", self.s3_port)])
            .args(["--zone", self.zone.as_str()])
            .args(["--network", "devnet"])
            .args(
                self.config
                    .iter()
                    .flat_map(|path| [std::ffi::OsStr::new("--config"), path.as_os_str()]),
            )
            .args([
                "--no-mdns",
                "--enable-fault-injection",
                "--exit-with-parent",
            ])
            // Short enough to watch repair happen in a drill.
            .args(["--repair-grace", "10s"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Ctrl-C in the terminal reaches the devnet only; it stops the nodes in order.
            .process_group(0)
            .kill_on_drop(true);
        for b in bootstrap {
            command.args(["--bootstrap", b]);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start node {}", self.index))?;
        self.child = Some(child);
        Ok(())
    }

    async fn signal_and_wait(
        &mut self,
        signal: Signal,
        grace: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.kill().await;
                child.wait().await.ok()
            }
        }
    }
}

/// A port free now and not yet handed out by this devnet (`taken`), picked at random below
/// Linux's ephemeral range (32768+) so ports that other programs get from `bind(0)` do
/// not take it while a node restarts. Nothing is bound until the nodes start, so without
/// `taken` two calls could pick the same free port (it happened: a node's S3 and p2p
/// ports were equal, and the node could not start).
fn free_port(udp_too: bool, taken: &mut HashSet<u16>) -> anyhow::Result<u16> {
    for _ in 0..500 {
        let port = 20_000 + (random_u64() % 12_000) as u16;
        if taken.contains(&port) {
            continue;
        }
        let tcp_ok = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp_ok && (!udp_too || std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()) {
            taken.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("cannot find a free port")
}

/// A random number from the standard library's per-process random hash keys and the clock.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn port_for(
    base: u16,
    index: usize,
    udp_too: bool,
    taken: &mut HashSet<u16>,
    flag: &str,
) -> anyhow::Result<u16> {
    if base == 0 {
        return free_port(udp_too, taken);
    }
    let port = base
        .checked_add(index as u16 - 1)
        .context("port out of range; choose a lower base port")?;
    if !taken.insert(port) {
        anyhow::bail!(
            "port {port} would serve two things at once; choose another base with {flag}, or 0 for free ports"
        );
    }
    Ok(port)
}

pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 64 {
        anyhow::bail!("--nodes must be between 1 and 64");
    }
    let zones = &args.zones;
    if zones.is_empty() {
        anyhow::bail!("--zones needs at least one name");
    }
    for zone in zones {
        xnode_store::validate_regions(std::slice::from_ref(zone))
            .with_context(|| format!("--zones: {zone:?} cannot be a zone name"))?;
    }
    let exe = std::env::current_exe().context("cannot locate the xnode binary")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let base = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());

    let mut nodes = Vec::new();
    let mut taken = HashSet::new();
    for index in 1..=args.nodes {
        let dir = base.join(format!("node-{index}"));
        if !args.keep && dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        let api_port = port_for(args.api_port, index, false, &mut taken, "--api-port")?;
        let p2p_port = port_for(args.p2p_port, index, true, &mut taken, "--p2p-port")?;
        let s3_base = args.s3_port.unwrap_or(if args.api_port == 0 {
            0
        } else {
            args.api_port.saturating_add(1000)
        });
        let s3_port = port_for(s3_base, index, false, &mut taken, "--s3-port")?;
        check_port_free(api_port, "API", "--api-port")?;
        check_port_free(s3_port, "S3", "--s3-port")?;
        check_port_free(p2p_port, "p2p", "--p2p-port")?;
        nodes.push(DevNode {
            index,
            dir,
            api_port,
            s3_port,
            p2p_port,
            zone: zones[(index - 1) % zones.len()].clone(),
            child: None,
            config: None,
        });
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.p2p_addr()).collect();
    let bootstrap_for = |i: usize| -> Vec<String> {
        addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect()
    };

    // A tenant key for trying storage right away.
    let tenant_key = base.join("tenant.key");
    if !tenant_key.exists() {
        crate::tenant::create(&tenant_key, false)?;
    }
    // With --chain: anvil and the contracts first (the committee is the nodes' keys, made
    // now), then every node starts with the chain sections. Dropping `chain` stops anvil.
    let chain = if args.chain {
        let dirs: Vec<PathBuf> = nodes.iter().map(|n| n.dir.clone()).collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tenant = crate::tenant::load(&tenant_key)?;
        let chain = crate::devnet_chain::start(&dirs, &tenant)?;
        for node in &mut nodes {
            node.config = Some(crate::devnet_chain::config_path(&node.dir));
        }
        Some((chain, tenant))
    } else {
        None
    };
    println!(
        "Starting a devnet of {} nodes in {} ...",
        args.nodes,
        base.display()
    );
    let started = Instant::now();
    for (i, node) in nodes.iter_mut().enumerate() {
        node.spawn(&exe, &bootstrap_for(i))?;
    }
    write_manifest(&base, &nodes);
    let ready = wait_ready(&mut nodes, args.nodes).await;
    match ready {
        Ok(()) => println!(
            "\nAll {} nodes are up and see each other ({:.1} s).\n",
            args.nodes,
            started.elapsed().as_secs_f64()
        ),
        Err(ref e) => {
            println!("\nwarning: {e:#}\nSee the node logs listed below.\n");
        }
    }
    // An S3 access key for the devnet's tenant, registered on every node.
    let apis: Vec<String> = nodes.iter().map(|n| n.api_url()).collect();
    let s3_key = match ready {
        Ok(()) => match crate::s3_cmd::register(&apis, &Some(tenant_key.clone()), true).await {
            Ok(pair) => {
                let text =
                    serde_json::json!({"access_key_id": pair.0, "secret_access_key": pair.1});
                let _ = std::fs::write(base.join("s3-key.json"), text.to_string());
                Some(pair)
            }
            Err(e) => {
                println!("warning: could not create the devnet's S3 key: {e:#}");
                None
            }
        },
        Err(_) => None,
    };
    // The tenant lets every node countersign its receipts, so what the devnet's nodes
    // serve it is metered into receipts and its epochs settle real usage.
    if ready.is_ok() {
        let granted = async {
            let tenant = crate::tenant::load(&tenant_key)?;
            for node in &nodes {
                crate::devnet_grant::grant(&node.api_url(), &node.dir, &tenant).await?;
            }
            anyhow::Ok(())
        };
        match granted.await {
            Ok(()) => println!(
                "The devnet's tenant lets every node countersign its receipts (for up to a week).\n"
            ),
            Err(e) => {
                println!("warning: the devnet's tenant could not grant countersigning: {e:#}")
            }
        }
    }
    print_nodes(&nodes);
    print_help(&nodes);
    print_storage_help(&nodes, &tenant_key);
    if let Some((id, secret)) = &s3_key {
        print_s3_help(&nodes, id, secret);
    }
    if let Some((chain, tenant)) = &chain {
        let first = nodes.first().map(|n| n.api_url()).unwrap_or_default();
        crate::devnet_chain::print_help(chain, tenant, &first);
    }
    if args.exit_when_ready {
        stop_all(&mut nodes).await;
        return ready;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut watch = tokio::time::interval(Duration::from_millis(500));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    prompt();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = watch.tick() => report_exits(&mut nodes),
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if !handle_line(line.trim(), &mut nodes, &exe, &bootstrap_for).await {
                        break;
                    }
                    prompt();
                }
                // No terminal (CI, a pipe that closed): keep running until a signal.
                Ok(None) | Err(_) => stdin_open = false,
            },
        }
    }
    println!("\nStopping the devnet ...");
    stop_all(&mut nodes).await;
    println!("Stopped. Data and logs are in {}.", base.display());
    Ok(())
}

fn check_port_free(port: u16, what: &str, flag: &str) -> anyhow::Result<()> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        anyhow::bail!(
            "{what} port {port} is already in use (another devnet or node running?); choose another base with {flag}, or 0 for free ports"
        );
    }
    Ok(())
}

fn write_manifest(base: &Path, nodes: &[DevNode]) {
    let list: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "index": n.index,
                "api_url": n.api_url(),
                "s3_url": n.s3_url(),
                "p2p": n.p2p_addr(),
                "data_dir": n.dir.display().to_string(),
                "log": n.log_path().display().to_string(),
                "pid": n.pid(),
            })
        })
        .collect();
    if let Ok(text) = serde_json::to_string_pretty(&serde_json::json!({ "nodes": list })) {
        let _ = std::fs::write(base.join("devnet.json"), text);
    }
}

async fn wait_ready(nodes: &mut [DevNode], expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut all_ready = true;
        for node in nodes.iter_mut() {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                anyhow::bail!("node {} exited during start ({status}): {last}", node.index);
            }
            let alive = match get_json(&node.api_url(), "/v1/nodes").await {
                Ok(list) => list
                    .as_array()
                    .map(|l| l.iter().filter(|n| n["state"] == "alive").count())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if alive < expected {
                all_ready = false;
            }
        }
        if all_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the nodes did not all see each other within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_nodes(nodes: &[DevNode]) {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.index.to_string(),
                n.pid()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "stopped".into()),
                n.api_url(),
                n.s3_url(),
                n.p2p_addr(),
                n.zone.to_string(),
                n.log_path().display().to_string(),
            ]
        })
        .collect();
    print_table(&["#", "PID", "API", "S3", "P2P", "ZONE", "LOG"], &rows);
}

fn print_help(nodes: &[DevNode]) {
    let first = nodes.first().map(|n| n.api_url()).unwrap_or_default();
    let second = nodes
        .get(1)
        .map(|n| n.api_url())
        .unwrap_or_else(|| first.clone());
    println!(
        "\nTry, in another terminal:\n\
         \x20 xnode nodes --api {first}            # every node and its state\n\
         \x20 xnode status --api {second}\n\
         \x20 curl -s {first}/v1/nodes\n\
         \x20 curl -s {first}/metrics | grep mesh_peers\n\
         \nFault drills, typed here:\n\
         \x20 kill N     SIGKILL node N (a crash)      stop N   graceful stop (SIGTERM)\n\
         \x20 start N    start node N again            status   the nodes as node 1 sees them\n\
         \x20 nodes      the devnet's processes        help     this text\n\
         \x20 slow N MS  node N's function calls take MS ms longer   heal N   undo slow and fail\n\
         \x20 fail N R   node N fails function calls with probability R (0 to 1)\n\
         \x20 quit       stop everything (as Ctrl-C does)\n"
    );
}

fn print_storage_help(nodes: &[DevNode], tenant_key: &Path) {
    let first = nodes.first().map(|n| n.api_url()).unwrap_or_default();
    let last = nodes
        .last()
        .map(|n| n.api_url())
        .unwrap_or_else(|| first.clone());
    println!(
        "Storage, with the tenant key this devnet created ({key}):\n\
         \x20 export XNODE_TENANT_KEY={key}\n\
         \x20 xnode bucket create photos --api {first}\n\
         \x20 xnode put ./README.md photos/readme.md --api {first}\n\
         \x20 xnode get photos/readme.md ./readme-copy.md --api {last}   # through another node\n\
         \x20 xnode ls photos --api {last}\n\
         \x20 xnode storage health --api {first}\n\
         \nCompute (see guests/README.md for every example):\n\
         \x20 xnode deploy guests/hello/app.toml --api {first}\n\
         \x20 curl -s {last}/fn/hello/\n\
         \x20 xnode deployments --api {first}\n\
         \x20 xnode logs hello --api {first}\n",
        key = tenant_key.display()
    );
}

fn print_s3_help(nodes: &[DevNode], id: &str, secret: &str) {
    let first = nodes.first().map(|n| n.s3_url()).unwrap_or_default();
    let last = nodes
        .last()
        .map(|n| n.s3_url())
        .unwrap_or_else(|| first.clone());
    println!(
        "S3, with an access key registered on every node (also in s3-key.json):\n\
         \x20 export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY='{secret}' AWS_DEFAULT_REGION=us-east-1\n\
         \x20 aws --endpoint-url {first} s3 mb s3://pictures\n\
         \x20 aws --endpoint-url {first} s3 cp ./README.md s3://pictures/readme.md\n\
         \x20 aws --endpoint-url {last} s3 ls s3://pictures/           # through another node\n\
         \x20 aws --endpoint-url {last} s3 cp s3://pictures/readme.md ./readme-s3.md\n\
         \x20 aws --endpoint-url {first} s3 presign s3://pictures/readme.md --expires-in 300\n"
    );
}

fn prompt() {
    use std::io::Write;
    print!("devnet> ");
    let _ = std::io::stdout().flush();
}

fn report_exits(nodes: &mut [DevNode]) {
    for node in nodes.iter_mut() {
        if let Some(child) = node.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            println!(
                "\nnode {} exited on its own ({status}); see {}",
                node.index,
                node.log_path().display()
            );
            node.child = None;
            prompt();
        }
    }
}

/// Runs one prompt command. Returns false to quit.
async fn handle_line(
    line: &str,
    nodes: &mut [DevNode],
    exe: &Path,
    bootstrap_for: &dyn Fn(usize) -> Vec<String>,
) -> bool {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let arg = words.next();
    let pick = |nodes: &[DevNode]| -> Option<usize> {
        let n: usize = arg?.parse().ok()?;
        (1..=nodes.len()).contains(&n).then_some(n - 1)
    };
    match command {
        "" => {}
        "help" | "?" => print_help(nodes),
        "quit" | "exit" | "q" => return false,
        "nodes" => print_nodes(nodes),
        "status" => {
            let Some(node) = nodes.iter().find(|n| n.child.is_some()) else {
                println!("no node is running");
                return true;
            };
            match get_json(&node.api_url(), "/v1/nodes").await {
                Ok(list) => {
                    let rows: Vec<Vec<String>> = list
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|n| {
                            let index = nodes
                                .iter()
                                .find(|d| n["api_url"].as_str() == Some(d.api_url().as_str()))
                                .map(|d| d.index.to_string())
                                .unwrap_or_else(|| "?".into());
                            vec![
                                index,
                                n["id"].as_str().unwrap_or("?").into(),
                                n["state"].as_str().unwrap_or("?").into(),
                                n["incarnation"].to_string(),
                            ]
                        })
                        .collect();
                    println!("as node {} sees the network:", node.index);
                    print_table(&["#", "ID", "STATE", "INC"], &rows);
                }
                Err(e) => println!("error: {e:#}"),
            }
        }
        "kill" | "stop" | "start" | "restart" => {
            let Some(i) = pick(nodes) else {
                println!(
                    "usage: {command} N, where N is a node number from 1 to {}",
                    nodes.len()
                );
                return true;
            };
            let node = &mut nodes[i];
            if command != "start" {
                if node.child.is_none() {
                    println!("node {} is not running", node.index);
                    if command != "restart" {
                        return true;
                    }
                } else {
                    let (signal, what) = if command == "kill" {
                        (Signal::SIGKILL, "killed (SIGKILL)")
                    } else {
                        (Signal::SIGTERM, "stopped")
                    };
                    let status = node.signal_and_wait(signal, Duration::from_secs(5)).await;
                    println!(
                        "node {} {what}{}",
                        node.index,
                        status.map(|s| format!(": {s}")).unwrap_or_default()
                    );
                }
            }
            if command == "start" || command == "restart" {
                if node.child.is_some() {
                    println!("node {} is already running", node.index);
                    return true;
                }
                match node.spawn(exe, &bootstrap_for(i)) {
                    Ok(()) => println!(
                        "node {} started (pid {})",
                        node.index,
                        node.pid().unwrap_or(0)
                    ),
                    Err(e) => println!("error: {e:#}"),
                }
            }
        }
        "slow" | "fail" | "heal" => {
            let Some(i) = pick(nodes) else {
                println!(
                    "usage: slow N MS | fail N RATE | heal N, where N is a node number from 1 to {}",
                    nodes.len()
                );
                return true;
            };
            let value = words.next();
            let api = nodes[i].api_url();
            match set_handling_faults(&api, command, value).await {
                Ok(text) => println!("node {}: {text}", nodes[i].index),
                Err(e) => println!("error: {e:#}"),
            }
        }
        other => println!("unknown command {other:?}; type help"),
    }
    true
}

/// The devnet's fault switch: makes one node slow (`slow N MS`) or failing
/// (`fail N RATE`) in its handling of function calls, or healthy again (`heal N`).
async fn set_handling_faults(
    api: &str,
    command: &str,
    value: Option<&str>,
) -> anyhow::Result<String> {
    let mut faults = get_json(api, "/v1/admin/faults").await?;
    match command {
        "slow" => {
            let ms: u64 = value
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("usage: slow N MS"))?;
            faults["handling_delay_ms"] = serde_json::json!(ms);
        }
        "fail" => {
            let rate: f64 = value
                .and_then(|v| v.parse().ok())
                .filter(|r: &f64| (0.0..=1.0).contains(r))
                .ok_or_else(|| anyhow::anyhow!("usage: fail N RATE, RATE between 0 and 1"))?;
            faults["handling_error_rate"] = serde_json::json!(rate);
        }
        _ => {
            faults["handling_delay_ms"] = serde_json::json!(0);
            faults["handling_error_rate"] = serde_json::json!(0.0);
        }
    }
    let response = reqwest::Client::new()
        .put(format!("{api}/v1/admin/faults"))
        .json(&faults)
        .send()
        .await?;
    if !response.status().is_success() {
        anyhow::bail!(
            "the node refused: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(format!(
        "function calls now take {} ms more and fail with probability {}",
        faults["handling_delay_ms"], faults["handling_error_rate"]
    ))
}

async fn stop_all(nodes: &mut [DevNode]) {
    for node in nodes.iter_mut() {
        if let Some(pid) = node.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for node in nodes.iter_mut() {
        node.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5))
            .await;
    }
}
