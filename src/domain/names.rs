//! The names the contract fixes: API group and version, the spec-version annotation,
//! the Flink configuration key of the savepoint directory.

/// API group of both resources.
pub const GROUP: &str = "appmanager.dataartisans.com";
/// API version of both resources.
pub const VERSION: &str = "v1";
/// Annotation that ties a Savepoint to the Deployment spec version it was taken for.
pub const SPEC_VERSION_ANNOTATION: &str =
    "com.dataartisans.appmanager.controller.deployment.spec.version";
/// Flink configuration key naming the default savepoint directory of a Deployment.
pub const SAVEPOINTS_DIR_KEY: &str = "state.savepoints.dir";
