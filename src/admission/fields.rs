//! Field rules of the Savepoint contract, the ones that need no other object:
//! [`validate_object`] returns every violation at once, [`immutable_changes`] the UPDATE
//! rules. No I/O, no index.

use std::fmt;

use serde_json::Value;

use super::decode::{ObjectView, Request};
use crate::domain::schema_rules::{DNS_SUBDOMAIN_MAX, IMMUTABLE_FIELDS, UUID_FIELDS};
use crate::domain::{FormatType, Location, LocationRules, Origin, SavepointState, SnapshotType};
use crate::resources::SPEC_VERSION_ANNOTATION;

/// One broken rule: where, what was found, and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.jobId`.
    pub path: String,
    /// The offending value as JSON, when there is one.
    pub value: Option<String>,
    /// What is wrong and what would be accepted.
    pub problem: String,
}

impl Violation {
    fn new(path: impl Into<String>, value: Option<&Value>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            value: value.map(render_value),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}: {} {}", self.path, value, self.problem),
            None => write!(f, "{}: {}", self.path, self.problem),
        }
    }
}

/// Renders violations into the single message kubectl shows.
pub fn render_violations(violations: &[Violation]) -> String {
    let list = violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    match violations.len() {
        1 => format!("invalid Savepoint: {list}"),
        n => format!("invalid Savepoint, {n} problems: {list}"),
    }
}

/// Longest rendering of a bad value kept in a message.
const MAX_RENDERED_VALUE: usize = 120;

fn render_value(value: &Value) -> String {
    crate::text::truncate(value.to_string(), MAX_RENDERED_VALUE)
}

const NAME_RULE: &str = "is not a valid name; expected a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters";
const NAMESPACE_RULE: &str = "is not a valid namespace; expected a DNS label: lower-case letters, digits and '-', at most 63 characters";

/// The names a review's envelope carries, which a caller posting reviews directly chooses
/// freely: the API server only ever sends a valid namespace and name, so anything else is
/// refused before it reaches a hold, a warning or a log.
pub fn envelope_violations(request: &Request) -> Vec<Violation> {
    let mut out = Vec::new();
    if !request.namespace.is_empty() && !is_dns_label(&request.namespace) {
        out.push(Violation::new(
            "request.namespace",
            Some(&Value::String(request.namespace.clone())),
            NAMESPACE_RULE,
        ));
    }
    if !request.name.is_empty() && !is_dns_subdomain(&request.name) {
        out.push(Violation::new(
            "request.name",
            Some(&Value::String(request.name.clone())),
            NAME_RULE,
        ));
    }
    out
}

/// Checks every field rule of the contract and returns all violations.
pub fn validate_object(object: &ObjectView, rules: &LocationRules) -> Vec<Violation> {
    let mut out = Vec::new();
    let metadata = &object.metadata;
    if let Some(name) = metadata.name.as_deref().filter(|n| !n.is_empty())
        && !is_dns_subdomain(name)
    {
        out.push(Violation::new(
            "metadata.name",
            Some(&Value::String(name.to_string())),
            NAME_RULE,
        ));
    }
    if let Some(prefix) = metadata.generate_name.as_deref().filter(|n| !n.is_empty())
        && !is_name_prefix(prefix)
    {
        out.push(Violation::new(
            "metadata.generateName",
            Some(&Value::String(prefix.to_string())),
            "is not a valid name prefix; expected a DNS subdomain that may end in '-', at most 253 characters",
        ));
    }
    if let Some(namespace) = metadata.namespace.as_deref().filter(|n| !n.is_empty())
        && !is_dns_label(namespace)
    {
        out.push(Violation::new(
            "metadata.namespace",
            Some(&Value::String(namespace.to_string())),
            NAMESPACE_RULE,
        ));
    }
    if let Some(annotations) = &object.metadata.annotations
        && let Some(version) = annotations.get(SPEC_VERSION_ANNOTATION)
        && parse_spec_version(version).is_none()
    {
        out.push(Violation::new(
            format!("metadata.annotations[{SPEC_VERSION_ANNOTATION}]"),
            Some(&Value::String(version.clone())),
            "is not a decimal integer; expected the Deployment's spec version, e.g. \"3\"",
        ));
    }
    let spec = match &object.spec {
        Some(Value::Object(spec)) => spec,
        Some(other) => {
            out.push(Violation::new("spec", Some(other), "must be an object"));
            return out;
        }
        None => {
            out.push(Violation::new(
                "spec",
                None,
                "is required; it must hold at least savepointLocation and deploymentName or deploymentId",
            ));
            return out;
        }
    };
    match spec.get("savepointLocation") {
        None | Some(Value::Null) => out.push(Violation::new(
            "spec.savepointLocation",
            None,
            "is required; expected an absolute URI such as s3://bucket/savepoints/savepoint-1a2b3c-0123456789ab",
        )),
        Some(Value::String(raw)) => {
            if let Err(err) = Location::parse(raw, rules) {
                out.push(Violation::new(
                    "spec.savepointLocation",
                    Some(&Value::String(raw.clone())),
                    err.to_string(),
                ));
            }
        }
        Some(other) => out.push(not_a_string("spec.savepointLocation", other)),
    }
    let name = spec.get("deploymentName").filter(|v| !v.is_null());
    let id = spec.get("deploymentId").filter(|v| !v.is_null());
    if name.is_none() && id.is_none() {
        out.push(Violation::new(
            "spec.deploymentName",
            None,
            "is required when spec.deploymentId is not set; name the Deployment this Savepoint restores (by name, by metadata.uid as spec.deploymentId, or both)",
        ));
    }
    if let Some(name) = name {
        match name.as_str() {
            Some(text) if is_dns_subdomain(text) => {}
            Some(_) => out.push(Violation::new(
                "spec.deploymentName",
                Some(name),
                "is not a valid Deployment name; expected a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters",
            )),
            None => out.push(not_a_string("spec.deploymentName", name)),
        }
    }
    for &(field, what) in UUID_FIELDS {
        if let Some(value) = spec.get(field).filter(|v| !v.is_null()) {
            let path = format!("spec.{field}");
            match value.as_str() {
                Some(text) if is_uuid(text) => {}
                Some(_) => out.push(Violation::new(
                    path,
                    Some(value),
                    format!("is not a UUID; expected {what} as 8-4-4-4-12 hex digits"),
                )),
                None => out.push(not_a_string(&path, value)),
            }
        }
    }
    type Accepts = fn(&str) -> bool;
    let enums: [(&str, Option<&Value>, Accepts, String); 4] = [
        (
            "spec.origin",
            spec.get("origin"),
            |t| Origin::parse(t).is_some(),
            Origin::accepted(),
        ),
        (
            "spec.type",
            spec.get("type"),
            |t| SnapshotType::parse(t).is_some(),
            SnapshotType::accepted(),
        ),
        (
            "spec.savepointFormatType",
            spec.get("savepointFormatType"),
            |t| FormatType::parse(t).is_some(),
            FormatType::accepted(),
        ),
        (
            "status.state",
            status_state(object),
            |t| SavepointState::parse(t).is_some(),
            SavepointState::accepted(),
        ),
    ];
    for (path, value, accepts, accepted) in enums {
        if let Some(value) = value.filter(|v| !v.is_null())
            && !value.as_str().is_some_and(accepts)
        {
            out.push(Violation::new(
                path,
                Some(value),
                format!("is not accepted; expected one of {accepted}"),
            ));
        }
    }
    if let Some(status) = object
        .status
        .as_ref()
        .filter(|s| !s.is_object() && !s.is_null())
    {
        out.push(Violation::new("status", Some(status), "must be an object"));
    }
    out
}

