//! [`Forwarder`]: one loopback port in front of several webhook replicas, as a Service and
//! its endpoints are; a replacement replica is a new backend on a new port, as a new pod
//! has a new address. Each backend's `/readyz` is polled every `poll` (the endpoints
//! controller's view, with its lag); a new connection goes to the next backend that was
//! ready at the last poll and its bytes are spliced both ways. A backend that refuses a
//! connection is counted, marked unready and skipped; with no ready backend left the
//! connection is closed, as kube-proxy rejects it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One replica behind the forwarder.
struct Backend {
    port: u16,
    ready: AtomicBool,
    connections: AtomicUsize,
}

/// What the accept loop, the pollers and the handle share.
struct Shared {
    backends: RwLock<Vec<Arc<Backend>>>,
    /// Connections a backend marked ready refused.
    refused: AtomicUsize,
    /// Connections closed because no backend was ready.
    unrouted: AtomicUsize,
    http: reqwest::Client,
    poll: Duration,
}

/// A TCP forwarder on `127.0.0.1`; its tasks stop when it is dropped.
pub struct Forwarder {
    port: u16,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Forwarder {
    /// Starts forwarding to webhooks served with a certificate of the CA `ca_pem`, polling
    /// each one's `/readyz` every `poll`; with no backend until [`Forwarder::add`].
    pub async fn start(ca_pem: &[u8], poll: Duration) -> Forwarder {
        let ca = reqwest::Certificate::from_pem(ca_pem).expect("the CA is PEM");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(1))
            .build()
            .expect("cannot build the HTTPS client of the forwarder");
        Self::with_poller(http, poll).await
    }

    /// Like [`Forwarder::start`], polling `/readyz` without checking the certificate, as
    /// the kubelet's HTTPS probes do: for backends whose CA changes while they run.
    pub async fn start_unverified(poll: Duration) -> Forwarder {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(1))
            .build()
            .expect("cannot build the HTTPS client of the forwarder");
        Self::with_poller(http, poll).await
    }

    async fn with_poller(http: reqwest::Client, poll: Duration) -> Forwarder {
        let shared = Arc::new(Shared {
            backends: RwLock::new(Vec::new()),
            refused: AtomicUsize::new(0),
            unrouted: AtomicUsize::new(0),
            http,
            poll,
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the forwarder");
        let port = listener.local_addr().expect("forwarder address").port();
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                next = next.wrapping_add(1);
                tokio::spawn(route(client, accepting.clone(), next));
            }
        });
        Forwarder {
            port,
            shared,
            tasks: Mutex::new(vec![accept]),
        }
    }

    /// Adds the webhook on `port` as a backend (a new pod's endpoint); returns once its
    /// `/readyz` has been polled.
    pub async fn add(&self, port: u16) {
        let backend = Arc::new(Backend {
            port,
            ready: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let polled = Arc::new(tokio::sync::Notify::new());
        let (shared, polling, notify) = (self.shared.clone(), backend.clone(), polled.clone());
        let poller = tokio::spawn(async move {
            let url = format!("https://127.0.0.1:{}/readyz", polling.port);
            loop {
                let ready = shared
                    .http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
                polling.ready.store(ready, Ordering::SeqCst);
                notify.notify_one();
                tokio::time::sleep(shared.poll).await;
            }
        });
        polled.notified().await;
        self.shared.backends.write().unwrap().push(backend);
        self.tasks.lock().unwrap().push(poller);
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Connections a backend refused while the forwarder counted it ready: each would
    /// have reached the API server as "connection refused" through kube-proxy.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections closed because no backend was ready.
    pub fn unrouted(&self) -> usize {
        self.shared.unrouted.load(Ordering::SeqCst)
    }

    /// Connections forwarded to each backend, by port.
    pub fn connections(&self) -> Vec<(u16, usize)> {
        self.shared
            .backends
            .read()
            .unwrap()
            .iter()
            .map(|b| (b.port, b.connections.load(Ordering::SeqCst)))
            .collect()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().iter() {
            task.abort();
        }
    }
}

/// Connects `client` to the first ready backend from `start` on and splices the bytes.
async fn route(mut client: TcpStream, shared: Arc<Shared>, start: usize) {
    let _ = client.set_nodelay(true);
    let backends = shared.backends.read().unwrap().clone();
    for offset in 0..backends.len() {
        let backend = &backends[(start + offset) % backends.len()];
        if !backend.ready.load(Ordering::SeqCst) {
            continue;
        }
        match TcpStream::connect(("127.0.0.1", backend.port)).await {
            Ok(mut upstream) => {
                backend.connections.fetch_add(1, Ordering::SeqCst);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Err(_) => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                backend.ready.store(false, Ordering::SeqCst);
            }
        }
    }
    shared.unrouted.fetch_add(1, Ordering::SeqCst);
}
