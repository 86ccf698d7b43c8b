#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Cold start against a real kube-apiserver: with Savepoints and Deployments already stored,
//! the time from the webhook's process start to its first `200` on `/readyz`, its peak
//! memory while syncing, and proof of how the initial state was read (the API server's own
//! count of LIST requests): paged lists on servers before 1.32, streaming lists from 1.32.
//!
//! `SAVEPOINT_WEBHOOK_COLD_START=SAVEPOINTS,DEPLOYMENTS[,PAGE_SIZE]` sets the stored objects
//! and the webhook's `--page-size` (default `5000,500,500`); the full run is
//! `100000,10000`:
//!
//! ```sh
//! SAVEPOINT_WEBHOOK_COLD_START=100000,10000 \
//!   cargo test --release --features e2e --test cold_start -- --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{
    Certs, Cluster, Webhook, free_port, index_entries, mk_deployment, mk_savepoint,
    write_webhook_kubeconfig,
};
use futures::StreamExt;
use savepoint_webhook::resources::{GROUP, SPEC_VERSION_ANNOTATION, VERSION};
use serde_json::Value;

/// Namespaces the objects are spread over.
const NAMESPACES: usize = 50;
/// Creates in flight while seeding.
const CONCURRENCY: usize = 64;
/// `serve`'s default page size (`--page-size`), unless `SAVEPOINT_WEBHOOK_COLD_START`
/// names another.
const PAGE_SIZE: usize = 500;
/// The memory limit `deploy/base/deployment.yaml` gives the container.
const MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// Savepoints, Deployments and the webhook's page size.
fn sizes() -> (usize, usize, usize) {
    let value = std::env::var("SAVEPOINT_WEBHOOK_COLD_START").unwrap_or_default();
    let mut parts = value.split(',').map(|p| p.trim().parse::<usize>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(savepoints), Some(deployments)) if deployments >= NAMESPACES => (
            savepoints,
            deployments,
            parts.next().flatten().unwrap_or(PAGE_SIZE).max(1),
        ),
        _ => (5_000, 500, PAGE_SIZE),
    }
}

fn namespace(i: usize) -> String {
    format!("cold-{:02}", i % NAMESPACES)
}

