//! What the `openreports.io/v1alpha1` Reports say, free of I/O: [`build`] turns the
//! stored Savepoints and the findings of one pass into one aggregated [`Report`] per
//! namespace, and [`stale`] names the reports of namespaces that no longer need one.
//! [`super::publish`] writes them.
//!
//! A report holds one result per finding (the rule id as `policy`, the Savepoint as its
//! subject), at most [`Limits::max_results`] of them and at most [`MAX_RESULT_BYTES`]
//! bytes, failures first; its `summary` counts every finding, kept or not, and an
//! annotation says how many results were left out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::plan::{Finding, Rule};
use crate::index::SavepointRecord;
use crate::resources::{GROUP, VERSION};

/// API group of the reports.
pub const REPORT_GROUP: &str = "openreports.io";
/// API version of the reports.
pub const REPORT_VERSION: &str = "v1alpha1";
/// Kind of the reports.
pub const REPORT_KIND: &str = "Report";
/// Resource (plural) of the reports.
pub const REPORT_PLURAL: &str = "reports";
/// Name of the one report in each namespace.
pub const REPORT_NAME: &str = "savepoint-webhook";
/// `source` of every report, and the field manager that applies them.
pub const SOURCE: &str = "savepoint-webhook";
/// Label key marking the reports this program manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation saying how many results a capped report leaves out.
pub const LEFT_OUT_ANNOTATION: &str =
    "savepoint-webhook.appmanager.dataartisans.com/results-left-out";
/// Results kept per report unless told otherwise.
pub const DEFAULT_MAX_RESULTS: usize = 500;
/// Most bytes of results (as JSON) in one report: well under etcd's 1.5 MiB per object,
/// whatever the cap on their number.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
/// Longest message of a result, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Bounds of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most results per report.
    pub max_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_results: DEFAULT_MAX_RESULTS,
        }
    }
}

/// A point in time as the report's results carry it (`metav1.Timestamp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }
    }
}

/// Outcome of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The Savepoint breaks the contract.
    Fail,
    /// Admission would have warned about it.
    Warn,
}

/// How much a result matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The Savepoint is never used for restore as it stands.
    High,
    /// The Savepoint breaks a rule the reconciler repairs.
    Medium,
    /// A restore may not pick the Savepoint.
    Low,
}

/// The result and severity of a finding of `rule`: contract breaches fail, what
/// admission only warns about warns.
pub fn classify(rule: Rule) -> (Status, Severity) {
    match rule {
        Rule::UnknownDeployment
        | Rule::MalformedLocation
        | Rule::MissingAnnotation
        | Rule::UnrestorableSnapshot => (Status::Fail, Severity::High),
        Rule::DuplicateLocation | Rule::MissingOrigin | Rule::MissingDeploymentReference => {
            (Status::Fail, Severity::Medium)
        }
        Rule::StaleSpecVersion | Rule::NotRestorable => (Status::Warn, Severity::Low),
    }
}

/// The object a result is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `appmanager.dataartisans.com/v1`.
    pub api_version: String,
    /// `Savepoint`.
    pub kind: String,
    /// Namespace of the Savepoint.
    pub namespace: String,
    /// Name of the Savepoint.
    pub name: String,
    /// uid of the Savepoint, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// One finding as a report result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResult {
    /// The rule id, e.g. `missing-origin`.
    pub policy: String,
    /// `fail` or `warn`.
    pub result: Status,
    /// How much it matters.
    pub severity: Severity,
    /// What is wrong, for a person.
    pub message: String,
    /// The Savepoint.
    pub resources: Vec<Subject>,
    /// When the finding was first reported.
    pub timestamp: Timestamp,
    /// Whether the reconciler repairs it (`"true"` or `"false"`).
    pub properties: BTreeMap<String, String>,
    /// Always [`SOURCE`].
    pub source: String,
}

/// Counts by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Savepoints of the namespace with no finding.
    pub pass: usize,
    /// Findings that fail, kept in the results or not.
    pub fail: usize,
    /// Findings that warn, kept in the results or not.
    pub warn: usize,
    /// Always 0.
    pub error: usize,
    /// Always 0.
    pub skip: usize,
}

/// `configuration.limits` of a report: the cap on its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportLimits {
    /// Most results the report holds.
    pub max_results: usize,
}

/// `configuration` of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// The cap on results.
    pub limits: ReportLimits,
}

/// The metadata this program sets on a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    /// [`REPORT_NAME`].
    pub name: String,
    /// The namespace reported on.
    pub namespace: String,
    /// [`MANAGED_BY_LABEL`]: [`SOURCE`].
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// [`LEFT_OUT_ANNOTATION`] when results were left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One namespace's report, as applied (server-side apply of exactly these fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `openreports.io/v1alpha1`.
    pub api_version: String,
    /// `Report`.
    pub kind: String,
    /// Name, namespace, label and annotation.
    pub metadata: ReportMeta,
    /// [`SOURCE`].
    pub source: String,
    /// The cap on results.
    pub configuration: Configuration,
    /// Counts of every finding.
    pub summary: Summary,
    /// The findings kept, failures first.
    #[serde(default)]
    pub results: Vec<ReportResult>,
}

