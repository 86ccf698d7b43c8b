//! Helpers of the end-to-end tests: a real control plane ([`control_plane`]), the real
//! webhook binary serving over TLS ([`Webhook`]), a client for the test cluster
//! ([`Cluster`]) and builders of Deployment and Savepoint manifests.

#![allow(dead_code)]

pub mod control_plane;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use control_plane::{ControlPlane, Guarded};
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

pub use control_plane::{free_port, log_tail};

/// The nil UUID: the `flinkSavepointId` of a snapshot the platform did not take.
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// How long the webhook may take to become ready, and the API server to use it.
const WEBHOOK_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs rustls' `ring` provider as the process default; kube and reqwest need one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Path of the webhook binary under test.
pub fn webhook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_savepoint-webhook"))
}

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

/// The real webhook binary serving `serve --listen 127.0.0.1:PORT` in cluster mode
/// (KUBECONFIG of the test cluster). Killed on drop; prints its log tail when dropped
/// during a panic.
pub struct Webhook {
    port: u16,
    args: Vec<OsString>,
    kubeconfig: PathBuf,
    log: PathBuf,
    process: Option<Guarded>,
    http: reqwest::Client,
}

impl Webhook {
    /// Starts the webhook on `port` with the `certs`, logging to `log`, and waits until
    /// GET /readyz answers 200 (its indexes have synced).
    pub async fn start(kubeconfig: &Path, certs: &Certs, port: u16, log: PathBuf) -> Webhook {
        Self::start_with(kubeconfig, certs, port, log, &[]).await
    }

    /// Like [`Webhook::start`], with `extra` flags after the defaults.
    pub async fn start_with(
        kubeconfig: &Path,
        certs: &Certs,
        port: u16,
        log: PathBuf,
        extra: &[&str],
    ) -> Webhook {
        install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(&certs.ca_pem()).expect("ca.crt is PEM");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("cannot build the HTTPS client for the webhook");
        let args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
            "--tls-cert".into(),
            certs.dir.path().join("tls.crt").into(),
            "--tls-key".into(),
            certs.dir.path().join("tls.key").into(),
        ];
        let args: Vec<OsString> = args
            .into_iter()
            .chain(extra.iter().map(OsString::from))
            .collect();
        let mut webhook = Webhook {
            port,
            args,
            kubeconfig: kubeconfig.to_path_buf(),
            log,
            process: None,
            http,
        };
        webhook.restart().await;
        webhook
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Kills the webhook (SIGKILL); a no-op when it is not running.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Sends SIGTERM and waits (at most 30 s) for a graceful exit; its exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.process
            .take()
            .and_then(|process| process.terminate(Duration::from_secs(30)))
    }

    /// Starts the webhook again with the same flags and port (a no-op when running) and
    /// waits until it is ready.
    pub async fn restart(&mut self) {
        if self.process.is_some() {
            return;
        }
        let env: [(&str, &OsStr); 3] = [
            ("KUBECONFIG", self.kubeconfig.as_os_str()),
            ("RUST_LOG", OsStr::new("info")),
            ("NO_COLOR", OsStr::new("1")),
        ];
        self.process = Some(Guarded::spawn(
            &webhook_bin(),
            &self.args,
            &env,
            &self.log,
            None,
        ));
        let deadline = Instant::now() + WEBHOOK_READY_TIMEOUT;
        loop {
            let last = match self.http.get(format!("{}/readyz", self.url())).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return,
                Ok(response) => format!("GET /readyz answered {}", response.status()),
                Err(err) => format!("GET /readyz failed: {err:#}"),
            };
            if let Some(status) = self.process.as_mut().and_then(Guarded::exited) {
                self.process = None;
                panic!(
                    "the webhook exited early ({status}); log tail:\n{}",
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the webhook is not ready after {WEBHOOK_READY_TIMEOUT:?} ({last}); log tail:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The webhook's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Guarded::pid)
    }

    /// The webhook's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the webhook's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// GET /metrics.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics failed: {e:#}"));
        assert!(
            response.status().is_success(),
            "GET /metrics answered {}",
            response.status()
        );
        response.text().await.expect("GET /metrics body")
    }

    /// Waits until the webhook's index holds at least `count` entries of `kind`
    /// (`deployments`, `savepoints`, ...), as reported by /metrics.
    pub async fn wait_index(&self, kind: &str, count: u64) {
        self.wait_index_within(kind, count, Duration::from_secs(20))
            .await;
    }

    /// [`Webhook::wait_index`] with a deadline of `timeout`.
    pub async fn wait_index_within(&self, kind: &str, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().await;
            let seen = index_entries(&text, kind);
            if seen.is_some_and(|seen| seen >= count) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the webhook's index has {seen:?} {kind} after {timeout:?}, expected at least {count}; metrics:\n{}",
                    text.lines()
                        .filter(|l| l.contains("index_entries"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "webhook log ({}), last 60 lines:\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.stop();
    }
}

/// The value of `savepoint_webhook_index_entries{kind="KIND"}` in a metrics text.
pub fn index_entries(metrics: &str, kind: &str) -> Option<u64> {
    let label = format!("kind=\"{kind}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("savepoint_webhook_index_entries{"))
        .find(|line| line.contains(&label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
}

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

    /// Creates the CRDs of `deploy/crds/crds.yaml` and waits until they are Established.
    pub async fn apply_crds(&self) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/crds.yaml");
        let text = std::fs::read_to_string(path).expect("deploy/crds/crds.yaml is readable");
        let crds: Vec<CustomResourceDefinition> =
            serde_saphyr::from_multiple(&text).expect("deploy/crds/crds.yaml parses as CRDs");
        assert_eq!(crds.len(), 2, "expected two CRDs in {path}");
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
        let deadline = Instant::now() + Duration::from_secs(30);
        for crd in &crds {
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

    /// Registers the webhook configurations shipped in `deploy/base/webhooks.yaml`, each
    /// webhook's `clientConfig` replaced by `url` (`https://127.0.0.1:PORT`) plus its
    /// service path, and `ca_bundle`.
    pub async fn register_shipped_webhooks(&self, url: &str, ca_bundle: &str) {
        let mut manifests = read_manifests("deploy/base/webhooks.yaml");
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
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .header("Accept", "application/json");
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

/// A Deployment manifest; `spec_version` is its spec-version annotation (none: not yet
/// reconciled by the platform).
pub fn mk_deployment(namespace: &str, name: &str, spec_version: Option<&str>) -> Value {
    let mut metadata = json!({ "name": name, "namespace": namespace });
    if let Some(version) = spec_version {
        metadata["annotations"] = json!({ SPEC_VERSION_ANNOTATION: version });
    }
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "restoreStrategy": { "kind": "LATEST_STATE" },
            "template": { "spec": { "flinkConfiguration": {
                "state.savepoints.dir": "s3://flink-state/savepoints",
            } } },
        },
    })
}

/// A hand-added Savepoint manifest as a user writes it: no spec-version annotation, no
/// deploymentId, the nil flinkSavepointId, and `status.state: COMPLETED`. Absent fields
/// are omitted (a 1.20 server refuses `null` for enum fields).
pub fn mk_savepoint(namespace: &str, name: &str, deployment: &str, location: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Savepoint",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "deploymentName": deployment,
            "savepointLocation": location,
            "flinkSavepointId": NIL_UUID,
        },
        "status": { "state": "COMPLETED" },
    })
}
