//! What kind of snapshot a metadata file says it is: Flink's `CheckpointProperties`, which
//! formats 4 and later append, Java-serialized, after the operator states.

use std::fmt;

use super::ParseError;
use super::java::{self, Value};
use crate::domain::FormatType;

const PROPERTIES_CLASS: &str = "org.apache.flink.runtime.checkpoint.CheckpointProperties";
const SAVEPOINT_CLASS: &str = "org.apache.flink.runtime.checkpoint.SavepointType";
const CHECKPOINT_CLASS: &str = "org.apache.flink.runtime.checkpoint.CheckpointType";

/// The snapshot's type as Flink recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A savepoint, in `format`; `action` is what the job did after it (`SUSPEND`,
    /// `TERMINATE`), if anything.
    Savepoint {
        /// CANONICAL or NATIVE.
        format: Option<FormatType>,
        /// Flink's `PostCheckpointAction`, when it is not `NONE`.
        action: Option<String>,
    },
    /// A checkpoint; `full` for a full (not incremental) one.
    Checkpoint {
        /// Whether Flink took it as a full checkpoint.
        full: bool,
    },
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotKind::Savepoint { format, action } => {
                match format {
                    Some(format) => write!(f, "a {} savepoint", format.as_str())?,
                    None => f.write_str("a savepoint")?,
                }
                match action.as_deref() {
                    Some("SUSPEND") => f.write_str(" taken to suspend the job"),
                    Some("TERMINATE") => f.write_str(" taken to stop the job"),
                    _ => Ok(()),
                }
            }
            SnapshotKind::Checkpoint { full: true } => f.write_str("a full checkpoint"),
            SnapshotKind::Checkpoint { full: false } => f.write_str("a checkpoint"),
        }
    }
}

/// Flink's checkpoint properties, as far as a restore cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Properties {
    /// Savepoint or checkpoint.
    pub kind: SnapshotKind,
    /// Whether the snapshot was restored in NO_CLAIM mode and is not owned by a job.
    pub unclaimed: bool,
}

/// Reads the properties at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Properties, ParseError> {
    let object = java::read_object(bytes)?;
    if object.class() != Some(PROPERTIES_CLASS) {
        return Err(ParseError::unsupported(
            0,
            format!(
                "checkpoint properties of class {}",
                object.class().unwrap_or("(none)")
            ),
        ));
    }
    let unclaimed = matches!(object.field("unclaimed"), Some(Value::Primitive(1)));
    let snapshot = object.field("checkpointType").unwrap_or(&Value::Null);
    let kind = match snapshot.class() {
        Some(SAVEPOINT_CLASS) => SnapshotKind::Savepoint {
            format: match snapshot.field("formatType") {
                Some(Value::Enum { constant, .. }) => FormatType::parse(constant),
                _ => None,
            },
            action: match snapshot.field("postCheckpointAction") {
                Some(Value::Enum { constant, .. }) if constant != "NONE" => Some(constant.clone()),
                _ => None,
            },
        },
        Some(CHECKPOINT_CLASS) => SnapshotKind::Checkpoint {
            full: matches!(
                snapshot.field("sharingFilesStrategy"),
                Some(Value::Enum { constant, .. }) if constant == "FORWARD"
            ),
        },
        other => {
            return Err(ParseError::unsupported(
                0,
                format!("snapshot type of class {}", other.unwrap_or("(none)")),
            ));
        }
    };
    Ok(Properties { kind, unclaimed })
}
