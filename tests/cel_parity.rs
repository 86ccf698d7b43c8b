//! One definition, two enforcers: the Savepoint field rules the CRD states as CEL
//! (`deploy/crds/cel/`, from `domain::schema_rules`) and the webhook's own checks decide a
//! table of good and bad objects alike. Each case is decided by the API server with no
//! webhook registered (a server-side dry run against the CEL CRD) and by `review` (the
//! webhook's decision path, offline); the verdicts must agree, the messages may differ.
//! Servers before 1.25 have no CEL: there the plain CRD is installed and this test has
//! nothing to compare (the 1.37 pass of the test command runs it).
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]

mod common;

use std::path::Path;

use common::control_plane::ControlPlane;
use common::{
    Cluster, NIL_UUID, install_crypto_provider, mk_savepoint, savepoints_path, webhook_bin,
};
use serde_json::{Value, json};

const NS: &str = "parity";

/// A Savepoint manifest of `app` in [`NS`] with `spec` merged over the valid baseline.
fn savepoint(name: &str, spec: Value) -> Value {
    let mut object = mk_savepoint(
        NS,
        name,
        "app",
        "s3://flink-state/parity/savepoint-0a1b2c-0123456789ab",
    );
    for (key, value) in spec.as_object().unwrap() {
        if value.is_null() {
            object["spec"].as_object_mut().unwrap().remove(key);
        } else {
            object["spec"][key] = value.clone();
        }
    }
    object
}

