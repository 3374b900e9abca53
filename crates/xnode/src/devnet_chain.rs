//! `xnode devnet --chain`: a local anvil with the settlement contracts, the devnet's
//! tenant and operators funded, and each node's `[chain]` and `[settlement]` sections, so
//! the devnet's epochs close and settle on a real EVM.
//!
//! The node keys are made before the nodes start: a committee member's address derives
//! from its node key, and the `Committee` contract must list it at deployment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use xnode_chain::anvil::{Anvil, Contracts, NPM_ANVIL, TOKEN, anvil_binary};
use xnode_chain::{Address, B256, CommitteeSigners, U256};
use xnode_settle::{
    ChainConfig, CommitteeMember, OperatorPayout, SettlementConfig, committee_signer,
};

/// The devnet's epoch: short, so an epoch settles while one watches.
pub const DEVNET_EPOCH: Duration = Duration::from_secs(30);
/// How often the devnet's providers propose receipts: a sixth of an epoch, so that usage
/// shows as countersigned receipts (in `xnode ledger receipts` and the Studio) seconds
/// after it happened, not only at the epoch's end.
pub const DEVNET_EXCHANGE_INTERVAL: Duration = Duration::from_secs(5);
/// Tokens escrowed for the devnet's tenant.
const TENANT_ESCROW: u128 = 10_000 * TOKEN;
/// Tokens given to each operator's payout account (to bond, or to watch rewards arrive).
const OPERATOR_TOKENS: u128 = 1_000 * TOKEN;
/// Tokens each operator bonds (the ledger pays only bonded operators).
const OPERATOR_BOND: u128 = 100 * TOKEN;
/// Ether given to each member's committee address, which sends its posts.
const MEMBER_GAS: u128 = 100 * TOKEN;

/// The running chain of a devnet: anvil (stopped when this is dropped) and its contracts.
pub struct DevChain {
    /// The anvil process.
    pub anvil: Anvil,
    /// The deployed contracts.
    pub contracts: Contracts,
    /// Each node's operator payout account (an unlocked anvil account), by node.
    pub payouts: Vec<Address>,
}

/// The anvil to run: `XNODE_ANVIL`, the repository's npm package where this binary was
/// built, or the npm package under the current directory.
fn find_anvil() -> anyhow::Result<PathBuf> {
    if let Some(path) = anvil_binary() {
        return Ok(path);
    }
    let here = PathBuf::from(NPM_ANVIL);
    if here.is_file() {
        return Ok(here);
    }
    anyhow::bail!(
        "anvil is not installed: run `npm ci` in contracts/anvil of the xnode repository (it \
         installs the pinned @foundry-rs/anvil-linux-amd64), or set XNODE_ANVIL to an anvil binary"
    )
}

