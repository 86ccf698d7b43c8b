//! Load harness: the real server, measured against the cost of TLS and HTTP alone.
//!
//! ```sh
//! cargo run --release --example load -- --duration 10s   # the full run (about 7 min)
//! cargo run --release --example load -- --quick          # about 20 s (tests/perf-smoke.sh)
//! ```
//!
//! One process, two tokio runtimes. The server runtime runs [`serve`] with the real
//! [`router`] on loopback over TLS, as `savepoint-webhook serve` does, plus one route
//! merged in here and nowhere else: `POST /baseline` reads the body and answers a constant
//! allowed AdmissionReview. It pays what every admission route pays (TCP, TLS, HTTP, the
//! body, the answer) except the webhook's own work and the metrics middleware, so the
//! ratio of `/mutate` to it is what the webhook's work costs. The client runtime drives
//! the server with hyper's low-level client over keep-alive connections: HTTP/1.1 (one
//! request in flight per connection) and HTTP/2 (several streams per connection). Client
//! and server share the cores, which slows every route alike, so ratios stay meaningful;
//! CPU time is read per thread from `/proc/self/task/*/schedstat`, so the server's own CPU
//! per request is reported apart from the whole process's.
//!
//! For each index size (Savepoints; Deployments fixed) the harness builds the index,
//! counting its allocated bytes with a counting global allocator and timing it, then for
//! each protocol runs each route to saturation (closed loop: every worker sends its next
//! request when the answer arrives), then at a fixed offered rate (open loop: half the
//! lowest saturation rate of the first size, the same for every route and size). The open
//! loop's requests are released by a pacer thread (tokio's timer has millisecond
//! granularity and would release them in bursts); a request whose worker is still busy
//! waits, and its latency counts from when it was due (no coordinated omission). `late%`
//! is the share sent more than 100 µs after they were due.
//!
//! Requests come from the captured AdmissionReviews in `tests/fixtures/`, rewritten into a
//! pool of 4 096 with varied names, namespaces, Deployments and locations: half of the
//! `/mutate` requests name a location another Savepoint in the index already holds (so
//! they are answered with origin COPIED and a warning; checked before each size), one in
//! eight is a dry run; `/validate` gets CREATEs and UPDATEs half and half. The harness
//! exits non-zero when any request fails or is answered wrongly.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use savepoint_webhook::admission::Gate;
use savepoint_webhook::certs::{CertRequest, generate};
use savepoint_webhook::domain::Policy;
use savepoint_webhook::index::{DeploymentFacts, Index, SavepointFacts, Store};
use savepoint_webhook::readiness::Readiness;
use savepoint_webhook::resources::RestoreKind;
use savepoint_webhook::server::tls::{ReloadingCert, certified_key_from_pem, server_config};
use savepoint_webhook::server::{App, Limits, router, serve};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------
// Allocation counting

/// The binary's allocator, counting live bytes while [`COUNTING`] is set.
struct CountingAlloc;

/// Whether allocations are being counted (only while an index is built).
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while counting.
static COUNTED: AtomicI64 = AtomicI64::new(0);

fn count(delta: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        COUNTED.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the binary's allocator; the counting touches
// only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

/// The allocator the binary uses, which the counting wraps.
static INNER: savepoint_webhook::Allocator = mimalloc::MiMalloc;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Net bytes allocated by `f`, and what it returned. Only meaningful while nothing else
/// allocates (the server is stopped and the client idle).
fn counting<T>(f: impl FnOnce() -> T) -> (i64, T) {
    let before = COUNTED.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (COUNTED.load(Ordering::SeqCst) - before, out)
}

// ---------------------------------------------------------------------------------------
// Command line

/// Measures the webhook's routes against a constant-answer baseline, at several index
/// sizes, over HTTP/1.1 and HTTP/2.
#[derive(Parser, Debug)]
struct Args {
    /// How long each measurement phase lasts.
    #[arg(long, default_value = "5s", value_parser = savepoint_webhook::duration::parse_duration)]
    duration: Duration,
    /// Warm-up before each round (connections are open by then; not measured).
    #[arg(long, default_value = "1s", value_parser = savepoint_webhook::duration::parse_duration)]
    warmup: Duration,
    /// Rounds each phase is split into, interleaved across routes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Offered rate of the open loop, requests per second [default: half the lowest
    /// saturation rate of the first index size].
    #[arg(long)]
    rate: Option<f64>,
    /// Index sizes to measure, in Savepoints, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0,100000,1000000")]
    sizes: Vec<usize>,
    /// Deployments in the index.
    #[arg(long, default_value_t = 10_000)]
    deployments: usize,
    /// HTTP/1.1 connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    h1_connections: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    h2_connections: usize,
    /// Concurrent streams on each HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    h2_streams: usize,
    /// Protocols to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "http1,http2")]
    protocols: Vec<Proto>,
    /// Routes to measure, comma separated; ratios need the baseline among them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,mutate,validate"
    )]
    routes: Vec<Route>,
    /// Worker threads of the server runtime [default: the number of cores].
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the client runtime [default: the number of cores].
    #[arg(long)]
    client_threads: Option<usize>,
    /// Short phases and small indexes (about 20 s): checks the harness works, measures
    /// little. Overrides --duration, --warmup, --sizes and --deployments.
    #[arg(long)]
    quick: bool,
}

