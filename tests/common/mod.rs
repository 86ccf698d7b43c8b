//! Helpers of the end-to-end tests, one concern per module: a real control plane
//! ([`control_plane`]), certificates ([`certs`]), the real webhook binary serving over TLS
//! ([`webhook`]), a client for the test cluster ([`cluster`]), one port in front of several
//! replicas ([`forwarder`]), a steady client ([`pacing`]); manifests and reviews come from the shared testkit ([`kit`]).

#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod cluster;
pub mod control_plane;
pub mod forwarder;
#[path = "../support/kit.rs"]
pub mod kit;
pub mod pacing;
pub mod webhook;

use std::path::PathBuf;

pub use certs::Certs;
pub use cluster::{
    Cluster, Reply, WEBHOOK_USER, read_manifests, savepoints_path, spec_version, warning_text,
    write_webhook_kubeconfig,
};
pub use control_plane::{free_port, log_tail};
pub use forwarder::Forwarder;
pub use kit::{NIL_UUID, mk_deployment, mk_savepoint};
pub use webhook::{Webhook, index_entries};

/// Installs rustls' `ring` provider as the process default; kube and reqwest need one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Path of the webhook binary under test.
pub fn webhook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_savepoint-webhook"))
}
