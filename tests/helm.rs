//! The Helm chart `deploy/chart/savepoint-webhook` with a real `helm` (v3, built by
//! `tests/provision-helm.sh`, named by `SAVEPOINT_WEBHOOK_HELM`) and a real control plane.
//!
//! `helm lint` and `helm template`: the chart renders what `deploy/base` renders (the
//! container's args, probes and security contexts, the pod spec, RBAC rules, Service,
//! NetworkPolicy, PodDisruptionBudget and webhooks), so the two cannot drift, and each
//! value changes what it says. Then `helm install`, `helm upgrade` and `helm uninstall`
//! against kube-apiserver: the generated CA survives the upgrade, and the uninstall keeps
//! both CRDs and every Savepoint.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

#[path = "common/control_plane.rs"]
mod control_plane;
#[path = "support/manifests.rs"]
mod manifests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use control_plane::ControlPlane;
use manifests::{object, single_webhook};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/chart/savepoint-webhook"
);
const RELEASE: &str = "savepoint-webhook";
const NAMESPACE: &str = "savepoint-webhook";
const SAVEPOINT_CRD: &str = "savepoints.appmanager.dataartisans.com";
const DEPLOYMENT_CRD: &str = "deployments.appmanager.dataartisans.com";
const CONFIGURATIONS: [(&str, &str); 3] = [
    ("MutatingWebhookConfiguration", "savepoint-webhook"),
    ("ValidatingWebhookConfiguration", "savepoint-webhook"),
    ("ValidatingWebhookConfiguration", "savepoint-webhook-delete"),
];

/// The helm binary, or `None` (with a loud message) when it is not provisioned.
fn helm_program() -> Option<PathBuf> {
    match std::env::var_os("SAVEPOINT_WEBHOOK_HELM").filter(|h| !h.is_empty()) {
        Some(helm) => Some(PathBuf::from(helm)),
        None => {
            eprintln!(
                "\n*** SKIPPED: SAVEPOINT_WEBHOOK_HELM is not set; run \
                 `eval \"$(tests/provision-helm.sh --print-env)\"` to test the Helm chart ***\n"
            );
            None
        }
    }
}

/// What one command printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .env("HELM_CACHE_HOME", scratch("cache"))
        .env("HELM_CONFIG_HOME", scratch("config"))
        .env("HELM_DATA_HOME", scratch("data"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A directory of this test process for helm's cache and config, never the user's.
fn scratch(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "savepoint-webhook-helm-{}/{what}",
        std::process::id()
    ))
}

/// Runs a command and returns its stdout; panics with everything it printed on failure.
fn ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.success,
        "{} {args:?} failed:\n{}{}",
        program.display(),
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn kubectl_program() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SAVEPOINT_WEBHOOK_KUBECTL")
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "kubectl".into()),
    )
}

fn parse_yaml(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{text}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn read_yaml(relative: &str) -> Vec<Value> {
    let path = Path::new(ROOT).join(relative);
    parse_yaml(&std::fs::read_to_string(&path).unwrap())
}

/// `helm template` of the chart as release `savepoint-webhook` in its namespace, with
/// `values` (a YAML document) and `extra` flags.
fn template(helm: &Path, values: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--values",
        "-",
    ];
    args.extend_from_slice(extra);
    run(helm, &args, Some(values))
}

fn render(helm: &Path, values: &str, extra: &[&str]) -> Vec<Value> {
    let out = template(helm, values, extra);
    assert!(out.success, "helm template failed:\n{}", out.stderr);
    parse_yaml(&out.stdout)
}

fn failure_policies(docs: &[Value]) -> Vec<Value> {
    CONFIGURATIONS
        .iter()
        .map(|(kind, name)| single_webhook(object(docs, kind, name))["failurePolicy"].clone())
        .collect()
}

