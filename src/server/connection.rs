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
//! - any connection, busy or not, with `max_connection_age` set: that long after its
//!   handshake it gets a GOAWAY (HTTP/1.1: a close after the current answer), and the
//!   client opens a new one, with a new handshake (a renewed certificate) and perhaps to
//!   another replica;
//! - a connection asked to close (GOAWAY, or shutdown) that does not finish closing:
//!   `header_timeout` (or `drain_timeout` at shutdown), then it is dropped; one that still
//!   has a request in flight then first gets the stream deadline below.
//!
//! A peer that stops reading cannot pin memory either. Each HTTP/2 stream runs on the
//! [`StreamExecutor`], which resets it (RST_STREAM CANCEL, its buffers freed) when it is
//! still open `request_timeout + send_timeout` after its headers arrived: the handler
//! finishes within `request_timeout`, and its answer then has `send_timeout` to reach a
//! peer that keeps a zero flow-control window. While they wait, the answers of one
//! connection hold `max_unsent_bytes` at most: a stream whose answer would go beyond that
//! is reset at once (RST_STREAM INTERNAL_ERROR). What an answer leaves in h2's own send
//! buffer is bounded per stream by `max_send_buf_bytes` and per connection by
//! `max_concurrent_streams` of them.
//!
//! When every slot is taken, a newcomer does not wait for a deadline: the [`Registry`]
//! of live connections closes the one idle the longest (GOAWAY, or HTTP/1.1 close; it has
//! `header_timeout` to finish closing, as above); a connection with a request in flight
//! is never chosen, nor one still in its TLS handshake (`handshake_timeout` bounds those).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::Limits;
use super::budget::{ByteBudget, Reservation};

