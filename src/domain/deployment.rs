//! What decisions know of a Deployment ([`DeploymentFacts`]) and how a Savepoint's
//! reference to one is resolved: [`resolve`], against any [`DeploymentLookup`].

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::fields::{namespace_of, str_at};
use super::flink::{ClaimMode, FlinkVersion, claim_mode_keys, savepoint_dir_keys};
use super::savepoint::wire_enum;
use crate::domain::names::SPEC_VERSION_ANNOTATION;

wire_enum! {
    /// Which snapshot a Deployment restores from.
    pub enum RestoreKind {
        /// Never restore.
        None = "NONE",
        /// The latest Savepoint, retained checkpoints excluded.
        LatestSavepoint = "LATEST_SAVEPOINT",
        /// The latest snapshot of any origin.
        LatestState = "LATEST_STATE",
    }
}

/// The fields of a Deployment that decisions read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The spec-version annotation, when set.
    pub spec_version: Option<String>,
    /// Whether the Flink configuration sets a default savepoint directory under any key
    /// its Flink version reads ([`savepoint_dir_keys`]).
    pub has_savepoints_dir: bool,
    /// `spec.restoreStrategy.kind`, when set to a known value.
    pub restore_kind: Option<RestoreKind>,
    /// `spec.template.spec.artifact.flinkVersion`, when it parses.
    pub flink_version: Option<FlinkVersion>,
    /// The claim mode its Flink configuration sets, under any key its version reads.
    pub claim_mode: Option<ClaimMode>,
}

impl DeploymentFacts {
    /// Extracts the facts from a Deployment's metadata and spec.
    pub fn from_parts(
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: Option<&BTreeMap<String, String>>,
        spec: Option<&Value>,
    ) -> Self {
        let spec = spec.unwrap_or(&Value::Null);
        let flink_version = str_at(spec, &["template", "spec", "artifact", "flinkVersion"])
            .and_then(FlinkVersion::parse);
        let configured = |keys: &[&str]| {
            keys.iter().find_map(|key| {
                str_at(spec, &["template", "spec", "flinkConfiguration", key])
                    .map(str::trim)
                    .filter(|value| !value.is_empty())
            })
        };
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            spec_version: annotations
                .and_then(|a| a.get(SPEC_VERSION_ANNOTATION))
                .cloned(),
            has_savepoints_dir: configured(savepoint_dir_keys(flink_version)).is_some(),
            restore_kind: spec
                .get("restoreStrategy")
                .and_then(|r| r.get("kind"))
                .and_then(Value::as_str)
                .and_then(RestoreKind::parse),
            flink_version,
            claim_mode: configured(claim_mode_keys(flink_version))
                .and_then(|mode| ClaimMode::parse(&mode.to_ascii_uppercase())),
        }
    }

    /// Extracts the facts from a whole Deployment manifest; `default_uid` supplies the
    /// uid when the manifest has none (manifests on disk).
    pub fn from_manifest(
        object: &Value,
        default_uid: impl FnOnce(&str, &str) -> String,
    ) -> Option<Self> {
        let name = str_at(object, &["metadata", "name"])?;
        let namespace = namespace_of(object);
        let uid = match str_at(object, &["metadata", "uid"]) {
            Some(uid) => uid.to_string(),
            None => default_uid(namespace, name),
        };
        let annotations: Option<BTreeMap<String, String>> = object
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        Some(Self::from_parts(
            namespace,
            name,
            &uid,
            annotations.as_ref(),
            object.get("spec"),
        ))
    }
}

/// Finds Deployments by name and by uid; the index implements it.
pub trait DeploymentLookup {
    /// The Deployment `namespace/name`.
    fn by_name(&self, namespace: &str, name: &str) -> Option<&DeploymentFacts>;
    /// The Deployment whose `metadata.uid` is `uid`, in any namespace.
    fn by_uid(&self, uid: &str) -> Option<&DeploymentFacts>;
}

