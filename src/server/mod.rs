//! The HTTPS server: [`router`] maps routes to thin handlers that translate HTTP to the
//! pure decisions in [`crate::admission`]; [`serve`] accepts TLS connections (HTTP/1.1 and
//! HTTP/2) until shutdown, then drains in-flight requests.

pub mod budget;
mod connection;
pub mod metrics;
pub mod plain;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto::Builder;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError, watch};
use tokio_rustls::TlsAcceptor;

use crate::admission::{self, Decision, Gate, Reason, decode};
use crate::authorize::{self, Authorizer};
use crate::index::metrics::IndexCollector;
use crate::readiness::Readiness;
use crate::verify::RestoringFlink;
use budget::ByteBudget;
use metrics::{DecisionLabels, Metrics, RequestLabels, RouteLabels};

/// Limits that keep one client from exhausting the server. Defaults are safe for an
/// admission webhook: the API server sends small bodies and at most a few hundred
/// concurrent requests per replica.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest budget for one request when the API server sends no `?timeout=`.
    pub request_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers: from the TLS handshake to the
    /// first request (HTTP/1.1 and HTTP/2), and from one HTTP/1.1 request to the next.
    pub header_timeout: Duration,
    /// Time an HTTP/2 connection may stay open with no request in flight before it gets
    /// a GOAWAY and is closed.
    pub idle_timeout: Duration,
    /// Time after its handshake at which a connection is asked to close (GOAWAY, or
    /// HTTP/1.1 close), busy or not, so that clients handshake again (a renewed
    /// certificate reaches them) and spread over replicas; `None`: never.
    pub max_connection_age: Option<Duration>,
    /// Interval of HTTP/2 PINGs that detect a peer which went away without closing.
    pub keep_alive_interval: Duration,
    /// Time a peer has to answer a PING before its connection is closed.
    pub keep_alive_timeout: Duration,
    /// Open connections at most. A newcomer finding them all open closes the one idle the
    /// longest (none with a request in flight); when all have one, it waits in the kernel's
    /// backlog.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Time an HTTP/2 answer gets to reach the peer after its handler finished: a stream
    /// still open `request_timeout + send_timeout` after its headers arrived is reset and
    /// its buffers freed (a peer keeping a zero flow-control window pins no memory).
    pub send_timeout: Duration,
    /// Bytes of answers one connection may hold while waiting to send them; a stream whose
    /// answer would go beyond it is reset at once (an answer alone always passes).
    pub max_unsent_bytes: usize,
    /// Bytes h2 buffers for one HTTP/2 stream beyond what the peer's window lets out.
    pub max_send_buf_bytes: usize,
    /// Bytes of answers all connections together may hold while waiting to send them.
    pub max_unsent_bytes_total: usize,
    /// Bytes all requests in flight together may hold: each reserves twice its body's
    /// length (the body and what is decoded from it) until it is answered; a request
    /// that finds the budget spent gets 503 at once.
    pub max_request_bytes_in_flight: usize,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: None,
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_concurrent_streams: 128,
            send_timeout: Duration::from_secs(10),
            max_unsent_bytes: 2 * 1024 * 1024,
            max_send_buf_bytes: 64 * 1024,
            max_unsent_bytes_total: 32 * 1024 * 1024,
            max_request_bytes_in_flight: 64 * 1024 * 1024,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

