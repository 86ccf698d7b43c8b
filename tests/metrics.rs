//! `GET /metrics` of the real server over real TLS: the format each `Accept` header gets,
//! the families an operator relies on, label values that never come from requests, and
//! `promtool check metrics` on each scrape.
//!
//! promtool is `$SAVEPOINT_WEBHOOK_PROMTOOL` (tests/run-all.sh sets it from
//! tests/provision-prometheus.sh); without it the promtool checks are skipped, loudly.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::{Client, StatusCode};
use savepoint_webhook::server::Limits;

#[path = "support/example_server.rs"]
mod example_server;
#[path = "support/kit.rs"]
mod kit;

use example_server::ExampleServer;
use kit::fixture;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 2.x sends when scraping.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A running server with a client that trusts its certificate.
struct Scraped {
    server: ExampleServer,
    client: Client,
}

impl Scraped {
    /// Starts the server and sends it a request of each kind, so every family has series.
    async fn start() -> Self {
        let server = ExampleServer::start(Limits::default(), None, true).await;
        let client = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let this = Self { server, client };
        for path in ["/mutate?timeout=10s", "/validate?timeout=10s"] {
            let status = this
                .client
                .post(this.url(path))
                .header("content-type", "application/json")
                .body(fixture("savepoint-create.json"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::OK, "POST {path}");
        }
        for path in ["/healthz", "/readyz", "/no-such-route"] {
            this.client.get(this.url(path)).send().await.unwrap();
        }
        this
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.server.addr.port())
    }

    /// `GET /metrics` with `accept`: the `Content-Type` and the body.
    async fn scrape(&self, accept: Option<&str>) -> (String, String) {
        let mut request = self.client.get(self.url("/metrics"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        (content_type, response.text().await.unwrap())
    }
}

/// `promtool check metrics` on `scrape`: its exit code and what it printed, or `None`
/// (after saying so on stderr) when `$SAVEPOINT_WEBHOOK_PROMTOOL` is unset.
fn promtool(scrape: &str) -> Option<(i32, String)> {
    let Some(promtool) = std::env::var_os("SAVEPOINT_WEBHOOK_PROMTOOL") else {
        // Written to stderr directly: libtest would hide an `eprintln!` of a passing test.
        let _ = std::io::stderr().write_all(
            b"\n*** SKIPPED: `promtool check metrics` did not run: SAVEPOINT_WEBHOOK_PROMTOOL is \
              unset (eval \"$(tests/provision-prometheus.sh --print-env)\" sets it) ***\n",
        );
        return None;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {promtool:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.code().unwrap(), printed))
}

/// The names of the families a scrape declares with `# TYPE`, with their types.
fn families(scrape: &str) -> Vec<(&str, &str)> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split_once(' ').unwrap())
        .collect()
}

/// Whether some sample of `scrape` starts with `prefix`.
fn has_sample(scrape: &str, prefix: &str) -> bool {
    scrape.lines().any(|line| line.starts_with(prefix))
}

#[tokio::test]
async fn the_text_format_unless_openmetrics_is_asked_for() {
    let scraped = Scraped::start().await;
    for accept in [
        None,
        Some("text/plain;version=0.0.4"),
        Some("text/plain"),
        Some("*/*"),
    ] {
        let (content_type, _) = scraped.scrape(accept).await;
        assert_eq!(content_type, TEXT, "Accept: {accept:?}");
    }
    for accept in ["application/openmetrics-text", PROMETHEUS_ACCEPT] {
        let (content_type, _) = scraped.scrape(Some(accept)).await;
        assert_eq!(content_type, OPENMETRICS, "Accept: {accept}");
    }
    scraped.server.stop().await;
}

#[tokio::test]
async fn text_format_passes_promtool_with_help_and_type_for_every_family() {
    let scraped = Scraped::start().await;
    let (_, text) = scraped.scrape(Some("text/plain;version=0.0.4")).await;
    for marker in ["# EOF", "# UNIT", "_created"] {
        assert!(
            !text.contains(marker),
            "{marker} in the text format:\n{text}"
        );
    }
    let families = families(&text);
    for (name, kind) in &families {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no help for {name}:\n{text}"
        );
        assert!(
            ["counter", "gauge", "histogram"].contains(kind),
            "{name} is a {kind}"
        );
        if *kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name}");
        }
    }
    // Every sample belongs to a declared family.
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap();
        assert!(
            families.iter().any(|(name, _)| metric == *name
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| metric == format!("{name}{suffix}"))),
            "{metric} has no family:\n{text}"
        );
    }
    if let Some((code, printed)) = promtool(&text) {
        assert_eq!(
            (code, printed.as_str()),
            (0, ""),
            "promtool check metrics:\n{text}"
        );
    }
    scraped.server.stop().await;
}

/// promtool reads only the text format (prometheus/prometheus#8932): fed OpenMetrics it
/// parses it as text, where a counter's `_total` samples have no `# HELP` of their own.
/// It must parse the scrape, and find nothing else.
#[tokio::test]
async fn openmetrics_ends_with_eof_and_promtool_finds_only_its_counter_naming() {
    let scraped = Scraped::start().await;
    let (_, openmetrics) = scraped.scrape(Some(PROMETHEUS_ACCEPT)).await;
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let counters: Vec<&str> = families(&openmetrics)
        .into_iter()
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    assert!(
        counters.contains(&"savepoint_webhook_http_requests"),
        "{counters:?}"
    );
    if let Some((code, printed)) = promtool(&openmetrics) {
        assert!(code == 0 || code == 3, "promtool exit {code}: {printed}");
        for line in printed.lines() {
            let name = line.split(' ').next().unwrap();
            let counter = name.strip_suffix("_total").unwrap_or("");
            assert!(
                line.ends_with(" no help text") && counters.contains(&counter),
                "promtool: {line}\n{printed}\n{openmetrics}"
            );
        }
    }
    scraped.server.stop().await;
}

