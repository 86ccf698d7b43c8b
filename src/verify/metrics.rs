//! Metrics of location verification: [`LocationCheckMetrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// Metrics of location verification (see [`super::Verifier`]).
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
