//! Deployment and job records: tenant-signed registry values (JSON with a format version,
//! so the CLI, the Studio and any other client can build them), and the records nodes
//! publish about what they run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_registry::Entry;
use xnode_types::PublicKeyBytes;

pub const DEPLOYMENT_RECORD_VERSION: u32 = 1;
pub const JOB_RECORD_VERSION: u32 = 1;
pub const RUN_RECORD_VERSION: u32 = 1;
pub const REPLICA_SET_VERSION: u32 = 1;

/// Largest module the network stores (one content-addressed chunk).
pub const MAX_MODULE_BYTES: usize = 8 << 20;
/// Largest stdin a job may carry inside its record.
pub const MAX_JOB_STDIN_BYTES: usize = 256 << 10;
/// Bounds every deployment and job record keeps, whichever path it arrives by (the HTTP
/// API, gossip, anti-entropy or a node's own disk): a record that breaks one is ignored.
pub const MAX_JOB_INPUTS: usize = 64;
/// Arguments of a deployment or a job, and the bytes of each.
pub const MAX_ARGS: usize = 256;
pub const MAX_ARG_BYTES: usize = 4096;
/// Environment variables of a deployment, and the bytes of each name and value.
pub const MAX_ENV_VARS: usize = 256;
pub const MAX_ENV_BYTES: usize = 4096;
/// Allowed outbound hosts, zones and labels of a deployment.
pub const MAX_LIST_ITEMS: usize = 64;
/// Longest file name a job input may have (the usual limit of Linux file systems).
pub const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Http,
    Job,
    Worker,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Job => "job",
            Kind::Worker => "worker",
        }
    }
}

/// Per-invocation limits as a manifest states them. Missing fields take node defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// WebAssembly stack. Wasmtime fixes it per engine, so a node refuses deployments
    /// asking for more than its engine has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_kb: Option<u64>,
}

/// Where replicas may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    /// Allowed zones (regions: one concept, see
    /// docs/decisions/2026-11-27-region-pinning.md); empty means any. Manifests may
    /// write it `regions`.
    #[serde(default, alias = "regions", skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Labels a node must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Access to the owner's object storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// The bucket worker outputs are published to. It must be in `key_checks`.
    pub bucket: String,
    /// The deployment's storage scope, signed with the record: each bucket its replicas
    /// may use (functions through `http://store.xnode/<bucket>/<key>`) and the check of
    /// that bucket's key (hex of `BucketKey::check`, see [`key_checks`]). A node accepts a
    /// bucket key for this deployment only if it matches. Records made before scoped keys
    /// have none; their replicas get no key and their storage calls are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_checks: BTreeMap<String, String>,
}

/// The signed key checks of `buckets` for a tenant's record, as clients compute them:
/// bucket name to the hex check of the bucket's key (never the key itself).
pub fn key_checks<'a>(
    data_key: &xnode_store::DataKey,
    buckets: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    buckets
        .into_iter()
        .map(|b| {
            (
                b.to_owned(),
                xnode_store::BucketKey::derive(data_key, b).check().to_hex(),
            )
        })
        .collect()
}

/// Parses and bounds signed key checks: at most [`MAX_LIST_ITEMS`] buckets, each a valid
/// bucket name with a 64-hex-digit check.
fn parse_key_checks(
    checks: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, xnode_store::KeyCheck>, String> {
    if checks.len() > MAX_LIST_ITEMS {
        return Err(format!(
            "a storage scope may name at most {MAX_LIST_ITEMS} buckets"
        ));
    }
    checks
        .iter()
        .map(|(bucket, check)| {
            xnode_store::validate_bucket_name(bucket).map_err(|e| e.to_string())?;
            let check = xnode_store::KeyCheck::from_hex(check)
                .map_err(|e| format!("key check of bucket {bucket:?}: {e}"))?;
            Ok((bucket.clone(), check))
        })
        .collect()
}

/// A deployment: the value of `tenant/<T>/deployment/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    pub v: u32,
    pub name: String,
    pub kind: Kind,
    /// Content id (BLAKE3, hex) of the module.
    pub module: String,
    pub replicas: u32,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Command-line arguments of `worker` and `job` commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub placement: PlacementSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Memory a replica reserves on its node, for placement; defaults to the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reserve_mb: Option<u64>,
    pub owner: String,
    pub created_ms: u64,
}

