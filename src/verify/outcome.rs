//! What a check found ([`Outcome`]) and what the mode makes of it ([`verdict`], [`apply`]),
//! free of I/O.

use std::fmt;

use super::header::{self, Header, NotFlink};
use super::store::ReadError;
use crate::admission::{Decision, Reason};
use crate::domain::DeploymentFacts;
use crate::domain::flink::{FlinkVersion, newest_metadata_format, releases_writing};

/// What the webhook does with the outcome of a location check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Do not check locations.
    Off,
    /// Check; every outcome but "verified" is a warning.
    #[default]
    Warn,
    /// Check; refuse a location without a Flink savepoint ("could not check" stays a
    /// warning).
    Deny,
}

/// The result of checking one location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `_metadata` is a Flink metadata file of a restorable format.
    Verified {
        /// The checkpoint id stored in it.
        checkpoint_id: i64,
        /// Its metadata format version.
        version: i32,
    },
    /// There is no `_metadata` at the location.
    Missing,
    /// `_metadata` is not a (complete) Flink metadata file.
    NotFlink(NotFlink),
    /// `_metadata` has Flink's magic number but a format version Flink does not restore.
    UnknownVersion {
        /// The version found.
        version: i32,
    },
    /// A `chk-<n>` directory holds another checkpoint than `n`.
    CheckpointMismatch {
        /// The `n` of `chk-<n>`.
        directory: i64,
        /// The checkpoint id in its `_metadata`.
        found: i64,
    },
    /// The location could not be read: unsupported scheme, no credentials, not under an
    /// allowed root, store unreachable or too slow, or (for `file`) no read slot free
    /// because earlier reads under its root never returned.
    CouldNotCheck {
        /// Why, for the user.
        why: String,
    },
}

impl Outcome {
    /// Shorthand for [`Outcome::CouldNotCheck`].
    pub fn could_not_check(why: impl Into<String>) -> Self {
        Outcome::CouldNotCheck { why: why.into() }
    }

    /// The outcome of a header read from a directory named `directory` (the last path
    /// segment of the location).
    pub fn from_header(header: Header, directory: &str) -> Self {
        match header {
            Header::Flink {
                version,
                checkpoint_id,
            } => match header::chk_number(directory) {
                Some(n) if n != checkpoint_id => Outcome::CheckpointMismatch {
                    directory: n,
                    found: checkpoint_id,
                },
                _ => Outcome::Verified {
                    checkpoint_id,
                    version,
                },
            },
            Header::NotFlink(why) => Outcome::NotFlink(why),
            Header::UnknownVersion { version } => Outcome::UnknownVersion { version },
        }
    }

    /// The outcome of a read of `_metadata` that failed.
    pub fn from_read_error(err: ReadError) -> Self {
        match err {
            ReadError::Missing => Outcome::Missing,
            ReadError::NotRegular(kind) => Outcome::NotFlink(NotFlink::NotRegular { kind }),
            ReadError::Failed(why) => Outcome::could_not_check(why),
            ReadError::TooLarge { limit } => {
                Outcome::could_not_check(format!("larger than {limit} bytes"))
            }
        }
    }

