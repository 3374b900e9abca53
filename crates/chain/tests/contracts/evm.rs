//! An in-process EVM (revm) with the committed contracts deployed, for the settlement tests.
//!
//! Transactions run one by one with real nonces, gas accounting and block timestamps; gas
//! is free (price and base fee zero) so accounts need no ether.

#![allow(dead_code)]

use std::collections::HashMap;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolConstructor, SolError};
use revm::context::TxEnv;
use revm::context::result::ExecutionResult;
use revm::database::{CacheDB, EmptyDB};
use revm::handler::{MainBuilder, MainContext, MainnetContext, MainnetEvm};
use revm::primitives::TxKind;
use revm::primitives::hardfork::SpecId;
use revm::{Context, ExecuteCommitEvm};
use xnode_chain::{Committee, CommitteeSigners, Settlement, Staking, XnodeToken};

pub const CHAIN_ID: u64 = 31337;
pub const START_TIME: u64 = 1_800_000_000;
pub const WITHDRAWAL_DELAY: u64 = 3 * 3600;
pub const UNBOND_DELAY: u64 = 7 * 24 * 3600;
/// Thirty days: how long an unbond waits for its tokens without an exit clearance.
pub const EXIT_FALLBACK_DELAY: u64 = 30 * 24 * 3600;
/// One token in base units (18 decimals).
pub const TOKEN: u128 = 1_000_000_000_000_000_000;

pub struct Chain {
    evm: MainnetEvm<MainnetContext<CacheDB<EmptyDB>>>,
    nonces: HashMap<Address, u64>,
    pub now: u64,
}

/// What a transaction did.
pub struct Outcome {
    pub success: bool,
    /// Return data, or revert data.
    pub output: Bytes,
    /// Gas the transaction used (intrinsic 21,000 and calldata included, refunds deducted),
    /// what the sender pays for.
    pub gas: u64,
}

impl Outcome {
    /// Asserts that the transaction reverted with error `E` (by its selector).
    pub fn reverted_with<E: SolError>(&self) {
        assert!(!self.success, "expected a revert with {}", E::SIGNATURE);
        assert!(
            self.output.len() >= 4 && self.output[..4] == E::SELECTOR,
            "expected {}, got revert data {}",
            E::SIGNATURE,
            self.output
        );
    }
}

impl Chain {
    pub fn new() -> Self {
        let evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = CHAIN_ID;
                cfg.spec = SpecId::PRAGUE;
            })
            .modify_block_chained(|block| {
                block.timestamp = U256::from(START_TIME);
                block.number = U256::from(1);
            })
            .build_mainnet();
        Self {
            evm,
            nonces: HashMap::new(),
            now: START_TIME,
        }
    }

    pub fn advance(&mut self, seconds: u64) {
        self.now += seconds;
        let now = self.now;
        self.evm.ctx.modify_block(|block| {
            block.timestamp = U256::from(now);
            block.number += U256::from(1);
        });
    }

    pub fn send(&mut self, from: Address, kind: TxKind, data: Bytes) -> (Outcome, Option<Address>) {
        let nonce = self.nonces.entry(from).or_insert(0);
        let tx = TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .nonce(*nonce)
            .chain_id(Some(CHAIN_ID))
            .gas_limit(10_000_000)
            .build()
            .expect("a well-formed transaction");
        *nonce += 1;
        let result = self
            .evm
            .transact_commit(tx)
            .expect("the EVM runs the transaction");
        let gas = result.tx_gas_used();
        let created = result.created_address();
        let outcome = match result {
            ExecutionResult::Success { output, .. } => Outcome {
                success: true,
                output: output.into_data(),
                gas,
            },
            ExecutionResult::Revert { output, .. } => Outcome {
                success: false,
                output,
                gas,
            },
            ExecutionResult::Halt { reason, .. } => panic!("transaction halted: {reason:?}"),
        };
        (outcome, created)
    }

    pub fn deploy(
        &mut self,
        from: Address,
        bytecode: &Bytes,
        constructor_args: Vec<u8>,
    ) -> Address {
        let mut code = bytecode.to_vec();
        code.extend(constructor_args);
        let (outcome, created) = self.send(from, TxKind::Create, code.into());
        assert!(outcome.success, "deployment reverted: {}", outcome.output);
        created.expect("a created address")
    }

    /// Sends a call that may revert.
    pub fn try_call<C: SolCall>(&mut self, from: Address, to: Address, call: &C) -> Outcome {
        self.send(from, TxKind::Call(to), call.abi_encode().into())
            .0
    }

    pub fn try_raw(&mut self, from: Address, to: Address, data: Bytes) -> Outcome {
        self.send(from, TxKind::Call(to), data).0
    }

    /// Sends a call that must succeed, and decodes what it returned.
    pub fn call<C: SolCall>(&mut self, from: Address, to: Address, call: &C) -> C::Return {
        let outcome = self.try_call(from, to, call);
        assert!(
            outcome.success,
            "{} reverted: {}",
            C::SIGNATURE,
            outcome.output
        );
        C::abi_decode_returns(&outcome.output).expect("decodable return data")
    }

    pub fn balance(&mut self, token: Address, account: Address) -> U256 {
        self.call(Address::ZERO, token, &XnodeToken::balanceOfCall(account))
    }
}

