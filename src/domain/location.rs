//! Flink-aware savepoint location parsing and normalization: [`Location::parse`], and
//! [`NormalizedLocation`], the form every comparison of two locations uses.
//!
//! Two spellings of one physical location normalize to the same string: the scheme is
//! case-folded, `s3a` and `s3p` are `s3`, duplicate and trailing slashes are dropped, a
//! trailing `/_metadata` file name is dropped, and `file:/p`, `file:///p` and
//! `file://localhost/p` are one location, and host names that DNS compares without case
//! (HDFS name nodes, Azure containers and accounts) are case-folded. Anything that could
//! make two different paths compare equal (`.` or `..` segments, queries, fragments) is
//! refused instead, and so are credentials written into a location (`user:secret@`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Default accepted schemes: the file systems Flink ships with.
pub const DEFAULT_SCHEMES: &[&str] = &[
    "s3", "s3a", "s3p", "gs", "hdfs", "viewfs", "wasb", "wasbs", "abfs", "abfss", "oss", "file",
];
/// Schemes whose locations may name no host or bucket (the default file system).
pub const HOSTLESS_SCHEMES: &[&str] = &["file", "hdfs", "viewfs"];
/// Schemes whose authority is `CONTAINER@ACCOUNT_HOST` (Azure Blob Storage and ADLS Gen2).
pub const CONTAINER_AT_ACCOUNT_SCHEMES: &[&str] = &["wasb", "wasbs", "abfs", "abfss"];
/// Schemes whose authority is a host name, compared without case as DNS does; bucket
/// names (`s3`, `gs`, `oss`) keep theirs, as those stores do.
pub const CASE_FOLDED_AUTHORITY_SCHEMES: &[&str] =
    &["hdfs", "viewfs", "wasb", "wasbs", "abfs", "abfss"];
/// Default maximum length of a location, in bytes.
pub const DEFAULT_MAX_LEN: usize = 1024;

/// Which locations are acceptable.
#[derive(Clone, Debug)]
pub struct LocationRules {
    /// Accepted schemes, lower case, before aliasing (`s3a` is listed on its own).
    pub schemes: BTreeSet<String>,
    /// Maximum length in bytes.
    pub max_len: usize,
}

impl Default for LocationRules {
    fn default() -> Self {
        Self {
            schemes: DEFAULT_SCHEMES.iter().map(|s| s.to_string()).collect(),
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// A parsed, normalized location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    scheme: String,
    authority: String,
    path: String,
}

/// Why a string is not an acceptable location; the text is what follows the field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// Longer than the configured maximum.
    #[error("is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// Actual length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// No `scheme:` prefix.
    #[error(
        "is not an absolute URI; expected SCHEME://BUCKET/PATH, e.g. s3://bucket/savepoints/savepoint-1a2b3c-0123456789ab"
    )]
    NotAbsolute,
    /// Scheme not in the accepted set.
    #[error("has scheme {scheme:?}, which is not accepted; accepted schemes: {accepted}")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
        /// The accepted schemes, comma separated.
        accepted: String,
    },
    /// Whitespace or control characters.
    #[error("contains whitespace or control characters")]
    BadCharacter,
    /// A query or fragment.
    #[error("contains '?' or '#'; a location is a plain path")]
    QueryOrFragment,
    /// `.` or `..` segments.
    #[error("contains a '.' or '..' path segment; write the path without them")]
    DotSegment,
    /// A scheme that needs a bucket or host has none.
    #[error("names no bucket or host; expected {scheme}://BUCKET/PATH")]
    MissingAuthority {
        /// The scheme as written.
        scheme: String,
    },
    /// The path names a directory called `_metadata` (`…/_metadata/_metadata`).
    #[error(
        "ends in _metadata/_metadata: a directory named _metadata is ambiguous with Flink's metadata file; name the savepoint directory instead"
    )]
    MetadataDirectory,
    /// A `file` location naming another host.
    #[error("names host {host:?}; file locations must be local (file:/path or file:///path)")]
    RemoteFile {
        /// The host as written.
        host: String,
    },
    /// No path at all.
    #[error("has no path")]
    MissingPath,
    /// `user:password@` before the host or bucket.
    #[error(
        "contains a password (USER:PASSWORD@ before the host); credentials never belong in a location: give the webhook and Flink the store's credentials instead"
    )]
    Password,
    /// `user@` before the host or bucket of a scheme that has no such part.
    #[error(
        "names a user (USER@ before the host or bucket); {scheme} locations are {scheme}://BUCKET/PATH, without credentials"
    )]
    UserInfo {
        /// The scheme as written.
        scheme: String,
    },
}

