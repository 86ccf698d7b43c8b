//! Operator and subtask states and the state handles inside them, as
//! `MetadataV2V3SerializerBase`, `MetadataV3Serializer`, `MetadataV5Serializer` and the
//! channel state serializers write them; every type code Flink 1.15 to 2.3 writes.

use super::input::Input;
use super::{FilePath, Operator, ParseError, Role, Snapshot, StateFile};

/// Deepest nesting of keyed handles (a changelog handle holds others).
const MAX_NESTING: usize = 4;

// Stream, keyed and operator state handle type codes.
const NULL_HANDLE: u8 = 0;
const BYTE_STREAM: u8 = 1;
const FILE_STREAM: u8 = 2;
const KEY_GROUPS: u8 = 3;
const PARTITIONABLE_OPERATOR: u8 = 4;
const INCREMENTAL_KEY_GROUPS: u8 = 5;
const RELATIVE_STREAM: u8 = 6;
const SAVEPOINT_KEY_GROUPS: u8 = 7;
const CHANGELOG: u8 = 8;
const CHANGELOG_BYTE_INCREMENT: u8 = 9;
const CHANGELOG_FILE_INCREMENT: u8 = 10;
const INCREMENTAL_KEY_GROUPS_V2: u8 = 11;
const KEY_GROUPS_V2: u8 = 12;
const CHANGELOG_FILE_INCREMENT_V2: u8 = 13;
const CHANGELOG_V2: u8 = 14;
const SEGMENT_FILE: u8 = 15;
const EMPTY_SEGMENT_FILE: u8 = 16;
const SEGMENT_PARTITIONABLE_OPERATOR: u8 = 17;

// Channel state handle type codes (ChannelStateHandleSerializerV2, format 6).
const INPUT_CHANNEL: u8 = 1;
const RESULT_SUBPARTITION: u8 = 2;
const MERGED_INPUT_CHANNEL: u8 = 3;
const MERGED_RESULT_SUBPARTITION: u8 = 4;

/// Reads operators into a snapshot.
pub struct Reader<'s> {
    format: i32,
    snapshot: &'s mut Snapshot,
    operator: usize,
}

impl<'s> Reader<'s> {
    /// A reader for metadata `format`, filling in `snapshot`.
    pub fn new(format: i32, snapshot: &'s mut Snapshot) -> Self {
        Self {
            format,
            snapshot,
            operator: 0,
        }
    }

    fn count_handle(&mut self, kind: &'static str) {
        *self.snapshot.handle_counts.entry(kind).or_default() += 1;
    }

    /// Reads operator number `index`.
    pub fn operator(&mut self, input: &mut Input<'_>, index: usize) -> Result<(), ParseError> {
        self.operator = index;
        let mut operator = Operator::default();
        if self.format >= 5 {
            operator.name = Some(input.utf("an operator's name")?).filter(|s| !s.is_empty());
            operator.uid = Some(input.utf("an operator's uid")?).filter(|s| !s.is_empty());
        }
        let id = input.take(16, "an operator id")?;
        operator.id = id.iter().map(|b| format!("{b:02x}")).collect();
        operator.parallelism = input.i32("an operator's parallelism")?;
        operator.max_parallelism = input.i32("an operator's maximum parallelism")?;
        self.snapshot.operators.push(operator);
        self.stream(input, Role::Coordinator)?;
        let at = input.position();
        let subtasks = input.i32("the number of subtask states")?;
        if subtasks < 0 {
            if let Some(op) = self.snapshot.operators.last_mut() {
                op.fully_finished = true;
            }
            return Ok(());
        }
        for _ in 0..subtasks {
            let index = input.i32("a subtask index")?;
            if index < 0 {
                if let Some(op) = self.snapshot.operators.last_mut() {
                    op.finished_subtasks += 1;
                }
                continue;
            }
            if let Some(op) = self.snapshot.operators.last_mut() {
                op.subtasks += 1;
            }
            self.subtask(input)?;
        }
        let _ = at;
        Ok(())
    }

    fn subtask(&mut self, input: &mut Input<'_>) -> Result<(), ParseError> {
        for _ in 0..2 {
            if input.i32("an operator state flag")? != 0 {
                self.operator_state(input)?;
            }
        }
        self.keyed(input, 0)?;
        self.keyed(input, 0)?;
        for _ in 0..2 {
            let count = input.count("the number of channel state handles")?;
            for _ in 0..count {
                self.channel(input)?;
            }
        }
        Ok(())
    }

