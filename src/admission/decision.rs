//! The outcome of one review: [`Decision`], and why it came out so: [`Reason`].

use std::fmt;

use crate::domain::ReferenceProblem;

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
    /// A DELETE of a location other Savepoints hold, refused by policy.
    SharedLocation,
    /// A location outside the prefixes the namespace may use.
    LocationNotAllowed,
    /// The user may not update the Deployment the Savepoint restores.
    RestoreNotAuthorized,
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
            Reason::SharedLocation => "shared_location",
            Reason::LocationNotAllowed => "location_not_allowed",
            Reason::RestoreNotAuthorized => "restore_not_authorized",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// What the patch changes and why, one entry per change, for the log.
    pub changes: Vec<String>,
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
            changes: Vec::new(),
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

impl From<ReferenceProblem> for Decision {
    /// The denial of a Savepoint whose Deployment reference cannot be used.
    fn from(problem: ReferenceProblem) -> Self {
        let reason = match problem {
            ReferenceProblem::Missing => Reason::Invalid,
            ReferenceProblem::NameNotFound { .. } | ReferenceProblem::IdNotFound { .. } => {
                Reason::DeploymentNotFound
            }
            ReferenceProblem::Mismatch { .. } => Reason::DeploymentMismatch,
            ReferenceProblem::Unversioned { .. } => Reason::DeploymentUnversioned,
        };
        Decision::deny(reason, problem.to_string())
    }
}