impl Location {
    /// Parses and normalizes `raw` under `rules`.
    pub fn parse(raw: &str, rules: &LocationRules) -> Result<Self, LocationError> {
        if raw.is_empty() {
            return Err(LocationError::Empty);
        }
        if raw.len() > rules.max_len {
            return Err(LocationError::TooLong {
                len: raw.len(),
                max: rules.max_len,
            });
        }
        let (scheme_raw, rest) = raw.split_once(':').ok_or(LocationError::NotAbsolute)?;
        let scheme_ok = scheme_raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(LocationError::NotAbsolute);
        }
        let lower = scheme_raw.to_ascii_lowercase();
        if !rules.schemes.contains(&lower) {
            return Err(LocationError::UnsupportedScheme {
                scheme: scheme_raw.to_string(),
                accepted: rules
                    .schemes
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LocationError::BadCharacter);
        }
        if raw.contains(['?', '#']) {
            return Err(LocationError::QueryOrFragment);
        }
        let scheme = match lower.as_str() {
            "s3a" | "s3p" => "s3".to_string(),
            _ => lower,
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(slash) => (&after[..slash], &after[slash..]),
                None => (after, ""),
            },
            // `file:p` or `hdfs:p` is relative to some working directory: it must not
            // compare equal to `file:/p`.
            None if !rest.starts_with('/') => return Err(LocationError::NotAbsolute),
            None => ("", rest),
        };
        if let Some((user, _)) = authority.split_once('@') {
            if user.contains(':') {
                return Err(LocationError::Password);
            }
            if !CONTAINER_AT_ACCOUNT_SCHEMES.contains(&scheme.as_str()) {
                return Err(LocationError::UserInfo {
                    scheme: scheme_raw.to_string(),
                });
            }
        }
        let authority = if scheme == "file" {
            if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                return Err(LocationError::RemoteFile {
                    host: authority.to_string(),
                });
            }
            ""
        } else {
            authority
        };
        // A host or bucket named `.` or `..` reads as a path segment: refused like one.
        if matches!(authority, "." | "..") {
            return Err(LocationError::DotSegment);
        }
        if authority.is_empty() && !HOSTLESS_SCHEMES.contains(&scheme.as_str()) {
            return Err(LocationError::MissingAuthority {
                scheme: scheme_raw.to_string(),
            });
        }
        let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(LocationError::DotSegment);
        }
        if segments.last() == Some(&"_metadata") {
            segments.pop();
            // Dropping a second `_metadata` would merge the directory `p/_metadata` with
            // `p`; keeping it would make the normalized form normalize again to `p`.
            if segments.last() == Some(&"_metadata") {
                return Err(LocationError::MetadataDirectory);
            }
        }
        if authority.is_empty() && segments.is_empty() {
            return Err(LocationError::MissingPath);
        }
        let mut normalized_path = String::with_capacity(path.len());
        for segment in segments {
            normalized_path.push('/');
            normalized_path.push_str(segment);
        }
        let authority = if CASE_FOLDED_AUTHORITY_SCHEMES.contains(&scheme.as_str()) {
            authority.to_ascii_lowercase()
        } else {
            authority.to_string()
        };
        Ok(Self {
            scheme,
            authority,
            path: normalized_path,
        })
    }

    /// The normalized scheme (`s3a`/`s3p` folded to `s3`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Bucket, container or host; empty for `file` and default-filesystem `hdfs`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Normalized path: `/`-separated segments, no trailing slash, no `_metadata`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

impl Location {
    /// The normalized form, under which two spellings of one location compare equal.
    pub fn normalized(&self) -> NormalizedLocation {
        NormalizedLocation(self.to_string().into())
    }
}

/// A location in normalized form (`s3://bucket/path`): the only form locations are
/// compared, indexed and held in. Made only by [`NormalizedLocation::parse`] or
/// [`Location::normalized`], so a raw spelling can never be compared by mistake.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedLocation(Arc<str>);

impl NormalizedLocation {
    /// Parses `raw` under `rules` and normalizes it.
    pub fn parse(raw: &str, rules: &LocationRules) -> Result<Self, LocationError> {
        Location::parse(raw, rules).map(|location| location.normalized())
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalized text, shared.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for NormalizedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        Location::parse(raw, &LocationRules::default())
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .to_string()
    }

