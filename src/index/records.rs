//! What the reconciler and the audit know of each stored Savepoint: [`SavepointRecord`],
//! kept in a [`RecordStore`] fed by the same watch as the admission index.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::SavepointFacts;
use crate::domain::fields::str_at;
use crate::domain::rules::{MetadataShape, SavepointView};
use crate::domain::{Origin, SavepointState};
use crate::resources::SPEC_VERSION_ANNOTATION;

/// The fields of a stored Savepoint that convergence rules read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavepointRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid` (empty for manifests on disk).
    pub uid: String,
    /// `metadata.resourceVersion`, the precondition of a repair.
    pub resource_version: String,
    /// Whether `metadata.annotations` exists at all.
    pub has_annotations: bool,
    /// `metadata.creationTimestamp` in seconds since the epoch, if set.
    pub created: Option<i64>,
    /// `spec.savepointLocation` as written.
    pub location: Option<String>,
    /// `spec.origin`, when it is an accepted value.
    pub origin: Option<Origin>,
    /// The spec-version annotation.
    pub spec_version: Option<String>,
    /// `spec.deploymentName`.
    pub deployment_name: Option<String>,
    /// `spec.deploymentId`.
    pub deployment_id: Option<String>,
    /// `status.state`, when it is an accepted value.
    pub state: Option<SavepointState>,
}

fn spec_string(rest: &Value, field: &str) -> Option<String> {
    str_at(rest, &["spec", field]).map(str::to_string)
}

impl SavepointRecord {
    /// What the admission index keeps of this Savepoint: `None` without a location.
    pub fn facts(&self) -> Option<SavepointFacts> {
        Some(SavepointFacts {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            location: self.location.clone()?,
        })
    }

    /// Extracts the record from a whole Savepoint object (a manifest, or an API object
    /// as JSON).
    pub fn from_object(object: &Value) -> Option<Self> {
        let metadata: ObjectMeta = serde_json::from_value(object.get("metadata")?.clone()).ok()?;
        Self::from_parts(&metadata, object)
    }

    /// What the rules read of this Savepoint.
    pub fn view(&self) -> SavepointView<'_> {
        SavepointView {
            metadata: if self.has_annotations {
                MetadataShape::Annotations
            } else {
                MetadataShape::NoAnnotations
            },
            spec_version: self.spec_version.as_deref(),
            deployment_name: self.deployment_name.as_deref(),
            deployment_id: self.deployment_id.as_deref(),
            origin: self.origin,
            state: self.state,
        }
    }

    /// Extracts the record from typed metadata and the rest of the object (`spec`, `status`).
    pub fn from_parts(metadata: &ObjectMeta, rest: &Value) -> Option<Self> {
        Some(Self {
            namespace: metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: metadata.name.clone()?,
            uid: metadata.uid.clone().unwrap_or_default(),
            resource_version: metadata.resource_version.clone().unwrap_or_default(),
            has_annotations: metadata.annotations.is_some(),
            created: metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            location: spec_string(rest, "savepointLocation"),
            origin: str_at(rest, &["spec", "origin"]).and_then(Origin::parse),
            spec_version: metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SPEC_VERSION_ANNOTATION))
                .cloned(),
            deployment_name: spec_string(rest, "deploymentName"),
            deployment_id: spec_string(rest, "deploymentId"),
            state: str_at(rest, &["status", "state"]).and_then(SavepointState::parse),
        })
    }
}

/// Records by namespace and name.
pub type RecordMap = HashMap<(String, String), SavepointRecord>;

/// Adds `record` to a map of records, replacing one of the same namespace and name.
pub fn insert(records: &mut RecordMap, record: SavepointRecord) {
    records.insert((record.namespace.clone(), record.name.clone()), record);
}

/// Every stored Savepoint's record, by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct RecordStore {
    records: Arc<RwLock<RecordMap>>,
}

impl RecordStore {
    /// Adds or replaces a record.
    pub fn apply(&self, record: SavepointRecord) {
        insert(&mut self.write(), record);
    }

    /// Removes a record.
    pub fn delete(&self, namespace: &str, name: &str) {
        self.write()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Replaces every record with those of a full list.
    pub fn replace(&self, all: RecordMap) {
        *self.write() = all;
    }

    /// A copy of every record, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<SavepointRecord> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<SavepointRecord> = records.values().cloned().collect();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RecordMap> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }
}
