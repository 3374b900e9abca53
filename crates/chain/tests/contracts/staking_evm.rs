//! Bonds on an in-process EVM: bond, unbond after the delay with the committee's exit
//! clearance (or after the fallback delay without one), slash only by committee quorum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::evm::{Deployment, EXIT_FALLBACK_DELAY, REPAIR_POT, TOKEN, UNBOND_DELAY, committee_of};
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolStruct;
use xnode_chain::{DomainName, Staking, domain, typed};

const OPERATOR: Address = Address::repeat_byte(0x0a);
const POSTER: Address = Address::repeat_byte(0x90);

fn staked() -> Deployment {
    let mut deployment = Deployment::new(committee_of(4, 0x40), 2);
    let staking = deployment.staking;
    deployment.fund(OPERATOR, 1_000 * TOKEN, staking);
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::bondCall {
            amount: U256::from(1_000 * TOKEN),
        },
    );
    deployment
}

fn bonded(deployment: &mut Deployment) -> U256 {
    let staking = deployment.staking;
    deployment
        .chain
        .call(Address::ZERO, staking, &Staking::bondedCall(OPERATOR))
}

fn slash_call(
    deployment: &Deployment,
    amount: u128,
    epoch: u64,
    signers: usize,
) -> Staking::slashCall {
    let deadline = U256::from(deployment.chain.now + 600);
    let slash = typed::Slash {
        operator: OPERATOR,
        amount: U256::from(amount),
        epoch,
        deadline,
    };
    let digest = slash.eip712_signing_hash(&domain(
        DomainName::Staking,
        crate::evm::CHAIN_ID,
        deployment.staking,
    ));
    Staking::slashCall {
        operator: OPERATOR,
        amount: U256::from(amount),
        epoch,
        deadline,
        signatures: deployment.committee_keys.sign(digest, signers).unwrap(),
    }
}

#[test]
fn unbonding_waits_for_the_delay() {
    let mut deployment = staked();
    let staking = deployment.staking;
    deployment
        .chain
        .try_call(
            OPERATOR,
            staking,
            &Staking::requestUnbondCall {
                amount: U256::from(1_001 * TOKEN),
            },
        )
        .reverted_with::<Staking::NotEnoughBonded>();
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::requestUnbondCall {
            amount: U256::from(400 * TOKEN),
        },
    );
    assert_eq!(bonded(&mut deployment), U256::from(600 * TOKEN));
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::TooEarly>();
    deployment.chain.advance(UNBOND_DELAY - 1);
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::TooEarly>();
    deployment.chain.advance(1);
    // Without a clearance the tokens wait for the fallback delay.
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::TooEarly>();
    deployment
        .chain
        .advance(EXIT_FALLBACK_DELAY - UNBOND_DELAY - 1);
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::TooEarly>();
    deployment.chain.advance(1);
    deployment
        .chain
        .call(OPERATOR, staking, &Staking::withdrawCall {});
    assert_eq!(deployment.balance(OPERATOR), U256::from(400 * TOKEN));
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::NothingToWithdraw>();
}

#[test]
fn slashing_needs_a_quorum_reaches_unbonding_tokens_and_happens_once_per_epoch() {
    let mut deployment = staked();
    let staking = deployment.staking;
    // The digest the contract computes is the one the committee signs.
    let deadline = U256::from(deployment.chain.now + 600);
    let on_chain = deployment.chain.call(
        Address::ZERO,
        staking,
        &Staking::slashDigestCall {
            operator: OPERATOR,
            amount: U256::from(5),
            epoch: 3,
            deadline,
        },
    );
    let slash = typed::Slash {
        operator: OPERATOR,
        amount: U256::from(5),
        epoch: 3,
        deadline,
    };
    assert_eq!(
        on_chain,
        slash.eip712_signing_hash(&domain(DomainName::Staking, crate::evm::CHAIN_ID, staking))
    );

    // The operator tries to run with most of its bond.
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::requestUnbondCall {
            amount: U256::from(900 * TOKEN),
        },
    );

    // f signatures are not enough.
    let call = slash_call(&deployment, 250 * TOKEN, 3, 1);
    deployment
        .chain
        .try_call(POSTER, staking, &call)
        .reverted_with::<xnode_chain::Committee::NotEnoughSignatures>();
    // f+1 take 100 from the bond and 150 from the unbonding tokens.
    let call = slash_call(&deployment, 250 * TOKEN, 3, 2);
    deployment.chain.call(POSTER, staking, &call);
    assert_eq!(bonded(&mut deployment), U256::ZERO);
    assert_eq!(deployment.balance(REPAIR_POT), U256::from(250 * TOKEN));
    // The same slash, or another one for the same epoch, is refused.
    deployment
        .chain
        .try_call(POSTER, staking, &call)
        .reverted_with::<Staking::AlreadySlashed>();
    let again = slash_call(&deployment, TOKEN, 3, 2);
    deployment
        .chain
        .try_call(POSTER, staking, &again)
        .reverted_with::<Staking::AlreadySlashed>();
    // A slash larger than what is left takes what is left.
    let rest = slash_call(&deployment, 10_000 * TOKEN, 4, 2);
    deployment.chain.call(POSTER, staking, &rest);
    assert_eq!(deployment.balance(REPAIR_POT), U256::from(1_000 * TOKEN));
    deployment.chain.advance(EXIT_FALLBACK_DELAY);
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::NothingToWithdraw>();
    assert_eq!(deployment.balance(staking), U256::ZERO);
}

fn unbonding_ready_at(deployment: &mut Deployment) -> U256 {
    let staking = deployment.staking;
    deployment
        .chain
        .call(Address::ZERO, staking, &Staking::unbondingCall(OPERATOR))
        .readyAt
}

