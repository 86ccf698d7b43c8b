//! Sources that feed the [`crate::index::Index`]: a kube watch of the cluster
//! ([`cluster`]) or a directory of manifests ([`dir`]). Both feed the same index through
//! the same `apply`/`delete`/`reset` calls.

pub mod cluster;
pub mod dir;
