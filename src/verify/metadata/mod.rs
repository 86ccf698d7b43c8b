//! A full, bounded read of Flink's `_metadata` file (formats 3 to 6), without I/O:
//! [`parse`] walks what Flink's `MetadataV3Serializer` to `MetadataV6Serializer` write and
//! returns a [`Snapshot`]: checkpoint id, the snapshot's type and format (formats 4 and
//! later), its operators (names and uids from format 5 on) and every file its state handles
//! reference, with inline state counted.
//!
//! The layout, big-endian as Java's `DataOutputStream` writes it:
//!
//! ```text
//! magic (int) | format (int) | checkpoint id (long)
//! master states: count (int), each: magic, length, bytes
//! operators: count (int), each: [V5+ name, uid (UTF)] id (2 longs) parallelism,
//!   max parallelism (ints) coordinator state (handle) subtask count (int, -1: finished)
//!   each subtask: index (int, negative: finished), then managed and raw operator state,
//!   managed and raw keyed state, input and output channel state
//! [V4+ CheckpointProperties, Java-serialized]
//! ```
//!
//! Bad input gives a [`ParseError`], never a panic: every count is checked against the
//! bytes that remain before anything is allocated for it, nesting is bounded, and the
//! caller bounds the input. A handle type or format this reader does not know is
//! [`ErrorKind::Unsupported`] ("could not enumerate"), kept apart from a file that ends
//! early ([`ErrorKind::Truncated`]), which no Flink can restore.

mod handles;
mod input;
mod java;
pub mod properties;

use std::collections::BTreeMap;
use std::fmt;

use input::Input;
pub use properties::{Properties, SnapshotKind};

use super::header::MAGIC;

/// Formats this reader enumerates.
pub const READABLE_FORMATS: std::ops::RangeInclusive<i32> = 3..=6;
/// Flink's `MASTER_STATE_MAGIC_NUMBER`.
const MASTER_STATE_MAGIC: i32 = 0xc96b_1696_u32 as i32;

/// Why a metadata file could not be read to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where reading stopped.
    pub at: usize,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What was being read, or what was wrong.
    pub what: String,
}

/// Kinds of [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file ends inside a value: Flink's own reader fails the same way.
    Truncated,
    /// A value no Flink writes (a negative count, a wrong magic number).
    Malformed,
    /// Something this reader does not know: a newer format or handle type.
    Unsupported,
}

impl ParseError {
    pub(crate) fn truncated(at: usize, what: &'static str) -> Self {
        Self {
            at,
            kind: ErrorKind::Truncated,
            what: what.to_string(),
        }
    }

    pub(crate) fn malformed(at: usize, what: impl Into<String>) -> Self {
        Self {
            at,
            kind: ErrorKind::Malformed,
            what: what.into(),
        }
    }

    pub(crate) fn unsupported(at: usize, what: impl Into<String>) -> Self {
        Self {
            at,
            kind: ErrorKind::Unsupported,
            what: what.into(),
        }
    }

    /// Whether the file ends early.
    pub fn is_truncated(&self) -> bool {
        self.kind == ErrorKind::Truncated
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Truncated => write!(
                f,
                "the file ends at byte {} inside {}: it is truncated",
                self.at, self.what
            ),
            ErrorKind::Malformed => write!(f, "at byte {}: {}", self.at, self.what),
            ErrorKind::Unsupported => write!(f, "at byte {}: unknown {}", self.at, self.what),
        }
    }
}

/// How a file is named by a state handle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilePath {
    /// An absolute path or URI, as Flink wrote it (`file:/...`, `s3://...`).
    Absolute(String),
    /// A path relative to the snapshot's directory (savepoints since Flink 1.11).
    Relative(String),
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilePath::Absolute(p) | FilePath::Relative(p) => f.write_str(p),
        }
    }
}

/// What a referenced file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Keyed state of a full snapshot.
    Keyed,
    /// Operator (non-keyed) state.
    Operator,
    /// An incremental checkpoint's file shared with other checkpoints (`shared/`).
    Shared,
    /// An incremental checkpoint's private file.
    Private,
    /// The state backend's own metadata of an incremental snapshot.
    BackendMeta,
    /// In-flight data of an unaligned checkpoint.
    Channel,
    /// Changelog state.
    Changelog,
    /// An operator coordinator's state.
    Coordinator,
}

