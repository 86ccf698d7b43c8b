//! Lookups in rendered manifests (kustomize or Helm output parsed into JSON values), for
//! the tests of what the project ships (`#[path]`-included by each).

use serde_json::Value;

/// The one object of `kind` named `name`.
pub fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}");
    found[0]
}

/// The single webhook of a webhook configuration.
pub fn single_webhook(configuration: &Value) -> &Value {
    let webhooks = configuration["webhooks"].as_array().expect("webhooks list");
    assert_eq!(webhooks.len(), 1, "one webhook per configuration");
    &webhooks[0]
}
