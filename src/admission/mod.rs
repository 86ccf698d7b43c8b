//! Admission decisions, free of I/O: [`mutate`] and [`validate`] take a decoded request and
//! the index and return a [`Decision`]; [`response`] renders it as an AdmissionReview.
//!
//! `/mutate` sees objects before the API server enforces the CRD schema, so both entry
//! points check every field rule first and never build a patch on a malformed value.

pub mod decode;
pub mod location;
pub mod mutate;
pub mod patch;
pub mod response;
pub mod validate;
pub mod warnings;

use std::fmt;
use std::time::Instant;

use decode::Request;
use location::LocationRules;

use crate::index::{DeploymentFacts, Index, ObjectKey};
use crate::resources::{GROUP, VERSION};

pub use mutate::mutate;
pub use response::{ReviewResponse, response};

/// Which other Savepoints make a location "already referenced".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferenceScope {
    /// Only Savepoints in the same namespace.
    #[default]
    Namespace,
    /// Savepoints in any namespace.
    Cluster,
}

/// Settings of the decisions.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Accepted locations.
    pub locations: LocationRules,
    /// Scope of "already referenced".
    pub scope: ReferenceScope,
    /// Universal Blob Storage is configured on the platform, so a Deployment without
    /// `state.savepoints.dir` is fine.
    pub universal_blob_storage: bool,
}

/// Why a decision came out as it did; the `reason` label of the decision metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Allowed with nothing to change.
    Allowed,
    /// Allowed with a patch.
    Mutated,
    /// Not a Savepoint: allowed unchanged.
    NotASavepoint,
    /// An operation the endpoint does not handle: allowed unchanged.
    OtherOperation,
    /// A field rule is broken.
    Invalid,
    /// An immutable field changed.
    Immutable,
    /// The referenced Deployment does not exist.
    DeploymentNotFound,
    /// `deploymentName` and `deploymentId` name different Deployments.
    DeploymentMismatch,
    /// The Deployment has no spec-version annotation.
    DeploymentUnversioned,
    /// The webhook cannot decide: its view of the cluster is not ready.
    Unavailable,
    /// The location holds no Flink savepoint (location verification in `deny` mode).
    LocationRefused,
}

impl Reason {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Mutated => "mutated",
            Reason::NotASavepoint => "not_a_savepoint",
            Reason::OtherOperation => "other_operation",
            Reason::Invalid => "invalid",
            Reason::Immutable => "immutable",
            Reason::DeploymentNotFound => "deployment_not_found",
            Reason::DeploymentMismatch => "deployment_mismatch",
            Reason::DeploymentUnversioned => "deployment_unversioned",
            Reason::Unavailable => "unavailable",
            Reason::LocationRefused => "location_refused",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A location the caller must record as held once the decision is final (see
/// [`Index::hold`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Normalized location.
    pub location: String,
    /// Namespace of the admitted Savepoint.
    pub namespace: String,
    /// Name of the admitted Savepoint.
    pub name: String,
    /// The other holders of the location the decision saw (empty for the hold
    /// `/validate` confirms).
    pub others: Vec<ObjectKey>,
}

/// The outcome of one review.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Allowed or denied.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// Message for the user when denied.
    pub message: Option<String>,
    /// JSON Patch to apply when allowed.
    pub patch: Option<json_patch::Patch>,
    /// Warnings shown by kubectl.
    pub warnings: Vec<String>,
    /// A location to hold for this Savepoint (never set for dry runs).
    pub hold: Option<Hold>,
}

impl Decision {
    /// Allowed, unchanged.
    pub fn allow(reason: Reason) -> Self {
        Self {
            allowed: true,
            reason,
            message: None,
            patch: None,
            warnings: Vec::new(),
            hold: None,
        }
    }

    /// Denied with a message.
    pub fn deny(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            message: Some(message.into()),
            ..Self::allow(reason)
        }
    }
}

/// Whether the request is about a Savepoint of this API group.
pub fn is_savepoint(request: &Request) -> bool {
    request.kind.group == GROUP
        && request.kind.version == VERSION
        && request.kind.kind == "Savepoint"
}

/// Resolves the Deployment a Savepoint names, or the denial that says why it cannot.
pub fn resolve_deployment<'a>(
    index: &'a Index,
    namespace: &str,
    name: Option<&str>,
    id: Option<&str>,
) -> Result<&'a DeploymentFacts, Box<Decision>> {
    let by_name = name.map(|name| (name, index.deployment_by_name(namespace, name)));
    let by_id = id.map(|id| {
        let found = index
            .deployment_by_uid(id)
            .filter(|d| d.namespace == namespace);
        (id, found)
    });
    let deployment = match (by_name, by_id) {
        (Some((name, None)), _) => {
            return Err(Box::new(Decision::deny(
                Reason::DeploymentNotFound,
                format!(
                    "spec.deploymentName: Deployment {name:?} not found in namespace {namespace:?}; create the Deployment first or name an existing one"
                ),
            )));
        }
        (_, Some((id, None))) => {
            return Err(Box::new(Decision::deny(
                Reason::DeploymentNotFound,
                format!(
                    "spec.deploymentId: no Deployment in namespace {namespace:?} has metadata.uid {id:?}; use the uid of an existing Deployment or set spec.deploymentName instead"
                ),
            )));
        }
        (Some((_, Some(a))), Some((id, Some(b)))) if a.uid != b.uid => {
            return Err(Box::new(Decision::deny(
                Reason::DeploymentMismatch,
                format!(
                    "spec.deploymentId: {id:?} is the uid of Deployment {:?}, but spec.deploymentName is {:?} (whose uid is {:?}); make them name the same Deployment or set only one",
                    b.name, a.name, a.uid
                ),
            )));
        }
        (Some((_, Some(found))), _) | (None, Some((_, Some(found)))) => found,
        (None, None) => {
            return Err(Box::new(Decision::deny(
                Reason::Invalid,
                "spec.deploymentName: is required when spec.deploymentId is not set",
            )));
        }
    };
    if deployment.spec_version.is_none() {
        return Err(Box::new(Decision::deny(
            Reason::DeploymentUnversioned,
            format!(
                "Deployment {namespace}/{} has no {} annotation, so a Savepoint for it could never be used for restore; let the platform reconcile the Deployment (it sets the annotation) and retry",
                deployment.name,
                crate::resources::SPEC_VERSION_ANNOTATION
            ),
        )));
    }
    Ok(deployment)
}

