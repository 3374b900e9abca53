//! `xnode admission`: make operator and authority keys, and sign admission lists for the
//! `allowlist` policy (see `docs/configuration.md`, "Operators and admission").

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use xnode_registry::admission::{AdmissionList, SignedAdmissionList};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey};

use crate::cli::AdmissionAction;

pub fn run(action: AdmissionAction) -> anyhow::Result<()> {
    match action {
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
