//! Issue 14, second acceptance bullet, through settlement: a node that silently lost
//! chunks is penalised in the settled epoch table (slash sized to the repair of its failed
//! chunks, visible over `GET /v1/ledger/epoch/{n}`), honest nodes are not, and the
//! reputation each posted epoch outputs is the one the next epoch starts from, on every
//! member alike; the committee takes each posted slash on chain, so the node's bond drops
//! by exactly the tables' slashes, honest bonds do not move, and the repair pot receives
//! the tokens. Five nodes on anvil with bonded operators, 3 s epochs and the shortened
//! audit period of `hostile_storage`'s deletion test. Then graceful exit (issue 14, item
//! 4): an honest node drains and leaves, its operator unbonds and, once a settled epoch
//! shows the node held nothing, gets the committee's exit clearance and withdraws after
//! the unbond delay; the cheating node's operator, whose node still holds data, is refused
//! a clearance, and withdrawing without one reverts before the fallback delay.
//!
//! Skipped with a message where anvil is not installed (see `xnode_chain::anvil`).

use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use xnode_chain::anvil::{Anvil, SKIP_MESSAGE, TOKEN, anvil_binary};
use xnode_chain::{Address, Staking};
use xnode_settle::{EpochRecord, EpochStatus, OperatorPayout, SlashStatus};
use xnode_storage::proto::{StoreRequest, StoreResponse};
use xnode_test_cluster::{Cluster, Tenant};

const NODES: usize = 5;
const THRESHOLD: usize = 2;
const EPOCH: Duration = Duration::from_secs(3);
const BOND: u128 = 10 * TOKEN;
const CHUNK: u32 = 64 * 1024;
const HOSTILE: usize = 4;
/// The honest node that drains and leaves at the end.
const DRAINED: usize = 3;

