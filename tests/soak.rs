#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Soak: a few thousand Savepoint creates from many concurrent clients through the real
//! API server, with duplicate locations (written several ways) and some malformed ones
//! mixed in, and the webhook killed and restarted once in the middle. Afterwards, read
//! back from the API server:
//!
//! - every create the API server accepted is stored, and every one it refused is not;
//! - every stored Savepoint carries the spec-version annotation and both Deployment
//!   references;
//! - every location held by more than one Savepoint of a namespace has at most one holder
//!   whose origin is not COPIED.
//!
//! Refusals are only the expected kinds: malformed locations, and calls that met the
//! webhook while it was down or not yet synced.
//!
//! Run with `cargo test --features e2e --test soak` after
//! `eval "$(tests/provision.sh --print-env)"`; `SAVEPOINT_WEBHOOK_SOAK_CREATES` changes the
//! number of creates (default 3000).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{
    Certs, Cluster, Webhook, free_port, mk_deployment, mk_savepoint, spec_version,
    write_webhook_kubeconfig,
};
use futures::StreamExt;
use kube::api::{Api, ListParams};
use savepoint_webhook::domain::{Location, LocationRules};
use savepoint_webhook::resources::{Origin, Savepoint};

const NAMESPACES: [&str; 2] = ["soak-a", "soak-b"];
const CLIENTS: usize = 32;
/// Distinct physical locations per namespace; creates pick among them, so most are held
/// several times.
const LOCATIONS: usize = 400;
/// Every this many creates, one with a location the webhook refuses.
const MALFORMED_EVERY: usize = 40;

/// What one create got from the API server.
#[derive(Debug)]
struct Outcome {
    namespace: &'static str,
    name: String,
    location: String,
    admitted: bool,
    message: String,
    /// Finished before the webhook was killed, while it was down, or after it was back.
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    Restarting,
    After,
}

/// The `i`th create: namespace, name and location (one of several spellings).
fn plan(i: usize) -> (&'static str, String, String) {
    let namespace = NAMESPACES[i % NAMESPACES.len()];
    // A fixed scramble, so that some locations are picked many times.
    let pick = (i.wrapping_mul(2_654_435_761) >> 7) % LOCATIONS;
    let path = format!("flink-state/soak/savepoint-{pick:06x}-0123456789ab");
    let location = if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 {
        format!("ftp://{path}")
    } else {
        match i % 5 {
            0 => format!("s3://{path}"),
            1 => format!("s3a://{path}/_metadata"),
            2 => format!("S3P://{path}/"),
            3 => format!("s3://{}", path.replace('/', "//")),
            _ => format!("s3a://{path}"),
        }
    };
    (namespace, format!("sp-{i:05}"), location)
}