impl Role {
    /// A short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Keyed => "keyed",
            Role::Operator => "operator",
            Role::Shared => "shared",
            Role::Private => "private",
            Role::BackendMeta => "backend-meta",
            Role::Channel => "channel",
            Role::Changelog => "changelog",
            Role::Coordinator => "coordinator",
        }
    }
}

/// One file a state handle references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    /// Where.
    pub path: FilePath,
    /// The state's size in bytes as the handle records it (a segment's, for file merging).
    pub size: i64,
    /// What it holds.
    pub role: Role,
    /// Index into [`Snapshot::operators`].
    pub operator: usize,
}

/// One operator's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operator {
    /// The operator id, 32 hex digits as Flink prints it.
    pub id: String,
    /// Its name (format 5 and later; empty when Flink recorded none).
    pub name: Option<String>,
    /// Its uid (format 5 and later; empty when none was set).
    pub uid: Option<String>,
    /// Parallelism when the snapshot was taken.
    pub parallelism: i32,
    /// Maximum parallelism (the number of key groups).
    pub max_parallelism: i32,
    /// Subtasks with state.
    pub subtasks: usize,
    /// Subtasks that had finished.
    pub finished_subtasks: usize,
    /// Whether the whole operator had finished.
    pub fully_finished: bool,
}

/// State kept inside `_metadata` itself rather than in files of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inline {
    /// Handles with their bytes inline.
    pub handles: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// What a `_metadata` file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Metadata format version.
    pub format: i32,
    /// Checkpoint id.
    pub checkpoint_id: i64,
    /// Master (checkpoint hook) states.
    pub master_states: usize,
    /// Operators, in file order.
    pub operators: Vec<Operator>,
    /// Every file referenced, in file order (a file may appear more than once: segments
    /// of one merged file, or one file shared by several handles).
    pub files: Vec<StateFile>,
    /// State held inline.
    pub inline: Inline,
    /// Savepoint or checkpoint, and its format (formats 4 and later).
    pub properties: Option<Properties>,
    /// How many handles of each kind were read, by Flink's name for the kind.
    pub handle_counts: BTreeMap<&'static str, usize>,
}

impl Snapshot {
    /// Whether any handle is part of an incremental checkpoint.
    pub fn is_incremental(&self) -> bool {
        self.handle_counts
            .keys()
            .any(|k| k.starts_with("IncrementalRemoteKeyedStateHandle"))
    }

    /// Total bytes of state in files, counting each distinct file and offset once.
    pub fn file_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| u64::try_from(f.size).unwrap_or(0))
            .sum()
    }
}

/// Reads a whole `_metadata` file (`bytes` from its first byte).
pub fn parse(bytes: &[u8]) -> Result<Snapshot, ParseError> {
    let mut input = Input::new(bytes);
    let at = input.position();
    let magic = input.i32("the magic number")? as u32;
    if magic != MAGIC {
        return Err(ParseError::malformed(
            at,
            format!("magic number {magic:#010x}, where Flink writes {MAGIC:#010x}"),
        ));
    }
    let at = input.position();
    let format = input.i32("the format version")?;
    if !READABLE_FORMATS.contains(&format) {
        return Err(ParseError::unsupported(
            at,
            format!("metadata format {format}"),
        ));
    }
    let mut snapshot = Snapshot {
        format,
        ..Snapshot::default()
    };
    let at = input.position();
    snapshot.checkpoint_id = input.i64("the checkpoint id")?;
    if snapshot.checkpoint_id < 0 {
        return Err(ParseError::malformed(
            at,
            format!("checkpoint id {}", snapshot.checkpoint_id),
        ));
    }
    snapshot.master_states = input.count("the number of master states")?;
    for _ in 0..snapshot.master_states {
        let at = input.position();
        if input.i32("a master state's magic number")? != MASTER_STATE_MAGIC {
            return Err(ParseError::malformed(at, "a master state's magic number"));
        }
        let at = input.position();
        let len = input.count("a master state's length")?;
        if len == 0 {
            return Err(ParseError::malformed(at, "a master state of length 0"));
        }
        input.take(len, "a master state")?;
    }
    let operators = input.count("the number of operators")?;
    let mut reader = handles::Reader::new(format, &mut snapshot);
    for index in 0..operators {
        reader.operator(&mut input, index)?;
    }
    if format >= 4 {
        snapshot.properties = Some(properties::parse(input.rest()).map_err(|mut e| {
            e.at += input.position();
            e
        })?);
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
