//! The catalog of deployments: the winning claim of every deployment name, creating and
//! removing deployments from tenant-signed entries, and the modules they run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use xnode_registry::Entry;
use xnode_registry::claims::check_claim_clock;
use xnode_store::{ChunkId, DataKey};
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::placement::Candidate;
use crate::spec::{
    self, DEPLOYMENT_CLAIM, DeploymentSpec, Kind, MAX_MODULE_BYTES, decode_deployment,
};
use crate::{Compute, ComputeOpError, Deployment};

/// The deployments this node knows, decoded once per change rather than per call.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) deployments: RwLock<HashMap<String, Deployment>>,
    /// Placement candidates as the gateway last computed them (see
    /// [`Compute::place_for_call`]).
    pub(crate) call_candidates: Mutex<Option<(Instant, Arc<Vec<Candidate>>)>>,
}

impl Compute {
    // ----- deployments ------------------------------------------------------------------

    /// Rebuilds the name -> deployment map from the registry's claim index. When two
    /// tenants claim one name, the first well-formed claim in claim order wins (see
    /// `xnode_registry::claims`), as for buckets, so every node agrees.
    pub(crate) fn refresh_deployments(&self) {
        let mut winners: HashMap<String, Deployment> = HashMap::new();
        for name in self.registry.claimed_names(DEPLOYMENT_CLAIM) {
            let winner = self
                .registry
                .claims(DEPLOYMENT_CLAIM, &name)
                .into_iter()
                .find_map(|entry| {
                    decode_deployment(&entry).map(|spec| Deployment {
                        owner: entry.owner,
                        spec,
                        entry_hlc: entry.hlc,
                    })
                });
            if let Some(d) = winner {
                winners.insert(name, d);
            }
        }
        match self.catalog.deployments.write() {
            Ok(mut d) => *d = winners,
            Err(p) => *p.into_inner() = winners,
        }
    }

    /// This node's id as text.
    pub fn node_name(&self) -> &Arc<str> {
        &self.node_name
    }

    pub fn deployment(&self, name: &str) -> Option<Deployment> {
        self.with_deployment(name, |d| d.cloned())
    }

    /// Looks at a deployment under the catalog's lock without copying it: the per-call
    /// checks of `/fn/` (does it exist, is it an http function) run for every request,
    /// and a copy of the spec is a dozen allocations each time.
    pub fn with_deployment<R>(&self, name: &str, look: impl FnOnce(Option<&Deployment>) -> R) -> R {
        match self.catalog.deployments.read() {
            Ok(d) => look(d.get(name)),
            Err(p) => look(p.into_inner().get(name)),
        }
    }