/// deploy/base's selector (`app.kubernetes.io/name`) replaced, wherever it appears, by
/// the chart's (`app.kubernetes.io/name` and `app.kubernetes.io/instance`).
fn with_chart_selector(value: &Value) -> Value {
    let base = json!({"app.kubernetes.io/name": "savepoint-webhook"});
    match value {
        v if *v == base => json!({
            "app.kubernetes.io/name": "savepoint-webhook",
            "app.kubernetes.io/instance": RELEASE,
        }),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_chart_selector(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(with_chart_selector).collect()),
        other => other.clone(),
    }
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn decode(value: &Value) -> String {
    String::from_utf8(STANDARD.decode(value.as_str().expect("base64")).unwrap()).unwrap()
}

/// `openssl verify` of `cert` against `ca` (PEM), and the certificate's DNS names.
fn verify_chain(ca: &str, cert: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
    let openssl = Path::new("openssl");
    let ca_file = dir.path().join("ca.crt").display().to_string();
    let cert_file = dir.path().join("tls.crt").display().to_string();
    ok(openssl, &["verify", "-CAfile", &ca_file, &cert_file], None);
    ok(
        openssl,
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &cert_file,
        ],
        None,
    )
}

/// `rules` without the one on `openreports.io` Reports, which the chart renders only with
/// `reports.enabled`.
fn without_reports_rule(rules: &Value) -> Value {
    let kept: Vec<Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| rule["apiGroups"] != json!(["openreports.io"]))
        .cloned()
        .collect();
    assert_eq!(
        kept.len() + 1,
        rules.as_array().unwrap().len(),
        "deploy/base grants Reports in one rule: {rules}"
    );
    Value::Array(kept)
}