fn clearance_call(
    deployment: &Deployment,
    unbond_ready_at: U256,
    quiet_epoch: u64,
    deadline: U256,
    signers: usize,
) -> Staking::withdrawClearedCall {
    let clearance = typed::ExitClearance {
        operator: OPERATOR,
        unbondReadyAt: unbond_ready_at,
        quietEpoch: quiet_epoch,
        deadline,
    };
    let digest = clearance.eip712_signing_hash(&domain(
        DomainName::Staking,
        crate::evm::CHAIN_ID,
        deployment.staking,
    ));
    Staking::withdrawClearedCall {
        quietEpoch: quiet_epoch,
        deadline,
        signatures: deployment.committee_keys.sign(digest, signers).unwrap(),
    }
}

#[test]
fn a_clearance_releases_an_unbond_after_the_delay_and_only_that_unbond() {
    let mut deployment = staked();
    let staking = deployment.staking;
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::requestUnbondCall {
            amount: U256::from(1_000 * TOKEN),
        },
    );
    let ready_at = unbonding_ready_at(&mut deployment);
    let deadline = U256::from(deployment.chain.now + UNBOND_DELAY + 3600);

    // The digest the contract computes is the one the committee signs.
    let on_chain = deployment.chain.call(
        Address::ZERO,
        staking,
        &Staking::exitClearanceDigestCall {
            operator: OPERATOR,
            unbondReadyAt: ready_at,
            quietEpoch: 9,
            deadline,
        },
    );
    let typed_clearance = typed::ExitClearance {
        operator: OPERATOR,
        unbondReadyAt: ready_at,
        quietEpoch: 9,
        deadline,
    };
    assert_eq!(
        on_chain,
        typed_clearance.eip712_signing_hash(&domain(
            DomainName::Staking,
            crate::evm::CHAIN_ID,
            staking
        ))
    );

    // Even a clearance waits for the unbond delay, during which the bond stays slashable.
    let cleared = clearance_call(&deployment, ready_at, 9, deadline, 2);
    deployment
        .chain
        .try_call(OPERATOR, staking, &cleared)
        .reverted_with::<Staking::TooEarly>();
    deployment.chain.advance(UNBOND_DELAY);
    // Without a clearance, the delay alone is no longer enough.
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::TooEarly>();
    // f signatures are not a clearance.
    let short = clearance_call(&deployment, ready_at, 9, deadline, 1);
    deployment
        .chain
        .try_call(OPERATOR, staking, &short)
        .reverted_with::<xnode_chain::Committee::NotEnoughSignatures>();
    // A clearance of another unbond (another `readyAt`) or another epoch does not recover
    // to the committee over this one's digest.
    let other_unbond = clearance_call(&deployment, ready_at - U256::from(1), 9, deadline, 2);
    let outcome = deployment.chain.try_call(OPERATOR, staking, &other_unbond);
    assert!(
        !outcome.success,
        "a clearance of another unbond was accepted"
    );
    // Another account cannot use the operator's clearance: it names the operator, and the
    // contract takes the operator from the caller.
    let outcome = deployment.chain.try_call(POSTER, staking, &cleared);
    assert!(!outcome.success, "another account used the clearance");

    let outcome = deployment.chain.try_call(OPERATOR, staking, &cleared);
    assert!(
        outcome.success,
        "withdrawCleared reverted: {}",
        outcome.output
    );
    println!(
        "withdrawCleared: {} gas (2 signatures of a 4-member committee, 21,000 intrinsic included)",
        outcome.gas
    );
    assert!(
        outcome.gas <= 120_000,
        "withdrawCleared took {} gas",
        outcome.gas
    );
    assert_eq!(deployment.balance(OPERATOR), U256::from(1_000 * TOKEN));
    deployment
        .chain
        .try_call(OPERATOR, staking, &cleared)
        .reverted_with::<Staking::NothingToWithdraw>();
}

#[test]
fn a_clearance_does_not_release_a_later_unbond_and_expires() {
    let mut deployment = staked();
    let staking = deployment.staking;
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::requestUnbondCall {
            amount: U256::from(100 * TOKEN),
        },
    );
    let first_ready_at = unbonding_ready_at(&mut deployment);
    let deadline = U256::from(deployment.chain.now + 2 * UNBOND_DELAY);
    let first = clearance_call(&deployment, first_ready_at, 4, deadline, 2);
    // The operator unbonds more later: the old clearance no longer releases anything.
    deployment.chain.advance(10);
    deployment.chain.call(
        OPERATOR,
        staking,
        &Staking::requestUnbondCall {
            amount: U256::from(900 * TOKEN),
        },
    );
    deployment.chain.advance(UNBOND_DELAY);
    let outcome = deployment.chain.try_call(OPERATOR, staking, &first);
    assert!(!outcome.success, "a clearance released a later unbond");
    // A clearance past its deadline is refused.
    let ready_at = unbonding_ready_at(&mut deployment);
    let expired = clearance_call(
        &deployment,
        ready_at,
        4,
        U256::from(deployment.chain.now - 1),
        2,
    );
    deployment
        .chain
        .try_call(OPERATOR, staking, &expired)
        .reverted_with::<Staking::Expired>();
    // The fallback pays without any clearance, counted from the last request.
    deployment.chain.advance(EXIT_FALLBACK_DELAY - UNBOND_DELAY);
    let outcome = deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {});
    assert!(outcome.success, "withdraw after the fallback reverted");
    println!("withdraw after the fallback delay: {} gas", outcome.gas);
    assert_eq!(deployment.balance(OPERATOR), U256::from(1_000 * TOKEN));
}