/// What the connection's requests are doing, shared by its service, its supervisor and
/// the [`Registry`].
struct Activity {
    /// When the TLS handshake finished.
    start: Instant,
    /// Requests whose handler has not finished.
    in_flight: AtomicUsize,
    /// Whether any request arrived.
    served: AtomicBool,
    /// When the last request finished, in milliseconds after `start`.
    idle_since_ms: AtomicU64,
    /// Bytes of answers that hyper has not yet handed to the connection in full.
    unsent: AtomicUsize,
    /// Whether its requests are HTTP/1.x (no GOAWAY: it is closed by `Connection: close`).
    http1: AtomicBool,
    /// Whether its next HTTP/1.x answer carries `Connection: close`.
    close_after_answer: AtomicBool,
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
            unsent: AtomicUsize::new(0),
            http1: AtomicBool::new(false),
            close_after_answer: AtomicBool::new(false),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Since when the connection has had no request in flight; `None` while it has one.
    fn idle_since(&self) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.start + idle_since)
    }

    /// When the connection counts as idle for too long, if nothing happens until then.
    fn idle_deadline(&self, limits: &Limits, now: Instant) -> Instant {
        if !self.served.load(Ordering::Acquire) {
            return self.start + limits.header_timeout;
        }
        self.idle_since()
            .map_or(now + limits.idle_timeout, |since| {
                since + limits.idle_timeout
            })
    }

    /// Counts an answer of `len` bytes as unsent, unless the connection's unsent answers
    /// would then exceed `max`; an answer alone is always let through.
    fn reserve_unsent(&self, len: usize, max: usize) -> bool {
        let before = self.unsent.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > max {
            self.unsent.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
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

/// An answer's body, counted in its connection's unsent bytes until hyper drops it: once
/// it handed the last frame to the connection, or with its reset stream.
struct Answer {
    body: Body,
    len: usize,
    activity: Arc<Activity>,
    _total: Reservation,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.activity.unsent.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// Why a stream got no answer; hyper resets it (HTTP/2) or closes the connection.
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// Unsent answers already hold `max_unsent_bytes` of the connection or
    /// `max_unsent_bytes_total` of the process.
    #[error("answers of {unsent} bytes wait to be sent already")]
    Unsent {
        /// Bytes of answers not yet handed to the connection.
        unsent: usize,
    },
}

/// Runs each HTTP/2 stream hyper spawns as its own task, and drops it (h2 then resets
/// the stream and frees what it buffered) when it is still running after `deadline`.
#[derive(Clone, Copy, Debug)]
pub(super) struct StreamExecutor {
    /// How long a stream may live: `request_timeout + send_timeout`.
    pub deadline: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        let deadline = self.deadline;
        tokio::spawn(async move {
            if tokio::time::timeout(deadline, stream).await.is_err() {
                tracing::debug!(
                    ?deadline,
                    "HTTP/2 stream reset: its answer was not sent in time"
                );
            }
        });
    }
}

/// The connections past their TLS handshake, so that a newcomer finding every slot
/// taken can close the one idle the longest.
#[derive(Default)]
pub(super) struct Registry {
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    next: u64,
    connections: HashMap<u64, Entry>,
}

struct Entry {
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// A connection's place in the [`Registry`], left when dropped.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(self: &Arc<Self>, activity: Arc<Activity>, close: Arc<Notify>) -> Registered {
        let mut live = self.live();
        let id = live.next;
        live.next += 1;
        live.connections.insert(id, Entry { activity, close });
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Asks the connection idle the longest (no request in flight) to close, and forgets
    /// it so that it is not chosen twice; false when every connection has one in flight.
    pub(super) fn close_idlest(&self) -> bool {
        let mut live = self.live();
        let idlest = live
            .connections
            .iter()
            .filter_map(|(id, entry)| entry.activity.idle_since().map(|since| (since, *id)))
            .min();
        match idlest.and_then(|(_, id)| live.connections.remove(&id)) {
            Some(entry) => {
                entry.close.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.live().connections.remove(&self.id);
    }
}

/// What every connection task shares.
pub(super) struct Shared {
    /// TLS for the port.
    pub acceptor: TlsAcceptor,
    /// HTTP/1.1 and HTTP/2 settings.
    pub builder: Builder<StreamExecutor>,
    /// The routes.
    pub router: Router,
    /// The deadlines.
    pub limits: Limits,
    /// The live connections.
    pub registry: Arc<Registry>,
    /// Bytes of answers waiting to be sent, over all connections.
    pub unsent: Arc<ByteBudget>,
}

/// How a connection that was asked to close is dropped at its deadline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Idle too long, or closed for a newcomer: a request that arrived meanwhile still
    /// gets the stream deadline.
    Idle,
    /// Shutdown, or that stream deadline: dropped.
    Final,
}

/// Serves one accepted TCP connection until the client closes it, a deadline above
/// passes, the [`Registry`] closes it for a newcomer, or `drain` signals shutdown (then
/// in-flight requests get `drain_timeout`); holds its slot of `max_connections`
/// (`_permit`) until then.
pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let limits = &shared.limits;
    // A second handle of the socket outlives the TLS stream, for `linger`.
    let Some((stream, lingering)) = stream
        .into_std()
        .and_then(|socket| Ok((socket.try_clone()?, socket)))
        .ok()
        .and_then(|(dup, socket)| Some((TcpStream::from_std(socket).ok()?, dup)))
    else {
        return;
    };
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
    let close = Arc::new(Notify::new());
    // Left as soon as the connection is asked to close, so that no newcomer waits on it.
    let mut registered = Some(shared.registry.register(activity.clone(), close.clone()));
    let service = {
        let activity = activity.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let http1 = request.version() < hyper::Version::HTTP_2;
            if http1 {
                activity.http1.store(true, Ordering::Release);
            }
            let router = shared.router.clone();
            let activity = activity.clone();
            let max_unsent = shared.limits.max_unsent_bytes;
            let unsent_total = shared.unsent.clone();
            async move {
                let Ok(response) = router.oneshot(request).await;
                drop(in_flight);
                let (parts, body) = response.into_parts();
                let hint = hyper::body::Body::size_hint(&body);
                let len =
                    usize::try_from(hint.exact().unwrap_or(hint.lower())).unwrap_or(usize::MAX);
                let Some(total) = unsent_total.try_reserve(len) else {
                    let unsent = unsent_total.used();
                    tracing::debug!(%peer, unsent, "refusing a stream: unsent answers fill the process's budget");
                    return Err(Refused::Unsent { unsent });
                };
                if !activity.reserve_unsent(len, max_unsent) {
                    let unsent = activity.unsent.load(Ordering::Acquire);
                    tracing::debug!(%peer, unsent, "refusing a stream: unsent answers fill the connection");
                    return Err(Refused::Unsent { unsent });
                }
                let mut parts = parts;
                if http1 && activity.close_after_answer.load(Ordering::Acquire) {
                    parts.headers.insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                Ok(hyper::Response::from_parts(
                    parts,
                    Answer {
                        body,
                        len,
                        activity,
                        _total: total,
                    },
                ))
            }
        })
    };
    let mut connection = Box::pin(shared.builder.serve_connection(TokioIo::new(tls), service));
    let mut closing: Option<(Closing, Instant)> = None;
    let mut aged = limits.max_connection_age.map(|age| activity.start + age);
    loop {
        let now = Instant::now();
        let wake = closing.map_or_else(
            || {
                let idle = activity.idle_deadline(limits, now);
                aged.map_or(idle, |aged| aged.min(idle))
            },
            |(_, at)| at,
        );
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                drop(connection);
                linger(lingering, limits.header_timeout.min(LINGER)).await;
                return;
            }
            _ = drain.changed(), if closing.is_none() => {
                drop(registered.take());
                connection.as_mut().graceful_shutdown();
                closing = Some((Closing::Final, Instant::now() + limits.drain_timeout));
            }
            () = close.notified(), if closing.is_none() => {
                tracing::debug!(%peer, "closing the idlest connection for a newcomer");
                connection.as_mut().graceful_shutdown();
                closing = Some((Closing::Idle, Instant::now() + limits.header_timeout));
            }
            () = tokio::time::sleep_until(wake) => match closing {
                Some((Closing::Idle, _)) if activity.busy() => {
                    closing = Some((Closing::Final, Instant::now() + limits.stream_deadline()));
                }
                Some(_) => {
                    tracing::debug!(%peer, "connection did not close in time; dropping it");
                    return;
                }
                None => {
                    let now = Instant::now();
                    if aged.is_some_and(|aged| aged <= now) && activity.http1.load(Ordering::Acquire) {
                        // Closing an idle HTTP/1.1 connection races with a client that
                        // just sent a request on it (which then fails with EOF): its next
                        // answer says `Connection: close` instead, and the client closes.
                        tracing::debug!(%peer, "closing an HTTP/1.1 connection after its next answer, at its maximum age");
                        activity.close_after_answer.store(true, Ordering::Release);
                        aged = None;
                    } else if aged.is_some_and(|aged| aged <= now) {
                        tracing::debug!(%peer, "closing a connection at its maximum age");
                        drop(registered.take());
                        connection.as_mut().graceful_shutdown();
                        closing = Some((Closing::Idle, now + limits.header_timeout));
                    } else if activity.idle_deadline(limits, now) <= now {
                        tracing::debug!(%peer, "closing an idle connection");
                        drop(registered.take());
                        connection.as_mut().graceful_shutdown();
                        closing = Some((Closing::Idle, Instant::now() + limits.header_timeout));
                    }
                }
            },
        }
    }
}