    /// A stream state handle: a file, a relative file, inline bytes, a segment of a merged
    /// file, or nothing.
    fn stream(&mut self, input: &mut Input<'_>, role: Role) -> Result<(), ParseError> {
        let at = input.position();
        match input.u8("a state handle type")? {
            NULL_HANDLE => {}
            FILE_STREAM => {
                let size = input.i64("a file's state size")?;
                let path = input.utf("a file path")?;
                self.file(FilePath::Absolute(path), size, role);
                self.count_handle("FileStateHandle");
            }
            RELATIVE_STREAM => {
                let path = input.utf("a relative file path")?;
                let size = input.i64("a file's state size")?;
                self.file(FilePath::Relative(path), size, role);
                self.count_handle("RelativeFileStateHandle");
            }
            BYTE_STREAM => {
                input.utf("an inline handle's name")?;
                let len = input.count("an inline handle's length")?;
                input.take(len, "inline state")?;
                self.snapshot.inline.handles += 1;
                self.snapshot.inline.bytes += len as u64;
                self.count_handle("ByteStreamStateHandle");
            }
            KEY_GROUPS => {
                self.key_group_offsets(input)?;
                self.count_handle("KeyGroupsStateHandle");
                self.stream(input, role)?;
            }
            SEGMENT_FILE => {
                input.i64("a segment's start")?;
                let size = input.i64("a segment's size")?;
                input.i32("a segment's scope")?;
                let path = input.utf("a merged file's path")?;
                input.utf("a logical file id")?;
                self.file(FilePath::Absolute(path), size, role);
                self.count_handle("SegmentFileStateHandle");
            }
            EMPTY_SEGMENT_FILE => self.count_handle("EmptySegmentFileStateHandle"),
            other => {
                return Err(ParseError::unsupported(
                    at,
                    format!("stream state handle type {other}"),
                ));
            }
        }
        Ok(())
    }

    fn key_group_offsets(&mut self, input: &mut Input<'_>) -> Result<(), ParseError> {
        input.i32("the first key group")?;
        let groups = input.count("the number of key groups")?;
        input.skip(groups, 8, "key group offsets")
    }

    fn keyed(&mut self, input: &mut Input<'_>, depth: usize) -> Result<(), ParseError> {
        let at = input.position();
        if depth > MAX_NESTING {
            return Err(ParseError::malformed(
                at,
                "keyed state handles nested too deep",
            ));
        }
        match input.u8("a keyed state handle type")? {
            NULL_HANDLE => {}
            code @ (KEY_GROUPS | KEY_GROUPS_V2 | SAVEPOINT_KEY_GROUPS) => {
                self.key_group_offsets(input)?;
                self.stream(input, Role::Keyed)?;
                if code == KEY_GROUPS_V2 {
                    input.utf("a state handle id")?;
                }
                self.count_handle(match code {
                    SAVEPOINT_KEY_GROUPS => "KeyGroupsSavepointStateHandle",
                    _ => "KeyGroupsStateHandle",
                });
            }
            code @ (INCREMENTAL_KEY_GROUPS | INCREMENTAL_KEY_GROUPS_V2) => {
                let v2 = code == INCREMENTAL_KEY_GROUPS_V2;
                input.i64("an incremental handle's checkpoint id")?;
                input.utf("a backend id")?;
                input.i32("the first key group")?;
                input.i32("the number of key groups")?;
                if v2 {
                    input.i64("a checkpointed size")?;
                }
                self.stream(input, Role::BackendMeta)?;
                for role in [Role::Shared, Role::Private] {
                    let count = input.count("the number of incremental state files")?;
                    for _ in 0..count {
                        input.utf("a local file name")?;
                        self.stream(input, role)?;
                    }
                }
                if v2 {
                    input.utf("a state handle id")?;
                }
                self.count_handle("IncrementalRemoteKeyedStateHandle");
            }
            code @ (CHANGELOG | CHANGELOG_V2) => {
                input.i32("the first key group")?;
                input.i32("the number of key groups")?;
                input.i64("a checkpointed size")?;
                for _ in 0..2 {
                    let count = input.count("the number of changelog parts")?;
                    for _ in 0..count {
                        self.keyed(input, depth + 1)?;
                    }
                }
                input.i64("a materialization id")?;
                if code == CHANGELOG_V2 {
                    input.i64("a changelog checkpoint id")?;
                }
                input.utf("a state handle id")?;
                self.count_handle("ChangelogStateBackendHandle");
            }
            CHANGELOG_BYTE_INCREMENT => {
                input.i32("the first key group")?;
                input.i32("the number of key groups")?;
                input.i64("a sequence number")?;
                input.i64("a sequence number")?;
                let changes = input.count("the number of changes")?;
                let mut bytes = 0u64;
                for _ in 0..changes {
                    input.i32("a change's key group")?;
                    let len = input.count("a change's length")?;
                    input.take(len, "a change")?;
                    bytes += len as u64;
                }
                input.utf("a state handle id")?;
                self.snapshot.inline.handles += 1;
                self.snapshot.inline.bytes += bytes;
                self.count_handle("InMemoryChangelogStateHandle");
            }
            code @ (CHANGELOG_FILE_INCREMENT | CHANGELOG_FILE_INCREMENT_V2) => {
                input.i32("the first key group")?;
                input.i32("the number of key groups")?;
                let count = input.count("the number of changelog files")?;
                for _ in 0..count {
                    input.i64("an offset")?;
                    self.stream(input, Role::Changelog)?;
                }
                input.i64("a state size")?;
                input.i64("a checkpointed size")?;
                input.utf("a state handle id")?;
                if code == CHANGELOG_FILE_INCREMENT_V2 {
                    input.utf("a storage identifier")?;
                }
                self.count_handle("ChangelogStateHandleStreamImpl");
            }
            other => {
                return Err(ParseError::unsupported(
                    at,
                    format!("keyed state handle type {other}"),
                ));
            }
        }
        Ok(())
    }

