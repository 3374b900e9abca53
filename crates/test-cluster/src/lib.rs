//! An in-process cluster harness: N real nodes (real libp2p on loopback, real redb, real
//! HTTP API) on port 0 with temporary data dirs, plus crash, stop, restart, partition,
//! drop and delay controls. Used by this and later subsystems' tests.
//!
//! Every cluster uses its own random network name, so clusters running in parallel tests
//! never merge.

// A test-only crate: failing loudly on a broken test setup is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod history;
pub mod rogue;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use xnode_mesh::{FaultRules, MemberState};
use xnode_node::{Config, Node};
use xnode_types::NodeId;

/// One node of a test cluster with its API server.
pub struct TestNode {
    pub node: Node,
    pub api_url: String,
    server: JoinHandle<std::io::Result<()>>,
}

/// A running in-process cluster.
pub struct Cluster {
    nodes: Vec<Option<TestNode>>,
    data_dirs: Vec<PathBuf>,
    p2p_ports: Vec<u16>,
    network: String,
    configure: Box<dyn Fn(&mut Config) + Send + Sync>,
    _root: tempfile::TempDir,
}

/// Installs a test log subscriber once (set `XNODE_TEST_LOG=debug` to see node logs).
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XNODE_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error")),
        )
        .with_test_writer()
        .try_init();
}

