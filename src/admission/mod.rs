//! Admission decisions. [`Gate`] is the entry point of every caller (the server,
//! `review`, tests, benchmarks, the fuzz target): it takes the index's read lock, runs the
//! pure decision ([`mutate`] or [`validate`]) and records the Savepoint's provisional
//! hold; [`response`] renders the [`Decision`] as an AdmissionReview.
//!
//! `/mutate` sees objects before the API server enforces the CRD schema, so both
//! decisions check every field rule ([`fields`]) first and never build a patch on a
//! malformed value. The rules themselves live in [`crate::domain::rules`].

pub mod decision;
pub mod decode;
pub mod fields;
pub mod gate;
pub mod mutate;
pub mod response;
pub mod validate;
pub mod warnings;

use decode::{ObjectView, Request};

use crate::domain::rules::{MetadataShape, SavepointView};
use crate::domain::{Origin, SavepointState};
use crate::index::ObjectKey;
use crate::resources::{GROUP, SPEC_VERSION_ANNOTATION, VERSION};

pub use decision::{Decision, Reason};
pub use gate::Gate;
pub use response::{ReviewResponse, response};

/// Whether the request is about a Savepoint of this API group.
pub fn is_savepoint(request: &Request) -> bool {
    request.kind.group == GROUP
        && request.kind.version == VERSION
        && request.kind.kind == "Savepoint"
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

/// The name of the object under review: the request's, else the object's; empty for a
/// `generateName` create whose name the API server has not chosen yet.
pub fn request_name(request: &Request) -> &str {
    if !request.name.is_empty() {
        return &request.name;
    }
    request
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.as_deref())
        .unwrap_or_default()
}

/// The `generateName` prefix of the object under review, when it has one.
pub fn generated_prefix(request: &Request) -> Option<&str> {
    request
        .object
        .as_ref()?
        .metadata
        .generate_name
        .as_deref()
        .filter(|prefix| !prefix.is_empty())
}

/// The key the Savepoint under review holds its location by: its namespace and name, or
/// while its name is not chosen yet, a key of its own from the `generateName` prefix and
/// the review's uid ([`ObjectKey::generated`]), so two such creates of one prefix are
/// two holders.
pub fn holder_key(request: &Request) -> ObjectKey {
    let namespace = request_namespace(request);
    match request_name(request) {
        "" => ObjectKey::generated(
            namespace,
            generated_prefix(request).unwrap_or_default(),
            &request.uid,
        ),
        name => ObjectKey::new(namespace, name),
    }
}

/// The Deployment a Savepoint CREATE restores, resolved through `lookup` (by name, or by
/// `deploymentId` alone): whose `update` the user must be allowed with
/// `--authorize-restores`, and whose Flink must read the snapshot; `None` when the request is no Savepoint CREATE or names no
/// Deployment that exists (the decision refuses those).
pub fn restored_deployment<'a>(
    request: &Request,
    lookup: &'a impl crate::domain::DeploymentLookup,
) -> Option<&'a crate::domain::DeploymentFacts> {
    if !is_savepoint(request) || request.operation != Some(crate::domain::Operation::Create) {
        return None;
    }
    let object = request.object.as_ref()?;
    crate::domain::deployment::resolve(
        lookup,
        request_namespace(request),
        fields::spec_str(object, "deploymentName"),
        fields::spec_str(object, "deploymentId"),
    )
    .ok()
}

/// What the rules read of an object under review that passed the field rules.
pub fn savepoint_view(object: &ObjectView) -> SavepointView<'_> {
    let metadata = &object.metadata;
    SavepointView {
        metadata: match &metadata.annotations {
            None if !metadata.present => MetadataShape::Absent,
            None => MetadataShape::NoAnnotations,
            Some(_) => MetadataShape::Annotations,
        },
        spec_version: metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_VERSION_ANNOTATION))
            .map(String::as_str),
        deployment_name: fields::spec_str(object, "deploymentName"),
        deployment_id: fields::spec_str(object, "deploymentId"),
        origin: fields::spec_str(object, "origin").and_then(Origin::parse),
        state: fields::state_str(object).and_then(SavepointState::parse),
    }
}

#[cfg(test)]
mod tests;
