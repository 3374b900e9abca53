//! `xnode kms create-key|list|disable|enable`: the tenant's KMS keys, which SSE-KMS objects
//! are encrypted under (see `xnode_registry::kms`). Each change is a registry entry the
//! tenant signs here and any node takes (`POST /v1/tenant/kms-keys`).

use reqwest::Method;
use xnode_registry::kms::{KmsKeyState, kms_key_key, kms_key_record, new_key_id};

use crate::cli::{KmsAction, StorageClientArgs};
use crate::storage_cmd::{get_signed_json, send_signed_json};
use crate::tenant::SignedClient;

fn signed(args: &StorageClientArgs) -> anyhow::Result<SignedClient> {
    let path = args
        .tenant_key
        .clone()
        .unwrap_or_else(crate::tenant::default_key_path);
    SignedClient::new(&args.api, crate::tenant::load(&path)?)
}

/// Signs and posts the record of key `id` and prints what the node answers.
async fn post_key(
    c: &SignedClient,
    args: &StorageClientArgs,
    id: &str,
    alias: Option<&str>,
    state: KmsKeyState,
    created_ms: u64,
) -> anyhow::Result<()> {
    let now = crate::storage_cmd::now_ms();
    let hlc = xnode_types::Hlc::new(now, 0);
    let record = kms_key_record(id, alias, state, created_ms)?;
    let entry = xnode_registry::Entry::sign(
        &c.key,
        kms_key_key(&c.key.public(), id),
        Some(record.clone().into_bytes()),
        hlc,
    )?;
    let body = serde_json::json!({
        "record": record,
        "hlc_wall_ms": hlc.wall_ms,
        "hlc_logical": hlc.logical,
        "signature": hex::encode(entry.signature.0),
    });
    let v = send_signed_json(c, Method::POST, "/v1/tenant/kms-keys", &body).await?;
    if args.json {
        println!("{v}");
    } else {
        println!(
            "{} {} ({})",
            v["id"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            v["alias"].as_str().unwrap_or("no alias")
        );
    }
    Ok(())
}

/// Changes the state of the tenant's key named `name` (an id or `alias/NAME`).
async fn set_state(name: &str, state: KmsKeyState, args: &StorageClientArgs) -> anyhow::Result<()> {
    let c = signed(args)?;
    let keys = get_signed_json(&c, "/v1/tenant/kms-keys", "").await?;
    let alias = name.strip_prefix("alias/");
    let found = keys
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|k| match alias {
            Some(alias) => k["alias"].as_str() == Some(alias),
            None => k["id"].as_str() == Some(name),
        })
        .min_by_key(|k| k["created_ms"].as_u64().unwrap_or(u64::MAX))
        .ok_or_else(|| anyhow::anyhow!("this tenant has no KMS key {name:?} on {}", c.api))?;
    let id = found["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the node listed a key without an id"))?;
    let created_ms = found["created_ms"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("the node listed key {id} without its creation time"))?;
    post_key(&c, args, id, found["alias"].as_str(), state, created_ms).await
}

pub async fn run(action: KmsAction) -> anyhow::Result<()> {
    match action {
        KmsAction::CreateKey { alias, args } => {
            let c = signed(&args)?;
            if let Some(alias) = &alias {
                let keys = get_signed_json(&c, "/v1/tenant/kms-keys", "").await?;
                let taken = keys
                    .as_array()
                    .is_some_and(|a| a.iter().any(|k| k["alias"].as_str() == Some(alias)));
                if taken {
                    anyhow::bail!("this tenant already has a KMS key with alias {alias:?}");
                }
            }
            let id = new_key_id();
            let now = crate::storage_cmd::now_ms();
            post_key(&c, &args, &id, alias.as_deref(), KmsKeyState::Enabled, now).await
        }
        KmsAction::List { args } => {
            let c = signed(&args)?;
            let keys = get_signed_json(&c, "/v1/tenant/kms-keys", "").await?;
            if args.json {
                println!("{keys}");
            } else {
                for k in keys.as_array().map(|a| a.as_slice()).unwrap_or_default() {
                    println!(
                        "{}  {:<8}  {}",
                        k["id"].as_str().unwrap_or("?"),
                        k["state"].as_str().unwrap_or("?"),
                        k["alias"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        KmsAction::Disable { key, args } => set_state(&key, KmsKeyState::Disabled, &args).await,
        KmsAction::Enable { key, args } => set_state(&key, KmsKeyState::Enabled, &args).await,
    }
}
