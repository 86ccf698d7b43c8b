//! The plain metrics port (`serve --metrics-listen`): [`serve_metrics`] answers
//! `GET /metrics` of the same registry as the TLS port over plain HTTP/1.1, and nothing
//! else (404), for scrapers that do not speak TLS to pods. Bounded like the TLS port:
//! at most [`MAX_CONNECTIONS`] at once, [`HEADER_TIMEOUT`] for a request's headers and
//! [`CONNECTION_TIMEOUT`] for a whole connection.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connections served at once; a newcomer past it is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// `GET /metrics` of `registry`, and 404 for every other route.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(registry): State<Arc<Registry>>, headers: HeaderMap| async move {
                    super::metrics_response(&registry, &headers)
                },
            ),
        )
        .with_state(registry)
}

/// Serves [`metrics_router`] on `listener` until the process stops.
pub async fn serve_metrics(listener: TcpListener, registry: Arc<Registry>) {
    let router = metrics_router(registry);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept on the metrics port");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics port: every connection slot taken; closing a newcomer");
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let router = router.clone();
                async move {
                    let response: Response = router.oneshot(request).await?;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}
