//! The real router and server, in-process on a loopback port over TLS, serving the example
//! state of `deploy/examples/state` with a fresh rcgen certificate: the fixture shared by
//! the HTTPS and hostile-client tests (`#[path]`-included by each).
// Each including test binary uses a different part of the fixture.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use savepoint_webhook::admission::Gate;
use savepoint_webhook::certs::{CertRequest, generate};
use savepoint_webhook::domain::Policy;
use savepoint_webhook::index::{Index, Store};
use savepoint_webhook::readiness::Readiness;
use savepoint_webhook::server::metrics::CertificateCollector;
use savepoint_webhook::server::tls::{ReloadingCert, certified_key_from_pem, server_config};
use savepoint_webhook::server::{App, Limits, router, serve};
use savepoint_webhook::state::dir::load_dir;
use tokio::sync::oneshot;

const STATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state");

/// A running server; stop it with [`ExampleServer::stop`].
pub struct ExampleServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CA that signed its certificate (for `localhost` and 127.0.0.1), PEM.
    pub ca_pem: String,
    /// Its readiness, to flip in tests.
    pub readiness: Arc<Readiness>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl ExampleServer {
    /// Starts serving; `client_ca` turns on mutual TLS; `synced` marks both indexes synced.
    pub async fn start(limits: Limits, client_ca: Option<&Path>, synced: bool) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bundle = generate(&CertRequest {
            service: "savepoint-webhook".into(),
            namespace: "default".into(),
            extra_dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
        let key = certified_key_from_pem(
            "tls.crt".as_ref(),
            bundle.cert_pem.as_bytes(),
            "tls.key".as_ref(),
            bundle.key_pem.as_bytes(),
        )
        .unwrap();
        let certificate = ReloadingCert::new(key);
        let tls = server_config(certificate.clone(), client_ca).unwrap();
        let policy = Policy::default();
        let mut index = Index::new(policy.locations.clone());
        load_dir(STATE.as_ref(), &mut index).unwrap();
        let gate = Gate::new(
            Arc::new(Store::new(index, Duration::from_secs(60))),
            Arc::new(policy),
        );
        let readiness = Arc::new(Readiness::default());
        if synced {
            readiness.deployments_synced();
            readiness.savepoints_synced();
        }
        let mut registry = Registry::default();
        CertificateCollector::register(&mut registry, certificate);
        let app = App::new(gate, readiness.clone(), limits.clone(), None, registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(serve(listener, Arc::new(tls), router(app), limits, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            ca_pem: bundle.ca_pem,
            readiness,
            stop: Some(stop),
            done,
        }
    }

    /// Begins shutdown and waits (at most 30 s) until in-flight requests have drained.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .unwrap()
            .unwrap();
    }
}