impl Report {
    /// Whether `stored` (a report as the API server returns it) already says what this
    /// one says: same body and the same label and annotation of this program's.
    pub fn matches(&self, stored: &serde_json::Value) -> bool {
        let Ok(stored) = serde_json::from_value::<Report>(stored.clone()) else {
            return false;
        };
        let ours = |meta: &ReportMeta| {
            (
                meta.labels.get(MANAGED_BY_LABEL).cloned(),
                meta.annotations.get(LEFT_OUT_ANNOTATION).cloned(),
            )
        };
        stored.source == self.source
            && stored.configuration == self.configuration
            && stored.summary == self.summary
            && stored.results == self.results
            && ours(&stored.metadata) == ours(&self.metadata)
    }
}

/// Where a result is keyed for carrying its first-seen time over: namespace, rule id,
/// Savepoint name.
type ResultKey = (String, String, String);

/// When each finding was first reported, read from the reports stored before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstSeen(BTreeMap<ResultKey, Timestamp>);

impl FirstSeen {
    /// The first-seen times of the results of `stored` reports (as the API server returns
    /// them); reports that do not parse are skipped.
    pub fn from_stored<'a>(stored: impl IntoIterator<Item = &'a serde_json::Value>) -> Self {
        let mut out = BTreeMap::new();
        for value in stored {
            let Ok(report) = serde_json::from_value::<Report>(value.clone()) else {
                continue;
            };
            for result in report.results {
                for subject in &result.resources {
                    out.insert(
                        (
                            subject.namespace.clone(),
                            result.policy.clone(),
                            subject.name.clone(),
                        ),
                        result.timestamp,
                    );
                }
            }
        }
        Self(out)
    }

    fn get(&self, namespace: &str, rule: Rule, name: &str) -> Option<Timestamp> {
        self.0
            .get(&(namespace.into(), rule.as_str().into(), name.into()))
            .copied()
    }
}

/// One report per namespace of `savepoints` (the Savepoints one pass saw), holding the
/// `findings` of that pass about them. A result keeps the time `seen` has for it, else
/// `now`. Reports come in namespace order.
pub fn build(
    savepoints: &[SavepointRecord],
    findings: &[Finding],
    seen: &FirstSeen,
    now: Timestamp,
    limits: Limits,
) -> Vec<Report> {
    let mut namespaces: BTreeMap<&str, BTreeMap<&str, &SavepointRecord>> = BTreeMap::new();
    for record in savepoints {
        namespaces
            .entry(&record.namespace)
            .or_default()
            .insert(&record.name, record);
    }
    let mut by_namespace: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        by_namespace
            .entry(&finding.namespace)
            .or_default()
            .push(finding);
    }
    namespaces
        .into_iter()
        .map(|(namespace, records)| {
            let mut findings = by_namespace.remove(namespace).unwrap_or_default();
            findings.sort_by_key(|f| (classify(f.rule).0, &f.name, f.rule));
            namespace_report(namespace, &records, &findings, seen, now, limits)
        })
        .collect()
}

fn namespace_report(
    namespace: &str,
    records: &BTreeMap<&str, &SavepointRecord>,
    findings: &[&Finding],
    seen: &FirstSeen,
    now: Timestamp,
    limits: Limits,
) -> Report {
    let flagged: BTreeSet<&str> = findings.iter().map(|f| f.name.as_str()).collect();
    let mut summary = Summary {
        pass: records
            .keys()
            .filter(|name| !flagged.contains(*name))
            .count(),
        ..Summary::default()
    };
    let mut results = Vec::new();
    let mut bytes = 0;
    for finding in findings {
        let (status, severity) = classify(finding.rule);
        match status {
            Status::Fail => summary.fail += 1,
            Status::Warn => summary.warn += 1,
        }
        if results.len() >= limits.max_results || bytes >= MAX_RESULT_BYTES {
            continue;
        }
        let result = ReportResult {
            policy: finding.rule.as_str().into(),
            result: status,
            severity,
            message: crate::text::truncate(finding.message.clone(), MAX_MESSAGE_BYTES),
            resources: vec![Subject {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: "Savepoint".into(),
                namespace: namespace.into(),
                name: finding.name.clone(),
                uid: records
                    .get(finding.name.as_str())
                    .map(|r| r.uid.clone())
                    .unwrap_or_default(),
            }],
            timestamp: seen
                .get(namespace, finding.rule, &finding.name)
                .unwrap_or(now),
            properties: [("repairable".into(), finding.rule.repairable().to_string())].into(),
            source: SOURCE.into(),
        };
        let size = serde_json::to_vec(&result).map_or(usize::MAX, |v| v.len());
        if bytes + size > MAX_RESULT_BYTES {
            bytes = MAX_RESULT_BYTES;
            continue;
        }
        bytes += size;
        results.push(result);
    }
    let left_out = findings.len() - results.len();
    Report {
        api_version: format!("{REPORT_GROUP}/{REPORT_VERSION}"),
        kind: REPORT_KIND.into(),
        metadata: ReportMeta {
            name: REPORT_NAME.into(),
            namespace: namespace.into(),
            labels: [(MANAGED_BY_LABEL.into(), SOURCE.into())].into(),
            annotations: if left_out > 0 {
                [(
                    LEFT_OUT_ANNOTATION.into(),
                    format!("{left_out} of {} results", findings.len()),
                )]
                .into()
            } else {
                BTreeMap::new()
            },
        },
        source: SOURCE.into(),
        configuration: Configuration {
            limits: ReportLimits {
                max_results: limits.max_results,
            },
        },
        summary,
        results,
    }
}

