//! Metrics of the reconciler: repair counters ([`ReconcileMetrics`]) and the latest audit
//! findings by rule ([`AuditFindings`]), read at scrape time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::plan::{Finding, count_by_rule};
use crate::gauges::{encode_gauge, encode_gauges};

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
    pub fn set(&self, findings: &[Finding]) {
        let counts = count_by_rule(findings)
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

/// Whether this replica holds the reconciler's Lease, read at scrape time: summed over
/// replicas it says whether any applies repairs.
#[derive(Debug)]
pub struct LeaderGauge(pub Arc<AtomicBool>);

impl Collector for LeaderGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_gauge(
            &mut encoder,
            "savepoint_webhook_reconcile_leader",
            "1 while this replica holds the reconciler's Lease and applies repairs, else 0",
            i64::from(self.0.load(Ordering::Acquire)),
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

/// Labels of a report write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportWriteLabels {
    /// `apply` or `delete`.
    pub operation: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// Counters of the Reports the leader writes (`--reports`).
#[derive(Clone, Debug, Default)]
pub struct ReportMetrics {
    /// Report writes by operation and result.
    pub writes: Family<ReportWriteLabels, Counter>,
}

impl ReportMetrics {
    /// Creates the family and registers it in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "savepoint_webhook_report_writes",
            "Writes of openreports.io Reports by operation and result",
            metrics.writes.clone(),
        );
        metrics
    }
}