/// Longest wait for a peer to close after the server did.
const LINGER: Duration = Duration::from_secs(2);

/// Closes a finished connection the way HTTP servers do: no more writing (FIN), then what
/// the peer still sends is read and dropped until it closes too or `within` passes. A
/// request that crossed the server's GOAWAY then ends in the peer reading that GOAWAY (and
/// retrying elsewhere), not in a reset that discards it unread.
async fn linger(socket: std::net::TcpStream, within: Duration) {
    let Ok(mut socket) = TcpStream::from_std(socket) else {
        return;
    };
    if socket.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(within, async {
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_idle_for(registry: &Arc<Registry>, idle_since_ms: u64) -> (Registered, Arc<Notify>) {
        let activity = Activity::new();
        activity.served.store(true, Ordering::Release);
        activity
            .idle_since_ms
            .store(idle_since_ms, Ordering::Release);
        let close = Arc::new(Notify::new());
        (registry.register(activity, close.clone()), close)
    }

    async fn was_closed(close: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(10), close.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_idlest_connection_without_a_request_in_flight_is_closed_once() {
        let registry = Arc::new(Registry::default());
        let (_busy, busy_close) = mk_idle_for(&registry, 0);
        let in_flight = registry.live().connections[&0].activity.begin();
        let (_older, older_close) = mk_idle_for(&registry, 10);
        let (_newer, newer_close) = mk_idle_for(&registry, 20);

        assert!(registry.close_idlest());
        assert!(was_closed(&older_close).await);
        assert!(registry.close_idlest());
        assert!(was_closed(&newer_close).await);
        assert!(
            !registry.close_idlest(),
            "a connection with a request in flight was chosen"
        );
        assert!(!was_closed(&busy_close).await);
        drop(in_flight);
        assert!(registry.close_idlest());
        assert!(was_closed(&busy_close).await);
    }

    #[test]
    fn a_closed_connection_leaves_the_registry() {
        let registry = Arc::new(Registry::default());
        let (registered, _) = mk_idle_for(&registry, 0);
        drop(registered);
        assert!(!registry.close_idlest());
    }

    #[test]
    fn unsent_answers_are_bounded_but_one_always_passes() {
        let activity = Activity::new();
        assert!(
            activity.reserve_unsent(300, 100),
            "an answer alone is refused"
        );
        assert!(!activity.reserve_unsent(1, 100));
        activity.unsent.fetch_sub(300, Ordering::AcqRel);
        assert!(activity.reserve_unsent(60, 100));
        assert!(activity.reserve_unsent(40, 100));
        assert!(!activity.reserve_unsent(1, 100));
    }
}
