//! `/validate` on Savepoint CREATE and UPDATE: [`validate`] checks every field rule on the
//! final object; on CREATE the Deployment must exist and carry a spec version, on UPDATE
//! the immutable fields must not change.

use super::decode::Request;
use super::fields::{immutable_changes, render_violations, spec_str, validate_object};
use super::{Decision, Reason, is_savepoint, request_namespace};
use crate::domain::{DeploymentLookup, Operation, Policy, deployment};

/// Decides a `/validate` request against the Deployments of `lookup`.
pub fn validate(request: &Request, lookup: &impl DeploymentLookup, policy: &Policy) -> Decision {
    if !is_savepoint(request) {
        return Decision::allow(Reason::NotASavepoint);
    }
    let Some(object) = &request.object else {
        return Decision::deny(Reason::Invalid, "request has no object to review");
    };
    let mut violations = validate_object(object, &policy.locations);
    match request.operation {
        Some(Operation::Create) => {}
        Some(Operation::Update) => {
            if let Some(old) = &request.old_object {
                let changes = immutable_changes(old, object);
                if violations.is_empty() && !changes.is_empty() {
                    return Decision::deny(Reason::Immutable, render_violations(&changes));
                }
                violations.extend(changes);
            }
        }
        _ => return Decision::allow(Reason::OtherOperation),
    }
    if !violations.is_empty() {
        return Decision::deny(Reason::Invalid, render_violations(&violations));
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
