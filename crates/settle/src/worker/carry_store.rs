//! The reputation each settled epoch outputs, kept per epoch and carried into the next
//! (see [`crate::carry`] for the rules and why a fetched state is safe to use).

use xnode_db::Table;
use xnode_ledger::{Epoch, ReputationState};
use xnode_types::lock;

use super::{PEER_TIMEOUT, Settlement, epoch_key};
use crate::carry::CarriedReputation;
use crate::close::EpochStatus;
use crate::error::CloseError;
use crate::proto::{MAX_SETTLE_MESSAGE, SettleRequest, SettleResponse};

/// Settled epochs' output reputations ([`CarriedReputation`]), by big-endian epoch.
pub const SETTLE_REPUTATION: Table = Table("settle_reputation");

impl Settlement {
    /// Every stored carried reputation's epoch and encoding, ascending. The table holds a
    /// handful of entries ([`Settlement::store_carried`] prunes it).
    fn carried_entries(&self) -> Result<Vec<(u64, Vec<u8>)>, CloseError> {
        Ok(self
            .db
            .scan_prefix(SETTLE_REPUTATION, &[], usize::MAX)?
            .into_iter()
            .filter_map(|(key, value)| {
                let key: [u8; 8] = key.as_slice().try_into().ok()?;
                Some((u64::from_be_bytes(key), value))
            })
            .collect())
    }

    /// The newest carried reputation of an epoch before `epoch`, if any.
    pub(super) fn newest_carried_before(
        &self,
        epoch: Epoch,
    ) -> Result<Option<CarriedReputation>, CloseError> {
        let newest = self
            .carried_entries()?
            .into_iter()
            .rev()
            .find(|(stored, _)| *stored < epoch.0);
        match newest {
            Some((_, bytes)) => Ok(Some(xnode_wire::decode(&bytes, MAX_SETTLE_MESSAGE)?)),
            None => Ok(None),
        }
    }

    /// The encoded carried reputation of `epoch`, as served to members.
    pub(super) fn stored_carried(&self, epoch: Epoch) -> Result<Option<Vec<u8>>, CloseError> {
        Ok(self.db.get(SETTLE_REPUTATION, &epoch_key(epoch.0))?)
    }

    /// Keeps a settled epoch's output reputation, and drops the ones no due epoch can
    /// start from any more (older than the lookback, except the newest).
    pub(super) fn store_carried(&self, carried: &CarriedReputation) -> Result<(), CloseError> {
        let epoch = carried.context.epoch.0;
        self.db.put(
            SETTLE_REPUTATION,
            &epoch_key(epoch),
            &xnode_wire::encode(carried)?,
        )?;
        let keep_from = epoch.saturating_sub(self.config.lookback_epochs.saturating_add(2));
        for (stored, _) in self.carried_entries()? {
            if stored < keep_from {
                self.db.delete(SETTLE_REPUTATION, &epoch_key(stored))?;
            }
        }
        tracing::info!(
            epoch,
            nodes = carried.state.nodes.len(),
            "kept the settled epoch's reputation for the next one"
        );
        Ok(())
    }

    /// The reputation `epoch` starts from: the newest carried state before it, after
    /// trying to fetch the previous epoch's from the members if this node lacks it.
    /// `None` and the empty state when no epoch was ever settled.
    pub(super) async fn starting_reputation(
        &self,
        epoch: Epoch,
    ) -> Result<(Option<u64>, ReputationState), CloseError> {
        let mut newest = self.newest_carried_before(epoch)?;
        if self.lacks_previous(epoch, newest.as_ref())? && self.fetch_carried(epoch).await {
            newest = self.newest_carried_before(epoch)?;
        }
        Ok(match newest {
            Some(carried) => (Some(carried.context.epoch.0), carried.state),
            None => (None, ReputationState::default()),
        })
    }

    /// Whether the root computed for `epoch` started from an older state than the one now
    /// available (fetching the previous epoch's if this node lacks it).
    pub(super) async fn start_is_stale(&self, epoch: Epoch) -> Result<bool, CloseError> {
        let Some(used) = lock(&self.state)
            .closes
            .get(&epoch.0)
            .and_then(|close| close.previous_epoch())
        else {
            return Ok(false);
        };
        let mut newest = self.newest_carried_before(epoch)?;
        if self.lacks_previous(epoch, newest.as_ref())? && self.fetch_carried(epoch).await {
            newest = self.newest_carried_before(epoch)?;
        }
        Ok(newest.map(|c| c.context.epoch.0) != used)
    }

    /// Whether the previous epoch settled without this node holding its output: not the
    /// newest held, and not known here to be superseded (a superseded epoch outputs
    /// nothing to carry).
    fn lacks_previous(
        &self,
        epoch: Epoch,
        newest: Option<&CarriedReputation>,
    ) -> Result<bool, CloseError> {
        let Some(previous) = epoch.0.checked_sub(1) else {
            return Ok(false);
        };
        if newest.is_some_and(|c| c.context.epoch.0 == previous) {
            return Ok(false);
        }
        let superseded = self
            .epoch_record(previous)?
            .is_some_and(|r| r.status == EpochStatus::Superseded);
        Ok(!superseded)
    }

    /// Asks the other members for the previous epoch's carried reputation and keeps the
    /// first that verifies (this node's parameters, the state's digest, the threshold of
    /// member signatures). Returns whether one was kept.
    async fn fetch_carried(&self, epoch: Epoch) -> bool {
        let Some(previous) = epoch.0.checked_sub(1).map(Epoch) else {
            return false;
        };
        let members = self.other_members();
        let answers = self
            .endpoint
            .call_many(
                &members,
                SettleRequest::Reputation { epoch: previous },
                PEER_TIMEOUT,
            )
            .await;
        let params_digest = self.params.digest();
        for (peer, answer) in answers {
            let Ok(SettleResponse::Reputation(Some(bytes))) = answer else {
                continue;
            };
            let carried: CarriedReputation = match xnode_wire::decode(&bytes, MAX_SETTLE_MESSAGE) {
                Ok(carried) => carried,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "refused a carried reputation");
                    continue;
                }
            };
            if let Err(e) = carried.verify(previous, &params_digest, &self.committee) {
                tracing::warn!(%peer, epoch = previous.0, error = %e, "refused a carried reputation");
                continue;
            }
            match self.store_carried(&carried) {
                Ok(()) => {
                    tracing::info!(%peer, epoch = previous.0, "took the previous epoch's reputation from a member");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "keeping a fetched reputation failed");
                    return false;
                }
            }
        }
        false
    }
}
