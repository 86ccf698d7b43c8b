//! Tenants through the real API server: what one tenant can do to another's Savepoints,
//! and what a create can slip past. The webhook runs with `--authorize-restores` and
//! `--tenant-locations`; two users under different RBAC create Savepoints for one
//! Deployment; each namespace may use only its own location prefix; two concurrent
//! `generateName` creates of one location are two holders; an UPDATE cannot take COPIED
//! off a shared location; and a DELETE of a shared location warns, naming the others.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]

mod common;

use common::control_plane::ControlPlane;
use common::{
    Certs, Cluster, Webhook, free_port, install_crypto_provider, mk_savepoint,
    write_webhook_kubeconfig,
};
use savepoint_webhook::resources::Origin;
use serde_json::{Value, json};

const TEAM_A: &str = "tenant-a";
const TEAM_B: &str = "tenant-b";
/// May create Savepoints in `tenant-a` and update its Deployments.
const ALICE: &str = "alice";
/// May create Savepoints in `tenant-a`, nothing else.
const BOB: &str = "bob";

const TENANT_LOCATIONS: &str = "\
tenant-a: [s3://flink-state/tenant-a]
tenant-b: [s3://flink-state/tenant-b]
";

/// A Role in `namespace` granting `rules`, bound to `user`.
fn role_for(namespace: &str, user: &str, rules: Value) -> Vec<Value> {
    let name = format!("{user}-savepoints");
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": name, "namespace": namespace },
            "rules": rules,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": name, "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
        }),
    ]
}

