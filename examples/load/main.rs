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

mod alloc;
mod cli;
mod client;
mod dataset;
#[path = "../support/harness.rs"]
mod harness;
mod index;
mod measure;
mod report;
mod server;

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::net::SocketAddr;
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

use alloc::*;
use cli::*;
use client::*;
use dataset::*;
use harness::*;
use index::*;
use measure::*;
use report::*;
use server::*;

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
