//! The convergence rules, free of I/O: [`plan`] turns the stored Savepoints and the index
//! into audit [`Finding`]s and the [`Repair`]s that make the cluster converge.

use std::collections::BTreeMap;
use std::fmt;

use json_patch::PatchOperation;
use serde::Serialize;

use crate::domain::rules::{self, Change};
use crate::domain::{
    DeploymentLookup, LocationError, NormalizedLocation, Origin, Policy, ReferenceProblem,
    ReferenceScope, deployment,
};
use crate::index::SavepointRecord;

/// A rule of the contract a stored Savepoint breaks, or a reason it would be warned about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Its location is held by an earlier Savepoint and its origin is not COPIED.
    DuplicateLocation,
    /// It has no origin: added by hand, so COPIED.
    MissingOrigin,
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
    /// A full read of its snapshot found that a restore from it would fail (`audit
    /// --verify-location`): no snapshot there, files missing, or not what it says.
    UnrestorableSnapshot,
}

impl Rule {
    /// Every rule, for exporting zero counts.
    pub const ALL: [Rule; 9] = [
        Rule::DuplicateLocation,
        Rule::MissingOrigin,
        Rule::MissingAnnotation,
        Rule::StaleSpecVersion,
        Rule::MissingDeploymentReference,
        Rule::UnknownDeployment,
        Rule::MalformedLocation,
        Rule::NotRestorable,
        Rule::UnrestorableSnapshot,
    ];

