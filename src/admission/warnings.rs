//! Warnings shown by kubectl on an admitted Savepoint: why it may never be picked for
//! restore as things stand, and what the webhook changed.

use crate::domain::rules::RestoreBlocker;
use crate::domain::{DeploymentFacts, NormalizedLocation, Origin, Policy};
use crate::index::ObjectKey;
use crate::resources::{SAVEPOINTS_DIR_KEY, SPEC_VERSION_ANNOTATION};

/// The origin was changed to COPIED because `others` already hold `location`.
pub fn copied(location: &NormalizedLocation, was: Option<Origin>, others: &[ObjectKey]) -> String {
    let was = was.map_or("unset", Origin::as_str);
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

/// Reasons savepoints may not work at all for `deployment`, then the `blockers` that keep
/// this Savepoint from ever being picked for restore.
pub fn restore_warnings(
    deployment: &DeploymentFacts,
    blockers: &[RestoreBlocker],
    policy: &Policy,
) -> Vec<String> {
    let mut out = Vec::new();
    if !deployment.has_savepoints_dir && !policy.universal_blob_storage {
        out.push(format!(
            "Deployment {:?} sets no {SAVEPOINTS_DIR_KEY} in spec.template.spec.flinkConfiguration and no Universal Blob Storage is configured; savepoint features will not work for it",
            deployment.name
        ));
    }
    out.extend(blockers.iter().map(RestoreBlocker::to_string));
    out
}
