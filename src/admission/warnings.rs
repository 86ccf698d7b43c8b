//! Warnings shown by kubectl on an admitted Savepoint: why it may never be picked for
//! restore as things stand, and what the webhook changed.

use crate::domain::flink::{claim_mode_keys, savepoint_dir_keys};
use crate::domain::rules;
use crate::domain::rules::RestoreBlocker;
use crate::domain::{DeploymentFacts, NormalizedLocation, Origin, Policy};
use crate::index::ObjectKey;
use crate::resources::SPEC_VERSION_ANNOTATION;

/// Most other holders a message names; the rest are counted.
pub const MAX_NAMED_HOLDERS: usize = 5;

/// `others` as a message names them, count first so that a cut message keeps it:
/// `Savepoint a/x`, `Savepoints a/x, a/y`, or past [`MAX_NAMED_HOLDERS`]
/// `300 Savepoints, among them a/x, ...`.
pub fn holder_list(others: &[ObjectKey]) -> String {
    let names = others
        .iter()
        .take(MAX_NAMED_HOLDERS)
        .map(ObjectKey::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match others.len() {
        1 => format!("Savepoint {names}"),
        n if n <= MAX_NAMED_HOLDERS => format!("Savepoints {names}"),
        n => format!("{n} Savepoints, among them {names}"),
    }
}

/// The origin was changed to COPIED because `others` already hold `location`.
pub fn copied(location: &NormalizedLocation, was: Option<Origin>, others: &[ObjectKey]) -> String {
    let was = was.map_or("unset", Origin::as_str);
    format!(
        "spec.origin set to COPIED (was {was}): location {location} is already referenced by {}",
        holder_list(others)
    )
}

/// An UPDATE would take `COPIED` off a Savepoint whose location `others` hold.
pub fn copied_kept(origin: Option<&str>, others: &[ObjectKey]) -> String {
    let origin = origin.map_or_else(|| "removed".to_string(), |o| format!("{o:?}"));
    format!(
        "spec.origin: is COPIED and cannot become {origin} while {} also references its location; COPIED marks a snapshot that another Savepoint also owns",
        holder_list(others)
    )
}

/// A DELETE of Savepoint `name` while `others` hold its location.
pub fn shared_delete(name: &str, others: &[ObjectKey]) -> String {
    format!(
        "Savepoint {name:?} shares its location with {}; if the platform deletes the snapshot's files with it, those Savepoints can no longer be restored",
        holder_list(others)
    )
}

/// The user's spec-version annotation differs from the Deployment's.
pub fn version_differs(given: &str, current: &str, deployment: &str) -> String {
    format!(
        "metadata.annotations[{SPEC_VERSION_ANNOTATION}] is {given:?} but Deployment {deployment:?} is at spec version {current:?}; this Savepoint is used only for restores of spec version {given}"
    )
}

/// Reasons savepoints may not work at all for `deployment`, the `blockers` that keep this
/// Savepoint from ever being picked for restore, and the risk of restoring it in CLAIM
/// mode when its origin (after the changes) is `origin`.
pub fn restore_warnings(
    deployment: &DeploymentFacts,
    blockers: &[RestoreBlocker],
    origin: Option<Origin>,
    policy: &Policy,
) -> Vec<String> {
    let mut out = Vec::new();
    let flink = deployment
        .flink_version
        .map(|v| format!(" (Flink {v})"))
        .unwrap_or_default();
    if !deployment.has_savepoints_dir && !policy.universal_blob_storage {
        let keys = savepoint_dir_keys(deployment.flink_version);
        out.push(format!(
            "Deployment {:?}{flink} sets no savepoint directory ({} or {}) in spec.template.spec.flinkConfiguration and no Universal Blob Storage is configured; savepoint features will not work for it",
            deployment.name,
            keys[0],
            keys[1..].join(" or ")
        ));
    }
    out.extend(blockers.iter().map(RestoreBlocker::to_string));
    if rules::claims_foreign_snapshot(origin, deployment) {
        out.push(format!(
            "Deployment {:?}{flink} restores in CLAIM mode ({} is CLAIM): Flink takes ownership of the snapshot it restores from and deletes it once a newer checkpoint subsumes it, but this Savepoint is COPIED, a snapshot the platform does not own; set NO_CLAIM to keep it",
            deployment.name,
            claim_mode_keys(deployment.flink_version)[0]
        ));
    }
    out
}
