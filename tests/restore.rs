#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Will a restore succeed? The full read of `_metadata` against what a real Flink writes,
//! for Flink 1.20 and 2.2 (`tests/support/flink.rs`): `inspect` must list exactly the
//! files, operators and inline handles Flink's own `Checkpoints.loadCheckpointMetadata`
//! reads back, then find each damage a restore would hit (a savepoint's state file
//! deleted, an incremental checkpoint's `shared/` file deleted, a checkpoint copied
//! elsewhere and its origin cleaned up) and each Savepoint that says something else than
//! the file (a checkpoint registered as a savepoint, a NATIVE savepoint declared
//! CANONICAL), through `inspect` and `review` in deny mode.
//!
//! Needs `tests/provision-flink.sh`. Each Flink release runs once per test binary.

#[path = "support/flink.rs"]
mod flink;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flink::{Release, Snapshot};
use savepoint_webhook::domain::{Location, LocationRules};
use savepoint_webhook::verify::{Depth, Mode, Verifier, VerifyConfig};
use serde_json::Value;

/// The `metadata.uid` of the example Deployment `top-speed-windowing`.
const DEPLOYMENT_ID: &str = "c8e5eee4-414c-40aa-9d1d-76c4434d055a";

fn inspect(root: &Path, location: &str) -> (bool, Value, String) {
    let run = |output: &str| {
        Command::new(env!("CARGO_BIN_EXE_savepoint-webhook"))
            .args(["inspect", "-o", output, "--verify-timeout", "30s"])
            .arg("--verify-file-root")
            .arg(root)
            .arg(location)
            .output()
            .unwrap()
    };
    let json = run("json");
    assert!(
        json.status.code().is_some_and(|c| c <= 1),
        "inspect failed: {}",
        String::from_utf8_lossy(&json.stderr)
    );
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    let text = String::from_utf8(run("text").stdout).unwrap();
    (json.status.success(), value[0].clone(), text)
}

fn finding_kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

fn finding(report: &Value, kind: &str) -> String {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} finding in {report:#}"))["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What `inspect` read must be what Flink reads back.
fn assert_matches_flink(name: &str, snapshot: &Snapshot, report: &Value) {
    let read = &report["snapshot"];
    assert_eq!(read["checkpointId"], snapshot.checkpoint_id, "{name}");
    assert_eq!(read["format"], snapshot.metadata_version, "{name}");
    let mut ours: Vec<String> = read["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            match f["relative"].as_bool().unwrap() {
                true => format!("{}/{path}", snapshot.path),
                false => path.to_string(),
            }
        })
        .collect();
    ours.sort();
    ours.dedup();
    let mut flinks: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
    flinks.sort();
    flinks.dedup();
    assert_eq!(ours, flinks, "{name}: the files Flink references");
    assert_eq!(
        read["inlineHandles"],
        snapshot.inline_handles.len(),
        "{name}: inline handles"
    );
    let handles: std::collections::BTreeMap<String, usize> =
        serde_json::from_value(read["handles"].clone()).unwrap();
    assert_eq!(handles, snapshot.handle_types, "{name}: handle types");
    let mut names: Vec<_> = read["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["name"].as_str().map(String::from),
            )
        })
        .collect();
    names.sort();
    let mut flink_names: Vec<_> = snapshot
        .operators
        .iter()
        .map(|o| (o.id.clone(), o.name.clone()))
        .collect();
    flink_names.sort();
    if snapshot.metadata_version < 5 {
        names.iter_mut().for_each(|(_, n)| *n = None);
        flink_names.iter_mut().for_each(|(_, n)| *n = None);
    }
    assert_eq!(names, flink_names, "{name}: operators");
    let kind = read["kind"].as_str().unwrap();
    let props = snapshot.properties.as_ref().unwrap();
    match props.kind {
        flink::SnapshotKind::Savepoint => {
            let format = match props.format.unwrap() {
                flink::Format::Canonical => "CANONICAL",
                flink::Format::Native => "NATIVE",
            };
            assert_eq!(kind, format!("a {format} savepoint"), "{name}");
        }
        flink::SnapshotKind::Checkpoint => assert!(kind.contains("checkpoint"), "{name}: {kind}"),
    }
}

fn savepoint_manifest(dir: &Path, name: &str, location: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: appmanager.dataartisans.com/v1\nkind: Savepoint\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  deploymentName: top-speed-windowing\n  flinkSavepointId: 00000000-0000-0000-0000-000000000000\n  savepointLocation: {location}\n{extra}status:\n  state: COMPLETED\n"
        ),
    )
    .unwrap();
    path
}

