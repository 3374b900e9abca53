//! Compute routes: modules, deployments, jobs, logs, and the function gateway `/fn/`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xnode_deploy::gateway::{FnCall, MAX_REQUEST_BODY, TraceContext};
use xnode_deploy::spec::{self, DeploymentSpec, JobRun, JobSpec, RunState};
use xnode_deploy::{ComputeOpError, Deployment};
use xnode_registry::Entry;
use xnode_types::{Hlc, PublicKeyBytes, SignatureBytes};

use crate::auth::data_key;
use crate::error::ApiError;
use crate::storage_routes::{AppState, SignedBucketChange, json_body, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/modules", post(put_module))
        .route(
            "/v1/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/v1/deployments/{name}",
            get(get_deployment).delete(delete_deployment),
        )
        .route("/v1/deployments/{name}/logs", get(deployment_logs))
        .route("/v1/jobs", post(create_job))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/output", get(job_output))
        .route("/fn/{name}", any(function))
        .route("/fn/{name}/", any(function))
        .route("/fn/{name}/{*rest}", any(function))
}

impl From<ComputeOpError> for ApiError {
    fn from(e: ComputeOpError) -> Self {
        let (status, code) = match &e {
            ComputeOpError::NoSuchDeployment(_) => (StatusCode::NOT_FOUND, "no_such_deployment"),
            ComputeOpError::NoSuchJob(_) => (StatusCode::NOT_FOUND, "no_such_job"),
            ComputeOpError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ComputeOpError::AccessDenied(_) => (StatusCode::FORBIDDEN, "access_denied"),
            ComputeOpError::NameTaken(_) => (StatusCode::CONFLICT, "deployment_name_taken"),
            // 403, as for storage quotas: a retry cannot fit a quota.
            ComputeOpError::QuotaExceeded { .. } | ComputeOpError::RegistryQuota(_) => {
                (StatusCode::FORBIDDEN, "quota_exceeded")
            }
            ComputeOpError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_replica_available")
            }
            ComputeOpError::Guest {
                status,
                code,
                message,
            } => {
                return ApiError::Compute {
                    status: StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                    code: code.clone(),
                    message: format!("function failed: {message}"),
                };
            }
            ComputeOpError::Storage(inner) => {
                return ApiError::from(xnode_storage::StorageError::Internal(inner.to_string()));
            }
            ComputeOpError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::Compute {
            status,
            code: code.to_owned(),
            message: e.to_string(),
        }
    }
}

/// An uploaded module.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ModuleView {
    /// Content id (BLAKE3, hex) to name in a deployment's `module`.
    pub module: String,
    pub size: usize,
}

#[utoipa::path(post, path = "/v1/modules", request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = ModuleView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 429, description = "the tenant's module upload budget on this node (`compute.module_upload_mb_per_hour`) is spent; Retry-After says when it has room", body = crate::error::ErrorBody)))]
pub(crate) async fn put_module(
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<ModuleView>), ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, spec::MAX_MODULE_BYTES + 1)
        .await
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "a module may have at most {} MiB",
                spec::MAX_MODULE_BYTES >> 20
            ))
        })?;
    crate::auth::check_body_hash(&parts.headers, &bytes)?;
    let size = bytes.len();
    // Every module is stored on several nodes until garbage collection finds it unused:
    // a tenant's uploads through this node are bounded in bytes per hour.
    state
        .node
        .module_upload_budget()
        .take(tenant, size as f64, std::time::Instant::now())
        .map_err(|refused| ApiError::RateLimited {
            retry_after: refused.retry_after,
        })?;
    let module = state.node.compute().put_module(bytes).await?;
    Ok((StatusCode::CREATED, Json(ModuleView { module, size })))
}

/// One replica of a deployment and the node running it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReplicaView {
    pub node: String,
    pub state: String,
    pub since_ms: u64,
    pub restarts: u32,
    /// This node's gateway sees the replica as far slower or failing more than its peers.
    pub degraded: bool,
}

/// A deployment, its spec and where it runs.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeploymentView {
    pub name: String,
    pub kind: String,
    pub owner: String,
    pub module: String,
    pub replicas_wanted: u32,
    /// The nodes placement chose, best first.
    pub placement: Vec<String>,
    /// What nodes report actually running.
    pub replicas: Vec<ReplicaView>,
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// `/fn/<name>/` on any node, for http deployments.
    pub url_path: Option<String>,
}

