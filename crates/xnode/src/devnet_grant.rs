//! The devnet's tenant lets every devnet node countersign its receipts: without a grant
//! no edge signs what providers metered, and every epoch of the devnet would be empty.
//!
//! Each grant is signed with the devnet's tenant key and sent to its node with the signed
//! `PUT /v1/ledger/grant`, as a client does. The node's identity key is read from its
//! data dir, which the devnet owns; the network and the current epoch come from the node.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use xnode_ledger::{Epoch, GRANT_VERSION, GrantBody, MAX_GRANT_EPOCHS};
use xnode_types::SecretKey;

use crate::client::get_json;
use crate::storage_cmd::send;
use crate::tenant::{Payload, SignedClient};

/// How long a devnet grant lasts: a week of the node's epochs. A grant cannot be revoked,
/// so even a devnet keeps it bounded.
const GRANT_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The epochs a grant made during `current` covers, for epochs of `epoch_seconds`: from
/// the previous epoch (so usage metered just before the grant is countersigned too) for
/// [`GRANT_SPAN`], within the ledger's longest grant.
fn grant_range(current: u64, epoch_seconds: u64) -> (Epoch, Epoch) {
    let span = (GRANT_SPAN.as_secs() / epoch_seconds.max(1)).clamp(1, MAX_GRANT_EPOCHS - 1);
    let from = current.saturating_sub(1);
    (Epoch(from), Epoch(from.saturating_add(span)))
}

/// Sends the tenant's countersigning grant to the node at `api`, whose data dir is `dir`.
pub async fn grant(api: &str, dir: &Path, tenant: &SecretKey) -> anyhow::Result<()> {
    let (node_key, _) = xnode_node::identity::load_or_create_key(dir)
        .with_context(|| format!("node key in {}", dir.display()))?;
    let node = get_json(api, "/v1/node").await?;
    let network = node["network"]
        .as_str()
        .context("the node did not say its network")?
        .to_owned();
    let status = get_json(api, "/v1/ledger/status").await?;
    let current = status["current_epoch"]
        .as_u64()
        .context("the node did not say its current epoch")?;
    let epoch_seconds = status["epoch_seconds"]
        .as_u64()
        .context("the node did not say its epoch length")?;
    let (from_epoch, until_epoch) = grant_range(current, epoch_seconds);
    let grant = GrantBody {
        v: GRANT_VERSION,
        network,
        tenant: tenant.public(),
        delegate: node_key.node_id(),
        delegate_key: node_key.public(),
        from_epoch,
        until_epoch,
    }
    .sign(tenant);
    let client = SignedClient::new(api, tenant.clone())?;
    let body = Payload::json(&serde_json::json!({ "grant": grant }))?;
    let request = client
        .request(Method::PUT, "/v1/ledger/grant", "", body, false)
        .await?;
    send(request, api).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_a_week_within_the_ledgers_longest_grant() {
        // Hour-long epochs: a week is 168 of them, from the previous one.
        assert_eq!(grant_range(1000, 3600), (Epoch(999), Epoch(999 + 168)));
        // The devnet's 30 s epochs: a week is 20,160 of them, beyond the ledger's bound
        // on a grant's range, so the range is that bound.
        assert_eq!(
            grant_range(10, 30),
            (Epoch(9), Epoch(9 + MAX_GRANT_EPOCHS - 1))
        );
        // Epoch zero and a zero length do not underflow or divide by zero.
        assert_eq!(grant_range(0, 0).0, Epoch(0));
    }
}
