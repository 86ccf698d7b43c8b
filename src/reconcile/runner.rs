//! The reconcile loop: [`Reconciler::run`] plans a pass every interval on every replica
//! (so each exports the audit gauge) and, on the leader only, applies the repairs. Each
//! repair is a JSON Patch whose first operation tests `metadata.resourceVersion`, so a
//! concurrent change is never clobbered: the repair fails and the next pass re-plans.
//! With a [`ReportSchedule`] the leader also keeps the `openreports.io` Reports current,
//! at most once per its interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::metrics::{AuditFindings, ReconcileMetrics, RepairLabels};
use super::plan::{Finding, Plan, Repair, plan};
use super::publish::ReportWriter;
use crate::domain::Policy;
use crate::index::{RecordStore, SavepointRecord, Store};
use crate::readiness::Readiness;
use crate::resources::{GROUP, Savepoint, VERSION};

/// Repairs applied at once.
const CONCURRENT_REPAIRS: usize = 8;

/// Everything one reconcile loop needs.
pub struct Reconciler {
    /// Client for patches and Events.
    pub client: Client,
    /// The admission index (Deployments are read from it).
    pub store: Arc<Store>,
    /// Stored Savepoints.
    pub records: RecordStore,
    /// Decision settings (location rules, scope).
    pub policy: Arc<Policy>,
    /// True while this replica holds the Lease.
    pub leader: Arc<AtomicBool>,
    /// Whether the watches have synced.
    pub readiness: Arc<Readiness>,
    /// Time between passes.
    pub interval: Duration,
    /// This replica's identity, for Events.
    pub identity: String,
    /// Repair counters.
    pub metrics: ReconcileMetrics,
    /// Findings by rule, exported as a gauge.
    pub findings: AuditFindings,
    /// The Reports to keep current, if any.
    pub reports: Option<ReportSchedule>,
}

/// Outcome of one repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairResult {
    /// Patched.
    Applied,
    /// The object changed since it was read; the next pass re-plans.
    Conflict,
    /// The API refused or could not be reached.
    Failed,
}

impl RepairResult {
    fn as_str(self) -> &'static str {
        match self {
            RepairResult::Applied => "applied",
            RepairResult::Conflict => "conflict",
            RepairResult::Failed => "failed",
        }
    }
}

/// The Reports the leader keeps current (`--reports`), written at most once per `every`.
pub struct ReportSchedule {
    /// Writes the reports.
    pub writer: ReportWriter,
    /// Least time between two writes.
    pub every: Duration,
}

impl Reconciler {
    /// Plans the current state: the Savepoints it saw, and the plan.
    pub fn plan_now(&self) -> (Vec<SavepointRecord>, Plan) {
        let records = self.records.snapshot();
        let plan = plan(&records, &*self.store.read(), &self.policy);
        (records, plan)
    }

    /// Runs passes until the process stops.
    pub async fn run(self) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "savepoint-webhook".into(),
                instance: Some(self.identity.clone()),
            },
        );
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_report: Option<Instant> = None;
        loop {
            ticker.tick().await;
            if !self.readiness.synced() {
                continue;
            }
            let (records, plan) = self.plan_now();
            self.findings.set(&plan.findings);
            if !self.leader.load(Ordering::Acquire) {
                continue;
            }
            let applied = self.repair(plan.repairs, &recorder).await;
            if let Some(reports) = &self.reports
                && last_report.is_none_or(|at| at.elapsed() >= reports.every)
            {
                last_report = Some(Instant::now());
                let findings = remaining(plan.findings, &applied);
                match reports.writer.publish(&records, &findings, None).await {
                    Ok(published)
                        if published.applied + published.deleted + published.failed > 0 =>
                    {
                        tracing::info!(
                            written = published.applied,
                            deleted = published.deleted,
                            failed = published.failed,
                            unchanged = published.unchanged,
                            "reports updated"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %crate::text::clip(&format!("{err:#}"), 1024), "cannot write the reports");
                    }
                }
            }
        }
    }

    /// Applies `repairs`; the repairs that were applied.
    async fn repair(&self, repairs: Vec<Repair>, recorder: &Recorder) -> Vec<Repair> {
        if repairs.is_empty() {
            return Vec::new();
        }
        tracing::info!(repairs = repairs.len(), "reconciling");
        let repairs = repairs.into_iter().map(|repair| {
            let (client, recorder) = (self.client.clone(), recorder.clone());
            async move {
                let result = apply(client, &recorder, &repair).await;
                (repair, result)
            }
        });
        let results: Vec<(Repair, RepairResult)> = futures::stream::iter(repairs)
            .buffer_unordered(CONCURRENT_REPAIRS)
            .collect()
            .await;
        for (repair, result) in &results {
            for rule in &repair.rules {
                self.metrics
                    .repairs
                    .get_or_create(&RepairLabels {
                        rule: rule.as_str(),
                        result: result.as_str(),
                    })
                    .inc();
            }
        }
        results
            .into_iter()
            .filter(|(_, result)| *result == RepairResult::Applied)
            .map(|(repair, _)| repair)
            .collect()
    }
}

