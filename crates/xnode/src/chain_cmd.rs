//! The chain side of the incentives from the command line: `xnode stake` (an operator's
//! bond on the `Staking` contract), `xnode escrow` (a tenant's escrow on the `Settlement`
//! contract) and `xnode rewards` (what an operator can claim per posted epoch, with the
//! Merkle proof from the node's epoch record, and the claim itself).
//!
//! Transactions are signed locally with a secp256k1 key file (`--key`) and sent through
//! `xnode_settle::ChainClient`, the same minimal JSON-RPC client the nodes post roots with.
//! Where the chain is comes from flags, or from a node's configuration file (`--config`,
//! its `[chain]` section), so an operator on the node's machine needs no flags at all.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use anyhow::Context;
use serde_json::{Value, json};
use xnode_chain::{Settlement, Staking, XnodeToken};
use xnode_settle::ChainClient;

use crate::cli::{ChainArgs, EscrowAction, RewardsArgs, StakeAction};
use crate::client::{get_json, print_table};

/// How long a command waits for its transaction to be mined.
const MINED_WITHIN: Duration = Duration::from_secs(120);

/// A token amount in base units, as typed: decimal digits, `_` allowed between them.
pub fn parse_amount(text: &str) -> anyhow::Result<U256> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("{text:?} is not an amount: give base units as decimal digits, e.g. 1000000");
    }
    let amount = U256::from_str_radix(&digits, 10)
        .map_err(|e| anyhow::anyhow!("{text:?} is not an amount: {e}"))?;
    if amount.is_zero() {
        anyhow::bail!("the amount must be above zero");
    }
    Ok(amount)
}

/// Where the chain and the contracts are, after flags and the node's `[chain]` section.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainTarget {
    pub rpc_url: String,
    pub settlement: Option<Address>,
    pub staking: Option<Address>,
    /// The key file that signs, if any.
    pub key: Option<PathBuf>,
}

impl ChainTarget {
    /// Flags win over the configuration file; the RPC URL is required from one of them.
    pub fn resolve(args: &ChainArgs) -> anyhow::Result<Self> {
        let config = match &args.config {
            Some(path) => read_chain_section(path)?,
            None => xnode_settle::ChainConfig::default(),
        };
        let rpc_url = args
            .rpc
            .clone()
            .or(config.rpc_url)
            .filter(|url| !url.is_empty())
            .context("no chain endpoint: pass --rpc URL (or --config with a [chain] rpc_url)")?;
        if !(rpc_url.starts_with("http://") || rpc_url.starts_with("https://")) {
            anyhow::bail!("--rpc {rpc_url:?} is not an http(s) URL");
        }
        Ok(Self {
            rpc_url,
            settlement: args.settlement.or(config.settlement_contract),
            staking: args.staking.or(config.staking_contract),
            key: args.key.clone().or(config.poster_key_file),
        })
    }

    fn settlement(&self) -> anyhow::Result<Address> {
        self.settlement.context(
            "no Settlement contract: pass --settlement ADDRESS (or --config with [chain] settlement_contract)",
        )
    }

    fn staking(&self) -> anyhow::Result<Address> {
        self.staking.context(
            "no Staking contract: pass --staking ADDRESS (or --config with [chain] staking_contract)",
        )
    }

    /// A client that signs with `--key`.
    fn signing_client(&self) -> anyhow::Result<ChainClient> {
        let path = self
            .key
            .as_ref()
            .context("sending a transaction needs --key FILE (a hex secp256k1 key)")?;
        let signer = xnode_settle::config::read_poster_key(path).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().replace("chain.poster_key_file", "--key")
            )
        })?;
        Ok(ChainClient::new(&self.rpc_url, signer)?)
    }

    /// A client for reads: the key's when one is given (so its address is the default
    /// subject), else a fixed throwaway key, since `eth_call` signs nothing.
    fn reading_client(&self) -> anyhow::Result<ChainClient> {
        if self.key.is_some() {
            return self.signing_client();
        }
        let signer =
            PrivateKeySigner::from_bytes(&B256::with_last_byte(1)).context("the read-only key")?;
        Ok(ChainClient::new(&self.rpc_url, signer)?)
    }
}

