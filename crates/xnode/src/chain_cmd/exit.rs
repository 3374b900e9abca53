//! `xnode stake withdraw --quiet-epoch N`: collects the committee's exit clearance through
//! a node's `POST /v1/ledger/exit-clearance` and sends `Staking.withdrawCleared`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, Bytes};
use anyhow::Context;
use serde_json::{Value, json};
use xnode_chain::Staking;
use xnode_ledger::Epoch;
use xnode_settle::{ChainClient, ExitClearanceTerms};

use super::{MINED_WITHIN, print_json};

/// How long the clearance asked for stays valid: long enough to send the transaction,
/// well within the day a member accepts.
const CLEARANCE_LIFETIME: Duration = Duration::from_secs(3600);

pub(super) async fn withdraw_cleared(
    client: &ChainClient,
    staking: Address,
    api: &str,
    quiet_epoch: u64,
    pending: &Staking::unbondingReturn,
    json_out: bool,
) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let unbond_ready_at = u64::try_from(pending.readyAt).context("the unbond's readyAt")?;
    let terms = ExitClearanceTerms {
        operator: client.address(),
        unbond_ready_at,
        quiet_epoch: Epoch(quiet_epoch),
        deadline: now.saturating_add(CLEARANCE_LIFETIME.as_secs()),
    };
    // Collecting asks every committee member, so the node may take a while to answer.
    let body = crate::client::post_json(
        api,
        "/v1/ledger/exit-clearance",
        &json!({
            "operator": terms.operator.to_string(),
            "unbond_ready_at": terms.unbond_ready_at,
            "quiet_epoch": quiet_epoch,
            "deadline": terms.deadline,
        }),
        Duration::from_secs(60),
    )
    .await?;
    if body["complete"] != Value::Bool(true) {
        anyhow::bail!(
            "the committee did not clear the exit for epoch {quiet_epoch}: {} of {} signatures{}",
            body["signatures"].as_array().map_or(0, Vec::len),
            body["threshold"],
            body["own_refusal"]
                .as_str()
                .map(|r| format!(" (the node asked refused: {r})"))
                .unwrap_or_default()
        );
    }
    let signatures = body["signatures"]
        .as_array()
        .context("no signatures in the answer")?
        .iter()
        .map(|s| {
            s.as_str()
                .context("a signature is not a string")?
                .parse::<Bytes>()
                .context("a signature is not hex")
        })
        .collect::<anyhow::Result<Vec<Bytes>>>()?;
    let mined = client
        .send(Some(staking), terms.calldata(signatures), MINED_WITHIN)
        .await
        .context("withdrawCleared")?;
    if json_out {
        return print_json(&json!({
            "operator": client.address(),
            "withdrawn": pending.amount.to_string(),
            "quiet_epoch": quiet_epoch,
            "tx": mined.hash,
            "gas_used": mined.gas_used,
        }));
    }
    println!(
        "withdrew {} with the committee's clearance for epoch {quiet_epoch}; tx {} ({} gas)",
        pending.amount, mined.hash, mined.gas_used
    );
    Ok(())
}
