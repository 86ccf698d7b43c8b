#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! `openreports.io` Reports on a real kube-apiserver with the Report CRD of
//! `tests/fixtures/openreports/` installed: `audit --report` (the real binary) writes one
//! Report per namespace of its findings, with results and summary as the findings say,
//! rewrites nothing when nothing changed, drains a report when its Savepoint is fixed,
//! caps a large namespace's report, and deletes the report of a namespace left without
//! Savepoints; then `serve --reports` keeps them current on the leader without a rerun.

mod common;

use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{Certs, Cluster, Webhook, free_port, mk_savepoint, write_webhook_kubeconfig};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use savepoint_webhook::resources::SPEC_VERSION_ANNOTATION;
use serde_json::{Value, json};

const CRD: &str = "tests/fixtures/openreports/reports.yaml";
/// Savepoints of the namespace whose report is capped (the default cap is 500).
const BIG: usize = 520;

fn reports_api(cluster: &Cluster, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
        "reports",
    );
    Api::namespaced_with(cluster.client.clone(), namespace, &resource)
}

/// The stored report `savepoint-webhook` of `namespace`, as JSON.
async fn report(cluster: &Cluster, namespace: &str) -> Option<Value> {
    reports_api(cluster, namespace)
        .get_opt("savepoint-webhook")
        .await
        .unwrap()
        .map(|r| serde_json::to_value(r).unwrap())
}

/// `(policy, result, severity, Savepoint name)` of each result of a report.
fn results(report: &Value) -> Vec<(String, String, String, String)> {
    report["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&r["policy"]),
                text(&r["result"]),
                text(&r["severity"]),
                text(&r["resources"][0]["name"]),
            )
        })
        .collect()
}

fn row(policy: &str, result: &str, severity: &str, name: &str) -> (String, String, String, String) {
    (policy.into(), result.into(), severity.into(), name.into())
}

