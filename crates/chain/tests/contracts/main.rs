//! The settlement contracts under test: in process on revm (settlement, staking, a ledger
//! epoch end to end) and on a real anvil node, in one test binary (one link instead of
//! four). Select a module with a filter such as `-E 'test(/^staking_evm::/)'`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anvil_e2e;
mod evm;
mod ledger_epoch_evm;
mod settlement_evm;
mod staking_evm;
