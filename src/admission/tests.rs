//! Table-driven tests of every admission rule, on decoded requests and a hand-fed index.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::decode::{Request, decode_review};
use super::*;
use crate::domain::{LocationRules, NormalizedLocation, Policy, ReferenceScope, RestoreKind};
use crate::index::{DeploymentFacts, Index, SavepointFacts, Store};
use crate::resources::SPEC_VERSION_ANNOTATION;

const TTL: Duration = Duration::from_secs(60);

const UID: &str = "c8e5eee4-414c-40aa-9d1d-76c4434d055a";
const OTHER_UID: &str = "11111111-2222-3333-4444-555555555555";

fn mk_deployment(name: &str, uid: &str, version: Option<&str>) -> DeploymentFacts {
    DeploymentFacts {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
        spec_version: version.map(str::to_string),
        has_savepoints_dir: true,
        restore_kind: Some(RestoreKind::LatestState),
        ..DeploymentFacts::default()
    }
}

fn mk_index() -> Index {
    let mut index = Index::new(LocationRules::default());
    index.apply_deployment(mk_deployment("top-speed-windowing", UID, Some("3")));
    index.apply_deployment(mk_deployment("unversioned", OTHER_UID, None));
    index.apply_savepoint(&SavepointFacts {
        namespace: "default".into(),
        name: "retained-chk-42".into(),
        location: "s3://flink-state/checkpoints/3f2a/chk-42".into(),
    });
    index
}

fn mk_gate(index: Index, policy: Policy, ttl: Duration) -> Gate {
    Gate::new(Arc::new(Store::new(index, ttl)), Arc::new(policy))
}

/// `/mutate` on a gate of its own over a copy of `index`: nothing it holds outlives it.
fn mutate(request: &Request, index: &Index, policy: &Policy, now: Instant) -> Decision {
    mk_gate(index.clone(), policy.clone(), TTL).admit_mutate(request, now)
}

/// `/validate` on a gate of its own over a copy of `index`.
fn validate(request: &Request, index: &Index, policy: &Policy) -> Decision {
    mk_gate(index.clone(), policy.clone(), TTL).admit_validate(request, Instant::now())
}

fn holder_count(gate: &Gate, location: &str, at: Instant) -> usize {
    let location = NormalizedLocation::parse(location, &LocationRules::default()).unwrap();
    gate.store().holders(&location, at).len()
}

fn mk_savepoint(spec: Value) -> Value {
    json!({
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": { "name": "restore", "namespace": "default" },
        "spec": spec,
        "status": { "state": "COMPLETED" }
    })
}

fn good_spec() -> Value {
    json!({
        "deploymentName": "top-speed-windowing",
        "savepointLocation": "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab",
        "flinkSavepointId": "00000000-0000-0000-0000-000000000000"
    })
}

fn mk_request(operation: &str, object: Value, old: Option<Value>) -> Request {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": { "group": "appmanager.dataartisans.com", "version": "v1", "kind": "Savepoint" },
            "operation": operation,
            "name": object.pointer("/metadata/name").cloned().unwrap_or_else(|| "".into()),
            "namespace": "default",
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    });
    decode_review(review.to_string().as_bytes()).expect("test review decodes")
}

fn create(spec: Value) -> Decision {
    mutate(
        &mk_request("CREATE", mk_savepoint(spec), None),
        &mk_index(),
        &Policy::default(),
        Instant::now(),
    )
}

fn patched(spec: Value) -> Value {
    let object = mk_savepoint(spec.clone());
    let decision = create(spec);
    assert!(decision.allowed, "denied: {:?}", decision.message);
    let mut out = object;
    if let Some(patch) = &decision.patch {
        json_patch::patch(&mut out, patch).expect("patch applies");
    }
    out
}

#[test]
fn annotation_and_deployment_id_are_injected() {
    let out = patched(good_spec());
    assert_eq!(out["metadata"]["annotations"][SPEC_VERSION_ANNOTATION], "3");
    assert_eq!(out["spec"]["deploymentId"], UID);
}

