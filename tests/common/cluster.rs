//! A client of the test cluster ([`Cluster`]) and readers of its answers.
#![allow(unused_imports)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::control_plane::{self, ControlPlane, Guarded};
use super::install_crypto_provider;
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

/// An answer of the API server to a raw request: status, JSON body and the text of
/// every `Warning` header.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (an object, or a `Status` on failure).
    pub body: Value,
    /// Warnings the API server passed on (from admission webhooks).
    pub warnings: Vec<String>,
}

impl Reply {
    /// Whether the request succeeded.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `message` of a failure `Status`.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    /// The returned Savepoint; panics with the answer when the request failed.
    pub fn savepoint(&self, what: &str) -> Savepoint {
        assert!(
            self.ok(),
            "{what}: expected success, got HTTP {}: {}",
            self.status,
            self.message()
        );
        serde_json::from_value(self.body.clone()).unwrap_or_else(|e| {
            panic!("{what}: the answer is not a Savepoint ({e}): {}", self.body)
        })
    }

    /// The refusal message; panics when the request succeeded.
    pub fn refusal(&self, what: &str) -> &str {
        assert!(
            !self.ok(),
            "{what}: expected a refusal, but it was accepted (HTTP {}): {}",
            self.status,
            self.body
        );
        self.message()
    }
}

