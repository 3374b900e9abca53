//! The `[chain]` and `[settlement]` sections of the node's configuration: where the
//! contracts are, who posts, who is on the committee, and when an epoch is closed.
//!
//! Both are off by default. The settlement epoch is the metering epoch
//! (`metering.epoch`): receipts are counted per metering epoch, so a second epoch length
//! could only disagree with it.

use std::path::PathBuf;
use std::time::Duration;

pub use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use xnode_chain::CommitteeSigners;
use xnode_ledger::{LedgerParams, PriceTable};
use xnode_types::NodeId;

use crate::error::ConfigError;

/// The `[chain]` section: the EVM endpoint and the deployed contracts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (`http://127.0.0.1:8545`). Absent: no chain.
    pub rpc_url: Option<String>,
    /// The `Settlement` contract (escrows, roots, claims).
    pub settlement_contract: Option<Address>,
    /// The `Staking` contract, read for each operator's bond. Absent: every listed
    /// operator counts as bonded with nothing (paid for service, never slashed).
    pub staking_contract: Option<Address>,
    /// A file holding the hex secp256k1 key that sends this node's transactions (it pays
    /// the gas). Absent: the node's derived committee key sends them.
    pub poster_key_file: Option<PathBuf>,
}

/// One committee member: the node and the address its derived committee key signs with
/// (`xnode_settle::committee_signer`), as the `Committee` contract lists it. Only the
/// node itself can derive its address, so the operator states both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeMember {
    /// The member's node id.
    pub node: NodeId,
    /// Its committee address.
    pub address: Address,
}

/// One operator the ledger pays: the node and the address that claims its rewards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPayout {
    /// The node.
    pub node: NodeId,
    /// The EVM address that claims, and whose bond the `Staking` contract holds.
    pub payout: Address,
}

/// The `[settlement]` section: the committee and the epoch-close timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementConfig {
    /// Whether this node publishes evidence bundles and, if it is a member, takes part in
    /// the committee. Needs `[chain]` with `rpc_url` and `settlement_contract`.
    pub enabled: bool,
    /// The committee, as the `Committee` contract holds it.
    pub committee: Vec<CommitteeMember>,
    /// Agreeing votes needed to post (at least f+1 for n = 3f+1, at most n).
    pub threshold: usize,
    /// The operators the ledger pays and their payout addresses.
    pub operators: Vec<OperatorPayout>,
    /// How long after an epoch ends the node waits before publishing its bundle, so late
    /// countersignatures of the epoch's last receipts arrive.
    #[serde(with = "xnode_types::duration_text")]
    pub grace: Duration,
    /// How often the close worker runs a round (gather, compute, vote, post).
    #[serde(with = "xnode_types::duration_text")]
    pub round_interval: Duration,
    /// How long members keep gathering bundles before they sign a root.
    #[serde(with = "xnode_types::duration_text")]
    pub gather: Duration,
    /// How long the root's signatures stay valid on chain after the epoch ends.
    #[serde(with = "xnode_types::duration_text")]
    pub post_deadline: Duration,
    /// How long a member that is not the designated poster waits, after the quorum, before
    /// it posts itself (the contract keeps the first root; a second post only costs gas).
    #[serde(with = "xnode_types::duration_text")]
    pub backup_post_after: Duration,
    /// Closed epochs looked back at when the node starts (or was off): older ones are not
    /// closed any more.
    pub lookback_epochs: u64,
    /// The price of every metered resource (`[settlement.prices]`). Every node of a
    /// network must configure the same table: its digest is part of each member's signed
    /// epoch context, and members never count a vote computed with other prices. Left out
    /// when written with the defaults (TOML values cannot hold every `u128`, and a
    /// generated configuration then reads back the same).
    #[serde(skip_serializing_if = "is_default_prices")]
    pub prices: PriceTable,
}

fn is_default_prices(prices: &PriceTable) -> bool {
    *prices == PriceTable::default()
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            committee: Vec::new(),
            threshold: 0,
            operators: Vec::new(),
            grace: Duration::from_secs(120),
            round_interval: Duration::from_secs(10),
            gather: Duration::from_secs(60),
            post_deadline: Duration::from_secs(24 * 3600),
            backup_post_after: Duration::from_secs(120),
            lookback_epochs: 2,
            prices: PriceTable::default(),
        }
    }
}

impl SettlementConfig {
    /// Checks the section on its own and against `[chain]`; every mistake is one line.
    pub fn validate(&self, chain: &ChainConfig) -> Result<(), ConfigError> {
        let bad = |reason: String| Err(ConfigError(reason));
        // Prices are checked even when settlement is off, so a mistake shows at start and
        // not when the node is later enabled.
        let mut params = LedgerParams::with_defaults("");
        params.prices = self.prices;
        if let Err(e) = params.validate() {
            return bad(format!("settlement.prices: {e}"));
        }
        if !self.enabled {
            return Ok(());
        }
        if chain.rpc_url.as_deref().is_none_or(str::is_empty) {
            return bad("settlement.enabled needs chain.rpc_url".into());
        }
        if let Some(url) = &chain.rpc_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(format!("chain.rpc_url {url:?} is not an http(s) URL"));
        }
        if chain.settlement_contract.is_none() {
            return bad("settlement.enabled needs chain.settlement_contract".into());
        }
        if let Some(path) = &chain.poster_key_file {
            read_poster_key(path)?;
        }
        if self.committee.is_empty() {
            return bad("settlement.committee lists no member".into());
        }
        let mut nodes = std::collections::BTreeSet::new();
        let mut addresses = std::collections::BTreeSet::new();
        for member in &self.committee {
            if !nodes.insert(member.node) || !addresses.insert(member.address) {
                return bad(format!(
                    "settlement.committee lists {} or {} twice",
                    member.node, member.address
                ));
            }
        }
        let n = self.committee.len();
        let min = CommitteeSigners::min_threshold(n);
        if self.threshold < min || self.threshold > n {
            return bad(format!(
                "settlement.threshold {} is outside {min}..={n} (f+1 to n for {n} members)",
                self.threshold
            ));
        }
        let mut operators = std::collections::BTreeSet::new();
        for operator in &self.operators {
            if !operators.insert(operator.node) {
                return bad(format!(
                    "settlement.operators lists {} twice",
                    operator.node
                ));
            }
        }
        for (name, value) in [
            ("round_interval", self.round_interval),
            ("post_deadline", self.post_deadline),
        ] {
            if value.is_zero() {
                return bad(format!("settlement.{name} must be above zero"));
            }
        }
        if self.lookback_epochs == 0 || self.lookback_epochs > 1000 {
            return bad("settlement.lookback_epochs must be between 1 and 1000".into());
        }
        Ok(())
    }

    /// The committee addresses, ascending.
    pub fn member_addresses(&self) -> Vec<Address> {
        let mut addresses: Vec<Address> = self.committee.iter().map(|m| m.address).collect();
        addresses.sort();
        addresses
    }
}

/// Reads the poster key file: one hex secp256k1 key, with or without `0x`, surrounding
/// white space ignored.
pub fn read_poster_key(path: &std::path::Path) -> Result<PrivateKeySigner, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("chain.poster_key_file {}: {e}", path.display())))?;
    text.trim()
        .trim_start_matches("0x")
        .parse::<PrivateKeySigner>()
        .map_err(|e| {
            ConfigError(format!(
                "chain.poster_key_file {}: not a hex secp256k1 key ({e})",
                path.display()
            ))
        })
}
