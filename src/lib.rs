//! savepoint-webhook: an admission webhook for `appmanager.dataartisans.com/v1` Savepoints.
//!
//! The request path: TLS accept ([`server::tls`]) → route ([`server`]) → decode
//! ([`admission::decode`]) → decide ([`admission::mutate`] / [`admission::validate`],
//! reading the [`index`]) → respond ([`admission::response`]). The index is fed by a kube
//! watch or a directory of manifests ([`state`]). Nothing under `admission` or `index`
//! does I/O.
#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod cmd;
pub mod duration;
pub mod index;
pub mod metrics;
pub mod probe;
pub mod readiness;
pub mod reconcile;
pub mod resources;
pub mod server;
pub mod state;
pub mod text;
pub mod verify;

/// The allocator of the binary, and of the load harness so that it measures the same:
/// mimalloc's per-thread heaps, where glibc's malloc spent about an eighth of a `/mutate`
/// request's server time in its arenas (`malloc_consolidate`, `_int_free`).
pub type Allocator = mimalloc::MiMalloc;