/// The `[chain]` section of a node's TOML configuration file, the rest ignored.
fn read_chain_section(path: &Path) -> anyhow::Result<xnode_settle::ChainConfig> {
    #[derive(serde::Deserialize)]
    struct OnlyChain {
        #[serde(default)]
        chain: xnode_settle::ChainConfig,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed: OnlyChain =
        toml::from_str(&text).with_context(|| format!("{} [chain]", path.display()))?;
    Ok(parsed.chain)
}

async fn view<C: SolCall>(
    client: &ChainClient,
    to: Address,
    call: &C,
) -> anyhow::Result<C::Return> {
    let bytes = client.call(to, &call.abi_encode()).await?;
    C::abi_decode_returns(&bytes)
        .map_err(|e| anyhow::anyhow!("the contract at {to} answered something unexpected: {e}"))
}

/// Approves `spender` for `amount` of the token if the allowance is short, so a bond or a
/// deposit can pull it.
async fn ensure_allowance(
    client: &ChainClient,
    token: Address,
    spender: Address,
    amount: U256,
) -> anyhow::Result<()> {
    let allowance = view(
        client,
        token,
        &XnodeToken::allowanceCall {
            _0: client.address(),
            _1: spender,
        },
    )
    .await?;
    if allowance >= amount {
        return Ok(());
    }
    let balance = view(client, token, &XnodeToken::balanceOfCall(client.address())).await?;
    if balance < amount {
        anyhow::bail!(
            "{} holds {balance} tokens, less than the {amount} asked",
            client.address()
        );
    }
    let approve = XnodeToken::approveCall {
        spender,
        value: amount,
    };
    client
        .send(Some(token), approve.abi_encode().into(), MINED_WITHIN)
        .await
        .context("approving the token transfer")?;
    Ok(())
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `xnode stake bond|unbond|withdraw|status`.
pub async fn stake(action: StakeAction) -> anyhow::Result<()> {
    match action {
        StakeAction::Bond { amount, chain } => {
            let amount = parse_amount(&amount)?;
            let target = ChainTarget::resolve(&chain)?;
            let staking = target.staking()?;
            let client = target.signing_client()?;
            let token = view(&client, staking, &Staking::tokenCall {}).await?;
            ensure_allowance(&client, token, staking, amount).await?;
            let mined = client
                .send(
                    Some(staking),
                    Staking::bondCall { amount }.abi_encode().into(),
                    MINED_WITHIN,
                )
                .await
                .context("bond")?;
            let bonded = view(&client, staking, &Staking::bondedCall(client.address())).await?;
            if chain.json {
                return print_json(
                    &json!({"operator": client.address(), "bonded": bonded.to_string(), "tx": mined.hash}),
                );
            }
            println!(
                "bonded {amount} for {} (bond now {bonded}); tx {}",
                client.address(),
                mined.hash
            );
        }
        StakeAction::Unbond { amount, chain } => {
            let amount = parse_amount(&amount)?;
            let target = ChainTarget::resolve(&chain)?;
            let staking = target.staking()?;
            let client = target.signing_client()?;
            let bonded = view(&client, staking, &Staking::bondedCall(client.address())).await?;
            if bonded < amount {
                anyhow::bail!(
                    "{} has {bonded} bonded, less than {amount}",
                    client.address()
                );
            }
            let mined = client
                .send(
                    Some(staking),
                    Staking::requestUnbondCall { amount }.abi_encode().into(),
                    MINED_WITHIN,
                )
                .await
                .context("requestUnbond")?;
            let pending = view(&client, staking, &Staking::unbondingCall(client.address())).await?;
            if chain.json {
                return print_json(
                    &json!({"operator": client.address(), "unbonding": pending.amount.to_string(), "ready_at": pending.readyAt.to_string(), "tx": mined.hash}),
                );
            }
            println!(
                "unbonding {} (withdrawable with `xnode stake withdraw` from {}); tx {}",
                pending.amount,
                unix_time(pending.readyAt),
                mined.hash
            );
        }
        StakeAction::Withdraw {
            quiet_epoch,
            api,
            chain,
        } => {
            let target = ChainTarget::resolve(&chain)?;
            let staking = target.staking()?;
            let client = target.signing_client()?;
            let pending = view(&client, staking, &Staking::unbondingCall(client.address())).await?;
            if pending.amount.is_zero() {
                anyhow::bail!("{} has nothing unbonding", client.address());
            }
            if let Some(epoch) = quiet_epoch {
                return exit::withdraw_cleared(&client, staking, &api, epoch, chain.json).await;
            }
            let mined = client
                .send(
                    Some(staking),
                    Staking::withdrawCall {}.abi_encode().into(),
                    MINED_WITHIN,
                )
                .await
                .with_context(|| {
                    format!(
                        "withdraw without a clearance (the unbond was ready at {}; without \
                         --quiet-epoch the contract's exit fallback delay applies)",
                        unix_time(pending.readyAt)
                    )
                })?;
            if chain.json {
                return print_json(
                    &json!({"operator": client.address(), "withdrawn": pending.amount.to_string(), "tx": mined.hash}),
                );
            }
            println!("withdrew {}; tx {}", pending.amount, mined.hash);
        }
        StakeAction::Status { address, chain } => {
            let target = ChainTarget::resolve(&chain)?;
            let staking = target.staking()?;
            let client = target.reading_client()?;
            let operator = subject(address, &target, &client)?;
            let bonded = view(&client, staking, &Staking::bondedCall(operator)).await?;
            let pending = view(&client, staking, &Staking::unbondingCall(operator)).await?;
            let delay = view(&client, staking, &Staking::unbondDelayCall {}).await?;
            if chain.json {
                return print_json(&json!({
                    "operator": operator,
                    "bonded": bonded.to_string(),
                    "unbonding": pending.amount.to_string(),
                    "unbonding_ready_at": pending.readyAt.to_string(),
                    "unbond_delay_seconds": delay.to_string(),
                }));
            }
            println!("operator {operator}");
            println!("  bonded:       {bonded}");
            if pending.amount.is_zero() {
                println!("  unbonding:    0");
            } else {
                println!(
                    "  unbonding:    {} (ready at {})",
                    pending.amount,
                    unix_time(pending.readyAt)
                );
            }
            println!("  unbond delay: {delay} s");
        }
    }
    Ok(())
}

/// The address a read is about: `--address`, else the key's.
fn subject(
    address: Option<Address>,
    target: &ChainTarget,
    client: &ChainClient,
) -> anyhow::Result<Address> {
    match (address, &target.key) {
        (Some(address), _) => Ok(address),
        (None, Some(_)) => Ok(client.address()),
        (None, None) => anyhow::bail!("whose? pass --address ADDRESS or --key FILE"),
    }
}

fn unix_time(seconds: U256) -> String {
    let seconds = u64::try_from(seconds).unwrap_or(u64::MAX);
    let at = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(seconds));
    at.map_or_else(
        || format!("{seconds} (Unix seconds)"),
        |at| humantime::format_rfc3339_seconds(at).to_string(),
    )
}

/// The tenant an escrow is for: `--tenant HEX`, else the public key of the tenant key file.
fn tenant_id(tenant: Option<String>, tenant_key: Option<PathBuf>) -> anyhow::Result<B256> {
    if let Some(hex) = tenant {
        return parse_tenant(&hex);
    }
    let path = tenant_key.unwrap_or_else(crate::tenant::default_key_path);
    let key = crate::tenant::load(&path)?;
    Ok(B256::from(key.public().0))
}

/// A tenant id as `xnode key tenant` prints it (64 hex digits), as the escrow's `bytes32`.
pub fn parse_tenant(text: &str) -> anyhow::Result<B256> {
    let text = text.trim().trim_start_matches("0x");
    if text.len() != 64 {
        anyhow::bail!("a tenant id is 64 hex digits (see `xnode key tenant`), not {text:?}");
    }
    B256::from_str(text).map_err(|e| anyhow::anyhow!("{text:?} is not a tenant id: {e}"))
}

/// `xnode escrow deposit|status`.
pub async fn escrow(action: EscrowAction) -> anyhow::Result<()> {
    match action {
        EscrowAction::Deposit {
            amount,
            tenant,
            tenant_key,
            chain,
        } => {
            let amount = parse_amount(&amount)?;
            let tenant = tenant_id(tenant, tenant_key)?;
            let target = ChainTarget::resolve(&chain)?;
            let settlement = target.settlement()?;
            let client = target.signing_client()?;
            let token = view(&client, settlement, &Settlement::tokenCall {}).await?;
            ensure_allowance(&client, token, settlement, amount).await?;
            let mined = client
                .send(
                    Some(settlement),
                    Settlement::depositCall { tenant, amount }
                        .abi_encode()
                        .into(),
                    MINED_WITHIN,
                )
                .await
                .context("deposit")?;
            let balance = view(&client, settlement, &Settlement::escrowOfCall(tenant)).await?;
            if chain.json {
                return print_json(
                    &json!({"tenant": tenant, "escrow": balance.to_string(), "tx": mined.hash}),
                );
            }
            println!(
                "deposited {amount} for tenant {} (escrow now {balance}); tx {}",
                hex::encode(tenant),
                mined.hash
            );
        }
        EscrowAction::Status {
            tenant,
            tenant_key,
            chain,
        } => {
            let tenant = tenant_id(tenant, tenant_key)?;
            let target = ChainTarget::resolve(&chain)?;
            let settlement = target.settlement()?;
            let client = target.reading_client()?;
            let balance = view(&client, settlement, &Settlement::escrowOfCall(tenant)).await?;
            let withdrawer =
                view(&client, settlement, &Settlement::withdrawerOfCall(tenant)).await?;
            let pending = view(
                &client,
                settlement,
                &Settlement::pendingWithdrawalCall(tenant),
            )
            .await?;
            if chain.json {
                return print_json(&json!({
                    "tenant": tenant,
                    "escrow": balance.to_string(),
                    "withdrawer": withdrawer,
                    "pending_withdrawal": pending.amount.to_string(),
                    "pending_withdrawal_ready_at": pending.readyAt.to_string(),
                }));
            }
            println!("tenant {}", hex::encode(tenant));
            println!("  escrow:     {balance}");
            if withdrawer != Address::ZERO {
                println!("  withdrawer: {withdrawer}");
            }
            if !pending.amount.is_zero() {
                println!(
                    "  withdrawal: {} requested, ready at {}",
                    pending.amount,
                    unix_time(pending.readyAt)
                );
            }
        }
    }
    Ok(())
}

/// An account's claim of one epoch, parsed from `GET /v1/ledger/epoch/{n}/claim/{address}`
/// and checked here: the proof must lead from the leaf of `(epoch, account, amount)` to
/// the root, so a node that answers a wrong amount or proof is caught before any gas is
/// spent.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckedClaim {
    pub epoch: u64,
    pub account: Address,
    pub amount: U256,
    pub root: B256,
    pub proof: Vec<B256>,
}

