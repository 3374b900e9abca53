//! `xnode stake withdraw --quiet-epoch N`: collects the committee's exit clearance through
//! a node's `POST /v1/ledger/exit-clearance` and sends `Staking.withdrawCleared`, with
//! `xnode_settle::exit_client` (the code the multi-node exit test drives).

use alloy::primitives::Address;
use anyhow::Context;
use serde_json::json;
use xnode_ledger::Epoch;
use xnode_settle::ChainClient;
use xnode_settle::exit_client;

use super::print_json;

pub(super) async fn withdraw_cleared(
    client: &ChainClient,
    staking: Address,
    api: &str,
    quiet_epoch: u64,
    json_out: bool,
) -> anyhow::Result<()> {
    let withdrawn = exit_client::withdraw_cleared(client, staking, api, Epoch(quiet_epoch))
        .await
        .context("withdrawCleared")?;
    if json_out {
        return print_json(&json!({
            "operator": withdrawn.operator,
            "withdrawn": withdrawn.amount.to_string(),
            "quiet_epoch": quiet_epoch,
            "tx": withdrawn.mined.hash,
            "gas_used": withdrawn.mined.gas_used,
        }));
    }
    println!(
        "withdrew {} with the committee's clearance for epoch {quiet_epoch}; tx {} ({} gas)",
        withdrawn.amount, withdrawn.mined.hash, withdrawn.mined.gas_used
    );
    Ok(())
}