#[test]
fn an_absent_origin_becomes_copied_without_a_warning_and_a_given_one_is_kept() {
    let decision = create(good_spec());
    assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
    assert_eq!(patched(good_spec())["spec"]["origin"], "COPIED");
    let mut platform = good_spec();
    platform["origin"] = "USER_REQUEST".into();
    assert_eq!(patched(platform)["spec"]["origin"], "USER_REQUEST");
}

#[test]
fn deployment_name_is_filled_in_from_the_id() {
    let mut spec = good_spec();
    spec.as_object_mut().unwrap().remove("deploymentName");
    spec["deploymentId"] = UID.into();
    let out = patched(spec);
    assert_eq!(out["spec"]["deploymentName"], "top-speed-windowing");
}

#[test]
fn annotation_key_with_slash_and_tilde_is_escaped() {
    let mut object = mk_savepoint(good_spec());
    object["metadata"]["annotations"] = json!({ "example.com/a~b": "x" });
    let decision = mutate(
        &mk_request("CREATE", object.clone(), None),
        &mk_index(),
        &Policy::default(),
        Instant::now(),
    );
    let patch = serde_json::to_value(decision.patch.expect("patch")).unwrap();
    assert_eq!(
        patch[0]["path"],
        format!("/metadata/annotations/{SPEC_VERSION_ANNOTATION}")
    );
    let pointer = json_patch::jsonptr::PointerBuf::from_tokens([
        "metadata",
        "annotations",
        "example.com/a~b",
    ]);
    assert_eq!(pointer.as_str(), "/metadata/annotations/example.com~1a~0b");
    let mut applied = object;
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut applied, &patch).unwrap();
    assert_eq!(applied["metadata"]["annotations"]["example.com/a~b"], "x");
    assert_eq!(
        applied["metadata"]["annotations"][SPEC_VERSION_ANNOTATION],
        "3"
    );
}

#[test]
fn copied_when_location_differs_only_by_spelling() {
    for location in [
        "s3://flink-state/checkpoints/3f2a/chk-42",
        "s3a://flink-state/checkpoints/3f2a/chk-42/_metadata",
        "S3P://flink-state//checkpoints/3f2a/chk-42/",
    ] {
        let mut spec = good_spec();
        spec["savepointLocation"] = location.into();
        let decision = create(spec.clone());
        assert!(decision.allowed);
        assert!(
            decision
                .warnings
                .iter()
                .any(|w| w.contains("default/retained-chk-42")),
            "{location}: {:?}",
            decision.warnings
        );
        assert_eq!(patched(spec)["spec"]["origin"], "COPIED", "{location}");
    }
}

#[test]
fn given_origin_is_replaced_by_copied() {
    let mut spec = good_spec();
    spec["savepointLocation"] = "s3://flink-state/checkpoints/3f2a/chk-42".into();
    spec["origin"] = "USER_REQUEST".into();
    let decision = create(spec.clone());
    assert!(decision.warnings[0].contains("was USER_REQUEST"));
    assert_eq!(patched(spec)["spec"]["origin"], "COPIED");
}

#[test]
fn new_location_keeps_origin_and_is_held_for_the_next_create() {
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let now = Instant::now();
    let first = gate.admit_mutate(&mk_request("CREATE", mk_savepoint(good_spec()), None), now);
    assert_eq!(first.reason, Reason::Mutated);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let retry_of_first =
        gate.admit_mutate(&mk_request("CREATE", mk_savepoint(good_spec()), None), now);
    assert!(
        !retry_of_first.warnings.iter().any(|w| w.contains("COPIED")),
        "a retried create must not count itself: {:?}",
        retry_of_first.warnings
    );
    let mut second_object = mk_savepoint(good_spec());
    second_object["metadata"]["name"] = "restore-again".into();
    let second = gate.admit_mutate(&mk_request("CREATE", second_object, None), now);
    assert!(
        second.warnings[0].contains("default/restore"),
        "{:?}",
        second.warnings
    );
}

