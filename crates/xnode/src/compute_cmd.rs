//! Compute commands: deploy, deployments, undeploy, logs, and jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use xnode_deploy::spec::{
    DEPLOYMENT_RECORD_VERSION, DeploymentSpec, JOB_RECORD_VERSION, JobInput, JobSpec, Kind,
    LimitsSpec, PlacementSpec, StorageSpec, deployment_key, job_key,
};

use crate::cli::StorageClientArgs;
use crate::client::print_table;
use crate::storage_cmd::{client, encode_path, get_signed_json, now_ms, send};
use crate::tenant::{Payload, SignedClient};

/// An application manifest (`app.toml`), as a developer writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    pub name: String,
    pub kind: Kind,
    /// A path to a `.wasm` file (relative to the manifest) or a content id.
    pub module: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub placement: PlacementSpec,
    #[serde(default)]
    pub storage: Option<AppStorage>,
    #[serde(default)]
    pub memory_reserve_mb: Option<u64>,
}

/// `[storage]` of an application manifest: the buckets the deployment may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStorage {
    /// Where worker outputs go; always in the scope.
    pub bucket: String,
    /// Further buckets functions may use through `http://store.xnode/<bucket>/<key>`.
    #[serde(default)]
    pub buckets: Vec<String>,
}

impl AppStorage {
    /// The signed storage scope: the key check of each bucket's key, computed here so
    /// that the tenant's signature covers it (nodes accept only keys matching it).
    fn signed(self, key: &xnode_types::SecretKey) -> StorageSpec {
        let data_key = crate::tenant::data_key(key);
        let key_checks = xnode_deploy::spec::key_checks(
            &data_key,
            std::iter::once(self.bucket.as_str()).chain(self.buckets.iter().map(String::as_str)),
        );
        StorageSpec {
            bucket: self.bucket,
            key_checks,
        }
    }
}

fn one() -> u32 {
    1
}

/// The body of a signed create or delete: the record text, its clock and signature.
fn signed(c: &SignedClient, key: String, record: Option<String>) -> anyhow::Result<Value> {
    let hlc = xnode_types::Hlc::new(now_ms(), 0);
    let entry =
        xnode_registry::Entry::sign(&c.key, key, record.clone().map(String::into_bytes), hlc)?;
    Ok(serde_json::json!({
        "record": record,
        "hlc_wall_ms": hlc.wall_ms,
        "hlc_logical": hlc.logical,
        "signature": hex::encode(entry.signature.0),
    }))
}

fn is_content_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn upload_module(c: &SignedClient, path: &Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))?;
    let v: Value = send(
        c.request(
            Method::POST,
            "/v1/modules",
            "",
            Payload::Bytes(bytes),
            false,
        )
        .await?
        .header("content-type", "application/wasm"),
        &c.api,
    )
    .await?
    .json()
    .await?;
    v["module"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the node did not return a module id"))
}

pub async fn deploy(
    manifest_path: &Path,
    replicas: Option<u32>,
    args: StorageClientArgs,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: AppManifest = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid manifest", manifest_path.display()))?;
    let c = client(&args)?;
    let module = if is_content_id(&manifest.module) {
        manifest.module.to_ascii_lowercase()
    } else {
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        upload_module(&c, &base.join(&manifest.module)).await?
    };
    let spec = DeploymentSpec {
        v: DEPLOYMENT_RECORD_VERSION,
        name: manifest.name.clone(),
        kind: manifest.kind,
        module,
        replicas: replicas.unwrap_or(manifest.replicas),
        limits: manifest.limits,
        env: manifest.env,
        args: manifest.args,
        allowed_hosts: manifest.allowed_hosts,
        placement: manifest.placement,
        storage: manifest.storage.map(|s| s.signed(&c.key)),
        memory_reserve_mb: manifest.memory_reserve_mb,
        owner: c.key.public().to_hex(),
        created_ms: now_ms(),
    };
    spec.validate().map_err(|e| anyhow::anyhow!(e))?;
    let record = serde_json::to_string(&spec)?;
    let body = signed(
        &c,
        deployment_key(&c.key.public(), &spec.name),
        Some(record),
    )?;
    let with_data_key = spec.storage.is_some() || spec.kind == Kind::Job;
    let request = c
        .request(
            Method::POST,
            "/v1/deployments",
            "",
            Payload::json(&body)?,
            with_data_key,
        )
        .await?;
    let v: Value = send(request, &c.api).await?.json().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "deployed {} ({}, module {}, {} replica(s))",
            spec.name,
            spec.kind.as_str(),
            &spec.module[..12],
            spec.replicas
        );
        if spec.kind == Kind::Http {
            println!("  try: curl {}/fn/{}/", c.api, spec.name);
        }
    }
    Ok(())
}