/// The chart with default values renders the objects of deploy/base with the same
/// contents, and nothing else but the certificates' Secrets.
#[test]
fn chart_lints_and_renders_what_deploy_base_renders() {
    let Some(helm) = helm_program() else { return };
    let lint = ok(&helm, &["lint", "--strict", CHART], None);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let chart = read_yaml("deploy/chart/savepoint-webhook/Chart.yaml");
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart[0]["version"], crate_version);
    assert_eq!(chart[0]["appVersion"], crate_version);

    let docs = render(&helm, "{}", &["--include-crds"]);
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/savepoint-webhook",
            "ClusterRoleBinding/savepoint-webhook",
            "Deployment/savepoint-webhook",
            "MutatingWebhookConfiguration/savepoint-webhook",
            "NetworkPolicy/savepoint-webhook",
            "PodDisruptionBudget/savepoint-webhook",
            "Role/savepoint-webhook-leader-election",
            "RoleBinding/savepoint-webhook-leader-election",
            "Secret/savepoint-webhook-ca",
            "Secret/savepoint-webhook-tls",
            "Service/savepoint-webhook",
            "ServiceAccount/savepoint-webhook",
            "ValidatingWebhookConfiguration/savepoint-webhook",
            "ValidatingWebhookConfiguration/savepoint-webhook-delete",
        ],
        "no Namespace (the release's, by Helm convention) and never a CRD"
    );
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
        if doc["kind"] != "ClusterRole"
            && doc["kind"] != "ClusterRoleBinding"
            && !doc["kind"]
                .as_str()
                .unwrap()
                .ends_with("WebhookConfiguration")
        {
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{doc}");
        }
    }

    // The pod: everything of deploy/base's but the image, the CPU limit and the
    // priority class.
    let base_deployment = with_chart_selector(object(
        &read_yaml("deploy/base/deployment.yaml"),
        "Deployment",
        "savepoint-webhook",
    ));
    let deployment = object(&docs, "Deployment", "savepoint-webhook");
    let (base_container, chart_container) = (container(&base_deployment), container(deployment));
    for field in [
        "args",
        "securityContext",
        "readinessProbe",
        "livenessProbe",
        "env",
        "ports",
        "volumeMounts",
        "name",
        "imagePullPolicy",
    ] {
        assert_eq!(
            chart_container[field], base_container[field],
            "container {field}"
        );
    }
    assert_eq!(
        chart_container["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}),
        "a memory limit and no CPU limit"
    );
    let strip = |pod: &Value| {
        let mut pod = pod.clone();
        let map = pod.as_object_mut().unwrap();
        map.remove("containers");
        map.remove("priorityClassName");
        pod
    };
    assert_eq!(
        strip(&deployment["spec"]["template"]["spec"]),
        strip(&base_deployment["spec"]["template"]["spec"]),
        "pod spec"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    for field in ["replicas", "revisionHistoryLimit", "selector", "strategy"] {
        assert_eq!(
            deployment["spec"][field], base_deployment["spec"][field],
            "Deployment {field}"
        );
    }
    assert_eq!(
        deployment["spec"]["template"]["metadata"],
        base_deployment["spec"]["template"]["metadata"]
    );

    // RBAC, Service, NetworkPolicy, PodDisruptionBudget.
    let rbac = read_yaml("deploy/base/rbac.yaml");
    assert_eq!(
        object(&docs, "ClusterRole", "savepoint-webhook")["rules"],
        without_reports_rule(&object(&rbac, "ClusterRole", "savepoint-webhook")["rules"]),
        "ClusterRole rules: deploy/base's, but the Reports' only with reports.enabled"
    );
    assert_eq!(
        object(&docs, "Role", "savepoint-webhook-leader-election")["rules"],
        object(&rbac, "Role", "savepoint-webhook-leader-election")["rules"],
        "Role rules"
    );
    for (kind, name) in [
        ("ClusterRoleBinding", "savepoint-webhook"),
        ("RoleBinding", "savepoint-webhook-leader-election"),
    ] {
        let (chart, base) = (object(&docs, kind, name), object(&rbac, kind, name));
        assert_eq!(chart["roleRef"], base["roleRef"], "{kind}");
        assert_eq!(chart["subjects"], base["subjects"], "{kind}");
    }
    for (file, kind) in [
        ("service", "Service"),
        ("networkpolicy", "NetworkPolicy"),
        ("poddisruptionbudget", "PodDisruptionBudget"),
    ] {
        let base = read_yaml(&format!("deploy/base/{file}.yaml"));
        let base = with_chart_selector(object(&base, kind, "savepoint-webhook"));
        let chart = object(&docs, kind, "savepoint-webhook");
        assert_eq!(chart["spec"], base["spec"], "{kind}");
        assert_eq!(chart["apiVersion"], base["apiVersion"], "{kind}");
    }

    // The webhooks, but for the caBundle the chart adds.
    let base_webhooks = read_yaml("deploy/base/webhooks.yaml");
    let generated = object(&docs, "Secret", "savepoint-webhook-tls");
    let ca = decode(&generated["data"]["ca.crt"]);
    for (kind, name) in CONFIGURATIONS {
        let mut chart = single_webhook(object(&docs, kind, name)).clone();
        let bundle = chart["clientConfig"]
            .as_object_mut()
            .unwrap()
            .remove("caBundle")
            .unwrap_or_else(|| panic!("{kind} {name} has a caBundle"));
        assert_eq!(decode(&bundle), ca, "{kind} {name} trusts the generated CA");
        assert_eq!(
            chart,
            *single_webhook(object(&base_webhooks, kind, name)),
            "{kind} {name}"
        );
    }
    assert_eq!(failure_policies(&docs), ["Fail", "Fail", "Ignore"]);

    // The serving certificate: signed by that CA, for the Service's names.
    let names = verify_chain(&ca, &decode(&generated["data"]["tls.crt"]));
    for dns in [
        "DNS:savepoint-webhook,",
        "DNS:savepoint-webhook.savepoint-webhook,",
        "DNS:savepoint-webhook.savepoint-webhook.svc,",
        "DNS:savepoint-webhook.savepoint-webhook.svc.cluster.local",
    ] {
        assert!(names.contains(dns), "{dns} in {names}");
    }
    assert_eq!(
        decode(&object(&docs, "Secret", "savepoint-webhook-ca")["data"]["tls.crt"]),
        ca
    );
}

/// Each value changes what it names and nothing the defaults check above.
#[test]
fn values_change_what_they_name() {
    let Some(helm) = helm_program() else { return };

    let docs = render(&helm, "failurePolicy: Ignore\nreplicaCount: 3\n", &[]);
    assert_eq!(failure_policies(&docs), ["Ignore", "Ignore", "Ignore"]);
    assert_eq!(object(&docs, "Deployment", RELEASE)["spec"]["replicas"], 3);

    // Reports: deploy/base's rule on openreports.io, and the flags.
    let docs = render(
        &helm,
        "reports: {enabled: true, interval: 2m, maxResults: 50}\n",
        &[],
    );
    assert_eq!(
        object(&docs, "ClusterRole", RELEASE)["rules"],
        object(&read_yaml("deploy/base/rbac.yaml"), "ClusterRole", RELEASE)["rules"]
    );
    let args = container(object(&docs, "Deployment", RELEASE))["args"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--reports").unwrap();
    assert_eq!(
        args[at..at + 5],
        [
            "--reports",
            "--report-interval",
            "2m",
            "--report-max-results",
            "50"
        ]
    );

    // The plain metrics port: the flag, a container port, the Service's and the
    // NetworkPolicy's port, and the scrape annotations and ServiceMonitor on it.
    let docs = render(
        &helm,
        "metrics: {plainPort: 9090, podAnnotations: true, serviceMonitor: {enabled: true}}\n",
        &["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
    );
    let deployment = object(&docs, "Deployment", RELEASE);
    let pod = container(deployment);
    let args = pod["args"].as_array().unwrap();
    let at = args.iter().position(|a| a == "--metrics-listen").unwrap();
    assert_eq!(args[at + 1], "0.0.0.0:9090");
    assert_eq!(
        pod["ports"][1],
        json!({"name": "metrics", "containerPort": 9090, "protocol": "TCP"})
    );
    assert_eq!(
        object(&docs, "Service", RELEASE)["spec"]["ports"][1],
        json!({"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"})
    );
    assert_eq!(
        object(&docs, "NetworkPolicy", RELEASE)["spec"]["ingress"][0]["ports"][1],
        json!({"protocol": "TCP", "port": 9090})
    );
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        (
            &annotations["prometheus.io/scheme"],
            &annotations["prometheus.io/port"]
        ),
        (&json!("http"), &json!("9090"))
    );
    assert_eq!(
        object(&docs, "ServiceMonitor", RELEASE)["spec"]["endpoints"],
        json!([{"port": "metrics", "scheme": "http", "path": "/metrics", "interval": "30s"}])
    );
    let docs = render(
        &helm,
        "metrics: {serviceMonitor: {enabled: true}}\n",
        &["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
    );
    assert_eq!(
        object(&docs, "ServiceMonitor", RELEASE)["spec"]["endpoints"][0]["scheme"],
        "https",
        "without plainPort, over TLS as before"
    );
    assert!(
        !container(object(&docs, "Deployment", RELEASE))["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--metrics-listen")
    );

    // The dashboard: a ConfigMap with the sidecar's label holding deploy/monitoring's
    // dashboard, the chart's copy of which must not drift from it.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/dashboard.json"),
    )
    .unwrap();
    let copy = std::fs::read_to_string(Path::new(CHART).join("dashboards/savepoint-webhook.json"))
        .unwrap();
    assert_eq!(
        copy, shipped,
        "the chart's dashboard is deploy/monitoring/dashboard.json"
    );
    let docs = render(
        &helm,
        "dashboard: {enabled: true, annotations: {grafana_folder: Flink}}\n",
        &[],
    );
    let config_map = object(&docs, "ConfigMap", "savepoint-webhook-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], NAMESPACE);
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Flink"
    );
    assert_eq!(
        config_map["data"]["savepoint-webhook.json"]
            .as_str()
            .unwrap(),
        shipped.trim_end()
    );

    let refused = template(&helm, "failurePolicy: Never\n", &[]);
    assert!(
        !refused.success
            && refused
                .stderr
                .contains("failurePolicy must be Fail or Ignore"),
        "{}",
        refused.stderr
    );

    // cert-manager: its four objects as in deploy/overlays/cert-manager, the CA injected
    // into every configuration, no Secret and no caBundle of the chart's own.
    let docs = render(&helm, "certificates: {mode: cert-manager}\n", &[]);
    let overlay = read_yaml("deploy/overlays/cert-manager/certificates.yaml");
    for doc in &overlay {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            object(&docs, kind, name)["spec"],
            doc["spec"],
            "{kind} {name}"
        );
    }
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
    for (kind, name) in CONFIGURATIONS {
        let configuration = object(&docs, kind, name);
        assert_eq!(
            configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "savepoint-webhook/savepoint-webhook"
        );
        assert!(
            single_webhook(configuration)["clientConfig"]
                .get("caBundle")
                .is_none()
        );
    }

    // matchConditions: only when set, only from 1.30.
    let conditions = "matchConditions:\n- name: exempt-platform-controller\n  expression: \
                      \"request.userInfo.username != 'system:serviceaccount:vvp:vvp-controller'\"\n";
    let docs = render(&helm, conditions, &["--kube-version", "1.30.0"]);
    for (kind, name) in &CONFIGURATIONS[..2] {
        assert_eq!(
            single_webhook(object(&docs, kind, name))["matchConditions"][0]["name"],
            "exempt-platform-controller"
        );
    }
    assert!(
        single_webhook(object(&docs, CONFIGURATIONS[2].0, CONFIGURATIONS[2].1))
            .get("matchConditions")
            .is_none()
    );
    let docs = render(&helm, "{}", &["--kube-version", "1.30.0"]);
    assert!(
        docs.iter()
            .all(|d| !d.to_string().contains("matchConditions"))
    );
    let refused = template(&helm, conditions, &["--kube-version", "1.29.0"]);
    assert!(
        !refused.success
            && refused
                .stderr
                .contains("matchConditions need Kubernetes 1.30"),
        "{}",
        refused.stderr
    );

    // Before 1.21 the PodDisruptionBudget is policy/v1beta1.
    let docs = render(&helm, "{}", &["--kube-version", "1.20.2"]);
    assert_eq!(
        object(&docs, "PodDisruptionBudget", RELEASE)["apiVersion"],
        "policy/v1beta1"
    );

    // Namespaces, verification, credentials, workload identity.
    let values = "excludeNamespaces: [kube-system, vvp]\n\
                  verify: {location: deny, depth: full, timeout: 1s, fileRoots: [/data/flink], \
                  s3: {endpoint: 'https://minio:9000', region: eu-west-1, addressing: path}, \
                  credentialsSecret: store-reader}\n\
                  serviceAccount: {annotations: {eks.amazonaws.com/role-arn: arn:aws:iam::1:role/r}}\n\
                  priorityClassName: ''\n";
    let docs = render(&helm, values, &[]);
    for (kind, name) in CONFIGURATIONS {
        assert_eq!(
            single_webhook(object(&docs, kind, name))["namespaceSelector"],
            json!({"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [NAMESPACE, "kube-system", "vvp"],
            }]})
        );
    }
    // 1.20 sets no kubernetes.io/metadata.name, and any client may write it: no
    // namespace is left alone there, and a list is refused rather than ignored.
    let on_1_20 = render(&helm, "{}", &["--kube-version", "1.20.2"]);
    for (kind, name) in CONFIGURATIONS {
        assert!(
            single_webhook(object(&on_1_20, kind, name))
                .get("namespaceSelector")
                .is_none(),
            "{kind} {name} on 1.20"
        );
    }
    let refused = template(&helm, values, &["--kube-version", "1.20.2"]);
    assert!(
        !refused.success
            && refused
                .stderr
                .contains("excludeNamespaces needs Kubernetes 1.21"),
        "{}",
        refused.stderr
    );
    let deployment = object(&docs, "Deployment", RELEASE);
    let args: Vec<&str> = container(deployment)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args[7..],
        [
            "--verify-location",
            "deny",
            "--shutdown-delay",
            "5s",
            "--drain-timeout",
            "20s",
            "--verify-depth",
            "full",
            "--verify-timeout",
            "1s",
            "--verify-file-root",
            "/data/flink",
            "--verify-s3-endpoint",
            "https://minio:9000",
            "--verify-s3-region",
            "eu-west-1",
            "--verify-s3-addressing",
            "path"
        ]
    );
    assert_eq!(
        container(deployment)["envFrom"],
        json!([{"secretRef": {"name": "store-reader"}}])
    );
    assert!(
        deployment["spec"]["template"]["spec"]
            .get("priorityClassName")
            .is_none()
    );
    assert_eq!(
        object(&docs, "ServiceAccount", RELEASE)["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"})
    );
    let refused = template(&helm, "verify: {location: maybe}\n", &[]);
    assert!(!refused.success && refused.stderr.contains("verify.location must be"));
}