/// `findings` without those that `applied` repairs fixed: what a report written right
/// after the repairs should still say.
pub fn remaining(findings: Vec<Finding>, applied: &[Repair]) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|finding| {
            !applied.iter().any(|repair| {
                repair.namespace == finding.namespace
                    && repair.name == finding.name
                    && repair.rules.contains(&finding.rule)
            })
        })
        .collect()
}

/// The JSON Patch of a repair, its precondition first.
pub fn repair_patch(repair: &Repair) -> json_patch::Patch {
    let mut ops = vec![PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: repair.resource_version.clone().into(),
    })];
    ops.extend(repair.ops.iter().cloned());
    json_patch::Patch(ops)
}

async fn apply(client: Client, recorder: &Recorder, repair: &Repair) -> RepairResult {
    let patch = repair_patch(repair);
    let namespaced: Api<DynamicObject> = Api::namespaced_with(
        client,
        &repair.namespace,
        &ApiResource::erase::<Savepoint>(&()),
    );
    match namespaced
        .patch(
            &repair.name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(object) => {
            let reference = ObjectReference {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some("Savepoint".into()),
                name: Some(repair.name.clone()),
                namespace: Some(repair.namespace.clone()),
                uid: object.metadata.uid.clone(),
                resource_version: object.metadata.resource_version.clone(),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Normal,
                reason: "Repaired".into(),
                note: Some(crate::text::truncate(repair.note.clone(), 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(err) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %err, savepoint = %repair.name, "cannot record the repair Event");
            }
            tracing::info!(namespace = %repair.namespace, name = %repair.name, note = %repair.note, "repaired");
            RepairResult::Applied
        }
        Err(kube::Error::Api(status)) if matches!(status.code, 409 | 422) => {
            tracing::info!(namespace = %repair.namespace, name = %repair.name, "changed since read; re-planning next pass");
            RepairResult::Conflict
        }
        Err(err) => {
            tracing::warn!(namespace = %repair.namespace, name = %repair.name, error = %err, "repair failed");
            RepairResult::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::plan::Rule;

    fn mk_finding(name: &str, rule: Rule) -> Finding {
        Finding {
            rule,
            namespace: "ns".into(),
            name: name.into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_report_after_repairs_leaves_out_what_they_fixed() {
        let repaired = Repair {
            namespace: "ns".into(),
            name: "a".into(),
            resource_version: "1".into(),
            ops: Vec::new(),
            rules: vec![Rule::MissingOrigin],
            note: String::new(),
        };
        let findings = vec![
            mk_finding("a", Rule::MissingOrigin),
            mk_finding("a", Rule::StaleSpecVersion),
            mk_finding("b", Rule::MissingOrigin),
        ];
        let left: Vec<(String, Rule)> = remaining(findings, &[repaired])
            .into_iter()
            .map(|f| (f.name, f.rule))
            .collect();
        assert_eq!(
            left,
            [
                ("a".into(), Rule::StaleSpecVersion),
                ("b".into(), Rule::MissingOrigin)
            ]
        );
    }
}