#[test]
fn concurrent_creates_of_one_location_see_each_other() {
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let now = Instant::now();
    let requests: Vec<Request> = (0..8)
        .map(|i| {
            let mut object = mk_savepoint(good_spec());
            object["metadata"]["name"] = format!("restore-{i}").into();
            mk_request("CREATE", object, None)
        })
        .collect();
    let decisions: Vec<Decision> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| scope.spawn(|| gate.admit_mutate(request, now)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let kept = decisions
        .iter()
        .filter(|d| !d.warnings.iter().any(|w| w.contains("COPIED")))
        .count();
    assert_eq!(kept, 1, "exactly one create holds the location first");
    assert_eq!(
        holder_count(
            &gate,
            "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab",
            now
        ),
        8
    );
}

#[test]
fn dry_run_holds_nothing() {
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let mut request = mk_request("CREATE", mk_savepoint(good_spec()), None);
    request.dry_run = Some(true);
    let decision = gate.admit_mutate(&request, Instant::now());
    assert!(decision.allowed);
    assert_eq!(gate.store().sizes().provisional, 0);
}

#[test]
fn scope_decides_whether_other_namespaces_count() {
    let mut index = mk_index();
    index.apply_savepoint(&SavepointFacts {
        namespace: "team-b".into(),
        name: "theirs".into(),
        location: "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab".into(),
    });
    let request = mk_request("CREATE", mk_savepoint(good_spec()), None);
    let namespaced = mutate(&request, &index, &Policy::default(), Instant::now());
    assert!(namespaced.warnings.is_empty(), "{:?}", namespaced.warnings);
    let cluster = Policy {
        scope: ReferenceScope::Cluster,
        ..Policy::default()
    };
    let clustered = mutate(&request, &index, &cluster, Instant::now());
    assert!(clustered.warnings[0].contains("team-b/theirs"));
}

#[test]
fn each_denial_names_its_reason() {
    let cases: Vec<(&str, Value, Reason, &str)> = vec![
        (
            "no deployment",
            json!({"deploymentName": "nope", "savepointLocation": "s3://b/p"}),
            Reason::DeploymentNotFound,
            "Deployment \"nope\" not found in namespace \"default\"",
        ),
        (
            "unknown id",
            json!({"deploymentId": "99999999-9999-9999-9999-999999999999", "savepointLocation": "s3://b/p"}),
            Reason::DeploymentNotFound,
            "has metadata.uid",
        ),
        (
            "mismatch",
            json!({"deploymentName": "top-speed-windowing", "deploymentId": OTHER_UID, "savepointLocation": "s3://b/p"}),
            Reason::DeploymentMismatch,
            "make them name the same Deployment",
        ),
        (
            "unversioned",
            json!({"deploymentName": "unversioned", "savepointLocation": "s3://b/p"}),
            Reason::DeploymentUnversioned,
            "could never be used for restore",
        ),
        (
            "bad location",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "ftp://h/p"}),
            Reason::Invalid,
            "spec.savepointLocation: \"ftp://h/p\" has scheme \"ftp\"",
        ),
        (
            "no location",
            json!({"deploymentName": "top-speed-windowing"}),
            Reason::Invalid,
            "spec.savepointLocation: is required",
        ),
        (
            "no reference",
            json!({"savepointLocation": "s3://b/p"}),
            Reason::Invalid,
            "spec.deploymentName: is required",
        ),
        (
            "bad name",
            json!({"deploymentName": "Top_Speed", "savepointLocation": "s3://b/p"}),
            Reason::Invalid,
            "spec.deploymentName: \"Top_Speed\" is not a valid Deployment name",
        ),
        (
            "bad uuid",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "s3://b/p", "flinkSavepointId": "0"}),
            Reason::Invalid,
            "spec.flinkSavepointId: \"0\" is not a UUID",
        ),
        (
            "bad job",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "s3://b/p", "jobId": 7}),
            Reason::Invalid,
            "spec.jobId: 7 must be a string",
        ),
        (
            "bad origin",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "s3://b/p", "origin": "MANUAL"}),
            Reason::Invalid,
            "spec.origin: \"MANUAL\" is not accepted; expected one of USER_REQUEST, SUSPEND, COPIED, RETAINED_CHECKPOINT",
        ),
        (
            "bad type",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "s3://b/p", "type": "DELTA"}),
            Reason::Invalid,
            "spec.type: \"DELTA\" is not accepted",
        ),
        (
            "bad format",
            json!({"deploymentName": "top-speed-windowing", "savepointLocation": "s3://b/p", "savepointFormatType": "canonical"}),
            Reason::Invalid,
            "spec.savepointFormatType: \"canonical\" is not accepted",
        ),
        (
            "spec not object",
            json!("s3://b/p"),
            Reason::Invalid,
            "spec: \"s3://b/p\" must be an object",
        ),
    ];
    for (case, spec, reason, text) in cases {
        let decision = create(spec);
        assert!(!decision.allowed, "{case}: allowed");
        assert_eq!(decision.reason, reason, "{case}");
        let message = decision.message.unwrap_or_default();
        assert!(message.contains(text), "{case}: {message}");
        assert!(
            decision.patch.is_none(),
            "{case}: a denial carries no patch"
        );
    }
}