impl Limits {
    /// How long an HTTP/2 stream may stay open before it is reset.
    fn stream_deadline(&self) -> Duration {
        self.request_timeout.saturating_add(self.send_timeout)
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct App {
    /// The admissions, over the index and the hold ledger.
    pub gate: Gate,
    /// Whether the indexes have synced.
    pub readiness: Arc<Readiness>,
    /// Metric families.
    pub metrics: Metrics,
    /// The registry `/metrics` encodes.
    pub registry: Arc<Registry>,
    /// Request limits.
    pub limits: Limits,
    /// Location verification of Savepoint creates in `/validate`; `None` when it is off.
    pub verifier: Option<crate::verify::Verifier>,
    /// The check that a Savepoint's creator may update its Deployment, in `/validate`;
    /// `None` when it is off.
    pub authorizer: Option<Arc<Authorizer>>,
    /// Bytes held by the requests in flight (`Limits::max_request_bytes_in_flight`).
    pub request_bytes: Arc<ByteBudget>,
}

impl App {
    /// The app of `gate`: registers the server's metric families and the index's
    /// scrape-time collector in `registry`, which `/metrics` then encodes.
    pub fn new(
        gate: Gate,
        readiness: Arc<Readiness>,
        limits: Limits,
        verifier: Option<crate::verify::Verifier>,
        mut registry: Registry,
    ) -> Self {
        let metrics = Metrics::register(&mut registry);
        registry.register_collector(Box::new(IndexCollector(gate.store().clone())));
        Self {
            gate,
            readiness,
            metrics,
            registry: Arc::new(registry),
            request_bytes: ByteBudget::new(limits.max_request_bytes_in_flight),
            limits,
            verifier,
            authorizer: None,
        }
    }

    /// The app with restores authorized by `authorizer` (see [`crate::authorize`]).
    pub fn with_authorizer(mut self, authorizer: Arc<Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// The routes: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`,
/// `GET /metrics`.
pub fn router(app: App) -> Router {
    // One shared App: handlers and the middleware take a reference count, not a copy.
    let app = Arc::new(app);
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            close_when_shutting_down,
        ))
        .with_state(app)
}

/// Once shutdown has begun, every HTTP/1.1 answer says `Connection: close`: the client
/// closes the connection itself after reading it, rather than the server closing an idle
/// one at the end of the shutdown delay while the client may be sending on it (a request
/// that fails with EOF, which a POST is not retried after).
async fn close_when_shutting_down(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let mut response = next.run(request).await;
    if http1 && app.readiness.is_shutting_down() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/mutate" => "/mutate",
        "/validate" => "/validate",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let _in_flight = InFlight::enter(&app.metrics, route);
    let response = next.run(request).await;
    app.metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// A request counted in `savepoint_webhook_http_requests_in_flight` until dropped, also
/// when its handler is cancelled.
struct InFlight(Gauge);

impl InFlight {
    fn enter(metrics: &Metrics, route: &'static str) -> Self {
        let gauge = metrics
            .in_flight
            .get_or_create(&RouteLabels { route })
            .clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: indexes not synced or shutting down",
        )
            .into_response()
    }
}

/// `GET /metrics`: OpenMetrics when the `Accept` header asks for it, the Prometheus text
/// format 0.0.4 otherwise (see [`metrics::Format::negotiate`]).
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    metrics_response(&app.registry, &headers)
}

/// The answer to `GET /metrics` with `headers`: `registry` encoded in the format the
/// `Accept` header asks for.
fn metrics_response(registry: &Registry, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = metrics::Format::negotiate(accept);
    match metrics::encode(registry, format) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::VARY, "accept"),
            ],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn mutate(State(app): State<Arc<App>>, request: Request) -> Response {
    review(&app, Endpoint::Mutate, request).await
}

async fn validate(State(app): State<Arc<App>>, request: Request) -> Response {
    review(&app, Endpoint::Validate, request).await
}

/// A JSON error body for requests that are not usable AdmissionReviews.
fn http_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &serde_json::json!({ "error": message.into() }))
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The budget for one request: the API server's `?timeout=`, capped by the configured
/// request timeout.
fn request_budget(query: Option<&str>, limits: &Limits) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|t| crate::duration::parse_duration(t).ok())
        .map_or(limits.request_timeout, |t| t.min(limits.request_timeout))
}

async fn read_body(body: Body, limits: &Limits, budget: Duration) -> Result<Bytes, Response> {
    match tokio::time::timeout(budget, axum::body::to_bytes(body, limits.max_body_bytes)).await {
        Err(_) => Err(http_error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within the request timeout",
        )),
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(too_large_response(limits))
            } else {
                Err(http_error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {err}"),
                ))
            }
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn too_large_response(limits: &Limits) -> Response {
    http_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {} bytes", limits.max_body_bytes),
    )
}