#[tokio::test]
async fn in_flight_build_process_and_long_latency_families_are_present() {
    let scraped = Scraped::start().await;
    for accept in [None, Some("application/openmetrics-text")] {
        let (_, scrape) = scraped.scrape(accept).await;
        // The scrape itself is in flight; the requests before it are done.
        assert!(
            scrape.contains("savepoint_webhook_http_requests_in_flight{route=\"/metrics\"} 1\n"),
            "{scrape}"
        );
        assert!(
            scrape.contains("savepoint_webhook_http_requests_in_flight{route=\"/mutate\"} 0\n"),
            "{scrape}"
        );
        let build = format!(
            "savepoint_webhook_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        );
        assert!(has_sample(&scrape, &build), "{scrape}");
        assert!(
            has_sample(
                &scrape,
                "savepoint_webhook_certificate_expiry_timestamp_seconds "
            ),
            "{scrape}"
        );
        for bound in ["1.0", "10.0", "30.0", "+Inf"] {
            let bucket = format!(
                "savepoint_webhook_http_request_duration_seconds_bucket{{le=\"{bound}\",route=\"/mutate\"}} 1"
            );
            assert!(scrape.contains(&bucket), "{bucket}:\n{scrape}");
        }
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(has_sample(&scrape, family), "{family}:\n{scrape}");
        }
        let resident: f64 = scrape
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(resident > 1e6, "resident memory {resident}");
        let started: f64 = scrape
            .lines()
            .find_map(|line| line.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "started {started}, now {now}"
        );
    }
    scraped.server.stop().await;
}

#[tokio::test]
async fn label_values_never_come_from_requests() {
    let scraped = Scraped::start().await;
    for path in [
        "/mutate/INJECTED",
        "/INJECTED%22%7D%201",
        "/metrics?INJECTED=1",
        "/INJECTED/../healthz",
    ] {
        scraped
            .client
            .get(scraped.url(path))
            .header("user-agent", "INJECTED")
            .send()
            .await
            .unwrap();
    }
    let (_, scrape) = scraped.scrape(None).await;
    assert!(!scrape.contains("INJECTED"), "{scrape}");
    let routes: std::collections::BTreeSet<&str> = scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once("route=\"")?.1.split_once('"'))
        .map(|(route, _)| route)
        .collect();
    let fixed = [
        "/mutate",
        "/validate",
        "/healthz",
        "/readyz",
        "/metrics",
        "other",
    ];
    assert!(
        routes.iter().all(|route| fixed.contains(route)),
        "{routes:?}"
    );
    assert!(routes.contains("other"), "{routes:?}");
    scraped.server.stop().await;
}

/// The real binary, `serve --state ... --self-signed --metrics-listen 127.0.0.1:0`, killed
/// on drop; the address each port was bound to, read from its JSON log.
struct PlainPort {
    child: std::process::Child,
    https: String,
    plain: String,
    _dir: tempfile::TempDir,
}

impl PlainPort {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_savepoint-webhook"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--state", "deploy/examples/state", "--self-signed"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--self-signed-dir"])
            .arg(dir.path())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let address = |text: &str, message: &str| {
            text.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|event| event["message"] == message)
                .map(|event| event["address"].as_str().unwrap().to_string())
        };
        for _ in 0..200 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let (Some(https), Some(plain)) = (
                address(&text, "serving /mutate and /validate over TLS"),
                address(&text, "serving /metrics over plain HTTP"),
            ) {
                return Self {
                    child,
                    https,
                    plain,
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "serve did not log both addresses:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for PlainPort {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_plain_metrics_port_serves_metrics_and_nothing_else() {
    let served = PlainPort::start();
    assert_ne!(served.https, served.plain);
    let client = Client::new();
    let response = client
        .get(format!("http://{}/metrics", served.plain))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], TEXT);
    let text = response.text().await.unwrap();
    assert!(has_sample(&text, "savepoint_webhook_build_info{"), "{text}");
    assert!(
        has_sample(
            &text,
            "savepoint_webhook_index_entries{kind=\"savepoints\"}"
        ),
        "the same registry as the TLS port:\n{text}"
    );
    eprintln!(
        "plain scrape of {}, first lines:\n{}",
        served.plain,
        text.lines().take(12).collect::<Vec<_>>().join("\n")
    );
    if let Some((code, printed)) = promtool(&text) {
        assert_eq!(
            (code, printed.as_str()),
            (0, ""),
            "promtool check metrics on the plain port"
        );
    }
    let openmetrics = client
        .get(format!("http://{}/metrics", served.plain))
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(openmetrics.headers()["content-type"], OPENMETRICS);
    assert!(openmetrics.text().await.unwrap().ends_with("# EOF\n"));

    for (method, path) in [
        (reqwest::Method::GET, "/healthz"),
        (reqwest::Method::GET, "/readyz"),
        (reqwest::Method::POST, "/mutate"),
        (reqwest::Method::POST, "/validate"),
        (reqwest::Method::GET, "/"),
    ] {
        let status = client
            .request(method.clone(), format!("http://{}{path}", served.plain))
            .body(fixture("savepoint-create.json"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} on the plain port"
        );
    }
    // Plain HTTP on the TLS port is refused there, as before.
    let refused = client
        .get(format!("http://{}/metrics", served.https))
        .send()
        .await;
    assert!(
        refused.is_err() || !refused.unwrap().status().is_success(),
        "the HTTPS port never answers plain HTTP"
    );
}
