//! Who the ledger pays: each node's payout address, from its operator's payout binding in
//! the registry (through `EvidenceSource::payout_bindings`) or the configured override,
//! and the bond the `Staking` contract holds for that address.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use alloy::sol_types::SolCall;
use xnode_chain::Staking;
use xnode_ledger::Epoch;
use xnode_types::NodeId;

use super::Settlement;
use crate::ChainClient;
use crate::config::OperatorPayout;
use crate::error::CloseError;

impl Settlement {
    /// The last moment a payout binding may be written and still count for `epoch`: the
    /// time the chain is read at (the epoch's end plus `grace`). Members compute after
    /// `gather` more, so a binding written before it has had that long to spread, as
    /// bundles have.
    pub(super) fn binding_cut_ms(&self, epoch: Epoch) -> u64 {
        let grace = u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX);
        self.end_ms(epoch).saturating_add(grace)
    }

    /// The operators the ledger pays for an epoch whose bindings were cut at `cut_ms`:
    /// every node whose operator has a payout binding in the registry, with
    /// `settlement.operators` overriding the address of each node it lists (see
    /// docs/configuration.md). Sorted by node, so the order never depends on the registry.
    pub(crate) fn operators(&self, cut_ms: u64) -> Vec<OperatorPayout> {
        let mut table: BTreeMap<NodeId, OperatorPayout> = self
            .source
            .payout_bindings(cut_ms)
            .into_iter()
            .map(|o| (o.node, o))
            .collect();
        for configured in &self.config.operators {
            table.insert(configured.node, configured.clone());
        }
        table.into_values().collect()
    }

    pub(super) async fn bond_of(
        &self,
        client: &ChainClient,
        payout: Address,
        block: u64,
    ) -> Result<u128, CloseError> {
        let Some(staking) = self.chain.staking_contract else {
            return Ok(0);
        };
        let call = Staking::bondedCall(payout);
        let bytes = client
            .call_at(staking, &call.abi_encode(), Some(block))
            .await?;
        // No code at that block (the agreed block predates the deployment): no bond yet.
        if bytes.is_empty() {
            return Ok(0);
        }
        let value = Staking::bondedCall::abi_decode_returns(&bytes)
            .map_err(|_| CloseError::ChainValue("bonded"))?;
        u128::try_from(value).map_err(|_| CloseError::ChainValue("bonded"))
    }
}
