//! Request bytes to the few fields decisions read: [`decode_review`]. `managedFields`,
//! labels and everything else the decisions ignore are skipped, not materialized.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::Operation;
use crate::text::clip;

/// The only AdmissionReview version this webhook speaks.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// Longest `request.uid` accepted: the API server sends a UUID (36 bytes); the uid is
/// echoed in the answer, so its length bounds what an answer costs to keep.
pub const MAX_UID_BYTES: usize = 128;

/// Longest piece of the client's input echoed in an error message.
pub const MAX_ECHOED_BYTES: usize = 256;

/// Why a body is not a usable AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape: the parser's message, clipped.
    #[error("body is not a valid admission.k8s.io/v1 AdmissionReview: {0}")]
    Json(String),
    /// Another `apiVersion` or `kind`.
    #[error(
        "body is a {kind} of {api_version:?}; expected kind AdmissionReview of apiVersion admission.k8s.io/v1"
    )]
    WrongType {
        /// The `kind` sent.
        kind: String,
        /// The `apiVersion` sent.
        api_version: String,
    },
    /// No `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// An empty `request.uid`.
    #[error("AdmissionReview request has no uid")]
    NoUid,
    /// A `request.uid` longer than [`MAX_UID_BYTES`].
    #[error("AdmissionReview request.uid is {0} bytes long; at most {MAX_UID_BYTES} are accepted")]
    UidTooLong(usize),
}

impl From<serde_json::Error> for DecodeError {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(clip(&err.to_string(), MAX_ECHOED_BYTES))
    }
}

/// The envelope; `apiVersion` and `kind` are only compared, so they borrow from the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    request: Option<Request>,
}

/// The decoded `request` of an AdmissionReview.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the response.
    pub uid: String,
    /// Kind of the object under review.
    pub kind: GroupVersionKind,
    /// CREATE, UPDATE, DELETE or CONNECT; `None` for any other spelling.
    #[serde(deserialize_with = "operation")]
    pub operation: Option<Operation>,
    /// Object name; empty when the client asked for `generateName`.
    #[serde(default)]
    pub name: String,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: String,
    /// The object as it would be stored.
    #[serde(default)]
    pub object: Option<ObjectView>,
    /// The object as stored before an UPDATE.
    #[serde(default)]
    pub old_object: Option<ObjectView>,
    /// Server-side dry run: decide, but change no state.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Who sent the request, as the API server authenticated them.
    #[serde(default)]
    pub user_info: UserInfo,
}

/// The authenticated user of a request (`authentication.k8s.io/v1` `UserInfo`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// User uid.
    #[serde(default)]
    pub uid: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator.
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Group, version and kind of the object under review.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The parts of an object decisions read, kept loose: `/mutate` sees objects before the
/// API server enforces the CRD schema, so every spec field may hold any JSON value.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectView {
    /// Metadata.
    #[serde(default)]
    pub metadata: MetaView,
    /// `spec`, any JSON value.
    #[serde(default)]
    pub spec: Option<Value>,
    /// `status`, any JSON value.
    #[serde(default)]
    pub status: Option<Value>,
}

/// The metadata fields decisions read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView {
    /// Name; empty for `generateName` creates.
    #[serde(default)]
    pub name: Option<String>,
    /// Prefix for a server-generated name.
    #[serde(default)]
    pub generate_name: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Annotations; `None` when the object has none.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Whether the object has a `metadata` at all (a patch adding annotations must then
    /// add `metadata` too). Only decoding sets it.
    #[serde(skip_deserializing, default = "present")]
    pub present: bool,
}

fn present() -> bool {
    true
}

fn operation<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Operation>, D::Error> {
    let text = Cow::<str>::deserialize(deserializer)?;
    Ok(Operation::parse(&text))
}

impl Request {
    /// Whether the request is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// Decodes an AdmissionReview body.
pub fn decode_review(body: &[u8]) -> Result<Request, DecodeError> {
    // Checking UTF-8 once, up front, spares the parser checking every string it keeps.
    // Bodies that are not UTF-8 go the checking way, for its error message.
    let review: ReviewIn = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text)?,
        Err(_) => serde_json::from_slice(body)?,
    };
    if review.kind != "AdmissionReview" || review.api_version != REVIEW_API_VERSION {
        return Err(DecodeError::WrongType {
            kind: clip(&review.kind, MAX_ECHOED_BYTES),
            api_version: clip(&review.api_version, MAX_ECHOED_BYTES),
        });
    }
    let request = review.request.ok_or(DecodeError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::NoUid);
    }
    if request.uid.len() > MAX_UID_BYTES {
        return Err(DecodeError::UidTooLong(request.uid.len()));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"g","version":"v","kind":"K"},"operation":"CREATE","object":{"metadata":{"name":"n\u00e9"}}}}"#;

    #[test]
    fn strings_with_escapes_decode_as_written() {
        let request = decode_review(REVIEW.as_bytes()).expect("decodes");
        let object = request.object.expect("has an object");
        assert_eq!(object.metadata.name.as_deref(), Some("né"));
    }

    #[test]
    fn echoed_input_and_uids_are_bounded() {
        let huge = "K".repeat(900 * 1024);
        let body = REVIEW.replace(
            r#""kind":"AdmissionReview""#,
            &format!(r#""kind":"{huge}""#),
        );
        let err = decode_review(body.as_bytes()).expect_err("wrong kind");
        assert!(err.to_string().len() < 2 * MAX_ECHOED_BYTES + 200, "{err}");
        let body = REVIEW.replace(r#""uid":"u""#, &format!(r#""uid":"{}""#, "u".repeat(129)));
        let err = decode_review(body.as_bytes()).expect_err("long uid");
        assert!(matches!(err, DecodeError::UidTooLong(129)), "{err}");
        let body = REVIEW.replace(
            r#""operation":"CREATE""#,
            &format!(r#""operation":{{"x":"{huge}"}}"#),
        );
        let err = decode_review(body.as_bytes()).expect_err("not a string");
        assert!(err.to_string().len() < MAX_ECHOED_BYTES + 200, "{err}");
    }

    #[test]
    fn bodies_that_are_not_utf8_are_refused_with_the_parsers_error() {
        let mut body = REVIEW.replace(r"\u00e9", "X").into_bytes();
        let at = body.iter().position(|&b| b == b'X').expect("placeholder");
        body[at] = 0xff;
        let err = decode_review(&body).expect_err("invalid UTF-8");
        assert!(matches!(err, DecodeError::Json(_)), "{err}");
        assert!(err.to_string().contains("column"), "{err}");
    }
}
