//! The operator's side of a graceful exit, as `xnode stake withdraw --quiet-epoch N` runs
//! it: read what is unbonding, ask a node's `POST /v1/ledger/exit-clearance` to collect
//! the committee's signatures over [`ExitClearanceTerms`], and send
//! `Staking.withdrawCleared` with them. It lives in this library (not in the binary) so
//! the multi-node exit test drives the very code the command runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;
use serde::Deserialize;
use serde_json::json;
use xnode_chain::Staking;
use xnode_ledger::Epoch;

use crate::exit::ExitClearanceTerms;
use crate::rpc::{ChainClient, Mined, RpcError};

/// The node's route that collects an exit clearance.
pub const EXIT_CLEARANCE_PATH: &str = "/v1/ledger/exit-clearance";

/// How long the clearance asked for stays valid: long enough to send the transaction,
/// well within the day a member accepts.
pub const CLEARANCE_LIFETIME: Duration = Duration::from_secs(3600);

/// How long the node may take to collect: it asks every committee member.
const COLLECT_WITHIN: Duration = Duration::from_secs(60);

/// How long to wait for the withdrawal to be mined.
const MINED_WITHIN: Duration = Duration::from_secs(120);

/// The largest answer read from the node (a committee's signatures fit many times over).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A withdrawal paid under the committee's clearance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearedWithdrawal {
    /// The operator paid.
    pub operator: Address,
    /// What was unbonding, and so paid.
    pub amount: U256,
    /// The quiet epoch the clearance names.
    pub quiet_epoch: Epoch,
    /// The `withdrawCleared` transaction.
    pub mined: Mined,
}

/// Why a cleared withdrawal failed.
#[derive(Debug, thiserror::Error)]
pub enum ExitWithdrawError {
    /// Nothing is unbonding for the operator.
    #[error("{0} has nothing unbonding")]
    NothingUnbonding(Address),
    /// A value read from the chain or the clock is out of range.
    #[error("{0}")]
    OutOfRange(&'static str),
    /// The chain request failed.
    #[error("chain request failed")]
    Chain(#[from] RpcError),
    /// The node could not be reached or did not answer in time.
    #[error("cannot reach the node at {api}")]
    Unreachable {
        /// The node's API base URL.
        api: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error status.
    #[error("the node answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The node's error message.
        message: String,
    },
    /// The node's answer is not an exit clearance.
    #[error("the node's answer is not an exit clearance: {0}")]
    Malformed(String),
    /// The committee did not clear the exit.
    #[error(
        "the committee did not clear the exit for epoch {quiet_epoch}: {signatures} of {threshold} signatures{}",
        own_refusal.as_ref().map(|r| format!(" (the node asked refused: {r})")).unwrap_or_default()
    )]
    NotCleared {
        /// The epoch asked about.
        quiet_epoch: u64,
        /// Signatures collected.
        signatures: usize,
        /// Signatures needed.
        threshold: usize,
        /// Why the node asked refused, if it is a member and did.
        own_refusal: Option<String>,
    },
}

/// The part of the node's `ExitClearanceView` this client reads.
#[derive(Deserialize)]
struct ClearanceAnswer {
    signatures: Vec<String>,
    threshold: usize,
    complete: bool,
    own_refusal: Option<String>,
}

/// Collects the committee's clearance of `client`'s exit for `quiet_epoch` through the
/// node at `api` and withdraws the operator's whole unbonding amount with it.
///
/// The deadline is counted from the later of this machine's clock and the chain's latest
/// block: the contract compares it with the block's timestamp, so a chain clock ahead of
/// the local one must not expire the clearance before it is used, and the members accept
/// any deadline up to a day after their own clock.
pub async fn withdraw_cleared(
    client: &ChainClient,
    staking: Address,
    api: &str,
    quiet_epoch: Epoch,
) -> Result<ClearedWithdrawal, ExitWithdrawError> {
    let operator = client.address();
    let pending = read_unbonding(client, staking, operator).await?;
    if pending.amount.is_zero() {
        return Err(ExitWithdrawError::NothingUnbonding(operator));
    }
    let local_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ExitWithdrawError::OutOfRange("the system clock is before 1970"))?
        .as_secs();
    let chain_now = client.block_timestamp(client.block_number().await?).await?;
    let terms = ExitClearanceTerms {
        operator,
        unbond_ready_at: u64::try_from(pending.readyAt)
            .map_err(|_| ExitWithdrawError::OutOfRange("the unbond's readyAt"))?,
        quiet_epoch,
        deadline: local_now
            .max(chain_now)
            .saturating_add(CLEARANCE_LIFETIME.as_secs()),
    };
    let answer = ask_clearance(api, &terms).await?;
    if !answer.complete {
        return Err(ExitWithdrawError::NotCleared {
            quiet_epoch: quiet_epoch.0,
            signatures: answer.signatures.len(),
            threshold: answer.threshold,
            own_refusal: answer.own_refusal,
        });
    }
    let signatures = answer
        .signatures
        .iter()
        .map(|s| {
            s.parse::<Bytes>()
                .map_err(|_| ExitWithdrawError::Malformed(format!("{s:?} is not hex")))
        })
        .collect::<Result<Vec<Bytes>, _>>()?;
    let mined = client
        .send(Some(staking), terms.calldata(signatures), MINED_WITHIN)
        .await?;
    Ok(ClearedWithdrawal {
        operator,
        amount: pending.amount,
        quiet_epoch,
        mined,
    })
}

/// `Staking.unbonding(operator)`.
pub async fn read_unbonding(
    client: &ChainClient,
    staking: Address,
    operator: Address,
) -> Result<Staking::unbondingReturn, ExitWithdrawError> {
    let bytes = client
        .call(staking, &Staking::unbondingCall(operator).abi_encode())
        .await?;
    Staking::unbondingCall::abi_decode_returns(&bytes).map_err(|e| {
        ExitWithdrawError::Malformed(format!("the staking contract's unbonding answer: {e}"))
    })
}

/// Asks the node at `api` to collect the committee's signatures over `terms`.
async fn ask_clearance(
    api: &str,
    terms: &ExitClearanceTerms,
) -> Result<ClearanceAnswer, ExitWithdrawError> {
    let unreachable = |source| ExitWithdrawError::Unreachable {
        api: api.to_owned(),
        source,
    };
    let http = reqwest::Client::builder()
        .timeout(COLLECT_WITHIN)
        .build()
        .map_err(unreachable)?;
    let url = format!("{}{EXIT_CLEARANCE_PATH}", api.trim_end_matches('/'));
    let response = http
        .post(url)
        .json(&json!({
            "operator": terms.operator.to_string(),
            "unbond_ready_at": terms.unbond_ready_at,
            "quiet_epoch": terms.quiet_epoch.0,
            "deadline": terms.deadline,
        }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(ExitWithdrawError::Malformed(format!(
            "{} bytes, more than {MAX_ANSWER_BYTES}",
            body.len()
        )));
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "request failed".to_owned());
        return Err(ExitWithdrawError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ExitWithdrawError::Malformed(e.to_string()))
}
