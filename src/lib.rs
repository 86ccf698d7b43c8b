//! savepoint-webhook: an admission webhook for `appmanager.dataartisans.com/v1` Savepoints.
//!
//! The request path: TLS accept ([`server::tls`]) → route ([`server`]) → decode
//! ([`admission::decode`]) → admit ([`admission::Gate`]: the pure decision of
//! [`admission::mutate`] / [`admission::validate`] on the [`index`], and the Savepoint's
//! provisional hold) → respond ([`admission::response`]). The rules every subsystem
//! applies are stated once in [`domain`]. The index is fed by a kube watch or a directory
//! of manifests ([`state`]). Nothing under `domain`, `admission` or `index` does I/O.
#![forbid(unsafe_code)]

pub mod admission;
pub mod authorize;
pub mod certs;
pub mod cli;
pub mod cmd;
pub mod domain;
pub mod duration;
pub mod gauges;
pub mod index;
pub mod logging;
pub mod probe;
pub mod readiness;
pub mod reconcile;
pub mod resources;
pub mod server;
pub mod state;
pub mod supervise;
pub mod text;
pub mod verify;

/// The allocator of the binary, and of the load harness so that it measures the same:
/// mimalloc's per-thread heaps, where glibc's malloc spent about an eighth of a `/mutate`
/// request's server time in its arenas (`malloc_consolidate`, `_int_free`).
pub type Allocator = mimalloc::MiMalloc;
