//! `/mutate` on Savepoint CREATE: [`mutate`] injects the spec-version annotation, fills in
//! the missing Deployment reference, and sets `spec.origin` to COPIED when the location is
//! already referenced, as one RFC 6902 JSON Patch.

use std::time::Instant;

use json_patch::{Patch, PatchOperation};

use super::decode::{ObjectView, Request};
use super::location::Location;
use super::patch::{add, replace};
use super::validate::{render_violations, spec_str, state_str, validate_object};
use super::{
    Decision, Hold, Policy, Reason, ReferenceScope, is_savepoint, request_name, request_namespace,
    resolve_deployment, warnings,
};
use crate::index::{Index, ObjectKey};
use crate::resources::SPEC_VERSION_ANNOTATION;

/// Decides a `/mutate` request at `now`. The returned [`Decision::hold`] must be recorded
/// by the caller (see [`super::mutate_and_hold`]).
pub fn mutate(request: &Request, index: &Index, policy: &Policy, now: Instant) -> Decision {
    if !is_savepoint(request) {
        return Decision::allow(Reason::NotASavepoint);
    }
    if request.operation != "CREATE" {
        return Decision::allow(Reason::OtherOperation);
    }
    let Some(object) = &request.object else {
        return Decision::deny(Reason::Invalid, "request has no object to review");
    };
    let violations = validate_object(object, &policy.locations);
    if !violations.is_empty() {
        return Decision::deny(Reason::Invalid, render_violations(&violations));
    }
    let namespace = request_namespace(request);
    let name = request_name(request);
    let deployment_name = spec_str(object, "deploymentName");
    let deployment_id = spec_str(object, "deploymentId");
    let deployment = match resolve_deployment(index, namespace, deployment_name, deployment_id) {
        Ok(found) => found,
        Err(denied) => return *denied,
    };
    let mut ops = Vec::new();
    let mut notes = Vec::new();

    if let Some(version) = &deployment.spec_version {
        annotate(object, version, &deployment.name, &mut ops, &mut notes);
    }
    if deployment_name.is_none() {
        ops.push(add(
            &["spec", "deploymentName"],
            deployment.name.as_str().into(),
        ));
    }
    if deployment_id.is_none() {
        ops.push(add(
            &["spec", "deploymentId"],
            deployment.uid.as_str().into(),
        ));
    }

    let location = match Location::parse(
        spec_str(object, "savepointLocation").unwrap_or_default(),
        &policy.locations,
    ) {
        Ok(location) => location.to_string(),
        Err(err) => {
            return Decision::deny(Reason::Invalid, format!("spec.savepointLocation: {err}"));
        }
    };
    let mut origin = spec_str(object, "origin");
    let others = other_holders(index, &location, namespace, &name, policy, now);
    if !others.is_empty() && origin != Some("COPIED") {
        let path = ["spec", "origin"];
        ops.push(match origin {
            Some(_) => replace(&path, "COPIED".into()),
            None => add(&path, "COPIED".into()),
        });
        notes.push(warnings::copied(&location, origin, &others));
        origin = Some("COPIED");
    }
    notes.extend(warnings::restore_warnings(
        deployment,
        origin,
        state_str(object),
        policy,
    ));

    let hold = (!request.is_dry_run()).then(|| Hold {
        location,
        namespace: namespace.to_string(),
        name,
        others,
    });
    let (reason, patch) = if ops.is_empty() {
        (Reason::Allowed, None)
    } else {
        (Reason::Mutated, Some(Patch(ops)))
    };
    Decision {
        patch,
        warnings: notes,
        hold,
        ..Decision::allow(reason)
    }
}

/// The Savepoints other than `namespace/name` holding the normalized `location` at `now`,
/// within the policy's reference scope.
pub fn other_holders(
    index: &Index,
    location: &str,
    namespace: &str,
    name: &str,
    policy: &Policy,
    now: Instant,
) -> Vec<ObjectKey> {
    index
        .holders(location, now)
        .into_iter()
        .filter(|holder| holder.name.as_ref() != name || holder.namespace.as_ref() != namespace)
        .filter(|holder| {
            policy.scope == ReferenceScope::Cluster || holder.namespace.as_ref() == namespace
        })
        .cloned()
        .collect()
}

/// Adds the spec-version annotation when missing; warns when the user's differs.
fn annotate(
    object: &ObjectView,
    version: &str,
    deployment: &str,
    ops: &mut Vec<PatchOperation>,
    notes: &mut Vec<String>,
) {
    match &object.metadata.annotations {
        None if !object.metadata.present => ops.push(add(
            &["metadata"],
            serde_json::json!({ "annotations": { SPEC_VERSION_ANNOTATION: version } }),
        )),
        None => ops.push(add(
            &["metadata", "annotations"],
            serde_json::json!({ SPEC_VERSION_ANNOTATION: version }),
        )),
        Some(annotations) => match annotations.get(SPEC_VERSION_ANNOTATION) {
            None => ops.push(add(
                &["metadata", "annotations", SPEC_VERSION_ANNOTATION],
                version.into(),
            )),
            Some(given) if given != version => {
                notes.push(warnings::version_differs(given, version, deployment));
            }
            Some(_) => {}
        },
    }
}
