//! A CA and serving certificate for the webhook under test: [`Certs`].
#![allow(unused_imports)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::control_plane::{self, ControlPlane, Guarded};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use savepoint_webhook::resources::{
    Deployment, GROUP, SPEC_VERSION_ANNOTATION, Savepoint, VERSION,
};
use serde_json::{Value, json};

use super::{install_crypto_provider, webhook_bin};

/// A CA and serving certificate for `127.0.0.1`, made by the binary's own `certs`.
pub struct Certs {
    /// Holds ca.crt, tls.crt and tls.key.
    pub dir: tempfile::TempDir,
    /// The base64 `caBundle` printed by `certs`.
    pub ca_bundle: String,
}

impl Certs {
    /// Runs `savepoint-webhook certs --service savepoint-webhook --namespace default
    /// --out DIR --ip 127.0.0.1`.
    pub fn generate() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("savepoint-webhook-certs-")
            .tempdir()
            .expect("cannot create a temp dir for certificates");
        let out = Command::new(webhook_bin())
            .args([
                "certs",
                "--service",
                "savepoint-webhook",
                "--namespace",
                "default",
                "--ip",
                "127.0.0.1",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .expect("cannot run savepoint-webhook certs");
        assert!(
            out.status.success(),
            "savepoint-webhook certs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let ca_bundle = String::from_utf8(out.stdout)
            .expect("caBundle is UTF-8")
            .trim()
            .to_string();
        assert!(
            !ca_bundle.is_empty(),
            "savepoint-webhook certs printed no caBundle"
        );
        for file in ["ca.crt", "tls.crt", "tls.key"] {
            assert!(
                dir.path().join(file).is_file(),
                "savepoint-webhook certs wrote no {file}"
            );
        }
        Certs { dir, ca_bundle }
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.crt")).expect("cannot read ca.crt")
    }
}
