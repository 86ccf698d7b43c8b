//! Each rule that admission, the reconciler and `audit` apply to a Savepoint, stated once:
//! [`changes`] (inject the spec-version annotation, complete the Deployment reference, set
//! COPIED when the origin is absent or the location is already referenced), [`restore_blockers`] ("can never be picked for restore"), [`stale_spec_version`]
//! and [`holder_rank`] (which of the Savepoints holding one location holds it first).
//! Callers render what these return; they never re-state a condition.

use std::fmt;

use json_patch::PatchOperation;

use super::deployment::{DeploymentFacts, RestoreKind};
use super::flink::ClaimMode;
use super::patch::{add, replace};
use super::savepoint::{Origin, SavepointState};
use crate::domain::names::SPEC_VERSION_ANNOTATION;

/// How much of `metadata` a Savepoint carries, which decides the shape of the patch that
/// adds the annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataShape {
    /// No `metadata` at all (possible in an AdmissionReview only).
    Absent,
    /// `metadata` without `annotations`.
    NoAnnotations,
    /// `metadata.annotations` exists.
    Annotations,
}

/// What the rules read of one Savepoint, from an admission request or a stored object.
#[derive(Clone, Copy, Debug)]
pub struct SavepointView<'a> {
    /// How much metadata it carries.
    pub metadata: MetadataShape,
    /// Its spec-version annotation.
    pub spec_version: Option<&'a str>,
    /// `spec.deploymentName`.
    pub deployment_name: Option<&'a str>,
    /// `spec.deploymentId`.
    pub deployment_id: Option<&'a str>,
    /// `spec.origin`.
    pub origin: Option<Origin>,
    /// `status.state`.
    pub state: Option<SavepointState>,
}

/// One change the rules make to a Savepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The spec-version annotation is missing: it is set to the Deployment's.
    AddAnnotation {
        /// The Deployment's spec version.
        version: String,
    },
    /// `spec.deploymentName` is missing: it is set to the resolved Deployment's name.
    FillDeploymentName {
        /// The Deployment's name.
        name: String,
    },
    /// `spec.deploymentId` is missing: it is set to the resolved Deployment's uid.
    FillDeploymentId {
        /// The Deployment's uid.
        uid: String,
    },
    /// The origin is absent (a Savepoint added by hand), or the location is already
    /// referenced by another Savepoint: origin becomes COPIED.
    SetCopied {
        /// The origin before.
        was: Option<Origin>,
    },
}

impl Change {
    /// The JSON Patch operation that makes the change to a Savepoint of `metadata` shape.
    pub fn operation(&self, metadata: MetadataShape) -> PatchOperation {
        match self {
            Change::AddAnnotation { version } => match metadata {
                MetadataShape::Absent => add(
                    &["metadata"],
                    serde_json::json!({ "annotations": { SPEC_VERSION_ANNOTATION: version } }),
                ),
                MetadataShape::NoAnnotations => add(
                    &["metadata", "annotations"],
                    serde_json::json!({ SPEC_VERSION_ANNOTATION: version }),
                ),
                MetadataShape::Annotations => add(
                    &["metadata", "annotations", SPEC_VERSION_ANNOTATION],
                    version.as_str().into(),
                ),
            },
            Change::FillDeploymentName { name } => {
                add(&["spec", "deploymentName"], name.as_str().into())
            }
            Change::FillDeploymentId { uid } => add(&["spec", "deploymentId"], uid.as_str().into()),
            Change::SetCopied { was } => {
                let path = ["spec", "origin"];
                let value = Origin::Copied.as_str().into();
                match was {
                    Some(_) => replace(&path, value),
                    None => add(&path, value),
                }
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddAnnotation { version } => {
                write!(f, "added annotation {SPEC_VERSION_ANNOTATION}={version}")
            }
            Change::FillDeploymentName { name } => {
                write!(f, "filled in spec.deploymentName={name}")
            }
            Change::FillDeploymentId { uid } => write!(f, "filled in spec.deploymentId={uid}"),
            Change::SetCopied { was } => write!(
                f,
                "set spec.origin to COPIED (was {})",
                was.map_or("unset", Origin::as_str)
            ),
        }
    }
}

/// What the rules change on `savepoint`, whose reference resolved to `deployment`, given
/// whether another Savepoint already holds its location (`referenced`), in the order the
/// patch applies them.
pub fn changes(
    savepoint: &SavepointView<'_>,
    deployment: &DeploymentFacts,
    referenced: bool,
) -> Vec<Change> {
    let mut out = Vec::new();
    if savepoint.spec_version.is_none()
        && let Some(version) = &deployment.spec_version
    {
        out.push(Change::AddAnnotation {
            version: version.clone(),
        });
    }
    if savepoint.deployment_name.is_none() {
        out.push(Change::FillDeploymentName {
            name: deployment.name.clone(),
        });
    }
    if savepoint.deployment_id.is_none() {
        out.push(Change::FillDeploymentId {
            uid: deployment.uid.clone(),
        });
    }
    // A Savepoint added without an origin was added by hand for an existing snapshot:
    // COPIED, as the product documents; one whose location another holds is COPIED
    // whatever origin it was given.
    if (referenced || savepoint.origin.is_none()) && savepoint.origin != Some(Origin::Copied) {
        out.push(Change::SetCopied {
            was: savepoint.origin,
        });
    }
    out
}

/// The origin `savepoint` has once `changes` are applied.
pub fn origin_after(savepoint: &SavepointView<'_>, changes: &[Change]) -> Option<Origin> {
    if changes
        .iter()
        .any(|c| matches!(c, Change::SetCopied { .. }))
    {
        Some(Origin::Copied)
    } else {
        savepoint.origin
    }
}

/// The user's spec-version annotation, when it differs from the Deployment's current one:
/// the Savepoint is then used only for restores of that older (or other) spec version.
pub fn stale_spec_version<'a>(
    savepoint: &SavepointView<'a>,
    deployment: &DeploymentFacts,
) -> Option<&'a str> {
    let current = deployment.spec_version.as_deref()?;
    savepoint.spec_version.filter(|given| *given != current)
}

