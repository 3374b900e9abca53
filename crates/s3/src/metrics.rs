//! The gateway's Prometheus metrics (`s3_` prefix), registered in the node's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The S3 operation (`GetObject`, `PutObject`, ...), or `unknown` when the request
    /// failed before s3s recognised one (a bad signature, for example).
    pub operation: String,
    /// The HTTP status code.
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabel {
    pub operation: String,
}

/// `s3_requests_total{operation,status}`, `s3_request_duration_seconds{operation}` and
/// the server access log's `s3_access_log_{records,records_dropped,objects}_total`.
#[derive(Clone, Debug)]
pub struct S3Metrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: Family<OperationLabel, Histogram>,
    pub(crate) access_log: crate::access_log::AccessLogMetrics,
}

impl S3Metrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
            }),
            access_log: crate::access_log::AccessLogMetrics::default(),
        };
        let r = registry.sub_registry_with_prefix("s3");
        r.register(
            "requests",
            "S3 gateway requests by operation and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "S3 gateway request latency by operation (until the response head)",
            prometheus_client::registry::Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "access_log_records",
            "Server access log records taken by this node",
            m.access_log.recorded.clone(),
        );
        r.register(
            "access_log_records_dropped",
            "Server access log records dropped (buffer caps, or a delivery that could not be made)",
            m.access_log.dropped.clone(),
        );
        r.register(
            "access_log_objects",
            "Server access log objects delivered by this node",
            m.access_log.objects.clone(),
        );
        m
    }

    pub(crate) fn observe(&self, operation: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }
}