fn review_deny(root: &Path, manifest: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_savepoint-webhook"))
        .args([
            "review",
            "--verify-location",
            "deny",
            "--verify-timeout",
            "30s",
        ])
        .args([
            "--state",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state"),
        ])
        .arg("--verify-file-root")
        .arg(root)
        .arg(manifest)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success(), text)
}

/// Every snapshot as Flink wrote it, then each damage, for one release.
fn inspect_and_damage(release: Release) {
    let report = flink::snapshots(release);
    let root = flink::scratch_root();
    let label = release.label();
    for (name, snapshot) in report.snapshots() {
        let (ok, json, text) = inspect(&root, &snapshot.path);
        eprintln!("--- Flink {label} {name}: inspect\n{text}");
        assert!(ok, "{name}: {json:#}");
        assert_matches_flink(name, snapshot, &json);
        assert_eq!(json["presentFiles"], json["distinctFiles"], "{name}");
        let kinds = finding_kinds(&json);
        if name.contains("savepoint") {
            assert!(
                kinds.is_empty(),
                "{name}: a savepoint is self-contained: {kinds:?}"
            );
        } else {
            assert_eq!(
                kinds,
                ["outside_location"],
                "{name}: shared/ lies beside chk-N"
            );
        }
    }

    let scratch = root.join(format!("damage-{label}"));
    let _ = std::fs::remove_dir_all(&scratch);

    // A savepoint copied elsewhere is still whole; with one state file deleted it is not.
    let native = &report.native;
    let copy = scratch.join("copied-savepoint");
    flink::copy_tree(&native.local(), &copy);
    let copy_location = format!("file:{}", copy.display());
    let (ok, json, _) = inspect(&root, &copy_location);
    assert!(ok && finding_kinds(&json).is_empty(), "{json:#}");
    let victim = native
        .files
        .iter()
        .find_map(|f| f.relative_path.clone())
        .expect("a native savepoint has relative files");
    std::fs::remove_file(copy.join(&victim)).unwrap();
    let (ok, json, text) = inspect(&root, &copy_location);
    eprintln!("--- Flink {label}: a savepoint with a state file deleted\n{text}");
    assert!(!ok);
    assert_eq!(finding_kinds(&json), ["missing_files"]);
    let message = finding(&json, "missing_files");
    assert!(
        message.contains(&victim) && message.contains("1 state file"),
        "{message}"
    );
    let (admitted, answer) = review_deny(
        &root,
        &savepoint_manifest(&scratch, "gone", &copy_location, ""),
    );
    assert!(!admitted && answer.contains(&victim), "{answer}");

    // audit reads what is stored: the damaged copy is the one Savepoint it finds.
    let state = scratch.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/examples/state/deployments.yaml"
        ),
        state.join("deployments.yaml"),
    )
    .unwrap();
    let stored = [
        ("whole", native.path.as_str()),
        ("gone", copy_location.as_str()),
    ];
    let mut manifests = String::new();
    for (name, location) in stored {
        manifests.push_str(&format!(
            "---\napiVersion: appmanager.dataartisans.com/v1\nkind: Savepoint\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    com.dataartisans.appmanager.controller.deployment.spec.version: \"3\"\nspec:\n  deploymentName: top-speed-windowing\n  deploymentId: {DEPLOYMENT_ID}\n  origin: COPIED\n  flinkSavepointId: 00000000-0000-0000-0000-000000000000\n  savepointLocation: {location}\nstatus:\n  state: COMPLETED\n"
        ));
    }
    std::fs::write(state.join("savepoints.yaml"), manifests).unwrap();
    let audit = Command::new(env!("CARGO_BIN_EXE_savepoint-webhook"))
        .args(["audit", "--output", "json", "--verify-location", "warn"])
        .arg("--state")
        .arg(&state)
        .arg("--verify-file-root")
        .arg(&root)
        .output()
        .unwrap();
    let audited: Value = serde_json::from_slice(&audit.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&audit.stderr)
        )
    });
    assert_eq!(audit.status.code(), Some(1), "{audited:#}");
    let findings = audited["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{audited:#}");
    assert_eq!(findings[0]["rule"], "unrestorable-snapshot");
    assert_eq!(findings[0]["name"], "gone");
    assert!(
        findings[0]["message"].as_str().unwrap().contains(&victim),
        "{audited:#}"
    );

    // A NATIVE savepoint declared CANONICAL, and a checkpoint registered as a savepoint.
    let (admitted, answer) = review_deny(
        &root,
        &savepoint_manifest(
            &scratch,
            "declared-canonical",
            &native.path,
            "  savepointFormatType: CANONICAL\n",
        ),
    );
    assert!(!admitted, "{answer}");
    assert!(
        answer.contains("spec.savepointFormatType is CANONICAL") && answer.contains("NATIVE"),
        "{answer}"
    );
    let retained = &report.retained;
    let (admitted, answer) = review_deny(
        &root,
        &savepoint_manifest(
            &scratch,
            "checkpoint-as-savepoint",
            &retained.path,
            "  origin: USER_REQUEST\n",
        ),
    );
    assert!(!admitted, "{answer}");
    assert!(answer.contains("spec.origin is USER_REQUEST"), "{answer}");
    let (admitted, answer) = review_deny(
        &root,
        &savepoint_manifest(
            &scratch,
            "retained",
            &retained.path,
            "  origin: RETAINED_CHECKPOINT\n",
        ),
    );
    assert!(admitted, "{answer}");

    // A retained checkpoint copied elsewhere still needs its origin's shared/ files.
    let retained_copy = scratch.join("copied-checkpoint").join(retained.name());
    flink::copy_tree(&retained.local(), &retained_copy);
    let retained_copy_location = format!("file:{}", retained_copy.display());
    let (ok, json, _) = inspect(&root, &retained_copy_location);
    assert!(ok, "{json:#}");
    assert_eq!(finding_kinds(&json), ["outside_location"]);

    // One shared/ file deleted: the incremental checkpoint cannot restore.
    let shared = retained
        .files
        .iter()
        .map(|f| f.local())
        .find(|p| p.components().any(|c| c.as_os_str() == "shared"))
        .expect("an incremental checkpoint references shared/ files");
    std::fs::remove_file(&shared).unwrap();
    let (ok, json, text) = inspect(&root, &retained.path);
    eprintln!("--- Flink {label}: a retained checkpoint with a shared/ file deleted\n{text}");
    assert!(!ok);
    let message = finding(&json, "missing_files");
    assert!(message.contains(&shared.display().to_string()), "{message}");

    // The origin cleaned up: the copy's shared/ references are all gone.
    let job_dir = retained.local().parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&job_dir).unwrap();
    let (ok, json, text) = inspect(&root, &retained_copy_location);
    eprintln!("--- Flink {label}: a copied checkpoint whose origin was cleaned up\n{text}");
    assert!(!ok);
    let shared_count = retained
        .files
        .iter()
        .filter(|f| f.path.contains("/shared/"))
        .map(|f| &f.path)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        finding(&json, "missing_files").contains(&format!("{shared_count} state files")),
        "{json:#}"
    );
}

