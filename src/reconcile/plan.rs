//! The convergence rules, free of I/O: [`plan`] turns the stored Savepoints and the index
//! into audit [`Finding`]s and the [`Repair`]s that make the cluster converge.

use std::collections::BTreeMap;
use std::fmt;

use json_patch::PatchOperation;
use serde::Serialize;

use super::records::SavepointRecord;
use crate::admission::location::Location;
use crate::admission::patch::{add, replace};
use crate::admission::{Policy, ReferenceScope, resolve_deployment};
use crate::index::Index;
use crate::resources::{RestoreKind, SPEC_VERSION_ANNOTATION};

/// A rule of the contract a stored Savepoint breaks, or a reason it would be warned about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Its location is held by an earlier Savepoint and its origin is not COPIED.
    DuplicateLocation,
    /// It lacks the spec-version annotation.
    MissingAnnotation,
    /// Its spec version differs from its Deployment's current one.
    StaleSpecVersion,
    /// `deploymentName` or `deploymentId` is missing.
    MissingDeploymentReference,
    /// Its Deployment does not exist, or has no spec version.
    UnknownDeployment,
    /// Its location is not an acceptable location.
    MalformedLocation,
    /// It can never be picked for restore as things stand.
    NotRestorable,
}

impl Rule {
    /// Every rule, for exporting zero counts.
    pub const ALL: [Rule; 7] = [
        Rule::DuplicateLocation,
        Rule::MissingAnnotation,
        Rule::StaleSpecVersion,
        Rule::MissingDeploymentReference,
        Rule::UnknownDeployment,
        Rule::MalformedLocation,
        Rule::NotRestorable,
    ];

