//! The field rules of a Savepoint that need no other object, stated once for two
//! enforcers: the webhook's own checks (`admission::fields`) read the constants here, and
//! [`spec_validations`] renders the same rules as CEL (`x-kubernetes-validations`) for the
//! CRD, so that an API server with CEL (1.25 and later) refuses what the webhook would,
//! even while no replica answers. Rules that need the Deployment or the index stay with
//! the webhook alone, and so do two location rules CEL cannot state without a parser: a
//! path that is only `_metadata` or empty, and a trailing `_metadata/_metadata`.

use super::location::{CONTAINER_AT_ACCOUNT_SCHEMES, HOSTLESS_SCHEMES, LocationRules};

/// Spec fields holding a UUID, with what each names.
pub const UUID_FIELDS: &[(&str, &str)] = &[
    ("deploymentId", "the Deployment's metadata.uid"),
    (
        "flinkSavepointId",
        "Flink's savepoint id, or the nil UUID 00000000-0000-0000-0000-000000000000",
    ),
    ("jobId", "the Flink job id"),
];

/// A UUID in its canonical 8-4-4-4-12 hex form (either case), as RE2.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A Kubernetes DNS-1123 subdomain (at most 253 characters), as RE2.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Longest DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// Spec fields that never change after creation (they may be filled in once).
pub const IMMUTABLE_FIELDS: &[&str] = &[
    "savepointLocation",
    "deploymentId",
    "deploymentName",
    "flinkSavepointId",
];

/// One CEL rule of the `spec` schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecValidation {
    /// The CEL expression; `self` is `spec`, `oldSelf` the stored `spec` on UPDATE.
    pub rule: String,
    /// What the API server says when it fails, in the webhook's words.
    pub message: String,
    /// The field the message is about, e.g. `.savepointLocation`.
    pub field_path: String,
}

fn rule(rule: String, field: &str, message: impl Into<String>) -> SpecValidation {
    SpecValidation {
        rule,
        message: message.into(),
        field_path: format!(".{field}"),
    }
}

/// A CEL string literal of `text` (single quotes, backslashes and quotes escaped).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The rules of the `spec` schema under `locations`, in the order the webhook checks.
pub fn spec_validations(locations: &LocationRules) -> Vec<SpecValidation> {
    let location = "self.savepointLocation";
    let schemes: Vec<String> = locations.schemes.iter().cloned().collect();
    let scheme_alternatives = schemes.join("|");
    let mut out = vec![
        rule(
            format!("size(bytes({location})) <= {}", locations.max_len),
            "savepointLocation",
            format!(
                "spec.savepointLocation: at most {} bytes are accepted",
                locations.max_len
            ),
        ),
        rule(
            format!(
                "{location}.matches({})",
                quoted(&format!("^(?i:{scheme_alternatives}):"))
            ),
            "savepointLocation",
            format!(
                "spec.savepointLocation: expected an absolute URI SCHEME://BUCKET/PATH with an accepted scheme: {}",
                schemes.join(", ")
            ),
        ),
        rule(
            format!("{location}.matches({})", quoted("^[^:]*:/")),
            "savepointLocation",
            "spec.savepointLocation: is not an absolute URI; expected SCHEME://BUCKET/PATH",
        ),
        rule(
            format!("!{location}.matches({})", quoted("[\\s\\p{Z}\\p{Cc}]")),
            "savepointLocation",
            "spec.savepointLocation: contains whitespace or control characters",
        ),
        rule(
            format!("!{location}.matches({})", quoted("[?#]")),
            "savepointLocation",
            "spec.savepointLocation: contains '?' or '#'; a location is a plain path",
        ),
        rule(
            format!("!{location}.matches({})", quoted("/[.][.]?(/|$)")),
            "savepointLocation",
            "spec.savepointLocation: contains a '.' or '..' path segment; write the path without them",
        ),
        rule(
            format!(
                "{location}.matches({}) || {location}.matches({})",
                quoted(&format!("^(?i:{}):", HOSTLESS_SCHEMES.join("|"))),
                quoted("^[^:]*://[^/]")
            ),
            "savepointLocation",
            "spec.savepointLocation: names no bucket or host; expected SCHEME://BUCKET/PATH",
        ),
        rule(
            format!(
                "!{location}.matches({}) || {location}.matches({})",
                quoted("^(?i:file)://[^/]"),
                quoted("^(?i:file)://(?i:localhost)(/|$)")
            ),
            "savepointLocation",
            "spec.savepointLocation: file locations must be local (file:/path or file:///path)",
        ),
        rule(
            format!("!{location}.matches({})", quoted("^[^:]*://[^/@]*:[^/@]*@")),
            "savepointLocation",
            "spec.savepointLocation: contains a password (USER:PASSWORD@ before the host); credentials never belong in a location",
        ),
        rule(
            format!(
                "{location}.matches({}) || !{location}.matches({})",
                quoted(&format!(
                    "^(?i:{}):",
                    CONTAINER_AT_ACCOUNT_SCHEMES.join("|")
                )),
                quoted("^[^:]*://[^/]*@")
            ),
            "savepointLocation",
            "spec.savepointLocation: names a user (USER@ before the host or bucket); expected SCHEME://BUCKET/PATH without credentials",
        ),
        rule(
            "has(self.deploymentName) || has(self.deploymentId)".into(),
            "deploymentName",
            "spec.deploymentName: is required when spec.deploymentId is not set; name the Deployment this Savepoint restores",
        ),
        rule(
            format!(
                "!has(self.deploymentName) || (size(self.deploymentName) <= {DNS_SUBDOMAIN_MAX} && self.deploymentName.matches({}))",
                quoted(DNS_SUBDOMAIN_PATTERN)
            ),
            "deploymentName",
            "spec.deploymentName: is not a valid Deployment name; expected a DNS subdomain",
        ),
    ];
    for (field, what) in UUID_FIELDS {
        out.push(rule(
            format!(
                "!has(self.{field}) || self.{field}.matches({})",
                quoted(UUID_PATTERN)
            ),
            field,
            format!("spec.{field}: is not a UUID; expected {what} as 8-4-4-4-12 hex digits"),
        ));
    }
    for field in IMMUTABLE_FIELDS {
        out.push(rule(
            format!(
                "!has(oldSelf.{field}) || (has(self.{field}) && self.{field} == oldSelf.{field})"
            ),
            field,
            format!(
                "spec.{field}: is immutable; create a new Savepoint to point at another snapshot"
            ),
        ));
    }
    out
}
