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
        let mut queue = crate::lock(&self.queue);
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

    /// Sends what is queued every second until the node stops.
    pub async fn run(self: std::sync::Arc<Self>, node: String) {
        let Some(endpoint) = self.endpoint.clone() else {
            return;
        };
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the OTLP client; trace export is off");
                return;
            }
        };
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let spans = std::mem::take(&mut *crate::lock(&self.queue));
            if spans.is_empty() {
                continue;
            }
            let body = Self::encode("xnode", &node, &spans);
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(status = %r.status(), %url, "the OTLP collector refused {} spans", spans.len())
                }
                Err(e) => {
                    tracing::warn!(error = %e, %url, "cannot reach the OTLP collector; {} spans lost", spans.len())
                }
            }
        }
    }
}
