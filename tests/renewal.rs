//! Renewing the serving certificate refuses no Savepoint create. The real API server
//! calls the real binary (`failurePolicy: Fail`, through a forwarder that counts its
//! connections) while creates stream in, and the certificates follow certs/README.md's
//! procedure: `savepoint-webhook certs` renews into a directory (the Secret), the
//! caBundle printed is applied to the webhook configurations, and the files are copied
//! to the directory the binary reads (the kubelet's update of the mounted Secret), which
//! it reloads without a restart. Each step copies the files first and applies the
//! caBundle only afterwards, the worse of the two orders a real apply can end in.
//! `--max-connection-age` makes the API server handshake again after every change, so
//! each certificate served is met by new handshakes, not only by the connection opened
//! before it.
//!
//! The steps: a renewal (same CA); a new CA staged beside the old one; a serving
//! certificate from the new CA; the old CA dropped. Then a control: a CA the caBundle
//! does not hold is served, and creates must start failing, or the test could not see
//! a bad renewal.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::pacing;
use common::{
    Certs, Cluster, Forwarder, Webhook, free_port, install_crypto_provider, mk_savepoint,
    spec_version, webhook_bin, write_webhook_kubeconfig,
};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;

const NS: &str = "renewal";
/// Concurrent clients, each sending one create every [`PERIOD`].
const CLIENTS: usize = 3;
const PERIOD: Duration = Duration::from_millis(150);
/// The binary's `--max-connection-age`: the API server's connection is replaced this
/// often.
const MAX_AGE: Duration = Duration::from_secs(2);
/// Traffic after each change, long enough for new connections to the new state.
const SETTLE: Duration = Duration::from_secs(3);

/// What one create got: the second it was answered, and whether the webhook mutated it.
struct Outcome {
    at: f64,
    result: Result<(), String>,
}

/// One client: a create every [`PERIOD`] until `stop`, each to a location of its own.
async fn stream(
    cluster: Cluster,
    client: usize,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> Vec<Outcome> {
    let cluster = &cluster;
    pacing::every(
        PERIOD * client as u32 / CLIENTS as u32,
        PERIOD,
        &stop,
        |seq| async move {
            let name = format!("renew-{client}-{seq}");
            let location = format!("s3://flink-state/renewal/{name}");
            let reply = cluster
                .create_savepoint(&mk_savepoint(NS, &name, "app", &location), false)
                .await;
            let result = if !reply.ok() {
                Err(format!("HTTP {}: {}", reply.status, reply.message()))
            } else if spec_version(&reply.savepoint("a create")) != Some("5") {
                Err("admitted without the webhook's annotation".into())
            } else {
                Ok(())
            };
            Outcome {
                at: t0.elapsed().as_secs_f64(),
                result,
            }
        },
    )
    .await
}

/// `savepoint-webhook certs` into `dir` (for 127.0.0.1) with `extra` flags; the caBundle
/// it printed, and what it said.
fn certs(dir: &Path, extra: &[&str]) -> (String, String) {
    let out = Command::new(webhook_bin())
        .args([
            "certs",
            "--namespace",
            "default",
            "--ip",
            "127.0.0.1",
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "certs {extra:?} failed: {said}");
    (
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        said,
    )
}

/// The kubelet's update of the mounted Secret: the pair, key first (the binary only
/// serves a pair that matches).
fn sync_secret(secret: &Path, mounted: &Path) {
    for file in ["tls.key", "tls.crt", "ca.crt"] {
        let staging = mounted.join(format!(".{file}"));
        std::fs::copy(secret.join(file), &staging).unwrap();
        std::fs::rename(&staging, mounted.join(file)).unwrap();
    }
}

fn leaf_der(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).unwrap()
}

/// The leaf a fresh handshake to `port` is served, trusting every CA in `cas`.
async fn served_leaf(port: u16, cas: &[Vec<u8>]) -> Option<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .ok()?;
    tls.get_ref().1.peer_certificates()?.first().cloned()
}