/// A client of the test cluster: kube's for typed reads and setup, raw HTTPS for
/// Savepoint writes (to see the API server's `Warning` headers).
#[derive(Clone)]
pub struct Cluster {
    /// kube's client, from the control plane's kubeconfig.
    pub client: kube::Client,
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Cluster {
    /// Connects to the control plane with its kubeconfig.
    pub async fn connect(cp: &ControlPlane) -> Cluster {
        install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path()).expect("kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig makes a kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("cannot build the HTTPS client for the API server");
        Cluster {
            client,
            http,
            server: cp.server_url(),
            token: cp.token().to_string(),
        }
    }

    /// Creates the CRDs and waits until they are Established: the Savepoint CRD of
    /// `deploy/crds/cel/` (field rules as CEL) on servers from 1.25, of `deploy/crds/`
    /// before, and `deploy/crds/deployments.yaml`.
    pub async fn apply_crds(&self) {
        let savepoints = if self.minor().await >= 25 {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/crds/cel/savepoints.yaml"
            )
        } else {
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/savepoints.yaml")
        };
        let deployments = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/deployments.yaml");
        let crds: Vec<CustomResourceDefinition> = [savepoints, deployments]
            .into_iter()
            .flat_map(|path| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("{path} is not readable: {e}"));
                serde_saphyr::from_multiple::<CustomResourceDefinition>(&text)
                    .unwrap_or_else(|e| panic!("{path} does not parse as CRDs: {e}"))
            })
            .collect();
        assert_eq!(
            crds.len(),
            2,
            "expected one CRD in each of {savepoints} and {deployments}"
        );
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in &crds {
            api.create(&PostParams::default(), crd)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the API server refused CRD {:?}: {e}",
                        crd.metadata.name.as_deref().unwrap_or_default()
                    )
                });
        }
        self.wait_established(&crds).await;
    }

    /// Creates the CRDs of a YAML file of the project (path relative to the crate root)
    /// and waits until they are Established; the API server's refusal when it refuses one.
    pub async fn install_crd_file(&self, relative: &str) -> Result<(), String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is not readable: {e}", path.display()));
        let crds = serde_saphyr::from_multiple::<CustomResourceDefinition>(&text)
            .unwrap_or_else(|e| panic!("{relative} does not parse as CRDs: {e}"));
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in &crds {
            api.create(&PostParams::default(), crd)
                .await
                .map_err(|e| format!("{relative}: {e}"))?;
        }
        self.wait_established(&crds).await;
        Ok(())
    }

    /// Waits (at most 30 s) until every CRD of `crds` is Established.
    async fn wait_established(&self, crds: &[CustomResourceDefinition]) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        for crd in crds {
            let name = crd.metadata.name.clone().expect("CRD has a name");
            loop {
                let got = api.get(&name).await.expect("get CRD");
                let established = got
                    .status
                    .iter()
                    .flat_map(|s| s.conditions.iter().flatten())
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "CRD {name} not Established after 30 s: {:?}",
                    got.status
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Creates every object of `manifests`, resolving each kind by discovery.
    pub async fn create_manifests(&self, manifests: &[Value]) {
        for manifest in manifests {
            let object: DynamicObject = serde_json::from_value(manifest.clone())
                .unwrap_or_else(|e| panic!("not a Kubernetes object ({e}): {manifest}"));
            let types = object
                .types
                .clone()
                .expect("a manifest has apiVersion and kind");
            let (group, version) = match types.api_version.split_once('/') {
                Some((group, version)) => (group, version),
                None => ("", types.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &types.kind);
            let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .unwrap_or_else(|e| panic!("the API server does not serve {gvk:?}: {e}"));
            let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
                (Scope::Namespaced, Some(namespace)) => {
                    Api::namespaced_with(self.client.clone(), namespace, &resource)
                }
                (Scope::Namespaced, None) => {
                    Api::default_namespaced_with(self.client.clone(), &resource)
                }
                (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
            };
            api.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the API server refused {} {:?}: {e}",
                        types.kind,
                        object.metadata.name.as_deref().unwrap_or_default()
                    )
                });
        }
    }

    /// The API server's minor version (`37` for 1.37.2).
    pub async fn minor(&self) -> u32 {
        let info = self
            .client
            .apiserver_version()
            .await
            .expect("GET /version of the API server");
        info.minor
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(0)
    }

    /// Connects to `cp`, installs the CRDs and the webhook's identity, and creates
    /// `namespace` holding a Deployment `app` at `spec_version`: the start of most
    /// end-to-end tests. Returns the client and the Deployment's uid.
    pub async fn prepared(
        cp: &ControlPlane,
        namespace: &str,
        spec_version: &str,
    ) -> (Cluster, String) {
        let cluster = Cluster::connect(cp).await;
        cluster.apply_crds().await;
        cluster.create_webhook_identity().await;
        cluster.create_namespace(namespace).await;
        let uid = cluster
            .create_deployment(super::mk_deployment(namespace, "app", Some(spec_version)))
            .await;
        (cluster, uid)
    }

    /// Registers the webhook configurations shipped in `deploy/base/webhooks.yaml`, each
    /// webhook's `clientConfig` replaced by `url` (`https://127.0.0.1:PORT`) plus its
    /// service path, and `ca_bundle`.
    pub async fn register_shipped_webhooks(&self, url: &str, ca_bundle: &str) {
        self.register_patched_webhooks(url, ca_bundle, &[]).await;
    }

    /// [`Cluster::register_shipped_webhooks`], with each configuration patched by the
    /// JSON Patch files `patches` (paths relative to the crate root, as an overlay's
    /// `patchesJson6902` applies them).
    pub async fn register_patched_webhooks(&self, url: &str, ca_bundle: &str, patches: &[&str]) {
        let mut manifests = read_manifests("deploy/base/webhooks.yaml");
        for relative in patches {
            let ops = read_manifests(relative)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("{relative} holds no patch"));
            let patch: json_patch::Patch = serde_json::from_value(ops)
                .unwrap_or_else(|e| panic!("{relative} is not a JSON Patch: {e}"));
            for manifest in &mut manifests {
                json_patch::patch(manifest, &patch)
                    .unwrap_or_else(|e| panic!("{relative} does not apply: {e}"));
            }
        }
        for manifest in &mut manifests {
            for webhook in manifest["webhooks"]
                .as_array_mut()
                .expect("a webhook configuration lists webhooks")
            {
                let path = webhook["clientConfig"]["service"]["path"]
                    .as_str()
                    .expect("a shipped webhook calls a service path")
                    .to_string();
                webhook["clientConfig"] =
                    json!({ "url": format!("{url}{path}"), "caBundle": ca_bundle });
            }
        }
        self.create_manifests(&manifests).await;
    }

    /// Creates the webhook's namespace, ServiceAccount and least-privilege RBAC from
    /// `deploy/base`: the identity the webhook runs under (see
    /// [`write_webhook_kubeconfig`]).
    pub async fn create_webhook_identity(&self) {
        for manifest in [
            "deploy/base/namespace.yaml",
            "deploy/base/serviceaccount.yaml",
            "deploy/base/rbac.yaml",
        ] {
            self.create_manifests(&read_manifests(manifest)).await;
        }
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &str) {
        self.create_labelled_namespace(name, json!({})).await;
    }

    /// Creates a namespace with labels.
    pub async fn create_labelled_namespace(&self, name: &str, labels: Value) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))
                .expect("namespace");
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    }

    /// Creates a Deployment from a manifest (see [`mk_deployment`]); returns its uid.
    pub async fn create_deployment(&self, manifest: Value) -> String {
        let object: DynamicObject =
            serde_json::from_value(manifest.clone()).expect("a Deployment manifest");
        let namespace = object.metadata.namespace.clone().expect("namespaced");
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &namespace,
            &ApiResource::erase::<Deployment>(&()),
        );
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("cannot create Deployment {manifest}: {e}"));
        created
            .metadata
            .uid
            .expect("a created Deployment has a uid")
    }

    /// A raw request with the admin token.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.request_as(None, method, path, content_type, body)
            .await
    }

    /// Creates a Savepoint as `user` (the admin impersonates it, in `system:masters`, so
    /// RBAC allows it and admission sees that user).
    pub async fn create_savepoint_as(&self, user: &str, manifest: &Value) -> Reply {
        let namespace = manifest["metadata"]["namespace"]
            .as_str()
            .expect("the manifest names its namespace");
        self.request_as(
            Some(user),
            reqwest::Method::POST,
            &savepoints_path(namespace),
            "application/json",
            Some(manifest),
        )
        .await
    }

    /// Creates a Savepoint as `user` in exactly `groups` (the admin impersonates them), so
    /// that RBAC decides as for that user alone.
    pub async fn create_savepoint_as_member(
        &self,
        user: &str,
        groups: &[&str],
        manifest: &Value,
    ) -> Reply {
        let namespace = manifest["metadata"]["namespace"]
            .as_str()
            .expect("the manifest names its namespace");
        self.request_impersonating(
            Some((user, groups)),
            reqwest::Method::POST,
            &savepoints_path(namespace),
            "application/json",
            Some(manifest),
        )
        .await
    }

    async fn request_as(
        &self,
        user: Option<&str>,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Reply {
        let identity = user.map(|user| (user, &["system:masters"][..]));
        self.request_impersonating(identity, method, path, content_type, body)
            .await
    }

    async fn request_impersonating(
        &self,
        identity: Option<(&str, &[&str])>,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .header("Accept", "application/json");
        if let Some((user, groups)) = identity {
            request = request.header("Impersonate-User", user);
            for group in groups {
                request = request.header("Impersonate-Group", *group);
            }
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", content_type)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e:#}"));
        let status = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| warning_text(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            warnings,
        }
    }

    /// GETs `path` with the admin token; the body as received.
    pub async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {path} failed: {e:#}"));
        response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: reading the body failed: {e:#}"))
            .to_vec()
    }

    /// POSTs a Savepoint manifest (see [`mk_savepoint`]), as a server-side dry run when
    /// `dry_run`.
    pub async fn create_savepoint(&self, manifest: &Value, dry_run: bool) -> Reply {
        let namespace = manifest["metadata"]["namespace"]
            .as_str()
            .expect("the manifest names its namespace");
        let mut path = savepoints_path(namespace);
        if dry_run {
            path.push_str("?dryRun=All");
        }
        self.request(
            reqwest::Method::POST,
            &path,
            "application/json",
            Some(manifest),
        )
        .await
    }

    /// Applies a JSON merge patch to a Savepoint (an UPDATE for admission).
    pub async fn patch_savepoint(&self, namespace: &str, name: &str, patch: &Value) -> Reply {
        self.request(
            reqwest::Method::PATCH,
            &format!("{}/{name}", savepoints_path(namespace)),
            "application/merge-patch+json",
            Some(patch),
        )
        .await
    }

    /// The stored Savepoint, if any.
    pub async fn get_savepoint(&self, namespace: &str, name: &str) -> Option<Savepoint> {
        Api::<Savepoint>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get Savepoint {namespace}/{name}: {e}"))
    }

    /// Names of the Savepoints stored in a namespace.
    pub async fn savepoint_names(&self, namespace: &str) -> Vec<String> {
        Api::<Savepoint>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot list Savepoints in {namespace}: {e}"))
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect()
    }
}