/// An object mounted read-only into a job at `/in/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    pub name: String,
    pub bucket: String,
    pub key: String,
}

/// A job: the value of `tenant/<T>/job/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub v: u32,
    pub id: String,
    /// The `job` deployment it runs, whose module, limits and env it takes.
    pub deployment: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Standard input, base64.
    #[serde(default)]
    pub stdin_b64: String,
    #[serde(default)]
    pub inputs: Vec<JobInput>,
    /// Bucket that receives stdout, stderr and `/out` files, under `jobs/<id>/`.
    pub output_bucket: String,
    /// The job's storage scope, signed with the record: the check of the key of each
    /// input bucket and of the output bucket (see [`StorageSpec::key_checks`]). Jobs made
    /// before scoped keys have none, and their runner gets no key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_checks: BTreeMap<String, String>,
    pub owner: String,
    pub created_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
}

/// What a node says about one run of a job: the value of `run/<node>/job/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub v: u32,
    pub job: String,
    pub owner: String,
    pub node: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Object keys (in the job's output bucket) of stdout, stderr and `/out` files.
    #[serde(default)]
    pub outputs: Vec<String>,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default)]
    pub fuel: u64,
    #[serde(default)]
    pub wall_ms: u64,
}

/// The state of one replica (an http replica kept warm, or a worker) on its node.
///
/// On the wire and in the API it is one line of text ("running", "failed: <why>",
/// "restarting: <why>"), as node reports have always been, so older and newer nodes read
/// each other's reports; text this version does not know is kept as [`ReplicaState::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum ReplicaState {
    /// A worker whose first run is being prepared.
    Starting,
    Running,
    /// A worker that ended by itself and is not restarted.
    Exited,
    /// A worker waiting to be restarted after it ended, with the reason.
    Restarting(String),
    /// The replica cannot run, with the reason.
    Failed(String),
    /// A state reported by another version of Xnode.
    Other(String),
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaState::Starting => f.write_str("starting"),
            ReplicaState::Running => f.write_str("running"),
            ReplicaState::Exited => f.write_str("exited"),
            ReplicaState::Restarting(why) => write!(f, "restarting: {why}"),
            ReplicaState::Failed(why) => write!(f, "failed: {why}"),
            ReplicaState::Other(text) => f.write_str(text),
        }
    }
}

impl From<ReplicaState> for String {
    fn from(state: ReplicaState) -> String {
        state.to_string()
    }
}

impl From<String> for ReplicaState {
    fn from(text: String) -> ReplicaState {
        match text.as_str() {
            "starting" => ReplicaState::Starting,
            "running" => ReplicaState::Running,
            "exited" => ReplicaState::Exited,
            _ => {
                if let Some(why) = text.strip_prefix("restarting: ") {
                    ReplicaState::Restarting(why.to_owned())
                } else if let Some(why) = text.strip_prefix("failed: ") {
                    ReplicaState::Failed(why.to_owned())
                } else {
                    ReplicaState::Other(text)
                }
            }
        }
    }
}

impl PartialEq<&str> for ReplicaState {
    fn eq(&self, other: &&str) -> bool {
        ReplicaState::from((*other).to_owned()) == *self
    }
}

/// One replica a node runs, as it reports it in `run/<node>/replicas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub deployment: String,
    pub owner: String,
    pub state: ReplicaState,
    pub since_ms: u64,
    #[serde(default)]
    pub restarts: u32,
    /// A worker's fuel burnt on this node since `since_ms`, cumulative over its restarts
    /// (what the node meters as `WorkerFuel`; zero for http replicas, which are metered
    /// per call). Older nodes leave it out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fuel: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSet {
    pub v: u32,
    pub replicas: Vec<ReplicaReport>,
}

/// The claim kind of deployments in the registry (see `xnode_registry::claims`).
pub const DEPLOYMENT_CLAIM: &str = "deployment";

pub fn deployment_key(owner: &PublicKeyBytes, name: &str) -> String {
    xnode_registry::claims::claim_key(DEPLOYMENT_CLAIM, owner, name)
}

pub fn job_key(owner: &PublicKeyBytes, id: &str) -> String {
    format!("tenant/{}/job/{id}", owner.to_hex())
}

pub fn run_key(node: &xnode_types::NodeId, owner: &PublicKeyBytes, job: &str) -> String {
    format!("run/{node}/job/{}/{job}", owner.to_hex())
}

