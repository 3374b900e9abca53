//! Data-key grants: the tenant's data key kept by the nodes its deployments and jobs are
//! placed on, so that they can read and write the tenant's objects.

use std::time::Duration;

use xnode_db::Table;
use xnode_store::DataKey;
use xnode_types::{NodeId, PublicKeyBytes};

use crate::proto::{ComputeRequest, ComputeResponse};
use crate::spec::{self, JobSpec, decode_job};
use crate::{Compute, ComputeOpError, runner};

/// Data keys tenants granted to this node, keyed by owner hex.
const GRANTS: Table = Table("compute_grants");

impl Compute {
    pub(crate) fn store_grant(
        &self,
        owner: &PublicKeyBytes,
        key: &DataKey,
    ) -> Result<(), ComputeOpError> {
        self.db
            .put(GRANTS, owner.to_hex().as_bytes(), key.to_hex().as_bytes())
            .map_err(|e| ComputeOpError::Internal(format!("cannot keep the data key: {e}")))
    }

    pub(crate) fn local_grant(&self, owner: &PublicKeyBytes) -> Option<DataKey> {
        let bytes = self.db.get(GRANTS, owner.to_hex().as_bytes()).ok()??;
        DataKey::from_hex(std::str::from_utf8(&bytes).ok()?).ok()
    }

    pub(crate) async fn push_grant(
        &self,
        owner: &PublicKeyBytes,
        purpose: &str,
        key: &DataKey,
        targets: &[NodeId],
    ) {
        for node in targets {
            if *node == self.node_id {
                continue;
            }
            let request = ComputeRequest::PushGrant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
                key: key.to_hex().into_bytes(),
            };
            if let Err(e) = self.call(*node, request, Duration::from_secs(3)).await {
                tracing::debug!(%node, error = %e, "could not push a data key; the node will ask for it");
            }
        }
    }

    /// The data key `owner` granted for `purpose`, from this node or from a peer that
    /// holds it (peers answer only nodes the purpose is placed on).
    pub(crate) async fn grant(&self, owner: &PublicKeyBytes, purpose: &str) -> Option<DataKey> {
        if let Some(key) = self.local_grant(owner) {
            return Some(key);
        }
        for candidate in self.candidates() {
            if candidate.id == self.node_id {
                continue;
            }
            let request = ComputeRequest::Grant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
            };
            if let Ok(ComputeResponse::Grant(Some(bytes))) = self
                .call(candidate.id, request, Duration::from_secs(3))
                .await
                && let Ok(text) = std::str::from_utf8(&bytes)
                && let Ok(key) = DataKey::from_hex(text)
            {
                let _ = self.store_grant(owner, &key);
                return Some(key);
            }
        }
        None
    }

    /// Whether `node` may receive `owner`'s data key for `purpose`: it must be a node the
    /// deployment or job is placed on, as this node sees placement.
    pub(crate) fn may_receive_grant(
        &self,
        node: NodeId,
        owner: &PublicKeyBytes,
        purpose: &str,
    ) -> bool {
        if let Some(job_id) = purpose.strip_prefix("job:") {
            return self.job(owner, job_id).is_some_and(|job| {
                runner::job_runners(&job, &self.candidates()).first() == Some(&node)
            });
        }
        self.deployment(purpose)
            .is_some_and(|d| d.owner == *owner && self.place(&d.spec).contains(&node))
    }

    pub fn job(&self, owner: &PublicKeyBytes, id: &str) -> Option<JobSpec> {
        let entry = self.registry.get(&spec::job_key(owner, id))?;
        decode_job(&entry)
    }
}