/// A kubectl and a helm against one control plane.
struct Tools<'a> {
    helm: PathBuf,
    kubectl: PathBuf,
    kubeconfig: &'a str,
}

impl Tools<'_> {
    fn helm(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut all = vec!["--kubeconfig", self.kubeconfig];
        all.extend_from_slice(args);
        run(&self.helm, &all, stdin)
    }

    fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut all = vec!["--kubeconfig", self.kubeconfig];
        all.extend_from_slice(args);
        run(&self.kubectl, &all, stdin)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_run(args, stdin);
        assert!(
            out.success,
            "kubectl {args:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all, None)).unwrap()
    }

    fn create(&self, objects: &[Value]) -> Run {
        let stream: String = objects.iter().map(|o| format!("---\n{o}\n")).collect();
        self.kubectl_run(&["create", "-f", "-"], Some(&stream))
    }

    /// `namespace/name` of every Savepoint, sorted.
    fn savepoints(&self) -> Vec<String> {
        let list = self.get(&[SAVEPOINT_CRD, "--all-namespaces"]);
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        names.sort();
        names
    }

    fn ca(&self) -> String {
        decode(&self.get(&["secret", "-n", NAMESPACE, "savepoint-webhook-ca"])["data"]["tls.crt"])
    }

    fn serving(&self) -> String {
        decode(&self.get(&["secret", "-n", NAMESPACE, "savepoint-webhook-tls"])["data"]["tls.crt"])
    }

    fn configurations(&self) -> Vec<Value> {
        CONFIGURATIONS
            .iter()
            .map(|(kind, name)| self.get(&[kind, name]))
            .collect()
    }
}

