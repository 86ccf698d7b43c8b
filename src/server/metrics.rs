//! Metrics of the HTTP server and of admission decisions: [`Metrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route, e.g. `/mutate`.
    pub route: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// Labels of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route, e.g. `/mutate`.
    pub route: &'static str,
}

/// Labels of an admission decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `mutate` or `validate`.
    pub endpoint: &'static str,
    /// `true` or `false`.
    pub allowed: &'static str,
    /// Why (see `admission::Reason`).
    pub reason: &'static str,
}

/// The metric families the server updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by route and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Admission decisions by endpoint, outcome and reason.
    pub decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ])
            }),
            decisions: Family::default(),
        };
        registry.register(
            "savepoint_webhook_http_requests",
            "HTTP requests by route and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "savepoint_webhook_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.latency.clone(),
        );
        registry.register(
            "savepoint_webhook_admission_decisions",
            "Admission decisions by endpoint, outcome and reason",
            metrics.decisions.clone(),
        );
        metrics
    }
}