/// Waits until the binary serves the `tls.crt` in `dir` to new handshakes.
async fn wait_served(port: u16, dir: &Path, cas: &[Vec<u8>]) {
    let want = leaf_der(&std::fs::read(dir.join("tls.crt")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_leaf(port, cas).await.as_ref() != Some(&want) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served 15 s after its files changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the caBundle of the three webhook configurations, as the overlay's patch does.
async fn apply_ca_bundle(cluster: &Cluster, bundle: &str) {
    let patch = Patch::Json::<()>(
        serde_json::from_value(json!([
            {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}
        ]))
        .unwrap(),
    );
    let params = PatchParams::default();
    Api::<MutatingWebhookConfiguration>::all(cluster.client.clone())
        .patch("savepoint-webhook", &params, &patch)
        .await
        .unwrap();
    let validating = Api::<ValidatingWebhookConfiguration>::all(cluster.client.clone());
    for name in ["savepoint-webhook", "savepoint-webhook-delete"] {
        validating.patch(name, &params, &patch).await.unwrap();
    }
}

/// Connections the forwarder has passed on (each one a TLS handshake with the binary).
fn connections(forwarder: &Forwarder) -> usize {
    forwarder.connections().iter().map(|(_, n)| n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_the_certificate_refuses_no_create() {
    install_crypto_provider();
    let cp = ControlPlane::start();
    let version = cp.version().to_string();
    let (cluster, _uid) = Cluster::prepared(&cp, NS, "5").await;
    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);

    let secret = tempfile::tempdir().unwrap();
    let (bundle, _) = certs(secret.path(), &[]);
    let mounted = tempfile::tempdir().unwrap();
    sync_secret(secret.path(), mounted.path());
    let served = Certs {
        dir: mounted,
        ca_bundle: bundle.clone(),
    };
    let first_ca = std::fs::read(secret.path().join("ca.crt")).unwrap();
    let mut cas = vec![first_ca];
    let age = format!("{}s", MAX_AGE.as_secs());
    let port = free_port();
    let webhook = Webhook::start_with(
        &kubeconfig,
        &served,
        port,
        cp.dir().join("webhook.log"),
        &["--cert-reload-interval", "1s", "--max-connection-age", &age],
    )
    .await;
    let forwarder = Forwarder::start_unverified(Duration::from_millis(500)).await;
    forwarder.add(port).await;
    cluster
        .register_shipped_webhooks(&forwarder.url(), &bundle)
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for probe in 0.. {
        let name = format!("probe-{probe}");
        let location = format!("s3://flink-state/renewal/{name}");
        let reply = cluster
            .create_savepoint(&mk_savepoint(NS, &name, "app", &location), false)
            .await;
        if reply.ok() && spec_version(&reply.savepoint("probe")) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "on {version}: the API server does not call the webhook"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(stream(cluster.clone(), client, stop.clone(), t0)))
        .collect();
    tokio::time::sleep(SETTLE).await;

    let mut timeline = Vec::new();
    let steps: [(&str, &[&str]); 4] = [
        ("renewal with the same CA", &[]),
        ("a new CA staged beside the old one", &["--new-ca"]),
        ("a serving certificate from the new CA", &[]),
        ("the old CA dropped", &[]),
    ];
    let mut bundles = vec![bundle];
    for (step, flags) in steps {
        let before = connections(&forwarder);
        let leaf_before = std::fs::read(secret.path().join("tls.crt")).unwrap();
        let (bundle, said) = certs(secret.path(), flags);
        cas.push(std::fs::read(secret.path().join("ca.crt")).unwrap());
        let renewed = std::fs::read(secret.path().join("tls.crt")).unwrap() != leaf_before;
        sync_secret(secret.path(), served.dir.path());
        if renewed {
            wait_served(port, served.dir.path(), &cas).await;
        }
        tokio::time::sleep(SETTLE).await;
        apply_ca_bundle(&cluster, &bundle).await;
        tokio::time::sleep(SETTLE).await;
        let handshakes = connections(&forwarder) - before;
        timeline.push(format!(
            "{:.1}s {step}: {}; caBundle of {} CA(s); {handshakes} new connections",
            t0.elapsed().as_secs_f64(),
            if renewed {
                "new serving certificate served"
            } else {
                "serving certificate unchanged"
            },
            pem_count(&bundle),
        ));
        assert!(
            handshakes >= 2,
            "on {version}: {step}: the API server opened {handshakes} connections; the new state met no handshake"
        );
        bundles.push(bundle);
        eprintln!("renewal: {step}: {}", said.trim());
    }
    assert_eq!(bundles[0], bundles[1], "a renewal keeps the caBundle");
    assert_eq!(
        (pem_count(&bundles[2]), pem_count(&bundles[3])),
        (2, 2),
        "a new CA is published beside the old one until its serving certificate is out"
    );
    assert_eq!(pem_count(&bundles[4]), 1);
    let renewed_until = t0.elapsed().as_secs_f64();

    // The control: a serving certificate of a CA no caBundle holds.
    let stranger = tempfile::tempdir().unwrap();
    certs(stranger.path(), &[]);
    cas.push(std::fs::read(stranger.path().join("ca.crt")).unwrap());
    sync_secret(stranger.path(), served.dir.path());
    wait_served(port, served.dir.path(), &cas).await;
    tokio::time::sleep(SETTLE).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }

    let (during, control): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.at <= renewed_until);
    let failed: Vec<String> = during
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{:.1}s {e}", o.at)))
        .collect();
    let control_failed = control.iter().filter(|o| o.result.is_err()).count();
    let timeline = timeline.join("\n  ");
    eprintln!(
        "renewal on {version}: {} creates during the renewals, {} succeeded, {} failed; control (a CA the caBundle lacks): {} creates, {control_failed} failed\n  {timeline}",
        during.len(),
        during.len() - failed.len(),
        failed.len(),
        control.len(),
    );
    assert!(!during.is_empty(), "on {version}: no create was sent");
    assert!(
        failed.is_empty(),
        "on {version}: {} of {} creates failed during the renewals:\n  {}\n  timeline:\n  {timeline}",
        failed.len(),
        during.len(),
        failed.join("\n  ")
    );
    assert!(
        control_failed > 0,
        "on {version}: creates still succeed while the served certificate's CA is in no caBundle: the test cannot see a bad renewal"
    );
    drop(webhook);
}

/// Certificates in a base64 caBundle.
fn pem_count(bundle: &str) -> usize {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .unwrap();
    String::from_utf8(pem)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}