fn deployment_view(state: &AppState, d: &Deployment) -> DeploymentView {
    let compute = state.node.compute();
    let degraded = compute.degraded_nodes(&d.spec.name);
    let placement = match d.spec.kind {
        spec::Kind::Job => Vec::new(),
        _ => compute
            .place(&d.spec)
            .iter()
            .map(|n| n.to_string())
            .collect(),
    };
    DeploymentView {
        name: d.spec.name.clone(),
        kind: d.spec.kind.as_str().to_owned(),
        owner: d.owner.to_hex(),
        module: d.spec.module.clone(),
        replicas_wanted: d.spec.replicas,
        placement,
        replicas: compute
            .replicas_of(&d.spec.name)
            .into_iter()
            .map(|(node, r)| ReplicaView {
                degraded: degraded.contains(&node),
                node: node.to_string(),
                state: r.state.to_string(),
                since_ms: r.since_ms,
                restarts: r.restarts,
            })
            .collect(),
        spec: serde_json::to_value(&d.spec).unwrap_or_default(),
        url_path: (d.spec.kind == spec::Kind::Http).then(|| format!("/fn/{}/", d.spec.name)),
    }
}

#[utoipa::path(get, path = "/v1/deployments", responses((status = 200, body = [DeploymentView]), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_deployments(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    Ok(Json(
        state
            .node
            .compute()
            .deployments()
            .iter()
            .filter(|d| d.owner == tenant)
            .map(|d| deployment_view(&state, d))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/deployments/{name}", params(("name" = String, Path)), responses((status = 200, body = DeploymentView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_deployment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    let d = state
        .node
        .compute()
        .deployment(&name)
        .ok_or(ComputeOpError::NoSuchDeployment(name))?;
    Ok(Json(deployment_view(&state, &d)))
}

fn entry_from(
    key: String,
    tenant: PublicKeyBytes,
    change: SignedBucketChange,
) -> Result<Entry, ApiError> {
    let signature = xnode_types::request_auth::parse_signature(&change.signature)
        .ok_or_else(|| ApiError::BadRequest("signature must be 64 bytes of hex".into()))?;
    Ok(Entry {
        key,
        value: change.record.map(String::into_bytes),
        hlc: Hlc::new(change.hlc_wall_ms, change.hlc_logical),
        owner: tenant,
        signature: SignatureBytes(signature.0),
    })
}

#[utoipa::path(post, path = "/v1/deployments", request_body = SignedBucketChange,
    responses((status = 201, body = DeploymentView), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_deployment(
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let key = data_key(req.headers()).ok();
    let change: SignedBucketChange = json_body(req).await?;
    let record = change
        .record
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("a deployment needs its record".into()))?;
    let spec: DeploymentSpec = serde_json::from_str(record)
        .map_err(|e| ApiError::BadRequest(format!("the deployment record is not valid: {e}")))?;
    let entry = entry_from(spec::deployment_key(&tenant, &spec.name), tenant, change)?;
    let (applied, spec) = state.node.compute().deploy(&tenant, entry, key).await?;
    state.node.gossip_entry(&applied).await;
    let d = state
        .node
        .compute()
        .deployment(&spec.name)
        .ok_or_else(|| ApiError::Internal("the deployment vanished".into()))?;
    Ok((StatusCode::CREATED, Json(deployment_view(&state, &d))))
}

#[utoipa::path(delete, path = "/v1/deployments/{name}", params(("name" = String, Path)), request_body = SignedBucketChange,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_deployment(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let change: SignedBucketChange = json_body(req).await?;
    if change.record.is_some() {
        return Err(ApiError::BadRequest("a deletion carries no record".into()));
    }
    let entry = entry_from(spec::deployment_key(&tenant, &name), tenant, change)?;
    let applied = state.node.compute().undeploy(&tenant, &name, entry)?;
    state.node.gossip_entry(&applied).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/deployments/{name}/logs", params(("name" = String, Path)),
    responses((status = 200, description = "recent log lines from every node, oldest first"), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn deployment_logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Json<Vec<xnode_deploy::proto::LogLine>>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let auth = logs_auth(&req)?;
    let compute = state.node.compute();
    match compute.deployment(&name) {
        Some(d) if d.owner != tenant => {
            return Err(ComputeOpError::AccessDenied(format!(
                "deployment {name:?} belongs to another tenant"
            ))
            .into());
        }
        _ => {}
    }
    Ok(Json(compute.gather_logs(&tenant, &name, &auth).await))
}

