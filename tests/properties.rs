//! Properties of location normalization and of the `/mutate` patch, checked on generated
//! inputs: normalization is idempotent, the spellings DESIGN.md calls one location compare
//! equal, two genuinely different paths never do, and the patch of an admitted Savepoint
//! leaves an object `/validate` accepts, touching only the fields the contract names.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

#[path = "support/kit.rs"]
mod kit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kit::Review;
use proptest::prelude::*;
use proptest::test_runner::Config;
use savepoint_webhook::admission::{Gate, decode};
use savepoint_webhook::domain::location::{
    CASE_FOLDED_AUTHORITY_SCHEMES, CONTAINER_AT_ACCOUNT_SCHEMES,
};
use savepoint_webhook::domain::{Location, LocationRules, NormalizedLocation};
use savepoint_webhook::domain::{Policy, ReferenceScope};
use savepoint_webhook::index::{
    DeploymentFacts, HoldKind, Index, ObjectKey, SavepointFacts, Store,
};
use savepoint_webhook::resources::{RestoreKind, SPEC_VERSION_ANNOTATION};
use serde_json::{Value, json};

fn normalized(raw: &str) -> Option<NormalizedLocation> {
    NormalizedLocation::parse(raw, &LocationRules::default()).ok()
}

fn normalize(raw: &str) -> Option<String> {
    Location::parse(raw, &LocationRules::default())
        .ok()
        .map(|l| l.to_string())
}

/// A location as the contract sees it: scheme after aliasing, authority, path segments
/// (never `.`, `..` or empty; the last is never `_metadata`, which names the file).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    scheme: &'static str,
    authority: String,
    segments: Vec<String>,
}

impl Model {
    /// The model as the contract compares it: host names case-folded where DNS folds them
    /// (see `CASE_FOLDED_AUTHORITY_SCHEMES`); `None` where the authority names a user,
    /// which only Azure's `CONTAINER@ACCOUNT` may.
    fn contracted(mut self) -> Option<Self> {
        if CASE_FOLDED_AUTHORITY_SCHEMES.contains(&self.scheme) {
            self.authority = self.authority.to_ascii_lowercase();
        }
        let user_ok = CONTAINER_AT_ACCOUNT_SCHEMES.contains(&self.scheme);
        (user_ok || !self.authority.contains('@')).then_some(self)
    }

    /// The one normalized spelling.
    fn canonical(&self) -> String {
        let mut out = format!("{}://{}", self.scheme, self.authority);
        for segment in &self.segments {
            out.push('/');
            out.push_str(segment);
        }
        out
    }
}

/// Canonical schemes (after `s3a`/`s3p` folding).
const SCHEMES: &[&str] = &[
    "s3", "gs", "hdfs", "viewfs", "wasb", "wasbs", "abfs", "abfss", "oss", "file",
];

fn needs_no_authority(scheme: &str) -> bool {
    matches!(scheme, "file" | "hdfs" | "viewfs")
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9_-]{1,6}",
        1 => "[a-z0-9]{1,3}[.:@%+=,~][a-z0-9]{0,3}",
        1 => Just("_metadata".to_string()),
        1 => Just("...".to_string()),
        1 => Just(".x".to_string()),
        1 => Just("chk-42".to_string()),
    ]
}

fn authority() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9][a-z0-9.-]{0,8}",
        1 => "[a-zA-Z0-9]{1,5}:[0-9]{2,4}",
        1 => "[a-z]{1,4}@[a-z]{1,4}\\.blob\\.core\\.windows\\.net",
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        proptest::sample::select(SCHEMES),
        authority(),
        any::<bool>(),
        proptest::collection::vec(segment(), 0..5),
    )
        .prop_filter_map(
            "a location needs a path or an authority",
            |(scheme, authority, local, mut segments)| {
                let authority = if scheme == "file" || (local && needs_no_authority(scheme)) {
                    String::new()
                } else {
                    authority
                };
                while segments.last().is_some_and(|s| s == "_metadata") {
                    segments.pop();
                }
                (!(authority.is_empty() && segments.is_empty()))
                    .then_some(Model {
                        scheme,
                        authority,
                        segments,
                    })?
                    .contracted()
            },
        )
}