/// Decodes a job run entry `run/<node>/job/<owner>/<id>`: the record must name the same
/// node, owner and job as its key (only node `<node>` may write under `run/<node>/`).
pub fn decode_run(entry: &Entry) -> Option<(xnode_types::NodeId, JobRun)> {
    let rest = entry.key.strip_prefix("run/")?;
    let (node, rest) = rest.split_once('/')?;
    let (owner, id) = rest.strip_prefix("job/")?.split_once('/')?;
    let node: xnode_types::NodeId = node.parse().ok()?;
    let run: JobRun = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (run.owner == owner && run.job == id && run.node == node.to_string()).then_some((node, run))
}

pub fn replicas_key(node: &xnode_types::NodeId) -> String {
    format!("run/{node}/replicas")
}

/// Names of deployments: like bucket names (they appear in URLs), 1 to 63 characters of
/// lowercase letters, digits and `-`, not starting or ending with `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "deployment name {name:?} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

impl DeploymentSpec {
    /// Checks what a node can check without looking anything up.
    pub fn validate(&self) -> Result<(), String> {
        if self.v != DEPLOYMENT_RECORD_VERSION {
            return Err(format!(
                "deployment record version {} is not supported (this node reads {DEPLOYMENT_RECORD_VERSION})",
                self.v
            ));
        }
        validate_name(&self.name)?;
        if self.module.len() != 64 || hex::decode(&self.module).is_err() {
            return Err("module must be a content id: 64 hex characters".into());
        }
        if self.replicas == 0 || self.replicas > 64 {
            return Err(format!("replicas must be 1 to 64, not {}", self.replicas));
        }
        validate_owner(&self.owner)?;
        if self.env.len() > MAX_ENV_VARS {
            return Err(format!(
                "a deployment may set at most {MAX_ENV_VARS} environment variables"
            ));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || k.len() > MAX_ENV_BYTES {
                return Err(format!("environment variable name {k:?} is invalid"));
            }
            if v.contains('\0') || v.len() > MAX_ENV_BYTES {
                return Err(format!(
                    "environment variable {k:?} must be at most {MAX_ENV_BYTES} bytes without NUL"
                ));
            }
        }
        validate_args(&self.args)?;
        if self.allowed_hosts.len() > MAX_LIST_ITEMS {
            return Err(format!("at most {MAX_LIST_ITEMS} allowed hosts"));
        }
        for host in &self.allowed_hosts {
            if host.is_empty()
                || host.len() > 253
                || !host.bytes().all(|b| b.is_ascii_graphic())
                || host.contains('/')
            {
                return Err(format!("allowed host {host:?} must be a host name or *"));
            }
        }
        if self.placement.zones.len() > MAX_LIST_ITEMS
            || self.placement.labels.len() > MAX_LIST_ITEMS
        {
            return Err(format!(
                "placement may name at most {MAX_LIST_ITEMS} zones and {MAX_LIST_ITEMS} labels"
            ));
        }
        let short = |t: &String| !t.is_empty() && t.len() <= 63;
        if !self.placement.zones.iter().all(short)
            || !self
                .placement
                .labels
                .iter()
                .all(|(k, v)| short(k) && v.len() <= 63)
        {
            return Err("placement zones and labels must be 1-63 bytes".into());
        }
        if let Some(storage) = &self.storage {
            xnode_store::validate_bucket_name(&storage.bucket).map_err(|e| e.to_string())?;
            parse_key_checks(&storage.key_checks)?;
            if !storage.key_checks.is_empty() && !storage.key_checks.contains_key(&storage.bucket) {
                return Err(format!(
                    "storage bucket {:?} must be in the signed key checks",
                    storage.bucket
                ));
            }
        }
        if let Some(mb) = self.memory_reserve_mb
            && mb > 1 << 20
        {
            return Err(format!(
                "memory_reserve_mb must be at most 1048576, not {mb}"
            ));
        }
        if let Some(mb) = self.limits.memory_mb
            && !(1..=4096).contains(&mb)
        {
            return Err(format!("memory_mb must be 1 to 4096, not {mb}"));
        }
        if let Some(ms) = self.limits.timeout_ms
            && ms == 0
        {
            return Err("timeout_ms must be positive".into());
        }
        Ok(())
    }

    pub fn module_id(&self) -> Option<[u8; 32]> {
        let bytes = hex::decode(&self.module).ok()?;
        bytes.try_into().ok()
    }

