//! The whole decision path, from the bytes of a request body to the bytes of the answer:
//! `decode_review`, `/mutate` and `/validate` on the example state, the AdmissionReview
//! response. Checked on every input:
//!
//! - nothing panics, and every decision serializes into an AdmissionReview that echoes
//!   the uid, carries a message when denied and a patch only when allowed;
//! - an allowed `/mutate` patch touches only the spec-version annotation, the Deployment
//!   reference and the origin, applies to the object as sent, and leaves an object that
//!   `/validate` accepts and a second `/mutate` leaves alone.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use savepoint_webhook::admission::decode::{self, ObjectView, Request};
use savepoint_webhook::admission::{self, Decision, Gate};
use savepoint_webhook::domain::{NormalizedLocation, Policy, ReferenceScope};
use savepoint_webhook::index::{HoldKind, Index, ObjectKey, Store};
use savepoint_webhook::resources::SPEC_VERSION_ANNOTATION;
use serde_json::Value;

struct World {
    index: Index,
    policies: [Policy; 2],
    now: Instant,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let now = Instant::now();
        let namespace = Policy::default();
        let cluster = Policy {
            scope: ReferenceScope::Cluster,
            universal_blob_storage: true,
            ..Policy::default()
        };
        let mut index = Index::new(namespace.locations.clone());
        let state = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/state");
        savepoint_webhook::state::dir::load_dir(state.as_ref(), &mut index)
            .expect("deploy/examples/state loads");
        World {
            index,
            policies: [namespace, cluster],
            now,
        }
    })
}

/// A gate of its own for one input, so that no input's holds reach another: the example
/// state, and a hold of the fixtures' location by a Savepoint in another namespace.
fn gate(world: &World, policy: &Policy) -> Gate {
    // Holds never expire during a run.
    let store = Arc::new(Store::new(
        world.index.clone(),
        Duration::from_secs(365 * 24 * 3600),
    ));
    let location = NormalizedLocation::parse(
        "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab",
        &policy.locations,
    )
    .expect("the fixtures' location parses");
    store.hold(
        &store.read(),
        &location,
        &ObjectKey::new("other", "held-elsewhere"),
        HoldKind::Confirmed,
        world.now,
    );
    Gate::new(store, Arc::new(policy.clone()))
}

/// Paths a `/mutate` patch may touch (`/metadata` only when the object has none).
fn allowed_path(path: &str) -> bool {
    path == "/metadata"
        || path == "/metadata/annotations"
        || path == "/spec/deploymentName"
        || path == "/spec/deploymentId"
        || path == "/spec/origin"
        || path
            .strip_prefix("/metadata/annotations/")
            .is_some_and(|key| key == SPEC_VERSION_ANNOTATION)
}

/// Renders `decision` and checks the bytes say what the decision says.
fn render(request: &Request, decision: &Decision) {
    let bytes = serde_json::to_vec(&admission::response(&request.uid, decision))
        .expect("a response always serializes");
    let review: Value = serde_json::from_slice(&bytes).expect("a response is JSON");
    let response = &review["response"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(response["uid"].as_str(), Some(request.uid.as_str()));
    assert_eq!(response["allowed"].as_bool(), Some(decision.allowed));
    if decision.allowed {
        assert!(response.get("status").is_none(), "{review}");
        match &decision.patch {
            Some(patch) => {
                assert_eq!(response["patchType"], "JSONPatch");
                let text = base64::engine::general_purpose::STANDARD
                    .decode(response["patch"].as_str().expect("patch is a string"))
                    .expect("patch is base64");
                let decoded: json_patch::Patch =
                    serde_json::from_slice(&text).expect("patch is a JSON Patch");
                assert_eq!(&decoded, patch);
            }
            None => assert!(response.get("patch").is_none(), "{review}"),
        }
    } else {
        assert!(response.get("patch").is_none(), "{review}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a denial says why: {review}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::decode_review(data) else {
        return;
    };
    let world = world();
    for policy in &world.policies {
        let gate = gate(world, policy);
        let mutated = gate.admit_mutate(&request, world.now);
        render(&request, &mutated);
        let validated = gate.admit_validate(&request, world.now);
        render(&request, &validated);

        let Some(patch) = mutated.patch.as_ref().filter(|_| mutated.allowed) else {
            continue;
        };
        for op in &patch.0 {
            let path = op.path().to_string();
            assert!(allowed_path(&path), "the patch touches {path}: {patch:?}");
        }
        // The object as the API server holds it; a body deeper than the JSON value
        // parser's recursion limit decodes (its depth is in skipped fields) but cannot be
        // patched here, nor be sent by an API server.
        let Ok(body) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let mut object = body["request"]["object"].clone();
        if let Err(err) = json_patch::patch(&mut object, patch) {
            panic!("the patch {patch:?} does not apply to {object}: {err}");
        }
        let view: ObjectView =
            serde_json::from_value(object.clone()).expect("a patched object still decodes");
        let patched = Request {
            object: Some(view),
            ..request.clone()
        };
        let after = gate.admit_validate(&patched, world.now);
        assert!(
            after.allowed,
            "/validate refuses the patched object {object}: {:?}",
            after.message
        );
        let again = gate.admit_mutate(&patched, world.now);
        assert!(
            again.allowed && again.patch.is_none(),
            "a second /mutate changes the patched object {object} again: {again:?}"
        );
    }
});
