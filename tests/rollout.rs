//! A rolling restart refuses no Savepoint create. Two replicas serve behind one port (a
//! forwarder that routes new connections only to replicas whose `/readyz` answered 200 at
//! its last poll, as the endpoints controller and kube-proxy do, with their lag) that the
//! API server calls with the shipped `failurePolicy: Fail`. While 20 creates a second
//! stream in, half of them to a location held since before, each replica in turn gets
//! SIGTERM, exits, and is replaced by a new process on a new port (a new pod) that must be
//! ready before the next is stopped. Afterwards: no create failed, no connection met a closed port, and every
//! create is stored once, annotated, and COPIED exactly when its location was held.
//!
//! `SAVEPOINT_WEBHOOK_ROLLOUT_DELAY` sets the replicas' `--shutdown-delay` (default: the
//! binary's); `0s` shows what the delay prevents.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Guarded};
use common::pacing;
use common::{
    Certs, Cluster, Forwarder, Webhook, free_port, install_crypto_provider, kit, mk_savepoint,
    spec_version, webhook_bin, write_webhook_kubeconfig,
};
use kube::api::{Api, ListParams};
use savepoint_webhook::resources::{Origin, Savepoint};

const NS: &str = "rollout";
/// Held by a Savepoint created before the stream: every create naming it is COPIED.
const SHARED: &str = "s3://flink-state/rollout/savepoint-0b0b0b-000000000001";
/// Concurrent clients, each sending one create every [`PERIOD`].
const CLIENTS: usize = 4;
const PERIOD: Duration = Duration::from_millis(200);
/// How often the forwarder asks each replica's `/readyz`: the endpoints' lag.
const POLL: Duration = Duration::from_secs(1);
/// Traffic before the first and after the last restart, and after each replacement is
/// ready.
const SETTLE: Duration = Duration::from_secs(3);
/// `serve`'s default `--shutdown-delay`.
const DEFAULT_DELAY: Duration = Duration::from_secs(5);

/// What one create got from the API server.
struct Outcome {
    name: String,
    /// Sent with [`SHARED`] as its location.
    shared: bool,
    /// Seconds after the stream started that the answer came.
    at: f64,
    /// The stored object as the create returned it, or the refusal.
    result: Result<Savepoint, String>,
}