/// The namespaces among `stored` (namespaces holding a report of this program's) that
/// `desired` has no report for: their reports are deleted. With `only` set, only that
/// namespace is considered (an audit of one namespace leaves the others alone).
pub fn stale<'a>(
    stored: impl IntoIterator<Item = &'a str>,
    desired: &[Report],
    only: Option<&str>,
) -> Vec<String> {
    let wanted: BTreeSet<&str> = desired
        .iter()
        .map(|r| r.metadata.namespace.as_str())
        .collect();
    stored
        .into_iter()
        .filter(|namespace| only.is_none_or(|only| only == *namespace))
        .filter(|namespace| !wanted.contains(namespace))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_record(namespace: &str, name: &str) -> SavepointRecord {
        SavepointRecord {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ..SavepointRecord::default()
        }
    }

    fn mk_finding(namespace: &str, name: &str, rule: Rule) -> Finding {
        Finding {
            rule,
            namespace: namespace.into(),
            name: name.into(),
            message: format!("{name} breaks {rule}"),
        }
    }

    const NOW: Timestamp = Timestamp {
        seconds: 1_800_000_000,
        nanos: 0,
    };

    #[test]
    fn one_report_per_namespace_with_a_result_per_finding_and_counts() {
        let records = [
            mk_record("team-a", "clean"),
            mk_record("team-a", "drifted"),
            mk_record("team-b", "stale"),
        ];
        let findings = [
            mk_finding("team-a", "drifted", Rule::NotRestorable),
            mk_finding("team-a", "drifted", Rule::MissingOrigin),
            mk_finding("team-b", "stale", Rule::StaleSpecVersion),
        ];
        let reports = build(
            &records,
            &findings,
            &FirstSeen::default(),
            NOW,
            Limits::default(),
        );
        assert_eq!(reports.len(), 2);
        let a = &reports[0];
        assert_eq!(
            (a.metadata.namespace.as_str(), a.metadata.name.as_str()),
            ("team-a", REPORT_NAME)
        );
        assert_eq!(a.metadata.labels[MANAGED_BY_LABEL], "savepoint-webhook");
        assert!(a.metadata.annotations.is_empty());
        assert_eq!(a.source, "savepoint-webhook");
        assert_eq!(
            a.summary,
            Summary {
                pass: 1,
                fail: 1,
                warn: 1,
                ..Summary::default()
            }
        );
        let results: Vec<(&str, Status, Severity)> = a
            .results
            .iter()
            .map(|r| (r.policy.as_str(), r.result, r.severity))
            .collect();
        assert_eq!(
            results,
            [
                ("missing-origin", Status::Fail, Severity::Medium),
                ("not-restorable", Status::Warn, Severity::Low),
            ],
            "failures first"
        );
        let first = &a.results[0];
        assert_eq!(first.message, "drifted breaks missing-origin");
        assert_eq!(first.timestamp, NOW);
        assert_eq!(first.properties["repairable"], "true");
        assert_eq!(
            first.resources,
            [Subject {
                api_version: "appmanager.dataartisans.com/v1".into(),
                kind: "Savepoint".into(),
                namespace: "team-a".into(),
                name: "drifted".into(),
                uid: "uid-drifted".into(),
            }]
        );
        assert_eq!(reports[1].summary.warn, 1);
        assert_eq!(reports[1].results[0].properties["repairable"], "false");
    }

    #[test]
    fn a_namespace_without_findings_gets_an_empty_report_that_passes() {
        let reports = build(
            &[mk_record("ok", "a"), mk_record("ok", "b")],
            &[],
            &FirstSeen::default(),
            NOW,
            Limits::default(),
        );
        assert_eq!(reports.len(), 1);
        assert!(reports[0].results.is_empty());
        assert_eq!(
            reports[0].summary,
            Summary {
                pass: 2,
                ..Summary::default()
            }
        );
    }

    #[test]
    fn thousands_of_findings_are_capped_and_the_cap_is_said() {
        let records: Vec<SavepointRecord> = (0..5000)
            .map(|i| mk_record("big", &format!("sp-{i:05}")))
            .collect();
        let findings: Vec<Finding> = records
            .iter()
            .map(|r| mk_finding("big", &r.name, Rule::MissingAnnotation))
            .collect();
        let reports = build(
            &records,
            &findings,
            &FirstSeen::default(),
            NOW,
            Limits { max_results: 100 },
        );
        let report = &reports[0];
        assert_eq!(report.results.len(), 100);
        assert_eq!(
            report.summary.fail, 5000,
            "the summary counts every finding"
        );
        assert_eq!(report.configuration.limits.max_results, 100);
        assert_eq!(
            report.metadata.annotations[LEFT_OUT_ANNOTATION],
            "4900 of 5000 results"
        );
    }

    #[test]
    fn long_messages_stay_within_the_byte_budget_whatever_the_cap() {
        let records: Vec<SavepointRecord> = (0..3000)
            .map(|i| mk_record("big", &format!("sp-{i:05}-{}", "n".repeat(200))))
            .collect();
        let findings: Vec<Finding> = records
            .iter()
            .map(|r| Finding {
                message: "x".repeat(10_000),
                ..mk_finding("big", &r.name, Rule::MalformedLocation)
            })
            .collect();
        let report = &build(
            &records,
            &findings,
            &FirstSeen::default(),
            NOW,
            Limits {
                max_results: usize::MAX,
            },
        )[0];
        let bytes = serde_json::to_vec(report).unwrap().len();
        assert!(bytes < MAX_RESULT_BYTES + 4096, "{bytes} bytes");
        assert!(report.results.len() < 3000);
        assert!(report.results[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(
            report
                .metadata
                .annotations
                .contains_key(LEFT_OUT_ANNOTATION)
        );
    }

    #[test]
    fn a_finding_reported_before_keeps_its_first_seen_time() {
        let records = [mk_record("ns", "old"), mk_record("ns", "new")];
        let earlier = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        let mut stored = build(
            &records[..1],
            &[mk_finding("ns", "old", Rule::MissingOrigin)],
            &FirstSeen::default(),
            earlier,
            Limits::default(),
        );
        let stored = serde_json::to_value(stored.remove(0)).unwrap();
        let findings = [
            mk_finding("ns", "old", Rule::MissingOrigin),
            mk_finding("ns", "new", Rule::MissingOrigin),
        ];
        let report = &build(
            &records,
            &findings,
            &FirstSeen::from_stored([&stored]),
            NOW,
            Limits::default(),
        )[0];
        let times: Vec<(&str, Timestamp)> = report
            .results
            .iter()
            .map(|r| (r.resources[0].name.as_str(), r.timestamp))
            .collect();
        assert_eq!(times, [("new", NOW), ("old", earlier)]);
    }

    #[test]
    fn a_stored_report_that_says_the_same_is_not_written_again() {
        let records = [mk_record("ns", "a")];
        let findings = [mk_finding("ns", "a", Rule::NotRestorable)];
        let report = build(
            &records,
            &findings,
            &FirstSeen::default(),
            NOW,
            Limits::default(),
        )
        .remove(0);
        let mut stored = serde_json::to_value(&report).unwrap();
        stored["metadata"]["uid"] = "1234".into();
        stored["metadata"]["labels"]["team"] = "streaming".into();
        assert!(report.matches(&stored), "server-set fields do not count");
        stored["summary"]["warn"] = 7.into();
        assert!(!report.matches(&stored));
        assert!(!report.matches(&serde_json::json!({"kind": "Report"})));
    }

    #[test]
    fn reports_of_namespaces_without_savepoints_are_stale() {
        let desired = build(
            &[mk_record("kept", "a")],
            &[],
            &FirstSeen::default(),
            NOW,
            Limits::default(),
        );
        assert_eq!(
            stale(["kept", "emptied", "gone"], &desired, None),
            ["emptied", "gone"]
        );
        assert_eq!(
            stale(["kept", "emptied", "gone"], &desired, Some("gone")),
            ["gone"],
            "an audit of one namespace leaves the others alone"
        );
    }

    #[test]
    fn contract_breaches_fail_and_admission_warnings_warn() {
        for rule in Rule::ALL {
            let (status, _) = classify(rule);
            let expected = if matches!(rule, Rule::StaleSpecVersion | Rule::NotRestorable) {
                Status::Warn
            } else {
                Status::Fail
            };
            assert_eq!(status, expected, "{rule}");
        }
    }
}