/// Starts anvil, deploys the contracts with the nodes (whose data dirs are `dirs`, keys
/// made already) as the committee, funds the tenant's escrow and the operators, and
/// writes each node's `chain.toml`.
pub fn start(dirs: &[PathBuf], tenant: &xnode_types::SecretKey) -> anyhow::Result<DevChain> {
    let binary = find_anvil()?;
    let anvil = Anvil::start(&binary)
        .with_context(|| format!("cannot start anvil ({})", binary.display()))?;
    let keys = dirs
        .iter()
        .map(|dir| {
            xnode_node::identity::load_or_create_key(dir)
                .map(|(key, _)| key)
                .with_context(|| format!("node key in {}", dir.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let members: Vec<CommitteeMember> = keys
        .iter()
        .map(|key| CommitteeMember {
            node: key.node_id(),
            address: committee_signer(key).address(),
        })
        .collect();
    let threshold = CommitteeSigners::min_threshold(members.len());
    let addresses: Vec<Address> = members.iter().map(|m| m.address).collect();
    let contracts = anvil
        .deploy_contracts(&addresses, threshold)
        .context("deploying the contracts on anvil")?;
    for address in &addresses {
        anvil
            .set_balance(*address, U256::from(MEMBER_GAS))
            .context("giving a committee member gas")?;
    }
    contracts
        .deposit(&anvil, B256::from(tenant.public().0), TENANT_ESCROW)
        .context("escrowing the tenant's tokens")?;
    // Operators claim with anvil's unlocked development accounts 1..=n (account 0
    // deployed), so `cast`, a wallet or a script can bond and claim with them.
    let accounts = anvil.accounts().context("anvil's accounts")?;
    let payouts: Vec<Address> = accounts.iter().skip(1).take(keys.len()).copied().collect();
    if payouts.len() < keys.len() {
        anyhow::bail!(
            "anvil has {} development accounts, too few to pay {} operators",
            accounts.len(),
            keys.len()
        );
    }
    // The ledger pays only bonded operators: each bonds some, and keeps the rest.
    for payout in &payouts {
        contracts
            .bond(&anvil, *payout, OPERATOR_BOND)
            .context("bonding an operator")?;
        contracts
            .transfer(&anvil, *payout, OPERATOR_TOKENS)
            .context("funding an operator")?;
    }
    let chain = ChainConfig {
        rpc_url: Some(anvil.url()),
        settlement_contract: Some(contracts.settlement),
        staking_contract: Some(contracts.staking),
        poster_key_file: None,
    };
    let settlement = SettlementConfig {
        enabled: true,
        committee: members,
        threshold,
        operators: keys
            .iter()
            .zip(&payouts)
            .map(|(key, payout)| OperatorPayout {
                node: key.node_id(),
                payout: *payout,
            })
            .collect(),
        grace: Duration::from_secs(5),
        gather: Duration::from_secs(5),
        round_interval: Duration::from_secs(1),
        post_deadline: Duration::from_secs(3600),
        backup_post_after: Duration::from_secs(10),
        lookback_epochs: 2,
        prices: xnode_ledger::PriceTable::default(),
    };
    let text = config_text(&chain, &settlement)?;
    for dir in dirs {
        std::fs::write(config_path(dir), &text)
            .with_context(|| format!("cannot write {}", config_path(dir).display()))?;
    }
    Ok(DevChain {
        anvil,
        contracts,
        payouts,
    })
}

/// Where a node's chain configuration is written.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("chain.toml")
}

/// The node configuration file of a settling devnet node: the short epoch (metering and
/// audits alike), `[chain]` and `[settlement]`.
fn config_text(chain: &ChainConfig, settlement: &SettlementConfig) -> anyhow::Result<String> {
    let epoch = humantime::format_duration(DEVNET_EPOCH).to_string();
    let mut root = toml::Table::new();
    let mut metering = toml::Table::new();
    metering.insert("epoch".into(), toml::Value::String(epoch.clone()));
    metering.insert(
        "exchange_interval".into(),
        toml::Value::String(humantime::format_duration(DEVNET_EXCHANGE_INTERVAL).to_string()),
    );
    let mut storage = toml::Table::new();
    storage.insert("audit_epoch".into(), toml::Value::String(epoch));
    root.insert("metering".into(), toml::Value::Table(metering));
    root.insert("storage".into(), toml::Value::Table(storage));
    root.insert(
        "chain".into(),
        toml::Value::try_from(chain).context("encoding [chain]")?,
    );
    root.insert(
        "settlement".into(),
        toml::Value::try_from(settlement).context("encoding [settlement]")?,
    );
    Ok(format!(
        "# Written by `xnode devnet --chain`: the devnet's local chain and its committee.\n{}",
        toml::to_string(&root).context("encoding the chain configuration")?
    ))
}

/// What the devnet prints about its chain.
pub fn print_help(chain: &DevChain, tenant: &xnode_types::SecretKey, first_api: &str) {
    let contracts = &chain.contracts;
    println!(
        "Chain: anvil at {url} epochs of {epoch} settle on it.\n\
         \x20 token {token}   settlement {settlement}   staking {staking}   committee {committee}\n\
         \x20 tenant {tenant} has {escrow} tokens in escrow; operators (each bonded {bond}) claim with anvil accounts 1..={n}\n\
         \x20 xnode ledger status --api {first_api}     # this node's epochs: gathering, voted, posted\n",
        url = chain.anvil.url(),
        epoch = humantime::format_duration(DEVNET_EPOCH),
        token = contracts.token,
        settlement = contracts.settlement,
        staking = contracts.staking,
        committee = contracts.committee,
        tenant = tenant.public().to_hex(),
        escrow = TENANT_ESCROW / TOKEN,
        n = chain.payouts.len(),
        bond = OPERATOR_BOND / TOKEN,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The devnet's `chain.toml` reads back as a node configuration with the default
    /// prices (a TOML value cannot hold every `u128`, so the default table is left out).
    #[test]
    fn the_chain_config_text_reads_back_with_the_default_prices() {
        let settlement = SettlementConfig {
            lookback_epochs: 3,
            ..SettlementConfig::default()
        };
        let text = config_text(&ChainConfig::default(), &settlement).unwrap();
        assert!(!text.contains("prices"), "{text}");
        let config: xnode_node::Config = toml::from_str(&text).unwrap();
        assert_eq!(config.settlement.lookback_epochs, 3);
        assert_eq!(config.metering.epoch, DEVNET_EPOCH);
        assert_eq!(config.metering.exchange_interval, DEVNET_EXCHANGE_INTERVAL);
        assert_eq!(
            config.settlement.prices,
            xnode_ledger::PriceTable::default()
        );
    }
}
