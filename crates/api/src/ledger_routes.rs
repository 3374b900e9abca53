//! Ledger routes: the countersigned usage receipts this node holds
//! (`GET /v1/ledger/receipts`) and a tenant's countersigning grant to this node
//! (`PUT /v1/ledger/grant`), which makes it the tenant's edge for receipts; the state of
//! closing epochs (`GET /v1/ledger/status`) and one epoch's outcome
//! (`GET /v1/ledger/epoch/{n}`), and one account's claim of an epoch with its Merkle proof
//! (`GET /v1/ledger/epoch/{n}/claim/{address}`); and the committee's clearance of an
//! operator's exit (`POST /v1/ledger/exit-clearance`).

use axum::extract::{Path, Query, Request, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use xnode_ledger::{CountersignGrant, Epoch, Receipt};
use xnode_metering::{GrantAcceptError, MeteringError};

use crate::error::ApiError;
use crate::storage_routes::{AppState, json_body, tenant_of};

/// The most receipts one listing returns.
const MAX_RECEIPTS: usize = 10_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/receipts", get(list_receipts))
        .route("/v1/ledger/grant", put(put_grant))
        .route("/v1/ledger/status", get(ledger_status))
        .route("/v1/ledger/epoch/{n}", get(ledger_epoch))
        .route("/v1/ledger/epoch/{n}/claim/{address}", get(ledger_claim))
        .route("/v1/ledger/exit-clearance", post(exit_clearance))
}

/// Epoch records shown by `GET /v1/ledger/status`.
const RECENT_EPOCHS: usize = 8;

impl From<xnode_settle::CloseError> for ApiError {
    fn from(e: xnode_settle::CloseError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// One committee vote on an epoch's root.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct VoteView {
    /// The member's committee address.
    pub signer: String,
    /// The EIP-712 digest it signed.
    pub digest: String,
    /// Whether it is the digest this node computed.
    pub agrees: bool,
}

/// One row of an epoch's payout table.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PayoutView {
    /// The claiming EVM address.
    pub address: String,
    /// The claimable amount in base units (a decimal string: it can exceed 2^53).
    pub amount: String,
}

/// One tenant's charge.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChargeView {
    /// The tenant (hex public key).
    pub tenant: String,
    /// Taken from its escrow, in base units (decimal string).
    pub charged: String,
}

/// One node's penalty in an epoch's table (only nodes with a warning, reduced reward,
/// slash or ejection are listed).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PenaltyView {
    /// The node.
    pub node: String,
    /// `none`, `warning`, `reduced` or `ejected`.
    pub level: String,
    /// Why it was ejected: `low_score` or `bond_exhausted`.
    pub ejection: Option<String>,
    /// Its reputation score after the epoch's audits, in parts per million.
    pub score_ppm: u64,
    /// Failed audits that counted this epoch.
    pub counted_failures: u64,
    /// Taken from its bond: the repair cost of the failed chunks (decimal string).
    pub slashed: String,
    /// Its bond after the slash (decimal string).
    pub bond_after: String,
    /// Tenant payments withheld from it because of its level (decimal string).
    pub reward_withheld: String,
}

/// One slash of an epoch's table and what this node knows of it on chain.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SlashView {
    /// The penalised node.
    pub node: String,
    /// The operator's address whose bond is slashed.
    pub operator: String,
    /// The amount in the table, base units (decimal string).
    pub amount: String,
    /// The signatures' deadline, Unix seconds.
    pub deadline: u64,
    /// `pending`, `taken` (by this node's transaction), `taken_by_another`, `no_bond`
    /// (skipped: nothing left to take), `expired` or `failed` (gave up after 3 attempts).
    pub status: String,
    /// The transaction that took it, if this node sent it.
    pub tx_hash: Option<String>,
    /// What the contract took (its `Slashed` event), base units (decimal string).
    pub taken: Option<String>,
    /// Gas the transaction used.
    pub gas_used: Option<u64>,
    /// Failed transactions this node sent for it.
    pub attempts: u32,
    /// The last failure, or why it waits.
    pub error: Option<String>,
}