fn status_state(object: &ObjectView) -> Option<&Value> {
    object.status.as_ref()?.get("state")
}

/// `spec.<field>` of an object as a string, when it is one.
pub fn spec_str<'a>(object: &'a ObjectView, field: &str) -> Option<&'a str> {
    object.spec.as_ref()?.get(field)?.as_str()
}

/// `status.state` of an object as a string, when it is one.
pub fn state_str(object: &ObjectView) -> Option<&str> {
    status_state(object)?.as_str()
}

/// The UPDATE rules: immutable fields may be filled in once, never changed or removed.
pub fn immutable_changes(old: &ObjectView, new: &ObjectView) -> Vec<Violation> {
    let field = |object: &ObjectView, name: &str| -> Option<Value> {
        object
            .spec
            .as_ref()?
            .get(name)
            .filter(|v| !v.is_null())
            .cloned()
    };
    IMMUTABLE_FIELDS
        .iter()
        .filter_map(|name| {
            let before = field(old, name)?;
            let after = field(new, name);
            if after.as_ref() == Some(&before) {
                return None;
            }
            let problem = format!(
                "is immutable and was {}; create a new Savepoint to point at another snapshot",
                render_value(&before)
            );
            Some(Violation::new(
                format!("spec.{name}"),
                after.as_ref(),
                if after.is_some() {
                    format!("cannot replace it: {problem}")
                } else {
                    format!("cannot be removed: {problem}")
                },
            ))
        })
        .collect()
}

fn not_a_string(path: &str, value: &Value) -> Violation {
    Violation::new(path, Some(value), "must be a string")
}

/// Parses a spec-version annotation value: a non-negative decimal integer.
pub fn parse_spec_version(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A UUID in its canonical 8-4-4-4-12 hex form (either case): `UUID_PATTERN` of
/// [`crate::domain::schema_rules`], which the CRD's CEL rule matches.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A `generateName` prefix as the API server accepts one: a DNS subdomain once its last
/// two characters, when it ends in `-`, read as `a`.
pub fn is_name_prefix(text: &str) -> bool {
    let cut = text.len().saturating_sub(2);
    if text.len() > 1 && text.ends_with('-') && text.is_char_boundary(cut) {
        text.len() <= DNS_SUBDOMAIN_MAX && is_dns_subdomain(&format!("{}a", &text[..cut]))
    } else {
        is_dns_subdomain(text)
    }
}

/// A Kubernetes DNS-1123 label, the rule for namespace names.
pub fn is_dns_label(text: &str) -> bool {
    text.len() <= 63 && !text.contains('.') && is_dns_subdomain(text)
}

/// A Kubernetes DNS-1123 subdomain, the rule for custom resource names:
/// `DNS_SUBDOMAIN_PATTERN` of [`crate::domain::schema_rules`].
pub fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= DNS_SUBDOMAIN_MAX
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