    /// Label value and table text.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::DuplicateLocation => "duplicate-location",
            Rule::MissingOrigin => "missing-origin",
            Rule::MissingAnnotation => "missing-annotation",
            Rule::StaleSpecVersion => "stale-spec-version",
            Rule::MissingDeploymentReference => "missing-deployment-reference",
            Rule::UnknownDeployment => "unknown-deployment",
            Rule::MalformedLocation => "malformed-location",
            Rule::NotRestorable => "not-restorable",
            Rule::UnrestorableSnapshot => "unrestorable-snapshot",
        }
    }

    /// Whether the reconciler repairs it.
    pub fn repairable(self) -> bool {
        matches!(
            self,
            Rule::DuplicateLocation
                | Rule::MissingOrigin
                | Rule::MissingAnnotation
                | Rule::MissingDeploymentReference
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

/// Plans one pass over `savepoints` (sorted by namespace and name), resolving their
/// Deployments in `lookup`.
pub fn plan(
    savepoints: &[SavepointRecord],
    lookup: &impl DeploymentLookup,
    policy: &Policy,
) -> Plan {
    let mut out = Plan::default();
    let locations: Vec<Option<Result<NormalizedLocation, LocationError>>> = savepoints
        .iter()
        .map(|record| {
            record
                .location
                .as_deref()
                .map(|raw| NormalizedLocation::parse(raw, &policy.locations))
        })
        .collect();
    let earliest = earliest_holders(savepoints, &locations, policy);
    for (record, location) in savepoints.iter().zip(&locations) {
        let mut findings = Vec::new();
        let finding = |rule, message: String| Finding {
            rule,
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            message,
        };

        let first_holder = match location {
            Some(Ok(location)) => earliest
                .get(&scope_key(policy, &record.namespace, location))
                .copied()
                .filter(|first| !(first.namespace == record.namespace && first.name == record.name))
                .map(|first| (location, first)),
            Some(Err(err)) => {
                findings.push(finding(
                    Rule::MalformedLocation,
                    format!("spec.savepointLocation {err}"),
                ));
                None
            }
            None => {
                findings.push(finding(
                    Rule::MalformedLocation,
                    "spec.savepointLocation is missing".into(),
                ));
                None
            }
        };

        let view = record.view();
        let mut changes = Vec::new();
        match deployment::resolve(
            lookup,
            &record.namespace,
            view.deployment_name,
            view.deployment_id,
        ) {
            Err(problem) => findings.push(finding(
                Rule::UnknownDeployment,
                unknown_deployment(&problem),
            )),
            Ok(deployment) => {
                changes = rules::changes(&view, deployment, first_holder.is_some());
                for change in &changes {
                    let (rule, message) = match change {
                        Change::AddAnnotation { version } => (
                            Rule::MissingAnnotation,
                            format!(
                                "no spec-version annotation; Deployment {} is at {version}",
                                deployment.name
                            ),
                        ),
                        Change::FillDeploymentName { .. } => (
                            Rule::MissingDeploymentReference,
                            "spec.deploymentName is missing".into(),
                        ),
                        Change::FillDeploymentId { .. } => (
                            Rule::MissingDeploymentReference,
                            "spec.deploymentId is missing".into(),
                        ),
                        Change::SetCopied { was } => {
                            let was = was.map_or("unset", Origin::as_str);
                            match first_holder {
                                Some((location, first)) => (
                                    Rule::DuplicateLocation,
                                    format!(
                                        "location {location} is first held by Savepoint {}/{}; origin {was} should be COPIED",
                                        first.namespace, first.name
                                    ),
                                ),
                                None => (
                                    Rule::MissingOrigin,
                                    "spec.origin is missing; a Savepoint added by hand for an existing snapshot has origin COPIED".into(),
                                ),
                            }
                        }
                    };
                    findings.push(finding(rule, message));
                }
                if let Some(given) = rules::stale_spec_version(&view, deployment) {
                    findings.push(finding(
                        Rule::StaleSpecVersion,
                        format!(
                            "spec version {given} differs from Deployment {}'s {}; it is used only for restores of spec version {given}",
                            deployment.name,
                            deployment.spec_version.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                let blockers = rules::restore_blockers(
                    view.state,
                    rules::origin_after(&view, &changes),
                    deployment,
                );
                findings.extend(
                    blockers
                        .iter()
                        .map(|blocker| finding(Rule::NotRestorable, blocker.to_string())),
                );
            }
        }

        if !changes.is_empty() {
            out.repairs.push(Repair {
                namespace: record.namespace.clone(),
                name: record.name.clone(),
                resource_version: record.resource_version.clone(),
                rules: findings
                    .iter()
                    .map(|f| f.rule)
                    .filter(|r| r.repairable())
                    .collect(),
                ops: changes
                    .iter()
                    .map(|change| change.operation(view.metadata))
                    .collect(),
                note: repair_note(&changes, first_holder),
            });
        }
        out.findings.extend(findings);
    }
    out
}

/// What a repair changes and why, for its Event.
fn repair_note(
    changes: &[Change],
    first_holder: Option<(&NormalizedLocation, &SavepointRecord)>,
) -> String {
    changes
        .iter()
        .map(|change| match (change, first_holder) {
            (Change::SetCopied { .. }, Some((location, first))) => format!(
                "{change}: location {location} is first held by Savepoint {}/{}",
                first.namespace, first.name
            ),
            _ => change.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn scope_key(
    policy: &Policy,
    namespace: &str,
    location: &NormalizedLocation,
) -> (String, NormalizedLocation) {
    match policy.scope {
        ReferenceScope::Namespace => (namespace.to_string(), location.clone()),
        ReferenceScope::Cluster => (String::new(), location.clone()),
    }
}

/// The earliest holder of each location, in the order of [`rules::holder_rank`];
/// `locations[i]` is the parsed location of `savepoints[i]`.
fn earliest_holders<'a>(
    savepoints: &'a [SavepointRecord],
    locations: &[Option<Result<NormalizedLocation, LocationError>>],
    policy: &Policy,
) -> BTreeMap<(String, NormalizedLocation), &'a SavepointRecord> {
    let mut earliest: BTreeMap<(String, NormalizedLocation), &SavepointRecord> = BTreeMap::new();
    let rank =
        |r: &'a SavepointRecord| rules::holder_rank(r.created, r.origin, &r.namespace, &r.name);
    for (record, location) in savepoints.iter().zip(locations) {
        let Some(Ok(location)) = location else {
            continue;
        };
        let key = scope_key(policy, &record.namespace, location);
        match earliest.get(&key) {
            Some(first) if rank(first) <= rank(record) => {}
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

/// What an `unknown-deployment` finding says: what the stored reference holds and why it
/// names no usable Deployment (admission's wording asks for a field to be filled in).
fn unknown_deployment(problem: &ReferenceProblem) -> String {
    match problem {
        ReferenceProblem::Missing => "names no Deployment: spec.deploymentName and spec.deploymentId are both unset or not strings".into(),
        ReferenceProblem::NameNotFound { namespace, name } => {
            format!("spec.deploymentName {name:?} names no Deployment in namespace {namespace:?}")
        }
        ReferenceProblem::IdNotFound { namespace, id } => {
            format!("spec.deploymentId {id:?} is the uid of no Deployment in namespace {namespace:?}")
        }
        ReferenceProblem::Mismatch { .. } | ReferenceProblem::Unversioned { .. } => {
            problem.to_string()
        }
    }
}

#[cfg(test)]
mod tests {

    use serde_json::Value;

    use super::*;
    use crate::domain::{DeploymentFacts, LocationRules, RestoreKind, SavepointState};
    use crate::index::Index;
    use crate::resources::SPEC_VERSION_ANNOTATION;

    const UID: &str = "c8e5eee4-414c-40aa-9d1d-76c4434d055a";

    fn mk_index() -> Index {
        let mut index = Index::new(LocationRules::default());
        index.apply_deployment(DeploymentFacts {
            namespace: "default".into(),
            name: "app".into(),
            uid: UID.into(),
            spec_version: Some("3".into()),
            has_savepoints_dir: true,
            restore_kind: Some(RestoreKind::LatestSavepoint),
            ..DeploymentFacts::default()
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
            origin: Some(Origin::UserRequest),
            spec_version: Some("3".into()),
            deployment_name: Some("app".into()),
            deployment_id: Some(UID.into()),
            state: Some(SavepointState::Completed),
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
        copied.origin = Some(Origin::Copied);
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
    fn ties_on_creation_time_are_broken_by_name() {
        let records = [mk_record("y", 1, "s3://b/p"), mk_record("x", 1, "s3://b/p")];
        let plan = plan(&records, &mk_index(), &Policy::default());
        assert_eq!(plan.repairs.len(), 1);
        assert_eq!(
            plan.repairs[0].name, "y",
            "x sorts first and keeps its origin"
        );
    }

    #[test]
    fn without_creation_times_the_platforms_savepoint_holds_first_as_admission_decided() {
        let mut retained = mk_record("retained-chk-42", 0, "s3://b/chk-42");
        retained.created = None;
        retained.origin = Some(Origin::RetainedCheckpoint);
        let mut by_hand = mk_record("restore-from-chk-42", 0, "s3://b/chk-42");
        by_hand.created = None;
        by_hand.origin = None;
        let mut copied = mk_record("a-copy", 0, "s3://b/chk-42");
        copied.created = None;
        copied.origin = Some(Origin::Copied);
        let plan = plan(
            &[copied, by_hand, retained],
            &mk_index(),
            &Policy::default(),
        );
        let repaired: Vec<&str> = plan.repairs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(repaired, ["restore-from-chk-42"]);
        assert!(
            plan.repairs[0]
                .note
                .contains("first held by Savepoint default/retained-chk-42"),
            "{}",
            plan.repairs[0].note
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
        retained.origin = Some(Origin::RetainedCheckpoint);
        let mut bad = mk_record("bad", 4, "ftp://h/p");
        bad.state = Some(SavepointState::Failed);
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
