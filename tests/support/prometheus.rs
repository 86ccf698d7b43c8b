//! A real `prometheus` server for the monitoring tests: [`Prometheus::start`] runs the
//! binary beside `$SAVEPOINT_WEBHOOK_PROMTOOL` (Debian's `prometheus` package ships both)
//! on a free loopback port with a given configuration, and [`Prometheus::query`] asks its
//! HTTP API. Killed on drop.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running `prometheus`.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT` of its web API.
    pub web: std::net::SocketAddr,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts `prometheus` (beside `promtool`) with `config` as its `prometheus.yml`.
    pub fn start(promtool: &Path, config: &str) -> Self {
        let binary = promtool.with_file_name("prometheus");
        assert!(binary.exists(), "{} is missing", binary.display());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let web = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            web,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// The answer of `GET /api/v1/query?query=QUERY`, `None` while it cannot be asked.
    pub async fn query(&self, query: &str) -> Option<Value> {
        self.http
            .get(format!("http://{}/api/v1/query", self.web))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// `GET /api/v1/PATH` as JSON.
    pub async fn api(&self, path: &str) -> Value {
        self.http
            .get(format!("http://{}/api/v1/{path}", self.web))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
