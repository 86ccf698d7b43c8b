//! The settings decisions are taken under: [`Policy`] and its [`ReferenceScope`].

use std::sync::Arc;

use super::location::LocationRules;
use super::tenancy::TenantLocations;

/// Which other Savepoints make a location "already referenced".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferenceScope {
    /// Only Savepoints in the same namespace.
    #[default]
    Namespace,
    /// Savepoints in any namespace.
    Cluster,
}

impl ReferenceScope {
    /// Whether a holder in `holder_namespace` counts for a Savepoint in `namespace`.
    pub fn covers(self, namespace: &str, holder_namespace: &str) -> bool {
        self == ReferenceScope::Cluster || namespace == holder_namespace
    }
}

/// What a DELETE of a Savepoint gets while other Savepoints hold its location (a platform
/// that disposes a snapshot's files on delete would break those copies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SharedDelete {
    /// Allowed, with a warning naming the other holders.
    #[default]
    Warn,
    /// Refused, naming the other holders.
    Deny,
}

/// Settings of the decisions.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Accepted locations.
    pub locations: LocationRules,
    /// Scope of "already referenced".
    pub scope: ReferenceScope,
    /// Universal Blob Storage is configured on the platform, so a Deployment without a
    /// savepoint directory is fine.
    pub universal_blob_storage: bool,
    /// DELETE of a Savepoint whose location others hold.
    pub shared_delete: SharedDelete,
    /// Which locations each namespace may use; `None`: any.
    pub tenant_locations: Option<Arc<TenantLocations>>,
}
