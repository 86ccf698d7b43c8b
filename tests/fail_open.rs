//! The fail-open install (`deploy/overlays/fail-open`: `failurePolicy: Ignore` on both
//! webhooks) loses no invariant. With the webhook down, valid creates are stored
//! unchanged and what the CRD schema forbids is still refused by the API server itself;
//! once the webhook is back, its reconciler adds the annotation and the Deployment
//! reference and sets COPIED on what was stored meanwhile (time to converge printed). On
//! 1.30 and later the overlay's `matchConditions` patch is accepted and exempts exactly the
//! named identity.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]

mod common;

use std::time::{Duration, Instant};

use common::control_plane::ControlPlane;
use common::{
    Certs, Cluster, Webhook, free_port, install_crypto_provider, mk_savepoint, spec_version,
    write_webhook_kubeconfig,
};
use savepoint_webhook::resources::{Origin, Savepoint};

const NS: &str = "fail-open";
const FAIL_OPEN: &str = "deploy/overlays/fail-open/fail-open.yaml";
const MATCH_CONDITIONS: &str = "deploy/overlays/fail-open/match-conditions.yaml";
/// The identity `match-conditions.yaml` exempts.
const EXEMPT_USER: &str = "system:serviceaccount:vvp:vvp-controller";
const SHARED: &str = "s3://flink-state/fail-open/savepoint-0a0a0a-000000000001";

/// Savepoints stored while the webhook was down that the reconciler has not yet brought
/// to what admission would have made of them.
fn unrepaired(savepoints: &[Savepoint], uid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let shared: Vec<&Savepoint> = savepoints
        .iter()
        .filter(|sp| sp.spec.savepoint_location == SHARED)
        .collect();
    for sp in savepoints {
        let name = sp.metadata.name.clone().unwrap_or_default();
        if spec_version(sp) != Some("5") {
            out.push(format!("{name}: no annotation"));
        }
        if sp.spec.deployment_id.as_deref() != Some(uid) {
            out.push(format!("{name}: no deploymentId"));
        }
    }
    // Added by hand without an origin, each holder is COPIED, the first one too.
    let kept = shared
        .iter()
        .filter(|sp| sp.spec.origin != Some(Origin::Copied))
        .count();
    if kept != 0 {
        out.push(format!(
            "{kept} of the {} holders of {SHARED} are not COPIED",
            shared.len()
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_down_creates_pass_and_the_reconciler_repairs_them_after() {
    install_crypto_provider();
    let cp = ControlPlane::start();
    let (cluster, uid) = Cluster::prepared(&cp, NS, "5").await;
    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let certs = Certs::generate();
    let mut webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &["--reconcile-interval", "1s", "--lease-duration", "4s"],
    )
    .await;
    webhook.wait_index("deployments", 1).await;
    let mut patches = vec![FAIL_OPEN];
    if cp.minor() >= 30 {
        patches.push(MATCH_CONDITIONS);
    }
    cluster
        .register_patched_webhooks(&webhook.url(), &certs.ca_bundle, &patches)
        .await;
    eprintln!(
        "fail-open on {}: registered with {}",
        cp.version(),
        patches.join(" and ")
    );

    // Up: the webhook mutates (the API server calls it once its configuration is live).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("probe-{attempt}");
        let location = format!("s3://flink-state/fail-open/probe-{attempt}");
        let stored = cluster
            .create_savepoint(&mk_savepoint(NS, &name, "app", &location), false)
            .await
            .savepoint("probe create");
        if spec_version(&stored) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API server did not call the webhook"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Down: valid creates are stored as written, the schema still refuses.
    webhook.stop();
    let down = Instant::now();
    for name in ["down-1", "down-2", "down-3"] {
        let stored = cluster
            .create_savepoint(&mk_savepoint(NS, name, "app", SHARED), false)
            .await
            .savepoint("a valid create while the webhook is down");
        assert_eq!(
            spec_version(&stored),
            None,
            "{name}: stored unchanged while the webhook is down"
        );
    }
    let mut malformed = mk_savepoint(NS, "bogus-origin", "app", SHARED);
    malformed["spec"]["origin"] = "BOGUS".into();
    let reply = cluster.create_savepoint(&malformed, false).await;
    let refusal = reply.refusal("an unknown origin while the webhook is down");
    assert!(
        refusal.contains("Unsupported value") && refusal.contains("spec.origin"),
        "the API server's own schema refuses it: {refusal}"
    );
    let mut missing = mk_savepoint(NS, "no-location", "app", SHARED);
    missing["spec"]
        .as_object_mut()
        .unwrap()
        .remove("savepointLocation");
    let reply = cluster.create_savepoint(&missing, false).await;
    let refusal = reply.refusal("a missing location while the webhook is down");
    assert!(
        refusal.contains("savepointLocation") && refusal.contains("Required"),
        "the API server's own schema refuses it: {refusal}"
    );
    eprintln!(
        "fail-open: 3 valid creates stored and 2 malformed refused by the API server in {:?} with no webhook",
        down.elapsed()
    );

    // Back: the reconciler converges what was stored meanwhile.
    webhook.restart().await;
    let back = Instant::now();
    let api: kube::Api<Savepoint> = kube::Api::namespaced(cluster.client.clone(), NS);
    loop {
        let all = api.list(&Default::default()).await.unwrap().items;
        let down: Vec<Savepoint> = all
            .into_iter()
            .filter(|sp| {
                sp.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("down-")
            })
            .collect();
        let left = unrepaired(&down, &uid);
        if left.is_empty() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "not repaired 60 s after the webhook returned: {left:?}\n{}",
            webhook.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "fail-open on {}: the 3 Savepoints stored while down were repaired {:?} after the webhook restarted",
        cp.version(),
        back.elapsed()
    );

    if cp.minor() >= 30 {
        // The exempted identity skips the webhook; everyone else is still mutated.
        let exempt = cluster
            .create_savepoint_as(
                EXEMPT_USER,
                &mk_savepoint(
                    NS,
                    "by-platform",
                    "app",
                    "s3://flink-state/fail-open/platform",
                ),
            )
            .await
            .savepoint("a create by the exempted identity");
        assert_eq!(
            spec_version(&exempt),
            None,
            "the exempted identity is not mutated"
        );
        let stored = cluster
            .create_savepoint(
                &mk_savepoint(NS, "after", "app", "s3://flink-state/fail-open/after"),
                false,
            )
            .await
            .savepoint("a create by a user the match condition does not exempt");
        assert_eq!(spec_version(&stored), Some("5"), "mutated as before");
    }
}
