//! OpenTelemetry trace export: the spans of function calls (the gateway's, each forward
//! to a replica, and the replica's invocation), batched and sent as OTLP/HTTP JSON to a
//! collector. Off unless `otlp_endpoint` is configured.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// Spans buffered between flushes; beyond this, new spans are dropped (and counted) rather
/// than letting a dead collector grow memory.
const MAX_QUEUED: usize = 10_000;

/// One finished span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// 2 = server, 3 = client (OTLP `SpanKind`).
    pub kind: u8,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(String, String)>,
    pub error: bool,
}

#[derive(Default)]
pub struct SpanExporter {
    endpoint: Option<String>,
    queue: Mutex<Vec<SpanRecord>>,
    dropped: std::sync::atomic::AtomicU64,
}

pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl SpanExporter {
    pub fn new(endpoint: Option<String>) -> SpanExporter {
        SpanExporter {
            endpoint,
            ..SpanExporter::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    pub fn record(&self, span: SpanRecord) {
        if !self.enabled() {
            return;
        }
        let mut queue = xnode_types::lock(&self.queue);
        if queue.len() >= MAX_QUEUED {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        queue.push(span);
    }

    /// The OTLP/HTTP JSON body for `spans`.
    pub fn encode(service: &str, node: &str, spans: &[SpanRecord]) -> Value {
        let spans: Vec<Value> = spans
            .iter()
            .map(|s| {
                let mut span = json!({
                    "traceId": s.trace_id,
                    "spanId": s.span_id,
                    "name": s.name,
                    "kind": s.kind,
                    "startTimeUnixNano": s.start_unix_nanos.to_string(),
                    "endTimeUnixNano": s.end_unix_nanos.to_string(),
                    "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
                    "status": {"code": if s.error { 2 } else { 1 }},
                });
                if !s.parent_span_id.is_empty() {
                    span["parentSpanId"] = json!(s.parent_span_id);
                }
                span
            })
            .collect();
        json!({
            "resourceSpans": [{
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": service}},
                    {"key": "service.instance.id", "value": {"stringValue": node}},
                ]},
                "scopeSpans": [{
                    "scope": {"name": "xnode", "version": xnode_types::SOFTWARE_VERSION},
                    "spans": spans,
                }],
            }],
        })
    }

    /// The worker that sends what is queued every second, if an endpoint is configured.
    pub fn export_worker(
        self: std::sync::Arc<Self>,
        node: String,
    ) -> Option<xnode_worker::Periodic<impl FnMut() -> ExportStep + Send + 'static>> {
        let endpoint = self.endpoint.clone()?;
        let url: std::sync::Arc<str> =
            format!("{}/v1/traces", endpoint.trim_end_matches('/')).into();
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the OTLP client; trace export is off");
                return None;
            }
        };
        let node: std::sync::Arc<str> = node.into();
        Some(xnode_worker::periodic(
            "otlp-export",
            xnode_worker::Interval::AfterFirstPeriod(Duration::from_secs(1)),
            move || {
                let (this, client, url, node) =
                    (self.clone(), client.clone(), url.clone(), node.clone());
                Box::pin(async move {
                    let spans = std::mem::take(&mut *xnode_types::lock(&this.queue));
                    if spans.is_empty() {
                        return Ok(0);
                    }
                    let count = spans.len() as u64;
                    let body = Self::encode("xnode", &node, &spans);
                    match client.post(&*url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => Ok(count),
                        Ok(r) => Err(xnode_worker::WorkerError::new(format!(
                            "the OTLP collector at {url} refused {count} spans: {}",
                            r.status()
                        ))),
                        Err(e) => Err(xnode_worker::WorkerError::new(format!(
                            "cannot reach the OTLP collector at {url}; {count} spans lost: {e}"
                        ))),
                    }
                }) as ExportStep
            },
        ))
    }
}

/// One export step of the OTLP worker.
pub type ExportStep = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u64, xnode_worker::WorkerError>> + Send>,
>;
