//! What the index keeps of each Savepoint: [`SavepointFacts`], extracted from a stored
//! object's parts or from a whole manifest.

use serde_json::Value;

use crate::domain::fields::{namespace_of, str_at};

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
