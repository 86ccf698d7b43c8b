//! Warnings shown by kubectl on an admitted Savepoint: why it may never be picked for
//! restore as things stand, and what the webhook changed.

use super::Policy;
use crate::index::{DeploymentFacts, ObjectKey};
use crate::resources::{RestoreKind, SAVEPOINTS_DIR_KEY, SPEC_VERSION_ANNOTATION};

/// The origin was changed to COPIED because `others` already hold `location`.
pub fn copied(location: &str, was: Option<&str>, others: &[ObjectKey]) -> String {
    let was = was.unwrap_or("unset");
    let others: Vec<String> = others.iter().map(ObjectKey::to_string).collect();
    format!(
        "spec.origin set to COPIED (was {was}): location {location} is already referenced by Savepoint {}",
        others.join(", ")
    )
}

/// The user's spec-version annotation differs from the Deployment's.
pub fn version_differs(given: &str, current: &str, deployment: &str) -> String {
    format!(
        "metadata.annotations[{SPEC_VERSION_ANNOTATION}] is {given:?} but Deployment {deployment:?} is at spec version {current:?}; this Savepoint is used only for restores of spec version {given}"
    )
}

/// Reasons the Savepoint could never be picked for restore, or savepoints not work at all.
pub fn restore_warnings(
    deployment: &DeploymentFacts,
    origin: Option<&str>,
    state: Option<&str>,
    policy: &Policy,
) -> Vec<String> {
    let mut out = Vec::new();
    if !deployment.has_savepoints_dir && !policy.universal_blob_storage {
        out.push(format!(
            "Deployment {:?} sets no {SAVEPOINTS_DIR_KEY} in spec.template.spec.flinkConfiguration and no Universal Blob Storage is configured; savepoint features will not work for it",
            deployment.name
        ));
    }
    if state != Some("COMPLETED") {
        out.push(format!(
            "status.state is {}; only COMPLETED Savepoints are used for restore",
            state.unwrap_or("unset")
        ));
    }
    match deployment.restore_kind {
        Some(RestoreKind::None) => out.push(format!(
            "Deployment {:?} has spec.restoreStrategy.kind NONE; it will not restore from this Savepoint",
            deployment.name
        )),
        Some(RestoreKind::LatestSavepoint) if origin == Some("RETAINED_CHECKPOINT") => {
            out.push(format!(
                "Deployment {:?} restores with LATEST_SAVEPOINT, which skips RETAINED_CHECKPOINT Savepoints; use LATEST_STATE to restore from this one",
                deployment.name
            ))
        }
        _ => {}
    }
    out
}
