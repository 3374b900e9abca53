//! `xnode key s3 create|ls|rm`: S3 access keys, registered on the nodes a tenant chooses.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use xnode_registry::revocation::{RevokedScope, revocation_key, revocation_record};

use crate::cli::{S3KeyAction, StorageClientArgs};
use crate::storage_cmd::{get_signed_json, send, send_signed_json};
use crate::tenant::{Payload, SignedClient};

fn apis(given: Vec<String>) -> Vec<String> {
    if given.is_empty() {
        vec![std::env::var("XNODE_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into())]
    } else {
        given
    }
}

fn signed(api: &str, tenant_key: &Option<PathBuf>) -> anyhow::Result<SignedClient> {
    let path = tenant_key
        .clone()
        .unwrap_or_else(crate::tenant::default_key_path);
    SignedClient::new(api, crate::tenant::load(&path)?)
}

/// Creates one access key (id and secret) and registers it on every node of `apis`.
pub async fn register(
    apis: &[String],
    tenant_key: &Option<PathBuf>,
    bucket_admin: bool,
) -> anyhow::Result<(String, String)> {
    // One id and secret for every node, so any of them serves the same credentials.
    let (id, secret) = xnode_s3::generate_id_and_secret();
    for api in apis {
        let c = signed(api, tenant_key)?;
        let mut body = serde_json::json!({
            "access_key_id": id,
            "secret_access_key": secret,
        });
        if bucket_admin {
            body["tenant_seed"] = Value::String(hex::encode(c.key.seed()));
        }
        let request = c
            .request(Method::POST, "/v1/s3/keys", "", Payload::json(&body)?, true)
            .await?;
        send(request, &c.api).await?;
    }
    Ok((id, secret))
}

pub async fn run(action: S3KeyAction) -> anyhow::Result<()> {
    match action {
        S3KeyAction::Create {
            api,
            tenant_key,
            no_bucket_admin,
            json,
        } => {
            let apis = apis(api);
            let (id, secret) = register(&apis, &tenant_key, !no_bucket_admin).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "access_key_id": id,
                        "secret_access_key": secret,
                        "nodes": apis,
                        "bucket_admin": !no_bucket_admin,
                    })
                );
            } else {
                println!("access key id      {id}");
                println!("secret access key  {secret}");
                println!("registered on      {}", apis.join(", "));
                println!(
                    "Use them with any S3 client against those nodes' S3 ports (xnode start --s3 HOST:PORT):"
                );
                println!(
                    "  export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY='{secret}' AWS_DEFAULT_REGION=us-east-1"
                );
            }
            Ok(())
        }
        S3KeyAction::Ls { args } => {
            let c = signed(&args.api, &args.tenant_key)?;
            let v: Value = get_signed_json(&c, "/v1/s3/keys", "").await?;
            if args.json {
                println!("{v}");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    vec![
                        k["access_key_id"].as_str().unwrap_or("").to_owned(),
                        if k["bucket_admin"].as_bool().unwrap_or(false) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        crate::storage_cmd::created(&k["created_ms"]),
                    ]
                })
                .collect();
            crate::client::print_table(&["ACCESS KEY ID", "BUCKET ADMIN", "CREATED"], &rows);
            Ok(())
        }
        S3KeyAction::Rm {
            id,
            api,
            tenant_key,
            json,
        } => {
            let apis = apis(api);
            for api in &apis {
                let c = signed(api, &tenant_key)?;
                let path = format!(
                    "/v1/s3/keys/{}",
                    crate::storage_cmd::encode_path(&id, false)
                );
                // The deletion carries the signed revocation of the key's registration on
                // this node, so the replicas stop taking what the node seals with it.
                let payload = match registration_id(&c, &id).await? {
                    Some(rid) => {
                        let node: xnode_types::NodeId = c.node_id().await?.parse()?;
                        Payload::json(&signed_revocation(
                            &c,
                            &node,
                            &RevokedScope::S3Registration(rid),
                        )?)?
                    }
                    None => Payload::Empty,
                };
                send(
                    c.request(Method::DELETE, &path, "", payload, false).await?,
                    &c.api,
                )
                .await?;
            }
            if json {
                println!("{}", serde_json::json!({"removed": id, "nodes": apis}));
            } else {
                println!("removed S3 access key {id} from {}", apis.join(", "));
            }
            Ok(())
        }
    }
}

/// The registration id of S3 key `id` on the node `c` talks to, if it lists one.
async fn registration_id(c: &SignedClient, id: &str) -> anyhow::Result<Option<String>> {
    let keys: Value = get_signed_json(c, "/v1/s3/keys", "").await?;
    let key = keys
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .find(|k| k["access_key_id"].as_str() == Some(id))
        .ok_or_else(|| anyhow::anyhow!("no S3 access key {id} of this tenant on {}", c.api))?;
    Ok(key["registration_id"].as_str().map(str::to_owned))
}

/// The tenant's signed revocation of `node`'s `scope`, effective now (the body of
/// `POST /v1/tenant/revocations` and of `DELETE /v1/s3/keys/{id}`).
fn signed_revocation(
    c: &SignedClient,
    node: &xnode_types::NodeId,
    scope: &RevokedScope,
) -> anyhow::Result<Value> {
    let now = crate::storage_cmd::now_ms();
    let hlc = xnode_types::Hlc::new(now, 0);
    let record = revocation_record(node, scope, now);
    let entry = xnode_registry::Entry::sign(
        &c.key,
        revocation_key(&c.key.public(), node, scope),
        Some(record.clone().into_bytes()),
        hlc,
    )?;
    Ok(serde_json::json!({
        "record": record,
        "hlc_wall_ms": hlc.wall_ms,
        "hlc_logical": hlc.logical,
        "signature": hex::encode(entry.signature.0),
    }))
}

/// `xnode tenant revoke-edge NODE_ID [--s3-key ID]`.
pub async fn revoke_edge(
    node_id: &str,
    s3_key: Option<&str>,
    args: StorageClientArgs,
) -> anyhow::Result<()> {
    let node: xnode_types::NodeId = node_id
        .parse()
        .map_err(|_| anyhow::anyhow!("{node_id:?} is not a node id"))?;
    let c = signed(&args.api, &args.tenant_key)?;
    let scope = match s3_key {
        None => RevokedScope::All,
        Some(id) => {
            if c.node_id().await? != node.to_string() {
                anyhow::bail!(
                    "--s3-key needs --api to be the revoked node (its key listing names the registration); revoke the whole node through another node instead"
                );
            }
            let rid = registration_id(&c, id).await?.ok_or_else(|| {
                anyhow::anyhow!("S3 key {id} has no registration on that node; nothing to revoke")
            })?;
            RevokedScope::S3Registration(rid)
        }
    };
    let body = signed_revocation(&c, &node, &scope)?;
    let v = send_signed_json(&c, Method::POST, "/v1/tenant/revocations", &body).await?;
    if args.json {
        println!("{v}");
    } else {
        println!(
            "revoked {} of node {node} for entries dated after {} (through {})",
            v["scope"].as_str().unwrap_or("?"),
            v["after_ms"],
            c.api
        );
    }
    Ok(())
}
