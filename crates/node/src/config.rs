//! The node's configuration: one typed, documented structure, validated before anything
//! starts.
//!
//! The binary builds it from defaults, a TOML file, `XNODE_*` environment variables and
//! command-line flags (later sources win) and calls [`Config::validate`], which turns every
//! mistake into one clear line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_mesh::{MeshConfig, Multiaddr, SwimConfig};

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the node keeps its key, database and data.
    pub data_dir: PathBuf,
    /// libp2p listen addresses, TCP and/or QUIC.
    pub listen: Vec<Multiaddr>,
    /// Address of the HTTP API (control API, later the function gateway and Studio).
    pub api: SocketAddr,
    /// Address of the S3-compatible gateway; none (the default) means no S3 endpoint.
    pub s3_listen: Option<SocketAddr>,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// Free-form zone label (a rack, site or region) used to spread replicas.
    pub zone: String,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Network name: nodes only join nodes of the same network.
    pub network: String,
    /// Failure detector timing.
    pub swim: SwimConfig,
    /// How often the registry is reconciled with a random peer.
    #[serde(with = "xnode_types::duration_text")]
    pub anti_entropy_interval: Duration,
    /// How often the node refreshes and republishes its own record (free resources).
    #[serde(with = "xnode_types::duration_text")]
    pub record_refresh_interval: Duration,
    /// How often the node gossips its observability summary.
    #[serde(with = "xnode_types::duration_text")]
    pub observe_interval: Duration,
    /// Network totals come from gossiped summaries up to this many live nodes, then from the tree.
    pub observe_summaries_up_to: usize,
    /// The length of a "day" in S3 lifecycle rules: 24 hours, shortened only in tests
    /// (the conformance suite makes it 10 s, as Ceph RGW's `rgw_lc_debug_interval` does).
    #[serde(with = "xnode_types::duration_text")]
    pub s3_lifecycle_day: Duration,
    /// When the edge that took a bucket's server access log records rolls them into one
    /// log object of the target bucket: once the bucket has had no request for this long,
    /// and at the latest twelve times this long after the first record. 300 s by default,
    /// about S3's own delivery delay (the conformance suite makes it a few seconds).
    #[serde(with = "xnode_types::duration_text")]
    pub s3_access_log_roll: Duration,
    /// Limits of the API and S3 ports against clients that hold connections (each port
    /// applies them on its own).
    pub http: xnode_serve::HttpLimits,
    /// Object storage: replication, quorums, chunking, repair and scrub.
    pub storage: xnode_storage::StorageConfig,
    /// WebAssembly compute: instance and memory caps, reconciliation, node labels.
    pub compute: xnode_deploy::ComputeConfig,
    /// Usage meters and the receipt exchange: epoch length, exchange interval, the grace
    /// before an uncountersigned tenant stops being served, and the edge's tolerance.
    pub metering: xnode_metering::MeteringConfig,
    /// The EVM chain the network settles on: JSON-RPC endpoint, contracts, poster key.
    pub chain: xnode_settle::ChainConfig,
    /// Closing epochs: whether this node takes part, the committee and its threshold, the
    /// operators' payout addresses, and the close timing. Off by default.
    pub settlement: xnode_settle::SettlementConfig,
    /// OTLP/HTTP collector (for example `http://127.0.0.1:4318`) that receives the spans
    /// of function calls as JSON. Off when absent.
    pub otlp_endpoint: Option<String>,
    /// The node-to-node protocol version this node advertises instead of its own
    /// (`MAJOR.MINOR`), for upgrade drills and tests: a higher minor stands in for the
    /// next release, another major for an incompatible one. Absent (the default), the
    /// release's own.
    pub advertised_protocol: Option<String>,
    /// Expose `/v1/admin/faults` so drills and tests can inject drops, delays and
    /// partitions. Never enable on a production node.
    pub enable_fault_injection: bool,
    /// The operator key file (the format of `node.key`). One operator runs many nodes with
    /// one key by pointing them all at a copy of it; the file must exist. Absent (the
    /// default), the node uses `operator.key` in its data dir, created on first start.
    pub operator_key_file: Option<PathBuf>,
    /// Which nodes may hold data and run workloads.
    pub admission: AdmissionConfig,
}