    /// The limits of one invocation: the manifest's, else the defaults, clamped to the
    /// caps of the node that runs it (`config`). Each node applies its own caps, so a
    /// manifest asking for more than a node allows gets what the node allows.
    pub fn limits(&self, config: &crate::ComputeConfig) -> xnode_compute::Limits {
        let defaults = xnode_compute::Limits::default();
        let default_timeout = defaults.timeout.unwrap_or(Duration::from_secs(10));
        let asked = self.limits.timeout_ms.map(Duration::from_millis);
        let timeout = match self.kind {
            // Workers run until stopped; the fuel limit still applies to each run.
            Kind::Worker => asked.map(|t| t.min(config.max_job_timeout)),
            Kind::Job => Some(asked.unwrap_or(default_timeout).min(config.max_job_timeout)),
            Kind::Http => Some(
                asked
                    .unwrap_or(default_timeout)
                    .min(config.max_function_timeout),
            ),
        };
        let fuel = match (self.kind, self.limits.fuel) {
            (_, Some(f)) => f.min(config.max_fuel),
            // Unmetered: workers are bounded by `max_workers` and their slots instead.
            (Kind::Worker, None) => u64::MAX,
            (Kind::Job, None) => defaults.fuel.saturating_mul(50).min(config.max_fuel),
            (Kind::Http, None) => defaults.fuel.min(config.max_fuel),
        };
        xnode_compute::Limits {
            fuel,
            memory_bytes: self
                .limits
                .memory_mb
                .map(|mb| mb.saturating_mul(1 << 20))
                .unwrap_or(defaults.memory_bytes)
                .min(config.max_memory_mb.saturating_mul(1 << 20)),
            timeout,
            max_output_bytes: self
                .limits
                .max_output_kb
                .map(|kb| kb.saturating_mul(1 << 10))
                .unwrap_or(defaults.max_output_bytes)
                .min(config.max_output_bytes()),
        }
    }

    pub fn memory_reserve_bytes(&self) -> u64 {
        self.memory_reserve_mb
            .or(self.limits.memory_mb)
            .unwrap_or(64)
            .saturating_mul(1 << 20)
    }
}

/// Decodes and checks a deployment entry: signed by the owner its key names, whose
/// record names the same deployment and owner, passes every check of
/// [`DeploymentSpec::validate`], and is not dated in the future. Every path (the API,
/// gossip, anti-entropy, the node's own disk) reads deployments through this.
pub fn decode_deployment(entry: &Entry) -> Option<DeploymentSpec> {
    let spec: DeploymentSpec = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (spec.owner == entry.owner.to_hex()
        && entry.key == deployment_key(&entry.owner, &spec.name)
        && spec.validate().is_ok()
        && not_in_the_future(entry, spec.created_ms))
    .then_some(spec)
}

/// Decodes and checks a job entry, as strictly as the API checks a new job (see
/// [`JobSpec::validate`]). Every path reads jobs through this.
pub fn decode_job(entry: &Entry) -> Option<JobSpec> {
    let spec: JobSpec = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (spec.owner == entry.owner.to_hex()
        && entry.key == job_key(&entry.owner, &spec.id)
        && spec.validate().is_ok()
        && not_in_the_future(entry, spec.created_ms))
    .then_some(spec)
}

/// Records dated beyond the claims' clock bound are ignored until their time comes, on
/// every path alike (the API refuses them outright).
fn not_in_the_future(entry: &Entry, created_ms: u64) -> bool {
    let bound =
        xnode_types::unix_ms().saturating_add(xnode_registry::claims::MAX_CLAIM_CLOCK_SKEW_MS);
    entry.hlc.wall_ms <= bound && created_ms <= bound
}

/// Tenant ids in records: 64 lowercase hex digits (an ed25519 public key).
fn validate_owner(owner: &str) -> Result<(), String> {
    if owner.len() == 64
        && owner
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err("owner must be a tenant id: 64 lowercase hex digits".into())
    }
}

fn validate_args(args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!("at most {MAX_ARGS} arguments"));
    }
    if args
        .iter()
        .any(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
    {
        return Err(format!(
            "each argument must be at most {MAX_ARG_BYTES} bytes without NUL"
        ));
    }
    Ok(())
}