/// The tenant's signature over this (verified) request, which peers need to answer with
/// their lines of the logs. It carries the hash of the data key header, never the key.
fn logs_auth(req: &Request) -> Result<xnode_deploy::proto::LogsAuth, ApiError> {
    use xnode_types::request_auth::{
        HEADER_CONTENT_BLAKE3, HEADER_DATA_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
        data_key_hash,
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthenticated(format!("missing the {name} header")))
    };
    let signature = xnode_types::request_auth::parse_signature(header(HEADER_SIGNATURE)?)
        .ok_or_else(|| ApiError::BadSignature("the signature must be 64 bytes of hex".into()))?;
    let data_key = match req.headers().get(HEADER_DATA_KEY) {
        Some(_) => Some(header(HEADER_DATA_KEY)?),
        None => None,
    };
    Ok(xnode_deploy::proto::LogsAuth {
        query: req.uri().query().unwrap_or("").to_owned(),
        timestamp_ms: header(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| ApiError::Unauthenticated("the timestamp must be a number".into()))?,
        nonce: header(HEADER_NONCE)?.to_owned(),
        content_blake3: header(HEADER_CONTENT_BLAKE3)?.to_owned(),
        data_key_blake3: data_key_hash(data_key),
        signature: signature.0.to_vec(),
    })
}

/// A job and its latest run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub deployment: String,
    /// `pending`, `running`, `succeeded` or `failed`.
    pub state: String,
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
    #[schema(value_type = Object)]
    pub run: Option<serde_json::Value>,
    /// Every run any node reported (a job whose node died runs again elsewhere).
    pub attempts: usize,
}

#[utoipa::path(post, path = "/v1/jobs", request_body = SignedBucketChange,
    responses((status = 201, body = JobView), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn create_job(
    State(state): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let key = data_key(req.headers())?;
    let change: SignedBucketChange = json_body(req).await?;
    let record = change
        .record
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("a job needs its record".into()))?;
    let job: JobSpec = serde_json::from_str(record)
        .map_err(|e| ApiError::BadRequest(format!("the job record is not valid: {e}")))?;
    let entry = entry_from(spec::job_key(&tenant, &job.id), tenant, change)?;
    let applied = state.node.compute().submit_job(&tenant, entry, key).await?;
    state.node.gossip_entry(&applied).await;
    Ok((StatusCode::CREATED, Json(job_view(&state, &tenant, &job))))
}