/// A port that is free now, picked at random below Linux's ephemeral range (32768+), so
/// ports handed out by `bind(0)` elsewhere never collide with ports a restart reuses.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `n` nodes, each bootstrapping from the others, and waits until every node
    /// sees every other alive.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Like [`Cluster::start`], with a hook that adjusts every node's configuration.
    pub async fn start_with(
        n: usize,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Cluster {
        Self::start_configured(n, Duration::from_secs(10), configure).await
    }

    /// Like [`Cluster::start_with`], waiting up to `converge` for the network to converge.
    pub async fn start_configured(
        n: usize,
        converge: Duration,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Cluster {
        Self::start_partly(n, n, converge, configure).await
    }

    /// A cluster of `n` nodes of which only the first `running` start now; the others
    /// join later ([`Cluster::join`]) as new nodes, which the network has never seen
    /// (no registry record, no data) until then.
    pub async fn start_partly(
        n: usize,
        running: usize,
        converge: Duration,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Cluster {
        init_test_logging();
        let root = tempfile::tempdir().expect("temp dir");
        let network = format!("test-{:08x}", rand::random::<u32>());
        let data_dirs: Vec<PathBuf> = (0..n)
            .map(|i| root.path().join(format!("node-{i}")))
            .collect();
        // Fixed ports per node so a restarted node comes back at the same address.
        let p2p_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            data_dirs,
            p2p_ports,
            network,
            configure: Box::new(configure),
            _root: root,
        };
        for i in 0..n {
            let node = if i < running {
                Some(cluster.launch(i).await)
            } else {
                None
            };
            cluster.nodes.push(node);
        }
        cluster.wait_converged(converge).await;
        cluster
    }

    fn config(&self, i: usize) -> Config {
        // Small clusters bootstrap from everyone; large ones from a few seeds, as a real
        // network would (membership push-pull spreads the rest), which avoids a storm of
        // n² simultaneous dials at start.
        let n = self.p2p_ports.len();
        let seeds = if n <= 8 { n } else { 3 };
        let bootstrap = (0..n)
            .filter(|&j| j != i && (j < seeds || (i < seeds && j < seeds + 1)))
            .map(|j| {
                format!("/ip4/127.0.0.1/tcp/{}", self.p2p_ports[j])
                    .parse()
                    .expect("multiaddr")
            })
            .collect();
        let mut config = Config {
            data_dir: self.data_dirs[i].clone(),
            listen: vec![
                format!("/ip4/127.0.0.1/tcp/{}", self.p2p_ports[i])
                    .parse()
                    .expect("multiaddr"),
            ],
            api: "127.0.0.1:0".parse().expect("socket addr"),
            bootstrap,
            zone: format!("zone-{}", i % 3),
            mdns: false,
            network: self.network.clone(),
            enable_fault_injection: true,
            ..Config::default()
        };
        (self.configure)(&mut config);
        config
    }

    async fn launch(&self, i: usize) -> TestNode {
        match self.try_launch(i).await {
            Ok(node) => node,
            Err(e) => panic!("node {i} failed to start: {e}"),
        }
    }

    async fn try_launch(&self, i: usize) -> Result<TestNode, xnode_node::NodeError> {
        let config = self.config(i);
        let listener = xnode_api::bind(config.api).await.expect("bind API");
        let scheme = if config.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let api_url = format!("{scheme}://{}", listener.local_addr().expect("local addr"));
        // A stopped node's database is released when the last handle to it goes, which
        // may be an HTTP keep-alive connection that closes moments later; retry briefly.
        let started = Instant::now();
        let node = loop {
            match Node::start(config.clone(), api_url.clone()).await {
                Ok(node) => break node,
                Err(e)
                    if e.to_string().contains("already open")
                        && started.elapsed() < Duration::from_secs(10) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let token = node.shutdown_token();
        let server = tokio::spawn(xnode_api::serve(listener, node.clone(), async move {
            token.cancelled().await
        }));
        Ok(TestNode {
            node,
            api_url,
            server,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`. Panics if it is not running.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].as_ref().expect("node is running").node
    }

    pub fn api_url(&self, i: usize) -> &str {
        &self.nodes[i].as_ref().expect("node is running").api_url
    }

    pub fn id(&self, i: usize) -> NodeId {
        xnode_node::identity::load_or_create_key(&self.data_dirs[i])
            .expect("key")
            .0
            .node_id()
    }

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// The state of `target` as node `observer` sees it.
    pub fn state(&self, observer: usize, target: usize) -> Option<MemberState> {
        let target = self.id(target);
        self.node(observer)
            .nodes()
            .into_iter()
            .find(|n| n.id == target)
            .map(|n| n.state)
    }

    /// Waits until `check` holds, polling every 10 ms; returns how long it took.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check(self) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every running node sees every running node alive, with its record.
    pub async fn wait_converged(&self, timeout: Duration) -> Duration {
        let running = self.running();
        let ids: Vec<NodeId> = running.iter().map(|&i| self.id(i)).collect();
        self.wait_until("convergence", timeout, |c| {
            running.iter().all(|&o| {
                let seen = c.node(o).nodes();
                ids.iter().all(|id| {
                    seen.iter()
                        .any(|n| n.id == *id && n.state == MemberState::Alive && n.zone.is_some())
                })
            })
        })
        .await
    }

    /// Waits until every running node other than `target` reports `target` in `state`.
    pub async fn wait_state(
        &self,
        target: usize,
        state: MemberState,
        timeout: Duration,
    ) -> Duration {
        let observers: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&o| o != target)
            .collect();
        self.wait_until(
            &format!("node {target} to be {}", state.as_str()),
            timeout,
            |c| observers.iter().all(|&o| c.state(o, target) == Some(state)),
        )
        .await
    }

    /// Kills node `i` as a crash would: no announcement; its sockets close.
    pub async fn crash(&mut self, i: usize) {
        if let Some(t) = self.nodes[i].take() {
            t.node.crash().await;
            t.server.abort();
            let _ = t.server.await;
        }
    }

    /// Stops node `i` gracefully (it announces `left`).
    pub async fn stop(&mut self, i: usize) {
        if let Some(t) = self.nodes[i].take() {
            t.node.shutdown().await;
            t.server.abort();
            let _ = t.server.await;
        }
    }

    /// Starts node `i` for the first time (a cluster from [`Cluster::start_partly`]):
    /// a new node joining the network.
    pub async fn join(&mut self, i: usize) {
        self.restart(i).await;
    }

    /// Starts node `i` again on the same data dir and address.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is still running");
        let node = self.launch(i).await;
        self.nodes[i] = Some(node);
    }

    /// Starts node `i` again on the same data dir and address, returning the node's
    /// error if it refuses to start.
    pub async fn try_restart(&mut self, i: usize) -> Result<(), xnode_node::NodeError> {
        assert!(self.nodes[i].is_none(), "node {i} is still running");
        self.nodes[i] = Some(self.try_launch(i).await?);
        Ok(())
    }

    /// Cuts the network between groups `a` and `b`, in both directions.
    pub async fn partition(&self, a: &[usize], b: &[usize]) {
        for (side, other) in [(a, b), (b, a)] {
            let blocked: Vec<NodeId> = other.iter().map(|&j| self.id(j)).collect();
            for &i in side {
                let mut rules = self.node(i).faults();
                rules.blocked.extend(blocked.iter().copied());
                self.node(i)
                    .set_faults(rules)
                    .await
                    .expect("fault injection enabled");
            }
        }
    }

    /// Removes every fault on every running node.
    pub async fn heal(&self) {
        for i in self.running() {
            self.node(i)
                .set_faults(FaultRules::default())
                .await
                .expect("fault injection enabled");
        }
    }

    /// Makes node `i` lose a fraction of the messages it sends and receives.
    pub async fn set_drop_rate(&self, i: usize, rate: f64) {
        let mut rules = self.node(i).faults();
        rules.drop_rate = rate;
        self.node(i)
            .set_faults(rules)
            .await
            .expect("fault injection enabled");
    }

    /// Adds latency to every RPC node `i` sends.
    pub async fn set_delay(&self, i: usize, delay: Duration) {
        let mut rules = self.node(i).faults();
        rules.delay = delay;
        self.node(i)
            .set_faults(rules)
            .await
            .expect("fault injection enabled");
    }

    /// Models the link between nodes `a` and `b`, in both directions: each node delays,
    /// loses or cuts the frames it sends to the other (see [`xnode_mesh::LinkFault`]).
    pub async fn set_link(&self, a: usize, b: usize, link: xnode_mesh::LinkFault) {
        for (from, to) in [(a, b), (b, a)] {
            let mut rules = self.node(from).faults();
            rules.links.insert(self.id(to), link);
            self.node(from)
                .set_faults(rules)
                .await
                .expect("fault injection enabled");
        }
    }

    /// Stops every node gracefully.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// A tenant for tests: a key, and helpers that act through a node's storage.
pub struct Tenant {
    pub key: xnode_types::SecretKey,
}

impl Default for Tenant {
    fn default() -> Self {
        Self::new()
    }
}

impl Tenant {
    pub fn new() -> Self {
        Self {
            key: xnode_types::SecretKey::generate(),
        }
    }

    pub fn id(&self) -> xnode_types::PublicKeyBytes {
        self.key.public()
    }

    pub fn data_key(&self) -> xnode_store::DataKey {
        xnode_store::DataKey::derive(&self.key.seed())
    }

    /// The headers of a request signed (v2) for `node` with `body`, and the data key
    /// header if `with_data_key`, as the CLI and the Studio sign it.
    pub fn signed_headers(
        &self,
        node: &NodeId,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        with_data_key: bool,
    ) -> Vec<(&'static str, String)> {
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.signed_headers_at(
            node,
            method,
            path,
            query,
            body,
            with_data_key,
            xnode_types::unix_ms(),
            &nonce,
        )
    }

    /// [`Tenant::signed_headers`] with a chosen timestamp and nonce.
    #[allow(clippy::too_many_arguments)]
    pub fn signed_headers_at(
        &self,
        node: &NodeId,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        with_data_key: bool,
        timestamp_ms: u64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let node = node.to_string();
        let content_blake3 = xnode_types::request_auth::content_hash(body);
        let data_key = with_data_key.then(|| self.data_key().to_hex());
        xnode_types::request_auth::RequestToSign {
            method,
            path,
            query,
            node: &node,
            content_blake3: &content_blake3,
            data_key: data_key.as_deref(),
        }
        .sign(&self.key, timestamp_ms, nonce)
    }

    /// The proof of a request this tenant signed for `node` now (`method` and `path`
    /// as given, empty body): what an edge keeps as its authority to write the tenant's
    /// object metadata.
    pub fn request_proof(
        &self,
        node: &NodeId,
        method: &str,
        path: &str,
    ) -> xnode_store::TenantRequestProof {
        use xnode_types::request_auth::{EMPTY_BODY_BLAKE3, HEADER_SIGNATURE, parse_signature};
        let nonce = format!("{:032x}", rand::random::<u128>());
        let timestamp_ms = xnode_types::unix_ms();
        let headers =
            self.signed_headers_at(node, method, path, "", b"", false, timestamp_ms, &nonce);
        let signature = headers
            .iter()
            .find(|(name, _)| *name == HEADER_SIGNATURE)
            .and_then(|(_, value)| parse_signature(value))
            .expect("a signed request carries its signature");
        xnode_store::TenantRequestProof {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: String::new(),
            timestamp_ms,
            nonce,
            content_blake3: EMPTY_BODY_BLAKE3.to_owned(),
            data_key_blake3: String::new(),
            signature,
        }
    }

    /// The signed registry entry claiming bucket `name`.
    pub fn bucket_claim(&self, name: &str) -> xnode_registry::Entry {
        self.bucket_claim_with_rf(name, None)
    }

    /// The signed registry entry claiming bucket `name` with its own replication factor.
    pub fn bucket_claim_with_rf(&self, name: &str, rf: Option<u8>) -> xnode_registry::Entry {
        self.bucket_claim_pinned(name, rf, &[])
    }

    /// The signed registry entry claiming bucket `name` with its own replication factor,
    /// pinned to `regions` (node zones) when there are any.
    pub fn bucket_claim_pinned(
        &self,
        name: &str,
        rf: Option<u8>,
        regions: &[&str],
    ) -> xnode_registry::Entry {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let regions: Vec<String> = regions.iter().map(|r| (*r).to_owned()).collect();
        let mut record = serde_json::json!({
            "v": xnode_storage::buckets::BucketRecord::version_for(&regions),
            "name": name,
            "owner": self.id().to_hex(),
            "created_ms": now,
        });
        if let Some(rf) = rf {
            record["replication_factor"] = serde_json::json!(rf);
        }
        if !regions.is_empty() {
            record["regions"] = serde_json::json!(regions);
        }
        xnode_registry::Entry::sign(
            &self.key,
            xnode_storage::buckets::bucket_key(&self.id(), name),
            Some(record.to_string().into_bytes()),
            xnode_types::Hlc::new(now, 0),
        )
        .unwrap()
    }
}

impl Cluster {
    /// Sends a raw `store` request from node `from` to `to`, as a modified node could, and
    /// decodes the answer (an error says what failed: the transport or the decoding).
    pub async fn raw_store_request(
        &self,
        from: usize,
        to: NodeId,
        request: &xnode_storage::proto::StoreRequest,
    ) -> Result<xnode_storage::proto::StoreResponse, String> {
        let body = xnode_wire::encode(request).map_err(|e| e.to_string())?;
        let bytes = self
            .node(from)
            .mesh()
            .request(to, "store", body, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        xnode_wire::decode(&bytes, xnode_storage::proto::MAX_STORE_MESSAGE)
            .map_err(|e| e.to_string())
    }

    /// Lets node `i` write `tenant`'s objects, as a signed request from the tenant to it
    /// does (see `xnode_store::seal`).
    pub fn authorise(&self, i: usize, tenant: &Tenant) {
        let node = self.id(i);
        self.node(i).storage().authorise_request(
            tenant.id(),
            tenant.request_proof(&node, "GET", "/v1/buckets"),
        );
    }

    /// Creates a bucket through node `via` and waits until every running node knows it.
    /// The tenant is taken to use every running node as its edge: each may write its
    /// objects (see [`Cluster::create_bucket_with_edges`] for fewer).
    pub async fn create_bucket(&self, via: usize, tenant: &Tenant, name: &str) {
        let edges = self.running();
        self.create_bucket_with_edges(via, tenant, name, &edges)
            .await;
    }

    /// [`Cluster::create_bucket`], with the tenant using only the nodes `edges` (each gets
    /// a signed request from it, so only they may write its objects).
    pub async fn create_bucket_with_edges(
        &self,
        via: usize,
        tenant: &Tenant,
        name: &str,
        edges: &[usize],
    ) {
        self.create_bucket_claimed(via, tenant, name, edges, tenant.bucket_claim(name))
            .await;
    }

    /// [`Cluster::create_bucket`] for a bucket with its own replication factor `rf`.
    pub async fn create_bucket_with_rf(&self, via: usize, tenant: &Tenant, name: &str, rf: u8) {
        let edges = self.running();
        let claim = tenant.bucket_claim_with_rf(name, Some(rf));
        self.create_bucket_claimed(via, tenant, name, &edges, claim)
            .await;
    }

    async fn create_bucket_claimed(
        &self,
        via: usize,
        tenant: &Tenant,
        name: &str,
        edges: &[usize],
        claim: xnode_registry::Entry,
    ) {
        for &i in edges {
            self.authorise(i, tenant);
        }
        let entry = self
            .node(via)
            .storage()
            .create_bucket(&tenant.id(), name, claim)
            .unwrap();
        self.node(via).gossip_entry(&entry).await;
        let owner = tenant.id();
        self.wait_until(
            "the bucket to reach every node",
            Duration::from_secs(10),
            |c| {
                c.running().iter().all(|&i| {
                    xnode_storage::buckets::owner_of(c.node(i).registry(), name)
                        .is_some_and(|(o, _)| o == owner)
                })
            },
        )
        .await;
    }

    /// Stores `data` as `bucket/key` through node `via` (the tenant's edge for it: `via`
    /// is authorised to write the tenant's objects, as the tenant's signed request would).
    pub async fn put(
        &self,
        via: usize,
        tenant: &Tenant,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> Result<xnode_store::ObjectMeta, xnode_storage::StorageError> {
        let body = futures::stream::iter(
            data.chunks(100_000)
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        self.authorise(via, tenant);
        self.node(via)
            .storage()
            .put_object(
                &tenant.id(),
                bucket,
                key,
                &tenant.data_key(),
                "application/octet-stream".into(),
                Default::default(),
                Some(data.len() as u64),
                body,
            )
            .await
    }

    /// An upload through node `via` whose client goes away after sending `data`: its
    /// chunks are stored, but no object points at them. Returns the upload's error.
    pub async fn put_interrupted(
        &self,
        via: usize,
        tenant: &Tenant,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> xnode_storage::StorageError {
        self.put_cut_off_when(via, tenant, bucket, key, data, async {})
            .await
    }

    /// As [`Cluster::put_interrupted`], the client going away only once `cut` completes
    /// (say, once some chunks are stored: an upload cut off at once may have stored none,
    /// since cutting it off aborts its chunk writes in flight).
    pub async fn put_cut_off_when(
        &self,
        via: usize,
        tenant: &Tenant,
        bucket: &str,
        key: &str,
        data: &[u8],
        cut: impl std::future::Future<Output = ()> + Send,
    ) -> xnode_storage::StorageError {
        use futures::StreamExt;
        let body = futures::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(data))]).chain(
            futures::stream::once(async move {
                cut.await;
                Err(std::io::Error::other("client went away"))
            })
            .boxed(),
        );
        self.authorise(via, tenant);
        match self
            .node(via)
            .storage()
            .put_object(
                &tenant.id(),
                bucket,
                key,
                &tenant.data_key(),
                "x/y".into(),
                Default::default(),
                None,
                body,
            )
            .await
        {
            Ok(meta) => panic!("an interrupted upload was stored: {meta:?}"),
            Err(e) => e,
        }
    }

    /// Reads `bucket/key` through node `via`, optionally a byte range `[start, end]`.
    pub async fn get(
        &self,
        via: usize,
        tenant: &Tenant,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Vec<u8>, xnode_storage::StorageError> {
        use futures::StreamExt;
        let mut read = self
            .node(via)
            .storage()
            .get_object(&tenant.id(), bucket, key, &tenant.data_key(), range)
            .await?;
        let mut out = Vec::new();
        while let Some(piece) = read.body.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// The data dir of node `i`.
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        &self.data_dirs[i]
    }
}

impl Tenant {
    /// A signed deployment of guest `guests/dist/<module>.wasm` (already uploaded as
    /// `module_id`), with `configure` adjusting the spec.
    pub fn deployment(
        &self,
        name: &str,
        kind: xnode_deploy::spec::Kind,
        module_id: &str,
        replicas: u32,
        configure: impl FnOnce(&mut xnode_deploy::spec::DeploymentSpec),
    ) -> xnode_registry::Entry {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut spec = xnode_deploy::spec::DeploymentSpec {
            v: xnode_deploy::spec::DEPLOYMENT_RECORD_VERSION,
            name: name.into(),
            kind,
            module: module_id.into(),
            replicas,
            limits: Default::default(),
            env: Default::default(),
            args: vec![],
            allowed_hosts: vec![],
            placement: Default::default(),
            storage: None,
            memory_reserve_mb: None,
            owner: self.id().to_hex(),
            created_ms: now,
        };
        configure(&mut spec);
        // As the clients do: sign the key checks of the storage buckets, unless the test
        // set its own.
        if let Some(storage) = &mut spec.storage
            && storage.key_checks.is_empty()
        {
            storage.key_checks =
                xnode_deploy::spec::key_checks(&self.data_key(), [storage.bucket.as_str()]);
        }
        xnode_registry::Entry::sign(
            &self.key,
            xnode_deploy::spec::deployment_key(&self.id(), name),
            Some(serde_json::to_vec(&spec).unwrap()),
            xnode_types::Hlc::new(now, 0),
        )
        .unwrap()
    }

    /// A signed job record, with the key checks of its buckets signed as the clients do
    /// (unless the test set its own).
    pub fn job(&self, job: &xnode_deploy::spec::JobSpec) -> xnode_registry::Entry {
        let mut job = job.clone();
        if job.key_checks.is_empty() {
            job.key_checks = xnode_deploy::spec::key_checks(&self.data_key(), job.buckets());
        }
        self.job_as_given(&job)
    }

    /// A signed job record exactly as given (an old client's, without key checks).
    pub fn job_as_given(&self, job: &xnode_deploy::spec::JobSpec) -> xnode_registry::Entry {
        xnode_registry::Entry::sign(
            &self.key,
            xnode_deploy::spec::job_key(&self.id(), &job.id),
            Some(serde_json::to_vec(&job).unwrap()),
            xnode_types::Hlc::new(job.created_ms, 0),
        )
        .unwrap()
    }
}

/// The bytes of an example guest from `guests/dist`.
pub fn guest(name: &str) -> bytes::Bytes {
    let path = format!(
        "{}/../../guests/dist/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    bytes::Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

impl Cluster {
    /// Uploads a guest and deploys it through node `via`, then waits until every running
    /// node knows the deployment and `replicas` replicas report running (0: don't wait).
    #[allow(clippy::too_many_arguments)]
    pub async fn deploy(
        &self,
        via: usize,
        tenant: &Tenant,
        name: &str,
        kind: xnode_deploy::spec::Kind,
        module: &str,
        replicas: u32,
        configure: impl FnOnce(&mut xnode_deploy::spec::DeploymentSpec),
    ) {
        let compute = self.node(via).compute();
        let id = compute.put_module(guest(module)).await.unwrap();
        let entry = tenant.deployment(name, kind, &id, replicas, configure);
        let (applied, _) = compute
            .deploy(&tenant.id(), entry, Some(tenant.data_key()))
            .await
            .unwrap();
        self.node(via).gossip_entry(&applied).await;
        self.wait_until(
            "the deployment to reach every node",
            Duration::from_secs(10),
            |c| {
                c.running()
                    .iter()
                    .all(|&i| c.node(i).compute().deployment(name).is_some())
            },
        )
        .await;
        if kind != xnode_deploy::spec::Kind::Job && replicas > 0 {
            self.wait_replicas(via, name, replicas as usize, Duration::from_secs(15))
                .await;
        }
    }

    /// Waits until node `observer` sees `n` replicas of `name` running on live nodes.
    pub async fn wait_replicas(
        &self,
        observer: usize,
        name: &str,
        n: usize,
        timeout: Duration,
    ) -> Duration {
        let started = std::time::Instant::now();
        self.wait_until("replicas to run", timeout, |c| {
            c.node(observer)
                .compute()
                .replicas_of(name)
                .iter()
                .filter(|(_, r)| r.state == "running")
                .count()
                == n
        })
        .await;
        started.elapsed()
    }
}