#[test]
fn every_field_error_is_reported_at_once() {
    let decision = create(json!({"savepointLocation": "ftp://h/p", "jobId": "nope"}));
    let message = decision.message.unwrap();
    assert!(
        message.starts_with("invalid Savepoint, 3 problems:"),
        "{message}"
    );
    for field in [
        "spec.savepointLocation",
        "spec.jobId",
        "spec.deploymentName",
    ] {
        assert!(message.contains(field), "{field} missing from {message}");
    }
}

#[test]
fn bad_state_and_annotation_are_refused() {
    let mut object = mk_savepoint(good_spec());
    object["status"]["state"] = "DONE".into();
    object["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "v3" });
    let decision = mutate(
        &mk_request("CREATE", object, None),
        &mk_index(),
        &Policy::default(),
        Instant::now(),
    );
    let message = decision.message.unwrap();
    assert!(message.contains("status.state: \"DONE\""), "{message}");
    assert!(
        message.contains("\"v3\" is not a decimal integer"),
        "{message}"
    );
}

#[test]
fn restore_warnings() {
    let mut index = mk_index();
    let mut deployment = mk_deployment(
        "latest-savepoint",
        "22222222-2222-2222-2222-222222222222",
        Some("5"),
    );
    deployment.restore_kind = Some(RestoreKind::LatestSavepoint);
    deployment.has_savepoints_dir = false;
    index.apply_deployment(deployment);
    let mut spec = good_spec();
    spec["deploymentName"] = "latest-savepoint".into();
    spec["origin"] = "RETAINED_CHECKPOINT".into();
    let mut object = mk_savepoint(spec);
    object["status"]["state"] = "STARTED".into();
    object["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "4" });
    let decision = mutate(
        &mk_request("CREATE", object, None),
        &index,
        &Policy::default(),
        Instant::now(),
    );
    let all = decision.warnings.join("\n");
    for expected in [
        "state.savepoints.dir",
        "status.state is STARTED",
        "LATEST_SAVEPOINT, which skips",
        "is \"4\" but Deployment \"latest-savepoint\" is at spec version \"5\"",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in\n{all}");
    }
    let ubs = Policy {
        universal_blob_storage: true,
        ..Policy::default()
    };
    let decision = mutate(
        &mk_request(
            "CREATE",
            mk_savepoint(
                json!({"deploymentName": "latest-savepoint", "savepointLocation": "s3://b/p"}),
            ),
            None,
        ),
        &index,
        &ubs,
        Instant::now(),
    );
    assert!(
        !decision
            .warnings
            .join("\n")
            .contains("state.savepoints.dir")
    );
}

#[test]
fn restore_kind_none_warns() {
    let mut index = mk_index();
    let mut deployment = mk_deployment("never", "33333333-3333-3333-3333-333333333333", Some("1"));
    deployment.restore_kind = Some(RestoreKind::None);
    index.apply_deployment(deployment);
    let decision = mutate(
        &mk_request(
            "CREATE",
            mk_savepoint(json!({"deploymentName": "never", "savepointLocation": "s3://b/p"})),
            None,
        ),
        &index,
        &Policy::default(),
        Instant::now(),
    );
    assert!(
        decision
            .warnings
            .iter()
            .any(|w| w.contains("restoreStrategy.kind NONE")),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn update_rules() {
    let old = mk_savepoint(good_spec());
    let index = mk_index();
    let policy = Policy::default();
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"team": "streaming"});
    assert!(
        validate(
            &mk_request("UPDATE", labelled, Some(old.clone())),
            &index,
            &policy
        )
        .allowed
    );

    let mut filled = old.clone();
    filled["spec"]["deploymentId"] = UID.into();
    assert!(
        validate(
            &mk_request("UPDATE", filled, Some(old.clone())),
            &index,
            &policy
        )
        .allowed,
        "filling in a missing field is allowed"
    );

    for (field, value) in [
        ("savepointLocation", json!("s3://flink-state/elsewhere")),
        ("deploymentName", json!("other")),
        (
            "flinkSavepointId",
            json!("11111111-1111-1111-1111-111111111111"),
        ),
    ] {
        let mut changed = old.clone();
        changed["spec"][field] = value;
        let decision = validate(
            &mk_request("UPDATE", changed, Some(old.clone())),
            &index,
            &policy,
        );
        assert_eq!(decision.reason, Reason::Immutable, "{field}");
        assert!(decision.message.unwrap().contains(&format!("spec.{field}")));
    }
    let mut removed = old.clone();
    removed["spec"]
        .as_object_mut()
        .unwrap()
        .remove("flinkSavepointId");
    let decision = validate(&mk_request("UPDATE", removed, Some(old)), &index, &policy);
    assert!(decision.message.unwrap().contains("cannot be removed"));
}

#[test]
fn validate_rechecks_the_deployment_on_create() {
    let index = mk_index();
    let decision = validate(
        &mk_request(
            "CREATE",
            mk_savepoint(json!({"deploymentName": "unversioned", "savepointLocation": "s3://b/p"})),
            None,
        ),
        &index,
        &Policy::default(),
    );
    assert_eq!(decision.reason, Reason::DeploymentUnversioned);
    assert!(
        validate(
            &mk_request("CREATE", mk_savepoint(good_spec()), None),
            &index,
            &Policy::default()
        )
        .allowed
    );
}

#[test]
fn other_kinds_pass_unchanged() {
    let mut request = mk_request(
        "CREATE",
        json!({"kind": "ConfigMap", "metadata": {"name": "x"}}),
        None,
    );
    request.kind = decode::GroupVersionKind {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
    };
    for decision in [
        mutate(&request, &mk_index(), &Policy::default(), Instant::now()),
        validate(&request, &mk_index(), &Policy::default()),
    ] {
        assert_eq!(decision.reason, Reason::NotASavepoint);
        assert!(decision.allowed && decision.patch.is_none());
    }
}

#[test]
fn captured_fixtures_decide_as_expected() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let read =
        |name: &str| decode_review(&std::fs::read(format!("{dir}/{name}")).unwrap()).unwrap();
    let index = mk_index();
    let create = mutate(
        &read("savepoint-create.json"),
        &index,
        &Policy::default(),
        Instant::now(),
    );
    assert_eq!(create.reason, Reason::Mutated);
    assert!(
        create.warnings.iter().any(|w| w.contains("COPIED")),
        "{:?}",
        create.warnings
    );
    let dry = read("savepoint-dryrun.json");
    assert!(dry.is_dry_run());
    let gate = mk_gate(index.clone(), Policy::default(), TTL);
    assert!(gate.admit_mutate(&dry, Instant::now()).allowed);
    assert_eq!(gate.store().sizes().provisional, 0);
    assert!(validate(&read("savepoint-update.json"), &index, &Policy::default()).allowed);
}

#[test]
fn response_carries_base64_patch_and_status() {
    let decision = create(good_spec());
    let review = serde_json::to_value(response("u-1", &decision)).unwrap();
    assert_eq!(review["response"]["uid"], "u-1");
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    use base64::Engine;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().unwrap())
        .unwrap();
    let ops: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(ops[0]["op"], "add");
    let denied = serde_json::to_value(response("u-2", &create(json!({})))).unwrap();
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(denied["response"]["status"]["code"], 422);
    assert!(denied["response"].get("patch").is_none());
}