// ---------------------------------------------------------------------------------------
// Data set

const NAMESPACES: usize = 100;
/// Requests in the pool each route cycles through.
const POOL: usize = 4096;
const WORDS: &[&str] = &[
    "orders-enrichment",
    "clickstream-sessionizer",
    "fraud-scoring",
    "inventory-sync",
    "payments-ledger",
    "top-speed-windowing",
    "ad-attribution",
    "sensor-aggregation",
];

/// A deterministic 64-bit mix (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A UUID-shaped string, deterministic in `(stream, i)`.
fn uuid_like(stream: u64, i: u64) -> String {
    let a = mix(stream << 40 ^ i);
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn namespace(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

fn deployment(i: usize) -> DeploymentFacts {
    DeploymentFacts {
        namespace: namespace(i),
        name: format!("{}-{i:05}", WORDS[i % WORDS.len()]),
        uid: uuid_like(1, i as u64),
        spec_version: Some("3".into()),
        has_savepoints_dir: true,
        restore_kind: Some(RestoreKind::LatestState),
    }
}

/// The `i`th Savepoint of the bulk: a UUID name (as the platform names them) and a
/// savepoint directory under its Deployment's prefix, already in normalized form.
fn bulk_savepoint(i: usize, deployments: &[DeploymentFacts]) -> SavepointFacts {
    let d = &deployments[i % deployments.len()];
    let h = mix(i as u64 ^ 0x5a5a);
    SavepointFacts {
        namespace: d.namespace.clone(),
        name: uuid_like(2, i as u64),
        location: format!(
            "s3://flink-state/{}/{}/savepoints/savepoint-{:06x}-{:012x}",
            d.namespace,
            d.uid,
            h >> 40,
            h & 0xffff_ffff_ffff
        ),
    }
}

/// The request bodies the routes cycle through, and the Savepoints the index must hold
/// for half of the `/mutate` requests to find their location already referenced.
struct Pool {
    mutate: Vec<Bytes>,
    validate: Vec<Bytes>,
    referenced: Vec<SavepointFacts>,
}

fn read_fixture(name: &str) -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Rewrites a captured AdmissionReview for another Savepoint.
fn rewrite(
    template: &Value,
    uid: &str,
    name: &str,
    d: &DeploymentFacts,
    location: &str,
    with_id: bool,
) -> Result<Bytes> {
    let mut review = template.clone();
    let request = review
        .get_mut("request")
        .context("fixture has no request")?;
    request["uid"] = uid.into();
    request["name"] = name.into();
    request["namespace"] = d.namespace.as_str().into();
    for which in ["object", "oldObject"] {
        let Some(object) = request.get_mut(which).filter(|o| o.is_object()) else {
            continue;
        };
        object["metadata"]["name"] = name.into();
        object["metadata"]["namespace"] = d.namespace.as_str().into();
        let spec = &mut object["spec"];
        spec["deploymentName"] = d.name.as_str().into();
        spec["savepointLocation"] = location.into();
        match spec.as_object_mut() {
            Some(spec) if with_id => {
                spec.insert("deploymentId".into(), d.uid.as_str().into());
            }
            Some(spec) => {
                spec.remove("deploymentId");
            }
            None => bail!("fixture's {which} has no spec"),
        }
    }
    Ok(serde_json::to_vec(&review)?.into())
}

fn pool(deployments: &[DeploymentFacts]) -> Result<Pool> {
    let create = read_fixture("savepoint-create.json")?;
    let dry_run = read_fixture("savepoint-dryrun.json")?;
    let update = read_fixture("savepoint-update.json")?;
    let mut validate_create = create.clone();
    validate_create["request"]["object"]["metadata"]["annotations"] = serde_json::json!({
        savepoint_webhook::resources::SPEC_VERSION_ANNOTATION: "3"
    });
    let mut out = Pool {
        mutate: Vec::with_capacity(POOL),
        validate: Vec::with_capacity(POOL),
        referenced: Vec::new(),
    };
    for j in 0..POOL {
        let d = &deployments[(j * 7919) % deployments.len()];
        let name = format!("restore-{}", uuid_like(3, j as u64));
        let h = mix(j as u64 ^ 0xa5a5);
        let location = if j % 2 == 0 {
            let location = format!(
                "s3://flink-state/{}/{}/checkpoints/{:032x}/chk-{}",
                d.namespace,
                d.uid,
                h as u128 * 0x1_0000_0001,
                j + 1
            );
            out.referenced.push(SavepointFacts {
                namespace: d.namespace.clone(),
                name: format!("retained-{}", uuid_like(4, j as u64)),
                location: location.clone(),
            });
            location
        } else {
            format!(
                "s3a://flink-state/{}/{}/savepoints/savepoint-{:06x}-{:012x}/_metadata",
                d.namespace,
                d.uid,
                h >> 40,
                h & 0xffff_ffff_ffff
            )
        };
        let template = if j % 8 == 7 { &dry_run } else { &create };
        let uid = uuid_like(5, j as u64);
        out.mutate
            .push(rewrite(template, &uid, &name, d, &location, j % 3 != 0)?);
        let template = if j % 2 == 0 {
            &validate_create
        } else {
            &update
        };
        out.validate
            .push(rewrite(template, &uid, &name, d, &location, true)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The index

/// What building one index cost.
struct Built {
    index: Index,
    savepoints: usize,
    deployment_bytes: i64,
    savepoint_bytes: i64,
    location_bytes: usize,
    build_time: Duration,
    rss_growth: i64,
}

fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Builds the index the way the watch does after its first lists: every Deployment, then
/// every Savepoint, applied one by one. Only the applies are timed and counted; the facts
/// are generated in chunks outside.
fn build_index(
    policy: &Policy,
    deployments: &[DeploymentFacts],
    size: usize,
    referenced: &[SavepointFacts],
) -> Built {
    let rss_before = rss_bytes();
    let mut index = Index::new(policy.locations.clone());
    let started = Instant::now();
    let (deployment_bytes, ()) = counting(|| {
        for d in deployments {
            index.apply_deployment(d.clone());
        }
    });
    let mut build_time = started.elapsed();
    let mut savepoint_bytes = 0;
    let mut location_bytes = 0;
    const CHUNK: usize = 16_384;
    let mut next = 0;
    while next < size {
        let chunk: Vec<SavepointFacts> = (next..size.min(next + CHUNK))
            .map(|i| bulk_savepoint(i, deployments))
            .collect();
        next += chunk.len();
        location_bytes += chunk.iter().map(|s| s.location.len()).sum::<usize>();
        let started = Instant::now();
        let (bytes, ()) = counting(|| {
            for s in &chunk {
                index.apply_savepoint(s);
            }
        });
        build_time += started.elapsed();
        savepoint_bytes += bytes;
    }
    let started = Instant::now();
    let (bytes, ()) = counting(|| {
        for s in referenced {
            index.apply_savepoint(s);
        }
    });
    build_time += started.elapsed();
    savepoint_bytes += bytes;
    // Referenced locations are written raw; the index keeps them normalized (same length
    // here: no trailing slash, scheme already s3).
    location_bytes += referenced.iter().map(|s| s.location.len()).sum::<usize>();
    Built {
        savepoints: index.sizes().savepoints,
        index,
        deployment_bytes,
        savepoint_bytes,
        location_bytes,
        build_time,
        rss_growth: rss_bytes() - rss_before,
    }
}

// ---------------------------------------------------------------------------------------
// Server

const BASELINE_RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

/// `POST /baseline`: reads the body, answers a constant allowed AdmissionReview.
async fn baseline(body: Bytes) -> impl axum::response::IntoResponse {
    std::hint::black_box(body);
    (
        [(header::CONTENT_TYPE, "application/json")],
        BASELINE_RESPONSE,
    )
}

/// A running server.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

fn start_server(
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

// ---------------------------------------------------------------------------------------
// Client

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Proto {
    Http1,
    Http2,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Route {
    Baseline,
    Mutate,
    Validate,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Baseline => "/baseline?timeout=10s",
            Route::Mutate => "/mutate?timeout=10s",
            Route::Validate => "/validate?timeout=10s",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Route::Baseline => "baseline",
            Route::Mutate => "/mutate",
            Route::Validate => "/validate",
        }
    }
}

/// Where and how the client connects.
struct Target {
    addr: SocketAddr,
    authority: String,
    h1: TlsConnector,
    h2: TlsConnector,
    server_name: ServerName<'static>,
}

impl Target {
    fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("parsing the CA")?)?;
        }
        let connector = |alpn: &[u8]| {
            let mut config = rustls::ClientConfig::builder()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            TlsConnector::from(Arc::new(config))
        };
        Ok(Self {
            addr,
            authority: format!("localhost:{}", addr.port()),
            h1: connector(b"http/1.1"),
            h2: connector(b"h2"),
            server_name: ServerName::try_from("localhost")?,
        })
    }

    fn request(&self, proto: Proto, route: Route, body: Bytes) -> Result<Request<Full<Bytes>>> {
        let builder = match proto {
            Proto::Http1 => Request::post(route.path()).header(header::HOST, &self.authority),
            Proto::Http2 => Request::post(format!("https://{}{}", self.authority, route.path())),
        };
        Ok(builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?)
    }
}

/// One keep-alive connection; an HTTP/2 one may be shared by several workers.
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(target: &Target, proto: Proto) -> Result<Self> {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let connector = match proto {
            Proto::Http1 => &target.h1,
            Proto::Http2 => &target.h2,
        };
        let tls = connector
            .connect(target.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        Ok(match proto {
            Proto::Http1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Proto::Http2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Conn::H2(send)
            }
        })
    }

    fn share(&self) -> Option<Self> {
        match self {
            Conn::H1(_) => None,
            Conn::H2(send) => Some(Conn::H2(send.clone())),
        }
    }

    /// Sends one request; the status and the whole response body.
    async fn call(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let response = match self {
            Conn::H1(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
            Conn::H2(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
        };
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

// ---------------------------------------------------------------------------------------
// Measurement

/// CPU time of the server's threads and of the whole process, from `/proc`.
#[derive(Clone, Copy, Default)]
struct Cpu {
    server_ns: u64,
    total_ns: u64,
}

fn thread_cpu_ns(tid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn cpu_now(server_tids: &Mutex<Vec<String>>) -> Cpu {
    let server = server_tids.lock().unwrap_or_else(|p| p.into_inner());
    let mut cpu = Cpu::default();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            let ns = thread_cpu_ns(&tid).unwrap_or(0);
            cpu.total_ns += ns;
            if server.contains(&tid) {
                cpu.server_ns += ns;
            }
        }
    }
    cpu
}

/// Closed loop (as fast as answers come) or open loop at a rate, in requests per second.
#[derive(Clone, Copy)]
enum Load {
    Saturation,
    Rate(f64),
}

/// Latencies in nanoseconds in bounded memory, however long the run: 1 ns to 60 s at
/// three significant digits (HdrHistogram).
struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("the bounds are valid"),
        )
    }
}

impl Latencies {
    fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    fn add(&mut self, other: &Latencies) {
        self.0
            .add(&other.0)
            .expect("histograms of the same bounds add");
    }

    fn len(&self) -> usize {
        self.0.len() as usize
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_ns: Latencies,
    errors: u64,
    first_error: Option<String>,
    late: u64,
}

/// The outcome of one phase.
struct Phase {
    load: Load,
    requests: usize,
    errors: u64,
    first_error: Option<String>,
    late: u64,
    duration: Duration,
    /// Requests per second of each round, when the phase ran in several.
    round_rates: Vec<f64>,
    /// 99th percentile latency of each round, when the phase ran in several.
    round_p99s_ns: Vec<u64>,
    latencies_ns: Latencies,
    cpu: Cpu,
}

impl Phase {
    /// Requests per second: the median of the rounds', so that a round disturbed by
    /// something else on the machine does not move it.
    fn rate(&self) -> f64 {
        let mut rates = self.round_rates.clone();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => self.requests as f64 / self.duration.as_secs_f64(),
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }

    /// (slowest − fastest) / median of the rounds' throughputs: how much the machine
    /// alone moved this phase.
    fn round_spread(&self) -> f64 {
        let (min, max) = self
            .round_rates
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        if self.round_rates.len() < 2 {
            0.0
        } else {
            (max - min) / self.rate()
        }
    }

    /// The median of the rounds' 99th percentile latencies: unlike the pooled one, not
    /// moved by a few milliseconds' stall of the machine in one round.
    fn median_round_p99_ns(&self) -> u64 {
        let mut p99s = self.round_p99s_ns.clone();
        p99s.sort_unstable();
        match p99s.len() {
            0 => self.percentile_ns(0.99),
            n => p99s[(n - 1) / 2],
        }
    }

    /// One phase out of several rounds of the same route and load: latencies and CPU
    /// pooled, throughput the median round's.
    fn merge(rounds: Vec<Phase>) -> Option<Phase> {
        let mut rounds = rounds.into_iter();
        let mut all = rounds.next()?;
        all.round_rates = vec![all.requests as f64 / all.duration.as_secs_f64()];
        all.round_p99s_ns = vec![all.percentile_ns(0.99)];
        for round in rounds {
            all.round_rates
                .push(round.requests as f64 / round.duration.as_secs_f64());
            all.round_p99s_ns.push(round.percentile_ns(0.99));
            all.requests += round.requests;
            all.errors += round.errors;
            all.first_error = all.first_error.or(round.first_error);
            all.late += round.late;
            all.duration += round.duration;
            all.latencies_ns.add(&round.latencies_ns);
            all.cpu.server_ns += round.cpu.server_ns;
            all.cpu.total_ns += round.cpu.total_ns;
        }
        Some(all)
    }

    fn percentile_ns(&self, q: f64) -> u64 {
        self.latencies_ns.quantile(q)
    }

    fn cpu_per_request_ns(&self) -> (u64, u64) {
        let n = self.requests.max(1) as u64;
        (self.cpu.server_ns / n, self.cpu.total_ns / n)
    }
}

/// The moments of one phase: requests started in `[measure, end)` are measured.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure: Instant,
    end: Instant,
}

/// Where an open-loop worker's requests come from: the times they are due, sent by the
/// pacer. `None` in the closed loop.
type Tokens = Option<tokio::sync::mpsc::UnboundedReceiver<Instant>>;

/// How late a request may be sent before it counts as held back.
const LATE: Duration = Duration::from_micros(100);

/// The pacer's slack: requests due within it are released together.
const SLACK: Duration = Duration::from_micros(50);

#[allow(clippy::too_many_arguments)]
async fn worker(
    mut conn: Conn,
    target: Arc<Target>,
    proto: Proto,
    route: Route,
    bodies: Arc<Vec<Bytes>>,
    number: usize,
    workers: usize,
    mut tokens: Tokens,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = number;
    let mut checked = false;
    loop {
        // Latency counts from the moment a request is due, or from when it is sent if the
        // pacer released it a little early. In the open loop a request that waited for
        // its worker (still awaiting the previous answer) is due at its schedule, so the
        // wait counts (no coordinated omission).
        let due = match &mut tokens {
            None => Instant::now(),
            Some(tokens) => match tokens.recv().await {
                Some(due) => due,
                None => break,
            },
        };
        let sent = Instant::now();
        if tokens.is_none() && sent >= window.end {
            break;
        }
        let origin = due.min(sent);
        let measured = due >= window.measure && due < window.end;
        if measured && sent > due + LATE {
            tally.late += 1;
        }
        let body = bodies[i % bodies.len()].clone();
        i += workers;
        let outcome = match target.request(proto, route, body) {
            Ok(request) => conn.call(request).await,
            Err(err) => Err(err),
        };
        let done = Instant::now();
        let error = match outcome {
            Ok((StatusCode::OK, body)) => {
                if !checked && !contains(&body, br#""allowed":true"#) {
                    Some(format!(
                        "{} answered: {}",
                        route.name(),
                        String::from_utf8_lossy(&body)
                    ))
                } else {
                    checked = true;
                    None
                }
            }
            Ok((status, body)) => Some(format!(
                "{} answered {status}: {}",
                route.name(),
                String::from_utf8_lossy(&body)
            )),
            Err(err) => Some(format!("{}: {err:#}", route.name())),
        };
        if let Some(error) = error {
            tally.errors += 1;
            tally.first_error.get_or_insert(error);
            if tally.errors > 100 {
                break;
            }
        } else if measured {
            tally
                .latencies_ns
                .record(u64::try_from((done - origin).as_nanos()).unwrap_or(u64::MAX));
        }
    }
    tally
}

/// The open loop's clock, on a thread of its own: tokio's timer has millisecond
/// granularity, which would release requests in bursts. Hands the times requests are due,
/// `rate` per second from `start` until `end`, to the workers in turn.
fn pace(
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
    rate: f64,
    start: Instant,
    end: Instant,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut k: u32 = 0;
    loop {
        let due = start + interval * k;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now + SLACK {
            std::thread::sleep(due - now - SLACK);
            continue;
        }
        if let Some(worker) = workers.get(k as usize % workers.len()) {
            let _ = worker.send(due);
        }
        k += 1;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Settings shared by every phase.
struct Plan {
    /// Warm-up of each round.
    warmup: Duration,
    /// Measured time of each round.
    duration: Duration,
    /// Rounds of each route and load.
    rounds: u32,
    h1_connections: usize,
    h2_connections: usize,
    h2_streams: usize,
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    target: &Arc<Target>,
    plan: &Plan,
    proto: Proto,
    route: Route,
    bodies: &Arc<Vec<Bytes>>,
    load: Load,
    server_tids: &Arc<Mutex<Vec<String>>>,
) -> Result<Phase> {
    let (connections, streams) = match proto {
        Proto::Http1 => (plan.h1_connections, 1),
        Proto::Http2 => (plan.h2_connections, plan.h2_streams),
    };
    let workers = connections * streams;
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..connections {
        let conn = Conn::open(target, proto)
            .await
            .with_context(|| format!("connecting over {}", proto.name()))?;
        for _ in 1..streams {
            conns.extend(conn.share());
        }
        conns.push(conn);
    }
    let start = Instant::now();
    let window = Window {
        start,
        measure: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    let sampler = {
        let server_tids = server_tids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window.measure.into()).await;
            let (at, before) = (Instant::now(), cpu_now(&server_tids));
            tokio::time::sleep_until(window.end.into()).await;
            let (until, after) = (Instant::now(), cpu_now(&server_tids));
            (
                until - at,
                Cpu {
                    server_ns: after.server_ns - before.server_ns,
                    total_ns: after.total_ns - before.total_ns,
                },
            )
        })
    };
    let mut senders = Vec::new();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(number, conn)| {
            let tokens = match load {
                Load::Saturation => None,
                Load::Rate(_) => {
                    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
                    senders.push(send);
                    Some(receive)
                }
            };
            tokio::spawn(worker(
                conn,
                target.clone(),
                proto,
                route,
                bodies.clone(),
                number,
                workers,
                tokens,
                window,
            ))
        })
        .collect();
    let pacer = match load {
        Load::Saturation => None,
        Load::Rate(rate) => Some(
            std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || pace(senders, rate, window.start, window.end))?,
        ),
    };
    let mut tally = Tally::default();
    for handle in handles {
        let t = handle.await?;
        tally.latencies_ns.add(&t.latencies_ns);
        tally.errors += t.errors;
        tally.late += t.late;
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
    }
    let (duration, cpu) = sampler.await?;
    if let Some(pacer) = pacer {
        // Done: the workers ran until it dropped their channels.
        let _ = pacer.join();
    }
    Ok(Phase {
        load,
        requests: tally.latencies_ns.len(),
        errors: tally.errors,
        first_error: tally.first_error,
        late: tally.late,
        duration,
        round_rates: Vec::new(),
        round_p99s_ns: Vec::new(),
        latencies_ns: tally.latencies_ns,
        cpu,
    })
}

