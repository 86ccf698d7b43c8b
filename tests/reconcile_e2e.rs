#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Convergence on a real kube-apiserver: with the webhook configurations absent, drift is
//! created (duplicate locations without COPIED, Savepoints without the annotation or the
//! Deployment's uid); two replicas start, one takes the Lease and repairs everything with
//! Events, the other changes nothing; when the leader stops the other takes over and
//! repairs new drift; a concurrent user edit is never lost; `audit` reports the drift
//! before and nothing after. `SAVEPOINT_WEBHOOK_DRIFT` sets the number of drifted
//! Savepoints (default 300).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{
    Certs, Cluster, Webhook, free_port, mk_savepoint, spec_version, write_webhook_kubeconfig,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use savepoint_webhook::domain::LocationRules;
use savepoint_webhook::domain::Policy;
use savepoint_webhook::index::SavepointRecord;
use savepoint_webhook::index::{DeploymentFacts, Index};
use savepoint_webhook::reconcile::plan::plan;
use savepoint_webhook::reconcile::runner::repair_patch;
use savepoint_webhook::resources::{SPEC_VERSION_ANNOTATION, Savepoint};
use serde_json::json;

const NS: &str = "drift";
const LEASE: &str = "savepoint-webhook";

fn drift_count() -> usize {
    std::env::var("SAVEPOINT_WEBHOOK_DRIFT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

async fn savepoints(cluster: &Cluster) -> Vec<Savepoint> {
    let api: Api<Savepoint> = Api::namespaced(cluster.client.clone(), NS);
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("list Savepoints");
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return out,
        }
    }
}

/// What still breaks the rules: missing annotation or reference, or a location with more
/// than one holder whose origin is not COPIED, or whose earliest holder was changed.
fn drift_left(all: &[Savepoint], uid: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_location: BTreeMap<String, Vec<&Savepoint>> = BTreeMap::new();
    for sp in all {
        let name = sp.metadata.name.clone().unwrap_or_default();
        let version = spec_version(sp);
        if version != Some("3") {
            problems.push(format!("{name}: annotation {version:?}"));
        }
        if sp.spec.deployment_id.as_deref() != Some(uid)
            || sp.spec.deployment_name.as_deref() != Some("app")
        {
            problems.push(format!(
                "{name}: reference {:?}/{:?}",
                sp.spec.deployment_name, sp.spec.deployment_id
            ));
        }
        let location = sp
            .spec
            .savepoint_location
            .trim_end_matches('/')
            .replace("s3a://", "s3://");
        by_location.entry(location).or_default().push(sp);
    }
    for (location, holders) in by_location {
        let non_copied = holders
            .iter()
            .filter(|sp| sp.spec.origin != Some(savepoint_webhook::resources::Origin::Copied))
            .count();
        if non_copied > 1 {
            problems.push(format!("{location}: {non_copied} holders are not COPIED"));
        }
        // Creation times have one-second resolution: any of the holders created in the
        // earliest second may be the one that keeps its origin.
        let created = |sp: &Savepoint| sp.metadata.creation_timestamp.clone().map(|t| t.0);
        let earliest = holders.iter().map(|sp| created(sp)).min().flatten();
        let first_kept = holders.iter().any(|sp| {
            created(sp) == earliest
                && sp.spec.origin != Some(savepoint_webhook::resources::Origin::Copied)
        });
        if holders.len() > 1 && !first_kept {
            problems.push(format!("{location}: the earliest holder lost its origin"));
        }
    }
    problems
}