    /// Label value and table text.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::DuplicateLocation => "duplicate-location",
            Rule::MissingAnnotation => "missing-annotation",
            Rule::StaleSpecVersion => "stale-spec-version",
            Rule::MissingDeploymentReference => "missing-deployment-reference",
            Rule::UnknownDeployment => "unknown-deployment",
            Rule::MalformedLocation => "malformed-location",
            Rule::NotRestorable => "not-restorable",
        }
    }

    /// Whether the reconciler repairs it.
    pub fn repairable(self) -> bool {
        matches!(
            self,
            Rule::DuplicateLocation | Rule::MissingAnnotation | Rule::MissingDeploymentReference
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Savepoint breaking one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// Namespace of the Savepoint.
    pub namespace: String,
    /// Name of the Savepoint.
    pub name: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The patch that repairs one Savepoint, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Repair {
    /// Namespace of the Savepoint.
    pub namespace: String,
    /// Name of the Savepoint.
    pub name: String,
    /// The resourceVersion the repair was planned on: its precondition.
    pub resource_version: String,
    /// JSON Patch operations (the caller prepends its precondition).
    pub ops: Vec<PatchOperation>,
    /// The rules repaired.
    pub rules: Vec<Rule>,
    /// What changes and why, for the Event.
    pub note: String,
}

/// Findings and repairs of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Every finding, in namespace/name order.
    pub findings: Vec<Finding>,
    /// Every repair, in namespace/name order.
    pub repairs: Vec<Repair>,
}

/// Plans one pass over `savepoints` (sorted by namespace and name).
pub fn plan(savepoints: &[SavepointRecord], index: &Index, policy: &Policy) -> Plan {
    let mut out = Plan::default();
    let earliest = earliest_holders(savepoints, policy);
    for record in savepoints {
        let mut findings = Vec::new();
        let mut ops = Vec::new();
        let mut notes = Vec::new();
        let finding = |rule, message: String| Finding {
            rule,
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            message,
        };

        let location = record
            .location
            .as_deref()
            .map(|raw| Location::parse(raw, &policy.locations).map(|l| l.to_string()));
        match &location {
            Some(Ok(location)) => {
                let key = scope_key(policy, &record.namespace, location);
                if let Some(first) = earliest.get(&key)
                    && (first.namespace != record.namespace || first.name != record.name)
                    && record.origin.as_deref() != Some("COPIED")
                {
                    let message = format!(
                        "location {location} is first held by Savepoint {}/{}; origin {} should be COPIED",
                        first.namespace,
                        first.name,
                        record.origin.as_deref().unwrap_or("unset")
                    );
                    findings.push(finding(Rule::DuplicateLocation, message.clone()));
                    let path = ["spec", "origin"];
                    ops.push(match record.origin {
                        Some(_) => replace(&path, "COPIED".into()),
                        None => add(&path, "COPIED".into()),
                    });
                    notes.push(format!("set spec.origin to COPIED: {message}"));
                }
            }
            Some(Err(err)) => findings.push(finding(
                Rule::MalformedLocation,
                format!("spec.savepointLocation {err}"),
            )),
            None => findings.push(finding(
                Rule::MalformedLocation,
                "spec.savepointLocation is missing".into(),
            )),
        }

        match resolve_deployment(
            index,
            &record.namespace,
            record.deployment_name.as_deref(),
            record.deployment_id.as_deref(),
        ) {
            Err(denied) => findings.push(finding(
                Rule::UnknownDeployment,
                denied
                    .message
                    .unwrap_or_else(|| "its Deployment cannot be resolved".into()),
            )),
            Ok(deployment) => {
                let current = deployment.spec_version.as_deref().unwrap_or_default();
                match &record.spec_version {
                    None => {
                        findings.push(finding(Rule::MissingAnnotation, format!("no spec-version annotation; Deployment {} is at {current}", deployment.name)));
                        ops.push(if record.has_annotations {
                            add(&["metadata", "annotations", SPEC_VERSION_ANNOTATION], current.into())
                        } else {
                            add(&["metadata", "annotations"], serde_json::json!({ SPEC_VERSION_ANNOTATION: current }))
                        });
                        notes.push(format!("added annotation {SPEC_VERSION_ANNOTATION}={current} from Deployment {}", deployment.name));
                    }
                    Some(version) if version != current => findings.push(finding(
                        Rule::StaleSpecVersion,
                        format!("spec version {version} differs from Deployment {}'s {current}; it is used only for restores of spec version {version}", deployment.name),
                    )),
                    Some(_) => {}
                }
                if record.deployment_name.is_none() {
                    findings.push(finding(
                        Rule::MissingDeploymentReference,
                        "spec.deploymentName is missing".into(),
                    ));
                    ops.push(add(
                        &["spec", "deploymentName"],
                        deployment.name.as_str().into(),
                    ));
                    notes.push(format!("filled in spec.deploymentName={}", deployment.name));
                }
                if record.deployment_id.is_none() {
                    findings.push(finding(
                        Rule::MissingDeploymentReference,
                        "spec.deploymentId is missing".into(),
                    ));
                    ops.push(add(
                        &["spec", "deploymentId"],
                        deployment.uid.as_str().into(),
                    ));
                    notes.push(format!("filled in spec.deploymentId={}", deployment.uid));
                }
                let origin_after = if ops.iter().any(|op| op.path().as_str() == "/spec/origin") {
                    Some("COPIED")
                } else {
                    record.origin.as_deref()
                };
                if let Some(why) = not_restorable(
                    record.state.as_deref(),
                    origin_after,
                    deployment.restore_kind,
                ) {
                    findings.push(finding(Rule::NotRestorable, why));
                }
            }
        }

        if !ops.is_empty() {
            out.repairs.push(Repair {
                namespace: record.namespace.clone(),
                name: record.name.clone(),
                resource_version: record.resource_version.clone(),
                rules: findings
                    .iter()
                    .map(|f| f.rule)
                    .filter(|r| r.repairable())
                    .collect(),
                ops,
                note: notes.join("; "),
            });
        }
        out.findings.extend(findings);
    }
    out
}

fn not_restorable(
    state: Option<&str>,
    origin: Option<&str>,
    restore: Option<RestoreKind>,
) -> Option<String> {
    if state != Some("COMPLETED") {
        return Some(format!(
            "status.state is {}; only COMPLETED Savepoints are restored",
            state.unwrap_or("unset")
        ));
    }
    match restore {
        Some(RestoreKind::None) => Some("its Deployment's restore strategy is NONE".into()),
        Some(RestoreKind::LatestSavepoint) if origin == Some("RETAINED_CHECKPOINT") => Some(
            "its Deployment restores with LATEST_SAVEPOINT, which skips RETAINED_CHECKPOINT".into(),
        ),
        _ => None,
    }
}

fn scope_key(policy: &Policy, namespace: &str, location: &str) -> (String, String) {
    match policy.scope {
        ReferenceScope::Namespace => (namespace.to_string(), location.to_string()),
        ReferenceScope::Cluster => (String::new(), location.to_string()),
    }
}

/// The earliest holder (creationTimestamp, then uid, then name) of each location.
fn earliest_holders<'a>(
    savepoints: &'a [SavepointRecord],
    policy: &Policy,
) -> BTreeMap<(String, String), &'a SavepointRecord> {
    let mut earliest: BTreeMap<(String, String), &SavepointRecord> = BTreeMap::new();
    let order = |r: &SavepointRecord| {
        (
            r.created.unwrap_or(i64::MAX),
            r.uid.clone(),
            r.namespace.clone(),
            r.name.clone(),
        )
    };
    for record in savepoints {
        let Some(Ok(location)) = record
            .location
            .as_deref()
            .map(|raw| Location::parse(raw, &policy.locations))
        else {
            continue;
        };
        let key = scope_key(policy, &record.namespace, &location.to_string());
        match earliest.get(&key) {
            Some(first) if order(first) <= order(record) => {}
            _ => {
                earliest.insert(key, record);
            }
        }
    }
    earliest
}

