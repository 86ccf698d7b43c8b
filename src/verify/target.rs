//! Where the `_metadata` file of a location lives, decided without I/O: [`target`] maps a
//! normalized [`Location`] to a [`Target`] in a store the webhook's own configuration
//! names, or says why it cannot be checked.
//!
//! The webhook never dials a host named by a manifest: an S3 or GCS bucket comes from the
//! location, but the endpoint from configuration; an Azure location must name the storage
//! account the webhook is configured for; `hdfs://host` and other host-naming schemes are
//! "could not check"; `file` paths must lie under a configured root.

use std::path::{Path, PathBuf};

use crate::domain::Location;

/// The metadata file's name inside a savepoint or checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";

/// Where to read a location's `_metadata` from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An S3 (or S3-compatible) object.
    S3 {
        /// Bucket, from the location.
        bucket: String,
        /// Object key of `_metadata`.
        key: String,
    },
    /// A Google Cloud Storage object.
    Gcs {
        /// Bucket, from the location.
        bucket: String,
        /// Object key of `_metadata`.
        key: String,
    },
    /// An Azure Blob Storage (or ADLS Gen2) blob in the configured account.
    Azure {
        /// Container, from the location.
        container: String,
        /// Blob name of `_metadata`.
        key: String,
    },
    /// A local file under one of the allowed roots (checked again after resolving links).
    File {
        /// Absolute path of `_metadata`, as the location spells it.
        path: PathBuf,
    },
}

/// What the configuration allows, as far as the mapping needs it.
#[derive(Clone, Debug, Default)]
pub struct TargetRules {
    /// Directories `file` locations may lie under (as given and canonicalized).
    pub file_roots: Vec<PathBuf>,
    /// The Azure storage account the webhook has credentials for.
    pub azure_account: Option<String>,
    /// Whether S3 buckets become host names (virtual-hosted-style requests).
    pub s3_virtual_hosted: bool,
}

/// The last path segment of a location: the directory `_metadata` lies in.
pub fn directory_name(location: &Location) -> &str {
    location.path().rsplit('/').next().unwrap_or_default()
}

/// Maps `location` to the `_metadata` it names, or to why it cannot be checked.
pub fn target(location: &Location, rules: &TargetRules) -> Result<Target, String> {
    object(location, rules, Some(METADATA_FILE))
}

/// Maps `file`, the location of one state file a snapshot references, to where it is
/// read from, under the same rules as [`target`].
pub fn file_target(file: &Location, rules: &TargetRules) -> Result<Target, String> {
    object(file, rules, None)
}

fn object(location: &Location, rules: &TargetRules, leaf: Option<&str>) -> Result<Target, String> {
    let key = object_key(location.path(), leaf);
    match location.scheme() {
        "s3" => {
            let bucket = location.authority();
            if !valid_bucket(bucket, rules.s3_virtual_hosted) {
                return Err(format!("{bucket:?} is not a valid S3 bucket name"));
            }
            Ok(Target::S3 {
                bucket: bucket.to_string(),
                key,
            })
        }
        "gs" => {
            let bucket = location.authority();
            if !valid_bucket(bucket, false) {
                return Err(format!("{bucket:?} is not a valid GCS bucket name"));
            }
            Ok(Target::Gcs {
                bucket: bucket.to_string(),
                key,
            })
        }
        "wasb" | "wasbs" | "abfs" | "abfss" => azure(location, rules, key),
        "file" => {
            let path = match leaf {
                Some(leaf) => Path::new(location.path()).join(leaf),
                None => PathBuf::from(location.path()),
            };
            if rules.file_roots.is_empty() {
                return Err(
                    "not under an allowed root: no file roots are configured (--verify-file-root)"
                        .to_string(),
                );
            }
            if !rules.file_roots.iter().any(|root| path.starts_with(root)) {
                return Err(format!(
                    "not under an allowed root ({})",
                    list_roots(&rules.file_roots)
                ));
            }
            Ok(Target::File { path })
        }
        scheme @ ("hdfs" | "viewfs") if !location.authority().is_empty() => Err(format!(
            "{scheme} location names host {:?}; the webhook reads only stores from its own configuration, never a host named by a manifest",
            location.authority()
        )),
        scheme => Err(format!("no store configured for scheme {scheme}")),
    }
}

fn azure(location: &Location, rules: &TargetRules, key: String) -> Result<Target, String> {
    let scheme = location.scheme();
    let Some(account) = &rules.azure_account else {
        return Err(format!(
            "no store configured for scheme {scheme} (set AZURE_STORAGE_ACCOUNT_NAME and credentials in the webhook's environment)"
        ));
    };
    let (container, host) = location
        .authority()
        .split_once('@')
        .ok_or_else(|| format!("expected {scheme}://CONTAINER@ACCOUNT.HOST/PATH"))?;
    let (named, suffix) = host.split_once('.').unwrap_or((host, ""));
    let known_suffix = matches!(
        suffix.to_ascii_lowercase().as_str(),
        "blob.core.windows.net" | "dfs.core.windows.net"
    );
    if !known_suffix || !named.eq_ignore_ascii_case(account) {
        return Err(format!(
            "names storage host {host:?}; the webhook is configured for account {account:?} and dials no other"
        ));
    }
    if !valid_container(container) {
        return Err(format!("{container:?} is not a valid Azure container name"));
    }
    Ok(Target::Azure {
        container: container.to_string(),
        key,
    })
}

fn object_key(path: &str, leaf: Option<&str>) -> String {
    let trimmed = path.trim_start_matches('/');
    match leaf {
        Some(leaf) if trimmed.is_empty() => leaf.to_string(),
        Some(leaf) => format!("{trimmed}/{leaf}"),
        None => trimmed.to_string(),
    }
}

fn list_roots(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `name` is a bucket name the webhook will put into a request. As a host name
/// (`dns`) it must be a lower-case DNS name of 3 to 63 characters; in a path, upper case
/// and `_` of legacy buckets are fine too.
pub fn valid_bucket(name: &str, dns: bool) -> bool {
    let edges_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if dns {
        (3..=63).contains(&bytes.len())
            && edges_ok(first)
            && edges_ok(last)
            && !name.contains("..")
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    } else {
        (3..=255).contains(&bytes.len())
            && first.is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    }
}

fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
