//! The manifests under `deploy/` against the binary and against a real API server.
//!
//! Without the `e2e` feature: the webhook configurations, Service and Deployment in
//! `deploy/base/` agree with each other and with the server, which is started with the
//! Deployment's own arguments and asked every path the manifests name.
//!
//! With `e2e` (the switch for tests that need `kubectl` and the real control plane;
//! `tests/provision.sh` installs both): every overlay renders with `kubectl kustomize`, with
//! no CRD in it, and everything they render passes a server-side dry run against
//! kube-apiserver 1.20, whose OpenAPI schema kubectl also checks every field against; the
//! RBAC, really applied, grants what the webhook needs and no more. README's install and
//! uninstall steps, run as written, keep the CRDs and every Savepoint and Deployment, and
//! never change a Deployment CRD that was there before. No kustomization uses a field
//! kustomize calls deprecated. `SAVEPOINT_WEBHOOK_KUBECTL` names another kubectl to use.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use manifests::{object, single_webhook};
use serde_json::{Value, json};

#[path = "support/manifests.rs"]
mod manifests;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_savepoint-webhook");
const NAMESPACE: &str = "savepoint-webhook";
/// The opt-out label of older releases, which excludes nothing any more.
const OLD_EXCLUDE_LABEL: &str = "savepoint-webhook.appmanager.dataartisans.com/exclude";
/// Set by the API server (from 1.21) to each namespace's name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn read(relative: &str) -> String {
    let path = Path::new(ROOT).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// All documents of a YAML stream (empty documents dropped).
fn parse_yaml(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{text}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Checks one webhook of `deploy/base/webhooks.yaml`; returns its path.
fn check_webhook(configuration: &Value, path: &str, operations: &[&str]) -> String {
    let kind = configuration["kind"].as_str().unwrap_or_default();
    let webhook = single_webhook(configuration);
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"namespace": NAMESPACE, "name": "savepoint-webhook", "path": path, "port": 443}),
        "{kind} clientConfig"
    );
    assert_eq!(
        webhook["rules"],
        json!([{
            "apiGroups": ["appmanager.dataartisans.com"],
            "apiVersions": ["v1"],
            "resources": ["savepoints"],
            "operations": operations,
            "scope": "Namespaced",
        }]),
        "{kind} rules"
    );
    assert_eq!(webhook["admissionReviewVersions"], json!(["v1"]), "{kind}");
    assert_eq!(webhook["sideEffects"], "None", "{kind}");
    assert_eq!(webhook["timeoutSeconds"], 10, "{kind}");
    assert_eq!(webhook["failurePolicy"], "Fail", "{kind}");
    assert_eq!(webhook["matchPolicy"], "Equivalent", "{kind}");
    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector.matchExpressions");
    assert_eq!(
        expressions,
        &[json!({"key": NAME_LABEL, "operator": "NotIn", "values": [NAMESPACE]})],
        "{kind} leaves alone only namespaces listed by name, through the label the API \
         server sets; no label a tenant may write opts a namespace out"
    );
    assert!(
        webhook["namespaceSelector"].get("matchLabels").is_none(),
        "{kind}: no matchLabels"
    );
    path.to_owned()
}