    #[test]
    fn spellings_of_one_location_normalize_alike() {
        let cases = [
            ("s3://b/cp/chk-42", "s3://b/cp/chk-42"),
            ("S3://b/cp/chk-42", "s3://b/cp/chk-42"),
            ("s3a://b/cp/chk-42", "s3://b/cp/chk-42"),
            ("s3p://b/cp/chk-42/", "s3://b/cp/chk-42"),
            ("s3a://b//cp///chk-42//", "s3://b/cp/chk-42"),
            ("s3a://b/cp/chk-42/_metadata", "s3://b/cp/chk-42"),
            (
                "file:/data/sp/savepoint-f35801-c840b0a020e8",
                "file:///data/sp/savepoint-f35801-c840b0a020e8",
            ),
            (
                "file:///data/sp/savepoint-f35801-c840b0a020e8",
                "file:///data/sp/savepoint-f35801-c840b0a020e8",
            ),
            (
                "file://localhost/data/sp/savepoint-f35801-c840b0a020e8/",
                "file:///data/sp/savepoint-f35801-c840b0a020e8",
            ),
            ("FILE://LOCALHOST/data/x/_metadata", "file:///data/x"),
            ("hdfs://nn:8020/flink/sp", "hdfs://nn:8020/flink/sp"),
            ("hdfs:///flink/sp", "hdfs:///flink/sp"),
            ("gs://bucket", "gs://bucket"),
            (
                "wasbs://c@acct.blob.core.windows.net/sp",
                "wasbs://c@acct.blob.core.windows.net/sp",
            ),
            (
                "hdfs://NameNode:8020/flink/sp",
                "hdfs://namenode:8020/flink/sp",
            ),
            ("viewfs://Cluster/sp", "viewfs://cluster/sp"),
            (
                "abfss://c@Acct.DFS.core.windows.net/sp",
                "abfss://c@acct.dfs.core.windows.net/sp",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw), want, "normalizing {raw}");
        }
    }

    #[test]
    fn different_paths_stay_different() {
        for (a, b) in [
            ("s3://b/cp/chk-42", "s3://b/cp/chk-4"),
            ("s3://b/cp/chk-42", "s3://B/cp/chk-42"),
            ("s3://b/cp/chk-42", "gs://b/cp/chk-42"),
            ("s3://b/cp/_metadata/x", "s3://b/cp/x"),
            ("s3://b/Cp", "s3://b/cp"),
            ("hdfs://nn1/p", "hdfs://nn2/p"),
            ("hdfs://nn/P", "hdfs://nn/p"),
            ("gs://b/p", "gs://B/p"),
        ] {
            assert_ne!(norm(a), norm(b), "{a} vs {b}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let rules = LocationRules {
            max_len: 40,
            ..LocationRules::default()
        };
        type Check = fn(&LocationError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, LocationError::Empty)),
            ("/data/savepoints/x", |e| {
                matches!(e, LocationError::NotAbsolute)
            }),
            ("savepoint-1", |e| matches!(e, LocationError::NotAbsolute)),
            ("1s3://b/p", |e| matches!(e, LocationError::NotAbsolute)),
            ("ftp://host/p", |e| {
                matches!(e, LocationError::UnsupportedScheme { .. })
            }),
            ("s3://b/p q", |e| matches!(e, LocationError::BadCharacter)),
            ("s3://b/p\n", |e| matches!(e, LocationError::BadCharacter)),
            ("s3://b/p?x=1", |e| {
                matches!(e, LocationError::QueryOrFragment)
            }),
            ("s3://b/p#f", |e| {
                matches!(e, LocationError::QueryOrFragment)
            }),
            ("s3://b/a/../p", |e| matches!(e, LocationError::DotSegment)),
            ("s3://b/./p", |e| matches!(e, LocationError::DotSegment)),
            ("s3://./p", |e| matches!(e, LocationError::DotSegment)),
            ("hdfs://../p", |e| matches!(e, LocationError::DotSegment)),
            ("s3:///p", |e| {
                matches!(e, LocationError::MissingAuthority { .. })
            }),
            ("s3:/p", |e| {
                matches!(e, LocationError::MissingAuthority { .. })
            }),
            ("file://otherhost/p", |e| {
                matches!(e, LocationError::RemoteFile { .. })
            }),
            ("file:///", |e| matches!(e, LocationError::MissingPath)),
            ("file:data/sp", |e| matches!(e, LocationError::NotAbsolute)),
            ("hdfs:flink/sp", |e| matches!(e, LocationError::NotAbsolute)),
            ("s3://b/p/_metadata/_metadata", |e| {
                matches!(e, LocationError::MetadataDirectory)
            }),
            ("s3://user:secret@b/p", |e| {
                matches!(e, LocationError::Password)
            }),
            ("abfs://c:secret@a.dfs.core.windows.net/p", |e| {
                matches!(e, LocationError::Password)
            }),
            ("s3://user@b/p", |e| {
                matches!(e, LocationError::UserInfo { .. })
            }),
            ("hdfs://hdfs@nn/p", |e| {
                matches!(e, LocationError::UserInfo { .. })
            }),
            (
                "s3://bucket/a-path-that-is-far-too-long-for-the-rule",
                |e| matches!(e, LocationError::TooLong { len: 52, max: 40 }),
            ),
        ];
        for (raw, is_expected) in cases {
            let err = Location::parse(raw, &rules).expect_err(raw);
            assert!(is_expected(&err), "{raw:?} gave {err:?}");
        }
    }

    #[test]
    fn scheme_set_is_configurable() {
        let rules = LocationRules {
            schemes: ["s3".to_string()].into(),
            ..LocationRules::default()
        };
        assert!(Location::parse("s3://b/p", &rules).is_ok());
        let err = Location::parse("gs://b/p", &rules).unwrap_err();
        assert_eq!(
            err.to_string(),
            "has scheme \"gs\", which is not accepted; accepted schemes: s3"
        );
    }
}