/// How to spell a model: case of the scheme, alias, slashes, the `_metadata` file name.
#[derive(Clone, Debug)]
struct Spelling {
    scheme_case: Vec<bool>,
    alias: usize,
    file_form: usize,
    localhost_case: Vec<bool>,
    separators: Vec<usize>,
    trailing_slashes: usize,
    metadata_file: bool,
    slash_after_metadata: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        proptest::collection::vec(any::<bool>(), 6),
        0..3usize,
        0..3usize,
        proptest::collection::vec(any::<bool>(), 9),
        proptest::collection::vec(1..4usize, 6),
        0..3usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                scheme_case,
                alias,
                file_form,
                localhost_case,
                separators,
                trailing_slashes,
                metadata_file,
                slash_after_metadata,
            )| Spelling {
                scheme_case,
                alias,
                file_form,
                localhost_case,
                separators,
                trailing_slashes,
                metadata_file,
                slash_after_metadata,
            },
        )
}

fn recase(text: &str, upper: &[bool]) -> String {
    text.chars()
        .zip(upper.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// One spelling of `model` that DESIGN.md says is the same location.
fn spell(model: &Model, how: &Spelling) -> String {
    let scheme = match model.scheme {
        "s3" => ["s3", "s3a", "s3p"][how.alias],
        other => other,
    };
    let mut out = recase(scheme, &how.scheme_case);
    // Only the slashes between path segments may be doubled: right after `scheme:` a
    // second slash would start an authority.
    let mut first_sep_single = false;
    if model.scheme == "file" {
        match how.file_form {
            0 => {
                out.push(':');
                first_sep_single = true;
            }
            1 => out.push_str("://"),
            _ => {
                out.push_str("://");
                out.push_str(&recase("localhost", &how.localhost_case));
            }
        }
    } else if model.authority.is_empty() && how.file_form == 0 {
        out.push(':');
        first_sep_single = true;
    } else {
        out.push_str("://");
        out.push_str(&model.authority);
    }
    let mut segments: Vec<&str> = model.segments.iter().map(String::as_str).collect();
    if how.metadata_file {
        segments.push("_metadata");
    }
    for (i, segment) in segments.iter().enumerate() {
        let n = if i == 0 && first_sep_single {
            1
        } else {
            how.separators[i % how.separators.len()]
        };
        out.push_str(&"/".repeat(n));
        out.push_str(segment);
    }
    let trailing = if how.metadata_file && !how.slash_after_metadata {
        0
    } else {
        how.trailing_slashes
    };
    if !(segments.is_empty() && model.authority.is_empty()) {
        out.push_str(&"/".repeat(trailing));
    }
    out
}

/// A change to a model that makes it a different location.
fn mutated(model: Model) -> impl Strategy<Value = Model> {
    let original = model.clone();
    (
        0..7usize,
        segment(),
        authority(),
        any::<prop::sample::Index>(),
    )
        .prop_filter_map(
            "the mutation must change the model",
            move |(kind, segment, authority, at)| {
                let mut m = model.clone();
                match kind {
                    0 => m.segments.push(segment),
                    1 if !m.segments.is_empty() => {
                        m.segments.remove(at.index(m.segments.len()));
                    }
                    2 if !m.segments.is_empty() => {
                        let i = at.index(m.segments.len());
                        m.segments[i] = segment;
                    }
                    3 if m.scheme != "file" => m.authority = authority,
                    4 => m.scheme = SCHEMES[at.index(SCHEMES.len())],
                    5 if !m.segments.is_empty() => {
                        let i = at.index(m.segments.len());
                        m.segments.insert(i, "_metadata".to_string());
                    }
                    6 if !m.segments.is_empty() => {
                        let i = at.index(m.segments.len());
                        m.segments[i] = recase(&m.segments[i], &[true]);
                    }
                    _ => return None,
                }
                if m.scheme == "file" {
                    m.authority.clear();
                }
                if m.authority.is_empty() && !needs_no_authority(m.scheme) {
                    return None;
                }
                if m.segments.last().is_some_and(|s| s == "_metadata")
                    || (m.authority.is_empty() && m.segments.is_empty())
                {
                    return None;
                }
                let m = m.contracted()?;
                (m != original).then_some(m)
            },
        )
}

/// Raw strings in the neighbourhood of locations, including broken ones.
fn raw_location() -> impl Strategy<Value = String> {
    prop_oneof![
        (model(), spelling()).prop_map(|(m, s)| spell(&m, &s)),
        "(s3|S3a|s3p|gs|hdfs|file|FILE|viewfs|ftp)(:|:/|://|:///)[a-zA-Z0-9_./:@%~-]{0,24}",
        "[a-zA-Z0-9_./:@?#%-]{0,24}",
    ]
}

proptest! {
    #![proptest_config(Config { cases: 2000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn normalization_is_idempotent(raw in raw_location()) {
        if let Some(once) = normalize(&raw) {
            prop_assert_eq!(normalize(&once), Some(once.clone()), "{:?} normalized to {:?}", raw, once);
        }
    }

    #[test]
    fn spellings_of_one_location_compare_equal(m in model(), a in spelling(), b in spelling()) {
        let (x, y) = (spell(&m, &a), spell(&m, &b));
        prop_assert_eq!(normalize(&x), Some(m.canonical()), "spelling {:?}", x);
        prop_assert_eq!(normalize(&y), Some(m.canonical()), "spelling {:?}", y);
    }

    #[test]
    fn different_paths_never_compare_equal(
        (a, b) in model().prop_flat_map(|m| (Just(m.clone()), mutated(m))),
        sa in spelling(),
        sb in spelling(),
    ) {
        let (x, y) = (spell(&a, &sa), spell(&b, &sb));
        match (normalize(&x), normalize(&y)) {
            (Some(nx), Some(ny)) => prop_assert_ne!(nx, ny, "{:?} and {:?} are different locations", x, y),
            // A refusal never merges anything; but a well-formed model must parse.
            (nx, ny) => prop_assert!(false, "{:?} -> {:?}, {:?} -> {:?}", x, nx, y, ny),
        }
    }

    #[test]
    fn a_directory_named_metadata_is_refused_not_merged(m in model(), how in spelling()) {
        // LOCATION/_metadata/_metadata is the metadata file of a directory called
        // `_metadata`; dropping both names would merge it with LOCATION.
        let mut inner = m.clone();
        inner.segments.push("_metadata".to_string());
        let raw = spell(&inner, &Spelling { metadata_file: true, ..how });
        let got = normalize(&raw);
        prop_assert!(got.is_none() || got != Some(m.canonical()), "{:?} -> {:?}", raw, got);
        if let Some(n) = got {
            prop_assert_eq!(normalize(&n), Some(n.clone()));
        }
    }

    #[test]
    fn a_relative_path_is_never_the_absolute_one(
        scheme in proptest::sample::select(&["file", "hdfs", "viewfs"][..]),
        segments in proptest::collection::vec(segment(), 1..4),
    ) {
        prop_assume!(segments.last().is_some_and(|s| s != "_metadata"));
        // `file:a/b` is relative to some working directory; `file:/a/b` is not.
        let relative = format!("{scheme}:{}", segments.join("/"));
        let absolute = Model { scheme, authority: String::new(), segments };
        let got = normalize(&relative);
        prop_assert!(got != Some(absolute.canonical()), "{:?} -> {:?}", relative, got);
    }
}

// ---------------------------------------------------------------------------------------
// Patches

const DEPLOYMENT_UID: &str = "c8e5eee4-414c-40aa-9d1d-76c4434d055a";
const OTHER_UID: &str = "0d5bd1a4-7b1e-4f38-8f0e-3d2b6f1b9a11";
const TEAM_B_UID: &str = "6f1c7f0e-2f77-4a53-a8a9-5b1c36a1e0a2";
const HELD: &str = "s3://flink-state/checkpoints/3f2a/chk-42";

fn deployment(namespace: &str, name: &str, uid: &str, version: Option<&str>) -> DeploymentFacts {
    let annotations: Option<BTreeMap<String, String>> =
        version.map(|v| [(SPEC_VERSION_ANNOTATION.to_string(), v.to_string())].into());
    let mut facts = DeploymentFacts::from_parts(namespace, name, uid, annotations.as_ref(), None);
    facts.restore_kind = Some(RestoreKind::LatestSavepoint);
    facts
}

/// The gate the decisions go through: the example state plus a few more Deployments and
/// a provisional hold.
fn gate(now: Instant, policy: Policy) -> Gate {
    let mut index = Index::new(LocationRules::default());
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state");
    savepoint_webhook::state::dir::load_dir(state.as_ref(), &mut index).expect("example state");
    index.apply_deployment(deployment("default", "other", OTHER_UID, Some("12")));
    index.apply_deployment(deployment(
        "team-b",
        "top-speed-windowing",
        TEAM_B_UID,
        Some("1"),
    ));
    index.apply_savepoint(&SavepointFacts {
        namespace: "team-b".into(),
        name: "theirs".into(),
        location: "gs://shared/sp/savepoint-1".into(),
    });
    let store = Arc::new(Store::new(index, Duration::from_secs(60)));
    let held = normalized("s3://flink-state/savepoints/just-admitted").expect("parses");
    store.hold(
        &store.read(),
        &held,
        &ObjectKey::new("default", "moments-ago"),
        HoldKind::Confirmed,
        now,
    );
    Gate::new(store, Arc::new(policy))
}

#[derive(Clone, Debug)]
struct Case {
    namespace: &'static str,
    name: Option<&'static str>,
    deployment_name: Option<&'static str>,
    deployment_id: Option<&'static str>,
    annotations: Option<Vec<(&'static str, &'static str)>>,
    origin: Option<Value>,
    location: &'static str,
    state: Option<&'static str>,
    flink_savepoint_id: Option<&'static str>,
    job_id: Option<&'static str>,
    scope: ReferenceScope,
    dry_run: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let annotations = prop_oneof![
        Just(None),
        Just(Some(vec![])),
        Just(Some(vec![(SPEC_VERSION_ANNOTATION, "3")])),
        Just(Some(vec![(SPEC_VERSION_ANNOTATION, "7")])),
        Just(Some(vec![("team/owner~x", "a"), ("b", "c")])),
        Just(Some(vec![(SPEC_VERSION_ANNOTATION, "three")])),
    ];
    let origin = prop_oneof![
        4 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!("USER_REQUEST"))),
        1 => Just(Some(json!("SUSPEND"))),
        1 => Just(Some(json!("COPIED"))),
        1 => Just(Some(json!("RETAINED_CHECKPOINT"))),
        1 => Just(Some(json!("copied"))),
        1 => Just(Some(json!(7))),
    ];
    (
        (
            prop_oneof![Just("default"), Just("team-b")],
            prop_oneof![Just(Some("restored")), Just(None)],
            prop_oneof![
                4 => Just(Some("top-speed-windowing")),
                2 => Just(Some("other")),
                1 => Just(Some("not-yet-reconciled")),
                1 => Just(Some("missing")),
                2 => Just(None),
            ],
            prop_oneof![
                4 => Just(None),
                2 => Just(Some(DEPLOYMENT_UID)),
                1 => Just(Some(OTHER_UID)),
                1 => Just(Some(TEAM_B_UID)),
                1 => Just(Some("not-a-uuid")),
            ],
            annotations,
            origin,
        ),
        (
            prop_oneof![
                Just(HELD),
                Just("s3a://flink-state//checkpoints/3f2a/chk-42/_metadata"),
                Just("S3P://flink-state/checkpoints/3f2a/chk-42/"),
                Just("s3://flink-state/checkpoints/3f2a/chk-43"),
                Just("s3://flink-state/savepoints/just-admitted/_metadata"),
                Just("gs://shared/sp/savepoint-1"),
                Just("file:/data/savepoints/savepoint-f35801-c840b0a020e8"),
                Just("ftp://host/p"),
                Just("s3://b/../p"),
            ],
            prop_oneof![Just(Some("COMPLETED")), Just(Some("STARTED")), Just(None)],
            prop_oneof![
                Just(Some("00000000-0000-0000-0000-000000000000")),
                Just(Some("3b1c1d2e-9c8e-4b7a-8e55-5f0d9c1e2a3b")),
                Just(None),
            ],
            prop_oneof![
                4 => Just(None),
                1 => Just(Some("a3f2a8c1b2d34e5f6a7b8c9d0e1f2a3b")),
                2 => Just(Some("a3f2a8c1-b2d3-4e5f-6a7b-8c9d0e1f2a3b"))
            ],
            prop_oneof![
                Just(ReferenceScope::Namespace),
                Just(ReferenceScope::Cluster)
            ],
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (namespace, name, deployment_name, deployment_id, annotations, origin),
                (location, state, flink_savepoint_id, job_id, scope, dry_run),
            )| Case {
                namespace,
                name,
                deployment_name,
                deployment_id,
                annotations,
                origin,
                location,
                state,
                flink_savepoint_id,
                job_id,
                scope,
                dry_run,
            },
        )
}

