//! The shared vocabulary of every subsystem, free of I/O and of the rest of the crate:
//! the contract's names ([`names`]), locations
//! ([`location`]), the Savepoint's closed vocabularies ([`savepoint`]), Deployments and
//! how a reference resolves ([`deployment`]), decision settings ([`policy`]), which locations each namespace may use ([`tenancy`])
//! and each rule
//! the webhook, the reconciler and `audit` apply, stated once ([`rules`]).

pub mod deployment;
pub mod fields;
pub mod flink;
pub mod location;
pub mod names;
pub mod patch;
pub mod policy;
pub mod rules;
pub mod savepoint;
pub mod schema_rules;
pub mod tenancy;

pub use deployment::{DeploymentFacts, DeploymentLookup, ReferenceProblem, RestoreKind};
pub use flink::{ClaimMode, FlinkVersion};
pub use location::{Location, LocationError, LocationRules, NormalizedLocation};
pub use policy::{Policy, ReferenceScope, SharedDelete};
pub use savepoint::{FormatType, Operation, Origin, SavepointState, SnapshotType};
pub use tenancy::TenantLocations;