/// A Savepoint as the webhook leaves it: annotated, both references, an origin.
fn mk_clean(namespace: &str, name: &str, uid: &str, location: &str) -> Value {
    let mut manifest = mk_savepoint(namespace, name, "app", location);
    manifest["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "3" });
    manifest["spec"]["deploymentId"] = json!(uid);
    manifest["spec"]["origin"] = json!("USER_REQUEST");
    manifest
}

/// Runs `audit --report --output json` (and `extra` flags) as the admin; exit code and
/// stderr.
fn audit_report(cp: &ControlPlane, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::webhook_bin())
        .args(["audit", "--report", "--output", "json"])
        .args(extra)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("audit printed no JSON ({e}); stderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), stderr)
}

/// Waits (at most 60 s) until the report of `namespace` satisfies `done`.
async fn wait_report(
    cluster: &Cluster,
    namespace: &str,
    webhook: &Webhook,
    what: &str,
    done: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let started = Instant::now();
    loop {
        let got = report(cluster, namespace).await;
        if done(got.as_ref()) {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s; report of {namespace}: {got:#?}\nwebhook log:\n{}",
            webhook.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_the_reconciler_keep_one_report_per_namespace() {
    common::install_crypto_provider();
    let cp = ControlPlane::start();
    let (cluster, uid_a) = Cluster::prepared(&cp, "team-a", "3").await;
    cluster.create_namespace("team-b").await;
    let uid_b = cluster
        .create_deployment(common::mk_deployment("team-b", "app", Some("3")))
        .await;
    if let Err(refused) = cluster.install_crd_file(CRD).await {
        panic!(
            "the openreports.io Report CRD does not install on Kubernetes {}: {refused}",
            cp.version()
        );
    }

    // Findings in two namespaces, stored with no webhook registered.
    let mut no_origin = mk_clean("team-a", "no-origin", &uid_a, "s3://flink-state/a/1");
    no_origin["spec"].as_object_mut().unwrap().remove("origin");
    for manifest in [
        mk_clean("team-a", "clean", &uid_a, "s3://flink-state/a/0"),
        no_origin,
    ] {
        cluster
            .create_savepoint(&manifest, false)
            .await
            .savepoint("team-a");
    }
    let mut orphan = mk_clean("team-b", "orphan", &uid_b, "s3://flink-state/b/0");
    orphan["spec"]["deploymentName"] = json!("gone");
    orphan["spec"]
        .as_object_mut()
        .unwrap()
        .remove("deploymentId");
    let mut failed = mk_clean("team-b", "failed", &uid_b, "s3://flink-state/b/1");
    failed["status"]["state"] = json!("FAILED");
    for manifest in [orphan, failed] {
        cluster
            .create_savepoint(&manifest, false)
            .await
            .savepoint("team-b");
    }
    // A namespace whose Savepoints are gone still holds a report of ours, and a report of
    // another tool's.
    cluster.create_namespace("team-c").await;
    for (name, managed_by) in [
        ("savepoint-webhook", "savepoint-webhook"),
        ("kyverno", "kyverno"),
    ] {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "openreports.io/v1alpha1",
            "kind": "Report",
            "metadata": { "name": name, "namespace": "team-c",
                          "labels": { "app.kubernetes.io/managed-by": managed_by } },
            "source": managed_by,
            "summary": { "fail": 1 },
        }))
        .unwrap();
        reports_api(&cluster, "team-c")
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }

    let (code, stderr) = audit_report(&cp, &[]);
    assert_eq!(code, 1, "findings exit 1:\n{stderr}");
    assert!(
        stderr.contains("reports: 2 written, 0 unchanged, 1 deleted, 0 failed"),
        "{stderr}"
    );
    let a = report(&cluster, "team-a").await.expect("team-a's report");
    eprintln!(
        "report as read back:\n{}",
        serde_json::to_string_pretty(&a).unwrap()
    );
    assert_eq!(a["source"], "savepoint-webhook");
    assert_eq!(
        a["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "savepoint-webhook"
    );
    assert_eq!(
        a["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(
        results(&a),
        [row("missing-origin", "fail", "medium", "no-origin")]
    );
    let result = &a["results"][0];
    let stored = cluster.get_savepoint("team-a", "no-origin").await.unwrap();
    assert_eq!(
        result["resources"][0],
        json!({
            "apiVersion": "appmanager.dataartisans.com/v1",
            "kind": "Savepoint",
            "namespace": "team-a",
            "name": "no-origin",
            "uid": stored.metadata.uid.unwrap(),
        })
    );
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("spec.origin is missing"),
        "{result}"
    );
    assert!(result["timestamp"]["seconds"].as_i64().unwrap() > 1_700_000_000);
    let b = report(&cluster, "team-b").await.expect("team-b's report");
    assert_eq!(
        results(&b),
        [
            row("unknown-deployment", "fail", "high", "orphan"),
            row("not-restorable", "warn", "low", "failed"),
        ]
    );
    assert_eq!(
        b["summary"],
        json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0})
    );
    assert!(
        report(&cluster, "team-c").await.is_none(),
        "the stale report of a namespace without Savepoints is deleted"
    );
    assert!(
        reports_api(&cluster, "team-c")
            .get_opt("kyverno")
            .await
            .unwrap()
            .is_some(),
        "another tool's report is left alone"
    );

    // kubectl shows the counts in the CRD's printer columns.
    let kubectl = std::env::var_os("SAVEPOINT_WEBHOOK_KUBECTL")
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "kubectl".into());
    let table = std::process::Command::new(kubectl)
        .args([
            "get",
            "reports",
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=savepoint-webhook",
        ])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    eprintln!("kubectl get reports:\n{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().take(7).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP"],
            vec!["team-a", "savepoint-webhook", "1", "1", "0", "0", "0"],
            vec!["team-b", "savepoint-webhook", "0", "1", "1", "0", "0"],
        ],
        "{table}"
    );

    // Nothing changed: nothing is written, and the stored reports keep their versions.
    let version = |r: &Value| r["metadata"]["resourceVersion"].clone();
    let (code, stderr) = audit_report(&cp, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("reports: 0 written, 2 unchanged, 0 deleted"),
        "{stderr}"
    );
    assert_eq!(
        version(&report(&cluster, "team-a").await.unwrap()),
        version(&a)
    );

    // Fixed: the report drains to a pass; team-b's results keep their first-seen times.
    let fixed = cluster
        .patch_savepoint(
            "team-a",
            "no-origin",
            &json!({"spec": {"origin": "COPIED"}}),
        )
        .await;
    assert!(fixed.ok(), "{}", fixed.message());
    let (code, stderr) = audit_report(&cp, &[]);
    assert_eq!(code, 1, "team-b still has findings");
    assert!(
        stderr.contains("reports: 1 written, 1 unchanged"),
        "{stderr}"
    );
    let drained = report(&cluster, "team-a").await.unwrap();
    assert_eq!(results(&drained), []);
    assert_eq!(
        drained["summary"],
        json!({"pass": 2, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(
        report(&cluster, "team-b").await.unwrap()["results"],
        b["results"]
    );

    // Bounded: a namespace with more findings than the cap keeps the first 500, counts
    // them all and says how many it left out; a smaller cap is applied as asked.
    cluster.create_namespace("big").await;
    let uid_big = cluster
        .create_deployment(common::mk_deployment("big", "app", Some("3")))
        .await;
    for i in 0..BIG {
        let mut manifest = mk_clean(
            "big",
            &format!("sp-{i:04}"),
            &uid_big,
            &format!("s3://flink-state/big/{i}"),
        );
        manifest["spec"].as_object_mut().unwrap().remove("origin");
        cluster
            .create_savepoint(&manifest, false)
            .await
            .savepoint("big");
    }
    let (_, stderr) = audit_report(&cp, &["--namespace", "big"]);
    assert!(
        stderr.contains("reports: 1 written, 0 unchanged, 0 deleted"),
        "{stderr}"
    );
    let big = report(&cluster, "big").await.unwrap();
    assert_eq!(big["results"].as_array().unwrap().len(), 500);
    assert_eq!(big["summary"]["fail"], BIG);
    assert_eq!(big["configuration"]["limits"]["maxResults"], 500);
    assert_eq!(
        big["metadata"]["annotations"]["savepoint-webhook.appmanager.dataartisans.com/results-left-out"],
        format!("{} of {BIG} results", BIG - 500)
    );
    audit_report(&cp, &["--namespace", "team-b", "--report-max-results", "1"]);
    let capped = report(&cluster, "team-b").await.unwrap();
    assert_eq!(
        results(&capped),
        [row("unknown-deployment", "fail", "high", "orphan")]
    );
    assert_eq!(
        capped["summary"]["warn"], 1,
        "the summary counts what was left out"
    );
    assert_eq!(
        capped["metadata"]["annotations"]["savepoint-webhook.appmanager.dataartisans.com/results-left-out"],
        "1 of 2 results"
    );

    // The reconciler, as the webhook's ServiceAccount with deploy/base's RBAC, keeps them
    // current without a rerun: it repairs the big namespace (its report drains), lifts
    // the cap again, reports new drift, and deletes the report of a namespace emptied.
    let kubeconfig = cp.dir().join("webhook-kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &[
            "--reports",
            "--report-interval",
            "1s",
            "--reconcile-interval",
            "1s",
            "--lease-duration",
            "4s",
        ],
    )
    .await;
    let drained = wait_report(
        &cluster,
        "big",
        &webhook,
        "the repaired namespace's report drains",
        |r| r.is_some_and(|r| r["summary"]["pass"] == BIG && r["summary"]["fail"] == 0),
    )
    .await
    .unwrap();
    assert_eq!(results(&drained), []);
    assert!(
        drained["metadata"]["annotations"]
            .get("savepoint-webhook.appmanager.dataartisans.com/results-left-out")
            .is_none()
    );
    wait_report(&cluster, "team-b", &webhook, "the cap of 500 again", |r| {
        r.is_some_and(|r| results(r).len() == 2)
    })
    .await;
    let mut stale = mk_clean("team-b", "stale", &uid_b, "s3://flink-state/b/2");
    stale["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "2" });
    cluster
        .create_savepoint(&stale, false)
        .await
        .savepoint("new drift");
    let updated = wait_report(&cluster, "team-b", &webhook, "new drift is reported", |r| {
        r.is_some_and(|r| results(r).iter().any(|row| row.3 == "stale"))
    })
    .await
    .unwrap();
    assert_eq!(
        results(&updated),
        [
            row("unknown-deployment", "fail", "high", "orphan"),
            row("not-restorable", "warn", "low", "failed"),
            row("stale-spec-version", "warn", "low", "stale"),
        ]
    );
    assert_eq!(updated["summary"]["warn"], 2);
    for name in ["clean", "no-origin"] {
        Api::<savepoint_webhook::resources::Savepoint>::namespaced(
            cluster.client.clone(),
            "team-a",
        )
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    }
    wait_report(
        &cluster,
        "team-a",
        &webhook,
        "the emptied namespace's report is deleted",
        |r| r.is_none(),
    )
    .await;
    let metrics = webhook.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "savepoint_webhook_report_writes_total{operation=\"apply\",result=\"ok\"}"
        )),
        "report writes are counted:\n{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("savepoint_webhook_report_writes_total")
                && l.contains("result=\"failed\"")),
        "no write failed:\n{metrics}"
    );
}
