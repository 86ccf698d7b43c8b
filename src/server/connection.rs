//! One accepted connection, from the TLS handshake to its close: [`serve_connection`].
//!
//! Every state a client can leave a connection in has a deadline, so no client holds one
//! of the `max_connections` slots by doing nothing:
//!
//! - the TLS handshake: `handshake_timeout`;
//! - from the handshake to the first request's headers: `header_timeout` (this also covers
//!   the bytes hyper reads to tell HTTP/1.1 from HTTP/2, and an HTTP/2 connection that
//!   never opens a stream);
//! - HTTP/1.1 headers, and the wait for the next request: `header_timeout` (hyper's own);
//! - a request body: the request's budget (the handlers' own);
//! - an HTTP/2 connection with no open stream: `idle_timeout`, then a GOAWAY; a peer
//!   that stops answering PINGs: `keep_alive_interval` + `keep_alive_timeout` (hyper's);
//! - a connection asked to close (GOAWAY, or shutdown) that does not finish closing:
//!   `header_timeout` (or `drain_timeout` at shutdown), then it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::Limits;

/// What the connection's requests are doing, shared by its service and its supervisor.
struct Activity {
    /// When the TLS handshake finished.
    start: Instant,
    /// Requests whose handler has not finished.
    in_flight: AtomicUsize,
    /// Whether any request arrived.
    served: AtomicBool,
    /// When the last request finished, in milliseconds after `start`.
    idle_since_ms: AtomicU64,
}

/// Counts a request as in flight until dropped (also when hyper drops the handler of a
/// reset HTTP/2 stream).
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection counts as idle for too long, if nothing happens until then.
    fn idle_deadline(&self, limits: &Limits, now: Instant) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now + limits.idle_timeout;
        }
        if !self.served.load(Ordering::Acquire) {
            return self.start + limits.header_timeout;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.start + idle_since + limits.idle_timeout
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.start.elapsed().as_millis();
        self.0.idle_since_ms.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every connection task shares.
pub(super) struct Shared {
    /// TLS for the port.
    pub acceptor: TlsAcceptor,
    /// HTTP/1.1 and HTTP/2 settings.
    pub builder: Builder<TokioExecutor>,
    /// The routes.
    pub router: Router,
    /// The deadlines.
    pub limits: Limits,
}

/// Serves one accepted TCP connection until the client closes it, a deadline above
/// passes, or `drain` signals shutdown (then in-flight requests get `drain_timeout`);
/// holds its slot of `max_connections` (`_permit`) until then.
pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let limits = &shared.limits;
    let tls = tokio::select! {
        handshake = tokio::time::timeout(limits.handshake_timeout, shared.acceptor.accept(stream)) => {
            match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        _ = drain.changed() => return,
    };
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let router = shared.router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let connection = shared.builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    // Once the connection was asked to close: when it is dropped if still open.
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = closing.unwrap_or_else(|| activity.idle_deadline(limits, now));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = drain.changed(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.drain_timeout);
            }
            () = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    tracing::debug!(%peer, "connection did not close in time; dropping it");
                    return;
                }
                if activity.idle_deadline(limits, Instant::now()) <= Instant::now() {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + limits.header_timeout);
                }
            }
        }
    }
}