async fn wait_converged(
    cluster: &Cluster,
    uid: &str,
    timeout: Duration,
    webhooks: &[&Webhook],
) -> Duration {
    let started = Instant::now();
    loop {
        let left = drift_left(&savepoints(cluster).await, uid);
        if left.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            let logs: Vec<String> = webhooks.iter().map(|w| w.log_tail(30)).collect();
            panic!(
                "not converged after {timeout:?}: {} problems, e.g. {:?}\nlogs:\n{}",
                left.len(),
                &left[..left.len().min(5)],
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (at most 20 s from `since`) until `identity` holds the Lease; the time it took.
async fn wait_for_holder(cluster: &Cluster, identity: &str, since: Instant) -> Duration {
    loop {
        if lease_holder(cluster).await.as_deref() == Some(identity) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "no takeover by {identity} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lease_holder(cluster: &Cluster) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), "savepoint-webhook");
    api.get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

fn applied_repairs(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("savepoint_webhook_reconcile_repairs_total")
                && l.contains("result=\"applied\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn audit(kubeconfig: &std::path::Path) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(common::webhook_bin())
        .args(["audit", "--output", "json"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("audit runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_converge_the_cluster_and_fail_over() {
    common::install_crypto_provider();
    let cp = ControlPlane::start();
    let (cluster, uid) = Cluster::prepared(&cp, NS, "3").await;

    // Drift, with no webhook configuration installed: every Savepoint lacks the annotation
    // and the Deployment's uid; every pair shares a location, spelled two ways.
    let count = drift_count();
    let create_started = Instant::now();
    for i in 0..count {
        let location = if i % 2 == 0 {
            format!("s3://flink-state/drift/chk-{}", i / 2)
        } else {
            format!("s3a://flink-state/drift/chk-{}/", i / 2)
        };
        let mut manifest = mk_savepoint(NS, &format!("sp-{i:05}"), "app", &location);
        manifest["spec"]["origin"] = json!("USER_REQUEST");
        cluster
            .create_savepoint(&manifest, false)
            .await
            .savepoint("creating drift");
    }
    eprintln!(
        "reconcile e2e: created {count} drifted Savepoints in {:?}",
        create_started.elapsed()
    );

    let (code, before) = audit(cp.kubeconfig_path());
    assert_eq!(code, 1, "audit must report drift: {before}");
    assert_eq!(before["countsByRule"]["missing-annotation"], count);
    assert_eq!(before["countsByRule"]["duplicate-location"], count / 2);
    assert_eq!(
        before["countsByRule"]["missing-deployment-reference"],
        count
    );

    let kubeconfig = cp.dir().join("webhook-kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let flags = |identity: &'static str| {
        [
            "--reconcile-interval",
            "1s",
            "--lease-duration",
            "4s",
            "--identity",
            identity,
        ]
    };
    let replicas_started = Instant::now();
    let mut a = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("a.log"),
        &flags("replica-a"),
    )
    .await;
    let mut b = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("b.log"),
        &flags("replica-b"),
    )
    .await;
    let converged = wait_converged(&cluster, &uid, Duration::from_secs(300), &[&a, &b]).await;
    eprintln!(
        "reconcile e2e: {count} drifted Savepoints converged {:?} after both replicas were ready ({:?} after start)",
        converged,
        replicas_started.elapsed()
    );

    let leader = lease_holder(&cluster)
        .await
        .expect("a replica holds the Lease");
    let (leader_hook, other_hook) = if leader == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (leader_metrics, other_metrics) = (leader_hook.metrics().await, other_hook.metrics().await);
    assert!(
        applied_repairs(&leader_metrics) >= count as u64,
        "the leader repaired:\n{leader_metrics}"
    );
    assert_eq!(
        applied_repairs(&other_metrics),
        0,
        "the other replica changed nothing:\n{other_metrics}"
    );
    let gauge_started = Instant::now();
    while !other_hook
        .metrics()
        .await
        .contains("savepoint_webhook_audit_findings{rule=\"duplicate-location\"} 0")
    {
        assert!(
            gauge_started.elapsed() < Duration::from_secs(15),
            "every replica exports the audit gauge, and it reaches 0:\n{}",
            other_hook.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let events = cluster
        .request(
            reqwest::Method::GET,
            &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
            "application/json",
            None,
        )
        .await;
    assert!(events.ok(), "listing Events: {}", events.message());
    let body = &events.body;
    let repaired = body["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|e| {
                e["reason"] == "Repaired" && e["reportingController"] == "savepoint-webhook"
            })
            .count()
    });
    assert!(
        repaired >= count.min(100) / 2,
        "Events recorded for the repairs: {repaired}"
    );

    let (code, after) = audit(cp.kubeconfig_path());
    assert_eq!(
        (code, &after["findings"]),
        (0, &json!([])),
        "audit after convergence: {after}"
    );

    // A second pass over a converged cluster changes nothing.
    let applied_before = applied_repairs(&leader_hook.metrics().await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        applied_repairs(&leader_hook.metrics().await),
        applied_before,
        "idempotent"
    );

    // Failover on SIGTERM: the leader gives up the Lease as it exits; the other takes it at
    // its next attempt and repairs new drift.
    let (leader_name, other_name) = if leader == "replica-a" {
        ("replica-a", "replica-b")
    } else {
        ("replica-b", "replica-a")
    };
    let stopped = Instant::now();
    let status = leader_hook.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "the leader exits cleanly on SIGTERM: {status:?}"
    );
    let holder_at_exit = lease_holder(&cluster).await;
    assert_ne!(
        holder_at_exit.as_deref(),
        Some(leader_name),
        "the leader gave up the Lease before exiting"
    );
    let mut late = mk_savepoint(
        NS,
        "late-duplicate",
        "app",
        "s3://flink-state/drift/chk-0/_metadata",
    );
    late["spec"]["origin"] = json!("SUSPEND");
    cluster
        .create_savepoint(&late, false)
        .await
        .savepoint("creating new drift");
    let takeover = wait_for_holder(&cluster, other_name, stopped).await;
    eprintln!(
        "reconcile e2e: takeover {takeover:?} after SIGTERM of the leader (lease released; lease 4s)"
    );
    wait_converged(&cluster, &uid, Duration::from_secs(30), &[&*other_hook]).await;

    // Failover on SIGKILL: nothing is given up, the Lease must expire first.
    leader_hook.restart().await;
    let killed = Instant::now();
    other_hook.stop();
    let takeover = wait_for_holder(&cluster, leader_name, killed).await;
    eprintln!("reconcile e2e: takeover {takeover:?} after SIGKILL of the leader (lease 4s)");
    leader_hook.stop();
    wait_converged(&cluster, &uid, Duration::from_secs(30), &[&*other_hook]).await;

    // A concurrent user edit is never clobbered: a repair planned on an old
    // resourceVersion is refused by its precondition, and the edit survives.
    let api: Api<Savepoint> = Api::namespaced(cluster.client.clone(), NS);
    other_hook.stop();
    let edited = mk_savepoint(NS, "edited", "app", "s3://flink-state/drift/edited");
    cluster
        .create_savepoint(&edited, false)
        .await
        .savepoint("creating the edited one");
    let stored = api.get("edited").await.expect("get");
    let record = SavepointRecord::from_object(&serde_json::to_value(&stored).unwrap()).unwrap();
    let mut index = Index::new(LocationRules::default());
    index.apply_deployment(DeploymentFacts::from_parts(
        NS,
        "app",
        &uid,
        Some(&[(SPEC_VERSION_ANNOTATION.to_string(), "3".to_string())].into()),
        None,
    ));
    let planned = plan(&[record], &index, &Policy::default());
    assert_eq!(planned.repairs.len(), 1);
    let user_edit = cluster
        .patch_savepoint(
            NS,
            "edited",
            &json!({ "metadata": { "labels": { "team": "streaming" } } }),
        )
        .await;
    assert!(user_edit.ok(), "{}", user_edit.message());
    let stale = api
        .patch(
            "edited",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(repair_patch(&planned.repairs[0])),
        )
        .await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(s)) if s.code == 422),
        "a stale repair must be refused: {stale:?}"
    );
    other_hook.restart().await;
    wait_converged(&cluster, &uid, Duration::from_secs(30), &[&*other_hook]).await;
    let kept = api.get("edited").await.expect("get");
    assert_eq!(
        kept.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("streaming"),
        "the user's edit survived"
    );
}
