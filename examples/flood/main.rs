//! Flood harness: the real binary's peak memory under each kind of hostile traffic.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example flood -- --binary target/release/savepoint-webhook \
//!     --kind all --seconds 20
//! ```
//!
//! For each flood the harness starts `BINARY serve --state deploy/examples/state
//! --self-signed --verify-location off` on a free loopback port (a fresh process each, so
//! each peak is its own), waits for `/readyz`, samples the process's `/proc/PID/status`
//! every 50 ms and floods it for `--seconds`. The request floods run closed loops over
//! HTTP/2 (`--connections × --streams` requests in flight, each sent when the previous
//! answer arrived) and stop early when the RSS passes `--rss-limit-mib`. When a flood ends,
//! with whatever it holds still open, a fresh client connects and posts the captured
//! create; it must be answered 200, allowed, within 5 s. The table gives the requests
//! sent, the answers by status, the RSS at the start, its peak (VmHWM) and at the end, the
//! largest answer body where it matters, and the fresh client's outcome.
//!
//! The floods (`--kind`), each the reproduction of a reported defect:
//! - `generate-name`: creates with an empty name and a ~700 KiB `generateName`, each of a
//!   new location (each leaves a provisional hold);
//! - `unique-locations`: creates, each of a new location;
//! - `copied-warning`: 300 creates of one location with 250-character names, then dry-run
//!   creates of it, whose COPIED warning names every holder;
//! - `h2-unread`: 2 HTTP/2 connections × 128 streams whose client advertises a zero
//!   window and never reads, posting dry runs with ~500 KiB uids, held for the duration;
//! - `idle-slots`: 1 024 HTTP/2 connections that each get one answer and stay quiet; a new
//!   client tries its luck right after they are open, and again at the end;
//! - `error-echo`: posts with a ~900 KiB top-level `kind`, which the 400 answer names.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

mod cli;
mod client;
mod floods;
#[path = "../support/harness.rs"]
mod harness;
mod report;
mod reviews;
mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use cli::*;
use client::*;
use floods::*;
use harness::*;
use report::*;
use reviews::{Fill, Template};
use server::*;

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.client_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build()?;
    let kinds = selected(&args.kind);
    println!(
        "flood of {} for {} s per kind, {} connections × {} streams; {}",
        args.binary.display(),
        args.seconds,
        args.connections,
        args.streams,
        machine()
    );
    let mut rows = Vec::new();
    for kind in kinds {
        eprintln!("flooding with {}", kind.name());
        rows.push(runtime.block_on(measure(&args, kind))?);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Runs one flood against a fresh server.
async fn measure(args: &Args, kind: Which) -> Result<Row> {
    let (mut served, target) = Served::start(&args.binary).await?;
    let memory = Memory::sample(served.pid)?;
    let start_mib = memory.rss_mib();
    let started = Instant::now();
    let ctx = Ctx {
        target: target.clone(),
        deadline: started + Duration::from_secs(args.seconds),
        over: memory.over(args.rss_limit_mib),
        connections: args.connections,
        streams: args.streams,
    };
    let run = floods::run(kind, &ctx).await.with_context(|| {
        format!(
            "{} flood; the server logged: {}",
            kind.name(),
            served.log_tail()
        )
    })?;
    let end_mib = memory.now_mib().unwrap_or_else(|| memory.rss_mib());
    let fresh = fresh_client(&target).await;
    let peak_mib = memory.now_hwm_mib().unwrap_or_else(|| memory.hwm_mib());
    let exited = (!served.alive()).then(|| served.log_tail());
    drop(run.hold);
    let limited_after = run.tally.limited.map(|at| at - started);
    Ok(Row {
        kind,
        tally: run.tally,
        start_mib,
        peak_mib,
        end_mib,
        fresh,
        limited_after,
        exited,
    })
}
