//! `serve`: build the index and its feed, check the certificate, bind, and serve until
//! SIGTERM or Ctrl-C, then shut down without refusing a request (see [`run`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::admission::Gate;
use crate::authorize::Authorizer;
use crate::certs::{CertRequest, generate};
use crate::cli::ServeArgs;
use crate::domain::Policy;
use crate::index::{HoldLimits, Index, RecordStore, Store};
use crate::readiness::Readiness;
use crate::reconcile::lease::{LeaderElector, LeaseConfig};
use crate::reconcile::metrics::{AuditFindings, LeaderGauge, ReconcileMetrics, ReportMetrics};
use crate::reconcile::publish::ReportWriter;
use crate::reconcile::report::Limits as ReportLimits;
use crate::reconcile::runner::{Reconciler, ReportSchedule};
use crate::server::metrics::CertificateCollector;
use crate::server::plain::serve_metrics;
use crate::server::tls::{CertFiles, ReloadingCert, server_config, watch_cert_files};
use crate::server::{App, Limits, router, serve};
use crate::state::cluster::{self, Sinks};
use crate::state::dir;
use crate::supervise::Supervisor;
use crate::verify::metrics::LocationCheckMetrics;

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

/// Runs `serve`: every long-lived task under one [`Supervisor`]. SIGTERM or Ctrl-C makes
/// the process unready and gives up the Lease at once, keeps serving for
/// `--shutdown-delay` (a second signal cuts it short), then closes the listener and drains
/// in-flight requests. A task that ends does the same without the delay and fails the
/// process with its cause.
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

    let policy = Arc::new(args.policy.policy()?);
    let readiness = Arc::new(Readiness::default());
    let mut index = Index::new(policy.locations.clone());
    if let Some(state_dir) = &args.state {
        let summary = dir::load_dir(state_dir, &mut index)?;
        tracing::info!(dir = %state_dir.display(), deployments = summary.deployments, savepoints = summary.savepoints, skipped = summary.skipped, "loaded state directory");
        readiness.deployments_synced();
        readiness.savepoints_synced();
    }
    let store = Arc::new(Store::with_limits(
        index,
        args.provisional_ttl,
        HoldLimits {
            max_holds: args.max_holds,
            max_bytes: args.max_hold_bytes,
        },
    ));
    let mut registry = Registry::default();
    CertificateCollector::register(&mut registry, certificate.clone());
    let verifier = args
        .verify
        .verifier()?
        .map(|v| v.with_metrics(LocationCheckMetrics::register(&mut registry)));
    if let Some(verifier) = &verifier {
        tracing::info!(mode = ?verifier.mode(), "verifying Savepoint locations");
    }

    if args.reports && (args.state.is_some() || !args.reconcile) {
        anyhow::bail!(
            "--reports writes the reconciler's findings: it needs the cluster and --reconcile"
        );
    }
    let mut tasks = Supervisor::default();
    let mut elector = None;
    let mut authorizer = None;
    if args.authorize_restores && args.state.is_some() {
        anyhow::bail!("--authorize-restores asks the API server and cannot be used with --state");
    }
    if args.state.is_none() {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes configuration found (in-cluster or kubeconfig); use --state DIR to run without a cluster")?;
        let sinks = Sinks {
            store: store.clone(),
            records: RecordStore::default(),
            readiness: readiness.clone(),
        };
        elector = start_reconciler(
            &args,
            client.clone(),
            &sinks,
            policy.clone(),
            &mut registry,
            &mut tasks,
        );
        if args.authorize_restores {
            tracing::info!(cache_ttl = ?args.authorization_cache_ttl, "authorizing restores: a Savepoint's creator must be allowed to update its Deployment");
            authorizer = Some(Arc::new(Authorizer::new(
                client.clone(),
                args.authorization_cache_ttl,
            )));
        }
        tasks.spawn("watch", cluster::run(client, sinks, args.page_size));
    }
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        handshake_timeout: args.handshake_timeout,
        header_timeout: args.handshake_timeout,
        max_connection_age: args.max_connection_age,
        max_connections: args.max_connections,
        max_concurrent_streams: args.max_concurrent_streams,
        drain_timeout: args.drain_timeout,
        ..Limits::default()
    };
    let mut app = App::new(
        Gate::new(store.clone(), policy),
        readiness.clone(),
        limits.clone(),
        verifier,
        registry,
    );
    if let Some(authorizer) = authorizer {
        app = app.with_authorizer(authorizer);
    }

    let metrics_listener = match args.metrics_listen {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on --metrics-listen {address}"))?;
            tracing::info!(address = %listener.local_addr()?, "serving /metrics over plain HTTP");
            Some(listener)
        }
        None => None,
    };
    if let Some(listener) = metrics_listener {
        tasks.spawn(
            "metrics-port",
            serve_metrics(listener, app.registry.clone()),
        );
    }
    tasks.spawn(
        "certificate-reload",
        watch_cert_files(files, certificate, args.cert_reload_interval),
    );
    tasks.spawn("hold-expiry", async move {
        let mut ticker = tokio::time::interval(EXPIRE_INTERVAL);
        loop {
            ticker.tick().await;
            store.expire(Instant::now());
        }
    });

    // Registered before the port is bound: from then on a signal starts the shutdown
    // sequence instead of ending the process.
    let mut signals = Signals::new();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /mutate and /validate over TLS");
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let release = || async {
        if let Some(elector) = &elector {
            elector.release().await;
        }
    };
    let shutdown = async {
        tokio::select! {
            () = signals.next() => {
                tracing::info!(delay = ?args.shutdown_delay, "shutting down: not ready, still serving until the endpoints stop routing here");
                readiness.begin_shutdown();
                let delay = async {
                    tokio::select! {
                        () = tokio::time::sleep(args.shutdown_delay) => {}
                        () = signals.next() => {
                            tracing::info!("second signal: skipping the rest of the shutdown delay");
                        }
                        ended = tasks.first_exit() => {
                            tracing::error!(error = %ended, "a long-lived task ended during the shutdown delay");
                            let _ = failed_tx.send(ended);
                        }
                    }
                };
                tokio::join!(release(), delay);
            }
            ended = tasks.first_exit() => {
                tracing::error!(error = %ended, "a long-lived task ended; shutting down: not ready");
                let _ = failed_tx.send(ended);
                readiness.begin_shutdown();
                release().await;
            }
        }
        tracing::info!(timeout = ?args.drain_timeout, "closing the listener, draining in-flight requests");
    };
    serve(listener, Arc::new(tls), router(app), limits, shutdown).await;
    tasks.shutdown().await;
    match failed_rx.await {
        Ok(ended) => Err(anyhow::Error::from(ended).context("savepoint-webhook stopped")),
        Err(_) => Ok(()),
    }
}