/// Counts findings by rule, with zero for rules not found.
pub fn count_by_rule(findings: &[Finding]) -> BTreeMap<Rule, usize> {
    let mut counts: BTreeMap<Rule, usize> = Rule::ALL.iter().map(|r| (*r, 0)).collect();
    for finding in findings {
        *counts.entry(finding.rule).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::admission::location::LocationRules;
    use crate::index::DeploymentFacts;

    const UID: &str = "c8e5eee4-414c-40aa-9d1d-76c4434d055a";

    fn mk_index() -> Index {
        let mut index = Index::new(LocationRules::default(), Duration::ZERO);
        index.apply_deployment(DeploymentFacts {
            namespace: "default".into(),
            name: "app".into(),
            uid: UID.into(),
            spec_version: Some("3".into()),
            has_savepoints_dir: true,
            restore_kind: Some(RestoreKind::LatestSavepoint),
        });
        index
    }

    fn mk_record(name: &str, created: i64, location: &str) -> SavepointRecord {
        SavepointRecord {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: format!("rv-{name}"),
            has_annotations: true,
            created: Some(created),
            location: Some(location.into()),
            origin: Some("USER_REQUEST".into()),
            spec_version: Some("3".into()),
            deployment_name: Some("app".into()),
            deployment_id: Some(UID.into()),
            state: Some("COMPLETED".into()),
        }
    }

    fn ops(repair: &Repair) -> Vec<(String, String, Value)> {
        serde_json::to_value(&repair.ops)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                (
                    op["op"].as_str().unwrap().into(),
                    op["path"].as_str().unwrap().into(),
                    op["value"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_converged_cluster_needs_nothing() {
        let records = [mk_record("a", 1, "s3://b/p"), mk_record("b", 2, "s3://b/q")];
        assert_eq!(
            plan(&records, &mk_index(), &Policy::default()),
            Plan::default()
        );
    }

    #[test]
    fn later_holders_of_a_location_become_copied_and_the_earliest_keeps_its_origin() {
        let mut copied = mk_record("c", 3, "s3://b/p");
        copied.origin = Some("COPIED".into());
        let mut unset = mk_record("d", 2, "s3a://b/p/_metadata");
        unset.origin = None;
        let records = [
            mk_record("later", 5, "s3://b/p/"),
            mk_record("first", 1, "s3://b/p"),
            copied,
            unset,
        ];
        let plan = plan(&records, &mk_index(), &Policy::default());
        let repaired: Vec<&str> = plan.repairs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(repaired, ["later", "d"]);
        assert_eq!(
            ops(&plan.repairs[0]),
            [(
                "replace".into(),
                "/spec/origin".into(),
                Value::from("COPIED")
            )]
        );
        assert_eq!(
            ops(&plan.repairs[1]),
            [("add".into(), "/spec/origin".into(), Value::from("COPIED"))]
        );
        assert!(
            plan.repairs[0]
                .note
                .contains("first held by Savepoint default/first")
        );
        assert_eq!(plan.repairs[0].resource_version, "rv-later");
    }

    #[test]
    fn ties_on_creation_time_are_broken_by_uid() {
        let records = [mk_record("y", 1, "s3://b/p"), mk_record("x", 1, "s3://b/p")];
        let plan = plan(&records, &mk_index(), &Policy::default());
        assert_eq!(plan.repairs.len(), 1);
        assert_eq!(
            plan.repairs[0].name, "y",
            "uid-x sorts first and keeps its origin"
        );
    }

    #[test]
    fn missing_annotation_and_references_are_filled_in() {
        let mut bare = mk_record("bare", 1, "s3://b/p");
        bare.has_annotations = false;
        bare.spec_version = None;
        bare.deployment_id = None;
        let mut other_annotations = mk_record("other", 2, "s3://b/q");
        other_annotations.spec_version = None;
        other_annotations.deployment_name = None;
        let plan = plan(&[bare, other_annotations], &mk_index(), &Policy::default());
        assert_eq!(
            ops(&plan.repairs[0]),
            [
                (
                    "add".into(),
                    "/metadata/annotations".into(),
                    serde_json::json!({ SPEC_VERSION_ANNOTATION: "3" })
                ),
                ("add".into(), "/spec/deploymentId".into(), Value::from(UID)),
            ]
        );
        assert_eq!(
            ops(&plan.repairs[1]),
            [
                (
                    "add".into(),
                    format!("/metadata/annotations/{SPEC_VERSION_ANNOTATION}"),
                    Value::from("3")
                ),
                (
                    "add".into(),
                    "/spec/deploymentName".into(),
                    Value::from("app")
                ),
            ]
        );
    }

    #[test]
    fn what_cannot_be_repaired_is_reported() {
        let mut unknown = mk_record("unknown", 1, "s3://b/p");
        unknown.deployment_name = Some("gone".into());
        unknown.deployment_id = None;
        let mut stale = mk_record("stale", 2, "s3://b/q");
        stale.spec_version = Some("2".into());
        let mut retained = mk_record("retained", 3, "s3://b/r");
        retained.origin = Some("RETAINED_CHECKPOINT".into());
        let mut bad = mk_record("bad", 4, "ftp://h/p");
        bad.state = Some("FAILED".into());
        let plan = plan(
            &[unknown, stale, retained, bad],
            &mk_index(),
            &Policy::default(),
        );
        let rules: Vec<(&str, Rule)> = plan
            .findings
            .iter()
            .map(|f| (f.name.as_str(), f.rule))
            .collect();
        assert_eq!(
            rules,
            [
                ("unknown", Rule::UnknownDeployment),
                ("stale", Rule::StaleSpecVersion),
                ("retained", Rule::NotRestorable),
                ("bad", Rule::MalformedLocation),
                ("bad", Rule::NotRestorable),
            ]
        );
        assert!(
            plan.repairs.is_empty(),
            "nothing here is repairable: {:?}",
            plan.repairs
        );
        let counts = count_by_rule(&plan.findings);
        assert_eq!(counts[&Rule::NotRestorable], 2);
        assert_eq!(counts[&Rule::DuplicateLocation], 0);
    }

    #[test]
    fn scope_decides_which_holders_are_duplicates() {
        let mut elsewhere = mk_record("theirs", 1, "s3://b/p");
        elsewhere.namespace = "team-b".into();
        let records = [mk_record("ours", 2, "s3://b/p"), elsewhere];
        assert!(
            plan(&records, &mk_index(), &Policy::default())
                .repairs
                .is_empty()
        );
        let cluster = Policy {
            scope: ReferenceScope::Cluster,
            ..Policy::default()
        };
        let plan = plan(&records, &mk_index(), &cluster);
        assert_eq!(
            plan.repairs
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["ours"]
        );
    }
}
