//! The real webhook binary as a process: [`Webhook`].
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

use super::{Certs, install_crypto_provider, log_tail, webhook_bin};

/// How long the webhook may take to become ready, and the API server to use it.
const WEBHOOK_READY_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The status GET /readyz answers, `None` when it cannot be asked.
    pub async fn readyz_status(&self) -> Option<u16> {
        let response = self.http.get(format!("{}/readyz", self.url())).send().await;
        response.ok().map(|r| r.status().as_u16())
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

    /// Sends SIGTERM without waiting (see [`Webhook::wait_exit`]); a no-op when it is not
    /// running.
    pub fn signal_terminate(&self) {
        if let Some(process) = &self.process {
            process.signal("TERM");
        }
    }

    /// Waits at most `timeout` for the process to exit, without blocking the runtime; its
    /// exit status, or `None` when it still runs (or was not running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.process.as_mut()?.exited();
            if let Some(status) = status {
                self.process = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