/// The admission policy (`[admission]`): which nodes may hold data and run workloads. See
/// `docs/configuration.md` and `xnode_registry::admission`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// `open`, `allowlist` or `bonded`.
    pub policy: AdmissionPolicyName,
    /// The network authority's ed25519 public key, in hex (`allowlist` only): admission
    /// lists count only if it signed them.
    pub authority: Option<String>,
    /// A signed admission list to load at start and spread through the registry
    /// (`allowlist` only). Without one, the node waits for a list from its peers and
    /// admits no one until then.
    pub list_file: Option<PathBuf>,
    /// The least bond, in the token's base units as a decimal string (`bonded` only): a
    /// node is admitted only if the `Staking` contract holds at least this much for its
    /// payout address (`settlement.operators`) at the epoch's agreed block.
    pub min_bond: Option<String>,
    /// Epochs a bond must already have held `min_bond` before it admits (`bonded` only;
    /// default 1): the bond is read at the agreed block of this epoch and of the epoch
    /// this many before, and must reach the minimum at both.
    pub probation_epochs: Option<u64>,
}

/// What `bonded` admission checks: the least bond and the probation, in epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BondRequirement {
    /// The least bond, in the token's base units.
    pub min_bond: u128,
    /// Epochs the bond must have held the minimum already.
    pub probation_epochs: u64,
}

/// Probation when `admission.probation_epochs` is absent.
pub const DEFAULT_PROBATION_EPOCHS: u64 = 1;

/// The longest probation accepted (a typo of a thousand epochs would silently admit no
/// new operator for weeks).
pub const MAX_PROBATION_EPOCHS: u64 = 720;

/// The name of an admission policy in a configuration file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionPolicyName {
    /// Every node with a valid operator certificate (devnets, tests, trusted clusters).
    #[default]
    Open,
    /// The nodes and operators a list signed by the network authority names.
    Allowlist,
    /// Nodes whose operator's payout address has at least `min_bond` in the `Staking`
    /// contract, read at one agreed block per epoch.
    Bonded,
}

impl AdmissionConfig {
    /// The policy this section describes, or why it is not usable.
    pub fn policy(&self) -> Result<xnode_registry::admission::AdmissionPolicy, ConfigError> {
        use xnode_registry::admission::AdmissionPolicy;
        let err = |reason: &str| ConfigError::Admission(reason.to_owned());
        if self.policy != AdmissionPolicyName::Bonded
            && (self.min_bond.is_some() || self.probation_epochs.is_some())
        {
            return Err(err(
                "admission.min_bond and admission.probation_epochs apply only to the bonded policy",
            ));
        }
        match self.policy {
            AdmissionPolicyName::Open => {
                if self.authority.is_some() || self.list_file.is_some() {
                    return Err(err(
                        "admission.authority and admission.list_file apply only to the allowlist policy",
                    ));
                }
                Ok(AdmissionPolicy::Open)
            }
            AdmissionPolicyName::Allowlist => {
                let Some(hex) = &self.authority else {
                    return Err(err(
                        "the allowlist policy needs admission.authority, the network authority's public key in hex",
                    ));
                };
                let authority = xnode_types::PublicKeyBytes::from_hex(hex).map_err(|e| {
                    ConfigError::Admission(format!("admission.authority {hex:?}: {e}"))
                })?;
                Ok(AdmissionPolicy::Allowlist { authority })
            }
            AdmissionPolicyName::Bonded => {
                if self.authority.is_some() || self.list_file.is_some() {
                    return Err(err(
                        "admission.authority and admission.list_file apply only to the allowlist policy",
                    ));
                }
                self.bond_requirement()?;
                Ok(AdmissionPolicy::Bonded)
            }
        }
    }

