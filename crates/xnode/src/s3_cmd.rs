//! `xnode key s3 create|ls|rm`: S3 access keys, registered on the nodes a tenant chooses.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::cli::S3KeyAction;
use crate::storage_cmd::send;
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
            let v: Value = send(
                c.request(Method::GET, "/v1/s3/keys", "", Payload::Empty, false)
                    .await?,
                &c.api,
            )
            .await?
            .json()
            .await?;
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
                send(
                    c.request(Method::DELETE, &path, "", Payload::Empty, false)
                        .await?,
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
