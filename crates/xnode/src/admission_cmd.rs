//! `xnode admission`: make operator and authority keys, and sign admission lists for the
//! `allowlist` policy (see `docs/configuration.md`, "Operators and admission").

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use xnode_registry::admission::{AdmissionList, SignedAdmissionList};
use xnode_registry::payout::PayoutBinding;
use xnode_types::{NodeId, PublicKeyBytes, SecretKey};

use crate::cli::AdmissionAction;

pub async fn run(action: AdmissionAction) -> anyhow::Result<()> {
    match action {
        AdmissionAction::BindPayout {
            operator_key,
            address_key,
            network,
            serial,
            api,
        } => bind_payout(&operator_key, &address_key, &network, serial, &api).await,
        AdmissionAction::Keygen { out } => keygen(&out),
        AdmissionAction::Sign {
            authority_key,
            network,
            serial,
            operators,
            nodes,
            out,
        } => sign(&authority_key, network, serial, &operators, &nodes, &out),
    }
}

/// Makes a payout binding (see `xnode_registry::payout`) and publishes it through `api`.
async fn bind_payout(
    operator_key: &Path,
    address_key: &Path,
    network: &str,
    serial: u64,
    api: &str,
) -> anyhow::Result<()> {
    let (operator, _) =
        xnode_node::identity::load_operator_key(Path::new("."), Some(operator_key))?;
    let wallet = xnode_settle::config::read_poster_key(address_key).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.to_string()
                .replace("chain.poster_key_file", "--address-key")
        )
    })?;
    let binding = PayoutBinding::issue(&operator, &wallet, network, serial)?;
    // Checked here too, so a mistake is reported before anything is sent.
    binding.verify(network)?;
    let value = binding.encode()?;
    let hlc = xnode_types::Hlc::new(xnode_types::unix_ms(), 0);
    let entry =
        xnode_registry::Entry::sign(&operator, binding.registry_key(), Some(value.clone()), hlc)?;
    let body = serde_json::json!({
        "binding": hex::encode(&value),
        "hlc_wall_ms": hlc.wall_ms,
        "hlc_logical": hlc.logical,
        "signature": hex::encode(entry.signature.0),
    });
    let answer = crate::client::post_json(api, "/v1/operator/payout-binding", &body).await?;
    println!(
        "operator {} bound to {} (serial {serial}, network {network:?}){}",
        operator.public().to_hex(),
        wallet.address(),
        if answer["applied"].as_bool() == Some(false) {
            "; the node already held it"
        } else {
            ""
        }
    );
    Ok(())
}

/// Writes a new key (an operator's or a network authority's) and prints its public key.
fn keygen(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists already; refusing to replace a key",
            out.display()
        );
    }
    let key = SecretKey::generate();
    xnode_node::identity::write_key_file(out, &key)?;
    println!("{}", key.public().to_hex());
    Ok(())
}

fn sign(
    authority_key: &Path,
    network: String,
    serial: u64,
    operators: &[String],
    nodes: &[String],
    out: &Path,
) -> anyhow::Result<()> {
    // The authority key file has the format of any key file; no data dir is involved.
    let (authority, _) =
        xnode_node::identity::load_operator_key(Path::new("."), Some(authority_key))?;
    let operators = operators
        .iter()
        .map(|hex| PublicKeyBytes::from_hex(hex).with_context(|| format!("operator {hex:?}")))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let nodes = nodes
        .iter()
        .map(|id| id.parse::<NodeId>().with_context(|| format!("node {id:?}")))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let list = AdmissionList {
        network,
        serial,
        operators,
        nodes,
    };
    let signed = SignedAdmissionList::sign(&list, &authority)?;
    let bytes = xnode_wire::encode(&signed)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed admission list {} for network {:?}: serial {}, {} operators, {} nodes, authority {}",
        out.display(),
        list.network,
        list.serial,
        list.operators.len(),
        list.nodes.len(),
        authority.public().to_hex()
    );
    Ok(())
}
