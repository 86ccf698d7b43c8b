//! What the index keeps of each object: [`SavepointFacts`] and [`DeploymentFacts`],
//! extracted from a stored object's parts or from a whole manifest.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::resources::{RestoreKind, SAVEPOINTS_DIR_KEY, SPEC_VERSION_ANNOTATION};

/// The fields of a Deployment that decisions read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The spec-version annotation, when set.
    pub spec_version: Option<String>,
    /// Whether `state.savepoints.dir` is set in the Flink configuration.
    pub has_savepoints_dir: bool,
    /// `spec.restoreStrategy.kind`, when set to a known value.
    pub restore_kind: Option<RestoreKind>,
}

/// The fields of a stored Savepoint that the index reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavepointFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.savepointLocation` as written.
    pub location: String,
}

fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, key| value.get(key))?
        .as_str()
}

fn namespace_of(object: &Value) -> &str {
    str_at(object, &["metadata", "namespace"]).unwrap_or("default")
}

impl DeploymentFacts {
    /// Extracts the facts from a Deployment's metadata and spec.
    pub fn from_parts(
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: Option<&BTreeMap<String, String>>,
        spec: Option<&Value>,
    ) -> Self {
        let spec = spec.unwrap_or(&Value::Null);
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            spec_version: annotations
                .and_then(|a| a.get(SPEC_VERSION_ANNOTATION))
                .cloned(),
            has_savepoints_dir: str_at(
                spec,
                &["template", "spec", "flinkConfiguration", SAVEPOINTS_DIR_KEY],
            )
            .is_some_and(|dir| !dir.trim().is_empty()),
            restore_kind: spec
                .get("restoreStrategy")
                .and_then(|r| r.get("kind"))
                .and_then(RestoreKind::deserialize_lenient),
        }
    }

    /// Extracts the facts from a whole Deployment manifest; `default_uid` supplies the
    /// uid when the manifest has none (manifests on disk).
    pub fn from_manifest(
        object: &Value,
        default_uid: impl FnOnce(&str, &str) -> String,
    ) -> Option<Self> {
        let name = str_at(object, &["metadata", "name"])?;
        let namespace = namespace_of(object);
        let uid = match str_at(object, &["metadata", "uid"]) {
            Some(uid) => uid.to_string(),
            None => default_uid(namespace, name),
        };
        let annotations: Option<BTreeMap<String, String>> = object
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        Some(Self::from_parts(
            namespace,
            name,
            &uid,
            annotations.as_ref(),
            object.get("spec"),
        ))
    }
}

impl RestoreKind {
    fn deserialize_lenient(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

impl SavepointFacts {
    /// Extracts the facts from a Savepoint's name and spec; `None` without a location.
    pub fn from_parts(namespace: &str, name: &str, spec: Option<&Value>) -> Option<Self> {
        Some(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            location: str_at(spec?, &["savepointLocation"])?.to_string(),
        })
    }

    /// Extracts the facts from a whole Savepoint manifest.
    pub fn from_manifest(object: &Value) -> Option<Self> {
        Self::from_parts(
            namespace_of(object),
            str_at(object, &["metadata", "name"])?,
            object.get("spec"),
        )
    }
}