/// Runs every route under `load`, interleaved in rounds (baseline, /mutate, /validate,
/// baseline, ...) so that a disturbance on the machine touches every route alike.
async fn run_rounds(
    target: &Arc<Target>,
    plan: &Plan,
    proto: Proto,
    bodies: &[(Route, Arc<Vec<Bytes>>)],
    load: Load,
    server_tids: &Arc<Mutex<Vec<String>>>,
) -> Result<Vec<(Route, Phase)>> {
    let mut rounds: Vec<Vec<Phase>> = bodies.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.rounds {
        for ((route, bodies), phases) in bodies.iter().zip(&mut rounds) {
            phases.push(run_phase(target, plan, proto, *route, bodies, load, server_tids).await?);
        }
    }
    Ok(bodies
        .iter()
        .zip(rounds)
        .filter_map(|((route, _), phases)| Some((*route, Phase::merge(phases)?)))
        .collect())
}

/// Sends the first requests of the `/mutate` pool once and checks the answers: every one
/// allowed, and exactly the ones naming a referenced location set to COPIED.
async fn check_answers(target: &Arc<Target>, pool: &Pool) -> Result<()> {
    let mut conn = Conn::open(target, Proto::Http1).await?;
    for (j, body) in pool.mutate.iter().take(64).enumerate() {
        let request = target.request(Proto::Http1, Route::Mutate, body.clone())?;
        let (status, answer) = conn.call(request).await?;
        ensure!(status == StatusCode::OK, "/mutate answered {status}");
        let review: Value = serde_json::from_slice(&answer)?;
        let response = &review["response"];
        ensure!(response["allowed"] == true, "/mutate denied: {review}");
        let copied = response["warnings"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("COPIED")))
        });
        ensure!(
            copied == (j % 2 == 0),
            "request {j}: expected COPIED {}, got {review}",
            j % 2 == 0
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

/// `1234567` as `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn micros(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// A figure and its ratio to the baseline's, when there is one to compare with.
fn cell(text: String, value: f64, baseline: Option<f64>) -> String {
    match baseline {
        Some(baseline) if baseline > 0.0 => format!("{text} ({:.2})", value / baseline),
        _ => text,
    }
}

/// Results of one protocol at one index size.
struct ProtoResults {
    proto: Proto,
    saturation: Vec<(Route, Phase)>,
    rate: f64,
    fixed: Vec<(Route, Phase)>,
}

fn table(results: &ProtoResults, plan: &Plan) -> String {
    let concurrency = match results.proto {
        Proto::Http1 => format!("{} connections", plan.h1_connections),
        Proto::Http2 => format!(
            "{} connections x {} streams",
            plan.h2_connections, plan.h2_streams
        ),
    };
    let mut out = String::new();
    let row = |out: &mut String, cells: [&str; 9]| {
        let _ = writeln!(
            out,
            "{:<10} {:>15} {:>13} {:>13} {:>14} {:>13} {:>6} {:>13} {:>11}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8]
        );
    };
    let blocks = [
        (
            format!(
                "{} over {concurrency}, saturation (closed loop)",
                results.proto.name()
            ),
            &results.saturation,
        ),
        (
            format!(
                "{} over {concurrency}, fixed rate {} req/s (open loop)",
                results.proto.name(),
                grouped(results.rate as u64)
            ),
            &results.fixed,
        ),
    ];
    for (title, phases) in blocks {
        let _ = writeln!(out, "{title}; (ratio to baseline)");
        row(
            &mut out,
            [
                "route",
                "req/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "p99 rnd µs",
                "late%",
                "server µs/req",
                "all µs/req",
            ],
        );
        let base = phases
            .iter()
            .find(|(route, _)| *route == Route::Baseline)
            .map(|(_, phase)| phase);
        for (route, phase) in phases.iter() {
            // Ratios to the baseline, on every row but its own.
            let base = base.filter(|_| *route != Route::Baseline);
            let lat = |q: f64| {
                let v = phase.percentile_ns(q);
                cell(micros(v), v as f64, base.map(|b| b.percentile_ns(q) as f64))
            };
            let (server, all) = phase.cpu_per_request_ns();
            row(
                &mut out,
                [
                    route.name(),
                    &cell(
                        grouped(phase.rate() as u64),
                        phase.rate(),
                        base.map(Phase::rate),
                    ),
                    &lat(0.50),
                    &lat(0.99),
                    &lat(0.999),
                    &{
                        let v = phase.median_round_p99_ns();
                        cell(
                            micros(v),
                            v as f64,
                            base.map(|b| b.median_round_p99_ns() as f64),
                        )
                    },
                    &match phase.load {
                        Load::Saturation => "-".to_string(),
                        Load::Rate(_) => format!(
                            "{:.1}",
                            phase.late as f64 * 100.0 / phase.requests.max(1) as f64
                        ),
                    },
                    &cell(
                        micros(server),
                        server as f64,
                        base.map(|b| b.cpu_per_request_ns().0 as f64),
                    ),
                    &cell(
                        micros(all),
                        all as f64,
                        base.map(|b| b.cpu_per_request_ns().1 as f64),
                    ),
                ],
            );
        }
    }
    out
}

/// Everything measured at one index size.
struct SizeResults {
    built: BuiltSummary,
    protos: Vec<ProtoResults>,
}

/// What one index cost to build.
struct BuiltSummary {
    savepoints: usize,
    bytes_per_savepoint: f64,
    bytes_per_deployment: f64,
    build_time: Duration,
    rss_growth: i64,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), Linux {}, load average {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.duration = Duration::from_millis(500);
        args.warmup = Duration::from_millis(200);
        args.rounds = 1;
        args.sizes = vec![0, 10_000];
        args.deployments = 1_000;
    }
    ensure!(args.deployments > 0, "--deployments must be positive");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_threads = args.server_threads.unwrap_or(cores);
    let client_threads = args.client_threads.unwrap_or(cores);

    let server_tids: Arc<Mutex<Vec<String>>> = Arc::default();
    let server_rt = {
        let tids = server_tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(server_threads)
            .thread_name("server")
            .on_thread_start(move || {
                if let Some(tid) = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                {
                    tids.lock().unwrap_or_else(|p| p.into_inner()).push(tid);
                }
            })
            .enable_all()
            .build()?
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("client")
        .enable_all()
        .build()?;

    let bundle = generate(&CertRequest {
        service: "savepoint-webhook".into(),
        namespace: "default".into(),
        extra_dns: vec!["localhost".into()],
        ips: vec![],
        validity: Duration::from_secs(3600),
    })?;
    let key = certified_key_from_pem(
        "tls.crt".as_ref(),
        bundle.cert_pem.as_bytes(),
        "tls.key".as_ref(),
        bundle.key_pem.as_bytes(),
    )?;
    let tls = Arc::new(server_config(ReloadingCert::new(key), None)?);
    let policy = Policy::default();

    let deployments: Vec<DeploymentFacts> = (0..args.deployments).map(deployment).collect();
    let pool = pool(&deployments)?;
    let mutate_bodies = Arc::new(pool.mutate.clone());
    let validate_bodies = Arc::new(pool.validate.clone());
    let bodies: Vec<(Route, Arc<Vec<Bytes>>)> = [Route::Baseline, Route::Mutate, Route::Validate]
        .into_iter()
        .filter(|route| args.routes.contains(route))
        .map(|route| match route {
            Route::Validate => (route, validate_bodies.clone()),
            _ => (route, mutate_bodies.clone()),
        })
        .collect();
    ensure!(!bodies.is_empty(), "--routes names no route");
    let plan = Plan {
        warmup: args.warmup,
        duration: args.duration / args.rounds,
        rounds: args.rounds,
        h1_connections: args.h1_connections,
        h2_connections: args.h2_connections,
        h2_streams: args.h2_streams,
    };
    println!("savepoint-webhook load harness");
    println!("machine: {}", machine());
    println!(
        "threads: server {server_threads}, client {client_threads} (one process, sharing the cores); \
         each phase: {} rounds of {:?} warm-up + {:?} measured, interleaved across routes",
        plan.rounds, plan.warmup, plan.duration
    );
    println!(
        "requests: pool of {POOL} AdmissionReviews from tests/fixtures; /mutate: half name an \
         indexed location (COPIED), 1 in 8 dry run; /validate: CREATE and UPDATE; baseline: \
         the /mutate bodies"
    );
    println!();

    let mut rates: Vec<(Proto, f64)> = Vec::new();
    let mut all: Vec<SizeResults> = Vec::new();
    let mut failed = false;
    for &size in &args.sizes {
        let built = build_index(&policy, &deployments, size, &pool.referenced);
        let summary = BuiltSummary {
            savepoints: built.savepoints,
            bytes_per_savepoint: (built.savepoint_bytes - built.location_bytes as i64) as f64
                / built.savepoints.max(1) as f64,
            bytes_per_deployment: built.deployment_bytes as f64 / deployments.len() as f64,
            build_time: built.build_time,
            rss_growth: built.rss_growth,
        };
        println!(
            "== index: {} Savepoints ({} bulk + {} the requests reference), {} Deployments ==",
            grouped(summary.savepoints as u64),
            grouped(size as u64),
            pool.referenced.len(),
            grouped(deployments.len() as u64)
        );
        println!(
            "built in {:.3} s; {:.0} bytes per Savepoint beyond its location string \
             ({} location bytes, {} bytes in all, counted by the allocator); {:.0} bytes per \
             Deployment; RSS grew {} MiB",
            summary.build_time.as_secs_f64(),
            summary.bytes_per_savepoint,
            grouped(built.location_bytes as u64),
            grouped(built.savepoint_bytes as u64),
            summary.bytes_per_deployment,
            summary.rss_growth / (1024 * 1024)
        );
        let server = start_server(&server_rt, built.index, &policy, tls.clone())?;
        let target = Arc::new(Target::new(server.addr, &bundle.ca_pem)?);
        let protos = client_rt.block_on(async {
            check_answers(&target, &pool).await?;
            let mut protos = Vec::new();
            for &proto in &args.protocols {
                let saturation = run_rounds(
                    &target,
                    &plan,
                    proto,
                    &bodies,
                    Load::Saturation,
                    &server_tids,
                )
                .await?;
                // Half the lowest saturation rate of the first size, for every route and
                // size: latency is compared at one offered load.
                let rate = match (args.rate, rates.iter().find(|(p, _)| *p == proto)) {
                    (Some(rate), _) => rate,
                    (None, Some((_, rate))) => *rate,
                    (None, None) => {
                        let lowest = saturation
                            .iter()
                            .map(|(_, p)| p.rate())
                            .fold(f64::INFINITY, f64::min);
                        let rate = (lowest / 2.0).max(1.0);
                        rates.push((proto, rate));
                        rate
                    }
                };
                let fixed = run_rounds(
                    &target,
                    &plan,
                    proto,
                    &bodies,
                    Load::Rate(rate),
                    &server_tids,
                )
                .await?;
                let results = ProtoResults {
                    proto,
                    saturation,
                    rate,
                    fixed,
                };
                print!("{}", table(&results, &plan));
                for (route, phase) in results.saturation.iter().chain(&results.fixed) {
                    if phase.errors > 0 {
                        eprintln!(
                            "{} {}: {} errors, first: {}",
                            proto.name(),
                            route.name(),
                            phase.errors,
                            phase.first_error.as_deref().unwrap_or("?")
                        );
                    }
                }
                println!();
                protos.push(results);
            }
            anyhow::Ok(protos)
        })?;
        let _ = server.stop.send(());
        server_rt.block_on(server.done)?;
        failed |= protos
            .iter()
            .flat_map(|p| p.saturation.iter().chain(&p.fixed))
            .any(|(_, phase)| phase.errors > 0 || phase.requests == 0);
        all.push(SizeResults {
            built: summary,
            protos,
        });
    }
    summary(&all);
    if failed {
        bail!("some requests failed or a phase completed none; see above");
    }
    Ok(())
}

/// Saturation throughput of `route` over `proto` at one size.
fn saturation_rate(s: &SizeResults, proto: Proto, route: Route) -> Option<f64> {
    let p = s.protos.iter().find(|p| p.proto == proto)?;
    let (_, phase) = p.saturation.iter().find(|(r, _)| *r == route)?;
    Some(phase.rate())
}

/// The index sizes side by side, then the targets of the performance issue, met or
/// missed.
fn summary(all: &[SizeResults]) {
    let Some(first) = all.first() else {
        return;
    };
    println!("== by index size (saturation; ratio to the baseline of the same run) ==");
    println!(
        "{:>11} {:>8} {:>12} {:>8} | {:<8} {:>14} {:>10} {:>10} {:>10}",
        "Savepoints",
        "build s",
        "B/Savepoint",
        "RSS MiB",
        "protocol",
        "/mutate req/s",
        "baseline",
        "/mutate",
        "/validate"
    );
    for s in all {
        for p in &s.protos {
            let rate = |route| saturation_rate(s, p.proto, route);
            let base = rate(Route::Baseline);
            let ratio = |route| match (rate(route), base) {
                (Some(r), Some(base)) => format!("{:.2}", r / base.max(1.0)),
                _ => "-".into(),
            };
            println!(
                "{:>11} {:>8.3} {:>12.0} {:>8} | {:<8} {:>14} {:>10} {:>10} {:>10}",
                grouped(s.built.savepoints as u64),
                s.built.build_time.as_secs_f64(),
                s.built.bytes_per_savepoint,
                s.built.rss_growth / (1024 * 1024),
                p.proto.name(),
                rate(Route::Mutate).map_or("-".into(), |r| grouped(r as u64)),
                base.map_or("-".into(), |r| grouped(r as u64)),
                ratio(Route::Mutate),
                ratio(Route::Validate),
            );
        }
    }
    println!();
    println!("== targets ==");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for s in all {
        let size = grouped(s.built.savepoints as u64);
        for p in &s.protos {
            let base = saturation_rate(s, p.proto, Route::Baseline);
            for (route, phase) in &p.saturation {
                let Some(base) = base.filter(|_| *route != Route::Baseline) else {
                    continue;
                };
                let ratio = phase.rate() / base.max(1.0);
                println!(
                    "{size:>9} Savepoints, {:<8} {:<9} throughput {:>5.1}% of baseline (>= 85%): {}",
                    p.proto.name(),
                    route.name(),
                    ratio * 100.0,
                    verdict(ratio >= 0.85)
                );
            }
            for (route, phase) in &p.fixed {
                let (pooled, round) = (phase.percentile_ns(0.99), phase.median_round_p99_ns());
                println!(
                    "{size:>9} Savepoints, {:<8} {:<9} p99 {:>6} µs pooled, {:>6} µs median round, at {} req/s (< 1000 µs): {}",
                    p.proto.name(),
                    route.name(),
                    micros(pooled),
                    micros(round),
                    grouped(p.rate as u64),
                    match (pooled < 1_000_000, round < 1_000_000) {
                        (true, _) => "met",
                        (false, true) => "met in most rounds, MISSED pooled",
                        (false, false) => "MISSED",
                    }
                );
            }
        }
        println!(
            "{size:>9} Savepoints, {:.0} bytes per Savepoint beyond its location (<= 200): {}",
            s.built.bytes_per_savepoint,
            verdict(s.built.bytes_per_savepoint <= 200.0)
        );
    }
    // Index size must not matter: /mutate's share of the baseline at the largest size
    // against the smallest (the baseline does not read the index, so dividing by it
    // takes out whatever else changed on the machine between the two).
    if let Some(last) = all.last().filter(|_| all.len() > 1) {
        for p in &first.protos {
            let share = |s: &SizeResults| {
                Some(
                    saturation_rate(s, p.proto, Route::Mutate)?
                        / saturation_rate(s, p.proto, Route::Baseline)?,
                )
            };
            // What the machine alone moves throughput by: the widest spread between the
            // rounds of one route at either size.
            let spread = [first, last]
                .iter()
                .filter_map(|s| s.protos.iter().find(|q| q.proto == p.proto))
                .flat_map(|q| &q.saturation)
                .map(|(_, phase)| phase.round_spread() * 100.0)
                .fold(0.0, f64::max);
            if let (Some(small), Some(large)) = (share(first), share(last)) {
                let change = (large / small - 1.0) * 100.0;
                let bound = spread.max(5.0);
                println!(
                    "{} -> {} Savepoints, {:<8} /mutate throughput (share of baseline) {change:+.1}% (within ±{bound:.0}%: 5%, or the round-to-round spread if wider): {}",
                    grouped(first.built.savepoints as u64),
                    grouped(last.built.savepoints as u64),
                    p.proto.name(),
                    verdict(change.abs() <= bound)
                );
            }
        }
    }
}
