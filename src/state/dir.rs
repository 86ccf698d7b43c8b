//! The embedded default state: a directory of YAML or JSON manifests (multi-document files
//! allowed) of Deployments and Savepoints, loaded by [`load_dir`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::index::{DeploymentFacts, Index, SavepointFacts};
use crate::resources::{GROUP, VERSION};

/// Why a state directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory or a file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{path} is not valid YAML: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// A Deployment or Savepoint lacks a required field.
    #[error("{path}: {kind} document #{document} has no {missing}")]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// Deployment or Savepoint.
        kind: String,
        /// 1-based document number.
        document: usize,
        /// What is missing.
        missing: &'static str,
    },
}

/// Counts of what a directory held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Deployments loaded.
    pub deployments: usize,
    /// Savepoints loaded.
    pub savepoints: usize,
    /// Documents of other kinds, skipped.
    pub skipped: usize,
}

/// The uid given to a Deployment manifest without one: stable, derived from its
/// namespace and name.
pub fn derived_uid(namespace: &str, name: &str) -> String {
    let key = format!("{GROUP}/{VERSION}/namespaces/{namespace}/deployments/{name}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).to_string()
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file directly in `dir`, in name order.
pub fn read_manifests(dir: &Path) -> Result<Vec<(PathBuf, Vec<Value>)>, DirError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DirError::Read { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            let documents = parse_documents(&text).map_err(|detail| DirError::Parse {
                path: path.clone(),
                detail,
            })?;
            Ok((path, documents))
        })
        .collect()
}

/// Parses a multi-document YAML (or JSON) text; `List` documents are flattened.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = map.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Which of our kinds a manifest is, if any.
pub fn kind_of(document: &Value) -> Option<&str> {
    let api_version = document.get("apiVersion")?.as_str()?;
    if api_version != format!("{GROUP}/{VERSION}") {
        return None;
    }
    document
        .get("kind")?
        .as_str()
        .filter(|k| matches!(*k, "Deployment" | "Savepoint"))
}

/// Loads every Deployment and Savepoint under `dir` into `index`.
pub fn load_dir(dir: &Path, index: &mut Index) -> Result<LoadSummary, DirError> {
    let mut summary = LoadSummary::default();
    let mut savepoints = Vec::new();
    let mut deployments = Vec::new();
    for (path, documents) in read_manifests(dir)? {
        for (i, document) in documents.iter().enumerate() {
            let incomplete = |kind: &str, missing| DirError::Incomplete {
                path: path.clone(),
                kind: kind.to_string(),
                document: i + 1,
                missing,
            };
            match kind_of(document) {
                Some("Deployment") => deployments.push(
                    DeploymentFacts::from_manifest(document, derived_uid)
                        .ok_or_else(|| incomplete("Deployment", "metadata.name"))?,
                ),
                Some(_) => {
                    savepoints.push(SavepointFacts::from_manifest(document).ok_or_else(|| {
                        incomplete("Savepoint", "metadata.name or spec.savepointLocation")
                    })?)
                }
                None => summary.skipped += 1,
            }
        }
    }
    summary.deployments = deployments.len();
    summary.savepoints = savepoints.len();
    index.reset_deployments(deployments);
    index.reset_savepoints(&savepoints);
    Ok(summary)
}