/// A name that becomes one file name in a directory the node owns: 1 to 255 bytes, not
/// `.` or `..`, with no `/`, `\\`, NUL or control character. Nothing else from a tenant or
/// a peer ever becomes part of a path.
pub fn validate_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILE_NAME_BYTES
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "input name {name:?} must be a plain file name (1-255 bytes, no '/', not '.' or '..')"
        ))
    }
}

impl JobSpec {
    /// Checks every field, whichever path the job arrived by: the version, the id, the
    /// deployment's name, the owner, stdin, arguments, every input (a plain file name,
    /// distinct, and a valid bucket and client key) and the output bucket.
    pub fn validate(&self) -> Result<(), String> {
        if self.v != JOB_RECORD_VERSION {
            return Err(format!(
                "job record version {} is not supported (this node reads {JOB_RECORD_VERSION})",
                self.v
            ));
        }
        validate_job_id(&self.id)?;
        validate_name(&self.deployment)?;
        validate_owner(&self.owner)?;
        if self.stdin_b64.len() > MAX_JOB_STDIN_BYTES.div_ceil(3) * 4 {
            return Err(format!(
                "stdin may have at most {} KiB; pass larger inputs as objects",
                MAX_JOB_STDIN_BYTES >> 10
            ));
        }
        validate_args(&self.args)?;
        if self.inputs.len() > MAX_JOB_INPUTS {
            return Err(format!("a job may have at most {MAX_JOB_INPUTS} inputs"));
        }
        let mut names = std::collections::BTreeSet::new();
        for input in &self.inputs {
            validate_file_name(&input.name)?;
            if !names.insert(input.name.as_str()) {
                return Err(format!("input name {:?} is used twice", input.name));
            }
            xnode_store::validate_bucket_name(&input.bucket).map_err(|e| e.to_string())?;
            if xnode_store::is_internal_key(&input.key) {
                return Err(format!("input key {:?} is not a client key", input.key));
            }
            xnode_store::validate_object_key(&input.key).map_err(|e| e.to_string())?;
        }
        xnode_store::validate_bucket_name(&self.output_bucket).map_err(|e| e.to_string())?;
        parse_key_checks(&self.key_checks)?;
        if !self.key_checks.is_empty()
            && self
                .key_checks
                .keys()
                .map(String::as_str)
                .ne(self.buckets())
        {
            return Err(
                "the signed key checks must name exactly the input buckets and the output bucket"
                    .into(),
            );
        }
        Ok(())
    }