/// Why a Savepoint can never be picked for restore as things stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreBlocker {
    /// Only COMPLETED Savepoints are restored.
    NotCompleted {
        /// The state it has.
        state: Option<SavepointState>,
    },
    /// The Deployment never restores.
    RestoreNone {
        /// The Deployment's name.
        deployment: String,
    },
    /// LATEST_SAVEPOINT skips retained checkpoints.
    RetainedSkipped {
        /// The Deployment's name.
        deployment: String,
    },
}

impl fmt::Display for RestoreBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreBlocker::NotCompleted { state } => write!(
                f,
                "status.state is {}; only COMPLETED Savepoints are used for restore",
                state.map_or("unset", SavepointState::as_str)
            ),
            RestoreBlocker::RestoreNone { deployment } => write!(
                f,
                "Deployment {deployment:?} has spec.restoreStrategy.kind NONE; it will not restore from this Savepoint"
            ),
            RestoreBlocker::RetainedSkipped { deployment } => write!(
                f,
                "Deployment {deployment:?} restores with LATEST_SAVEPOINT, which skips RETAINED_CHECKPOINT Savepoints; use LATEST_STATE to restore from this one"
            ),
        }
    }
}

/// Every reason a Savepoint in `state` with `origin` (after the changes) can never be
/// picked for restore by `deployment`.
pub fn restore_blockers(
    state: Option<SavepointState>,
    origin: Option<Origin>,
    deployment: &DeploymentFacts,
) -> Vec<RestoreBlocker> {
    let mut out = Vec::new();
    if state != Some(SavepointState::Completed) {
        out.push(RestoreBlocker::NotCompleted { state });
    }
    match deployment.restore_kind {
        Some(RestoreKind::None) => out.push(RestoreBlocker::RestoreNone {
            deployment: deployment.name.clone(),
        }),
        Some(RestoreKind::LatestSavepoint) if origin == Some(Origin::RetainedCheckpoint) => out
            .push(RestoreBlocker::RetainedSkipped {
                deployment: deployment.name.clone(),
            }),
        _ => {}
    }
    out
}

/// Whether restoring `deployment` from a Savepoint whose origin (after the changes) is
/// `origin` lets Flink delete a snapshot the platform does not own: a COPIED Savepoint
/// restored in CLAIM mode.
pub fn claims_foreign_snapshot(origin: Option<Origin>, deployment: &DeploymentFacts) -> bool {
    origin == Some(Origin::Copied) && deployment.claim_mode == Some(ClaimMode::Claim)
}

/// The order in which Savepoints holding one location hold it, earliest first: by
/// creation time (unknown last); among equal or unknown times (manifests on disk, creates
/// within one second), by origin: one the platform set (USER_REQUEST, SUSPEND,
/// RETAINED_CHECKPOINT: it took the snapshot) before one with none (added by hand) before
/// COPIED (admission makes every later holder COPIED); then by namespace and name, so the
/// order is total and the same on every replica.
pub fn holder_rank<'a>(
    created: Option<i64>,
    origin: Option<Origin>,
    namespace: &'a str,
    name: &'a str,
) -> (i64, u8, &'a str, &'a str) {
    let origin_class = match origin {
        Some(Origin::Copied) => 2,
        None => 1,
        Some(_) => 0,
    };
    (created.unwrap_or(i64::MAX), origin_class, namespace, name)
}