impl CheckedClaim {
    /// Parses and verifies a claim answered by a node for `epoch` and `account`.
    pub fn from_view(view: &Value, epoch: u64, account: Address) -> anyhow::Result<Self> {
        let field = |name: &str| {
            view[name]
                .as_str()
                .with_context(|| format!("the claim has no {name}"))
        };
        if view["epoch"].as_u64() != Some(epoch) {
            anyhow::bail!("the node answered a claim of another epoch");
        }
        let named: Address = field("account")?.parse().context("the claim's account")?;
        if named != account {
            anyhow::bail!("the node answered the claim of {named}, not {account}");
        }
        let amount = u128::from_str(field("amount")?).context("the claim's amount")?;
        let root = B256::from_str(field("root")?).context("the claim's root")?;
        let proof = view["proof"]
            .as_array()
            .context("the claim has no proof")?
            .iter()
            .map(|step| {
                step.as_str()
                    .context("a proof step is not text")
                    .and_then(|s| B256::from_str(s).context("a proof step is not a hash"))
            })
            .collect::<anyhow::Result<Vec<B256>>>()?;
        let leaf = xnode_ledger::leaf_hash(xnode_ledger::Epoch(epoch), &account.0.0, amount);
        let steps: Vec<[u8; 32]> = proof.iter().map(|step| step.0).collect();
        if !xnode_ledger::verify_proof(&root.0, &leaf, &steps) {
            anyhow::bail!(
                "the proof for {amount} to {account} in epoch {epoch} does not lead to the root {root}"
            );
        }
        Ok(Self {
            epoch,
            account,
            amount: U256::from(amount),
            root,
            proof,
        })
    }

