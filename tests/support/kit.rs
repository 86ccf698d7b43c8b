//! The testkit shared by the tests, the benchmarks, the load harness and the fuzz target
//! (each includes this file as a module): the captured AdmissionReviews
//! ([`fixture`], [`fixture_compact`]), the AdmissionReview an API server sends
//! ([`Review`]), and manifests of Deployments and Savepoints ([`mk_deployment`],
//! [`mk_savepoint`]). Pure builders: no I/O but reading the fixtures.
#![allow(dead_code)]

use savepoint_webhook::resources::{GROUP, SPEC_VERSION_ANNOTATION, VERSION};
use serde_json::{Value, json};

/// The captured AdmissionReviews of `tests/fixtures/`.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The example state: Deployments and Savepoints as manifests on disk.
pub const EXAMPLE_STATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/state");

/// The nil UUID: the `flinkSavepointId` of a snapshot the platform did not take.
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A fixture's bytes as stored (indented).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"))
}

/// A fixture's bytes, compact as the API server sends them.
pub fn fixture_compact(name: &str) -> Vec<u8> {
    let value: Value = serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|err| panic!("fixture {name} is not JSON: {err}"));
    serde_json::to_vec(&value).expect("JSON serializes")
}

/// An AdmissionReview request for a Savepoint, as kube-apiserver sends it.
#[derive(Clone, Debug)]
pub struct Review {
    uid: String,
    operation: &'static str,
    namespace: String,
    name: Value,
    object: Value,
    old_object: Value,
    dry_run: bool,
}

impl Review {
    /// A CREATE of `object`; name and namespace are read from its metadata.
    pub fn create(object: Value) -> Self {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        Self {
            uid: "0b7c54c5-5d39-4c39-9f0c-0dd1c1e0a001".into(),
            operation: "CREATE",
            namespace,
            name,
            object,
            old_object: Value::Null,
            dry_run: false,
        }
    }

    /// An UPDATE of `old` to `object`.
    pub fn update(object: Value, old: Value) -> Self {
        Self {
            operation: "UPDATE",
            old_object: old,
            ..Self::create(object)
        }
    }

    /// With this request uid.
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// With this namespace (the request's, not the object's).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// With this request name (`null` for a `generateName` create).
    pub fn name(mut self, name: Value) -> Self {
        self.name = name;
        self
    }

    /// A server-side dry run or not.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The AdmissionReview as JSON.
    pub fn json(&self) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": self.uid,
                "kind": { "group": GROUP, "version": VERSION, "kind": "Savepoint" },
                "operation": self.operation,
                "name": self.name,
                "namespace": self.namespace,
                "object": self.object,
                "oldObject": self.old_object,
                "dryRun": self.dry_run,
            },
        })
    }

    /// The AdmissionReview as the bytes of a request body.
    pub fn bytes(&self) -> Vec<u8> {
        self.json().to_string().into_bytes()
    }
}

/// A Deployment manifest; `spec_version` is its spec-version annotation (none: not yet
/// reconciled by the platform).
pub fn mk_deployment(namespace: &str, name: &str, spec_version: Option<&str>) -> Value {
    let mut metadata = json!({ "name": name, "namespace": namespace });
    if let Some(version) = spec_version {
        metadata["annotations"] = json!({ SPEC_VERSION_ANNOTATION: version });
    }
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "restoreStrategy": { "kind": "LATEST_STATE" },
            "template": { "spec": { "flinkConfiguration": {
                "state.savepoints.dir": "s3://flink-state/savepoints",
            } } },
        },
    })
}

/// A hand-added Savepoint manifest as a user writes it: no spec-version annotation, no
/// deploymentId, the nil flinkSavepointId, and `status.state: COMPLETED`. Absent fields
/// are omitted (a 1.20 server refuses `null` for enum fields).
pub fn mk_savepoint(namespace: &str, name: &str, deployment: &str, location: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Savepoint",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "deploymentName": deployment,
            "savepointLocation": location,
            "flinkSavepointId": NIL_UUID,
        },
        "status": { "state": "COMPLETED" },
    })
}