#[test]
fn an_invalid_name_is_refused_before_anything_is_held() {
    let mut object = mk_savepoint(good_spec());
    object["metadata"]["name"] = "Not_A_Name".into();
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let decision = gate.admit_mutate(&mk_request("CREATE", object, None), Instant::now());
    assert!(
        decision
            .message
            .unwrap()
            .contains("metadata.name: \"Not_A_Name\" is not a valid name")
    );
    assert_eq!(gate.store().sizes().provisional, 0);
}

#[test]
fn validate_confirms_the_hold_of_an_admitted_create() {
    let mut index = Index::new(LocationRules::default());
    index.apply_deployment(mk_deployment("top-speed-windowing", UID, Some("3")));
    let gate = mk_gate(index, Policy::default(), Duration::from_secs(600));
    let now = Instant::now();
    let request = mk_request("CREATE", mk_savepoint(good_spec()), None);
    gate.admit_mutate(&request, now);
    let location = "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab";
    assert_eq!(
        holder_count(&gate, location, now + crate::index::TENTATIVE_TTL),
        0
    );
    assert!(gate.admit_validate(&request, now).allowed);
    assert_eq!(
        holder_count(&gate, location, now + Duration::from_secs(599)),
        1
    );
}

/// A `generateName` create of the good spec: no name yet, only the prefix.
fn generated_create(uid: &str) -> Request {
    let mut object = mk_savepoint(good_spec());
    let metadata = object["metadata"].as_object_mut().unwrap();
    metadata.remove("name");
    metadata.insert("generateName".into(), "restore-".into());
    let mut request = mk_request("CREATE", object, None);
    request.uid = uid.into();
    request
}