    /// The calldata of `Settlement.claim`.
    pub fn calldata(&self) -> Bytes {
        Settlement::claimCall {
            epoch: self.epoch,
            account: self.account,
            amount: self.amount,
            proof: self.proof.clone(),
        }
        .abi_encode()
        .into()
    }
}

/// The account rewards are shown for: `--address`, else the key's, else this node's payout
/// address from the node's `[settlement] operators`.
async fn rewards_account(args: &RewardsArgs, status: &Value) -> anyhow::Result<Address> {
    if let Some(address) = args.address {
        return Ok(address);
    }
    if let Some(path) = &args.chain.key {
        let signer = xnode_settle::config::read_poster_key(path).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().replace("chain.poster_key_file", "--key")
            )
        })?;
        return Ok(signer.address());
    }
    let node = get_json(&args.api, "/v1/node").await?;
    let id = node["id"].as_str().unwrap_or_default();
    status["operators"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["node"].as_str() == Some(id))
        .and_then(|o| o["payout"].as_str())
        .and_then(|a| a.parse().ok())
        .with_context(|| {
            format!("node {id} lists no payout address for itself; pass --address or --key")
        })
}

/// `xnode rewards [claim EPOCH]`.
pub async fn rewards(args: RewardsArgs) -> anyhow::Result<()> {
    let status = get_json(&args.api, "/v1/ledger/status").await?;
    if status["enabled"].as_bool() != Some(true) {
        if args.chain.json {
            return print_json(&json!({"enabled": false, "epochs": []}));
        }
        println!(
            "settlement is off on {} ([settlement] enabled = false): no epoch is closed, nothing is claimable",
            args.api
        );
        return Ok(());
    }
    let account = rewards_account(&args, &status).await?;
    if let Some(crate::cli::RewardsAction::Claim { epoch }) = args.action {
        return claim(&args, account, epoch).await;
    }
    // On-chain state is shown when the chain is reachable from here; the node's records
    // alone still say what is claimable.
    let chain = match ChainTarget::resolve(&args.chain) {
        Ok(target) => match (target.settlement, target.reading_client()) {
            (Some(settlement), Ok(client)) => Some((settlement, client)),
            _ => None,
        },
        Err(_) => None,
    };
    let mut rows = Vec::new();
    let mut listed = Vec::new();
    for record in status["recent"].as_array().into_iter().flatten() {
        let epoch = record["epoch"].as_u64().unwrap_or(0);
        let state = record["status"].as_str().unwrap_or("?").to_owned();
        let amount = record["payouts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["address"]
                    .as_str()
                    .and_then(|a| a.parse::<Address>().ok())
                    == Some(account)
            })
            .and_then(|p| p["amount"].as_str())
            .unwrap_or("0")
            .to_owned();
        let claimed = match &chain {
            Some((settlement, client)) if state == "posted" && amount != "0" => {
                match view(
                    client,
                    *settlement,
                    &Settlement::claimedCall { epoch, account },
                )
                .await
                {
                    Ok(true) => "claimed",
                    Ok(false) => "claimable",
                    Err(_) => "?",
                }
            }
            _ if state == "posted" && amount != "0" => "claimable",
            _ if amount != "0" => "not posted yet",
            _ => "-",
        };
        listed.push(json!({"epoch": epoch, "status": state, "amount": amount, "claim": claimed}));
        rows.push(vec![epoch.to_string(), state, amount, claimed.to_owned()]);
    }
    if args.chain.json {
        return print_json(&json!({"enabled": true, "account": account, "epochs": listed}));
    }
    println!("rewards of {account} in the epochs {} recorded", args.api);
    print_table(&["EPOCH", "STATUS", "AMOUNT", "CLAIM"], &rows);
    Ok(())
}

