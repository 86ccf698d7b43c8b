//! `review`: decide manifests or AdmissionReviews offline, as the API server would have
//! the webhook decide them, and print the answers: the AdmissionReview response for one
//! document, a table or JUnit XML for several ([`run`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::admission::decode::{Request, decode_review};
use crate::admission::{self, Decision, Gate};
use crate::cli::{ReviewArgs, ReviewOperation, ReviewOutput, print_out};
use crate::domain::Operation;
use crate::index::{Index, Store};
use crate::state::dir::{load_dir, parse_documents};
use crate::text::{clip, printable};
use crate::verify::{RestoringFlink, Verifier};

/// What `review` concluded.
pub enum Outcome {
    /// Every document allowed (and, with `--fail-on-warning`, none warned): exit code 0.
    Allowed,
    /// A document denied, or warned with `--fail-on-warning`: exit code 1.
    Failed,
}

/// One document of the input and where it came from.
struct Input {
    /// The file it was read from.
    file: PathBuf,
    /// Its position in the file (from 1) when the file holds several documents.
    position: Option<usize>,
    /// The document.
    document: Value,
}

impl Input {
    /// `FILE`, or `FILE#N` for the Nth document of a file of several.
    fn source(&self) -> String {
        match self.position {
            Some(n) => format!("{}#{n}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    fn kind(&self) -> &str {
        self.document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let documents = parse_documents(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid YAML or JSON: {e}", path.display()))?;
    if documents.is_empty() {
        bail!("{} holds no document", path.display());
    }
    Ok(documents)
}

fn read_single_document(path: &Path) -> anyhow::Result<Value> {
    let mut documents = read_documents(path)?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        n => bail!(
            "{} holds {n} documents; --old takes exactly one",
            path.display()
        ),
    }
}

/// The files `path` names: itself, or the manifests directly inside a directory.
fn files_of(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read directory {}", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|file| {
            file.is_file()
                && file
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    if files.is_empty() {
        bail!("{} holds no *.yaml, *.yml or *.json file", path.display());
    }
    files.sort();
    Ok(files)
}

/// Every document of `paths`, in order.
fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        for file in files_of(path)? {
            let documents = read_documents(&file)?;
            let several = documents.len() > 1;
            inputs.extend(
                documents
                    .into_iter()
                    .enumerate()
                    .map(|(i, document)| Input {
                        file: file.clone(),
                        position: several.then_some(i + 1),
                        document,
                    }),
            );
        }
    }
    Ok(inputs)
}

/// The documents to review: a single document of any kind (as the API server would send
/// it), else every Savepoint and AdmissionReview, other kinds skipped with a note.
fn reviewable(inputs: Vec<Input>) -> anyhow::Result<Vec<Input>> {
    if let Some(input) = inputs.iter().find(|input| input.kind().is_empty()) {
        bail!(
            "{}: the manifest has no kind; expected a Savepoint manifest or an AdmissionReview",
            input.source()
        );
    }
    if inputs.len() == 1 {
        return Ok(inputs);
    }
    let (kept, skipped): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .partition(|input| matches!(input.kind(), "Savepoint" | "AdmissionReview"));
    for input in &skipped {
        eprintln!(
            "skipped {}: a {}, not a Savepoint",
            input.source(),
            printable(input.kind())
        );
    }
    if kept.is_empty() {
        bail!("no Savepoint or AdmissionReview among the documents given");
    }
    Ok(kept)
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
/// was found to stderr (after `label`, when several documents are reviewed), and applies
/// it to `decision`.
fn verify_location(
    label: Option<&str>,
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
        let prefix = label.map(|l| format!("{l}: ")).unwrap_or_default();
        eprintln!(
            "{prefix}location check: {}",
            checked.outcome.describe(&location.to_string())
        );
    }
    let flink = admission::restored_deployment(&final_request, &*gate.store().read())
        .and_then(RestoringFlink::of);
    Ok(verifier.judge(decision, checked.as_ref(), flink.as_ref()))
}

/// The answer to one document.
struct Reviewed {
    input: Input,
    /// `NAMESPACE/NAME` of the object (the prefix for a `generateName` create).
    object: String,
    decision: Decision,
    /// The AdmissionReview response, as `--output json` prints it.
    response: Value,
}

impl Reviewed {
    fn failed(&self, fail_on_warning: bool) -> bool {
        !self.decision.allowed || (fail_on_warning && !self.decision.warnings.is_empty())
    }
}

fn review_one(
    input: Input,
    label: Option<&str>,
    args: &ReviewArgs,
    old: Option<&Value>,
    gate: &Gate,
    verifier: Option<&Verifier>,
) -> anyhow::Result<Reviewed> {
    let review = if input.kind() == "AdmissionReview" {
        input.document.clone()
    } else {
        request_for_manifest(&input.document, args.operation, old)
            .with_context(|| input.source())?
    };
    let (request, decision, patched) = decide(&review, gate).with_context(|| input.source())?;
    let decision = match verifier {
        Some(verifier) if request.operation == Some(Operation::Create) && decision.allowed => {
            verify_location(label, verifier, &request, patched.as_ref(), gate, decision)?
        }
        _ => decision,
    };
    let mut response = serde_json::to_value(admission::response(&request.uid, &decision))?;
    if let Some(patch) = &decision.patch.as_ref().filter(|_| decision.allowed) {
        response["response"]["patch"] = serde_json::to_value(patch)?;
    }
    if args.patched && decision.allowed {
        response["patchedObject"] = patched.unwrap_or(Value::Null);
    }
    let name = match admission::request_name(&request) {
        "" => admission::generated_prefix(&request).unwrap_or_default(),
        name => name,
    };
    Ok(Reviewed {
        object: format!("{}/{name}", admission::request_namespace(&request)),
        input,
        decision,
        response,
    })
}

/// Runs `review` and prints the answers.
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
    let inputs = reviewable(read_inputs(&args.files)?)?;
    let manifests = inputs
        .iter()
        .filter(|input| input.kind() != "AdmissionReview")
        .count();
    if args.operation == ReviewOperation::Update && manifests > 1 {
        bail!("--operation UPDATE reviews one manifest against --old; {manifests} were given");
    }
    let old = args.old.as_deref().map(read_single_document).transpose()?;
    let verifier = args.verify.verifier()?;
    let several = inputs.len() > 1;
    let mut reviewed = Vec::with_capacity(inputs.len());
    for input in inputs {
        let label = several.then(|| input.source());
        reviewed.push(review_one(
            input,
            label.as_deref(),
            args,
            old.as_ref(),
            &gate,
            verifier.as_ref(),
        )?);
    }
    let default = if several {
        ReviewOutput::Table
    } else {
        ReviewOutput::Json
    };
    let text = match args.output.unwrap_or(default) {
        ReviewOutput::Json => json_output(&reviewed)?,
        ReviewOutput::Table => table(&reviewed),
        ReviewOutput::Junit => junit(&reviewed, args.fail_on_warning),
    };
    print_out(&text)?;
    Ok(if reviewed.iter().any(|r| r.failed(args.fail_on_warning)) {
        Outcome::Failed
    } else {
        Outcome::Allowed
    })
}