#[test]
fn concurrent_generate_name_creates_are_two_holders() {
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let now = Instant::now();
    let (first, second) = (generated_create("uid-a"), generated_create("uid-b"));
    let decisions: Vec<Decision> = std::thread::scope(|scope| {
        let a = scope.spawn(|| gate.admit_mutate(&first, now));
        let b = scope.spawn(|| gate.admit_mutate(&second, now));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let copied: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.warnings.iter().any(|w| w.contains("COPIED")))
        .collect();
    assert_eq!(copied.len(), 1, "exactly one keeps its origin");
    assert!(
        copied[0].warnings[0].contains("Savepoint default/restore-*"),
        "{:?}",
        copied[0].warnings
    );
    let location = "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab";
    assert_eq!(holder_count(&gate, location, now), 2);

    let mut stored = generated_create("uid-c");
    stored.name = "restore-x7k2p".into();
    stored.object.as_mut().unwrap().metadata.name = Some("restore-x7k2p".into());
    assert!(gate.admit_validate(&stored, now).allowed);
    let holders = gate.store().holders(
        &NormalizedLocation::parse(location, &LocationRules::default()).unwrap(),
        now,
    );
    let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
    assert_eq!(
        holders.len(),
        2,
        "one tentative hold became the named one: {names:?}"
    );
    assert!(
        names.contains(&"default/restore-x7k2p".to_string()),
        "{names:?}"
    );
}

#[test]
fn names_the_api_server_would_refuse_are_refused_first() {
    let huge = "a".repeat(700 * 1024);
    let mut object = mk_savepoint(good_spec());
    let metadata = object["metadata"].as_object_mut().unwrap();
    metadata.remove("name");
    metadata.insert("generateName".into(), huge.into());
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let decision = gate.admit_mutate(&mk_request("CREATE", object, None), Instant::now());
    assert_eq!(decision.reason, Reason::Invalid);
    let message = decision.message.unwrap();
    assert!(message.contains("metadata.generateName"), "{message}");
    assert!(message.len() < 1024, "the value is not echoed whole");
    assert_eq!(gate.store().sizes().provisional, 0);

    let mut request = mk_request("CREATE", mk_savepoint(good_spec()), None);
    request.namespace = "team\nFORGED".into();
    let decision = gate.admit_mutate(&request, Instant::now());
    assert!(decision.message.unwrap().contains("request.namespace"));
    request.namespace = "default".into();
    request.name = "a\u{1b}[31m".into();
    let decision = gate.admit_validate(&request, Instant::now());
    assert!(decision.message.unwrap().contains("request.name"));
}

#[test]
fn the_copied_warning_names_a_bounded_number_of_holders() {
    let gate = mk_gate(mk_index(), Policy::default(), TTL);
    let now = Instant::now();
    for i in 0..300 {
        let mut object = mk_savepoint(good_spec());
        object["metadata"]["name"] = format!("{}-{i}", "h".repeat(240)).into();
        gate.admit_mutate(&mk_request("CREATE", object, None), now);
    }
    let mut request = mk_request("CREATE", mk_savepoint(good_spec()), None);
    request.dry_run = Some(true);
    let decision = gate.admit_mutate(&request, now);
    let answer = serde_json::to_string(&response("u", &decision)).unwrap();
    assert!(
        answer.contains("by 300 Savepoints, among them default/hhh"),
        "{answer}"
    );
    assert!(answer.len() < 8 * 1024, "{} bytes", answer.len());
}

#[test]
fn update_rules_that_cannot_be_bypassed() {
    let index = mk_index();
    let policy = Policy::default();
    let new = mk_savepoint(good_spec());
    let decision = validate(&mk_request("UPDATE", new, None), &index, &policy);
    assert!(!decision.allowed, "an UPDATE without oldObject is refused");
    assert!(decision.message.unwrap().contains("no oldObject"));

    let shared = json!({
        "deploymentName": "top-speed-windowing",
        "savepointLocation": "s3://flink-state/checkpoints/3f2a/chk-42",
        "origin": "COPIED"
    });
    let old = mk_savepoint(shared.clone());
    let mut retained = old.clone();
    retained["spec"]["origin"] = "RETAINED_CHECKPOINT".into();
    let decision = validate(
        &mk_request("UPDATE", retained.clone(), Some(old.clone())),
        &index,
        &policy,
    );
    assert_eq!(decision.reason, Reason::Immutable);
    let message = decision.message.unwrap();
    assert!(
        message.contains("spec.origin") && message.contains("default/retained-chk-42"),
        "{message}"
    );
    let alone = Index::new(LocationRules::default());
    assert!(
        validate(&mk_request("UPDATE", retained, Some(old)), &alone, &policy).allowed,
        "a location no one else holds may change origin"
    );
}

#[test]
fn delete_and_connect_pass_and_shared_deletes_warn_or_are_refused() {
    let index = mk_index();
    let stored = mk_savepoint(json!({
        "deploymentName": "top-speed-windowing",
        "savepointLocation": "s3://flink-state/checkpoints/3f2a/chk-42"
    }));
    let mut delete = mk_request("DELETE", Value::Null, Some(stored.clone()));
    delete.name = "restore".into();
    let decision = validate(&delete, &index, &Policy::default());
    assert!(decision.allowed);
    assert!(
        decision.warnings[0].contains("default/retained-chk-42"),
        "{:?}",
        decision.warnings
    );
    let refusing = Policy {
        shared_delete: crate::domain::SharedDelete::Deny,
        ..Policy::default()
    };
    let decision = validate(&delete, &index, &refusing);
    assert_eq!(decision.reason, Reason::SharedLocation);

    let mut alone = mk_request("DELETE", Value::Null, Some(mk_savepoint(good_spec())));
    alone.name = "restore".into();
    let decision = validate(&alone, &index, &refusing);
    assert!(decision.allowed && decision.warnings.is_empty());
    let connect = mk_request("CONNECT", Value::Null, None);
    assert_eq!(
        validate(&connect, &index, &Policy::default()).reason,
        Reason::OtherOperation
    );
}

#[test]
fn a_namespace_may_use_only_its_own_locations() {
    let tenants = crate::domain::TenantLocations::parse(
        "default: [s3://flink-state/savepoints]",
        &LocationRules::default(),
    )
    .unwrap();
    let policy = Policy {
        tenant_locations: Some(Arc::new(tenants)),
        ..Policy::default()
    };
    let own = mk_request("CREATE", mk_savepoint(good_spec()), None);
    assert!(mutate(&own, &mk_index(), &policy, Instant::now()).allowed);
    assert!(validate(&own, &mk_index(), &policy).allowed);
    let mut spec = good_spec();
    spec["savepointLocation"] = "s3://flink-state/savepoints-of-team-b/sp-1".into();
    let theirs = mk_request("CREATE", mk_savepoint(spec), None);
    for decision in [
        mutate(&theirs, &mk_index(), &policy, Instant::now()),
        validate(&theirs, &mk_index(), &policy),
    ] {
        assert_eq!(decision.reason, Reason::LocationNotAllowed);
        let message = decision.message.unwrap();
        assert!(
            message.contains("spec.savepointLocation")
                && message.contains("s3://flink-state/savepoints/..."),
            "{message}"
        );
    }
}

#[test]
fn the_savepoint_directory_and_claim_mode_are_read_as_the_deployments_flink_reads_them() {
    let facts = |flink: &str, configuration: Value| {
        DeploymentFacts::from_parts(
            "default",
            "app",
            UID,
            None,
            Some(&json!({ "template": { "spec": {
                "artifact": { "flinkVersion": flink },
                "flinkConfiguration": configuration,
            } } })),
        )
    };
    let flink2 = facts(
        "2.2",
        json!({ "execution.checkpointing.savepoint-dir": "s3://b/sp" }),
    );
    assert!(flink2.has_savepoints_dir, "Flink 2 reads the new key");
    let flink119 = facts(
        "1.19",
        json!({ "execution.checkpointing.savepoint-dir": "s3://b/sp" }),
    );
    assert!(
        !flink119.has_savepoints_dir,
        "Flink 1.19 does not know the new key"
    );
    let warnings = warnings::restore_warnings(&flink119, &[], None, &Policy::default());
    assert!(
        warnings[0].contains("Deployment \"app\" (Flink 1.19) sets no savepoint directory (state.savepoints.dir or savepoints.state.backend.fs.dir)"),
        "{warnings:?}"
    );
    let alias = facts("2.2", json!({ "state.savepoints.dir": "s3://b/sp" }));
    assert!(
        alias.has_savepoints_dir,
        "the deprecated alias still counts"
    );

    let claiming = facts(
        "2.2",
        json!({ "state.savepoints.dir": "s3://b/sp", "execution.state-recovery.claim-mode": "claim" }),
    );
    let warnings = warnings::restore_warnings(
        &claiming,
        &[],
        Some(crate::domain::Origin::Copied),
        &Policy::default(),
    );
    assert!(
        warnings
            .iter()
            .any(|w| w
                .contains("restores in CLAIM mode (execution.state-recovery.claim-mode is CLAIM)")),
        "{warnings:?}"
    );
    let platform_own = warnings::restore_warnings(
        &claiming,
        &[],
        Some(crate::domain::Origin::UserRequest),
        &Policy::default(),
    );
    assert!(platform_own.is_empty(), "{platform_own:?}");
    let old_claiming = facts(
        "1.17",
        json!({ "state.savepoints.dir": "s3://b/sp", "execution.savepoint-restore-mode": "CLAIM" }),
    );
    assert_eq!(
        old_claiming.claim_mode,
        Some(crate::domain::ClaimMode::Claim)
    );
}