/// `/validate`: every field rule on the final object; on CREATE the Deployment must exist
/// and carry a spec version; on UPDATE the immutable fields must not change.
pub fn validate(request: &Request, index: &Index, policy: &Policy) -> Decision {
    if !is_savepoint(request) {
        return Decision::allow(Reason::NotASavepoint);
    }
    let Some(object) = &request.object else {
        return Decision::deny(Reason::Invalid, "request has no object to review");
    };
    let mut violations = validate::validate_object(object, &policy.locations);
    match request.operation.as_str() {
        "CREATE" => {}
        "UPDATE" => {
            if let Some(old) = &request.old_object {
                let changes = validate::immutable_changes(old, object);
                if violations.is_empty() && !changes.is_empty() {
                    return Decision::deny(
                        Reason::Immutable,
                        validate::render_violations(&changes),
                    );
                }
                violations.extend(changes);
            }
        }
        _ => return Decision::allow(Reason::OtherOperation),
    }
    if !violations.is_empty() {
        return Decision::deny(Reason::Invalid, validate::render_violations(&violations));
    }
    if request.operation == "CREATE" {
        let namespace = request_namespace(request);
        if let Err(denied) = resolve_deployment(
            index,
            namespace,
            validate::spec_str(object, "deploymentName"),
            validate::spec_str(object, "deploymentId"),
        ) {
            return *denied;
        }
    }
    Decision::allow(Reason::Allowed)
}

/// The namespace of the object under review.
pub fn request_namespace(request: &Request) -> &str {
    if !request.namespace.is_empty() {
        return &request.namespace;
    }
    request
        .object
        .as_ref()
        .and_then(|o| o.metadata.namespace.as_deref())
        .unwrap_or("default")
}

/// The name of the object under review; for `generateName` creates, the prefix and `*`.
pub fn request_name(request: &Request) -> String {
    if !request.name.is_empty() {
        return request.name.clone();
    }
    let meta = request.object.as_ref().map(|o| &o.metadata);
    if let Some(name) = meta
        .and_then(|m| m.name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return name.to_string();
    }
    match meta.and_then(|m| m.generate_name.as_deref()) {
        Some(prefix) => format!("{prefix}*"),
        None => String::new(),
    }
}

/// `/mutate` at `now`, recording its hold tentatively unless it is a dry run: until
/// `/validate` confirms it, the create may still be refused by the API server.
pub fn mutate_and_hold(
    request: &Request,
    index: &mut Index,
    policy: &Policy,
    now: Instant,
) -> Decision {
    let decision = mutate(request, index, policy, now);
    if let Some(hold) = &decision.hold {
        index.hold(&hold.location, &hold.namespace, &hold.name, true, now);
    }
    decision
}

/// Records the tentative hold of a `/mutate` decision that was taken under a read lock on
/// the index, now that the caller holds the write lock. When the location's other holders
/// changed in between (a concurrent create of the same location), the decision is taken
/// again, so that deciding and holding stay one step for every location.
pub fn record_mutate_hold(
    request: &Request,
    decision: Decision,
    index: &mut Index,
    policy: &Policy,
    now: Instant,
) -> Decision {
    let Some(hold) = &decision.hold else {
        return decision;
    };
    let others = mutate::other_holders(
        index,
        &hold.location,
        &hold.namespace,
        &hold.name,
        policy,
        now,
    );
    if others == hold.others {
        index.hold(&hold.location, &hold.namespace, &hold.name, true, now);
        decision
    } else {
        mutate_and_hold(request, index, policy, now)
    }
}

/// The hold `/validate` confirms: that of an admitted Savepoint CREATE that is not a dry
/// run, since `/validate` is the last step before the object is stored.
pub fn hold_to_confirm(request: &Request, decision: &Decision, policy: &Policy) -> Option<Hold> {
    let admitted_create = decision.allowed
        && decision.reason == Reason::Allowed
        && request.operation == "CREATE"
        && !request.is_dry_run();
    if !admitted_create {
        return None;
    }
    let raw = validate::spec_str(request.object.as_ref()?, "savepointLocation")?;
    let location = location::Location::parse(raw, &policy.locations).ok()?;
    Some(Hold {
        location: location.to_string(),
        namespace: request_namespace(request).to_string(),
        name: request_name(request),
        others: Vec::new(),
    })
}

/// `/validate` at `now`, confirming the hold of an admitted CREATE (see
/// [`hold_to_confirm`]).
pub fn validate_and_confirm(
    request: &Request,
    index: &mut Index,
    policy: &Policy,
    now: Instant,
) -> Decision {
    let decision = validate(request, index, policy);
    if let Some(hold) = hold_to_confirm(request, &decision, policy) {
        index.hold(&hold.location, &hold.namespace, &hold.name, false, now);
    }
    decision
}

#[cfg(test)]
mod tests;
