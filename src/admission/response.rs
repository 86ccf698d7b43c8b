//! A [`Decision`] rendered as the AdmissionReview the API server expects: [`response`].

use base64::Engine;
use serde::Serialize;

use super::Decision;
use super::decode::REVIEW_API_VERSION;
use crate::text::{printable, truncate};

/// Most warnings one answer carries.
pub const MAX_WARNINGS: usize = 8;
/// Longest warning, in bytes; longer ones are cut.
pub const MAX_WARNING_BYTES: usize = 1024;
/// Longest denial message, in bytes; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `text` as an answer carries it: control characters escaped (kube-apiserver drops a
/// warning that has any), then cut to `max` bytes.
fn bounded(text: &str, max: usize) -> String {
    truncate(printable(text).into_owned(), max)
}

/// An AdmissionReview carrying a response.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    /// Always `admission.k8s.io/v1`.
    pub api_version: &'static str,
    /// Always `AdmissionReview`.
    pub kind: &'static str,
    /// The answer.
    pub response: ResponseBody,
}

/// The `response` of an AdmissionReview.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseBody {
    /// The request's uid.
    pub uid: String,
    /// The decision.
    pub allowed: bool,
    /// Why it was denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// `JSONPatch` when a patch is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Base64 of the JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Warnings shown to the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The status of a denial, as `metav1.Status` fields.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseStatus {
    /// HTTP-like code: 403 for policy, 422 for invalid objects, 503 when not ready.
    pub code: u16,
    /// The message kubectl shows.
    pub message: String,
    /// Machine-readable reason.
    pub reason: &'static str,
}

/// Renders `decision` for the request `uid`, within [`MAX_WARNINGS`],
/// [`MAX_WARNING_BYTES`] and [`MAX_MESSAGE_BYTES`].
pub fn response(uid: &str, decision: &Decision) -> ReviewResponse {
    use super::Reason;
    let status = decision
        .message
        .as_ref()
        .filter(|_| !decision.allowed)
        .map(|message| {
            let (code, reason) = match decision.reason {
                Reason::Invalid | Reason::Immutable => (422, "Invalid"),
                Reason::Unavailable => (503, "ServiceUnavailable"),
                _ => (403, "Forbidden"),
            };
            ResponseStatus {
                code,
                message: bounded(message, MAX_MESSAGE_BYTES),
                reason,
            }
        });
    let patch = decision
        .patch
        .as_ref()
        .filter(|_| decision.allowed)
        .map(|patch| {
            let json = serde_json::to_vec(patch).expect("a JSON Patch always serializes");
            base64::engine::general_purpose::STANDARD.encode(json)
        });
    ReviewResponse {
        api_version: REVIEW_API_VERSION,
        kind: "AdmissionReview",
        response: ResponseBody {
            uid: uid.to_string(),
            allowed: decision.allowed,
            status,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: decision
                .warnings
                .iter()
                .take(MAX_WARNINGS)
                .map(|warning| bounded(warning, MAX_WARNING_BYTES))
                .collect(),
        },
    }
}
