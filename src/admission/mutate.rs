//! `/mutate` on Savepoint CREATE, in two steps so that the caller can read a location's
//! holders and hold it in one step under its lock ([`super::Gate`]): [`prepare`] checks
//! every field rule and resolves the Deployment; [`Pending::decide`] applies the rules of
//! [`crate::domain::rules`] (annotation, Deployment reference, COPIED) given the other
//! holders of the location, as one RFC 6902 JSON Patch with its warnings.

use json_patch::Patch;

use super::decode::Request;
use super::fields::{envelope_violations, render_violations, spec_str, validate_object};
use super::{
    Decision, Reason, holder_key, is_savepoint, request_namespace, savepoint_view, warnings,
};
use crate::domain::rules::{self, SavepointView};
use crate::domain::{
    DeploymentFacts, DeploymentLookup, NormalizedLocation, Operation, Policy, deployment,
};
use crate::index::ObjectKey;

/// A Savepoint CREATE that passed every check needing no holder: what is left to decide
/// is whether its location is already referenced.
#[derive(Debug)]
pub struct Pending<'a> {
    request: &'a Request,
    view: SavepointView<'a>,
    deployment: &'a DeploymentFacts,
    /// The normalized location it holds.
    pub location: NormalizedLocation,
    /// The key it holds the location by ([`holder_key`]).
    pub holder: ObjectKey,
}

/// Checks a `/mutate` request against the Deployments of `lookup`: `Err` is the final
/// decision (not a Savepoint CREATE, malformed, Deployment unusable), `Ok` a Savepoint
/// CREATE whose location must be looked up.
pub fn prepare<'a>(
    request: &'a Request,
    lookup: &'a impl DeploymentLookup,
    policy: &Policy,
) -> Result<Pending<'a>, Decision> {
    if !is_savepoint(request) {
        return Err(Decision::allow(Reason::NotASavepoint));
    }
    if request.operation != Some(Operation::Create) {
        return Err(Decision::allow(Reason::OtherOperation));
    }
    let Some(object) = &request.object else {
        return Err(Decision::deny(
            Reason::Invalid,
            "request has no object to review",
        ));
    };
    let mut violations = envelope_violations(request);
    violations.extend(validate_object(object, &policy.locations));
    if !violations.is_empty() {
        return Err(Decision::deny(
            Reason::Invalid,
            render_violations(&violations),
        ));
    }
    let namespace = request_namespace(request);
    let view = savepoint_view(object);
    let deployment =
        deployment::resolve(lookup, namespace, view.deployment_name, view.deployment_id)?;
    let location = NormalizedLocation::parse(
        spec_str(object, "savepointLocation").unwrap_or_default(),
        &policy.locations,
    )
    .map_err(|err| Decision::deny(Reason::Invalid, format!("spec.savepointLocation: {err}")))?;
    check_tenant_location(policy, namespace, &location)?;
    Ok(Pending {
        request,
        view,
        deployment,
        location,
        holder: holder_key(request),
    })
}

/// Refuses a location outside the prefixes the policy gives `namespace`.
pub fn check_tenant_location(
    policy: &Policy,
    namespace: &str,
    location: &NormalizedLocation,
) -> Result<(), Decision> {
    match &policy.tenant_locations {
        Some(tenants) => tenants.check(namespace, location).map_err(|why| {
            Decision::deny(
                Reason::LocationNotAllowed,
                format!("spec.savepointLocation: {why}"),
            )
        }),
        None => Ok(()),
    }
}

impl Pending<'_> {
    /// Whether the decision must leave no trace (a server-side dry run).
    pub fn is_dry_run(&self) -> bool {
        self.request.is_dry_run()
    }

    /// The decision, given the other Savepoints holding the location.
    pub fn decide(self, others: &[ObjectKey], policy: &Policy) -> Decision {
        let changes = rules::changes(&self.view, self.deployment, !others.is_empty());
        let ops = changes
            .iter()
            .map(|change| change.operation(self.view.metadata))
            .collect::<Vec<_>>();
        let mut notes = Vec::new();
        if let Some(given) = rules::stale_spec_version(&self.view, self.deployment) {
            notes.push(warnings::version_differs(
                given,
                self.deployment.spec_version.as_deref().unwrap_or_default(),
                &self.deployment.name,
            ));
        }
        for change in &changes {
            if let rules::Change::SetCopied { was } = change
                && !others.is_empty()
            {
                notes.push(warnings::copied(&self.location, *was, others));
            }
        }
        let origin = rules::origin_after(&self.view, &changes);
        notes.extend(warnings::restore_warnings(
            self.deployment,
            &rules::restore_blockers(self.view.state, origin, self.deployment),
            origin,
            policy,
        ));
        let logged = changes
            .iter()
            .map(|change| match change {
                rules::Change::SetCopied { .. } if !others.is_empty() => format!(
                    "{change} because location {} is already referenced by {}",
                    self.location,
                    warnings::holder_list(others)
                ),
                rules::Change::SetCopied { .. } => format!("{change} because it has no origin"),
                _ => change.to_string(),
            })
            .collect();
        let (reason, patch) = if ops.is_empty() {
            (Reason::Allowed, None)
        } else {
            (Reason::Mutated, Some(Patch(ops)))
        };
        Decision {
            patch,
            warnings: notes,
            changes: logged,
            ..Decision::allow(reason)
        }
    }
}
