//! Bonds on an in-process EVM: bond, unbond after the delay, slash only by committee quorum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::evm::{Deployment, REPAIR_POT, TOKEN, UNBOND_DELAY, committee_of};
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
    deployment.chain.advance(UNBOND_DELAY);
    deployment
        .chain
        .try_call(OPERATOR, staking, &Staking::withdrawCall {})
        .reverted_with::<Staking::NothingToWithdraw>();
    assert_eq!(deployment.balance(staking), U256::ZERO);
}