/// Addresses that send transactions (no keys needed: the EVM takes the caller as given).
pub fn account(tag: u8) -> Address {
    Address::repeat_byte(tag)
}

pub const DEPLOYER: Address = Address::repeat_byte(0xde);
pub const REPAIR_POT: Address = Address::repeat_byte(0xee);

/// A committee of `n` deterministic keys.
pub fn committee_of(n: u8, first_seed: u8) -> CommitteeSigners {
    let keys: Vec<B256> = (0..n).map(|i| B256::repeat_byte(first_seed + i)).collect();
    CommitteeSigners::from_private_keys(&keys).expect("valid keys")
}

/// The four contracts deployed on one chain, the whole supply held by the deployer.
pub struct Deployment {
    pub chain: Chain,
    pub committee_keys: CommitteeSigners,
    pub token: Address,
    pub committee: Address,
    pub settlement: Address,
    pub staking: Address,
}

impl Deployment {
    pub fn new(committee_keys: CommitteeSigners, threshold: usize) -> Self {
        let mut chain = Chain::new();
        let token = chain.deploy(
            DEPLOYER,
            &XnodeToken::BYTECODE,
            XnodeToken::constructorCall {
                name_: "Xnode".into(),
                symbol_: "XND".into(),
                holder: DEPLOYER,
                supply: U256::from(1_000_000_000 * TOKEN),
            }
            .abi_encode(),
        );
        let committee = chain.deploy(
            DEPLOYER,
            &Committee::BYTECODE,
            Committee::constructorCall {
                initialSigners: committee_keys.addresses(),
                initialThreshold: U256::from(threshold),
            }
            .abi_encode(),
        );
        let settlement = chain.deploy(
            DEPLOYER,
            &Settlement::BYTECODE,
            Settlement::constructorCall {
                token_: token,
                committee_: committee,
                withdrawalDelay_: U256::from(WITHDRAWAL_DELAY),
            }
            .abi_encode(),
        );
        let staking = chain.deploy(
            DEPLOYER,
            &Staking::BYTECODE,
            Staking::constructorCall {
                token_: token,
                committee_: committee,
                repairPot_: REPAIR_POT,
                unbondDelay_: U256::from(UNBOND_DELAY),
                exitFallbackDelay_: U256::from(EXIT_FALLBACK_DELAY),
            }
            .abi_encode(),
        );
        Self {
            chain,
            committee_keys,
            token,
            committee,
            settlement,
            staking,
        }
    }

    /// Gives `to` tokens from the deployer and lets `spender` take them.
    pub fn fund(&mut self, to: Address, amount: u128, spender: Address) {
        let token = self.token;
        self.chain.call(
            DEPLOYER,
            token,
            &XnodeToken::transferCall {
                to,
                value: U256::from(amount),
            },
        );
        self.chain.call(
            to,
            token,
            &XnodeToken::approveCall {
                spender,
                value: U256::MAX,
            },
        );
    }

    pub fn balance(&mut self, account: Address) -> U256 {
        let token = self.token;
        self.chain.balance(token, account)
    }
}