pub async fn deployments(args: StorageClientArgs) -> anyhow::Result<()> {
    let c = client(&args)?;
    let v: Value = get_signed_json(&c, "/v1/deployments", "").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| {
                    let running = d["replicas"].as_array().map(|r| r.len()).unwrap_or(0);
                    let nodes = d["replicas"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .map(|x| {
                                    let id = x["node"].as_str().unwrap_or("");
                                    format!(
                                        "{}({})",
                                        &id[id.len().saturating_sub(6)..],
                                        x["state"].as_str().unwrap_or("")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    vec![
                        d["name"].as_str().unwrap_or("").to_owned(),
                        d["kind"].as_str().unwrap_or("").to_owned(),
                        format!("{running}/{}", d["replicas_wanted"]),
                        d["module"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(12)
                            .collect(),
                        nodes,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        println!("no deployments yet; deploy one with `xnode deploy app.toml`");
    } else {
        print_table(&["NAME", "KIND", "REPLICAS", "MODULE", "NODES"], &rows);
    }
    Ok(())
}

pub async fn undeploy(name: &str, args: StorageClientArgs) -> anyhow::Result<()> {
    let c = client(&args)?;
    let body = signed(&c, deployment_key(&c.key.public(), name), None)?;
    let path = format!("/v1/deployments/{}", encode_path(name, false));
    send(
        c.request(Method::DELETE, &path, "", Payload::json(&body)?, false)
            .await?,
        &c.api,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::json!({ "undeployed": name }));
    } else {
        println!("undeployed {name}");
    }
    Ok(())
}

pub async fn logs(name: &str, follow: bool, args: StorageClientArgs) -> anyhow::Result<()> {
    let c = client(&args)?;
    let path = format!("/v1/deployments/{}/logs", encode_path(name, false));
    let mut last_seen: Option<(u64, String)> = None;
    loop {
        let v: Value = get_signed_json(&c, &path, "").await?;
        let lines = v.as_array().cloned().unwrap_or_default();
        if args.json && !follow {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        for line in &lines {
            let ts = line["ts_ms"].as_u64().unwrap_or(0);
            let message = line["message"].as_str().unwrap_or("");
            let node = line["node"].as_str().unwrap_or("");
            let key = (ts, format!("{node}{message}"));
            if last_seen.as_ref().is_some_and(|seen| key <= *seen) {
                continue;
            }
            let trace = line["trace_id"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(|t| format!(" trace={}", &t[..8.min(t.len())]))
                .unwrap_or_default();
            println!(
                "{} {} {:<7}{} {}",
                crate::client::rfc3339_ms(ts),
                &node[node.len().saturating_sub(6)..],
                line["stream"].as_str().unwrap_or(""),
                trace,
                message
            );
            last_seen = Some(key);
        }
        if !follow {
            if lines.is_empty() {
                println!("no log lines for {name} yet");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Options of `xnode job run`.
pub struct JobRunOptions {
    pub deployment: String,
    pub id: Option<String>,
    pub args: Vec<String>,
    pub inputs: Vec<String>,
    pub output_bucket: String,
    pub stdin_file: Option<PathBuf>,
    pub wait: bool,
}

pub async fn job_run(o: JobRunOptions, args: StorageClientArgs) -> anyhow::Result<()> {
    let c = client(&args)?;
    let id = o.id.unwrap_or_else(|| {
        format!(
            "{}-{}",
            o.deployment,
            hex::encode(rand::random::<[u8; 4]>())
        )
    });
    let mut inputs = Vec::new();
    for spec in &o.inputs {
        // NAME=BUCKET/KEY
        let (name, target) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--input expects NAME=BUCKET/KEY, got {spec:?}"))?;
        let (bucket, key) = target
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--input expects NAME=BUCKET/KEY, got {spec:?}"))?;
        inputs.push(JobInput {
            name: name.into(),
            bucket: bucket.into(),
            key: key.into(),
        });
    }
    let stdin = match &o.stdin_file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => Vec::new(),
    };
    let job = JobSpec {
        v: JOB_RECORD_VERSION,
        id: id.clone(),
        deployment: o.deployment,
        args: o.args,
        stdin_b64: base64::engine::general_purpose::STANDARD.encode(stdin),
        inputs,
        output_bucket: o.output_bucket,
        key_checks: BTreeMap::new(),
        owner: c.key.public().to_hex(),
        created_ms: now_ms(),
    };
    // The checks of the keys of the job's buckets, signed with the record: its runner
    // accepts only keys that match them.
    let job = JobSpec {
        key_checks: xnode_deploy::spec::key_checks(&crate::tenant::data_key(&c.key), job.buckets()),
        ..job
    };
    let body = signed(
        &c,
        job_key(&c.key.public(), &id),
        Some(serde_json::to_string(&job)?),
    )?;
    let v: Value = send(
        c.request(Method::POST, "/v1/jobs", "", Payload::json(&body)?, true)
            .await?,
        &c.api,
    )
    .await?
    .json()
    .await?;
    if !o.wait {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("submitted job {id}; follow it with `xnode job status {id}`");
        }
        return Ok(());
    }
    loop {
        let v = job_json(&c, &id).await?;
        let state = v["state"].as_str().unwrap_or("");
        if state == "succeeded" || state == "failed" {
            print_job(&v, args.json)?;
            if state == "failed" {
                anyhow::bail!("job {id} failed");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn job_json(c: &SignedClient, id: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/jobs/{}", encode_path(id, false));
    get_signed_json(c, &path, "").await
}

fn print_job(v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    println!("job      {}", v["id"].as_str().unwrap_or(""));
    println!("state    {}", v["state"].as_str().unwrap_or(""));
    let run = &v["run"];
    if !run.is_null() {
        println!("node     {}", run["node"].as_str().unwrap_or(""));
        if let Some(code) = run["exit_code"].as_i64() {
            println!("exit     {code}");
        }
        if let Some(reason) = run["reason"].as_str() {
            println!("reason   {reason}");
        }
        println!("fuel     {}", run["fuel"]);
        println!("wall     {} ms", run["wall_ms"]);
        if let Some(outputs) = run["outputs"].as_array() {
            for o in outputs {
                println!("output   {}", o.as_str().unwrap_or(""));
            }
        }
    }
    println!("attempts {}", v["attempts"]);
    Ok(())
}

pub async fn job_status(id: &str, args: StorageClientArgs) -> anyhow::Result<()> {
    let c = client(&args)?;
    let v = job_json(&c, id).await?;
    print_job(&v, args.json)
}

pub async fn job_output(id: &str, file: &str, args: StorageClientArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let c = client(&args)?;
    let path = format!("/v1/jobs/{}/output", encode_path(id, false));
    let query = format!("file={}", encode_path(file, false));
    let bytes = send(
        c.request(Method::GET, &path, &query, Payload::Empty, true)
            .await?,
        &c.api,
    )
    .await?
    .bytes()
    .await?;
    let mut out = tokio::io::stdout();
    out.write_all(&bytes).await?;
    out.flush().await?;
    Ok(())
}