    /// The bond and probation `bonded` requires, or why the section does not say.
    pub fn bond_requirement(&self) -> Result<BondRequirement, ConfigError> {
        let err = |reason: String| ConfigError::Admission(reason);
        let Some(text) = &self.min_bond else {
            return Err(err(
                "the bonded policy needs admission.min_bond, the least bond in the token's base units (a decimal string)".into(),
            ));
        };
        let min_bond: u128 = text
            .trim()
            .parse()
            .map_err(|e| err(format!("admission.min_bond {text:?}: {e}")))?;
        // A zero minimum would admit every listed operator, bonded or not.
        if min_bond == 0 {
            return Err(err("admission.min_bond must be above zero".into()));
        }
        let probation_epochs = self.probation_epochs.unwrap_or(DEFAULT_PROBATION_EPOCHS);
        if probation_epochs > MAX_PROBATION_EPOCHS {
            return Err(err(format!(
                "admission.probation_epochs {probation_epochs} is over {MAX_PROBATION_EPOCHS}"
            )));
        }
        Ok(BondRequirement {
            min_bond,
            probation_epochs,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./xnode-data"),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            api: SocketAddr::from(([127, 0, 0, 1], 8080)),
            s3_listen: None,
            s3_lifecycle_day: Duration::from_secs(24 * 60 * 60),
            s3_access_log_roll: Duration::from_secs(300),
            bootstrap: Vec::new(),
            zone: "default".into(),
            mdns: true,
            network: "xnode".into(),
            swim: SwimConfig::default(),
            anti_entropy_interval: Duration::from_secs(2),
            record_refresh_interval: Duration::from_secs(15),
            observe_interval: Duration::from_secs(2),
            observe_summaries_up_to: 64,
            http: xnode_serve::HttpLimits::default(),
            storage: xnode_storage::StorageConfig::default(),
            compute: xnode_deploy::ComputeConfig::default(),
            metering: xnode_metering::MeteringConfig::default(),
            chain: xnode_settle::ChainConfig::default(),
            settlement: xnode_settle::SettlementConfig::default(),
            otlp_endpoint: None,
            enable_fault_injection: false,
            advertised_protocol: None,
            operator_key_file: None,
            admission: AdmissionConfig::default(),
        }
    }
}

/// A configuration mistake, described in one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("data dir {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("listen address {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("bootstrap address {addr}: {reason}")]
    Bootstrap { addr: String, reason: String },
    #[error("zone {zone:?}: {reason}")]
    Zone { zone: String, reason: String },
    #[error("network {network:?}: must be 1-64 ASCII letters, digits, '-' or '_'")]
    Network { network: String },
    #[error("{field}: {reason}")]
    Timing { field: &'static str, reason: String },
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Admission(String),
    /// The `[chain]` or `[settlement]` section is unusable.
    #[error("{0}")]
    Settlement(String),
    #[error(transparent)]
    Http(#[from] xnode_serve::LimitsError),
    /// The certificate or key of `[http.tls]` cannot be used (the message names the file;
    /// kept as text because this enum compares equal in tests and I/O errors do not).
    #[error("{0}")]
    Tls(String),
}

fn check_addr(addr: &Multiaddr) -> Result<(), String> {
    use xnode_mesh::multiaddr::Protocol;
    let text = addr.to_string();
    let parts: Vec<_> = addr.iter().collect();
    let has_ip = parts.iter().any(|p| {
        matches!(
            p,
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    });
    let tcp = parts.iter().any(|p| matches!(p, Protocol::Tcp(_)));
    let quic = parts.iter().any(|p| matches!(p, Protocol::QuicV1));
    if !has_ip || !(tcp || quic) {
        return Err(format!(
            "{text} is not a TCP or QUIC address (expected /ip4/HOST/tcp/PORT or /ip4/HOST/udp/PORT/quic-v1)"
        ));
    }
    Ok(())
}

impl Config {
    /// The mesh part of the configuration.
    pub fn mesh(&self) -> MeshConfig {
        MeshConfig {
            listen: self.listen.clone(),
            bootstrap: self.bootstrap.clone(),
            mdns: self.mdns,
            network: self.network.clone(),
            swim: self.swim.clone(),
            protocol: self
                .advertised_protocol
                .as_deref()
                .and_then(|v| v.parse().ok())
                .map(xnode_mesh::ProtocolRange::advertising)
                .unwrap_or_default(),
            ..MeshConfig::default()
        }
    }

    /// Checks everything that can be checked before starting, creating the data dir if
    /// needed and proving it writable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_data_dir(&self.data_dir)?;
        if let Some(version) = &self.advertised_protocol
            && let Err(reason) = version.parse::<xnode_mesh::ProtocolVersion>()
        {
            return Err(ConfigError::Timing {
                field: "advertised_protocol",
                reason,
            });
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Timing {
                field: "otlp_endpoint",
                reason: format!("{endpoint:?} must be an http:// or https:// URL"),
            });
        }
        if let Err(reason) = self.metering.validate() {
            return Err(ConfigError::Timing {
                field: "metering",
                reason,
            });
        }
        if let Err(e) = self.settlement.validate(&self.chain) {
            return Err(ConfigError::Settlement(e.0));
        }
        // Receipts are counted per metering epoch and audits per audit epoch; a bundle
        // carries both for one epoch number, so the two lengths must be the same.
        if self.settlement.enabled && self.storage.audit_epoch != self.metering.epoch {
            return Err(ConfigError::Settlement(
                "settlement.enabled needs storage.audit_epoch equal to metering.epoch (one epoch numbering for receipts and audits)".into(),
            ));
        }
        if let Err(reason) = self.compute.validate() {
            return Err(ConfigError::Timing {
                field: "compute",
                reason,
            });
        }
        if self.listen.is_empty() {
            return Err(ConfigError::Listen {
                addr: "(none)".into(),
                reason: "at least one listen address is required".into(),
            });
        }
        for addr in &self.listen {
            check_addr(addr).map_err(|reason| ConfigError::Listen {
                addr: addr.to_string(),
                reason,
            })?;
        }
        for addr in &self.bootstrap {
            check_addr(addr).map_err(|reason| ConfigError::Bootstrap {
                addr: addr.to_string(),
                reason,
            })?;
        }
        if self.zone.is_empty()
            || self.zone.len() > 64
            || !self
                .zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Zone {
                zone: self.zone.clone(),
                reason: "must be 1-64 ASCII letters, digits, '-', '_' or '.'".into(),
            });
        }
        if self.network.is_empty()
            || self.network.len() > 64
            || !self
                .network
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(ConfigError::Network {
                network: self.network.clone(),
            });
        }
        let s = &self.swim;
        let positive = [
            ("swim.probe_interval", s.probe_interval),
            ("swim.probe_timeout", s.probe_timeout),
            ("swim.indirect_timeout", s.indirect_timeout),
            ("swim.suspicion_min", s.suspicion_min),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("record_refresh_interval", self.record_refresh_interval),
            ("observe_interval", self.observe_interval),
            ("s3_lifecycle_day", self.s3_lifecycle_day),
            ("s3_access_log_roll", self.s3_access_log_roll),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::Timing {
                    field,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        // Tree reports climb a level a round and must reach the root within `OPEN_MS`.
        if self.observe_interval > Duration::from_secs(10) {
            return Err(ConfigError::Timing {
                field: "observe_interval",
                reason: "must be at most 10s, so tree reports reach the root before a slot closes"
                    .into(),
            });
        }
        let st = &self.storage;
        if st.replication_factor == 0 || st.replication_factor > 16 {
            return Err(ConfigError::Storage(
                "storage.replication_factor must be between 1 and 16".into(),
            ));
        }
        if st.write_quorum == 0 || st.write_quorum > st.replication_factor {
            return Err(ConfigError::Storage(
                "storage.write_quorum must be between 1 and storage.replication_factor".into(),
            ));
        }
        if st.read_quorum == 0 || st.read_quorum > st.replication_factor {
            return Err(ConfigError::Storage(
                "storage.read_quorum must be between 1 and storage.replication_factor".into(),
            ));
        }
        // A read lingers at most this long on a silent replica; more would make every read
        // near a stalled node slow, and no honest replica needs seconds to answer.
        if st.read_linger > Duration::from_secs(2) {
            return Err(ConfigError::Storage(
                "storage.read_linger must be at most 2s".into(),
            ));
        }
        if st.chunk_size < 64 * 1024 || st.chunk_size > xnode_store::MAX_CHUNK_SIZE {
            return Err(ConfigError::Storage(format!(
                "storage.chunk_size must be between 65536 and {} bytes",
                xnode_store::MAX_CHUNK_SIZE
            )));
        }
        if st.gc_interval.is_zero()
            || st.gc_grace.is_zero()
            || st.gc_silent_holder_after.is_zero()
            || st.gc_max_scan_entries == 0
            || st.background_copy_bytes == 0
        {
            return Err(ConfigError::Storage(
                "storage.gc_interval, storage.gc_grace, storage.gc_silent_holder_after, storage.gc_max_scan_entries and storage.background_copy_bytes must be greater than zero".into(),
            ));
        }
        if st.write_quorum + st.read_quorum <= st.replication_factor {
            return Err(ConfigError::Storage(
                "storage.write_quorum + storage.read_quorum must exceed storage.replication_factor, or reads could miss acknowledged writes".into(),
            ));
        }
        // A node re-signs its record every record_refresh_interval; a few missed refreshes
        // (a restart, a partition) must not make it a silent holder. And what a round
        // removes while a holder is silent must still be in the trash when it returns.
        if st.gc_silent_holder_after < self.record_refresh_interval.saturating_mul(8)
            || st.gc_silent_holder_after >= st.gc_trash_retention
        {
            return Err(ConfigError::Storage(
                "storage.gc_silent_holder_after must be at least 8 times record_refresh_interval and shorter than storage.gc_trash_retention".into(),
            ));
        }
        if st.anti_entropy_full_interval < st.repair_interval {
            return Err(ConfigError::Storage(
                "storage.anti_entropy_full_interval must be at least storage.repair_interval"
                    .into(),
            ));
        }
        let quota = &st.quota;
        if quota.max_stored_bytes == Some(0)
            || quota.max_objects == Some(0)
            || !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&quota.usage_refresh)
        {
            return Err(ConfigError::Storage(
                "storage.quota.max_stored_bytes and max_objects must be positive when set, and storage.quota.usage_refresh between 1s and 1h"
                    .into(),
            ));
        }
        if st.repair_interval.is_zero() || st.scrub_bytes_per_sec == 0 || st.scrub_period.is_zero()
        {
            return Err(ConfigError::Storage(
                "storage.repair_interval, storage.scrub_bytes_per_sec and storage.scrub_period must be greater than zero"
                    .into(),
            ));
        }
        if st.audit_window.is_zero()
            || st.audit_epoch.is_zero()
            || st.audit_timeout.is_zero()
            || st.audit_collect_interval.is_zero()
            || st.audit_reputation_epochs == 0
        {
            return Err(ConfigError::Storage(
                "storage.audit_window, storage.audit_epoch, storage.audit_timeout, storage.audit_collect_interval and storage.audit_reputation_epochs must be greater than zero".into(),
            ));
        }
        if st.audit_unsynced_after < st.audit_settle {
            return Err(ConfigError::Storage(
                "storage.audit_unsynced_after must be at least storage.audit_settle".into(),
            ));
        }
        if st.audit_detect_loss_ppm == 0
            || st.audit_detect_loss_ppm >= 1_000_000
            || st.audit_confidence_ppm >= 1_000_000
            || st.audit_min_score_ppm > 1_000_000
        {
            return Err(ConfigError::Storage(
                "storage.audit_detect_loss_ppm must be between 1 and 999999, storage.audit_confidence_ppm below 1000000 and storage.audit_min_score_ppm at most 1000000".into(),
            ));
        }
        if s.suspicion_max < s.suspicion_min {
            return Err(ConfigError::Timing {
                field: "swim.suspicion_max",
                reason: "must not be shorter than swim.suspicion_min".into(),
            });
        }
        self.http.validate()?;
        // Read the certificate and key now, so that a missing file or a key that does not
        // match its certificate stops the start with the file named, before the ports open.
        if let Some(tls) = &self.http.tls {
            xnode_serve::ServerTls::load(tls).map_err(|e| ConfigError::Tls(e.to_string()))?;
        }
        self.admission.policy()?;
        if self.admission.policy == AdmissionPolicyName::Bonded {
            self.validate_bonded()?;
        }
        if let Some(path) = &self.admission.list_file
            && !path.is_file()
        {
            return Err(ConfigError::Admission(format!(
                "admission.list_file {}: no such file",
                path.display()
            )));
        }
        if let Some(path) = &self.operator_key_file
            && !path.is_file()
        {
            return Err(ConfigError::Admission(format!(
                "operator_key_file {}: no such file (copy an existing operator.key there, or leave it unset to create one in the data dir)",
                path.display()
            )));
        }
        Ok(())
    }
}

impl Config {
    /// What `bonded` needs beyond `[admission]`: a chain to read and the staking contract.
    /// Nodes' payout addresses come from their operators' payout bindings in the registry;
    /// `settlement.operators`, if given, overrides them per node.
    fn validate_bonded(&self) -> Result<(), ConfigError> {
        let err = |reason: String| Err(ConfigError::Admission(reason));
        match self.chain.rpc_url.as_deref() {
            None | Some("") => return err("the bonded policy needs chain.rpc_url".into()),
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return err(format!("chain.rpc_url {url:?} is not an http(s) URL"));
            }
            Some(_) => {}
        }
        if self.chain.staking_contract.is_none() {
            return err("the bonded policy needs chain.staking_contract".into());
        }
        let mut nodes = std::collections::BTreeSet::new();
        for operator in &self.settlement.operators {
            if !nodes.insert(operator.node) {
                return err(format!(
                    "settlement.operators lists {} twice",
                    operator.node
                ));
            }
        }
        Ok(())
    }
}

fn validate_data_dir(dir: &Path) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(err("exists and is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| err(format!("is not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