    /// The buckets the job uses, once each, in order: its inputs' and its output bucket.
    pub fn buckets(&self) -> std::collections::btree_set::IntoIter<&str> {
        self.inputs
            .iter()
            .map(|i| i.bucket.as_str())
            .chain(std::iter::once(self.output_bucket.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
    }

    /// The signed storage scope: bucket to key check. `None` for a job signed without
    /// checks (its runner gets no key).
    pub fn signed_scope(&self) -> Option<BTreeMap<String, xnode_store::KeyCheck>> {
        if self.key_checks.is_empty() {
            return None;
        }
        parse_key_checks(&self.key_checks).ok()
    }
}

impl DeploymentSpec {
    /// The signed storage scope: bucket to key check. `None` for a deployment without
    /// storage or signed without checks (its replicas get no key).
    pub fn signed_scope(&self) -> Option<BTreeMap<String, xnode_store::KeyCheck>> {
        let storage = self.storage.as_ref()?;
        if storage.key_checks.is_empty() {
            return None;
        }
        parse_key_checks(&storage.key_checks).ok()
    }
}

/// Job ids: 1 to 64 characters of letters, digits, `-` and `_`.
pub fn validate_job_id(id: &str) -> Result<(), String> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "job id {id:?} must be 1-64 letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod replica_state_tests {
    use super::ReplicaState;

    #[test]
    fn replica_states_read_and_write_the_same_text() {
        for state in [
            ReplicaState::Starting,
            ReplicaState::Running,
            ReplicaState::Exited,
            ReplicaState::Restarting("exit code 3".into()),
            ReplicaState::Failed("module not found".into()),
            ReplicaState::Other("paused".into()),
        ] {
            let text = serde_json::to_string(&state).unwrap();
            let back: ReplicaState = serde_json::from_str(&text).unwrap();
            assert_eq!(back, state, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&ReplicaState::Running).unwrap(),
            "\"running\""
        );
        assert_eq!(
            ReplicaState::from("failed: no key".to_owned()),
            ReplicaState::Failed("no key".into())
        );
        assert!(ReplicaState::Running == "running");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod validation_tests {
    use super::*;
    use xnode_types::{Hlc, SecretKey, unix_ms};

    fn job(owner: &SecretKey) -> JobSpec {
        JobSpec {
            v: JOB_RECORD_VERSION,
            id: "j1".into(),
            deployment: "transform".into(),
            args: vec![],
            stdin_b64: String::new(),
            inputs: vec![JobInput {
                name: "input".into(),
                bucket: "data".into(),
                key: "in.txt".into(),
            }],
            output_bucket: "data".into(),
            key_checks: BTreeMap::new(),
            owner: owner.public().to_hex(),
            created_ms: unix_ms(),
        }
    }

    fn signed(owner: &SecretKey, job: &JobSpec) -> Entry {
        Entry::sign(
            owner,
            job_key(&owner.public(), &job.id),
            Some(serde_json::to_vec(job).unwrap()),
            Hlc::new(job.created_ms, 0),
        )
        .unwrap()
    }

    /// A named way to spoil a job record.
    type Spoil = (&'static str, Box<dyn Fn(&mut JobSpec)>);

    #[test]
    fn a_job_from_any_path_is_checked_like_one_from_the_api() {
        let owner = SecretKey::generate();
        assert!(decode_job(&signed(&owner, &job(&owner))).is_some());
        let mut scoped = job(&owner);
        scoped.key_checks = key_checks(&xnode_store::DataKey([1; 32]), ["data"]);
        let decoded = decode_job(&signed(&owner, &scoped)).unwrap();
        let scope = decoded.signed_scope().unwrap();
        assert!(
            scope["data"]
                == xnode_store::BucketKey::derive(&xnode_store::DataKey([1; 32]), "data").check()
        );
        assert!(job(&owner).signed_scope().is_none());
        let bad: Vec<Spoil> = vec![
            (
                "absolute input",
                Box::new(|j| j.inputs[0].name = "/etc/cron.d/x".into()),
            ),
            (
                "parent input",
                Box::new(|j| j.inputs[0].name = "../../x".into()),
            ),
            ("dot input", Box::new(|j| j.inputs[0].name = "..".into())),
            (
                "nested input",
                Box::new(|j| j.inputs[0].name = "a/b".into()),
            ),
            ("id with ../", Box::new(|j| j.id = "../../x".into())),
            ("id with /", Box::new(|j| j.id = "a/b".into())),
            (
                "bad deployment",
                Box::new(|j| j.deployment = "Not A Name".into()),
            ),
            (
                "bad bucket",
                Box::new(|j| j.inputs[0].bucket = "../b".into()),
            ),
            (
                "internal key",
                Box::new(|j| j.inputs[0].key = "\0mpu/x".into()),
            ),
            (
                "bad output bucket",
                Box::new(|j| j.output_bucket = "x".into()),
            ),
            (
                "key checks outside the job's buckets",
                Box::new(|j| {
                    j.key_checks = key_checks(&xnode_store::DataKey([1; 32]), ["data", "other"])
                }),
            ),
            (
                "key check that is not hex",
                Box::new(|j| {
                    j.key_checks = [("data".to_string(), "zz".to_string())].into();
                }),
            ),
            (
                "huge stdin",
                Box::new(|j| j.stdin_b64 = "A".repeat(1 << 20)),
            ),
            (
                "many inputs",
                Box::new(|j| {
                    j.inputs = (0..100)
                        .map(|i| JobInput {
                            name: format!("i{i}"),
                            bucket: "data".into(),
                            key: "k".into(),
                        })
                        .collect()
                }),
            ),
            (
                "twice the same input",
                Box::new(|j| {
                    let again = j.inputs[0].clone();
                    j.inputs.push(again)
                }),
            ),
            (
                "dated in the future",
                Box::new(|j| j.created_ms = unix_ms() + 3_600_000),
            ),
            ("newer version", Box::new(|j| j.v = 99)),
        ];
        for (what, change) in bad {
            let mut j = job(&owner);
            change(&mut j);
            // Sign the key the record names, so only the validation can refuse it.
            let entry = Entry::sign(
                &owner,
                format!("tenant/{}/job/{}", owner.public().to_hex(), j.id),
                Some(serde_json::to_vec(&j).unwrap()),
                Hlc::new(j.created_ms.min(unix_ms()), 0),
            )
            .unwrap();
            assert!(decode_job(&entry).is_none(), "{what} was accepted");
        }
    }
}
