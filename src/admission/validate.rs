//! `/validate` on Savepoints: [`validate`] checks every field rule on the final object; on
//! CREATE the Deployment must exist and carry a spec version; on UPDATE the immutable
//! fields must not change and a shared location keeps `origin: COPIED`; on DELETE of a
//! location others hold, the policy's [`SharedDelete`] applies. CONNECT is allowed.

use super::decode::Request;
use super::fields::{
    envelope_violations, immutable_changes, render_violations, spec_str, validate_object,
};
use super::mutate::check_tenant_location;
use super::{Decision, Reason, is_savepoint, request_namespace, warnings};
use crate::domain::{
    DeploymentLookup, NormalizedLocation, Operation, Origin, Policy, SharedDelete, deployment,
};
use crate::index::ObjectKey;

/// Decides a `/validate` request against the Deployments of `lookup`; `others` are the
/// other Savepoints holding the location of the stored object (UPDATE and DELETE).
pub fn validate(
    request: &Request,
    lookup: &impl DeploymentLookup,
    policy: &Policy,
    others: &[ObjectKey],
) -> Decision {
    if !is_savepoint(request) {
        return Decision::allow(Reason::NotASavepoint);
    }
    match request.operation {
        Some(Operation::Create | Operation::Update) => {}
        Some(Operation::Delete) => return delete(request, policy, others),
        _ => return Decision::allow(Reason::OtherOperation),
    }
    let Some(object) = &request.object else {
        return Decision::deny(Reason::Invalid, "request has no object to review");
    };
    let mut violations = envelope_violations(request);
    violations.extend(validate_object(object, &policy.locations));
    if request.operation == Some(Operation::Update) {
        let Some(old) = &request.old_object else {
            return Decision::deny(
                Reason::Invalid,
                "UPDATE request has no oldObject; the immutable fields cannot be checked",
            );
        };
        let changes = immutable_changes(old, object);
        if violations.is_empty() && !changes.is_empty() {
            return Decision::deny(Reason::Immutable, render_violations(&changes));
        }
        violations.extend(changes);
        let was_copied = spec_str(old, "origin").and_then(Origin::parse) == Some(Origin::Copied);
        let origin = spec_str(object, "origin");
        if violations.is_empty()
            && was_copied
            && origin != Some(Origin::Copied.as_str())
            && !others.is_empty()
        {
            return Decision::deny(Reason::Immutable, warnings::copied_kept(origin, others));
        }
    }
    if !violations.is_empty() {
        return Decision::deny(Reason::Invalid, render_violations(&violations));
    }
    if request.operation == Some(Operation::Create)
        && let Some(raw) = spec_str(object, "savepointLocation")
        && let Ok(location) = NormalizedLocation::parse(raw, &policy.locations)
        && let Err(refusal) = check_tenant_location(policy, request_namespace(request), &location)
    {
        return refusal;
    }
    if request.operation == Some(Operation::Create)
        && let Err(problem) = deployment::resolve(
            lookup,
            request_namespace(request),
            spec_str(object, "deploymentName"),
            spec_str(object, "deploymentId"),
        )
    {
        return problem.into();
    }
    Decision::allow(Reason::Allowed)
}

/// A DELETE: allowed, unless others hold the location and the policy refuses that.
fn delete(request: &Request, policy: &Policy, others: &[ObjectKey]) -> Decision {
    if others.is_empty() {
        return Decision::allow(Reason::OtherOperation);
    }
    let note = warnings::shared_delete(&request.name, others);
    match policy.shared_delete {
        SharedDelete::Warn => Decision {
            warnings: vec![note],
            ..Decision::allow(Reason::Allowed)
        },
        SharedDelete::Deny => Decision::deny(Reason::SharedLocation, note),
    }
}
