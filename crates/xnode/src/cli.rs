//! Command-line interface definitions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use xnode_mesh::Multiaddr;

/// Xnode: a permissionless, decentralized cloud. Run a node, a local devnet, or talk to a
/// node's API.
#[derive(Parser, Debug)]
#[command(name = "xnode", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node.
    Start(Box<StartArgs>),
    /// Run a local network of N real node processes on loopback, for development and drills.
    Devnet(DevnetArgs),
    /// List every node the network knows, with its state.
    Nodes(ClientArgs),
    /// Summarise a node and the network it sees.
    Status(ClientArgs),
    /// List the node's background workers and what each is doing.
    Workers(ClientArgs),
    /// Retire a node for good: move every chunk, metadata entry and workload it holds to
    /// other nodes, show the progress, and stop the node once nothing it held is
    /// under-replicated without it. Signed with the node's operator key.
    Drain(RetireArgs),
    /// Make a node leave the network for good at once, without moving its data first (the
    /// other copies are re-replicated), and stop it. Prefer `xnode drain`.
    Leave(RetireArgs),
    /// Node and tenant keys: show the node's identity, or create a tenant key.
    Key(KeyArgs),
    /// Settlement: the countersigned usage receipts a node holds, and closing epochs.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// An operator's bond on the Staking contract: bond, unbond, withdraw, status.
    Stake {
        #[command(subcommand)]
        action: StakeAction,
    },
    /// What an operator can claim per posted epoch (from the node's epoch records), and
    /// `claim EPOCH` to claim it on chain with its Merkle proof.
    Rewards(RewardsArgs),
    /// A tenant's escrow on the Settlement contract: deposit, status.
    Escrow {
        #[command(subcommand)]
        action: EscrowAction,
    },
    /// Operator and authority keys, and signed admission lists for the allowlist policy.
    Admission {
        #[command(subcommand)]
        action: AdmissionAction,
    },
    /// Tenant actions on the nodes the tenant used as edges.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Your KMS keys, which SSE-KMS objects (`x-amz-server-side-encryption: aws:kms`) are
    /// encrypted under.
    Kms {
        #[command(subcommand)]
        action: KmsAction,
    },
    /// Create, list and delete buckets.
    Bucket {
        #[command(subcommand)]
        action: BucketAction,
    },
    /// Upload a file as an object: `xnode put FILE BUCKET/KEY`.
    Put {
        file: PathBuf,
        target: String,
        /// Content type [default: guessed from the file name].
        #[arg(long)]
        content_type: Option<String>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Download an object: `xnode get BUCKET/KEY [FILE]` (stdout without FILE, or with `-`).
    Get {
        target: String,
        file: Option<PathBuf>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// List objects: `xnode ls BUCKET[/PREFIX]`.
    Ls {
        target: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Delete an object: `xnode rm BUCKET/KEY`.
    Rm {
        target: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// A live view of the network's nodes and scopes, refreshed every second.
    Top {
        #[command(flatten)]
        args: ClientArgs,
        /// Print one frame and exit.
        #[arg(long)]
        once: bool,
    },
    /// Storage status of a node.
    Storage {
        #[command(subcommand)]
        action: StorageAction,
    },
    /// Deploy (or update) an application from its manifest: `xnode deploy app.toml`.
    Deploy {
        manifest: PathBuf,
        /// Override the manifest's replica count (scale).
        #[arg(long)]
        replicas: Option<u32>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// List this tenant's deployments and the nodes running their replicas.
    Deployments {
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Remove a deployment.
    Undeploy {
        name: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Recent stdout, stderr and requests of a deployment, from every node that ran it.
    Logs {
        name: String,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Run batch jobs and read their results.
    Job {
        #[command(subcommand)]
        action: JobAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobAction {
    /// Run a job of a `job` deployment: `xnode job run transform --input input=data/in.txt`.
    Run {
        deployment: String,
        /// Extra arguments for the program (after `--`).
        #[arg(last = true)]
        program_args: Vec<String>,
        /// Job id [default: <deployment>-<random>].
        #[arg(long)]
        id: Option<String>,
        /// Mount object BUCKET/KEY read-only at /in/NAME: `NAME=BUCKET/KEY`. Repeatable.
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// Bucket receiving stdout, stderr and /out files under jobs/<id>/.
        #[arg(long, default_value = "data")]
        output_bucket: String,
        /// A file given to the program as standard input (at most 256 KiB).
        #[arg(long)]
        stdin: Option<PathBuf>,
        /// Wait for the job to finish and print its status.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// A job's state, node, exit code, usage and outputs.
    Status {
        id: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Print a job's stdout (or `--file stderr`, or a file it wrote under /out).
    Output {
        id: String,
        #[arg(long, default_value = "stdout")]
        file: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BucketAction {
    /// Create a bucket owned by your tenant key.
    Create {
        name: String,
        /// Copies of every chunk of this bucket [default: the node's, 3].
        #[arg(long)]
        replication_factor: Option<u8>,
        /// Pin the bucket's data to a region (a node zone); repeat for several. Its chunks
        /// and metadata are then placed only on admitted nodes in these regions, and the
        /// bucket is refused if they hold fewer nodes than it keeps copies [default: any].
        #[arg(long = "region", value_name = "REGION")]
        regions: Vec<String>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// List your buckets.
    Ls {
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Delete an empty bucket.
    Rm {
        name: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageAction {
    /// Replication health as the node sees it.
    Health(ClientArgs),
}

/// Options of commands that act as a tenant.
#[derive(Args, Debug, Clone)]
pub struct StorageClientArgs {
    /// Base URL of the node's API.
    #[arg(long, env = "XNODE_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The tenant key file [default: the user's config dir, xnode/tenant.key].
    #[arg(long, env = "XNODE_TENANT_KEY")]
    pub tenant_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `xnode start`. Each can also come from an `XNODE_*` environment variable or
/// a TOML config file; flags win over the environment, which wins over the file.
#[derive(Args, Debug, Default)]
pub struct StartArgs {
    /// TOML configuration file (keys as in `Config`; see docs/configuration.md).
    #[arg(long, env = "XNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its key and data [default: ./xnode-data].
    #[arg(long, env = "XNODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// libp2p listen multiaddr, repeatable [default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1].
    #[arg(long, env = "XNODE_LISTEN", value_delimiter = ',')]
    pub listen: Vec<Multiaddr>,
    /// HTTP API address [default: 127.0.0.1:8080].
    #[arg(long, env = "XNODE_API")]
    pub api: Option<SocketAddr>,
    /// Address of the S3-compatible gateway, e.g. 127.0.0.1:9000 [default: no S3 endpoint].
    #[arg(long = "s3", env = "XNODE_S3")]
    pub s3: Option<SocketAddr>,
    /// Multiaddr of a peer to join through, repeatable.
    #[arg(long, env = "XNODE_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Zone label (rack, site or region) [default: default].
    #[arg(long, env = "XNODE_ZONE")]
    pub zone: Option<String>,
    /// Network name; nodes only join nodes of the same network [default: xnode].
    #[arg(long, env = "XNODE_NETWORK")]
    pub network: Option<String>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long, env = "XNODE_NO_MDNS")]
    pub no_mdns: bool,
    /// Allow fault injection through /v1/admin/faults (drills and tests only).
    #[arg(long, env = "XNODE_ENABLE_FAULT_INJECTION")]
    pub enable_fault_injection: bool,
    /// Advertise this node-to-node protocol version (MAJOR.MINOR) instead of the
    /// release's own: for upgrade drills and tests only [default: the release's].
    #[arg(long, env = "XNODE_ADVERTISED_PROTOCOL")]
    pub advertised_protocol: Option<String>,
    /// How long a dead node's data waits before it is re-replicated elsewhere [default: 60s].
    #[arg(long, env = "XNODE_REPAIR_GRACE", value_parser = humantime::parse_duration)]
    pub repair_grace: Option<std::time::Duration>,
    /// Send the spans of function calls to this OTLP/HTTP collector (JSON), for example
    /// http://127.0.0.1:4318 [default: off].
    #[arg(long, env = "XNODE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log format.
    #[arg(long, env = "XNODE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Stop when the parent process exits (used by `xnode devnet`).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, short = 'n', default_value_t = 3)]
    pub nodes: usize,
    /// Directory holding each node's data dir and log.
    #[arg(long, default_value = ".xnode-devnet")]
    pub dir: PathBuf,
    /// API port of node 1; node i uses this plus i-1. 0 picks free ports.
    #[arg(long, default_value_t = 8080)]
    pub api_port: u16,
    /// S3 port of node 1; node i uses this plus i-1. 0 picks free ports [default: the API
    /// port plus 1000, so 9080 for node 1; free ports with --api-port 0].
    #[arg(long)]
    pub s3_port: Option<u16>,
    /// libp2p port of node 1 (TCP and QUIC); node i uses this plus i-1. 0 picks free ports.
    #[arg(long, default_value_t = 4001)]
    pub p2p_port: u16,
    /// Keep the nodes' data from an earlier run instead of starting fresh.
    #[arg(long)]
    pub keep: bool,
    /// The zones (regions, for buckets pinned with an S3 `LocationConstraint`) the nodes
    /// run in, given to the nodes in turn. One name puts every node in one region, where
    /// a bucket can be pinned with all its copies.
    #[arg(long, value_delimiter = ',', default_value = "zone-a,zone-b,zone-c")]
    pub zones: Vec<String>,
    /// Start a local EVM (anvil, from `npm ci` in contracts/anvil or XNODE_ANVIL), deploy
    /// the settlement contracts, fund the tenant's escrow and the operators, and settle
    /// 30 s epochs on it.
    #[arg(long)]
    pub chain: bool,
    /// Exit once the network is up (nodes keep running only as long as this process; use
    /// for scripts that only need a readiness check).
    #[arg(long, hide = true)]
    pub exit_when_ready: bool,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Base URL of the node's API.
    #[arg(long, env = "XNODE_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `xnode drain` and `xnode leave`.
#[derive(Args, Debug)]
pub struct RetireArgs {
    /// The node's configuration file (as given to `xnode start --config`): its `api`,
    /// `data_dir` and `operator_key_file` say where to ask and which key signs. Flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Base URL of the node's API [default: the config's `api`, else http://127.0.0.1:8080].
    #[arg(long, env = "XNODE_API_URL")]
    pub api: Option<String>,
    /// The node's data dir, where its operator key is (`operator.key`) unless
    /// `--operator-key` says otherwise [default: the config's, else ./xnode-data].
    #[arg(long, env = "XNODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The operator key file (the node's `operator_key_file`).
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
    /// Keep the node running (empty, and `left`) once drained.
    #[arg(long)]
    pub no_stop: bool,
    /// Print JSON instead of progress lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: Option<KeyAction>,
    /// The node's data dir.
    #[arg(long, env = "XNODE_DATA_DIR", default_value = "./xnode-data")]
    pub data_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum LedgerAction {
    /// List the countersigned receipts the node holds for an epoch (as provider or edge).
    Receipts {
        /// The epoch number; the current epoch when absent.
        #[arg(long)]
        epoch: Option<u64>,
        /// Only this tenant's receipts (its id, 64 hex digits).
        #[arg(long)]
        tenant: Option<String>,
        /// Only the receipts of this provider node (its id).
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// How closing epochs stands on the node: committee, recent epochs, roots, postings.
    Status {
        #[command(flatten)]
        args: ClientArgs,
    },
    /// One epoch's outcome: status, root, payout table, charges, votes, transaction.
    Epoch {
        /// The epoch number.
        n: u64,
        #[command(flatten)]
        args: ClientArgs,
    },
}

/// Where the chain is and who signs: flags win over the node's configuration file.
#[derive(Args, Debug, Clone, Default)]
pub struct ChainArgs {
    /// The chain's JSON-RPC URL [default: the `[chain] rpc_url` of --config].
    #[arg(long, global = true, env = "XNODE_CHAIN_RPC")]
    pub rpc: Option<String>,
    /// A node's TOML configuration file whose `[chain]` section names the RPC URL, the
    /// contracts and (as `poster_key_file`) the default key.
    #[arg(long, global = true, env = "XNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The Settlement contract (escrows, roots, claims).
    #[arg(long, global = true, env = "XNODE_SETTLEMENT_CONTRACT")]
    pub settlement: Option<xnode_settle::config::Address>,
    /// The Staking contract (bonds).
    #[arg(long, global = true, env = "XNODE_STAKING_CONTRACT")]
    pub staking: Option<xnode_settle::config::Address>,
    /// A file holding the hex secp256k1 key that signs (and pays the gas of) transactions.
    #[arg(long, global = true, env = "XNODE_CHAIN_KEY")]
    pub key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum StakeAction {
    /// Bond AMOUNT base units of the token (approving the Staking contract first if needed).
    Bond {
        amount: String,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Start unbonding AMOUNT: it leaves the bond now and can be withdrawn after the
    /// contract's unbond delay (it can still be slashed meanwhile).
    Unbond {
        amount: String,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Withdraw what finished unbonding: after the unbond delay with the committee's exit
    /// clearance (`--quiet-epoch`), or without one after the contract's exit fallback delay.
    Withdraw {
        /// Ask the committee, through the node at --api, to clear the exit: every node of
        /// this operator drained or left before this settled epoch and held nothing in it.
        #[arg(long)]
        quiet_epoch: Option<u64>,
        /// Base URL of a node's API that collects the clearance (with --quiet-epoch).
        #[arg(long, env = "XNODE_API_URL", default_value = "http://127.0.0.1:8080")]
        api: String,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// An operator's bond, what is unbonding and when it is ready, and the unbond delay.
    Status {
        /// The operator's address [default: the address of --key].
        #[arg(long)]
        address: Option<xnode_settle::config::Address>,
        #[command(flatten)]
        chain: ChainArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum EscrowAction {
    /// Deposit AMOUNT base units into a tenant's escrow (approving the Settlement
    /// contract first if needed); the first depositor becomes the escrow's withdrawer.
    Deposit {
        amount: String,
        /// The tenant id (64 hex digits) [default: the tenant of --tenant-key].
        #[arg(long)]
        tenant: Option<String>,
        /// The tenant key file [default: the user's config dir, xnode/tenant.key].
        #[arg(long, env = "XNODE_TENANT_KEY")]
        tenant_key: Option<PathBuf>,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// A tenant's escrow balance, withdrawer and pending withdrawal.
    Status {
        /// The tenant id (64 hex digits) [default: the tenant of --tenant-key].
        #[arg(long)]
        tenant: Option<String>,
        /// The tenant key file [default: the user's config dir, xnode/tenant.key].
        #[arg(long, env = "XNODE_TENANT_KEY")]
        tenant_key: Option<PathBuf>,
        #[command(flatten)]
        chain: ChainArgs,
    },
}

/// Arguments of `xnode rewards`.
#[derive(Args, Debug)]
pub struct RewardsArgs {
    #[command(subcommand)]
    pub action: Option<RewardsAction>,
    /// Base URL of the node's API (its epoch records give the amounts and proofs).
    #[arg(
        long,
        global = true,
        env = "XNODE_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// The payout address [default: the address of --key, else the node's own payout
    /// address in its `[settlement] operators`].
    #[arg(long, global = true)]
    pub address: Option<xnode_settle::config::Address>,
    #[command(flatten)]
    pub chain: ChainArgs,
}

#[derive(Subcommand, Debug)]
pub enum RewardsAction {
    /// Claim the reward of EPOCH on chain: the proof comes from the node's record and is
    /// checked against the root the chain holds before the transaction is sent.
    Claim { epoch: u64 },
}

#[derive(Subcommand, Debug)]
pub enum AdmissionAction {
    /// Create an operator key (for `operator_key_file`) or a network authority key, and
    /// print its public key in hex.
    Keygen {
        /// Where to write it; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an admission list with the network authority's key (for
    /// `[admission] list_file`).
    Sign {
        /// The network authority's key file (made with `xnode admission keygen`).
        #[arg(long)]
        authority_key: PathBuf,
        /// The network the list is for.
        #[arg(long)]
        network: String,
        /// The list's serial: nodes keep the highest they have seen, so raise it for
        /// every new list.
        #[arg(long)]
        serial: u64,
        /// An admitted operator's public key, in hex (repeatable).
        #[arg(long = "operator")]
        operators: Vec<String>,
        /// An admitted node id (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Where to write the signed list.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bind your operator key to the EVM address you are paid to (and whose bond admits
    /// your nodes under `bonded`): the address signs its consent, the operator key signs
    /// the registry entry, and the node at --api publishes it to the network.
    BindPayout {
        /// The operator key file (the nodes' `operator_key_file`).
        #[arg(long)]
        operator_key: PathBuf,
        /// A file holding the payout address's hex secp256k1 key (read, never sent).
        #[arg(long)]
        address_key: PathBuf,
        /// The network the binding is for.
        #[arg(long)]
        network: String,
        /// The binding's serial: the highest counts, so raise it for every new binding.
        #[arg(long)]
        serial: u64,
        /// Base URL of a node's API.
        #[arg(long, env = "XNODE_API_URL", default_value = "http://127.0.0.1:8080")]
        api: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// Create a tenant key (your identity as a user of the network).
    New {
        /// Where to write it [default: the user's config dir, xnode/tenant.key].
        #[arg(long, env = "XNODE_TENANT_KEY")]
        file: Option<PathBuf>,
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// S3 access keys of your tenant, kept on the nodes you register them on.
    S3 {
        #[command(subcommand)]
        action: S3KeyAction,
    },
    /// Show the tenant id of a tenant key.
    Tenant {
        #[arg(long, env = "XNODE_TENANT_KEY")]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KmsAction {
    /// Create a KMS key; prints its id, which S3 requests name in
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    CreateKey {
        /// A name for the key, usable as `alias/NAME` instead of the id.
        #[arg(long)]
        alias: Option<String>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// List your KMS keys.
    List {
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Disable a key (its id or alias/NAME): writes under it and reads of its objects are
    /// refused until it is enabled again. Its objects are not destroyed.
    Disable {
        key: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Enable a disabled key again.
    Enable {
        key: String,
        #[command(flatten)]
        args: StorageClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantAction {
    /// Revoke a node's authority to write your objects: every replica and reader refuses
    /// the entries it dates from now on. Send it through another node (--api): the
    /// revoked one may not pass it on.
    RevokeEdge {
        /// The node id to revoke.
        node_id: String,
        /// Revoke only the registration of this S3 access key on the node (looked up in
        /// the key listing of the node at --api, which must then be the revoked node).
        #[arg(long)]
        s3_key: Option<String>,
        #[command(flatten)]
        args: StorageClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum S3KeyAction {
    /// Create an S3 access key (id and secret) for your tenant and register it on the node
    /// at --api (repeat --api to register the same key on several nodes).
    Create {
        /// Node API URL to register the key on; repeatable [default: XNODE_API_URL or http://127.0.0.1:8080].
        #[arg(long = "api", value_delimiter = ',')]
        api: Vec<String>,
        /// The tenant key file [default: the user's config dir, xnode/tenant.key].
        #[arg(long, env = "XNODE_TENANT_KEY")]
        tenant_key: Option<PathBuf>,
        /// Do not give the node your tenant key: the access key then cannot create or delete
        /// buckets (S3 CreateBucket and DeleteBucket answer AccessDenied).
        #[arg(long)]
        no_bucket_admin: bool,
        #[arg(long)]
        json: bool,
    },
    /// List your S3 access keys registered on a node (never their secrets).
    Ls {
        #[command(flatten)]
        args: StorageClientArgs,
    },
    /// Remove an S3 access key from the node at --api (repeat --api for several nodes).
    Rm {
        id: String,
        /// Node API URL; repeatable [default: XNODE_API_URL or http://127.0.0.1:8080].
        #[arg(long = "api", value_delimiter = ',')]
        api: Vec<String>,
        #[arg(long, env = "XNODE_TENANT_KEY")]
        tenant_key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}
