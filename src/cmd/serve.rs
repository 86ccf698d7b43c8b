//! `serve`: build the index and its feed, check the certificate, bind, and serve until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::admission::Policy;
use crate::certs::{CertRequest, generate};
use crate::cli::ServeArgs;
use crate::index::Index;
use crate::metrics::{AuditFindings, ReconcileMetrics};
use crate::metrics::{LocationCheckMetrics, Metrics};
use crate::readiness::Readiness;
use crate::reconcile::lease::{LeaderElector, LeaseConfig};
use crate::reconcile::records::RecordStore;
use crate::reconcile::runner::Reconciler;
use crate::server::tls::{CertFiles, ReloadingCert, server_config, watch_cert_files};
use crate::server::{App, Limits, router, serve};
use crate::state::cluster::{self, Sinks};
use crate::state::dir;
use std::sync::atomic::AtomicBool;

/// How often expired provisional holds are swept.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(10);

/// Writes a throwaway CA and localhost certificate into `dir`.
fn self_signed_files(dir: Option<&std::path::Path>) -> anyhow::Result<CertFiles> {
    let bundle = generate(&CertRequest {
        service: "savepoint-webhook".into(),
        namespace: "default".into(),
        extra_dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse()?, "::1".parse()?],
        validity: Duration::from_secs(24 * 3600),
    })?;
    let dir: PathBuf = dir.map_or_else(
        || std::env::temp_dir().join("savepoint-webhook"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    super::certs::write_private(&dir.join("ca.crt"), &bundle.ca_pem)?;
    super::certs::write_private(&files.cert, &bundle.cert_pem)?;
    super::certs::write_private(&files.key, &bundle.key_pem)?;
    eprintln!(
        "self-signed certificate for localhost; its CA is {}",
        dir.join("ca.crt").display()
    );
    Ok(files)
}

/// Runs `serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if args.self_signed => self_signed_files(args.self_signed_dir.as_deref())?,
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --self-signed for a local run"),
    };
    let certificate = ReloadingCert::new(files.load()?);
    let tls = server_config(certificate.clone(), args.client_ca.as_deref())?;

    let policy = Arc::new(args.policy.policy());
    let index = Arc::new(RwLock::new(Index::new(
        policy.locations.clone(),
        args.provisional_ttl,
    )));
    let readiness = Arc::new(Readiness::default());
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, index.clone());
    let verifier = args
        .verify
        .verifier()?
        .map(|v| v.with_metrics(LocationCheckMetrics::register(&mut registry)));
    if let Some(verifier) = &verifier {
        tracing::info!(mode = ?verifier.mode(), "verifying Savepoint locations");
    }
    match &args.state {
        Some(state_dir) => {
            let summary = dir::load_dir(
                state_dir,
                &mut index.write().unwrap_or_else(|p| p.into_inner()),
            )?;
            tracing::info!(dir = %state_dir.display(), deployments = summary.deployments, savepoints = summary.savepoints, skipped = summary.skipped, "loaded state directory");
            readiness.deployments_synced();
            readiness.savepoints_synced();
        }
        None => {
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes configuration found (in-cluster or kubeconfig); use --state DIR to run without a cluster")?;
            let sinks = Sinks {
                index: index.clone(),
                records: RecordStore::default(),
                readiness: readiness.clone(),
            };
            start_reconciler(&args, client.clone(), &sinks, policy.clone(), &mut registry);
            tokio::spawn(cluster::run(client, sinks, args.page_size));
        }
    }
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        handshake_timeout: args.handshake_timeout,
        header_timeout: args.handshake_timeout,
        max_connections: args.max_connections,
        max_concurrent_streams: args.max_concurrent_streams,
        drain_timeout: args.drain_timeout,
        ..Limits::default()
    };
    let app = App {
        index: index.clone(),
        policy,
        readiness: readiness.clone(),
        metrics,
        registry: Arc::new(registry),
        limits: limits.clone(),
        verifier,
    };

    tokio::spawn(watch_cert_files(
        files,
        certificate,
        args.cert_reload_interval,
    ));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EXPIRE_INTERVAL);
        loop {
            ticker.tick().await;
            index
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .expire(Instant::now());
        }
    });

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /mutate and /validate over TLS");
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: not ready, draining in-flight requests");
        readiness.begin_shutdown();
    };
    serve(listener, Arc::new(tls), router(app), limits, shutdown).await;
    Ok(())
}

/// Starts the audit pass on this replica and, unless turned off, the leader-elected
/// reconciler that applies its repairs.
fn start_reconciler(
    args: &ServeArgs,
    client: kube::Client,
    sinks: &Sinks,
    policy: Arc<Policy>,
    registry: &mut Registry,
) {
    let findings = AuditFindings::default();
    let metrics = ReconcileMetrics::register(registry, findings.clone());
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(crate::cli::default_identity);
    let leader = if args.reconcile {
        let elector = LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: args.lease_duration,
                renew_every: args.lease_duration / 3,
            },
        );
        let leader = elector.is_leader();
        tokio::spawn(elector.run());
        leader
    } else {
        Arc::new(AtomicBool::new(false))
    };
    tokio::spawn(
        Reconciler {
            client,
            index: sinks.index.clone(),
            records: sinks.records.clone(),
            policy,
            leader,
            readiness: sinks.readiness.clone(),
            interval: args.reconcile_interval,
            identity,
            metrics,
            findings,
        }
        .run(),
    );
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
