#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Faults around the webhook binary, each with the outcome asserted:
//!
//! - the API server unreachable at start: not ready, Savepoint reviews denied at once with
//!   a message saying why (directly and through the API server);
//! - the API server lost while running: decisions keep using the synced indexes, a
//!   Deployment created meanwhile is "not found";
//! - the watch's resourceVersion expiring while the webhook is cut off (the API server
//!   restarted and etcd compacted): after recovery the index has re-listed, and
//!   Savepoints deleted meanwhile no longer count;
//! - certificate files corrupted, mismatched or removed: logged, the old certificate
//!   keeps serving, and a good pair is picked up afterwards.
//!
//! The webhook reaches the API server through a TCP proxy in this test that can cut it
//! off, so the API server itself stays up for the test's own requests.
//! Run with `cargo test --features e2e --test faults` after
//! `eval "$(tests/provision.sh --print-env)"`.

mod common;

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Guarded};
use common::kit::Review;
use common::{
    Certs, Cluster, free_port, install_crypto_provider, log_tail, mk_deployment, mk_savepoint,
    spec_version, webhook_bin,
};
use kube::api::{Api, DeleteParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use savepoint_webhook::resources::Savepoint;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const NS: &str = "faults";
const LOC_KEPT: &str = "s3://flink-state/faults/savepoint-000001-0123456789ab";
const LOC_DELETED: &str = "s3://flink-state/faults/savepoint-000002-0123456789ab";
const LOC_ADMITTED: &str = "s3://flink-state/faults/savepoint-000003-0123456789ab";
const LOC_WHILE_CUT: &str = "s3://flink-state/faults/savepoint-000004-0123456789ab";
const LOC_FRESH: &str = "s3://flink-state/faults/savepoint-000005-0123456789ab";

/// How long anything asynchronous may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// A proxy that can cut the webhook off from the API server

/// Forwards TCP connections to `target` while enabled; when disabled, closes the open ones
/// and refuses new ones (accepts and closes at once).
struct Proxy {
    addr: SocketAddr,
    enabled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr, enabled: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let enabled = Arc::new(AtomicBool::new(enabled));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let enabled = enabled.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !enabled.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cut = cut.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                        let _ = inbound.shutdown().await;
                    });
                }
            })
        };
        Proxy {
            addr,
            enabled,
            cut,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// Refuses new connections and closes every open one.
    fn disable(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The webhook binary, started without waiting for readiness

struct Process {
    port: u16,
    log: PathBuf,
    process: Option<Guarded>,
    http: reqwest::Client,
}

impl Process {
    /// Starts `savepoint-webhook serve` on a free port with `args` after `--listen`, and
    /// waits until it answers /healthz (not /readyz).
    async fn start(
        args: &[OsString],
        kubeconfig: Option<&Path>,
        ca_pems: &[Vec<u8>],
        log: PathBuf,
    ) -> Process {
        install_crypto_provider();
        let port = free_port();
        let mut full: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
        ];
        full.extend(args.iter().cloned());
        let mut env: Vec<(&str, &OsStr)> = vec![
            ("RUST_LOG", OsStr::new("info")),
            ("NO_COLOR", OsStr::new("1")),
        ];
        if let Some(kubeconfig) = kubeconfig {
            env.push(("KUBECONFIG", kubeconfig.as_os_str()));
        }
        let process = Guarded::spawn(&webhook_bin(), &full, &env, &log, None);
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10));
        for pem in ca_pems {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        let mut webhook = Process {
            port,
            log,
            process: Some(process),
            http: http.build().unwrap(),
        };
        let deadline = Instant::now() + PATIENCE;
        while webhook.get("/healthz").await != Some(200) {
            if let Some(status) = webhook.process.as_mut().and_then(Guarded::exited) {
                panic!("the webhook exited ({status}):\n{}", webhook.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz:\n{}",
                webhook.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        webhook
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing every one of `needles`.
    fn log_count(&self, needles: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    async fn wait_log(&self, needles: &[&str], at_least: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.log_count(needles) < at_least {
            assert!(
                Instant::now() < deadline,
                "no {at_least} log lines with {needles:?}; log tail:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status of GET `path`, or `None` when the request failed.
    async fn get(&self, path: &str) -> Option<u16> {
        let response = self.http.get(format!("{}{path}", self.url())).send().await;
        response.ok().map(|r| r.status().as_u16())
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.get("/readyz").await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "not ready:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs an AdmissionReview; returns the `response` and how long the answer took.
    async fn review(&self, path: &str, review: &Value) -> (Value, Duration) {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}{path}", self.url()))
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e:#}"));
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        (body["response"].clone(), started.elapsed())
    }

    async fn index(&self, kind: &str) -> Option<u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        common::index_entries(&text, kind)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "webhook log ({}):\n{}",
                self.log.display(),
                self.log_tail(80)
            );
        }
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

/// A Savepoint CREATE review of `name` in [`NS`] naming Deployment `deployment`.
fn create_review(name: &str, deployment: &str, location: &str, dry_run: bool) -> Value {
    Review::create(mk_savepoint(NS, name, deployment, location))
        .uid(format!(
            "00000000-0000-4000-8000-{:012x}",
            name.len() * 7919 + location.len()
        ))
        .dry_run(dry_run)
        .json()
}

/// Whether a `/mutate` response set the origin to COPIED.
fn copied(response: &Value) -> bool {
    response["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w.as_str().unwrap_or("").contains("COPIED"))
    })
}

/// Compacts etcd's history up to its current revision (through etcd's JSON gateway), so
/// no watch can resume from an older resourceVersion. Returns the revision.
async fn compact_etcd(cp: &ControlPlane) -> u64 {
    let url = cp.etcd_url();
    let http = reqwest::Client::new();
    let range: Value = http
        .post(format!("{url}/v3/kv/range"))
        .body(r#"{"key":"L3JlZ2lzdHJ5"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revision: u64 = range["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let compacted = http
        .post(format!("{url}/v3/kv/compaction"))
        .body(json!({ "revision": revision.to_string(), "physical": true }).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        compacted.status().is_success(),
        "{:?}",
        compacted.text().await
    );
    revision
}

/// Waits until `check` holds, polling; panics with `what` after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_unreachable_lost_and_expired() {
    install_crypto_provider();
    let mut cp = ControlPlane::start();
    let cluster = Cluster::connect(&cp).await;
    cluster.apply_crds().await;
    cluster.create_namespace(NS).await;
    cluster
        .create_deployment(mk_deployment(NS, "app", Some("4")))
        .await;
    for (name, location) in [("kept", LOC_KEPT), ("deleted", LOC_DELETED)] {
        cluster
            .create_savepoint(&mk_savepoint(NS, name, "app", location), false)
            .await
            .savepoint(name);
    }

    // The webhook reaches the API server only through the proxy, disabled for now.
    let target: SocketAddr = cp
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let proxy = Proxy::start(target, false).await;
    let kubeconfig = cp.dir().join("faults-kubeconfig");
    let text = std::fs::read_to_string(cp.kubeconfig_path()).unwrap();
    std::fs::write(&kubeconfig, text.replace(&cp.server_url(), &proxy.url())).unwrap();
    let certs = Certs::generate();
    let args: Vec<OsString> = vec![
        "--tls-cert".into(),
        certs.dir.path().join("tls.crt").into(),
        "--tls-key".into(),
        certs.dir.path().join("tls.key").into(),
        "--reconcile".into(),
        "false".into(),
    ];
    let webhook = Process::start(
        &args,
        Some(&kubeconfig),
        &[certs.ca_pem()],
        cp.dir().join("faults-webhook.log"),
    )
    .await;

    eprintln!("faults: API server unreachable at start");
    webhook
        .wait_log(&["watch failed; retrying with backoff"], 2)
        .await;
    assert_eq!(webhook.get("/readyz").await, Some(503));
    let (response, took) = webhook
        .review(
            "/mutate?timeout=3s",
            &create_review("early", "app", LOC_FRESH, false),
        )
        .await;
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 503, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot decide yet") && message.contains("API server"),
        "{message}"
    );
    // Through the API server: the create is refused with that message and not stored.
    cluster
        .register_shipped_webhooks(&webhook.url(), &certs.ca_bundle)
        .await;
    let early = mk_savepoint(NS, "early", "app", LOC_FRESH);
    eventually("the API server calls the webhook", || async {
        let reply = cluster.create_savepoint(&early, true).await;
        !reply.ok() && reply.message().contains("cannot decide yet")
    })
    .await;
    let reply = cluster.create_savepoint(&early, false).await;
    assert!(
        reply
            .refusal("create while unsynced")
            .contains("cannot decide yet")
    );
    assert!(cluster.get_savepoint(NS, "early").await.is_none());
    assert_eq!(webhook.get("/readyz").await, Some(503), "still not ready");

    eprintln!("faults: the API server becomes reachable");
    proxy.enable();
    webhook.wait_ready().await;
    let reply = cluster
        .create_savepoint(&mk_savepoint(NS, "admitted", "app", LOC_ADMITTED), false)
        .await;
    let admitted = reply.savepoint("create once synced");
    assert_eq!(spec_version(&admitted), Some("4"));
    eventually("the watch shows the admitted Savepoint", || async {
        webhook.index("savepoints").await == Some(3)
            && webhook.index("provisional").await == Some(0)
    })
    .await;

    eprintln!("faults: the API server is lost while running");
    let failures_before = webhook.log_count(&["watch failed"]);
    proxy.disable();
    webhook
        .wait_log(&["watch failed"], failures_before + 2)
        .await;
    assert_eq!(webhook.get("/readyz").await, Some(200), "decisions go on");
    cluster
        .create_deployment(mk_deployment(NS, "late", Some("9")))
        .await;
    Api::<Savepoint>::namespaced(cluster.client.clone(), NS)
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    // The synced indexes still answer: `app` is known, `kept` still holds its location.
    let (response, _) = webhook
        .review("/mutate", &create_review("probe-1", "app", LOC_KEPT, true))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(copied(&response), "{response}");
    // A Deployment the webhook has not seen is refused with a clear message.
    let (response, _) = webhook
        .review(
            "/mutate",
            &create_review("probe-2", "late", LOC_FRESH, true),
        )
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("\"late\" not found"), "{message}");
    let reply = cluster
        .create_savepoint(&mk_savepoint(NS, "while-cut", "app", LOC_WHILE_CUT), false)
        .await;
    reply.savepoint("create while the webhook's watches are cut");

    eprintln!("faults: the watch's resourceVersion expires (API server restart, etcd compaction)");
    cp.stop_apiserver();
    let revision = compact_etcd(&cp).await;
    eprintln!("faults: etcd compacted at revision {revision}");
    cp.start_apiserver();
    let synced_before = webhook.log_count(&["synced", "Savepoint"]);
    proxy.enable();
    eventually("the index catches up without stale entries", || async {
        webhook.index("deployments").await == Some(2)
            && webhook.index("savepoints").await == Some(3)
            && webhook.index("provisional").await == Some(0)
            && webhook.index("unindexed_savepoints").await == Some(0)
    })
    .await;
    // The Savepoint watch could not resume: it listed again, dropping what was deleted.
    webhook
        .wait_log(&["synced", "Savepoint"], synced_before + 1)
        .await;
    assert!(
        webhook.log_count(&[
            "watch failed",
            "kind=\"Savepoint\"",
            "too old resource version"
        ]) >= 1,
        "the Savepoint watch did not see its resourceVersion expire:\n{}",
        webhook.log_tail(60)
    );
    let (response, _) = webhook
        .review(
            "/mutate",
            &create_review("probe-3", "app", LOC_DELETED, true),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(
        !copied(&response),
        "a deleted Savepoint still counts: {response}"
    );
    let (response, _) = webhook
        .review(
            "/mutate",
            &create_review("probe-4", "late", LOC_WHILE_CUT, true),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(copied(&response), "{response}");
    drop(webhook);
    drop(proxy);
}

// ---------------------------------------------------------------------------------------
// Certificate files

/// Breaks the certificate files in one way.
type Breakage<'a> = (&'static str, Box<dyn Fn() + 'a>, &'static str);

/// The certificate served to a new handshake, after checking it against `roots`.
async fn served_certificate(url_port: u16, ca_pems: &[Vec<u8>]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        roots
            .add(CertificateDer::from_pem_slice(pem).unwrap())
            .unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", url_port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
        .await
        .expect("the served certificate verifies");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificate_files_leave_the_old_certificate_serving() {
    install_crypto_provider();
    let old = Certs::generate();
    let new = Certs::generate();
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("tls.crt"), live.path().join("tls.key"));
    let read = |certs: &Certs, file: &str| std::fs::read(certs.dir.path().join(file)).unwrap();
    std::fs::write(&cert, read(&old, "tls.crt")).unwrap();
    std::fs::write(&key, read(&old, "tls.key")).unwrap();
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state");
    let args: Vec<OsString> = vec![
        "--state".into(),
        state.into(),
        "--tls-cert".into(),
        cert.clone().into(),
        "--tls-key".into(),
        key.clone().into(),
        "--cert-reload-interval".into(),
        "200ms".into(),
    ];
    let cas = [old.ca_pem(), new.ca_pem()];
    let webhook = Process::start(&args, None, &cas, live.path().join("webhook.log")).await;
    let original = leaf_der(&read(&old, "tls.crt"));
    assert_eq!(served_certificate(webhook.port, &cas).await, original);

    let unusable = "certificate files unusable; the previous certificate keeps serving";
    let breakages: [Breakage<'_>; 3] = [
        (
            "a corrupted certificate",
            Box::new(|| {
                std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap()
            }),
            "holds no usable certificate",
        ),
        (
            "a certificate that does not match the key",
            Box::new(|| std::fs::write(&cert, read(&new, "tls.crt")).unwrap()),
            "cannot be used together",
        ),
        (
            "both files removed",
            Box::new(|| {
                std::fs::remove_file(&cert).unwrap();
                std::fs::remove_file(&key).unwrap();
            }),
            "cannot read",
        ),
    ];
    for (what, break_files, logged) in breakages {
        let before = webhook.log_count(&[unusable]);
        break_files();
        webhook.wait_log(&[unusable, logged], 1).await;
        assert!(
            webhook.log_count(&[unusable]) > before,
            "{what}: not logged"
        );
        assert_eq!(
            served_certificate(webhook.port, &cas).await,
            original,
            "{what}: the old certificate no longer serves"
        );
        assert_eq!(webhook.get("/healthz").await, Some(200), "{what}");
        let (response, _) = webhook
            .review(
                "/mutate",
                &Review::create(mk_savepoint(
                    "default",
                    "x",
                    "top-speed-windowing",
                    LOC_FRESH,
                ))
                .uid("3f9a6a2e-1111-4a4a-9b9b-000000000001")
                .dry_run(true)
                .json(),
            )
            .await;
        assert_eq!(response["allowed"], true, "{what}: {response}");
    }

    // A good pair afterwards is served to new handshakes.
    std::fs::write(&key, read(&new, "tls.key")).unwrap();
    std::fs::write(&cert, read(&new, "tls.crt")).unwrap();
    let rotated = leaf_der(&read(&new, "tls.crt"));
    eventually("the new certificate is served", || async {
        served_certificate(webhook.port, &cas).await == rotated
    })
    .await;
    assert!(webhook.log_count(&["serving a new certificate"]) >= 1);
}

/// A server that should serve streaming lists but has them turned off (1.33's default, or
/// `--feature-gates=WatchList=false`) refuses them; the webhook reads paged lists instead
/// and becomes ready with everything indexed. Servers before 1.32 are never asked for a
/// streaming list, so there is nothing to refuse there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streaming_lists_fall_back_to_paged_lists() {
    install_crypto_provider();
    let probe = ControlPlane::start();
    if probe.minor() < 32 {
        eprintln!(
            "faults: {} serves no streaming lists; the webhook reads paged lists there (cold_start checks it)",
            probe.version()
        );
        return;
    }
    drop(probe);
    let cp = ControlPlane::start_with(&["--feature-gates=WatchList=false"]);
    let (cluster, _) = Cluster::prepared(&cp, NS, "4").await;
    cluster
        .create_savepoint(&mk_savepoint(NS, "kept", "app", LOC_KEPT), false)
        .await
        .savepoint("kept");
    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    common::write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let webhook = common::Webhook::start(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
    )
    .await;
    webhook.wait_index("savepoints", 1).await;
    webhook.wait_index("deployments", 1).await;
    let log = log_tail(webhook.log_path(), 200);
    assert!(
        log.contains("refuses streaming lists; reading the state from paged lists"),
        "the webhook fell back to paged lists:\n{log}"
    );
}