fn slash_view(slash: xnode_settle::SlashOutcome) -> SlashView {
    use xnode_settle::SlashStatus;
    SlashView {
        node: slash.node.to_string(),
        operator: slash.terms.operator.to_string(),
        amount: slash.terms.amount.to_string(),
        deadline: slash.terms.deadline,
        status: match slash.status {
            SlashStatus::Pending => "pending",
            SlashStatus::Taken => "taken",
            SlashStatus::TakenByAnother => "taken_by_another",
            SlashStatus::NoBond => "no_bond",
            SlashStatus::Expired => "expired",
            SlashStatus::Failed => "failed",
        }
        .into(),
        tx_hash: slash.tx_hash.map(|t| t.to_string()),
        taken: slash.taken.map(|t| t.to_string()),
        gas_used: slash.gas_used,
        attempts: slash.attempts,
        error: slash.error,
    }
}

/// What a root depends on besides the evidence, as this node computed it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ContextView {
    /// Digest of the ledger parameters (prices, reputation model, penalties, emission).
    pub params_digest: String,
    /// The settled epoch whose reputation this one started from (none: the initial state).
    pub previous_epoch: Option<u64>,
    /// Digest of that starting reputation state.
    pub previous_reputation: String,
    /// Digest of the reputation this epoch outputs (the next one starts from it).
    pub reputation: String,
}

/// One epoch's close as this node knows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EpochView {
    pub epoch: u64,
    /// `gathering`, `voted`, `quorum`, `posted` or `superseded`.
    pub status: String,
    /// Evidence bundles in this node's set.
    pub bundles: u64,
    /// The set's digest (hex), once a root was computed.
    pub set_digest: Option<String>,
    /// The payout table's Merkle root (hex).
    pub root: Option<String>,
    /// The EIP-712 digest this node signed (hex).
    pub digest: Option<String>,
    /// The signatures' deadline, Unix seconds.
    pub deadline: u64,
    /// Claimable in total, base units (decimal string).
    pub total: String,
    pub payouts: Vec<PayoutView>,
    pub charges: Vec<ChargeView>,
    pub votes: Vec<VoteView>,
    /// The member designated to post.
    pub poster: Option<String>,
    /// The transaction that posted the root, if this node sent it.
    pub tx_hash: Option<String>,
    /// Why the last round failed, if it did.
    pub error: Option<String>,
    /// Penalties in the epoch's table, by node.
    #[serde(default)]
    pub penalties: Vec<PenaltyView>,
    /// The parameters and reputations the root was computed with.
    #[serde(default)]
    pub context: Option<ContextView>,
    /// The table's slashes taken (or being taken) on chain, once the epoch is posted.
    #[serde(default)]
    pub slashes: Vec<SlashView>,
}

/// One operator the ledger pays, as this node's `[settlement] operators` lists it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    /// The node.
    pub node: String,
    /// The EVM address that claims its rewards.
    pub payout: String,
}

/// The state of closing epochs on this node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LedgerStatusView {
    /// Whether this node closes epochs (`[settlement] enabled`).
    pub enabled: bool,
    /// Whether it is on the committee.
    pub member: bool,
    /// Its committee address, derived from its node key.
    pub committee_address: String,
    /// The address that sends its transactions.
    pub poster_address: Option<String>,
    pub threshold: usize,
    pub members: usize,
    pub current_epoch: u64,
    /// The epoch length in seconds.
    pub epoch_seconds: u64,
    /// The most recent epochs, newest first.
    pub recent: Vec<EpochView>,
    /// The operators the ledger pays and their payout addresses (so a payout address in
    /// an epoch's table can be named by its node).
    #[serde(default)]
    pub operators: Vec<OperatorView>,
}

fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn status_name(status: xnode_settle::EpochStatus) -> &'static str {
    match status {
        xnode_settle::EpochStatus::Gathering => "gathering",
        xnode_settle::EpochStatus::Voted => "voted",
        xnode_settle::EpochStatus::Quorum => "quorum",
        xnode_settle::EpochStatus::Posted => "posted",
        xnode_settle::EpochStatus::Superseded => "superseded",
    }
}