    /// Label value for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Verified { .. } => "verified",
            Outcome::Missing => "missing",
            Outcome::NotFlink(_) => "not_flink",
            Outcome::UnknownVersion { .. } => "unknown_version",
            Outcome::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Outcome::CouldNotCheck { .. } => "could_not_check",
        }
    }

    /// Whether the result is settled for a long time (cache it for the success TTL).
    pub fn is_verified(&self) -> bool {
        matches!(self, Outcome::Verified { .. })
    }

    /// What was found, for a message about `location` (normalized, without `_metadata`).
    pub fn describe(&self, location: &str) -> String {
        match self {
            Outcome::Verified {
                checkpoint_id,
                version,
            } => format!(
                "{location}: verified: checkpoint {checkpoint_id} (Flink metadata format version {version})"
            ),
            Outcome::Missing => format!(
                "no _metadata at {location}: Flink writes one into every savepoint and retained checkpoint, so there is nothing to restore from there"
            ),
            Outcome::NotFlink(why) => format!("not a Flink savepoint: {location}/_metadata: {why}"),
            Outcome::UnknownVersion { version } if *version == header::RETIRED_VERSION => {
                format!(
                    "{location}/_metadata has Flink metadata format version 1 (Flink 1.1 and 1.2), which Flink no longer restores from"
                )
            }
            Outcome::UnknownVersion { version } => format!(
                "{location}/_metadata has unknown Flink metadata format version {version} (known: {} to {})",
                header::RESTORABLE_VERSIONS.start(),
                header::RESTORABLE_VERSIONS.end()
            ),
            Outcome::CheckpointMismatch { directory, found } => format!(
                "{location}: chk-{directory} holds checkpoint {found}; was the directory copied or renamed?"
            ),
            Outcome::CouldNotCheck { why } => format!("could not check {location}: {why}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What an outcome does to the admission decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: verified, or checking is off.
    Silent,
    /// Admit with this warning.
    Warn(String),
    /// Refuse with this message.
    Deny(String),
}

/// The Flink that would restore from a location: the Deployment's name and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoringFlink {
    /// The Deployment's name.
    pub deployment: String,
    /// Its `flinkVersion`.
    pub version: FlinkVersion,
}

impl RestoringFlink {
    /// The Flink of `deployment`, when its version is known.
    pub fn of(deployment: &DeploymentFacts) -> Option<Self> {
        Some(Self {
            deployment: deployment.name.clone(),
            version: deployment.flink_version?,
        })
    }
}

/// Why `flink` cannot read a snapshot of metadata `format`, or `None` when it can or when
/// its release is not one whose formats are known (no verdict, no noise).
pub fn incompatibility(format: i32, flink: &RestoringFlink, location: &str) -> Option<String> {
    let newest = newest_metadata_format(flink.version)?;
    if format <= newest {
        return None;
    }
    let writers = releases_writing(format)
        .map(|releases| format!(", which Flink {releases} writes"))
        .unwrap_or_default();
    Some(format!(
        "{location}/_metadata has Flink metadata format version {format}{writers}; Deployment {:?} runs Flink {}, which reads up to version {newest}: its restore would fail with \"Unrecognized checkpoint version number\"",
        flink.deployment, flink.version
    ))
}

/// Maps an outcome for `location` to a verdict under `mode`: in `warn` every outcome but
/// verified is a warning; in `deny` a missing, non-Flink (a FIFO or other non-regular
/// file too), unknown-version or mismatched `_metadata` is refused, and "could not check"
/// stays a warning, whatever kept the read from happening (a timeout, no free read slot):
/// such a location is admitted, never silently, with a warning saying why it was not read.
pub fn verdict(mode: Mode, outcome: &Outcome, location: &str) -> Verdict {
    verdict_for(mode, outcome, location, None)
}

/// [`verdict`], and for a verified snapshot `flink` cannot read (see [`incompatibility`])
/// a warning in `warn` and a refusal in `deny`.
pub fn verdict_for(
    mode: Mode,
    outcome: &Outcome,
    location: &str,
    flink: Option<&RestoringFlink>,
) -> Verdict {
    let message = || format!("spec.savepointLocation: {}", outcome.describe(location));
    if let (Some(flink), Outcome::Verified { version, .. }) = (flink, outcome)
        && let Some(why) = incompatibility(*version, flink, location)
    {
        let message = format!("spec.savepointLocation: {why}");
        return match mode {
            Mode::Off => Verdict::Silent,
            Mode::Warn => Verdict::Warn(message),
            Mode::Deny => Verdict::Deny(message),
        };
    }
    match (mode, outcome) {
        (Mode::Off, _) | (_, Outcome::Verified { .. }) => Verdict::Silent,
        (Mode::Warn, _) | (Mode::Deny, Outcome::CouldNotCheck { .. }) => Verdict::Warn(message()),
        (Mode::Deny, _) => Verdict::Deny(message()),
    }
}

/// Applies a verdict to a decision: a warning is added to an allowed decision, a denial
/// replaces it. A decision that is already a denial keeps its own reason.
pub fn apply(decision: Decision, verdict: Verdict) -> Decision {
    if !decision.allowed {
        return decision;
    }
    match verdict {
        Verdict::Silent => decision,
        Verdict::Warn(warning) => {
            let mut decision = decision;
            decision.warnings.push(warning);
            decision
        }
        Verdict::Deny(message) => Decision {
            warnings: decision.warnings,
            ..Decision::deny(Reason::LocationRefused, message)
        },
    }
}