fn mk_savepoint(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "deploymentName": "app",
            "savepointLocation": format!("s3://flink-state/savepoints/{namespace}/{name}"),
        },
        "status": {"state": "COMPLETED"},
    })
}

/// README's Helm steps on the real control plane: CRDs first, `helm install`,
/// `helm upgrade` with changed values, `helm uninstall`.
#[test]
fn install_upgrade_and_uninstall_keep_the_ca_the_crds_and_every_savepoint() {
    let Some(helm) = helm_program() else { return };
    let cluster = ControlPlane::start();
    let minor = cluster.minor();
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let tools = Tools {
        helm,
        kubectl: kubectl_program(),
        kubeconfig: &kubeconfig,
    };

    // The CRD step, as for the overlays; then the namespace with the labels README
    // gives it, and Savepoints from before the webhook.
    let crd_file = if minor >= 25 {
        "deploy/crds/cel/savepoints.yaml"
    } else {
        "deploy/crds/savepoints.yaml"
    };
    tools.kubectl(&["apply", "-f", &format!("{ROOT}/{crd_file}")], None);
    tools.kubectl(
        &[
            "create",
            "-f",
            &format!("{ROOT}/deploy/crds/deployments.yaml"),
        ],
        None,
    );
    for crd in [SAVEPOINT_CRD, DEPLOYMENT_CRD] {
        tools.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{crd}"),
            ],
            None,
        );
    }
    let namespaces = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
        }}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
    ];
    let out = tools.create(&namespaces);
    assert!(out.success, "{}", out.stderr);
    let out = tools.create(&[
        mk_savepoint("team-a", "sp-1"),
        mk_savepoint("team-a", "sp-2"),
    ]);
    assert!(out.success, "{}", out.stderr);
    let crds_before: Vec<Value> = [SAVEPOINT_CRD, DEPLOYMENT_CRD]
        .iter()
        .map(|crd| tools.get(&["crd", crd])["metadata"]["uid"].clone())
        .collect();

    // Install.
    let install = tools.helm(
        &[
            "install",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--values",
            "-",
        ],
        Some("{}"),
    );
    assert!(
        install.success,
        "helm install:\n{}{}",
        install.stdout, install.stderr
    );
    eprintln!(
        "helm install on {}: {}",
        cluster.version(),
        install
            .stdout
            .lines()
            .find(|l| l.starts_with("STATUS"))
            .unwrap_or_default()
    );
    let manifest = parse_yaml(&ok(
        &tools.helm,
        &[
            "--kubeconfig",
            &kubeconfig,
            "get",
            "manifest",
            RELEASE,
            "--namespace",
            NAMESPACE,
        ],
        None,
    ));
    assert!(
        manifest
            .iter()
            .all(|d| d["kind"] != "CustomResourceDefinition")
    );
    let pdb = object(&manifest, "PodDisruptionBudget", RELEASE);
    assert_eq!(
        pdb["apiVersion"],
        if minor >= 21 {
            "policy/v1"
        } else {
            "policy/v1beta1"
        }
    );
    let ca = tools.ca();
    let serving = tools.serving();
    verify_chain(&ca, &serving);
    for configuration in tools.configurations() {
        assert_eq!(
            decode(&single_webhook(&configuration)["clientConfig"]["caBundle"]),
            ca
        );
    }
    assert_eq!(
        failure_policies(&tools.configurations()),
        ["Fail", "Fail", "Ignore"]
    );
    let refused = tools.create(&[mk_savepoint("team-a", "sp-refused")]);
    assert!(
        !refused.success
            && refused
                .stderr
                .contains("failed calling webhook \"mutate.savepoint-webhook"),
        "the installed webhook guards Savepoint creates (and no pod answers here):\n{}",
        refused.stderr
    );

    // The pod the Deployment would make is admitted in the release namespace: the
    // priority class outside kube-system, and (from 1.23) the restricted Pod Security
    // profile the namespace enforces.
    let deployment = object(&manifest, "Deployment", RELEASE);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe-pod", "namespace": NAMESPACE,
                     "labels": deployment["spec"]["template"]["metadata"]["labels"]},
        "spec": deployment["spec"]["template"]["spec"],
    });
    let out = tools.create(&[pod]);
    assert!(
        out.success,
        "the chart's pod is refused on {}:\n{}",
        cluster.version(),
        out.stderr
    );
    let created = tools.get(&["pod", "-n", NAMESPACE, "probe-pod"]);
    assert_eq!(
        created["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    assert_eq!(created["spec"]["priority"], 2_000_000_000);
    tools.kubectl(
        &[
            "delete",
            "pod",
            "-n",
            NAMESPACE,
            "probe-pod",
            "--wait=false",
        ],
        None,
    );

    // Upgrade: fail open, three replicas, and on 1.30+ a matchCondition; 1.20 refuses
    // the matchCondition at render time and keeps the release as it was.
    let conditions = "matchConditions:\n- name: exempt-platform-controller\n  expression: \
                      \"request.userInfo.username != 'system:serviceaccount:vvp:vvp-controller'\"\n";
    let upgrade_args = [
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--values",
        "-",
    ];
    if minor < 30 {
        let refused = tools.helm(&upgrade_args, Some(conditions));
        assert!(
            !refused.success
                && refused
                    .stderr
                    .contains("matchConditions need Kubernetes 1.30"),
            "{}",
            refused.stderr
        );
    }
    let mut values = String::from("failurePolicy: Ignore\nreplicaCount: 3\n");
    if minor >= 30 {
        values.push_str(conditions);
    }
    let upgrade = tools.helm(&upgrade_args, Some(&values));
    assert!(
        upgrade.success,
        "helm upgrade:\n{}{}",
        upgrade.stdout, upgrade.stderr
    );
    let configurations = tools.configurations();
    assert_eq!(
        failure_policies(&configurations),
        ["Ignore", "Ignore", "Ignore"]
    );
    assert_eq!(
        tools.get(&["deployment", "-n", NAMESPACE, RELEASE])["spec"]["replicas"],
        3
    );
    assert_eq!(tools.ca(), ca, "the upgrade keeps the generated CA");
    for configuration in &configurations {
        assert_eq!(
            decode(&single_webhook(configuration)["clientConfig"]["caBundle"]),
            ca
        );
    }
    let renewed = tools.serving();
    assert_ne!(
        renewed, serving,
        "the upgrade issues a new serving certificate"
    );
    verify_chain(&ca, &renewed);
    for configuration in &configurations[..2] {
        let conditions = &single_webhook(configuration)["matchConditions"];
        if minor >= 30 {
            assert_eq!(conditions[0]["name"], "exempt-platform-controller");
        } else {
            assert!(conditions.is_null(), "{conditions}");
        }
    }
    let history = ok(
        &tools.helm,
        &[
            "--kubeconfig",
            &kubeconfig,
            "history",
            RELEASE,
            "--namespace",
            NAMESPACE,
        ],
        None,
    );
    assert_eq!(history.lines().count(), 3, "two revisions:\n{history}");
    // Failing open: with no replica to answer, the create goes through unchanged.
    let out = tools.create(&[mk_savepoint("team-a", "sp-3")]);
    assert!(out.success, "{}", out.stderr);

    // Uninstall: every object of the release goes, the CRDs and Savepoints stay.
    let savepoints = tools.savepoints();
    assert_eq!(savepoints, ["team-a/sp-1", "team-a/sp-2", "team-a/sp-3"]);
    let uninstall = tools.helm(&["uninstall", RELEASE, "--namespace", NAMESPACE], None);
    assert!(
        uninstall.success,
        "helm uninstall:\n{}{}",
        uninstall.stdout, uninstall.stderr
    );
    for doc in &manifest {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get", kind, name];
        if doc["metadata"].get("namespace").is_some() {
            args.extend_from_slice(&["-n", NAMESPACE]);
        }
        let out = tools.kubectl_run(&args, None);
        assert!(
            !out.success && out.stderr.contains("NotFound"),
            "{kind} {name} outlived helm uninstall:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    let crds_after: Vec<Value> = [SAVEPOINT_CRD, DEPLOYMENT_CRD]
        .iter()
        .map(|crd| tools.get(&["crd", crd])["metadata"]["uid"].clone())
        .collect();
    assert_eq!(crds_after, crds_before, "the CRDs stay, never replaced");
    assert_eq!(tools.savepoints(), savepoints);
    let out = tools.create(&[mk_savepoint("team-a", "sp-4")]);
    assert!(
        out.success,
        "nothing calls the webhook any more: {}",
        out.stderr
    );
}