    pub fn deployments(&self) -> Vec<Deployment> {
        let mut all: Vec<Deployment> = match self.catalog.deployments.read() {
            Ok(d) => d.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        all
    }

    /// Accepts a tenant-signed deployment entry (create or update).
    pub async fn deploy(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        entry: Entry,
        data_key: Option<DataKey>,
    ) -> Result<(Entry, DeploymentSpec), ComputeOpError> {
        if entry.owner != *tenant {
            return Err(ComputeOpError::BadRequest(
                "the deployment must be signed by the requesting tenant".into(),
            ));
        }
        let value = entry.value.as_deref().ok_or_else(|| {
            ComputeOpError::BadRequest(
                "a deployment entry needs a value; use DELETE to remove one".into(),
            )
        })?;
        let spec: DeploymentSpec = serde_json::from_slice(value).map_err(|e| {
            ComputeOpError::BadRequest(format!("the deployment record is not valid: {e}"))
        })?;
        spec.validate().map_err(ComputeOpError::BadRequest)?;
        if spec.owner != tenant.to_hex() || entry.key != spec::deployment_key(tenant, &spec.name) {
            return Err(ComputeOpError::BadRequest(
                "the signed entry does not match the deployment's name and owner".into(),
            ));
        }
        if let Some(stack) = spec.limits.stack_kb
            && stack > self.config.stack_kb
        {
            return Err(ComputeOpError::BadRequest(format!(
                "stack_kb {stack} exceeds this network's engine stack of {} KiB",
                self.config.stack_kb
            )));
        }
        // The bucket keys its replicas get, derived here at the tenant's edge from the
        // data key sent with the request and checked against the checks the tenant
        // signed. The data key itself goes nowhere.
        let grant = match (&spec.storage, spec.signed_scope(), &data_key) {
            (None, _, _) => None,
            (Some(_), None, _) => {
                return Err(ComputeOpError::BadRequest(
                    "a deployment with [storage] must sign the key checks of its buckets (storage.key_checks); update the client".into(),
                ));
            }
            (Some(_), Some(_), None) => {
                return Err(ComputeOpError::BadRequest(
                    "a deployment with [storage] needs the tenant's data key (x-xnode-data-key)"
                        .into(),
                ));
            }
            (Some(_), Some(scope), Some(data_key)) => Some(Self::derive_grant(data_key, &scope)?),
        };
        match self.deployment(&spec.name) {
            Some(existing) if existing.owner != *tenant => {
                return Err(ComputeOpError::NameTaken(spec.name.clone()));
            }
            Some(_) => {}
            // A new deployment: within the tenant's quota on this node, if one is set.
            None => {
                if let Some(max) = self.config.max_deployments_per_tenant {
                    let have = self
                        .deployments()
                        .iter()
                        .filter(|d| d.owner == *tenant)
                        .count();
                    if have >= usize::try_from(max).unwrap_or(usize::MAX) {
                        return Err(ComputeOpError::QuotaExceeded { have, max });
                    }
                }
            }
        }
        // A pin to regions that no live admitted node satisfies is refused now, not left
        // to wait without replicas (placement never runs it elsewhere).
        let candidates = if spec.placement.zones.is_empty() {
            Vec::new()
        } else {
            self.candidates()
        };
        if !spec.placement.zones.is_empty()
            && crate::placement::place(&spec.name, &spec, &candidates, 1).is_empty()
        {
            let mut known: Vec<String> = candidates.into_iter().map(|c| c.zone).collect();
            known.sort_unstable();
            known.dedup();
            return Err(ComputeOpError::BadRequest(format!(
                "the deployment is pinned to regions {:?} (with labels {:?}); no live admitted node there can run it (regions with live admitted nodes: {known:?})",
                spec.placement.zones, spec.placement.labels
            )));
        }
        // Refuse modules that cannot run as the declared kind now, not at the first call.
        let bytes = self.module_bytes(&spec).await?;
        match spec.kind {
            Kind::Http => {
                self.engine
                    .http_module(bytes)
                    .await
                    .map_err(|e| ComputeOpError::BadRequest(e.to_string()))?;
            }
            Kind::Job | Kind::Worker => {
                self.engine
                    .command_module(bytes)
                    .await
                    .map_err(|e| ComputeOpError::BadRequest(e.to_string()))?;
            }
        }
        check_entry_clock(&entry)?;
        self.registry
            .apply_tenant_entry(entry.clone())
            .map_err(|e| ComputeOpError::from_registry("deployment", e))?;
        self.refresh_deployments();
        match self.deployment(&spec.name) {
            Some(d) if d.owner == *tenant && d.spec == spec => {}
            _ => {
                return Err(ComputeOpError::BadRequest(
                    "the deployment is older than the one the network has; sign it with the current time".into(),
                ));
            }
        }
        if let Some(keys) = grant {
            self.accept_grant(tenant, &spec.name, &keys)
                .map_err(|e| ComputeOpError::Internal(e.to_string()))?;
            // Replicas usually get the keys now rather than asking for them on first use.
            let targets = self.place(&spec);
            self.push_grant(tenant, &spec.name, &keys, &targets).await;
        }
        self.control.wake.notify_one();
        Ok((entry, spec))
    }

    /// Removes a deployment with a tenant-signed tombstone.
    pub fn undeploy(
        &self,
        tenant: &PublicKeyBytes,
        name: &str,
        tombstone: Entry,
    ) -> Result<Entry, ComputeOpError> {
        let existing = self
            .deployment(name)
            .ok_or_else(|| ComputeOpError::NoSuchDeployment(name.to_owned()))?;
        if existing.owner != *tenant {
            return Err(ComputeOpError::AccessDenied(format!(
                "deployment {name:?} belongs to another tenant"
            )));
        }
        if tombstone.owner != *tenant
            || tombstone.key != spec::deployment_key(tenant, name)
            || !tombstone.is_tombstone()
        {
            return Err(ComputeOpError::BadRequest(
                "the signed deletion does not match the deployment and tenant".into(),
            ));
        }
        check_entry_clock(&tombstone)?;
        self.registry
            .apply_remote(tombstone.clone())
            .map_err(|e| ComputeOpError::BadRequest(format!("deletion refused: {e}")))?;
        self.refresh_deployments();
        if self.deployment(name).is_some_and(|d| d.owner == *tenant) {
            return Err(ComputeOpError::BadRequest(
                "the deletion is older than the deployment; sign it with the current time".into(),
            ));
        }
        self.control.wake.notify_one();
        Ok(tombstone)
    }

    // ----- modules ----------------------------------------------------------------------

    /// Stores a module as one content-addressed chunk, replicated like object data.
    /// Modules are code, not tenant data: they are stored unencrypted so that any node a
    /// deployment is placed on can run it.
    pub async fn put_module(&self, bytes: Bytes) -> Result<String, ComputeOpError> {
        if bytes.is_empty() || bytes.len() > MAX_MODULE_BYTES {
            return Err(ComputeOpError::BadRequest(format!(
                "a module must be 1 byte to {} MiB, this one has {} bytes",
                MAX_MODULE_BYTES >> 20,
                bytes.len()
            )));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ComputeOpError::BadRequest(
                "this is not WebAssembly (it does not start with \\0asm)".into(),
            ));
        }
        let id = ChunkId::of(&bytes);
        let set = self.storage.storage_set();
        self.storage.put_chunk(id, bytes, &set).await?;
        Ok(hex::encode(id.0))
    }

    pub(crate) async fn module_bytes(
        &self,
        spec: &DeploymentSpec,
    ) -> Result<Bytes, ComputeOpError> {
        let id = spec
            .module_id()
            .ok_or_else(|| ComputeOpError::BadRequest("module is not a content id".into()))?;
        let set = self.storage.storage_set();
        match self.storage.get_chunk(ChunkId(id), &set).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) => Err(ComputeOpError::BadRequest(format!(
                "module {} is not in the network's storage (upload it first): {e}",
                spec.module
            ))),
        }
    }
}

/// Deployments and jobs may not be dated in the future beyond the clock bound of claims.
/// (A bound on the past is the peers issue's to add on every path.)
pub(crate) fn check_entry_clock(entry: &Entry) -> Result<(), ComputeOpError> {
    match check_claim_clock(entry, unix_ms()) {
        Err(e @ xnode_registry::claims::ClaimClockError::InTheFuture { .. }) => Err(
            ComputeOpError::BadRequest(format!("{e}; check the client's clock")),
        ),
        _ => Ok(()),
    }
}
