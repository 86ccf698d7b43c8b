#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! The shipped Grafana dashboard (`deploy/monitoring/dashboard.json`) against live data:
//! a real kube-apiserver calls the real webhook binary (reconciler, Reports and location
//! verification on), a real `prometheus` scrapes the binary's plain metrics port
//! (`--metrics-listen`), and every panel's expression must be valid PromQL that returns
//! a number from that Prometheus, so a renamed metric or label breaks this test. The
//! dashboard names no data source but its `${datasource}` variable.
//!
//! Needs `SAVEPOINT_WEBHOOK_PROMTOOL` (tests/provision-prometheus.sh); without it the test
//! says loudly that it skipped.

mod common;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{Certs, Cluster, Webhook, free_port, mk_savepoint, write_webhook_kubeconfig};
use prometheus::Prometheus;
use serde_json::{Value, json};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/monitoring/dashboard.json"
);
const NS: &str = "dash";

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap()
}

/// Every `(panel title, expression)` of the dashboard.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap().to_string();
            panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
        })
        .collect()
}

/// Every `datasource` object anywhere in `value`.
fn datasources<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "datasource" {
                    out.push(inner);
                }
                datasources(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_names_no_data_source_but_its_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert_eq!(variables[0]["name"], "datasource");
    assert_eq!(variables[0]["type"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");
    let mut found = Vec::new();
    datasources(&dashboard, &mut found);
    assert!(found.len() > dashboard["panels"].as_array().unwrap().len());
    for datasource in found {
        assert_eq!(
            datasource,
            &json!({"type": "prometheus", "uid": "${datasource}"}),
            "a hard-coded data source"
        );
    }
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Admission decisions per second",
        "Denials per second by reason",
        "Admission latency vs the 10 s timeout",
        "Requests in flight",
        "Location checks per second",
        "Reconciler leader",
        "Audit findings by rule",
        "Serving certificate expires in",
    ] {
        assert!(titles.contains(&wanted), "{wanted} missing: {titles:?}");
    }
}

/// The expression as Grafana would send it for the test's job.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$job", "savepoint-webhook")
}

/// Whether an answer of `/api/v1/query` holds at least one number.
fn has_number(answer: &Value) -> bool {
    answer["status"] == "success"
        && answer["data"]["result"].as_array().is_some_and(|series| {
            series.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_a_real_prometheus_scraping_the_plain_port() {
    let Some(promtool) = std::env::var_os("SAVEPOINT_WEBHOOK_PROMTOOL").map(PathBuf::from) else {
        let _ = std::io::stderr().write_all(
            b"\n*** SKIPPED: the dashboard against a real Prometheus: SAVEPOINT_WEBHOOK_PROMTOOL \
              is unset (eval \"$(tests/provision-prometheus.sh --print-env)\" sets it) ***\n",
        );
        return;
    };
    common::install_crypto_provider();
    let cp = ControlPlane::start();
    let (cluster, _) = Cluster::prepared(&cp, NS, "3").await;
    cluster
        .install_crd_file("tests/fixtures/openreports/reports.yaml")
        .await
        .unwrap_or_else(|e| panic!("the Report CRD does not install: {e}"));
    // Drift stored before any webhook is registered: the reconciler repairs it.
    cluster
        .create_savepoint(
            &mk_savepoint(NS, "drifted", "app", "s3://flink-state/drift"),
            false,
        )
        .await
        .savepoint("drift");

    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().to_str().unwrap().to_string();
    let plain = format!("127.0.0.1:{}", free_port());
    let kubeconfig = cp.dir().join("webhook-kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &[
            "--metrics-listen",
            &plain,
            "--reconcile-interval",
            "1s",
            "--lease-duration",
            "4s",
            "--reports",
            "--report-interval",
            "1s",
            "--verify-location",
            "warn",
            "--verify-file-root",
            &root,
        ],
    )
    .await;
    cluster
        .register_shipped_webhooks(&webhook.url(), &certs.ca_bundle)
        .await;
    let prometheus = Prometheus::start(
        &promtool,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: savepoint-webhook\n  static_configs:\n  - targets: ['{plain}']\n"
        ),
    );

    let dashboard = dashboard();
    let expressions = expressions(&dashboard);
    let started = Instant::now();
    let mut round = 0;
    loop {
        // Traffic through the API server: an admitted create whose location is checked
        // (and found missing), a refused one, and a dry run.
        round += 1;
        let admitted = mk_savepoint(
            NS,
            &format!("sp-{round}"),
            "app",
            &format!("file://{root}/sp-{round}"),
        );
        cluster.create_savepoint(&admitted, false).await;
        let refused = mk_savepoint(
            NS,
            &format!("refused-{round}"),
            "nope",
            "s3://flink-state/x",
        );
        cluster.create_savepoint(&refused, false).await;
        cluster.create_savepoint(&admitted, true).await;

        let mut missing = Vec::new();
        for (title, expr) in &expressions {
            let sent = as_sent(expr);
            let answer = prometheus.query(&sent).await.unwrap_or(Value::Null);
            assert_ne!(
                answer["errorType"], "bad_data",
                "panel {title:?}: not valid PromQL: {sent}\n{answer}"
            );
            if !has_number(&answer) {
                missing.push(format!("{title}: {sent} -> {answer}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "panels without data after 120 s:\n{}\nprometheus log:\n{}\nwebhook log:\n{}",
            missing.join("\n"),
            prometheus.log(),
            webhook.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let targets = prometheus.api("targets").await;
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["scrapeUrl"], format!("http://{plain}/metrics"));
    eprintln!(
        "dashboard: {} expressions of {} panels returned data from {} after {:?}",
        expressions.len(),
        dashboard["panels"].as_array().unwrap().len(),
        target["scrapeUrl"],
        started.elapsed()
    );
}