fn node_index(data_dir: &std::path::Path) -> usize {
    data_dir
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("node-"))
        .and_then(|i| i.parse().ok())
        .expect("a test-cluster data dir is node-<i>")
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_silently_lost_chunks_is_penalised_in_the_settled_table() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();
    let (keys, members, contracts) =
        crate::settlement::committee_on_anvil(&anvil, NODES, THRESHOLD);
    // Bonded operators: a slash is taken from the bond, so an unbonded node has none.
    let mut payouts = anvil.accounts().unwrap()[1..=NODES].to_vec();
    // The drained node's operator withdraws at the end with `xnode stake withdraw`'s own
    // code, which signs locally: it has a key of its own, with ether for gas, impersonated
    // on anvil for the bond and unbond the test sends for it.
    let drained_key = PrivateKeySigner::from_bytes(&xnode_chain::B256::repeat_byte(0x5e)).unwrap();
    payouts[DRAINED] = drained_key.address();
    anvil
        .set_balance(payouts[DRAINED], xnode_chain::U256::from(TOKEN))
        .unwrap();
    anvil
        .rpc(
            "anvil_impersonateAccount",
            serde_json::json!([payouts[DRAINED]]),
        )
        .unwrap();
    for payout in &payouts {
        contracts.bond(&anvil, *payout, BOND).unwrap();
    }
    let repair_pot: Address = anvil
        .call(contracts.staking, &Staking::repairPotCall {})
        .unwrap();
    let pot_before = contracts.balance_of(&anvil, repair_pot).unwrap();
    let operators: Vec<OperatorPayout> = keys
        .iter()
        .zip(&payouts)
        .map(|(key, payout)| OperatorPayout {
            node: key.node_id(),
            payout: *payout,
        })
        .collect();
    let rpc_url = anvil.url();
    let node_keys = keys.clone();
    let mut c = Cluster::start_with(NODES, move |config| {
        let i = node_index(&config.data_dir);
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let key_file = config.data_dir.join(xnode_node::identity::KEY_FILE);
        if !key_file.exists() {
            xnode_node::identity::write_key_file(&key_file, &node_keys[i]).unwrap();
        }
        // The deletion test's audit settings, with the settlement epoch as audit epoch.
        config.storage.chunk_size = CHUNK;
        config.storage.repair_grace = Duration::from_secs(2);
        config.storage.repair_interval = Duration::from_millis(500);
        config.storage.audit_window = Duration::from_secs(2);
        config.storage.audit_detect_loss_ppm = 100_000;
        config.storage.audit_reputation_epochs = 60;
        // Placement keeps the failing node, so it stays a replica, and audited, epoch
        // after epoch (an excluded node holds no placed chunks and is not challenged).
        // Exclusion is the deletion test's subject; this one is the settled table's.
        config.storage.audit_min_score_ppm = 0;
        config.storage.audit_timeout = Duration::from_secs(5);
        config.storage.audit_settle = Duration::from_secs(1);
        config.storage.audit_collect_interval = Duration::from_millis(300);
        config.metering.epoch = EPOCH;
        config.storage.audit_epoch = EPOCH;
        config.chain.rpc_url = Some(rpc_url.clone());
        config.chain.settlement_contract = Some(contracts.settlement);
        config.chain.staking_contract = Some(contracts.staking);
        let settlement = &mut config.settlement;
        settlement.enabled = true;
        settlement.committee = members.clone();
        settlement.threshold = THRESHOLD;
        settlement.operators = operators.clone();
        settlement.grace = Duration::from_secs(1);
        settlement.gather = Duration::from_secs(1);
        settlement.round_interval = Duration::from_millis(300);
        settlement.backup_post_after = Duration::from_secs(2);
        settlement.post_deadline = Duration::from_secs(3600);
    })
    .await;
    let hostile_id = c.id(HOSTILE);
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "audited").await;
    let puts = (0..8u8).map(|k| {
        let (c, tenant) = (&c, &tenant);
        async move {
            let body = data(8 * CHUNK as usize, k);
            c.put(
                usize::from(k % 4),
                tenant,
                "audited",
                &format!("k{k}"),
                &body,
            )
            .await
            .unwrap();
        }
    });
    futures::future::join_all(puts).await;
    // The hostile node keeps claiming every chunk but answers the lower half as not held.
    let lost = |id: &xnode_store::ChunkId| id.0[0] < 0x80;
    c.node(HOSTILE)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(move |request, answer| {
            use xnode_storage::ServeFault;
            match request {
                StoreRequest::AuditChunk { id, nonce, .. } if lost(id) => {
                    ServeFault::Answer(StoreResponse::AuditNotHeld { nonce: *nonce })
                }
                StoreRequest::GetChunk { id } if lost(id) => {
                    ServeFault::Answer(StoreResponse::Chunk(None))
                }
                _ => ServeFault::Answer(answer),
            }
        })));

    let record = |c: &Cluster, i: usize, epoch: u64| -> Option<EpochRecord> {
        c.node(i).settlement().epoch_record(epoch).unwrap()
    };
    let penalised = |r: &EpochRecord| {
        r.status == EpochStatus::Posted
            && r.penalties
                .iter()
                .any(|p| p.node == hostile_id && p.counted_failures > 0 && p.slashed > 0)
    };
    // Wait for two posted epochs in a row that penalise the hostile node: the second
    // must start from the first's reputation.
    let start = c.node(0).settlement().current_epoch().0;
    let mut found = None;
    c.wait_until(
        "two posted epochs in a row penalising the node",
        Duration::from_secs(45),
        |c| {
            let now = c.node(0).settlement().current_epoch().0;
            found = (start..now).find(|&e| {
                record(c, 0, e).is_some_and(|r| penalised(&r))
                    && record(c, 0, e + 1).is_some_and(|r| penalised(&r))
            });
            found.is_some()
        },
    )
    .await;
    let epoch = found.unwrap();
    let penalised_record = record(&c, 0, epoch).unwrap();
    let next = record(&c, 0, epoch + 1).unwrap();
    let penalty = penalised_record
        .penalties
        .iter()
        .find(|p| p.node == hostile_id)
        .unwrap();
    eprintln!("epoch {epoch}: {penalty:?}");
    // The slash is the repair cost of the failed chunks, capped by the bond.
    let params = xnode_ledger::LedgerParams::with_defaults(&c.node(0).config().network);
    let per_chunk = params
        .penalties
        .repair_price
        .cost(u128::from(params.penalties.chunk_size_bytes));
    assert_eq!(
        penalty.slashed,
        (per_chunk * u128::from(penalty.counted_failures)).min(BOND)
    );
    assert!(penalty.score_ppm < 1_000_000);

    // The next epoch started from this one's output reputation, and every member that
    // posted either epoch holds the same root and context.
    let context = penalised_record.context.unwrap();
    let next_context = next.context.unwrap();
    assert_eq!(next_context.previous_epoch, Some(epoch));
    assert_eq!(next_context.previous_reputation, context.reputation);
    assert_eq!(context.params_digest, params.digest());
    // Carried, the failures accumulate: the score after the second epoch is below the
    // first's (from a fresh state it would be about the same again).
    let later = next
        .penalties
        .iter()
        .find(|p| p.node == hostile_id)
        .unwrap();
    eprintln!("epoch {}: {later:?}", epoch + 1);
    assert!(
        later.score_ppm < penalty.score_ppm,
        "{later:?} after {penalty:?}"
    );
    assert!(later.level >= penalty.level);
    for e in [epoch, epoch + 1] {
        let mine = record(&c, 0, e).unwrap();
        for i in 1..NODES {
            if let Some(theirs) = record(&c, i, e).filter(|r| r.status == EpochStatus::Posted) {
                assert_eq!(
                    (theirs.root, theirs.context),
                    (mine.root, mine.context),
                    "node {i}, epoch {e}"
                );
            }
        }
    }
    // No posted epoch penalises an honest node.
    let now = c.node(0).settlement().current_epoch().0;
    for e in start..now {
        let Some(r) = record(&c, 0, e).filter(|r| r.status == EpochStatus::Posted) else {
            continue;
        };
        for p in &r.penalties {
            if p.node != hostile_id {
                let honest = (0..NODES).find(|&i| c.id(i) == p.node);
                eprintln!("epoch {e} (start {start}, penalised {epoch}): node {honest:?}: {p:?}");
            }
            assert_eq!(
                p.node, hostile_id,
                "epoch {e} penalised an honest node: {p:?}"
            );
        }
    }

    // The table is visible over HTTP with the node's level and slash.
    let view: serde_json::Value = reqwest::get(format!("{}/v1/ledger/epoch/{epoch}", c.api_url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "posted");
    let shown = view["penalties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == hostile_id.to_string())
        .unwrap();
    assert_eq!(shown["slashed"], penalty.slashed.to_string());
    assert_eq!(
        view["context"]["previous_epoch"],
        serde_json::json!(context.previous_epoch)
    );

    // A member that lacks the newest settled reputation (here: deleted from its
    // database, as for a member that dissented on that epoch) fetches it from the others
    // and accepts it only with the threshold's signatures: the entry comes back,
    // although that epoch is final on the member and never stored by it again.
    let carried_on = |c: &Cluster, e: u64| {
        c.node(1)
            .db()
            .get(xnode_settle::SETTLE_REPUTATION, &e.to_be_bytes())
            .unwrap()
    };
    let mut refetched = false;
    for _ in 0..3 {
        let now = c.node(1).settlement().current_epoch().0;
        let Some(newest) = (start..now).rev().find(|&e| carried_on(&c, e).is_some()) else {
            break;
        };
        let next_final = record(&c, 1, newest + 1).is_some_and(|r| r.status == EpochStatus::Posted);
        if next_final {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let original = carried_on(&c, newest).unwrap();
        c.node(1)
            .db()
            .delete(xnode_settle::SETTLE_REPUTATION, &newest.to_be_bytes())
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < deadline {
            if let Some(back) = carried_on(&c, newest) {
                let back: xnode_settle::CarriedReputation =
                    xnode_wire::decode(&back, 16 << 20).unwrap();
                let original: xnode_settle::CarriedReputation =
                    xnode_wire::decode(&original, 16 << 20).unwrap();
                assert_eq!(back.state, original.state);
                assert_eq!(back.context, original.context);
                refetched = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if refetched {
            eprintln!("node 1 fetched epoch {newest}'s reputation back from the members");
            break;
        }
    }
    assert!(
        refetched,
        "node 1 never fetched the deleted reputation back"
    );
    check_slashes_on_chain(
        &c, &anvil, &contracts, &payouts, repair_pot, pot_before, start, epoch,
    )
    .await;
    check_exit_clearance(&mut c, &anvil, &contracts, &payouts, drained_key).await;
    c.shutdown().await;
}

/// Asks node 0 to collect the committee's clearance of `operator`'s exit.
async fn ask_clearance(
    c: &Cluster,
    operator: Address,
    unbond_ready_at: u64,
    quiet_epoch: u64,
    deadline: u64,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{}/v1/ledger/exit-clearance", c.api_url(0)))
        .json(&serde_json::json!({
            "operator": operator.to_string(),
            "unbond_ready_at": unbond_ready_at,
            "quiet_epoch": quiet_epoch,
            "deadline": deadline,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Graceful exit on chain: the drained operator is cleared and withdraws after the unbond
/// delay, through `xnode stake withdraw --quiet-epoch`'s code
/// (`xnode_settle::exit_client`); the cheating operator, whose node still holds data, is
/// refused, and neither withdraws without a clearance before the fallback delay.
async fn check_exit_clearance(
    c: &mut Cluster,
    anvil: &Anvil,
    contracts: &xnode_chain::anvil::Contracts,
    payouts: &[Address],
    drained_key: PrivateKeySigner,
) {
    use alloy::sol_types::SolCall;
    let staking = contracts.staking;
    let (drained, hostile) = (payouts[DRAINED], payouts[HOSTILE]);
    c.node(DRAINED).drain(true).await.unwrap();
    c.wait_until("the drain to finish", Duration::from_secs(30), |c| {
        c.node(DRAINED).drain_status().state == xnode_node::drain::DrainState::Drained
    })
    .await;
    c.stop(DRAINED).await;
    // The node's `left` record was signed by now, so it left in this epoch or before.
    let left_in = c.node(0).settlement().current_epoch().0;
    // Each unbonds all it has bonded (the cheating operator's bond was slashed).
    let mut unbonded = Vec::new();
    for operator in [drained, hostile] {
        let amount = anvil.call(staking, &Staking::bondedCall(operator)).unwrap();
        let unbond = Staking::requestUnbondCall { amount };
        anvil
            .execute(
                "requestUnbond",
                operator,
                Some(staking),
                &unbond.abi_encode(),
            )
            .unwrap();
        unbonded.push(amount);
    }
    assert_eq!(unbonded[0], xnode_chain::U256::from(BOND));
    let ready_at = |operator: Address| -> u64 {
        let pending = anvil
            .call(staking, &Staking::unbondingCall(operator))
            .unwrap();
        u64::try_from(pending.readyAt).unwrap()
    };
    let now_s = anvil.latest_timestamp().unwrap();
    let deadline = now_s + 2 * 3600;

    // The first settled epoch after the departure in which the node held nothing clears
    // the drained operator.
    let mut cleared = None;
    let give_up = std::time::Instant::now() + Duration::from_secs(25);
    while cleared.is_none() && std::time::Instant::now() < give_up {
        let now = c.node(0).settlement().current_epoch().0;
        for quiet in (left_in + 1)..now {
            let posted = c
                .node(0)
                .settlement()
                .epoch_record(quiet)
                .unwrap()
                .is_some_and(|r| r.status == EpochStatus::Posted);
            if !posted {
                continue;
            }
            let answer = ask_clearance(c, drained, ready_at(drained), quiet, deadline).await;
            eprintln!("clearance of epoch {quiet}: {answer}");
            if answer["complete"] == true {
                cleared = Some((quiet, answer));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (quiet, answer) = cleared.expect("the drained operator was never cleared");
    // The cheating node never left and still holds data: every member refuses it.
    let refused = ask_clearance(c, hostile, ready_at(hostile), quiet, deadline).await;
    assert_eq!(refused["complete"], false, "{refused}");
    assert_eq!(
        refused["signatures"].as_array().unwrap().len(),
        0,
        "{refused}"
    );
    assert!(
        refused["own_refusal"]
            .as_str()
            .is_some_and(|r| r.contains("has not drained or left")),
        "{refused}"
    );

    let signatures = |answer: &serde_json::Value| -> Vec<xnode_chain::Bytes> {
        answer["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect()
    };
    let cleared_call = Staking::withdrawClearedCall {
        quietEpoch: quiet,
        deadline: xnode_chain::U256::from(deadline),
        signatures: signatures(&answer),
    };
    // Not before the unbond delay, even cleared.
    let early = anvil
        .send(drained, Some(staking), &cleared_call.abi_encode())
        .unwrap();
    assert!(!xnode_chain::anvil::succeeded(&early));
    // After the unbond delay (one hour on this deployment; the chain's clock is moved
    // on), a withdrawal without a clearance still reverts: the fallback is two hours.
    anvil
        .rpc("evm_increaseTime", serde_json::json!([3601]))
        .unwrap();
    anvil.rpc("evm_mine", serde_json::json!([])).unwrap();
    for operator in [drained, hostile] {
        let uncleared = anvil
            .send(
                operator,
                Some(staking),
                &Staking::withdrawCall {}.abi_encode(),
            )
            .unwrap();
        assert!(!xnode_chain::anvil::succeeded(&uncleared), "{operator}");
    }
    // The cheating operator cannot use what it collected (nothing), nor the drained
    // operator's clearance.
    let hostile_call = Staking::withdrawClearedCall {
        quietEpoch: quiet,
        deadline: xnode_chain::U256::from(deadline),
        signatures: signatures(&refused),
    };
    for call in [&hostile_call, &cleared_call] {
        let receipt = anvil
            .send(hostile, Some(staking), &call.abi_encode())
            .unwrap();
        assert!(!xnode_chain::anvil::succeeded(&receipt));
    }
    // The operator withdraws as `xnode stake withdraw --quiet-epoch` does: the same
    // function collects a fresh clearance through node 0 and sends `withdrawCleared`,
    // with a deadline counted from the chain's clock (an hour ahead of this machine's
    // now), and the operator receives exactly its bond.
    let before = contracts.balance_of(anvil, drained).unwrap();
    let operator = xnode_settle::ChainClient::new(anvil.url(), drained_key).unwrap();
    assert_eq!(operator.address(), drained);
    let withdrawn = xnode_settle::exit_client::withdraw_cleared(
        &operator,
        staking,
        c.api_url(0),
        xnode_ledger::Epoch(quiet),
    )
    .await
    .unwrap();
    eprintln!(
        "withdrawCleared by the CLI's code on anvil: {} gas",
        withdrawn.mined.gas_used
    );
    assert_eq!(withdrawn.amount, xnode_chain::U256::from(BOND));
    let after = contracts.balance_of(anvil, drained).unwrap();
    assert_eq!(after - before, xnode_chain::U256::from(BOND));
    let pending = anvil
        .call(staking, &Staking::unbondingCall(drained))
        .unwrap();
    assert!(pending.amount.is_zero());
    // Nothing is left to withdraw: a second run is refused before any transaction.
    let again = xnode_settle::exit_client::withdraw_cleared(
        &operator,
        staking,
        c.api_url(0),
        xnode_ledger::Epoch(quiet),
    )
    .await;
    assert!(
        matches!(
            again,
            Err(xnode_settle::exit_client::ExitWithdrawError::NothingUnbonding(a)) if a == drained
        ),
        "{again:?}"
    );
}

/// The slashes of the penalised epochs are taken on chain by one member, recorded with
/// their transaction and amount, and add up exactly: the cheating operator's bond dropped
/// by the sum of the posted tables' slashes of the epochs slashed on chain (each capped by
/// what was left), the repair pot received that much, and honest bonds did not move.
#[allow(clippy::too_many_arguments)]
async fn check_slashes_on_chain(
    c: &Cluster,
    anvil: &Anvil,
    contracts: &xnode_chain::anvil::Contracts,
    payouts: &[Address],
    repair_pot: Address,
    pot_before: xnode_chain::U256,
    start: u64,
    epoch: u64,
) {
    let hostile_id = c.id(HOSTILE);
    let hostile = payouts[HOSTILE];
    let taken_by = |c: &Cluster, e: u64| {
        (0..NODES).find_map(|i| {
            let slashes = c.node(i).settlement().slashes(e).unwrap()?;
            let outcome = slashes.slashes.into_iter().find(|s| s.node == hostile_id)?;
            (outcome.status == SlashStatus::Taken).then_some((i, outcome))
        })
    };
    c.wait_until(
        "both penalised epochs' slashes taken on chain",
        Duration::from_secs(20),
        |c| taken_by(c, epoch).is_some() && taken_by(c, epoch + 1).is_some(),
    )
    .await;
    let slashed_in = |e: u64| {
        anvil
            .call(
                contracts.staking,
                &Staking::slashedInCall { _0: hostile, _1: e },
            )
            .unwrap()
    };
    // The slash of one epoch as every member that posted it computed it.
    let table_slash = |e: u64| -> u128 {
        let slashes: Vec<u128> = (0..NODES)
            .filter_map(|i| c.node(i).settlement().epoch_record(e).unwrap())
            .filter(|r| r.status == EpochStatus::Posted)
            .map(|r| {
                r.penalties
                    .iter()
                    .find(|p| p.node == hostile_id)
                    .map_or(0, |p| p.slashed)
            })
            .collect();
        assert!(
            slashes.windows(2).all(|w| w[0] == w[1]),
            "epoch {e}: {slashes:?}"
        );
        slashes.first().copied().unwrap_or(0)
    };
    let (poster, outcome) = taken_by(c, epoch).unwrap();
    assert_eq!(outcome.terms.amount, table_slash(epoch));
    assert_eq!(outcome.taken, Some(outcome.terms.amount));
    assert!(outcome.tx_hash.is_some());
    eprintln!(
        "epoch {epoch}: node {poster} took {} on chain, gas {:?}",
        outcome.terms.amount, outcome.gas_used
    );
    let metrics = c.node(poster).metrics_text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("settle_slashes_submitted_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Shown over HTTP on the node that took it.
    let view: serde_json::Value =
        reqwest::get(format!("{}/v1/ledger/epoch/{epoch}", c.api_url(poster)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let shown = view["slashes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == hostile_id.to_string())
        .unwrap();
    assert_eq!(shown["status"], "taken");
    assert_eq!(shown["taken"], outcome.terms.amount.to_string());

    // The bond and the pot add up with the epochs slashed on chain. Later epochs keep
    // being slashed meanwhile, so the reading counts only when nothing moved during it.
    let bonded = |a: Address| -> u128 {
        u128::try_from(
            anvil
                .call(contracts.staking, &Staking::bondedCall(a))
                .unwrap(),
        )
        .unwrap()
    };
    let mut checked = false;
    for _ in 0..20 {
        let bond_before = bonded(hostile);
        let now = c.node(0).settlement().current_epoch().0;
        let slashed: Vec<u64> = (start.saturating_sub(2)..=now)
            .filter(|&e| slashed_in(e))
            .collect();
        let mut left = BOND;
        for e in &slashed {
            left -= table_slash(*e).min(left);
        }
        let pot = contracts.balance_of(anvil, repair_pot).unwrap() - pot_before;
        let still: Vec<u64> = (start.saturating_sub(2)..=now)
            .filter(|&e| slashed_in(e))
            .collect();
        if bonded(hostile) != bond_before || still != slashed {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        assert!(slashed.contains(&epoch) && slashed.contains(&(epoch + 1)));
        assert_eq!(bond_before, left, "slashed in epochs {slashed:?}");
        assert_eq!(pot, xnode_chain::U256::from(BOND - left));
        eprintln!(
            "slashed on chain in epochs {slashed:?}: {} taken in all",
            BOND - left
        );
        checked = true;
        break;
    }
    assert!(checked, "the chain never held still long enough to compare");
    for (i, payout) in payouts.iter().enumerate() {
        if i != HOSTILE {
            assert_eq!(bonded(*payout), BOND, "honest operator {i}");
        }
    }
}