/// `review`'s verdict on `object` (an UPDATE of `old` when given), with the Deployment
/// manifests of `state`.
fn review_allows(state: &Path, object: &Value, old: Option<&Value>) -> bool {
    let dir = state.parent().unwrap();
    let file = dir.join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let mut command = std::process::Command::new(webhook_bin());
    command
        .args(["review", "--verify-location", "off", "--state"])
        .arg(state)
        .arg(&file);
    if let Some(old) = old {
        let old_file = dir.join("old.json");
        std::fs::write(&old_file, old.to_string()).unwrap();
        command
            .args(["--operation", "UPDATE", "--old"])
            .arg(&old_file);
    }
    let out = command.output().unwrap();
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "review failed ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_and_the_webhook_decide_alike() {
    install_crypto_provider();
    let cp = ControlPlane::start();
    if cp.minor() < 25 {
        eprintln!(
            "cel parity: {} has no CEL; the plain CRD is installed there",
            cp.version()
        );
        return;
    }
    let (cluster, uid) = Cluster::prepared(&cp, NS, "1").await;
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let deployment = common::mk_deployment(NS, "app", Some("1"));
    let mut deployment = deployment;
    deployment["metadata"]["uid"] = uid.clone().into();
    std::fs::write(state_dir.join("app.json"), deployment.to_string()).unwrap();

    let long = format!("s3://flink-state/{}", "p".repeat(1100));
    let creates: Vec<(&str, Value, bool)> = vec![
        ("valid", json!({}), true),
        (
            "file location",
            json!({ "savepointLocation": "file:///data/sp/savepoint-f35801-c840b0a020e8" }),
            true,
        ),
        (
            "hdfs without a host",
            json!({ "savepointLocation": "hdfs:///flink/sp" }),
            true,
        ),
        (
            "upper-case s3a with _metadata",
            json!({ "savepointLocation": "S3A://b/p/_metadata" }),
            true,
        ),
        (
            "deploymentId only",
            json!({ "deploymentName": null, "deploymentId": uid }),
            true,
        ),
        (
            "with a jobId",
            json!({ "jobId": "3f2a0000-0000-4000-8000-000000000001" }),
            true,
        ),
        ("too long", json!({ "savepointLocation": long }), false),
        (
            "unaccepted scheme",
            json!({ "savepointLocation": "ftp://host/sp" }),
            false,
        ),
        (
            "relative",
            json!({ "savepointLocation": "file:data/sp" }),
            false,
        ),
        (
            "no scheme",
            json!({ "savepointLocation": "/data/sp" }),
            false,
        ),
        (
            "whitespace",
            json!({ "savepointLocation": "s3://b/p q" }),
            false,
        ),
        (
            "no-break space",
            json!({ "savepointLocation": "s3://b/p\u{a0}q" }),
            false,
        ),
        (
            "control character",
            json!({ "savepointLocation": "s3://b/p\u{7}" }),
            false,
        ),
        (
            "query",
            json!({ "savepointLocation": "s3://b/p?x=1" }),
            false,
        ),
        (
            "dot segment",
            json!({ "savepointLocation": "s3://b/a/../p" }),
            false,
        ),
        (
            "dot host",
            json!({ "savepointLocation": "s3://./p" }),
            false,
        ),
        (
            "no bucket",
            json!({ "savepointLocation": "s3:///p" }),
            false,
        ),
        (
            "remote file",
            json!({ "savepointLocation": "file://otherhost/p" }),
            false,
        ),
        (
            "password in location",
            json!({ "savepointLocation": "s3://user:secret@b/p" }),
            false,
        ),
        (
            "user in s3 location",
            json!({ "savepointLocation": "s3://user@b/p" }),
            false,
        ),
        (
            "Azure container at account",
            json!({ "savepointLocation": "abfss://c@acct.dfs.core.windows.net/p" }),
            true,
        ),
        (
            "HDFS host in upper case",
            json!({ "savepointLocation": "hdfs://NameNode:8020/flink/sp" }),
            true,
        ),
        (
            "no Deployment reference",
            json!({ "deploymentName": null }),
            false,
        ),
        (
            "bad Deployment name",
            json!({ "deploymentName": "Not_A_Name" }),
            false,
        ),
        (
            "deploymentId not a UUID",
            json!({ "deploymentId": "not-a-uuid" }),
            false,
        ),
        ("jobId not a UUID", json!({ "jobId": "12345" }), false),
        (
            "flinkSavepointId not a UUID",
            json!({ "flinkSavepointId": "x" }),
            false,
        ),
        ("unknown origin", json!({ "origin": "BOGUS" }), false),
    ];
    let mut table = Vec::new();
    for (i, (case, spec, expected)) in creates.iter().enumerate() {
        let object = savepoint(&format!("create-{i}"), spec.clone());
        let reply = cluster
            .request(
                reqwest::Method::POST,
                &format!("{}?dryRun=All", savepoints_path(NS)),
                "application/json",
                Some(&object),
            )
            .await;
        let by_cel = reply.ok();
        let by_webhook = review_allows(&state_dir, &object, None);
        table.push((
            format!("CREATE {case}"),
            *expected,
            by_cel,
            by_webhook,
            reply.message().to_string(),
        ));
    }

    // UPDATEs of a stored Savepoint that carries both references.
    let mut stored = savepoint(
        "stored",
        json!({ "deploymentId": uid, "flinkSavepointId": NIL_UUID }),
    );
    let created = cluster.create_savepoint(&stored, false).await;
    let created = created.savepoint("the stored Savepoint");
    stored["metadata"]["resourceVersion"] =
        created.metadata.resource_version.clone().unwrap().into();
    let updates: Vec<(&str, Value, bool)> = vec![
        ("labels only", json!({}), true),
        (
            "a jobId filled in",
            json!({ "jobId": "3f2a0000-0000-4000-8000-000000000002" }),
            true,
        ),
        (
            "another location",
            json!({ "savepointLocation": "s3://flink-state/parity/elsewhere" }),
            false,
        ),
        (
            "deploymentId removed",
            json!({ "deploymentId": null }),
            false,
        ),
        (
            "another flinkSavepointId",
            json!({ "flinkSavepointId": "3f2a0000-0000-4000-8000-000000000003" }),
            false,
        ),
    ];
    for (case, spec, expected) in updates {
        let mut object = stored.clone();
        object["metadata"]["labels"] = json!({ "team": "streaming" });
        for (key, value) in spec.as_object().unwrap() {
            if value.is_null() {
                object["spec"].as_object_mut().unwrap().remove(key);
            } else {
                object["spec"][key] = value.clone();
            }
        }
        let reply = cluster
            .request(
                reqwest::Method::PUT,
                &format!("{}/stored?dryRun=All", savepoints_path(NS)),
                "application/json",
                Some(&object),
            )
            .await;
        let by_cel = reply.ok();
        let by_webhook = review_allows(&state_dir, &object, Some(&stored));
        table.push((
            format!("UPDATE {case}"),
            expected,
            by_cel,
            by_webhook,
            reply.message().to_string(),
        ));
    }

    eprintln!(
        "cel parity on {}: case | expected | API server (CEL) | webhook",
        cp.version()
    );
    let mut mismatches = Vec::new();
    for (case, expected, by_cel, by_webhook, message) in &table {
        let verdict = |allowed: &bool| if *allowed { "allow" } else { "deny" };
        eprintln!(
            "  {case:38} {:5} {:5} {:5}",
            verdict(expected),
            verdict(by_cel),
            verdict(by_webhook)
        );
        if by_cel != by_webhook || by_cel != expected {
            mismatches.push(format!(
                "{case}: expected {}, CEL {}, webhook {} ({message})",
                verdict(expected),
                verdict(by_cel),
                verdict(by_webhook)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "verdicts differ:\n{}",
        mismatches.join("\n")
    );
}
