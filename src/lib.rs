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
