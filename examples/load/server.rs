//! The load harness: the real server in-process, with the baseline route.

use super::*;

pub(crate) const BASELINE_RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

/// `POST /baseline`: reads the body, answers a constant allowed AdmissionReview.
pub(crate) async fn baseline(body: Bytes) -> impl axum::response::IntoResponse {
    std::hint::black_box(body);
    (
        [(header::CONTENT_TYPE, "application/json")],
        BASELINE_RESPONSE,
    )
}

/// A running server.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) done: tokio::task::JoinHandle<()>,
}

pub(crate) fn start_server(
    runtime: &tokio::runtime::Runtime,
    index: Index,
    policy: &Policy,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Server> {
    let gate = Gate::new(
        Arc::new(Store::new(index, Duration::from_secs(60))),
        Arc::new(policy.clone()),
    );
    let readiness = Arc::new(Readiness::default());
    readiness.deployments_synced();
    readiness.savepoints_synced();
    let limits = Limits::default();
    let app = App::new(gate, readiness, limits.clone(), None, Registry::default());
    let routes = router(app).route("/baseline", post(baseline));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding loopback")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let done = runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("cannot serve: {err}");
                return;
            }
        };
        serve(listener, tls, routes, limits, async {
            let _ = stopped.await;
        })
        .await;
    });
    Ok(Server { addr, stop, done })
}
