//! The built-in smoke test of a running webhook: [`cases`] are AdmissionReviews with the
//! answer each must get; [`check`] compares an answer with its expectation. The HTTP side
//! lives in `cmd/probe.rs`.

use serde_json::{Value, json};

use crate::resources::SPEC_VERSION_ANNOTATION;

/// What a probe case must be answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Allowed with a patch holding an operation on this path.
    AllowedWithPatchOn(&'static str),
    /// Allowed without a patch.
    AllowedUnchanged,
    /// Denied with this status code and a message holding every fragment.
    Denied {
        /// Status code of the denial.
        code: u16,
        /// Text the message must hold.
        fragments: Vec<String>,
    },
}

/// One request of the smoke test.
#[derive(Clone, Debug)]
pub struct ProbeCase {
    /// Short description.
    pub name: &'static str,
    /// `/mutate` or `/validate`.
    pub path: &'static str,
    /// The AdmissionReview to post.
    pub review: Value,
    /// The answer it must get.
    pub expect: Expect,
}

fn review(uid: &str, operation: &str, kind: Value, object: Value, old: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind,
            "resource": { "group": kind["group"], "version": kind["version"], "resource": "savepoints" },
            "operation": operation,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "userInfo": { "username": "savepoint-webhook-probe" },
            "object": object,
            "oldObject": old,
            "dryRun": true
        }
    })
}

fn savepoint(namespace: &str, deployment: &str, location: &str) -> Value {
    json!({
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": { "name": "savepoint-webhook-probe", "namespace": namespace },
        "spec": {
            "deploymentName": deployment,
            "savepointLocation": location,
            "flinkSavepointId": "00000000-0000-0000-0000-000000000000"
        },
        "status": { "state": "COMPLETED" }
    })
}

/// The cases. With `deployment`, the good Savepoint names that existing Deployment and
/// must be admitted with the annotation injected; without, it names a Deployment that
/// cannot exist and must be denied as not found (proving the webhook resolved it).
/// Every request is a dry run, so the webhook holds nothing.
pub fn cases(namespace: &str, deployment: Option<&str>) -> Vec<ProbeCase> {
    let savepoint_kind =
        json!({ "group": "appmanager.dataartisans.com", "version": "v1", "kind": "Savepoint" });
    let location = "s3://savepoint-webhook-probe/savepoints/savepoint-000000-000000000000";
    let absent = "savepoint-webhook-probe-absent";
    let good = savepoint(namespace, deployment.unwrap_or(absent), location);
    let good_expect = match deployment {
        Some(_) => Expect::AllowedWithPatchOn("/metadata/annotations"),
        None => Expect::Denied {
            code: 403,
            fragments: vec![format!("Deployment {absent:?} not found")],
        },
    };
    let mut malformed = savepoint(namespace, "Not_A_Name", "ftp://host/savepoints");
    malformed["spec"]["jobId"] = "not-a-uuid".into();
    let mut moved = good.clone();
    moved["spec"]["savepointLocation"] = "s3://savepoint-webhook-probe/elsewhere".into();
    moved["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "1" });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "savepoint-webhook-probe", "namespace": namespace },
        "data": { "a": "b" }
    });
    vec![
        ProbeCase {
            name: "well-formed Savepoint",
            path: "/mutate",
            review: review(
                "probe-1",
                "CREATE",
                savepoint_kind.clone(),
                good.clone(),
                Value::Null,
            ),
            expect: good_expect,
        },
        ProbeCase {
            name: "malformed Savepoint",
            path: "/mutate",
            review: review(
                "probe-2",
                "CREATE",
                savepoint_kind.clone(),
                malformed,
                Value::Null,
            ),
            expect: Expect::Denied {
                code: 422,
                fragments: [
                    "spec.savepointLocation",
                    "spec.deploymentName",
                    "spec.jobId",
                ]
                .map(String::from)
                .to_vec(),
            },
        },
        ProbeCase {
            name: "location change on update",
            path: "/validate",
            review: review("probe-3", "UPDATE", savepoint_kind, moved, good),
            expect: Expect::Denied {
                code: 422,
                fragments: vec!["spec.savepointLocation".into(), "immutable".into()],
            },
        },
        ProbeCase {
            name: "object that is not a Savepoint",
            path: "/mutate",
            review: review(
                "probe-4",
                "CREATE",
                json!({ "group": "", "version": "v1", "kind": "ConfigMap" }),
                config_map,
                Value::Null,
            ),
            expect: Expect::AllowedUnchanged,
        },
    ]
}

/// Compares an AdmissionReview answer with what the case expects; `Err` says how it differs.
pub fn check(case: &ProbeCase, answer: &Value) -> Result<(), String> {
    let response = answer.get("response").ok_or("the answer has no response")?;
    let uid = case.review["request"]["uid"].as_str().unwrap_or_default();
    if response["uid"] != uid {
        return Err(format!(
            "uid {} does not echo the request's {uid:?}",
            response["uid"]
        ));
    }
    let allowed = response["allowed"]
        .as_bool()
        .ok_or("the answer has no allowed")?;
    let message = response["status"]["message"].as_str().unwrap_or_default();
    match &case.expect {
        Expect::AllowedUnchanged if allowed && response.get("patch").is_none() => Ok(()),
        Expect::AllowedUnchanged => Err(format!(
            "expected allowed unchanged, got allowed={allowed} patch={}",
            response["patch"]
        )),
        Expect::AllowedWithPatchOn(path) => {
            if !allowed {
                return Err(format!("expected allowed, got denied: {message}"));
            }
            let patch = response["patch"]
                .as_str()
                .ok_or("expected a patch, got none")?;
            use base64::Engine;
            let ops: Value = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or("the patch is not base64 JSON")?;
            let touches = ops.as_array().is_some_and(|ops| {
                ops.iter()
                    .any(|op| op["path"].as_str().is_some_and(|p| p.starts_with(path)))
            });
            touches
                .then_some(())
                .ok_or_else(|| format!("expected a patch on {path}, got {ops}"))
        }
        Expect::Denied { code, fragments } => {
            if allowed {
                return Err(format!("expected denied ({code}), got allowed"));
            }
            let got = response["status"]["code"].as_u64().unwrap_or_default();
            if got != u64::from(*code) {
                return Err(format!("expected code {code}, got {got}: {message}"));
            }
            match fragments.iter().find(|f| !message.contains(f.as_str())) {
                Some(missing) => Err(format!("the message lacks {missing:?}: {message}")),
                None => Ok(()),
            }
        }
    }
}