fn penalty_view(penalty: xnode_ledger::Penalty) -> PenaltyView {
    use xnode_ledger::{EjectionReason, PenaltyLevel};
    PenaltyView {
        node: penalty.node.to_string(),
        level: match penalty.level {
            PenaltyLevel::None => "none",
            PenaltyLevel::Warning => "warning",
            PenaltyLevel::Reduced => "reduced",
            PenaltyLevel::Ejected => "ejected",
        }
        .into(),
        ejection: penalty.ejection.map(|reason| {
            match reason {
                EjectionReason::LowScore => "low_score",
                EjectionReason::BondExhausted => "bond_exhausted",
            }
            .into()
        }),
        score_ppm: penalty.score_ppm,
        counted_failures: penalty.counted_failures,
        slashed: penalty.slashed.to_string(),
        bond_after: penalty.bond_after.to_string(),
        reward_withheld: penalty.reward_withheld.to_string(),
    }
}

/// The view of `record`, with the slashes this node recorded for its epoch.
fn epoch_view_with_slashes(
    settlement: &xnode_settle::Settlement,
    record: xnode_settle::EpochRecord,
) -> Result<EpochView, ApiError> {
    let slashes = settlement
        .slashes(record.epoch)?
        .map(|s| s.slashes)
        .unwrap_or_default();
    let mut view = epoch_view(record);
    view.slashes = slashes.into_iter().map(slash_view).collect();
    Ok(view)
}

fn epoch_view(record: xnode_settle::EpochRecord) -> EpochView {
    EpochView {
        epoch: record.epoch,
        status: status_name(record.status).into(),
        bundles: record.bundles,
        set_digest: record.set_digest.map(|d| hex32(&d)),
        root: record.root.map(|r| r.to_string()),
        digest: record.digest.map(|d| d.to_string()),
        deadline: record.deadline,
        total: record.total.to_string(),
        payouts: record
            .payouts
            .into_iter()
            .map(|p| PayoutView {
                address: p.address.to_string(),
                amount: p.amount.to_string(),
            })
            .collect(),
        charges: record
            .charges
            .into_iter()
            .map(|c| ChargeView {
                tenant: c.tenant.to_hex(),
                charged: c.charged.to_string(),
            })
            .collect(),
        votes: record
            .votes
            .into_iter()
            .map(|v| VoteView {
                signer: v.signer.to_string(),
                digest: v.digest.to_string(),
                agrees: v.agrees,
            })
            .collect(),
        poster: record.poster.map(|p| p.to_string()),
        tx_hash: record.tx_hash.map(|t| t.to_string()),
        error: record.error,
        penalties: record.penalties.into_iter().map(penalty_view).collect(),
        context: record.context.map(|c| ContextView {
            params_digest: hex32(&c.params_digest),
            previous_epoch: c.previous_epoch,
            previous_reputation: hex32(&c.previous_reputation),
            reputation: hex32(&c.reputation),
        }),
        slashes: Vec::new(),
    }
}