/// One document: its AdmissionReview response, as it always was; several: an array.
fn json_output(reviewed: &[Reviewed]) -> anyhow::Result<String> {
    let value = match reviewed {
        [one] => one.response.clone(),
        _ => reviewed
            .iter()
            .map(|r| {
                json!({
                    "file": r.input.file.display().to_string(),
                    "document": r.input.position.unwrap_or(1),
                    "review": r.response,
                })
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

fn result_word(decision: &Decision) -> &'static str {
    if decision.allowed {
        "allowed"
    } else {
        "denied"
    }
}

/// A row per document, then every denial and warning in full, then the counts.
fn table(reviewed: &[Reviewed]) -> String {
    let rows: Vec<[String; 5]> = reviewed
        .iter()
        .map(|r| {
            [
                printable(&r.input.source()).into_owned(),
                printable(&r.object).into_owned(),
                result_word(&r.decision).to_string(),
                r.decision.reason.to_string(),
                r.decision.warnings.len().to_string(),
            ]
        })
        .collect();
    let header = ["DOCUMENT", "SAVEPOINT", "RESULT", "REASON", "WARNINGS"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let mut details = String::new();
    for r in reviewed {
        let who = format!("{} ({})", r.input.source(), r.object);
        if let Some(message) = r.decision.message.as_ref().filter(|_| !r.decision.allowed) {
            let _ = writeln!(
                details,
                "{}: denied: {}",
                printable(&who),
                printable(message)
            );
        }
        for warning in &r.decision.warnings {
            let _ = writeln!(
                details,
                "{}: warning: {}",
                printable(&who),
                printable(warning)
            );
        }
    }
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    let denied = reviewed.iter().filter(|r| !r.decision.allowed).count();
    let warned = reviewed
        .iter()
        .filter(|r| r.decision.allowed && !r.decision.warnings.is_empty())
        .count();
    let _ = writeln!(
        out,
        "\n{} document(s): {} allowed ({warned} with warnings), {denied} denied",
        reviewed.len(),
        reviewed.len() - denied,
    );
    out
}

/// `text` escaped for XML 1.0 character data and attribute values; the control
/// characters XML cannot hold are written as Rust escapes.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testcase per document, a failure for a denial (and for warnings with
/// `fail_on_warning`); other warnings go to the testcase's output.
fn junit(reviewed: &[Reviewed], fail_on_warning: bool) -> String {
    let failures = reviewed
        .iter()
        .filter(|r| r.failed(fail_on_warning))
        .count();
    let tests = reviewed.len();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"savepoint-webhook review\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"savepoint-webhook review\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">"
    );
    for r in reviewed {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">",
            xml(&r.input.source()),
            xml(&r.object)
        );
        let warnings = r.decision.warnings.join("\n");
        if !r.decision.allowed {
            let message = r.decision.message.as_deref().unwrap_or_default();
            let _ = write!(
                out,
                "\n      <failure type=\"denied\" message=\"{}: {}\">{}</failure>",
                r.decision.reason,
                xml(&clip(message, 256)),
                xml(message)
            );
        } else if fail_on_warning && !warnings.is_empty() {
            let _ = write!(
                out,
                "\n      <failure type=\"warning\" message=\"{} warning(s)\">{}</failure>",
                r.decision.warnings.len(),
                xml(&warnings)
            );
        }
        let warnings_failed = fail_on_warning && r.decision.allowed;
        if !warnings.is_empty() && !warnings_failed {
            let _ = write!(out, "\n      <system-out>{}</system-out>", xml(&warnings));
        }
        if r.failed(fail_on_warning) || !warnings.is_empty() {
            out.push_str("\n    ");
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
