//! Readers of fields of a whole object as JSON (a manifest, or an API object): [`str_at`]
//! and [`namespace_of`].

use serde_json::Value;

/// The string at `path` under `object`, when there is one.
pub fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, key| value.get(key))?
        .as_str()
}

/// `metadata.namespace` of an object, `default` when it has none.
pub fn namespace_of(object: &Value) -> &str {
    str_at(object, &["metadata", "namespace"]).unwrap_or("default")
}