/// Sorts a refusal into the kinds this test expects; `None` for anything else.
fn refusal_kind(outcome: &Outcome) -> Option<&'static str> {
    let message = &outcome.message;
    if outcome.location.starts_with("ftp://") && message.contains("has scheme \"ftp\"") {
        Some("malformed location")
    } else if message.contains("cannot decide yet") {
        Some("webhook not synced yet")
    } else if message.contains("failed calling webhook") {
        Some("webhook unreachable")
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_creates_with_a_webhook_restart() {
    let creates: usize = std::env::var("SAVEPOINT_WEBHOOK_SOAK_CREATES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    common::install_crypto_provider();
    let started = Instant::now();
    let step = |text: &str| eprintln!("soak [{:6.2}s] {text}", started.elapsed().as_secs_f64());
    let cp = ControlPlane::start();
    step(&format!("control plane ready at {}", cp.server_url()));
    let cluster = Cluster::connect(&cp).await;
    cluster.apply_crds().await;
    let mut uids = BTreeMap::new();
    for namespace in NAMESPACES {
        cluster.create_namespace(namespace).await;
        let uid = cluster
            .create_deployment(mk_deployment(namespace, "app", Some("5")))
            .await;
        uids.insert(namespace, uid);
    }
    cluster.create_webhook_identity().await;
    let kubeconfig = cp.dir().join("webhook-kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    // The shipped reconciler stays off: it would repair afterwards what admission let
    // through, and this test is about admission.
    let mut webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &["--reconcile", "false"],
    )
    .await;
    webhook.wait_index("deployments", 2).await;
    cluster
        .register_shipped_webhooks(&webhook.url(), &certs.ca_bundle)
        .await;
    let probe = mk_savepoint(NAMESPACES[0], "probe", "app", "s3://flink-state/soak/probe");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = cluster.create_savepoint(&probe, true).await;
        if reply.ok() && spec_version(&reply.savepoint("probe")) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API server does not call the webhook"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    step(&format!(
        "webhook registered; {creates} creates from {CLIENTS} clients"
    ));

    let done = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicUsize::new(Phase::Before as usize));
    let load = {
        let (cluster, done, phase) = (cluster.clone(), done.clone(), phase.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..creates)
                .map(|i| {
                    let (cluster, done, phase) = (cluster.clone(), done.clone(), phase.clone());
                    async move {
                        let (namespace, name, location) = plan(i);
                        let manifest = mk_savepoint(namespace, &name, "app", &location);
                        let reply = cluster.create_savepoint(&manifest, false).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        let phase = match phase.load(Ordering::Relaxed) {
                            0 => Phase::Before,
                            1 => Phase::Restarting,
                            _ => Phase::After,
                        };
                        Outcome {
                            namespace,
                            name,
                            location,
                            admitted: reply.ok(),
                            message: reply.message().to_string(),
                            phase,
                        }
                    }
                })
                .buffer_unordered(CLIENTS)
                .collect::<Vec<_>>()
                .await
        })
    };
    while done.load(Ordering::Relaxed) < creates / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    step(&format!(
        "{} creates done; killing the webhook",
        done.load(Ordering::Relaxed)
    ));
    phase.store(Phase::Restarting as usize, Ordering::Relaxed);
    webhook.stop();
    webhook.restart().await;
    phase.store(Phase::After as usize, Ordering::Relaxed);
    step(&format!(
        "webhook ready again after {} creates",
        done.load(Ordering::Relaxed)
    ));
    let outcomes = load.await.unwrap();
    step("all creates answered; reading back");

    let mut stored: BTreeMap<(&str, String), Savepoint> = BTreeMap::new();
    for namespace in NAMESPACES {
        let list = Api::<Savepoint>::namespaced(cluster.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .unwrap();
        for savepoint in list.items {
            let name = savepoint.metadata.name.clone().unwrap();
            stored.insert((namespace, name), savepoint);
        }
    }

    // Accepted creates are stored; refused ones are not, and were refused for an
    // expected reason.
    let mut refusals: BTreeMap<(&str, Phase), usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for outcome in &outcomes {
        let key = (outcome.namespace, outcome.name.clone());
        if outcome.admitted {
            assert!(
                stored.contains_key(&key),
                "admitted but not stored: {outcome:?}"
            );
            continue;
        }
        assert!(
            !stored.contains_key(&key),
            "refused but stored: {outcome:?}"
        );
        match refusal_kind(outcome) {
            Some(kind) => *refusals.entry((kind, outcome.phase)).or_default() += 1,
            None => unexpected.push(outcome),
        }
    }
    assert!(
        unexpected.is_empty(),
        "unexpected refusals: {unexpected:#?}"
    );
    assert_eq!(
        stored.len(),
        outcomes.iter().filter(|o| o.admitted).count(),
        "stored Savepoints that no create here made"
    );

    // Every stored Savepoint was mutated.
    for ((namespace, name), savepoint) in &stored {
        assert_eq!(spec_version(savepoint), Some("5"), "{namespace}/{name}");
        assert_eq!(savepoint.spec.deployment_name.as_deref(), Some("app"));
        assert_eq!(
            savepoint.spec.deployment_id.as_deref(),
            Some(uids[namespace].as_str()),
            "{namespace}/{name}"
        );
    }

    // At most one holder per location that is not COPIED.
    let rules = LocationRules::default();
    let mut holders: BTreeMap<(&str, String), Vec<&Savepoint>> = BTreeMap::new();
    for ((namespace, _), savepoint) in &stored {
        let location = Location::parse(&savepoint.spec.savepoint_location, &rules)
            .unwrap()
            .to_string();
        holders
            .entry((namespace, location))
            .or_default()
            .push(savepoint);
    }
    let shared = holders.values().filter(|h| h.len() > 1).count();
    let mut violations = Vec::new();
    for ((namespace, location), group) in &holders {
        let originals: Vec<_> = group
            .iter()
            .filter(|s| s.spec.origin != Some(Origin::Copied))
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        if originals.len() > 1 {
            let phases: BTreeSet<_> = outcomes
                .iter()
                .filter(|o| o.namespace == *namespace && originals.contains(&o.name))
                .map(|o| format!("{}: {:?}", o.name, o.phase))
                .collect();
            violations.push(format!(
                "{namespace} {location}: {} holders, not COPIED: {phases:?}",
                group.len()
            ));
        }
    }
    let admitted = outcomes.iter().filter(|o| o.admitted).count();
    step(&format!(
        "{} creates: {admitted} admitted, refused {refusals:?}; {} locations held, {shared} by several Savepoints",
        outcomes.len(),
        holders.len(),
    ));
    assert!(
        violations.is_empty(),
        "locations with more than one holder not COPIED:\n{}",
        violations.join("\n")
    );
    assert!(
        refusals
            .keys()
            .any(|(kind, _)| *kind == "malformed location"),
        "no malformed create was refused"
    );
    drop(webhook);
}