#[test]
fn flink_1_20_snapshots_are_read_fully_and_their_damage_found() {
    inspect_and_damage(Release::V1_20);
}

#[test]
fn flink_2_2_snapshots_are_read_fully_and_their_damage_found() {
    inspect_and_damage(Release::V2_2);
}

/// The time of a full read beside a header read of the same snapshot with many files, in
/// one process (printed, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_of_many_files_beside_a_header_read() {
    for release in Release::ALL {
        let report = flink::snapshots(release);
        let Some(many) = &report.many else { continue };
        let rules = LocationRules::default();
        let location = Location::parse(&many.path, &rules).unwrap();
        let verifier = |depth| {
            Verifier::new(VerifyConfig {
                mode: Mode::Deny,
                timeout: Duration::from_secs(30),
                file_roots: vec![flink::scratch_root()],
                depth,
                ..VerifyConfig::default()
            })
            .unwrap()
        };
        let header = verifier(Depth::Header);
        let started = Instant::now();
        let checked = header.check(&location, Duration::from_secs(30)).await;
        let header_time = started.elapsed();
        assert!(checked.outcome.is_verified());
        let full = verifier(Depth::Full);
        let started = Instant::now();
        let inspection = full.inspect(&location, &rules).await;
        let full_time = started.elapsed();
        assert!(inspection.outcome.is_verified());
        assert_eq!(inspection.present, inspection.files);
        let size = std::fs::metadata(many.local().join("_metadata"))
            .unwrap()
            .len();
        eprintln!(
            "Flink {}: {} ({size} bytes of _metadata, {} distinct files): header read {:.2} ms; full read {:.2} ms (_metadata read and parsed in {:.2} ms)",
            release.label(),
            many.path,
            inspection.files,
            header_time.as_secs_f64() * 1000.0,
            full_time.as_secs_f64() * 1000.0,
            inspection.read_time.as_secs_f64() * 1000.0,
        );
    }
}