    fn operator_state(&mut self, input: &mut Input<'_>) -> Result<(), ParseError> {
        let at = input.position();
        let code = input.u8("an operator state handle type")?;
        if !matches!(
            code,
            NULL_HANDLE | PARTITIONABLE_OPERATOR | SEGMENT_PARTITIONABLE_OPERATOR
        ) {
            return Err(ParseError::unsupported(
                at,
                format!("operator state handle type {code}"),
            ));
        }
        if code == NULL_HANDLE {
            return Ok(());
        }
        let states = input.count("the number of operator states")?;
        for _ in 0..states {
            input.utf("an operator state's name")?;
            input.u8("a distribution mode")?;
            let offsets = input.count("the number of partition offsets")?;
            input.skip(offsets, 8, "partition offsets")?;
        }
        if code == SEGMENT_PARTITIONABLE_OPERATOR {
            input.utf("a task-owned directory")?;
            input.utf("a shared directory")?;
            input.bool("an empty-state flag")?;
            self.count_handle("FileMergingOperatorStreamStateHandle");
        } else {
            self.count_handle("OperatorStreamStateHandle");
        }
        self.stream(input, Role::Operator)
    }

    fn channel(&mut self, input: &mut Input<'_>) -> Result<(), ParseError> {
        let at = input.position();
        let code = if self.format >= 6 {
            input.u8("a channel state handle type")?
        } else {
            INPUT_CHANNEL
        };
        match code {
            INPUT_CHANNEL | RESULT_SUBPARTITION => {
                input.i32("a subtask index")?;
                input.i32("a channel's gate or partition")?;
                input.i32("a channel's index")?;
                let offsets = input.count("the number of channel offsets")?;
                input.skip(offsets, 8, "channel offsets")?;
                input.i64("a channel state size")?;
                self.count_handle("ChannelStateHandle");
            }
            MERGED_INPUT_CHANNEL | MERGED_RESULT_SUBPARTITION => {
                input.i32("a subtask index")?;
                input.i64("a channel state size")?;
                self.stream(input, Role::Channel)?;
                let len = input.count("the length of channel offsets")?;
                input.take(len, "channel offsets")?;
                self.count_handle("MergedChannelStateHandle");
                return Ok(());
            }
            other => {
                return Err(ParseError::unsupported(
                    at,
                    format!("channel state handle type {other}"),
                ));
            }
        }
        self.stream(input, Role::Channel)
    }

    fn file(&mut self, path: FilePath, size: i64, role: Role) {
        self.snapshot.files.push(StateFile {
            path,
            size,
            role,
            operator: self.operator,
        });
    }
}