#[utoipa::path(get, path = "/v1/ledger/status",
    responses((status = 200, body = LedgerStatusView), (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn ledger_status(
    State(state): State<AppState>,
) -> Result<Json<LedgerStatusView>, ApiError> {
    let status = state.node.settlement().status(RECENT_EPOCHS)?;
    Ok(Json(LedgerStatusView {
        enabled: status.enabled,
        member: status.member,
        committee_address: status.committee_address.to_string(),
        poster_address: status.poster_address.map(|a| a.to_string()),
        threshold: status.threshold,
        members: status.members,
        current_epoch: status.current_epoch,
        epoch_seconds: status.epoch_ms / 1000,
        recent: status
            .recent
            .into_iter()
            .map(|r| epoch_view_with_slashes(state.node.settlement(), r))
            .collect::<Result<_, _>>()?,
        operators: state
            .node
            .config()
            .settlement
            .operators
            .iter()
            .map(|o| OperatorView {
                node: o.node.to_string(),
                payout: o.payout.to_string(),
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/ledger/epoch/{n}", params(("n" = u64, Path, description = "The epoch number")),
    responses((status = 200, body = EpochView), (status = 404, body = crate::error::ErrorBody),
        (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn ledger_epoch(
    State(state): State<AppState>,
    Path(n): Path<u64>,
) -> Result<Json<EpochView>, ApiError> {
    match state.node.settlement().epoch_record(n)? {
        Some(record) => Ok(Json(epoch_view_with_slashes(
            state.node.settlement(),
            record,
        )?)),
        None => Err(ApiError::NotFound(format!(
            "this node has no record of epoch {n} (not closed yet, before its lookback, or settlement is off)"
        ))),
    }
}

/// One account's claim of an epoch: what `Settlement.claim(epoch, account, amount, proof)`
/// takes, rebuilt from this node's record of the epoch's payout table.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClaimView {
    pub epoch: u64,
    /// The claiming address (checksummed).
    pub account: String,
    /// The amount under the root, base units (decimal string).
    pub amount: String,
    /// The payout table's Merkle root the proof leads to (hex).
    pub root: String,
    /// Sibling hashes from the leaf up (hex), as `Settlement.claim` takes them.
    pub proof: Vec<String>,
    /// The epoch's status on this node: a claim only succeeds once the root is `posted`.
    pub status: String,
}

/// The claim of `account` in `record`: the tree is rebuilt from the recorded payout table
/// exactly as the ledger builds it (non-zero rows, ascending by address, leaf
/// `xnode_ledger::leaf_hash`) and its root checked against the recorded root, so a proof
/// this route returns is one the contract accepts for that root.
pub(crate) fn claim_of(
    record: &xnode_settle::EpochRecord,
    account: xnode_settle::config::Address,
) -> Result<ClaimView, ApiError> {
    let Some(root) = record.root else {
        return Err(ApiError::EpochNotComputed(format!(
            "epoch {} has no root on this node yet (status: {})",
            record.epoch,
            status_name(record.status)
        )));
    };
    let epoch = Epoch(record.epoch);
    let mut rows: Vec<_> = record.payouts.iter().filter(|p| p.amount > 0).collect();
    rows.sort_by_key(|p| p.address);
    let leaves: Vec<_> = rows
        .iter()
        .map(|p| xnode_ledger::leaf_hash(epoch, &p.address.0.0, p.amount))
        .collect();
    let tree = xnode_ledger::MerkleTree::new(leaves);
    if tree.root() != root.0 {
        return Err(ApiError::Internal(format!(
            "this node's record of epoch {} is inconsistent: its payout table does not hash to its root",
            record.epoch
        )));
    }
    let no_claim = || {
        ApiError::NoClaim(format!(
            "{account} has nothing to claim in epoch {}",
            record.epoch
        ))
    };
    let row = rows
        .iter()
        .find(|p| p.address == account)
        .ok_or_else(no_claim)?;
    let leaf = xnode_ledger::leaf_hash(epoch, &row.address.0.0, row.amount);
    let proof = tree.proof(&leaf).ok_or_else(no_claim)?;
    Ok(ClaimView {
        epoch: record.epoch,
        account: account.to_string(),
        amount: row.amount.to_string(),
        root: root.to_string(),
        proof: proof.iter().map(|h| hex32(h)).collect(),
        status: status_name(record.status).into(),
    })
}

#[utoipa::path(get, path = "/v1/ledger/epoch/{n}/claim/{address}",
    params(("n" = u64, Path, description = "The epoch number"),
        ("address" = String, Path, description = "The claiming EVM address (0x and 40 hex digits)")),
    responses((status = 200, body = ClaimView),
        (status = 400, description = "`bad_request`: not an EVM address", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no record of the epoch; `no_claim`: nothing for this address in it", body = crate::error::ErrorBody),
        (status = 409, description = "`epoch_not_computed`: the epoch has no root yet", body = crate::error::ErrorBody),
        (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn ledger_claim(
    State(state): State<AppState>,
    Path((n, address)): Path<(u64, String)>,
) -> Result<Json<ClaimView>, ApiError> {
    let account: xnode_settle::config::Address = address
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{address:?} is not an EVM address")))?;
    match state.node.settlement().epoch_record(n)? {
        Some(record) => Ok(Json(claim_of(&record, account)?)),
        None => Err(ApiError::NotFound(format!(
            "this node has no record of epoch {n} (not closed yet, before its lookback, or settlement is off)"
        ))),
    }
}

impl From<MeteringError> for ApiError {
    fn from(e: MeteringError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<GrantAcceptError> for ApiError {
    fn from(e: GrantAcceptError) -> Self {
        match e {
            GrantAcceptError::Grant(e) => ApiError::BadRequest(e.to_string()),
            GrantAcceptError::Metering(e) => e.into(),
        }
    }
}

/// Which epoch to list, and optionally whose receipts.
#[derive(Deserialize, IntoParams)]
pub struct ReceiptsQuery {
    /// The epoch number; the current epoch when absent.
    pub epoch: Option<u64>,
    /// Only this tenant's receipts (hex public key).
    pub tenant: Option<String>,
    /// Only the receipts of this provider (node id).
    pub provider: Option<String>,
}

/// One countersigned receipt.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// The paying tenant (hex public key).
    pub tenant: String,
    /// The node that served.
    pub provider: String,
    /// `StorageByteHours`, `EgressBytes`, `FunctionFuel`, `FunctionRequests`, `JobFuel`
    /// or `WorkerFuel`.
    pub resource: String,
    pub epoch: u64,
    /// Units used in the epoch so far (cumulative).
    pub cumulative: u64,
    pub seq: u64,
    /// The node that countersigned under the tenant's grant, or the tenant's key (hex)
    /// when the tenant countersigned itself.
    pub countersigned_by: String,
    /// The whole signed receipt, as the ledger takes it.
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
}

/// The receipts of one epoch held by this node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReceiptsView {
    pub epoch: u64,
    /// The epoch length in seconds.
    pub epoch_seconds: u64,
    pub receipts: Vec<ReceiptView>,
}

fn view(receipt: Receipt) -> ReceiptView {
    let body = &receipt.body;
    let countersigned_by = match &receipt.grant {
        Some(grant) => grant.body.delegate.to_string(),
        None => body.tenant.to_hex(),
    };
    ReceiptView {
        tenant: body.tenant.to_hex(),
        provider: body.provider.to_string(),
        resource: serde_json::to_value(body.resource)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        epoch: body.epoch.0,
        cumulative: body.cumulative,
        seq: body.seq,
        countersigned_by,
        receipt: serde_json::to_value(&receipt).unwrap_or_default(),
    }
}

#[utoipa::path(get, path = "/v1/ledger/receipts", params(ReceiptsQuery),
    responses((status = 200, body = ReceiptsView), (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn list_receipts(
    State(state): State<AppState>,
    Query(query): Query<ReceiptsQuery>,
) -> Result<Json<ReceiptsView>, ApiError> {
    let metering = state.node.metering();
    let epoch = query.epoch.map_or_else(|| metering.current_epoch(), Epoch);
    let receipts = metering.receipts(epoch, MAX_RECEIPTS)?;
    let wanted = |field: &Option<String>, value: &str| {
        field
            .as_deref()
            .is_none_or(|want| want.eq_ignore_ascii_case(value))
    };
    Ok(Json(ReceiptsView {
        epoch: epoch.0,
        epoch_seconds: metering.config().epoch.as_secs(),
        receipts: receipts
            .into_iter()
            .map(view)
            .filter(|r| wanted(&query.tenant, &r.tenant) && wanted(&query.provider, &r.provider))
            .collect(),
    }))
}

/// A tenant's grant letting this node countersign its receipts (see
/// `xnode_ledger::CountersignGrant`); the request must be signed by the same tenant.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    /// The grant, as the ledger verifies it.
    #[schema(value_type = Object)]
    pub grant: serde_json::Value,
}

#[utoipa::path(put, path = "/v1/ledger/grant", request_body = GrantView,
    responses((status = 200, body = GrantView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn put_grant(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<GrantView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let body: GrantView = json_body(req).await?;
    let grant: CountersignGrant = serde_json::from_value(body.grant.clone())
        .map_err(|e| ApiError::BadRequest(format!("malformed grant: {e}")))?;
    if grant.body.tenant != tenant {
        return Err(ApiError::Forbidden(
            "a grant may only be given by the tenant that signs the request".into(),
        ));
    }
    state.node.metering().accept_grant(&grant)?;
    tracing::info!(tenant = %tenant.to_hex(), from = grant.body.from_epoch.0, until = grant.body.until_epoch.0, "countersigning grant accepted");
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::http::StatusCode;
    use xnode_settle::EpochStatus;
    use xnode_settle::close::RecordedPayout;
    use xnode_settle::config::Address;

    use super::*;

    fn address(byte: u8) -> Address {
        Address::from([byte; 20])
    }

    /// A posted record whose root is computed the way the poster computes it
    /// (`xnode_chain::SettlementPlan`), not by the code under test.
    fn record(payouts: &[(u8, u128)]) -> xnode_settle::EpochRecord {
        let mut record = xnode_settle::EpochRecord::new(Epoch(42));
        record.payouts = payouts
            .iter()
            .map(|&(byte, amount)| RecordedPayout {
                address: address(byte),
                amount,
            })
            .collect();
        let ledger_rows: Vec<xnode_ledger::Payout> = payouts
            .iter()
            .map(|&(byte, amount)| xnode_ledger::Payout {
                address: [byte; 20],
                amount,
            })
            .collect();
        let plan = xnode_chain::SettlementPlan::from_payouts(42, &ledger_rows, &[]).unwrap();
        record.root = Some(plan.rewards_root);
        record.total = payouts.iter().map(|p| p.1).sum();
        record.status = EpochStatus::Posted;
        record
    }

    fn hash(text: &str) -> [u8; 32] {
        hex::decode(text.trim_start_matches("0x"))
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn a_superseded_epoch_is_shown_as_superseded() {
        let mut superseded = record(&[(1, 100)]);
        superseded.status = EpochStatus::Superseded;
        assert_eq!(epoch_view(superseded).status, "superseded");
    }

    #[test]
    fn every_claim_proves_its_amount_under_the_posted_root() {
        // Unsorted, with a zero row that the ledger leaves out of the tree.
        let record = record(&[(9, 300), (1, 100), (5, 0), (3, 200), (7, 50)]);
        let plan_root = record.root.unwrap();
        for (byte, amount) in [(9u8, 300u128), (1, 100), (3, 200), (7, 50)] {
            let claim = claim_of(&record, address(byte)).unwrap();
            assert_eq!(claim.amount, amount.to_string());
            assert_eq!(claim.root, plan_root.to_string());
            assert_eq!(claim.status, "posted");
            let proof: Vec<[u8; 32]> = claim.proof.iter().map(|p| hash(p)).collect();
            let leaf = xnode_ledger::leaf_hash(Epoch(42), &[byte; 20], amount);
            assert!(xnode_ledger::verify_proof(&plan_root.0, &leaf, &proof));
            // The same proof does not carry another amount or another epoch.
            let inflated = xnode_ledger::leaf_hash(Epoch(42), &[byte; 20], amount + 1);
            assert!(!xnode_ledger::verify_proof(&plan_root.0, &inflated, &proof));
            let elsewhere = xnode_ledger::leaf_hash(Epoch(43), &[byte; 20], amount);
            assert!(!xnode_ledger::verify_proof(
                &plan_root.0,
                &elsewhere,
                &proof
            ));
        }
    }

    #[test]
    fn no_row_no_root_and_a_tampered_table_are_refused_with_their_codes() {
        let record = record(&[(1, 100), (3, 200), (5, 0)]);
        let absent = claim_of(&record, address(2)).err().unwrap();
        assert_eq!(
            (absent.status(), absent.code()),
            (StatusCode::NOT_FOUND, "no_claim")
        );
        let zero = claim_of(&record, address(5)).err().unwrap();
        assert_eq!(zero.code(), "no_claim");

        let mut gathering = record.clone();
        gathering.root = None;
        gathering.status = EpochStatus::Gathering;
        let early = claim_of(&gathering, address(1)).err().unwrap();
        assert_eq!(
            (early.status(), early.code()),
            (StatusCode::CONFLICT, "epoch_not_computed")
        );

        // A record whose table was changed after its root was computed yields no proof.
        let mut tampered = record.clone();
        tampered.payouts[0].amount = 1_000_000;
        assert_eq!(
            claim_of(&tampered, address(1)).err().unwrap().code(),
            "internal"
        );
    }
}

/// The exit clearance to collect: the `Staking.ExitClearance` terms.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExitClearanceRequest {
    /// The operator's EVM address (the one that bonded).
    pub operator: String,
    /// The `readyAt` of its unbond on the staking contract (Unix seconds).
    pub unbond_ready_at: u64,
    /// The settled epoch in which its nodes held nothing.
    pub quiet_epoch: u64,
    /// The signatures' deadline (Unix seconds), at most a day ahead.
    pub deadline: u64,
}

/// The committee's signatures over an exit clearance, as this node collected them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExitClearanceView {
    /// The operator's EVM address.
    pub operator: String,
    /// The `readyAt` of the unbond it releases.
    pub unbond_ready_at: u64,
    /// The settled epoch named.
    pub quiet_epoch: u64,
    /// The signatures' deadline.
    pub deadline: u64,
    /// The members that signed, ascending.
    pub signers: Vec<String>,
    /// Their 65-byte signatures (0x hex), in the same order, as `withdrawCleared` takes them.
    pub signatures: Vec<String>,
    /// Signatures the contract needs.
    pub threshold: usize,
    /// Whether there are enough.
    pub complete: bool,
    /// Why this node refused, if it is a member and did.
    pub own_refusal: Option<String>,
}

#[utoipa::path(post, path = "/v1/ledger/exit-clearance", request_body = ExitClearanceRequest,
    responses((status = 200, description = "the signatures collected; `complete` says whether they reach the threshold", body = ExitClearanceView),
        (status = 400, description = "`bad_request`: not an EVM address, or a malformed body", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict`: settlement or the staking contract is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: the node is already collecting as many clearances as it takes at once", body = crate::error::ErrorBody),
        (status = 500, body = crate::error::ErrorBody)))]
pub(crate) async fn exit_clearance(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<ExitClearanceView>, ApiError> {
    // Unsigned: the clearance can only pay the operator's own tokens to the operator, so
    // who asks for it does not matter (and `json_body` would demand a signed body hash).
    let bytes = axum::body::to_bytes(req.into_body(), 4 * 1024)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    let body: ExitClearanceRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let operator: xnode_settle::config::Address = body
        .operator
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{:?} is not an EVM address", body.operator)))?;
    let settlement = state.node.settlement();
    if !settlement.enabled() {
        return Err(ApiError::Conflict(
            "settlement is not enabled on this node".into(),
        ));
    }
    let terms = xnode_settle::ExitClearanceTerms {
        operator,
        unbond_ready_at: body.unbond_ready_at,
        quiet_epoch: Epoch(body.quiet_epoch),
        deadline: body.deadline,
    };
    let collected = settlement
        .collect_exit_clearance(terms)
        .await
        .map_err(|e| match e {
            xnode_settle::CloseError::ChainValue(what) => {
                ApiError::Conflict(format!("cannot collect an exit clearance: {what}"))
            }
            xnode_settle::CloseError::Busy(_) => ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            other => other.into(),
        })?;
    Ok(Json(ExitClearanceView {
        operator: collected.terms.operator.to_string(),
        unbond_ready_at: collected.terms.unbond_ready_at,
        quiet_epoch: collected.terms.quiet_epoch.0,
        deadline: collected.terms.deadline,
        complete: collected.is_complete(),
        signers: collected.signers.iter().map(|a| a.to_string()).collect(),
        signatures: collected.signatures.iter().map(|b| b.to_string()).collect(),
        threshold: collected.threshold,
        own_refusal: collected.own_refusal,
    }))
}
