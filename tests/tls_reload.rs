//! Certificate rotation without restart, over real TLS: new handshakes get the new
//! certificate, open connections keep working, and broken or removed files are refused
//! while the previous certificate keeps serving; the certificate gauges of `/metrics`
//! follow the certificate served.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, ServerName};
use savepoint_webhook::admission::Gate;
use savepoint_webhook::certs::{CertBundle, CertRequest, generate};
use savepoint_webhook::domain::Policy;
use savepoint_webhook::index::{Index, Store};
use savepoint_webhook::readiness::Readiness;
use savepoint_webhook::server::metrics::CertificateCollector;
use savepoint_webhook::server::tls::{
    CertFiles, ReloadingCert, parse_certs, server_config, watch_cert_files,
};
use savepoint_webhook::server::{App, Limits, router, serve};
use tokio::net::TcpStream;

fn bundle() -> CertBundle {
    bundle_valid_for(Duration::from_secs(3600))
}

fn bundle_valid_for(validity: Duration) -> CertBundle {
    generate(&CertRequest {
        service: "savepoint-webhook".into(),
        namespace: "default".into(),
        extra_dns: vec!["localhost".into()],
        ips: vec![],
        validity,
    })
    .unwrap()
}

fn leaf(pem: &str) -> CertificateDer<'static> {
    parse_certs(Path::new("tls.crt"), pem.as_bytes())
        .unwrap()
        .remove(0)
}

fn write_pair(files: &CertFiles, bundle: &CertBundle) {
    std::fs::write(&files.key, &bundle.key_pem).unwrap();
    std::fs::write(&files.cert, &bundle.cert_pem).unwrap();
}

/// The leaf certificate a fresh handshake is served.
async fn served_leaf(port: u16, roots: &rustls::RootCertStore) -> CertificateDer<'static> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn eventually_serves(
    port: u16,
    roots: &rustls::RootCertStore,
    want: &CertificateDer<'static>,
) {
    for _ in 0..100 {
        if &served_leaf(port, roots).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new certificate was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_swaps_certificates_without_dropping_requests() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let (first, second) = (bundle(), bundle());
    write_pair(&files, &first);
    let current = ReloadingCert::new(files.load().unwrap());
    let tls = server_config(current.clone(), None).unwrap();
    tokio::spawn(watch_cert_files(
        files.clone(),
        current,
        Duration::from_millis(50),
    ));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let limits = savepoint_webhook::server::Limits::default();
    tokio::spawn(savepoint_webhook::server::serve(
        listener,
        Arc::new(tls),
        router,
        limits,
        std::future::pending(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    for ca in [&first.ca_pem, &second.ca_pem] {
        roots.add(leaf(ca)).unwrap();
    }
    assert_eq!(served_leaf(port, &roots).await, leaf(&first.cert_pem));

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(first.ca_pem.as_bytes()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(second.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/healthz");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, client, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            client.clone(),
            url.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    // A half-written pair (new key, old certificate) is refused; the old one keeps serving.
    std::fs::write(&files.key, &second.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_leaf(port, &roots).await, leaf(&first.cert_pem));

    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    eventually_serves(port, &roots, &leaf(&second.cert_pem)).await;

    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_leaf(port, &roots).await, leaf(&second.cert_pem));
    std::fs::remove_file(&files.cert).unwrap();
    std::fs::remove_file(&files.key).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_leaf(port, &roots).await, leaf(&second.cert_pem));

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "the open connection kept serving"
    );
    // The connection opened before the swap is still the one in use, and still works.
    assert!(client.get(&url).send().await.unwrap().status().is_success());
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A bundle valid for `validity` seconds and the range its notAfter falls in: rcgen writes
/// whole seconds of the time of generation plus `validity`.
fn bundle_expiring_in(validity: i64) -> (CertBundle, std::ops::RangeInclusive<i64>) {
    let before = unix_now();
    let bundle = bundle_valid_for(Duration::from_secs(validity.try_into().unwrap()));
    (bundle, before + validity..=unix_now() + validity)
}

/// The certificate gauges `/metrics` answers with: (notBefore, notAfter).
async fn scraped_validity(client: &reqwest::Client, url: &str) -> (i64, i64) {
    let body = client.get(url).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| -> i64 {
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
    };
    (
        gauge("savepoint_webhook_certificate_not_before_timestamp_seconds"),
        gauge("savepoint_webhook_certificate_expiry_timestamp_seconds"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_validity_gauges_follow_rotation() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    const DAY: i64 = 86_400;
    // certs::generate backdates notBefore by an hour.
    const BACKDATED: i64 = 3_600;
    let (first, first_expiry) = bundle_expiring_in(DAY);
    let (second, second_expiry) = bundle_expiring_in(30 * DAY);
    write_pair(&files, &first);
    let current = ReloadingCert::new(files.load().unwrap());
    let tls = server_config(current.clone(), None).unwrap();
    tokio::spawn(watch_cert_files(
        files.clone(),
        current.clone(),
        Duration::from_millis(50),
    ));

    let mut registry = Registry::default();
    CertificateCollector::register(&mut registry, current);
    let policy = Policy::default();
    let index = Index::new(policy.locations.clone());
    let gate = Gate::new(
        Arc::new(Store::new(index, Duration::from_secs(60))),
        Arc::new(policy),
    );
    let app = App::new(
        gate,
        Arc::new(Readiness::default()),
        Limits::default(),
        None,
        registry,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(
        listener,
        Arc::new(tls),
        router(app),
        Limits::default(),
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(first.ca_pem.as_bytes()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(second.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/metrics");

    let (not_before, not_after) = scraped_validity(&client, &url).await;
    assert!(
        first_expiry.contains(&not_after),
        "{not_after} not in {first_expiry:?}"
    );
    assert_eq!(not_after - not_before, DAY + BACKDATED);

    // A half-written pair is refused: the gauges stay with the certificate still served.
    std::fs::write(&files.key, &second.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        scraped_validity(&client, &url).await,
        (not_before, not_after)
    );

    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    let mut rotated = None;
    for _ in 0..100 {
        let validity = scraped_validity(&client, &url).await;
        if validity != (not_before, not_after) {
            rotated = Some(validity);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (not_before, not_after) = rotated.expect("the gauges never followed the rotation");
    assert!(
        second_expiry.contains(&not_after),
        "{not_after} not in {second_expiry:?}"
    );
    assert_eq!(not_after - not_before, 30 * DAY + BACKDATED);

    // A broken certificate is refused: the gauges keep the rotated values.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        scraped_validity(&client, &url).await,
        (not_before, not_after)
    );
}