/// One client of the stream: a create every [`PERIOD`] until `stop`, even ones to
/// [`SHARED`], odd ones to a location of their own.
async fn stream(
    cluster: Cluster,
    client: usize,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> Vec<Outcome> {
    let cluster = &cluster;
    pacing::every(
        PERIOD * client as u32 / CLIENTS as u32,
        PERIOD,
        &stop,
        |seq| async move {
            let shared = seq % 2 == 0;
            let name = format!("roll-{client}-{seq}");
            let location = if shared {
                SHARED.to_string()
            } else {
                format!("s3://flink-state/rollout/{name}")
            };
            // The platform's own origin: kept on a location of its own, COPIED on the held one.
            let mut manifest = mk_savepoint(NS, &name, "app", &location);
            manifest["spec"]["origin"] = "USER_REQUEST".into();
            let reply = cluster.create_savepoint(&manifest, false).await;
            let result = if reply.ok() {
                serde_json::from_value(reply.body.clone())
                    .map_err(|e| format!("not a Savepoint: {e}"))
            } else {
                Err(format!("HTTP {}: {}", reply.status, reply.message()))
            };
            Outcome {
                name,
                shared,
                at: t0.elapsed().as_secs_f64(),
                result,
            }
        },
    )
    .await
}

/// Requests to `/mutate` and `/validate` a replica has answered, from its metrics.
fn reviews_answered(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("savepoint_webhook_http_requests_total{"))
        .filter(|l| l.contains("route=\"/mutate\"") || l.contains("route=\"/validate\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What is wrong with a create's answer or its stored object, if anything.
fn misdecided(outcome: &Outcome, stored: &Savepoint, what: &str) -> Option<String> {
    let origin = stored.spec.origin;
    if spec_version(stored) != Some("5") {
        return Some(format!(
            "{} ({what}): no spec-version annotation",
            outcome.name
        ));
    }
    match (outcome.shared, origin == Some(Origin::Copied)) {
        (true, false) => Some(format!(
            "{} ({what}): location already held, origin {origin:?} instead of COPIED",
            outcome.name
        )),
        (false, true) => Some(format!(
            "{} ({what}): a location of its own, yet COPIED",
            outcome.name
        )),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_replicas_refuses_no_create() {
    install_crypto_provider();
    let cp = ControlPlane::start();
    let version = cp.version().to_string();
    let (cluster, _uid) = Cluster::prepared(&cp, NS, "5").await;
    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let configured = std::env::var("SAVEPOINT_WEBHOOK_ROLLOUT_DELAY").ok();
    let delay = configured.as_deref().map_or(DEFAULT_DELAY, |d| {
        savepoint_webhook::duration::parse_duration(d).unwrap()
    });
    let extra: Vec<&str> = configured
        .as_deref()
        .map(|d| vec!["--shutdown-delay", d])
        .unwrap_or_default();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let log = cp.dir().join(format!("replica-{port}.log"));
        replicas.push(Webhook::start_with(&kubeconfig, &certs, port, log, &extra).await);
    }
    let forwarder = Forwarder::start(&certs.ca_pem(), POLL).await;
    for replica in &replicas {
        forwarder.add(replica.port()).await;
    }
    cluster
        .register_shipped_webhooks(&forwarder.url(), &certs.ca_bundle)
        .await;

    // The API server calls the webhooks once their configurations are live.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    loop {
        stored += 1;
        let name = format!("probe-{stored}");
        let location = format!("s3://flink-state/rollout/{name}");
        let reply = cluster
            .create_savepoint(&mk_savepoint(NS, &name, "app", &location), false)
            .await;
        if reply.ok() && spec_version(&reply.savepoint("probe create")) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "on {version}: the API server did not call the webhook through the forwarder"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seed = cluster
        .create_savepoint(&mk_savepoint(NS, "seed", "app", SHARED), false)
        .await
        .savepoint("the Savepoint that holds the shared location");
    assert_eq!(spec_version(&seed), Some("5"), "on {version}: seed mutated");
    stored += 1;
    for replica in &replicas {
        replica.wait_index("savepoints", stored).await;
    }
    let mut answered = Vec::new();
    for replica in &replicas {
        answered.push(reviews_answered(&replica.metrics().await));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(stream(cluster.clone(), client, stop.clone(), t0)))
        .collect();
    tokio::time::sleep(SETTLE).await;

    // The API server multiplexes its calls over one HTTP/2 connection: A is the replica
    // that holds it, so that each replica is stopped while it carries the stream (B gets
    // the connection when A closes it).
    for (replica, answered) in replicas.iter().zip(&mut answered) {
        *answered = reviews_answered(&replica.metrics().await) - *answered;
    }
    if answered[1] > answered[0] {
        replicas.swap(0, 1);
    }
    let mut timeline = Vec::new();
    for (name, replica) in ["a", "b"].into_iter().zip(&mut replicas) {
        let before = reviews_answered(&replica.metrics().await);
        let signalled = Instant::now();
        replica.signal_terminate();
        timeline.push(format!(
            "{:.1}s SIGTERM {name} (port {})",
            t0.elapsed().as_secs_f64(),
            replica.port()
        ));
        let mut during = None;
        if delay > Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ready = replica.readyz_status().await;
            assert_eq!(
                ready,
                Some(503),
                "on {version}: replica {name} still open and unready 0.3 s after SIGTERM"
            );
            tokio::time::sleep(delay - Duration::from_millis(1300)).await;
            let reviews = reviews_answered(&replica.metrics().await) - before;
            assert!(
                reviews > 0,
                "on {version}: replica {name} answered no review during its shutdown delay: the restart tested nothing"
            );
            during = Some(reviews);
        }
        let status = replica.wait_exit(delay + Duration::from_secs(30)).await;
        let exited = signalled.elapsed();
        assert!(
            status.is_some_and(|s| s.success()),
            "on {version}: replica {name} exits 0 after SIGTERM: {status:?}\n{}",
            replica.log_tail(20)
        );
        timeline.push(format!(
            "{:.1}s {name} exited 0, {exited:.1?} after SIGTERM; reviews it answered from SIGTERM to 1 s before the end of its delay: {}",
            t0.elapsed().as_secs_f64(),
            during.map_or("not measured".into(), |n| n.to_string())
        ));
        let port = free_port();
        let log = cp.dir().join(format!("replica-{port}.log"));
        *replica = Webhook::start_with(&kubeconfig, &certs, port, log, &extra).await;
        forwarder.add(port).await;
        timeline.push(format!(
            "{:.1}s {name} replaced on port {port}, ready",
            t0.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(SETTLE).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }

    let listed = Api::<Savepoint>::namespaced(cluster.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut by_name: BTreeMap<String, Vec<&Savepoint>> = BTreeMap::new();
    for sp in &listed {
        let name = sp.metadata.name.clone().unwrap_or_default();
        if name.starts_with("roll-") {
            by_name.entry(name).or_default().push(sp);
        }
    }
    let sent = outcomes.len();
    let shared = outcomes.iter().filter(|o| o.shared).count();
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{:.1}s {}: {e}", o.at, o.name))
        })
        .collect();
    let mut wrong = Vec::new();
    for outcome in &outcomes {
        let copies = by_name.get(&outcome.name).map_or(&[][..], Vec::as_slice);
        match (&outcome.result, copies) {
            (Ok(answer), [stored]) => {
                wrong.extend(misdecided(outcome, answer, "as created"));
                wrong.extend(misdecided(outcome, stored, "as stored"));
            }
            (Ok(_), copies) => wrong.push(format!(
                "{}: created, stored {} times",
                outcome.name,
                copies.len()
            )),
            (Err(_), []) => {}
            (Err(_), copies) => wrong.push(format!(
                "{}: refused, yet stored {} times",
                outcome.name,
                copies.len()
            )),
        }
    }
    let unsent = by_name
        .keys()
        .filter(|name| !outcomes.iter().any(|o| &o.name == *name))
        .count();
    let timeline = timeline.join("\n  ");
    eprintln!(
        "rollout on {version}: {sent} creates sent ({shared} to a held location), {} succeeded, {} failed; {} stored, {} misdecided; shutdown delay {delay:?}, endpoints poll {POLL:?}",
        sent - failures.len(),
        failures.len(),
        by_name.len(),
        wrong.len()
    );
    eprintln!(
        "rollout on {version}: forwarder connections by replica port {:?}, refused by a replica counted ready {}, with no ready replica {}\n  {timeline}",
        forwarder.connections(),
        forwarder.refused(),
        forwarder.unrouted()
    );
    assert!(sent > 0, "on {version}: no create was sent");
    assert!(
        failures.is_empty(),
        "on {version}: {} of {sent} creates failed during the rolling restart:\n  {}\n  timeline:\n  {timeline}",
        failures.len(),
        failures.join("\n  ")
    );
    assert_eq!(
        (forwarder.refused(), forwarder.unrouted()),
        (0, 0),
        "on {version}: connections met a closed port or no ready replica (through kube-proxy, connection refused)\n  {timeline}"
    );
    assert!(
        wrong.is_empty() && unsent == 0,
        "on {version}: {} creates misdecided or stored wrongly, {unsent} stored that were never sent:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

/// A second signal during the delay goes straight to draining; until then the replica is
/// unready but answers reviews. No cluster: the example state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_skips_the_rest_of_the_delay() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args: Vec<OsString> = [
        "serve",
        "--state",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state"),
        "--self-signed",
        "--self-signed-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--verify-location",
        "off",
        "--shutdown-delay",
        "60s",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let log = dir.path().join("serve.log");
    let mut process = Guarded::spawn(&webhook_bin(), &args, &[], &log, None);
    let ca = dir.path().join("ca.crt");
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = loop {
        if let Ok(pem) = std::fs::read(&ca) {
            let http = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let ready = http.get(format!("{url}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break http;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve not ready: {}",
            common::log_tail(&log, 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    process.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "unready at once");
    let review = http
        .post(format!("{url}/mutate"))
        .header("Content-Type", "application/json")
        .body(kit::fixture("savepoint-create.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        review.status(),
        200,
        "reviews still answered during the delay"
    );
    let answer: serde_json::Value = review.json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    let second = Instant::now();
    process.signal("INT");
    let status = loop {
        if let Some(status) = process.exited() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "still running 5 s after the second signal (delay 60s): {}",
            common::log_tail(&log, 20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    eprintln!(
        "second signal: exited {:.1?} after it, 60 s delay skipped",
        second.elapsed()
    );
}
