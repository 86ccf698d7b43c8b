//! Prometheus metrics: [`Metrics`] holds the request and decision families; index sizes
//! are read by [`IndexCollector`] at scrape time, never kept in globals.

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::index::Index;

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
    /// Creates the families and registers them, with the index collector, in `registry`.
    pub fn register(registry: &mut Registry, index: Arc<RwLock<Index>>) -> Self {
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
        registry.register_collector(Box::new(IndexCollector(index)));
        metrics
    }
}

/// Labels of a location check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocationCheckLabels {
    /// `verified`, `missing`, `not_flink`, `unknown_version`, `checkpoint_mismatch` or
    /// `could_not_check`.
    pub outcome: &'static str,
    /// `read` (this check read the store), `coalesced` (it waited for another check's
    /// read) or `cache`.
    pub source: &'static str,
}

/// Metrics of location verification (see `verify::Verifier`).
#[derive(Clone, Debug)]
pub struct LocationCheckMetrics {
    /// Checks by outcome and source.
    pub checks: Family<LocationCheckLabels, Counter>,
    /// Duration of the reads of `_metadata` headers (cache hits and coalesced waits are
    /// not reads).
    pub duration: Histogram,
}

impl LocationCheckMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            checks: Family::default(),
            duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        };
        registry.register(
            "savepoint_webhook_location_checks",
            "Savepoint location checks by outcome and source",
            metrics.checks.clone(),
        );
        registry.register(
            "savepoint_webhook_location_check_duration_seconds",
            "Duration of reads of a location's _metadata header",
            metrics.duration.clone(),
        );
        metrics
    }
}

/// Reads index sizes at scrape time.
#[derive(Debug)]
pub struct IndexCollector(pub Arc<RwLock<Index>>);

impl Collector for IndexCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sizes = match self.0.read() {
            Ok(index) => index.sizes(),
            Err(poisoned) => poisoned.into_inner().sizes(),
        };
        encode_gauges(
            &mut encoder,
            "savepoint_webhook_index_entries",
            "Entries in the in-memory indexes by kind",
            "kind",
            [
                ("deployments", sizes.deployments),
                ("savepoints", sizes.savepoints),
                ("locations", sizes.locations),
                ("unindexed_savepoints", sizes.unindexed_savepoints),
                ("provisional", sizes.provisional),
            ],
        )
    }
}

/// Labels of a reconciler repair.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    /// The rule repaired.
    pub rule: &'static str,
    /// `applied`, `conflict` or `failed`.
    pub result: &'static str,
}

/// Counters of the reconciler.
#[derive(Clone, Debug, Default)]
pub struct ReconcileMetrics {
    /// Repairs by rule and result.
    pub repairs: Family<RepairLabels, Counter>,
}

/// The latest audit findings by rule, shared between the reconcile loop and the scrape.
#[derive(Clone, Debug, Default)]
pub struct AuditFindings(Arc<RwLock<Vec<(&'static str, usize)>>>);

impl AuditFindings {
    /// Replaces the counts with those of `findings`.
    pub fn set(&self, findings: &[crate::reconcile::plan::Finding]) {
        let counts = crate::reconcile::plan::count_by_rule(findings)
            .into_iter()
            .map(|(rule, count)| (rule.as_str(), count))
            .collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = counts;
    }
}

impl Collector for AuditFindings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        encode_gauges(
            &mut encoder,
            "savepoint_webhook_audit_findings",
            "Stored Savepoints breaking a rule, by rule, as of the latest reconcile pass",
            "rule",
            counts,
        )
    }
}

impl ReconcileMetrics {
    /// Creates the families and registers them, with the findings gauge, in `registry`.
    pub fn register(registry: &mut Registry, findings: AuditFindings) -> Self {
        let metrics = Self::default();
        registry.register(
            "savepoint_webhook_reconcile_repairs",
            "Reconciler repairs by rule and result",
            metrics.repairs.clone(),
        );
        registry.register_collector(Box::new(findings));
        metrics
    }
}

/// Encodes one gauge family with a single label, read at scrape time.
fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'static str, usize)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (value, count) in values {
        let labels = [(label, value)];
        ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
