//! `review`: decide one manifest or AdmissionReview offline, as the API server would have
//! the webhook decide it, and print the AdmissionReview response.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::admission::decode::{Request, decode_review};
use crate::admission::{self, Decision, Gate};
use crate::cli::{ReviewArgs, ReviewOperation};
use crate::domain::Operation;
use crate::index::{Index, Store};
use crate::state::dir::{load_dir, parse_documents};
use crate::verify::{RestoringFlink, Verifier};

/// What `review` concluded.
pub enum Outcome {
    /// Allowed: exit code 0.
    Allowed,
    /// Denied: exit code 1.
    Denied,
}

fn read_single_document(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut documents = parse_documents(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid YAML or JSON: {e}", path.display()))?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        0 => bail!("{} holds no document", path.display()),
        n => bail!(
            "{} holds {n} documents; review takes exactly one",
            path.display()
        ),
    }
}

/// Builds the AdmissionReview request the API server would send for `object`.
fn request_for_manifest(
    object: &Value,
    operation: ReviewOperation,
    old: Option<&Value>,
) -> anyhow::Result<Value> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        bail!("the manifest has no kind; expected a Savepoint manifest or an AdmissionReview");
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let operation = match operation {
        ReviewOperation::Create => "CREATE",
        ReviewOperation::Update => "UPDATE",
    };
    if operation == "UPDATE" && old.is_none() {
        bail!("--operation UPDATE needs --old FILE, the stored object the update replaces");
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-00000000review",
            "kind": { "group": group, "version": version, "kind": kind },
            "operation": operation,
            "name": name,
            "namespace": namespace,
            "object": object,
            "oldObject": old,
            "dryRun": true,
        }
    }))
}

/// Mutates, applies the patch, then validates the result: the full CREATE path.
fn decide(review: &Value, gate: &Gate) -> anyhow::Result<(Request, Decision, Option<Value>)> {
    let bytes = serde_json::to_vec(review)?;
    let request = decode_review(&bytes).context("unusable AdmissionReview")?;
    let object = review.pointer("/request/object").cloned();
    if request.operation != Some(Operation::Create) {
        let decision = gate.admit_validate(&request, Instant::now());
        return Ok((request, decision, object));
    }
    let mutated = gate.admit_mutate(&request, Instant::now());
    if !mutated.allowed {
        return Ok((request, mutated, object));
    }
    let mut patched = object.unwrap_or(Value::Null);
    if let Some(patch) = &mutated.patch {
        json_patch::patch(&mut patched, patch).context("the webhook's own patch does not apply")?;
    }
    let mut final_request = request.clone();
    final_request.object = Some(serde_json::from_value(patched.clone())?);
    let validated = gate.admit_validate(&final_request, Instant::now());
    let decision = if validated.allowed {
        mutated
    } else {
        validated
    };
    Ok((request, decision, Some(patched)))
}

/// Checks the location of the final (patched) object, as `/validate` would, prints what
/// was found to stderr, and applies it to `decision`.
fn verify_location(
    verifier: &Verifier,
    request: &Request,
    patched: Option<&Value>,
    gate: &Gate,
    decision: Decision,
) -> anyhow::Result<Decision> {
    let policy = gate.policy();
    let mut final_request = request.clone();
    if let Some(object) = patched {
        final_request.object = Some(serde_json::from_value(object.clone())?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for location verification")?;
    let checked = runtime.block_on(verifier.check_request(
        &final_request,
        &policy.locations,
        verifier.budget(Duration::MAX),
    ));
    // A read that timed out must not keep the process alive.
    runtime.shutdown_background();
    if let Some((location, checked)) = &checked {
        eprintln!(
            "location check: {}",
            checked.outcome.describe(&location.to_string())
        );
    }
    let flink = {
        let index = gate.store().read();
        admission::restored_deployment(&final_request, &*index).and_then(|facts| {
            Some(RestoringFlink {
                deployment: facts.name.clone(),
                version: facts.flink_version?,
            })
        })
    };
    Ok(verifier.judge(decision, checked.as_ref(), flink.as_ref()))
}

/// Runs `review` and prints the response.
pub fn run(args: &ReviewArgs) -> anyhow::Result<Outcome> {
    let policy = args.policy.policy()?;
    let mut index = Index::new(policy.locations.clone());
    if let Some(dir) = &args.state {
        load_dir(dir, &mut index)?;
    }
    let gate = Gate::new(
        Arc::new(Store::new(index, Duration::from_secs(60))),
        Arc::new(policy.clone()),
    );
    let document = read_single_document(&args.file)?;
    let old = args.old.as_deref().map(read_single_document).transpose()?;
    let review = if document.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        document
    } else {
        request_for_manifest(&document, args.operation, old.as_ref())?
    };
    let (request, decision, patched) = decide(&review, &gate)?;
    let decision = match args.verify.verifier()? {
        Some(verifier) if request.operation == Some(Operation::Create) && decision.allowed => {
            verify_location(&verifier, &request, patched.as_ref(), &gate, decision)?
        }
        _ => decision,
    };
    let mut output = serde_json::to_value(admission::response(&request.uid, &decision))?;
    if let Some(patch) = &decision.patch.as_ref().filter(|_| decision.allowed) {
        output["response"]["patch"] = serde_json::to_value(patch)?;
    }
    if args.patched && decision.allowed {
        output["patchedObject"] = patched.unwrap_or(Value::Null);
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(if decision.allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    })
}