/// A `generateName` create with the platform's origin, kept unless the location is held.
fn generated(namespace: &str, prefix: &str, location: &str) -> Value {
    let mut manifest = mk_savepoint(namespace, "unused", "app", location);
    manifest["spec"]["origin"] = "USER_REQUEST".into();
    let metadata = manifest["metadata"].as_object_mut().unwrap();
    metadata.remove("name");
    metadata.insert("generateName".into(), prefix.into());
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_can_restore_from_or_bypass_another() {
    install_crypto_provider();
    let cp = ControlPlane::start();
    let (cluster, _) = Cluster::prepared(&cp, TEAM_A, "3").await;
    cluster.create_namespace(TEAM_B).await;
    cluster
        .create_deployment(common::mk_deployment(TEAM_B, "app", Some("3")))
        .await;
    let savepoints = json!({
        "apiGroups": ["appmanager.dataartisans.com"],
        "resources": ["savepoints"],
        "verbs": ["create", "get"],
    });
    let deployments = json!({
        "apiGroups": ["appmanager.dataartisans.com"],
        "resources": ["deployments"],
        "verbs": ["get", "update"],
    });
    cluster
        .create_manifests(&role_for(
            TEAM_A,
            ALICE,
            json!([savepoints.clone(), deployments]),
        ))
        .await;
    cluster
        .create_manifests(&role_for(TEAM_A, BOB, json!([savepoints])))
        .await;

    let kubeconfig = cp.dir().join("webhook.kubeconfig");
    write_webhook_kubeconfig(&cp, &kubeconfig);
    let tenants = cp.dir().join("tenant-locations.yaml");
    std::fs::write(&tenants, TENANT_LOCATIONS).unwrap();
    let certs = Certs::generate();
    let webhook = Webhook::start_with(
        &kubeconfig,
        &certs,
        free_port(),
        cp.dir().join("webhook.log"),
        &[
            "--authorize-restores",
            "--tenant-locations",
            tenants.to_str().unwrap(),
        ],
    )
    .await;
    webhook.wait_index("deployments", 2).await;
    cluster
        .register_shipped_webhooks(&webhook.url(), &certs.ca_bundle)
        .await;
    let version = cp.version();

    // Who may restore what: the same Savepoint, by a user who may update the Deployment
    // and by one who may not.
    let by_bob = mk_savepoint(TEAM_A, "by-bob", "app", "s3://flink-state/tenant-a/sp-1");
    let reply = cluster
        .create_savepoint_as_member(BOB, &["system:authenticated"], &by_bob)
        .await;
    let refusal = reply.refusal("a create by a user who may not update the Deployment");
    assert!(
        refusal
            .contains("user \"bob\" may not update Deployment \"app\" in namespace \"tenant-a\""),
        "{version}: {refusal}"
    );
    let by_alice = mk_savepoint(TEAM_A, "by-alice", "app", "s3://flink-state/tenant-a/sp-1");
    let reply = cluster
        .create_savepoint_as_member(ALICE, &["system:authenticated"], &by_alice)
        .await;
    reply.savepoint("a create by a user who may update the Deployment");
    assert!(
        !reply
            .warnings
            .iter()
            .any(|w| w.contains("already referenced")),
        "{version}: bob's refused create held nothing: {:?}",
        reply.warnings
    );
    eprintln!("tenants on {version}: bob refused ({refusal}); alice admitted");

    // Prefixes: tenant-b cannot point at tenant-a's snapshot, even spelled otherwise.
    for location in [
        "s3://flink-state/tenant-a/sp-1",
        "s3a://flink-state//tenant-a/sp-1/_metadata",
        "s3://flink-state/tenant-ab/sp-1",
    ] {
        let theirs = mk_savepoint(TEAM_B, "theirs", "app", location);
        let reply = cluster.create_savepoint(&theirs, false).await;
        let refusal = reply.refusal("a location outside the namespace's prefix");
        assert!(
            refusal.contains("is outside the locations namespace \"tenant-b\" may use")
                && refusal.contains("s3://flink-state/tenant-b/..."),
            "{version}: {location}: {refusal}"
        );
    }
    let own = mk_savepoint(TEAM_B, "own", "app", "s3://flink-state/tenant-b/sp-1");
    cluster
        .create_savepoint(&own, false)
        .await
        .savepoint("a location under the namespace's prefix");

    // Two concurrent generateName creates of one location: exactly one is COPIED.
    let shared = "s3://flink-state/tenant-b/shared-sp";
    let first = generated(TEAM_B, "restore-", shared);
    let second = generated(TEAM_B, "restore-", shared);
    let (a, b) = tokio::join!(
        cluster.create_savepoint(&first, false),
        cluster.create_savepoint(&second, false)
    );
    let origins = [
        a.savepoint("a generateName create").spec.origin,
        b.savepoint("a generateName create").spec.origin,
    ];
    assert_eq!(
        origins
            .iter()
            .filter(|o| **o == Some(Origin::Copied))
            .count(),
        1,
        "{version}: one of two generateName creates of one location is COPIED: {origins:?}"
    );
    let copied = if origins[0] == Some(Origin::Copied) {
        &a
    } else {
        &b
    };
    let name = copied
        .savepoint("the COPIED one")
        .metadata
        .name
        .clone()
        .unwrap();

    // UPDATE cannot take COPIED off while the location is shared.
    let reply = cluster
        .patch_savepoint(
            TEAM_B,
            &name,
            &json!({ "spec": { "origin": "USER_REQUEST" } }),
        )
        .await;
    let refusal = reply.refusal("taking COPIED off a shared location");
    assert!(
        refusal.contains("spec.origin: is COPIED and cannot become \"USER_REQUEST\""),
        "{version}: {refusal}"
    );

    // DELETE of a shared location warns, naming the other holder.
    let reply = cluster
        .request(
            reqwest::Method::DELETE,
            &format!("{}/{name}", common::savepoints_path(TEAM_B)),
            "application/json",
            None,
        )
        .await;
    assert!(
        reply.ok(),
        "{version}: the delete is allowed: {}",
        reply.message()
    );
    assert!(
        reply
            .warnings
            .iter()
            .any(|w| w.contains("shares its location with Savepoint tenant-b/restore-")),
        "{version}: {:?}",
        reply.warnings
    );
    eprintln!(
        "tenants on {version}: shared delete warned: {:?}",
        reply.warnings
    );
}