/// Starts the audit pass on this replica and, unless turned off, the leader-elected
/// reconciler that applies its repairs; returns the elector, which gives up the Lease at
/// shutdown.
fn start_reconciler(
    args: &ServeArgs,
    client: kube::Client,
    sinks: &Sinks,
    policy: Arc<Policy>,
    registry: &mut Registry,
    tasks: &mut Supervisor,
) -> Option<LeaderElector> {
    let findings = AuditFindings::default();
    let metrics = ReconcileMetrics::register(registry, findings.clone());
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(crate::cli::default_identity);
    let (leader, elector) = if args.reconcile {
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
        tasks.spawn("lease", elector.clone().run());
        (elector.is_leader(), Some(elector))
    } else {
        (Arc::new(AtomicBool::new(false)), None)
    };
    registry.register_collector(Box::new(LeaderGauge(leader.clone())));
    let reports = args.reports.then(|| {
        tracing::info!(interval = ?args.report_interval, max_results = args.report_max_results, "keeping openreports.io Reports of the findings");
        ReportSchedule {
            writer: ReportWriter::new(
                client.clone(),
                ReportLimits {
                    max_results: args.report_max_results,
                },
            )
            .with_metrics(ReportMetrics::register(registry)),
            every: args.report_interval,
        }
    });
    tasks.spawn(
        "reconciler",
        Reconciler {
            client,
            store: sinks.store.clone(),
            records: sinks.records.clone(),
            policy,
            leader,
            readiness: sinks.readiness.clone(),
            interval: args.reconcile_interval,
            identity,
            metrics,
            findings,
            reports,
        }
        .run(),
    );
    elector
}

/// SIGTERM and Ctrl-C (SIGINT), each delivery one event; handled from [`Signals::new`] on.
struct Signals {
    term: Option<Signal>,
    interrupt: Option<Signal>,
}

impl Signals {
    fn new() -> Self {
        let handle = |kind: SignalKind, name: &str| {
            signal(kind)
                .inspect_err(
                    |err| tracing::warn!(error = %err, signal = name, "cannot handle the signal"),
                )
                .ok()
        };
        Self {
            term: handle(SignalKind::terminate(), "SIGTERM"),
            interrupt: handle(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves at the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        async fn recv(signal: Option<&mut Signal>) {
            if let Some(signal) = signal
                && signal.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        tokio::select! {
            () = recv(self.term.as_mut()) => {}
            () = recv(self.interrupt.as_mut()) => {}
        }
    }
}