/// POSTs every manifest with [`CONCURRENCY`] in flight; returns the created objects.
async fn create_all(cluster: &Cluster, what: &str, manifests: Vec<Value>) -> Vec<Value> {
    let started = Instant::now();
    let count = manifests.len();
    let created: Vec<Value> = futures::stream::iter(manifests)
        .map(|manifest| async move {
            let namespace = manifest["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            let plural = format!("{}s", what.to_lowercase());
            let path = format!("/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}");
            let reply = cluster
                .request(
                    reqwest::Method::POST,
                    &path,
                    "application/json",
                    Some(&manifest),
                )
                .await;
            assert_eq!(reply.status, 201, "cannot create {what}: {:?}", reply.body);
            reply.body
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    println!(
        "seeded {count} {what}s in {:.1} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    created
}

/// The API server's count of LIST requests for `resource`, summed over codes.
async fn list_requests(cluster: &Cluster, resource: &str) -> u64 {
    let reply = cluster
        .request(reqwest::Method::GET, "/metrics", "", None)
        .await;
    assert_eq!(reply.status, 200, "GET /metrics of the API server");
    let text = reply.body.as_str().unwrap_or_default();
    let label = format!("resource=\"{resource}\"");
    text.lines()
        .filter(|line| line.starts_with("apiserver_request_total{"))
        .filter(|line| line.contains(&label) && line.contains("verb=\"LIST\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Lists `resource` in all namespaces page by page, as the webhook's initial list does,
/// reading only each page's continue token: how long the API server needs to serve what
/// the webhook must sync. Returns the time and the bytes received.
async fn list_pages(cluster: &Cluster, resource: &str, page_size: usize) -> (Duration, usize) {
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: PageMeta,
    }
    #[derive(serde::Deserialize)]
    struct PageMeta {
        #[serde(rename = "continue", default)]
        next: Option<String>,
    }
    let started = Instant::now();
    let mut bytes = 0;
    let mut next = String::new();
    loop {
        let path = format!("/apis/{GROUP}/{VERSION}/{resource}?limit={page_size}&continue={next}");
        let body = cluster.get_bytes(&path).await;
        bytes += body.len();
        let page: Page = serde_json::from_slice(&body).expect("a list page");
        match page.metadata.next.filter(|n| !n.is_empty()) {
            Some(token) => next = token,
            None => return (started.elapsed(), bytes),
        }
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // Fields after the command name, which ends with the last ')': state is field 3,
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |at| at + 2)..]
        .split(' ')
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // /proc counts in USER_HZ ticks, 100 per second on Linux.
    ticks as f64 / 100.0
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_with_stored_savepoints_and_deployments() {
    let (savepoints, deployments, page_size) = sizes();
    let cp = ControlPlane::start();
    let cluster = Cluster::connect(&cp).await;
    cluster.apply_crds().await;
    for i in 0..NAMESPACES {
        cluster.create_namespace(&namespace(i)).await;
    }

    let per_namespace = deployments / NAMESPACES;
    let created = create_all(
        &cluster,
        "Deployment",
        (0..per_namespace * NAMESPACES)
            .map(|j| {
                let version = (j % 7 + 1).to_string();
                mk_deployment(
                    &namespace(j),
                    &format!("app-{}", j / NAMESPACES),
                    Some(&version),
                )
            })
            .collect(),
    )
    .await;
    let uid_of = |namespace: &str, name: &str| {
        created
            .iter()
            .find(|d| d["metadata"]["namespace"] == namespace && d["metadata"]["name"] == name)
            .and_then(|d| d["metadata"]["uid"].as_str())
            .map(str::to_string)
    };
    let uids: Vec<Vec<String>> = (0..NAMESPACES)
        .map(|n| {
            (0..per_namespace)
                .map(|k| uid_of(&namespace(n), &format!("app-{k}")).expect("created"))
                .collect()
        })
        .collect();
    create_all(
        &cluster,
        "Savepoint",
        (0..savepoints)
            .map(|i| {
                let n = i % NAMESPACES;
                let k = (i / NAMESPACES) % per_namespace;
                // One in twenty is a copy of the previous Savepoint's location.
                let at = if i % 20 == 19 { i - 1 } else { i };
                let location = format!("s3://flink-state/jobs/{at:07}/chk-{}", at % 997);
                let mut manifest = mk_savepoint(
                    &namespace(n),
                    &format!("sp-{i:07}"),
                    &format!("app-{k}"),
                    &location,
                );
                manifest["metadata"]["annotations"] =
                    serde_json::json!({ SPEC_VERSION_ANNOTATION: "1" });
                manifest["spec"]["deploymentId"] = uids[n][k].clone().into();
                manifest
            })
            .collect(),
    )
    .await;

    // What the API server alone needs to serve the same pages (both kinds at once, as
    // the webhook lists them), and the CPU it and etcd spend on it: the floor under any
    // cold start. Pages ten times larger show whether round trips matter.
    let (apiserver, etcd) = cp.pids();
    let control_plane_cpu = || {
        [apiserver, etcd]
            .into_iter()
            .flatten()
            .map(cpu_seconds)
            .sum::<f64>()
    };
    let mut floors = Vec::new();
    for size in [page_size, 10 * page_size] {
        let cpu_before = control_plane_cpu();
        let (savepoint_pages, deployment_pages) = tokio::join!(
            list_pages(&cluster, "savepoints", size),
            list_pages(&cluster, "deployments", size)
        );
        floors.push(format!(
            "pages of {size}: {:.2} s, API server and etcd CPU {:.2} s, {:.1} MiB",
            savepoint_pages.0.max(deployment_pages.0).as_secs_f64(),
            control_plane_cpu() - cpu_before,
            mib((savepoint_pages.1 + deployment_pages.1) as u64),
        ));
    }

    let lists_before = (
        list_requests(&cluster, "savepoints").await,
        list_requests(&cluster, "deployments").await,
    );
    cluster.create_webhook_identity().await;
    let certs = Certs::generate();
    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let started = Instant::now();
    let webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &[
            "--verify-location",
            "off",
            "--page-size",
            &page_size.to_string(),
        ],
    )
    .await;
    let ready_after = started.elapsed();
    let pid = webhook.pid().expect("the webhook runs");
    let (peak, rss_ready) = memory(pid);
    let cpu_ready = cpu_seconds(pid);

    let metrics = webhook.metrics().await;
    assert_eq!(
        index_entries(&metrics, "savepoints"),
        Some(savepoints as u64),
        "every stored Savepoint indexed at readiness"
    );
    assert_eq!(
        index_entries(&metrics, "deployments"),
        Some((per_namespace * NAMESPACES) as u64),
        "every stored Deployment indexed at readiness"
    );
    let lists = (
        list_requests(&cluster, "savepoints").await - lists_before.0,
        list_requests(&cluster, "deployments").await - lists_before.1,
    );
    let pages = |objects: usize| objects.div_ceil(page_size) as u64;
    let streaming = cp.minor() >= 32;
    if streaming {
        assert_eq!(
            lists,
            (0, 0),
            "a {} server serves streaming lists: the initial state must come from the watches, not from LIST requests",
            cp.version()
        );
    } else {
        assert!(
            lists.0 >= pages(savepoints) && lists.1 >= pages(per_namespace * NAMESPACES),
            "the initial lists were not paged: {} LIST requests for {savepoints} Savepoints, {} for {} Deployments (page size {page_size})",
            lists.0,
            lists.1,
            per_namespace * NAMESPACES,
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_settled) = memory(pid);

    println!(
        "cold start on {} ({}): {savepoints} Savepoints, {} Deployments stored: ready {:.2} s after process start \
         (webhook CPU {:.2} s); peak RSS {:.1} MiB (at ready {:.1} MiB, 2 s later {:.1} MiB); \
         LIST requests: {} for Savepoints, {} for Deployments (page size {page_size})",
        cp.version(),
        if streaming {
            "streaming lists"
        } else {
            "paged lists"
        },
        per_namespace * NAMESPACES,
        ready_after.as_secs_f64(),
        cpu_ready,
        mib(peak),
        mib(rss_ready),
        mib(rss_settled),
        lists.0,
        lists.1,
    );
    println!(
        "the API server alone serves the same lists (both kinds at once): {}",
        floors.join("; ")
    );
    assert!(
        peak < MEMORY_LIMIT_BYTES,
        "peak RSS {:.1} MiB exceeds the shipped memory limit of {:.0} MiB",
        mib(peak),
        mib(MEMORY_LIMIT_BYTES)
    );
}