/// The webhook container of `deploy/base/deployment.yaml`.
fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A `savepoint-webhook serve` child process, killed on drop.
struct Server {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[String]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        });
        Server { child, stderr }
    }

    fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `url` answers at all (any status).
    async fn wait_until_serving(&mut self, client: &reqwest::Client, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(url).send().await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited early ({status}); stderr:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not answer {url} within 30 s; stderr:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base's webhook configurations, Service and Deployment name the routes and port the
/// server has, and the server started with the Deployment's own arguments answers the
/// captured AdmissionReviews on exactly the paths the webhook configurations call.
#[tokio::test]
async fn base_manifests_match_the_server() {
    // Webhook configurations.
    let webhooks = parse_yaml(&read("deploy/base/webhooks.yaml"));
    let mutate = check_webhook(
        object(
            &webhooks,
            "MutatingWebhookConfiguration",
            "savepoint-webhook",
        ),
        "/mutate",
        &["CREATE"],
    );
    let validate = check_webhook(
        object(
            &webhooks,
            "ValidatingWebhookConfiguration",
            "savepoint-webhook",
        ),
        "/validate",
        &["CREATE", "UPDATE"],
    );
    let delete = single_webhook(object(
        &webhooks,
        "ValidatingWebhookConfiguration",
        "savepoint-webhook-delete",
    ));
    assert_eq!(delete["clientConfig"]["service"]["path"], validate);
    assert_eq!(delete["rules"][0]["operations"], json!(["DELETE"]));
    assert_eq!(
        delete["failurePolicy"], "Ignore",
        "a warning on delete never blocks deletes while the webhook is down"
    );
    assert_eq!(
        delete["namespaceSelector"],
        json!({"matchExpressions": [
            {"key": NAME_LABEL, "operator": "NotIn", "values": [NAMESPACE]}
        ]}),
        "the delete webhook leaves alone the namespaces the others do"
    );

    // Service 443 -> the container's https port, which is where serve listens.
    let service = parse_yaml(&read("deploy/base/service.yaml"));
    let ports = &object(&service, "Service", "savepoint-webhook")["spec"]["ports"];
    assert_eq!(ports[0]["port"], 443);
    assert_eq!(ports[0]["targetPort"], "https");
    let deployments = parse_yaml(&read("deploy/base/deployment.yaml"));
    let deployment = object(&deployments, "Deployment", "savepoint-webhook");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = container(deployment);
    let https = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "https")
        .expect("a port named https");
    assert_eq!(https["containerPort"], 8443);
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect();
    assert_eq!(
        args,
        [
            "serve",
            "--tls-cert",
            "/etc/webhook/tls/tls.crt",
            "--tls-key",
            "/etc/webhook/tls/tls.key",
            "--listen",
            "0.0.0.0:8443",
            "--verify-location",
            "off",
            "--shutdown-delay",
            "5s",
            "--drain-timeout",
            "20s"
        ]
    );
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/webhook/tls");
    assert_eq!(mount["readOnly"], true);
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees Secret updates"
    );
    let mut probes = Vec::new();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
        probes.push(get["path"].as_str().expect("probe path").to_owned());
    }
    assert_eq!(probes, ["/readyz", "/healthz"]);

    // The Deployment's arguments, with the Secret's mount point replaced by certificates
    // from `savepoint-webhook certs`, the listen address by a loopback port, and the
    // cluster by the example state directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("tls");
    let output = Command::new(BIN)
        .args(["certs", "--dns", "localhost", "--ip", "127.0.0.1", "--out"])
        .arg(&certs)
        .output()
        .expect("run certs");
    assert!(
        output.status.success(),
        "certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let port = free_port();
    let mut serve_args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("/etc/webhook/tls", &certs.display().to_string())
                .replace("0.0.0.0:8443", &format!("127.0.0.1:{port}"))
        })
        .collect();
    serve_args.extend(["--state".into(), format!("{ROOT}/deploy/examples/state")]);
    let mut server = Server::start(&serve_args);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(certs.join("ca.crt")).expect("ca.crt");
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA parses"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    server
        .wait_until_serving(&client, &format!("{base}/healthz"))
        .await;

    for path in &probes {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("probe answers");
        assert_eq!(response.status(), 200, "GET {path}");
    }
    for (path, fixture) in [
        (&mutate, "savepoint-create.json"),
        (&validate, "savepoint-create.json"),
        (&validate, "savepoint-update.json"),
    ] {
        let body = read(&format!("tests/fixtures/{fixture}"));
        let request: Value = serde_json::from_str(&body).expect("fixture is JSON");
        // As the API server calls it: the path plus the deadline.
        let response = client
            .post(format!("{base}{path}?timeout=10s"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(response.status(), 200, "POST {path} with {fixture}");
        let review: Value = response.json().await.expect("JSON answer");
        assert_eq!(review["kind"], "AdmissionReview", "{path}: {review}");
        assert_eq!(
            review["apiVersion"], "admission.k8s.io/v1",
            "{path}: {review}"
        );
        assert_eq!(
            review["response"]["uid"], request["request"]["uid"],
            "{path}: {review}"
        );
        assert!(
            review["response"]["allowed"].is_boolean(),
            "{path}: {review}"
        );
    }
}

#[cfg(feature = "e2e")]
#[path = "common/control_plane.rs"]
mod control_plane;

#[cfg(feature = "e2e")]
mod e2e {
    use std::path::PathBuf;

    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use crate::control_plane::ControlPlane;
    use savepoint_webhook::certs::signed_by;

    const SERVICE_ACCOUNT: &str = "system:serviceaccount:savepoint-webhook:savepoint-webhook";

    fn kubectl_program() -> String {
        std::env::var("SAVEPOINT_WEBHOOK_KUBECTL")
            .ok()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "kubectl".into())
    }

    /// What one kubectl run printed.
    struct Run {
        success: bool,
        stdout: String,
        stderr: String,
    }

    fn run_kubectl(kubeconfig: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Run {
        let program = kubectl_program();
        let mut command = Command::new(&program);
        if let Some(kubeconfig) = kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        let mut child = command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "`{program}` is not installed: run tests/provision.sh (it installs \
                         Debian's kubernetes-client when no kubectl exists), or point \
                         SAVEPOINT_WEBHOOK_KUBECTL at a kubectl"
                    )
                }
                panic!("cannot run {program}: {e}")
            });
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin piped")
                .write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        let output = child.wait_with_output().expect("kubectl runs");
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout; panics with everything it printed on failure.
    fn kubectl(kubeconfig: Option<&Path>, args: &[&str], stdin: Option<&str>) -> String {
        let run = run_kubectl(kubeconfig, args, stdin);
        assert!(
            run.success,
            "kubectl {args:?} failed:\n{}{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// `kubectl kustomize DIR`, parsed; the kustomization must use no deprecated field
    /// (kustomize warns on stderr).
    fn render(dir: &Path) -> Vec<Value> {
        let run = run_kubectl(None, &["kustomize", &dir.display().to_string()], None);
        assert!(
            run.success,
            "kubectl kustomize {dir:?} failed:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("deprecated"),
            "kubectl kustomize {dir:?} warns:\n{}",
            run.stderr
        );
        parse_yaml(&run.stdout)
    }

    /// Copies `deploy/{base,overlays/self-managed}` to a temp dir (without any local
    /// certs/) and generates certificates there with the overlay's own script, which runs
    /// `savepoint-webhook certs --service savepoint-webhook --namespace savepoint-webhook
    /// --out certs/new`.
    fn self_managed_copy() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        for dir in ["deploy/base", "deploy/overlays/self-managed"] {
            copy_dir(&Path::new(ROOT).join(dir), &tmp.path().join(dir));
        }
        let overlay = tmp.path().join("deploy/overlays/self-managed");
        generate_certs(&overlay);
        (tmp, overlay)
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "certs" {
                    copy_dir(&path, &to.join(entry.file_name()));
                }
            } else {
                std::fs::copy(&path, to.join(entry.file_name())).expect("copy file");
            }
        }
    }

    fn generate_certs(overlay: &Path) {
        generate_certs_with(overlay, &[]);
    }

    fn generate_certs_with(overlay: &Path, args: &[&str]) {
        let output = Command::new("sh")
            .arg(overlay.join("generate-certs.sh"))
            .args(args)
            .env("SAVEPOINT_WEBHOOK", BIN)
            .output()
            .expect("run generate-certs.sh");
        assert!(
            output.status.success(),
            "generate-certs.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn base64_decode(value: &Value) -> Vec<u8> {
        let text: String = value
            .as_str()
            .expect("base64 string")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        STANDARD.decode(text).expect("valid base64")
    }

    fn is_cert_manager(doc: &Value) -> bool {
        doc["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("cert-manager.io/"))
    }

    fn ca_bundles(docs: &[Value]) -> Vec<Vec<u8>> {
        [
            ("MutatingWebhookConfiguration", "savepoint-webhook"),
            ("ValidatingWebhookConfiguration", "savepoint-webhook"),
            ("ValidatingWebhookConfiguration", "savepoint-webhook-delete"),
        ]
        .iter()
        .map(|(kind, name)| {
            base64_decode(&single_webhook(object(docs, kind, name))["clientConfig"]["caBundle"])
        })
        .collect()
    }

    /// What every overlay shares: the base, labelled, with its exact webhook paths, and no
    /// CRD (deleting the overlay must never delete one).
    fn check_common(docs: &[Value]) {
        for doc in docs {
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/name"], "savepoint-webhook",
                "unlabelled: {doc}"
            );
        }
        for (kind, path) in [
            ("MutatingWebhookConfiguration", "/mutate"),
            ("ValidatingWebhookConfiguration", "/validate"),
        ] {
            let webhook = single_webhook(object(docs, kind, "savepoint-webhook"));
            assert_eq!(webhook["clientConfig"]["service"]["path"], path);
        }
        let deployment = object(docs, "Deployment", "savepoint-webhook");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
            "savepoint-webhook-tls"
        );
        assert_eq!(
            deployment["spec"]["selector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "savepoint-webhook"}})
        );
        assert!(
            object(docs, "Namespace", NAMESPACE)["metadata"]["labels"]
                .get(OLD_EXCLUDE_LABEL)
                .is_none(),
            "the namespace carries no opt-out label"
        );
        let crds: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .collect();
        assert!(crds.is_empty(), "an overlay renders CRDs: {crds:?}");
    }

    #[test]
    fn fail_open_overlay_is_the_cert_manager_install_failing_open() {
        let cert_manager = render(&Path::new(ROOT).join("deploy/overlays/cert-manager"));
        let mut fail_open = render(&Path::new(ROOT).join("deploy/overlays/fail-open"));
        check_common(&fail_open);
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let at = fail_open
                .iter()
                .position(|d| d["kind"] == kind)
                .unwrap_or_else(|| panic!("fail-open renders a {kind}"));
            let webhook = &mut fail_open[at]["webhooks"][0];
            assert_eq!(webhook["failurePolicy"], "Ignore", "{kind}");
            webhook["failurePolicy"] = "Fail".into();
        }
        assert_eq!(
            fail_open, cert_manager,
            "fail-open differs from cert-manager only in failurePolicy"
        );
    }

    #[test]
    fn cert_manager_overlay_renders() {
        let docs = render(&Path::new(ROOT).join("deploy/overlays/cert-manager"));
        check_common(&docs);
        for (kind, name) in [
            ("MutatingWebhookConfiguration", "savepoint-webhook"),
            ("ValidatingWebhookConfiguration", "savepoint-webhook"),
            ("ValidatingWebhookConfiguration", "savepoint-webhook-delete"),
        ] {
            let configuration = object(&docs, kind, name);
            assert_eq!(
                configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                "savepoint-webhook/savepoint-webhook",
                "{kind}"
            );
            assert!(
                single_webhook(configuration)["clientConfig"]
                    .get("caBundle")
                    .is_none(),
                "{kind}: cert-manager injects the caBundle"
            );
        }
        assert!(
            !docs.iter().any(|d| d["kind"] == "Secret"),
            "cert-manager writes the Secret"
        );
        let cert_manager: Vec<&Value> = docs.iter().filter(|d| is_cert_manager(d)).collect();
        assert_eq!(cert_manager.len(), 4, "two Issuers and two Certificates");
        for doc in &cert_manager {
            assert_eq!(doc["apiVersion"], "cert-manager.io/v1", "{doc}");
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{doc}");
        }
        let selfsigned = object(&docs, "Issuer", "savepoint-webhook-selfsigned");
        assert_eq!(selfsigned["spec"], json!({"selfSigned": {}}));
        let ca = object(&docs, "Certificate", "savepoint-webhook-ca");
        assert_eq!(ca["spec"]["isCA"], true);
        assert_eq!(
            ca["spec"]["issuerRef"],
            json!({"kind": "Issuer", "name": "savepoint-webhook-selfsigned"})
        );
        let ca_issuer = object(&docs, "Issuer", "savepoint-webhook-ca");
        assert_eq!(
            ca_issuer["spec"]["ca"]["secretName"],
            ca["spec"]["secretName"]
        );
        // The Certificate the annotation names: serves the Service's DNS names from the
        // Secret the Deployment mounts, signed by the CA Issuer.
        let serving = object(&docs, "Certificate", "savepoint-webhook");
        assert_eq!(serving["spec"]["secretName"], "savepoint-webhook-tls");
        assert_eq!(
            serving["spec"]["issuerRef"],
            json!({"kind": "Issuer", "name": "savepoint-webhook-ca"})
        );
        assert_eq!(
            serving["spec"]["dnsNames"],
            json!([
                "savepoint-webhook",
                "savepoint-webhook.savepoint-webhook",
                "savepoint-webhook.savepoint-webhook.svc",
                "savepoint-webhook.savepoint-webhook.svc.cluster.local"
            ])
        );
        assert_eq!(serving["spec"]["duration"], "8760h");
    }

    #[test]
    fn self_managed_overlay_renders_renews_and_changes_its_ca() {
        let (_tmp, overlay) = self_managed_copy();
        let certs = overlay.join("certs");
        let docs = render(&overlay);
        check_common(&docs);
        let secret = object(&docs, "Secret", "savepoint-webhook-tls");
        assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        for file in ["ca.crt", "tls.crt", "tls.key"] {
            assert_eq!(
                base64_decode(&secret["data"][file]),
                std::fs::read(certs.join(file)).expect("generated file"),
                "Secret key {file}"
            );
        }
        let read = |file: &str| std::fs::read_to_string(certs.join(file)).expect(file);
        let first_ca = read("ca.crt");
        let first_leaf = read("tls.crt");
        assert_eq!(
            ca_bundles(&docs),
            [
                first_ca.as_bytes(),
                first_ca.as_bytes(),
                first_ca.as_bytes()
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("ca.key"))
            .expect("ca.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "ca.key is readable by its owner only");
        assert!(
            secret["data"].get("ca.key").is_none(),
            "the CA key never goes into the cluster"
        );
        let bundles = |docs: &[Value]| -> Vec<String> {
            ca_bundles(docs)
                .into_iter()
                .map(|b| String::from_utf8(b).expect("PEM"))
                .collect()
        };

        // A renewal: the same CA, a new serving certificate signed by it, the same caBundle.
        generate_certs(&overlay);
        let renewed = read("tls.crt");
        assert_eq!(read("ca.crt"), first_ca, "a renewal keeps the CA");
        assert_ne!(
            renewed, first_leaf,
            "a renewal issues a new serving certificate"
        );
        assert!(signed_by(&renewed, &first_ca));
        assert_eq!(bundles(&render(&overlay)), vec![first_ca.clone(); 3]);

        // A new CA is staged: published beside the old one, the serving certificate kept.
        generate_certs_with(&overlay, &["--new-ca"]);
        let second_ca = read("ca.crt");
        assert_ne!(second_ca, first_ca);
        assert_eq!(
            read("tls.crt"),
            renewed,
            "staging a CA keeps the served certificate"
        );
        let both = format!("{second_ca}{first_ca}");
        assert_eq!(bundles(&render(&overlay)), vec![both.clone(); 3]);

        // The next run issues from the new CA; the old one stays published while the pods
        // may still serve its certificate.
        generate_certs(&overlay);
        let from_second = read("tls.crt");
        assert!(signed_by(&from_second, &second_ca));
        let docs = render(&overlay);
        assert_eq!(bundles(&docs), vec![both; 3]);
        let secret = object(&docs, "Secret", "savepoint-webhook-tls");
        assert_eq!(
            base64_decode(&secret["data"]["ca.crt"]),
            second_ca.as_bytes()
        );

        // The run after that drops the old CA.
        generate_certs(&overlay);
        assert_eq!(bundles(&render(&overlay)), vec![second_ca; 3]);
        assert!(!certs.join("previous-ca.crt").exists());
    }

    /// `docs` as one v1 List for `kubectl apply -f -` (kubectl reads input that starts
    /// with `{` as a stream of JSON objects, where `---` separators are not allowed).
    fn stream<'a>(docs: impl IntoIterator<Item = &'a Value>) -> String {
        let items: Vec<&Value> = docs.into_iter().collect();
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    /// `kubectl apply --dry-run=server` of `docs`; every object must be accepted.
    /// The webhook's namespace enforces Pod Security's restricted profile (GA from 1.25):
    /// a Pod of the shipped template passes a server-side dry run there, a Pod without
    /// the profile's settings is refused.
    fn pods_meet_the_restricted_profile(kubeconfig: &Path, docs: &[Value]) {
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment is shipped");
        let pod = |name: &str, spec: &Value| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "name": name, "namespace": NAMESPACE },
                "spec": spec,
            })
        };
        let shipped = pod("shipped", &deployment["spec"]["template"]["spec"]);
        dry_run(kubeconfig, &[shipped]);
        let bare = pod(
            "bare",
            &serde_json::json!({ "containers": [{ "name": "c", "image": "example" }] }),
        );
        let run = run_kubectl(
            Some(kubeconfig),
            &["create", "--dry-run=server", "-f", "-"],
            Some(&bare.to_string()),
        );
        assert!(
            !run.success && run.stderr.contains("violates PodSecurity \"restricted"),
            "the namespace enforces the restricted profile: {}{}",
            run.stdout,
            run.stderr
        );
    }

    fn dry_run(kubeconfig: &Path, docs: &[Value]) {
        let out = kubectl(
            Some(kubeconfig),
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&stream(docs)),
        );
        let accepted = out
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert_eq!(accepted, docs.len(), "every object accepted:\n{out}");
    }

    /// The PodDisruptionBudget is policy/v1 (Kubernetes 1.21+; v1beta1 is gone from 1.25).
    /// A 1.20 server only has policy/v1beta1, with the same fields: check it as that there.
    fn for_server(kubeconfig: &Path, mut docs: Vec<Value>) -> Vec<Value> {
        let versions = kubectl(Some(kubeconfig), &["api-versions"], None);
        let has_policy_v1 = versions.lines().any(|l| l.trim() == "policy/v1");
        for doc in &mut docs {
            if doc["kind"] == "PodDisruptionBudget" {
                assert_eq!(doc["apiVersion"], "policy/v1");
                if !has_policy_v1 {
                    doc["apiVersion"] = json!("policy/v1beta1");
                }
            }
        }
        docs
    }

    /// `kubectl auth can-i` as the webhook's ServiceAccount.
    fn can(kubeconfig: &Path, args: &[&str]) -> bool {
        let mut all = vec!["auth", "can-i", "--as", SERVICE_ACCOUNT];
        all.extend_from_slice(args);
        let run = run_kubectl(Some(kubeconfig), &all, None);
        match run.stdout.trim() {
            "yes" => true,
            "no" => false,
            _ => panic!("kubectl {all:?}:\n{}{}", run.stdout, run.stderr),
        }
    }

    #[test]
    fn overlays_pass_a_server_side_dry_run_and_rbac_is_least_privilege() {
        let (_tmp, self_managed) = self_managed_copy();
        let self_managed = render(&self_managed);
        let cert_manager = render(&Path::new(ROOT).join("deploy/overlays/cert-manager"));

        let cluster = ControlPlane::start();
        let kubeconfig = cluster.kubeconfig_path();

        // Namespaced objects need their namespace, and Savepoint-scoped webhooks the CRDs,
        // to exist before a dry run: install the CRDs and apply the Namespace for real.
        install_crds(kubeconfig, cluster.minor()).expect_created();
        let namespace: Vec<&Value> = self_managed
            .iter()
            .filter(|d| d["kind"] == "Namespace")
            .collect();
        assert_eq!(namespace.len(), 1);
        kubectl(
            Some(kubeconfig),
            &["apply", "-f", "-"],
            Some(&stream(namespace)),
        );

        dry_run(kubeconfig, &for_server(kubeconfig, self_managed.clone()));
        if cluster.minor() >= 25 {
            pods_meet_the_restricted_profile(kubeconfig, &self_managed);
        }
        // The test server has no cert-manager CRDs; cert_manager_overlay_renders checks
        // those objects.
        let without_cert_manager: Vec<Value> = cert_manager
            .iter()
            .filter(|d| !is_cert_manager(d))
            .cloned()
            .collect();
        assert_eq!(without_cert_manager.len() + 4, cert_manager.len());
        dry_run(kubeconfig, &for_server(kubeconfig, without_cert_manager));

        // The RBAC, applied for real, checked as the ServiceAccount.
        let rbac: Vec<&Value> = self_managed
            .iter()
            .filter(|d| {
                d["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("rbac.authorization.k8s.io/"))
                    || d["kind"] == "ServiceAccount"
            })
            .collect();
        assert_eq!(rbac.len(), 5);
        kubectl(Some(kubeconfig), &["apply", "-f", "-"], Some(&stream(rbac)));
        let savepoints = "savepoints.appmanager.dataartisans.com";
        let deployments = "deployments.appmanager.dataartisans.com";
        let lease = "leases.coordination.k8s.io/savepoint-webhook";
        let other_lease = "leases.coordination.k8s.io/other";
        let granted: &[&[&str]] = &[
            &["get", savepoints, "--all-namespaces"],
            &["list", savepoints, "--all-namespaces"],
            &["watch", savepoints, "--all-namespaces"],
            &["get", deployments, "--all-namespaces"],
            &["list", deployments, "--all-namespaces"],
            &["watch", deployments, "--all-namespaces"],
            &["patch", savepoints, "-n", "default"],
            &["create", "events", "-n", "default"],
            &["patch", "events", "-n", "default"],
            &["create", "events.events.k8s.io", "-n", "default"],
            &["get", lease, "-n", NAMESPACE],
            &["update", lease, "-n", NAMESPACE],
            &["patch", lease, "-n", NAMESPACE],
            &["create", "leases.coordination.k8s.io", "-n", NAMESPACE],
            &["create", "subjectaccessreviews.authorization.k8s.io"],
        ];
        let denied: &[&[&str]] = &[
            &["create", savepoints, "-n", "default"],
            &["update", savepoints, "-n", "default"],
            &["delete", savepoints, "-n", "default"],
            &["patch", deployments, "-n", "default"],
            &["update", deployments, "-n", "default"],
            &["list", "deployments.apps", "--all-namespaces"],
            &["get", "secrets", "-n", NAMESPACE],
            &["list", "secrets", "--all-namespaces"],
            &["get", other_lease, "-n", NAMESPACE],
            &["update", other_lease, "-n", NAMESPACE],
            &["delete", lease, "-n", NAMESPACE],
            &["create", "leases.coordination.k8s.io", "-n", "default"],
            &["update", lease, "-n", "default"],
            &["create", "mutatingwebhookconfigurations"],
        ];
        let mut wrong = Vec::new();
        for (expected, cases) in [(true, granted), (false, denied)] {
            for case in cases {
                if can(kubeconfig, case) != expected {
                    wrong.push(format!("can-i {} should be {expected}", case.join(" ")));
                }
            }
        }
        assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
    }

    const SAVEPOINT_CRD: &str = "savepoints.appmanager.dataartisans.com";
    const DEPLOYMENT_CRD: &str = "deployments.appmanager.dataartisans.com";
    const GROUP_VERSION: &str = "appmanager.dataartisans.com/v1";

    /// What README's CRD step did to the Deployment CRD.
    struct CrdStep {
        deployments: Run,
    }

    impl CrdStep {
        /// `kubectl create` made the Deployment CRD.
        fn expect_created(&self) {
            assert!(
                self.deployments.success,
                "the Deployment CRD was not created:\n{}{}",
                self.deployments.stdout, self.deployments.stderr
            );
        }

        /// `kubectl create` refused, because a Deployment CRD exists, and wrote nothing.
        fn expect_left_alone(&self) {
            assert!(
                !self.deployments.success && self.deployments.stderr.contains("AlreadyExists"),
                "the Deployment CRD step must refuse an existing CRD:\n{}{}",
                self.deployments.stdout,
                self.deployments.stderr
            );
        }
    }

    /// README's CRD step, as written there: `kubectl apply` of the Savepoint CRD (with its
    /// rules as CEL from 1.25), then `kubectl create` of the Deployment CRD, which never
    /// changes one that exists; then waits until both are Established.
    fn install_crds(kubeconfig: &Path, minor: u32) -> CrdStep {
        let savepoints = if minor >= 25 {
            "deploy/crds/cel/savepoints.yaml"
        } else {
            "deploy/crds/savepoints.yaml"
        };
        kubectl(
            Some(kubeconfig),
            &["apply", "-f", &format!("{ROOT}/{savepoints}")],
            None,
        );
        let deployments = run_kubectl(
            Some(kubeconfig),
            &[
                "create",
                "-f",
                &format!("{ROOT}/deploy/crds/deployments.yaml"),
            ],
            None,
        );
        for crd in [SAVEPOINT_CRD, DEPLOYMENT_CRD] {
            kubectl(
                Some(kubeconfig),
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=30s",
                    &format!("crd/{crd}"),
                ],
                None,
            );
        }
        CrdStep { deployments }
    }

    /// README's uninstall: `kubectl delete -f -` of the rendered overlay. This control
    /// plane has no namespace controller, so kubectl is not asked to wait (it would wait
    /// for the Namespace forever) and the test does the controller's last part: once
    /// kubectl has deleted every object in the Namespace, it finalizes and removes it.
    fn uninstall(kubeconfig: &Path, webhook: &[Value]) {
        kubectl(
            Some(kubeconfig),
            &["delete", "--wait=false", "-f", "-"],
            Some(&stream(webhook)),
        );
        let finalized = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE},
            "spec": {"finalizers": []},
        });
        kubectl(
            Some(kubeconfig),
            &[
                "replace",
                "--raw",
                &format!("/api/v1/namespaces/{NAMESPACE}/finalize"),
                "-f",
                "-",
            ],
            Some(&finalized.to_string()),
        );
        kubectl(
            Some(kubeconfig),
            &[
                "delete",
                "namespace",
                NAMESPACE,
                "--ignore-not-found",
                "--timeout=30s",
            ],
            None,
        );
    }

    /// `namespace/name` of every object of `resource` in the cluster, sorted.
    fn names(kubeconfig: &Path, resource: &str) -> Vec<String> {
        let out = kubectl(
            Some(kubeconfig),
            &["get", resource, "--all-namespaces", "-o", "json"],
            None,
        );
        let list: Value = serde_json::from_str(&out).expect("kubectl prints a JSON list");
        let mut names: Vec<String> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| {
                let meta = &o["metadata"];
                format!(
                    "{}/{}",
                    meta["namespace"].as_str().unwrap_or_default(),
                    meta["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        names.sort();
        names
    }

    /// The CRD `name` as stored, or `None` when there is none.
    fn crd(kubeconfig: &Path, name: &str) -> Option<Value> {
        let run = run_kubectl(Some(kubeconfig), &["get", "crd", name, "-o", "json"], None);
        if is_not_found(&run) {
            return None;
        }
        assert!(run.success, "kubectl get crd {name}:\n{}", run.stderr);
        Some(serde_json::from_str(&run.stdout).expect("a CRD as JSON"))
    }

    /// kubectl failed because the object does not exist (`kubectl get -f` says so in words).
    fn is_not_found(run: &Run) -> bool {
        !run.success && (run.stderr.contains("NotFound") || run.stderr.contains("not found"))
    }

    fn mk_namespace(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    }

    fn mk_deployment(namespace: &str, name: &str) -> Value {
        json!({
            "apiVersion": GROUP_VERSION,
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"flinkConfiguration": {
                "state.savepoints.dir": "s3://flink-state/savepoints",
            }}}},
        })
    }

    fn mk_savepoint(namespace: &str, name: &str, deployment: &str) -> Value {
        json!({
            "apiVersion": GROUP_VERSION,
            "kind": "Savepoint",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "deploymentName": deployment,
                "savepointLocation": format!("s3://flink-state/savepoints/{namespace}/{name}"),
            },
            "status": {"state": "COMPLETED"},
        })
    }

    fn create(kubeconfig: &Path, objects: &[Value]) -> Run {
        run_kubectl(
            Some(kubeconfig),
            &["create", "-f", "-"],
            Some(&stream(objects)),
        )
    }

    fn is_webhook_configuration(doc: &Value) -> bool {
        doc["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("admissionregistration.k8s.io/"))
    }

    /// Install, uninstall and install again, each as README says: the uninstall removes
    /// every object the overlay made and nothing else; both CRDs and every Savepoint and
    /// Deployment stay; the second install succeeds and puts the webhook back in force.
    #[test]
    fn uninstalling_the_webhook_keeps_the_crds_and_every_savepoint_and_deployment() {
        let cluster = ControlPlane::start();
        let kubeconfig = cluster.kubeconfig_path();
        install_crds(kubeconfig, cluster.minor()).expect_created();
        let (_tmp, overlay) = self_managed_copy();
        let webhook = for_server(kubeconfig, render(&overlay));

        // Objects from before the webhook.
        let before = [
            mk_namespace("team-a"),
            mk_namespace("team-b"),
            mk_savepoint("team-b", "sp-3", "app-4"),
            mk_deployment("team-a", "app-1"),
            mk_deployment("team-a", "app-2"),
            mk_savepoint("team-a", "sp-1", "app-1"),
            mk_savepoint("team-a", "sp-2", "app-2"),
        ];
        let run = create(kubeconfig, &before);
        assert!(run.success, "{}{}", run.stdout, run.stderr);

        kubectl(
            Some(kubeconfig),
            &["apply", "-f", "-"],
            Some(&stream(&webhook)),
        );
        // In force: with no replica to answer (nothing runs pods here), a Savepoint create
        // in a guarded namespace fails closed.
        let refused = create(kubeconfig, &[mk_savepoint("team-a", "sp-refused", "app-1")]);
        assert!(
            !refused.success
                && refused
                    .stderr
                    .contains("failed calling webhook \"mutate.savepoint-webhook"),
            "the installed webhook must guard Savepoint creates:\n{}{}",
            refused.stdout,
            refused.stderr
        );
        let during = [
            mk_deployment("team-a", "app-3"),
            mk_deployment("team-b", "app-4"),
        ];
        let run = create(kubeconfig, &during);
        assert!(run.success, "{}{}", run.stdout, run.stderr);
        let savepoints = names(kubeconfig, SAVEPOINT_CRD);
        let deployments = names(kubeconfig, DEPLOYMENT_CRD);
        assert_eq!(savepoints, ["team-a/sp-1", "team-a/sp-2", "team-b/sp-3"]);
        assert_eq!(
            deployments,
            [
                "team-a/app-1",
                "team-a/app-2",
                "team-a/app-3",
                "team-b/app-4"
            ]
        );
        let crds = [SAVEPOINT_CRD, DEPLOYMENT_CRD]
            .map(|name| crd(kubeconfig, name).unwrap_or_else(|| panic!("CRD {name} is installed")));

        uninstall(kubeconfig, &webhook);
        for (name, installed) in [SAVEPOINT_CRD, DEPLOYMENT_CRD].iter().zip(&crds) {
            let kept = crd(kubeconfig, name).unwrap_or_else(|| panic!("CRD {name} deleted"));
            assert_eq!(
                kept["metadata"]["uid"], installed["metadata"]["uid"],
                "CRD {name} was replaced"
            );
            assert!(
                kept["metadata"].get("deletionTimestamp").is_none(),
                "{name}"
            );
        }
        assert_eq!(names(kubeconfig, SAVEPOINT_CRD), savepoints);
        assert_eq!(names(kubeconfig, DEPLOYMENT_CRD), deployments);
        for doc in &webhook {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let run = run_kubectl(Some(kubeconfig), &["get", "-f", "-"], Some(&stream([doc])));
            assert!(
                is_not_found(&run),
                "{kind} {name} outlived the uninstall:\n{}{}",
                run.stdout,
                run.stderr
            );
        }
        // Nothing calls the webhook any more: the create it refused goes through.
        let run = create(kubeconfig, &[mk_savepoint("team-a", "sp-refused", "app-1")]);
        assert!(run.success, "{}{}", run.stdout, run.stderr);

        // Install again: the CRD step leaves the CRDs as they are, the overlay applies
        // cleanly, and the webhook is back in force.
        install_crds(kubeconfig, cluster.minor()).expect_left_alone();
        kubectl(
            Some(kubeconfig),
            &["apply", "-f", "-"],
            Some(&stream(&webhook)),
        );
        kubectl(
            Some(kubeconfig),
            &["get", "-f", "-"],
            Some(&stream(&webhook)),
        );
        let configurations: Vec<&Value> = webhook
            .iter()
            .filter(|d| is_webhook_configuration(d))
            .collect();
        assert_eq!(configurations.len(), 3);
        for (name, installed) in [SAVEPOINT_CRD, DEPLOYMENT_CRD].iter().zip(&crds) {
            let kept = crd(kubeconfig, name).unwrap_or_else(|| panic!("CRD {name} deleted"));
            assert_eq!(
                kept["metadata"]["uid"], installed["metadata"]["uid"],
                "{name}"
            );
        }
        let mut savepoints = savepoints;
        savepoints.push("team-a/sp-refused".into());
        savepoints.sort();
        assert_eq!(names(kubeconfig, SAVEPOINT_CRD), savepoints);
        assert_eq!(names(kubeconfig, DEPLOYMENT_CRD), deployments);
    }

    /// A platform that already defines Deployments keeps its own CRD: README's CRD step
    /// refuses to create the stand-in, and neither installing nor uninstalling the webhook
    /// writes to the CRD, whose stricter schema stays in force.
    #[test]
    fn a_deployment_crd_that_exists_is_left_as_it_is() {
        let cluster = ControlPlane::start();
        let kubeconfig = cluster.kubeconfig_path();
        let platform = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": DEPLOYMENT_CRD, "labels": {"owner": "platform"}},
            "spec": {
                "group": "appmanager.dataartisans.com",
                "names": {"kind": "Deployment", "plural": "deployments", "singular": "deployment"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {"spec": {
                            "type": "object",
                            "required": ["template"],
                            "properties": {
                                "state": {"type": "string", "enum": ["RUNNING", "SUSPENDED", "CANCELLED"]},
                                "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        }},
                    }},
                }],
            },
        });
        let run = create(kubeconfig, &[platform]);
        assert!(run.success, "{}{}", run.stdout, run.stderr);
        kubectl(
            Some(kubeconfig),
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{DEPLOYMENT_CRD}"),
            ],
            None,
        );
        let before = crd(kubeconfig, DEPLOYMENT_CRD).expect("the platform's CRD");
        let unchanged = |step: &str| {
            let now = crd(kubeconfig, DEPLOYMENT_CRD)
                .unwrap_or_else(|| panic!("{step} deleted the platform's Deployment CRD"));
            assert_eq!(
                now["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
                "{step} wrote to the platform's Deployment CRD"
            );
            assert_eq!(now["spec"], before["spec"], "{step}");
        };

        install_crds(kubeconfig, cluster.minor()).expect_left_alone();
        unchanged("the CRD step");
        let (_tmp, overlay) = self_managed_copy();
        let webhook = for_server(kubeconfig, render(&overlay));
        kubectl(
            Some(kubeconfig),
            &["apply", "-f", "-"],
            Some(&stream(&webhook)),
        );
        unchanged("installing the webhook");
        uninstall(kubeconfig, &webhook);
        unchanged("uninstalling the webhook");

        // The platform's schema decides: a Deployment without a template is refused.
        let mut bare = mk_deployment("default", "no-template");
        bare["spec"] = json!({"state": "RUNNING"});
        let run = create(kubeconfig, &[bare]);
        assert!(
            !run.success && run.stderr.contains("template"),
            "the platform's schema must still apply:\n{}{}",
            run.stdout,
            run.stderr
        );
        let run = create(kubeconfig, &[mk_deployment("default", "app")]);
        assert!(run.success, "{}{}", run.stdout, run.stderr);
    }
}