/// The documents of a multi-document YAML file of the project (path relative to the
/// crate root), as JSON values; empty documents are skipped.
pub fn read_manifests(relative: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// The identity the webhook runs as: the ServiceAccount of `deploy/base`.
pub const WEBHOOK_USER: &str = "system:serviceaccount:savepoint-webhook:savepoint-webhook";

/// Writes a kubeconfig for `cp` that acts as the webhook's ServiceAccount (the admin
/// token impersonates it), so the webhook gets only what `deploy/base/rbac.yaml` grants.
pub fn write_webhook_kubeconfig(cp: &ControlPlane, path: &Path) {
    let user = control_plane::KubeconfigUser {
        name: "savepoint-webhook",
        impersonate: Some((
            WEBHOOK_USER,
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:savepoint-webhook",
                "system:authenticated",
            ],
        )),
        namespace: "savepoint-webhook",
    };
    let yaml = control_plane::kubeconfig_yaml(&cp.server_url(), cp.token(), &user);
    std::fs::write(path, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// `/apis/appmanager.dataartisans.com/v1/namespaces/NS/savepoints`.
pub fn savepoints_path(namespace: &str) -> String {
    format!("/apis/{GROUP}/{VERSION}/namespaces/{namespace}/savepoints")
}

/// The text of a `Warning: 299 - "text"` header value.
pub fn warning_text(header: &str) -> String {
    let quoted = match (header.find('"'), header.rfind('"')) {
        (Some(start), Some(end)) if end > start => &header[start + 1..end],
        _ => return header.to_string(),
    };
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// The spec-version annotation of a Savepoint, if it has one.
pub fn spec_version(savepoint: &Savepoint) -> Option<&str> {
    savepoint
        .metadata
        .annotations
        .as_ref()?
        .get(SPEC_VERSION_ANNOTATION)
        .map(String::as_str)
}