async fn review(app: &App, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > app.limits.max_body_bytes) {
        return too_large_response(&app.limits);
    }
    let held = declared
        .unwrap_or(app.limits.max_body_bytes)
        .saturating_mul(2);
    let Some(_reserved) = app.request_bytes.try_reserve(held) else {
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "requests in flight hold {} of the {} bytes this webhook gives them; retry shortly",
                app.request_bytes.used(),
                app.request_bytes.max()
            ),
        );
    };
    let budget = request_budget(parts.uri.query(), &app.limits);
    let bytes = match read_body(body, &app.limits, budget).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let request = match decode::decode_review(&bytes) {
        Ok(request) => request,
        Err(err) => return http_error(StatusCode::BAD_REQUEST, err.to_string()),
    };
    // Location verification may wait for a store: it runs before the index lock is taken,
    // within what is left of the request's budget.
    let checked = match (&app.verifier, endpoint) {
        (Some(verifier), Endpoint::Validate) => {
            let remaining = budget.saturating_sub(started.elapsed());
            verifier
                .check_request(
                    &request,
                    &app.gate.policy().locations,
                    verifier.budget(remaining),
                )
                .await
        }
        _ => None,
    };
    // The Deployment a Savepoint create restores, looked up once for both checks below.
    let restored = match endpoint {
        Endpoint::Validate if app.authorizer.is_some() || checked.is_some() => {
            admission::restored_deployment(&request, &*app.gate.store().read()).cloned()
        }
        _ => None,
    };
    let namespace = admission::request_namespace(&request);
    let authorized = match (&app.authorizer, &restored) {
        (Some(authorizer), Some(deployment)) => {
            let remaining = budget.saturating_sub(started.elapsed());
            Some(
                authorizer
                    .check(
                        &request.user_info,
                        namespace,
                        &deployment.name,
                        remaining / 2,
                    )
                    .await,
            )
        }
        _ => None,
    };
    let flink = checked
        .as_ref()
        .and(restored.as_ref())
        .and_then(RestoringFlink::of);
    let admitted = decide(app, endpoint, &request);
    let gate_allowed = admitted.allowed;
    let decision = match &app.verifier {
        Some(verifier) => verifier.judge(admitted, checked.as_ref(), flink.as_ref()),
        None => admitted,
    };
    let decision = match (&authorized, &restored) {
        (Some(verdict), Some(deployment)) => authorize::judge(
            decision,
            verdict,
            &request.user_info,
            namespace,
            &deployment.name,
        ),
        _ => decision,
    };
    if gate_allowed && !decision.allowed {
        app.gate.withdraw(&request);
    }
    app.metrics
        .decisions
        .get_or_create(&DecisionLabels {
            endpoint: endpoint.name(),
            allowed: if decision.allowed { "true" } else { "false" },
            reason: decision.reason.as_str(),
        })
        .inc();
    if !decision.allowed || decision.patch.is_some() {
        log_decision(endpoint, &request, &decision);
    }
    json_response(
        StatusCode::OK,
        &admission::response(&request.uid, &decision),
    )
}

/// Logs a denial or a mutation: who asked for what, bounded; nothing else of the request.
fn log_decision(endpoint: Endpoint, request: &decode::Request, decision: &Decision) {
    let clip = crate::text::clip;
    let user = clip(&request.user_info.username, 256);
    let namespace = clip(admission::request_namespace(request), 256);
    let name = match admission::request_name(request) {
        "" => admission::generated_prefix(request).unwrap_or_default(),
        name => name,
    };
    let name = clip(name, 256);
    if !decision.allowed {
        tracing::info!(
            endpoint = endpoint.name(),
            uid = %request.uid,
            user,
            namespace,
            name,
            reason = %decision.reason,
            detail = clip(decision.message.as_deref().unwrap_or_default(), 1024),
            "denied"
        );
    } else {
        tracing::info!(
            endpoint = endpoint.name(),
            uid = %request.uid,
            user,
            namespace,
            name,
            dry_run = request.is_dry_run(),
            changes = clip(&decision.changes.join("; "), 2048),
            "mutated"
        );
    }
}

fn decide(app: &App, endpoint: Endpoint, request: &decode::Request) -> Decision {
    if admission::is_savepoint(request) && !app.readiness.synced() {
        return Decision::deny(
            Reason::Unavailable,
            "savepoint-webhook cannot decide yet: it has not synced Deployments and Savepoints from the Kubernetes API (is the API server reachable from the webhook?); retry shortly",
        );
    }
    let now = Instant::now();
    match endpoint {
        Endpoint::Mutate => app.gate.admit_mutate(request, now),
        Endpoint::Validate => app.gate.admit_validate(request, now),
    }
}

/// Accepts TLS connections on `listener` and serves `router` over HTTP/1.1 and HTTP/2
/// until `shutdown` resolves; then stops accepting and gives in-flight requests
/// `limits.drain_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(connection::StreamExecutor {
        deadline: limits.stream_deadline(),
    });
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_body_bytes.max(64 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.max_concurrent_streams as usize)
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(limits.max_send_buf_bytes)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    let shared = Arc::new(connection::Shared {
        acceptor: TlsAcceptor::from(tls),
        builder,
        router,
        limits: limits.clone(),
        registry: Arc::new(connection::Registry::default()),
        unsent: ByteBudget::new(limits.max_unsent_bytes_total),
    });
    // Every connection task holds a receiver: a send asks them to close, and the sender's
    // `closed()` resolves once they all have.
    let (drain, _) = watch::channel(());
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                if !shared.registry.close_idlest() {
                    tracing::debug!(%peer, "every connection has a request in flight; waiting for a slot");
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve_connection(
            stream,
            peer,
            shared.clone(),
            drain.subscribe(),
            permit,
        ));
    }
    drop(listener);
    let _ = drain.send(());
    tokio::select! {
        () = drain.closed() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}