async fn claim(args: &RewardsArgs, account: Address, epoch: u64) -> anyhow::Result<()> {
    let answered = get_json(
        &args.api,
        &format!("/v1/ledger/epoch/{epoch}/claim/{account}"),
    )
    .await?;
    let checked = CheckedClaim::from_view(&answered, epoch, account)?;
    let target = ChainTarget::resolve(&args.chain)?;
    let settlement = target.settlement()?;
    let client = target.signing_client()?;
    let posted = view(&client, settlement, &Settlement::rootOfCall(epoch)).await?;
    if posted == B256::ZERO {
        anyhow::bail!("epoch {epoch} has no root on chain yet: wait until it is posted");
    }
    if posted != checked.root {
        anyhow::bail!(
            "the chain holds root {posted} for epoch {epoch}, not the node's {}: ask another node",
            checked.root
        );
    }
    if view(
        &client,
        settlement,
        &Settlement::claimedCall { epoch, account },
    )
    .await?
    {
        anyhow::bail!("{account} already claimed epoch {epoch}");
    }
    let mined = client
        .send(Some(settlement), checked.calldata(), MINED_WITHIN)
        .await
        .context("claim")?;
    if args.chain.json {
        return print_json(
            &json!({"epoch": epoch, "account": account, "amount": checked.amount.to_string(), "tx": mined.hash, "gas_used": mined.gas_used}),
        );
    }
    println!(
        "claimed {} for {account} in epoch {epoch}; tx {} ({} gas)",
        checked.amount, mined.hash, mined.gas_used
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, RewardsAction};

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["xnode"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().command
    }

    const STAKING: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

    #[test]
    fn amounts_are_positive_decimal_base_units() {
        assert_eq!(parse_amount("1000").unwrap(), U256::from(1000));
        assert_eq!(parse_amount("1_000_000").unwrap(), U256::from(1_000_000));
        let big = "340282366920938463463374607431768211456"; // 2^128, beyond u128
        assert_eq!(parse_amount(big).unwrap(), U256::from(1u8) << 128);
        for bad in ["", "0", "-5", "1.5", "0x10", "ten", "_"] {
            assert!(parse_amount(bad).is_err(), "{bad:?} was accepted");
        }
        // Beyond 2^256 is refused, not wrapped.
        assert!(parse_amount(&"9".repeat(80)).is_err());
    }

    #[test]
    fn stake_escrow_and_rewards_parse() {
        match parse(&[
            "stake",
            "bond",
            "500",
            "--rpc",
            "http://127.0.0.1:8545",
            "--staking",
            STAKING,
            "--key",
            "op.key",
        ]) {
            Command::Stake {
                action: StakeAction::Bond { amount, chain },
            } => {
                assert_eq!(amount, "500");
                assert_eq!(chain.staking, Some(STAKING.parse().unwrap()));
                assert_eq!(chain.key, Some(PathBuf::from("op.key")));
            }
            other => panic!("parsed {other:?}"),
        }
        assert!(matches!(
            parse(&["stake", "status", "--address", STAKING]),
            Command::Stake {
                action: StakeAction::Status {
                    address: Some(_),
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["stake", "unbond", "7"]),
            Command::Stake {
                action: StakeAction::Unbond { .. }
            }
        ));
        assert!(matches!(
            parse(&["stake", "withdraw"]),
            Command::Stake {
                action: StakeAction::Withdraw { .. }
            }
        ));
        match parse(&[
            "rewards",
            "claim",
            "12",
            "--api",
            "http://n1:8080",
            "--key",
            "op.key",
        ]) {
            Command::Rewards(args) => {
                assert!(matches!(
                    args.action,
                    Some(RewardsAction::Claim { epoch: 12 })
                ));
                assert_eq!(args.api, "http://n1:8080");
            }
            other => panic!("parsed {other:?}"),
        }
        assert!(matches!(
            parse(&["rewards"]),
            Command::Rewards(crate::cli::RewardsArgs { action: None, .. })
        ));
        match parse(&["escrow", "deposit", "1000", "--tenant", &"ab".repeat(32)]) {
            Command::Escrow {
                action: EscrowAction::Deposit { amount, tenant, .. },
            } => {
                assert_eq!(amount, "1000");
                assert_eq!(tenant.as_deref(), Some("ab".repeat(32).as_str()));
            }
            other => panic!("parsed {other:?}"),
        }
        assert!(matches!(
            parse(&["escrow", "status"]),
            Command::Escrow {
                action: EscrowAction::Status { .. }
            }
        ));
        // A malformed contract address is refused by the parser.
        assert!(Cli::try_parse_from(["xnode", "stake", "status", "--staking", "0x12"]).is_err());
        assert!(Cli::try_parse_from(["xnode", "rewards", "claim"]).is_err());
    }

    #[test]
    fn flags_win_over_the_nodes_chain_section() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "zone = \"eu-1\"\n[chain]\nrpc_url = \"http://10.0.0.1:8545\"\nsettlement_contract = \"{STAKING}\"\nposter_key_file = \"/keys/poster\"\n"
            ),
        )
        .unwrap();
        let from_file = ChainTarget::resolve(&ChainArgs {
            config: Some(config.clone()),
            ..ChainArgs::default()
        })
        .unwrap();
        assert_eq!(from_file.rpc_url, "http://10.0.0.1:8545");
        assert_eq!(from_file.settlement, Some(STAKING.parse().unwrap()));
        assert_eq!(from_file.staking, None);
        assert_eq!(from_file.key, Some(PathBuf::from("/keys/poster")));
        let flagged = ChainTarget::resolve(&ChainArgs {
            config: Some(config),
            rpc: Some("https://rpc.example".into()),
            key: Some(PathBuf::from("mine.key")),
            ..ChainArgs::default()
        })
        .unwrap();
        assert_eq!(flagged.rpc_url, "https://rpc.example");
        assert_eq!(flagged.key, Some(PathBuf::from("mine.key")));
        assert!(ChainTarget::resolve(&ChainArgs::default()).is_err());
        assert!(
            ChainTarget::resolve(&ChainArgs {
                rpc: Some("ftp://x".into()),
                ..ChainArgs::default()
            })
            .is_err()
        );
    }

    #[test]
    fn tenant_ids_are_32_bytes_of_hex() {
        let id = "11".repeat(32);
        assert_eq!(parse_tenant(&id).unwrap(), B256::repeat_byte(0x11));
        assert_eq!(
            parse_tenant(&format!("0x{id}")).unwrap(),
            B256::repeat_byte(0x11)
        );
        assert!(parse_tenant("1234").is_err());
        assert!(parse_tenant(&"zz".repeat(32)).is_err());
    }

    /// A node's claim view for a table built as the poster builds it.
    fn claim_view(epoch: u64, rows: &[(u8, u128)], of: u8) -> (Value, B256) {
        let payouts: Vec<xnode_ledger::Payout> = rows
            .iter()
            .map(|&(byte, amount)| xnode_ledger::Payout {
                address: [byte; 20],
                amount,
            })
            .collect();
        let plan = xnode_chain::SettlementPlan::from_payouts(epoch, &payouts, &[]).unwrap();
        let claim = plan.claim_of(Address::repeat_byte(of)).unwrap();
        let view = json!({
            "epoch": epoch,
            "account": claim.account.to_string(),
            "amount": claim.amount.to_string(),
            "root": plan.rewards_root.to_string(),
            "proof": claim.proof.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "status": "posted",
        });
        (view, plan.rewards_root)
    }

    #[test]
    fn a_claim_is_checked_against_its_root_before_it_is_sent() {
        let rows = [(1u8, 100u128), (2, 250), (3, 75), (4, 5)];
        let (view, root) = claim_view(9, &rows, 2);
        let account = Address::repeat_byte(2);
        let checked = CheckedClaim::from_view(&view, 9, account).unwrap();
        assert_eq!(checked.amount, U256::from(250));
        assert_eq!(checked.root, root);
        // The calldata is exactly what Settlement.claim decodes.
        let decoded = Settlement::claimCall::abi_decode(&checked.calldata()).unwrap();
        assert_eq!(
            (decoded.epoch, decoded.account, decoded.amount),
            (9, account, U256::from(250))
        );
        assert_eq!(decoded.proof, checked.proof);

        // A node that inflates the amount, swaps the account or the epoch, or bends the
        // proof is caught here.
        let mut inflated = view.clone();
        inflated["amount"] = json!("251");
        assert!(CheckedClaim::from_view(&inflated, 9, account).is_err());
        assert!(CheckedClaim::from_view(&view, 9, Address::repeat_byte(3)).is_err());
        assert!(CheckedClaim::from_view(&view, 10, account).is_err());
        let mut bent = view.clone();
        bent["proof"][0] = json!(B256::repeat_byte(7).to_string());
        assert!(CheckedClaim::from_view(&bent, 9, account).is_err());
        let mut garbage = view;
        garbage["proof"] = json!(["not a hash"]);
        assert!(CheckedClaim::from_view(&garbage, 9, account).is_err());
    }

    #[test]
    fn receipt_filters_make_a_query() {
        use crate::client::receipts_query;
        assert_eq!(receipts_query(None, None, None).unwrap(), "");
        assert_eq!(receipts_query(Some(4), None, None).unwrap(), "?epoch=4");
        assert_eq!(
            receipts_query(Some(4), Some("0xabcd".into()), Some("12D3Koo".into())).unwrap(),
            "?epoch=4&tenant=abcd&provider=12D3Koo"
        );
        assert!(receipts_query(None, Some("ab&x=1".into()), None).is_err());
    }
}

#[cfg(test)]
mod chain_anvil_tests;
mod exit;
