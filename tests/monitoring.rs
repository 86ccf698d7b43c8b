//! The monitoring that ships (`deploy/monitoring/`), checked by the real Prometheus tools:
//! `promtool check rules` and `promtool test rules` fire every alert from recorded series,
//! the PrometheusRule holds exactly the rule file's groups, and a real `prometheus` server
//! scrapes a running webhook over TLS, as the chart's ServiceMonitor would have it do.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (`tests/provision-prometheus.sh`, which prints `SAVEPOINT_WEBHOOK_PROMTOOL`; prometheus
//! is its sibling). Without the variable the tests say loudly that they skipped.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use savepoint_webhook::server::Limits;
use serde_json::Value;

#[path = "support/example_server.rs"]
mod example_server;
#[path = "support/prometheus.rs"]
mod prometheus;

use example_server::ExampleServer;
use prometheus::Prometheus;

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring");

/// `$SAVEPOINT_WEBHOOK_PROMTOOL`, or `None` after saying loudly that `what` is skipped.
fn promtool(what: &str) -> Option<PathBuf> {
    let found = std::env::var_os("SAVEPOINT_WEBHOOK_PROMTOOL").map(PathBuf::from);
    if found.is_none() {
        // Written to stderr directly: libtest would hide an `eprintln!` of a passing test.
        let _ = std::io::stderr().write_all(
            format!(
                "\n*** SKIPPED: {what}: SAVEPOINT_WEBHOOK_PROMTOOL is unset \
                 (eval \"$(tests/provision-prometheus.sh --print-env)\" sets it) ***\n"
            )
            .as_bytes(),
        );
    }
    found
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_prometheus_rule_holds_the_rule_files_groups() {
    let rules = yaml(&Path::new(MONITORING).join("rules.yaml"));
    let resource = yaml(&Path::new(MONITORING).join("prometheusrule.yaml"));
    assert_eq!(resource["kind"], "PrometheusRule");
    assert_eq!(resource["spec"]["groups"], rules["groups"]);
    let alerts: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for expected in [
        "SavepointWebhookNoReplicaUp",
        "SavepointWebhookErrors",
        "SavepointWebhookDenialRate",
        "SavepointWebhookLatencyNearTimeout",
        "SavepointWebhookCertificateExpiring",
        "SavepointWebhookFindingsNotDraining",
        "SavepointWebhookReconcilerNotLeading",
    ] {
        assert!(alerts.contains(&expected), "{expected} missing: {alerts:?}");
    }
}

#[test]
fn promtool_fires_every_alert_from_recorded_series() {
    let Some(promtool) = promtool("promtool check rules / test rules") else {
        return;
    };
    for args in [
        &["check", "rules", "rules.yaml"][..],
        &["test", "rules", "rules.test.yaml"][..],
    ] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(MONITORING)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "promtool {args:?}:\n{text}");
        assert!(text.contains("SUCCESS"), "promtool {args:?}:\n{text}");
    }
    // Every alert has a test that fires it.
    let tests = std::fs::read_to_string(Path::new(MONITORING).join("rules.test.yaml")).unwrap();
    let rules = yaml(&Path::new(MONITORING).join("rules.yaml"));
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let alert = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {alert}\n    exp_alerts:\n    - ")),
            "no test fires {alert}"
        );
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_webhook_over_tls() {
    let Some(promtool) = promtool("the Prometheus scrape") else {
        return;
    };
    let server = ExampleServer::start(Limits::default(), None, true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &server.ca_pem).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: savepoint-webhook\n  scheme: https\n  tls_config:\n    ca_file: {ca}\n    server_name: localhost\n  static_configs:\n  - targets: ['127.0.0.1:{port}']\nrule_files:\n- {rules}\n",
        ca = dir.path().join("ca.crt").display(),
        port = server.addr.port(),
        rules = Path::new(MONITORING).join("rules.yaml").display(),
    );
    let prometheus = Prometheus::start(&promtool, &config);
    let query = |q: &'static str| {
        let prometheus = &prometheus;
        async move {
            prometheus.query(q).await?["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if query("up{job=\"savepoint-webhook\"}").await.as_deref() == Some("1")
            && query("savepoint_webhook_build_info").await.as_deref() == Some("1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the webhook:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let targets = prometheus.api("targets").await;
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert!(
        target["scrapeUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{target}"
    );
    let rules = prometheus.api("rules").await;
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(loaded, 7, "the shipped alerts load into a real Prometheus");
    eprintln!(
        "prometheus scraped {} over TLS: up 1, {loaded} alert rules loaded",
        target["scrapeUrl"]
    );
    server.stop().await;
}