/// Why a Savepoint's Deployment reference cannot be used; its text is what follows in a
/// denial, an audit finding or a log line alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceProblem {
    /// Neither `deploymentName` nor `deploymentId` is set.
    Missing,
    /// No Deployment of that name in the namespace.
    NameNotFound {
        /// Namespace of the Savepoint.
        namespace: String,
        /// `spec.deploymentName`.
        name: String,
    },
    /// No Deployment with that uid in the namespace.
    IdNotFound {
        /// Namespace of the Savepoint.
        namespace: String,
        /// `spec.deploymentId`.
        id: String,
    },
    /// Name and uid name different Deployments.
    Mismatch {
        /// `spec.deploymentId`.
        id: String,
        /// The Deployment whose uid `id` is.
        id_names: String,
        /// `spec.deploymentName`.
        name: String,
        /// The uid of the Deployment named `name`.
        name_uid: String,
    },
    /// The Deployment has no spec-version annotation.
    Unversioned {
        /// Namespace of the Deployment.
        namespace: String,
        /// Name of the Deployment.
        name: String,
    },
}

impl fmt::Display for ReferenceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceProblem::Missing => {
                f.write_str("spec.deploymentName: is required when spec.deploymentId is not set")
            }
            ReferenceProblem::NameNotFound { namespace, name } => write!(
                f,
                "spec.deploymentName: Deployment {name:?} not found in namespace {namespace:?}; create the Deployment first or name an existing one"
            ),
            ReferenceProblem::IdNotFound { namespace, id } => write!(
                f,
                "spec.deploymentId: no Deployment in namespace {namespace:?} has metadata.uid {id:?}; use the uid of an existing Deployment or set spec.deploymentName instead"
            ),
            ReferenceProblem::Mismatch {
                id,
                id_names,
                name,
                name_uid,
            } => write!(
                f,
                "spec.deploymentId: {id:?} is the uid of Deployment {id_names:?}, but spec.deploymentName is {name:?} (whose uid is {name_uid:?}); make them name the same Deployment or set only one"
            ),
            ReferenceProblem::Unversioned { namespace, name } => write!(
                f,
                "Deployment {namespace}/{name} has no {SPEC_VERSION_ANNOTATION} annotation, so a Savepoint for it could never be used for restore; let the platform reconcile the Deployment (it sets the annotation) and retry"
            ),
        }
    }
}

/// Resolves the Deployment a Savepoint in `namespace` names by `name`, `id` or both: it
/// must exist in that namespace, both must name the same one, and it must carry a spec
/// version (without one no Savepoint of it is ever restored).
pub fn resolve<'a>(
    lookup: &'a impl DeploymentLookup,
    namespace: &str,
    name: Option<&str>,
    id: Option<&str>,
) -> Result<&'a DeploymentFacts, ReferenceProblem> {
    let by_name =
        match name {
            Some(name) => Some(lookup.by_name(namespace, name).ok_or_else(|| {
                ReferenceProblem::NameNotFound {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }
            })?),
            None => None,
        };
    let by_id = match id {
        Some(id) => Some(
            lookup
                .by_uid(id)
                .filter(|d| d.namespace == namespace)
                .ok_or_else(|| ReferenceProblem::IdNotFound {
                    namespace: namespace.to_string(),
                    id: id.to_string(),
                })?,
        ),
        None => None,
    };
    let deployment = match (by_name, by_id) {
        (Some(a), Some(b)) if a.uid != b.uid => {
            return Err(ReferenceProblem::Mismatch {
                id: b.uid.clone(),
                id_names: b.name.clone(),
                name: a.name.clone(),
                name_uid: a.uid.clone(),
            });
        }
        (Some(found), _) | (None, Some(found)) => found,
        (None, None) => return Err(ReferenceProblem::Missing),
    };
    if deployment.spec_version.is_none() {
        return Err(ReferenceProblem::Unversioned {
            namespace: namespace.to_string(),
            name: deployment.name.clone(),
        });
    }
    Ok(deployment)
}
