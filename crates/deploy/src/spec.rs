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
    /// Allowed zones; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Labels a node must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Access to the owner's object storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// The bucket worker outputs are published to; functions may use any of the owner's
    /// buckets through `http://store.xnode/<bucket>/<key>`.
    pub bucket: String,
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
        if self.kind == Kind::Job && self.replicas != 1 {
            // A job deployment is a template; each job run picks its own node.
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!("environment variable name {k:?} is invalid"));
            }
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains('/') || host.contains(' ') {
                return Err(format!("allowed host {host:?} must be a host name or *"));
            }
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

    /// The limits of one invocation: the manifest's, else the defaults, capped by `max`.
    pub fn limits(&self, max_memory_bytes: u64) -> xnode_compute::Limits {
        let defaults = xnode_compute::Limits::default();
        let timeout = match self.kind {
            // Workers run until stopped; the fuel limit still applies to each run.
            Kind::Worker => self.limits.timeout_ms.map(Duration::from_millis),
            _ => Some(
                self.limits
                    .timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.timeout.unwrap_or(Duration::from_secs(10))),
            ),
        };
        let fuel = match (self.kind, self.limits.fuel) {
            (_, Some(f)) => f,
            (Kind::Worker, None) => u64::MAX,
            (Kind::Job, None) => defaults.fuel * 50,
            (Kind::Http, None) => defaults.fuel,
        };
        xnode_compute::Limits {
            fuel,
            memory_bytes: self
                .limits
                .memory_mb
                .map(|mb| mb << 20)
                .unwrap_or(defaults.memory_bytes)
                .min(max_memory_bytes),
            timeout,
            max_output_bytes: self
                .limits
                .max_output_kb
                .map(|kb| kb << 10)
                .unwrap_or(defaults.max_output_bytes),
        }
    }

    pub fn memory_reserve_bytes(&self) -> u64 {
        self.memory_reserve_mb
            .or(self.limits.memory_mb)
            .unwrap_or(64)
            << 20
    }
}

/// Decodes and checks a deployment entry: signed by the owner its key names, and whose
/// record names the same deployment and owner.
pub fn decode_deployment(entry: &Entry) -> Option<DeploymentSpec> {
    let spec: DeploymentSpec = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (spec.owner == entry.owner.to_hex()
        && entry.key == deployment_key(&entry.owner, &spec.name)
        && spec.validate().is_ok())
    .then_some(spec)
}

pub fn decode_job(entry: &Entry) -> Option<JobSpec> {
    let spec: JobSpec = serde_json::from_slice(entry.value.as_deref()?).ok()?;
    (spec.v == JOB_RECORD_VERSION
        && spec.owner == entry.owner.to_hex()
        && entry.key == job_key(&entry.owner, &spec.id))
    .then_some(spec)
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
