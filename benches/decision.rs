//! Micro-benchmarks of the decision core on the captured AdmissionReviews in
//! `tests/fixtures/`: decode, validate, mutate (decide and build the patch), response
//! serialization, and the whole bytes-to-bytes path of `/mutate` and `/validate`. Decoding
//! is compared with kube-core's `AdmissionReview<DynamicObject>`, which materializes the
//! whole object (managedFields included) as JSON values.
//!
//! `cargo bench --bench decision`; `cargo bench --bench decision -- --test` runs each
//! benchmark once (what CI does, so the benchmarks cannot rot).
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use savepoint_webhook::admission::{self, Gate, decode};
use savepoint_webhook::domain::Policy;
use savepoint_webhook::index::{Index, Store};
use savepoint_webhook::state::dir::load_dir;

#[path = "../tests/support/kit.rs"]
mod kit;

const STATE: &str = kit::EXAMPLE_STATE;

/// A fixture's bytes, compact as the API server sends them (the files are indented).
fn fixture(name: &str) -> Vec<u8> {
    kit::fixture_compact(name)
}

/// The gate over the index the examples describe: the Deployment the fixtures name, and a
/// Savepoint holding the fixtures' location (so `/mutate` sets origin COPIED and warns).
fn example_gate() -> Gate {
    let policy = Policy::default();
    let mut index = Index::new(policy.locations.clone());
    load_dir(Path::new(STATE), &mut index).expect("the example state loads");
    Gate::new(
        Arc::new(Store::new(index, Duration::from_secs(60))),
        Arc::new(policy),
    )
}

/// Bytes of the AdmissionReview answering `decision`, as the server sends them.
fn response_bytes(uid: &str, decision: &admission::Decision) -> Vec<u8> {
    serde_json::to_vec(&admission::response(uid, decision)).expect("a response serializes")
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for name in ["savepoint-create.json", "savepoint-update.json"] {
        let body = fixture(name);
        // The floor: reading the JSON without keeping anything.
        group.bench_function(format!("skip-all/{name}"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body))
                    .expect("fixture is JSON")
            })
        });
        group.bench_function(format!("webhook/{name}"), |b| {
            b.iter(|| decode::decode_review(black_box(&body)).expect("fixture decodes"))
        });
        group.bench_function(format!("kube-core/{name}"), |b| {
            b.iter(|| {
                let review: AdmissionReview<DynamicObject> =
                    serde_json::from_slice(black_box(&body)).expect("fixture decodes");
                let request: AdmissionRequest<DynamicObject> =
                    review.try_into().expect("fixture has a request");
                request
            })
        });
    }
    group.finish();
}

fn deciding(c: &mut Criterion) {
    let gate = example_gate();
    let create = decode::decode_review(&fixture("savepoint-create.json")).expect("decodes");
    let update = decode::decode_review(&fixture("savepoint-update.json")).expect("decodes");
    let now = Instant::now();

    let mut group = c.benchmark_group("decide");
    group.bench_function("validate/create", |b| {
        b.iter(|| gate.admit_validate(black_box(&create), now))
    });
    group.bench_function("validate/update", |b| {
        b.iter(|| gate.admit_validate(black_box(&update), now))
    });
    group.bench_function("mutate/create", |b| {
        b.iter(|| gate.admit_mutate(black_box(&create), now))
    });
    group.finish();

    let mutated = gate.admit_mutate(&create, now);
    assert!(mutated.patch.is_some(), "the create fixture is mutated");
    let allowed = gate.admit_validate(&update, now);
    let mut group = c.benchmark_group("response");
    group.bench_function("patch-and-warning", |b| {
        b.iter(|| response_bytes(black_box(&create.uid), black_box(&mutated)))
    });
    group.bench_function("allowed", |b| {
        b.iter(|| response_bytes(black_box(&update.uid), black_box(&allowed)))
    });
    group.finish();
}

fn bytes_to_bytes(c: &mut Criterion) {
    let gate = example_gate();
    let create = fixture("savepoint-create.json");
    let update = fixture("savepoint-update.json");
    let mut group = c.benchmark_group("bytes-to-bytes");
    group.bench_function("mutate", |b| {
        b.iter(|| {
            let request = decode::decode_review(black_box(&create)).expect("decodes");
            let decision = gate.admit_mutate(&request, Instant::now());
            response_bytes(&request.uid, &decision)
        })
    });
    group.bench_function("validate", |b| {
        b.iter(|| {
            let request = decode::decode_review(black_box(&update)).expect("decodes");
            let decision = gate.admit_validate(&request, Instant::now());
            response_bytes(&request.uid, &decision)
        })
    });
    group.finish();
}

criterion_group!(benches, decoding, deciding, bytes_to_bytes);
criterion_main!(benches);