fn job_view(state: &AppState, tenant: &PublicKeyBytes, job: &JobSpec) -> JobView {
    let runs: Vec<JobRun> = state.node.compute().job_runs(tenant, &job.id);
    // A finished run wins over running ones; among equals, the latest.
    let best = runs
        .iter()
        .max_by_key(|r| (r.state != RunState::Running, r.started_ms))
        .cloned();
    let state_text = match &best {
        None => "pending",
        Some(r) => match r.state {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
        },
    };
    JobView {
        id: job.id.clone(),
        deployment: job.deployment.clone(),
        state: state_text.to_owned(),
        job: serde_json::to_value(job).unwrap_or_default(),
        run: best.map(|r| serde_json::to_value(r).unwrap_or_default()),
        attempts: runs.len(),
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<JobView>, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let job = state
        .node
        .compute()
        .job(&tenant, &id)
        .ok_or(ComputeOpError::NoSuchJob(id))?;
    Ok(Json(job_view(&state, &tenant, &job)))
}

#[derive(Deserialize)]
pub(crate) struct OutputQuery {
    /// `stdout` (default), `stderr`, or a path under `/out`.
    file: Option<String>,
}

#[utoipa::path(get, path = "/v1/jobs/{id}/output", params(("id" = String, Path), ("file" = Option<String>, Query)),
    responses((status = 200, description = "the output bytes"), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn job_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<OutputQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, req.method(), req.uri(), req.headers())?;
    let key = data_key(req.headers())?;
    let job = state
        .node
        .compute()
        .job(&tenant, &id)
        .ok_or_else(|| ComputeOpError::NoSuchJob(id.clone()))?;
    let file = query.file.unwrap_or_else(|| "stdout".into());
    let object = match file.as_str() {
        "stdout" | "stderr" => format!("jobs/{id}/{file}"),
        other => format!(
            "jobs/{id}/out/{}",
            other.trim_start_matches("/out/").trim_start_matches('/')
        ),
    };
    let read = state
        .node
        .storage()
        .get_object(&tenant, &job.output_bucket, &object, &key, None)
        .await?;
    let mut response = Response::new(Body::from_stream(read.body));
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// Extension the measuring middleware reads to count fuel with the request.
#[derive(Clone, Copy, Debug)]
pub struct FunctionFuel(pub u64);

pub(crate) async fn function(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/fn/").unwrap_or("");
    let (name, _) = rest.split_once('/').unwrap_or((rest, ""));
    let name = name.to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let trace = TraceContext::from_header(
        req.headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    // An unknown name is refused before the body is read.
    state.node.compute().check_http(&name)?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(request_body_error)?;
    let trace_id = trace.trace_id.clone();
    let call = FnCall {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
        trace,
    };
    let answer = state.node.compute().handle_http(&name, call).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let mut response = ApiError::from(e).into_response();
            if let Ok(v) =
                HeaderValue::from_str(&format!("00-{trace_id}-{}-01", TraceContext::new_span()))
            {
                response.headers_mut().insert("traceparent", v);
            }
            return Ok(response);
        }
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = answer.headers;
    response.headers_mut().remove("content-length");
    confine_function_response(response.headers_mut());
    let compute = state.node.compute();
    let served_by = if answer.served_by == state.node.id() {
        HeaderValue::from_str(compute.node_name())
    } else {
        HeaderValue::from_str(&answer.served_by.to_string())
    };
    if let Ok(v) = served_by {
        response.headers_mut().insert("x-xnode-served-by", v);
    }
    response.extensions_mut().insert(FunctionFuel(answer.fuel));
    Ok(response)
}

/// Says why a function request's body could not be read: the client stopped sending, or
/// it sent more than a function may take.
fn request_body_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(body) = err.downcast_ref::<xnode_serve::BodyError>() {
            return ApiError::Compute {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout".into(),
                message: body.to_string(),
            };
        }
        source = err.source();
    }
    ApiError::Compute {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "request_too_large".into(),
        message: format!(
            "a function request body may have at most {} MiB",
            MAX_REQUEST_BODY >> 20
        ),
    }
}

/// What a function's response may never do: functions are served on the same origin as
/// the Studio, which keeps a tenant's key in the browser. Every function response runs in
/// a sandbox without `allow-same-origin`, so a page a guest returns gets an opaque origin:
/// its scripts can run, but cannot read the Studio's storage or call the API with the
/// user's credentials. A guest may not set cookies or clear the origin's data, and the
/// browser may not guess a more dangerous content type than the one declared.
pub(crate) fn confine_function_response(headers: &mut axum::http::HeaderMap) {
    for name in ["set-cookie", "clear-site-data", "content-security-policy"] {
        headers.remove(name);
    }
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(FUNCTION_CSP),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// The sandbox of every function response: scripts, forms, pop-ups and downloads work,
/// but the page has an opaque origin (no `allow-same-origin`).
pub const FUNCTION_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

#[cfg(test)]
mod confine_tests {
    use super::*;

    #[test]
    fn a_guest_cannot_lift_the_sandbox_or_touch_cookies_and_site_data() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        headers.insert("set-cookie", HeaderValue::from_static("session=stolen"));
        headers.insert("clear-site-data", HeaderValue::from_static("\"storage\""));
        headers.insert(
            "content-security-policy",
            HeaderValue::from_static("sandbox allow-same-origin allow-scripts"),
        );
        confine_function_response(&mut headers);
        assert!(headers.get("set-cookie").is_none());
        assert!(headers.get("clear-site-data").is_none());
        let csp: Vec<_> = headers.get_all("content-security-policy").iter().collect();
        assert_eq!(csp, [FUNCTION_CSP]);
        assert!(!FUNCTION_CSP.contains("allow-same-origin"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["content-type"], "text/html");
    }
}