fn object(case: &Case) -> Value {
    let mut metadata = json!({ "namespace": case.namespace });
    match case.name {
        Some(name) => metadata["name"] = json!(name),
        None => metadata["generateName"] = json!("restored-"),
    }
    if let Some(annotations) = &case.annotations {
        metadata["annotations"] = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let mut spec = json!({ "savepointLocation": case.location });
    for (key, value) in [
        ("deploymentName", case.deployment_name),
        ("deploymentId", case.deployment_id),
        ("flinkSavepointId", case.flink_savepoint_id),
        ("jobId", case.job_id),
    ] {
        if let Some(value) = value {
            spec[key] = json!(value);
        }
    }
    if let Some(origin) = &case.origin {
        spec["origin"] = origin.clone();
    }
    let mut object = json!({
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": metadata,
        "spec": spec,
    });
    if let Some(state) = case.state {
        object["status"] = json!({ "state": state });
    }
    object
}

const REVIEW_UID: &str = "3a1e2f4c-0000-4000-8000-000000000001";

fn review(case: &Case, object: &Value) -> decode::Request {
    let body = Review::create(object.clone())
        .uid(REVIEW_UID)
        .namespace(case.namespace)
        .name(case.name.unwrap_or_default().into())
        .dry_run(case.dry_run)
        .bytes();
    decode::decode_review(&body).expect("a well-formed AdmissionReview")
}

/// Paths a `/mutate` patch may touch.
fn allowed_path(path: &str) -> bool {
    let annotation = format!("/metadata/annotations/{SPEC_VERSION_ANNOTATION}");
    [
        "/metadata/annotations",
        annotation.as_str(),
        "/spec/deploymentName",
        "/spec/deploymentId",
        "/spec/origin",
    ]
    .contains(&path)
}

proptest! {
    #![proptest_config(Config { cases: 3000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn the_patch_leaves_an_object_validation_accepts(case in case()) {
        let now = Instant::now();
        let gate = gate(now, Policy { scope: case.scope, ..Policy::default() });
        let original = object(&case);
        let request = review(&case, &original);
        let location = normalized(case.location);
        let name = case.name.map_or(format!("restored-*{REVIEW_UID}"), str::to_string);
        let taken = location.as_ref().is_some_and(|location| {
            gate.store().holders(location, now).into_iter().any(|holder| {
                (holder.namespace.as_ref() != case.namespace || holder.name.as_ref() != name)
                    && (case.scope == ReferenceScope::Cluster || holder.namespace.as_ref() == case.namespace)
            })
        });
        let decision = gate.admit_mutate(&request, now);
        let validated = gate.admit_validate(&request, now);
        if !decision.allowed {
            // What /mutate refuses, /validate refuses too (it sees the same object).
            prop_assert!(!validated.allowed, "mutate denied {:?} but validate allowed", decision.message);
            prop_assert!(decision.patch.is_none());
            return Ok(());
        }
        let location = location.expect("an admitted location parses");
        let holds_itself = gate.store().holders(&location, now).into_iter().any(|h| {
            h.namespace.as_ref() == case.namespace && h.name.as_ref() == name
        });
        prop_assert_eq!(holds_itself, !case.dry_run, "a create holds its location unless it is a dry run");

        let mut patched = original.clone();
        if let Some(patch) = &decision.patch {
            let ops = serde_json::to_value(patch).expect("patch serializes");
            for op in ops.as_array().expect("a patch is an array") {
                let path = op["path"].as_str().expect("every op has a path");
                prop_assert!(allowed_path(path), "patch touches {}: {}", path, ops);
                prop_assert!(matches!(op["op"].as_str(), Some("add" | "replace")), "{}", op);
            }
            json_patch::patch(&mut patched, patch).map_err(|e| {
                TestCaseError::fail(format!("patch {ops} does not apply to {original}: {e}"))
            })?;
        }
        // Nothing else changed.
        let mut without = patched.clone();
        let mut before = original.clone();
        for value in [&mut without, &mut before] {
            value["metadata"].as_object_mut().unwrap().remove("annotations");
            for key in ["deploymentName", "deploymentId", "origin"] {
                value["spec"].as_object_mut().unwrap().remove(key);
            }
        }
        prop_assert_eq!(&without, &before);
        // Annotations other than the spec version are kept as they were.
        let others = |v: &Value| -> BTreeMap<String, Value> {
            v["metadata"]["annotations"].as_object().map(|m| {
                m.iter().filter(|(k, _)| *k != SPEC_VERSION_ANNOTATION).map(|(k, v)| (k.clone(), v.clone())).collect()
            }).unwrap_or_default()
        };
        prop_assert_eq!(others(&patched), others(&original));

        let spec = &patched["spec"];
        let index = gate.store().read();
        let deployment = index
            .deployment_by_name(case.namespace, spec["deploymentName"].as_str().expect("deploymentName filled in"))
            .expect("the named Deployment exists");
        prop_assert_eq!(spec["deploymentId"].as_str(), Some(deployment.uid.as_str()));
        let version = patched["metadata"]["annotations"][SPEC_VERSION_ANNOTATION].as_str();
        prop_assert!(version.is_some(), "no spec version in {}", patched);
        if original["metadata"]["annotations"].get(SPEC_VERSION_ANNOTATION).is_none() {
            prop_assert_eq!(version, deployment.spec_version.as_deref());
        }

        drop(index);
        // COPIED when the location is taken or no origin was given; else the given one.
        match original["spec"].get("origin").filter(|o| !o.is_null()) {
            Some(given) if !taken => prop_assert_eq!(spec.get("origin"), Some(given)),
            _ => prop_assert_eq!(spec["origin"].as_str(), Some("COPIED")),
        }

        let after = gate.admit_validate(&review(&case, &patched), now);
        prop_assert!(after.allowed, "validate refused the patched object {}: {:?}", patched, after.message);
        // The patch is idempotent: mutating the patched object changes nothing more.
        let again = gate.admit_mutate(&review(&case, &patched), now);
        prop_assert!(again.allowed && again.patch.is_none(), "{:?}", again);
    }
}
